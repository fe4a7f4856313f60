# pragma version ~=0.4.3
"""
@title float64
@notice IEEE-754 binary64 arithmetic for the referee's per-step scalars (docs/arithmetic.md, section 8:
        correctly rounded + - * / and square root, no libm call), and the gradient-clipping factor.
@dev A value is the binary64 bit pattern in the low 64 bits of a uint256 (higher bits zero). Rounding
     is to nearest, ties to even; signed zeros, subnormals, infinities and NaN as IEEE-754 (every NaN
     made here is 0x7FF8000000000000). Internally a finite value is m * 2**(e - 1075), e the biased
     exponent field (1 for subnormals), m the 53-bit significand with the hidden bit. No fast paths:
     section 8's scalars are a handful per step, so clarity wins over gas here.

     API (all @internal @pure; `a`, `b`, `x` binary64 patterns):
       _add(a, b), _sub(a, b), _mul(a, b), _div(a, b), _sqrt(x)   correctly rounded (RNE)
       _lt(a, b), _le(a, b), _eq(a, b)    IEEE comparisons (false with NaN; -0 == +0)
       _is_nan(x), _neg(x), _abs(x)
       _from_int(v: int256)               int -> binary64, one rounding
       _clip_scale(squared_norm, max_norm) -> binary32: binary32(min(1, max_norm / (√t + 1e-6)))
       _round_pack(sign, m, e)            sign | RNE(m * 2**(e - 1075))
"""

from . import float32

SIGN: constant(uint256) = 1 << 63
MAGNITUDE: constant(uint256) = (1 << 63) - 1
INF: constant(uint256) = 2_047 << 52
QNAN: constant(uint256) = 4_095 << 51
FRACTION: constant(uint256) = (1 << 52) - 1
HIDDEN: constant(uint256) = 1 << 52
ONE: constant(uint256) = 1_023 << 52
# 1e-6 as binary64 (0x3EB0C6F7A0B5ED8D), the clip factor's guard
CLIP_EPS: constant(uint256) = 4_517_329_193_108_106_637


@internal
@pure
def _round_pack(sign: uint256, m: uint256, e: int256) -> uint256:
    """
    @notice The binary64 nearest to m * 2**(e - 1075) (ties to even), with `sign`.
    @dev As float32._round_pack with a 53-bit significand: overflow gives infinity, values below half
         the smallest subnormal a signed zero; `m` may carry a sticky bit below its exact bits.
    @param sign SIGN or 0.
    @param m The significand, > 0.
    @param e Its exponent (biased convention above).
    @return The binary64 pattern.
    """
    length: int256 = convert(float32._bit_length(m), int256)
    right: int256 = length - 53
    be: int256 = e + right
    if be >= 2_047:
        return sign | INF
    if be < 1:
        right = right + 1 - be
        be = 1
        if right > length:
            return sign
    q: uint256 = 0
    if right > 0:
        s: uint256 = convert(right, uint256)
        q = m >> s
        rest: uint256 = unsafe_sub(m, q << s)
        half: uint256 = 1 << unsafe_sub(s, 1)
        if rest > half or (rest == half and q & 1 == 1):
            q = unsafe_add(q, 1)
    else:
        q = m << convert(-right, uint256)
    return sign | min(unsafe_add(convert(be - 1, uint256) << 52, q), INF)


@internal
@pure
def _is_nan(x: uint256) -> bool:
    """
    @notice Whether `x` is a NaN.
    @param x A binary64 pattern.
    @return True for NaN.
    """
    return x & MAGNITUDE > INF


@internal
@pure
def _neg(x: uint256) -> uint256:
    """
    @notice -x (flips the sign bit).
    @param x A binary64 pattern.
    @return The negated pattern.
    """
    return x ^ SIGN


@internal
@pure
def _abs(x: uint256) -> uint256:
    """
    @notice |x| (clears the sign bit).
    @param x A binary64 pattern.
    @return The pattern with a zero sign bit.
    """
    return x & MAGNITUDE


@internal
@pure
def _add(a: uint256, b: uint256) -> uint256:
    """
    @notice a + b, rounded to nearest, ties to even (+0 + -0 = +0; exact cancellation +0; inf - inf NaN).
    @dev Exact alignment when the exponents differ by at most 60; beyond, the smaller operand lies far
         below a quarter ulp of the larger and a sticky 1 stands in for it.
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return The binary64 sum.
    """
    ma: uint256 = a & MAGNITUDE
    mb: uint256 = b & MAGNITUDE
    if ma >= INF or mb >= INF:
        if ma > INF or mb > INF:
            return QNAN
        if ma == INF and mb == INF and a != b:
            return QNAN
        if ma == INF:
            return a
        return b
    if ma == 0:
        if mb == 0:
            return a & b
        return b
    if mb == 0:
        return a
    x: uint256 = a
    y: uint256 = b
    if mb > ma:
        x = b
        y = a
    ex: uint256 = (x & MAGNITUDE) >> 52
    mx: uint256 = x & FRACTION
    if ex == 0:
        ex = 1
    else:
        mx = mx | HIDDEN
    ey: uint256 = (y & MAGNITUDE) >> 52
    my: uint256 = y & FRACTION
    if ey == 0:
        ey = 1
    else:
        my = my | HIDDEN
    d: uint256 = ex - ey
    e: int256 = 0
    if d > 60:
        mx = mx << 61
        my = 1
        e = convert(ex, int256) - 61
    else:
        mx = mx << d
        e = convert(ey, int256)
    m: uint256 = 0
    if (a ^ b) & SIGN == 0:
        m = mx + my
    else:
        m = mx - my
        if m == 0:
            return 0
    return self._round_pack(x & SIGN, m, e)


@internal
@pure
def _sub(a: uint256, b: uint256) -> uint256:
    """
    @notice a - b = a + (-b), rounded to nearest, ties to even.
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return The binary64 difference.
    """
    return self._add(a, b ^ SIGN)


@internal
@pure
def _unpack(x: uint256) -> (uint256, uint256):
    """
    @notice (significand, exponent field) of a finite non-zero value (exponent 1 for subnormals).
    @param x A finite, non-zero binary64 pattern.
    @return m and e with |x| = m * 2**(e - 1075).
    """
    e: uint256 = (x & MAGNITUDE) >> 52
    if e == 0:
        return x & FRACTION, 1
    return (x & FRACTION) | HIDDEN, e


@internal
@pure
def _mul(a: uint256, b: uint256) -> uint256:
    """
    @notice a * b, rounded to nearest, ties to even (inf * 0 is NaN).
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return The binary64 product.
    """
    sign: uint256 = (a ^ b) & SIGN
    ma: uint256 = a & MAGNITUDE
    mb: uint256 = b & MAGNITUDE
    if ma >= INF or mb >= INF:
        if ma > INF or mb > INF or ma == 0 or mb == 0:
            return QNAN
        return sign | INF
    if ma == 0 or mb == 0:
        return sign
    ea: uint256 = 0
    eb: uint256 = 0
    ma, ea = self._unpack(a)
    mb, eb = self._unpack(b)
    return self._round_pack(sign, ma * mb, convert(ea + eb, int256) - 1_075)


@internal
@pure
def _div(a: uint256, b: uint256) -> uint256:
    """
    @notice a / b, rounded to nearest, ties to even (0/0, inf/inf NaN; x/0 a signed infinity).
    @dev The quotient of (ma << 128) by mb has at least 75 bits, a sticky bit records the remainder.
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return The binary64 quotient.
    """
    sign: uint256 = (a ^ b) & SIGN
    ma: uint256 = a & MAGNITUDE
    mb: uint256 = b & MAGNITUDE
    if ma >= INF or mb >= INF:
        if ma > INF or mb > INF or ma == mb:
            return QNAN
        if ma == INF:
            return sign | INF
        return sign
    if mb == 0:
        if ma == 0:
            return QNAN
        return sign | INF
    if ma == 0:
        return sign
    ea: uint256 = 0
    eb: uint256 = 0
    ma, ea = self._unpack(a)
    mb, eb = self._unpack(b)
    num: uint256 = ma << 128
    q: uint256 = num // mb
    m: uint256 = q << 1
    if q * mb != num:
        m = m | 1
    # a / b = (m / 2**129) * 2**(ea - eb) = m * 2**(e - 1075), e = ea - eb + 946
    return self._round_pack(sign, m, convert(ea, int256) - convert(eb, int256) + 946)


@internal
@pure
def _sqrt(x: uint256) -> uint256:
    """
    @notice √x, rounded to nearest (√-0 = -0, √+inf = +inf, negative or NaN gives NaN).
    @param x A binary64 pattern.
    @return The binary64 square root.
    """
    mag: uint256 = x & MAGNITUDE
    if mag == 0:
        return x
    if x > INF:
        return QNAN
    if mag == INF:
        return x
    m: uint256 = 0
    e: uint256 = 0
    m, e = self._unpack(x)
    # value = m * 2**(e - 1075); 1075 is odd, so make e odd for an even power
    if e & 1 == 0:
        m = m << 1
        e = e - 1
    n: uint256 = m << 120
    r: uint256 = isqrt(n)
    root: uint256 = r << 1
    if r * r != n:
        root = root | 1
    # √value = (root / 2) * 2**((e - 1075 - 120) / 2) = root * 2**(out - 1075), out = (e - 1195) / 2 + 1074
    return self._round_pack(0, root, (convert(e, int256) - 1_195) // 2 + 1_074)


@internal
@pure
def _order_key(x: uint256) -> uint256:
    """
    @notice A key whose unsigned order is the numeric order of non-NaN values (-0 and +0 share one).
    @param x A binary64 pattern (not NaN).
    @return SIGN + |x| or SIGN - |x|.
    """
    if x & SIGN != 0:
        return SIGN - (x & MAGNITUDE)
    return SIGN + x


@internal
@pure
def _lt(a: uint256, b: uint256) -> bool:
    """
    @notice IEEE a < b (false when either is NaN).
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return a < b.
    """
    if self._is_nan(a) or self._is_nan(b):
        return False
    return self._order_key(a) < self._order_key(b)


@internal
@pure
def _le(a: uint256, b: uint256) -> bool:
    """
    @notice IEEE a <= b (false when either is NaN).
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return a <= b.
    """
    if self._is_nan(a) or self._is_nan(b):
        return False
    return self._order_key(a) <= self._order_key(b)


@internal
@pure
def _eq(a: uint256, b: uint256) -> bool:
    """
    @notice IEEE a == b (NaN equals nothing; -0 == +0).
    @param a A binary64 pattern.
    @param b A binary64 pattern.
    @return a == b.
    """
    if self._is_nan(a) or self._is_nan(b):
        return False
    return self._order_key(a) == self._order_key(b)


@internal
@pure
def _from_int(v: int256) -> uint256:
    """
    @notice The binary64 nearest to the integer v (ties to even); 0 gives +0.
    @param v Any int256 except its minimum.
    @return The binary64 pattern.
    """
    if v == 0:
        return 0
    if v < 0:
        return self._round_pack(SIGN, convert(-v, uint256), 1_075)
    return self._round_pack(0, convert(v, uint256), 1_075)


@internal
@pure
def _clip_scale(squared_norm: uint256, max_norm: uint256) -> uint256:
    """
    @notice The gradient-clipping factor of section 8: binary32(min(1, max_norm / (√t + 1e-6))) with
            t the binary64 squared norm; min(1, s) is s only when s < 1 (a NaN s gives 1).
    @param squared_norm t, binary64.
    @param max_norm The spec's max_norm, binary64.
    @return The factor as a binary32 pattern.
    """
    s: uint256 = self._div(max_norm, self._add(self._sqrt(squared_norm), CLIP_EPS))
    if self._lt(s, ONE):
        return float32._from_f64(s)
    return float32._from_f64(ONE)
