"""The CUDA implementation of tessera-portable/1: Triton kernels with the reference's bits.

Why these kernels give the reference's bits on any NVIDIA GPU:
- every launch passes `enable_fp_fusion=False`, so no `a × b + c` is contracted into a fused
  multiply-add (docs/arithmetic.md, section 1) and each +, −, × is the rounded binary32 operation;
- division and square root are `tl.div_rn` / `tl.sqrt_rn` (correctly rounded): Triton's plain `/`
  and `tl.sqrt` lower to approximate PTX instructions;
- no tensor cores and no `tl.dot`: a matmul tile keeps one accumulator per output and adds the
  products for k = 0 … K−1 in order (no split-K, no blocking of the fold); reductions spread
  independent outputs (rows, columns) over threads and fold each output sequentially;
- exp, log, tanh and Φ are the document's fixed sequences of those operations, never the
  hardware's approximate instructions or libdevice; subnormals are kept (no ftz).

The API is `reference`'s, function for function, but on torch tensors (`TAKES_TENSORS`): ops.py
passes device tensors and gets device tensors back. The one op without a Triton kernel, the
binary64 gradient norm of clipping (one sequential fold over every gradient), runs the numba kernel
on host copies, with the same bits. Under `TRITON_INTERPRET=1` the kernels run on CPU tensors (the tests' way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

from engine.portable import reference as ref

TAKES_TENSORS = True  # ops.py: call with torch tensors, not host arrays

_f = float  # a binary32 constant as the Python float of the same value (exact)
EXP_OVERFLOW: tl.constexpr = tl.constexpr(_f(ref.EXP_OVERFLOW))
EXP_UNDERFLOW: tl.constexpr = tl.constexpr(_f(ref.EXP_UNDERFLOW))
LOG2E: tl.constexpr = tl.constexpr(_f(ref.LOG2E))
LN2_HI: tl.constexpr = tl.constexpr(_f(ref.LN2_HI))
LN2_LO: tl.constexpr = tl.constexpr(_f(ref.LN2_LO))
RINT_MAGIC: tl.constexpr = tl.constexpr(12582912.0)  # 1.5 × 2^23: (v + M) − M rounds v half-to-even
E7: tl.constexpr = tl.constexpr(_f(ref.EXP_COEFFS[0]))
E6: tl.constexpr = tl.constexpr(_f(ref.EXP_COEFFS[1]))
E5: tl.constexpr = tl.constexpr(_f(ref.EXP_COEFFS[2]))
E4: tl.constexpr = tl.constexpr(_f(ref.EXP_COEFFS[3]))
E3: tl.constexpr = tl.constexpr(_f(ref.EXP_COEFFS[4]))
E2: tl.constexpr = tl.constexpr(_f(ref.EXP_COEFFS[5]))
SQRT2: tl.constexpr = tl.constexpr(_f(ref.SQRT2))
MIN_NORMAL: tl.constexpr = tl.constexpr(2.0**-126)
TWO_POW_23: tl.constexpr = tl.constexpr(2.0**23)
L9: tl.constexpr = tl.constexpr(_f(ref.LOG_COEFFS[0]))
L7: tl.constexpr = tl.constexpr(_f(ref.LOG_COEFFS[1]))
L5: tl.constexpr = tl.constexpr(_f(ref.LOG_COEFFS[2]))
L3: tl.constexpr = tl.constexpr(_f(ref.LOG_COEFFS[3]))
T9: tl.constexpr = tl.constexpr(_f(ref.TANH_COEFFS[0]))
T7: tl.constexpr = tl.constexpr(_f(ref.TANH_COEFFS[1]))
T5: tl.constexpr = tl.constexpr(_f(ref.TANH_COEFFS[2]))
T3: tl.constexpr = tl.constexpr(_f(ref.TANH_COEFFS[3]))
TANH_SMALL: tl.constexpr = tl.constexpr(_f(ref.TANH_SMALL))
TANH_ONE: tl.constexpr = tl.constexpr(_f(ref.TANH_ONE))
A5: tl.constexpr = tl.constexpr(_f(ref.ERF_COEFFS[0]))
A4: tl.constexpr = tl.constexpr(_f(ref.ERF_COEFFS[1]))
A3: tl.constexpr = tl.constexpr(_f(ref.ERF_COEFFS[2]))
A2: tl.constexpr = tl.constexpr(_f(ref.ERF_COEFFS[3]))
A1: tl.constexpr = tl.constexpr(_f(ref.ERF_COEFFS[4]))
ERF_P: tl.constexpr = tl.constexpr(_f(ref.ERF_P))
FRAC_1_SQRT_2: tl.constexpr = tl.constexpr(_f(ref.FRAC_1_SQRT_2))
FRAC_1_SQRT_2PI: tl.constexpr = tl.constexpr(_f(ref.FRAC_1_SQRT_2PI))
GELU_TANH_K0: tl.constexpr = tl.constexpr(_f(ref.GELU_TANH_K0))
GELU_TANH_K1: tl.constexpr = tl.constexpr(_f(ref.GELU_TANH_K1))
GELU_TANH_K3: tl.constexpr = tl.constexpr(_f(ref.GELU_TANH_K3))
INF_BITS: tl.constexpr = tl.constexpr(0x7F800000)
NAN_BITS: tl.constexpr = tl.constexpr(0x7FC00000)

# Elementwise op codes of `_unary_kernel` (constexpr: one compiled kernel per op).
_UNARY = {"exp": 0, "log": 1, "tanh": 2, "gelu": 3, "relu": 4, "phi_cdf": 5,
          "relu_backward": 6, "tanh_backward": 7, "gelu_backward": 8,
          "silu": 9, "gelu_tanh": 10, "silu_backward": 11, "gelu_tanh_backward": 12}  # fmt: skip
BLOCK = 256  # elements per program of an elementwise kernel
ROWS = 32  # rows per program of a row kernel (rows in parallel, each row's fold sequential)
TILE = 32  # outputs per side of a matmul tile


def _launch(kernel: Any, grid: tuple[int, ...], *args: Any, **meta: Any) -> None:
    """Every launch goes through here so that none forgets to forbid fused multiply-add."""
    kernel[grid](*args, enable_fp_fusion=False, **meta)


# --------------------------------------------------------------------------------------------------
# Elementary functions (device functions, inlined into the kernels)
# --------------------------------------------------------------------------------------------------


@triton.jit
def _bits(like, pattern: tl.constexpr):
    """A binary32 tensor shaped like `like` holding the bit pattern `pattern` (±inf, NaN)."""
    return tl.full(like.shape, pattern, tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _pow2(n):
    """2^n for integer n in [−126, 127], built from its bits (exact)."""
    return ((n + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _div(a, b):
    """Correctly rounded a / b (a may be a constant). tl.full, not tl.zeros_like: the latter is a
    @triton.jit helper, compiled-mode if triton was imported before TRITON_INTERPRET was set."""
    return tl.div_rn(tl.full(b.shape, a, tl.float32), b)


@triton.jit
def _exp(x):
    nan = x != x
    big = x > EXP_OVERFLOW
    small = x < EXP_UNDERFLOW
    xs = tl.where(nan | big | small, 0.0, x)
    n = (xs * LOG2E + RINT_MAGIC) - RINT_MAGIC
    r = (xs - n * LN2_HI) - n * LN2_LO
    p = r * E7 + E6
    p = p * r + E5
    p = p * r + E4
    p = p * r + E3
    p = p * r + E2
    p = p * r + 1.0
    p = p * r + 1.0
    ni = n.to(tl.int32)
    half = ni >> 1  # floor(n / 2): arithmetic shift
    out = (p * _pow2(half)) * _pow2(ni - half)
    out = tl.where(big, _bits(x, INF_BITS), out)
    out = tl.where(small, 0.0, out)
    return tl.where(nan, x, out)


@triton.jit
def _log(x):
    inf = _bits(x, INF_BITS)
    special = (x <= 0.0) | (x != x) | (x == inf)
    xs = tl.where(special, 1.0, x)
    sub = xs < MIN_NORMAL
    xs = tl.where(sub, xs * TWO_POW_23, xs)
    bits = xs.to(tl.int32, bitcast=True)
    e = (bits >> 23) - 127 - tl.where(sub, 23, 0)
    m = ((bits & 0x007FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)
    over = m > SQRT2
    m = tl.where(over, m * 0.5, m)
    e = e + over.to(tl.int32)
    f = m - 1.0
    s = tl.div_rn(f, f + 2.0)  # 2 + f: addition commutes, same bits
    z = s * s
    q = z * L9 + L7
    q = q * z + L5
    q = q * z + L3
    q = q * z
    r = s + s * q
    ef = e.to(tl.float32)
    out = ef * LN2_HI + (ef * LN2_LO + (r + r))
    out = tl.where(x == 0.0, -inf, out)
    out = tl.where(x == inf, inf, out)
    return tl.where((x < 0.0) | (x != x), _bits(x, NAN_BITS), out)


@triton.jit
def _tanh(x):
    a = tl.abs(x)
    z = x * x
    q = z * T9 + T7
    q = q * z + T5
    q = q * z + T3
    q = q * z
    small = x + x * q
    mid_a = tl.where(a < TANH_ONE, a, 0.0)
    t = _exp(mid_a + mid_a)
    mid = 1.0 - _div(2.0, t + 1.0)
    mid = tl.where(x < 0.0, -mid, mid)
    one = tl.where(x < 0.0, -1.0, 1.0)
    out = tl.where(a < TANH_SMALL, small, tl.where(a < TANH_ONE, mid, one))
    return tl.where(x != x, x, out)


@triton.jit
def _phi(x):
    u = x * FRAC_1_SQRT_2
    a = tl.abs(u)
    t = _div(1.0, a * ERF_P + 1.0)
    q = t * A5 + A4
    q = q * t + A3
    q = q * t + A2
    q = q * t + A1
    q = q * t
    erf = 1.0 - q * _exp(-(a * a))
    erf = tl.where(u < 0.0, -erf, erf)
    return (erf + 1.0) * 0.5


@triton.jit
def _neg(x):
    """−x exactly, sign of zero included, by flipping the sign bit: Triton lowers a float `-x` to 0 − x,
    which makes −(+0) = +0."""
    return (x.to(tl.int32, bitcast=True) ^ -2147483648).to(tl.float32, bitcast=True)


@triton.jit
def _sigmoid(x):
    return _div(1.0, _exp(-x) + 1.0)


@triton.jit
def _gelu_tanh_t(x):
    return _tanh((x + ((x * x) * x) * GELU_TANH_K1) * GELU_TANH_K0)


# --------------------------------------------------------------------------------------------------
# Elementwise kernels
# --------------------------------------------------------------------------------------------------


@triton.jit
def _unary_kernel(x_ptr, dy_ptr, out_ptr, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if OP == 0:
        out = _exp(x)
    elif OP == 1:
        out = _log(x)
    elif OP == 2:
        out = _tanh(x)
    elif OP == 3:
        out = x * _phi(x)
    elif OP == 4:
        # relu as a select on the bits: a float select of x against 0 may be lowered to max.f32, whose
        # answer for (-0, +0) and NaN the arithmetic does not rely on
        out = tl.where(x > 0.0, x.to(tl.int32, bitcast=True), 0).to(tl.float32, bitcast=True)
    elif OP == 5:
        out = _phi(x)
    elif OP == 9:
        out = x * _sigmoid(x)
    elif OP == 10:
        out = (x * 0.5) * (_gelu_tanh_t(x) + 1.0)
    else:
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0)
        if OP == 6:
            out = tl.where(x > 0.0, dy, 0.0)
        elif OP == 7:
            out = dy * (1.0 - x * x)  # x is the forward output y here
        elif OP == 8:
            density = _exp(-((x * x) * 0.5)) * FRAC_1_SQRT_2PI
            out = dy * (_phi(x) + x * density)
        elif OP == 11:
            s = _sigmoid(x)
            out = dy * (s * (x * (1.0 - s) + 1.0))
        else:
            t = _gelu_tanh_t(x)
            di = ((x * x) * GELU_TANH_K3 + 1.0) * GELU_TANH_K0
            out = dy * ((t + 1.0) * 0.5 + (x * 0.5) * ((1.0 - t * t) * di))
    tl.store(out_ptr + offs, out, mask=mask)


def _count(n: int) -> float:
    """float32(n) as a kernel argument (an int argument equal to 1 would be specialised to a constant)."""
    return float(np.float32(n))


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _unary(name: str) -> Callable[..., torch.Tensor]:
    def run(x: torch.Tensor, dy: torch.Tensor | None = None) -> torch.Tensor:
        x = _f32(x)
        d = x if dy is None else _f32(dy)
        out = torch.empty_like(x)
        if x.numel():
            _launch(_unary_kernel, (triton.cdiv(x.numel(), BLOCK),), x, d, out, x.numel(), OP=_UNARY[name], BLOCK=BLOCK)
        return out

    run.__name__ = name
    return run


exp, log, tanh, gelu, relu, phi_cdf = (_unary(n) for n in ("exp", "log", "tanh", "gelu", "relu", "phi_cdf"))
relu_backward, tanh_backward, gelu_backward = (_unary(n) for n in ("relu_backward", "tanh_backward", "gelu_backward"))
silu, silu_backward, gelu_tanh, gelu_tanh_backward = (_unary(n) for n in ("silu", "silu_backward", "gelu_tanh", "gelu_tanh_backward"))


# --------------------------------------------------------------------------------------------------
# Matmul, linear, column folds
# --------------------------------------------------------------------------------------------------


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K, sab, sam, sak, sbb, sbk, sbn, scb, scm, scn,
                   HAS_BIAS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):  # fmt: skip
    """c[z, m, n] = fold over k in order of a[z, m, k] × b[z, k, n] (+ bias[n]); strides give transposes
    and batch broadcasting (stride 0) without copies."""
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    z = tl.program_id(2).to(tl.int64)
    mm, mn = rm < M, rn < N
    a_row = a_ptr + z * sab + rm * sam
    b_col = b_ptr + z * sbb + rn * sbn
    acc = tl.zeros((BM, BN), dtype=tl.float32)  # +0
    for k in range(0, K):
        av = tl.load(a_row + k * sak, mask=mm, other=0.0)
        bv = tl.load(b_col + k * sbk, mask=mn, other=0.0)
        acc = acc + av[:, None] * bv[None, :]  # product rounded, then the sum (no fusion)
    if HAS_BIAS:
        acc = acc + tl.load(bias_ptr + rn, mask=mn, other=0.0)[None, :]
    tl.store(c_ptr + z * scb + rm[:, None] * scm + rn[None, :] * scn, acc, mask=mm[:, None] & mn[None, :])


def _matmul3(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """[Za, M, K] @ [Zb, K, N] with Za, Zb equal or 1 (broadcast), any strides."""
    batch, rows, depth, cols = max(a.shape[0], b.shape[0]), a.shape[1], a.shape[2], b.shape[2]
    out = torch.empty((batch, rows, cols), dtype=torch.float32, device=a.device)
    if out.numel() == 0:
        return out
    if depth == 0:
        out.zero_()  # an empty fold is +0
        return out if bias is None else out.add_(bias)
    grid = (triton.cdiv(rows, TILE), triton.cdiv(cols, TILE), batch)
    sa0 = a.stride(0) if a.shape[0] > 1 else 0
    sb0 = b.stride(0) if b.shape[0] > 1 else 0
    _launch(_matmul_kernel, grid, a, b, out, out if bias is None else bias, rows, cols, depth,
            sa0, a.stride(1), a.stride(2), sb0, b.stride(1), b.stride(2), out.stride(0), out.stride(1), out.stride(2),
            HAS_BIAS=bias is not None, BM=TILE, BN=TILE)  # fmt: skip
    return out


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[..., M, K] @ [..., K, N], leading axes broadcast (a batch of one broadcasts)."""
    a, b = a.detach().float(), b.detach().float()
    lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])

    def as3(t: torch.Tensor) -> torch.Tensor:
        if t.shape[:-2] != lead and int(np.prod(t.shape[:-2], dtype=np.int64)) == 1:
            return t.reshape(1, *t.shape[-2:])
        return t.expand(*lead, *t.shape[-2:]).reshape(-1, *t.shape[-2:])

    out = _matmul3(as3(a), as3(b))
    return out.reshape(*lead, a.shape[-2], b.shape[-1])


@triton.jit
def _sum_rows_kernel(x_ptr, y_ptr, out_ptr, R, N, PRODUCT: tl.constexpr, BLOCK: tl.constexpr):
    """out[n] = fold over r in order of x[r, n] (or of x[r, n] × y[r, n], each product rounded)."""
    rn = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = rn < N
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for r in range(0, R):
        v = tl.load(x_ptr + r * N + rn, mask=mask, other=0.0)
        if PRODUCT:
            v = v * tl.load(y_ptr + r * N + rn, mask=mask, other=0.0)
        acc = acc + v
    tl.store(out_ptr + rn, acc, mask=mask)


def _fold_rows(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    x2 = _f32(x).reshape(x.shape[0], -1)
    y2 = x2 if y is None else _f32(y).reshape(x2.shape)
    out = torch.empty(x2.shape[1], dtype=torch.float32, device=x.device)
    if out.numel():
        _launch(_sum_rows_kernel, (triton.cdiv(out.numel(), BLOCK),), x2, y2, out, x2.shape[0], x2.shape[1],
                PRODUCT=y is not None, BLOCK=BLOCK)  # fmt: skip
    return out.reshape(x.shape[1:])


def sum_rows(x: torch.Tensor) -> torch.Tensor:
    """[R, …] → […]: fold over r in order."""
    return _fold_rows(x)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """matmul(x, weightᵀ) (a transposed view: no copy), then + bias[n]."""
    rows = _f32(x).reshape(1, -1, x.shape[-1])
    w = _f32(weight)
    y = _matmul3(rows, w.t().unsqueeze(0), None if bias is None else _f32(bias))
    return y.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward(x: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx = matmul(dy, weight); dweight = matmul(dyᵀ, x) (fold over rows); dbias = sum_rows(dy)."""
    rows = _f32(x).reshape(-1, x.shape[-1])
    w, d = _f32(weight), _f32(dy).reshape(-1, weight.shape[0])
    dx = _matmul3(d.unsqueeze(0), w.unsqueeze(0))[0]
    dw = _matmul3(d.t().unsqueeze(0), rows.unsqueeze(0))[0]
    return dx, dw, sum_rows(d)


# --------------------------------------------------------------------------------------------------
# Row kernels: rows in parallel, each row folded in column order
# --------------------------------------------------------------------------------------------------


@triton.jit
def _row_max(z_ptr, rr, mask, D):
    """m = z[r, 0], then m = z[r, j] if z[r, j] > m (the first maximum wins)."""
    m = tl.load(z_ptr + rr * D, mask=mask, other=0.0)
    for j in range(1, D):
        v = tl.load(z_ptr + rr * D + j, mask=mask, other=0.0)
        m = tl.where(v > m, v, m)
    return m


@triton.jit
def _row_exp_sum(z_ptr, rr, mask, D, m):
    s = tl.zeros(m.shape, dtype=tl.float32)
    for j in range(0, D):
        s = s + _exp(tl.load(z_ptr + rr * D + j, mask=mask, other=0.0) - m)
    return s


@triton.jit
def _softmax_kernel(z_ptr, out_ptr, R, D, BLOCK: tl.constexpr):
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    m = _row_max(z_ptr, rr, mask, D)
    s = _row_exp_sum(z_ptr, rr, mask, D, m)
    for j in range(0, D):  # e_j again (the same bits) rather than a re-read of stored values
        e = _exp(tl.load(z_ptr + rr * D + j, mask=mask, other=0.0) - m)
        tl.store(out_ptr + rr * D + j, tl.div_rn(e, s), mask=mask)


@triton.jit
def _softmax_backward_kernel(y_ptr, dy_ptr, out_ptr, R, D, BLOCK: tl.constexpr):
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    d = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, D):
        d = d + tl.load(y_ptr + rr * D + j, mask=mask, other=0.0) * tl.load(dy_ptr + rr * D + j, mask=mask, other=0.0)
    for j in range(0, D):
        y = tl.load(y_ptr + rr * D + j, mask=mask, other=0.0)
        tl.store(out_ptr + rr * D + j, y * (tl.load(dy_ptr + rr * D + j, mask=mask, other=0.0) - d), mask=mask)


def _rows(kernel: Any, *tensors: torch.Tensor, extra: tuple[Any, ...] = ()) -> torch.Tensor:
    """Run a row kernel over `tensors[0]` viewed as [R, D]; returns the [R, D] output shaped like it."""
    first = _f32(tensors[0])
    width = first.shape[-1]
    flat = [_f32(t).reshape(-1, width) for t in tensors]
    out = torch.empty_like(flat[0])
    if out.numel():
        _launch(kernel, (triton.cdiv(out.shape[0], ROWS),), *flat, out, out.shape[0], width, *extra, BLOCK=ROWS)
    return out.reshape(first.shape)


def softmax(z: torch.Tensor) -> torch.Tensor:
    return _rows(_softmax_kernel, z)


def softmax_backward(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    return _rows(_softmax_backward_kernel, y, dy)


@triton.jit
def _cross_entropy_rows_kernel(z_ptr, t_ptr, nll_ptr, R, D, BLOCK: tl.constexpr):
    """nll_r = log(s_r) − (z[r, t_r] − m_r)."""
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    m = _row_max(z_ptr, rr, mask, D)
    s = _row_exp_sum(z_ptr, rr, mask, D, m)
    picked = tl.load(z_ptr + rr * D + tl.load(t_ptr + rr, mask=mask, other=0), mask=mask, other=0.0)
    tl.store(nll_ptr + rr, _log(s) - (picked - m), mask=mask)


@triton.jit
def _fold_kernel(x_ptr, y_ptr, out_ptr, n, count, SQUARED_DIFF: tl.constexpr):
    """One program: out = (fold over i in order of x[i], or of (x[i] − y[i])²) / float(n)."""
    one = tl.arange(0, 1)
    acc = tl.zeros((1,), dtype=tl.float32)
    for i in range(0, n):
        v = tl.load(x_ptr + i + one)
        if SQUARED_DIFF:
            v = v - tl.load(y_ptr + i + one)
            v = v * v
        acc = acc + v
    tl.store(out_ptr + one, tl.div_rn(acc, tl.zeros((1,), dtype=tl.float32) + count))


def _mean_fold(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    x1 = _f32(x).reshape(-1)
    y1 = x1 if y is None else _f32(y).reshape(-1)
    out = torch.empty(1, dtype=torch.float32, device=x.device)
    _launch(_fold_kernel, (1,), x1, y1, out, x1.numel(), _count(x1.numel()), SQUARED_DIFF=y is not None)
    return out.reshape(())


def cross_entropy(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of log(s_r) − (z[r, t_r] − m_r), folded in row order (a 0-d tensor)."""
    z = _f32(z)
    nll = torch.empty(z.shape[0], dtype=torch.float32, device=z.device)
    _launch(_cross_entropy_rows_kernel, (triton.cdiv(z.shape[0], ROWS),), z, target.detach().to(torch.int64).contiguous(),
            nll, z.shape[0], z.shape[1], BLOCK=ROWS)  # fmt: skip
    return _mean_fold(nll)


@triton.jit
def _cross_entropy_backward_kernel(z_ptr, t_ptr, out_ptr, R, D, count, grad, BLOCK: tl.constexpr):
    """((e / s) − [j = t_r]) / float(R) × grad."""
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    m = _row_max(z_ptr, rr, mask, D)
    s = _row_exp_sum(z_ptr, rr, mask, D, m)
    t = tl.load(t_ptr + rr, mask=mask, other=0)
    rows = tl.zeros((BLOCK,), dtype=tl.float32) + count
    for j in range(0, D):
        p = tl.div_rn(_exp(tl.load(z_ptr + rr * D + j, mask=mask, other=0.0) - m), s)
        p = tl.where(t == j, p - 1.0, p)
        tl.store(out_ptr + rr * D + j, tl.div_rn(p, rows) * grad, mask=mask)


def cross_entropy_backward(z: torch.Tensor, target: torch.Tensor, grad: Any) -> torch.Tensor:
    z = _f32(z)
    out = torch.empty_like(z)
    if out.numel():
        _launch(_cross_entropy_backward_kernel, (triton.cdiv(z.shape[0], ROWS),), z,
                target.detach().to(torch.int64).contiguous(), out, z.shape[0], z.shape[1], _count(z.shape[0]),
                float(np.float32(grad)), BLOCK=ROWS)  # fmt: skip
    return out


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """fold over all elements in row-major order of (out − y)², / float(count) (a 0-d tensor)."""
    return _mean_fold(out, y)


@triton.jit
def _mse_backward_kernel(o_ptr, y_ptr, out_ptr, n, count, grad, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    d = tl.load(o_ptr + offs, mask=mask, other=0.0) - tl.load(y_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, tl.div_rn(d + d, tl.zeros((BLOCK,), dtype=tl.float32) + count) * grad, mask=mask)


def mse_backward(out: torch.Tensor, y: torch.Tensor, grad: Any) -> torch.Tensor:
    o, t = _f32(out), _f32(y)
    result = torch.empty_like(o)
    if o.numel():
        _launch(_mse_backward_kernel, (triton.cdiv(o.numel(), BLOCK),), o, t, result, o.numel(), _count(o.numel()),
                float(np.float32(grad)), BLOCK=BLOCK)
    return result


@triton.jit
def _layer_norm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, xhat_ptr, rstd_ptr, R, D, width_f, eps, BLOCK: tl.constexpr):
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    width = tl.zeros((BLOCK,), dtype=tl.float32) + width_f
    s = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, D):
        s = s + tl.load(x_ptr + rr * D + j, mask=mask, other=0.0)
    mean = tl.div_rn(s, width)
    v = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, D):
        c = tl.load(x_ptr + rr * D + j, mask=mask, other=0.0) - mean
        v = v + c * c
    rho = _div(1.0, tl.sqrt_rn(tl.div_rn(v, width) + eps))
    tl.store(rstd_ptr + rr, rho, mask=mask)
    for j in range(0, D):
        xh = (tl.load(x_ptr + rr * D + j, mask=mask, other=0.0) - mean) * rho
        tl.store(xhat_ptr + rr * D + j, xh, mask=mask)
        tl.store(y_ptr + rr * D + j, xh * tl.load(w_ptr + j) + tl.load(b_ptr + j), mask=mask)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of [R, D]: returns (y, x̂, ρ) as the reference."""
    return _norm_rows(_layer_norm_kernel, x, (weight, bias), eps)


def _norm_rows(kernel: Any, x: torch.Tensor, params: tuple[torch.Tensor, ...], eps: float) -> tuple[torch.Tensor, ...]:
    """Launch a row-normalisation kernel (layer norm, RMSNorm) over [R, D]: returns (y, x̂, ρ)."""
    x = _f32(x)
    y, xhat = torch.empty_like(x), torch.empty_like(x)
    rstd = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    if x.numel():
        _launch(kernel, (triton.cdiv(x.shape[0], ROWS),), x, *(_f32(p) for p in params), y, xhat, rstd,
                x.shape[0], x.shape[1], _count(x.shape[1]), float(np.float32(eps)), BLOCK=ROWS)  # fmt: skip
    return y, xhat, rstd


def _norm_rows_backward(kernel: Any, xhat: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor,
                        dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Launch a row-normalisation backward kernel: returns (dx, dy as [R, D])."""
    xhat, d = _f32(xhat), _f32(dy).reshape(xhat.shape)
    dx = torch.empty_like(xhat)
    if xhat.numel():
        _launch(kernel, (triton.cdiv(xhat.shape[0], ROWS),), xhat, _f32(rstd), _f32(weight), d, dx,
                xhat.shape[0], xhat.shape[1], _count(xhat.shape[1]), BLOCK=ROWS)  # fmt: skip
    return dx, d


@triton.jit
def _layer_norm_backward_kernel(xhat_ptr, rstd_ptr, w_ptr, dy_ptr, dx_ptr, R, D, width_f, BLOCK: tl.constexpr):
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    width = tl.zeros((BLOCK,), dtype=tl.float32) + width_f
    a = tl.zeros((BLOCK,), dtype=tl.float32)
    b = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, D):
        g = tl.load(dy_ptr + rr * D + j, mask=mask, other=0.0) * tl.load(w_ptr + j)
        a = a + g
        b = b + g * tl.load(xhat_ptr + rr * D + j, mask=mask, other=0.0)
    a = tl.div_rn(a, width)
    b = tl.div_rn(b, width)
    rho = tl.load(rstd_ptr + rr, mask=mask, other=0.0)
    for j in range(0, D):
        g = tl.load(dy_ptr + rr * D + j, mask=mask, other=0.0) * tl.load(w_ptr + j)
        xh = tl.load(xhat_ptr + rr * D + j, mask=mask, other=0.0)
        tl.store(dx_ptr + rr * D + j, ((g - a) - xh * b) * rho, mask=mask)


def layer_norm_backward(xhat: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx per row; dw = fold over rows of dy × x̂; db = fold over rows of dy."""
    dx, d = _norm_rows_backward(_layer_norm_backward_kernel, xhat, rstd, weight, dy)
    return dx, _fold_rows(d, _f32(xhat)), _fold_rows(d)


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, y_ptr, xhat_ptr, rstd_ptr, R, D, width_f, eps, BLOCK: tl.constexpr):
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    width = tl.zeros((BLOCK,), dtype=tl.float32) + width_f
    s = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, D):
        v = tl.load(x_ptr + rr * D + j, mask=mask, other=0.0)
        s = s + v * v
    rho = _div(1.0, tl.sqrt_rn(tl.div_rn(s, width) + eps))
    tl.store(rstd_ptr + rr, rho, mask=mask)
    for j in range(0, D):
        xh = tl.load(x_ptr + rr * D + j, mask=mask, other=0.0) * rho
        tl.store(xhat_ptr + rr * D + j, xh, mask=mask)
        tl.store(y_ptr + rr * D + j, xh * tl.load(w_ptr + j), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of [R, D]: returns (y, x̂, r) as the reference."""
    return _norm_rows(_rms_norm_kernel, x, (weight,), eps)


@triton.jit
def _rms_norm_backward_kernel(xhat_ptr, rstd_ptr, w_ptr, dy_ptr, dx_ptr, R, D, width_f, BLOCK: tl.constexpr):
    rr = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = rr < R
    width = tl.zeros((BLOCK,), dtype=tl.float32) + width_f
    b = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, D):
        g = tl.load(dy_ptr + rr * D + j, mask=mask, other=0.0) * tl.load(w_ptr + j)
        b = b + g * tl.load(xhat_ptr + rr * D + j, mask=mask, other=0.0)
    b = tl.div_rn(b, width)
    rho = tl.load(rstd_ptr + rr, mask=mask, other=0.0)
    for j in range(0, D):
        g = tl.load(dy_ptr + rr * D + j, mask=mask, other=0.0) * tl.load(w_ptr + j)
        xh = tl.load(xhat_ptr + rr * D + j, mask=mask, other=0.0)
        tl.store(dx_ptr + rr * D + j, (g - xh * b) * rho, mask=mask)


def rms_norm_backward(xhat: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dx per row; dw = fold over rows of dy × x̂."""
    dx, d = _norm_rows_backward(_rms_norm_backward_kernel, xhat, rstd, weight, dy)
    return dx, _fold_rows(d, _f32(xhat))


@triton.jit
def _rotary_kernel(x_ptr, cos_ptr, sin_ptr, out_ptr, n, T, Hw, BACKWARD: tl.constexpr, BLOCK: tl.constexpr):
    # x is [..., T, 2·Hw] flattened; the tables are [T, 2·Hw]. Forward: y = x·cos + ρ·sin with
    # ρ = (−x[j + Hw], x[j − Hw]); backward: ρ' = (dy[j + Hw], −dy[j − Hw]) (docs/arithmetic.md, 5a)
    offs = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = offs < n
    width = Hw + Hw
    j = offs % width
    low = j < Hw
    partner = tl.where(low, offs + Hw, offs - Hw)
    table = (offs // width) % T * width + j
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    other = tl.load(x_ptr + partner, mask=mask, other=0.0)
    if BACKWARD:
        rho = tl.where(low, other, _neg(other))
    else:
        rho = tl.where(low, _neg(other), other)
    c = tl.load(cos_ptr + table, mask=mask, other=0.0)
    s = tl.load(sin_ptr + table, mask=mask, other=0.0)
    tl.store(out_ptr + offs, x * c + rho * s, mask=mask)


def _table(t: Any, device: torch.device) -> torch.Tensor:
    """A rotary table on `device`: a tensor, or a host array (the engine's cached, read-only tables: copied)."""
    if isinstance(t, torch.Tensor):
        return _f32(t.to(device))
    return torch.from_numpy(np.array(t, dtype=np.float32)).to(device)


def _rotary(x: torch.Tensor, cos: Any, sin: Any, backward: bool) -> torch.Tensor:
    x = _f32(x)
    c, s = (_table(t, x.device) for t in (cos, sin))
    out = torch.empty_like(x)
    if x.numel():
        _launch(_rotary_kernel, (triton.cdiv(x.numel(), BLOCK),), x, c, s, out, x.numel(), x.shape[-2], x.shape[-1] // 2,
                BACKWARD=backward, BLOCK=BLOCK)  # fmt: skip
    return out


def rotary(x: torch.Tensor, cos: Any, sin: Any) -> torch.Tensor:
    return _rotary(x, cos, sin, False)


def rotary_backward(dy: torch.Tensor, cos: Any, sin: Any) -> torch.Tensor:
    return _rotary(dy, cos, sin, True)


def fold_head_groups(d: torch.Tensor, group: int) -> torch.Tensor:
    """[B, n_heads, ...] → [B, n_heads / group, ...]: +0, then the group's heads added in increasing order.
    Whole-tensor torch additions: each is one correctly rounded binary32 add per element, no fold reordered."""
    d = _f32(d)
    out = torch.zeros((d.shape[0], d.shape[1] // group, *d.shape[2:]), dtype=torch.float32, device=d.device)
    for member in range(group):
        out = out + d[:, member::group]
    return out


# --------------------------------------------------------------------------------------------------
# Optimizers (in place on device tensors)
# --------------------------------------------------------------------------------------------------


@triton.jit
def _adamw_kernel(p_ptr, g_ptr, m_ptr, v_ptr, n, decay, beta1, omb1, beta2, omb2, correction2, eps, step_size,
                  BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0)
    p = tl.load(p_ptr + offs, mask=mask, other=0.0) * decay
    m = tl.load(m_ptr + offs, mask=mask, other=0.0) * beta1 + g * omb1
    v = tl.load(v_ptr + offs, mask=mask, other=0.0) * beta2 + (g * g) * omb2
    c2 = tl.zeros((BLOCK,), dtype=tl.float32) + correction2
    denom = tl.sqrt_rn(tl.div_rn(v, c2)) + eps
    tl.store(p_ptr + offs, p - tl.div_rn(m, denom) * step_size, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)


def _contiguous_f32(t: torch.Tensor) -> None:
    if t.dtype != torch.float32 or not t.is_contiguous():
        raise ValueError("portable optimizer state must be contiguous float32 tensors")


def adamw(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, c: dict[str, np.float32]) -> None:
    for t in (param, exp_avg, exp_avg_sq):
        _contiguous_f32(t)
    if param.numel():
        names = ("decay", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "correction2", "eps", "step_size")
        _launch(_adamw_kernel, (triton.cdiv(param.numel(), BLOCK),), param, _f32(grad), exp_avg, exp_avg_sq,
                param.numel(), *(float(c[k]) for k in names), BLOCK=BLOCK)  # fmt: skip


@triton.jit
def _sgd_kernel(p_ptr, g_ptr, buf_ptr, n, weight_decay, momentum, lr, HAS_DECAY: tl.constexpr,
                HAS_MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    p = tl.load(p_ptr + offs, mask=mask, other=0.0)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0)
    if HAS_DECAY:
        g = g + p * weight_decay
    if HAS_MOMENTUM:
        b = tl.load(buf_ptr + offs, mask=mask, other=0.0) * momentum + g
        tl.store(buf_ptr + offs, b, mask=mask)
        if NESTEROV:
            g = g + b * momentum
        else:
            g = b
    tl.store(p_ptr + offs, p - g * lr, mask=mask)


def sgd(param: torch.Tensor, grad: torch.Tensor, momentum: torch.Tensor | None, c: dict[str, np.float32], nesterov: bool) -> None:
    _contiguous_f32(param)
    if momentum is not None:
        _contiguous_f32(momentum)
    if param.numel():
        _launch(_sgd_kernel, (triton.cdiv(param.numel(), BLOCK),), param, _f32(grad),
                param if momentum is None else momentum, param.numel(), float(c["weight_decay"]), float(c["momentum"]),
                float(c["lr"]), HAS_DECAY=bool(c["weight_decay"] != 0), HAS_MOMENTUM=momentum is not None,
                NESTEROV=bool(nesterov), BLOCK=BLOCK)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Convolution (im2col + the matmul above) and embedding backward
# --------------------------------------------------------------------------------------------------


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """[B, C, H, W] → [B, C·k·k, OH·OW], rows (c, i, j) and columns (oh, ow) row-major, +0 outside the
    image: torch's unfold has exactly this layout and only moves values."""
    return torch.nn.functional.unfold(_f32(x), kernel, padding=padding, stride=stride).contiguous()


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int) -> torch.Tensor:
    """y[b] = matmul(weight as [O, C·k·k], im2col(x)[b]) (fold over q = (c, i, j)), then + bias[o]."""
    x, weight = _f32(x), _f32(weight)
    out_channels, kernel = weight.shape[0], weight.shape[-1]
    y = _matmul3(weight.reshape(1, out_channels, -1), im2col(x, kernel, stride, padding))
    if bias is not None:
        y = y + _f32(bias)[None, :, None]  # one rounded addition per element
    return y.reshape(x.shape[0], out_channels, _out_size(x.shape[2], kernel, stride, padding), -1)


@triton.jit
def _col2im_kernel(d_ptr, dx_ptr, total, C, H, W, OH, OW, S, P, K: tl.constexpr, BLOCK: tl.constexpr):
    """dx[b, c, h, w] = +0, then + dcols[b, (c, i, j), (oh, ow)] for (i, j) in row-major order whose
    window (oh, ow) covers (h, w)."""
    offs = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = offs < total
    w = offs % W
    h = (offs // W) % H
    c = (offs // (W * H)) % C
    b = offs // (W * H * C)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(K):
        for j in range(K):
            th = h + P - i
            tw = w + P - j
            th0 = tl.where(th >= 0, th, 0)  # integer division only of non-negative values
            tw0 = tl.where(tw >= 0, tw, 0)
            oh = th0 // S
            ow = tw0 // S
            ok = mask & (th >= 0) & (tw >= 0) & (th0 % S == 0) & (tw0 % S == 0) & (oh < OH) & (ow < OW)
            q = (c * K + i) * K + j
            v = tl.load(d_ptr + ((b * (C * K * K) + q) * OH + oh) * OW + ow, mask=ok, other=0.0)
            acc = tl.where(ok, acc + v, acc)
    tl.store(dx_ptr + offs, acc, mask=mask)


def col2im(dcols: torch.Tensor, shape: tuple[int, int, int, int], kernel: int, stride: int, padding: int) -> torch.Tensor:
    batch, channels, height, width = shape
    oh, ow = _out_size(height, kernel, stride, padding), _out_size(width, kernel, stride, padding)
    d = _f32(dcols)
    dx = torch.empty(shape, dtype=torch.float32, device=d.device)
    if dx.numel():
        _launch(_col2im_kernel, (triton.cdiv(dx.numel(), BLOCK),), d, dx, dx.numel(), channels, height, width, oh, ow,
                stride, padding, K=kernel, BLOCK=BLOCK)  # fmt: skip
    return dx


def conv2d_backward(x: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor, stride: int, padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dweight = matmul(dy as [O, (b, l)], cols as [(b, l), q]); dbias = fold of dy over (b, l);
    dx = col2im(matmul(weightᵀ, dy[b])). Transposed views are strides, not copies."""
    x, weight, dy = _f32(x), _f32(weight), _f32(dy)
    batch, out_channels, kernel = x.shape[0], weight.shape[0], weight.shape[-1]
    cols = im2col(x, kernel, stride, padding)  # [B, Q, L]
    d = dy.reshape(batch, out_channels, -1)  # [B, O, L]
    d_ol = d.transpose(0, 1).reshape(out_channels, -1)  # [O, B·L] (a copy: moves values only)
    cols_lq = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # [B·L, Q]
    dweight = _matmul3(d_ol.unsqueeze(0), cols_lq.unsqueeze(0))[0].reshape(weight.shape)
    dbias = _fold_rows(d_ol.t())
    dcols = _matmul3(weight.reshape(out_channels, -1).t().unsqueeze(0), d)  # [B, Q, L]
    return col2im(dcols, tuple(x.shape), kernel, stride, padding), dweight, dbias  # type: ignore[arg-type]


@triton.jit
def _embedding_backward_kernel(ids_ptr, dy_ptr, out_ptr, V, D, P, BLOCK: tl.constexpr):
    """out[v, d] = +0, then + dy[p, d] for the positions p in order with ids[p] = v (one column d per program)."""
    vs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    d = tl.program_id(1).to(tl.int64)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for p in range(0, P):
        token = tl.load(ids_ptr + p)
        value = tl.load(dy_ptr + p * D + d)
        acc = tl.where(vs == token, acc + value, acc)
    tl.store(out_ptr + vs.to(tl.int64) * D + d, acc, mask=vs < V)


def embedding_backward(ids: torch.Tensor, dy: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    flat = ids.detach().reshape(-1).to(torch.int64).contiguous()
    d = _f32(dy).reshape(flat.numel(), -1)
    out = torch.zeros((num_embeddings, d.shape[1]), dtype=torch.float32, device=d.device)
    if out.numel() and flat.numel():
        _launch(_embedding_backward_kernel, (triton.cdiv(num_embeddings, BLOCK), d.shape[1]), flat, d, out,
                num_embeddings, d.shape[1], flat.numel(), BLOCK=BLOCK)  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# Pooling (kernel k, stride s, no padding)
# --------------------------------------------------------------------------------------------------


@triton.jit
def _pool_kernel(x_ptr, y_ptr, where_ptr, total, H, W, OH, OW, S, count, K: tl.constexpr, IS_MAX: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
    """Max: m = first, then m = v if v > m over the window in (i, j) order (first maximum wins), with the
    winner's index i·k + j. Average: (+0 + v … in (i, j) order) / float(k·k)."""
    offs = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = offs < total
    ow = offs % OW
    oh = (offs // OW) % OH
    corner = x_ptr + (offs // (OW * OH)) * H * W + (oh * S) * W + ow * S
    best = tl.load(corner, mask=mask, other=0.0)
    where = tl.zeros((BLOCK,), dtype=tl.int64)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(K):
        for j in range(K):
            v = tl.load(corner + i * W + j, mask=mask, other=0.0)
            if IS_MAX:
                better = v > best
                best = tl.where(better, v, best)
                where = tl.where(better, i * K + j, where)
            else:
                acc = acc + v
    if IS_MAX:
        tl.store(y_ptr + offs, best, mask=mask)
        tl.store(where_ptr + offs, where, mask=mask)
    else:
        tl.store(y_ptr + offs, tl.div_rn(acc, tl.full((BLOCK,), count, tl.float32)), mask=mask)


@triton.jit
def _pool_backward_kernel(where_ptr, dy_ptr, dx_ptr, total, H, W, OH, OW, S, count, K: tl.constexpr, NW: tl.constexpr,
                          IS_MAX: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """dx = +0, then for the windows (oh, ow) in row-major order that cover (h, w): + dy[oh, ow] if this
    element won the window (max), or + dy[oh, ow] / float(k·k) (average). At most NW = ⌈k / s⌉ windows
    per axis cover an element."""
    offs = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = offs < total
    w = offs % W
    h = (offs // W) % H
    plane = offs // (W * H)
    first_h = tl.where(h - K + 1 <= 0, 0, (h - K + S) // S)  # the lowest window row covering h
    first_w = tl.where(w - K + 1 <= 0, 0, (w - K + S) // S)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for a in range(NW):
        for b in range(NW):
            oh = first_h + a
            ow = first_w + b
            ok = mask & (oh * S <= h) & (oh < OH) & (ow * S <= w) & (ow < OW)
            at = (plane * OH + oh) * OW + ow
            g = tl.load(dy_ptr + at, mask=ok, other=0.0)
            if IS_MAX:
                ok = ok & (tl.load(where_ptr + at, mask=ok, other=-1) == (h - oh * S) * K + (w - ow * S))
            else:
                g = tl.div_rn(g, tl.full((BLOCK,), count, tl.float32))
            acc = tl.where(ok, acc + g, acc)
    tl.store(dx_ptr + offs, acc, mask=mask)


def _pool(x: torch.Tensor, kernel: int, stride: int, is_max: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = _f32(x)
    batch, channels, height, width = x.shape
    oh, ow = _out_size(height, kernel, stride, 0), _out_size(width, kernel, stride, 0)
    y = torch.empty((batch, channels, oh, ow), dtype=torch.float32, device=x.device)
    where = torch.zeros(y.shape, dtype=torch.int64, device=x.device)
    if y.numel():
        _launch(_pool_kernel, (triton.cdiv(y.numel(), BLOCK),), x, y, where, y.numel(), height, width, oh, ow, stride,
                _count(kernel * kernel), K=kernel, IS_MAX=is_max, BLOCK=BLOCK)  # fmt: skip
    return y, where


def _pool_backward(shape: tuple[int, ...], where: torch.Tensor, dy: torch.Tensor, kernel: int, stride: int, is_max: bool) -> torch.Tensor:
    d = _f32(dy)
    dx = torch.empty(tuple(shape), dtype=torch.float32, device=d.device)
    if dx.numel():
        _launch(_pool_backward_kernel, (triton.cdiv(dx.numel(), BLOCK),), where.to(torch.int64).contiguous(), d, dx,
                dx.numel(), shape[2], shape[3], d.shape[2], d.shape[3], stride, _count(kernel * kernel), K=kernel,
                NW=-(-kernel // stride), IS_MAX=is_max, BLOCK=BLOCK)  # fmt: skip
    return dx


def max_pool(x: torch.Tensor, kernel: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, index of the winner in its window)."""
    return _pool(x, kernel, stride, True)


def max_pool_backward(shape: tuple[int, int, int, int], where: torch.Tensor, dy: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    return _pool_backward(shape, where, dy, kernel, stride, True)


def avg_pool(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    return _pool(x, kernel, stride, False)[0]


def avg_pool_backward(shape: tuple[int, int, int, int], dy: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    d = _f32(dy)
    return _pool_backward(shape, d, d, kernel, stride, False)  # `where` unused: dy stands in


# --------------------------------------------------------------------------------------------------
# Not yet in Triton: the numba kernels on host copies (same bits, slower)
# --------------------------------------------------------------------------------------------------


def _to_host(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().contiguous().cpu().numpy()
    if isinstance(value, list):
        return [_to_host(v) for v in value]
    return value


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value)).to(device)
    return value


def _device_of(args: tuple[Any, ...]) -> torch.device:
    for value in args:
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            return value[0].device
    return torch.device("cpu")


def _on_host(name: str) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        from engine.portable import cpu

        return _to_device(getattr(cpu, name)(*(_to_host(a) for a in args)), _device_of(args))

    run.__name__ = name
    return run


HOST_OPS = ("squared_norm",)
squared_norm = _on_host("squared_norm")


def cross_entropy_rows(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """nll_r = log(s_r) − (z[r, t_r] − m_r) per row ([R]): cross_entropy's row kernel without the fold."""
    z = _f32(z)
    nll = torch.empty(z.shape[0], dtype=torch.float32, device=z.device)
    if z.shape[0]:
        _launch(_cross_entropy_rows_kernel, (triton.cdiv(z.shape[0], ROWS),), z,
                target.detach().to(torch.int64).contiguous(), nll, z.shape[0], z.shape[1], BLOCK=ROWS)  # fmt: skip
    return nll
