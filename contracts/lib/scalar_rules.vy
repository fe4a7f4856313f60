# pragma version ~=0.4.3
"""
@title scalar_rules
@notice The referee game's rules for the per-step scalars (docs/referee.md, "Scalar rules built"): for
        one output element of `adamw_scalars`, `sgd_scalars`, `clip_scale` or `sgd`, the element rule, its
        parameters and the runs of inputs it reads (`host_rules.Plan`).
        `adamw_scalars` / `sgd_scalars` (one binary32 output of 8 / 3 scalars, the state header their
        one input; arguments, one plain word each: the optimizer's binary64 numbers, the schedule's
        name, warm-up steps and final ratio, the job's total steps): the plan computes the element in
        binary64 (`scalar_math`) for the step `prove_element` names in `hints`, and reads the agreed
        header, whose step the element rule STEP_SCALAR compares with it (a wrong step is refused).
        `clip_scale` (every gradient in; outputs the binary32 factor and `partials`, the binary64
        running Σ g² after each piece: gradient k cut into pieces of CLIP_PIECE_TERMS elements from its
        start, in parameter order): partial c reads partial c − 1 of the same output (REF_SELF: an
        earlier element, which the leftmost-first-difference challenger always agrees with; none for
        c = 0) and its piece, one aligned run of one gradient; the factor reads the last partial (another
        output of the entry: were it wrong, the challenger would dispute that output instead). Clipping over
        more gradients than one skeleton the rules read can list (engine/portable/record.py: over
        CLIP_GROUP) is recorded as `clip_sum` entries (gradients in groups, in order; the first input of
        every group but the first the previous group's partials, binary64, an earlier output; one output,
        the group's partials) and one `clip_factor(partials, max_norm)` (the last group's partials in;
        the factor out): a group's partial 0 reads the previous group's last partial, and the factor the
        last group's.
        `sgd` (p, g, the momentum buffer when the optimizer has momentum, the step's `sgd_scalars`; the
        argument nesterov a bool; out p' and the buffer): element e reads p[e], g[e], the buffer's e and
        the scalars weight decay, momentum (and lr for p'), and the element rule SGD updates it as
        docs/arithmetic.md section 8 says.
@dev Pure (no state, no calls), deployed as `ScalarRules.vy`. Its Python mirror is
     `protocol/scalar_rules.py` (`scalar_checkable`, `scalar_reads`), compared with it on recorded
     steps (tests/unit/contracts/test_scalar_rules.py).
"""

from . import commitments
from . import host_rules
from . import scalar_math

RULE_CLIP_PIECE: constant(uint256) = 35
RULE_CLIP_SCALE: constant(uint256) = 36
RULE_STEP_SCALAR: constant(uint256) = 39
RULE_SGD: constant(uint256) = 28

# kernel name keys (host_rules._parse: the name's bytes as an integer, then its length)
KEY_ADAMW_SCALARS: constant(uint256) = 1_975_346_700_188_227_840_093_429_479_666_445
KEY_SGD_SCALARS: constant(uint256) = 35_715_769_486_278_560_130_448_651_019
KEY_CLIP_SCALE: constant(uint256) = 120_195_616_727_443_475_190_801_674
KEY_CLIP_SUM: constant(uint256) = 1_834_039_561_881_157_725_448
KEY_CLIP_FACTOR: constant(uint256) = 30_770_077_882_221_868_283_849_568_779
KEY_SGD: constant(uint256) = 1_936_155_651
TAG_BOOL: constant(uint256) = 4

# the schedule names' argument words: tag 7, then the first 31 bytes of keccak256(name)
WORD_CONSTANT: constant(uint256) = 3_601_271_185_992_836_007_778_273_091_258_288_850_492_304_479_738_882_402_401_783_977_589_680_468_695
WORD_COSINE: constant(uint256) = 3_390_827_732_712_606_960_141_072_569_988_017_872_106_370_586_727_353_590_031_851_727_099_414_549_144
WORD_LINEAR: constant(uint256) = 3_212_362_502_993_502_202_613_796_258_132_676_142_719_398_364_085_357_482_228_104_595_056_671_712_173

REF_HEADER: constant(uint256) = 4
REF_SELF: constant(uint256) = 7
DTYPE_FLOAT64: constant(uint256) = 3
# terms of one clip piece: an aligned run of 8 chunks, and a piece's whole prove_element under
# 1,000,000 gas (protocol.scalar_rules.CLIP_PIECE_TERMS)
CLIP_PIECE_TERMS: constant(uint256) = 64
MAX_STEP: constant(uint256) = 1 << 64


@internal
@pure
def _arg_word(skeleton: Bytes[host_rules.MAX_SKELETON + 32], position: uint256) -> uint256:
    """
    @notice Argument word `position` of a skeleton (any position, not only the first MAX_ARGS).
    @param skeleton The skeleton bytes followed by 32 zero bytes.
    @param position The argument's place (below the argument count).
    @return The 32-byte word.
    """
    return convert(extract32(skeleton, 2 + host_rules._word_at(skeleton, 0, 2) + 4 + 32 * position), uint256)


@internal
@pure
def _small_int(word: uint256) -> bool:
    """
    @notice Whether an argument word is an integer in [0, 2**64).
    @param word The word.
    @return Whether it is.
    """
    return word >> 248 == host_rules.TAG_INT and word & (host_rules.INT_RANGE - 1) < MAX_STEP


@internal
@pure
def _scalar_params(skeleton: Bytes[host_rules.MAX_SKELETON + 32], sgd: bool) -> DynArray[uint256, 16]:
    """
    @notice scalar_math._optimizer_scalar's parameters but the element, from a scalar entry's arguments
            (lr, the optimizer's numbers, schedule name, warm-up, final ratio, total steps); empty when
            an argument is not of its kind.
    @param skeleton The padded skeleton.
    @param sgd Whether the entry is `sgd_scalars` (3 numbers) rather than `adamw_scalars` (5).
    @return [kind, 0, schedule, warm-up, final ratio, total, lr, numbers …], or [].
    """
    numbers: uint256 = 5
    if sgd:
        numbers = 3
    name: uint256 = self._arg_word(skeleton, numbers)
    warmup: uint256 = self._arg_word(skeleton, numbers + 1)
    final_ratio: uint256 = self._arg_word(skeleton, numbers + 2)
    total: uint256 = self._arg_word(skeleton, numbers + 3)
    schedule: uint256 = scalar_math.SCHEDULE_CONSTANT
    if name == WORD_COSINE:
        schedule = scalar_math.SCHEDULE_COSINE
    elif name == WORD_LINEAR:
        schedule = scalar_math.SCHEDULE_LINEAR
    elif name != WORD_CONSTANT:
        return []
    if not self._small_int(warmup) or not self._small_int(total) or final_ratio >> 248 != host_rules.TAG_FLOAT64:
        return []
    kind: uint256 = scalar_math.KIND_ADAMW
    if sgd:
        kind = scalar_math.KIND_SGD
    params: DynArray[uint256, 16] = [kind, 0, schedule, warmup & host_rules.MASK64, final_ratio & host_rules.MASK64, total & host_rules.MASK64]
    for i: uint256 in range(5):
        if i >= numbers:
            break
        word: uint256 = self._arg_word(skeleton, i)
        if word >> 248 != host_rules.TAG_FLOAT64:
            return []
        params.append(word & host_rules.MASK64)
    return params


# clipping's walk over a skeleton: whether it is checkable, its pieces, the max_norm argument and the
# read of one piece (the struct keeps the walk to one pass with no array of references: a step's 30
# gradients cost about 700,000 gas more when materialized)
struct ClipWalk:
    checkable: bool
    pieces: uint256
    max_norm: uint256
    read: host_rules.Read
    # clip_sum's previous partials (its input 0, binary64), when it has them: their last element
    start: host_rules.Read
    started: bool


@internal
@pure
def _name_key(skeleton: Bytes[host_rules.MAX_SKELETON + 32]) -> uint256:
    """
    @notice The kernel name's key, as host_rules._parse computes it (0 for a name of 32 bytes or more).
    @param skeleton The padded skeleton.
    @return The key.
    """
    name_length: uint256 = host_rules._word_at(skeleton, 0, 2)
    if name_length >= 32:
        return 0
    return (host_rules._word_at(skeleton, 2, name_length) << 8) | name_length


@internal
@pure
def _clip_walk(skeleton: Bytes[host_rules.MAX_SKELETON + 32], want: uint256, summing: bool) -> ClipWalk:
    """
    @notice One pass over a clip_scale or clip_sum skeleton: clip_scale(g_0, …, g_{n-1}, max_norm) is
            checkable when every argument but the last names input k in order and the last is a binary64,
            every input is a non-empty binary32 state tensor or earlier output, and the outputs are the
            binary32 factor [1] and the binary64 partials [pieces], pieces = Σ ⌈n_k / CLIP_PIECE_TERMS⌉;
            clip_sum([partials,] g_0, …, g_{m-1}) when every argument names input k in order, input 0 is
            either a gradient or the previous group's partials (binary64 [P], an earlier output, P >= 1),
            and the one output is the binary64 partials [pieces] of its gradients.
    @param skeleton The padded skeleton (its name clip_scale or clip_sum).
    @param want A piece whose read to return (any larger number: none).
    @param summing Whether it is a clip_sum.
    @return The walk.
    """
    walk: ClipWalk = empty(ClipWalk)
    at: uint256 = 2 + host_rules._word_at(skeleton, 0, 2)
    arg_count: uint256 = host_rules._word_at(skeleton, at, 4)
    args_at: uint256 = at + 4
    at = args_at + 32 * arg_count
    count: uint256 = host_rules._word_at(skeleton, at, 4)
    at += 4
    arguments: uint256 = count + 1
    if summing:
        arguments = count
    if count == 0 or count > host_rules.MAX_REFS or arg_count != arguments:
        return walk
    ok: bool = True
    if not summing:
        last: uint256 = convert(extract32(skeleton, args_at + 32 * count), uint256)
        ok = last >> 248 == host_rules.TAG_FLOAT64
        walk.max_norm = last & host_rules.MASK64
    for k: uint256 in range(host_rules.MAX_REFS):
        if k >= count:
            break
        kind: uint256 = host_rules._word_at(skeleton, at, 1)
        code: uint256 = host_rules._word_at(skeleton, at + 9, 1)
        ndim: uint256 = host_rules._word_at(skeleton, at + 10, 1)
        dims: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
        size: uint256 = 1
        for i: uint256 in range(commitments.MAX_NDIM):
            if i >= ndim:
                break
            dims[i] = host_rules._word_at(skeleton, at + 11 + 4 * i, 4)
            size *= dims[i]
        ok = ok and convert(extract32(skeleton, args_at + 32 * k), uint256) == (host_rules.TAG_INPUT << 248) | k
        ok = ok and (kind == host_rules.REF_STATE or kind == host_rules.REF_OUTPUT) and ndim <= commitments.MAX_NDIM and size != 0
        if summing and k == 0 and code == DTYPE_FLOAT64:
            # the previous group's partials: its last running value starts this group's fold
            ok = ok and kind == host_rules.REF_OUTPUT and ndim == 1 and count > 1
            walk.started = True
            walk.start = host_rules.Read(
                input=0, kind=kind, a=host_rules._word_at(skeleton, at + 1, 4), b=host_rules._word_at(skeleton, at + 5, 4),
                code=code, ndim=1, dims=dims, first=max(size, 1) - 1, count=1, stride=1
            )
            at += 11 + 4 * ndim + 32
            continue
        ok = ok and code == commitments.DTYPE_FLOAT32
        here: uint256 = (size + CLIP_PIECE_TERMS - 1) // CLIP_PIECE_TERMS
        if want >= walk.pieces and want - walk.pieces < here:
            first: uint256 = (want - walk.pieces) * CLIP_PIECE_TERMS
            walk.read = host_rules.Read(
                input=k, kind=kind, a=host_rules._word_at(skeleton, at + 1, 4), b=host_rules._word_at(skeleton, at + 5, 4),
                code=code, ndim=ndim, dims=dims, first=first, count=min(CLIP_PIECE_TERMS, size - first), stride=1
            )
        walk.pieces += here
        at += 11 + 4 * ndim + 32  # kind, a, b, code, ndim, dims, a constant's root
    if summing:
        # the one output: the partials [pieces] binary64
        ok = ok and host_rules._word_at(skeleton, at, 4) == 1 and host_rules._word_at(skeleton, at + 4, 1) == DTYPE_FLOAT64
        walk.checkable = ok and host_rules._word_at(skeleton, at + 5, 1) == 1 and host_rules._word_at(skeleton, at + 6, 4) == walk.pieces
        return walk
    # the outputs: the factor [1] binary32, the partials [pieces] binary64
    ok = ok and host_rules._word_at(skeleton, at, 4) == 2
    ok = ok and host_rules._word_at(skeleton, at + 4, 1) == commitments.DTYPE_FLOAT32 and host_rules._word_at(skeleton, at + 5, 1) == 1
    ok = ok and host_rules._word_at(skeleton, at + 6, 4) == 1
    ok = ok and host_rules._word_at(skeleton, at + 10, 1) == DTYPE_FLOAT64 and host_rules._word_at(skeleton, at + 11, 1) == 1
    walk.checkable = ok and host_rules._word_at(skeleton, at + 12, 4) == walk.pieces
    return walk


@internal
@pure
def _checkable(parsed: host_rules.Skeleton, skeleton: Bytes[host_rules.MAX_SKELETON + 32], output: uint256) -> bool:
    """
    @notice Whether every element of this output can be checked.
    @param parsed The parsed skeleton.
    @param skeleton The padded skeleton.
    @param output The disputed output.
    @return Whether the rules plan every element of it.
    """
    if parsed.name_key == KEY_CLIP_SCALE:
        return output < 2 and self._clip_walk(skeleton, max_value(uint256), False).checkable
    if parsed.name_key == KEY_CLIP_SUM:
        return output == 0 and self._clip_walk(skeleton, max_value(uint256), True).checkable
    if parsed.name_key == KEY_CLIP_FACTOR:
        # clip_factor(partials, max_norm): the last group's partials (binary64 [P], an earlier output), out the factor
        if parsed.input_count != 1:
            return False  # (no input: parsed.inputs[0] would revert output_of, which must answer for any skeleton)
        partials: host_rules.Ref = parsed.inputs[0]
        return (
            output == 0
            and parsed.arg_count == 2
            and host_rules._names_inputs(parsed, 1)
            and parsed.args[1] >> 248 == host_rules.TAG_FLOAT64
            and partials.kind == host_rules.REF_OUTPUT
            and partials.code == DTYPE_FLOAT64
            and len(partials.dims) == 1
            and partials.dims[0] != 0
            and len(parsed.outputs) == 1
            and parsed.outputs[0].code == commitments.DTYPE_FLOAT32
            and host_rules._same_dims(parsed.outputs[0].dims, [1])
        )
    if parsed.name_key == KEY_SGD:
        return self._sgd_checkable(parsed, output)
    sgd: bool = parsed.name_key == KEY_SGD_SCALARS
    if not sgd and parsed.name_key != KEY_ADAMW_SCALARS:
        return False
    scalars: uint256 = 8
    arguments: uint256 = 9
    if sgd:
        scalars = 3
        arguments = 7
    return (
        output == 0
        and len(parsed.outputs) == 1
        and parsed.outputs[0].code == commitments.DTYPE_FLOAT32
        and host_rules._same_dims(parsed.outputs[0].dims, [scalars])
        and parsed.input_count == 1
        and parsed.inputs[0].kind == REF_HEADER
        and parsed.arg_count == arguments
        and len(self._scalar_params(skeleton, sgd)) != 0
    )


@internal
@pure
def _sgd_checkable(parsed: host_rules.Skeleton, output: uint256) -> bool:
    """
    @notice sgd(p, g, [buffer], scalars, nesterov): p, g (and the buffer) binary32 state tensors or earlier
            outputs of one size, the scalars an earlier output of 3 binary32 (weight decay, momentum, lr),
            all named in order by the arguments, then a bool; out p' (and the buffer) binary32 of that size.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether every element of it can be planned.
    """
    count: uint256 = parsed.input_count
    if count != 3 and count != 4:
        return False
    if not host_rules._names_inputs(parsed, count) or parsed.arg_count != count + 1 or len(parsed.outputs) != count - 2:
        return False
    nesterov: uint256 = host_rules._arg(parsed, count)
    if nesterov >> 248 != TAG_BOOL or nesterov & (host_rules.INT_RANGE - 1) > 1 or output >= count - 2:
        return False
    size: uint256 = commitments._element_count(parsed.inputs[0].dims)
    for k: uint256 in range(4):
        if k >= count:
            break
        ref: host_rules.Ref = parsed.inputs[k]
        want: uint256 = size
        if k == count - 1:
            want = 3
        if (ref.kind != host_rules.REF_STATE and ref.kind != host_rules.REF_OUTPUT) or ref.code != commitments.DTYPE_FLOAT32:
            return False
        if commitments._element_count(ref.dims) != want:
            return False
    for shape: host_rules.Ref in parsed.outputs:
        if shape.code != commitments.DTYPE_FLOAT32 or commitments._element_count(shape.dims) != size:
            return False
    return size != 0


@internal
@pure
def _output_of(raw: Bytes[host_rules.MAX_SKELETON], output: uint256) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent (host_rules._output_of's).
    @param raw The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether these rules check every element of that output, and its
            dtype code and dims (zero and none past the last output).
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    count: uint256 = len(parsed.outputs)
    if output >= count:
        return count, False, 0, []
    shape: host_rules.Ref = parsed.outputs[output]
    return count, self._checkable(parsed, concat(raw, empty(bytes32)), output), shape.code, shape.dims


@internal
@pure
def _plan(
    raw: Bytes[host_rules.MAX_SKELETON], output: uint256, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> host_rules.Plan:
    """
    @notice How output element `element` of a checkable output is decided (reverts for an output these
            rules cannot check, an element outside it, or a scalar's hints that are not one step).
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index in it.
    @param hints A scalar entry's: [the agreed header's step]; clip_scale's: none.
    @return The plan.
    """
    skeleton: Bytes[host_rules.MAX_SKELETON + 32] = concat(raw, empty(bytes32))
    plan: host_rules.Plan = empty(host_rules.Plan)
    key: uint256 = self._name_key(skeleton)
    if key == KEY_CLIP_SCALE or key == KEY_CLIP_SUM:
        # one pass over the gradients (host_rules._parse's references would cost a long skeleton dearly)
        assert len(hints) == 0, "scalar_rules: clipping takes no hints"
        summing: bool = key == KEY_CLIP_SUM
        partials_output: uint256 = 1
        if summing:
            partials_output = 0
        want: uint256 = max_value(uint256)
        if output == partials_output:
            want = element
        walk: ClipWalk = self._clip_walk(skeleton, want, summing)
        size: uint256 = walk.pieces
        if output != partials_output:
            size = 1
        assert walk.checkable and output <= convert(not summing, uint256) and element < size, "scalar_rules: not a checkable element"
        partials_dims: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
        partials_dims[0] = walk.pieces
        last: uint256 = walk.pieces - 1
        if output == partials_output and element != 0:
            last = element - 1
        own: host_rules.Read = host_rules.Read(
            input=0, kind=REF_SELF, a=0, b=partials_output, code=DTYPE_FLOAT64, ndim=1, dims=partials_dims, first=last, count=1, stride=1
        )
        if output != partials_output:
            # the factor from the last running value (output 1 of this entry)
            plan.rule = RULE_CLIP_SCALE
            plan.params = [walk.max_norm]
            plan.reads = [own]
            return plan
        # running value c: from value c − 1 (for c = 0 a clip_sum's previous group's last, or none) and its
        # piece of one gradient
        plan.rule = RULE_CLIP_PIECE
        plan.params = [convert(element != 0 or walk.started, uint256)]
        if element != 0:
            plan.reads.append(own)
        elif walk.started:
            plan.reads.append(walk.start)
        plan.reads.append(walk.read)
        return plan
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    checkable: bool = self._checkable(parsed, skeleton, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "scalar_rules: not a checkable element"
    if parsed.name_key == KEY_CLIP_FACTOR:
        # the factor from the last group's last running value
        assert len(hints) == 0, "scalar_rules: clipping takes no hints"
        plan.rule = RULE_CLIP_SCALE
        plan.params = [parsed.args[1] & host_rules.MASK64]
        plan.reads = [host_rules._read(parsed, 0, parsed.inputs[0].dims[0] - 1, 1)]
        return plan
    if parsed.name_key == KEY_SGD:
        # p, g (and the buffer) at the element, then weight decay and momentum (and lr for p'); no hints read
        count: uint256 = parsed.input_count
        plan.rule = RULE_SGD
        plan.params = [output, convert(count == 4, uint256), host_rules._arg(parsed, count) & 1]
        for k: uint256 in range(3):
            if k + 1 >= count:
                break
            plan.reads.append(host_rules._read(parsed, k, element, 1))
        plan.reads.append(host_rules._read(parsed, count - 1, 0, 3 - output))
        return plan
    # the scalar for the named step; the rule compares the step with the proven header's
    assert len(hints) == 1 and hints[0] < MAX_STEP, "scalar_rules: hints are not one step"
    params: DynArray[uint256, 16] = self._scalar_params(skeleton, parsed.name_key == KEY_SGD_SCALARS)
    params[1] = element
    plan.rule = RULE_STEP_SCALAR
    plan.params = [scalar_math._optimizer_scalar(params, hints[0]), hints[0]]
    plan.reads = [host_rules._read(parsed, 0, 0, 2)]
    return plan
