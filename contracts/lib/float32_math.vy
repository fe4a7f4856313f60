# pragma version ~=0.4.3
"""
@title float32_math
@notice The elementary functions and activations of tessera-portable/1 (docs/arithmetic.md, sections 2
        and 3) on binary32 bit patterns, operation by operation as `engine/portable/reference.py`
        computes them, so the referee reproduces the engine's bits.
@dev Every step is one `float32` operation in the document's order, with its constants. Values are
     binary32 patterns in the low 32 bits of a uint256 (as in `float32`).

     API (all @internal @pure):
       _exp(x), _log(x), _tanh(x), _phi(x)       e^x, ln x, tanh x, the normal CDF Φ(x)
       _relu(x), _gelu(x)                        activations (forward)
       _relu_backward(x, dy)                     x > 0 ? dy : +0
       _tanh_backward(y, dy)                     dy * (1 - y * y), y the forward output
       _gelu_backward(x, dy)                     dy * (Φ(x) + x * φ(x))
       _sigmoid(x), _silu(x), _silu_backward(x, dy)       section 5a (SwiGLU's gate)
       _gelu_tanh(x), _gelu_tanh_backward(x, dy)          section 5a (GPT-2's tanh GELU)
"""

from . import float32

EXP_OVERFLOW: constant(uint256) = 1_118_925_336  # 0x42b17218: 88.72283935546875, above it exp is +inf
EXP_UNDERFLOW: constant(uint256) = 3_268_407_733  # 0xc2cff1b5: -103.97208404541016, below it exp is +0
LOG2E: constant(uint256) = 1_069_066_811  # 0x3fb8aa3b: log2(e)
LN2_HI: constant(uint256) = 1_060_205_056  # 0x3f317200: ln 2 to 15 bits (n * LN2_HI is exact)
LN2_LO: constant(uint256) = 901_758_606  # 0x35bfbe8e: ln 2 - LN2_HI
EXP_C7: constant(uint256) = 961_547_521  # 0x39500d01: 1/7!
EXP_C6: constant(uint256) = 985_008_993  # 0x3ab60b61: 1/6!
EXP_C5: constant(uint256) = 1_007_192_201  # 0x3c088889: 1/5!
EXP_C4: constant(uint256) = 1_026_206_379  # 0x3d2aaaab: 1/4!
EXP_C3: constant(uint256) = 1_042_983_595  # 0x3e2aaaab: 1/3!
EXP_C2: constant(uint256) = 1_056_964_608  # 0x3f000000: 1/2!
SQRT2: constant(uint256) = 1_068_827_891  # 0x3fb504f3: √2, log's reduction boundary
LOG_L9: constant(uint256) = 1_038_323_257  # 0x3de38e39: 1/9
LOG_L7: constant(uint256) = 1_041_385_765  # 0x3e124925: 1/7
LOG_L5: constant(uint256) = 1_045_220_557  # 0x3e4ccccd: 1/5
LOG_L3: constant(uint256) = 1_051_372_203  # 0x3eaaaaab: 1/3
TANH_SMALL: constant(uint256) = 1_045_220_557  # 0x3e4ccccd: 0.2
TANH_ONE: constant(uint256) = 1_091_567_616  # 0x41100000: 9
TANH_T9: constant(uint256) = 1_018_374_052  # 0x3cb327a4: 62/2835
TANH_T7: constant(uint256) = 3_176_992_209  # 0xbd5d0dd1: -17/315
TANH_T5: constant(uint256) = 1_040_746_633  # 0x3e088889: 2/15
TANH_T3: constant(uint256) = 3_198_855_851  # 0xbeaaaaab: -1/3
FRAC_1_SQRT_2: constant(uint256) = 1_060_439_283  # 0x3f3504f3: 1/√2
ERF_P: constant(uint256) = 1_051_179_525  # 0x3ea7ba05: 0.3275911
ERF_A5: constant(uint256) = 1_065_868_322  # 0x3f87dc22: 1.061405429
ERF_A4: constant(uint256) = 3_216_638_179  # 0xbfba00e3: -1.453152027
ERF_A3: constant(uint256) = 1_068_888_291  # 0x3fb5f0e3: 1.421413741
ERF_A2: constant(uint256) = 3_197_217_166  # 0xbe91a98e: -0.284496736
ERF_A1: constant(uint256) = 1_048_738_054  # 0x3e827906: 0.254829592
FRAC_1_SQRT_2PI: constant(uint256) = 1_053_573_674  # 0x3ecc422a: 1/√(2π)
ONE: constant(uint256) = 1_065_353_216  # 0x3f800000
TWO: constant(uint256) = 1_073_741_824  # 0x40000000
HALF: constant(uint256) = 1_056_964_608  # 0x3f000000
NEG_ONE: constant(uint256) = 3_212_836_864  # 0xbf800000
POS_ZERO: constant(uint256) = 0
NEG_INF: constant(uint256) = 4_286_578_688  # 0xff800000
GELU_TANH_K0: constant(uint256) = 1_061_962_282  # 0x3f4c422a: √(2/π)
GELU_TANH_K1: constant(uint256) = 1_027_024_659  # 0x3d372713: 0.044715
GELU_TANH_K3: constant(uint256) = 1_040_801_103  # 0x3e095d4f: 3 * 0.044715
MIN_NORMAL: constant(uint256) = 8_388_608  # 0x00800000: 2**-126
TWO_POW_23: constant(uint256) = 1_258_291_200  # 0x4b000000: 2**23


@internal
@pure
def _pow2(n: int256) -> uint256:
    """
    @notice 2**n as binary32, from its bits (exact for n in [-126, 127], the range exp uses).
    @param n The exponent.
    @return The binary32 pattern of 2**n.
    """
    return convert(n + 127, uint256) << 23


@internal
@pure
def _exp(x: uint256) -> uint256:
    """
    @notice e**x: n = rint(x * LOG2E); r = (x - n * LN2_HI) - n * LN2_LO; p = Horner(1/7! … 1/0!) at r;
            result (p * 2**h) * 2**(n - h), h = floor(n / 2). NaN -> NaN, x > EXP_OVERFLOW -> +inf,
            x < EXP_UNDERFLOW -> +0.
    @param x A binary32 pattern.
    @return The binary32 pattern of e**x.
    """
    if float32._is_nan(x):
        return float32.QNAN
    if float32._lt(EXP_OVERFLOW, x):
        return float32.INF
    if float32._lt(x, EXP_UNDERFLOW):
        return POS_ZERO
    n: uint256 = float32._rint(float32._mul(x, LOG2E))
    r: uint256 = float32._sub(float32._sub(x, float32._mul(n, LN2_HI)), float32._mul(n, LN2_LO))
    p: uint256 = EXP_C7
    p = float32._add(float32._mul(p, r), EXP_C6)
    p = float32._add(float32._mul(p, r), EXP_C5)
    p = float32._add(float32._mul(p, r), EXP_C4)
    p = float32._add(float32._mul(p, r), EXP_C3)
    p = float32._add(float32._mul(p, r), EXP_C2)
    p = float32._add(float32._mul(p, r), ONE)
    p = float32._add(float32._mul(p, r), ONE)
    ni: int256 = float32._to_int(n)
    h: int256 = ni >> 1  # floor(n / 2), negative n included
    return float32._mul(float32._mul(p, self._pow2(h)), self._pow2(ni - h))


@internal
@pure
def _log(x: uint256) -> uint256:
    """
    @notice ln x: x = 2**e * m with m in [√½, √2) (subnormals first * 2**23); f = m - 1; s = f / (2 + f);
            z = s * s; q = (((L9 z + L7) z + L5) z + L3) z; r = s + s * q;
            result e * LN2_HI + (e * LN2_LO + (r + r)). ±0 -> -inf, +inf -> +inf, negative or NaN -> NaN.
    @param x A binary32 pattern.
    @return The binary32 pattern of ln x.
    """
    mag: uint256 = x & float32.MAGNITUDE
    if mag > float32.INF or (x != mag and mag != 0):
        return float32.QNAN
    if mag == 0:
        return NEG_INF
    if x == float32.INF:
        return float32.INF
    xs: uint256 = x
    adjust: int256 = 0
    if xs < MIN_NORMAL:
        xs = float32._mul(xs, TWO_POW_23)
        adjust = 23
    e: int256 = convert(xs >> 23, int256) - 127 - adjust
    m: uint256 = (xs & float32.FRACTION) | ONE
    if float32._lt(SQRT2, m):
        m = float32._mul(m, HALF)
        e = e + 1
    f: uint256 = float32._sub(m, ONE)
    s: uint256 = float32._div(f, float32._add(TWO, f))
    z: uint256 = float32._mul(s, s)
    q: uint256 = LOG_L9
    q = float32._add(float32._mul(q, z), LOG_L7)
    q = float32._add(float32._mul(q, z), LOG_L5)
    q = float32._add(float32._mul(q, z), LOG_L3)
    q = float32._mul(q, z)
    r: uint256 = float32._add(s, float32._mul(s, q))
    ef: uint256 = float32._from_int(e)
    return float32._add(float32._mul(ef, LN2_HI), float32._add(float32._mul(ef, LN2_LO), float32._add(r, r)))


@internal
@pure
def _tanh(x: uint256) -> uint256:
    """
    @notice tanh x: |x| < 0.2: x + x * ((((T9 z + T7) z + T5) z + T3) z), z = x * x; |x| < 9:
            1 - 2 / (e**(2|x|) + 1), negated for x < 0; else ±1. NaN -> NaN.
    @param x A binary32 pattern.
    @return The binary32 pattern of tanh x.
    """
    if float32._is_nan(x):
        return float32.QNAN
    a: uint256 = x & float32.MAGNITUDE
    if float32._lt(a, TANH_SMALL):
        z: uint256 = float32._mul(x, x)
        q: uint256 = TANH_T9
        q = float32._add(float32._mul(q, z), TANH_T7)
        q = float32._add(float32._mul(q, z), TANH_T5)
        q = float32._add(float32._mul(q, z), TANH_T3)
        q = float32._mul(q, z)
        return float32._add(x, float32._mul(x, q))
    negative: bool = float32._lt(x, POS_ZERO)
    if float32._lt(a, TANH_ONE):
        t: uint256 = self._exp(float32._add(a, a))
        mid: uint256 = float32._sub(ONE, float32._div(TWO, float32._add(t, ONE)))
        if negative:
            return float32._neg(mid)
        return mid
    if negative:
        return NEG_ONE
    return ONE


@internal
@pure
def _phi(x: uint256) -> uint256:
    """
    @notice Φ(x), the normal CDF: u = x / √2; a = |u|; t = 1 / (1 + P a);
            q = ((((a5 t + a4) t + a3) t + a2) t + a1) t; erf = 1 - q * e**(-(a a)), negated for u < 0;
            Φ = (1 + erf) * 0.5 (Abramowitz and Stegun 7.1.26).
    @param x A binary32 pattern.
    @return The binary32 pattern of Φ(x).
    """
    u: uint256 = float32._mul(x, FRAC_1_SQRT_2)
    a: uint256 = u & float32.MAGNITUDE
    t: uint256 = float32._div(ONE, float32._add(ONE, float32._mul(ERF_P, a)))
    q: uint256 = ERF_A5
    q = float32._add(float32._mul(q, t), ERF_A4)
    q = float32._add(float32._mul(q, t), ERF_A3)
    q = float32._add(float32._mul(q, t), ERF_A2)
    q = float32._add(float32._mul(q, t), ERF_A1)
    q = float32._mul(q, t)
    erf: uint256 = float32._sub(ONE, float32._mul(q, self._exp(float32._neg(float32._mul(a, a)))))
    if float32._lt(u, POS_ZERO):
        erf = float32._neg(erf)
    return float32._mul(float32._add(ONE, erf), HALF)


@internal
@pure
def _relu(x: uint256) -> uint256:
    """
    @notice relu: x > 0 ? x : +0.
    @param x A binary32 pattern.
    @return The binary32 pattern of relu(x).
    """
    if float32._lt(POS_ZERO, x):
        return x
    return POS_ZERO


@internal
@pure
def _relu_backward(x: uint256, dy: uint256) -> uint256:
    """
    @notice relu's backward: x > 0 ? dy : +0.
    @param x The forward input.
    @param dy The upstream gradient.
    @return The binary32 gradient.
    """
    if float32._lt(POS_ZERO, x):
        return dy
    return POS_ZERO


@internal
@pure
def _tanh_backward(y: uint256, dy: uint256) -> uint256:
    """
    @notice tanh's backward: dy * (1 - y * y), from the forward output y.
    @param y The forward output.
    @param dy The upstream gradient.
    @return The binary32 gradient.
    """
    return float32._mul(dy, float32._sub(ONE, float32._mul(y, y)))


@internal
@pure
def _gelu(x: uint256) -> uint256:
    """
    @notice gelu: x * Φ(x).
    @param x A binary32 pattern.
    @return The binary32 pattern of gelu(x).
    """
    return float32._mul(x, self._phi(x))


@internal
@pure
def _gelu_backward(x: uint256, dy: uint256) -> uint256:
    """
    @notice gelu's backward: dy * (Φ(x) + x * φ), φ = e**(-((x x) * 0.5)) * (1/√(2π)).
    @param x The forward input.
    @param dy The upstream gradient.
    @return The binary32 gradient.
    """
    density: uint256 = float32._mul(self._exp(float32._neg(float32._mul(float32._mul(x, x), HALF))), FRAC_1_SQRT_2PI)
    return float32._mul(dy, float32._add(self._phi(x), float32._mul(x, density)))


@internal
@pure
def _sigmoid(x: uint256) -> uint256:
    """
    @notice σ(x) = 1 / (1 + e**(-x)).
    @param x A binary32 pattern.
    @return The binary32 pattern of σ(x).
    """
    return float32._div(ONE, float32._add(ONE, self._exp(float32._neg(x))))


@internal
@pure
def _silu(x: uint256) -> uint256:
    """
    @notice silu: x * σ(x).
    @param x A binary32 pattern.
    @return The binary32 pattern of silu(x).
    """
    return float32._mul(x, self._sigmoid(x))


@internal
@pure
def _silu_backward(x: uint256, dy: uint256) -> uint256:
    """
    @notice silu's backward: dy * (σ * (1 + x * (1 - σ))).
    @param x The forward input.
    @param dy The upstream gradient.
    @return The binary32 gradient.
    """
    s: uint256 = self._sigmoid(x)
    return float32._mul(dy, float32._mul(s, float32._add(ONE, float32._mul(x, float32._sub(ONE, s)))))


@internal
@pure
def _gelu_tanh_inner(x: uint256) -> uint256:
    """
    @notice GELU-tanh's argument: (x + K1 * ((x * x) * x)) * K0.
    @param x A binary32 pattern.
    @return The binary32 pattern of the tanh argument.
    """
    cube: uint256 = float32._mul(float32._mul(x, x), x)
    return float32._mul(float32._add(x, float32._mul(GELU_TANH_K1, cube)), GELU_TANH_K0)


@internal
@pure
def _gelu_tanh(x: uint256) -> uint256:
    """
    @notice GELU with the tanh approximation: (0.5 * x) * (1 + tanh((x + K1 x³) K0)).
    @param x A binary32 pattern.
    @return The binary32 pattern of gelu_tanh(x).
    """
    return float32._mul(float32._mul(HALF, x), float32._add(ONE, self._tanh(self._gelu_tanh_inner(x))))


@internal
@pure
def _gelu_tanh_backward(x: uint256, dy: uint256) -> uint256:
    """
    @notice GELU-tanh's backward: t = tanh(inner) as forward; di = (1 + K3 (x x)) K0;
            dy * ((0.5 (1 + t)) + ((0.5 x) ((1 - t t) di))).
    @param x The forward input.
    @param dy The upstream gradient.
    @return The binary32 gradient.
    """
    t: uint256 = self._tanh(self._gelu_tanh_inner(x))
    di: uint256 = float32._mul(float32._add(ONE, float32._mul(GELU_TANH_K3, float32._mul(x, x))), GELU_TANH_K0)
    left: uint256 = float32._mul(HALF, float32._add(ONE, t))
    right: uint256 = float32._mul(float32._mul(HALF, x), float32._mul(float32._sub(ONE, float32._mul(t, t)), di))
    return float32._mul(dy, float32._add(left, right))
