"""The reference implementation of tessera-portable/1: docs/arithmetic.md, op by op, in NumPy.

Slow and obviously right. Every line is one binary32 operation of the document on whole arrays
(NumPy's float32 ufuncs round each +, −, ×, ÷ and √ correctly and never fuse two of them), with
reductions written as explicit loops in the document's order. Inputs are float32 C-contiguous
arrays; nothing here reads torch. The fast backends (`cpu`, `cuda`) must agree with this bit for bit.
"""

from __future__ import annotations

import numpy as np

from engine.portable.rotary_tables import rotary_tables  # noqa: F401  (an op of section 5a: host binary64)

F32 = np.float32
ZERO, HALF, ONE, TWO = F32(0.0), F32(0.5), F32(1.0), F32(2.0)

# exp (Cody-Waite reduction by ln 2, Taylor polynomial of degree 7)
EXP_OVERFLOW = F32(88.72283935546875)  # 0x42B17218: above it exp is +inf
EXP_UNDERFLOW = F32(-103.97208404541016)  # 0xC2CFF1B5: below it exp is +0
LOG2E = F32(1.4426950408889634)  # 0x3FB8AA3B
LN2_HI = F32(0.693145751953125)  # 0x3F317200: 15 significant bits, so n × LN2_HI is exact
LN2_LO = F32(1.4286068203094173e-06)  # 0x35BFBE8E: ln 2 − LN2_HI
EXP_COEFFS = tuple(F32(1.0 / f) for f in (5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0))  # 1/7! … 1/0!

# log (reduction to [√½, √2), atanh series in s = f / (2 + f))
SQRT2 = F32(1.4142135623730951)  # 0x3FB504F3
LOG_COEFFS = tuple(F32(1.0 / k) for k in (9.0, 7.0, 5.0, 3.0))
TWO_POW_23 = F32(2.0**23)

# tanh (odd Taylor polynomial below 0.2, exp-based above, ±1 from 9)
TANH_SMALL = F32(0.2)  # 0x3E4CCCCD
TANH_ONE = F32(9.0)
TANH_COEFFS = tuple(F32(c) for c in (62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0))

# GELU through Φ(x) = ½(1 + erf(x/√2)), erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7)
FRAC_1_SQRT_2 = F32(0.7071067811865476)  # 0x3F3504F3
ERF_P = F32(0.3275911)
ERF_COEFFS = tuple(F32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))  # a5 … a1
FRAC_1_SQRT_2PI = F32(0.3989422804014327)  # 0x3ECC422A


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=F32)


def _pow2(n: np.ndarray) -> np.ndarray:
    """2^n as binary32 for integer n in [−126, 127], built from its bits (exact)."""
    return ((n.astype(np.int32) + 127) << 23).astype(np.int32).view(F32)


# --------------------------------------------------------------------------------------------------
# Elementary functions
# --------------------------------------------------------------------------------------------------


def exp(x: np.ndarray) -> np.ndarray:
    """e^x: n = rint(x·log2e); r = (x − n·LN2_HI) − n·LN2_LO; p = Horner(1/7! … 1/0!) at r;
    result = (p · 2^⌊n/2⌋) · 2^(n − ⌊n/2⌋). +inf above EXP_OVERFLOW, +0 below EXP_UNDERFLOW, NaN → NaN."""
    x = _f32(x)
    nan = np.isnan(x)
    big, small = x > EXP_OVERFLOW, x < EXP_UNDERFLOW
    xs = np.where(nan | big | small, ZERO, x)
    n = np.rint(xs * LOG2E)
    r = (xs - n * LN2_HI) - n * LN2_LO
    p = np.full_like(r, EXP_COEFFS[0])
    for c in EXP_COEFFS[1:]:
        p = p * r + c
    ni = n.astype(np.int32)
    half = ni >> 1  # floor(n / 2) for negative n too (arithmetic shift)
    out = (p * _pow2(half)) * _pow2(ni - half)
    out = np.where(big, F32(np.inf), out)
    out = np.where(small, ZERO, out)
    return np.where(nan, F32(np.nan), out).astype(F32)


def log(x: np.ndarray) -> np.ndarray:
    """ln x: x = 2^e·m with m in [√½, √2) (exact bit operations, subnormals first × 2^23);
    f = m − 1; s = f / (2 + f); z = s²; q = ((((1/9)z + 1/7)z + 1/5)z + 1/3)·z; r = s + s·q;
    result = e·LN2_HI + (e·LN2_LO + (r + r)). log(+0) = −inf, log(+inf) = +inf, negative or NaN → NaN."""
    x = _f32(x)
    special = ~(x > ZERO) | np.isinf(x)
    xs = np.where(special, ONE, x)
    sub = xs < F32(2.0**-126)
    xs = np.where(sub, xs * TWO_POW_23, xs)
    bits = xs.view(np.int32)
    e = (bits >> 23) - 127 - np.where(sub, 23, 0)
    m = ((bits & 0x007FFFFF) | 0x3F800000).astype(np.int32).view(F32)
    over = m > SQRT2
    m = np.where(over, m * HALF, m)
    e = e + over.astype(np.int32)
    f = m - ONE
    s = f / (TWO + f)
    z = s * s
    q = np.full_like(z, LOG_COEFFS[0])
    for c in LOG_COEFFS[1:]:
        q = q * z + c
    q = q * z
    r = s + s * q
    ef = e.astype(F32)
    out = ef * LN2_HI + (ef * LN2_LO + (r + r))
    out = np.where(x == ZERO, F32(-np.inf), out)
    out = np.where(x == F32(np.inf), F32(np.inf), out)
    return np.where(~(x >= ZERO) | (x != x), F32(np.nan), out).astype(F32)


def tanh(x: np.ndarray) -> np.ndarray:
    """|x| < 0.2: x + x·(((T9·z + T7)·z + T5)·z + T3)·z with z = x²; |x| < 9: ±(1 − 2/(e^(2|x|) + 1));
    else ±1. NaN → NaN; ±0 → ±0."""
    x = _f32(x)
    a = np.abs(x)
    z = x * x
    q = np.full_like(z, TANH_COEFFS[0])
    for c in TANH_COEFFS[1:]:
        q = q * z + c
    q = q * z
    small = x + x * q
    mid_a = np.where(a < TANH_ONE, a, ZERO)
    t = exp(mid_a + mid_a)
    mid = ONE - TWO / (t + ONE)
    mid = np.where(x < ZERO, -mid, mid)
    one = np.where(x < ZERO, -ONE, ONE)
    out = np.where(a < TANH_SMALL, small, np.where(a < TANH_ONE, mid, one))
    return np.where(np.isnan(x), F32(np.nan), out).astype(F32)


def phi_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x): u = x·(1/√2); a = |u|; t = 1 / (1 + P·a); q = ((((a5·t + a4)·t + a3)·t + a2)·t + a1)·t;
    erf = 1 − q·exp(−(a·a)), negated when u < 0; Φ = (1 + erf)·½."""
    x = _f32(x)
    u = x * FRAC_1_SQRT_2
    a = np.abs(u)
    t = ONE / (ONE + ERF_P * a)
    q = np.full_like(t, ERF_COEFFS[0])
    for c in ERF_COEFFS[1:]:
        q = q * t + c
    q = q * t
    erf = ONE - q * exp(-(a * a))
    erf = np.where(u < ZERO, -erf, erf)
    return ((ONE + erf) * HALF).astype(F32)


# --------------------------------------------------------------------------------------------------
# Activations (forward and backward)
# --------------------------------------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    """x if x > 0 else +0 (NaN → +0 is never reached: non-finite inputs are refused upstream)."""
    x = _f32(x)
    return np.where(x > ZERO, x, ZERO).astype(F32)


def relu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy where x > 0, else +0."""
    return np.where(_f32(x) > ZERO, _f32(dy), ZERO).astype(F32)


def tanh_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy · (1 − y·y), from the forward output y."""
    y = _f32(y)
    return (_f32(dy) * (ONE - y * y)).astype(F32)


def gelu(x: np.ndarray) -> np.ndarray:
    """x · Φ(x)."""
    x = _f32(x)
    return (x * phi_cdf(x)).astype(F32)


def gelu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy · (Φ(x) + x·φ(x)), φ(x) = exp(−((x·x)·½)) · (1/√(2π))."""
    x = _f32(x)
    density = exp(-((x * x) * HALF)) * FRAC_1_SQRT_2PI
    return (_f32(dy) * (phi_cdf(x) + x * density)).astype(F32)


# --------------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------------


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[..., M, K] @ [..., K, N]: c = +0, then c = c + a[m, k]·b[k, n] for k = 0 … K−1 (each product
    rounded, then each sum; never fused)."""
    a, b = _f32(a), _f32(b)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])  # a batch of one broadcasts, also when K = 0
    out = np.zeros((*lead, a.shape[-2], b.shape[-1]), dtype=F32)
    for k in range(a.shape[-1]):
        out = out + a[..., :, k : k + 1] * b[..., k : k + 1, :]
    return out


def sum_rows(x: np.ndarray) -> np.ndarray:
    """[R, N] → [N]: s = +0, then s = s + x[r] for r = 0 … R−1."""
    x = _f32(x)
    out = np.zeros(x.shape[1:], dtype=F32)
    for r in range(x.shape[0]):
        out = out + x[r]
    return out


def _fold_last(x: np.ndarray) -> np.ndarray:
    """[..., D] → [...]: s = +0, then s = s + x[..., j] for j = 0 … D−1."""
    out = np.zeros(x.shape[:-1], dtype=F32)
    for j in range(x.shape[-1]):
        out = out + x[..., j]
    return out


def _max_last(x: np.ndarray) -> np.ndarray:
    """[..., D] → [...]: m = x[..., 0], then m = x[..., j] if x[..., j] > m (first maximum wins)."""
    m = x[..., 0].copy()
    for j in range(1, x.shape[-1]):
        m = np.where(x[..., j] > m, x[..., j], m)
    return m


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """[..., K] × [N, K]ᵀ, leading axes flattened to rows: matmul(x, weightᵀ), then + bias[n] (one rounded add)."""
    y = matmul(_f32(x).reshape(-1, x.shape[-1]), np.ascontiguousarray(_f32(weight).T))
    y = y if bias is None else (y + _f32(bias)).astype(F32)
    return y.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = matmul(dy, weight); dweight = matmul(dyᵀ, x) (fold over rows r); dbias = sum_rows(dy)."""
    x, weight, dy = _f32(x).reshape(-1, x.shape[-1]), _f32(weight), _f32(dy).reshape(-1, weight.shape[0])
    return matmul(dy, weight), matmul(np.ascontiguousarray(dy.T), x), sum_rows(dy)


def softmax(z: np.ndarray) -> np.ndarray:
    """Along the last axis: m = max (first wins); e = exp(z − m); s = +0 + e[0] + … (in order); y = e / s."""
    z = _f32(z)
    m = _max_last(z)
    e = exp(z - m[..., None])
    return (e / _fold_last(e)[..., None]).astype(F32)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """d = +0 + y[0]·dy[0] + … (in order); dz = y · (dy − d)."""
    y, dy = _f32(y), _f32(dy)
    d = _fold_last(y * dy)
    return (y * (dy - d[..., None])).astype(F32)


def cross_entropy(z: np.ndarray, target: np.ndarray) -> np.float32:
    """Mean over rows r of log(s_r) − (z[r, t_r] − m_r), s_r and m_r as in softmax; the row values are
    folded from +0 in row order, then divided by float32(R)."""
    z = _f32(z)
    m = _max_last(z)
    s = _fold_last(exp(z - m[:, None]))
    picked = z[np.arange(z.shape[0]), target.astype(np.int64)]
    nll = log(s) - (picked - m)
    total = ZERO
    for value in nll:
        total = F32(total + value)
    return F32(total / F32(z.shape[0]))


def cross_entropy_backward(z: np.ndarray, target: np.ndarray, grad: np.float32) -> np.ndarray:
    """dz = ((e / s) − [j = t]) / float32(R) · grad."""
    z = _f32(z)
    m = _max_last(z)
    e = exp(z - m[:, None])
    p = e / _fold_last(e)[:, None]
    rows = np.arange(z.shape[0])
    p[rows, target.astype(np.int64)] = p[rows, target.astype(np.int64)] - ONE
    return ((p / F32(z.shape[0])) * F32(grad)).astype(F32)


def mse(out: np.ndarray, y: np.ndarray) -> np.float32:
    """d = out − y; s = +0 + d[0]·d[0] + … over all elements in row-major order; s / float32(count)."""
    d = (_f32(out) - _f32(y)).reshape(-1)
    total = ZERO
    for value in d * d:
        total = F32(total + value)
    return F32(total / F32(d.size))


def mse_backward(out: np.ndarray, y: np.ndarray, grad: np.float32) -> np.ndarray:
    """dout = ((d + d) / float32(count)) · grad."""
    d = _f32(out) - _f32(y)
    return (((d + d) / F32(d.size)) * F32(grad)).astype(F32)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of [R, D]: μ = fold(x) / D; c = x − μ; σ² = fold(c·c) / D; ρ = 1 / √(σ² + float32(eps));
    x̂ = c·ρ; y = x̂·w + b. Returns (y, x̂, ρ)."""
    x = _f32(x)
    width = F32(x.shape[-1])
    mean = _fold_last(x) / width
    c = x - mean[:, None]
    var = _fold_last(c * c) / width
    rstd = ONE / np.sqrt(var + F32(eps))
    xhat = c * rstd[:, None]
    return (xhat * _f32(weight) + _f32(bias)).astype(F32), xhat.astype(F32), rstd.astype(F32)


def layer_norm_backward(xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """g = dy·w; a = fold(g) / D; b = fold(g·x̂) / D; dx = ((g − a) − x̂·b)·ρ; dw = sum_rows(dy·x̂); db = sum_rows(dy)."""
    xhat, dy = _f32(xhat), _f32(dy)
    width = F32(xhat.shape[-1])
    g = dy * _f32(weight)
    a = _fold_last(g) / width
    b = _fold_last(g * xhat) / width
    dx = ((g - a[:, None]) - xhat * b[:, None]) * _f32(rstd)[:, None]
    return dx.astype(F32), sum_rows(dy * xhat), sum_rows(dy)


def embedding_backward(ids: np.ndarray, dy: np.ndarray, num_embeddings: int) -> np.ndarray:
    """dweight[v] = +0 + dy[p] + … over the positions p (row-major order of ids) where ids[p] = v."""
    flat, dy = ids.reshape(-1).astype(np.int64), _f32(dy).reshape(len(ids.reshape(-1)), -1)
    out = np.zeros((num_embeddings, dy.shape[1]), dtype=F32)
    for position, token in enumerate(flat):
        out[token] = out[token] + dy[position]
    return out


# --------------------------------------------------------------------------------------------------
# Convolution and pooling (NCHW)
# --------------------------------------------------------------------------------------------------


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """[B, C, H, W] → [B, C·k·k, OH·OW]: row q = (c, i, j) row-major holds x[b, c, oh·s + i − p, ow·s + j − p]
    (+0 outside the image). Moves values only."""
    x = _f32(x)
    batch, channels, height, width = x.shape
    oh, ow = _out_size(height, kernel, stride, padding), _out_size(width, kernel, stride, padding)
    padded = np.zeros((batch, channels, height + 2 * padding, width + 2 * padding), dtype=F32)
    padded[:, :, padding : padding + height, padding : padding + width] = x
    cols = np.zeros((batch, channels, kernel, kernel, oh, ow), dtype=F32)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, :, i, j] = padded[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return cols.reshape(batch, channels * kernel * kernel, oh * ow)


def col2im(dcols: np.ndarray, shape: tuple[int, int, int, int], kernel: int, stride: int, padding: int) -> np.ndarray:
    """The adjoint of im2col: dx[b, c, h, w] = +0 + dcols[b, (c, i, j), (oh, ow)] + … over (i, j) in
    row-major order, for each (i, j) whose window (oh, ow) covers (h, w)."""
    batch, channels, height, width = shape
    oh, ow = _out_size(height, kernel, stride, padding), _out_size(width, kernel, stride, padding)
    d = _f32(dcols).reshape(batch, channels, kernel, kernel, oh, ow)
    padded = np.zeros((batch, channels, height + 2 * padding, width + 2 * padding), dtype=F32)
    for i in range(kernel):
        for j in range(kernel):
            view = padded[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            view[...] = view + d[:, :, i, j]
    return padded[:, :, padding : padding + height, padding : padding + width].copy()


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int, padding: int) -> np.ndarray:
    """y[b] = matmul(weight as [O, C·k·k], im2col(x)[b]) (fold over q = (c, i, j)), then + bias[o]."""
    x, weight = _f32(x), _f32(weight)
    out_channels, kernel = weight.shape[0], weight.shape[-1]
    cols = im2col(x, kernel, stride, padding)
    y = matmul(weight.reshape(1, out_channels, -1), cols)
    if bias is not None:
        y = y + _f32(bias)[None, :, None]
    oh = _out_size(x.shape[2], kernel, stride, padding)
    return y.reshape(x.shape[0], out_channels, oh, -1).astype(F32)


def conv2d_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray, stride: int, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dweight = matmul(dy as [O, (b, l)], cols as [(b, l), q]) (fold over b, then l = (oh, ow));
    dbias = fold of dy over (b, l) in the same order; dx = col2im(matmul(weightᵀ, dy[b]))."""
    x, weight, dy = _f32(x), _f32(weight), _f32(dy)
    batch, out_channels, kernel = x.shape[0], weight.shape[0], weight.shape[-1]
    cols = im2col(x, kernel, stride, padding)  # [B, Q, L]
    d = dy.reshape(batch, out_channels, -1)  # [B, O, L]
    d_ol = np.ascontiguousarray(d.transpose(1, 0, 2).reshape(out_channels, -1))  # [O, B·L]
    cols_lq = np.ascontiguousarray(cols.transpose(0, 2, 1).reshape(-1, cols.shape[1]))  # [B·L, Q]
    dweight = matmul(d_ol, cols_lq).reshape(weight.shape)
    dbias = sum_rows(np.ascontiguousarray(d_ol.T))
    w_t = np.ascontiguousarray(weight.reshape(out_channels, -1).T)[None]  # [1, Q, O]
    dcols = matmul(w_t, d)  # [B, Q, L]
    return col2im(dcols, x.shape, kernel, stride, padding), dweight.astype(F32), dbias


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """[B, C, H, W] → [B, C, OH, OW, k·k]: window elements in (i, j) row-major order."""
    batch, channels, height, width = x.shape
    oh, ow = _out_size(height, kernel, stride, 0), _out_size(width, kernel, stride, 0)
    out = np.zeros((batch, channels, oh, ow, kernel * kernel), dtype=F32)
    for i in range(kernel):
        for j in range(kernel):
            out[..., i * kernel + j] = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return out


def max_pool(x: np.ndarray, kernel: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Window maximum, first maximum in (i, j) order wins; returns (y, index of the winner in the window)."""
    win = _windows(_f32(x), kernel, stride)
    best = win[..., 0].copy()
    where = np.zeros(best.shape, dtype=np.int64)
    for q in range(1, win.shape[-1]):
        better = win[..., q] > best
        best = np.where(better, win[..., q], best)
        where = np.where(better, q, where)
    return best.astype(F32), where


def max_pool_backward(shape: tuple[int, int, int, int], where: np.ndarray, dy: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """dx = +0, then dx[winner of window (oh, ow)] += dy[oh, ow] for windows in (oh, ow) row-major order."""
    dy = _f32(dy)
    dx = np.zeros(shape, dtype=F32)
    for a in range(where.shape[2]):
        for b in range(where.shape[3]):
            i, j = where[:, :, a, b] // kernel, where[:, :, a, b] % kernel
            bi, ci = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
            rows, cols = a * stride + i, b * stride + j
            dx[bi, ci, rows, cols] = dx[bi, ci, rows, cols] + dy[:, :, a, b]
    return dx


def avg_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """(+0 + x[window 0] + … in (i, j) order) / float32(k·k)."""
    win = _windows(_f32(x), kernel, stride)
    return (_fold_last(win) / F32(kernel * kernel)).astype(F32)


def avg_pool_backward(shape: tuple[int, int, int, int], dy: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """g = dy / float32(k·k); dx = +0, then dx[every element of window (oh, ow)] += g[oh, ow], windows in
    (oh, ow) row-major order."""
    g = _f32(dy) / F32(kernel * kernel)
    dx = np.zeros(shape, dtype=F32)
    for a in range(g.shape[2]):
        for b in range(g.shape[3]):
            block = dx[:, :, a * stride : a * stride + kernel, b * stride : b * stride + kernel]
            block[...] = block + g[:, :, a : a + 1, b : b + 1]
    return dx


# --------------------------------------------------------------------------------------------------
# Optimizers and clipping (in place on float32 arrays)
# --------------------------------------------------------------------------------------------------


def adamw(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, c: dict[str, np.float32]) -> None:
    """p = p·decay; m = m·β1 + g·(1−β1); v = v·β2 + (g·g)·(1−β2); p = p − (m / (√(v / c2) + ε))·step_size.
    The binary32 scalars `c` come from `optimizer_scalars` (docs/arithmetic.md)."""
    g = _f32(grad)
    param[...] = param * c["decay"]
    exp_avg[...] = exp_avg * c["beta1"] + g * c["one_minus_beta1"]
    exp_avg_sq[...] = exp_avg_sq * c["beta2"] + (g * g) * c["one_minus_beta2"]
    denom = np.sqrt(exp_avg_sq / c["correction2"]) + c["eps"]
    param[...] = param - (exp_avg / denom) * c["step_size"]


def sgd(param: np.ndarray, grad: np.ndarray, momentum: np.ndarray | None, c: dict[str, np.float32], nesterov: bool) -> None:
    """g = g + p·wd (if wd); buf = buf·μ + g (if μ); g = g + buf·μ (Nesterov) or buf; p = p − g·lr."""
    g = _f32(grad)
    if c["weight_decay"] != ZERO:
        g = g + param * c["weight_decay"]
    if momentum is not None:
        momentum[...] = momentum * c["momentum"] + g
        g = g + momentum * c["momentum"] if nesterov else momentum.copy()
    param[...] = param - g * c["lr"]


def squared_norm(grads: list[np.ndarray]) -> float:
    """Σ g² in binary64: t = +0, then t = t + float64(g)·float64(g) over the tensors in parameter order and
    their elements in row-major order (each product and sum rounded to binary64)."""
    total = 0.0
    for grad in grads:
        for value in _f32(grad).reshape(-1).astype(np.float64):
            total = total + value * value
    return total


def fill_above_diagonal(x: np.ndarray, value: float) -> np.ndarray:
    """`x` (..., steps, steps) with every entry above the diagonal set to `value` (exact)."""
    x = _f32(x)
    steps = x.shape[-1]
    return np.where(np.triu(np.ones((steps, steps), dtype=np.bool_), 1), F32(value), x).astype(F32)


def scaled_keep(x: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """Dropout: `keep ? x × scale : +0` elementwise, one rounding (the forward on values, the backward
    on gradients)."""
    x = _f32(x)
    return np.where(keep, x * F32(scale), ZERO).astype(F32)



# --------------------------------------------------------------------------------------------------
# Decoder-model layers (docs/arithmetic.md, section 5a)
# --------------------------------------------------------------------------------------------------

GELU_TANH_K0 = F32(0.7978845608028654)  # 0x3F4C422A: √(2/π)
GELU_TANH_K1 = F32(0.044715)  # 0x3D372713
GELU_TANH_K3 = F32(0.134145)  # 0x3E095D4F: 3 × 0.044715


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of [R, D]: s = fold(x·x); ms = s / D; r = 1 / √(ms + float32(eps)); x̂ = x·r; y = x̂·w.
    Returns (y, x̂, r)."""
    x = _f32(x)
    ms = _fold_last(x * x) / F32(x.shape[-1])
    rstd = ONE / np.sqrt(ms + F32(eps))
    xhat = x * rstd[:, None]
    return (xhat * _f32(weight)).astype(F32), xhat.astype(F32), rstd.astype(F32)


def rms_norm_backward(xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g = dy·w; b = fold(g·x̂) / D; dx = (g − x̂·b)·r; dw = sum_rows(dy·x̂)."""
    xhat, dy = _f32(xhat), _f32(dy)
    g = dy * _f32(weight)
    b = _fold_last(g * xhat) / F32(xhat.shape[-1])
    dx = (g - xhat * b[:, None]) * _f32(rstd)[:, None]
    return dx.astype(F32), sum_rows(dy * xhat)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ = 1 / (1 + exp(−x))."""
    x = _f32(x)
    with np.errstate(over="ignore"):
        return (ONE / (ONE + exp(-x))).astype(F32)


def silu(x: np.ndarray) -> np.ndarray:
    """x · σ(x)."""
    x = _f32(x)
    return (x * sigmoid(x)).astype(F32)


def silu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy · (σ · (1 + x · (1 − σ)))."""
    x = _f32(x)
    s = sigmoid(x)
    return (_f32(dy) * (s * (ONE + x * (ONE - s)))).astype(F32)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """c = (x·x)·x; i = (x + K1·c)·K0; y = (½·x)·(1 + tanh(i))."""
    x = _f32(x)
    inner = (x + GELU_TANH_K1 * ((x * x) * x)) * GELU_TANH_K0
    return ((HALF * x) * (ONE + tanh(inner))).astype(F32)


def gelu_tanh_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """t = tanh(i) as forward; di = (1 + K3·(x·x))·K0; dx = dy·((½·(1 + t)) + ((½·x)·((1 − t·t)·di)))."""
    x = _f32(x)
    t = tanh((x + GELU_TANH_K1 * ((x * x) * x)) * GELU_TANH_K0)
    di = (ONE + GELU_TANH_K3 * (x * x)) * GELU_TANH_K0
    return (_f32(dy) * ((HALF * (ONE + t)) + ((HALF * x) * ((ONE - t * t) * di)))).astype(F32)


def _rotate_half(x: np.ndarray, sign_low: np.float32) -> np.ndarray:
    """[..., h]: the first half gets sign_low · x[j + H], the second half −sign_low · x[j − H] (exact)."""
    half = x.shape[-1] // 2
    low, high = x[..., :half], x[..., half:]
    return np.concatenate([high * sign_low, low * -sign_low], axis=-1).astype(F32)


def rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """[..., T, h] with tables [T, h]: y = (x·cos) + (ρ·sin), ρ = (−x[H:], x[:H])."""
    x = _f32(x)
    return ((x * _f32(cos)) + (_rotate_half(x, -ONE) * _f32(sin))).astype(F32)


def rotary_backward(dy: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """dx = (dy·cos) + (ρ'·sin), ρ' = (dy[H:], −dy[:H])."""
    dy = _f32(dy)
    return ((dy * _f32(cos)) + (_rotate_half(dy, ONE) * _f32(sin))).astype(F32)


def fold_head_groups(d: np.ndarray, group: int) -> np.ndarray:
    """[B, n_heads, ...] → [B, n_heads / group, ...]: kv head g = +0 + d[:, g·G] + … + d[:, g·G + G − 1]."""
    d = _f32(d)
    out = np.zeros((d.shape[0], d.shape[1] // group, *d.shape[2:]), dtype=F32)
    for member in range(group):
        out = out + d[:, member::group]
    return out.astype(F32)


def cross_entropy_rows(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row of [R, C]: nll_r = log(s_r) − (z[r, t_r] − m_r), the terms cross_entropy folds (section 6,
    "cross-entropy rows"; language-model metrics and scoring)."""
    z = _f32(z)
    m = _max_last(z)
    s = _fold_last(exp(z - m[:, None]))
    picked = z[np.arange(z.shape[0]), target.astype(np.int64)]
    return (log(s) - (picked - m)).astype(F32)
