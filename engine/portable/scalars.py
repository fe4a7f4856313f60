"""The scalar (per-step, not per-element) arithmetic of tessera-portable/1: learning-rate schedule,
optimizer constants and the clipping factor, in binary64 with no libm call (docs/arithmetic.md,
"Scalars"). Python floats are IEEE binary64 with correctly rounded +, −, ×, ÷ and √ on every platform
we run; `math.cos` and `**` are not guaranteed to be, so they are replaced by fixed algorithms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

F32 = np.float32
PI = 3.141592653589793  # the binary64 nearest π
HALF_PI = PI / 2
COS_TERMS = tuple(float((-1) ** k) / math.factorial(2 * k) for k in range(14))  # exact int ÷ int, rounded once


def cos(x: float) -> float:
    """cos on [0, π]: x > π/2 uses −cos(π − x); then Σ_k (−1)^k y^(2k)/(2k)!, k = 0 … 13, Horner in y²."""
    if not 0.0 <= x <= PI:
        raise ValueError(f"portable cos is defined on [0, π], got {x!r}")
    sign = 1.0
    if x > HALF_PI:
        x, sign = PI - x, -1.0
    y2 = x * x
    total = COS_TERMS[-1]
    for term in reversed(COS_TERMS[:-1]):
        total = total * y2 + term
    return sign * total


def power(base: float, exponent: int) -> float:
    """base^exponent for an integer exponent >= 0 by binary exponentiation, least significant bit first:
    r = 1; while e: (if e odd: r = r·b); b = b·b; e = e >> 1."""
    result, factor = 1.0, float(base)
    while exponent:
        if exponent & 1:
            result = result * factor
        factor = factor * factor
        exponent >>= 1
    return result


def lr_factor(schedule: Any, step: int, total_steps: int) -> float:
    """The schedule's factor for 0-based `step`, with the portable cosine."""
    return float(schedule.lr_factor(step, total_steps, cos=cos))


def optimizer_scalars(config: Any, lr: float, step_number: int) -> dict[str, np.float32]:
    """The binary32 constants of one optimizer step (`step_number` counts from 1), each computed in
    binary64 and rounded once to binary32."""
    if config.name == "adamw":
        correction1 = 1.0 - power(config.beta1, step_number)
        correction2 = 1.0 - power(config.beta2, step_number)
        return {
            "decay": F32(1.0 - lr * config.weight_decay), "beta1": F32(config.beta1),
            "one_minus_beta1": F32(1.0 - config.beta1), "beta2": F32(config.beta2),
            "one_minus_beta2": F32(1.0 - config.beta2), "correction2": F32(correction2),
            "eps": F32(config.eps), "step_size": F32(lr / correction1),
        }  # fmt: skip
    return {"weight_decay": F32(config.weight_decay), "momentum": F32(config.momentum), "lr": F32(lr)}


def clip_scale(squared_norm: float, max_norm: float) -> np.float32:
    """min(1, max_norm / (√Σg² + 1e-6)) in binary64, rounded once to binary32."""
    return F32(min(1.0, float(max_norm) / (math.sqrt(squared_norm) + 1e-6)))
