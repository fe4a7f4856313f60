"""The data rules' Python mirror (contracts/lib/data_rules.vy, deployed as DataRules.vy in RefereeGame's
fourth rules slot): `batch_index` (idx[b] = orders[epoch, position + b]) and `gather` (out[p, d] =
W[ids[p], d]: the dataset's rows and the embedding's), and the decoder's rotations `rotary` and
`rotary_backward` (fixed places: x at the element and its partner, the tables at (t, j); no hints), and max
pooling: `max_pool` (y and the winner's place in its window: the window's k rows, k at most 3; over wider
windows, k at most MAX_POOL_PIECED, in pieces of 2 rows from the running best and place the record adds as
outputs 2 and 3: `max_pool_piece`) and `max_pool_backward` (over windows that do not overlap, k at most the
stride: the one window covering an element, its winner and dy; +0 where none covers it or another place won;
over overlapping ones, k over s and at most 3, one window a piece: `overlap_piece`). And the moves a convolution is
recorded with (engine/portable/record.py): `im2col` (cols[b, (c, i, j), (oh, ow)] = x[b, c, oh·s + i − p,
ow·s + j − p], +0 outside the image) and `col2im` (dx[b, c, h, w] = the fold over the covering (i, j) of
dcols: per covering i one column read, every s·L − 1 elements; over MAX_COL2IM_ROWS covering rows in pieces of whole
rows from the running values the record adds: `col2im_piece`). No hints.
Where the batch's and the gather's reads depend on a value, `prove_element` takes it as a hint (the cursor, or the id); the plan reads at the hinted place and
also reads the hint's proven source (the agreed header's cursor fields, or ids[p]), and the element
rule (`element_rules.vy` RULE_SELECT) reverts unless they agree.

Soundness: the hints are never trusted: a hint that is not its proven value cannot prove, so a lying
defender loses on its clock and an honest one can always prove. The reads are of the agreed header,
of a constant the skeleton binds (S), of the agreed state or of earlier outputs (under P_{j-1}); the pieces
(max pooling's and col2im's) also read an earlier slot of the entry's own running values (REF_SELF), a slot
before the one they decide, so the honest challenger disputes the first slot that differs
(`referee_kit.OWN_OUTPUT_READS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FLOAT32, INT64 = 1, 2
STATE, OUTPUT, HEADER, CONSTANT = 1, 3, 4, 5
TAG_INPUT = 6
ROTARY_KERNELS = ("rotary", "rotary_backward")  # fixed places, no hints (data_rules.vy `_rotary_plan`)
POOL_KERNELS = ("max_pool", "max_pool_backward")  # fixed places, no hints (data_rules.vy `_pool_plan`)
COLUMN_KERNELS = ("im2col", "col2im")  # fixed places, no hints (data_rules.vy `_columns_plan`)
DATA_KERNELS = ("batch_index", "gather", *ROTARY_KERNELS, *POOL_KERNELS, *COLUMN_KERNELS)
MAX_DIM = 2**32 - 1  # commitments.vy: a dimension's largest
MAX_TENSOR_DEPTH = 40  # commitments.vy: a tensor has at most 2**40 chunks
MAX_COL2IM_ROWS = 4  # data_rules.vy: rows of the windows covering a col2im element (a column read each)
MAX_COL2IM_PIECE_TERMS = 20  # data_rules.vy: over MAX_COL2IM_ROWS rows, a piece's terms (after its running value)
MAX_COL2IM_LOAD = 370  # data_rules.vy: a col2im piece's column proof words and values (`col2im_load`)
MAX_POOL_WINDOW = 3  # data_rules.vy: a max_pool window of k rows is read in at most 2·k runs (MAX_READS = 6)
MAX_POOL_PIECED = 108  # data_rules.vy: a wider max_pool window, in pieces of 2 rows (its dearest piece under 1M gas)
MAX_POOL_OVERLAP = 3  # data_rules.vy: max_pool_backward's overlapping windows, in pieces of one window
TAG_INT, TAG_TUPLE = 1, 5
CURSOR_FIELD = 2  # the header values RefereeGame reads: seed, step, cursor epoch, cursor position

SELF_READ = 1_000  # protocol.referee_kit.SELF_READ: a read of the entry's own output k − SELF_READ
Read = tuple[int, int, int]  # (input k, first element, count)
StridedRead = tuple[int, int, int, int]  # (input k, first element, count, stride)


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=object)) if shape else 1


def _names_inputs(skeleton: Any, count: int) -> bool:
    words = [bytes([TAG_INPUT]) + k.to_bytes(31, "big") for k in range(count)]
    return len(skeleton.inputs) == count and list(skeleton.args[:count]) == words


def data_checkable(skeleton: Any, output: int) -> bool:
    """Whether DataRules.vy (`data_rules._checkable`) decides every element of `output`: batch_index(header,
    orders) with orders an int64 constant [E, n] and one int64 output [B], 1 <= B <= n; gather(W, ids)
    with W binary32 or int64 of at least one axis (a state tensor, an earlier output or a constant), ids
    int64 (a state tensor or an earlier output), one non-empty output of W's dtype and shape ids' dims,
    then W's after the first."""
    kernel = skeleton.kernel
    if kernel in POOL_KERNELS:
        return _pool_checkable(skeleton, output)
    if kernel in COLUMN_KERNELS:
        return _columns_checkable(skeleton, output)
    operands = 3 if kernel in ROTARY_KERNELS else 2
    if kernel not in DATA_KERNELS or output != 0 or len(skeleton.outputs) != 1 or len(skeleton.args) != operands:
        return False
    if not _names_inputs(skeleton, operands):
        return False
    if kernel in ROTARY_KERNELS:
        return _rotary_checkable(skeleton)
    code, shape = skeleton.outputs[0]
    if kernel == "batch_index":
        header, orders = skeleton.inputs
        return (header.kind == HEADER and orders.kind == CONSTANT and orders.dtype == INT64 and len(orders.shape) == 2
                and orders.shape[0] != 0 and code == INT64 and len(shape) == 1 and 0 < shape[0] <= orders.shape[1])  # fmt: skip
    source, ids = skeleton.inputs
    if source.kind not in (STATE, OUTPUT, CONSTANT) or ids.kind not in (STATE, OUTPUT) or ids.dtype != INT64:
        return False
    if not source.shape or source.dtype not in (FLOAT32, INT64) or code != source.dtype:
        return False
    return tuple(shape) == tuple(ids.shape) + tuple(source.shape[1:]) and source.shape[0] != 0 and _size(shape) != 0


def _small(word: bytes) -> int | None:
    """A positive integer argument below 2**32, or None."""
    value = int.from_bytes(word[1:], "big")
    return value if word[0] == TAG_INT and 0 < value < 2**32 else None


def _pool_geometry(skeleton: Any) -> tuple[int, int, tuple[int, ...], tuple[int, ...]] | None:
    """(k, s, x's or dx's shape [B, C, H, W], the pooled shape [B, C, OH, OW]) of a max pooling entry whose
    arguments and shapes are the kernel's, else None."""
    backward = skeleton.kernel == "max_pool_backward"
    args = skeleton.args
    if len(args) != (5 if backward else 3) or len(skeleton.inputs) != (2 if backward else 1) or not skeleton.outputs:
        return None
    k, s = _small(args[-2]), _small(args[-1])
    image = tuple(skeleton.outputs[0][1]) if backward else tuple(skeleton.inputs[0].shape)
    if k is None or s is None or len(image) != 4 or image[2] < k or image[3] < k:
        return None
    return k, s, image, (*image[:2], (image[2] - k) // s + 1, (image[3] - k) // s + 1)


def _pool_checkable(skeleton: Any, output: int) -> bool:
    """max_pool(x, k, s) (`data_rules._pool_checkable`): x binary32 [B, C, H, W] (a state tensor or an earlier
    output) named by argument 0, k at most MAX_POOL_PIECED, outputs y binary32 and the winners int64 of the
    pooled shape, and for k over MAX_POOL_WINDOW the running best binary32 and place int64 [P − 1, B, C, OH, OW]
    (P = ceil(k / 2)). max_pool_backward(shape, where, dy, k, s): shape the output's (its tuple word), where int64
    and dy binary32 of the pooled shape named by arguments 1 and 2; k at most s and one binary32 output of shape,
    or k over s and at most MAX_POOL_OVERLAP and a second output, the running values, binary32 [R² − 1, B, C, H, W]
    (R = ceil(k / s))."""
    from protocol.referee_kit import tuple_word

    geometry = _pool_geometry(skeleton)
    if geometry is None or _size(geometry[2]) == 0:
        return False
    k, s, image, pooled = geometry
    inputs, outputs, args = skeleton.inputs, skeleton.outputs, skeleton.args
    if skeleton.kernel == "max_pool":
        x = inputs[0]
        shapes = [(FLOAT32, pooled), (INT64, pooled)]
        if k > MAX_POOL_WINDOW:  # in pieces: the running best and place, [P − 1, B, C, OH, OW] (P = ceil(k / 2))
            slots = (-(-k // 2) - 1, *pooled)
            shapes += [(FLOAT32, slots), (INT64, slots)]
        return (output < len(shapes) and args[0] == bytes([TAG_INPUT]) + bytes(31) and k <= MAX_POOL_PIECED
                and x.kind in (STATE, OUTPUT) and x.dtype == FLOAT32
                and [(code, tuple(shape)) for code, shape in outputs] == shapes)  # fmt: skip
    where, dy = inputs
    if k <= s:
        shapes, outputs_read = [(FLOAT32, image)], (0,)
    else:
        rows = -(-k // s)
        shapes, outputs_read = [(FLOAT32, image), (FLOAT32, (rows * rows - 1, *image))], (0, 1)
        if k > MAX_POOL_OVERLAP:
            return False
    return (output in outputs_read and args[0] == tuple_word(image) and list(args[1:3]) == [bytes([TAG_INPUT]) + i.to_bytes(31, "big") for i in (0, 1)]
            and where.kind in (STATE, OUTPUT) and where.dtype == INT64 and tuple(where.shape) == pooled
            and dy.kind in (STATE, OUTPUT) and dy.dtype == FLOAT32 and tuple(dy.shape) == pooled
            and [(code, tuple(shape)) for code, shape in outputs] == shapes)  # fmt: skip


def max_pool_piece(k: int, pooled: Sequence[int], output: int, element: int) -> tuple[int | None, int, int, int]:
    """max_pool over a window of more than MAX_POOL_WINDOW rows (`data_rules._pieced_pool_plan`), in P = ceil(k / 2)
    pieces of 2 rows: slot t of window e (outputs 2 and 3, element t·|y| + e) is the scan's (best, place) after
    rows 0 … 2t + 1, y and the place (outputs 0 and 1) after all k. (the slot read before the piece, as an element
    of outputs 2 and 3, or None for piece 0; window e; the piece's first row; its rows, 2 or 1)."""
    size = _size(pooled)
    piece, e = divmod(element, size) if output >= 2 else (-(-k // 2) - 1, element)
    return ((piece - 1) * size + e if piece else None), e, 2 * piece, min(2, k - 2 * piece)


def overlap_piece(k: int, s: int, image: Sequence[int], pooled: Sequence[int], output: int,
                  element: int) -> tuple[int | None, tuple[int, int] | None]:  # fmt: skip
    """max_pool_backward over overlapping windows (`data_rules._overlap_plan`), one window a piece: element
    (b, c, h, w) has n covering windows (oh, ow), row-major; slot t of it (output 1, element t·|dx| + e) is its
    fold after windows 0 … t, dx (output 0) after all n. (the running value read, as an element of output 1,
    or None for +0; the window (its flat index in the pooled shape, the element's place q in it), or None: a
    slot at or past n copies the one before, dx of an element no window covers is +0)."""
    size = _size(image)
    slot, e = divmod(element, size)
    plane, rest = divmod(e, image[2] * image[3])
    h, w = divmod(rest, image[3])
    i_low, rows = covering(h, k, s, pooled[2])
    j_low, cols = covering(w, k, s, pooled[3])
    count = rows * cols
    if output == 0:
        if count == 0:
            return None, None
        slot = count - 1
    elif slot >= count:
        return (element - size if slot else None), None
    oh, ow = (h - i_low) // s + 1 - rows + slot // cols, (w - j_low) // s + 1 - cols + slot % cols
    return ((slot - 1) * size + e if slot else None), ((plane * pooled[2] + oh) * pooled[3] + ow, (h - oh * s) * k + w - ow * s)


def _pool_reads(skeleton: Any, element: int, output: int = 0) -> list[Read]:
    """max_pool's element (b, c, oh, ow): the window's k rows of k (each one run, or two across a 256-element
    boundary), in (i, j) order; max_pool_backward's (b, c, h, w): the covering window's winner and dy, or
    nothing where no window covers it."""
    from protocol.referee_kit import _row_reads

    geometry = _pool_geometry(skeleton)
    assert geometry is not None
    k, s, (_, channels, height, width), (_, _, oh_n, ow_n) = geometry
    if skeleton.kernel == "max_pool":
        before, e, first, rows = None, element, 0, k
        if k > MAX_POOL_WINDOW:  # a piece: the slot before it (the entry's own outputs 2 and 3), then its rows
            before, e, first, rows = max_pool_piece(k, geometry[3], output, element)
        b, c, oh, ow = np.unravel_index(e, (skeleton.inputs[0].shape[0], channels, oh_n, ow_n))
        base = (int(b) * channels + int(c)) * height
        slot = [] if before is None else [(SELF_READ + 2, before, 1), (SELF_READ + 3, before, 1)]
        return slot + [read for i in range(first, first + rows) for read in _row_reads(0, (base + int(oh) * s + i) * width + int(ow) * s, k)]
    if k > s:  # a piece: the running value before it (the entry's own output 1), the window's winner and dy
        before, window = overlap_piece(k, s, geometry[2], geometry[3], output, element)
        return ([(SELF_READ + 1, before, 1)] if before is not None else []) + ([(0, window[0], 1), (1, window[0], 1)] if window else [])
    window = _covering_window(k, s, (height, width), (oh_n, ow_n), element)
    return [] if window is None else [(0, window[0], 1), (1, window[0], 1)]


def _covering_window(k: int, s: int, image: tuple[int, int], pooled: tuple[int, int], element: int) -> tuple[int, int] | None:
    """max_pool_backward's element (b, c, h, w) of an image [H, W] a plane: (the flat index of the one window
    covering it, its place q = (h % s)·k + w % s in that window), or None where no window covers it (k <= s)."""
    plane, rest = divmod(element, image[0] * image[1])
    h, w = divmod(rest, image[1])
    oh, ow = h // s, w // s
    if h % s >= k or w % s >= k or oh >= pooled[0] or ow >= pooled[1]:
        return None
    return (plane * pooled[0] + oh) * pooled[1] + ow, (h % s) * k + w % s


def pool_params(skeleton: Any, output: int, element: int) -> tuple[int, ...]:
    """The element rule's parameters: max_pool [output] (in pieces [output % 2] for piece 0, [output % 2, 2t·k − 2]
    for piece t: the place of the rule's value q is q + 2t·k − 2); max_pool_backward [q], the element's place in its
    covering window (none where no window covers it; over overlapping windows the piece's window's, none for a
    copied slot)."""
    geometry = _pool_geometry(skeleton)
    assert geometry is not None
    k, s, image, pooled = geometry
    if skeleton.kernel == "max_pool":
        if k <= MAX_POOL_WINDOW:
            return (output,)
        before, _, first, _ = max_pool_piece(k, pooled, output, element)
        return (output % 2,) if before is None else (output % 2, first * k - 2)
    if k > s:
        window = overlap_piece(k, s, image, pooled, output, element)[1]
        return () if window is None else (window[1],)
    window = _covering_window(k, s, image[2:], pooled[2:], element)
    return () if window is None else (window[1],)


def _columns_geometry(skeleton: Any) -> tuple[int, int, int, int, tuple[int, ...], tuple[int, int, int]] | None:
    """(k, s, p, OW, the image [B, C, H, W] (x's; col2im's output's), the columns' shape [B, C·k·k, OH·OW]) of an
    im2col or col2im entry whose arguments and shapes are the kernel's (`data_rules._columns_geometry`), else None."""
    backward = skeleton.kernel == "col2im"
    args = skeleton.args
    if len(args) != (5 if backward else 4) or len(skeleton.inputs) != 1 or not 1 <= len(skeleton.outputs) <= (2 if backward else 1):
        return None
    k, s = _small(args[-3]), _small(args[-2])
    padding = int.from_bytes(args[-1][1:], "big")
    image = tuple(skeleton.outputs[0][1]) if backward else tuple(skeleton.inputs[0].shape)
    if k is None or s is None or args[-1][0] != TAG_INT or padding >= 2**32 or len(image) != 4:
        return None
    if image[2] + 2 * padding < k or image[3] + 2 * padding < k:
        return None
    oh, ow = (image[2] + 2 * padding - k) // s + 1, (image[3] + 2 * padding - k) // s + 1
    if image[1] * k * k > MAX_DIM or oh * ow > MAX_DIM:  # no tensor's (its element count would revert)
        return None
    return k, s, padding, ow, image, (image[0], image[1] * k * k, oh * ow)


def _columns_checkable(skeleton: Any, output: int) -> bool:
    """im2col(x, k, s, p) (`data_rules._columns_checkable`): x binary32 [B, C, H, W] (a state tensor or an earlier
    output) named by argument 0, one binary32 output [B, C·k·k, OH·OW]. col2im(dcols, shape, k, s, p): dcols
    binary32 of that columns' shape named by argument 0, shape the output's tuple word, one binary32 output
    [B, C, H, W], where ceil(k / s) is at most MAX_COL2IM_ROWS; over it (in pieces: `col2im_pieces`) a second
    output, the running values, binary32 [P − 1, B, C, H, W], and either output checkable."""
    from protocol.referee_kit import tuple_word

    geometry = _columns_geometry(skeleton)
    if geometry is None or output >= len(skeleton.outputs) or _size(geometry[5]) == 0:
        return False
    k, s, _, _, image, cols = geometry
    source, (code, shape) = skeleton.inputs[0], skeleton.outputs[0]
    ok = source.kind in (STATE, OUTPUT) and source.dtype == FLOAT32 and code == FLOAT32 and skeleton.args[0] == bytes([TAG_INPUT]) + bytes(31)
    if skeleton.kernel == "im2col":
        return ok and len(skeleton.outputs) == 1 and tuple(shape) == cols
    ok = ok and tuple(source.shape) == cols and skeleton.args[1] == tuple_word(image)
    group, pieces = col2im_pieces(k, s)
    ok = ok and pieces != 0 and col2im_load(k, s, geometry[3], cols, group) <= MAX_COL2IM_LOAD
    if pieces <= 1:
        return ok and len(skeleton.outputs) == 1
    return ok and [tuple(o) for o in skeleton.outputs[1:]] == [(FLOAT32, (pieces - 1, *image))]


def col2im_load(k: int, s: int, ow_n: int, cols: Sequence[int], group: int) -> int:
    """The most a col2im element's or piece's column reads load (`data_rules._col2im_load`): at most min(G, OH)
    covering rows of min(R, OW) columns s·L − 1 elements apart, their proof words (`fold_rules.column_words`, from
    dcols' shape) and values; unbounded where dcols has more chunks than a tensor can."""
    from protocol import fold_rules

    chunks = -(-_size(cols) // 8)
    if chunks > 1 << MAX_TENSOR_DEPTH:
        return 2**256 - 1
    count = min(-(-k // s), ow_n)
    return min(group, cols[2] // ow_n) * (fold_rules.column_words(chunks, max(s * cols[2] - 1, 1), count) + count)


def col2im_pieces(k: int, s: int) -> tuple[int, int]:
    """(G, P): how col2im's fold over an element's covering windows is cut (`data_rules._col2im_pieces`). At most
    R = ceil(k / s) rows of at most R windows cover an element: up to MAX_COL2IM_ROWS rows one piece (G = R, P = 1),
    more in pieces of G = MAX_COL2IM_PIECE_TERMS // R whole rows, P = ceil(R / G); (0, 0) where G would be 0 (not
    checkable)."""
    rows = -(-k // s)
    if rows <= MAX_COL2IM_ROWS:
        return rows, 1
    group = MAX_COL2IM_PIECE_TERMS // rows
    return (group, -(-rows // group)) if group else (0, 0)


def covering(position: int, k: int, s: int, outputs: int) -> tuple[int, int]:
    """(the first, how many) of the offsets o, ascending every s-th, of the windows covering padded position x
    along one axis: 0 <= o < k, o <= x, x − o a multiple of s, (x − o) / s below the output size."""
    low = max(0, position - s * (outputs - 1))
    low += (position - low) % s
    high = min(k - 1, position)
    return (0, 0) if low > high else (low, (high - low) // s + 1)


def _columns_reads(skeleton: Any, element: int, output: int = 0) -> list[StridedRead]:
    """im2col's element (b, (c, i, j), (oh, ow)): x at (b, c, oh·s + i − p, ow·s + j − p), nothing outside the
    image; col2im's (b, c, h, w): per covering i ascending, dcols' column over the covering j ascending
    (stride s·L − 1), nothing where no window covers it; in pieces, the piece's (`col2im_piece`)."""
    geometry = _columns_geometry(skeleton)
    assert geometry is not None
    k, s, padding, ow_n, (_, channels, height, width), (_, q_n, l_n) = geometry
    if skeleton.kernel == "im2col":
        b, q, l = np.unravel_index(element, (geometry[4][0], q_n, l_n))
        row, column = int(l) // ow_n * s + int(q) // k % k - padding, int(l) % ow_n * s + int(q) % k - padding
        if not (0 <= row < height and 0 <= column < width):
            return []
        return [(0, ((int(b) * channels + int(q) // (k * k)) * height + row) * width + column, 1, 1)]
    size = _size(geometry[4])
    before, rows = col2im_piece(k, s, padding, geometry[4], (l_n // ow_n, ow_n), output, element)
    plane, rest = divmod(element % size, height * width)
    h, w = rest // width + padding, rest % width + padding
    i_low, _ = covering(h, k, s, l_n // ow_n)
    j_low, columns = covering(w, k, s, ow_n)
    running = [] if before is None else [(SELF_READ + 1, before, 1, 1)]
    return running + [(0, ((plane * k + i) * k + j_low) * l_n + (h - i) // s * ow_n + (w - j_low) // s, columns,
                       s * l_n - 1 if columns > 1 else 1) for i in (i_low + t * s for t in rows)]  # fmt: skip


def col2im_piece(k: int, s: int, p: int, image: Sequence[int], positions: tuple[int, int], output: int,
                 element: int) -> tuple[int | None, range]:  # fmt: skip
    """col2im's fold of element e = (b, c, h, w) of dx [B, C, H, W] (`data_rules._columns_plan`), over its n covering
    rows (n 0 where no column covers it), `positions` (OH, OW). In pieces (`col2im_pieces`: G rows a piece) slot t of
    e (output 1, element t·|dx| + e) is its fold after its first min((t + 1)·G, n) covering rows and dx its fold
    after all n: piece t reads slot t − 1 and its covering rows t·G … (t + 1)·G − 1 below n (none: a copy of slot
    t − 1, or +0), dx is piece ceil(n / G) − 1. (the running value read, an element of output 1, or None for +0;
    the numbers t of the covering rows read)."""
    size = _size(image)
    slot, e = divmod(element, size)
    h, w = e // image[3] % image[2] + p, e % image[3] + p
    rows = covering(h, k, s, positions[0])[1] if covering(w, k, s, positions[1])[1] else 0
    group, _ = col2im_pieces(k, s)
    piece = slot if output == 1 else max(0, -(-rows // group) - 1)
    before = (piece - 1) * size + e if piece else None
    return before, range(piece * group, min(rows, (piece + 1) * group))


def _is_table(ref: Any) -> bool:
    return ref.kind in (STATE, OUTPUT, CONSTANT) and ref.dtype == FLOAT32


def _rotary_checkable(skeleton: Any) -> bool:
    """rotary(x, cos, sin) / rotary_backward(dy, cos, sin) (`data_rules._rotary_checkable`): x binary32
    [..., T, h], a state tensor or an earlier output, h even; cos and sin binary32 [T, h] (state tensors,
    earlier outputs or constants); one binary32 output of x's shape, not empty."""
    x, cos, sin = skeleton.inputs
    code, shape = skeleton.outputs[0]
    if x.kind == CONSTANT or not (_is_table(x) and _is_table(cos) and _is_table(sin)) or code != FLOAT32:
        return False
    if len(x.shape) < 2 or tuple(shape) != tuple(x.shape):
        return False
    table = tuple(x.shape[-2:])
    return tuple(cos.shape) == table == tuple(sin.shape) and table[1] % 2 == 0 and _size(shape) != 0


def _rotary_reads(skeleton: Any, element: int) -> list[Read]:
    """x[e], its partner x[e ± h/2] (the other half of the row), cos and sin at (t, j): the order the
    element rule RULE_ROTARY takes them (referee_model's dependencies)."""
    steps, width = skeleton.inputs[1].shape
    j = element % width
    table = (element // width) % steps * width + j
    partner = element + width // 2 if j < width // 2 else element - width // 2
    return [(0, element, 1), (0, partner, 1), (1, table, 1), (2, table, 1)]


def data_reads(skeleton: Any, output: int, element: int, hints: Sequence[int]) -> list[Read]:
    """`data_strided_reads` without the strides (a col2im column's count is its elements, not a run's)."""
    return [(k, first, count) for k, first, count, _ in data_strided_reads(skeleton, output, element, hints)]


def data_strided_reads(skeleton: Any, output: int, element: int, hints: Sequence[int]) -> list[StridedRead]:
    """(input k, first element, count) of each run DataRules reads for output element `element` at the
    hinted place (`data_rules._plan`), and its stride (1 but for col2im's columns: proven by column proofs):
    batch_index the header's cursor (0, 2, 2) and orders at epoch·n + position + b; gather ids[p] and W at
    id·width + d. ValueError for an output these rules do not decide, or hints that are not a place inside
    the source (DataRules reverts)."""
    if not data_checkable(skeleton, output) or not 0 <= element < _size(skeleton.outputs[output][1]):
        raise ValueError(f"the data rules do not decide element {element} of output {output} of a {skeleton.kernel!r} entry")
    kernel = skeleton.kernel
    if kernel in ROTARY_KERNELS or kernel in POOL_KERNELS or kernel in COLUMN_KERNELS:
        if len(hints) != 0:
            raise ValueError(f"a {kernel} element takes no hints")
        if kernel in COLUMN_KERNELS:
            return _columns_reads(skeleton, element, output)
        reads = _rotary_reads(skeleton, element) if kernel in ROTARY_KERNELS else _pool_reads(skeleton, element, output)
    elif kernel == "batch_index":
        epochs, count = skeleton.inputs[1].shape
        if len(hints) != 2 or not (hints[0] < epochs and hints[1] < count and hints[1] + element < count):
            raise ValueError(f"cursor {tuple(hints)} outside the orders [{epochs}, {count}]")
        reads = [(0, CURSOR_FIELD, 2), (1, hints[0] * count + hints[1] + element, 1)]
    else:
        source = skeleton.inputs[0].shape
        width = _size(source[1:])
        if len(hints) != 1 or not 0 <= hints[0] < source[0]:
            raise ValueError(f"id {tuple(hints)} outside the source's {source[0]} rows")
        reads = [(1, element // width, 1), (0, hints[0] * width + element % width, 1)]
    return [(k, first, count, 1) for k, first, count in reads]


def data_hints(skeleton: Any, element: int, cursor: tuple[int, int], ids: np.ndarray | None) -> tuple[int, ...]:
    """What an honest defender hints for `element`: batch_index the agreed header's cursor (epoch,
    position); gather ids[p] (`ids`: the values of input 1)."""
    if skeleton.kernel in ROTARY_KERNELS or skeleton.kernel in POOL_KERNELS or skeleton.kernel in COLUMN_KERNELS:
        return ()
    if skeleton.kernel == "batch_index":
        return (int(cursor[0]), int(cursor[1]))
    assert ids is not None
    width = _size(skeleton.inputs[0].shape[1:])
    return (int(np.asarray(ids).reshape(-1)[element // width]),)
