# pragma version ~=0.4.3
"""
@title fold_rules
@notice The referee game's fold rules (docs/referee.md, "On chain: the game"): the host rules of the
        folds whose operands are read down a column, every stride-th element rather than a run:
        `matmul` (c[..., m, n] = fold over k of a[..., m, k] · b[..., k, n]: a row of a zipped with a
        column of b, a batch axis of size one broadcast), `linear_backward` (dx[r, k] = fold over n of
        dy[r, n] · w[n, k]; dw[n, k] = fold over r of dy[r, n] · x[r, k]; db[n] = fold over r of
        dy[r, n]), `sum_rows` (fold over r of x[r, e]), `layer_norm_backward` dw and db and
        `rms_norm_backward` dw (fold over r of dy[r, j] · x̂[r, j], and of dy[r, j]), and
        `fold_head_groups` (the grouped-query backward: kv head g = fold over m < G of head g · G + m,
        one head's elements apart; one piece only). One fold piece:
        at most MAX_FOLD terms. A fold over more terms, or whose reads load more than MAX_COLUMN_LOAD,
        is checked in pieces (`_piecings`): the entry's last output holds its running values, and a
        piece reads the one before it (REF_SELF) then its terms (docs/referee.md, "Folds in pieces").
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
# word and a value add about as much gas with values drawn like a trained model's (docs/gas.md).
MAX_COLUMN_LOAD: constant(uint256) = 404
# A fold in one piece also keeps three times its load plus its values within MAX_WHOLE_WEIGHT: a proof word
# costs about 1,220 gas and a value about 1,640 with adversarial values (subnormal times large products, exact
# cancellations of subnormal sums), a fit over contiguous and strided columns (docs/referee.md "Fold weight").
# The dearest accepted, 123 terms of two contiguous columns (load 292) and strided columns 8 apart, stay under
# 1,000,000 gas with such values, rank-8 shapes and eight-axis sources; `load + values <= 538` let in strided
# columns at up to 1,060,379. (A tiny GPT's dW of 64 rows by 16, 16 apart: load 404, weight 1,340, in pieces.)
MAX_WHOLE_WEIGHT: constant(uint256) = 1_122
# What a source tensor larger than the kernel's read of it (a prefix) adds: one sibling a level above.
COLUMN_SLACK: constant(uint256) = 2 * commitments.MAX_TENSOR_DEPTH
MAX_COLUMN_PROOF: constant(uint256) = MAX_COLUMN_LOAD + COLUMN_SLACK
# The load of one piece of linear or fold_head_groups, and of an embedding_backward piece (row_rules).
MAX_PIECE_LOAD: constant(uint256) = 280
# The load of a whole linear (one piece): at MAX_PIECE_LOAD an attacker review's built values (W subnormal, every
# add an exact cancellation) cost up to 992,735 gas with the widest skeleton; at 270 at most 977,075, keeping the
# dearest built element 2 % under the target (docs/referee.md "Margins").
MAX_LINEAR_WHOLE_LOAD: constant(uint256) = 270
# A fold piece's weight (`_piece_weight`): three times its load plus its values, as a whole fold's, each read's
# words counted in a source of at least KIT_CHUNKS chunks (the largest a kit holds, 2**31 binary32: a read may be a
# prefix of one, a sibling more a level above the input's own tree). A piece also pays its entry's plan (up to about
# 270,000 gas more than a whole fold's, three folded outputs) and proves its running value, hence a lower cap:
# pieces at MAX_PIECE_LOAD = 280 whose rows straddle the tensor tree's subtrees measured up to 1,080,263 gas. In an
# entry with an output in pieces every element pays that plan, so its other folds stay whole only within this cap.
MAX_PIECE_WEIGHT: constant(uint256) = 620
KIT_CHUNKS: constant(uint256) = 1 << 28
MAX_PIECED: constant(uint256) = 3  # outputs of one entry a fold rule may cut in pieces (linear_backward's three)
REF_SELF: constant(uint256) = 7  # RefereeGame's read of an output of the pinned entry itself
SELF_READ: constant(uint256) = 1_000  # a REF_SELF read's `input`: SELF_READ + the output read (the Python mirror's k)

KERNEL_MATMUL: constant(uint256) = 1
KERNEL_LINEAR_BACKWARD: constant(uint256) = 2
KERNEL_SUM_ROWS: constant(uint256) = 3
KERNEL_LAYER_NORM_BACKWARD: constant(uint256) = 4
KERNEL_RMS_NORM_BACKWARD: constant(uint256) = 5
KERNEL_HEAD_GROUPS: constant(uint256) = 6  # fold_head_groups: the grouped-query backward's sum of a group's heads
KERNEL_LINEAR: constant(uint256) = 7  # linear where HostRules cannot: K not a power of two from 8 to 256
EPILOGUE_ADD: constant(uint256) = 1  # element_rules' fold epilogue: + the last value (linear's bias)
KERNEL_NONE: constant(uint256) = 0


# How one folded output is checked in pieces (`_piecings`): `terms` per element, `pieces` pieces of
# `length` terms (the last the rest); the running value of its element e after piece c < pieces - 1 is
# element offset + c · size + e of the entry's last output.
struct Piecing:
    output: uint256
    terms: uint256
    length: uint256
    pieces: uint256
    offset: uint256
    size: uint256


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
    if name_key == 34856908537328515503012867101046640505616:  # fold_head_groups
        return KERNEL_HEAD_GROUPS
    if name_key == 30515220352954886:  # linear
        return KERNEL_LINEAR
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
    # the levels below `start` and their parents all hold `count` distinct nodes (stride >= 8 · 2**(l + 1)):
    # each adds `count` siblings (what the loop adds there, in closed form)
    start: uint256 = 0
    for level: uint256 in range(commitments.MAX_TENSOR_DEPTH):
        if start + 1 >= depth or stride < 8 << (start + 1):
            break
        start += 1
    if start != 0:
        words += start * count
        hi, lo = self._level_nodes(start, depth, stride, count)
    span: uint256 = (count - 1) * stride
    for level: uint256 in range(start, start + commitments.MAX_TENSOR_DEPTH, bound=commitments.MAX_TENSOR_DEPTH):
        if level >= depth:
            break
        unit: uint256 = 8 << level
        if span < unit and stride < unit:
            # from here up every level holds hi = min(count, 2) nodes and lo = 1: each adds hi siblings
            # but the last (under the root), which adds 1 (the same sum the loop makes, in closed form)
            return words + (depth - 1 - level) * min(count, 2) + 1
        # the parents' level, as `_level_nodes(level + 1, ...)` (inline: a call a level costs more than the level)
        up_hi: uint256 = 1
        up_lo: uint256 = 1
        if level + 1 < depth:
            if stride >= unit << 1:
                up_hi = count
                up_lo = count
            else:
                q: uint256 = span // (unit << 1)
                up_hi = min(count, q + 2)
                up_lo = q + 1
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
def _base_outputs(kernel: uint256) -> uint256:
    """
    @notice The outputs a fold kernel makes (before the running values of its pieces).
    @param kernel A KERNEL_* code other than KERNEL_NONE.
    @return matmul, sum_rows, fold_head_groups and linear 1, rms_norm_backward 2, linear_backward
            and layer_norm_backward 3.
    """
    if kernel == KERNEL_MATMUL or kernel == KERNEL_SUM_ROWS or kernel == KERNEL_HEAD_GROUPS or kernel == KERNEL_LINEAR:
        return 1
    if kernel == KERNEL_RMS_NORM_BACKWARD:
        return 2
    return 3


@internal
@pure
def _input_count(parsed: host_rules.Skeleton, kernel: uint256) -> uint256:
    """
    @notice The inputs a fold kernel reads, named in order by its arguments.
    @param parsed The parsed skeleton (linear's bias is optional).
    @param kernel A KERNEL_* code other than KERNEL_NONE.
    @return sum_rows and fold_head_groups 1, matmul 2, linear 2 or 3 (with its bias), linear_backward
            3, the norm backwards 4.
    """
    if kernel == KERNEL_SUM_ROWS or kernel == KERNEL_HEAD_GROUPS:
        return 1
    if kernel == KERNEL_LINEAR:
        return min(max(parsed.input_count, 2), 3)
    if kernel == KERNEL_MATMUL:
        return 2
    if kernel == KERNEL_LINEAR_BACKWARD:
        return 3
    return 4


@internal
@pure
def _folded(kernel: uint256, output: uint256) -> bool:
    """
    @notice Whether an output of a fold kernel is a fold down a column (or a row of a and a column of b).
    @param kernel A KERNEL_* code other than KERNEL_NONE.
    @param output The output.
    @return Whether it is (a norm's dx is a row rule's, not folded here).
    """
    if kernel == KERNEL_LINEAR_BACKWARD:
        return output < 3
    if kernel == KERNEL_LAYER_NORM_BACKWARD:
        return output == 1 or output == 2
    return output == 1 if kernel == KERNEL_RMS_NORM_BACKWARD else output == 0


@internal
@pure
def _shapes_fit(parsed: host_rules.Skeleton, kernel: uint256) -> bool:
    """
    @notice The shapes each fold's index map assumes, of the inputs and of every folded output.
    @param parsed The parsed skeleton.
    @param kernel Its KERNEL_* code (not KERNEL_NONE).
    @return Whether every element of every folded output can be planned.
    """
    if parsed.input_count != self._input_count(parsed, kernel) or len(parsed.outputs) < self._base_outputs(kernel):
        return False
    if kernel == KERNEL_MATMUL:
        # a [..., M, K] and b [..., K, N] to c [..., M, N]
        shape: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[0].dims
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
    if kernel == KERNEL_HEAD_GROUPS:
        # x [B, H, ...] to [B, H / G, ...]: element (b, g, ...) is the fold over m < G of x[b, g · G + m, ...]
        x: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        out: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[0].dims
        group: uint256 = self._group(parsed)
        if len(x) < 2 or len(out) != len(x) or group == 0 or x[1] % group != 0:
            return False
        wanted: DynArray[uint256, commitments.MAX_NDIM] = x
        wanted[1] = x[1] // group
        return host_rules._same_dims(out, wanted)
    if kernel == KERNEL_LINEAR:
        return self._linear_fits(parsed)
    if kernel == KERNEL_SUM_ROWS:
        # x [R, ...] to [...]: element e is the fold over r of x[r, e]
        x: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        return len(x) >= 1 and x[0] >= 1 and x[0] * commitments._element_count(parsed.outputs[0].dims) == commitments._element_count(x)
    if kernel == KERNEL_LINEAR_BACKWARD:
        # x [..., K], w [N, K], dy [..., N] with the same R rows; dx of R · K, dw [N, K], db [N]
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
    # layer_norm_backward (dw, db) and rms_norm_backward (dw): x̂ and dy [..., W], folded outputs of W
    xhat: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
    if len(xhat) == 0 or xhat[len(xhat) - 1] == 0:
        return False
    width: uint256 = xhat[len(xhat) - 1]
    if commitments._element_count(parsed.outputs[1].dims) != width:
        return False
    if kernel == KERNEL_LAYER_NORM_BACKWARD and commitments._element_count(parsed.outputs[2].dims) != width:
        return False
    return host_rules._same_dims(parsed.inputs[3].dims, xhat) and commitments._element_count(xhat) >= width


@internal
@pure
def _linear_fits(parsed: host_rules.Skeleton) -> bool:
    """
    @notice linear(x, W, b) where HostRules cannot plan it: x [..., K] and y [..., N] of the same rank
            and rows, W [N, K], b [N] when argument 2 names input 2 (else None), and K not a power of two
            from 8 to 256 (those HostRules decides as one run: leaving them out keeps their record
            without running values).
    @param parsed The parsed skeleton (its inputs counted).
    @return Whether every element can be planned.
    """
    x: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
    w: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[1].dims
    y: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[0].dims
    if len(x) == 0 or len(x) != len(y) or len(w) != 2 or w[0] == 0 or w[1] == 0:
        return False
    terms: uint256 = w[1]
    if x[len(x) - 1] != terms or y[len(y) - 1] != w[0]:
        return False
    if terms >= 8 and terms <= MAX_FOLD and terms & (terms - 1) == 0:
        return False
    if commitments._element_count(x) // terms != commitments._element_count(y) // w[0]:
        return False
    if parsed.input_count == 2:
        return host_rules._arg(parsed, 2) == 0
    return host_rules._same_dims(parsed.inputs[2].dims, [w[0]])


@internal
@pure
def _group(parsed: host_rules.Skeleton) -> uint256:
    """
    @notice fold_head_groups' group size G: its second argument, a non-negative integer word (0 for any
            other word, which no shape fits).
    @param parsed The parsed skeleton (two arguments).
    @return G, or 0.
    """
    word: uint256 = host_rules._arg(parsed, 1)
    if word >> 248 != host_rules.TAG_INT or word & host_rules.INT_SIGN != 0:
        return 0
    return word & (host_rules.INT_RANGE - 1)


@internal
@pure
def _load_at(reads: DynArray[host_rules.Read, host_rules.MAX_READS], chunks: DynArray[uint256, host_rules.MAX_READS], count: uint256) -> uint256:
    """
    @notice The column proof words (`_column_words`) plus the values of `reads` cut to `count` elements each.
    @param reads A plan's column reads.
    @param chunks The chunks of each read's input.
    @param count The elements of each.
    @return The load.
    """
    load: uint256 = 0
    for i: uint256 in range(host_rules.MAX_READS):
        if i >= len(reads):
            break
        cut: uint256 = min(count, reads[i].count)  # (a bias read stays one value)
        load += self._column_words(chunks[i], reads[i].stride, cut) + cut
    return load


@internal
@pure
def _piece_weight(reads: DynArray[host_rules.Read, host_rules.MAX_READS], chunks: DynArray[uint256, host_rules.MAX_READS], count: uint256) -> uint256:
    """
    @notice Three times the load of `reads` cut to `count` elements each, every read's words counted in a
            source of at least KIT_CHUNKS chunks, plus their values (`protocol.fold_rules.piece_weight`).
    @param reads A plan's column reads.
    @param chunks The chunks of each read's input.
    @param count The elements of each.
    @return The weight.
    """
    load: uint256 = 0
    values: uint256 = 0
    for i: uint256 in range(host_rules.MAX_READS):
        if i >= len(reads):
            break
        cut: uint256 = min(count, reads[i].count)  # (a bias read stays one value)
        load += self._column_words(max(chunks[i], KIT_CHUNKS), reads[i].stride, cut) + cut
        values += cut
    return 3 * load + values


@internal
@pure
def _load_floor(reads: DynArray[host_rules.Read, host_rules.MAX_READS], count: uint256) -> uint256:
    """
    @notice A floor of `_load_at` (the chunks a read's bound counts at level 0 plus its values), cheap to
            compute: a piece length whose floor is over the load fails without its exact load.
    @param reads A plan's column reads.
    @param count The elements of each.
    @return The floor.
    """
    least: uint256 = 0
    for read: host_rules.Read in reads:
        cut: uint256 = min(count, read.count)
        if read.stride >= 8:
            least += 2 * cut
        else:
            least += cut + min(cut, (cut - 1) * read.stride // 8 + 2)
    return least


@internal
@pure
def _piece_length(parsed: host_rules.Skeleton, reads: DynArray[host_rules.Read, host_rules.MAX_READS], pieced_entry: bool) -> uint256:
    """
    @notice The terms of one piece of a fold whose whole column reads are `reads` (each of its terms): 0
            when the whole fold is one piece (at most MAX_FOLD terms within MAX_COLUMN_LOAD, or
            MAX_PIECE_LOAD for fold_head_groups and MAX_LINEAR_WHOLE_LOAD for linear, and within
            MAX_WHOLE_WEIGHT; in an entry with
            another output in pieces, whose every element pays the piecings' plan, within
            MAX_PIECE_WEIGHT as a piece), else the largest power of two up to MAX_FOLD whose piece and last
            piece weigh at most MAX_PIECE_WEIGHT (1 always does: a word per level and a value per read).
    @param parsed The parsed skeleton.
    @param reads The column reads of element 0 (every element's have the same counts and strides).
    @param pieced_entry Whether another output of the entry is in pieces.
    @return The piece length, or 0.
    """
    chunks: DynArray[uint256, host_rules.MAX_READS] = []
    for read: host_rules.Read in reads:
        chunks.append(commitments._chunk_count(commitments.DTYPE_FLOAT32, parsed.inputs[read.input].dims))
    terms: uint256 = reads[0].count
    # fold_head_groups and linear (a lone column of many chunks; a third read, the bias, beyond the load)
    # cost more a unit of load: one piece of them loads at most MAX_PIECE_LOAD, a whole linear MAX_LINEAR_WHOLE_LOAD
    # (personas/decoder_worst_case.py)
    whole: uint256 = MAX_COLUMN_LOAD
    kernel: uint256 = self._kernel(parsed.name_key)
    if kernel == KERNEL_HEAD_GROUPS:
        whole = MAX_PIECE_LOAD
    elif kernel == KERNEL_LINEAR:
        whole = MAX_LINEAR_WHOLE_LOAD
    if terms <= MAX_FOLD and pieced_entry:
        if self._piece_weight(reads, chunks, terms) <= MAX_PIECE_WEIGHT:
            return 0
    elif terms <= MAX_FOLD:
        load: uint256 = self._load_at(reads, chunks, terms)
        values: uint256 = 0
        for read: host_rules.Read in reads:
            values += min(terms, read.count)
        if load <= whole and 3 * load + values <= MAX_WHOLE_WEIGHT:
            return 0
    length: uint256 = MAX_FOLD
    # every candidate of `terms` or more is one and the same piece (each read cut to `terms`): it is weighed once,
    # and in a pieced entry not at all (the test above was that very weight); the calibration sweep measured a
    # 31-term dW weighed again at 256, 128, 64 and 32 in a 1,016,329-gas dx piece
    weighed: bool = pieced_entry and terms <= MAX_FOLD
    for i: uint256 in range(8):
        if length < terms or not weighed:
            weighed = True
            last: uint256 = terms - (terms - 1) // length * length
            # nested, so each weight is computed only when the cheaper test before it passes (a short last piece
            # otherwise paid its weight at every candidate length: about 85,000 gas, an attacker review)
            if 3 * self._load_floor(reads, length) <= MAX_PIECE_WEIGHT:
                if self._piece_weight(reads, chunks, length) <= MAX_PIECE_WEIGHT:
                    if last == length or self._piece_weight(reads, chunks, last) <= MAX_PIECE_WEIGHT:
                        break
        length //= 2
    return length


@internal
@pure
def _piecings(parsed: host_rules.Skeleton, kernel: uint256) -> DynArray[Piecing, MAX_PIECED]:
    """
    @notice The folded outputs of a shape-fitting entry checked in pieces, in output order, with where each
            one's running values lie in the entry's last output (none when every element is one piece). A
            function of the kernel and the shapes, as `protocol.fold_rules.piecings`.
    @param parsed The parsed skeleton (`_shapes_fit`).
    @param kernel Its KERNEL_* code.
    @return The piecings.
    """
    found: DynArray[Piecing, MAX_PIECED] = []
    offset: uint256 = 0
    reads: DynArray[DynArray[host_rules.Read, host_rules.MAX_READS], 3] = []
    lengths: uint256[3] = empty(uint256[3])
    pieced_entry: bool = False
    for output: uint256 in range(3):
        reads.append([])
        if self._folded(kernel, output):
            reads[output] = self._plan_of(parsed, kernel, output, 0).reads
            lengths[output] = self._piece_length(parsed, reads[output], False)
            pieced_entry = pieced_entry or lengths[output] != 0
    for output: uint256 in range(3):
        if not self._folded(kernel, output):
            continue
        length: uint256 = lengths[output]
        if length == 0 and pieced_entry:
            # every element of a pieced entry pays the piecings' plan: a fold whole within MAX_WHOLE_WEIGHT
            # stays whole only within a piece's weight (an attacker review, 2026-12-07)
            length = self._piece_length(parsed, reads[output], True)
        if length != 0:
            terms: uint256 = reads[output][0].count
            size: uint256 = commitments._element_count(parsed.outputs[output].dims)
            pieces: uint256 = (terms + length - 1) // length
            found.append(Piecing(output=output, terms=terms, length=length, pieces=pieces, offset=offset, size=size))
            offset += (pieces - 1) * size
    return found


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
    elif kernel == KERNEL_HEAD_GROUPS:
        # (b, g, rest): the heads g · G … g · G + G - 1 of batch b at rest, one head's elements apart
        heads: uint256 = parsed.inputs[0].dims[1]
        inner: uint256 = commitments._element_count(parsed.inputs[0].dims) // (parsed.inputs[0].dims[0] * heads)
        kept: uint256 = parsed.outputs[0].dims[1]
        group: uint256 = heads // kept
        b: uint256 = element // (kept * inner)
        g: uint256 = element // inner % kept
        plan.params = [1, 0, 0, 0]
        plan.zipped = False
        plan.reads = [self._strided(parsed, 0, (b * heads + g * group) * inner + element % inner, group, inner)]
    elif kernel == KERNEL_LINEAR:
        # y[r, n]: row r of x zipped with row n of W (runs: stride 1), then + b[n]
        terms: uint256 = parsed.inputs[1].dims[1]
        width: uint256 = parsed.inputs[1].dims[0]
        plan.reads = [self._strided(parsed, 0, element // width * terms, terms, 1), self._strided(parsed, 1, element % width * terms, terms, 1)]
        if parsed.input_count == 3:
            plan.reads.append(self._strided(parsed, 2, element % width, 1, 1))
            plan.params[2] = EPILOGUE_ADD
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
    @notice Whether every element of this output can be decided (`_check`).
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether it is checkable.
    """
    checkable: bool = False
    pieced: DynArray[Piecing, MAX_PIECED] = []
    checkable, pieced = self._check(parsed, output)
    return checkable


@internal
@pure
def _check(parsed: host_rules.Skeleton, output: uint256) -> (bool, DynArray[Piecing, MAX_PIECED]):
    """
    @notice Whether every element of this output can be decided: a fold kernel, a binary32 output of at
            least one element, binary32 inputs that are state tensors or earlier outputs named in order
            by the arguments, the shapes its index map assumes; then either the kernel's outputs alone
            and the disputed one folded in one piece (at most MAX_FOLD terms whose reads' column proof
            words, bounded for every element by `_column_words`, and values fit MAX_COLUMN_LOAD), or
            one more output, the running values of the outputs in pieces (`_piecings`, some), shaped as
            they say, and the disputed output a folded one or the running values. A norm backward whose
            rows are in pieces (`host_rules._norm_backward_pieced`) has its row statistics as its last
            output (row_piece_rules.vy decides them): they are left out here.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether it is checkable, and the entry's piecings (computed only with running values).
    """
    kernel: uint256 = self._kernel(parsed.name_key)
    if kernel == KERNEL_NONE or output >= len(parsed.outputs) or parsed.input_count > host_rules.MAX_INPUTS:
        return False, []
    if parsed.outputs[output].code != commitments.DTYPE_FLOAT32:
        return False, []
    for ref: host_rules.Ref in parsed.inputs:
        if (ref.kind != host_rules.REF_STATE and ref.kind != host_rules.REF_OUTPUT) or ref.code != commitments.DTYPE_FLOAT32:
            return False, []
    if commitments._element_count(parsed.outputs[output].dims) == 0:
        return False, []
    arg_count: uint256 = self._input_count(parsed, kernel)
    if kernel == KERNEL_HEAD_GROUPS:
        arg_count = 2  # the group size follows the input
    if kernel == KERNEL_LINEAR:
        arg_count = 3  # x, W, then the bias or None
    if not host_rules._names_inputs(parsed, self._input_count(parsed, kernel)) or parsed.arg_count != arg_count:
        return False, []
    if not self._shapes_fit(parsed, kernel):
        return False, []
    base: uint256 = self._base_outputs(kernel)
    count: uint256 = len(parsed.outputs)
    if kernel == KERNEL_LAYER_NORM_BACKWARD or kernel == KERNEL_RMS_NORM_BACKWARD:
        widest: uint256 = host_rules.MAX_RMS_NORM_BACKWARD_ROW
        if kernel == KERNEL_LAYER_NORM_BACKWARD:
            widest = host_rules.MAX_LAYER_NORM_BACKWARD_ROW
        if host_rules._norm_backward_pieced(parsed.inputs[0], widest):
            # rows in pieces: the last output is the row statistics RowPieceRules decides, not a fold's
            count -= 1
            if output >= count:
                return False, []
    if count == base:
        # no running values: the disputed output in one piece
        if not self._folded(kernel, output):
            return False, []
        return self._piece_length(parsed, self._plan_of(parsed, kernel, output, 0).reads, False) == 0, []
    if kernel == KERNEL_HEAD_GROUPS:
        return False, []  # (a group of more heads than one piece holds has no running values: it escalates)
    pieced: DynArray[Piecing, MAX_PIECED] = self._piecings(parsed, kernel)
    if len(pieced) == 0 or count != base + 1:
        return False, []
    last: Piecing = pieced[len(pieced) - 1]
    running: DynArray[uint256, commitments.MAX_NDIM] = [last.offset + (last.pieces - 1) * last.size]
    if not host_rules._same_dims(parsed.outputs[base].dims, running):
        return False, []
    return self._folded(kernel, output) or output == base, pieced


@internal
@pure
def _piece_of(pieced: DynArray[Piecing, MAX_PIECED], base: uint256, output: uint256, element: uint256) -> (Piecing, uint256, uint256):
    """
    @notice Which piece decides an element: for running value offset + c · size + e of a pieced output,
            element e's piece c; for a pieced output's element, its last piece.
    @param pieced The entry's piecings.
    @param base The running values' output.
    @param output The disputed output.
    @param element The element's row-major index.
    @return (the piecing, empty for an element decided in one piece; the piece; the folded element).
    """
    for piecing: Piecing in pieced:
        if output == base and element >= piecing.offset and element < piecing.offset + (piecing.pieces - 1) * piecing.size:
            return piecing, (element - piecing.offset) // piecing.size, (element - piecing.offset) % piecing.size
        if output == piecing.output:
            return piecing, piecing.pieces - 1, element
    return empty(Piecing), 0, element


@internal
@pure
def _cut(parsed: host_rules.Skeleton, whole: host_rules.Plan, found: Piecing, piece: uint256, e: uint256, base: uint256) -> host_rules.Plan:
    """
    @notice One piece of a fold's plan: terms c · length … down the same columns (the last piece to the
            end), from +0 (c = 0) or from the running value after piece c - 1, a REF_SELF read of one
            element of the running values. That read is earlier in row-major order than the running value
            it decides (a challenger at the leftmost wrong running value agrees with it), or in another
            output of the entry than the pieced output's element it decides (the challenger disputes the
            running values when they are wrong).
    @param parsed The parsed skeleton.
    @param whole The plan of the whole fold of the folded element (`_plan_of`).
    @param found The output's piecing.
    @param piece The piece c.
    @param e The folded element.
    @param base The running values' output.
    @return The plan: RULE_FOLD, (arity, from the running value, no epilogue, 0), the running value's read
            first, then the columns (RefereeGame zips the two columns after it).
    """
    start: uint256 = piece * found.length
    count: uint256 = min(found.length, found.terms - start)
    plan: host_rules.Plan = whole
    plan.reads = []
    if piece > 0:
        dims: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
        dims[0] = parsed.outputs[base].dims[0]
        first: uint256 = found.offset + (piece - 1) * found.size + e
        plan.reads.append(
            host_rules.Read(input=SELF_READ + base, kind=REF_SELF, a=0, b=base, code=commitments.DTYPE_FLOAT32, ndim=1, dims=dims, first=first, count=1, stride=1)
        )
        plan.params[1] = 1
    for i: uint256 in range(host_rules.MAX_READS):
        if i >= len(whole.reads):
            break
        read: host_rules.Read = whole.reads[i]
        if i < whole.params[0]:  # the fold's terms: its first `arity` reads
            cut: host_rules.Read = read
            cut.first = read.first + start * read.stride
            cut.count = count
            plan.reads.append(cut)
        elif piece + 1 == found.pieces:
            plan.reads.append(read)  # the epilogue's value (linear's bias) after the last piece only
        else:
            plan.params[2] = 0  # a running value: no epilogue
    return plan


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
    checkable: bool = False
    pieced: DynArray[Piecing, MAX_PIECED] = []
    checkable, pieced = self._check(parsed, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "fold_rules: not a checkable element"
    kernel: uint256 = self._kernel(parsed.name_key)
    found: Piecing = empty(Piecing)
    piece: uint256 = 0
    e: uint256 = 0
    found, piece, e = self._piece_of(pieced, self._base_outputs(kernel), output, element)
    if found.pieces == 0:
        return self._plan_of(parsed, kernel, output, element)
    return self._cut(parsed, self._plan_of(parsed, kernel, found.output, e), found, piece, e, self._base_outputs(kernel))
