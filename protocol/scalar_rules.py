"""The per-step scalars on chain (issue 15; contracts/lib/scalar_rules.vy, deployed as ScalarRules.vy, the
game's fifth rules contract): the record's layout of `adamw_scalars`, `sgd_scalars` and `clip_scale`,
their binary64 arithmetic as the contract computes it, and the Python mirror of what the contract calls
checkable and what it reads. NumPy only, no torch.

- `adamw_scalars` / `sgd_scalars` read the agreed state's header (its step) and take as arguments, one
  plain word each, the optimizer's numbers (AdamW: lr, β1, β2, eps, weight decay; SGD: lr, momentum,
  weight decay, all binary64), the schedule (its name, a string word the contract compares with the
  three names' hashes; warm-up steps; final ratio) and the job's total steps (`scalar_args`), so the
  skeleton itself carries every number the scalars depend on. An element is one of the eight (three)
  binary32 scalars, recomputed in binary64 (`scalar_bits`: docs/arithmetic.md, section 8: the schedule
  with the portable cos, powers by binary exponentiation) and rounded once. The contract computes it in
  its plan for the step `prove_element` names in `hints` (`scalar_hints`: the agreed header's step), and
  the element rule STEP_SCALAR returns it only when the proven header has that step.
- `clip_scale` has two outputs: the binary32 factor and `partials`, the binary64 running Σ g² after each
  piece of the fold (`clip_pieces`: the gradients in parameter order, each cut into pieces of at most
  CLIP_PIECE_TERMS elements from its start, so a piece never crosses a gradient and is one aligned run).
  Partial c reads its piece of one gradient and partial c − 1 of the same output (an earlier element:
  the first-difference challenger always agrees with it); the factor reads the last partial. Over more
  than CLIP_GROUP gradients the record splits the fold (`clip_groups`): `clip_sum` entries, CLIP_GROUP
  gradients each in order, every one but the first reading the previous one's partials (binary64, its
  input 0) and starting from their last, one output its own partials; then `clip_factor(partials,
  max_norm)`, the last group's partials in and the factor out. So a model of any size keeps every
  skeleton within the 4,096 bytes the rules read.
- `sgd` (p, g, the momentum buffer when there is momentum, the step's `sgd_scalars`; the argument nesterov):
  element e of p' (or of the buffer) reads p[e], g[e], the buffer's e, then weight decay and momentum (and
  lr for p') of the scalars, and the element rule SGD updates it (docs/arithmetic.md, section 8).
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
CLIP_PIECE_TERMS = 64
# Gradients of one clip_sum: 32 references, each of 8 dims at most (107 bytes with its argument word), keep
# the skeleton under the 4,096 bytes the rules read; up to CLIP_GROUP gradients one clip_scale takes them all.
CLIP_GROUP = 32
CLIP_KERNELS = ("clip_scale", "clip_sum", "clip_factor")

PI = 3.141592653589793  # the binary64 nearest π (math.pi)
HALF_PI = PI / 2
# (−1)^k / (2k)! as Python computes it (engine/portable/scalars.py uses these); the contract holds their bits
COS_TERMS = tuple(float((-1) ** k) / math.factorial(2 * k) for k in range(14))


# --------------------------------------------------------------------------------------------------
# The record's layout
# --------------------------------------------------------------------------------------------------


def scalar_args(optimizer: Any, schedule: Any, total_steps: int) -> tuple[Any, ...]:
    """The arguments of a scalar entry (`optimizer`, `schedule`: the spec's models)."""
    if optimizer.name == "adamw":
        numbers: tuple[float, ...] = (float(optimizer.lr), float(optimizer.beta1), float(optimizer.beta2),
                                      float(optimizer.eps), float(optimizer.weight_decay))  # fmt: skip
    else:
        numbers = (float(optimizer.lr), float(optimizer.momentum), float(optimizer.weight_decay))
    return (*numbers, str(schedule.name), int(schedule.warmup_steps), float(schedule.final_ratio), int(total_steps))


def _split(args: Sequence[Any]) -> tuple[tuple[float, ...], tuple[Any, ...], int]:
    """(the optimizer's numbers, (schedule name, warm-up, final ratio), total steps) of a scalar entry."""
    return tuple(float(v) for v in args[:-4]), tuple(args[-4:-1]), int(args[-1])


def scalar_params(args: Sequence[Any], element: int) -> list[int]:
    """What ScalarRules hands `scalar_math._optimizer_scalar` for element `element`: [kind (0 AdamW, 1 SGD),
    element, schedule code, warm-up steps, final ratio (binary64 bits), total steps, the optimizer's
    numbers (binary64 bits) in the record's order]."""
    numbers, (name, warmup, final_ratio), total = _split(args)
    bits = [int(np.array([v], dtype=np.float64).view(np.uint64)[0]) for v in (*numbers, float(final_ratio))]
    return [0 if len(numbers) == 5 else 1, element, SCHEDULES.index(name), int(warmup), bits[-1], total, *bits[:-1]]


def scalar_hints(step: int) -> tuple[int, ...]:
    """What `prove_element` names for a scalar entry: the agreed state's step (its header's)."""
    return (int(step),)


def clip_pieces(sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(gradient k, first element, count) of each piece of clipping's fold, in fold order."""
    pieces = [(k, first, min(CLIP_PIECE_TERMS, size - first))
              for k, size in enumerate(sizes) for first in range(0, size, CLIP_PIECE_TERMS)]  # fmt: skip
    return pieces or [(0, 0, 0)]


def clip_groups(count: int) -> list[range]:
    """The gradients of each clip_sum entry, in order (CLIP_GROUP at a time), when clipping over `count`
    gradients is recorded in groups; [] when one clip_scale entry takes them all."""
    if count <= CLIP_GROUP:
        return []
    return [range(first, min(first + CLIP_GROUP, count)) for first in range(0, count, CLIP_GROUP)]


def clip_partials(gradients: Sequence[np.ndarray]) -> np.ndarray:
    """The running binary64 Σ g² after each piece (the fold of docs/arithmetic.md, section 8: t = +0, then
    t = t + float64(g)·float64(g) in order). `np.add.accumulate` adds strictly left to right, each sum
    rounded, so its running values are the fold's (the referee model's loop is checked against them)."""
    flat = [np.asarray(g, dtype=np.float32).reshape(-1).astype(np.float64) for g in gradients]
    squares = np.concatenate([g * g for g in flat]) if flat else np.zeros(0)
    running = np.add.accumulate(np.concatenate([[0.0], squares]))  # running[i]: after i terms
    ends, done = [], 0
    for k, first, count in clip_pieces([g.size for g in flat]):
        done += count
        ends.append(done)
    return running[ends].astype(np.float64)


# --------------------------------------------------------------------------------------------------
# The binary64 arithmetic (Python floats are IEEE binary64 with correctly rounded + − × ÷ √)
# --------------------------------------------------------------------------------------------------


def cos(x: float) -> float:
    """The portable cos (docs/arithmetic.md, "Scalars"), on [0, π]: x > π/2 uses −cos(π − x); then
    Σ_k (−1)^k y^(2k)/(2k)!, k = 0 … 13, Horner in y² (COS_TERMS)."""
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
    numbers, schedule, total = _split(args)
    lr = numbers[0] * lr_factor(schedule, step, total)
    if kernel == "sgd_scalars":
        _, momentum, decay = numbers
        return np.array([decay, momentum, lr], dtype=np.float32)
    _, beta1, beta2, eps, decay = numbers
    t = step + 1
    return np.array([1.0 - lr * decay, beta1, 1.0 - beta1, beta2, 1.0 - beta2, 1.0 - power(beta2, t), eps,
                     lr / (1.0 - power(beta1, t))], dtype=np.float32)  # fmt: skip


def scalar_bits(kernel: str, args: Sequence[Any], step: int, element: int) -> int:
    """Element `element`'s binary32 bit pattern."""
    return int(scalar_values(kernel, args, step).view(np.uint32)[element])


# --------------------------------------------------------------------------------------------------
# The mirror of contracts/lib/scalar_rules.vy (which outputs it checks, what an element reads)
# --------------------------------------------------------------------------------------------------

TAG_INT, TAG_FLOAT64, TAG_BOOL, TAG_STRING, TAG_INPUT = 1, 2, 4, 7, 6
FLOAT32, FLOAT64 = 1, 3
STATE, OUTPUT, HEADER, SELF = 1, 3, 4, 7
MAX_STEP = 1 << 64
MAX_REFS = 96  # host_rules.MAX_REFS
SELF_READ = 1_000  # protocol.referee_kit.SELF_READ: a read of the entry's own output k − SELF_READ


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=object)) if len(shape) else 1


def _small_int(word: bytes) -> bool:
    return word[0] == TAG_INT and int.from_bytes(word[1:], "big") < MAX_STEP


def _schedule_word(name: str) -> bytes:
    from protocol.tensor_commit import keccak

    return bytes([TAG_STRING]) + keccak(name.encode())[:31]


def _args_checkable(skeleton: Any, numbers: int) -> bool:
    args = skeleton.args
    return (all(w[0] == TAG_FLOAT64 for w in args[:numbers]) and args[numbers] in [_schedule_word(n) for n in SCHEDULES]
            and _small_int(args[numbers + 1]) and args[numbers + 2][0] == TAG_FLOAT64 and _small_int(args[numbers + 3]))  # fmt: skip


def _clip_checkable(skeleton: Any) -> bool:
    inputs, args = skeleton.inputs, skeleton.args
    count = len(inputs)
    if not 1 <= count <= MAX_REFS or len(args) != count + 1 or len(skeleton.outputs) != 2 or args[-1][0] != TAG_FLOAT64:
        return False
    for k, ref in enumerate(inputs):
        if args[k] != bytes([TAG_INPUT]) + k.to_bytes(31, "big") or ref.dtype != FLOAT32 or ref.kind not in (STATE, OUTPUT):
            return False
        if _size(ref.shape) == 0:
            return False
    pieces = len(clip_pieces([_size(r.shape) for r in inputs]))
    return skeleton.outputs[0] == (FLOAT32, (1,)) and skeleton.outputs[1] == (FLOAT64, (pieces,))


def _clip_sum_checkable(skeleton: Any) -> bool:
    """clip_sum([partials,] g_0, …, g_{m-1}) (`scalar_rules._clip_walk` summing): every argument names input k in
    order; input 0 the previous group's partials (binary64 [P], an earlier output, more inputs after it) or a
    gradient; the gradients non-empty binary32 state tensors or earlier outputs; one output, binary64 [pieces]."""
    inputs, args = skeleton.inputs, skeleton.args
    count = len(inputs)
    if not 1 <= count <= MAX_REFS or len(args) != count or len(skeleton.outputs) != 1:
        return False
    if any(args[k] != bytes([TAG_INPUT]) + k.to_bytes(31, "big") for k in range(count)):
        return False
    start = inputs[0]
    started = start.dtype == FLOAT64
    if started and not (start.kind == OUTPUT and len(start.shape) == 1 and _size(start.shape) != 0 and count > 1):
        return False
    gradients = inputs[1:] if started else inputs
    if any(r.dtype != FLOAT32 or r.kind not in (STATE, OUTPUT) or _size(r.shape) == 0 for r in gradients):
        return False
    return skeleton.outputs[0] == (FLOAT64, (len(clip_pieces([_size(r.shape) for r in gradients])),))


def _clip_factor_checkable(skeleton: Any) -> bool:
    """clip_factor(partials, max_norm): the last group's partials (binary64 [P], an earlier output, P >= 1) named by
    argument 0, max_norm a binary64; out the factor, binary32 [1]."""
    inputs, args = skeleton.inputs, skeleton.args
    if len(inputs) != 1 or len(args) != 2 or args[0] != bytes([TAG_INPUT]) + bytes(31) or args[1][0] != TAG_FLOAT64:
        return False
    partials = inputs[0]
    return (partials.kind == OUTPUT and partials.dtype == FLOAT64 and len(partials.shape) == 1 and _size(partials.shape) != 0
            and tuple(skeleton.outputs) == ((FLOAT32, (1,)),))  # fmt: skip


def _sgd_checkable(skeleton: Any, output: int) -> bool:
    """sgd(p, g, [buffer], scalars, nesterov): the tensors binary32 state tensors or earlier outputs named in
    order, p, g (and the buffer) of one non-zero size, the scalars 3 values, nesterov a bool; out p' (and the
    buffer) binary32 of that size."""
    inputs, args, outputs = skeleton.inputs, skeleton.args, skeleton.outputs
    count = len(inputs)
    if count not in (3, 4) or len(args) != count + 1 or len(outputs) != count - 2 or not 0 <= output < count - 2:
        return False
    if any(args[k] != bytes([TAG_INPUT]) + k.to_bytes(31, "big") for k in range(count)):
        return False
    if args[count][0] != TAG_BOOL or int.from_bytes(args[count][1:], "big") > 1:
        return False
    size = _size(inputs[0].shape)
    sizes = [size] * (count - 1) + [3]
    return (size != 0 and all(r.kind in (STATE, OUTPUT) and r.dtype == FLOAT32 and _size(r.shape) == n for r, n in zip(inputs, sizes))
            and all(code == FLOAT32 and _size(shape) == size for code, shape in outputs))  # fmt: skip


def scalar_checkable(skeleton: Any, output: int) -> bool:
    """Whether ScalarRules checks every element of this output (`referee_kit.Skeleton`)."""
    if skeleton.kernel == "clip_scale":
        return output in (0, 1) and _clip_checkable(skeleton)
    if skeleton.kernel == "clip_sum":
        return output == 0 and _clip_sum_checkable(skeleton)
    if skeleton.kernel == "clip_factor":
        return output == 0 and _clip_factor_checkable(skeleton)
    if skeleton.kernel == "sgd":
        return _sgd_checkable(skeleton, output)
    if skeleton.kernel not in SCALAR_KERNELS:
        return False
    count = SCALAR_COUNT[skeleton.kernel]
    numbers = 5 if skeleton.kernel == "adamw_scalars" else 3
    return (output == 0 and skeleton.outputs == ((FLOAT32, (count,)),) and len(skeleton.inputs) == 1
            and skeleton.inputs[0].kind == HEADER and len(skeleton.args) == numbers + 4
            and _args_checkable(skeleton, numbers))  # fmt: skip


def scalar_reads(skeleton: Any, output: int, element: int) -> list[tuple[int, int, int]]:
    """(input k, first element, count) of each run the element reads, in `prove_element`'s order; a read
    of the entry's own output b has k = SELF_READ + b (protocol.referee_kit): a scalar the header (k 0, elements 0-1),
    partial c partial c − 1 (none for c = 0) then its piece, the factor the last partial; sgd's element e p, g
    (and the buffer) at e, then the scalars' weight decay and momentum (and lr for p')."""
    if not scalar_checkable(skeleton, output) or not 0 <= element < _size(skeleton.outputs[output][1]):
        raise ValueError(f"{skeleton.kernel} output {output} element {element} is not checkable by ScalarRules")
    if skeleton.kernel == "sgd":
        count = len(skeleton.inputs)
        return [(k, element, 1) for k in range(count - 1)] + [(count - 1, 0, 3 - output)]
    if skeleton.kernel == "clip_factor":  # the last group's last running value
        return [(0, _size(skeleton.inputs[0].shape) - 1, 1)]
    if skeleton.kernel not in CLIP_KERNELS:
        return [(0, 0, 2)]
    started = skeleton.kernel == "clip_sum" and skeleton.inputs[0].dtype == FLOAT64
    own = SELF_READ + (0 if skeleton.kernel == "clip_sum" else 1)
    pieces = [(k + started, first, count) for k, first, count in clip_pieces([_size(r.shape) for r in skeleton.inputs[started:]])]
    if skeleton.kernel == "clip_scale" and output == 0:
        return [(own, len(pieces) - 1, 1)]
    before = [(own, element - 1, 1)] if element else [(0, _size(skeleton.inputs[0].shape) - 1, 1)] if started else []
    return before + [pieces[element]]
