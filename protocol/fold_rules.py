"""The Python mirror of the referee game's fold rules (contracts/lib/fold_rules.vy, deployed as
FoldRules.vy): which outputs of `matmul`, `linear_backward`, `sum_rows`, `layer_norm_backward` (dw, db),
`rms_norm_backward` (dw), `fold_head_groups` (one piece only) and `linear` (where HostRules cannot: K not a
power of two from 8 to 256, so also K > 256 in pieces) the game decides on chain as one fold piece,
what each element reads (input, first element, count, stride: a row or a column), and the column proofs `RefereeGame.prove_element`
takes for those reads (`column_proof`). NumPy only, no torch.

A column proof of a read is the distinct chunks holding its elements (ascending), then the siblings of
their multiproof under the tensor's data root: level by level from the chunks up, left to right, one
word for each known node whose sibling is not known at that level. `column_words` bounds its length
from the shapes alone, exactly as the contract does, and an output is checkable only when those bounds
plus the values read fit MAX_COLUMN_LOAD, so an honest defender can always prove the element it is
asked, within prove_element's gas target.

A folded output whose element is over MAX_FOLD terms or over MAX_COLUMN_LOAD is checked in pieces
(`piecings`, `fold_plan`): the record carries the running values after each piece but the last as the
entry's last output, and a piece reads the running value before it (a REF_SELF read, k >= SELF_READ)
then its terms down the same columns (docs/referee.md, "Folds in pieces").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protocol import tensor_commit as tc
from protocol.referee_model import _unravel  # the one row-major index of a flat element

FOLD_KERNELS = ("matmul", "linear_backward", "sum_rows", "layer_norm_backward", "rms_norm_backward", "fold_head_groups",
                "linear")  # fmt: skip
INPUT_COUNTS = {"matmul": 2, "linear_backward": 3, "sum_rows": 1, "layer_norm_backward": 4, "rms_norm_backward": 4,
                "fold_head_groups": 1, "linear": 3}  # linear: 2 without its bias (`_input_count`)  # fmt: skip
BASE_OUTPUTS = {"matmul": 1, "linear_backward": 3, "sum_rows": 1, "layer_norm_backward": 3, "rms_norm_backward": 2,
                "fold_head_groups": 1, "linear": 1}  # fmt: skip
FOLDED = {"matmul": (0,), "linear_backward": (0, 1, 2), "sum_rows": (0,), "layer_norm_backward": (1, 2),
          "rms_norm_backward": (1,), "fold_head_groups": (0,), "linear": (0,)}  # the outputs each kernel folds  # fmt: skip
ONE_PIECE = ("fold_head_groups",)  # folds the recorder gives no running values: over one piece they escalate
TAG_INT = 1
MAX_FOLD = 256  # terms of one fold piece
MAX_COLUMN_LOAD = 404  # fold_rules.MAX_COLUMN_LOAD: the column proof words plus the values a plan's reads may take
MAX_WHOLE_WEIGHT = 1_122  # fold_rules.MAX_WHOLE_WEIGHT: 3 x a fold in one piece's load plus its values (`whole_weight`)
MAX_PIECE_LOAD = 280  # fold_rules.MAX_PIECE_LOAD: one piece of linear, fold_head_groups or an embedding_backward piece
MAX_LINEAR_WHOLE_LOAD = 270  # fold_rules.MAX_LINEAR_WHOLE_LOAD: a whole linear (one piece)
MAX_PIECE_WEIGHT = 620  # fold_rules.MAX_PIECE_WEIGHT: a fold piece's `piece_weight`
KIT_CHUNKS = 2**28  # fold_rules.KIT_CHUNKS: the chunks of the largest source a kit holds (2**31 binary32)
FLOAT32, STATE, OUTPUT = 1, 1, 3
MAX_INPUTS = 5
SELF_READ = 1_000  # protocol.referee_kit.SELF_READ: a read k >= SELF_READ reads output k - SELF_READ of the entry itself
NORM_BACKWARDS = ("layer_norm_backward", "rms_norm_backward")
TAG_INPUT = 6

Read = tuple[int, int, int, int]  # (input k, first element, count, stride)


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=object)) if len(shape) else 1


def _input_count(skeleton) -> int:
    """The inputs a fold kernel reads (fold_rules._input_count): linear's bias is optional."""
    if skeleton.kernel == "linear":
        return min(max(len(skeleton.inputs), 2), 3)
    return INPUT_COUNTS[skeleton.kernel]


def _names_inputs(skeleton, count: int) -> bool:
    words = [bytes([TAG_INPUT]) + k.to_bytes(31, "big") for k in range(count)]
    # fold_head_groups' group size follows its input; linear has three arguments, the bias or None last
    arguments = {"fold_head_groups": 2, "linear": 3}.get(skeleton.kernel, count)
    return len(skeleton.inputs) == count and len(skeleton.args) == arguments and list(skeleton.args[:count]) == words


def _linear_fits(skeleton) -> bool:
    """linear(x, W, b) where HostRules cannot plan it (fold_rules._linear_fits): x [..., K] and y [..., N]
    of the same rank and rows, W [N, K], b [N] when argument 2 names input 2 (else None), K not a power of
    two from 8 to 256 (HostRules decides those, and their record keeps no running values)."""
    x, w = skeleton.inputs[0].shape, skeleton.inputs[1].shape
    y = skeleton.outputs[0][1]
    if not x or len(x) != len(y) or len(w) != 2 or 0 in w or x[-1] != w[1] or y[-1] != w[0]:
        return False
    if 8 <= w[1] <= MAX_FOLD and w[1] & (w[1] - 1) == 0:
        return False
    if _size(x) // w[1] != _size(y) // w[0]:
        return False
    if len(skeleton.inputs) == 2:
        return skeleton.args[2] == bytes(32)
    return tuple(skeleton.inputs[2].shape) == (w[0],)


def _group(skeleton) -> int:
    """fold_head_groups' G: its second argument, a non-negative integer word; 0 for any other word
    (fold_rules._group)."""
    word = skeleton.args[1] if len(skeleton.args) > 1 else bytes(32)
    if word[0] != TAG_INT or word[1] & 0x80:
        return 0
    return int.from_bytes(word[1:], "big")


def _level_nodes(level: int, depth: int, stride: int, count: int) -> tuple[int, int]:
    """The most and fewest nodes at `level` holding a read (fold_rules._level_nodes)."""
    if level >= depth:
        return 1, 1
    unit = 8 << level
    if stride >= unit:
        return count, count
    q = (count - 1) * stride // unit
    return min(count, q + 2), q + 1


def column_words(chunks: int, stride: int, count: int) -> int:
    """The most words a column proof of `count` elements `stride` apart takes in a binary32 tensor of
    `chunks` chunks, wherever its first element lies (fold_rules._column_words)."""
    depth = tc.depth_of(chunks)
    hi, lo = _level_nodes(0, depth, stride, count)
    words = hi
    for level in range(depth):
        up_hi, up_lo = _level_nodes(level + 1, depth, stride, count)
        words += min(hi, 2 * up_hi - min(lo, 2 * up_hi))
        hi, lo = up_hi, up_lo
    return words


def _shapes_fit(skeleton) -> bool:
    """The shapes each fold's index map assumes, of the inputs and of every folded output (shapes only:
    the recorder asks it of an entry before it has its running values)."""
    kernel, inputs, outputs = skeleton.kernel, skeleton.inputs, skeleton.outputs
    if len(inputs) != _input_count(skeleton) or len(outputs) < BASE_OUTPUTS[kernel]:
        return False
    if kernel == "linear":
        return _linear_fits(skeleton)
    if kernel == "matmul":  # a [..., M, K] @ b [..., K, N] -> [..., M, N], batch axes broadcast from size 1
        shape = tuple(outputs[0][1])
        a, b = inputs[0].shape, inputs[1].shape
        ndim = len(shape)
        if ndim < 2 or not 2 <= len(a) <= ndim or not 2 <= len(b) <= ndim:
            return False
        lead_ok = all(n in (1, shape[ndim - len(op) + i]) for op in (a, b) for i, n in enumerate(op[:-2]))
        return a[-1] >= 1 and a[-1] == b[-2] and a[-2] == shape[-2] and b[-1] == shape[-1] and lead_ok
    if kernel == "fold_head_groups":  # x [B, H, ...] -> [B, H / G, ...]
        x, group = inputs[0].shape, _group(skeleton)
        if len(x) < 2 or not group or x[1] % group:
            return False
        return tuple(outputs[0][1]) == (x[0], x[1] // group, *x[2:])
    if kernel == "sum_rows":
        x = inputs[0].shape
        return len(x) >= 1 and x[0] >= 1 and x[0] * _size(outputs[0][1]) == _size(x)
    if kernel == "linear_backward":  # x [..., K], w [N, K], dy [..., N]; dx of R·K, dw [N, K], db [N]
        x, w, dy = (r.shape for r in inputs)
        if not x or len(w) != 2 or not dy or 0 in w or x[-1] != w[1] or dy[-1] != w[0]:
            return False
        rows = _size(x) // w[1]
        return (rows >= 1 and _size(dy) == rows * w[0] and _size(outputs[0][1]) == rows * w[1]
                and tuple(outputs[1][1]) == tuple(w) and _size(outputs[2][1]) == w[0])  # fmt: skip
    # layer_norm_backward (dw, db), rms_norm_backward (dw): inputs x̂, rstd, w, dy
    xhat = inputs[0].shape
    if not xhat or xhat[-1] == 0:
        return False
    widths = all(_size(outputs[o][1]) == xhat[-1] for o in FOLDED[kernel])
    return inputs[3].shape == xhat and widths and _size(xhat) >= xhat[-1]


def norm_backward_pieced(skeleton) -> bool:
    """Whether a norm backward's rows are decided in pieces (host_rules._norm_backward_pieced; docs/referee.md,
    "Rows in pieces": `protocol.row_pieces.row_piecing`, the one copy of the rule). Then the entry's last
    output is its row statistics."""
    from protocol.row_pieces import row_piecing  # (row_pieces imports this module's callers lazily too)

    if skeleton.kernel not in NORM_BACKWARDS or not skeleton.inputs:
        return False
    return row_piecing(skeleton.kernel, [r.shape for r in skeleton.inputs]) is not None


def _shape_checkable(skeleton, output: int) -> bool:
    """The arguments and outputs each fold's index map assumes: the kernel's outputs (`BASE_OUTPUTS`) and
    the disputed one folded in one piece, or one more, the running values of the outputs folded in
    pieces (`piecings`, some), and the disputed output a folded one or that last one. A norm backward whose
    rows are in pieces (`norm_backward_pieced`) has its row statistics last, which these rules leave out."""
    kernel, outputs = skeleton.kernel, skeleton.outputs
    if not _names_inputs(skeleton, _input_count(skeleton)) or not _shapes_fit(skeleton):
        return False
    base = BASE_OUTPUTS[kernel]
    if norm_backward_pieced(skeleton):
        outputs = outputs[:-1]
        if output >= len(outputs):
            return False
    if len(outputs) == base:  # no running values: the disputed output in one piece
        return output in FOLDED[kernel] and piece_length(skeleton, _plan_reads(skeleton, output, 0)[0]) == 0
    if kernel in ONE_PIECE:
        return False
    pieced = piecings(skeleton)
    if not pieced:
        return False
    last = pieced[-1]
    partials_fit = len(outputs) == base + 1 and tuple(outputs[base][1]) == (last.offset + (last.pieces - 1) * last.size,)
    return partials_fit and (output in FOLDED[kernel] or output == base)


@dataclass(frozen=True)
class Piecing:
    """How one folded output is checked in pieces: `terms` per element, cut in `pieces` pieces of `length`
    terms (the last the rest); its running values after each piece but the last are elements `offset` …
    of the entry's last output (the running values: piece c of element e at offset + c · size + e)."""

    output: int
    terms: int
    length: int
    pieces: int
    offset: int
    size: int


def running_values_output(skeleton) -> int | None:
    """The output holding an entry's running values (its last, after `BASE_OUTPUTS` or `LOSS_BASE_OUTPUTS`)
    when some output of it is checked in pieces, else None."""
    if skeleton.kernel in LOSS_BASE_OUTPUTS:
        return LOSS_BASE_OUTPUTS[skeleton.kernel] if loss_piecing(skeleton) is not None else None
    if skeleton.kernel not in FOLD_KERNELS or not piecings(skeleton):
        return None
    return BASE_OUTPUTS[skeleton.kernel]


# The loss folds RowRules checks in pieces (row_rules._loss_piecing; docs/referee.md, "Loss rules"):
# cross-entropy's mean over R > MAX_FOLD rows of nll, the causal-LM loss's mean and count over R > MAX_FOLD
# rows (two running values a piece: the sum of nll, the count) and embedding_backward's dW over more
# positions than one piece holds. The running values are one more output after the kernel's own.
LOSS_BASE_OUTPUTS = {"cross_entropy": 2, "causal_lm": 3, "embedding_backward": 1}  # the mean and nll (the count); dW
MAX_EMBEDDING_LOAD = 392  # row_rules.MAX_EMBEDDING_LOAD: embedding_backward's reads in one piece
INT64_PER_CHUNK = 4


def embedding_load(dy_chunks: int, width: int, count: int) -> int:
    """embedding_backward's reads of `count` positions (row_rules._embedding_load): dy's column proof words
    and values, the ids' chunks and values."""
    return column_words(dy_chunks, width, count) + 2 * count + (count + INT64_PER_CHUNK - 1) // INT64_PER_CHUNK


def _embedding_length(dy_chunks: int, width: int, positions: int) -> int:
    """embedding_backward's piece length: 0 when every position is one piece (at most MAX_FOLD within
    MAX_EMBEDDING_LOAD), else the largest power of two up to MAX_FOLD whose piece and last piece load at
    most MAX_PIECE_LOAD (a piece also proves its running value, as FoldRules' pieces do)."""
    if positions <= MAX_FOLD and embedding_load(dy_chunks, width, positions) <= MAX_EMBEDDING_LOAD:
        return 0
    length = MAX_FOLD
    while length > 1:
        last = positions - (-(-positions // length) - 1) * length
        if embedding_load(dy_chunks, width, length) <= MAX_PIECE_LOAD and embedding_load(dy_chunks, width, last) <= MAX_PIECE_LOAD:
            break
        length //= 2
    return length


def loss_piecing(skeleton) -> Piecing | None:
    """How RowRules cuts a loss fold in pieces (row_rules._loss_piecing), a function of the shapes alone
    (the recorder asks it before the running values exist): cross-entropy's mean (output 0) over R >
    MAX_FOLD rows of z [R, C] in pieces of MAX_FOLD rows, the causal-LM loss's mean and count the same (size 2:
    element 0 the sum of nll, 1 the count); embedding_backward's dW (output 0, [V, D]) over
    the P positions of dy [..., D] in pieces of `_embedding_length`. None when the fold is one piece or
    the shapes are not the rule's."""
    kernel, inputs, outputs = skeleton.kernel, skeleton.inputs, skeleton.outputs
    if kernel not in LOSS_BASE_OUTPUTS or len(inputs) != 2 or len(outputs) < LOSS_BASE_OUTPUTS[kernel]:
        return None
    if kernel in ("cross_entropy", "causal_lm"):
        z = inputs[0].shape
        if len(z) != 2 or z[0] <= MAX_FOLD:
            return None
        return Piecing(0, z[0], MAX_FOLD, -(-z[0] // MAX_FOLD), 0, 1 if kernel == "cross_entropy" else 2)
    positions, dy = _size(inputs[0].shape), inputs[1].shape
    width = dy[-1] if dy else 0
    if width == 0 or positions == 0 or _size(dy) != positions * width:
        return None
    length = _embedding_length(tc.chunk_count(FLOAT32, dy), width, positions)
    if not length:
        return None
    return Piecing(0, positions, length, -(-positions // length), 0, _size(outputs[0][1]))


def piece_weight(skeleton, reads: Sequence[Read], count: int) -> int:
    """A fold piece's weight, bounded by MAX_PIECE_WEIGHT: `whole_weight`'s of `reads` cut to `count` elements
    each, each read's words counted as in a source of at least KIT_CHUNKS chunks (a read may be a prefix of one:
    a sibling more a level above the input's own tree), wherever the piece starts (docs/referee.md "Fold pieces")."""
    load = values = 0
    for k, _, whole, stride in reads:
        cut = min(count, whole)  # (a bias read stays one value)
        load += column_words(max(tc.chunk_count(FLOAT32, skeleton.inputs[k].shape), KIT_CHUNKS), stride, cut) + cut
        values += cut
    return 3 * load + values


def whole_weight(skeleton, reads: Sequence[Read]) -> int:
    """Three times a fold's `column_load` plus its values, bounded by MAX_WHOLE_WEIGHT for one piece: a proof word
    costs about 1,220 gas and a value about 1,640 with adversarial values (a fit over contiguous and strided
    columns; docs/referee.md "Fold weight"), so 3 · (words + values) + values weighs them about right."""
    terms = reads[0][2]
    return 3 * column_load(skeleton, reads) + sum(min(terms, count) for _, _, count, _ in reads)


def piece_length(skeleton, reads: Sequence[Read], pieced_entry: bool = False) -> int:
    """The terms of one piece of a fold whose whole reads are `reads` (each of the fold's terms): the
    largest power of two up to MAX_FOLD whose piece, and whose last piece, fit MAX_PIECE_WEIGHT; 0 when the
    whole fold is one piece (at most MAX_FOLD terms within MAX_COLUMN_LOAD; MAX_PIECE_LOAD for
    fold_head_groups, MAX_LINEAR_WHOLE_LOAD for linear; and within MAX_WHOLE_WEIGHT; in a `pieced_entry`, one with another output in
    pieces, whose every element pays the piecings' plan, within MAX_PIECE_WEIGHT as a piece). A function of the
    shapes."""
    terms = reads[0][2]
    # a lone column of many chunks, or a third read (linear's bias) beyond the load, costs more a unit of load:
    # one piece of these loads at most MAX_PIECE_LOAD, a whole linear MAX_LINEAR_WHOLE_LOAD (personas/decoder_worst_case.py)
    whole = {"fold_head_groups": MAX_PIECE_LOAD, "linear": MAX_LINEAR_WHOLE_LOAD}.get(skeleton.kernel, MAX_COLUMN_LOAD)
    if pieced_entry:
        if terms <= MAX_FOLD and piece_weight(skeleton, reads, terms) <= MAX_PIECE_WEIGHT:
            return 0
    elif terms <= MAX_FOLD and column_load(skeleton, reads) <= whole and whole_weight(skeleton, reads) <= MAX_WHOLE_WEIGHT:
        return 0
    length = MAX_FOLD
    while length > 1:
        last = terms - (-(-terms // length) - 1) * length
        if piece_weight(skeleton, reads, length) <= MAX_PIECE_WEIGHT and (last == length or piece_weight(skeleton, reads, last) <= MAX_PIECE_WEIGHT):
            break
        length //= 2
    return length


def piecings(skeleton) -> tuple[Piecing, ...]:
    """The folded outputs of a fold entry checked in pieces, in output order, with where each one's
    running values lie in the entry's last output (none when every element is one piece). A function of
    the kernel and the shapes (`_shapes_fit`), the same in FoldRules (`fold_rules._piecings`)."""
    if skeleton.kernel not in FOLD_KERNELS or skeleton.kernel in ONE_PIECE or not _shapes_fit(skeleton):
        return ()
    found, offset = [], 0
    reads = {output: _plan_reads(skeleton, output, 0)[0] for output in FOLDED[skeleton.kernel]}
    lengths = {output: piece_length(skeleton, reads[output]) for output in FOLDED[skeleton.kernel]}
    pieced_entry = any(lengths.values())
    for output in FOLDED[skeleton.kernel]:
        length = lengths[output]
        if not length and pieced_entry:  # every element of a pieced entry pays the piecings' plan (fold_rules.vy)
            length = piece_length(skeleton, reads[output], True)
        if length:
            terms, size = reads[output][0][2], _size(skeleton.outputs[output][1])
            pieces = -(-terms // length)
            found.append(Piecing(output, terms, length, pieces, offset, size))
            offset += (pieces - 1) * size
    return tuple(found)


def _broadcast_source(index: Sequence[int], shape: Sequence[int]) -> int:
    tail = list(index[len(index) - len(shape) :])
    flat = 0
    for i, n in zip(tail, shape, strict=True):
        flat = flat * n + (0 if n == 1 else i)
    return flat


def _plan_reads(skeleton, output: int, element: int) -> tuple[list[Read], bool]:
    """The reads of one element of a shape-checked output and whether the first two are zipped."""
    kernel, inputs = skeleton.kernel, skeleton.inputs
    if kernel == "matmul":
        shape = skeleton.outputs[0][1]
        index = _unravel(element, shape)
        m_index, n = [*index[:-1], 0], index[-1]
        terms = inputs[0].shape[-1]
        b_index = [*index[:-2], 0, n]
        return [(0, _broadcast_source(m_index, inputs[0].shape), terms, 1),
                (1, _broadcast_source(b_index, inputs[1].shape), terms, shape[-1])], True  # fmt: skip
    if kernel == "sum_rows":
        x = inputs[0].shape
        return [(0, element, x[0], _size(x) // x[0])], False
    if kernel == "linear":  # y[r, n]: row r of x zipped with row n of W, then b[n]
        n_width, k_width = inputs[1].shape
        r, n = divmod(element, n_width)
        bias = [(2, n, 1, 1)] if len(inputs) == 3 else []
        return [(0, r * k_width, k_width, 1), (1, n * k_width, k_width, 1), *bias], True
    if kernel == "fold_head_groups":  # (b, g, rest): heads g·G … g·G + G − 1 of batch b, a head's elements apart
        x = inputs[0].shape
        inner, kept = _size(x[2:]), skeleton.outputs[0][1][1]
        b, g = element // (kept * inner), element // inner % kept
        return [(0, (b * x[1] + g * (x[1] // kept)) * inner + element % inner, x[1] // kept, inner)], False
    if kernel == "linear_backward":
        n_width, k_width = inputs[1].shape
        rows = _size(inputs[0].shape) // k_width
        if output == 0:  # dx[r, k]: row r of dy, column k of w
            r, k = divmod(element, k_width)
            return [(2, r * n_width, n_width, 1), (1, k, n_width, k_width)], True
        if output == 1:  # dw[n, k]: column n of dy, column k of x
            n, k = divmod(element, k_width)
            return [(2, n, rows, n_width), (0, k, rows, k_width)], True
        return [(2, element, rows, n_width)], False  # db[n]: column n of dy
    width = inputs[0].shape[-1]
    rows = _size(inputs[0].shape) // width
    if output == 1:  # dw[j]: column j of dy, column j of x̂
        return [(3, element, rows, width), (0, element, rows, width)], True
    return [(3, element, rows, width)], False


def fold_checkable(skeleton, output: int) -> bool:
    """Whether FoldRules.vy (`fold_rules._checkable`) decides every element of `output` of a parsed
    skeleton (`protocol.referee_kit.parse_skeleton`): a folded output in one piece, or in pieces, or the
    running values of the pieces (the entry's last output, when any output is in pieces)."""
    if skeleton.kernel not in FOLD_KERNELS or output >= len(skeleton.outputs) or len(skeleton.inputs) > MAX_INPUTS:
        return False
    code, shape = skeleton.outputs[output]
    if code != FLOAT32 or any(r.kind not in (STATE, OUTPUT) or r.dtype != FLOAT32 for r in skeleton.inputs):
        return False
    return _size(shape) != 0 and _shape_checkable(skeleton, output)


def column_load(skeleton, reads: Sequence[Read]) -> int:
    """The words the column proofs of `reads` may take (`column_words`) plus the values they read."""
    return sum(column_words(tc.chunk_count(FLOAT32, skeleton.inputs[k].shape), stride, count) + count
               for k, _, count, stride in reads)  # fmt: skip


@dataclass(frozen=True)
class FoldPlan:
    """What FoldRules plans for one element: its reads (input k, first, count, stride), whether the two
    column reads of its terms are zipped (a fold of products), and whether it starts from a running value:
    then the first read is that value, element `first` of the entry's own running values (k =
    SELF_READ + their output number: RefereeGame's REF_SELF read, a run of one), the columns follow."""

    reads: list[Read]
    zipped: bool
    from_partial: bool = False


def _piece_of(skeleton, output: int, element: int) -> tuple[Piecing, int, int] | None:
    """(its piecing, the piece, the folded output's element) of an element checked as a piece (None for
    one checked whole): a running value's piece c of element e, or a pieced output's last piece."""
    pieced = piecings(skeleton)
    if output == BASE_OUTPUTS[skeleton.kernel]:
        for piecing in pieced:
            if element < piecing.offset + (piecing.pieces - 1) * piecing.size:
                piece, e = divmod(element - piecing.offset, piecing.size)
                return piecing, piece, e
        raise ValueError(f"element {element} is past the running values")
    for piecing in pieced:
        if piecing.output == output:
            return piecing, piecing.pieces - 1, element
    return None


def fold_plan(skeleton, output: int, element: int) -> FoldPlan:
    """FoldRules' plan of output element `element` (ValueError for an output it does not decide or an
    element outside it). A piece c of a folded output's element e reads its terms c·p … (c + 1)·p − 1
    (the last piece: to the end) down the same columns, from the running value after piece c − 1: element
    offset + (c − 1)·size + e of the running values (none for piece 0); a pieced output's element is its
    last piece; a running value is its piece."""
    if not fold_checkable(skeleton, output) or not 0 <= element < _size(skeleton.outputs[output][1]):
        raise ValueError(f"the fold rules do not decide element {element} of output {output} of a {skeleton.kernel!r} entry")
    found = _piece_of(skeleton, output, element)
    if found is None:
        reads, zipped = _plan_reads(skeleton, output, element)
        return FoldPlan(reads, zipped)
    piecing, piece, e = found
    reads, zipped = _plan_reads(skeleton, piecing.output, e)
    start = piece * piecing.length
    count = min(piecing.length, piecing.terms - start)
    arity = 2 if zipped else 1  # the fold's terms: its first reads; then the epilogue's (linear's bias), last piece only
    cut = [(k, first + start * stride, count, stride) for k, first, _, stride in reads[:arity]]
    cut += list(reads[arity:]) if piece == piecing.pieces - 1 else []
    if not piece:
        return FoldPlan(cut, zipped)
    running = (SELF_READ + BASE_OUTPUTS[skeleton.kernel], piecing.offset + (piece - 1) * piecing.size + e, 1, 1)
    return FoldPlan([running, *cut], zipped, True)


def fold_reads(skeleton, output: int, element: int) -> list[Read]:
    """(input k, first element, count, stride) of each read FoldRules plans for output element `element`,
    in the order `prove_element` takes their proofs: for a piece past the first the running value before
    it (k >= SELF_READ: `fold_plan`), then the columns: matmul a row of a, a column of b; linear_backward dx a row of dy and a
    column of w, dw a column of dy and one of x, db a column of dy; sum_rows a column of x; a norm's dw
    the column of dy and of x̂, db the column of dy. ValueError for an output FoldRules does not decide,
    or an element outside it."""
    return fold_plan(skeleton, output, element).reads


def column_proof(array: np.ndarray, first: int, count: int, stride: int) -> list[bytes]:
    """The column proof words of `count` elements of `array` (binary32, row-major) `stride` apart from
    `first`: the distinct chunks holding them, ascending, then the multiproof's siblings."""
    from protocol import tensor_descent as td

    if tc.dtype_code(array) != FLOAT32:
        raise ValueError("a column proof reads binary32")
    if count < 1 or stride < 1 or first < 0 or first + (count - 1) * stride >= array.size:
        raise ValueError(f"elements {first} + {stride}·(0..{count - 1}) outside 0..{array.size - 1}")
    chunks = tc.chunks_of(array)
    positions = sorted({(first + i * stride) // 8 for i in range(count)})
    words = [chunks[p] for p in positions]
    levels = td.tree_levels([tc.chunk_leaf(c) for c in chunks])
    for level in levels[:-1]:
        known = set(positions)
        words += [level[p ^ 1] for p in positions if p ^ 1 not in known]
        positions = sorted({p // 2 for p in positions})
    return words
