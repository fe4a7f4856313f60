"""tests/vectors/referee_elements.json: level-3 element vectors for a referee in any language (the Vyper
one). Each vector's expected bits come from a recorded portable step (the generator asserts they are
the engine's); here the Python referee model recomputes every one from exactly its proven values."""

from __future__ import annotations

import json

import pytest

from protocol import referee_model as rm
from tests.vectors.generate_referee import FORMAT, OUT, decode_arg, decode_value

DATA = json.loads(OUT.read_text())
VECTORS = DATA["vectors"]


def _call(vector: dict) -> rm.Call:
    return rm.Call(vector["kernel"], tuple(decode_arg(a) for a in vector["args"]),
                   tuple(tuple(s) for s in vector["in_shapes"]), tuple(tuple(s) for s in vector["out_shapes"]))  # fmt: skip


def test_the_file_covers_every_recorded_kernel() -> None:
    assert DATA["format"] == FORMAT and DATA["arithmetic"] == "tessera-portable/1"
    kernels = {v["kernel"] for v in VECTORS}
    assert {"linear", "linear_backward", "relu", "relu_backward", "cross_entropy", "cross_entropy_backward", "adamw",
            "sgd", "clip_scale", "scale", "layer_norm", "layer_norm_backward", "gelu", "gelu_backward", "matmul",
            "softmax", "softmax_backward", "conv2d", "conv2d_backward", "max_pool", "max_pool_backward", "rms_norm",
            "rms_norm_backward", "rotary", "rotary_backward", "silu", "silu_backward", "fold_head_groups",
            "dropout_keep", "where", "scaled_keep", "gather", "embedding_backward", "add", "mul", "move", "cat",
            "place", "transpose", "mul_scalar", "fill_above_diagonal", "sum_rows", "batch_index"} <= kernels  # fmt: skip
    assert any(v["piece"] is not None for v in VECTORS)  # long folds in pieces
    assert any(isinstance(v["output"], str) for v in VECTORS)  # intermediates


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{i}-{v['kernel']}-{v['output']}" for i, v in enumerate(VECTORS)])
def test_the_referee_model_recomputes_the_vector(vector: dict) -> None:
    call = _call(vector)
    proven = {(k, i): decode_value(v) for k, i, v in vector["proven"]}
    assert set(proven) == set(rm.dependencies(call, vector["output"], vector["element"], vector["piece"]))
    bits = rm.check_element(call, vector["output"], vector["element"], proven, vector["piece"])
    expected = vector["expected"]
    assert bits == (int(expected, 16) if isinstance(expected, str) else expected)
