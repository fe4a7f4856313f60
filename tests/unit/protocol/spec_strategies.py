"""Hypothesis strategies for task specs: consistent models (MLP, CNN, GPT-like) and whole specs.

Shared by the protocol tests (validation never crashes) and the engine tests (the torch model has
exactly the parameter count the spec predicts).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

HASH = "0x" + "ab" * 32

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def mlp_models(draw: st.DrawFn) -> dict[str, Any]:
    width = draw(st.integers(1, 12))
    layers: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 12))
        layers.append({"type": "linear", "in_features": width, "out_features": out, "bias": draw(st.booleans())})
        act = draw(st.sampled_from(["relu", "gelu", "tanh", "dropout", "layernorm", "residual", None]))
        if act == "dropout":
            layers.append({"type": "dropout", "p": draw(st.floats(0, 0.9))})
        elif act == "layernorm":
            layers.append({"type": "layernorm", "normalized_shape": out})
        elif act == "residual":
            layers.append({"type": "residual", "layers": [
                {"type": "linear", "in_features": out, "out_features": out}, {"type": "tanh"}]})
        elif act is not None:
            layers.append({"type": act})
        width = out
    return {"input_shape": [draw(st.integers(1, 12))], "layers": layers} | _fix_first(layers)


def _fix_first(layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"input_shape": [layers[0]["in_features"]]}


@st.composite
def cnn_models(draw: st.DrawFn) -> dict[str, Any]:
    side = draw(st.integers(4, 10))
    channels = draw(st.integers(1, 3))
    out_channels = draw(st.integers(1, 4))
    kernel = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 1))
    conv_side = side + 2 * padding - kernel + 1
    layers: list[dict[str, Any]] = [
        {"type": "reshape", "shape": [channels, side, side]},
        {"type": "conv2d", "in_channels": channels, "out_channels": out_channels, "kernel_size": kernel, "padding": padding},
        {"type": "relu"},
    ]
    pool = draw(st.sampled_from(["maxpool2d", "avgpool2d", None]))
    if pool and conv_side >= 2:
        layers.append({"type": pool, "kernel_size": 2})
        conv_side //= 2
    layers += [{"type": "flatten"},
               {"type": "linear", "in_features": out_channels * conv_side * conv_side, "out_features": draw(st.integers(2, 5))}]
    return {"input_shape": [channels * side * side], "layers": layers}


@st.composite
def gpt_models(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.integers(1, 2))
    d = heads * draw(st.integers(1, 4))
    t = draw(st.integers(1, 6))
    vocab = draw(st.integers(2, 9))
    blocks = [
        {"type": "transformer_block", "d_model": d, "n_heads": heads, "d_ff": draw(st.integers(1, 8)), "dropout": draw(st.sampled_from([0.0, 0.1]))}
        for _ in range(draw(st.integers(1, 2)))
    ]
    return {"input_shape": [t], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        {"type": "positional_embedding", "max_len": t + draw(st.integers(0, 3)), "embedding_dim": d},
        *blocks,
        {"type": "layernorm", "normalized_shape": d},
        {"type": "linear", "in_features": d, "out_features": vocab, "bias": False},
    ]}


valid_models = st.one_of(mlp_models(), cnn_models(), gpt_models())


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(st.integers(1, 40))
    return {
        "version": 1, "kind": "train", "model": draw(valid_models), "dataset": {"hash": HASH},
        "optimizer": draw(st.sampled_from([{"name": "sgd", "lr": 0.1, "momentum": 0.9}, {"name": "adamw", "lr": 0.001}])),
        "schedule": {"name": draw(st.sampled_from(["constant", "cosine", "linear"])), "warmup_steps": draw(st.integers(0, steps))},
        "steps": steps, "segment_steps": draw(st.integers(1, 10)), "batch_size": draw(st.integers(1, 16)),
        "seed": draw(st.integers(0, 2**63 - 1)), "device": draw(st.sampled_from(["any", "cpu", "cuda"])),
    }


def examples(default: int) -> int:
    """Hypothesis example count: `default`, or 40x under TESSERA_HYPOTHESIS_PROFILE=thorough."""
    import os

    return default * 40 if os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough" else default
