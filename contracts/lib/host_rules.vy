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
     index), AdamW (any output: only the values it reads), `linear` as one fold piece (K a power of
     two, 8 … 256, with or without its bias), and the elementwise kernels and moves of a tiny-GPT
     step: `add` and `mul` (broadcast: right-aligned, size-1 axes repeated), `mul_scalar` (its
     binary32 argument), `scale`, `fill_above_diagonal` (its binary64 argument rounded to binary32,
     nothing read above the diagonal), `transpose` (the last two axes swapped), `place` (the
     source, then +0), `cat` (of up to MAX_INPUTS inputs) and `move` (a strided view: its sizes are
     the output's shape, its strides, which the skeleton holds only as a hash, come as the plan's
     `hints` and must hash to it), and rows: `softmax` over rows of at most MAX_SOFTMAX_ROW,
     `softmax_backward` of at most MAX_SOFTMAX_BACKWARD_ROW (MAX_SOFTMAX_BACKWARD_SPLIT_ROW where the
     width does not divide 256) and `layer_norm` (y, x̂ and rstd) of at
     most MAX_LAYER_NORM_ROW: the widest whose dearest honest `prove_element` stays under
     1,000,000 gas (personas/row_worst_case.py); wider rows escalate. A row is read as one run, or
     two where it crosses a 256-element boundary (a proven run is at most 32 chunks, aligned). Every
     other kernel, input kind or shape is not checkable: the game escalates.
"""

from . import commitments
from . import float32

MAX_INPUTS: constant(uint256) = 5  # inputs a host rule reads (AdamW: p, g, m, v, its scalars)
MAX_READS: constant(uint256) = 6  # runs a plan reads (a row piece of a norm backward: 6, row_piece_rules.vy)
MAX_REFS: constant(uint256) = 96  # a 4,096-byte skeleton holds at most 95 references (43 bytes or more each)
MAX_FOLD: constant(uint256) = 256
# The widest rows planned: the whole prove_element of the dearest honest element (deepest proofs, a row
# in two runs where it can be, the longest skeleton, sources of MAX_NDIM axes) stays under 1,000,000 gas
# with trained-like and with the adversarial values searched, and so does every narrower row
# (personas/row_worst_case.py, docs/referee.md "Row caps", "Adversarial values"; layer_norm at 112 came
# within 7,000 of it: an attacker review, 2026-12-07; at 108 a later one built rows of 994,636: x in one binade
# with its mean, "Split caps"). Wider rows are decided in pieces (row_piece_rules.vy).
MAX_SOFTMAX_ROW: constant(uint256) = 34  # one exp per element of the row
MAX_SOFTMAX_BACKWARD_ROW: constant(uint256) = 128
MAX_LAYER_NORM_ROW: constant(uint256) = 104
# the norm backwards' dx (row_rules.vy); here because fold_rules.vy and row_piece_rules.vy also tell which
# of their rows are decided in pieces (`_norm_backward_pieced`). 64 until rows of 64 with built values (every
# product a subnormal-operand multiply, every add an exact cancellation) measured 988,224 gas: at 52 (the widest
# aligned row is then 32) the dearest is 965,733, 2 % under the target (docs/referee.md "Margins").
MAX_RMS_NORM_BACKWARD_ROW: constant(uint256) = 52
MAX_LAYER_NORM_BACKWARD_ROW: constant(uint256) = 52
# Rows whose width does not divide RUN_ELEMENTS straddle the tensor tree (softmax_backward's: two runs each of y
# and dy; a norm backward's, whole only where x̂ holds at most RUN_ELEMENTS: one run of the whole x̂), and
# values built so that every product takes the soft-float's subnormal path and every add onto a running sum
# cancels exactly cost more a term than any scaling searched: such rows are whole only up to these widths
# (an attacker review, 2026-12-07, measured softmax_backward at 127 1,044,602 gas, layer_norm_backward at 63
# 1,035,523), wider ones are decided in pieces. Widths that divide RUN_ELEMENTS keep the caps above.
MAX_SOFTMAX_BACKWARD_SPLIT_ROW: constant(uint256) = 104
MAX_NORM_BACKWARD_SPLIT_ROW: constant(uint256) = 52
RUN_ELEMENTS: constant(uint256) = 256  # binary32 values of the widest aligned run a proof opens (32 chunks)
MAX_PARAMS: constant(uint256) = 16
MAX_SKELETON: constant(uint256) = 4_096
MAX_ARGS: constant(uint256) = 8  # argument words kept from a skeleton

# Record reference kinds (docs/referee.md, section 3).
REF_STATE: constant(uint256) = 1
REF_OUTPUT: constant(uint256) = 3

# element_rules.vy rule codes the host plans for.
RULE_FOLD: constant(uint256) = 0
RULE_RELU: constant(uint256) = 1
RULE_TANH_BACKWARD: constant(uint256) = 10
RULE_ADD: constant(uint256) = 11
RULE_MUL: constant(uint256) = 12
RULE_MUL_SCALAR: constant(uint256) = 13
RULE_SCALE: constant(uint256) = 14
RULE_COPY: constant(uint256) = 15
RULE_FILL_ABOVE_DIAGONAL: constant(uint256) = 16
RULE_SOFTMAX: constant(uint256) = 19
RULE_SOFTMAX_BACKWARD: constant(uint256) = 20
RULE_LAYER_NORM: constant(uint256) = 23
RULE_ADAMW: constant(uint256) = 27

# Kernels with a host rule: an activation is its rule code (RULE_RELU … RULE_TANH_BACKWARD); the others
# have codes of their own (several share a rule: the moves are all RULE_COPY).
KERNEL_LINEAR: constant(uint256) = 100
KERNEL_ADAMW: constant(uint256) = 101
KERNEL_ADD: constant(uint256) = 102
KERNEL_MUL: constant(uint256) = 103
KERNEL_MUL_SCALAR: constant(uint256) = 104
KERNEL_SCALE: constant(uint256) = 105
KERNEL_FILL: constant(uint256) = 106
KERNEL_TRANSPOSE: constant(uint256) = 107
KERNEL_PLACE: constant(uint256) = 108
KERNEL_CAT: constant(uint256) = 109
KERNEL_MOVE: constant(uint256) = 110
KERNEL_SOFTMAX: constant(uint256) = 111
KERNEL_SOFTMAX_BACKWARD: constant(uint256) = 112
KERNEL_LAYER_NORM: constant(uint256) = 113
KERNEL_NONE: constant(uint256) = 1_000  # a kernel without a host rule

# Argument word tags (docs/referee.md, "Byte layouts"): the tag is the word's first byte.
TAG_INT: constant(uint256) = 1
TAG_FLOAT64: constant(uint256) = 2
TAG_FLOAT32: constant(uint256) = 3
TAG_TUPLE: constant(uint256) = 5
TAG_INPUT: constant(uint256) = 6
INT_SIGN: constant(uint256) = 1 << 247  # the sign bit of a 31-byte two's complement integer
INT_RANGE: constant(uint256) = 1 << 248
MASK32: constant(uint256) = (1 << 32) - 1
MASK64: constant(uint256) = (1 << 64) - 1


# One reference or output shape of a skeleton.
struct Ref:
    kind: uint256
    a: uint256
    b: uint256
    code: uint256
    dims: DynArray[uint256, commitments.MAX_NDIM]


# What the host reads of a skeleton.
struct Skeleton:
    name_key: uint256
    arg_count: uint256
    # the first MAX_ARGS argument words
    args: DynArray[uint256, MAX_ARGS]
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
    # the shape the kernel reads the input as: its first ndim dims (a fixed array keeps the plan's ABI
    # encoding static per read, which saves over a kilobyte of code)
    ndim: uint256
    dims: uint256[commitments.MAX_NDIM]
    first: uint256
    count: uint256
    # the step between the elements read (1: a run; more: every stride-th element from `first` on)
    stride: uint256


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
    if ndim > commitments.MAX_NDIM:
        # more axes than a tensor commitment holds, which no recorder writes: read past the skeleton, so
        # `_parse` refuses it (as the mirror does), by its length check or a read out of bounds
        at = MAX_SKELETON
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
    if name_length < 32:
        # a kernel name's key: its bytes as a big-endian integer, then its length (no host kernel's name
        # is longer; a longer one keeps the key 0, which names no kernel)
        parsed.name_key = (self._word_at(skeleton, 2, name_length) << 8) | name_length
    at: uint256 = 2 + name_length
    parsed.arg_count = self._word_at(skeleton, at, 4)
    at += 4
    for i: uint256 in range(MAX_ARGS):
        if i >= parsed.arg_count:
            break
        parsed.args.append(convert(extract32(skeleton, at + 32 * i), uint256))
    at += 32 * parsed.arg_count
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
    at += 4
    for i: uint256 in range(commitments.MAX_OUTPUTS):
        if i >= output_count:
            break
        out: Ref = empty(Ref)
        out.code, out.dims, at = self._shape_at(skeleton, at)
        parsed.outputs.append(out)
    # every byte read, none left over (as the mirror): trailing bytes would only make the defender's proof dearer
    assert output_count >= 1 and output_count <= commitments.MAX_OUTPUTS and at == len(raw), "host_rules: malformed skeleton"
    return parsed


@internal
@pure
def _arg(parsed: Skeleton, position: uint256) -> uint256:
    """
    @notice Argument word `position` of a skeleton (zero, the None word, past the words kept).
    @param parsed The parsed skeleton.
    @param position The argument's place.
    @return The 32-byte word (tag byte, then the value).
    """
    if position >= len(parsed.args):
        return 0
    return parsed.args[position]


@internal
@pure
def _names_inputs(parsed: Skeleton, count: uint256) -> bool:
    """
    @notice Whether the skeleton has exactly `count` inputs and its first `count` arguments name
            inputs 0 … count - 1 in order (so input k is the kernel's k-th tensor operand).
    @param parsed The parsed skeleton.
    @param count The tensor operands.
    @return Whether they do.
    """
    if parsed.input_count != count or len(parsed.args) < count:
        return False
    for k: uint256 in range(MAX_INPUTS):
        if k >= count:
            break
        if parsed.args[k] != (TAG_INPUT << 248) | k:
            return False
    return True


@internal
@pure
def _kernel(name_key: uint256) -> uint256:
    """
    @notice The host's code for a kernel: an activation's rule code, a KERNEL_* code, or KERNEL_NONE.
    @dev Names are compared as keys (their bytes as a big-endian integer, then the length byte), which
         keeps the table's constants short.
    @param name_key The kernel name's key.
    @return The code.
    """
    names: uint256[24] = [
        491327878404,  # relu
        2320230305506052340968614987457549,  # relu_backward
        444083238148,  # gelu
        2097123799865883966305195223311373,  # gelu_backward
        495689954564,  # silu
        2340829627759761068742936414544909,  # silu_backward
        488274684144699948558345,  # gelu_tanh
        2305812002838693617054825077458128962527061010,  # gelu_tanh_backward
        499850831876,  # tanh
        2360478815317282612166093492610061,  # tanh_backward
        30515220352954886,  # linear
        107083759187717,  # adamw
        1633969155,  # add
        1836411907,  # mul
        132327430342800615170732554,  # mul_scalar
        126870673450245,  # scale
        584668081874035913371587681676281658163771567123,  # fill_above_diagonal
        549904461513077594219785,  # transpose
        123610792682757,  # place
        1667331075,  # cat
        470021465348,  # move
        8317979687013939207,  # softmax
        39280548479145168817737733114359436174352,  # softmax_backward
        131024297433261298406288650,  # layer_norm
    ]
    for i: uint256 in range(24):
        if names[i] == name_key:
            if i < 10:
                return RULE_RELU + i
            return KERNEL_LINEAR + i - 10
    return KERNEL_NONE


@internal
@pure
def _rule_of(kernel: uint256) -> uint256:
    """
    @notice The element rule of a host kernel code.
    @param kernel A code of `_kernel` (not KERNEL_NONE).
    @return An element_rules RULE_* code.
    """
    if kernel <= RULE_TANH_BACKWARD:
        return kernel
    if kernel == KERNEL_LINEAR:
        return RULE_FOLD
    if kernel == KERNEL_ADAMW:
        return RULE_ADAMW
    if kernel == KERNEL_FILL:
        return RULE_FILL_ABOVE_DIAGONAL
    if kernel == KERNEL_SOFTMAX:
        return RULE_SOFTMAX
    if kernel == KERNEL_SOFTMAX_BACKWARD:
        return RULE_SOFTMAX_BACKWARD
    if kernel == KERNEL_LAYER_NORM:
        return RULE_LAYER_NORM
    if kernel >= KERNEL_TRANSPOSE:
        return RULE_COPY
    return RULE_ADD + (kernel - KERNEL_ADD)  # add, mul, mul_scalar, scale


@internal
@pure
def _unravel(e: uint256, dims: DynArray[uint256, commitments.MAX_NDIM]) -> DynArray[uint256, commitments.MAX_NDIM]:
    """
    @notice The row-major index of flat element e in a tensor of `dims` (no dim is zero here).
    @param e The flat index.
    @param dims The shape.
    @return One index per axis.
    """
    index: DynArray[uint256, commitments.MAX_NDIM] = dims
    left: uint256 = e
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(dims):
            break
        axis: uint256 = len(dims) - 1 - i
        index[axis] = left % dims[axis]
        left = left // dims[axis]
    return index


@internal
@pure
def _ravel(index: DynArray[uint256, commitments.MAX_NDIM], dims: DynArray[uint256, commitments.MAX_NDIM]) -> uint256:
    """
    @notice The flat row-major index of `index` in a tensor of `dims`.
    @param index One index per axis.
    @param dims The shape.
    @return The flat index.
    """
    flat: uint256 = 0
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(dims):
            break
        flat = flat * dims[i] + index[i]
    return flat


@internal
@pure
def _broadcast_source(index: DynArray[uint256, commitments.MAX_NDIM], dims: DynArray[uint256, commitments.MAX_NDIM]) -> uint256:
    """
    @notice The flat index of the element of a tensor of `dims`, broadcast to the output (right-aligned,
            size-1 axes repeated), that output index `index` reads.
    @param index The output element's index.
    @param dims The operand's shape (no more axes than the output).
    @return Its flat index.
    """
    lead: uint256 = len(index) - len(dims)
    source: DynArray[uint256, commitments.MAX_NDIM] = dims
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(dims):
            break
        source[i] = 0
        if dims[i] != 1:
            source[i] = index[lead + i]
    return self._ravel(source, dims)


@internal
@pure
def _cat_axis(parsed: Skeleton, ndim: uint256) -> uint256:
    """
    @notice The concatenation axis of a `cat`: its last argument, an integer, modulo ndim.
    @param parsed The parsed skeleton (its last argument kept).
    @param ndim The output's axes (at least one).
    @return The axis.
    """
    word: uint256 = parsed.args[parsed.arg_count - 1] & (INT_RANGE - 1)
    if word & INT_SIGN == 0:
        return word % ndim
    return (ndim - (INT_RANGE - word) % ndim) % ndim


@internal
@pure
def _fill_value(word: uint256) -> uint256:
    """
    @notice fill_above_diagonal's value as a binary32: a binary64 argument rounded to nearest, a
            binary32 argument as it is.
    @param word The argument word (tag TAG_FLOAT64 or TAG_FLOAT32).
    @return The binary32 pattern.
    """
    if word >> 248 == TAG_FLOAT64:
        return float32._from_f64(word & MASK64)
    return word & MASK32


@internal
@pure
def _tuple_word(values: DynArray[uint256, commitments.MAX_NDIM]) -> uint256:
    """
    @notice The argument word of a tuple of non-negative integers: tag TAG_TUPLE, then the first 31
            bytes of keccak256 over the integers' own words (tag TAG_INT, 31-byte value).
    @param values The integers (each below 2**247).
    @return The word.
    """
    words: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(values):
            break
        words[i] = (TAG_INT << 248) | values[i]
    digest: bytes32 = keccak256(slice(abi_encode(words), 0, 32 * len(values)))
    return (TAG_TUPLE << 248) | (convert(digest, uint256) >> 8)


@internal
@pure
def _move_checkable(parsed: Skeleton, shape: Ref) -> bool:
    """
    @notice move(source, sizes, strides, offset): one input named by argument 0, the sizes the output's
            shape (their tuple word hashes them), the strides a tuple, the offset a non-negative integer.
    @param parsed The parsed skeleton.
    @param shape The output's shape.
    @return Whether every element can be planned (given the strides).
    """
    if not self._names_inputs(parsed, 1) or parsed.arg_count != 4:
        return False
    offset: uint256 = parsed.args[3]
    return (
        parsed.args[1] == self._tuple_word(shape.dims)
        and parsed.args[2] >> 248 == TAG_TUPLE
        and offset >> 248 == TAG_INT
        and offset & INT_SIGN == 0
    )


@internal
@pure
def _shape_checkable(parsed: Skeleton, kernel: uint256, shape: Ref) -> bool:
    """
    @notice The shape and argument checks of each kernel's index map (see `_checkable`).
    @param parsed The parsed skeleton.
    @param kernel Its host kernel code.
    @param shape The disputed output's shape.
    @return Whether the index map covers every element of this output.
    """
    size: uint256 = commitments._element_count(shape.dims)
    ndim: uint256 = len(shape.dims)
    if kernel == KERNEL_ADAMW:
        # p, g, m, v of the output's size, then the step's 8 scalars (one chunk)
        if parsed.input_count != 5 or len(parsed.outputs) != 3:
            return False
        for k: uint256 in range(4):
            if commitments._element_count(parsed.inputs[k].dims) != size:
                return False
        return commitments._element_count(parsed.inputs[4].dims) == 8
    if kernel == KERNEL_LAYER_NORM:
        return self._layer_norm_checkable(parsed)
    if len(parsed.outputs) != 1:
        return False
    if kernel <= RULE_TANH_BACKWARD:
        count: uint256 = 1
        if (kernel - RULE_RELU) % 2 == 1:
            count = 2  # a backward: (x, dy) or (y, dy)
        if parsed.input_count != count:
            return False
        for ref: Ref in parsed.inputs:
            if commitments._element_count(ref.dims) != size:
                return False
        return True
    if kernel == KERNEL_LINEAR:
        return self._linear_checkable(parsed, shape)
    if kernel == KERNEL_ADD or kernel == KERNEL_MUL:
        # two operands, each broadcast to the output: right-aligned, every axis equal or of size 1
        if not self._names_inputs(parsed, 2):
            return False
        for ref: Ref in parsed.inputs:
            if len(ref.dims) > ndim:
                return False
            for i: uint256 in range(commitments.MAX_NDIM):
                if i >= len(ref.dims):
                    break
                if ref.dims[i] != 1 and ref.dims[i] != shape.dims[ndim - len(ref.dims) + i]:
                    return False
        return True
    if kernel == KERNEL_SCALE:
        # g × factor: g of the output's size, the factor one value
        return (
            self._names_inputs(parsed, 2)
            and commitments._element_count(parsed.inputs[0].dims) == size
            and commitments._element_count(parsed.inputs[1].dims) == 1
        )
    if kernel == KERNEL_CAT:
        return self._cat_checkable(parsed, shape)
    if kernel == KERNEL_MOVE:
        return self._move_checkable(parsed, shape)
    if kernel == KERNEL_SOFTMAX or kernel == KERNEL_SOFTMAX_BACKWARD:
        # softmax(z) or softmax_backward(y, dy): operands of the output's shape, rows of its last axis
        operands: uint256 = 1
        widest: uint256 = MAX_SOFTMAX_ROW
        if kernel == KERNEL_SOFTMAX_BACKWARD:
            operands = 2
            widest = MAX_SOFTMAX_BACKWARD_ROW
        if not self._names_inputs(parsed, operands) or parsed.arg_count != operands or ndim == 0:
            return False
        for ref: Ref in parsed.inputs:
            if not self._same_dims(ref.dims, shape.dims):
                return False
        width: uint256 = shape.dims[ndim - 1]
        return width <= widest and not (operands == 2 and self._softmax_backward_split(width))
    if not self._names_inputs(parsed, 1):
        return False
    source: Ref = parsed.inputs[0]
    if kernel == KERNEL_PLACE:
        return commitments._element_count(source.dims) <= size
    if commitments._element_count(source.dims) != size:
        return False
    if kernel == KERNEL_MUL_SCALAR:
        return self._arg(parsed, 1) >> 248 == TAG_FLOAT32
    if kernel == KERNEL_FILL:
        tag: uint256 = self._arg(parsed, 1) >> 248
        return ndim >= 2 and (tag == TAG_FLOAT64 or tag == TAG_FLOAT32)
    # transpose: the source's last two axes swapped
    if ndim < 2 or len(source.dims) != ndim:
        return False
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= ndim - 2:
            break
        if source.dims[i] != shape.dims[i]:
            return False
    return source.dims[ndim - 2] == shape.dims[ndim - 1] and source.dims[ndim - 1] == shape.dims[ndim - 2]


@internal
@pure
def _norm_backward_pieced(x: Ref, widest: uint256) -> bool:
    """
    @notice Whether a norm backward's rows are decided in pieces (row_piece_rules.vy; docs/referee.md, "Rows
            in pieces"): wider than the kernel's cap, or of a width that does not divide RUN_ELEMENTS where
            x̂ holds more (rows crossing its boundaries) or where it is over MAX_NORM_BACKWARD_SPLIT_ROW,
            exactly the rows RowRules' dx rule leaves out.
    @param x The backward's first input, x̂.
    @param widest The kernel's cap (MAX_LAYER_NORM_BACKWARD_ROW or MAX_RMS_NORM_BACKWARD_ROW).
    @return Whether they are (false for a 0-d or empty-row x̂, which no row rule reads).
    """
    if len(x.dims) == 0 or x.dims[len(x.dims) - 1] == 0:
        return False
    width: uint256 = x.dims[len(x.dims) - 1]
    return width > widest or (
        RUN_ELEMENTS % width != 0
        and (commitments._element_count(x.dims) > RUN_ELEMENTS or width > MAX_NORM_BACKWARD_SPLIT_ROW)
    )


@internal
@pure
def _softmax_backward_split(width: uint256) -> bool:
    """
    @notice Whether softmax_backward's rows of `width` (at most its cap) are too wide to straddle the tensor
            tree whole (they do not divide RUN_ELEMENTS and are wider than MAX_SOFTMAX_BACKWARD_SPLIT_ROW):
            then they are decided in pieces (row_piece_rules.vy), as rows over the cap are.
    @param width The row width (not 0).
    @return Whether they are.
    """
    return RUN_ELEMENTS % width != 0 and width > MAX_SOFTMAX_BACKWARD_SPLIT_ROW


@internal
@pure
def _linear_checkable(parsed: Skeleton, shape: Ref) -> bool:
    """
    @notice linear: x [..., K] and y [..., N] with the same rows (the leading axes read as rows, as the
            kernel flattens them), W [N, K], K a power of two from 8 to 256 so a row is one aligned
            run, the bias, if any, argument 2 naming input 2.
    @param parsed The parsed skeleton.
    @param shape The output's shape.
    @return Whether every element can be planned.
    """
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
    if commitments._element_count(x.dims) // terms != commitments._element_count(shape.dims) // w.dims[0]:
        return False
    if parsed.input_count == 2:
        return True
    bias: Ref = parsed.inputs[2]
    return (
        parsed.input_count == 3
        and self._arg(parsed, 2) == (TAG_INPUT << 248) | 2
        and len(bias.dims) == 1
        and bias.dims[0] == shape.dims[last]
    )


@internal
@pure
def _same_dims(a: DynArray[uint256, commitments.MAX_NDIM], b: DynArray[uint256, commitments.MAX_NDIM]) -> bool:
    """
    @notice Whether two shapes are the same.
    @param a A shape.
    @param b Another.
    @return Whether they have the same axes and sizes.
    """
    if len(a) != len(b):
        return False
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(a):
            break
        if a[i] != b[i]:
            return False
    return True


@internal
@pure
def _layer_norm_checkable(parsed: Skeleton) -> bool:
    """
    @notice layer_norm(x, w, b, eps): inputs named in order, then a binary64 or binary32 eps; x of rows
            of its last axis W (1 … MAX_LAYER_NORM_ROW), w and b [W]; outputs y and x̂ of x's shape and rstd of
            one value a row.
    @param parsed The parsed skeleton.
    @return Whether every element of every output can be planned.
    """
    if not self._names_inputs(parsed, 3) or parsed.arg_count != 4 or len(parsed.outputs) != 3:
        return False
    tag: uint256 = parsed.args[3] >> 248
    x: Ref = parsed.inputs[0]
    if (tag != TAG_FLOAT64 and tag != TAG_FLOAT32) or len(x.dims) == 0:
        return False
    width: uint256 = x.dims[len(x.dims) - 1]
    if width == 0 or width > MAX_LAYER_NORM_ROW:
        return False
    for k: uint256 in range(1, 3):
        if len(parsed.inputs[k].dims) != 1 or parsed.inputs[k].dims[0] != width:
            return False
    for out: Ref in parsed.outputs:
        if out.code != commitments.DTYPE_FLOAT32:
            return False
    return (
        self._same_dims(parsed.outputs[0].dims, x.dims)
        and self._same_dims(parsed.outputs[1].dims, x.dims)
        and commitments._element_count(parsed.outputs[2].dims) == commitments._element_count(x.dims) // width
    )


@internal
@pure
def _cat_checkable(parsed: Skeleton, shape: Ref) -> bool:
    """
    @notice cat(inputs…, dim): up to MAX_INPUTS inputs named in order, then the axis (an integer);
            every input of the output's rank and axes off the axis, whose sizes along it add up.
    @param parsed The parsed skeleton.
    @param shape The output's shape.
    @return Whether every element can be planned.
    """
    count: uint256 = parsed.input_count
    ndim: uint256 = len(shape.dims)
    if count == 0 or ndim == 0 or parsed.arg_count != count + 1 or parsed.arg_count > MAX_ARGS:
        return False
    if not self._names_inputs(parsed, count) or parsed.args[count] >> 248 != TAG_INT:
        return False
    axis: uint256 = self._cat_axis(parsed, ndim)
    total: uint256 = 0
    for ref: Ref in parsed.inputs:
        if len(ref.dims) != ndim:
            return False
        for i: uint256 in range(commitments.MAX_NDIM):
            if i >= ndim:
                break
            if i != axis and ref.dims[i] != shape.dims[i]:
                return False
        total += ref.dims[axis]
    return total == shape.dims[axis]


@internal
@pure
def _checkable(parsed: Skeleton, output: uint256) -> bool:
    """
    @notice Whether the host can check every element of this output: a host rule, a binary32 output,
            inputs that are state tensors or earlier outputs (binary32), a non-empty output, and the
            shapes and arguments its index map assumes (`_shape_checkable`). Otherwise an honest
            defender could not prove its element, so the game escalates instead.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether the host can plan every element of this output.
    """
    kernel: uint256 = self._kernel(parsed.name_key)
    if kernel == KERNEL_NONE or output >= len(parsed.outputs):
        return False
    shape: Ref = parsed.outputs[output]
    if shape.code != commitments.DTYPE_FLOAT32 or parsed.input_count > MAX_INPUTS:
        return False
    for ref: Ref in parsed.inputs:
        if (ref.kind != REF_STATE and ref.kind != REF_OUTPUT) or ref.code != commitments.DTYPE_FLOAT32:
            return False
    if commitments._element_count(shape.dims) == 0:
        return False  # nothing to descend into: an empty output's root is judged at level 2
    return self._shape_checkable(parsed, kernel, shape)


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
    return count, self._checkable(parsed, output), shape.code, shape.dims


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
    dims: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(ref.dims):
            break
        dims[i] = ref.dims[i]
    return Read(input=k, kind=ref.kind, a=ref.a, b=ref.b, code=ref.code, ndim=len(ref.dims), dims=dims, first=first, count=count, stride=1)


@internal
@pure
def _row_reads(parsed: Skeleton, k: uint256, first: uint256, count: uint256) -> DynArray[Read, 2]:
    """
    @notice The reads of `count` elements of input k from `first` on: one run, or two where the
            elements cross a RUN_ELEMENTS boundary (an aligned run of at most 32 chunks cannot).
    @param parsed The parsed skeleton.
    @param k The input.
    @param first The first element.
    @param count The elements (at most RUN_ELEMENTS).
    @return The reads.
    """
    boundary: uint256 = (first // RUN_ELEMENTS + 1) * RUN_ELEMENTS
    if first + count <= boundary:
        return [self._read(parsed, k, first, count)]
    return [self._read(parsed, k, first, boundary - first), self._read(parsed, k, boundary, first + count - boundary)]


@internal
@pure
def _plan(
    raw: Bytes[MAX_SKELETON], output: uint256, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> Plan:
    """
    @notice How output element `element` of a checkable output is decided (reverts for an output the
            host cannot check, or an element outside it).
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index in it.
    @param hints What the skeleton holds only hashed: a move's strides (empty for other kernels).
    @return The plan.
    """
    parsed: Skeleton = self._parse(raw)
    checkable: bool = self._checkable(parsed, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "host_rules: not a checkable element"
    shape: Ref = parsed.outputs[output]
    kernel: uint256 = self._kernel(parsed.name_key)
    plan: Plan = empty(Plan)
    plan.rule = self._rule_of(kernel)
    if kernel == KERNEL_LINEAR:
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
    elif kernel == KERNEL_ADAMW:
        # output 0 (p'): p, g, m, v, the 8 scalars; 1 (m'): g, m, β1, 1 - β1; 2 (v'): g, v, β2, 1 - β2
        plan.params = [output]
        if output == 0:
            for k: uint256 in range(4):
                plan.reads.append(self._read(parsed, k, element, 1))
            plan.reads.append(self._read(parsed, 4, 0, 8))
        else:
            plan.reads = [self._read(parsed, 1, element, 1), self._read(parsed, 1 + output, element, 1)]
            plan.reads.append(self._read(parsed, 4, 2 * output - 1, 2))
    elif kernel == KERNEL_ADD or kernel == KERNEL_MUL:
        index: DynArray[uint256, commitments.MAX_NDIM] = self._unravel(element, shape.dims)
        for k: uint256 in range(2):
            plan.reads.append(self._read(parsed, k, self._broadcast_source(index, parsed.inputs[k].dims), 1))
    elif kernel == KERNEL_SCALE:
        plan.reads = [self._read(parsed, 0, element, 1), self._read(parsed, 1, 0, 1)]
    elif kernel == KERNEL_MUL_SCALAR:
        plan.params = [self._arg(parsed, 1) & MASK32]
        plan.reads = [self._read(parsed, 0, element, 1)]
    elif kernel == KERNEL_FILL:
        # above the diagonal (column > row of the last two axes) the argument, read nothing; else x
        index: DynArray[uint256, commitments.MAX_NDIM] = self._unravel(element, shape.dims)
        row: uint256 = index[len(index) - 2]
        column: uint256 = index[len(index) - 1]
        plan.params = [row, column, self._fill_value(self._arg(parsed, 1))]
        if column <= row:
            plan.reads = [self._read(parsed, 0, element, 1)]
    elif kernel == KERNEL_TRANSPOSE:
        index: DynArray[uint256, commitments.MAX_NDIM] = self._unravel(element, shape.dims)
        last: uint256 = len(index) - 1
        column: uint256 = index[last]
        index[last] = index[last - 1]
        index[last - 1] = column
        plan.reads = [self._read(parsed, 0, self._ravel(index, parsed.inputs[0].dims), 1)]
    elif kernel == KERNEL_PLACE:
        # the source's elements first, +0 (nothing read) after them
        if element < commitments._element_count(parsed.inputs[0].dims):
            plan.reads = [self._read(parsed, 0, element, 1)]
    elif kernel == KERNEL_MOVE:
        # the source element offset + Σ index_i · stride_i of the strided view
        # (one assert for all of it: each revert string costs code size)
        valid: bool = len(hints) == len(shape.dims) and self._tuple_word(hints) == self._arg(parsed, 2)
        for stride: uint256 in hints:
            valid = valid and stride < INT_SIGN
        source: uint256 = self._arg(parsed, 3) & (INT_SIGN - 1)
        if valid:
            index: DynArray[uint256, commitments.MAX_NDIM] = self._unravel(element, shape.dims)
            for i: uint256 in range(commitments.MAX_NDIM):
                if i >= len(index):
                    break
                source += index[i] * hints[i]
        assert valid and source < commitments._element_count(parsed.inputs[0].dims), "host_rules: not the move's strides, or outside its source"
        plan.reads = [self._read(parsed, 0, source, 1)]
    elif kernel == KERNEL_SOFTMAX or kernel == KERNEL_SOFTMAX_BACKWARD:
        # the element's row of z (softmax), or of y then dy (its backward); the rule's j its column
        width: uint256 = shape.dims[len(shape.dims) - 1]
        start: uint256 = element - element % width
        plan.params = [element % width]
        for k: uint256 in range(2):
            if k == 1 and kernel == KERNEL_SOFTMAX:
                break
            row_reads: DynArray[Read, 2] = self._row_reads(parsed, k, start, width)
            for read: Read in row_reads:
                plan.reads.append(read)
    elif kernel == KERNEL_LAYER_NORM:
        # the row of x; for y also w[j] and b[j]. rstd (output 2) is one value a row: element r is row r
        x_dims: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        width: uint256 = x_dims[len(x_dims) - 1]
        row: uint256 = element
        column: uint256 = 0
        if output < 2:
            row = element // width
            column = element % width
        plan.params = [output, column, self._fill_value(self._arg(parsed, 3))]
        plan.reads = self._row_reads(parsed, 0, row * width, width)
        if output == 0:
            plan.reads.append(self._read(parsed, 1, column, 1))
            plan.reads.append(self._read(parsed, 2, column, 1))
    elif kernel == KERNEL_CAT:
        index: DynArray[uint256, commitments.MAX_NDIM] = self._unravel(element, shape.dims)
        axis: uint256 = self._cat_axis(parsed, len(index))
        for k: uint256 in range(MAX_INPUTS):
            along: uint256 = parsed.inputs[k].dims[axis]
            if index[axis] < along:
                plan.reads = [self._read(parsed, k, self._ravel(index, parsed.inputs[k].dims), 1)]
                break
            index[axis] -= along
    else:
        # an activation or its backward: each input at the element's own index
        for k: uint256 in range(MAX_INPUTS):
            if k >= parsed.input_count:
                break
            plan.reads.append(self._read(parsed, k, element, 1))
    return plan
