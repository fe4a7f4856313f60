# pragma version ~=0.4.3
"""
@title fold_rules
@notice The referee game's fold rules (docs/referee.md, "On chain: the game"): the host rules of the
        folds whose operands are read down a column, every stride-th element rather than a run:
        `matmul` (c[..., m, n] = fold over k of a[..., m, k] · b[..., k, n]: a row of a zipped with a
        column of b, a batch axis of size one broadcast), `linear_backward` (dx[r, k] = fold over n of
        dy[r, n] · w[n, k]; dw[n, k] = fold over r of dy[r, n] · x[r, k]; db[n] = fold over r of
        dy[r, n]), `sum_rows` (fold over r of x[r, e]), `layer_norm_backward` dw and db and
        `rms_norm_backward` dw (fold over r of dy[r, j] · x̂[r, j], and of dy[r, j]). One fold piece:
        at most MAX_FOLD terms.
@dev Pure, run as `FoldRules.vy` beside `HostRules.vy` (same interface: `host_rules.Plan`, each read
     with its stride). `RefereeGame.vy` proves every read of these plans by a column proof: the
     distinct chunks holding the read's elements, then the siblings of their multiproof
     (`_column_words` bounds its words from the shapes alone, and an output is checkable only when
     those bounds and the values read fit MAX_COLUMN_LOAD, so an honest defender can always prove the
     element it is asked, within prove_element's gas target). `protocol/fold_rules.py` is its Python mirror.
"""

from . import commitments
from . import host_rules

MAX_FOLD: constant(uint256) = 256  # terms of one fold piece (element_rules.MAX_FOLD)
# The load of a plan's reads: the column proof words (chunks and siblings) they may need plus the
# values they read, over every read. It bounds prove_element's calldata, hashing and fold, to which a
# word and a value add about as much gas (docs/gas.md: the worst case accepted, under 1,000,000).
MAX_COLUMN_LOAD: constant(uint256) = 404
# What a source tensor larger than the kernel's read of it (a prefix) adds: one sibling a level above.
COLUMN_SLACK: constant(uint256) = 2 * commitments.MAX_TENSOR_DEPTH
MAX_COLUMN_PROOF: constant(uint256) = MAX_COLUMN_LOAD + COLUMN_SLACK

KERNEL_MATMUL: constant(uint256) = 1
KERNEL_LINEAR_BACKWARD: constant(uint256) = 2
KERNEL_SUM_ROWS: constant(uint256) = 3
KERNEL_LAYER_NORM_BACKWARD: constant(uint256) = 4
KERNEL_RMS_NORM_BACKWARD: constant(uint256) = 5
KERNEL_NONE: constant(uint256) = 0


@internal
@pure
def _kernel(name_key: uint256) -> uint256:
    """
    @notice The fold kernel of a name key (its bytes as a big-endian integer, then its length byte).
    @param name_key The kernel name's key.
    @return A KERNEL_* code, KERNEL_NONE for a kernel without a fold rule.
    """
    if name_key == 30787925141974022:  # matmul
        return KERNEL_MATMUL
    if name_key == 144104053812176200734772497807330927631:  # linear_backward
        return KERNEL_LINEAR_BACKWARD
    if name_key == 2129837092696598475528:  # sum_rows
        return KERNEL_SUM_ROWS
    if name_key == 618744750640376440682374728143722151207742104595:  # layer_norm_backward
        return KERNEL_LAYER_NORM_BACKWARD
    if name_key == 9968044730942662032321881697510010106569745:  # rms_norm_backward
        return KERNEL_RMS_NORM_BACKWARD
    return KERNEL_NONE


@internal
@pure
def _column_words(chunks: uint256, stride: uint256, count: uint256) -> uint256:
    """
    @notice The most words a column proof of `count` elements `stride` apart takes in a binary32
            tensor of `chunks` chunks, wherever the first element lies: its distinct chunks, then one
            sibling for each node of the multiproof whose sibling it cannot compute.
    @dev At level l (a node spans U = 8 · 2**l elements) the read's nodes are `count` distinct ones
         when stride >= U, else a contiguous range of q + 1 or q + 2 nodes, q = (count − 1) · stride
         // U; with hi_l and lo_l those bounds (hi = lo = 1 at the root), level l needs at most
         min(hi_l, 2 · hi_{l+1} − lo_l) siblings (its parents' children less the nodes known).
    @param chunks The tensor's chunks.
    @param stride The step between elements (at least 1).
    @param count The elements (at least 1).
    @return The bound.
    """
    depth: uint256 = commitments._depth(chunks)
    hi: uint256 = 0
    lo: uint256 = 0
    hi, lo = self._level_nodes(0, depth, stride, count)
    words: uint256 = hi
    for level: uint256 in range(commitments.MAX_TENSOR_DEPTH):
        if level >= depth:
            break
        up_hi: uint256 = 0
        up_lo: uint256 = 0
        up_hi, up_lo = self._level_nodes(level + 1, depth, stride, count)
        words += min(hi, 2 * up_hi - min(lo, 2 * up_hi))
        hi = up_hi
        lo = up_lo
    return words


@internal
@pure
def _level_nodes(level: uint256, depth: uint256, stride: uint256, count: uint256) -> (uint256, uint256):
    """
    @notice The most and the fewest nodes at `level` that hold a read (see `_column_words`).
    @param level The level (0: the chunks).
    @param depth The tree's depth (its root's level).
    @param stride The step between elements.
    @param count The elements.
    @return (hi, lo).
    """
    if level >= depth:
        return 1, 1
    unit: uint256 = 8 << level
    if stride >= unit:
        return count, count
    q: uint256 = (count - 1) * stride // unit
    return min(count, q + 2), q + 1


@internal
@pure
def _dims_equal_or_one(operand: DynArray[uint256, commitments.MAX_NDIM], shape: DynArray[uint256, commitments.MAX_NDIM]) -> bool:
    """
    @notice Whether an operand's batch axes (all but its last two) broadcast to the output's: right
            aligned, each equal or of size one.
    @param operand The operand's shape (at least two axes, at most the output's).
    @param shape The output's shape.
    @return Whether they do.
    """
    lead: uint256 = len(operand) - 2
    offset: uint256 = len(shape) - len(operand)
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= lead:
            break
        if operand[i] != 1 and operand[i] != shape[offset + i]:
            return False
    return True


@internal
@pure
def _shape_checkable(parsed: host_rules.Skeleton, kernel: uint256, output: uint256) -> bool:
    """
    @notice The shapes and arguments each fold's index map assumes.
    @param parsed The parsed skeleton.
    @param kernel Its KERNEL_* code.
    @param output The disputed output.
    @return Whether every element of the output can be planned.
    """
    shape: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[output].dims
    if kernel == KERNEL_MATMUL:
        # a [..., M, K] and b [..., K, N] to c [..., M, N]
        if not host_rules._names_inputs(parsed, 2) or parsed.arg_count != 2 or len(parsed.outputs) != 1:
            return False
        a: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        b: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[1].dims
        ndim: uint256 = len(shape)
        if ndim < 2 or len(a) < 2 or len(b) < 2 or len(a) > ndim or len(b) > ndim:
            return False
        terms: uint256 = a[len(a) - 1]
        return (
            terms >= 1
            and terms == b[len(b) - 2]
            and a[len(a) - 2] == shape[ndim - 2]
            and b[len(b) - 1] == shape[ndim - 1]
            and self._dims_equal_or_one(a, shape)
            and self._dims_equal_or_one(b, shape)
        )
    if kernel == KERNEL_SUM_ROWS:
        # x [R, ...] to [...]: element e is the fold over r of x[r, e]
        if not host_rules._names_inputs(parsed, 1) or parsed.arg_count != 1 or len(parsed.outputs) != 1:
            return False
        x: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        return len(x) >= 1 and x[0] >= 1 and x[0] * commitments._element_count(shape) == commitments._element_count(x)
    if kernel == KERNEL_LINEAR_BACKWARD:
        # x [..., K], w [N, K], dy [..., N] with the same R rows; dx of R · K, dw [N, K], db [N]
        if not host_rules._names_inputs(parsed, 3) or parsed.arg_count != 3 or len(parsed.outputs) != 3:
            return False
        x: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        w: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[1].dims
        dy: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[2].dims
        if len(x) == 0 or len(w) != 2 or len(dy) == 0 or w[0] == 0 or w[1] == 0:
            return False
        if x[len(x) - 1] != w[1] or dy[len(dy) - 1] != w[0]:
            return False
        rows: uint256 = commitments._element_count(x) // w[1]
        return (
            rows >= 1
            and commitments._element_count(dy) == rows * w[0]
            and commitments._element_count(parsed.outputs[0].dims) == rows * w[1]
            and host_rules._same_dims(parsed.outputs[1].dims, w)
            and commitments._element_count(parsed.outputs[2].dims) == w[0]
        )
    # layer_norm_backward (dw, db) and rms_norm_backward (dw): x̂ and dy [..., W], outputs of W
    if not host_rules._names_inputs(parsed, 4) or parsed.arg_count != 4 or output == 0:
        return False
    if kernel == KERNEL_LAYER_NORM_BACKWARD and len(parsed.outputs) != 3:
        return False
    if kernel == KERNEL_RMS_NORM_BACKWARD and (len(parsed.outputs) != 2 or output != 1):
        return False
    xhat: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
    if len(xhat) == 0 or xhat[len(xhat) - 1] == 0:
        return False
    width: uint256 = xhat[len(xhat) - 1]
    return (
        host_rules._same_dims(parsed.inputs[3].dims, xhat)
        and commitments._element_count(shape) == width
        and commitments._element_count(xhat) >= width
    )


@internal
@pure
def _strided(parsed: host_rules.Skeleton, k: uint256, first: uint256, count: uint256, stride: uint256) -> host_rules.Read:
    """
    @notice A read of `count` elements of input k, `stride` apart, from `first` on.
    @param parsed The parsed skeleton.
    @param k The input.
    @param first The first element.
    @param count The elements.
    @param stride The step between them.
    @return The read.
    """
    read: host_rules.Read = host_rules._read(parsed, k, first, count)
    read.stride = stride
    return read


@internal
@pure
def _plan_of(parsed: host_rules.Skeleton, kernel: uint256, output: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice The plan of one element of a shape-checked output (`_shape_checkable`).
    @param parsed The parsed skeleton.
    @param kernel Its KERNEL_* code.
    @param output The disputed output.
    @param element The element's row-major index.
    @return The plan: RULE_FOLD, (arity, 0, no epilogue, 0), the reads, zipped for products.
    """
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = host_rules.RULE_FOLD
    plan.params = [2, 0, 0, 0]
    plan.zipped = True
    if kernel == KERNEL_MATMUL:
        shape: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[0].dims
        index: DynArray[uint256, commitments.MAX_NDIM] = host_rules._unravel(element, shape)
        ndim: uint256 = len(shape)
        column: uint256 = index[ndim - 1]
        a: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        terms: uint256 = a[len(a) - 1]
        width: uint256 = shape[ndim - 1]
        # row m of a: index [..., m, 0]; column n of b: index [..., 0, n]
        index[ndim - 1] = 0
        a_first: uint256 = host_rules._broadcast_source(index, a)
        index[ndim - 1] = column
        index[ndim - 2] = 0
        b_first: uint256 = host_rules._broadcast_source(index, parsed.inputs[1].dims)
        plan.reads = [self._strided(parsed, 0, a_first, terms, 1), self._strided(parsed, 1, b_first, terms, width)]
    elif kernel == KERNEL_SUM_ROWS:
        x: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        width: uint256 = commitments._element_count(x) // x[0]
        plan.params = [1, 0, 0, 0]
        plan.zipped = False
        plan.reads = [self._strided(parsed, 0, element, x[0], width)]
    elif kernel == KERNEL_LINEAR_BACKWARD:
        n_width: uint256 = parsed.inputs[1].dims[0]
        k_width: uint256 = parsed.inputs[1].dims[1]
        rows: uint256 = commitments._element_count(parsed.inputs[0].dims) // k_width
        if output == 0:
            # dx[r, k]: row r of dy zipped with column k of w
            r: uint256 = element // k_width
            k: uint256 = element % k_width
            plan.reads = [self._strided(parsed, 2, r * n_width, n_width, 1), self._strided(parsed, 1, k, n_width, k_width)]
        elif output == 1:
            # dw[n, k]: column n of dy zipped with column k of x
            n: uint256 = element // k_width
            k: uint256 = element % k_width
            plan.reads = [self._strided(parsed, 2, n, rows, n_width), self._strided(parsed, 0, k, rows, k_width)]
        else:
            # db[n]: column n of dy
            plan.params = [1, 0, 0, 0]
            plan.zipped = False
            plan.reads = [self._strided(parsed, 2, element, rows, n_width)]
    else:
        # a norm's dw[j]: column j of dy zipped with column j of x̂; db[j]: column j of dy
        xhat: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        width: uint256 = xhat[len(xhat) - 1]
        rows: uint256 = commitments._element_count(xhat) // width
        if output == 1:
            plan.reads = [self._strided(parsed, 3, element, rows, width), self._strided(parsed, 0, element, rows, width)]
        else:
            plan.params = [1, 0, 0, 0]
            plan.zipped = False
            plan.reads = [self._strided(parsed, 3, element, rows, width)]
    return plan


@internal
@pure
def _checkable(parsed: host_rules.Skeleton, output: uint256) -> bool:
    """
    @notice Whether every element of this output can be decided by one fold piece: a fold kernel, a
            binary32 output of at least one element, binary32 inputs that are state tensors or
            earlier outputs, the shapes its index map assumes, at most MAX_FOLD terms, and reads
            whose column proof words (bounded for every element: `_column_words`) and values fit
            MAX_COLUMN_LOAD.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether it is checkable.
    """
    kernel: uint256 = self._kernel(parsed.name_key)
    if kernel == KERNEL_NONE or output >= len(parsed.outputs) or parsed.input_count > host_rules.MAX_INPUTS:
        return False
    if parsed.outputs[output].code != commitments.DTYPE_FLOAT32:
        return False
    for ref: host_rules.Ref in parsed.inputs:
        if (ref.kind != host_rules.REF_STATE and ref.kind != host_rules.REF_OUTPUT) or ref.code != commitments.DTYPE_FLOAT32:
            return False
    if commitments._element_count(parsed.outputs[output].dims) == 0 or not self._shape_checkable(parsed, kernel, output):
        return False
    plan: host_rules.Plan = self._plan_of(parsed, kernel, output, 0)
    load: uint256 = 0
    for read: host_rules.Read in plan.reads:
        if read.count == 0 or read.count > MAX_FOLD:
            return False
        chunks: uint256 = commitments._chunk_count(commitments.DTYPE_FLOAT32, parsed.inputs[read.input].dims)
        load += self._column_words(chunks, read.stride, read.count) + read.count
    return load <= MAX_COLUMN_LOAD


@internal
@pure
def _output_of(raw: Bytes[host_rules.MAX_SKELETON], output: uint256) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent (as host_rules._output_of).
    @param raw The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether every element of that output is checkable here, and its
            dtype code and dims (zero and none past the last output).
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    count: uint256 = len(parsed.outputs)
    if output >= count:
        return count, False, 0, []
    shape: host_rules.Ref = parsed.outputs[output]
    return count, self._checkable(parsed, output), shape.code, shape.dims


@internal
@pure
def _plan(raw: Bytes[host_rules.MAX_SKELETON], output: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice How element `element` of a checkable output is decided (reverts for an output not
            checkable here, or an element outside it).
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index.
    @return The plan.
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    checkable: bool = self._checkable(parsed, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "fold_rules: not a checkable element"
    return self._plan_of(parsed, self._kernel(parsed.name_key), output, element)
