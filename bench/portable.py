"""`portable_step_ratio`: the cost of tessera-portable/1 on CPU, per preset.

`measure()` builds each preset twice, once in native deterministic arithmetic and once in portable/1
(one pinned CPU thread, as the spec says), warms both up (allocations, numba's compiled kernels), then
times segments of `STEPS` optimizer steps alternately, native and portable, `REPEATS` times each.
The ratio is median portable step time ÷ median native step time: interleaving keeps a box whose speed
drifts (turbo, thermal) from favouring either side, and the times are the training thread's CPU time
(`time.thread_time`: both arithmetics run every kernel on that one thread), so other processes on a
shared box do not count. The goal (issue 12) is at most 1.3 on tiny-GPT.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

STEPS = 10
REPEATS = 5
PRESETS = ("digits_spec", "digits_cnn_spec", "tiny_gpt_spec")
NAMES = {"digits_spec": "mlp", "digits_cnn_spec": "cnn", "tiny_gpt_spec": "gpt"}


def _job(preset: str, arithmetic: str, steps: int) -> Any:
    from engine import presets
    from engine.determinism import configure
    from engine.training import Job

    spec = getattr(presets, preset)(steps=steps * (2 * REPEATS + 2), segment_steps=steps, device="cpu",
                                    arithmetic=arithmetic)
    configure("cpu", spec.resources.cpu_threads)
    return Job(spec, None, "cpu")


def step_times(preset: str, *, steps: int = STEPS, repeats: int = REPEATS) -> dict[str, list[float]]:
    """Seconds per optimizer step of `preset`, `repeats` interleaved segments of `steps` per arithmetic."""
    jobs = {arithmetic: _job(preset, arithmetic, steps) for arithmetic in ("native", "portable/1")}
    for job in jobs.values():
        job.train(job.step + steps)  # warm-up: first touch, kernel compilation
    times: dict[str, list[float]] = {arithmetic: [] for arithmetic in jobs}
    for _ in range(repeats):
        for arithmetic, job in jobs.items():
            begin = time.thread_time()
            job.train(job.step + steps)
            times[arithmetic].append((time.thread_time() - begin) / steps)
    return times


def measure() -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for preset in PRESETS:
        times = step_times(preset)
        native, portable = statistics.median(times["native"]), statistics.median(times["portable/1"])
        name = NAMES[preset]
        figure = {"value": round(portable / native, 3), "unit": "x",
                  "how": f"{name}: median portable/1 step ÷ median native deterministic step, CPU time of the one "
                         f"training thread, {REPEATS} interleaved segments of {STEPS} steps "
                         f"(native {native * 1e3:.2f} ms/step)"}
        if name == "gpt":
            figure["target"] = "<= 1.3"
            figures["portable_step_ratio"] = dict(figure)
        figures[f"portable_step_ratio_{name}"] = figure
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
