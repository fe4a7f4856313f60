"""Rows in pieces (issue 15; the design: docs/referee.md, "Rows in pieces"): a normalisation or softmax row
that is not whole (`protocol.referee_kit.whole_row`: wider than its kernel's row cap, a softmax_backward or norm
backward row of a width that does not divide 256 over its split cap, or a norm backward's row that crosses a
256-element boundary) is decided in pieces, as the long folds are. The recorder appends the per-row running
statistics as the entry's last output; each running statistic is decided from the one before it and one
piece of the row (RULE_ROW_PIECE), each output element from the final statistics (RULE_ROW_FINAL).

One module holds what the recorder (`engine.portable.record`), the referee model
(`protocol.referee_model`) and the game's mirror (`protocol.referee_kit.rules_of`, `game_reads`) must
compute alike:

- `row_piecing(kernel, input shapes)`: whether an entry is row-pieced, a function of the shapes alone, and
  where each statistic lies in the statistics output;
- `row_piece_checkable`, `row_piece_reads`, `row_piece_rule`: the Python mirror of RowPieceRules.vy
  (`contracts/lib/row_piece_rules.vy`, RULES slot 5), read for read.

Cross-entropy's rows (issue 15) are pieced with softmax's statistics: nll[r]
and the backward's dz read one logit, the row's final M and S and the target, so a row of any vocabulary is
decided from a few values; nll's one logit z[r, t] is placed by a hint (the target t, checked by the rule).
The causal-LM loss's rows (`causal_lm`, `causal_lm_backward`) are always pieced so: a row that is not counted
(target −1) is +0, and the backward divides by the proven count of counted rows (its input 2).

`protocol.referee_kit` and `protocol.fold_rules` import this module, so it imports them only inside the
functions that need them: loading it never loads them, and no import circle can see a half-made module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KERNELS = ("softmax", "softmax_backward", "layer_norm", "rms_norm", "layer_norm_backward", "rms_norm_backward",
           "cross_entropy", "cross_entropy_backward", "causal_lm", "causal_lm_backward")  # fmt: skip
BACKWARDS = ("layer_norm_backward", "rms_norm_backward")
CAUSAL = ("causal_lm", "causal_lm_backward")  # rows always in pieces; the targets −1 where a row is not counted
LOSSES = ("cross_entropy", "cross_entropy_backward", *CAUSAL)  # z [R, D] and the int64 targets t [R]
NLL_ROWS = ("cross_entropy", "causal_lm")  # nll [R] their output 1, one element a row
IGNORE = 2**64 - 1  # the int64 target −1 as the 64-bit pattern proven on chain (a row the causal loss does not count)
SOFTMAX_ROWS = ("softmax", *LOSSES)  # the kernels whose statistics are softmax's M and S of input 0
# L: terms of one piece, a power of two dividing 256 (so a piece of w is one aligned run), the largest whose
# dearest honest piece stays under 1,000,000 gas (row_piece_rules.vy PIECE_LENGTH_*; docs/referee.md)
PIECE_LENGTH = {"softmax": 16, "softmax_backward": 64, "layer_norm": 64, "rms_norm": 128, "layer_norm_backward": 32,
                "rms_norm_backward": 32, "cross_entropy": 16, "cross_entropy_backward": 16, "causal_lm": 16,
                "causal_lm_backward": 16}  # fmt: skip
# the statistics of a row, in the kernel's own fold order: softmax M, S; softmax_backward Dd; layer_norm S1, S2;
# rms_norm Q; layer_norm_backward A, B; rms_norm_backward B; the cross-entropies softmax's M, S of z
STATS = {"softmax": 2, "softmax_backward": 1, "layer_norm": 2, "rms_norm": 1, "layer_norm_backward": 2,
         "rms_norm_backward": 1, "cross_entropy": 2, "cross_entropy_backward": 2, "causal_lm": 2, "causal_lm_backward": 2}  # fmt: skip
# the kernel's own outputs (cross_entropy: the mean and nll; causal_lm: also the count; RowRules' loss running
# values may follow them)
BASE_OUTPUTS = {"softmax": 1, "softmax_backward": 1, "layer_norm": 3, "rms_norm": 3, "layer_norm_backward": 3,
                "rms_norm_backward": 2, "cross_entropy": 2, "cross_entropy_backward": 1, "causal_lm": 3,
                "causal_lm_backward": 1}  # fmt: skip
INPUT_COUNTS = {"softmax": 1, "softmax_backward": 2, "layer_norm": 3, "rms_norm": 2, "layer_norm_backward": 4,
                "rms_norm_backward": 4, "cross_entropy": 2, "cross_entropy_backward": 2, "causal_lm": 2,
                "causal_lm_backward": 3}  # fmt: skip
ARG_COUNTS = {"softmax": 1, "softmax_backward": 2, "layer_norm": 4, "rms_norm": 3, "layer_norm_backward": 4,
              "rms_norm_backward": 4, "cross_entropy": 2, "cross_entropy_backward": 3, "causal_lm": 2,
              "causal_lm_backward": 4}  # fmt: skip
FINAL_OUTPUTS = {"softmax": (0,), "softmax_backward": (0,), "layer_norm": (0, 1, 2), "rms_norm": (0, 1, 2),
                 "layer_norm_backward": (0,), "rms_norm_backward": (0,), "cross_entropy": (1,),
                 "cross_entropy_backward": (0,), "causal_lm": (1,), "causal_lm_backward": (0,)}  # fmt: skip

# RULE_ROW_PIECE's modes (element_rules.vy): how a piece's terms update the running statistic
PIECE_MAX, PIECE_EXP_SUM, PIECE_SUM, PIECE_SQ_DEV, PIECE_SQUARE, PIECE_DOT, PIECE_DOT3 = range(7)
# RULE_ROW_FINAL's modes: the output element from the final statistics
(FINAL_SOFTMAX, FINAL_SOFTMAX_BACKWARD, FINAL_LAYER_NORM, FINAL_RMS_NORM, FINAL_LAYER_NORM_BACKWARD,
 FINAL_RMS_NORM_BACKWARD, FINAL_NLL, FINAL_CE_BACKWARD, FINAL_CAUSAL_BACKWARD) = range(9)
# (the first eight in KERNELS' order; causal_lm's nll is FINAL_NLL's, its backward the one mode of its own)
FINAL_MODES = {**{kernel: mode for mode, kernel in enumerate(KERNELS[:8])}, "causal_lm": FINAL_NLL,
               "causal_lm_backward": FINAL_CAUSAL_BACKWARD}  # fmt: skip

# per kernel and statistic: (its piece mode, the statistic whose final value the mode reads or None, the blocks:
# the inputs whose row segments (or, for w, the columns) the piece zips, in the rule's value order)
W = "w"  # a block of the weight vector w (input 2 of a norm backward): columns, not a row segment
STAT_PLANS: dict[str, tuple[tuple[int, int | None, tuple[Any, ...]], ...]] = {
    "softmax": ((PIECE_MAX, None, (0,)), (PIECE_EXP_SUM, 0, (0,))),
    "softmax_backward": ((PIECE_DOT, None, (0, 1)),),
    "layer_norm": ((PIECE_SUM, None, (0,)), (PIECE_SQ_DEV, 0, (0,))),
    "rms_norm": ((PIECE_SQUARE, None, (0,)),),
    "layer_norm_backward": ((PIECE_DOT, None, (3, W)), (PIECE_DOT3, None, (3, W, 0))),
    "rms_norm_backward": ((PIECE_DOT3, None, (3, W, 0)),),
    "cross_entropy": ((PIECE_MAX, None, (0,)), (PIECE_EXP_SUM, 0, (0,))),
    "cross_entropy_backward": ((PIECE_MAX, None, (0,)), (PIECE_EXP_SUM, 0, (0,))),
    "causal_lm": ((PIECE_MAX, None, (0,)), (PIECE_EXP_SUM, 0, (0,))),
    "causal_lm_backward": ((PIECE_MAX, None, (0,)), (PIECE_EXP_SUM, 0, (0,))),
}
WEIGHT_INPUT = 2  # w's input number in a norm backward (x̂, rstd, w, dy)

Read = tuple[int, int, int]  # (input k, first element, count); k >= SELF_READ reads the entry's own output


def _size(shape: Sequence[int]) -> int:
    return int(np.prod([int(n) for n in shape], dtype=object)) if len(shape) else 1


@dataclass(frozen=True)
class RowPiecing:
    """How a row-pieced entry's rows are cut: R rows of D columns in P pieces of L (the last the rest), and
    its statistics output (the entry's last: binary32 [stats · R · P], statistic s of row r after pieces
    0 … c at (s·R + r)·P + c: stat-major, so a final statistic a later one reads lies earlier)."""

    kernel: str
    width: int  # D
    rows: int  # R
    length: int  # L
    pieces: int  # P
    stats: int

    @property
    def size(self) -> int:
        return self.stats * self.rows * self.pieces

    def index(self, stat: int, row: int, piece: int) -> int:
        return (stat * self.rows + row) * self.pieces + piece

    def final(self, stat: int, row: int) -> int:
        """Where statistic `stat` of `row` after the row's last piece lies."""
        return self.index(stat, row, self.pieces - 1)

    def locate(self, element: int) -> tuple[int, int, int]:
        """(statistic s, row r, piece c) of a statistics element."""
        stat, rest = divmod(element, self.rows * self.pieces)
        row, piece = divmod(rest, self.pieces)
        return stat, row, piece

    def columns(self, piece: int) -> range:
        """The row's columns piece c covers: [c·L, min(D, (c + 1)·L))."""
        return range(piece * self.length, min(self.width, (piece + 1) * self.length))


def _whole_row(kernel: str, width: int, size: int) -> bool:
    from protocol.referee_kit import whole_row  # the one copy of the whole-row caps (see the module docstring)

    return whole_row(kernel, width, size)


def _loss_row_within(width: int) -> bool:
    from protocol.referee_kit import cross_entropy_row_within  # RowRules' whole-row cap (module docstring)

    return cross_entropy_row_within(width)


def row_piecing(kernel: str, in_shapes: Sequence[Sequence[int]]) -> RowPiecing | None:
    """The entry's row piecing when it is row-pieced, a function of the kernel and its inputs' shapes alone
    (the recorder asks it before the statistics exist): x (the first input) of [..., D], D >= 1, R =
    elements(x) // D rows; softmax, softmax_backward, layer_norm, rms_norm and the norm backwards when their
    rows are not whole (`referee_kit.whole_row`: D over the kernel's cap; softmax_backward's D not dividing 256
    and over MAX_SOFTMAX_BACKWARD_SPLIT_ROW; a norm backward's D not dividing 256 where x has more than 256
    elements, rows that cross a 256-element boundary, or where D is over MAX_NORM_BACKWARD_SPLIT_ROW: exactly
    the rows RowRules' whole-row rule refuses); the cross-entropies when z is
    2-D and its rows are not within RowRules' whole-row cap (`referee_kit.cross_entropy_row_within`), the
    causal-LM loss's whenever z is 2-D. None otherwise."""
    if kernel not in KERNELS or not in_shapes or not len(in_shapes[0]):
        return None
    x = [int(n) for n in in_shapes[0]]
    width = x[-1]
    if width < 1 or _size(x) == 0:  # no rows: nothing to decide
        return None
    if kernel in LOSSES and (len(x) != 2 or (kernel not in CAUSAL and _loss_row_within(width))):
        return None
    if kernel not in LOSSES and _whole_row(kernel, width, _size(x)):
        return None
    length = PIECE_LENGTH[kernel]
    return RowPiecing(kernel, width, _size(x) // width, length, -(-width // length), STATS[kernel])


# --------------------------------------------------------------------------------------------------
# The mirror of RowPieceRules.vy (contracts/lib/row_piece_rules.vy): what it decides, and what it reads
# --------------------------------------------------------------------------------------------------


def _float_word(word: bytes) -> np.float32 | None:
    """A binary64 or binary32 argument word as binary32 (binary64 rounded to nearest, as HostRules'
    `_fill_value`); None for any other word."""
    from protocol.referee_kit import TAG_FLOAT32, TAG_FLOAT64

    if word[0] == TAG_FLOAT64:
        with np.errstate(all="ignore"):
            return np.float32(np.frombuffer(word[-8:], dtype=">f8")[0])
    if word[0] == TAG_FLOAT32:
        return np.frombuffer(word[-4:], dtype=">f4")[0].astype(np.float32)
    return None


def _loss_pieced(skeleton: Any) -> bool:
    """Whether RowRules folds cross_entropy's (or causal_lm's) mean in pieces (`fold_rules.loss_piecing`): then
    its running values are one more output, between the kernel's own and the statistics."""
    from protocol import fold_rules

    return skeleton.kernel in NLL_ROWS and fold_rules.loss_piecing(skeleton) is not None


def _statistics_fit(skeleton: Any, piecing: RowPiecing) -> bool:
    """The kernel's own outputs (a backward's: and FoldRules' running values of dw/db, when it records
    them; cross_entropy's: and RowRules' loss running sums, exactly when its mean is folded in pieces),
    then the statistics: binary32 [stats · R · P]."""
    from protocol.referee_kit import FLOAT32

    extra = len(skeleton.outputs) - BASE_OUTPUTS[skeleton.kernel]
    allowed = (1, 2) if skeleton.kernel in BACKWARDS else (1 + int(_loss_pieced(skeleton)),)
    return extra in allowed and tuple(skeleton.outputs[-1]) == (FLOAT32, (piecing.size,))


def _loss_shapes_fit(skeleton: Any, piecing: RowPiecing) -> bool:
    """The cross-entropies' shapes and arguments (RowRules' whole-row rules'): t [R]; cross_entropy's mean
    one binary32 value, nll binary32 [R] and the loss running sums, when its mean is pieced, binary32
    [pieces − 1]; the backward's dz binary32 of z's shape and its grad binary64 or binary32."""
    from protocol import fold_rules
    from protocol.referee_kit import FLOAT32

    inputs, outputs, rows = skeleton.inputs, skeleton.outputs, piecing.rows
    if tuple(inputs[1].shape) != (rows,):
        return False
    if skeleton.kernel not in NLL_ROWS:  # a backward: dz of z's shape, its grad the last argument (the causal
        # one's count one value)
        return (tuple(outputs[0]) == (FLOAT32, tuple(inputs[0].shape)) and _float_word(skeleton.args[-1]) is not None
                and (skeleton.kernel == "cross_entropy_backward" or _size(inputs[2].shape) == 1))  # fmt: skip
    mean = outputs[0][0] == FLOAT32 and _size(outputs[0][1]) == 1
    base = BASE_OUTPUTS[skeleton.kernel]
    count = skeleton.kernel == "cross_entropy" or (outputs[2][0] == FLOAT32 and _size(outputs[2][1]) == 1)
    loss = fold_rules.loss_piecing(skeleton)
    sums = loss is None or tuple(outputs[base]) == (FLOAT32, ((loss.pieces - 1) * loss.size,))
    return mean and tuple(outputs[1]) == (FLOAT32, (rows,)) and count and sums


def _shapes_fit(skeleton: Any, piecing: RowPiecing) -> bool:
    """The shapes and arguments the whole-row rule of the kernel requires (HostRules' softmax, its backward
    and layer_norm; RowRules' rms_norm and the norm backwards' dx): operands of x's shape, w and b [D],
    rstd R values, eps binary64 or binary32; output 0 (y, dz, dx) binary32 of x's shape, a forward norm's x̂
    binary32 of x's shape and its rstd binary32, R values (RowPieceRules checks these whatever the disputed
    output, so every output it may be asked is binary32)."""
    from protocol.referee_kit import FLOAT32

    kernel, inputs, outputs, args = skeleton.kernel, skeleton.inputs, skeleton.outputs, skeleton.args
    if kernel in LOSSES:
        return _loss_shapes_fit(skeleton, piecing)
    x, width = tuple(inputs[0].shape), piecing.width
    if tuple(outputs[0]) != (FLOAT32, x):
        return False
    if kernel in ("softmax", "softmax_backward"):
        return all(tuple(r.shape) == x for r in inputs)
    if kernel in ("layer_norm", "rms_norm"):
        vectors = inputs[1:]
        return (_float_word(args[-1]) is not None and all(tuple(r.shape) == (width,) for r in vectors)
                and tuple(outputs[1]) == (FLOAT32, x) and outputs[2][0] == FLOAT32 and _size(outputs[2][1]) == piecing.rows)  # fmt: skip
    return _size(inputs[1].shape) == piecing.rows and tuple(inputs[2].shape) == (width,) and tuple(inputs[3].shape) == x


def statistics_output(skeleton: Any) -> int | None:
    """The output holding a row-pieced entry's statistics (its last), or None when the entry is not
    row-pieced or its outputs are not the kernel's then the statistics (`_statistics_fit`). `skeleton` is a
    parsed skeleton or anything with its kernel, inputs' shapes and outputs (the referee model's call)."""
    if skeleton.kernel not in KERNELS:  # (other kernels are asked too: only the row kernels' shapes are read)
        return None
    piecing = row_piecing(skeleton.kernel, [r.shape for r in skeleton.inputs])
    if piecing is None or not _statistics_fit(skeleton, piecing):
        return None
    return len(skeleton.outputs) - 1


def row_piece_checkable(skeleton: Any, output: int) -> bool:
    """Whether RowPieceRules.vy decides every element of `output` of a parsed skeleton
    (`protocol.referee_kit.parse_skeleton`): one of the row kernels, row-pieced (`row_piecing`), its
    inputs binary32 state tensors or earlier outputs named in order by its arguments (the cross-entropies'
    targets int64, also constants: `_inputs_fit`), the whole-row kernel's shapes (`_shapes_fit`), the
    statistics its last output (`_statistics_fit`), and the disputed output a non-empty binary32 final
    output (softmax's and the backwards' output 0, a norm's y, x̂ and rstd, cross_entropy's nll) or the
    statistics."""
    from protocol.referee_kit import FLOAT32, MAX_HOST_INPUTS, _names_inputs

    kernel = skeleton.kernel
    if kernel not in KERNELS or not 0 <= output < len(skeleton.outputs) or len(skeleton.inputs) > MAX_HOST_INPUTS:
        return False
    piecing = row_piecing(kernel, [r.shape for r in skeleton.inputs])
    if piecing is None or not _names_inputs(skeleton, INPUT_COUNTS[kernel]) or len(skeleton.args) != ARG_COUNTS[kernel]:
        return False
    if not _inputs_fit(skeleton):
        return False
    code, shape = skeleton.outputs[output]
    if code != FLOAT32 or _size(shape) == 0:
        return False
    if not _statistics_fit(skeleton, piecing) or not _shapes_fit(skeleton, piecing):
        return False
    return output in FINAL_OUTPUTS[kernel] or output == len(skeleton.outputs) - 1


def _inputs_fit(skeleton: Any) -> bool:
    """Every input a binary32 state tensor or earlier output, but a cross-entropy's targets (input 1): int64,
    a state tensor, an earlier output or a constant (as RowRules' whole-row rule allows)."""
    from protocol.referee_kit import FLOAT32, INT64, _provable

    targets = 1 if skeleton.kernel in LOSSES else None
    return all(_provable(r, INT64, True) if k == targets else _provable(r, FLOAT32, False)
               for k, r in enumerate(skeleton.inputs))  # fmt: skip


def _segment_reads(k: Any, piecing: RowPiecing, row: int, piece: int) -> list[Read]:
    """One block of a piece: input k's row segment over the piece's columns (one run, or two across a
    256-element boundary), or w's columns (one run: c·L is a multiple of L, which divides 256)."""
    from protocol.referee_kit import _row_reads

    columns = piecing.columns(piece)
    if k == W:
        return [(WEIGHT_INPUT, columns.start, len(columns))]
    return _row_reads(k, row * piecing.width + columns.start, len(columns))


def final_row(kernel: str, output: int, piecing: RowPiecing, element: int) -> int:
    """The row of a final output element: a norm's rstd and cross_entropy's (causal_lm's) nll hold one element a row."""
    one_a_row = output == 2 if kernel in ("layer_norm", "rms_norm") else kernel in NLL_ROWS
    return element if one_a_row else element // piecing.width


def nll_target(piecing: RowPiecing, hints: Sequence[int]) -> int:
    """The target t an nll element's plan reads z[r·D + t] at: its one hint, which must be a column of z
    (the rule then requires the proven t[r] to be it), or for the causal loss's nll IGNORE (the row is not
    counted: its plan reads z[r·D] and the rule gives +0). ValueError otherwise (RowPieceRules reverts)."""
    if len(hints) == 1 and piecing.kernel == "causal_lm" and int(hints[0]) == IGNORE:
        return IGNORE
    if len(hints) != 1 or not 0 <= int(hints[0]) < piecing.width:
        raise ValueError(f"an nll element takes one hint, its target, a column of z's {piecing.width}: not {tuple(hints)}")
    return int(hints[0])


def nll_hint(target: int) -> int:
    """The hint of an nll element of a row whose target is `target` (−1: IGNORE, the 64-bit pattern)."""
    return IGNORE if int(target) == -1 else int(target)


def _final_layout(kernel: str, output: int, piecing: RowPiecing, element: int,
                  hints: Sequence[int] = ()) -> list[tuple[Any, int]]:  # fmt: skip
    """The values RULE_ROW_FINAL reads for output element `element`, in order: (input k, element) or
    ("stat", s) for statistic s's final value of the element's row. cross_entropy's nll element r reads
    z[r·D + t] at the hinted target t (`nll_target`), the backward's dz element its own logit; both then
    M, S and the row's target t[r]."""
    row = final_row(kernel, output, piecing, element)
    column = element % piecing.width  # (read by a norm's y only)
    if kernel in LOSSES:
        if kernel in NLL_ROWS:
            target = nll_target(piecing, hints)
            logit = row * piecing.width + (0 if target == IGNORE else target)
        else:
            logit = element
        return [(0, logit), ("stat", 0), ("stat", 1), (1, row)] + ([(2, 0)] if kernel == "causal_lm_backward" else [])
    own = [(0, element)]
    if kernel == "softmax":
        return [*own, ("stat", 0), ("stat", 1)]
    if kernel == "softmax_backward":
        return [*own, (1, element), ("stat", 0)]
    if kernel == "layer_norm":
        stats = [("stat", 0), ("stat", 1)]
        return [("stat", 1)] if output == 2 else [*own, *stats] + ([(1, column), (2, column)] if output == 0 else [])
    if kernel == "rms_norm":
        return [("stat", 0)] if output == 2 else [*own, ("stat", 0)] + ([(1, column)] if output == 0 else [])
    backward = [*own, (1, row), (2, column), (3, element)]
    return backward + ([("stat", 0), ("stat", 1)] if kernel == "layer_norm_backward" else [("stat", 0)])


def final_layout(kernel: str, output: int, piecing: RowPiecing, element: int,
                 hints: Sequence[int] = ()) -> list[tuple[Any, int]]:  # fmt: skip
    """`_final_layout` with each statistic placed: ("stats", its element in the statistics output)."""
    row = final_row(kernel, output, piecing, element)
    layout = _final_layout(kernel, output, piecing, element, hints)
    return [("stats", piecing.final(s, row)) if k == "stat" else (k, s) for k, s in layout]


def stat_layout(piecing: RowPiecing, element: int) -> tuple[int, int | None, int | None, tuple[Any, ...]]:
    """(mode, the statistics element of the final statistic it reads or None, the running value before the
    piece or None, the blocks) of statistics element `element`."""
    stat, row, piece = piecing.locate(element)
    mode, reads_final, blocks = STAT_PLANS[piecing.kernel][stat]
    final = None if reads_final is None else piecing.final(reads_final, row)
    return mode, final, (element - 1 if piece else None), blocks


def row_piece_reads(skeleton: Any, output: int, element: int, hints: Sequence[int] = ()) -> list[Read]:
    """(input k, first element, count) of each run RowPieceRules reads for `element` of `output`, in
    `prove_element`'s order; k = SELF_READ + o reads output o of the entry itself (the statistics). A
    statistics element (s, r, c): the final statistic its mode reads (softmax's S: M_final(r), layer_norm's
    S2: S1_final(r)), the running value before it (c > 0), then its blocks' row segments. A final element e:
    its values in RULE_ROW_FINAL's order, inputs as runs of one and the final statistics as SELF reads
    (cross_entropy's nll element r: z at the target `hints` = (t,) names, `nll_target`; other elements'
    hints are not read). ValueError for an output RowPieceRules does not decide, an element outside it, or
    an nll element's missing or out-of-row hint."""
    from protocol.referee_kit import SELF_READ

    if not row_piece_checkable(skeleton, output) or not 0 <= element < _size(skeleton.outputs[output][1]):
        raise ValueError(f"the row piece rules do not decide element {element} of output {output} of a {skeleton.kernel!r} entry")
    piecing = row_piecing(skeleton.kernel, [r.shape for r in skeleton.inputs])
    assert piecing is not None
    statistics = SELF_READ + len(skeleton.outputs) - 1
    if output != len(skeleton.outputs) - 1:
        layout = final_layout(skeleton.kernel, output, piecing, element, hints)
        return [(statistics, i, 1) if k == "stats" else (k, i, 1) for k, i in layout]
    _, final, before, blocks = stat_layout(piecing, element)
    _, row, piece = piecing.locate(element)
    reads = [(statistics, i, 1) for i in (final, before) if i is not None]
    return reads + [read for k in blocks for read in _segment_reads(k, piecing, row, piece)]


def eps_bits(skeleton: Any) -> int:
    """A norm's eps argument (its last) as binary32 bits, binary64 rounded to nearest; the backward
    cross-entropy's grad (its last) the same; 0 where the kernel has neither."""
    if skeleton.kernel not in ("layer_norm", "rms_norm", "cross_entropy_backward", "causal_lm_backward"):
        return 0
    value = _float_word(skeleton.args[-1])
    assert value is not None
    return int(np.array([value], dtype=np.float32).view(np.uint32)[0])


RULE_ROW_PIECE, RULE_ROW_FINAL = 40, 41  # element_rules.vy's codes (protocol.referee_calls.RULE: row_piece, row_final)


def final_params(kernel: str, output: int, piecing: RowPiecing, element: int, hints: Sequence[int],
                 eps: int) -> tuple[int, int, int, int]:  # fmt: skip
    """RULE_ROW_FINAL's four parameters: [mode, output, D, eps's binary32 bits or 0] for the norms and
    softmaxes; cross_entropy's nll [FINAL_NLL, t (the hint), D, 0]; the backward's dz [FINAL_CE_BACKWARD,
    j = e % D, R, grad's binary32 bits] (`eps` here: grad's bits, as `eps_bits` gives them)."""
    if kernel in NLL_ROWS:
        return FINAL_NLL, nll_target(piecing, hints), piecing.width, 0
    if kernel in ("cross_entropy_backward", "causal_lm_backward"):
        return FINAL_MODES[kernel], element % piecing.width, piecing.rows, eps
    return FINAL_MODES[kernel], output, piecing.width, eps


def row_piece_rule(skeleton: Any, output: int, element: int, hints: Sequence[int] = ()) -> tuple[int, tuple[int, ...]]:
    """The element rule and parameters RowPieceRules plans for `element` of `output`: a statistic is
    RULE_ROW_PIECE [mode, 1 if it starts from the running value before it else 0, D]; a final element
    RULE_ROW_FINAL (`final_params`)."""
    row_piece_reads(skeleton, output, element, hints)  # refuses what RowPieceRules does not decide
    piecing = row_piecing(skeleton.kernel, [r.shape for r in skeleton.inputs])
    assert piecing is not None
    if output == len(skeleton.outputs) - 1:
        mode, _, before, _ = stat_layout(piecing, element)
        return RULE_ROW_PIECE, (mode, int(before is not None), piecing.width)
    return RULE_ROW_FINAL, final_params(skeleton.kernel, output, piecing, element, hints, eps_bits(skeleton))
