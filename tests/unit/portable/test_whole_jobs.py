"""Whole portable jobs give the same h_0 … h_N and output on every CPU path: torch's kernel ISA
(ATEN_CPU_CAPABILITY), its thread count, numba's target CPU, and the NumPy reference itself; the
native arithmetic is shown to differ where it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cpu import highest, runnable

CHILD = r"""
import hashlib, json, sys, tempfile
import torch
threads = int(sys.argv[1])
_set = torch.set_num_threads
torch.set_num_threads = lambda n: _set(threads)  # the host's choice, whatever the spec says
from engine.api import run_spec
from engine.presets import digits_cnn_spec, digits_spec, tiny_gpt_spec
from protocol.artifacts import LocalStore
steps = int(sys.argv[2])
makers = {"mlp": digits_spec, "cnn": digits_cnn_spec, "gpt": tiny_gpt_spec}
out = {}
for name, make in makers.items():
    for arithmetic in sys.argv[3].split(","):
        if arithmetic == "native" and name != "gpt":
            continue  # one native job shows the difference
        n = steps if arithmetic != "native" else 12
        spec = make(steps=n, segment_steps=max(1, n // 4), device="cpu", arithmetic=arithmetic)
        with tempfile.TemporaryDirectory() as root:
            store = LocalStore(root)
            result = run_spec(spec, store, device="cpu")
            # a portable h_i is a state root; the frozen vectors pin the checkpoints' bytes by their sha256
            shas = ["0x" + hashlib.sha256(store.path_of(h).read_bytes()).hexdigest() for h in result.state_hashes]
        out[f"{name}/{arithmetic}"] = [result.state_hashes, result.output_hash, torch.get_num_threads(), shas]
print("RESULT " + json.dumps(out))
"""

ROOT = Path(__file__).resolve().parents[3]


def _run(env: dict[str, str], threads: int, steps: int, arithmetic: str) -> dict:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps), arithmetic], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def portable_runs() -> list[dict]:
    # AVX2 and AVX-512 where this CPU runs them, else its highest kernel set (at other thread counts)
    configs = [
        ({"ATEN_CPU_CAPABILITY": "default", "NUMBA_CPU_NAME": "generic"}, 1),
        ({"ATEN_CPU_CAPABILITY": runnable("avx2")}, 2),
        ({"ATEN_CPU_CAPABILITY": runnable("avx512")}, 4),
    ]
    return [_run(env, threads, 40, "portable/1,native") for env, threads in configs]


def test_portable_jobs_are_identical_across_isas_threads_and_numba_targets(portable_runs) -> None:
    first = portable_runs[0]
    assert [run["gpt/portable/1"][2] for run in portable_runs] == [1, 2, 4]  # the threads really differed
    for name in ("mlp", "cnn", "gpt"):
        key = f"{name}/portable/1"
        hashes, output = first[key][:2]
        assert len(hashes) == 5 and len(set(hashes)) == 5  # 40 steps in 4 segments, every one moved the state
        for run in portable_runs[1:]:
            assert run[key][:2] == [hashes, output], f"{name}: portable bits depend on the machine path"


def test_native_jobs_differ_across_isas(portable_runs) -> None:
    # torch's default and AVX2 kernels already round differently, so one machine shows what portable
    # arithmetic is for
    if highest() == "default":
        pytest.skip("this CPU runs only torch's default kernels: there is no second kernel set to differ")
    outputs = {run["gpt/native"][1] for run in portable_runs}
    assert len(outputs) > 1


@pytest.fixture(scope="module")
def fast_short() -> dict:
    return _run({}, 1, 12, "portable/1")


def test_fast_cpu_path_equals_the_reference_on_whole_jobs(fast_short) -> None:
    reference = _run({"TESSERA_PORTABLE_BACKEND": "reference"}, 1, 12, "portable/1")
    for name in ("mlp", "cnn", "gpt"):
        assert reference[f"{name}/portable/1"][:2] == fast_short[f"{name}/portable/1"][:2]


FROZEN = ROOT / "tests" / "vectors" / "portable_jobs.json"


def test_portable_1_bits_are_frozen(fast_short) -> None:
    """portable/1 is a published arithmetic: an old job replays under it forever, so no change may move
    its bits (docs/arithmetic.md: a change is `portable/2`). 12-step jobs of each preset, pinned when
    the version was frozen by the sha256 of each checkpoint (h_i was that sha256 then; it is the state
    root now, which binds the same bytes); any machine gives these hashes (that is the point of portable
    arithmetic)."""
    frozen = json.loads(FROZEN.read_text())
    assert frozen["arithmetic"] == "portable/1"
    for name in ("mlp", "cnn", "gpt"):
        _, output, _, hashes = fast_short[f"{name}/portable/1"]
        assert {"state_hashes": hashes, "output_hash": output} == frozen["jobs"][name], (
            f"{name}: portable/1's bits moved; an op change needs a new arithmetic version")
