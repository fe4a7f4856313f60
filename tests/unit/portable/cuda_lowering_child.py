"""Run as a child process by test_cuda_lowering.py: compile every Triton kernel of
engine/portable/cuda.py (every constexpr variant it launches) for an NVIDIA target, which needs no GPU,
and print the PTX floating-point instructions each uses, as `RESULT {json}`.

Kept out of the test module's process: there Triton's interpreter may be selected, which cannot compile."""

from __future__ import annotations

import inspect
import itertools
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

INT_POINTERS = {"t_ptr", "ids_ptr", "where_ptr"}
FLOAT_ARGS = {"count", "grad", "eps", "width_f", "decay", "beta1", "omb1", "beta2", "omb2", "correction2", "step_size",
              "weight_decay", "momentum", "lr"}  # fmt: skip
ROW_KERNELS = {"_softmax_kernel", "_softmax_backward_kernel", "_cross_entropy_rows_kernel",
               "_cross_entropy_backward_kernel", "_layer_norm_kernel", "_layer_norm_backward_kernel",
               "_rms_norm_kernel", "_rms_norm_backward_kernel"}  # fmt: skip
FLOAT_OPS = re.compile(r"\b(?:setp\.\w+|selp|fma|mad|add|sub|mul|div|sqrt|rcp|rsqrt|ex2|lg2|sin|cos|tanh|max|min|abs|neg|cvt)"
                       r"\.[\w.]*f(?:16|32|64)\b|\bw?mma\.\S+|\.ftz\b|\.approx\b")  # fmt: skip


def _variants(cuda: Any, name: str, params: list[inspect.Parameter]) -> Iterator[dict[str, Any]]:
    """Every constexpr combination the module can launch (booleans both ways, every unary op)."""
    fixed = {"BM": cuda.TILE, "BN": cuda.TILE, "K": 3, "NW": 2, "BLOCK": cuda.ROWS if name in ROW_KERNELS else cuda.BLOCK}
    const = [p.name for p in params if "constexpr" in str(p.annotation)]
    choices = [sorted(cuda._UNARY.values()) if n == "OP" else [fixed[n]] if n in fixed else [False, True] for n in const]
    for combo in itertools.product(*choices):
        yield dict(zip(const, combo))


def _signature(params: list[inspect.Parameter]) -> dict[str, str]:
    def kind(p: inspect.Parameter) -> str:
        if "constexpr" in str(p.annotation):
            return "constexpr"
        if p.name.endswith("_ptr"):
            return "*i64" if p.name in INT_POINTERS else "*fp32"
        return "fp32" if p.name in FLOAT_ARGS else "i32"

    return {p.name: kind(p) for p in params}


def main(arch: int) -> dict[str, list[str]]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from engine.portable import cuda

    found: dict[str, list[str]] = {}
    for name, kernel in vars(cuda).items():
        if not (name.endswith("_kernel") and hasattr(kernel, "fn")):
            continue
        params = list(inspect.signature(kernel.fn).parameters.values())
        for consts in _variants(cuda, name, params):
            source = ASTSource(fn=kernel, signature=_signature(params), constexprs=consts)
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"enable_fp_fusion": False})
            found[f"{name}{consts}"] = sorted(set(FLOAT_OPS.findall(compiled.asm["ptx"])))
    return found


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(int(sys.argv[1]))))
