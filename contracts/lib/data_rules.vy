# pragma version ~=0.4.3
"""
@title data_rules
@notice The referee game's data rules (docs/referee.md, "Data rules built"): the selections whose
        place depends on a value, so the plan takes that value as a hint and reads both the selected
        element and the hint's proven source. `batch_index` (idx[b] = orders[epoch, position + b]: the
        hints are the cursor (epoch, position); the plan reads the agreed header's cursor, header
        fields 2 and 3, and the one element of the `orders` constant at the hinted place) and
        `gather` (out[p, d] = W[ids[p], d], W a state tensor, an earlier output or a constant such as
        a dataset, binary32 or int64, ids an int64 state tensor or earlier output: the hint is the id;
        the plan reads ids[p] and the one element of W at the hinted row). The element rule
        (`element_rules.vy` RULE_SELECT) reverts unless every hint equals its proven value, so a
        defender that hints another cursor or another id cannot prove: it loses on its clock, and an
        honest one always can. Also the rotations of a Llama-style decoder, which read fixed places
        and take no hints: `rotary` and `rotary_backward` (y[..., t, j] from x[..., t, j], its partner
        in the other half of the row and the tables cos[t, j], sin[t, j]; RULE_ROTARY), and max pooling,
        which reads fixed places too: `max_pool` (y[b, c, oh, ow] and the winner's place in its window,
        int64: the window's k rows of k, k at most MAX_POOL_WINDOW; RULE_MAX_POOL; a wider window, k at most
        MAX_POOL_PIECED, in pieces of 2 rows: the record carries the running best and place after each piece
        but the last as outputs 2 and 3, and a piece reads the slot before it (REF_SELF) then its rows) and
        `max_pool_backward` (over windows that do not overlap, k at most the stride: dx[b, c, h, w] reads
        the one covering window's winner and dy, none where no window covers it; RULE_MAX_POOL_BACKWARD
        with the element's place in that window; over overlapping windows, k over s and at most
        MAX_POOL_OVERLAP, in pieces of one window: the record carries the running values, slot t of an
        element its fold after its first t + 1 covering windows (row-major), as output 1, and a slot or dx
        reads the slot before it (REF_SELF) and its window's winner and dy). And the two moves a convolution is recorded with
        (engine/portable/record.py: conv2d is im2col, transposes and linear's fold; its input gradient
        col2im): `im2col` (cols[b, (c, i, j), (oh, ow)] = x[b, c, oh·s + i − p, ow·s + j − p], +0 outside
        the image: RULE_COPY of one element, or of none) and `col2im` (dx[b, c, h, w] = the fold over the
        (i, j), row-major, whose window covers (h, w), of dcols[b, (c, i, j), (oh, ow)]: per covering i
        one column read of the covering j, every s·L − 1 elements; RULE_FOLD; +0 where none covers).
@dev Pure (no state, no calls), deployed as `DataRules.vy` (RefereeGame's fourth rules slot). Its
     Python mirror is `protocol/data_rules.py` (`data_checkable`, `data_reads`), compared with it on
     every batch_index and gather entry of recorded steps (tests/unit/contracts/test_data_rules.py).
"""

from . import commitments
from . import fold_rules
from . import host_rules
from . import row_rules

RULE_SELECT: constant(uint256) = 38
KERNEL_NONE: constant(uint256) = 0
KERNEL_BATCH_INDEX: constant(uint256) = 1
KERNEL_GATHER: constant(uint256) = 2
KERNEL_ROTARY: constant(uint256) = 3
KERNEL_ROTARY_BACKWARD: constant(uint256) = 4
KERNEL_MAX_POOL: constant(uint256) = 5
KERNEL_MAX_POOL_BACKWARD: constant(uint256) = 6
RULE_ROTARY: constant(uint256) = 29
RULE_MAX_POOL: constant(uint256) = 30
RULE_MAX_POOL_BACKWARD: constant(uint256) = 31
# a max_pool window's k rows are read whole in at most 2 · k runs (a row across a 256-element boundary is two)
MAX_POOL_WINDOW: constant(uint256) = 3
# a wider max_pool window is read in pieces of 2 rows after the running best and place (6 reads, 2 + 2 · k values): at
# most 108 (the dearest honest prove_element, its rows split at 256 elements under the deepest record path and every
# value a new maximum, is 975,760 gas at k = 108, 2 % under the target (docs/referee.md "Margins"); 986,469 at 112,
# the cap until then; 1,007,856 at 127, the element rule's own bound: docs/gas.md)
MAX_POOL_PIECED: constant(uint256) = 108
# max_pool_backward over overlapping windows covering an element along an axis: k at most 3 (one window a piece)
MAX_POOL_OVERLAP: constant(uint256) = 3
# the windows covering a col2im element one fold decides: at most 4 rows of 4 (4 column reads; 5 rows of 5 cost up to
# 1,003,745 gas with their columns spread over a large dcols and values near the smallest normal: docs/gas.md)
MAX_COL2IM_ROWS: constant(uint256) = 4
# over MAX_COL2IM_ROWS covering rows, in pieces of whole rows: the record carries the running values as output 1, and a
# piece reads at most MAX_COL2IM_PIECE_TERMS terms after the running value (rows of R = ceil(k / s) columns at most:
# 20 // R rows a piece, so at most MAX_COL2IM_PIECE_TERMS windows cover an element a piece reads one row of)
MAX_COL2IM_PIECE_TERMS: constant(uint256) = 20
# the load of a col2im element's (or piece's) column reads, their proof words (`fold_rules._column_words`, from dcols'
# shape alone) and values: a larger image spreads the columns over more of dcols' tree, and over this an honest
# defender's proof would cost over 1,000,000 gas or not fit prove_element's column words (the element escalates)
MAX_COL2IM_LOAD: constant(uint256) = 370
KERNEL_IM2COL: constant(uint256) = 7
KERNEL_COL2IM: constant(uint256) = 8
RULE_FOLD: constant(uint256) = 0
RULE_COPY: constant(uint256) = 15
REF_SELF: constant(uint256) = 7  # an output of the pinned entry itself (RefereeGame proves it from the entry leaf)
SELF_READ: constant(uint256) = 1_000  # a REF_SELF read's `input`: SELF_READ + the output read (the mirror's k)

REF_HEADER: constant(uint256) = 4
REF_CONSTANT: constant(uint256) = 5
CURSOR_FIELD: constant(uint256) = 2  # the header values RefereeGame reads: seed, step, cursor epoch, position


@internal
@pure
def _kernel(name_key: uint256) -> uint256:
    """
    @notice The data kernel of a skeleton (by its name's key, host_rules._parse).
    @param name_key The kernel name's key.
    @return A KERNEL_* code.
    """
    if name_key == 30447346395254957766649149451:  # batch_index
        return KERNEL_BATCH_INDEX
    if name_key == 29099075196776966:  # gather
        return KERNEL_GATHER
    if name_key == 32210692986796294:  # rotary
        return KERNEL_ROTARY
    if name_key == 152110696950851584438631885028864451599:  # rotary_backward
        return KERNEL_ROTARY_BACKWARD
    if name_key == 2017718572589735963656:  # max_pool
        return KERNEL_MAX_POOL
    if name_key == 9528406559061352351649914280941526132614161:  # max_pool_backward
        return KERNEL_MAX_POOL_BACKWARD
    if name_key == 29674935738657798:  # im2col
        return KERNEL_IM2COL
    if name_key == 27988533187276038:  # col2im
        return KERNEL_COL2IM
    return KERNEL_NONE


@internal
@pure
def _is_table(ref: host_rules.Ref) -> bool:
    """
    @notice Whether a reference can be read as a binary32 tensor: a state tensor, an earlier output or a
            constant (the rotary tables are constants the skeleton binds).
    @param ref The reference.
    @return Whether it can.
    """
    kind_ok: bool = ref.kind == host_rules.REF_STATE or ref.kind == host_rules.REF_OUTPUT or ref.kind == REF_CONSTANT
    return kind_ok and ref.code == commitments.DTYPE_FLOAT32


@internal
@pure
def _rotary_checkable(parsed: host_rules.Skeleton) -> bool:
    """
    @notice rotary(x, cos, sin) and rotary_backward(dy, cos, sin): x binary32 [..., T, h] (a state tensor
            or an earlier output, at least two axes, h even and non-zero), cos and sin binary32 [T, h]
            (state tensors, earlier outputs or constants), one binary32 output of x's shape.
    @param parsed The parsed skeleton (one output, three inputs named in order).
    @return Whether every element of output 0 is checkable.
    """
    x: host_rules.Ref = parsed.inputs[0]
    shape: host_rules.Ref = parsed.outputs[0]
    if x.kind == REF_CONSTANT or not self._is_table(x) or not self._is_table(parsed.inputs[1]):
        return False
    if not self._is_table(parsed.inputs[2]) or shape.code != commitments.DTYPE_FLOAT32:
        return False
    ndim: uint256 = len(x.dims)
    if ndim < 2 or not host_rules._same_dims(x.dims, shape.dims):
        return False
    table: DynArray[uint256, commitments.MAX_NDIM] = [x.dims[ndim - 2], x.dims[ndim - 1]]
    if not host_rules._same_dims(parsed.inputs[1].dims, table) or not host_rules._same_dims(parsed.inputs[2].dims, table):
        return False
    return table[1] % 2 == 0 and commitments._element_count(shape.dims) != 0


@internal
@pure
def _checkable(parsed: host_rules.Skeleton, output: uint256) -> bool:
    """
    @notice Whether every element of this output can be checked. batch_index(header, orders): the
            header and an int64 constant [E, n] in, one int64 output [B] with 1 <= B <= n. gather(W,
            ids): W of at least one axis, binary32 or int64, a state tensor, an earlier output or a
            constant; ids int64, a state tensor or an earlier output; one non-empty output of W's dtype
            and shape ids' dims then W's dims after the first.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether the rules plan every element of this output.
    """
    kernel: uint256 = self._kernel(parsed.name_key)
    if kernel == KERNEL_MAX_POOL or kernel == KERNEL_MAX_POOL_BACKWARD:
        return self._pool_checkable(parsed, kernel, output)
    if kernel == KERNEL_IM2COL or kernel == KERNEL_COL2IM:
        return self._columns_checkable(parsed, kernel, output)
    operands: uint256 = 2
    if kernel >= KERNEL_ROTARY:
        operands = 3
    # (checked before any input or output is indexed: a malformed skeleton is not checkable, never a revert)
    if kernel == KERNEL_NONE or output != 0 or len(parsed.outputs) != 1 or parsed.arg_count != operands:
        return False
    if not host_rules._names_inputs(parsed, operands):
        return False
    if kernel >= KERNEL_ROTARY:
        return self._rotary_checkable(parsed)
    shape: host_rules.Ref = parsed.outputs[0]
    if kernel == KERNEL_BATCH_INDEX:
        orders: host_rules.Ref = parsed.inputs[1]
        return (
            parsed.inputs[0].kind == REF_HEADER
            and orders.kind == REF_CONSTANT
            and orders.code == commitments.DTYPE_INT64
            and len(orders.dims) == 2
            and orders.dims[0] != 0
            and shape.code == commitments.DTYPE_INT64
            and len(shape.dims) == 1
            and shape.dims[0] != 0
            and shape.dims[0] <= orders.dims[1]
        )
    source: host_rules.Ref = parsed.inputs[0]
    ids: host_rules.Ref = parsed.inputs[1]
    source_ok: bool = source.kind == host_rules.REF_STATE or source.kind == host_rules.REF_OUTPUT or source.kind == REF_CONSTANT
    ids_ok: bool = ids.kind == host_rules.REF_STATE or ids.kind == host_rules.REF_OUTPUT
    if not source_ok or not ids_ok or ids.code != commitments.DTYPE_INT64 or len(source.dims) == 0:
        return False
    if source.code != commitments.DTYPE_FLOAT32 and source.code != commitments.DTYPE_INT64:
        return False
    if shape.code != source.code or len(ids.dims) + len(source.dims) - 1 != len(shape.dims):
        return False
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(shape.dims):
            break
        expected: uint256 = 0
        if i < len(ids.dims):
            expected = ids.dims[i]
        else:
            expected = source.dims[i - len(ids.dims) + 1]
        if shape.dims[i] != expected:
            return False
    return source.dims[0] != 0 and commitments._element_count(shape.dims) != 0


@internal
@pure
def _small(word: uint256) -> uint256:
    """
    @notice A positive integer argument below 2**32, or 0 for any other word.
    @param word The argument word.
    @return Its value, or 0.
    """
    value: uint256 = word & (host_rules.INT_RANGE - 1)
    if word >> 248 != host_rules.TAG_INT or value >= 1 << 32:
        return 0
    return value


@internal
@pure
def _pooled(parsed: host_rules.Skeleton, kernel: uint256) -> (uint256, uint256, DynArray[uint256, commitments.MAX_NDIM], DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice A max pooling entry's k, stride s, image shape [B, C, H, W] (x's; the backward's output's) and
            pooled shape [B, C, OH, OW]; k 0 when its arguments or shapes are not the kernel's.
    @param parsed The parsed skeleton.
    @param kernel KERNEL_MAX_POOL or KERNEL_MAX_POOL_BACKWARD.
    @return (k, s, image, pooled).
    """
    arguments: uint256 = 3
    inputs: uint256 = 1
    if kernel == KERNEL_MAX_POOL_BACKWARD:
        arguments = 5
        inputs = 2
    if parsed.arg_count != arguments or parsed.input_count != inputs or len(parsed.outputs) == 0:
        return 0, 0, [], []
    k: uint256 = self._small(parsed.args[arguments - 2])
    s: uint256 = self._small(parsed.args[arguments - 1])
    image: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[0].dims
    if kernel == KERNEL_MAX_POOL:
        image = parsed.inputs[0].dims
    if k == 0 or s == 0 or len(image) != 4 or image[2] < k or image[3] < k:
        return 0, 0, [], []
    return k, s, image, [image[0], image[1], (image[2] - k) // s + 1, (image[3] - k) // s + 1]


@internal
@pure
def _pool_checkable(parsed: host_rules.Skeleton, kernel: uint256, output: uint256) -> bool:
    """
    @notice max_pool(x, k, s): x binary32 [B, C, H, W], a state tensor or an earlier output, named by
            argument 0, k at most MAX_POOL_PIECED; outputs y binary32 and the winners int64, both of the
            pooled shape, and over MAX_POOL_WINDOW the running best binary32 and place int64, both
            [P − 1, B, C, OH, OW] with P = ceil(k / 2) the pieces of 2 rows. max_pool_backward(shape, where,
            dy, k, s): shape the output's (its tuple word),
            where int64 and dy binary32 of the pooled shape (state tensors or earlier outputs) named by
            arguments 1 and 2; k at most s (windows that do not overlap) and one binary32 output of shape, or
            k over s and at most MAX_POOL_OVERLAP and a second output, the running values, binary32
            [R² − 1, B, C, H, W] with R = ceil(k / s) the most windows covering an element along an axis.
    @param parsed The parsed skeleton.
    @param kernel KERNEL_MAX_POOL or KERNEL_MAX_POOL_BACKWARD.
    @param output The disputed output.
    @return Whether every element of it is checkable.
    """
    k: uint256 = 0
    s: uint256 = 0
    image: DynArray[uint256, commitments.MAX_NDIM] = []
    pooled: DynArray[uint256, commitments.MAX_NDIM] = []
    k, s, image, pooled = self._pooled(parsed, kernel)
    if k == 0 or commitments._element_count(image) == 0:
        return False
    source: uint256 = 0
    if kernel == KERNEL_MAX_POOL_BACKWARD:
        source = 1
    ok: bool = True
    for i: uint256 in range(2):
        if i >= parsed.input_count:
            break
        ref: host_rules.Ref = parsed.inputs[i]
        code: uint256 = commitments.DTYPE_FLOAT32
        if kernel == KERNEL_MAX_POOL_BACKWARD and i == 0:
            code = commitments.DTYPE_INT64
        ok = ok and (ref.kind == host_rules.REF_STATE or ref.kind == host_rules.REF_OUTPUT) and ref.code == code
        ok = ok and parsed.args[source + i] == (host_rules.TAG_INPUT << 248) | i
        if kernel == KERNEL_MAX_POOL_BACKWARD:
            ok = ok and host_rules._same_dims(ref.dims, pooled)
    y: host_rules.Ref = parsed.outputs[0]
    if kernel == KERNEL_MAX_POOL_BACKWARD:
        ok = ok and parsed.args[0] == host_rules._tuple_word(image) and y.code == commitments.DTYPE_FLOAT32
        if k <= s:
            return ok and output == 0 and len(parsed.outputs) == 1
        rows: uint256 = (k + s - 1) // s
        running: host_rules.Ref = parsed.outputs[len(parsed.outputs) - 1]
        slots: DynArray[uint256, commitments.MAX_NDIM] = [rows * rows - 1, image[0], image[1], image[2], image[3]]
        return (
            ok
            and output < 2
            and len(parsed.outputs) == 2
            and k <= MAX_POOL_OVERLAP
            and running.code == commitments.DTYPE_FLOAT32
            and host_rules._same_dims(running.dims, slots)
        )
    outputs: uint256 = 2
    if k > MAX_POOL_WINDOW:
        # in pieces: the running best and place after each piece but the last
        outputs = 4
        if len(parsed.outputs) != 4:
            return False
        slots: DynArray[uint256, commitments.MAX_NDIM] = [(k + 1) // 2 - 1, pooled[0], pooled[1], pooled[2], pooled[3]]
        ok = (
            ok
            and parsed.outputs[2].code == commitments.DTYPE_FLOAT32
            and host_rules._same_dims(parsed.outputs[2].dims, slots)
            and parsed.outputs[3].code == commitments.DTYPE_INT64
            and host_rules._same_dims(parsed.outputs[3].dims, slots)
        )
    return (
        ok
        and output < outputs
        and k <= MAX_POOL_PIECED
        and len(parsed.outputs) == outputs
        and y.code == commitments.DTYPE_FLOAT32
        and host_rules._same_dims(y.dims, pooled)
        and parsed.outputs[1].code == commitments.DTYPE_INT64
        and host_rules._same_dims(parsed.outputs[1].dims, pooled)
    )


@internal
@pure
def _columns_geometry(parsed: host_rules.Skeleton, kernel: uint256) -> (uint256[4], uint256[4], DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice An im2col or col2im entry's [k, s, p, OW], its image [B, C, H, W] (x's; col2im's output's) and
            the columns' shape [B, C·k·k, OH·OW]; k 0 when its arguments or shapes are not the kernel's.
    @param parsed The parsed skeleton.
    @param kernel KERNEL_IM2COL or KERNEL_COL2IM.
    @return ([k, s, p, OW], the image's dims, the columns' dims).
    """
    arguments: uint256 = 4
    if kernel == KERNEL_COL2IM:
        arguments = 5
    nothing: uint256[4] = empty(uint256[4])
    outputs: uint256 = 1
    if kernel == KERNEL_COL2IM:
        outputs = 2  # in pieces: the running values (_columns_checkable asks for them exactly where they are due)
    if parsed.arg_count != arguments or parsed.input_count != 1 or len(parsed.outputs) == 0 or len(parsed.outputs) > outputs:
        return nothing, nothing, []
    k: uint256 = self._small(parsed.args[arguments - 3])
    s: uint256 = self._small(parsed.args[arguments - 2])
    word: uint256 = parsed.args[arguments - 1]
    padding: uint256 = word & (host_rules.INT_RANGE - 1)  # p may be 0
    image: DynArray[uint256, commitments.MAX_NDIM] = parsed.outputs[0].dims
    if kernel == KERNEL_IM2COL:
        image = parsed.inputs[0].dims
    if k == 0 or s == 0 or word >> 248 != host_rules.TAG_INT or padding >= 1 << 32 or len(image) != 4:
        return nothing, nothing, []
    if image[2] + 2 * padding < k or image[3] + 2 * padding < k:
        return nothing, nothing, []
    oh: uint256 = (image[2] + 2 * padding - k) // s + 1
    ow: uint256 = (image[3] + 2 * padding - k) // s + 1
    # a columns' dimension over MAX_DIM is no tensor's (its element count would revert)
    if image[1] * k * k > commitments.MAX_DIM or oh * ow > commitments.MAX_DIM:
        return nothing, nothing, []
    return [k, s, padding, ow], [image[0], image[1], image[2], image[3]], [image[0], image[1] * k * k, oh * ow]


@internal
@pure
def _columns_checkable(parsed: host_rules.Skeleton, kernel: uint256, output: uint256) -> bool:
    """
    @notice im2col(x, k, s, p): x binary32 [B, C, H, W] (a state tensor or an earlier output) named by
            argument 0, one binary32 output [B, C·k·k, OH·OW]. col2im(dcols, shape, k, s, p): dcols binary32
            [B, C·k·k, OH·OW] (a state tensor or an earlier output) named by argument 0, shape the output's
            (its tuple word), one binary32 output [B, C, H, W] where at most MAX_COL2IM_ROWS rows i of a
            window cover an element (R = ceil(k / s): one column read each); where more, at most
            MAX_COL2IM_PIECE_TERMS, a second output, the running values, binary32 [P − 1, B, C, H, W] (P pieces
            of G = MAX_COL2IM_PIECE_TERMS // R rows: `_col2im_pieces`), and either output checkable; a piece's
            (or the one fold's) column reads load at most MAX_COL2IM_LOAD (`_col2im_load`).
    @param parsed The parsed skeleton.
    @param kernel KERNEL_IM2COL or KERNEL_COL2IM.
    @param output The disputed output.
    @return Whether every element of it is checkable.
    """
    conv: uint256[4] = empty(uint256[4])
    image: uint256[4] = empty(uint256[4])
    cols: DynArray[uint256, commitments.MAX_NDIM] = []
    conv, image, cols = self._columns_geometry(parsed, kernel)
    if conv[0] == 0 or output >= len(parsed.outputs) or commitments._element_count(cols) == 0:
        return False
    source: host_rules.Ref = parsed.inputs[0]
    y: host_rules.Ref = parsed.outputs[0]
    ok: bool = (source.kind == host_rules.REF_STATE or source.kind == host_rules.REF_OUTPUT) and source.code == commitments.DTYPE_FLOAT32
    ok = ok and y.code == commitments.DTYPE_FLOAT32 and parsed.args[0] == host_rules.TAG_INPUT << 248
    if kernel == KERNEL_IM2COL:
        return ok and len(parsed.outputs) == 1 and host_rules._same_dims(y.dims, cols)
    ok = ok and host_rules._same_dims(source.dims, cols) and parsed.args[1] == host_rules._tuple_word(y.dims)
    group: uint256 = 0
    pieces: uint256 = 0
    group, pieces = self._col2im_pieces(conv[0], conv[1])
    ok = ok and pieces != 0 and self._col2im_load(conv, cols, group) <= MAX_COL2IM_LOAD
    if pieces <= 1:
        return ok and len(parsed.outputs) == 1
    running: host_rules.Ref = parsed.outputs[len(parsed.outputs) - 1]
    dims: DynArray[uint256, commitments.MAX_NDIM] = [pieces - 1, image[0], image[1], image[2], image[3]]
    return ok and len(parsed.outputs) == 2 and running.code == commitments.DTYPE_FLOAT32 and host_rules._same_dims(running.dims, dims)


@internal
@pure
def _col2im_load(conv: uint256[4], cols: DynArray[uint256, commitments.MAX_NDIM], group: uint256) -> uint256:
    """
    @notice The most a col2im element's or piece's column reads load (as fold_rules' MAX_COLUMN_LOAD: the proof
            words `fold_rules._column_words` bounds from dcols' shape, wherever a column starts, and the values):
            at most min(G, OH) covering rows, each min(R, OW) columns s·L − 1 elements apart.
    @param conv [k, s, p, OW].
    @param cols dcols' shape [B, C·k·k, L = OH·OW] (each dimension at most MAX_DIM).
    @param group G, the covering rows a piece reads (R where one piece; not 0).
    @return The load; max_value(uint256) where dcols has more chunks than a tensor can.
    """
    chunks: uint256 = commitments._chunk_count(commitments.DTYPE_FLOAT32, cols)
    if chunks > 1 << commitments.MAX_TENSOR_DEPTH:
        return max_value(uint256)
    count: uint256 = min((conv[0] + conv[1] - 1) // conv[1], conv[3])
    stride: uint256 = max(conv[1] * cols[2] - 1, 1)
    return min(group, cols[2] // conv[3]) * (fold_rules._column_words(chunks, stride, count) + count)


@internal
@pure
def _col2im_rows(conv: uint256[4], image: uint256[4], positions: uint256, e: uint256) -> (uint256, uint256, uint256):
    """
    @notice The windows covering col2im's element e = (b, c, h, w): their rows i ascending from the first, i_low, every
            s-th, and in each their columns j from j_low, every s-th (`_covering` along each axis).
    @param conv [k, s, p, OW].
    @param image [B, C, H, W].
    @param positions L = OH · OW.
    @param e The element.
    @return (dcols' element of the first covering row's first column, (b, (c, i_low, j_low), (oh, ow)) row-major;
            the covering rows, 0 where no column covers; the covering columns of each).
    """
    k: uint256 = conv[0]
    s: uint256 = conv[1]
    w: uint256 = e % image[3] + conv[2]
    h: uint256 = e // image[3] % image[2] + conv[2]
    i_low: uint256 = 0
    rows: uint256 = 0
    j_low: uint256 = 0
    columns: uint256 = 0
    i_low, rows = self._covering(h, k, s, positions // conv[3])
    j_low, columns = self._covering(w, k, s, conv[3])
    if columns == 0:
        return 0, 0, 0
    first: uint256 = ((e // (image[2] * image[3]) * k + i_low) * k + j_low) * positions + (h - i_low) // s * conv[3] + (w - j_low) // s
    return first, rows, columns


@internal
@pure
def _col2im_pieces(k: uint256, s: uint256) -> (uint256, uint256):
    """
    @notice How col2im's fold over an element's covering windows is cut: R = ceil(k / s) rows of at most R windows
            cover an element; at most MAX_COL2IM_ROWS rows are one piece (G = R), more are pieces of
            G = MAX_COL2IM_PIECE_TERMS // R whole rows (none where that is 0: not checkable).
    @param k The window.
    @param s The stride.
    @return (G, the pieces P = ceil(R / G); P 0 where G is).
    """
    rows: uint256 = (k + s - 1) // s
    if rows <= MAX_COL2IM_ROWS:
        return rows, 1
    group: uint256 = MAX_COL2IM_PIECE_TERMS // rows
    if group == 0:
        return 0, 0
    return group, (rows + group - 1) // group


@internal
@pure
def _covering(position: uint256, k: uint256, s: uint256, outputs: uint256) -> (uint256, uint256):
    """
    @notice The offsets o of the windows covering a padded position x along one axis, ascending: 0 <= o < k,
            o <= x, x − o a multiple of s and (x − o) / s < the output size.
    @param position The position x plus the padding.
    @param k The window.
    @param s The stride.
    @param outputs The output size along the axis (at least 1).
    @return (the first offset, how many: every s-th from it).
    """
    low: uint256 = 0
    if position > s * (outputs - 1):
        low = position - s * (outputs - 1)
    low += (position - low) % s
    high: uint256 = min(k - 1, position)
    if low > high:
        return 0, 0
    return low, (high - low) // s + 1


@internal
@pure
def _columns_plan(parsed: host_rules.Skeleton, kernel: uint256, output: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice im2col's element (b, (c, i, j), (oh, ow)): RULE_COPY of x[b, c, oh·s + i − p, ow·s + j − p], or of
            nothing (+0) outside the image. col2im's (b, c, h, w): RULE_FOLD [1, 0, 0, 0] over, for each
            covering i ascending, the column of dcols[b, (c, i, j), (oh, ow)] over the covering j ascending
            (one read, every s·L − 1 elements); no read (+0) where no window covers the element. In pieces
            (`_col2im_pieces`: G rows a piece): slot t of element e (output 1, element t · |dx| + e) is its fold
            after its first min((t + 1) · G, n) covering rows (n its own), dx after all n: piece t is
            RULE_FOLD [1, t > 0, 0, 0] from slot t − 1 (REF_SELF) over the columns of its covering rows
            t · G … (t + 1) · G − 1 (none at or past n: a copy of slot t − 1, or +0); dx is piece
            ceil(n / G) − 1 (+0 where no window covers e).
    @param parsed The parsed skeleton (a checkable im2col or col2im).
    @param kernel KERNEL_IM2COL or KERNEL_COL2IM.
    @param output The disputed output (col2im in pieces: 0 dx, 1 the running values).
    @param element The element's row-major index (inside the output).
    @return The plan.
    """
    conv: uint256[4] = empty(uint256[4])
    image: uint256[4] = empty(uint256[4])
    cols: DynArray[uint256, commitments.MAX_NDIM] = []
    conv, image, cols = self._columns_geometry(parsed, kernel)
    k: uint256 = conv[0]
    s: uint256 = conv[1]
    ow_n: uint256 = conv[3]
    plan: host_rules.Plan = empty(host_rules.Plan)
    if kernel == KERNEL_IM2COL:
        plan.rule = RULE_COPY
        l: uint256 = element % cols[2]
        q: uint256 = element // cols[2] % cols[1]
        plane: uint256 = element // (cols[1] * cols[2]) * image[1] + q // (k * k)
        # the padded image's row and column (p before the first)
        row: uint256 = l // ow_n * s + q // k % k
        column: uint256 = l % ow_n * s + q % k
        if row >= conv[2] and row < image[2] + conv[2] and column >= conv[2] and column < image[3] + conv[2]:
            plan.reads = [host_rules._read(parsed, 0, (plane * image[2] + row - conv[2]) * image[3] + column - conv[2], 1)]
        return plan
    plan.rule = RULE_FOLD
    plan.params = [1, 0, 0, 0]
    size: uint256 = image[0] * image[1] * image[2] * image[3]
    first: uint256 = 0
    rows: uint256 = 0
    columns: uint256 = 0
    first, rows, columns = self._col2im_rows(conv, image, cols[2], element % size)
    group: uint256 = 0
    pieces: uint256 = 0
    group, pieces = self._col2im_pieces(k, s)
    piece: uint256 = element // size  # output 1: the slot
    if output == 0:
        piece = 0
        if rows > group:
            piece = (rows + group - 1) // group - 1
    if piece != 0:
        plan.params = [1, 1, 0, 0]
        dims: uint256[commitments.MAX_NDIM] = [pieces - 1, image[0], image[1], image[2], image[3], 0, 0, 0]
        plan.reads = [host_rules.Read(input=SELF_READ + 1, kind=REF_SELF, a=0, b=1, code=commitments.DTYPE_FLOAT32, ndim=5, dims=dims, first=(piece - 1) * size + element % size, count=1, stride=1)]
    # covering row t + 1 starts s·k·L − OW elements after row t's (its i is s more, its oh one less)
    for t: uint256 in range(piece * group, piece * group + MAX_COL2IM_ROWS, bound=MAX_COL2IM_ROWS):
        if t >= rows or t >= (piece + 1) * group:
            break
        read: host_rules.Read = host_rules._read(parsed, 0, first + t * (s * k * cols[2] - ow_n), columns)
        if columns > 1:
            read.stride = s * cols[2] - 1
        plan.reads.append(read)
    return plan


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
    return count, self._checkable(parsed, output), shape.code, shape.dims


@internal
@pure
def _plan(
    raw: Bytes[host_rules.MAX_SKELETON], output: uint256, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> host_rules.Plan:
    """
    @notice How output element `element` of a checkable output is decided at the hinted place (reverts
            for an output these rules cannot check, an element outside it, or hints that are not a
            place inside the source: a cursor outside `orders`, a row outside W).
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index in it.
    @param hints batch_index: the cursor (epoch, position); gather: the id ids[p].
    @return The plan: RULE_SELECT, the hints as its parameters, the hints' proven sources, then the
            selected element.
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    checkable: bool = self._checkable(parsed, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "data_rules: not a checkable element"
    plan: host_rules.Plan = empty(host_rules.Plan)
    kernel: uint256 = self._kernel(parsed.name_key)
    if kernel >= KERNEL_ROTARY:
        assert len(hints) == 0, "data_rules: rotary, pooling and columns take no hints"
        if kernel >= KERNEL_IM2COL:
            return self._columns_plan(parsed, kernel, output, element)
        if kernel >= KERNEL_MAX_POOL:
            return self._pool_plan(parsed, kernel, output, element)
        return self._rotary_plan(raw, parsed, kernel, element)
    plan.rule = RULE_SELECT
    if kernel == KERNEL_BATCH_INDEX:
        assert len(hints) == 2, "data_rules: the hints are the cursor"
        epochs: uint256 = parsed.inputs[1].dims[0]
        count: uint256 = parsed.inputs[1].dims[1]
        assert hints[0] < epochs and hints[1] < count and hints[1] + element < count, "data_rules: cursor outside the orders"
        plan.params = [hints[0], hints[1]]
        orders: host_rules.Read = host_rules._read(parsed, 1, hints[0] * count + hints[1] + element, 1)
        orders.a = row_rules._constant_root(raw, 1)
        plan.reads = [host_rules._read(parsed, 0, CURSOR_FIELD, 2), orders]
        return plan
    assert len(hints) == 1, "data_rules: the hint is the id"
    source: host_rules.Ref = parsed.inputs[0]
    rows: uint256 = source.dims[0]
    assert hints[0] < rows, "data_rules: id outside the source"
    width: uint256 = commitments._element_count(source.dims) // rows
    plan.params = [hints[0]]
    selected: host_rules.Read = host_rules._read(parsed, 0, hints[0] * width + element % width, 1)
    if selected.kind == REF_CONSTANT:
        selected.a = row_rules._constant_root(raw, 0)
    plan.reads = [host_rules._read(parsed, 1, element // width, 1), selected]
    return plan


@internal
@pure
def _rotary_plan(raw: Bytes[host_rules.MAX_SKELETON], parsed: host_rules.Skeleton, kernel: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice How element e = (…, t, j) of a rotary or rotary_backward output is decided: RULE_ROTARY with
            [j < h / 2, backward] from x[e], its rotation partner x[e ± h / 2] (the other half of the same
            row), cos[t, j] and sin[t, j] (engine/portable/reference.py `rotary`; the rule signs the partner).
    @param raw The entry's skeleton bytes (for a table's constant root).
    @param parsed The parsed skeleton (a checkable rotary).
    @param kernel KERNEL_ROTARY or KERNEL_ROTARY_BACKWARD.
    @param element The element's row-major index (inside the output).
    @return The plan.
    """
    steps: uint256 = parsed.inputs[1].dims[0]
    width: uint256 = parsed.inputs[1].dims[1]
    half: uint256 = width // 2
    j: uint256 = element % width
    table: uint256 = (element // width) % steps * width + j
    partner: uint256 = element + half
    first_half: uint256 = 1
    if j >= half:
        partner = element - half
        first_half = 0
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = RULE_ROTARY
    plan.params = [first_half, convert(kernel == KERNEL_ROTARY_BACKWARD, uint256)]
    plan.reads = [host_rules._read(parsed, 0, element, 1), host_rules._read(parsed, 0, partner, 1)]
    for k: uint256 in range(1, 3):
        read: host_rules.Read = host_rules._read(parsed, k, table, 1)
        if read.kind == REF_CONSTANT:
            read.a = row_rules._constant_root(raw, k)
        plan.reads.append(read)
    return plan


@internal
@pure
def _pool_plan(parsed: host_rules.Skeleton, kernel: uint256, output: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice max_pool's element (b, c, oh, ow): RULE_MAX_POOL [output] over the window's k rows of k, in
            (i, j) order (each row one run, or two across a 256-element boundary); over MAX_POOL_WINDOW rows,
            in P = ceil(k / 2) pieces of 2 rows (the last may be 1): slot t (outputs 2 and 3, element
            t · |y| + e) is the scan after rows 0 … 2t + 1, y and the place its piece P − 1. Piece 0 is
            [output % 2] over rows 0 and 1; piece t reads slot t − 1's best and place (REF_SELF) then rows
            2t and 2t + 1, with [output % 2, 2t · k − 2] (the place of the rule's value q is q + 2t · k − 2).
            max_pool_backward's
            (b, c, h, w): RULE_MAX_POOL_BACKWARD with [q], the element's place (h % s) · k + w % s in the
            one window covering it, reading that window's winner and dy; no parameter and no read (+0)
            where no window covers it.
    @param parsed The parsed skeleton (a checkable pooling entry).
    @param kernel KERNEL_MAX_POOL or KERNEL_MAX_POOL_BACKWARD.
    @param output The disputed output.
    @param element The element's row-major index (inside the output).
    @return The plan.
    """
    k: uint256 = 0
    s: uint256 = 0
    image: DynArray[uint256, commitments.MAX_NDIM] = []
    pooled: DynArray[uint256, commitments.MAX_NDIM] = []
    k, s, image, pooled = self._pooled(parsed, kernel)
    plan: host_rules.Plan = empty(host_rules.Plan)
    if kernel == KERNEL_MAX_POOL:
        plan.rule = RULE_MAX_POOL
        plan.params = [output]
        e: uint256 = element
        first: uint256 = 0
        rows: uint256 = k
        if k > MAX_POOL_WINDOW:
            size: uint256 = commitments._element_count(pooled)
            slots: uint256 = (k + 1) // 2 - 1
            piece: uint256 = slots
            if output >= 2:
                piece = element // size
                e = element % size
            first = 2 * piece
            rows = min(2, k - first)
            plan.params = [output % 2]
            if piece != 0:
                plan.params.append(first * k - 2)
                # the running best and place [P − 1, B, C, OH, OW] (outputs 2 and 3 of this entry)
                dims: uint256[commitments.MAX_NDIM] = [slots, pooled[0], pooled[1], pooled[2], pooled[3], 0, 0, 0]
                at: uint256 = (piece - 1) * size + e
                plan.reads = [
                    host_rules.Read(input=SELF_READ + 2, kind=REF_SELF, a=0, b=2, code=commitments.DTYPE_FLOAT32, ndim=5, dims=dims, first=at, count=1, stride=1),
                    host_rules.Read(input=SELF_READ + 3, kind=REF_SELF, a=0, b=3, code=commitments.DTYPE_INT64, ndim=5, dims=dims, first=at, count=1, stride=1),
                ]
        ow: uint256 = e % pooled[3]
        oh: uint256 = e // pooled[3] % pooled[2]
        plane: uint256 = e // (pooled[2] * pooled[3])
        for i: uint256 in range(MAX_POOL_WINDOW):
            if i >= rows:
                break
            row: DynArray[host_rules.Read, 2] = host_rules._row_reads(parsed, 0, (plane * image[2] + oh * s + first + i) * image[3] + ow * s, k)
            for read: host_rules.Read in row:
                plan.reads.append(read)
        return plan
    if k > s:
        return self._overlap_plan(parsed, output, element, k, s, image, pooled)
    plan.rule = RULE_MAX_POOL_BACKWARD
    w: uint256 = element % image[3]
    h: uint256 = element // image[3] % image[2]
    plane: uint256 = element // (image[2] * image[3])
    if h % s >= k or w % s >= k or h // s >= pooled[2] or w // s >= pooled[3]:
        return plan
    flat: uint256 = (plane * pooled[2] + h // s) * pooled[3] + w // s
    plan.params = [h % s * k + w % s]
    plan.reads = [host_rules._read(parsed, 0, flat, 1), host_rules._read(parsed, 1, flat, 1)]
    return plan


@internal
@pure
def _overlap_plan(
    parsed: host_rules.Skeleton,
    output: uint256,
    element: uint256,
    k: uint256,
    s: uint256,
    image: DynArray[uint256, commitments.MAX_NDIM],
    pooled: DynArray[uint256, commitments.MAX_NDIM],
) -> host_rules.Plan:
    """
    @notice max_pool_backward over overlapping windows, one window a piece. An element (b, c, h, w) has n covering
            windows (oh, ow), row-major (n = rows · cols, `_covering` along each axis); slot t of it (output 1,
            element t · |dx| + e) is its fold after windows 0 … t: RULE_MAX_POOL_BACKWARD [q_t] from slot t − 1
            (REF_SELF; +0 for t = 0) and window t's winner and dy; a slot at or past n copies the slot before
            it (+0 for the first). dx (output 0) is window n − 1's piece from slot n − 2 (+0 with no window).
    @param parsed The parsed skeleton (a checkable max_pool_backward, k over s).
    @param output 0 (dx) or 1 (the running values).
    @param element The element's row-major index (inside the output).
    @param k The window.
    @param s The stride.
    @param image dx's shape [B, C, H, W].
    @param pooled The pooled shape [B, C, OH, OW].
    @return The plan.
    """
    size: uint256 = commitments._element_count(image)
    slot: uint256 = element // size
    e: uint256 = element % size
    w: uint256 = e % image[3]
    h: uint256 = e // image[3] % image[2]
    plane: uint256 = e // (image[2] * image[3])
    i_low: uint256 = 0
    rows: uint256 = 0
    j_low: uint256 = 0
    cols: uint256 = 0
    i_low, rows = self._covering(h, k, s, pooled[2])
    j_low, cols = self._covering(w, k, s, pooled[3])
    count: uint256 = rows * cols
    slots: uint256 = (k + s - 1) // s
    # the running values' shape [R² − 1, B, C, H, W]
    dims: uint256[commitments.MAX_NDIM] = [slots * slots - 1, image[0], image[1], image[2], image[3], 0, 0, 0]
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = RULE_MAX_POOL_BACKWARD
    t: uint256 = slot
    if output == 0:
        if count == 0:
            return plan
        t = count - 1
    elif slot >= count:
        plan.rule = RULE_COPY
        if slot != 0:
            plan.reads = [host_rules.Read(input=SELF_READ + 1, kind=REF_SELF, a=0, b=1, code=commitments.DTYPE_FLOAT32, ndim=5, dims=dims, first=element - size, count=1, stride=1)]
        return plan
    # window t, row-major: oh ascending is the offset i descending
    oh: uint256 = (h - i_low) // s + 1 - rows + t // cols
    ow: uint256 = (w - j_low) // s + 1 - cols + t % cols
    plan.params = [(h - oh * s) * k + w - ow * s]
    if t != 0:
        plan.reads = [host_rules.Read(input=SELF_READ + 1, kind=REF_SELF, a=0, b=1, code=commitments.DTYPE_FLOAT32, ndim=5, dims=dims, first=(t - 1) * size + e, count=1, stride=1)]
    flat: uint256 = (plane * pooled[2] + oh) * pooled[3] + ow
    plan.reads.append(host_rules._read(parsed, 0, flat, 1))
    plan.reads.append(host_rules._read(parsed, 1, flat, 1))
    return plan
