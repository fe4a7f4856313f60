"""`python -m bench.gpu_check`: one command for a GPU session (docs/performance.md, "GPU check").

1. Runs the portable presets (MLP, CNN, tiny-GPT; a few dozen steps each) on CUDA with the Triton
   backend and on the CPU (numba), and fails unless h_0 … h_N and the output hash are identical.
2. Times one training step of each preset on the GPU, portable (Triton) against native
   deterministic torch, as the median of interleaved rounds (interleaving spreads clock and thermal
   drift over both sides alike).
3. Writes the figures under "gpu" in bench/results/latest.json (the CPU figures are left as they are).

Exit status: 0 all identical, 1 a mismatch (the figures are still written), 2 no CUDA device (nothing
measured; the check needs a GPU, and CPU-only machines test the kernels in Triton's interpreter:
tests/unit/portable/test_cuda_kernels.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # the engine requires it before CUDA starts

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results/latest.json"
NO_DEVICE_EXIT = 2


def _presets() -> dict[str, Callable[..., Any]]:
    from engine.presets import digits_cnn_spec, digits_spec, tiny_gpt_spec

    return {"mlp": digits_spec, "cnn": digits_cnn_spec, "gpt": tiny_gpt_spec}


def _spec(name: str, steps: int, arithmetic: str) -> Any:
    return _presets()[name](steps=steps, segment_steps=max(1, steps // 4), arithmetic=arithmetic)


def _hashes(name: str, steps: int, device: str) -> tuple[list[str], str, float]:
    """h_0 … h_N, the output hash and the wall time of one portable run on `device`."""
    from engine.api import run_spec
    from protocol.artifacts import LocalStore

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as root:  # the checkpoints are not kept
        started = time.perf_counter()
        result = run_spec(_spec(name, steps, "portable/1"), LocalStore(root), device=device)
        return list(result.state_hashes), result.output_hash, time.perf_counter() - started


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _step_seconds(job: Any, steps: int, device: str) -> float:
    """Seconds per step over `steps` steps of `job` (synchronised before and after)."""
    _sync(device)
    started = time.perf_counter()
    job.train(job.step + steps)
    _sync(device)
    return (time.perf_counter() - started) / steps


def _timings(name: str, steps: int, rounds: int, device: str) -> dict[str, float]:
    """Median per-step seconds of portable and native deterministic jobs on `device`, interleaved."""
    from engine.api import configure
    from engine.training import Job

    configure(device, 1)
    total = max(rounds * steps + steps, 50)  # a spec's length (the presets' warm-up needs >= 10 steps)
    jobs = {arithmetic: Job(_spec(name, total, arithmetic), None, device) for arithmetic in ("portable/1", "native")}
    for job in jobs.values():
        _step_seconds(job, steps, device)  # warm-up: Triton compiles, cuBLAS picks its kernels
    samples: dict[str, list[float]] = {arithmetic: [] for arithmetic in jobs}
    for _ in range(rounds):
        for arithmetic, job in jobs.items():
            samples[arithmetic].append(_step_seconds(job, steps, device))
    return {arithmetic: statistics.median(values) for arithmetic, values in samples.items()}


def _figure(value: Any, unit: str, how: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "how": how, "source": "bench.gpu_check"}


def check(steps: int, time_steps: int, rounds: int, device: str = "cuda") -> tuple[dict[str, Any], bool]:
    """The identity runs and timings; `device` other than cuda only to smoke-test this script."""
    import torch

    os.environ.pop("TESSERA_PORTABLE_BACKEND", None)  # CUDA tensors take the Triton kernels, CPU ones numba
    figures: dict[str, Any] = {}
    identical = True
    for name in _presets():
        gpu_hashes, gpu_output, gpu_wall = _hashes(name, steps, device)
        cpu_hashes, cpu_output, cpu_wall = _hashes(name, steps, "cpu")
        same = gpu_hashes == cpu_hashes and gpu_output == cpu_output
        identical &= same
        print(f"{name}: {steps} steps, {len(gpu_hashes)} hashes, GPU == CPU: {same} (runs {gpu_wall:.1f} s / {cpu_wall:.1f} s)", flush=True)
        figures[f"gpu_portable_{name}_identical_to_cpu"] = _figure(same, "bool", f"{steps} steps: h_0 … h_N and output, Triton on CUDA vs numba on CPU")
        timing = _timings(name, time_steps, rounds, device)
        portable, native = timing["portable/1"], timing["native"]
        print(f"{name}: step {portable * 1e3:.2f} ms portable, {native * 1e3:.2f} ms native deterministic", flush=True)
        how = f"median of {rounds} interleaved rounds of {time_steps} steps, one GPU"
        figures[f"gpu_step_ms_portable_{name}"] = _figure(round(portable * 1e3, 3), "ms", "portable/1 (Triton), " + how)
        figures[f"gpu_step_ms_native_{name}"] = _figure(round(native * 1e3, 3), "ms", "native deterministic torch, " + how)
        figures[f"gpu_portable_over_native_{name}"] = _figure(round(portable / native, 2), "x", "portable step time / native")
    import triton

    report = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "identical": identical,
        "figures": figures,
    }
    return report, identical


def write(report: dict[str, Any], path: Path = RESULTS) -> None:
    """Store the report under "gpu", keeping every other key of the file."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data["gpu"] = report
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps of each identity run (default 40)")
    parser.add_argument("--time-steps", type=int, default=10, help="steps per timing round (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave latest.json alone")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: bench.gpu_check needs a GPU (torch.cuda.is_available() is false); nothing measured. "
              "Without a GPU the Triton kernels are tested in the interpreter: tests/unit/portable/test_cuda_kernels.py",
              file=sys.stderr)  # fmt: skip
        return NO_DEVICE_EXIT
    report, identical = check(args.steps, args.time_steps, args.rounds)
    if not args.no_write:
        write(report)
    print(json.dumps(report, indent=2))
    if not identical:
        print("MISMATCH: portable bits differ between the GPU and the CPU", file=sys.stderr)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
