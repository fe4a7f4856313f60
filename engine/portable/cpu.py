"""The fast CPU implementation of tessera-portable/1: numba-compiled loops with the reference's bits.

Why these loops give the same bits on every CPU: numba compiles without fast-math, so LLVM keeps
every binary32 +, −, ×, ÷ and √ as written (no reassociation, no contraction into fused multiply-add)
and rounds each one correctly; the vectoriser only spreads independent outputs over SIMD lanes,
never one reduction, so an AVX-512, AVX2, SSE or NEON build runs the same operation sequence per
output. Kernels are serial (the bits never depend on a thread count); every literal is a binary32
constant, because a Python float would silently promote the arithmetic to binary64.
The API is `reference`'s, function for function; tests check the bits agree.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from engine.portable import random as prandom
from engine.portable import reference as ref
from protocol.errors import EngineError

F32 = np.float32
ZERO, HALF, ONE, TWO = ref.ZERO, ref.HALF, ref.ONE, ref.TWO
INF, NAN = F32(np.inf), F32(np.nan)
EXP_OVERFLOW, EXP_UNDERFLOW, LOG2E, LN2_HI, LN2_LO = ref.EXP_OVERFLOW, ref.EXP_UNDERFLOW, ref.LOG2E, ref.LN2_HI, ref.LN2_LO
E7, E6, E5, E4, E3, E2, E1, E0 = ref.EXP_COEFFS
L9, L7, L5, L3 = ref.LOG_COEFFS
T9, T7, T5, T3 = ref.TANH_COEFFS
TANH_SMALL, TANH_ONE = ref.TANH_SMALL, ref.TANH_ONE
A5, A4, A3, A2, A1 = ref.ERF_COEFFS
ERF_P, FRAC_1_SQRT_2, FRAC_1_SQRT_2PI, SQRT2 = ref.ERF_P, ref.FRAC_1_SQRT_2, ref.FRAC_1_SQRT_2PI, ref.SQRT2
RINT_MAGIC = F32(12582912.0)  # 1.5 × 2^23: (v + M) − M is round-half-even of v for |v| < 2^22
TWO_POW_23 = ref.TWO_POW_23
MIN_NORMAL = F32(2.0**-126)

# error_model="numpy": a division by zero gives IEEE's ±inf or NaN, as in the reference, instead of a
# Python exception; the check numba would otherwise add to every division also kept loops scalar.
_jit = njit(cache=True, nogil=True, error_model="numpy")
_inline = njit(cache=True, nogil=True, inline="always", error_model="numpy")


def _c(x: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous view or copy (`x` itself when it already is one: asked for every operand)."""
    if type(x) is np.ndarray and x.dtype == F32 and x.flags.c_contiguous and x.ndim:
        return x  # (a 0-d array goes on to ascontiguousarray, which gives it one axis, as the reference's)
    return np.ascontiguousarray(x, dtype=F32)


# --------------------------------------------------------------------------------------------------
# Elementary functions (scalar, inlined into the loops below)
# --------------------------------------------------------------------------------------------------


@intrinsic
def _bits_as_f32(typingctx, bits):  # type: ignore[no-untyped-def]
    """The binary32 whose bit pattern is the low 32 bits of integer `bits` (an LLVM bitcast)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        value = args[0]
        if value.type.width != 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@_inline
def _pow2(k):
    """2^k, exactly, for an integer −126 ≤ k ≤ 127 (built from its exponent bits)."""
    return _bits_as_f32((k + 127) << 23)


@_inline
def _exp1(x):
    # branch-free (selects only), so loops over it vectorise; the special cases are chosen last
    big, small, nan = x > EXP_OVERFLOW, x < EXP_UNDERFLOW, x != x
    xs = ZERO if (big or small or nan) else x
    n = (xs * LOG2E + RINT_MAGIC) - RINT_MAGIC
    r = (xs - n * LN2_HI) - n * LN2_LO
    p = E7 * r + E6
    p = p * r + E5
    p = p * r + E4
    p = p * r + E3
    p = p * r + E2
    p = p * r + E1
    p = p * r + E0
    ni = np.int32(n)
    half = ni >> 1
    out = (p * _pow2(half)) * _pow2(ni - half)
    out = INF if big else out
    out = ZERO if small else out
    return x if nan else out


@_inline
def _phi1(x):
    u = x * FRAC_1_SQRT_2
    a = abs(u)
    t = ONE / (ONE + ERF_P * a)
    q = A5 * t + A4
    q = q * t + A3
    q = q * t + A2
    q = q * t + A1
    q = q * t
    erf = ONE - q * _exp1(-(a * a))
    erf = -erf if u < ZERO else erf
    return (ONE + erf) * HALF


@_inline
def _tanh1(x):
    if x != x:
        return x
    a = abs(x)
    if a < TANH_SMALL:
        z = x * x
        q = T9 * z + T7
        q = q * z + T5
        q = q * z + T3
        q = q * z
        return x + x * q
    if a < TANH_ONE:
        t = _exp1(a + a)
        y = ONE - TWO / (t + ONE)
        return -y if x < ZERO else y
    return -ONE if x < ZERO else ONE


@_jit
def _exp_loop(x, dy, out):
    for i in range(x.size):
        out[i] = _exp1(x[i])


@_jit
def _log_loop(x, m_in, e_in, out):
    for i in range(x.size):
        v = x[i]
        if not v > ZERO or v == INF:
            out[i] = -INF if v == ZERO else (INF if v == INF else NAN)
            continue
        m, e = m_in[i], e_in[i]
        if m > SQRT2:
            m = m * HALF
            e += 1
        f = m - ONE
        s = f / (TWO + f)
        z = s * s
        q = L9 * z + L7
        q = q * z + L5
        q = q * z + L3
        q = q * z
        r = s + s * q
        ef = F32(e)
        out[i] = ef * LN2_HI + (ef * LN2_LO + (r + r))


def log(x: np.ndarray) -> np.ndarray:
    x = _c(x)
    flat = x.reshape(-1)
    sub = flat < MIN_NORMAL  # subnormals (and non-positive values, which the loop answers itself)
    bits = np.where(sub, flat * TWO_POW_23, flat).view(np.int32)
    exponent = ((bits >> 23) & 0xFF) - 127 - np.where(sub, 23, 0).astype(np.int32)
    mantissa = ((bits & 0x007FFFFF) | 0x3F800000).astype(np.int32).view(F32)
    out = np.empty_like(x)
    _log_loop(flat, mantissa, exponent.astype(np.int32), out.reshape(-1))
    return out


# --------------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------------


@_jit
def _relu_loop(x, dy, out):
    for i in range(x.size):
        out[i] = x[i] if x[i] > ZERO else ZERO


@_jit
def _relu_backward_loop(x, dy, out):
    for i in range(x.size):
        out[i] = dy[i] if x[i] > ZERO else ZERO


@_jit
def _tanh_loop(x, dy, out):
    for i in range(x.size):
        out[i] = _tanh1(x[i])


@_jit
def _tanh_backward_loop(y, dy, out):
    for i in range(y.size):
        out[i] = dy[i] * (ONE - y[i] * y[i])


@_jit
def _gelu_loop(x, dy, out):
    for i in range(x.size):
        out[i] = x[i] * _phi1(x[i])


@_jit
def _gelu_backward_loop(x, dy, out):
    for i in range(x.size):
        v = x[i]
        density = _exp1(-((v * v) * HALF)) * FRAC_1_SQRT_2PI
        out[i] = dy[i] * (_phi1(v) + v * density)


@_jit
def _phi_loop(x, dy, out):
    for i in range(x.size):
        out[i] = _phi1(x[i])


def _unary(loop, x: np.ndarray, dy: np.ndarray | None = None) -> np.ndarray:
    x = _c(x)
    d = x if dy is None else _c(dy)
    out = np.empty_like(x)
    loop(x.reshape(-1), d.reshape(-1), out.reshape(-1))
    return out


# The elementwise API of `reference`: f(x) or f_backward(x or y, dy).
relu, relu_backward = partial(_unary, _relu_loop), partial(_unary, _relu_backward_loop)
tanh, tanh_backward = partial(_unary, _tanh_loop), partial(_unary, _tanh_backward_loop)
gelu, gelu_backward = partial(_unary, _gelu_loop), partial(_unary, _gelu_backward_loop)
phi_cdf, exp = partial(_unary, _phi_loop), partial(_unary, _exp_loop)


# --------------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------------


TILE_ROWS, TILE_COLS = 4, 16  # a register tile: 4 × 16 outputs, four 16-lane accumulators


@intrinsic
def _matmul_tile(typingctx, a_addr, lda, b_addr, ldb, out_addr, ldo, depth):  # type: ignore[no-untyped-def]
    """out[r, 0:16] = fold over k < depth of a[r, k] × b[k, 0:16] for r < 4 (addresses of float32 rows
    with strides lda, ldb, ldo in elements; depth ≥ 1), written as LLVM IR with vector accumulators.

    Each vector lane is one output and folds over k in order, as the reference does: a lane-wise fmul,
    then a lane-wise fadd onto the accumulator, which starts at +0. The IR carries no fast-math flags,
    so LLVM neither reassociates nor contracts into fused multiply-add, whatever the vector width of
    the CPU (SSE, AVX2 or AVX-512 split or keep the 16 lanes; each lane's operations stay the same).
    numba cannot keep an array of accumulators in registers; this is the only reason for the IR."""
    sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a_addr, lda, b_addr, ldb, out_addr, ldo, depth = args
        f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
        vec = ir.VectorType(f32, TILE_COLS)
        a0, b0, out0 = (builder.inttoptr(x, f32.as_pointer()) for x in (a_addr, b_addr, out_addr))
        entry = builder.block
        loop = builder.append_basic_block("tile.k")
        done = builder.append_basic_block("tile.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        k = builder.phi(i64)
        accumulators = [builder.phi(vec) for _ in range(TILE_ROWS)]
        k.add_incoming(ir.Constant(i64, 0), entry)
        for acc in accumulators:
            acc.add_incoming(ir.Constant(vec, [0.0] * TILE_COLS), entry)
        b_row = builder.load(builder.bitcast(builder.gep(b0, [builder.mul(k, ldb)]), vec.as_pointer()), align=4)
        undef = ir.Constant(vec, ir.Undefined)
        broadcast = ir.Constant(ir.VectorType(i32, TILE_COLS), [0] * TILE_COLS)
        updated = []
        for r, acc in enumerate(accumulators):
            a_rk = builder.load(builder.gep(a0, [builder.add(builder.mul(ir.Constant(i64, r), lda), k)]), align=4)
            lanes = builder.shuffle_vector(builder.insert_element(undef, a_rk, ir.Constant(i32, 0)), undef, broadcast)
            updated.append(builder.fadd(acc, builder.fmul(lanes, b_row)))
        k_next = builder.add(k, ir.Constant(i64, 1))
        k.add_incoming(k_next, builder.block)
        for acc, value in zip(accumulators, updated):
            acc.add_incoming(value, builder.block)
        builder.cbranch(builder.icmp_signed("<", k_next, depth), loop, done)
        builder.position_at_end(done)
        for r, value in enumerate(updated):
            row = builder.gep(out0, [builder.mul(ir.Constant(i64, r), ldo)])
            builder.store(value, builder.bitcast(row, vec.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


@_inline
def _fold_rows(lhs, rhs, dst, first, last, col_from, depth):
    """dst[first:last, col_from:] by rows: a fold over k per output, vectorised over the columns."""
    cols = dst.shape[1]
    for i in range(first, last):
        acc = dst[i]
        for j in range(col_from, cols):
            acc[j] = ZERO
        for k in range(depth):
            aik = lhs[i, k]
            brow = rhs[k]
            for j in range(col_from, cols):
                acc[j] = acc[j] + aik * brow[j]


@_jit
def _matmul_loop(a, b, out):
    """out[z] = a[z or 0] @ b[z or 0] (a batch of 1 broadcasts; every array C-contiguous float32):
    each output a fold over k in order. Register tiles of 4 × 16 outputs where they fit, rows of
    outputs vectorised over the columns for the rest.

    The tiles go column block by column block: the block's 16 columns of b are first copied into a
    contiguous panel (depth × 16, 64 bytes a row), which then stays in cache for every row block of a.
    Row block by row block instead, a wide b (a language model's head) would be streamed from memory
    once per four rows of a, with a stride of a whole row of b between the 64 bytes each k reads.
    Which tile is computed when changes no output's operations, so no bit."""
    batch, rows, depth = out.shape[0], a.shape[1], a.shape[2]
    cols = b.shape[2]
    tiled_rows = rows - rows % TILE_ROWS if depth > 0 else 0
    panel = np.empty((max(depth, 1), TILE_COLS), dtype=np.float32)
    for z in range(batch):
        lhs, rhs, dst = a[z if a.shape[0] > 1 else 0], b[z if b.shape[0] > 1 else 0], out[z]
        j = 0
        if tiled_rows > 0:
            a_addr, out_addr, panel_addr = lhs.ctypes.data, dst.ctypes.data, panel.ctypes.data
            while j + TILE_COLS <= cols:
                for k in range(depth):
                    for c in range(TILE_COLS):
                        panel[k, c] = rhs[k, j + c]
                i = 0
                while i < tiled_rows:
                    _matmul_tile(a_addr + 4 * i * depth, depth, panel_addr, TILE_COLS,
                                 out_addr + 4 * (i * cols + j), cols, depth)
                    i += TILE_ROWS
                j += TILE_COLS
            _fold_rows(lhs, rhs, dst, 0, tiled_rows, j, depth)
        _fold_rows(lhs, rhs, dst, tiled_rows, rows, 0, depth)


NARROW = TILE_COLS  # outputs narrower than a tile: fold them transposed instead (if that is wider)


def _batched(x: np.ndarray, lead: tuple[int, ...], batch: int) -> np.ndarray:
    """`x` broadcast to the leading axes `lead` and flattened to [batch, rows, cols] (the batch counted
    explicitly: reshape(-1, …) cannot infer it when rows or cols is 0)."""
    if x.shape[:-2] != lead:
        x = np.ascontiguousarray(np.broadcast_to(x, (*lead, *x.shape[-2:])))
    return x.reshape(batch, *x.shape[-2:])


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _c(a), _c(b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        # the kernel trusts the depth: a mismatch would read past b (the reference raises too)
        raise EngineError(f"portable matmul of {a.shape} and {b.shape}: inner dimensions differ")
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    rows, cols, batch = a.shape[-2], b.shape[-1], math.prod(lead)
    a3, b3 = _batched(a, lead, batch), _batched(b, lead, batch)
    # the register tiles address rows by pointer arithmetic: only C-contiguous operands may reach them
    if not (a3.flags.c_contiguous and b3.flags.c_contiguous):
        raise EngineError("portable matmul needs C-contiguous operands (internal error)")
    if cols < NARROW and rows > cols:
        # out^T = b^T @ a^T: every output is the same products (x·y = y·x, exactly) folded over k in
        # the same order, so the bits are the same; the wide side now lies along the vector lanes
        out_t = np.empty((batch, cols, rows), dtype=F32)
        _matmul_loop(np.ascontiguousarray(b3.transpose(0, 2, 1)), np.ascontiguousarray(a3.transpose(0, 2, 1)), out_t)
        out = np.ascontiguousarray(out_t.transpose(0, 2, 1))
    else:
        out = np.empty((batch, rows, cols), dtype=F32)
        _matmul_loop(a3, b3, out)
    return out.reshape(*lead, rows, cols)


@_jit
def _sum_rows_loop(x, out):
    for j in range(out.size):
        out[j] = ZERO
    for r in range(x.shape[0]):
        row = x[r]
        for j in range(out.size):
            out[j] = out[j] + row[j]


def sum_rows(x: np.ndarray) -> np.ndarray:
    x = _c(x)
    out = np.empty(x.shape[1:], dtype=F32)
    _sum_rows_loop(x.reshape(x.shape[0], -1), out.reshape(-1))
    return out


@_jit
def _add_bias_loop(y, bias):
    for r in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[r, j] = y[r, j] + bias[j]


@_jit
def _matmul_bt_loop(a, bt, out):
    """out = a @ btᵀ for a [rows, depth] and bt [cols, depth] (a linear layer's weight as stored): the
    same folds as `_matmul_loop` on the transposed copy, without making it. The tile panel is packed
    from 16 rows of bt (contiguous reads); rows of a past the last full tile and columns past the last
    full panel fold one output at a time, over k in order."""
    rows, depth, cols = a.shape[0], a.shape[1], bt.shape[0]
    tiled_rows = rows - rows % TILE_ROWS if depth > 0 else 0
    panel = np.empty((max(depth, 1), TILE_COLS), dtype=np.float32)
    j = 0
    if tiled_rows > 0:
        a_addr, out_addr, panel_addr = a.ctypes.data, out.ctypes.data, panel.ctypes.data
        while j + TILE_COLS <= cols:
            for c in range(TILE_COLS):
                src = bt[j + c]
                for k in range(depth):
                    panel[k, c] = src[k]
            i = 0
            while i < tiled_rows:
                _matmul_tile(a_addr + 4 * i * depth, depth, panel_addr, TILE_COLS,
                             out_addr + 4 * (i * cols + j), cols, depth)
                i += TILE_ROWS
            j += TILE_COLS
    for i in range(rows):
        first = j if i < tiled_rows else 0
        lhs = a[i]
        for o in range(first, cols):
            w = bt[o]
            acc = ZERO
            for k in range(depth):
                acc = acc + lhs[k] * w[k]
            out[i, o] = acc


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    x2, weight = _c(x).reshape(math.prod(x.shape[:-1]), x.shape[-1]), _c(weight)
    if x2.shape[1] != weight.shape[1]:
        raise EngineError(f"portable linear of {x.shape} with a weight of {weight.shape}: inner dimensions differ")
    if x2.shape[0] >= TILE_ROWS and weight.shape[0] >= TILE_COLS:
        y = np.empty((x2.shape[0], weight.shape[0]), dtype=F32)
        _matmul_bt_loop(x2, weight, y)
    else:  # narrow: matmul folds it transposed, along the vector lanes (same bits)
        y = matmul(x2, np.ascontiguousarray(weight.T))
    if bias is not None:
        _add_bias_loop(y, _c(bias))
    return y.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, weight, dy = _c(x).reshape(-1, x.shape[-1]), _c(weight), _c(dy).reshape(-1, weight.shape[0])
    return matmul(dy, weight), matmul(np.ascontiguousarray(dy.T), x), sum_rows(dy)


@_jit
def _softmax_loop(z, out):
    for r in range(z.shape[0]):
        row, dst = z[r], out[r]
        m = row[0]
        for j in range(1, row.size):
            if row[j] > m:
                m = row[j]
        for j in range(row.size):  # apart from the sum, so this loop vectorises
            dst[j] = _exp1(row[j] - m)
        s = ZERO
        for j in range(row.size):
            s = s + dst[j]
        for j in range(row.size):
            dst[j] = dst[j] / s


@_jit
def _softmax_backward_loop(y, dy, out):
    for r in range(y.shape[0]):
        d = ZERO
        for j in range(y.shape[1]):
            d = d + y[r, j] * dy[r, j]
        for j in range(y.shape[1]):
            out[r, j] = y[r, j] * (dy[r, j] - d)


def softmax(z: np.ndarray) -> np.ndarray:
    z = _c(z)
    out = np.empty_like(z)
    _softmax_loop(z.reshape(-1, z.shape[-1]), out.reshape(-1, z.shape[-1]))
    return out


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    y, dy = _c(y), _c(dy)
    out = np.empty_like(y)
    _softmax_backward_loop(y.reshape(-1, y.shape[-1]), dy.reshape(-1, y.shape[-1]), out.reshape(-1, y.shape[-1]))
    return out


@_jit
def _row_max(row):
    m = row[0]
    for j in range(1, row.size):
        if row[j] > m:
            m = row[j]
    return m


@_jit
def _cross_entropy_rows(z, target, sums, maxes):
    """Per row: m and s = fold of exp(z − m)."""
    for r in range(z.shape[0]):
        m = _row_max(z[r])
        s = ZERO
        for j in range(z.shape[1]):
            s = s + _exp1(z[r, j] - m)
        sums[r] = s
        maxes[r] = m


@_jit
def _fold_f32(values):
    total = ZERO
    for i in range(values.size):
        total = total + values[i]
    return total


def cross_entropy(z: np.ndarray, target: np.ndarray) -> np.float32:
    z = _c(z)
    target = np.ascontiguousarray(target, dtype=np.int64)
    sums, maxes = np.empty(z.shape[0], dtype=F32), np.empty(z.shape[0], dtype=F32)
    _cross_entropy_rows(z, target, sums, maxes)
    picked = z[np.arange(z.shape[0]), target]
    nll = log(sums) - (picked - maxes)
    return F32(_fold_f32(nll) / F32(z.shape[0]))


@_jit
def _cross_entropy_backward_loop(z, target, grad, out):
    rows = F32(z.shape[0])
    for r in range(z.shape[0]):
        m = _row_max(z[r])
        s = ZERO
        for j in range(z.shape[1]):
            e = _exp1(z[r, j] - m)
            out[r, j] = e
            s = s + e
        for j in range(z.shape[1]):
            p = out[r, j] / s
            if j == target[r]:
                p = p - ONE
            out[r, j] = (p / rows) * grad


def cross_entropy_backward(z: np.ndarray, target: np.ndarray, grad: np.float32) -> np.ndarray:
    z = _c(z)
    out = np.empty_like(z)
    _cross_entropy_backward_loop(z, np.ascontiguousarray(target, dtype=np.int64), F32(grad), out)
    return out


@_jit
def _mse_loop(out, y):
    total = ZERO
    for i in range(out.size):
        d = out[i] - y[i]
        total = total + d * d
    return total


def mse(out: np.ndarray, y: np.ndarray) -> np.float32:
    out, y = _c(out), _c(y)
    return F32(_mse_loop(out.reshape(-1), y.reshape(-1)) / F32(out.size))


mse_backward = ref.mse_backward  # elementwise NumPy: already the fast form


@_jit
def _layer_norm_loop(x, weight, bias, eps, y, xhat, rstd):
    width = F32(x.shape[1])
    for r in range(x.shape[0]):
        row = x[r]
        s = ZERO
        for j in range(row.size):
            s = s + row[j]
        mean = s / width
        v = ZERO
        for j in range(row.size):
            c = row[j] - mean
            v = v + c * c
        var = v / width
        rho = ONE / np.sqrt(var + eps)
        rstd[r] = rho
        for j in range(row.size):
            xh = (row[j] - mean) * rho
            xhat[r, j] = xh
            y[r, j] = xh * weight[j] + bias[j]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _c(x)
    y, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty(x.shape[0], dtype=F32)
    _layer_norm_loop(x, _c(weight), _c(bias), F32(eps), y, xhat, rstd)
    return y, xhat, rstd


@_jit
def _layer_norm_backward_loop(xhat, rstd, weight, dy, dx, dw, db):
    width = F32(xhat.shape[1])
    for j in range(xhat.shape[1]):
        dw[j] = ZERO
        db[j] = ZERO
    for r in range(xhat.shape[0]):
        a = ZERO
        b = ZERO
        for j in range(xhat.shape[1]):
            g = dy[r, j] * weight[j]
            a = a + g
            b = b + g * xhat[r, j]
        a = a / width
        b = b / width
        for j in range(xhat.shape[1]):
            g = dy[r, j] * weight[j]
            dx[r, j] = ((g - a) - xhat[r, j] * b) * rstd[r]
            dw[j] = dw[j] + dy[r, j] * xhat[r, j]
            db[j] = db[j] + dy[r, j]


def layer_norm_backward(xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, dy = _c(xhat), _c(dy)
    dx, dw, db = np.empty_like(xhat), np.empty(xhat.shape[1], dtype=F32), np.empty(xhat.shape[1], dtype=F32)
    _layer_norm_backward_loop(xhat, _c(rstd), _c(weight), dy, dx, dw, db)
    return dx, dw, db


@_jit
def _embedding_backward_loop(ids, dy, out):
    for p in range(ids.size):
        row = out[ids[p]]
        src = dy[p]
        for j in range(row.size):
            row[j] = row[j] + src[j]


def embedding_backward(ids: np.ndarray, dy: np.ndarray, num_embeddings: int) -> np.ndarray:
    flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    dy = _c(dy).reshape(flat.size, -1)
    out = np.zeros((num_embeddings, dy.shape[1]), dtype=F32)
    _embedding_backward_loop(flat, dy, out)
    return out


# --------------------------------------------------------------------------------------------------
# Convolution and pooling (NCHW)
# --------------------------------------------------------------------------------------------------


@_jit
def _im2col_loop(x, kernel, stride, padding, cols):
    batch, channels, height, width = x.shape
    oh, ow = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    for b in range(batch):
        for c in range(channels):
            for i in range(kernel):
                for j in range(kernel):
                    q = (c * kernel + i) * kernel + j
                    for a in range(oh):
                        h = a * stride + i - padding
                        for d in range(ow):
                            w = d * stride + j - padding
                            inside = h >= 0 and h < height and w >= 0 and w < width
                            cols[b, q, a * ow + d] = x[b, c, h, w] if inside else ZERO


@_jit
def _col2im_loop(dcols, kernel, stride, padding, dx):
    batch, channels, height, width = dx.shape
    oh, ow = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    for b in range(batch):
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    dx[b, c, h, w] = ZERO
            for i in range(kernel):  # (i, j) outermost: each pixel receives its terms in (i, j) order
                for j in range(kernel):
                    q = (c * kernel + i) * kernel + j
                    for a in range(oh):
                        h = a * stride + i - padding
                        if h < 0 or h >= height:
                            continue
                        for d in range(ow):
                            w = d * stride + j - padding
                            if w >= 0 and w < width:
                                dx[b, c, h, w] = dx[b, c, h, w] + dcols[b, q, a * ow + d]


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    x = _c(x)
    oh = (x.shape[2] + 2 * padding - kernel) // stride + 1
    ow = (x.shape[3] + 2 * padding - kernel) // stride + 1
    cols = np.empty((x.shape[0], x.shape[1] * kernel * kernel, oh * ow), dtype=F32)
    _im2col_loop(x, kernel, stride, padding, cols)
    return cols


def col2im(dcols: np.ndarray, shape: tuple[int, int, int, int], kernel: int, stride: int, padding: int) -> np.ndarray:
    dx = np.empty(shape, dtype=F32)
    _col2im_loop(_c(dcols), kernel, stride, padding, dx)
    return dx


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int, padding: int) -> np.ndarray:
    x, weight = _c(x), _c(weight)
    out_channels, kernel = weight.shape[0], weight.shape[-1]
    cols = im2col(x, kernel, stride, padding)
    y = matmul(weight.reshape(1, out_channels, -1), cols)
    if bias is not None:
        y = y + _c(bias)[None, :, None]
    oh = (x.shape[2] + 2 * padding - kernel) // stride + 1
    return y.reshape(x.shape[0], out_channels, oh, -1)


def conv2d_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray, stride: int, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, weight, dy = _c(x), _c(weight), _c(dy)
    batch, out_channels, kernel = x.shape[0], weight.shape[0], weight.shape[-1]
    cols = im2col(x, kernel, stride, padding)
    d = dy.reshape(batch, out_channels, -1)
    d_ol = np.ascontiguousarray(d.transpose(1, 0, 2).reshape(out_channels, -1))
    cols_lq = np.ascontiguousarray(cols.transpose(0, 2, 1).reshape(-1, cols.shape[1]))
    dweight = matmul(d_ol, cols_lq).reshape(weight.shape)
    dbias = sum_rows(np.ascontiguousarray(d_ol.T))
    w_t = np.ascontiguousarray(weight.reshape(out_channels, -1).T)[None]
    return col2im(matmul(w_t, d), x.shape, kernel, stride, padding), dweight, dbias


@_jit
def _pool_loop(x, kernel, stride, is_max, y, where):
    batch, channels, height, width = x.shape
    oh, ow = y.shape[2], y.shape[3]
    area = F32(kernel * kernel)
    for b in range(batch):
        for c in range(channels):
            for a in range(oh):
                for d in range(ow):
                    if is_max:
                        best = x[b, c, a * stride, d * stride]
                        arg = 0
                        for i in range(kernel):
                            for j in range(kernel):
                                v = x[b, c, a * stride + i, d * stride + j]
                                if v > best:
                                    best = v
                                    arg = i * kernel + j
                        y[b, c, a, d] = best
                        where[b, c, a, d] = arg
                    else:
                        s = ZERO
                        for i in range(kernel):
                            for j in range(kernel):
                                s = s + x[b, c, a * stride + i, d * stride + j]
                        y[b, c, a, d] = s / area


@_jit
def _pool_backward_loop(where, dy, kernel, stride, is_max, dx):
    batch, channels, oh, ow = dy.shape
    area = F32(kernel * kernel)
    for b in range(batch):
        for c in range(channels):
            for a in range(oh):
                for d in range(ow):
                    if is_max:
                        arg = where[b, c, a, d]
                        h, w = a * stride + arg // kernel, d * stride + arg % kernel
                        dx[b, c, h, w] = dx[b, c, h, w] + dy[b, c, a, d]
                    else:
                        g = dy[b, c, a, d] / area
                        for i in range(kernel):
                            for j in range(kernel):
                                dx[b, c, a * stride + i, d * stride + j] = dx[b, c, a * stride + i, d * stride + j] + g


def _pool_shape(x: np.ndarray, kernel: int, stride: int) -> tuple[int, int, int, int]:
    return (x.shape[0], x.shape[1], (x.shape[2] - kernel) // stride + 1, (x.shape[3] - kernel) // stride + 1)


def max_pool(x: np.ndarray, kernel: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    x = _c(x)
    shape = _pool_shape(x, kernel, stride)
    y, where = np.empty(shape, dtype=F32), np.empty(shape, dtype=np.int64)
    _pool_loop(x, kernel, stride, True, y, where)
    return y, where


def max_pool_backward(shape: tuple[int, int, int, int], where: np.ndarray, dy: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    dx = np.zeros(shape, dtype=F32)
    _pool_backward_loop(np.ascontiguousarray(where, dtype=np.int64), _c(dy), kernel, stride, True, dx)
    return dx


def avg_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    x = _c(x)
    shape = _pool_shape(x, kernel, stride)
    y, where = np.empty(shape, dtype=F32), np.empty((1, 1, 1, 1), dtype=np.int64)
    _pool_loop(x, kernel, stride, False, y, where)
    return y


def avg_pool_backward(shape: tuple[int, int, int, int], dy: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    dx = np.zeros(shape, dtype=F32)
    _pool_backward_loop(np.empty((1, 1, 1, 1), dtype=np.int64), _c(dy), kernel, stride, False, dx)
    return dx


# --------------------------------------------------------------------------------------------------
# Optimizers and clipping
# --------------------------------------------------------------------------------------------------


@_jit
def _adamw_loop(p, g, m, v, decay, beta1, omb1, beta2, omb2, correction2, eps, step_size):
    for i in range(p.size):
        gi = g[i]
        pi = p[i] * decay
        mi = m[i] * beta1 + gi * omb1
        vi = v[i] * beta2 + (gi * gi) * omb2
        denom = np.sqrt(vi / correction2) + eps
        p[i] = pi - (mi / denom) * step_size
        m[i] = mi
        v[i] = vi


def adamw(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, c: dict[str, np.float32]) -> None:
    _adamw_loop(param.reshape(-1), _c(grad).reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1), c["decay"],
                c["beta1"], c["one_minus_beta1"], c["beta2"], c["one_minus_beta2"], c["correction2"], c["eps"],
                c["step_size"])  # fmt: skip


@_jit
def _sgd_loop(p, g, buf, weight_decay, momentum, lr, use_momentum, nesterov):
    for i in range(p.size):
        gi = g[i]
        if weight_decay != ZERO:
            gi = gi + p[i] * weight_decay
        if use_momentum:
            b = buf[i] * momentum + gi
            buf[i] = b
            gi = gi + b * momentum if nesterov else b
        p[i] = p[i] - gi * lr


def sgd(param: np.ndarray, grad: np.ndarray, momentum: np.ndarray | None, c: dict[str, np.float32], nesterov: bool) -> None:
    buf = momentum.reshape(-1) if momentum is not None else np.empty(1, dtype=F32)
    _sgd_loop(param.reshape(-1), _c(grad).reshape(-1), buf, c["weight_decay"], c["momentum"], c["lr"],
              momentum is not None, nesterov)  # fmt: skip


@_jit
def _squares_f64(g, total):
    for i in range(g.size):
        value = np.float64(g[i])
        total = total + value * value
    return total


def squared_norm(grads: list[np.ndarray]) -> float:
    total = 0.0
    for grad in grads:
        total = float(_squares_f64(_c(grad).reshape(-1), np.float64(total)))
    return total


# --------------------------------------------------------------------------------------------------
# Random numbers (integer arithmetic: the same on every machine by construction)
# --------------------------------------------------------------------------------------------------

_GOLDEN, _MUL1, _MUL2 = prandom.GOLDEN, prandom.MUL1, prandom.MUL2
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


@_jit
def _dropout_keep_loop(key, threshold, out):
    # every operand is uint64: numba would turn uint64 mixed with int64 into float64
    for i in range(out.size):
        z = np.uint64(i) * _GOLDEN + key
        z = (z ^ (z >> _S30)) * _MUL1
        z = (z ^ (z >> _S27)) * _MUL2
        z = z ^ (z >> _S31)
        out[i] = (z >> _S40) >= threshold


def dropout_keep(key: int, count: int, p: float) -> np.ndarray:
    """`engine.portable.random.dropout_keep`, compiled: the keep mask of `count` elements."""
    out = np.empty(count, dtype=np.bool_)
    _dropout_keep_loop(np.uint64(key), np.uint64(prandom.keep_threshold(p)), out)
    return out


# --------------------------------------------------------------------------------------------------
# Attention's elementwise steps (exact moves, or one rounding per element)
# --------------------------------------------------------------------------------------------------


@_jit
def _fill_above_diagonal_loop(x, value):
    steps = x.shape[1]
    for z in range(x.shape[0]):
        for i in range(steps):
            for j in range(i + 1, steps):
                x[z, i, j] = value


def fill_above_diagonal(x: np.ndarray, value: float) -> np.ndarray:
    """`x` (..., steps, steps) with every entry above the diagonal set to `value`, in place."""
    x = _c(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise EngineError(f"fill_above_diagonal needs (..., steps, steps), not {x.shape}")  # the loop writes by steps
    _fill_above_diagonal_loop(x.reshape(-1, *x.shape[-2:]), F32(value))
    return x


@_jit
def _scaled_keep_loop(x, keep, scale, out):
    for i in range(x.size):
        out[i] = x[i] * scale if keep[i] else ZERO


def scaled_keep(x: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """`keep ? x × scale : +0` elementwise (dropout forward, and its backward on the gradient)."""
    x = _c(x)
    keep = np.ascontiguousarray(keep, dtype=np.bool_)
    if keep.shape != x.shape:  # one flag per element, broadcast as the reference's np.where does
        keep = np.ascontiguousarray(np.broadcast_to(keep, x.shape))
    out = np.empty_like(x)
    _scaled_keep_loop(x.reshape(-1), keep.reshape(-1), F32(scale), out.reshape(-1))
    return out



# --------------------------------------------------------------------------------------------------
# Decoder-model layers (docs/arithmetic.md, section 5a)
# --------------------------------------------------------------------------------------------------

GELU_TANH_K0, GELU_TANH_K1, GELU_TANH_K3 = ref.GELU_TANH_K0, ref.GELU_TANH_K1, ref.GELU_TANH_K3


@_inline
def _sigmoid1(x):
    return ONE / (ONE + _exp1(-x))


@_jit
def _silu_loop(x, dy, out):
    for i in range(x.size):
        out[i] = x[i] * _sigmoid1(x[i])


@_jit
def _silu_backward_loop(x, dy, out):
    for i in range(x.size):
        v = x[i]
        s = _sigmoid1(v)
        out[i] = dy[i] * (s * (ONE + v * (ONE - s)))


@_inline
def _gelu_tanh_t(x):
    return _tanh1((x + GELU_TANH_K1 * ((x * x) * x)) * GELU_TANH_K0)


@_jit
def _gelu_tanh_loop(x, dy, out):
    for i in range(x.size):
        v = x[i]
        out[i] = (HALF * v) * (ONE + _gelu_tanh_t(v))


@_jit
def _gelu_tanh_backward_loop(x, dy, out):
    for i in range(x.size):
        v = x[i]
        t = _gelu_tanh_t(v)
        di = (ONE + GELU_TANH_K3 * (v * v)) * GELU_TANH_K0
        out[i] = dy[i] * ((HALF * (ONE + t)) + ((HALF * v) * ((ONE - t * t) * di)))


silu, silu_backward = partial(_unary, _silu_loop), partial(_unary, _silu_backward_loop)
gelu_tanh, gelu_tanh_backward = partial(_unary, _gelu_tanh_loop), partial(_unary, _gelu_tanh_backward_loop)


@_jit
def _rms_norm_loop(x, weight, eps, y, xhat, rstd):
    width = F32(x.shape[1])
    for r in range(x.shape[0]):
        row = x[r]
        s = ZERO
        for j in range(row.size):
            s = s + row[j] * row[j]
        rho = ONE / np.sqrt(s / width + eps)
        rstd[r] = rho
        for j in range(row.size):
            xh = row[j] * rho
            xhat[r, j] = xh
            y[r, j] = xh * weight[j]


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _c(x)
    y, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty(x.shape[0], dtype=F32)
    _rms_norm_loop(x, _c(weight), F32(eps), y, xhat, rstd)
    return y, xhat, rstd


@_jit
def _rms_norm_backward_loop(xhat, rstd, weight, dy, dx, dw):
    width = F32(xhat.shape[1])
    for j in range(xhat.shape[1]):
        dw[j] = ZERO
    for r in range(xhat.shape[0]):
        b = ZERO
        for j in range(xhat.shape[1]):
            b = b + (dy[r, j] * weight[j]) * xhat[r, j]
        b = b / width
        for j in range(xhat.shape[1]):
            dx[r, j] = (dy[r, j] * weight[j] - xhat[r, j] * b) * rstd[r]
            dw[j] = dw[j] + dy[r, j] * xhat[r, j]


def rms_norm_backward(xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xhat, dy = _c(xhat), _c(dy)
    dx, dw = np.empty_like(xhat), np.empty(xhat.shape[1], dtype=F32)
    _rms_norm_backward_loop(xhat, _c(rstd), _c(weight), dy, dx, dw)
    return dx, dw


# elementwise NumPy (each line one rounded binary32 operation on whole arrays): already the fast form
rotary, rotary_backward, fold_head_groups = ref.rotary, ref.rotary_backward, ref.fold_head_groups
rotary_tables = ref.rotary_tables  # host binary64 (engine/portable/rotary_tables.py): one definition


def cross_entropy_rows(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """nll_r = log(s_r) − (z[r, t_r] − m_r) per row: cross_entropy's terms before the fold."""
    z = _c(z)
    target = np.ascontiguousarray(target, dtype=np.int64)
    sums, maxes = np.empty(z.shape[0], dtype=F32), np.empty(z.shape[0], dtype=F32)
    if z.shape[0]:
        _cross_entropy_rows(z, target, sums, maxes)
    picked = z[np.arange(z.shape[0]), target]
    return (log(sums) - (picked - maxes)).astype(F32)
