"""tests/vectors/arithmetic/*.json: the bits of tessera-portable/1 for an implementation in any language.

The files are what the NumPy reference computes today (regenerating them changes nothing, or the
reference's bits moved and the arithmetic needs a new version), and the fast CPU kernels reproduce every
output from the inputs. NaN is compared as a class (docs/arithmetic.md, section 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.portable import cpu, reference
from tests.vectors.generate_arithmetic import FILES, OUT, build, decode

CASES = [(name, index, case) for name in FILES
         for index, case in enumerate(json.loads((OUT / f"{name}.json").read_text())["cases"])]


def _args(case: dict) -> tuple[list, dict]:
    args = [decode(a) if isinstance(a, dict) else a for a in case["args"]]
    kwargs = {k: decode(v) if isinstance(v, dict) else v for k, v in case["kwargs"].items()}
    return args, kwargs


def _same(actual, expected: dict) -> bool:
    want = decode(expected)
    got = np.array(actual, dtype=want.dtype if isinstance(want, np.ndarray) else np.float32)  # 0-d stays 0-d
    want = np.asarray(want)
    if got.shape != want.shape:
        return False
    if want.dtype == np.int64:
        return bool((got == want).all())
    nan = np.isnan(want)
    return bool((np.isnan(got) == nan).all() and (got[~nan].view(np.uint32) == want[~nan].view(np.uint32)).all())


def test_the_files_are_what_the_reference_computes() -> None:
    for name, data in build().items():
        assert json.loads((OUT / f"{name}.json").read_text()) == json.loads(json.dumps(data)), \
            f"{name}.json differs from the reference: regenerate it only with a new arithmetic version"


def test_every_op_of_the_ir_has_vectors() -> None:
    ops = {case["op"] for _, _, case in CASES}
    needed = {"exp", "log", "tanh", "phi_cdf", "relu", "gelu", "relu_backward", "gelu_backward", "tanh_backward",
              "matmul", "linear", "linear_backward", "softmax", "softmax_backward", "cross_entropy",
              "cross_entropy_backward", "mse", "mse_backward", "layer_norm", "layer_norm_backward",
              "embedding_backward", "conv2d", "conv2d_backward", "max_pool", "avg_pool",
              "silu", "silu_backward", "gelu_tanh", "gelu_tanh_backward", "rms_norm", "rms_norm_backward",
              "rotary_tables", "rotary", "rotary_backward", "fold_head_groups",
              "cross_entropy_rows"}
    assert needed <= ops, needed - ops


@pytest.mark.parametrize("backend", [reference, cpu], ids=["reference", "cpu"])
@pytest.mark.parametrize("name,index,case", CASES, ids=[f"{n}-{i}-{c['op']}" for n, i, c in CASES])
def test_a_backend_reproduces_the_vector(backend, name, index, case) -> None:
    args, kwargs = _args(case)
    with np.errstate(all="ignore"):
        result = getattr(backend, case["op"])(*args, **kwargs)
    outputs = list(result) if isinstance(result, tuple) else [result]
    assert len(outputs) == len(case["out"])
    for position, (actual, expected) in enumerate(zip(outputs, case["out"])):
        assert _same(actual, expected), f"{case['op']} output {position}"
