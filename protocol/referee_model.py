"""The level-3 referee as an executable spec (docs/referee.md, "Elements"): for one output element of one
recorded kernel call, exactly which input elements it reads (`dependencies`) and the sequence of
binary32 operations of docs/arithmetic.md that produces it (`check_element`), written one scalar
operation at a time so the Vyper referee can follow it line by line.

Every operation goes through `add`, `sub`, `mul`, `div`, `sqrt` (binary32, round to nearest even) or an
exact one (comparison, selection, negation, scaling by a power of two built from bits). A reduction
is a fold from +0 in the document's order. A fold of more than `MAX_FOLD` terms is checked in pieces:
its running value after every `MAX_FOLD` terms is an intermediate the worker commits (`partial_sums`:
the same fold's own values, so no bit changes), and each piece starts from the previous one.

Keys of proven values: `(k, i)` is element i (row-major) of input k of the entry; `(name, i)` is element
i of a named intermediate the worker commits when a dispute reaches the entry (`INTERMEDIATES`:
cross-entropy's per-row loss "nll", whose mean would otherwise read every logit, and conv2d's column
gradients "dcols", which its input gradient sums over the kernel window);
`("partial", c)` is the running value of the element's fold after `MAX_FOLD·(c + 1)` terms (for the column
folds FoldRules checks in pieces, `recorded_fold`, and the loss folds RowRules does, cross-entropy's mean and
embedding_backward's dW, `has_running_values`: after c + 1 pieces of its own length, committed as an output
of the entry); `("stats", i)` is element i of a row-pieced entry's statistics, its last output (`row_piece_keys`:
docs/referee.md, "Rows in pieces").

NumPy scalars only, no torch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol import row_pieces
from protocol.spec import canonical_json

F32 = np.float32
ZERO, HALF, ONE, TWO = F32(0.0), F32(0.5), F32(1.0), F32(2.0)
MAX_FOLD = 256

# the constants of docs/arithmetic.md, section 2, by their bit patterns
def _bits(pattern: int) -> np.float32:
    return np.array([pattern], dtype=np.uint32).view(F32)[0]


EXP_OVERFLOW, EXP_UNDERFLOW = _bits(0x42B17218), _bits(0xC2CFF1B5)
LOG2E, LN2_HI, LN2_LO = _bits(0x3FB8AA3B), _bits(0x3F317200), _bits(0x35BFBE8E)
EXP_COEFFS = tuple(F32(1.0 / f) for f in (5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0))
SQRT2 = _bits(0x3FB504F3)
LOG_COEFFS = tuple(F32(1.0 / k) for k in (9.0, 7.0, 5.0, 3.0))
FRAC_1_SQRT_2, FRAC_1_SQRT_2PI = _bits(0x3F3504F3), _bits(0x3ECC422A)
ERF_P = F32(0.3275911)
TANH_SMALL, TANH_ONE = F32(0.2), F32(9.0)
TANH_COEFFS = tuple(F32(c) for c in (62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0))
GELU_TANH_K0, GELU_TANH_K1, GELU_TANH_K3 = _bits(0x3F4C422A), _bits(0x3D372713), _bits(0x3E095D4F)
ERF_COEFFS = tuple(F32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))


class ElementError(ValueError):
    """The element cannot be checked as asked (unknown kernel, index out of range, a needed value not
    proven, a fold too long for one check)."""


# --------------------------------------------------------------------------------------------------
# binary32 primitives (what the Vyper soft-float provides)
# --------------------------------------------------------------------------------------------------


def _f(x: Any) -> np.float32:
    if not isinstance(x, np.float32):
        raise TypeError(f"binary32 operand expected, got {type(x).__name__}")
    return x


def add(a: np.float32, b: np.float32) -> np.float32:
    with np.errstate(all="ignore"):
        return _f(_f(a) + _f(b))


def sub(a: np.float32, b: np.float32) -> np.float32:
    with np.errstate(all="ignore"):
        return _f(_f(a) - _f(b))


def mul(a: np.float32, b: np.float32) -> np.float32:
    with np.errstate(all="ignore"):
        return _f(_f(a) * _f(b))


def div(a: np.float32, b: np.float32) -> np.float32:
    with np.errstate(all="ignore"):
        return _f(_f(a) / _f(b))


def sqrt(a: np.float32) -> np.float32:
    with np.errstate(all="ignore"):
        return _f(np.sqrt(_f(a)))


def pow2(n: int) -> np.float32:
    """2^n for n in [−126, 127], from its bits (exact)."""
    return np.array([(n + 127) << 23], dtype=np.int32).view(F32)[0]


def exp(x: np.float32) -> np.float32:
    if x != x:
        return F32(np.nan)
    if x > EXP_OVERFLOW:
        return F32(np.inf)
    if x < EXP_UNDERFLOW:
        return ZERO
    n = F32(np.rint(mul(x, LOG2E)))  # round half to even: exact at these magnitudes
    r = sub(sub(x, mul(n, LN2_HI)), mul(n, LN2_LO))
    p = EXP_COEFFS[0]
    for c in EXP_COEFFS[1:]:
        p = add(mul(p, r), c)
    ni = int(n)
    half = ni >> 1
    return mul(mul(p, pow2(half)), pow2(ni - half))


def log(x: np.float32) -> np.float32:
    if x != x or x < ZERO:
        return F32(np.nan)
    if x == ZERO:
        return F32(-np.inf)
    if x == F32(np.inf):
        return x
    adjust = 0
    if x < F32(2.0**-126):
        x, adjust = mul(x, F32(2.0**23)), -23
    bits = int(np.array([x], dtype=F32).view(np.int32)[0])
    e = ((bits >> 23) & 0xFF) - 127 + adjust
    m = np.array([(bits & 0x007FFFFF) | 0x3F800000], dtype=np.int32).view(F32)[0]
    if m > SQRT2:
        m, e = mul(m, HALF), e + 1
    f = sub(m, ONE)
    s = div(f, add(TWO, f))
    z = mul(s, s)
    q = LOG_COEFFS[0]
    for c in LOG_COEFFS[1:]:
        q = add(mul(q, z), c)
    q = mul(q, z)
    r = add(s, mul(s, q))
    ef = F32(e)  # an integer of at most 9 bits: exact
    return add(mul(ef, LN2_HI), add(mul(ef, LN2_LO), add(r, r)))


def tanh(x: np.float32) -> np.float32:
    if x != x:
        return x
    a = abs(x)
    if a < TANH_SMALL:
        z = mul(x, x)
        q = TANH_COEFFS[0]
        for c in TANH_COEFFS[1:]:
            q = add(mul(q, z), c)
        return add(x, mul(x, mul(q, z)))
    if a < TANH_ONE:
        y = sub(ONE, div(TWO, add(exp(add(a, a)), ONE)))
        return -y if x < ZERO else y
    return -ONE if x < ZERO else ONE


def sigmoid(x: np.float32) -> np.float32:
    return div(ONE, add(ONE, exp(-x)))


def _gelu_tanh_inner(x: np.float32) -> np.float32:
    return mul(add(x, mul(GELU_TANH_K1, mul(mul(x, x), x))), GELU_TANH_K0)


def phi_cdf(x: np.float32) -> np.float32:
    u = mul(x, FRAC_1_SQRT_2)
    a = abs(u)
    t = div(ONE, add(ONE, mul(ERF_P, a)))
    q = ERF_COEFFS[0]
    for c in ERF_COEFFS[1:]:
        q = add(mul(q, t), c)
    q = mul(q, t)
    erf = sub(ONE, mul(q, exp(-mul(a, a))))
    if u < ZERO:
        erf = -erf
    return mul(add(ONE, erf), HALF)


# --------------------------------------------------------------------------------------------------
# Entries, keys and folds
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """What the referee knows of an entry: the kernel, its arguments (a tensor argument's place holds
    ("input", k)), the shapes its inputs are read as, and its output shapes."""

    kernel: str
    args: tuple[Any, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shapes: tuple[tuple[int, ...], ...]

    def arg_input(self, position: int) -> int | None:
        """The input number of the tensor argument at `position` (None when that argument is None)."""
        a = self.args[position]
        if isinstance(a, tuple) and len(a) == 2 and a[0] == "input":
            return int(a[1])
        if a is None:
            return None
        raise ElementError(f"{self.kernel}: argument {position} is not a tensor")


Key = tuple[Any, int]


@dataclass(frozen=True)
class Fold:
    """out = epilogue(fold of terms from +0): a term is one proven value or the product of two."""

    terms: tuple[tuple[Key, ...], ...]
    epilogue: Callable[[np.float32, Callable[[Key], np.float32]], np.float32]
    epilogue_keys: tuple[Key, ...] = ()
    length: int = MAX_FOLD  # terms of one piece
    # whether the record carries the running values as an output of the entry (FoldRules' pieces,
    # `recorded_fold`): then the final value is the last piece from ("partial", pieces − 2), and the
    # epilogue; otherwise the epilogue of ("partial", pieces − 1)
    recorded: bool = False

    def pieces(self) -> int:
        return max(1, -(-len(self.terms) // self.length))

    def piece_terms(self, piece: int) -> tuple[tuple[Key, ...], ...]:
        return self.terms[piece * self.length : (piece + 1) * self.length]


PADDING: Key = ("zero", 0)  # an im2col position outside the image: the constant +0, never proven


def _read(value: Callable[[Key], np.float32], key: Key) -> np.float32:
    return ZERO if key == PADDING else value(key)


def _term(value: Callable[[Key], np.float32], keys: tuple[Any, ...]) -> np.float32:
    """One value, the product of two, or ("sqdiff", a, b): (a − b) × (a − b) (mse's term)."""
    if keys[0] == "sqdiff":
        d = sub(_read(value, keys[1]), _read(value, keys[2]))
        return mul(d, d)
    return _read(value, keys[0]) if len(keys) == 1 else mul(_read(value, keys[0]), _read(value, keys[1]))


def _term_keys(term: tuple[Any, ...]) -> tuple[Key, ...]:
    return tuple(k for k in (term[1:] if term[0] == "sqdiff" else term) if k != PADDING)


def _none(total: np.float32, value: Callable[[Key], np.float32]) -> np.float32:
    return total


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _rows(shape: Sequence[int]) -> tuple[int, int]:
    """(rows, width) of a tensor read as rows of its last axis."""
    width = int(shape[-1]) if shape else 1
    return _size(shape) // max(width, 1), width


# --------------------------------------------------------------------------------------------------
# Per-kernel element definitions
# --------------------------------------------------------------------------------------------------


def _linear(call: Call, output: int, e: int) -> Fold:
    x, w, b = call.arg_input(0), call.arg_input(1), call.arg_input(2)
    assert x is not None and w is not None
    _, k_width = _rows(call.in_shapes[x])
    n_width = int(call.in_shapes[w][0])
    r, n = divmod(e, n_width)
    terms = tuple(((x, r * k_width + k), (w, n * k_width + k)) for k in range(k_width))
    if b is None:
        return Fold(terms, _none)
    return Fold(terms, lambda total, v: add(total, v((b, n))), ((b, n),))


def _linear_backward(call: Call, output: int, e: int) -> Fold:
    x, w, dy = (call.arg_input(i) for i in range(3))
    assert x is not None and w is not None and dy is not None
    rows, k_width = _rows(call.in_shapes[x])
    n_width = int(call.in_shapes[w][0])
    if output == 0:  # dx[r, k] = fold over n of dy[r, n] · w[n, k]
        r, k = divmod(e, k_width)
        return Fold(tuple(((dy, r * n_width + n), (w, n * k_width + k)) for n in range(n_width)), _none)
    if output == 1:  # dw[n, k] = fold over r of dy[r, n] · x[r, k]
        n, k = divmod(e, k_width)
        return Fold(tuple(((dy, r * n_width + n), (x, r * k_width + k)) for r in range(rows)), _none)
    return Fold(tuple(((dy, r * n_width + e),) for r in range(rows)), _none)  # db[n] = fold over r of dy[r, n]


def _sum_rows(call: Call, output: int, e: int) -> Fold:
    rows, width = int(call.in_shapes[0][0]), _size(call.in_shapes[0][1:])
    return Fold(tuple(((0, r * width + e),) for r in range(rows)), _none)


def _cross_entropy_loss(call: Call, output: int, e: int) -> Fold:
    rows = int(call.in_shapes[0][0])
    return Fold(tuple((("nll", r),) for r in range(rows)), lambda total, v: div(total, F32(rows)))


def _unravel(e: int, shape: Sequence[int]) -> list[int]:
    index = []
    for n in reversed(shape):
        e, i = divmod(e, int(n)) if n else (e, 0)
        index.append(i)
    return index[::-1]


def _ravel(index: Sequence[int], shape: Sequence[int]) -> int:
    flat = 0
    for i, n in zip(index, shape):
        flat = flat * int(n) + i
    return flat


def _broadcast_source(out_index: Sequence[int], shape: Sequence[int]) -> int:
    """Flat index into a tensor of `shape` broadcast (right-aligned, size-1 axes repeated) to the output."""
    tail = list(out_index[len(out_index) - len(shape) :]) if shape else []
    return _ravel([0 if int(n) == 1 else i for i, n in zip(tail, shape)], shape)


def _matmul(call: Call, output: int, e: int) -> Fold:
    """c[..., m, n] = fold over k of a[..., m, k] · b[..., k, n] (a batch of one broadcasts)."""
    a_shape, b_shape = call.in_shapes[0], call.in_shapes[1]
    out_shape = call.out_shapes[0]
    index = _unravel(e, out_shape)
    lead, m, n = index[:-2], index[-2], index[-1]
    width = int(a_shape[-1])

    def flat(shape: Sequence[int], row: int, col: int) -> int:
        lead_shape = shape[:-2]
        lead_index = [0 if int(s) == 1 else i for i, s in zip(lead[len(lead) - len(lead_shape) :], lead_shape)]
        return _ravel([*lead_index, row, col], shape)

    return Fold(tuple(((0, flat(a_shape, m, k)), (1, flat(b_shape, k, n))) for k in range(width)), _none)


FOLDS: dict[tuple[str, int], Callable[[Call, int, int], Fold]] = {
    ("matmul", 0): _matmul,
    ("linear", 0): _linear,
    ("linear_backward", 0): _linear_backward, ("linear_backward", 1): _linear_backward,
    ("linear_backward", 2): _linear_backward,
    ("sum_rows", 0): _sum_rows,
    ("cross_entropy", 0): _cross_entropy_loss,
}  # fmt: skip


def _row_keys(k: int, row: int, width: int) -> list[Key]:
    return [(k, row * width + j) for j in range(width)]


ELEMENTWISE = {"relu", "gelu", "silu", "gelu_tanh", "tanh", "relu_backward", "gelu_backward", "silu_backward",
               "gelu_tanh_backward", "tanh_backward", "mse_backward", "rotary", "rotary_backward", "scale", "adamw",
               "sgd"}  # fmt: skip


def _elementwise_deps(call: Call, output: int, e: int) -> list[Key]:
    kernel = call.kernel
    if kernel in ("relu", "gelu", "silu", "gelu_tanh", "tanh"):
        return [(0, e)]
    if kernel in ("relu_backward", "gelu_backward", "silu_backward", "gelu_tanh_backward", "tanh_backward", "mse_backward"):
        return [(0, e), (1, e)]
    if kernel in ("rotary", "rotary_backward"):  # x[…, t, j], its partner x[…, t, j ± H], cos and sin at (t, j)
        steps, width = (int(n) for n in call.in_shapes[1])
        j, t = e % width, (e // width) % steps
        half = width // 2
        partner = e + half if j < half else e - half
        return [(0, e), (0, partner), (1, t * width + j), (2, t * width + j)]
    if kernel == "scale":
        return [(0, e), (1, 0)]
    if kernel == "adamw":  # p, g, m, v, scalars (decay, β1, 1−β1, β2, 1−β2, c2, eps, step_size)
        if output == 1:
            return [(1, e), (2, e), (4, 1), (4, 2)]
        if output == 2:
            return [(1, e), (3, e), (4, 3), (4, 4)]
        return [(0, e), (1, e), (2, e), (3, e)] + [(4, i) for i in range(8)]
    if kernel == "sgd":  # p, g, [buffer], scalars (weight_decay, momentum, lr)
        s = len(call.in_shapes) - 1
        read = [(k, e) for k in range(s)]
        return read + [(s, 0), (s, 1)] + ([(s, 2)] if output == 0 else [])
    raise ElementError(f"no element rule for kernel {kernel!r}")


def _move_source(call: Call, e: int) -> Key | None:
    """The one input element a move (or an elementwise kernel with one operand) copies to output e;
    None where the output is +0 (`place` beyond its source)."""
    kernel, out_shape = call.kernel, call.out_shapes[0]
    if kernel in ("mul_scalar", "fill_above_diagonal"):
        return (0, e)
    if kernel == "transpose":
        index = _unravel(e, out_shape)
        index[-1], index[-2] = index[-2], index[-1]
        return (0, _ravel(index, call.in_shapes[0]))
    if kernel == "move":  # args: (("input", 0), sizes, strides, offset) over the source's flat elements
        sizes, strides, offset = call.args[1], call.args[2], call.args[3]
        return (0, int(offset) + sum(i * int(st) for i, st in zip(_unravel(e, sizes), strides)))
    if kernel == "place":  # the source's elements first, +0 after them
        return (0, e) if e < _size(call.in_shapes[0]) else None
    if kernel == "im2col":  # cols[b, (c, i, j), (oh, ow)] = x[b, c, oh·s + i − p, ow·s + j − p], +0 outside the image
        kernel_size, stride, padding = (int(a) for a in call.args[1:4])
        b, q, l = _unravel(e, out_shape)
        ow_n = (int(call.in_shapes[0][3]) + 2 * padding - kernel_size) // stride + 1
        c, i, j = q // (kernel_size * kernel_size), q // kernel_size % kernel_size, q % kernel_size
        key = _image(call, b, c, l // ow_n * stride + i - padding, l % ow_n * stride + j - padding)
        return None if key == PADDING else key
    if kernel == "cat":
        dim = int(call.args[-1]) % len(out_shape)
        index = _unravel(e, out_shape)
        for k, shape in enumerate(call.in_shapes):
            if index[dim] < int(shape[dim]):
                return (k, _ravel(index, shape))
            index[dim] -= int(shape[dim])
    raise ElementError(f"no element rule for kernel {kernel!r}")


MOVES = {"mul_scalar", "fill_above_diagonal", "transpose", "move", "place", "cat", "add", "mul", "gather", "where",
         "scaled_keep", "dropout_keep", "batch_index", "im2col"}  # fmt: skip


def _gather_width(call: Call) -> int:
    """Elements of one row of gather's source: a 1-D source (a dataset's labels) has rows of one."""
    return _size(call.in_shapes[0][1:])


def _batch_index_deps(call: Call, e: int) -> list[Key]:
    """idx[b] = orders[epoch, position + b]: the header's cursor, then every orders element it may select
    (position is a multiple of the batch size B, so position + b is b modulo B)."""
    epochs, count = (int(n) for n in call.in_shapes[1])
    size = int(call.out_shapes[0][0])
    return [("epoch", 0), ("position", 0)] + [(1, r * count + c) for r in range(epochs) for c in range(e, count, size)]


def _move_deps(call: Call, e: int) -> list[Key]:
    if call.kernel == "dropout_keep":  # the header's seed and step (and the call's p and number)
        return [("seed", 0), ("step", 0)]
    if call.kernel in ("where", "scaled_keep"):
        index = _unravel(e, call.out_shapes[0])
        inputs = (0, 1, 2) if call.kernel == "where" else (0, 1)
        return _unique([(k, _broadcast_source(index, call.in_shapes[k])) for k in inputs])
    if call.kernel in ("add", "mul"):
        index = _unravel(e, call.out_shapes[0])
        return _unique([(k, _broadcast_source(index, call.in_shapes[k])) for k in (0, 1)])
    if call.kernel == "batch_index":
        return _batch_index_deps(call, e)
    if call.kernel == "gather":  # out[p, d] = weight[ids[p], d]: the id, then the row it selects
        width = _gather_width(call)
        p, d = divmod(e, width)
        return [(1, p)] + [(0, v * width + d) for v in range(int(call.in_shapes[0][0]))]
    if call.kernel == "fill_above_diagonal":  # above the diagonal the argument replaces the value
        index = _unravel(e, call.out_shapes[0])
        return [] if index[-1] > index[-2] else [(0, e)]
    source = _move_source(call, e)
    return [] if source is None else [source]


def _row_deps(call: Call, output: int, e: int) -> list[Key]:
    kernel = call.kernel
    if kernel in ("softmax", "softmax_backward"):
        _, width = _rows(call.in_shapes[0])
        r = e // width
        return _row_keys(0, r, width) + (_row_keys(1, r, width) if kernel == "softmax_backward" else [])
    if kernel == "cross_entropy" and output == "nll":  # the intermediate nll[r]
        _, width = _rows(call.in_shapes[0])
        return _row_keys(0, e, width) + [(1, e)]
    if kernel == "cross_entropy_backward":
        r, _ = divmod(e, _rows(call.in_shapes[0])[1])
        return _row_keys(0, r, _rows(call.in_shapes[0])[1]) + [(1, r)]
    if kernel == "layer_norm":
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width) if output < 2 else (e, 0)
        return _row_keys(0, r, width) + ([(1, j), (2, j)] if output == 0 else [])
    if kernel == "rms_norm":
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width) if output < 2 else (e, 0)
        return _row_keys(0, r, width) + ([(1, j)] if output == 0 else [])
    if kernel == "rms_norm_backward" and output == 0:  # xhat, rstd, w, dy
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width)
        return _row_keys(0, r, width) + [(1, r)] + [(2, i) for i in range(width)] + _row_keys(3, r, width)
    if kernel == "layer_norm_backward":  # xhat, rstd, w, dy
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width)
        return _row_keys(0, r, width) + [(1, r)] + [(2, i) for i in range(width)] + _row_keys(3, r, width)
    raise ElementError(f"no element rule for kernel {kernel!r}")


def _layer_norm_column(call: Call, output: int, e: int) -> Fold:
    """layer_norm_backward's dw[j] = fold over r of dy[r, j] · x̂[r, j]; db[j] = fold over r of dy[r, j]."""
    rows, width = _rows(call.in_shapes[0])
    if output == 1:
        return Fold(tuple(((3, r * width + e), (0, r * width + e)) for r in range(rows)), _none)
    return Fold(tuple(((3, r * width + e),) for r in range(rows)), _none)


def _rms_norm_column(call: Call, output: int, e: int) -> Fold:
    """rms_norm_backward's dw[j] = fold over r of dy[r, j] · x̂[r, j]."""
    rows, width = _rows(call.in_shapes[0])
    return Fold(tuple(((3, r * width + e), (0, r * width + e)) for r in range(rows)), _none)


def _fold_head_groups(call: Call, output: int, e: int) -> Fold:
    """kv head g of [B, n_heads / G, …] = fold over m < G of d[b, g·G + m, …] (G = the argument)."""
    group = int(call.args[1])
    out_shape = call.out_shapes[0]
    index = _unravel(e, out_shape)
    return Fold(tuple(((0, _ravel([index[0], index[1] * group + m, *index[2:]], call.in_shapes[0])),)
                      for m in range(group)), _none)  # fmt: skip


def _conv_geometry(call: Call) -> tuple[int, int, int, int, int, int, int, int, int, int]:
    """(B, C, H, W, O, k, stride, padding, OH, OW) of a conv2d call (x and weight its first inputs)."""
    batch, channels, height, width = (int(n) for n in call.in_shapes[0])
    out_channels, kernel = int(call.in_shapes[1][0]), int(call.in_shapes[1][-1])
    stride, padding = int(call.args[-2]), int(call.args[-1])
    oh, ow = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    return batch, channels, height, width, out_channels, kernel, stride, padding, oh, ow


def _image(call: Call, b: int, c: int, row: int, col: int) -> Key:
    """x[b, c, row, col], or the padding's +0 outside the image."""
    _, channels, height, width = (int(n) for n in call.in_shapes[0])
    if not (0 <= row < height and 0 <= col < width):
        return PADDING
    return (0, ((b * channels + c) * height + row) * width + col)


def _conv2d(call: Call, output: int, e: int) -> Fold:
    """y[b, o, oh, ow] = fold over q = (c, i, j) of w[o, q] · cols[b, q, (oh, ow)], then + bias[o]."""
    _, channels, _, _, out_channels, kernel, stride, padding, oh_n, ow_n = _conv_geometry(call)
    b, o, oh, ow = _unravel(e, call.out_shapes[0])
    q_n = channels * kernel * kernel
    terms = tuple(((1, o * q_n + q), _image(call, b, q // (kernel * kernel), oh * stride + (q // kernel) % kernel - padding,
                                              ow * stride + q % kernel - padding)) for q in range(q_n))  # fmt: skip
    bias = call.arg_input(2)
    if bias is None:
        return Fold(terms, _none)
    return Fold(terms, lambda total, v: add(total, v((bias, o))), ((bias, o),))


def _conv2d_backward(call: Call, output: int, e: int) -> Fold:
    """dweight[o, q] = fold over (b, l) of dy[b, o, l] · cols[b, q, l]; dbias[o] = fold over (b, l) of
    dy[b, o, l]; dx[b, c, h, w] = fold over the (i, j) whose window covers (h, w) of dcols[b, (c, i, j), l]."""
    batch, channels, height, width, out_channels, kernel, stride, padding, oh_n, ow_n = _conv_geometry(call)
    q_n, l_n = channels * kernel * kernel, oh_n * ow_n
    if output == 1:
        o, q = divmod(e, q_n)
        c, i, j = q // (kernel * kernel), (q // kernel) % kernel, q % kernel
        return Fold(tuple(((2, (b * out_channels + o) * l_n + l), _image(call, b, c, (l // ow_n) * stride + i - padding,
                                                                          (l % ow_n) * stride + j - padding))
                          for b in range(batch) for l in range(l_n)), _none)  # fmt: skip
    if output == 2:
        return Fold(tuple(((2, (b * out_channels + e) * l_n + l),) for b in range(batch) for l in range(l_n)), _none)
    return Fold(tuple((("dcols", index),) for index in _covering(call.out_shapes[0], kernel, stride, padding, e)), _none)


def _covering(image: Sequence[int], kernel: int, stride: int, padding: int, e: int) -> list[int]:
    """The column gradients dx[b, c, h, w] folds (element e of an image [B, C, H, W]): the flat indices into
    dcols [B, C·k·k, OH·OW] of the (i, j), row-major, whose window (oh, ow) covers (h, w)."""
    _, channels, height, width = (int(n) for n in image)
    oh_n, ow_n = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    q_n, l_n = channels * kernel * kernel, oh_n * ow_n
    b, c, h, w = _unravel(e, image)
    found = []
    for i in range(kernel):
        for j in range(kernel):
            row, col = h + padding - i, w + padding - j
            if row % stride or col % stride or not (0 <= row // stride < oh_n and 0 <= col // stride < ow_n):
                continue
            found.append((b * q_n + (c * kernel + i) * kernel + j) * l_n + (row // stride) * ow_n + col // stride)
    return found


def _col2im(call: Call, output: int, e: int) -> Fold:
    """col2im(dcols, shape, k, s, p): dx[b, c, h, w] = fold over the covering (i, j), row-major, of dcols[b, (c, i, j),
    (oh, ow)] (conv2d_backward's input gradient, recorded as its own entry: engine/portable/record.py)."""
    kernel, stride, padding = (int(a) for a in call.args[2:5])
    return Fold(tuple(((0, index),) for index in _covering(call.args[1], kernel, stride, padding, e)), _none)


# col2im over more than COL2IM_ROWS covering rows (R = ceil(k / s)) is checked in pieces of COL2IM_PIECE_TERMS // R
# whole rows from the running values the record adds as output 1 (DataRules, docs/referee.md "Data rules built")
COL2IM_ROWS, COL2IM_PIECE_TERMS = 4, 20


def col2im_piece(call: Call, output: int, e: int) -> tuple[int | None, list[Key]]:
    """A col2im recorded in pieces (two outputs: dx and the running values [P − 1, B, C, H, W]): element e's piece
    (output 1: slot t of element e % |dx| is its fold after its first (t + 1)·G covering rows, all of them where it
    has fewer; output 0: dx, its last piece). (the running value the piece starts from, an element of output 1, or
    None for +0; the piece's terms: dcols at the covering (i, j), row-major, of its rows)."""
    kernel, stride, padding = (int(a) for a in call.args[2:5])
    if -(-kernel // stride) <= COL2IM_ROWS:
        raise ElementError(f"a col2im over {-(-kernel // stride)} covering rows is one fold, not in pieces")
    image = tuple(int(n) for n in call.args[1])
    size = _size(image)
    slot, folded = divmod(e, size)
    q_n, l_n = int(call.in_shapes[0][1]), int(call.in_shapes[0][2])
    rows: dict[int, list[Key]] = {}  # the covering terms by their window row i, ascending (row-major order)
    for index in _covering(image, kernel, stride, padding, folded):
        rows.setdefault((index // l_n) % q_n // kernel % kernel, []).append((0, index))
    group = COL2IM_PIECE_TERMS // -(-kernel // stride)
    piece = slot if output == 1 else max(0, -(-len(rows) // group) - 1)
    before = (piece - 1) * size + folded if piece else None
    return before, [key for row in list(rows.values())[piece * group : (piece + 1) * group] for key in row]


def _col2im_pieced(call: Call) -> bool:
    return call.kernel == "col2im" and len(call.out_shapes) == 2


def _avg_pool(call: Call, output: int, e: int) -> Fold:
    kernel, stride = int(call.args[1]), int(call.args[2])
    _, channels, height, width = (int(n) for n in call.in_shapes[0])
    b, c, oh, ow = _unravel(e, call.out_shapes[0])
    terms = tuple(((0, ((b * channels + c) * height + oh * stride + i) * width + ow * stride + j),)
                  for i in range(kernel) for j in range(kernel))  # fmt: skip
    return Fold(terms, lambda total, v: div(total, F32(kernel * kernel)))


def _mse(call: Call, output: int, e: int) -> Fold:
    """fold over every element, row-major, of (out − y) × (out − y), then / float(count)."""
    count = _size(call.in_shapes[0])
    return Fold(tuple(("sqdiff", (0, i), (1, i)) for i in range(count)), lambda total, v: div(total, F32(count)))


FOLDS[("mse", 0)] = _mse
FOLDS[("conv2d", 0)] = _conv2d
for _number in range(3):
    FOLDS[("conv2d_backward", _number)] = _conv2d_backward
FOLDS[("avg_pool", 0)] = _avg_pool
FOLDS[("col2im", 0)] = _col2im
FOLDS[("rms_norm_backward", 1)] = _rms_norm_column
FOLDS[("fold_head_groups", 0)] = _fold_head_groups
FOLDS[("layer_norm_backward", 1)] = _layer_norm_column
FOLDS[("layer_norm_backward", 2)] = _layer_norm_column


def _dcols(call: Call, output: str, e: int) -> Fold:
    """conv2d_backward's intermediate dcols[b, q, l] = fold over o of w[o, q] · dy[b, o, l]."""
    _, channels, _, _, out_channels, kernel, _, _, oh_n, ow_n = _conv_geometry(call)
    q_n, l_n = channels * kernel * kernel, oh_n * ow_n
    b, rest = divmod(e, q_n * l_n)
    q, l = divmod(rest, l_n)
    return Fold(tuple(((1, o * q_n + q), (2, (b * out_channels + o) * l_n + l)) for o in range(out_channels)), _none)


def _dcols_shape(call: Call) -> tuple[int, ...]:
    batch, channels, _, _, _, kernel, _, _, oh_n, ow_n = _conv_geometry(call)
    return (batch, channels * kernel * kernel, oh_n * ow_n)


INTERMEDIATES: dict[tuple[str, str], Callable[[Call], tuple[int, ...]]] = {
    ("cross_entropy", "nll"): lambda call: (int(call.in_shapes[0][0]),),
    ("conv2d_backward", "dcols"): _dcols_shape,
}
FOLDS[("conv2d_backward", "dcols")] = _dcols  # type: ignore[index]


def max_pool_piece(call: Call, output: int | str, e: int) -> tuple[int | None, int, int, int]:
    """max_pool's piece of element e of `output` (`protocol.data_rules.max_pool_piece`): over a window of at most
    MAX_POOL_WINDOW rows the whole window (no slot read, window e, rows 0 … k − 1); over a wider one, in pieces
    of 2 rows (the record's outputs 2 and 3 the running best and place after each but the last), (the slot read
    before it, as ("pool_best", i) and ("pool_place", i), or None; its window; its first row; its rows)."""
    from protocol.data_rules import MAX_POOL_WINDOW, max_pool_piece

    kernel = int(call.args[1])
    if kernel <= MAX_POOL_WINDOW:
        return None, e, 0, kernel
    return max_pool_piece(kernel, tuple(int(n) for n in call.out_shapes[0]), int(output), e)


def pool_overlap_piece(call: Call, output: int | str, e: int) -> tuple[int | None, tuple[int, int] | None]:
    """max_pool_backward over overlapping windows (k over s: the record carries the running values as output 1,
    slot t of an element its fold after its first t + 1 covering windows, row-major): the running value a piece
    reads (an element of output 1, ("pool_running", i); None: +0) and its window (flat index, the element's
    place in it; None: a slot past the element's windows copies the one before, dx of one no window covers is +0),
    as `protocol.data_rules.overlap_piece` says."""
    from protocol.data_rules import overlap_piece

    shape = tuple(int(n) for n in call.args[0])
    kernel, stride = int(call.args[-2]), int(call.args[-1])
    pooled = tuple(int(n) for n in call.in_shapes[-1])
    return overlap_piece(kernel, stride, shape, pooled, int(output), e)


def _pool_windows(call: Call, shape_arg: Sequence[int], h: int, w: int) -> list[tuple[int, int, int]]:
    """The windows (oh, ow), in row-major order, that cover (h, w), with the position q of (h, w) in each."""
    kernel, stride = int(call.args[-2]), int(call.args[-1])
    height, width = int(shape_arg[2]), int(shape_arg[3])
    oh_n, ow_n = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    found = []
    for oh in range(oh_n):
        for ow in range(ow_n):
            i, j = h - oh * stride, w - ow * stride
            if 0 <= i < kernel and 0 <= j < kernel:
                found.append((oh, ow, i * kernel + j))
    return found


def _skeleton_word(arg: Any) -> bytes:
    """An argument as the skeleton's word where `protocol.fold_rules` reads one: a tensor input, None (a
    zero word) or a non-negative integer; any other argument a word those never are."""
    from protocol import fold_rules

    if isinstance(arg, tuple) and len(arg) == 2 and arg[0] == "input":
        return bytes([fold_rules.TAG_INPUT]) + int(arg[1]).to_bytes(31, "big")
    if arg is None:
        return bytes(32)
    if isinstance(arg, int) and not isinstance(arg, bool) and 0 <= arg < 2**247:
        return bytes([fold_rules.TAG_INT]) + arg.to_bytes(31, "big")
    return b"\xff" * 32


def _shapes_of(call: Call) -> Any:
    """The call as `protocol.fold_rules` reads a parsed skeleton: its shapes and argument words."""
    from types import SimpleNamespace

    inputs = tuple(SimpleNamespace(shape=tuple(int(n) for n in s)) for s in call.in_shapes)
    return SimpleNamespace(kernel=call.kernel, inputs=inputs, outputs=tuple((1, tuple(s)) for s in call.out_shapes),
                           args=tuple(_skeleton_word(a) for a in call.args))


def recorded_fold(call: Call, output: int | str, e: int) -> tuple[Fold, int | None] | None:
    """For an entry whose record carries its folds' running values as its last output (FoldRules' pieces,
    `protocol.fold_rules.piecings`): (the fold of the folded element, cut in FoldRules' piece length,
    and the piece: c for element offset + c·size + e of the running values, None for output element e,
    its last piece and the epilogue). None for any other output or call."""
    found = _recorded_piece(call, output, e)
    if found is None or (call.kernel, found[0].output) not in FOLDS:  # embedding_backward's: `embedding_piece`
        return None
    piecing, piece, folded = found
    fold = FOLDS[(call.kernel, piecing.output)](call, piecing.output, folded)
    return Fold(fold.terms, fold.epilogue, fold.epilogue_keys, piecing.length, True), piece


def _recorded_piece(call: Call, output: int | str, e: int) -> tuple[Any, int | None, int] | None:
    """(the `fold_rules.Piecing`, the piece or None, the folded output's element) of `recorded_fold`."""
    from protocol import fold_rules

    if not isinstance(output, int):
        return None
    if call.kernel in fold_rules.LOSS_BASE_OUTPUTS:  # RowRules' loss folds in pieces (cross-entropy's mean, dW)
        base = fold_rules.LOSS_BASE_OUTPUTS[call.kernel]
    elif call.kernel in fold_rules.FOLD_KERNELS:
        base = fold_rules.BASE_OUTPUTS[call.kernel]
    else:
        return None
    if running_values_output(call) != base:  # no running values recorded: every element is one piece
        return None
    if call.kernel in fold_rules.LOSS_BASE_OUTPUTS:
        loss = fold_rules.loss_piecing(_shapes_of(call))
        pieced: tuple[Any, ...] = () if loss is None else (loss,)
    else:
        pieced = fold_rules.piecings(_shapes_of(call))
    for piecing in pieced:
        if output == base and piecing.offset <= e < piecing.offset + (piecing.pieces - 1) * piecing.size:
            piece, folded = divmod(e - piecing.offset, piecing.size)
            return piecing, piece, folded
        if output == piecing.output:
            return piecing, None, e
    return None


def has_running_values(call: Call, output: int | str, e: int) -> bool:
    """Whether the element is a piece of a fold whose running values the record carries as the entry's
    last output (FoldRules' column folds, RowRules' cross-entropy mean and embedding gradient)."""
    return _recorded_piece(call, output, e) is not None


def embedding_piece(call: Call, output: int | str, e: int) -> tuple[int, int, int, int]:
    """embedding_backward's (piece c, dW element, first position, positions) of an element: the whole
    fold (0, e, 0, P) unless the record carries its running values (`fold_rules.loss_piecing`): then
    output 0's element is its last piece, running value c·size + e piece c of element e."""
    positions = _size(call.in_shapes[0])
    found = _recorded_piece(call, output, e)
    if found is None:
        return 0, e, 0, positions
    piecing, piece, folded = found
    piece = piecing.pieces - 1 if piece is None else piece
    start = piece * piecing.length
    return piece, folded, start, min(piecing.length, positions - start)


def _has_statistics(call: Call) -> bool:
    """Whether the call is row-pieced and its last output is its rows' statistics (`row_pieces.statistics_output`;
    the kernel asked first: most calls are of no row kernel, and their shapes need not be gathered)."""
    return call.kernel in row_pieces.KERNELS and row_pieces.statistics_output(_shapes_of(call)) is not None


def running_values_output(call: Call) -> int:
    """The output holding a recorded fold's running values: the entry's last, or the one before a row-pieced
    entry's statistics, which the recorder appends after them."""
    last = len(call.out_shapes) - 1
    return last - 1 if _has_statistics(call) else last


def running_value_index(call: Call, output: int, e: int, piece: int) -> int:
    """The element of a recorded fold's running values (the entry's last output) that holds
    ("partial", piece) of element e of `output` (`recorded_fold`)."""
    found = _recorded_piece(call, output, e)
    if found is None:
        raise ElementError(f"{call.kernel} output {output} element {e} has no recorded running values")
    piecing, _, folded = found
    return piecing.offset + piece * piecing.size + folded


def dependencies(call: Call, output: int | str, e: int, piece: int | None = None) -> list[Key]:
    """The proven values that output element `e` of output `output` reads (`output` a name: element e of
    that intermediate). For a fold of more than MAX_FOLD terms, `piece` c names
    one piece: its terms plus the running value after the piece before (`("partial", c − 1)`); without
    `piece`, the final value reads the last running value and the epilogue's values."""
    _check_index(call, output, e)
    output = _named(call, output)
    row_keys = row_piece_keys(call, output, e, piece)
    if row_keys is not None:
        return row_keys
    if _col2im_pieced(call):  # the running value, then the piece's terms
        before, keys = col2im_piece(call, int(output), e)
        return ([("col2im_running", before)] if before is not None else []) + keys
    fold, piece = _fold_of(call, output, e, piece)
    if fold is not None:
        pieces = fold.pieces()
        if pieces == 1 and piece in (None, 0):
            return _unique([k for t in fold.terms for k in _term_keys(t)] + list(fold.epilogue_keys))
        if piece is None and not fold.recorded:
            return [("partial", pieces - 1)] + list(fold.epilogue_keys)
        last = piece is None
        piece = pieces - 1 if piece is None else piece
        if not 0 <= piece < pieces:
            raise ElementError(f"piece {piece} outside 0..{pieces - 1}")
        keys = [k for t in fold.piece_terms(piece) for k in _term_keys(t)]
        return _unique(([("partial", piece - 1)] if piece else []) + keys + (list(fold.epilogue_keys) if last else []))
    if call.kernel == "embedding_backward":  # every id of the piece (they select the terms), and dy's column d:
        width = int(call.in_shapes[1][-1])  # only the positions whose id is v are read
        piece, folded, start, count = embedding_piece(call, output, e)
        positions = range(start, start + count)
        running: list[Key] = [("partial", piece - 1)] if piece else []
        return running + [(0, p) for p in positions] + [(1, p * width + folded % width) for p in positions]
    if call.kernel in CLIP_KERNELS:
        return _clip_deps(call, _clip_piece_of(call, output, e, piece))
    if call.kernel in ("adamw_scalars", "sgd_scalars"):  # the header's seed and step
        return [("seed", 0), ("step", 0)]
    if call.kernel in ELEMENTWISE:
        return _elementwise_deps(call, output, e)
    if call.kernel == "max_pool":  # the window, in (i, j) order (a wide one: a piece's rows after the slot before it)
        before, e, first, rows = max_pool_piece(call, output, e)
        kernel, stride = int(call.args[1]), int(call.args[2])
        _, channels, height, width = (int(n) for n in call.in_shapes[0])
        b, c, oh, ow = _unravel(e, call.out_shapes[0])
        slot: list[Key] = [] if before is None else [("pool_best", before), ("pool_place", before)]
        return slot + [(0, ((b * channels + c) * height + oh * stride + i) * width + ow * stride + j)
                       for i in range(first, first + rows) for j in range(kernel)]  # fmt: skip
    if call.kernel == "max_pool_backward" and len(call.out_shapes) == 2:  # overlapping windows: one a piece
        before, window = pool_overlap_piece(call, output, e)
        return ([("pool_running", before)] if before is not None else []) + ([(0, window[0]), (1, window[0])] if window else [])
    if call.kernel in ("max_pool_backward", "avg_pool_backward"):  # the covering windows' dy (and winners)
        shape = call.args[0]
        b, c, h, w = _unravel(e, shape)
        oh_n, ow_n = (int(n) for n in call.in_shapes[-1][2:])
        keys: list[Key] = []
        for oh, ow, _ in _pool_windows(call, shape, h, w):
            flat = ((b * int(shape[1]) + c) * oh_n + oh) * ow_n + ow
            keys += [(0, flat), (1, flat)] if call.kernel == "max_pool_backward" else [(0, flat)]
        return keys
    if call.kernel in MOVES:
        return _move_deps(call, e)
    return _row_deps(call, output, e)


def _named(call: Call, output: int | str) -> int | str:
    """An output that a recorded entry holds as an intermediate of its own: cross-entropy's output 1 is
    its per-row losses, the intermediate "nll" the mean folds (engine/portable/record.py records it)."""
    return "nll" if call.kernel == "cross_entropy" and output == 1 else output


def _fold_of(call: Call, output: int | str, e: int, piece: int | None) -> tuple[Fold | None, int | None]:
    """The element's fold and piece (`recorded_fold` first: its pieces are addressed by output, so `piece`
    must be None there), or (None, piece) for an element that is not a fold."""
    recorded = recorded_fold(call, output, e)
    if recorded is not None:
        if piece is not None:
            raise ElementError(f"{call.kernel}: a recorded fold's pieces are elements of its running values")
        return recorded
    fold_rule = FOLDS.get((call.kernel, output))  # type: ignore[call-overload]
    return (fold_rule(call, output, e) if fold_rule is not None else None), piece


def _unique(keys: list[Key]) -> list[Key]:
    return list(dict.fromkeys(keys))


def _check_index(call: Call, output: int | str, e: int) -> None:
    if isinstance(output, str):
        shape = INTERMEDIATES.get((call.kernel, output))
        if shape is None or not 0 <= e < _size(shape(call)):
            raise ElementError(f"no intermediate {output} element {e} for {call.kernel}")
        return
    if not 0 <= output < len(call.out_shapes) or not 0 <= e < _size(call.out_shapes[output]):
        raise ElementError(f"{call.kernel} has no element {e} of output {output}")


class Proven:
    """Proven values by key; reading a key that was not proven is an error (so `dependencies` is exact)."""

    def __init__(self, values: Mapping[Key, Any]):
        self.values = values
        self.read: set[Key] = set()

    def __call__(self, key: Key) -> Any:
        if key not in self.values:
            raise ElementError(f"value {key} is needed but not proven")
        self.read.add(key)
        return self.values[key]


def _fold_value(fold: Fold, value: Proven, piece: int | None) -> np.float32:
    pieces = fold.pieces()
    if pieces > 1 and piece is None and not fold.recorded:  # the final value: the epilogue of the last running value
        return fold.epilogue(value(("partial", pieces - 1)), value)
    first = (pieces - 1 if fold.recorded else 0) if piece is None else piece  # a recorded fold's final value: its last piece
    total = ZERO if first == 0 else value(("partial", first - 1))
    for term in fold.piece_terms(first):
        total = add(total, _term(value, term))
    if pieces > 1 and piece is not None:
        return total  # a running value
    return fold.epilogue(total, value)


def _row_stats(value: Proven, k: int, row: int, width: int) -> tuple[np.float32, list[np.float32], np.float32]:
    """Softmax's m (first maximum), e_j = exp(z_j − m) and s = fold(e) for one row."""
    z = [value((k, row * width + j)) for j in range(width)]
    m = z[0]
    for zj in z[1:]:
        if zj > m:
            m = zj
    es = [exp(sub(zj, m)) for zj in z]
    s = ZERO
    for ej in es:
        s = add(s, ej)
    return m, es, s


def _mean_fold(values: Sequence[np.float32], width: int) -> np.float32:
    total = ZERO
    for v in values:
        total = add(total, v)
    return div(total, F32(width))


def check_element(call: Call, output: int, e: int, proven: Mapping[Key, Any], piece: int | None = None) -> int:
    """The bits of element `e` of output `output` (a name: of that intermediate; with `piece`: the
    running value of a long fold after that piece) recomputed from `proven` alone: a binary32's bit
    pattern, a mask's 0 or 1, an index's integer."""
    bits, _ = _check(call, output, e, proven, piece)
    return bits


def _check(call: Call, output: int, e: int, proven: Mapping[Key, Any], piece: int | None) -> tuple[int, set[Key]]:
    _check_index(call, output, e)
    value = Proven(proven)
    if call.kernel in CLIP_KERNELS:
        return _clip(call, value, _clip_piece_of(call, output, e, piece)), value.read
    if call.kernel in ("adamw_scalars", "sgd_scalars"):
        return _scalars(call, e, value), value.read
    if call.kernel == "dropout_keep":
        return int(_dropout_keep(call, e, value)), value.read
    result = _compute(call, _named(call, output), e, value, piece)
    if isinstance(result, (int, np.integer)):
        return int(result), value.read
    return int(np.array([_f(result)]).view(np.uint32)[0]), value.read


# dropout's keep mask (docs/arithmetic.md, section 7): element e of call c at step n is kept iff
# bits24(derive_seed(seed, "dropout", n, c), e) >= round_half_even(p · 2^24)

GOLDEN, MUL1, MUL2, MASK64 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 2**64 - 1


def derive_seed(seed: int, *labels: object) -> int:
    """docs/spec-format.md: the first 8 bytes, little-endian, of sha256(canonical JSON of the labels as
    strings), masked to 63 bits."""
    digest = hashlib.sha256(canonical_json([str(seed), *[str(label) for label in labels]])).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def bits24(key: int, index: int) -> int:
    z = (key + index * GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return (z ^ (z >> 31)) >> 40


def _dropout_keep(call: Call, e: int, value: Proven) -> bool:
    p, number = float(call.args[-2]), int(call.args[-1])
    key = derive_seed(int(value(("seed", 0))), "dropout", int(value(("step", 0))), number)
    return bits24(key, e) >= int(round(p * 2.0**24))


# gradient clipping's factor: a binary64 fold of g·g over every gradient element, in parameter order
# and row-major order within each (docs/arithmetic.md, section 8); pieces that never cross a gradient
# (protocol.scalar_rules.clip_pieces), the running values binary64 ("partial", c) as 64-bit patterns:
# output 1 of clip_scale (`partials`), element c the running value after piece c. Over more gradients
# than one entry lists (protocol.scalar_rules.CLIP_GROUP) the fold is recorded as clip_sum entries (one
# group of gradients each, output 0 its partials; every group but the first reads the previous group's
# partials as its input 0 and starts from their last) and clip_factor (the last group's partials in).
CLIP_KERNELS = ("clip_scale", "clip_sum", "clip_factor")


def _clip_started(call: Call) -> bool:
    """Whether a clip_sum's input 0 is the previous group's partials (binary64: on chain its dtype says so).
    Here its shapes do: the output has one element per piece of the gradients, and input 0 is not one of
    them exactly when the pieces of the other inputs alone are as many (a gradient adds at least one)."""
    from protocol.scalar_rules import clip_pieces

    if call.kernel != "clip_sum" or len(call.in_shapes) < 2:
        return False
    return len(clip_pieces([_size(shape) for shape in call.in_shapes[1:]])) == _size(call.out_shapes[0])


def _clip_pieces(call: Call) -> list[tuple[int, int, int]]:
    """(input k, first, count) of each piece the entry folds (a clip_sum's gradients after its start)."""
    from protocol.scalar_rules import clip_pieces

    skip = int(_clip_started(call))
    return [(k + skip, first, count) for k, first, count in clip_pieces([_size(shape) for shape in call.in_shapes[skip:]])]


def _clip_piece_of(call: Call, output: int | str, e: int, piece: int | None) -> int | None:
    """clip_scale's output 1 and clip_sum's output 0 (partials): element c is piece c; a factor reads the
    last partial."""
    return e if output == (0 if call.kernel == "clip_sum" else 1) and call.kernel != "clip_factor" else piece


def _clip_deps(call: Call, piece: int | None) -> list[Key]:
    if call.kernel == "clip_factor":  # the last group's last running value
        return [(0, _size(call.in_shapes[0]) - 1)]
    pieces = _clip_pieces(call)
    if piece is None:
        return [("partial", len(pieces) - 1)]
    if not 0 <= piece < len(pieces):
        raise ElementError(f"piece {piece} outside 0..{len(pieces) - 1}")
    k, first, count = pieces[piece]
    start: list[Key] = [("partial", piece - 1)] if piece else [(0, _size(call.in_shapes[0]) - 1)] if _clip_started(call) else []
    return start + [(k, i) for i in range(first, first + count)]


def _as_f64(value: Any) -> float:
    """A proven binary64: a running value's 64-bit pattern (an own output), or a binary64 input's value."""
    return float(value) if isinstance(value, (float, np.floating)) else _f64(int(value))


def _f64(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _bits64(x: float) -> int:
    return int(np.array([x], dtype=np.float64).view(np.uint64)[0])


def _clip(call: Call, value: Proven, piece: int | None) -> int:
    """With `piece`: the binary64 bits of the running Σ g² after that piece; without: the binary32 bits of
    min(1, max_norm / (√Σ + 1e-6)) from the last running value (Python floats are IEEE binary64)."""
    if piece is None:
        total = _as_f64(value(_clip_deps(call, None)[0]))
        scale = F32(min(1.0, float(call.args[-1]) / (math.sqrt(total) + 1e-6)))
        return int(np.array([scale]).view(np.uint32)[0])
    before = _clip_deps(call, piece)
    total = _as_f64(value(before[0])) if piece or _clip_started(call) else 0.0
    k, first, count = _clip_pieces(call)[piece]
    for i in range(first, first + count):
        g = float(_f(value((k, i))))
        total = total + g * g
    return _bits64(total)


def clip_partial_sums(call: Call, proven: Mapping[Key, Any]) -> list[int]:
    """The worker's side: the binary64 bits of the running Σ g² after each piece (a clip_sum's from its start)."""
    out, total = [], 0.0
    value = Proven(proven)
    if _clip_started(call):
        total = _as_f64(value((0, _size(call.in_shapes[0]) - 1)))
    for k, first, count in _clip_pieces(call):
        for i in range(first, first + count):
            g = float(_f(value((k, i))))
            total = total + g * g
        out.append(_bits64(total))
    return out


def _scalars(call: Call, e: int, value: Proven) -> int:
    """A per-step scalar (adamw_scalars, sgd_scalars) from the header's step (protocol.scalar_rules)."""
    from protocol.scalar_rules import scalar_bits

    value(("seed", 0))  # the header read gives both; the rule uses the step
    return scalar_bits(call.kernel, call.args, int(value(("step", 0))), e)


def _compute(call: Call, output: int, e: int, value: Proven, piece: int | None) -> np.float32:
    kernel = call.kernel
    row_keys = row_piece_keys(call, output, e, piece)
    if row_keys is not None:  # a row in pieces: the on-chain rule on the values in its order
        rule, params = row_piece_rule(call, output, e)
        return row_element(rule, params, [value(key) for key in row_keys])
    if _col2im_pieced(call):  # a piece: from the running value (+0 for the first), + each term
        before, keys = col2im_piece(call, output, e)
        total = ZERO if before is None else value(("col2im_running", before))
        for key in keys:
            total = add(total, value(key))
        return total
    fold, piece = _fold_of(call, output, e, piece)
    if fold is not None:
        return _fold_value(fold, value, piece)
    if kernel == "relu":
        x = value((0, e))
        return x if x > ZERO else ZERO
    if kernel == "relu_backward":
        return value((1, e)) if value((0, e)) > ZERO else ZERO
    if kernel == "gelu":
        x = value((0, e))
        return mul(x, phi_cdf(x))
    if kernel == "gelu_backward":
        x, dy = value((0, e)), value((1, e))
        density = mul(exp(-mul(mul(x, x), HALF)), FRAC_1_SQRT_2PI)
        return mul(dy, add(phi_cdf(x), mul(x, density)))
    if kernel == "scale":
        return mul(value((0, e)), value((1, 0)))
    if kernel == "tanh":
        return tanh(value((0, e)))
    if kernel == "tanh_backward":  # dy × (1 − y × y), from the forward output y
        y = value((0, e))
        return mul(value((1, e)), sub(ONE, mul(y, y)))
    if kernel == "mse_backward":  # ((d + d) / float(count)) × upstream
        d = sub(value((0, e)), value((1, e)))
        return mul(div(add(d, d), F32(_size(call.in_shapes[0]))), F32(call.args[2]))
    if kernel == "silu":
        x = value((0, e))
        return mul(x, sigmoid(x))
    if kernel == "silu_backward":
        x, dy = value((0, e)), value((1, e))
        s = sigmoid(x)
        return mul(dy, mul(s, add(ONE, mul(x, sub(ONE, s)))))
    if kernel == "gelu_tanh":
        x = value((0, e))
        return mul(mul(HALF, x), add(ONE, tanh(_gelu_tanh_inner(x))))
    if kernel == "gelu_tanh_backward":
        x, dy = value((0, e)), value((1, e))
        t = tanh(_gelu_tanh_inner(x))
        di = mul(add(ONE, mul(GELU_TANH_K3, mul(x, x))), GELU_TANH_K0)
        return mul(dy, add(mul(HALF, add(ONE, t)), mul(mul(HALF, x), mul(sub(ONE, mul(t, t)), di))))
    if kernel in ("rotary", "rotary_backward"):
        own, partner, cos, sin = (value(k) for k in _elementwise_deps(call, output, e))
        first_half = e % int(call.in_shapes[1][1]) < int(call.in_shapes[1][1]) // 2
        # forward: ρ = −x[j + H] below H, x[j − H] above; backward: ρ′ = dy[j + H] below, −dy[j − H] above
        rho = -partner if first_half == (kernel == "rotary") else partner
        return add(mul(own, cos), mul(rho, sin))
    if kernel in ("add", "mul"):
        deps = _move_deps(call, e)
        a, b = deps if len(deps) == 2 else (deps[0], deps[0])  # x + x reads one element twice
        return (add if kernel == "add" else mul)(value(a), value(b))
    if kernel == "mul_scalar":
        return mul(value((0, e)), F32(call.args[1]))
    if kernel == "fill_above_diagonal":
        index = _unravel(e, call.out_shapes[0])
        return F32(call.args[1]) if index[-1] > index[-2] else value((0, e))
    if kernel == "where":  # cond ? a : b (dropout's select)
        c, a, b = (_broadcast_source(_unravel(e, call.out_shapes[0]), call.in_shapes[k]) for k in range(3))
        return value((1, a)) if bool(value((0, c))) else value((2, b))
    if kernel == "scaled_keep":  # keep ? a × factor : +0 (dropout in the attention core)
        k = _broadcast_source(_unravel(e, call.out_shapes[0]), call.in_shapes[1])
        return mul(value((0, e)), F32(call.args[2])) if bool(value((1, k))) else ZERO
    if kernel == "gather":
        width = _gather_width(call)
        p, d = divmod(e, width)
        return value((0, int(value((1, p))) * width + d))
    if kernel == "batch_index":  # the example id at the header's cursor
        epochs, count = (int(n) for n in call.in_shapes[1])
        epoch, position = int(value(("epoch", 0))), int(value(("position", 0)))
        if not (0 <= epoch < epochs and 0 <= position + e < count):
            raise ElementError(f"cursor ({epoch}, {position}) outside the orders [{epochs}, {count}]")
        return value((1, epoch * count + position + e))
    if kernel in MOVES:
        source = _move_source(call, e)
        return ZERO if source is None else value(source)
    if kernel in ("softmax", "softmax_backward"):
        _, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width)
        if kernel == "softmax":
            _, es, s = _row_stats(value, 0, r, width)
            return div(es[j], s)
        y = [value((0, r * width + i)) for i in range(width)]
        dy = [value((1, r * width + i)) for i in range(width)]
        d = ZERO
        for yi, di in zip(y, dy):
            d = add(d, mul(yi, di))
        return mul(y[j], sub(dy[j], d))
    if kernel == "adamw":
        return _adamw(output, e, value)
    if kernel == "sgd":
        return _sgd(call, output, e, value)
    if kernel == "cross_entropy" and output == "nll":
        _, width = _rows(call.in_shapes[0])
        m, _, s = _row_stats(value, 0, e, width)
        target = int(value((1, e)))
        return sub(log(s), sub(value((0, e * width + target)), m))
    if kernel == "cross_entropy_backward":
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width)
        _, es, s = _row_stats(value, 0, r, width)
        p = div(es[j], s)
        if j == int(value((1, r))):
            p = sub(p, ONE)
        grad = call.args[2]
        return mul(div(p, F32(rows)), F32(grad))
    if kernel == "max_pool":  # m = first; m = v if v > m (the first maximum wins); where = its position
        window = [value(k) for k in dependencies(call, output, e)]
        before, _, first, _ = max_pool_piece(call, output, e)
        best, where, start, base = window[0], 0, 1, 0
        if before is not None:  # a piece of a wide window: from the slot before it (values 0 and 1), rows 2t on
            best, where, start, base = window[0], int(window[1]), 2, first * int(call.args[1]) - 2
        for q in range(start, len(window)):
            if window[q] > best:
                best, where = window[q], q + base
        return best if int(output) % 2 == 0 else where
    if kernel == "max_pool_backward" and len(call.out_shapes) == 2:  # a piece: the running value, + dy if it won
        before, window = pool_overlap_piece(call, output, e)
        total = ZERO if before is None else value(("pool_running", before))
        if window is not None and int(value((0, window[0]))) == window[1]:
            total = add(total, value((1, window[0])))
        return total
    if kernel == "max_pool_backward":  # +0, then + dy of each covering window (oh, ow order) it won
        shape = call.args[0]
        b, c, h, w = _unravel(e, shape)
        oh_n, ow_n = (int(n) for n in call.in_shapes[-1][2:])
        total = ZERO
        for oh, ow, q in _pool_windows(call, shape, h, w):
            flat = ((b * int(shape[1]) + c) * oh_n + oh) * ow_n + ow
            if int(value((0, flat))) == q:
                total = add(total, value((1, flat)))
        return total
    if kernel == "avg_pool_backward":  # +0, then + dy / float(k·k) of each covering window
        shape = call.args[0]
        kernel_size = int(call.args[-2])
        b, c, h, w = _unravel(e, shape)
        oh_n, ow_n = (int(n) for n in call.in_shapes[-1][2:])
        total = ZERO
        for oh, ow, _ in _pool_windows(call, shape, h, w):
            flat = ((b * int(shape[1]) + c) * oh_n + oh) * ow_n + ow
            total = add(total, div(value((0, flat)), F32(kernel_size * kernel_size)))
        return total
    if kernel == "layer_norm":
        return _layer_norm(call, output, e, value)
    if kernel == "rms_norm":
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width) if output < 2 else (e, 0)
        x = [value((0, r * width + i)) for i in range(width)]
        ms = _mean_fold([mul(xi, xi) for xi in x], width)
        rstd = div(ONE, sqrt(add(ms, F32(call.args[2]))))
        if output == 2:
            return rstd
        xhat = mul(x[j], rstd)
        return xhat if output == 1 else mul(xhat, value((1, j)))
    if kernel == "rms_norm_backward" and output == 0:
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width)
        g = [mul(value((3, r * width + i)), value((2, i))) for i in range(width)]
        xhat = [value((0, r * width + i)) for i in range(width)]
        b = _mean_fold([mul(g[i], xhat[i]) for i in range(width)], width)
        return mul(sub(g[j], mul(xhat[j], b)), value((1, r)))
    if kernel == "layer_norm_backward" and output == 0:
        rows, width = _rows(call.in_shapes[0])
        r, j = divmod(e, width)
        g = [mul(value((3, r * width + i)), value((2, i))) for i in range(width)]
        xhat = [value((0, r * width + i)) for i in range(width)]
        a = _mean_fold(g, width)
        b = _mean_fold([mul(g[i], xhat[i]) for i in range(width)], width)
        return mul(sub(sub(g[j], a), mul(xhat[j], b)), value((1, r)))
    if kernel == "embedding_backward":  # from +0, or the running value before the piece
        piece, folded, start, count = embedding_piece(call, output, e)
        width = int(call.in_shapes[1][-1])
        v, d = divmod(folded, width)
        total = value(("partial", piece - 1)) if piece else ZERO
        for p in range(start, start + count):
            if int(value((0, p))) == v:
                total = add(total, value((1, p * width + d)))
        return total
    raise ElementError(f"no element rule for kernel {kernel!r} output {output}")


def _adamw(output: int, e: int, value: Proven) -> np.float32:
    g = value((1, e))
    if output == 1:
        return add(mul(value((2, e)), value((4, 1))), mul(g, value((4, 2))))
    if output == 2:
        return add(mul(value((3, e)), value((4, 3))), mul(mul(g, g), value((4, 4))))
    c = [value((4, i)) for i in range(8)]  # decay, β1, 1−β1, β2, 1−β2, c2, eps, step_size
    p = mul(value((0, e)), c[0])
    m = add(mul(value((2, e)), c[1]), mul(g, c[2]))
    v = add(mul(value((3, e)), c[3]), mul(mul(g, g), c[4]))
    denom = add(sqrt(div(v, c[5])), c[6])
    return sub(p, mul(div(m, denom), c[7]))


def _sgd(call: Call, output: int, e: int, value: Proven) -> np.float32:
    s = len(call.in_shapes) - 1  # the scalars' input: weight_decay, momentum, lr
    has_buffer = s == 3
    nesterov = bool(call.args[-1])
    p, g = value((0, e)), value((1, e))
    wd, mu = value((s, 0)), value((s, 1))
    if wd != ZERO:
        g = add(g, mul(p, wd))
    if has_buffer:
        buf = add(mul(value((2, e)), mu), g)
        if output == 1:
            return buf
        g = add(g, mul(buf, mu)) if nesterov else buf
    return sub(p, mul(g, value((s, 2))))


def _layer_norm(call: Call, output: int, e: int, value: Proven) -> np.float32:
    rows, width = _rows(call.in_shapes[0])
    r, j = divmod(e, width) if output < 2 else (e, 0)
    x = [value((0, r * width + i)) for i in range(width)]
    mean = _mean_fold(x, width)
    c = [sub(xi, mean) for xi in x]
    var = _mean_fold([mul(ci, ci) for ci in c], width)
    rstd = div(ONE, sqrt(add(var, F32(call.args[3]))))
    if output == 2:
        return rstd
    xhat = mul(c[j], rstd)
    if output == 1:
        return xhat
    return add(mul(xhat, value((1, j))), value((2, j)))


# --------------------------------------------------------------------------------------------------
# Rows in pieces (docs/referee.md, "Rows in pieces"; protocol.row_pieces): a row-pieced entry's last output is
# its rows' running statistics; a statistic is RULE_ROW_PIECE from the one before it and one piece of the row,
# an output element RULE_ROW_FINAL from the row's final statistics
# --------------------------------------------------------------------------------------------------

RULE_ROW_PIECE, RULE_ROW_FINAL = row_pieces.RULE_ROW_PIECE, row_pieces.RULE_ROW_FINAL  # element_rules.vy: 40, 41


def row_piecing_of(call: Call) -> row_pieces.RowPiecing | None:
    """The call's row piecing when its record carries the statistics as its last output
    (`row_pieces.statistics_output`); None for any other call, which is checked as a whole row."""
    return row_pieces.row_piecing(call.kernel, call.in_shapes) if _has_statistics(call) else None


def row_piece_keys(call: Call, output: int | str, e: int, piece: int | None = None,
                   hints: Sequence[int] = ()) -> list[Key] | None:  # fmt: skip
    """The proven values of a row-pieced element, in its rule's value order (`row_piece_rule`): a statistic
    reads the final statistic its mode reads (if any), the running value before it (after the first
    piece) and its blocks (row segments of the inputs, or w's columns); a final output element its input
    elements and its row's final statistics. None for any other element (dw and db: FoldRules' folds;
    cross_entropy's mean and running sums: RowRules' folds). cross_entropy's nll (output 1) is pieced only
    with its hint, the target t (z[r·D + t], M, S, t[r]: `row_pieces.final_layout`); without one, and as the
    intermediate "nll" the mean folds, it is the whole row (`_row_deps`), the value the pieces check."""
    piecing = row_piecing_of(call) if isinstance(output, int) else None
    if piecing is None or (call.kernel == "cross_entropy" and output == 1 and not hints):
        return None
    if piece is not None:
        raise ElementError(f"{call.kernel}: a row's pieces are elements of its statistics output")
    assert isinstance(output, int)
    if output in row_pieces.FINAL_OUTPUTS[call.kernel]:
        try:
            return list(row_pieces.final_layout(call.kernel, output, piecing, e, hints))
        except ValueError as refused:  # a hint that is not a column of z
            raise ElementError(str(refused)) from refused
    if output != len(call.out_shapes) - 1:
        return None
    _, final, before, blocks = row_pieces.stat_layout(piecing, e)
    _, row, column_piece = piecing.locate(e)
    keys: list[Key] = [("stats", i) for i in (final, before) if i is not None]
    columns = piecing.columns(column_piece)
    for k in blocks:  # a row segment of input k, or w's columns
        keys += [(row_pieces.WEIGHT_INPUT, j) if k == row_pieces.W else (k, row * piecing.width + j) for j in columns]
    return keys


def row_piece_rule(call: Call, output: int, e: int, hints: Sequence[int] = ()) -> tuple[int, tuple[int, ...]]:
    """(rule, params) of a row-pieced element (`row_piece_keys` not None): a statistic RULE_ROW_PIECE
    [mode, from_partial, D]; a final element RULE_ROW_FINAL [mode, output, D, eps's binary32 bits or 0],
    cross_entropy's nll [FINAL_NLL, t, D, 0], its backward's dz [FINAL_CE_BACKWARD, j, R, grad's binary32
    bits] (`row_pieces.final_params`)."""
    piecing = row_piecing_of(call)
    assert piecing is not None
    if output == len(call.out_shapes) - 1:
        mode, _, before, _ = row_pieces.stat_layout(piecing, e)
        return RULE_ROW_PIECE, (mode, int(before is not None), piecing.width)
    eps = {"layer_norm": 3, "rms_norm": 2, "cross_entropy_backward": 2}.get(call.kernel)  # (the backward's grad)
    bits = 0 if eps is None else int(np.array([F32(call.args[eps])]).view(np.uint32)[0])
    try:
        return RULE_ROW_FINAL, row_pieces.final_params(call.kernel, int(output), piecing, e, hints, bits)
    except ValueError as refused:  # an nll hint that is not a column of z
        raise ElementError(str(refused)) from refused


def row_element(rule: int, params: Sequence[int], values: Sequence[np.float32]) -> np.float32:
    """element_rules.vy's RULE_ROW_PIECE and RULE_ROW_FINAL on their parameters and values, one binary32
    operation at a time (ElementError for a layout the rule refuses)."""
    if rule == RULE_ROW_PIECE:
        mode, from_partial, width = params
        return row_piece(mode, bool(from_partial), width, values)
    if rule == RULE_ROW_FINAL:
        mode, output, width, eps = params
        if mode in (row_pieces.FINAL_NLL, row_pieces.FINAL_CE_BACKWARD):  # [mode, t or j, D or R, 0 or grad]
            return loss_final(mode, output, width, _bits(eps), values)
        return row_final(mode, output, width, _bits(eps), values)
    raise ElementError(f"rule {rule} is not a row rule")


PIECE_BLOCKS = {row_pieces.PIECE_DOT: 2, row_pieces.PIECE_DOT3: 3}  # blocks of the other modes: 1
READS_FINAL = (row_pieces.PIECE_EXP_SUM, row_pieces.PIECE_SQ_DEV)  # the modes that read a final statistic first


def _piece_blocks(mode: int, from_partial: bool, values: Sequence[np.float32]) -> tuple[Any, Any, list[Sequence[np.float32]]]:
    """(the final statistic or None, the running value before the piece or None, the blocks) of
    RULE_ROW_PIECE's values: [final] + [partial] + the mode's blocks of n >= 1 terms each (n <= MAX_FOLD)."""
    at = 1 if mode in READS_FINAL else 0
    final = values[0] if at else None
    partial = values[at] if from_partial else None
    rest = values[at + int(from_partial) :]
    count = PIECE_BLOCKS.get(mode, 1)
    n = len(rest) // count
    if not 1 <= n <= MAX_FOLD or n * count != len(rest) or not 0 <= mode <= row_pieces.PIECE_DOT3:
        raise ElementError(f"row piece mode {mode}: {len(rest)} values are not {count} blocks of 1 … {MAX_FOLD}")
    return final, partial, [rest[b * n : (b + 1) * n] for b in range(count)]


def row_piece(mode: int, from_partial: bool, width: int, values: Sequence[np.float32]) -> np.float32:
    """RULE_ROW_PIECE: the running statistic after one piece of a row, from the one before it (or the start:
    the piece's first term for the maximum, +0 for a sum) and the piece's terms, in column order."""
    final, partial, blocks = _piece_blocks(mode, from_partial, values)
    first = blocks[0]
    if mode == row_pieces.PIECE_MAX:  # m = t if m < t: the first maximum wins, a NaN neither replaces nor is replaced
        best = partial if from_partial else first[0]
        for t in first if from_partial else first[1:]:
            if best < t:
                best = t
        return best
    total = partial if from_partial else ZERO
    mean = div(final, F32(width)) if mode == row_pieces.PIECE_SQ_DEV else ZERO
    for i, t in enumerate(first):
        if mode == row_pieces.PIECE_EXP_SUM:
            term = exp(sub(t, final))
        elif mode == row_pieces.PIECE_SUM:
            term = t
        elif mode == row_pieces.PIECE_SQ_DEV:
            centred = sub(t, mean)
            term = mul(centred, centred)
        elif mode == row_pieces.PIECE_SQUARE:
            term = mul(t, t)
        elif mode == row_pieces.PIECE_DOT:
            term = mul(t, blocks[1][i])
        else:  # PIECE_DOT3
            term = mul(mul(t, blocks[1][i]), blocks[2][i])
        total = add(total, term)
    return total


FINAL_ARITY = {(row_pieces.FINAL_SOFTMAX, 0): 3, (row_pieces.FINAL_SOFTMAX_BACKWARD, 0): 3,
               (row_pieces.FINAL_LAYER_NORM, 0): 5, (row_pieces.FINAL_LAYER_NORM, 1): 3, (row_pieces.FINAL_LAYER_NORM, 2): 1,
               (row_pieces.FINAL_RMS_NORM, 0): 3, (row_pieces.FINAL_RMS_NORM, 1): 2, (row_pieces.FINAL_RMS_NORM, 2): 1,
               (row_pieces.FINAL_LAYER_NORM_BACKWARD, 0): 6, (row_pieces.FINAL_RMS_NORM_BACKWARD, 0): 5}  # fmt: skip


def _inverse_root(second: np.float32, width: np.float32, eps: np.float32) -> np.float32:
    """ρ = 1 / √(second / D + eps): a norm's rstd from its row's final sum of squares."""
    return div(ONE, sqrt(add(div(second, width), eps)))


def row_final(mode: int, output: int, width: int, eps: np.float32, values: Sequence[np.float32]) -> np.float32:
    """RULE_ROW_FINAL: an output element of a row-pieced call from its row's final statistics, exactly the
    whole-row kernel's operations (engine/portable/reference.py)."""
    if FINAL_ARITY.get((mode, output)) != len(values):
        raise ElementError(f"row final mode {mode} output {output}: {len(values)} values")
    d = F32(width)
    if mode == row_pieces.FINAL_SOFTMAX:  # [z, M, S]
        z, top, total = values
        return div(exp(sub(z, top)), total)
    if mode == row_pieces.FINAL_SOFTMAX_BACKWARD:  # [y, dy, Dd]
        y, dy, dot = values
        return mul(y, sub(dy, dot))
    if mode == row_pieces.FINAL_LAYER_NORM:  # 0 [x, S1, S2, w, b]; 1 [x, S1, S2]; 2 [S2]
        if output == 2:
            return _inverse_root(values[0], d, eps)
        x, first, second = values[:3]
        xhat = mul(sub(x, div(first, d)), _inverse_root(second, d, eps))
        return xhat if output == 1 else add(mul(xhat, values[3]), values[4])
    if mode == row_pieces.FINAL_RMS_NORM:  # 0 [x, Q, w]; 1 [x, Q]; 2 [Q]
        if output == 2:
            return _inverse_root(values[0], d, eps)
        xhat = mul(values[0], _inverse_root(values[1], d, eps))
        return xhat if output == 1 else mul(xhat, values[2])
    xhat, rstd, w, dy = values[:4]  # the backwards: [x̂, ρ, w, dy, A, B] and [x̂, ρ, w, dy, B]
    g = mul(dy, w)
    if mode == row_pieces.FINAL_LAYER_NORM_BACKWARD:
        return mul(sub(sub(g, div(values[4], d)), mul(xhat, div(values[5], d))), rstd)
    return mul(sub(g, mul(xhat, div(values[4], d))), rstd)


def _target(value: Any) -> int:
    """A target as the rule reads it: its int64 bit pattern (a negative target is never a column)."""
    return int(value) & 0xFFFFFFFFFFFFFFFF


def loss_final(mode: int, column: int, count: int, grad: np.float32, values: Sequence[Any]) -> np.float32:
    """RULE_ROW_FINAL's cross-entropy modes on [z, M_final, S_final, t[r]], the whole-row kernels' operations
    (engine/portable/reference.py `cross_entropy_rows`, `cross_entropy_backward`). FINAL_NLL (`column` the
    hinted target t, `count` D): t[r] must be the hint (else the rule reverts: ElementError); nll =
    log(S) − (z_t − M). FINAL_CE_BACKWARD (`column` j, `count` R): p = exp(z − M) / S, less 1 where j is
    t[r]; dz = (p / R) · grad."""
    if len(values) != 4:
        raise ElementError(f"row final mode {mode}: {len(values)} values, not 4")
    z, top, total, target = values
    if mode == row_pieces.FINAL_NLL:
        if _target(target) != column:
            raise ElementError(f"the proven target {int(target)} is not the hinted {column}")
        return sub(log(total), sub(z, top))
    p = div(exp(sub(z, top)), total)
    if _target(target) == column:
        p = sub(p, ONE)
    return mul(div(p, F32(count)), grad)


# --------------------------------------------------------------------------------------------------
# Intermediates the worker commits when a dispute reaches an entry
# --------------------------------------------------------------------------------------------------


def partial_sums(call: Call, output: int, e: int, proven: Mapping[Key, Any]) -> list[np.float32]:
    """The running values of element e's fold after each full piece of MAX_FOLD terms (the worker's
    side: computed from the inputs; the last one is the whole fold before its epilogue)."""
    fold, _ = _fold_of(call, output, e, None)
    if fold is None:
        return []
    value = Proven(proven)
    total, out = ZERO, []
    for index, term in enumerate(fold.terms):
        total = add(total, _term(value, term))
        if (index + 1) % fold.length == 0 or index + 1 == len(fold.terms):
            out.append(total)
    return out
