"""Regenerate tests/vectors/arithmetic/*.json: `python tests/vectors/generate_arithmetic.py`.

Test vectors of tessera-portable/1 (docs/arithmetic.md), computed by the NumPy reference, which defines
the bits. An implementation in any language passes when it reproduces every output from the inputs.
Encoding: a binary32 value is its bit pattern as 8 hex digits ("3f800000"); every NaN is written "nan"
(NaN's sign and payload are not part of the arithmetic); integer tensors (class ids, token ids) are
plain numbers; tensors are row-major with their shape. Inputs come from a fixed seed and a list of
special values (±0, ±inf, NaN, subnormals, the exp thresholds), so regeneration is byte-identical
unless the reference's bits change, and then the arithmetic needs a new version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.portable import reference

OUT = Path(__file__).resolve().parent / "arithmetic"
ARITHMETIC = "tessera-portable/1"
F32 = np.float32
SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754942e-38,
                     3.4028235e38, -3.4028235e38, 88.72283935546875, 88.7229, -103.97208404541016, -103.98,
                     0.19999999, 0.2, 8.999999, 9.0, 1e-7, -1e-30], dtype=F32)


def encode(value: Any) -> dict[str, Any]:
    array = np.asarray(value)
    if array.dtype == np.int64:
        return {"shape": list(array.shape), "int64": array.reshape(-1).tolist()}
    flat = np.ascontiguousarray(array, dtype=F32).reshape(-1)
    bits = ["nan" if np.isnan(v) else f"{int(b):08x}" for v, b in zip(flat, flat.view(np.uint32))]
    return {"shape": list(array.shape), "f32": bits}


def decode(item: dict[str, Any]) -> np.ndarray:
    if "int64" in item:
        return np.array(item["int64"], dtype=np.int64).reshape(item["shape"])
    bits = [0x7FC00000 if b == "nan" else int(b, 16) for b in item["f32"]]
    array = np.array(bits, dtype=np.uint32).view(F32).reshape(item["shape"])
    return array[()] if array.ndim == 0 else array  # a 0-d tensor is a binary32 scalar argument


def _outputs(result: Any) -> list[Any]:
    return list(result) if isinstance(result, tuple) else [result]


class Cases:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.cases: list[dict[str, Any]] = []

    def values(self, *shape: int, scale: float = 2.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(F32)

    def ids(self, high: int, *shape: int) -> np.ndarray:
        return self.rng.integers(0, high, size=shape).astype(np.int64)

    def add(self, op: str, args: list[Any], **kwargs: Any) -> None:
        fn: Callable[..., Any] = getattr(reference, op)
        with np.errstate(all="ignore"):
            result = fn(*[np.copy(a) if isinstance(a, np.ndarray) else a for a in args], **kwargs)
        self.cases.append({
            "op": op,
            "args": [encode(a) if isinstance(a, (np.ndarray, np.generic)) else a for a in args],
            "kwargs": {k: (encode(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()},
            "out": [encode(r) for r in _outputs(result)],
        })


def elementwise() -> list[dict[str, Any]]:
    c = Cases(1)
    x = np.concatenate([SPECIALS, c.values(40, scale=4.0)])
    for op in ("exp", "log", "tanh", "phi_cdf", "relu", "gelu"):
        c.add(op, [np.abs(x) if op == "log" else x])
    log_edge = np.array([0.0, -0.0, -1.0, np.inf, np.nan, 1e-45, 1.4142135, 1.4142137, 2.0, 3.0], dtype=F32)
    c.add("log", [log_edge])
    dy = c.values(len(x))
    for op in ("relu_backward", "gelu_backward"):
        c.add(op, [x, dy])
    with np.errstate(all="ignore"):
        y = reference.tanh(np.nan_to_num(x))
    c.add("tanh_backward", [y, dy])
    return c.cases


def linear_algebra() -> list[dict[str, Any]]:
    c = Cases(2)
    c.add("matmul", [c.values(3, 17), c.values(17, 4)])
    c.add("matmul", [c.values(2, 300, scale=1e-3), c.values(300, 3)])  # a long fold
    x, w, b = c.values(3, 5), c.values(4, 5), c.values(4)
    c.add("linear", [x, w, b])
    c.add("linear", [x, w, None])
    c.add("linear_backward", [x, w, c.values(3, 4)])
    c.add("sum_rows", [c.values(6, 5)])
    return c.cases


def normalisation_and_losses() -> list[dict[str, Any]]:
    c = Cases(3)
    z = c.values(3, 7, scale=5.0)
    c.add("softmax", [z])
    c.add("softmax_backward", [reference.softmax(z), c.values(3, 7)])
    logits, target = c.values(4, 6), c.ids(6, 4)
    c.add("cross_entropy", [logits, target])
    c.add("cross_entropy_backward", [logits, target, F32(1.0)])
    out, y = c.values(3, 4), c.values(3, 4)
    c.add("mse", [out, y])
    c.add("mse_backward", [out, y, F32(1.0)])
    x, weight, bias = c.values(3, 8), c.values(8), c.values(8)
    c.add("layer_norm", [x, weight, bias, 1e-5])
    _, xhat, rstd = reference.layer_norm(x, weight, bias, 1e-5)
    c.add("layer_norm_backward", [xhat, rstd, weight, c.values(3, 8)])
    c.add("embedding_backward", [c.ids(5, 2, 6), c.values(2, 6, 3), 5])
    return c.cases


def convolution_and_pooling() -> list[dict[str, Any]]:
    c = Cases(4)
    x, w, b = c.values(1, 2, 5, 5), c.values(3, 2, 3, 3), c.values(3)
    c.add("conv2d", [x, w, b, 1, 1])
    c.add("conv2d", [x, w, None, 2, 0])
    c.add("conv2d_backward", [x, w, c.values(1, 3, 5, 5), 1, 1])
    pooled = c.values(1, 2, 4, 4)
    pooled[0, 0, 0, :2] = 1.5  # a tie inside a window: the first maximum wins
    c.add("max_pool", [pooled, 2, 2])
    c.add("avg_pool", [pooled, 2, 2])
    return c.cases


def decoder_layers() -> list[dict[str, Any]]:
    """docs/arithmetic.md, section 5a (issue 13): a file of its own, so the files above stay byte-identical."""
    c = Cases(5)
    x = np.concatenate([SPECIALS, c.values(40, scale=4.0), np.array([-88.8, -200.0, 12.0, -12.0], dtype=F32)])
    dy = c.values(len(x))
    for op in ("silu", "gelu_tanh"):
        c.add(op, [x])
        c.add(f"{op}_backward", [x, dy])
    rows, weight = c.values(3, 8), c.values(8)
    rows[1, :3] = [0.0, -0.0, 1e-45]
    c.add("rms_norm", [rows, weight, 1e-6])
    _, xhat, rstd = reference.rms_norm(rows, weight, 1e-6)
    c.add("rms_norm_backward", [xhat, rstd, weight, c.values(3, 8)])
    c.add("rotary_tables", [6, 8, 10_000.0])
    c.add("rotary_tables", [3, 4, 1_000_000.0])
    c.add("rotary_tables", [300, 2, 500_000.0])  # angles up to 299 rad: the range reduction, every quadrant
    cos, sin = reference.rotary_tables(5, 6, 10_000.0)
    q = c.values(1, 2, 5, 6)
    q[0, 0, 0, :] = [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45]
    c.add("rotary", [q, cos, sin])
    c.add("rotary_backward", [c.values(1, 2, 5, 6), cos, sin])
    c.add("fold_head_groups", [c.values(1, 6, 2, 3), 3])
    c.add("fold_head_groups", [np.array([[[-0.0, 1.0]]], dtype=F32), 1])
    return c.cases


def language_models() -> list[dict[str, Any]]:
    """docs/arithmetic.md, section 6, "cross-entropy rows" (language-model metrics and scoring): a file of its own."""
    c = Cases(6)
    logits = c.values(5, 7, scale=5.0)
    logits[1, :4] = [np.inf, 0.0, -np.inf, 1e-45]
    logits[2, :] = 3.0  # a tie: every column maximal
    c.add("cross_entropy_rows", [logits, c.ids(7, 5)])
    c.add("cross_entropy_rows", [c.values(3, 300, scale=20.0), c.ids(300, 3)])  # a long fold, exps near 0
    return c.cases


FILES = {
    "elementwise": elementwise,
    "linear_algebra": linear_algebra,
    "normalisation_and_losses": normalisation_and_losses,
    "convolution_and_pooling": convolution_and_pooling,
    "decoder_layers": decoder_layers,
    "language_models": language_models,
}


def build() -> dict[str, dict[str, Any]]:
    return {name: {"arithmetic": ARITHMETIC, "encoding": __doc__.split("Encoding: ", 1)[1].split(" Inputs", 1)[0],
                   "cases": make()} for name, make in FILES.items()}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, data in build().items():
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {OUT / name}.json ({len(data['cases'])} cases)")


if __name__ == "__main__":
    main()
