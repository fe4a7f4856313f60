"""The scalar (per-step, not per-element) arithmetic of tessera-portable/1: learning-rate schedule,
optimizer constants and the clipping factor, in binary64 with no libm call (docs/arithmetic.md,
"Scalars"). Python floats are IEEE binary64 with correctly rounded +, −, ×, ÷ and √ on every platform
we run; `math.cos` and `**` are not guaranteed to be, so they are replaced by fixed algorithms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from protocol.scalar_rules import COS_TERMS, HALF_PI, PI, cos, power  # noqa: F401 (one binary64 implementation,
# shared with the referee's mirror of ScalarRules; protocol/ is torch-free)

F32 = np.float32


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
