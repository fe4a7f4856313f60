"""The rotary position tables of tessera-portable/1 (docs/arithmetic.md, section 5a, "Rotary tables").

Computed on the host in binary64 by fixed operation sequences and rounded to binary32 once, so every
machine gets the same bits: Python floats are IEEE binary64 with correctly rounded +, −, ×, ÷, and
`math.frexp`/`math.ldexp` are exact, whereas `math.pow`, `exp`, `cos` and `sin` (libm) are not
guaranteed to be correctly rounded and differ between platforms, so none of them is called here.
"""

from __future__ import annotations

import math

import numpy as np

from protocol.errors import EngineError

F32 = np.float32
LN2 = 0.6931471805599453  # binary64 nearest ln 2
LN2_HI64 = 6.93147180369123816490e-01  # fdlibm's split of ln 2: n × LN2_HI64 is exact for |n| < 2^11
LN2_LO64 = 1.90821492927058770002e-10
SQRT_HALF = 0.7071067811865476
TWO_OVER_PI = 0.6366197723675814  # binary64 nearest 2/π
PIO2_1 = 1.57079632673412561417e00  # fdlibm's three-part π/2: the first two have 33 significant bits,
PIO2_2 = 6.07710050630396597660e-11  # so k × PIO2_1 and k × PIO2_2 are exact for k < 2^20
PIO2_2T = 2.02226624879595063154e-21
MAX_ANGLE = 1.5e6  # k < 2^20 keeps the reduction exact (docs: α < 1.6 × 10^6)

# Horner coefficients, highest order first; each an exact integer ratio rounded once
LOG_SERIES = tuple(1.0 / (2 * k + 1) for k in range(30, -1, -1))  # atanh series: Σ z^k / (2k+1)
EXP_SERIES = tuple(1.0 / math.factorial(k) for k in range(27, -1, -1))
COS_SERIES = tuple(float((-1) ** k) / math.factorial(2 * k) for k in range(13, -1, -1))
SIN_SERIES = tuple(float((-1) ** k) / math.factorial(2 * k + 1) for k in range(13, -1, -1))


def _horner(coefficients: tuple[float, ...], z: float) -> float:
    total = coefficients[0]
    for c in coefficients[1:]:
        total = total * z + c
    return total


def ln(x: float) -> float:
    """ln x for finite x > 0: x = 2^e·m, m in [√½, √2); s = (m−1)/(m+1); ln m = (s + s)·Σ s^(2k)/(2k+1)."""
    m, e = math.frexp(x)  # m in [0.5, 1)
    if m < SQRT_HALF:
        m, e = m + m, e - 1  # exact
    s = (m - 1.0) / (m + 1.0)
    return e * LN2 + (s + s) * _horner(LOG_SERIES, s * s)


def exp(y: float) -> float:
    """e^y for |y| < 700: n = round(y / ln 2) (half away from zero); r = (y − n·LN2_HI64) − n·LN2_LO64;
    Taylor sum of 28 terms at r, scaled by 2^n exactly."""
    q = y / LN2
    n = int(math.floor(q + 0.5)) if q >= 0 else -int(math.floor(-q + 0.5))
    r = (y - n * LN2_HI64) - n * LN2_LO64
    return math.ldexp(_horner(EXP_SERIES, r), n)


def cos_sin(angle: float) -> tuple[float, float]:
    """(cos α, sin α) for 0 ≤ α ≤ MAX_ANGLE: quadrant k = round(α·2/π), Cody-Waite reduction by the
    three-part π/2, Taylor sums of 14 terms on |r| ≤ π/4 (plus rounding), quadrant selection (exact)."""
    if not 0.0 <= angle <= MAX_ANGLE:
        raise EngineError(f"rotary angle {angle!r} is outside the portable range [0, {MAX_ANGLE:g}]")
    k = int(math.floor(angle * TWO_OVER_PI + 0.5))
    r = ((angle - k * PIO2_1) - k * PIO2_2) - k * PIO2_2T
    z = r * r
    c, s = _horner(COS_SERIES, z), r * _horner(SIN_SERIES, z)
    return ((c, s), (-s, c), (-c, -s), (s, -c))[k % 4]


def inverse_frequencies(head_width: int, theta: float) -> np.ndarray:
    """inv_freq_i = θ^(−2i/h) for i = 0 … h/2 − 1, as exp(−((2i/h)·ln θ)) in binary64, rounded to binary32."""
    if head_width % 2:
        raise EngineError(f"rotary positions need an even head width, got {head_width}")
    log_theta = ln(float(theta))
    return np.array([exp(-((2 * i / head_width) * log_theta)) for i in range(head_width // 2)], dtype=F32)


def rotary_tables(steps: int, head_width: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin `[steps, head_width]` (binary32): angle α = float32(t) × inv_freq_i (one binary32
    product), cos/sin in binary64 rounded once, each angle repeated for both halves."""
    inv_freq = inverse_frequencies(head_width, theta)
    angles = np.arange(steps, dtype=F32)[:, None] * inv_freq[None, :]  # binary32 products, as HF
    half = head_width // 2
    cos, sin = np.empty((steps, half), dtype=F32), np.empty((steps, half), dtype=F32)
    for t in range(steps):
        for i in range(half):
            c, s = cos_sin(float(angles[t, i]))
            cos[t, i], sin[t, i] = F32(c), F32(s)
    return np.concatenate([cos, cos], axis=1), np.concatenate([sin, sin], axis=1)
