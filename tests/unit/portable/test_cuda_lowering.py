"""What the GPU compiler makes of the Triton kernels, checked without a GPU: every kernel of
engine/portable/cuda.py, in every variant it launches, compiles for NVIDIA targets (Ampere, Hopper),
and its PTX uses only correctly rounded binary32 operations (add.rn, sub.rn, mul.rn, div.rn,
sqrt.rn), exact ones (comparisons, selection, negation, absolute value, integer conversions), and
no fused multiply-add, flush-to-zero, approximate instruction or tensor-core mma: docs/arithmetic.md,
section 1. This is the part of the bits Triton's CPU interpreter cannot show (test_cuda_kernels.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed: the CUDA kernels cannot be compiled (pip install -r requirements.txt)")

ROOT = Path(__file__).resolve().parents[3]
ALLOWED = {"add.rn.f32", "sub.rn.f32", "mul.rn.f32", "div.rn.f32", "sqrt.rn.f32", "abs.f32", "neg.f32", "selp.f32",
           "cvt.rn.f32", "cvt.rzi.s32.f32"}  # fmt: skip  (cvt.rn.f32.s32: a small integer to binary32, exact)


def _compile(arch: int) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("cuda_lowering_child.py")), str(arch)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])


@pytest.mark.parametrize("arch", [80, 90])
def test_kernels_compile_to_correctly_rounded_binary32_only(arch) -> None:
    found = _compile(arch)
    assert len(found) > 30  # every kernel, every variant (booleans both ways, all nine unary ops)
    for variant, ops in found.items():
        unexpected = [op for op in ops if op not in ALLOWED and not op.startswith("setp.")]
        assert not unexpected, f"{variant}: {unexpected}"
        assert not [op for op in ops if ".ftz" in op], f"{variant}: flush to zero"
