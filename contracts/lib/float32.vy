# pragma version ~=0.4.3
"""
@title float32
@notice IEEE-754 binary32 arithmetic for the on-chain referee (docs/arithmetic.md, section 1): every
        operation of tessera-portable/1 on bit patterns, rounded to nearest, ties to even, with signed
        zeros, subnormals (never flushed), infinities and NaN as IEEE-754 says.
@dev A value is the binary32 bit pattern in the low 32 bits of a uint256 (higher bits must be zero).
     NaN is a class (section 1): every NaN this module makes is the quiet NaN 0x7FC00000, and any NaN
     pattern is accepted as input. binary64 values (`_to_f64`, `_from_f64`) are bit patterns in the
     low 64 bits.

     API (all @internal @pure; `a`, `b`, `x` are binary32 patterns):
       _add(a, b), _sub(a, b), _mul(a, b), _div(a, b), _sqrt(x)  correctly rounded (RNE)
       _lt(a, b), _le(a, b), _eq(a, b)   IEEE comparisons: false when either is NaN; -0 == +0
       _same(a, b)                       the referee's equality: equal bits, or both NaN
       _is_nan(x), _neg(x), _abs(x)
       _from_int(v: int256)              int -> binary32, one rounding
       _to_int(x) -> int256              truncation toward zero (|x| < 2**127, finite)
       _to_f64(x) / _from_f64(d)         binary32 -> binary64 (exact) / binary64 -> binary32 (RNE)
       _scalbn(x, n: int256)             x * 2**n, rounded once (subnormal results rounded correctly)
       _rint(x)                          round to an integral value, half to even (sign kept)
       _dot(a, b)                        fold from +0 of a[k] * b[k] in k order (each product and sum rounded)
       _dot_from(s, a, b)                the same fold continued from accumulator s (folds over MAX_DOT terms)
       _dot_words_from(s, a, b, n)       the same fold over n values packed eight per uint256 word, value k
                                         in word k // 8 at bits 224 - 32 * (k % 8) (big-endian lanes: the
                                         32 bytes of a word hold values 8w … 8w + 7 in order, each as its
                                         4 big-endian bytes); a quarter of the calldata of uint32[] words
       _round_pack(sign, m, e)           the rounding core: sign | RNE(m * 2**(e - 150))

     Internally a finite value is (sign, m, e) with value = m * 2**(e - 150): e is the biased exponent
     field (1 for subnormals, whose hidden bit is 0), m the 24-bit significand with the hidden bit.
"""

SIGN: constant(uint256) = 1 << 31
MAGNITUDE: constant(uint256) = (1 << 31) - 1
INF: constant(uint256) = 255 << 23  # 0x7F800000
QNAN: constant(uint256) = 511 << 22  # 0x7FC00000
FRACTION: constant(uint256) = (1 << 23) - 1
HIDDEN: constant(uint256) = 1 << 23

F64_SIGN: constant(uint256) = 1 << 63
F64_INF: constant(uint256) = 2_047 << 52
F64_QNAN: constant(uint256) = 4_095 << 51
F64_FRACTION: constant(uint256) = (1 << 52) - 1
F64_HIDDEN: constant(uint256) = 1 << 52

# Fold length of `_dot` (the largest element a referee step accepts).
MAX_DOT: constant(uint256) = 256
# `_dot_words`: eight binary32 values per 32-byte word
MAX_DOT_WORDS: constant(uint256) = MAX_DOT // 8
LANE: constant(uint256) = (1 << 32) - 1
# `_top_bit`: v * DE_BRUIJN_32 (mod 2**32) >> 27 for v = 2**(k + 1) - 1 is a distinct index for each k < 32;
# TOP_BIT_TABLE holds k at bits 5 * index
DE_BRUIJN_32: constant(uint256) = 130_329_821
TOP_BIT_TABLE: constant(uint256) = 1_421_798_241_914_935_464_469_575_272_230_841_578_535_414_727_968


@internal
@pure
def _bit_length(x: uint256) -> uint256:
    """
    @notice Number of significant bits of `x` (0 for 0), by binary search (no loop).
    @param x Any unsigned integer.
    @return floor(log2(x)) + 1, or 0.
    """
    n: uint256 = 0
    y: uint256 = x
    if y >= 1 << 128:
        y = y >> 128
        n = 128
    if y >= 1 << 64:
        y = y >> 64
        n = unsafe_add(n, 64)
    if y >= 1 << 32:
        y = y >> 32
        n = unsafe_add(n, 32)
    if y >= 1 << 16:
        y = y >> 16
        n = unsafe_add(n, 16)
    if y >= 1 << 8:
        y = y >> 8
        n = unsafe_add(n, 8)
    if y >= 1 << 4:
        y = y >> 4
        n = unsafe_add(n, 4)
    if y >= 1 << 2:
        y = y >> 2
        n = unsafe_add(n, 2)
    if y >= 1 << 1:
        y = y >> 1
        n = unsafe_add(n, 1)
    return unsafe_add(n, y)


@internal
@pure
def _round_pack(sign: uint256, m: uint256, e: int256) -> uint256:
    """
    @notice The binary32 nearest to m * 2**(e - 150) (ties to even), with `sign`.
    @dev The one rounding of every operation. Overflow gives infinity; values below half the
         smallest subnormal give a signed zero. The packed magnitude is ((be - 1) << 23) + q, which
         is right whether q is a subnormal significand, a normal one with the hidden bit, or 2**24
         after a carry out of rounding. `m` may carry a sticky bit below its exact bits.
    @param sign SIGN or 0.
    @param m The significand, > 0 (any width).
    @param e Its exponent in the biased convention above (may be far out of range).
    @return The binary32 pattern.
    """
    length: int256 = convert(self._bit_length(m), int256)
    right: int256 = unsafe_sub(length, 24)
    be: int256 = e + right
    if be >= 255:
        return sign | INF
    if be < 1:
        right = right + 1 - be
        be = 1
        if right > length:
            # m * 2**-right < 1/2: below half the smallest subnormal.
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
    return sign | min(unsafe_add(convert(be - 1, uint256) << 23, q), INF)


@internal
@pure
def _round_right(m: uint256, right: uint256) -> uint256:
    """
    @notice m * 2**-right rounded to the nearest integer, ties to even.
    @dev The rounding of `_add`'s and `_mul`'s slower paths, where the shift is known without `_bit_length`
         or is one it gave. A shift of 256 or more gives 0 (EVM shifts), right for any m < 2**255.
    @param m A significand (any width, below 2**255).
    @param right The shift, >= 0.
    @return The rounded quotient.
    """
    if right == 0:
        return m
    half: uint256 = 1 << unsafe_sub(right, 1)
    return unsafe_add(unsafe_add(m, unsafe_sub(half, 1)), (m >> right) & 1) >> right


@internal
@pure
def _top_bit(x: uint256) -> uint256:
    """
    @notice The position of the leading bit of 0 < x < 2**32 (floor(log2(x))), without a branch.
    @dev The bits below the leading one are set, then a de Bruijn multiply maps the 32 possible results
         to distinct 5-bit indices of TOP_BIT_TABLE (checked for every x < 2**24 and sampled above in
         tests/unit/contracts/test_float32.py through the operations that use it).
    @param x A significand or product part, 0 < x < 2**32.
    @return floor(log2(x)).
    """
    v: uint256 = x | (x >> 1)
    v = v | (v >> 2)
    v = v | (v >> 4)
    v = v | (v >> 8)
    v = v | (v >> 16)
    return (TOP_BIT_TABLE >> unsafe_mul(5, (unsafe_mul(v, DE_BRUIJN_32) >> 27) & 31)) & 31


@internal
@pure
def _pack_exact(sign: uint256, m: uint256, e: uint256) -> uint256:
    """
    @notice The binary32 equal to m * 2**(e - 150), for an exact 0 < m < 2**24 and e >= 1 (no rounding).
    @dev Shifted left until its leading bit is the hidden bit, or until the exponent field reaches 1
         (a subnormal).
    @param sign SIGN or 0.
    @param m The significand, 0 < m < 2**24.
    @param e Its exponent field, >= 1.
    @return The binary32 pattern.
    """
    s: uint256 = min(unsafe_sub(23, self._top_bit(m)), unsafe_sub(e, 1))
    return sign | unsafe_add(unsafe_sub(unsafe_sub(e, s), 1) << 23, m << s)


@internal
@pure
def _is_nan(x: uint256) -> bool:
    """
    @notice Whether `x` is a NaN (any sign, any payload).
    @param x A binary32 pattern.
    @return True for NaN.
    """
    return x & MAGNITUDE > INF


@internal
@pure
def _neg(x: uint256) -> uint256:
    """
    @notice -x (exact: flips the sign bit, NaN included).
    @param x A binary32 pattern.
    @return The negated pattern.
    """
    return x ^ SIGN


@internal
@pure
def _abs(x: uint256) -> uint256:
    """
    @notice |x| (exact: clears the sign bit).
    @param x A binary32 pattern.
    @return The pattern with a zero sign bit.
    """
    return x & MAGNITUDE


@internal
@pure
def _add(a: uint256, b: uint256) -> uint256:
    """
    @notice a + b, rounded to nearest, ties to even.
    @dev +0 + -0 = +0 and an exact cancellation gives +0; inf + -inf is NaN. Operands are aligned
         exactly in 256 bits when their exponents differ by at most 40; beyond that the smaller one
         lies below a quarter of the larger one's ulp and a sticky 1 stands in for it.
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return The binary32 sum.
    """
    ma: uint256 = a & MAGNITUDE
    mb: uint256 = b & MAGNITUDE
    # Fast path: both normal and exponents at most 40 apart. The result is normal (ex >= d + 1, so its
    # exponent field ex - 1, ex or ex + 1 is >= 1) or overflows, except after a cancellation (a
    # subtraction with d <= 1), which is exact and packed by `_pack_exact`.
    ea: uint256 = ma >> 23
    eb: uint256 = mb >> 23
    if unsafe_sub(ea, 1) < 254 and unsafe_sub(eb, 1) < 254:
        # x: the operand of larger magnitude (its sign is the result's)
        x: uint256 = a
        y: uint256 = b
        if mb > ma:
            x = b
            y = a
        ey: uint256 = (y & MAGNITUDE) >> 23
        d: uint256 = unsafe_sub((x & MAGNITUDE) >> 23, ey)
        if d <= 40:
            mx: uint256 = ((x & FRACTION) | HIDDEN) << d
            my: uint256 = (y & FRACTION) | HIDDEN
            m: uint256 = 0
            right: uint256 = 0
            if (a ^ b) & SIGN == 0:
                # m in [2**(23 + d), 2**(25 + d)): keep 24 bits
                m = unsafe_add(mx, my)
                right = unsafe_add(d, m >> unsafe_add(d, 24))
            elif d >= 2:
                # m in (2**(22 + d), 2**(24 + d))
                m = unsafe_sub(mx, my)
                right = unsafe_add(unsafe_sub(d, 1), m >> unsafe_add(d, 23))
            else:
                # d <= 1: m < 2**25, exact below 2**24 (Sterbenz's lemma for d = 0, at most 24 bits for
                # d = 1): normalised without rounding; with 25 bits one is rounded off below
                m = unsafe_sub(mx, my)
                right = m >> 24
                if right == 0:
                    if m == 0:
                        return 0
                    return self._pack_exact(x & SIGN, m, ey)
            if right != 0:
                # round half to even: add half - 1 plus the kept part's lowest bit, then cut; the
                # result's exponent field is ey + right (a carry into it is right, as in `_round_pack`)
                half: uint256 = 1 << unsafe_sub(right, 1)
                q: uint256 = unsafe_add(unsafe_add(m, unsafe_sub(half, 1)), (m >> right) & 1) >> right
                return (x & SIGN) | min(unsafe_add(unsafe_sub(unsafe_add(ey, right), 1) << 23, q), INF)
        else:
            # |y| < 2^-40 · |x|, far under half an ulp of x (or of the binade below it): the sum is x, as the
            # general path's sticky 1 gives it (a fold of tiny terms onto a large running value stays cheap)
            return x
    if ma >= INF or mb >= INF:
        if ma > INF or mb > INF:
            return QNAN
        if ma == INF and mb == INF and a != b:
            return QNAN
        if ma == INF:
            return a
        return b
    # Finite with a zero or subnormal operand: about as cheap as the fast path, no `_round_pack`
    # (adversarial values take this path on every operation of an element: docs/referee.md
    # "Adversarial values").
    x: uint256 = a
    y: uint256 = b
    mag_x: uint256 = ma
    mag_y: uint256 = mb
    if mb > ma:
        x = b
        y = a
        mag_x = mb
        mag_y = ma
    if mag_y == 0:
        if mag_x == 0:
            return a & b
        return x
    # (exponent field, significand): a subnormal at exponent 1 without the hidden bit
    ex: uint256 = mag_x >> 23
    mx: uint256 = mag_x & FRACTION
    if ex == 0:
        ex = 1
    else:
        mx = mx | HIDDEN
    ey: uint256 = mag_y >> 23
    my: uint256 = mag_y & FRACTION
    if ey == 0:
        ey = 1
    else:
        my = my | HIDDEN
    d: uint256 = unsafe_sub(ex, ey)
    if d > 40:
        return x
    m: uint256 = 0
    right: uint256 = 0
    if (a ^ b) & SIGN == 0:
        # m < 2**24 (exact) when x is subnormal; otherwise in [2**(23 + d), 2**(25 + d)) as on the fast path
        m = unsafe_add(mx << d, my)
        right = unsafe_add(d, m >> unsafe_add(d, 24))
    else:
        m = unsafe_sub(mx << d, my)
        if d == 0:
            # both at exponent 1 (x subnormal or in the smallest binade): exact, below 2**24, and already
            # packed (a leading bit at 2**23 is the smallest normal's exponent field, 1)
            if m == 0:
                return 0
            return (x & SIGN) | m
        # y subnormal (my < 2**23) and d >= 1: m in (2**(22 + d), 2**(24 + d)) as on the fast path
        right = unsafe_add(unsafe_sub(d, 1), m >> unsafe_add(d, 23))
    # (no overflow: x is below 2**-85 here, y subnormal and d <= 40)
    return (x & SIGN) | unsafe_add(unsafe_sub(unsafe_add(ey, right), 1) << 23, self._round_right(m, right))


@internal
@pure
def _sub(a: uint256, b: uint256) -> uint256:
    """
    @notice a - b = a + (-b), rounded to nearest, ties to even.
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return The binary32 difference.
    """
    return self._add(a, b ^ SIGN)


@internal
@pure
def _mul(a: uint256, b: uint256) -> uint256:
    """
    @notice a * b, rounded to nearest, ties to even (inf * 0 is NaN; the sign is the XOR of signs).
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return The binary32 product.
    """
    sign: uint256 = (a ^ b) & SIGN
    ma: uint256 = a & MAGNITUDE
    mb: uint256 = b & MAGNITUDE
    ea: uint256 = ma >> 23
    eb: uint256 = mb >> 23
    if unsafe_sub(ea, 1) < 254 and unsafe_sub(eb, 1) < 254:
        # Fast path, both normal: m in [2**46, 2**48); keep 24 bits, the exponent field is
        # ea + eb - 127 (+1 when m >= 2**47); an overflowing result goes to the general path.
        m: uint256 = unsafe_mul((ma & FRACTION) | HIDDEN, (mb & FRACTION) | HIDDEN)
        top: uint256 = m >> 47
        be: uint256 = unsafe_add(unsafe_add(ea, eb), top)
        if unsafe_sub(be, 128) < 254:
            right: uint256 = unsafe_add(23, top)
            half: uint256 = 1 << unsafe_add(22, top)
            q: uint256 = unsafe_add(unsafe_add(m, unsafe_sub(half, 1)), (m >> right) & 1) >> right
            return sign | min(unsafe_add(unsafe_sub(be, 128) << 23, q), INF)
        if be < 128:
            # a subnormal product or zero: rounded at 2**-149, a shift of 151 - ea - eb >= 24
            return sign | self._round_right(m, unsafe_sub(151, unsafe_add(ea, eb)))
        # an overflow: the general path below
    if ma >= INF or mb >= INF:
        if ma > INF or mb > INF or ma == 0 or mb == 0:
            return QNAN
        return sign | INF
    if ea != 0 and eb != 0:
        return sign | INF  # two normals come here only when their product overflows
    if ma == 0 or mb == 0 or unsafe_add(ea, eb) <= 100:
        # (exponent fields summing to at most 102 with a subnormal's at 1: |a * b| < 2**-150, zero)
        return sign
    # One subnormal operand (its fraction s, exponent field 1) and one normal (field e): the product
    # m = s * significand is m * 2**(e - 299); the result is subnormal (rounded at 2**-149, a shift of
    # 150 - e >= 1) unless e > 126 and m's leading bit, at 23 + top(s) or one above, lifts it to a
    # normal exponent field top + e - 172 >= 1 (rounded to 24 bits)
    s: uint256 = ma
    e: uint256 = eb
    m: uint256 = (mb & FRACTION) | HIDDEN
    if ea != 0:
        s = mb
        e = ea
        m = (ma & FRACTION) | HIDDEN
    m = unsafe_mul(s, m)
    if e > 126:
        top: uint256 = unsafe_add(self._top_bit(s), 23)
        top = unsafe_add(top, m >> unsafe_add(top, 1))
        if unsafe_add(top, e) >= 173:
            return sign | min(unsafe_add(unsafe_sub(unsafe_add(top, e), 173) << 23, self._round_right(m, unsafe_sub(top, 23))), INF)
    return sign | self._round_right(m, unsafe_sub(150, e))


@internal
@pure
def _div(a: uint256, b: uint256) -> uint256:
    """
    @notice a / b, rounded to nearest, ties to even (0/0 and inf/inf are NaN; x/0 is a signed inf).
    @dev The integer quotient of (ma << 64) by mb has at least 40 bits; a sticky bit below it
         records a non-zero remainder, so the one rounding in `_round_pack` is exact.
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return The binary32 quotient.
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
    ea: uint256 = ma >> 23
    ma = ma & FRACTION
    if ea == 0:
        ea = 1
    else:
        ma = ma | HIDDEN
    eb: uint256 = mb >> 23
    mb = mb & FRACTION
    if eb == 0:
        eb = 1
    else:
        mb = mb | HIDDEN
    num: uint256 = ma << 64
    q: uint256 = unsafe_div(num, mb)
    m: uint256 = q << 1
    if unsafe_mul(q, mb) != num:
        m = m | 1
    # a / b = (m / 2**65) * 2**(ea - eb) = m * 2**(e - 150) with e = ea - eb + 85
    return self._round_pack(sign, m, convert(ea, int256) - convert(eb, int256) + 85)


@internal
@pure
def _sqrt(x: uint256) -> uint256:
    """
    @notice √x, rounded to nearest (√-0 = -0, √+inf = +inf, √ of a negative number or NaN is NaN).
    @dev isqrt of the significand scaled by an even power of two (at least 30 result bits), a sticky
         bit for an inexact root; a root is never exactly halfway between two binary32 values.
    @param x A binary32 pattern.
    @return The binary32 square root.
    """
    mag: uint256 = x & MAGNITUDE
    if mag == 0:
        return x
    if x > INF:
        # NaN, or a negative non-zero number (the sign bit makes the pattern exceed INF)
        return QNAN
    if mag == INF:
        return x
    e: uint256 = mag >> 23
    m: uint256 = mag & FRACTION
    if e == 0:
        e = 1
    else:
        m = m | HIDDEN
    # value = m * 2**(e - 150); make the exponent even (150 is even, so e must be)
    if e & 1 == 1:
        m = m << 1
        e = unsafe_sub(e, 1)
    n: uint256 = m << 60
    r: uint256 = isqrt(n)
    root: uint256 = r << 1
    if unsafe_mul(r, r) != n:
        root = root | 1
    # √value = (root / 2) * 2**((e - 150 - 60) / 2) = root * 2**(out - 150), out = e / 2 + 44
    return self._round_pack(0, root, convert(e >> 1, int256) + 44)


@internal
@pure
def _order_key(x: uint256) -> uint256:
    """
    @notice A key whose unsigned order is the numeric order of non-NaN values (-0 and +0 share one).
    @param x A binary32 pattern (not NaN).
    @return SIGN + |x| for positive, SIGN - |x| for negative values.
    """
    if x & SIGN != 0:
        return unsafe_sub(SIGN, x & MAGNITUDE)
    return unsafe_add(SIGN, x)


@internal
@pure
def _lt(a: uint256, b: uint256) -> bool:
    """
    @notice IEEE a < b (false when either is NaN; -0 < +0 is false).
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return a < b.
    """
    if a & MAGNITUDE > INF or b & MAGNITUDE > INF:
        return False
    return self._order_key(a) < self._order_key(b)


@internal
@pure
def _le(a: uint256, b: uint256) -> bool:
    """
    @notice IEEE a <= b (false when either is NaN).
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return a <= b.
    """
    if a & MAGNITUDE > INF or b & MAGNITUDE > INF:
        return False
    return self._order_key(a) <= self._order_key(b)


@internal
@pure
def _eq(a: uint256, b: uint256) -> bool:
    """
    @notice IEEE a == b (NaN equals nothing; -0 == +0).
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return a == b.
    """
    if a & MAGNITUDE > INF or b & MAGNITUDE > INF:
        return False
    return self._order_key(a) == self._order_key(b)


@internal
@pure
def _same(a: uint256, b: uint256) -> bool:
    """
    @notice The referee's equality of two results: the same bits, or both NaN (NaN is a class).
    @dev Unlike `_eq`, -0 and +0 differ (they are different bits of a checkpoint).
    @param a A binary32 pattern.
    @param b A binary32 pattern.
    @return Whether a and b are the same binary32 value.
    """
    return a == b or (a & MAGNITUDE > INF and b & MAGNITUDE > INF)


@internal
@pure
def _from_int(v: int256) -> uint256:
    """
    @notice The binary32 nearest to the integer v (ties to even); 0 gives +0.
    @param v Any int256 except its minimum.
    @return The binary32 pattern.
    """
    if v == 0:
        return 0
    if v < 0:
        return self._round_pack(SIGN, convert(-v, uint256), 150)
    return self._round_pack(0, convert(v, uint256), 150)


@internal
@pure
def _to_int(x: uint256) -> int256:
    """
    @notice x truncated toward zero, as an integer (exact for the integral values exp uses).
    @param x A finite binary32 pattern (not NaN or infinite).
    @return trunc(x).
    """
    mag: uint256 = x & MAGNITUDE
    assert mag < INF, "float32: not finite"
    e: uint256 = mag >> 23
    if e < 127:
        return 0
    m: uint256 = (mag & FRACTION) | HIDDEN
    v: uint256 = 0
    if e >= 150:
        v = m << unsafe_sub(e, 150)
    else:
        v = m >> unsafe_sub(150, e)
    if x & SIGN != 0:
        return -convert(v, int256)
    return convert(v, int256)


@internal
@pure
def _scalbn(x: uint256, n: int256) -> uint256:
    """
    @notice x * 2**n, rounded once (a binary32 product with an exact power of two when 2**n is one).
    @dev Zeros, infinities and NaN are returned unchanged; n is clamped to ±1_000 (beyond which every
         finite non-zero x overflows or underflows anyway).
    @param x A binary32 pattern.
    @param n The power of two.
    @return The binary32 pattern of x * 2**n.
    """
    mag: uint256 = x & MAGNITUDE
    if mag == 0 or mag >= INF:
        return x
    e: uint256 = mag >> 23
    m: uint256 = mag & FRACTION
    if e == 0:
        e = 1
    else:
        m = m | HIDDEN
    return self._round_pack(x & SIGN, m, convert(e, int256) + max(min(n, 1_000), -1_000))


@internal
@pure
def _rint(x: uint256) -> uint256:
    """
    @notice x rounded to an integral value, half to even (NumPy's rint): rint(-0.4) = -0.
    @param x A binary32 pattern.
    @return The binary32 pattern of the nearest integer (x itself when |x| >= 2**23 or not finite).
    """
    mag: uint256 = x & MAGNITUDE
    e: uint256 = mag >> 23
    if e >= 150 or mag == 0:
        return x
    m: uint256 = mag & FRACTION
    if e == 0:
        e = 1
    else:
        m = m | HIDDEN
    sign: uint256 = x & SIGN
    s: uint256 = unsafe_sub(150, e)
    q: uint256 = 0
    if s < 32:
        q = m >> s
        rest: uint256 = unsafe_sub(m, q << s)
        half: uint256 = 1 << unsafe_sub(s, 1)
        if rest > half or (rest == half and q & 1 == 1):
            q = unsafe_add(q, 1)
    if q == 0:
        return sign
    return self._round_pack(sign, q, 150)


@internal
@pure
def _to_f64(x: uint256) -> uint256:
    """
    @notice The binary64 equal to binary32 x (exact; NaN gives the binary64 quiet NaN).
    @param x A binary32 pattern.
    @return A binary64 pattern.
    """
    sign: uint256 = (x & SIGN) << 32
    mag: uint256 = x & MAGNITUDE
    if mag == 0:
        return sign
    if mag > INF:
        return F64_QNAN
    if mag == INF:
        return sign | F64_INF
    e: uint256 = mag >> 23
    m: uint256 = mag & FRACTION
    if e == 0:
        # subnormal: normalise to a 24-bit significand, value = m' * 2**(l - 23 - 150)
        length: uint256 = self._bit_length(m)
        m = (m << unsafe_sub(24, length)) & FRACTION
        return sign | (unsafe_add(length, 873) << 52) | (m << 29)
    return sign | (unsafe_add(e, 896) << 52) | (m << 29)


@internal
@pure
def _from_f64(d: uint256) -> uint256:
    """
    @notice The binary32 nearest to binary64 d (ties to even; NaN gives NaN).
    @param d A binary64 pattern.
    @return A binary32 pattern.
    """
    sign: uint256 = (d >> 32) & SIGN
    mag: uint256 = d & (F64_SIGN - 1)
    if mag == 0:
        return sign
    if mag > F64_INF:
        return QNAN
    if mag == F64_INF:
        return sign | INF
    e: uint256 = mag >> 52
    m: uint256 = mag & F64_FRACTION
    if e == 0:
        e = 1
    else:
        m = m | F64_HIDDEN
    # value = m * 2**(e - 1075) = m * 2**((e - 925) - 150)
    return self._round_pack(sign, m, convert(e, int256) - 925)


@internal
@pure
def _dot_from(start: uint256, a: DynArray[uint32, MAX_DOT], b: DynArray[uint32, MAX_DOT]) -> uint256:
    """
    @notice The fold s = start; s = s + a[k] * b[k] for k in order, each product and each sum rounded:
            a fold longer than MAX_DOT continues chunk by chunk from the previous chunk's result.
    @param start The accumulator to continue from (+0 to begin a fold).
    @param a Left operands.
    @param b Right operands (same length as `a`).
    @return The binary32 pattern of the fold.
    """
    assert len(a) == len(b), "float32: dot lengths differ"
    s: uint256 = start
    for k: uint256 in range(len(a), bound=MAX_DOT):
        s = self._add(s, self._mul(convert(a[k], uint256), convert(b[k], uint256)))
    return s


@internal
@pure
def _dot(a: DynArray[uint32, MAX_DOT], b: DynArray[uint32, MAX_DOT]) -> uint256:
    """
    @notice The fold s = +0; s = s + a[k] * b[k] for k in order, each product and each sum rounded
            (docs/arithmetic.md, section 4: matmul), as binary32.
    @param a Left operands.
    @param b Right operands (same length as `a`).
    @return The binary32 pattern of the fold.
    """
    return self._dot_from(0, a, b)


@internal
@pure
def _dot_words_from(
    start: uint256, a: DynArray[uint256, MAX_DOT_WORDS], b: DynArray[uint256, MAX_DOT_WORDS], n: uint256
) -> uint256:
    """
    @notice `_dot_from` over n binary32 values packed eight per word: value k of `a` is
            (a[k // 8] >> (224 - 32 * (k % 8))) & 0xFFFFFFFF, likewise for `b`.
    @dev Eight values per 32-byte word cost a quarter of the calldata of a uint32[] argument (one value
         per word) and no per-value ABI range check.
    @param start The accumulator to continue from (+0 to begin a fold).
    @param a Left operands, packed.
    @param b Right operands, packed.
    @param n How many values to fold (at most 8 * len(a) and 8 * len(b)).
    @return The binary32 pattern of the fold.
    """
    assert n <= len(a) * 8 and n <= len(b) * 8, "float32: dot words too short"
    s: uint256 = start
    for k: uint256 in range(n, bound=MAX_DOT):
        right: uint256 = unsafe_sub(224, (k & 7) << 5)
        s = self._add(s, self._mul((a[k >> 3] >> right) & LANE, (b[k >> 3] >> right) & LANE))
    return s
