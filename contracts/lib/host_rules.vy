# pragma version ~=0.4.3
"""
@title host_rules
@notice The referee game's host rules (docs/referee.md, "On chain: the game"): for one output element
        of a recorded kernel call, given the entry's skeleton, which element rule decides it, with
        which parameters, which runs of which inputs it reads ("reads": input k, first element,
        count), and in what order the rule takes the values read. `RefereeGame.vy` proves the runs
        (each under the agreed state r_t or the agreed prefix P_{j-1}) and hands the values, in the
        plan's order, to `ElementReferee.vy`.
@dev Pure (no state, no calls), so it runs as a contract of its own (`HostRules.vy`) under EIP-170.
     `protocol/referee_kit.py` (`host_checkable`, `element_reads`) is its Python mirror, compared
     with it on every entry of recorded steps (tests/unit/contracts/test_host_rules.py).
     Built: the activations and their backwards (one value of each input at the element's own
     index), AdamW (any output: only the values it reads) and `linear` as one fold piece (K a power
     of two, 8 … 256, with or without its bias). Every other kernel, input kind or shape is not
     checkable: the game escalates.
"""

from . import commitments

MAX_INPUTS: constant(uint256) = 5  # inputs a host rule reads (AdamW: p, g, m, v, its scalars)
MAX_READS: constant(uint256) = 5  # runs a plan reads
MAX_REFS: constant(uint256) = 96  # a 4,096-byte skeleton holds at most 95 references (43 bytes or more each)
MAX_FOLD: constant(uint256) = 256
MAX_PARAMS: constant(uint256) = 16
MAX_SKELETON: constant(uint256) = 4_096

# Record reference kinds (docs/referee.md, section 3).
REF_STATE: constant(uint256) = 1
REF_OUTPUT: constant(uint256) = 3

# element_rules.vy rule codes the host plans for.
RULE_FOLD: constant(uint256) = 0
RULE_RELU: constant(uint256) = 1
RULE_TANH_BACKWARD: constant(uint256) = 10
RULE_ADAMW: constant(uint256) = 27
HOST_NONE: constant(uint256) = 1_000  # a kernel without a host rule

# The argument word of the tensor argument naming input 2 (tag 6, then the input's number).
ARG_INPUT_2: constant(uint256) = (6 << 248) | 2


# One reference or output shape of a skeleton.
struct Ref:
    kind: uint256
    a: uint256
    b: uint256
    code: uint256
    dims: DynArray[uint256, commitments.MAX_NDIM]


# What the host reads of a skeleton.
struct Skeleton:
    name_hash: bytes32
    args_at: uint256
    arg_count: uint256
    inputs: DynArray[Ref, MAX_INPUTS]
    input_count: uint256
    outputs: DynArray[Ref, commitments.MAX_OUTPUTS]


# One run of one input the rule reads: the input's reference (as the kernel reads it) and the elements.
struct Read:
    input: uint256
    kind: uint256
    a: uint256
    b: uint256
    code: uint256
    dims: DynArray[uint256, commitments.MAX_NDIM]
    first: uint256
    count: uint256


# How one element is decided: the rule, its parameters, the runs it reads in order, and whether the
# first two runs are zipped term by term (a fold of products) before the others follow; otherwise the
# runs' values follow one another.
struct Plan:
    rule: uint256
    params: DynArray[uint256, MAX_PARAMS]
    reads: DynArray[Read, MAX_READS]
    zipped: bool


@internal
@pure
def _word_at(skeleton: Bytes[MAX_SKELETON + 32], at: uint256, size: uint256) -> uint256:
    """
    @notice The big-endian unsigned integer of `size` bytes at `at`.
    @param skeleton The skeleton bytes followed by 32 zero bytes.
    @param at Offset.
    @param size 1 … 32 bytes.
    @return The integer.
    """
    return convert(extract32(skeleton, at), uint256) >> (256 - 8 * size)


@internal
@pure
def _shape_at(skeleton: Bytes[MAX_SKELETON + 32], at: uint256) -> (uint256, DynArray[uint256, commitments.MAX_NDIM], uint256):
    """
    @notice A `dtype code ‖ ndim ‖ dims` field.
    @param skeleton The padded skeleton.
    @param at Its offset.
    @return The code, the dims and the offset after the field.
    """
    code: uint256 = self._word_at(skeleton, at, 1)
    ndim: uint256 = self._word_at(skeleton, at + 1, 1)
    assert ndim <= commitments.MAX_NDIM, "host_rules: too many dimensions"
    dims: DynArray[uint256, commitments.MAX_NDIM] = []
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= ndim:
            break
        dims.append(self._word_at(skeleton, at + 2 + 4 * i, 4))
    return code, dims, at + 2 + 4 * ndim


@internal
@pure
def _parse(raw: Bytes[MAX_SKELETON]) -> Skeleton:
    """
    @notice The kernel name's hash, the arguments' place, the first MAX_INPUTS references and the
            output shapes of a skeleton (docs/referee.md, section 3, "Byte layouts").
    @param raw The skeleton bytes.
    @return The parsed fields.
    """
    skeleton: Bytes[MAX_SKELETON + 32] = concat(raw, empty(bytes32))
    name_length: uint256 = self._word_at(skeleton, 0, 2)
    parsed: Skeleton = empty(Skeleton)
    parsed.name_hash = keccak256(slice(raw, 2, name_length))
    at: uint256 = 2 + name_length
    parsed.arg_count = self._word_at(skeleton, at, 4)
    parsed.args_at = at + 4
    at = parsed.args_at + 32 * parsed.arg_count
    parsed.input_count = self._word_at(skeleton, at, 4)
    at += 4
    for i: uint256 in range(MAX_REFS):
        if i >= parsed.input_count:
            break
        ref: Ref = empty(Ref)
        ref.kind = self._word_at(skeleton, at, 1)
        ref.a = self._word_at(skeleton, at + 1, 4)
        ref.b = self._word_at(skeleton, at + 5, 4)
        ref.code, ref.dims, at = self._shape_at(skeleton, at + 9)
        at += 32  # a constant's root
        if i < MAX_INPUTS:
            parsed.inputs.append(ref)
    output_count: uint256 = self._word_at(skeleton, at, 4)
    assert output_count >= 1 and output_count <= commitments.MAX_OUTPUTS, "host_rules: bad output count"
    at += 4
    for i: uint256 in range(commitments.MAX_OUTPUTS):
        if i >= output_count:
            break
        out: Ref = empty(Ref)
        out.code, out.dims, at = self._shape_at(skeleton, at)
        parsed.outputs.append(out)
    assert at <= len(raw), "host_rules: skeleton cut short"
    return parsed


@internal
@pure
def _arg(raw: Bytes[MAX_SKELETON], parsed: Skeleton, position: uint256) -> uint256:
    """
    @notice Argument word `position` of a skeleton (zero past the last argument).
    @param raw The skeleton bytes.
    @param parsed Its parsed fields.
    @param position The argument's place.
    @return The 32-byte word (tag byte, then the value).
    """
    if position >= parsed.arg_count:
        return 0
    return convert(extract32(concat(raw, empty(bytes32)), parsed.args_at + 32 * position), uint256)


@internal
@pure
def _host_rule(name_hash: bytes32) -> uint256:
    """
    @notice The element rule the host can check for a kernel (HOST_NONE when it has none yet).
    @param name_hash keccak256 of the kernel's name.
    @return An element_rules RULE_* code, or HOST_NONE.
    """
    names: bytes32[10] = [
        keccak256("relu"),
        keccak256("relu_backward"),
        keccak256("gelu"),
        keccak256("gelu_backward"),
        keccak256("silu"),
        keccak256("silu_backward"),
        keccak256("gelu_tanh"),
        keccak256("gelu_tanh_backward"),
        keccak256("tanh"),
        keccak256("tanh_backward"),
    ]
    for i: uint256 in range(10):
        if names[i] == name_hash:
            return RULE_RELU + i
    if name_hash == keccak256("linear"):
        return RULE_FOLD
    if name_hash == keccak256("adamw"):
        return RULE_ADAMW
    return HOST_NONE


@internal
@pure
def _checkable(raw: Bytes[MAX_SKELETON], parsed: Skeleton, output: uint256) -> bool:
    """
    @notice Whether the host can check every element of this output: a host rule, a binary32 output,
            inputs that are state tensors or earlier outputs, and the shapes its index map assumes
            (elementwise: inputs of the output's size; linear: x [..., K] and y [..., N] with the same
            rows, K a power of two from 8 to 256 so a row is one aligned run, the bias, if any,
            argument 2 naming input 2; no empty output). Otherwise an honest defender could not prove
            its element, so the game escalates instead.
    @param raw The skeleton bytes (for the bias argument).
    @param parsed Its parsed fields.
    @param output The disputed output.
    @return Whether the host can plan every element of this output.
    """
    rule: uint256 = self._host_rule(parsed.name_hash)
    if rule == HOST_NONE or output >= len(parsed.outputs) or (rule != RULE_ADAMW and len(parsed.outputs) != 1):
        return False
    shape: Ref = parsed.outputs[output]
    if shape.code != commitments.DTYPE_FLOAT32 or parsed.input_count > MAX_INPUTS:
        return False
    for ref: Ref in parsed.inputs:
        if (ref.kind != REF_STATE and ref.kind != REF_OUTPUT) or ref.code != commitments.DTYPE_FLOAT32:
            return False
    size: uint256 = commitments._element_count(shape.dims)
    if size == 0:
        return False  # nothing to descend into: an empty output's root is judged at level 2
    if rule == RULE_ADAMW:
        # p, g, m, v of the output's size, then the step's 8 scalars (one chunk)
        if parsed.input_count != 5 or len(parsed.outputs) != 3:
            return False
        for k: uint256 in range(4):
            if commitments._element_count(parsed.inputs[k].dims) != size:
                return False
        return commitments._element_count(parsed.inputs[4].dims) == 8
    if rule != RULE_FOLD:
        count: uint256 = 1
        if (rule - RULE_RELU) % 2 == 1:
            count = 2  # a backward: (x, dy) or (y, dy)
        if parsed.input_count != count:
            return False
        for ref: Ref in parsed.inputs:
            if commitments._element_count(ref.dims) != size:
                return False
        return True
    # x [..., K] and y [..., N] (the leading axes read as rows, as the kernel flattens them), W [N, K]
    if parsed.input_count < 2 or len(shape.dims) < 2:
        return False
    x: Ref = parsed.inputs[0]
    w: Ref = parsed.inputs[1]
    if len(x.dims) != len(shape.dims) or len(w.dims) != 2:
        return False
    last: uint256 = len(shape.dims) - 1
    terms: uint256 = w.dims[1]
    if terms < 8 or terms > MAX_FOLD or terms & (terms - 1) != 0 or x.dims[last] != terms or w.dims[0] != shape.dims[last]:
        return False
    if commitments._element_count(x.dims) // terms != size // w.dims[0]:
        return False
    if parsed.input_count == 2:
        return True
    bias: Ref = parsed.inputs[2]
    return (
        parsed.input_count == 3
        and self._arg(raw, parsed, 2) == ARG_INPUT_2
        and len(bias.dims) == 1
        and bias.dims[0] == shape.dims[last]
    )


@internal
@pure
def _output_of(raw: Bytes[MAX_SKELETON], output: uint256) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent.
    @param raw The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether the host can check every element of that output, and
            its dtype code and dims (zero and none past the last output).
    """
    parsed: Skeleton = self._parse(raw)
    count: uint256 = len(parsed.outputs)
    if output >= count:
        return count, False, 0, []
    shape: Ref = parsed.outputs[output]
    return count, self._checkable(raw, parsed, output), shape.code, shape.dims


@internal
@pure
def _read(parsed: Skeleton, k: uint256, first: uint256, count: uint256) -> Read:
    """
    @notice A run of `count` elements of input k from element `first` on.
    @param parsed The parsed skeleton.
    @param k The input.
    @param first The run's first element (row-major, as the kernel reads the input).
    @param count Its elements.
    @return The read.
    """
    ref: Ref = parsed.inputs[k]
    return Read(input=k, kind=ref.kind, a=ref.a, b=ref.b, code=ref.code, dims=ref.dims, first=first, count=count)


@internal
@pure
def _plan(raw: Bytes[MAX_SKELETON], output: uint256, element: uint256) -> Plan:
    """
    @notice How output element `element` of a checkable output is decided (reverts for an output the
            host cannot check, or an element outside it).
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index in it.
    @return The plan.
    """
    parsed: Skeleton = self._parse(raw)
    assert self._checkable(raw, parsed, output), "host_rules: output not checkable"
    shape: Ref = parsed.outputs[output]
    assert element < commitments._element_count(shape.dims), "host_rules: element outside the output"
    plan: Plan = empty(Plan)
    plan.rule = self._host_rule(parsed.name_hash)
    if plan.rule == RULE_FOLD:
        # linear(x, W, b): y[r, n] = fold_k x[r, k] * W[n, k] (+ b[n]): row r of x zipped with row n of W
        width: uint256 = shape.dims[len(shape.dims) - 1]
        row: uint256 = element // width
        column: uint256 = element % width
        terms: uint256 = parsed.inputs[1].dims[1]
        plan.reads = [self._read(parsed, 0, row * terms, terms), self._read(parsed, 1, column * terms, terms)]
        plan.zipped = True
        if parsed.input_count == 3:
            plan.reads.append(self._read(parsed, 2, column, 1))
            plan.params = [2, 0, 1, 0]
        else:
            plan.params = [2, 0, 0, 0]
    elif plan.rule == RULE_ADAMW:
        # output 0 (p'): p, g, m, v, the 8 scalars; 1 (m'): g, m, β1, 1 - β1; 2 (v'): g, v, β2, 1 - β2
        plan.params = [output]
        if output == 0:
            for k: uint256 in range(4):
                plan.reads.append(self._read(parsed, k, element, 1))
            plan.reads.append(self._read(parsed, 4, 0, 8))
        else:
            plan.reads = [self._read(parsed, 1, element, 1), self._read(parsed, 1 + output, element, 1)]
            plan.reads.append(self._read(parsed, 4, 2 * output - 1, 2))
    else:
        # an activation or its backward: each input at the element's own index
        for k: uint256 in range(MAX_INPUTS):
            if k >= parsed.input_count:
                break
            plan.reads.append(self._read(parsed, k, element, 1))
    return plan
