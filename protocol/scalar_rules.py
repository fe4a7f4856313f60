"""The per-step scalars on chain (issue 15; contracts/lib/scalar_rules.vy, deployed as ScalarRules.vy, the
game's fifth rules contract): the record's layout of `adamw_scalars`, `sgd_scalars` and `clip_scale`,
their binary64 arithmetic as the contract computes it, and the Python mirror of what the contract calls
checkable and what it reads. NumPy only, no torch.

- `adamw_scalars` / `sgd_scalars` read the agreed state's header (its step) and take three arguments:
  the optimizer's numbers as a tuple (AdamW: lr, β1, β2, eps, weight decay; SGD: lr, momentum, weight
  decay), the schedule as a tuple (name, warm-up steps, final ratio) and the job's total steps. The
  skeleton holds each tuple only hashed (tag 5), so `prove_element` reveals their words as `hints`
  (`scalar_hints`), which the contract hashes back to the skeleton's words. An element is one of the
  eight (three) binary32 scalars, recomputed in binary64 (`scalar_bits`: docs/arithmetic.md, section 8:
  the schedule with the portable cos, powers by binary exponentiation) and rounded once.
- `clip_scale` has two outputs: the binary32 factor and `partials`, the binary64 running Σ g² after each
  piece of the fold (`clip_pieces`: the gradients in parameter order, each cut into pieces of at most
  CLIP_PIECE_TERMS elements from its start, so a piece never crosses a gradient and is one aligned run).
  Partial c reads its piece of one gradient and partial c − 1 of the same output (an earlier element:
  the first-difference challenger always agrees with it); the factor reads the last partial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SCALAR_KERNELS = ("adamw_scalars", "sgd_scalars")
SCALAR_COUNT = {"adamw_scalars": 8, "sgd_scalars": 3}
SCHEDULES = ("constant", "cosine", "linear")  # the schedule's code on chain is its place here
# Terms of one clip piece: a power of two (an aligned run) and small enough that the dearest honest
# prove_element of a piece stays under 1,000,000 gas (a binary64 multiply-add costs about 3,500 gas).
CLIP_PIECE_TERMS = 128

PI = 3.141592653589793  # the binary64 nearest π (math.pi)
HALF_PI = PI / 2
# (−1)^k / (2k)! as Python computes it (engine/portable/scalars.py COS_TERMS); the contract holds their bits
COS_TERMS = tuple(float((-1) ** k) / math.factorial(2 * k) for k in range(14))


# --------------------------------------------------------------------------------------------------
# The record's layout
# --------------------------------------------------------------------------------------------------


def scalar_args(optimizer: Any, schedule: Any, total_steps: int) -> tuple[Any, ...]:
    """The arguments of a scalar entry (`optimizer`, `schedule`: the spec's models)."""
    if optimizer.name == "adamw":
        numbers: tuple[Any, ...] = (float(optimizer.lr), float(optimizer.beta1), float(optimizer.beta2),
                                    float(optimizer.eps), float(optimizer.weight_decay))  # fmt: skip
    else:
        numbers = (float(optimizer.lr), float(optimizer.momentum), float(optimizer.weight_decay))
    return numbers, (str(schedule.name), int(schedule.warmup_steps), float(schedule.final_ratio)), int(total_steps)


def _word(value: Any) -> int:
    from protocol.tensor_commit import keccak

    if isinstance(value, str):
        return int.from_bytes(b"\x07" + keccak(value.encode())[:31], "big")
    if isinstance(value, float):
        return (2 << 248) | int(np.array([value]).view(np.uint64)[0])
    return (1 << 248) | (int(value) % (1 << 248))


def scalar_hints(args: Sequence[Any]) -> tuple[int, ...]:
    """What `prove_element` reveals of a scalar entry's hashed arguments: the words of its two tuples."""
    return tuple(_word(v) for v in args[0]) + tuple(_word(v) for v in args[1])


def clip_pieces(sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(gradient k, first element, count) of each piece of clipping's fold, in fold order."""
    pieces = [(k, first, min(CLIP_PIECE_TERMS, size - first))
              for k, size in enumerate(sizes) for first in range(0, size, CLIP_PIECE_TERMS)]  # fmt: skip
    return pieces or [(0, 0, 0)]


def clip_partials(gradients: Sequence[np.ndarray]) -> np.ndarray:
    """The running binary64 Σ g² after each piece (the fold of docs/arithmetic.md, section 8)."""
    out, total = [], 0.0
    for k, first, count in clip_pieces([g.size for g in gradients]):
        for value in gradients[k][first : first + count] if count else ():
            g = float(value)
            total = total + g * g
        out.append(total)
    return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# The binary64 arithmetic (Python floats are IEEE binary64 with correctly rounded + − × ÷ √)
# --------------------------------------------------------------------------------------------------


def cos(x: float) -> float:
    """cos on [0, π]: −cos(π − x) above π/2, then Horner in x² over COS_TERMS."""
    sign = 1.0
    if x > HALF_PI:
        x, sign = PI - x, -1.0
    y2 = x * x
    total = COS_TERMS[-1]
    for term in reversed(COS_TERMS[:-1]):
        total = total * y2 + term
    return sign * total


def power(base: float, exponent: int) -> float:
    """base^exponent by binary exponentiation, low bit first."""
    result, factor = 1.0, base
    while exponent:
        if exponent & 1:
            result = result * factor
        factor = factor * factor
        exponent >>= 1
    return result


def lr_factor(schedule: Sequence[Any], step: int, total_steps: int) -> float:
    """protocol.spec.Schedule.lr_factor with the portable cos, from the schedule tuple."""
    name, warmup, final_ratio = str(schedule[0]), int(schedule[1]), float(schedule[2])
    if warmup and step < warmup:
        return float(step + 1) / float(warmup)
    if name == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, float(step - warmup) / float(span))
    shape = 0.5 * (1.0 + cos(PI * progress)) if name == "cosine" else 1.0 - progress
    return final_ratio + (1.0 - final_ratio) * shape


def scalar_values(kernel: str, args: Sequence[Any], step: int) -> np.ndarray:
    """The binary32 scalars of a scalar entry at 0-based `step` (engine/portable/scalars.py's)."""
    numbers, schedule, total = args
    lr = float(numbers[0]) * lr_factor(schedule, step, int(total))
    if kernel == "sgd_scalars":
        _, momentum, decay = (float(v) for v in numbers)
        return np.array([decay, momentum, lr], dtype=np.float32)
    _, beta1, beta2, eps, decay = (float(v) for v in numbers)
    t = step + 1
    return np.array([1.0 - lr * decay, beta1, 1.0 - beta1, beta2, 1.0 - beta2, 1.0 - power(beta2, t), eps,
                     lr / (1.0 - power(beta1, t))], dtype=np.float32)  # fmt: skip


def scalar_bits(kernel: str, args: Sequence[Any], step: int, element: int) -> int:
    """Element `element`'s binary32 bit pattern."""
    return int(scalar_values(kernel, args, step).view(np.uint32)[element])
