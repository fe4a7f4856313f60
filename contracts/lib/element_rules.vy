# pragma version ~=0.4.3
"""
@title element_rules
@notice The level-3 referee's element rules (docs/referee.md, section 4): for one output element of a
        recorded kernel call, its bits recomputed from the proven input values, operation by operation
        as `protocol/referee_model.py` (`check_element`) computes them.
@dev A call is (rule, params, values). `rule` is one of the RULE_* codes below (several kernels share
     a rule: every ordered fold is RULE_FOLD); `params` are the few integers the rule needs from the
     entry's skeleton (its non-tensor arguments as binary32 bits, a column index, a width, the piece
     mode); `values` are the proven values in the order `protocol.referee_model.dependencies` lists
     them (a fold: in term order, a padding position of conv2d as +0). `protocol/referee_calls.py`
     builds the three from a `Call`; the calling contract derives params from the agreed skeleton and
     proves each value. A binary32 is its pattern in the low 32 bits; an integer (a mask bit, a class
     id, a max-pool position) is itself; clipping's running sums are binary64 patterns.

     Rules and their layouts (W: a row's width, at most MAX_ROW; a fold has at most MAX_FOLD terms):
       FOLD                params [arity, from_partial, epilogue, divisor]; values [partial?] + terms
                           + [the last value if epilogue is EPILOGUE_ADD or EPILOGUE_DIV_LAST]. arity 0:
                           a term is 1 for an int64 that is not -1, else +0 (the causal-LM loss's count of
                           counted rows); 1: a term is one value; 2: the product of two; 3: (a - b) * (a - b)
                           of two (mse). epilogue: none, + the last value (a bias), / float(divisor) (a
                           mean), or / the last value (the causal-LM loss's mean: a proven count).
       RELU … TANH_BACKWARD  values [x] or [x, dy] (tanh's backward: [y, dy])
       ADD, MUL            values [a, b]
       MUL_SCALAR          params [factor]; values [x]
       SCALE               values [x, factor]
       COPY                values [v] (a move: transpose, move, cat, place, gather's selected value)
                           or [] (place beyond its source: +0)
       FILL_ABOVE_DIAGONAL params [row, col, fill]; values [x] when col <= row, else []
       WHERE               values [mask, a, b]
       SCALED_KEEP         params [factor]; values [x, keep]
       SOFTMAX             params [j]; values the row z (W)
       SOFTMAX_BACKWARD    params [j]; values the rows y, dy (2W)
       CROSS_ENTROPY_NLL   values the row z (W), then the target id
       CROSS_ENTROPY_BACKWARD params [j, rows, grad]; values the row z (W), then the target id
       LAYER_NORM          params [output, j, eps]; values the row x (W), then w[j], b[j] for output 0
       RMS_NORM            params [output, j, eps]; values the row x (W), then w[j] for output 0
       LAYER_NORM_BACKWARD, RMS_NORM_BACKWARD  params [j]; values x̂ row (W), rstd, w (W), dy row (W)
       ADAMW               params [output]; output 0: p, g, m, v, the 8 scalars; 1: g, m, β1, 1 - β1;
                           2: g, v, β2, 1 - β2
       SGD                 params [output, has_buffer, nesterov]; values p, g, [buffer], wd, momentum,
                           [lr for output 0]
       ROTARY              params [first_half, backward]; values [x, partner, cos, sin]
       MAX_POOL            params [output]; values the window (k²), or [output, base]: a piece from the
                           running best and place (values 0 and 1) over values 2 …, the place of value q
                           q + base (output 0 the best, 1 the place)
       MAX_POOL_BACKWARD   params the position q of the element in each covering window; values
                           [a running value to go on from (a piece over overlapping windows),] then
                           (winner, dy) per covering window
       AVG_POOL_BACKWARD   params [k²]; values dy per covering window
       EMBEDDING_BACKWARD  params [v] or [v, 1]; values [the running value before the piece, for [v, 1]] +
                           the piece's ids, then dy's column at those positions (2P)
       MSE_BACKWARD        params [count, upstream]; values [a, b]
       CLIP_PIECE          params [from_partial]; values [partial (binary64)?] + gradients (binary32):
                           the binary64 running Σ g² after the piece
       CLIP_SCALE          params [max_norm (binary64)]; values [the last running Σ g²]
       DROPOUT_KEEP        params [p (binary64), the call's number c, the element e]; values [seed, step]
                           (the state header's): 1 when bits24(derive_seed(seed, "dropout", step, c), e)
                           >= round_half_even(p * 2**24), else 0 (docs/arithmetic.md, section 7)
       SELECT              params [hint_0 … hint_{h-1}]; values [the hints' proven values …, the value
                           selected at the hinted place]: that value (any bits: binary32, int64), reverting
                           unless every hint is its proven value (data_rules.vy: batch_index's cursor,
                           gather's id)
       STEP_SCALAR         params [bits, step]; values [seed, step] (the state header's): `bits` when the
                           header's step is `step` (a per-step scalar that ScalarRules.vy computed for
                           the step the defender named), else the call reverts
       ROW_PIECE           params [mode, from_partial, D]; values [the final statistic the mode reads?]
                           + [the running value before the piece, if from_partial] + the mode's blocks,
                           each of the same n terms (1 … MAX_FOLD), back to back: the running statistic
                           of a row after one piece (row_piece_rules.vy, docs/referee.md "Rows in
                           pieces"). Modes: PIECE_MAX (m = partial, or block[0] and the rest;
                           m = t if m < t), PIECE_EXP_SUM (reads M: s + exp(t - M)), PIECE_SUM (s + t),
                           PIECE_SQ_DEV (reads S1: c = t - S1 / float(D), s + c * c), PIECE_SQUARE
                           (s + t * t), PIECE_DOT (blocks a, b: s + a * b), PIECE_DOT3 (blocks a, b,
                           x: s + (a * b) * x); a sum starts from +0 without from_partial
       ROW_FINAL           params [mode, output, D, eps]; values by mode: FINAL_SOFTMAX [z, M, S]:
                           exp(z - M) / S; FINAL_SOFTMAX_BACKWARD [y, dy, Dd]: y * (dy - Dd);
                           FINAL_LAYER_NORM output 0 [x, S1, S2, w, b], 1 [x, S1, S2], 2 [S2]:
                           μ = S1 / D, ρ = 1 / sqrt(S2 / D + eps), x̂ = (x - μ) * ρ, y = x̂ * w + b
                           (output 2 ρ, 1 x̂, 0 y); FINAL_RMS_NORM output 0 [x, Q, w], 1 [x, Q],
                           2 [Q]: ρ = 1 / sqrt(Q / D + eps), x̂ = x * ρ, y = x̂ * w;
                           FINAL_LAYER_NORM_BACKWARD [x̂, ρ, w, dy, A, B]: g = dy * w,
                           ((g - A / D) - x̂ * (B / D)) * ρ; FINAL_RMS_NORM_BACKWARD [x̂, ρ, w, dy, B]:
                           (g - x̂ * (B / D)) * ρ. D as binary32, eps binary32 bits (0 where unused),
                           output 0 for the modes of one output. Cross-entropy: FINAL_NLL params
                           [mode, t, D, 0], values [z[r, t], M, S, t[r]] (the target read must be the
                           hinted t): log(S) - (z[r, t] - M); FINAL_CE_BACKWARD params [mode, j, R,
                           grad], values [z[r, j], M, S, t[r]]: p = exp(z - M) / S, p - 1 where j is
                           t[r], (p / R) * grad; FINAL_CAUSAL_BACKWARD the same with values [z[r, j], M, S,
                           t[r], N], the proven binary32 count N of counted rows for R. A target -1 (a row
                           the causal-LM loss does not count) gives +0 in the three cross-entropy modes
                           (nll's hint must then be -1 too, as a 64-bit pattern).
"""

from . import float32
from . import float32_math
from . import float64

MAX_FOLD: constant(uint256) = 256  # terms of one fold piece (protocol/referee_model.py MAX_FOLD)
MAX_ROW: constant(uint256) = 256  # the widest normalisation row one check reads
MAX_VALUES: constant(uint256) = 1_024  # 3 rows and a scalar (norm backward), or 256 pairs and three more
MAX_PARAMS: constant(uint256) = 16

RULE_FOLD: constant(uint256) = 0
RULE_RELU: constant(uint256) = 1
RULE_RELU_BACKWARD: constant(uint256) = 2
RULE_GELU: constant(uint256) = 3
RULE_GELU_BACKWARD: constant(uint256) = 4
RULE_SILU: constant(uint256) = 5
RULE_SILU_BACKWARD: constant(uint256) = 6
RULE_GELU_TANH: constant(uint256) = 7
RULE_GELU_TANH_BACKWARD: constant(uint256) = 8
RULE_TANH: constant(uint256) = 9
RULE_TANH_BACKWARD: constant(uint256) = 10
RULE_ADD: constant(uint256) = 11
RULE_MUL: constant(uint256) = 12
RULE_MUL_SCALAR: constant(uint256) = 13
RULE_SCALE: constant(uint256) = 14
RULE_COPY: constant(uint256) = 15
RULE_FILL_ABOVE_DIAGONAL: constant(uint256) = 16
RULE_WHERE: constant(uint256) = 17
RULE_SCALED_KEEP: constant(uint256) = 18
RULE_SOFTMAX: constant(uint256) = 19
RULE_SOFTMAX_BACKWARD: constant(uint256) = 20
RULE_CROSS_ENTROPY_NLL: constant(uint256) = 21
RULE_CROSS_ENTROPY_BACKWARD: constant(uint256) = 22
RULE_LAYER_NORM: constant(uint256) = 23
RULE_RMS_NORM: constant(uint256) = 24
RULE_LAYER_NORM_BACKWARD: constant(uint256) = 25
RULE_RMS_NORM_BACKWARD: constant(uint256) = 26
RULE_ADAMW: constant(uint256) = 27
RULE_SGD: constant(uint256) = 28
RULE_ROTARY: constant(uint256) = 29
RULE_MAX_POOL: constant(uint256) = 30
RULE_MAX_POOL_BACKWARD: constant(uint256) = 31
RULE_AVG_POOL_BACKWARD: constant(uint256) = 32
RULE_EMBEDDING_BACKWARD: constant(uint256) = 33
RULE_MSE_BACKWARD: constant(uint256) = 34
RULE_CLIP_PIECE: constant(uint256) = 35
RULE_CLIP_SCALE: constant(uint256) = 36
RULE_DROPOUT_KEEP: constant(uint256) = 37
RULE_SELECT: constant(uint256) = 38
RULE_STEP_SCALAR: constant(uint256) = 39
RULE_ROW_PIECE: constant(uint256) = 40
RULE_ROW_FINAL: constant(uint256) = 41

# ROW_PIECE modes: the running statistic a piece of a row adds to (row_piece_rules.vy)
PIECE_MAX: constant(uint256) = 0
PIECE_EXP_SUM: constant(uint256) = 1
PIECE_SUM: constant(uint256) = 2
PIECE_SQ_DEV: constant(uint256) = 3
PIECE_SQUARE: constant(uint256) = 4
PIECE_DOT: constant(uint256) = 5
PIECE_DOT3: constant(uint256) = 6
# ROW_FINAL modes: an output element from its row's final statistics
FINAL_SOFTMAX: constant(uint256) = 0
FINAL_SOFTMAX_BACKWARD: constant(uint256) = 1
FINAL_LAYER_NORM: constant(uint256) = 2
FINAL_RMS_NORM: constant(uint256) = 3
FINAL_LAYER_NORM_BACKWARD: constant(uint256) = 4
FINAL_RMS_NORM_BACKWARD: constant(uint256) = 5
FINAL_NLL: constant(uint256) = 6
FINAL_CE_BACKWARD: constant(uint256) = 7
FINAL_CAUSAL_BACKWARD: constant(uint256) = 8

EPILOGUE_NONE: constant(uint256) = 0
EPILOGUE_ADD: constant(uint256) = 1
EPILOGUE_DIV: constant(uint256) = 2
EPILOGUE_DIV_LAST: constant(uint256) = 3  # / the last value (a proven binary32 count)

# splitmix64's constants (protocol/referee_model.py bits24)
GOLDEN: constant(uint256) = 11_400_714_819_323_198_485  # 0x9E3779B97F4A7C15
MIX1: constant(uint256) = 13_787_848_793_156_543_929  # 0xBF58476D1CE4E5B9
MIX2: constant(uint256) = 10_723_151_780_598_845_931  # 0x94D049BB133111EB
MASK64: constant(uint256) = (1 << 64) - 1
SEED_MASK: constant(uint256) = (1 << 63) - 1
F64_FRACTION: constant(uint256) = (1 << 52) - 1

ONE: constant(uint256) = 1_065_353_216  # 0x3f800000
HALF: constant(uint256) = 1_056_964_608  # 0x3f000000


@internal
@pure
def _element(rule: uint256, params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice The bits of one output element (or a fold piece's running value) under `rule`.
    @param rule A RULE_* code.
    @param params The rule's parameters (see the module's layouts).
    @param values The proven values in dependency order.
    @return A binary32 pattern, an integer (max-pool's position), or a binary64 pattern (CLIP_PIECE).
    """
    if rule == RULE_FOLD:
        return self._fold(params, values)
    if rule <= RULE_TANH_BACKWARD:
        return self._activation(rule, values)
    if rule == RULE_ADD:
        assert len(values) == 2, "element_rules: add reads two values"
        return float32._add(values[0], values[1])
    if rule == RULE_MUL or rule == RULE_SCALE:
        assert len(values) == 2, "element_rules: mul reads two values"
        return float32._mul(values[0], values[1])
    if rule == RULE_MUL_SCALAR:
        assert len(values) == 1 and len(params) == 1, "element_rules: mul_scalar layout"
        return float32._mul(values[0], params[0])
    if rule == RULE_COPY:
        assert len(values) <= 1, "element_rules: a move reads one value"
        if len(values) == 0:
            return 0
        return values[0]
    if rule == RULE_FILL_ABOVE_DIAGONAL:
        assert len(params) == 3, "element_rules: fill layout"
        if params[1] > params[0]:
            assert len(values) == 0, "element_rules: fill reads nothing above the diagonal"
            return params[2]
        assert len(values) == 1, "element_rules: fill reads one value"
        return values[0]
    if rule == RULE_WHERE:
        assert len(values) == 3, "element_rules: where reads three values"
        if values[0] != 0:
            return values[1]
        return values[2]
    if rule == RULE_SCALED_KEEP:
        assert len(values) == 2 and len(params) == 1, "element_rules: scaled_keep layout"
        if values[1] != 0:
            return float32._mul(values[0], params[0])
        return 0
    if rule <= RULE_CROSS_ENTROPY_BACKWARD:
        return self._softmax_row(rule, params, values)
    if rule <= RULE_RMS_NORM_BACKWARD:
        return self._norm(rule, params, values)
    if rule == RULE_ADAMW:
        return self._adamw(params, values)
    if rule == RULE_SGD:
        return self._sgd(params, values)
    if rule == RULE_ROTARY:
        assert len(values) == 4 and len(params) == 2, "element_rules: rotary layout"
        # forward: ρ = -x[j + H] below H, x[j - H] above; backward: ρ' = dy[j + H] below, -dy[j - H] above
        rho: uint256 = values[1]
        if (params[0] != 0) == (params[1] == 0):
            rho = float32._neg(rho)
        return float32._add(float32._mul(values[0], values[2]), float32._mul(rho, values[3]))
    if rule <= RULE_EMBEDDING_BACKWARD:
        return self._pooling(rule, params, values)
    if rule == RULE_MSE_BACKWARD:
        assert len(values) == 2 and len(params) == 2, "element_rules: mse_backward layout"
        d: uint256 = float32._sub(values[0], values[1])
        count: uint256 = float32._from_int(convert(params[0], int256))
        return float32._mul(float32._div(float32._add(d, d), count), params[1])
    if rule == RULE_SELECT:
        # a selection at hinted places (data_rules.vy): the values are the hints' proven sources, then the
        # selected value; a hint that is not its proven value cannot prove anything
        assert len(values) == len(params) + 1, "element_rules: select layout"
        for i: uint256 in range(MAX_PARAMS):
            if i >= len(params):
                break
            assert values[i] == params[i], "element_rules: a hint is not its proven value"
        return values[len(params)]
    if rule == RULE_STEP_SCALAR:
        assert len(values) == 2 and len(params) == 2 and values[1] == params[1], "element_rules: not the header's step"
        return params[0]
    if rule == RULE_ROW_PIECE or rule == RULE_ROW_FINAL:
        return self._row(rule, params, values)
    assert rule == RULE_DROPOUT_KEEP, "element_rules: unknown rule"
    assert len(values) == 2 and len(params) == 3, "element_rules: dropout_keep layout"
    key: uint256 = self._derive_dropout_seed(values[0], values[1], params[1])
    if self._bits24(key, params[2]) >= self._scaled_threshold(params[0]):
        return 1
    return 0


@internal
@pure
def _clip_element(rule: uint256, params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice The bits of a clipping element: RULE_CLIP_PIECE (a piece of the binary64 Σ g²) or
            RULE_CLIP_SCALE (the factor from the last running Σ g²).
    @dev Apart from `_element` because of EIP-170: with binary64 they are `ClipReferee.vy`, which
         `ElementReferee.vy` calls for these two rules.
    @param rule RULE_CLIP_PIECE or RULE_CLIP_SCALE.
    @param params The rule's parameters (see the module's layouts).
    @param values The proven values in dependency order.
    @return A binary64 pattern (CLIP_PIECE) or a binary32 pattern (CLIP_SCALE).
    """
    if rule == RULE_CLIP_PIECE:
        assert len(params) == 1, "element_rules: clip piece layout"
        return self._clip_piece(params[0] != 0, values)
    assert rule == RULE_CLIP_SCALE, "element_rules: not a clipping rule"
    assert len(values) == 1 and len(params) == 1, "element_rules: clip scale layout"
    return float64._clip_scale(values[0], params[0])


@internal
@pure
def _derive_dropout_seed(seed: uint256, step: uint256, number: uint256) -> uint256:
    """
    @notice derive_seed(seed, "dropout", step, number) of docs/spec-format.md: the first 8 bytes,
            little-endian, of sha256 of the canonical JSON ["<seed>","dropout","<step>","<number>"] (the
            labels as decimal strings), masked to 63 bits.
    @param seed The state header's seed.
    @param step The state header's step.
    @param number The dropout call's number within the step.
    @return The 63-bit key.
    """
    label: String[256] = concat(
        '["', uint2str(seed), '","dropout","', uint2str(step), '","', uint2str(number), '"]'
    )
    head: uint256 = convert(sha256(label), uint256) >> 192
    key: uint256 = 0
    for i: uint256 in range(8):
        key = (key << 8) | ((head >> (8 * i)) & 255)
    return key & SEED_MASK


@internal
@pure
def _bits24(key: uint256, index: uint256) -> uint256:
    """
    @notice The top 24 bits of splitmix64's output for element `index` under `key` (bits24 of
            protocol/referee_model.py), every step modulo 2**64.
    @param key The derived 63-bit key.
    @param index The element's flat index.
    @return A 24-bit integer.
    """
    z: uint256 = (key + index * GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return (z ^ (z >> 31)) >> 40


@internal
@pure
def _scaled_threshold(p: uint256) -> uint256:
    """
    @notice round_half_even(p * 2**24) for a binary64 p in [0, 1]: dropout keeps an element when its
            24 random bits reach it.
    @param p The dropout probability, binary64.
    @return The integer threshold.
    """
    e: uint256 = (p >> 52) & 2_047
    assert p >> 63 == 0 and e <= 1_023, "element_rules: dropout p outside [0, 1]"
    m: uint256 = p & F64_FRACTION
    if e == 0:
        e = 1
    else:
        m = m | (1 << 52)
    # p * 2**24 = m * 2**(e - 1075 + 24): shift right by 1051 - e (at least 28), rounding half to even
    right: uint256 = 1_051 - e
    if right > 60:
        return 0
    q: uint256 = m >> right
    rest: uint256 = m - (q << right)
    half: uint256 = 1 << (right - 1)
    if rest > half or (rest == half and q & 1 == 1):
        q += 1
    return q


@internal
@pure
def _fold(params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice An ordered fold (matmul, linear and its backward, sum_rows, conv2d, the means of
            cross-entropy, mse and average pooling, head groups, norm columns), or one piece of it: from
            +0 or the proven running value, s = s + term in order, then the epilogue.
    @param params [arity (0 a count, 1, 2 or 3), from_partial (0 or 1), epilogue (EPILOGUE_*), divisor].
    @param values [partial?] + the terms' values + [the added value for EPILOGUE_ADD, the divisor for
           EPILOGUE_DIV_LAST].
    @return The binary32 pattern of the element or of the running value.
    """
    assert len(params) == 4, "element_rules: fold layout"
    arity: uint256 = params[0]
    first: uint256 = params[1]
    epilogue: uint256 = params[2]
    assert arity <= 3 and first <= 1 and epilogue <= EPILOGUE_DIV_LAST, "element_rules: fold layout"
    width: uint256 = max(min(arity, 2), 1)
    extra: uint256 = first
    if epilogue == EPILOGUE_ADD or epilogue == EPILOGUE_DIV_LAST:
        extra += 1
    assert len(values) >= extra and (len(values) - extra) % width == 0, "element_rules: fold layout"
    n: uint256 = (len(values) - extra) // width
    assert n <= MAX_FOLD, "element_rules: fold piece too long"
    s: uint256 = 0
    if first == 1:
        s = values[0]
    if arity <= 1:
        for t: uint256 in range(n, bound=MAX_FOLD):
            term: uint256 = values[first + t]
            if arity == 0:
                # a count: 1 for each int64 that is not -1 (+0 adds nothing: s is never -0)
                term = ONE
                if values[first + t] == MASK64:
                    term = 0
            s = float32._add(s, term)
    elif arity == 2:
        for t: uint256 in range(n, bound=MAX_FOLD):
            i: uint256 = first + 2 * t
            s = float32._add(s, float32._mul(values[i], values[i + 1]))
    else:
        for t: uint256 in range(n, bound=MAX_FOLD):
            i: uint256 = first + 2 * t
            d: uint256 = float32._sub(values[i], values[i + 1])
            s = float32._add(s, float32._mul(d, d))
    # (the last value exists only for these epilogues: a fold of no terms and no epilogue is +0)
    if epilogue == EPILOGUE_ADD:
        return float32._add(s, values[len(values) - 1])
    if epilogue == EPILOGUE_DIV_LAST:
        return float32._div(s, values[len(values) - 1])
    if epilogue == EPILOGUE_DIV:
        return float32._div(s, float32._from_int(convert(params[3], int256)))
    return s


@internal
@pure
def _activation(rule: uint256, values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice The elementwise activations and their backwards (float32_math).
    @param rule RULE_RELU … RULE_TANH_BACKWARD.
    @param values [x] for a forward, [x, dy] for a backward ([y, dy] for tanh's).
    @return The binary32 pattern.
    """
    forward: bool = rule in [RULE_RELU, RULE_GELU, RULE_SILU, RULE_GELU_TANH, RULE_TANH]
    if forward:
        assert len(values) == 1, "element_rules: an activation reads one value"
    else:
        assert len(values) == 2, "element_rules: a backward reads two values"
    if rule == RULE_RELU:
        return float32_math._relu(values[0])
    if rule == RULE_GELU:
        return float32_math._gelu(values[0])
    if rule == RULE_SILU:
        return float32_math._silu(values[0])
    if rule == RULE_GELU_TANH:
        return float32_math._gelu_tanh(values[0])
    if rule == RULE_TANH:
        return float32_math._tanh(values[0])
    if rule == RULE_RELU_BACKWARD:
        return float32_math._relu_backward(values[0], values[1])
    if rule == RULE_GELU_BACKWARD:
        return float32_math._gelu_backward(values[0], values[1])
    if rule == RULE_SILU_BACKWARD:
        return float32_math._silu_backward(values[0], values[1])
    if rule == RULE_GELU_TANH_BACKWARD:
        return float32_math._gelu_tanh_backward(values[0], values[1])
    return float32_math._tanh_backward(values[0], values[1])


@internal
@pure
def _softmax_row(rule: uint256, params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice Softmax and cross-entropy over one row: m the first maximum, e_i = exp(z_i - m), s their
            fold from +0; softmax's backward y_j * (dy_j - fold y_i * dy_i).
    @param rule RULE_SOFTMAX, RULE_SOFTMAX_BACKWARD, RULE_CROSS_ENTROPY_NLL or RULE_CROSS_ENTROPY_BACKWARD.
    @param params [j] (softmax), [j, rows, grad] (cross-entropy's backward), [] (nll).
    @param values The row (softmax's backward: the rows y and dy; cross-entropy: then the target id).
    @return The binary32 pattern.
    """
    if rule == RULE_SOFTMAX_BACKWARD:
        assert len(params) == 1 and len(values) % 2 == 0, "element_rules: softmax_backward layout"
        w: uint256 = len(values) // 2
        assert w <= MAX_ROW and params[0] < w, "element_rules: softmax_backward layout"
        d: uint256 = 0
        for i: uint256 in range(w, bound=MAX_ROW):
            d = float32._add(d, float32._mul(values[i], values[w + i]))
        return float32._mul(values[params[0]], float32._sub(values[w + params[0]], d))
    # (one assert for every layout: a revert string costs ElementReferee code it has no room for; a missing
    # parameter or value reverts at its index)
    width: uint256 = len(values)
    target: uint256 = 0
    j: uint256 = 0
    layout: bool = len(params) == 1
    if rule == RULE_SOFTMAX:
        j = params[0]
    else:
        layout = len(values) >= 2
        width = len(values) - 1
        target = values[width]
        j = target
        if rule == RULE_CROSS_ENTROPY_BACKWARD:
            layout = layout and len(params) == 3
            j = params[0]
    assert layout and width >= 1 and width <= MAX_ROW and j < width and target < width, "element_rules: row layout"
    m: uint256 = values[0]
    for i: uint256 in range(1, width, bound=MAX_ROW):
        if float32._lt(m, values[i]):
            m = values[i]
    s: uint256 = 0
    e_j: uint256 = 0
    for i: uint256 in range(width, bound=MAX_ROW):
        e: uint256 = float32_math._exp(float32._sub(values[i], m))
        if i == j:
            e_j = e
        s = float32._add(s, e)
    if rule == RULE_SOFTMAX:
        return float32._div(e_j, s)
    if rule == RULE_CROSS_ENTROPY_NLL:
        return float32._sub(float32_math._log(s), float32._sub(values[target], m))
    p: uint256 = float32._div(e_j, s)
    if j == target:
        p = float32._sub(p, ONE)
    return float32._mul(float32._div(p, float32._from_int(convert(params[1], int256))), params[2])


@internal
@pure
def _norm(rule: uint256, params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice Layer norm and RMSNorm over one row (y, x̂ or rstd) and their input gradients.
    @param rule RULE_LAYER_NORM, RULE_RMS_NORM, RULE_LAYER_NORM_BACKWARD or RULE_RMS_NORM_BACKWARD.
    @param params [output, j, eps] forward; [j] backward.
    @param values Forward: the row x, then w[j] (and b[j] for layer norm) for output 0. Backward: x̂'s
           row, rstd, w, dy's row.
    @return The binary32 pattern.
    """
    if rule == RULE_LAYER_NORM_BACKWARD or rule == RULE_RMS_NORM_BACKWARD:
        assert len(params) == 1 and len(values) % 3 == 1, "element_rules: norm backward layout"
        w: uint256 = len(values) // 3
        j: uint256 = params[0]
        assert w >= 1 and w <= MAX_ROW and j < w, "element_rules: norm backward layout"
        fw: uint256 = float32._from_int(convert(w, int256))
        rstd: uint256 = values[w]
        a: uint256 = 0
        b: uint256 = 0
        g_j: uint256 = 0
        for i: uint256 in range(w, bound=MAX_ROW):
            g: uint256 = float32._mul(values[2 * w + 1 + i], values[w + 1 + i])
            if i == j:
                g_j = g
            a = float32._add(a, g)
            b = float32._add(b, float32._mul(g, values[i]))
        b = float32._div(b, fw)
        if rule == RULE_LAYER_NORM_BACKWARD:
            g_j = float32._sub(g_j, float32._div(a, fw))
        return float32._mul(float32._sub(g_j, float32._mul(values[j], b)), rstd)
    assert len(params) == 3, "element_rules: norm layout"
    output: uint256 = params[0]
    j: uint256 = params[1]
    layer: bool = rule == RULE_LAYER_NORM
    tail: uint256 = 0
    if output == 0:
        tail = 1
        if layer:
            tail = 2
    assert output <= 2 and len(values) > tail, "element_rules: norm layout"
    width: uint256 = len(values) - tail
    assert width <= MAX_ROW and j < width, "element_rules: norm layout"
    fw: uint256 = float32._from_int(convert(width, int256))
    mean: uint256 = 0
    if layer:
        for i: uint256 in range(width, bound=MAX_ROW):
            mean = float32._add(mean, values[i])
        mean = float32._div(mean, fw)
    var: uint256 = 0
    for i: uint256 in range(width, bound=MAX_ROW):
        c: uint256 = values[i]
        if layer:
            c = float32._sub(c, mean)
        var = float32._add(var, float32._mul(c, c))
    var = float32._div(var, fw)
    rstd: uint256 = float32._div(ONE, float32._sqrt(float32._add(var, params[2])))
    if output == 2:
        return rstd
    c_j: uint256 = values[j]
    if layer:
        c_j = float32._sub(c_j, mean)
    xhat: uint256 = float32._mul(c_j, rstd)
    if output == 1:
        return xhat
    y: uint256 = float32._mul(xhat, values[width])
    if layer:
        y = float32._add(y, values[width + 1])
    return y


@internal
@pure
def _adamw(params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice AdamW's element update (docs/arithmetic.md, section 8) with the step's binary32 scalars
            (decay, β1, 1 - β1, β2, 1 - β2, c2, eps, step size).
    @param params [output]: 0 the parameter, 1 the first moment, 2 the second.
    @param values Output 0: p, g, m, v and the 8 scalars; 1: g, m, β1, 1 - β1; 2: g, v, β2, 1 - β2.
    @return The binary32 pattern.
    """
    assert len(params) == 1, "element_rules: adamw layout"
    if params[0] == 1:
        assert len(values) == 4, "element_rules: adamw layout"
        return float32._add(float32._mul(values[1], values[2]), float32._mul(values[0], values[3]))
    if params[0] == 2:
        assert len(values) == 4, "element_rules: adamw layout"
        return float32._add(float32._mul(values[1], values[2]), float32._mul(float32._mul(values[0], values[0]), values[3]))
    assert params[0] == 0 and len(values) == 12, "element_rules: adamw layout"
    g: uint256 = values[1]
    p: uint256 = float32._mul(values[0], values[4])
    m: uint256 = float32._add(float32._mul(values[2], values[5]), float32._mul(g, values[6]))
    v: uint256 = float32._add(float32._mul(values[3], values[7]), float32._mul(float32._mul(g, g), values[8]))
    denom: uint256 = float32._add(float32._sqrt(float32._div(v, values[9])), values[10])
    return float32._sub(p, float32._mul(float32._div(m, denom), values[11]))


@internal
@pure
def _sgd(params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice SGD's element update: weight decay when it is not zero, then the momentum buffer
            (Nesterov or not), then p - g * lr.
    @param params [output (0 the parameter, 1 the buffer), has_buffer, nesterov].
    @param values p, g, [buffer], weight decay, momentum, [lr for output 0].
    @return The binary32 pattern.
    """
    assert len(params) == 3, "element_rules: sgd layout"
    output: uint256 = params[0]
    has_buffer: bool = params[1] != 0
    s: uint256 = 2
    if has_buffer:
        s = 3
    expected: uint256 = s + 2
    if output == 0:
        expected += 1
    assert output <= 1 and (output == 0 or has_buffer) and len(values) == expected, "element_rules: sgd layout"
    p: uint256 = values[0]
    g: uint256 = values[1]
    wd: uint256 = values[s]
    mu: uint256 = values[s + 1]
    if not float32._eq(wd, 0):
        g = float32._add(g, float32._mul(p, wd))
    if has_buffer:
        buf: uint256 = float32._add(float32._mul(values[2], mu), g)
        if output == 1:
            return buf
        if params[2] != 0:
            g = float32._add(g, float32._mul(buf, mu))
        else:
            g = buf
    return float32._sub(p, float32._mul(g, values[s + 2]))


@internal
@pure
def _pooling(rule: uint256, params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice Max pooling (the window's first maximum or its position), the pools' backwards (folds over
            the covering windows) and the embedding's backward (a fold over the positions of id v).
    @param rule RULE_MAX_POOL, RULE_MAX_POOL_BACKWARD, RULE_AVG_POOL_BACKWARD or RULE_EMBEDDING_BACKWARD.
    @param params See the module's layouts.
    @param values See the module's layouts.
    @return The binary32 pattern (max pool's output 1: the position).
    """
    total: uint256 = 0
    if rule == RULE_MAX_POOL:
        # [output] over the window; [output, base] a piece from the running (best, place) in values[0] and values[1]
        # (base: the place of values[q] less q)
        assert len(params) <= 2 and len(values) <= MAX_ROW, "element_rules: max_pool layout"
        best: uint256 = values[0]
        where: uint256 = 0
        base: uint256 = 0
        first: uint256 = 1
        if len(params) == 2:
            base = params[1]
            where = values[1]
            first = 2
        for q: uint256 in range(first, len(values), bound=MAX_ROW):
            if float32._lt(best, values[q]):
                best = values[q]
                where = q + base
        if params[0] == 0:
            return best
        return where
    if rule == RULE_MAX_POOL_BACKWARD:
        # [start,] then (winner, dy) a window: a piece of overlapping windows goes on from a running value
        first: uint256 = len(values) - 2 * len(params)
        assert first <= 1, "element_rules: max_pool_backward layout"
        if first == 1:
            total = values[0]
        for w: uint256 in range(len(params), bound=MAX_PARAMS):
            if values[first + 2 * w] == params[w]:
                total = float32._add(total, values[first + 2 * w + 1])
        return total
    if rule == RULE_AVG_POOL_BACKWARD:
        assert len(params) == 1 and len(values) <= MAX_ROW, "element_rules: avg_pool_backward layout"
        area: uint256 = float32._from_int(convert(params[0], int256))
        for w: uint256 in range(len(values), bound=MAX_ROW):
            total = float32._add(total, float32._div(values[w], area))
        return total
    if len(params) == 1:
        # [v]: the whole fold from +0
        assert len(values) % 2 == 0, "element_rules: embedding_backward layout"
        positions: uint256 = len(values) // 2
        for p: uint256 in range(positions, bound=MAX_VALUES // 2):
            if values[p] == params[0]:
                total = float32._add(total, values[positions + p])
        return total
    # [v, 1]: one piece of a long fold, from the running value before it (values[0]); a loop of its own, so
    # the whole fold's (the dearest: up to MAX_FOLD positions) pays no offset per position
    assert len(params) == 2 and params[1] == 1 and len(values) % 2 == 1, "element_rules: embedding_backward layout"
    total = values[0]
    count: uint256 = len(values) // 2
    for p: uint256 in range(count, bound=MAX_VALUES // 2):
        if values[1 + p] == params[0]:
            total = float32._add(total, values[1 + count + p])
    return total


@internal
@pure
def _clip_piece(from_partial: bool, values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice One piece of clipping's binary64 Σ g²: from +0 or the proven running value, total = total
            + g * g in binary64 (g converted exactly) for each gradient element in order.
    @param from_partial Whether values[0] is the running value after the previous piece.
    @param values [partial (binary64)?] + the piece's gradient elements (binary32).
    @return The binary64 pattern of the running value after the piece.
    """
    first: uint256 = 0
    total: uint256 = 0
    if from_partial:
        assert len(values) >= 1, "element_rules: clip piece layout"
        first = 1
        total = values[0]
    assert len(values) - first <= MAX_FOLD, "element_rules: clip piece too long"
    for i: uint256 in range(first, len(values), bound=MAX_FOLD + 1):
        g: uint256 = float32._to_f64(values[i])
        total = float64._add(total, float64._mul(g, g))
    return total




@internal
@pure
def _row(rule: uint256, params: DynArray[uint256, MAX_PARAMS], values: DynArray[uint256, MAX_VALUES]) -> uint256:
    """
    @notice A row decided in pieces (row_piece_rules.vy): RULE_ROW_PIECE, one piece of a row's running
            statistic, from the running value before the piece (or +0; PIECE_MAX from the piece's first
            term) over each term of the piece in order, as engine/portable/reference.py folds the whole
            row; RULE_ROW_FINAL, an output element from its own inputs and its row's final statistics,
            each op one rounded binary32 op in the reference's order.
    @param rule RULE_ROW_PIECE or RULE_ROW_FINAL.
    @param params ROW_PIECE: [mode (PIECE_*), from_partial (0 or 1), D]; ROW_FINAL: [mode (FINAL_*),
           output (0, 1 or 2 for the forward norms, else 0), D, eps (binary32)].
    @param values See the module's layouts.
    @return The binary32 pattern of the running statistic after the piece, or of the output element.
    """
    # (one assert for both layouts: each revert string costs ElementReferee about 190 bytes; a missing
    # parameter reverts at its index)
    mode: uint256 = params[0]
    second: uint256 = params[1]  # from_partial (ROW_PIECE), the output (ROW_FINAL)
    fd: uint256 = float32._from_int(convert(params[2], int256))
    piece: bool = rule == RULE_ROW_PIECE
    reads_stat: bool = piece and (mode == PIECE_EXP_SUM or mode == PIECE_SQ_DEV)
    forward_norm: bool = not piece and (mode == FINAL_LAYER_NORM or mode == FINAL_RMS_NORM)
    # ROW_PIECE: the values before the blocks, the blocks (PIECE_DOT 2, PIECE_DOT3 3, the others 1);
    # ROW_FINAL: the values each mode reads (the forward norms' by output: y, x̂, ρ; the backwards 6 and 5)
    head: uint256 = second
    if reads_stat:
        head += 1
    blocks: uint256 = max(mode, PIECE_SQUARE) - PIECE_SQUARE + 1
    count: uint256 = 3
    if mode == FINAL_LAYER_NORM:
        count = 5 - 2 * second
    elif mode == FINAL_RMS_NORM:
        count = 3 - second
    elif mode > FINAL_RMS_NORM:
        count = max(10 - mode, 4 + convert(mode == FINAL_CAUSAL_BACKWARD, uint256))
    # the cross-entropy finals' second parameter is a column: nll's the hinted target, which must be the
    # target read (values[3]); the backward's j
    ok: bool = (
        len(params) == 4
        and mode <= FINAL_CAUSAL_BACKWARD
        and len(values) == count
        and (second == 0 or mode >= FINAL_NLL or (forward_norm and second <= 2))
        and (mode != FINAL_NLL or values[3] == second)
    )
    if piece:
        ok = (
            len(params) == 3
            and mode <= PIECE_DOT3
            and second <= 1
            and len(values) > head
            and (len(values) - head) % blocks == 0
            and len(values) - head <= blocks * MAX_FOLD
        )
    assert ok, "element_rules: row layout"
    if piece:
        n: uint256 = (len(values) - head) // blocks
        # the statistic the mode reads: M as it is, S1 as the mean it gives
        stat: uint256 = values[0]
        if mode == PIECE_SQ_DEV:
            stat = float32._div(stat, fd)
        s: uint256 = 0
        start: uint256 = 0
        if params[1] == 1:
            s = values[head - 1]
        elif mode == PIECE_MAX:
            s = values[head]
            start = 1
        for t: uint256 in range(start, n, bound=MAX_FOLD):
            v: uint256 = values[head + t]
            if mode == PIECE_MAX:
                if float32._lt(s, v):
                    s = v
                continue
            # d: t - M (EXP_SUM), t - μ (SQ_DEV), else t; the term exp(d), d · d (SQ_DEV, SQUARE), a · b
            # (DOT), (a · b) · x (DOT3), d (SUM)
            d: uint256 = v
            if reads_stat:
                d = float32._sub(v, stat)
            term: uint256 = d
            if mode == PIECE_EXP_SUM:
                term = float32_math._exp(d)
            elif mode >= PIECE_SQ_DEV:
                other: uint256 = d
                if mode >= PIECE_DOT:
                    other = values[head + n + t]
                term = float32._mul(d, other)
                if mode == PIECE_DOT3:
                    term = float32._mul(term, values[head + 2 * n + t])
            s = float32._add(s, term)
        return s
    output: uint256 = second
    if mode >= FINAL_NLL and values[3] == MASK64:
        return 0
    if mode == FINAL_NLL:
        # [z[r, t], M, S, t]: log(S) - (z[r, t] - M)
        return float32._sub(float32_math._log(values[2]), float32._sub(values[0], values[1]))
    if mode == FINAL_CAUSAL_BACKWARD:
        fd = values[4]
    if mode == FINAL_SOFTMAX or mode >= FINAL_CE_BACKWARD:
        # [z, M, S] (and t): p = exp(z - M) / S; the backward's ((p - [j = t]) / R) · grad
        p: uint256 = float32._div(float32_math._exp(float32._sub(values[0], values[1])), values[2])
        if mode == FINAL_SOFTMAX:
            return p
        if second == values[3]:
            p = float32._sub(p, ONE)
        return float32._mul(float32._div(p, fd), params[3])
    if mode == FINAL_SOFTMAX_BACKWARD:
        return float32._mul(values[0], float32._sub(values[1], values[2]))
    if not forward_norm:
        # x̂, ρ, w, dy, then A (layer norm only) and B: g = dy · w
        g: uint256 = float32._mul(values[3], values[2])
        if mode == FINAL_LAYER_NORM_BACKWARD:
            g = float32._sub(g, float32._div(values[4], fd))
        return float32._mul(float32._sub(g, float32._mul(values[0], float32._div(values[count - 1], fd))), values[1])
    layer: bool = mode == FINAL_LAYER_NORM
    # the statistic the variance comes from (S2 or Q): alone for ρ, else after x (and S1)
    at: uint256 = 0
    if output < 2:
        at = 1
        if layer:
            at = 2
    rho: uint256 = float32._div(ONE, float32._sqrt(float32._add(float32._div(values[at], fd), params[3])))
    if output == 2:
        return rho
    c: uint256 = values[0]
    if layer:
        c = float32._sub(c, float32._div(values[1], fd))
    xhat: uint256 = float32._mul(c, rho)
    if output == 1:
        return xhat
    y: uint256 = float32._mul(xhat, values[at + 1])
    if layer:
        y = float32._add(y, values[at + 2])
    return y
