# pragma version ~=0.4.3
"""
@title row_piece_rules
@notice The referee game's rules of rows decided in pieces (docs/referee.md, "Rows in pieces"): a
        normalisation or softmax row wider than its row cap (host_rules' MAX_SOFTMAX_ROW,
        MAX_SOFTMAX_BACKWARD_ROW, MAX_LAYER_NORM_ROW, MAX_LAYER_NORM_BACKWARD_ROW,
        MAX_RMS_NORM_BACKWARD_ROW; row_rules' MAX_RMS_NORM_ROW), a softmax_backward or norm backward row
        whose width does not divide RUN_ELEMENTS and is over MAX_SOFTMAX_BACKWARD_SPLIT_ROW or
        MAX_NORM_BACKWARD_SPLIT_ROW, or a norm backward's row that crosses a RUN_ELEMENTS boundary, is recorded with one more output, last: its rows' running statistics
        (binary32, [n_stats · R · P], statistic s of row r after pieces 0 … c at (s · R + r) · P + c),
        each decided from the one before it and one piece of the row (RULE_ROW_PIECE), and every output
        element from its own inputs and its row's final statistics (RULE_ROW_FINAL). Kernels, their
        piece length L and statistics: `softmax` (16: the running first maximum M, then Σ exp(z - M)),
        `softmax_backward` (64: Σ y · dy), `layer_norm` (64: Σ x, then Σ (x - μ)²), `rms_norm` (128:
        Σ x²), `layer_norm_backward` (32: Σ dy · w, then Σ (dy · w) · x̂) and `rms_norm_backward` (32:
        Σ (dy · w) · x̂), and `cross_entropy` and `cross_entropy_backward` over rows RowRules does not
        take whole (row_rules._whole_rows: softmax's statistics and pieces of z), and the causal-LM
        loss's `causal_lm` and `causal_lm_backward` over any rows (the same statistics; a row whose
        target is -1 is not counted: its nll and dz are +0, and dz divides by the proven count of
        counted rows, the backward's input 2). The outputs checked:
        softmax's and softmax_backward's y, the forward norms' y, x̂ and rstd, the backwards' dx (FoldRules
        decides dw, db and their running values), cross-entropy's and the causal loss's nll (hinted by its
        row's target, -1 included; RowRules decides the mean, the count and their running values) and dz,
        and the statistics. Every other kernel, output,
        input kind or shape, and every row that is not in pieces, is not checkable here.
@dev Pure (no state, no calls), deployed as `RowPieceRules.vy`, RefereeGame's sixth rules contract. Its
     Python mirror is `protocol/row_pieces.py` (`row_piece_reads`); tests/unit/contracts/test_row_piece_rules.py.
"""

from . import commitments
from . import host_rules
from . import row_rules

RULE_ROW_PIECE: constant(uint256) = 40
RULE_ROW_FINAL: constant(uint256) = 41

# element_rules' ROW_PIECE modes
PIECE_MAX: constant(uint256) = 0
PIECE_EXP_SUM: constant(uint256) = 1
PIECE_SUM: constant(uint256) = 2
PIECE_SQ_DEV: constant(uint256) = 3
PIECE_SQUARE: constant(uint256) = 4
PIECE_DOT: constant(uint256) = 5
PIECE_DOT3: constant(uint256) = 6

# Each kernel's piece length L: a power of two dividing 256 (a piece of w is one aligned run), the largest
# whose dearest honest piece (two runs a row segment, every input under the deepest record path,
# personas/row_worst_case.py `largest_row_piece_proof`) stays under 1,000,000 gas with room for the values'
# spread (docs/referee.md, "Rows in pieces": softmax's pieces of 32 paid 1,031,614, the norm backwards' of
# 64 up to 979,185)
PIECE_LENGTH_SOFTMAX: constant(uint256) = 16
PIECE_LENGTH_SOFTMAX_BACKWARD: constant(uint256) = 64
PIECE_LENGTH_LAYER_NORM: constant(uint256) = 64
PIECE_LENGTH_RMS_NORM: constant(uint256) = 128
PIECE_LENGTH_NORM_BACKWARD: constant(uint256) = 32

# The kernels, numbered as element_rules' ROW_FINAL modes (a kernel's code is its final mode).
KERNEL_SOFTMAX: constant(uint256) = 0
KERNEL_SOFTMAX_BACKWARD: constant(uint256) = 1
KERNEL_LAYER_NORM: constant(uint256) = 2
KERNEL_RMS_NORM: constant(uint256) = 3
KERNEL_LAYER_NORM_BACKWARD: constant(uint256) = 4
KERNEL_RMS_NORM_BACKWARD: constant(uint256) = 5
KERNEL_NLL: constant(uint256) = 6  # cross_entropy: its nll rows (the mean stays RowRules')
KERNEL_CE_BACKWARD: constant(uint256) = 7  # cross_entropy_backward
KERNEL_CAUSAL_BACKWARD: constant(uint256) = 8  # causal_lm_backward
KERNEL_CAUSAL_NLL: constant(uint256) = 9  # causal_lm: its nll rows (final mode FINAL_NLL; the mean and count RowRules')
KERNEL_NONE: constant(uint256) = 1_000
IGNORE: constant(uint256) = (1 << 64) - 1  # the int64 target -1: a row the causal-LM loss does not count


# What the plans need of a row-pieced entry, computed once from its shapes.
struct Rows:
    kernel: uint256
    # the row's width D, the rows R, the piece length L, the pieces P = ceil(D / L), the statistics n_stats
    width: uint256
    rows: uint256
    length: uint256
    pieces: uint256
    stats: uint256
    # the statistics output (the entry's last)
    output: uint256


@internal
@pure
def _kernel(name_key: uint256) -> uint256:
    """
    @notice The row kernel of a name's key (host_rules._parse).
    @param name_key The kernel name's key.
    @return A KERNEL_* code, or KERNEL_NONE.
    """
    if name_key == 8_317_979_687_013_939_207:  # softmax
        return KERNEL_SOFTMAX
    if name_key == 39_280_548_479_145_168_817_737_733_114_359_436_174_352:  # softmax_backward
        return KERNEL_SOFTMAX_BACKWARD
    if name_key == 131_024_297_433_261_298_406_288_650:  # layer_norm
        return KERNEL_LAYER_NORM
    if name_key == 2_110_815_576_703_265_565_960:  # rms_norm
        return KERNEL_RMS_NORM
    if name_key == 618_744_750_640_376_440_682_374_728_143_722_151_207_742_104_595:  # layer_norm_backward
        return KERNEL_LAYER_NORM_BACKWARD
    if name_key == 9_968_044_730_942_662_032_321_881_697_510_010_106_569_745:  # rms_norm_backward
        return KERNEL_RMS_NORM_BACKWARD
    if name_key == 2_017_025_053_695_532_826_565_717_150_169_357:  # cross_entropy
        return KERNEL_NLL
    if name_key == 9_525_131_508_680_130_637_155_899_359_732_047_165_988_681_930_153_026_582:  # cross_entropy_backward
        return KERNEL_CE_BACKWARD
    if name_key == 469_312_079_194_487_547_260_169:  # causal_lm
        return KERNEL_CAUSAL_NLL
    if name_key == 2_216_263_632_793_912_555_749_425_156_153_755_387_192_042_514:  # causal_lm_backward
        return KERNEL_CAUSAL_BACKWARD
    return KERNEL_NONE


@internal
@pure
def _facts(kernel: uint256) -> (uint256, uint256, uint256, uint256, uint256, uint256):
    """
    @notice A row kernel's tensor operands, arguments, row cap, piece length, statistics and own outputs.
    @param kernel A KERNEL_* code other than KERNEL_NONE.
    @return (operands, arguments, cap, L, n_stats, outputs before the statistics and FoldRules' running values).
    """
    if kernel == KERNEL_SOFTMAX:
        return 1, 1, host_rules.MAX_SOFTMAX_ROW, PIECE_LENGTH_SOFTMAX, 2, 1
    if kernel == KERNEL_SOFTMAX_BACKWARD:
        return 2, 2, host_rules.MAX_SOFTMAX_BACKWARD_ROW, PIECE_LENGTH_SOFTMAX_BACKWARD, 1, 1
    if kernel == KERNEL_LAYER_NORM:
        return 3, 4, host_rules.MAX_LAYER_NORM_ROW, PIECE_LENGTH_LAYER_NORM, 2, 3
    if kernel == KERNEL_RMS_NORM:
        return 2, 3, row_rules.MAX_RMS_NORM_ROW, PIECE_LENGTH_RMS_NORM, 1, 3
    if kernel == KERNEL_LAYER_NORM_BACKWARD:
        return 4, 4, host_rules.MAX_LAYER_NORM_BACKWARD_ROW, PIECE_LENGTH_NORM_BACKWARD, 2, 3
    if kernel == KERNEL_RMS_NORM_BACKWARD:
        return 4, 4, host_rules.MAX_RMS_NORM_BACKWARD_ROW, PIECE_LENGTH_NORM_BACKWARD, 1, 2
    # cross-entropy: z and t; softmax's statistics and pieces; the cap is RowRules' (`_whole_rows`; the causal-LM
    # loss's rows are always in pieces); the mean and nll (and the causal loss's count; the running values of
    # the mean's pieces are counted in `_check`); the causal backward also reads the count
    if kernel == KERNEL_NLL:
        return 2, 2, row_rules.MAX_CROSS_ENTROPY_ROW, PIECE_LENGTH_SOFTMAX, 2, 2
    if kernel == KERNEL_CAUSAL_NLL:
        return 2, 2, 0, PIECE_LENGTH_SOFTMAX, 2, 3
    if kernel == KERNEL_CAUSAL_BACKWARD:
        return 3, 4, 0, PIECE_LENGTH_SOFTMAX, 2, 1
    return 2, 3, row_rules.MAX_CROSS_ENTROPY_ROW, PIECE_LENGTH_SOFTMAX, 2, 1


@internal
@pure
def _check(parsed: host_rules.Skeleton, output: uint256) -> (bool, Rows):
    """
    @notice Whether every element of this output is decided in pieces here: a row kernel whose rows are
            in pieces (wider than its cap; a norm backward's also when they cross a RUN_ELEMENTS
            boundary, `host_rules._norm_backward_pieced`), binary32 state tensors or earlier outputs
            named in order by its arguments, the shapes the whole-row rules require (w and b [D], rstd
            one value a row, y, dy and x̂ of x's shape, eps binary64 or binary32), its own outputs (a
            backward's then FoldRules' running values or not), then the statistics, binary32
            [n_stats · R · P]; the disputed output a final one (softmax's and its backward's 0, the
            forward norms' 0, 1 and 2, the backwards' dx) or the statistics.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether it is checkable, and the entry's rows (empty when it is not).
    """
    rows: Rows = empty(Rows)
    kernel: uint256 = self._kernel(parsed.name_key)
    # (checked before any input or output is indexed: a malformed skeleton is not checkable, never a revert)
    if kernel == KERNEL_NONE or output >= len(parsed.outputs) or parsed.input_count > host_rules.MAX_INPUTS:
        return False, rows
    operands: uint256 = 0
    arguments: uint256 = 0
    cap: uint256 = 0
    length: uint256 = 0
    stats: uint256 = 0
    own: uint256 = 0
    operands, arguments, cap, length, stats, own = self._facts(kernel)
    rows.length = length
    rows.stats = stats
    if not host_rules._names_inputs(parsed, operands) or parsed.arg_count != arguments:
        return False, rows
    cross_entropy: bool = kernel >= KERNEL_NLL
    causal: bool = kernel >= KERNEL_CAUSAL_BACKWARD
    nll_rows: bool = kernel == KERNEL_NLL or kernel == KERNEL_CAUSAL_NLL
    for k: uint256 in range(host_rules.MAX_INPUTS):
        if k >= parsed.input_count:
            break
        # every operand a binary32 state tensor or earlier output, but cross-entropy's targets: int64, and
        # may be a constant (as RowRules' whole rows)
        if cross_entropy and k == 1:
            if not row_rules._provable(parsed.inputs[1], commitments.DTYPE_INT64, True):
                return False, rows
        elif not row_rules._provable(parsed.inputs[k], commitments.DTYPE_FLOAT32, False):
            return False, rows
    x: host_rules.Ref = parsed.inputs[0]
    backward: bool = kernel == KERNEL_LAYER_NORM_BACKWARD or kernel == KERNEL_RMS_NORM_BACKWARD
    rows.width = row_rules._width(x)
    size: uint256 = commitments._element_count(x.dims)
    if rows.width == 0 or size == 0:
        return False, rows
    if backward:
        if not host_rules._norm_backward_pieced(x, cap):
            return False, rows
    elif cross_entropy:
        # z [R, D], t [R]: rows RowRules cannot take whole (`row_rules._whole_rows`), or any rows of the causal-LM
        # loss; its backward's count one value
        if len(x.dims) != 2 or (row_rules._whole_rows(x) and not causal) or not host_rules._same_dims(parsed.inputs[1].dims, [x.dims[0]]):
            return False, rows
        if kernel == KERNEL_CAUSAL_BACKWARD and commitments._element_count(parsed.inputs[2].dims) != 1:
            return False, rows
    elif rows.width <= cap and not (kernel == KERNEL_SOFTMAX_BACKWARD and host_rules._softmax_backward_split(rows.width)):
        return False, rows
    rows.kernel = kernel
    rows.rows = size // rows.width
    rows.pieces = (rows.width + rows.length - 1) // rows.length
    # the backwards' dw and db may be followed by FoldRules' running values (it decides them); cross_entropy's
    # mean (and the causal loss's count) by RowRules' running values exactly when it is in pieces (over MAX_FOLD rows)
    count: uint256 = len(parsed.outputs)
    if nll_rows and rows.rows > host_rules.MAX_FOLD:
        own += 1
    if count != own + 1 and (not backward or count != own + 2):
        return False, rows
    rows.output = count - 1
    statistics: host_rules.Ref = parsed.outputs[rows.output]
    if statistics.code != commitments.DTYPE_FLOAT32 or not host_rules._same_dims(statistics.dims, [rows.stats * rows.rows * rows.pieces]):
        return False, rows
    if nll_rows:
        # the mean one binary32 value, nll binary32 [R] (output 1; the mean is RowRules'), the causal loss's count
        # one binary32 value (output 2), the running values binary32 [pieces - 1] (the causal loss's: [2 ·
        # (pieces - 1)], the sum and the count after each piece) where the mean is in pieces (RowRules' shapes:
        # the outputs mean what they say)
        mean: host_rules.Ref = parsed.outputs[0]
        nll: host_rules.Ref = parsed.outputs[1]
        checkable: bool = (
            (output == 1 or output == rows.output)
            and mean.code == commitments.DTYPE_FLOAT32
            and commitments._element_count(mean.dims) == 1
            and nll.code == commitments.DTYPE_FLOAT32
            and host_rules._same_dims(nll.dims, [rows.rows])
        )
        per_piece: uint256 = 1
        if causal:
            per_piece = 2
            tally: host_rules.Ref = parsed.outputs[2]
            checkable = checkable and tally.code == commitments.DTYPE_FLOAT32 and commitments._element_count(tally.dims) == 1
        if rows.rows > host_rules.MAX_FOLD:
            sums: host_rules.Ref = parsed.outputs[own - 1]
            pieces: uint256 = (rows.rows + host_rules.MAX_FOLD - 1) // host_rules.MAX_FOLD
            checkable = checkable and sums.code == commitments.DTYPE_FLOAT32 and host_rules._same_dims(sums.dims, [per_piece * (pieces - 1)])
        return checkable, rows
    y: host_rules.Ref = parsed.outputs[0]
    if y.code != commitments.DTYPE_FLOAT32 or not host_rules._same_dims(y.dims, x.dims):
        return False, rows
    forward_norm: bool = kernel == KERNEL_LAYER_NORM or kernel == KERNEL_RMS_NORM
    if output != rows.output and output != 0 and not (forward_norm and output <= 2):
        return False, rows
    width: DynArray[uint256, commitments.MAX_NDIM] = [rows.width]
    checkable: bool = True
    if kernel == KERNEL_CE_BACKWARD or kernel == KERNEL_CAUSAL_BACKWARD:
        # grad binary64 or binary32, the last argument (after z and t, and the causal loss's count)
        tag: uint256 = host_rules._arg(parsed, arguments - 1) >> 248
        checkable = tag == host_rules.TAG_FLOAT64 or tag == host_rules.TAG_FLOAT32
    elif kernel == KERNEL_SOFTMAX_BACKWARD:
        checkable = host_rules._same_dims(parsed.inputs[1].dims, x.dims)
    elif forward_norm:
        # w (and layer norm's b) [D], the eps argument after them; x̂ of x's shape, rstd one value a row
        tag: uint256 = host_rules._arg(parsed, arguments - 1) >> 248
        x_hat: host_rules.Ref = parsed.outputs[1]
        rstd: host_rules.Ref = parsed.outputs[2]
        checkable = (
            (tag == host_rules.TAG_FLOAT64 or tag == host_rules.TAG_FLOAT32)
            and host_rules._same_dims(parsed.inputs[1].dims, width)
            and (kernel == KERNEL_RMS_NORM or host_rules._same_dims(parsed.inputs[2].dims, width))
            and x_hat.code == commitments.DTYPE_FLOAT32
            and host_rules._same_dims(x_hat.dims, x.dims)
            and rstd.code == commitments.DTYPE_FLOAT32
            and commitments._element_count(rstd.dims) == rows.rows
        )
    elif backward:
        # x̂, rstd (one value a row), w [D], dy of x̂'s shape
        checkable = (
            commitments._element_count(parsed.inputs[1].dims) == rows.rows
            and host_rules._same_dims(parsed.inputs[2].dims, width)
            and host_rules._same_dims(parsed.inputs[3].dims, x.dims)
        )
    return checkable, rows


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
    checkable: bool = False
    rows: Rows = empty(Rows)
    checkable, rows = self._check(parsed, output)
    shape: host_rules.Ref = parsed.outputs[output]
    return count, checkable, shape.code, shape.dims


@internal
@pure
def _plan(
    raw: Bytes[host_rules.MAX_SKELETON], output: uint256, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> host_rules.Plan:
    """
    @notice How output element `element` of a checkable output is decided (reverts for an output these
            rules cannot check, or an element outside it): a statistic by its piece, an output element
            from its row's final statistics.
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index in it.
    @param hints A row-pieced nll's: [its row's target] (`_cross_entropy_plan`); unused for every other element.
    @return The plan.
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    checkable: bool = False
    rows: Rows = empty(Rows)
    checkable, rows = self._check(parsed, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "row_piece_rules: not a checkable element"
    if output == rows.output:
        return self._piece_plan(parsed, rows, element)
    if rows.kernel >= KERNEL_NLL:
        plan: host_rules.Plan = self._cross_entropy_plan(parsed, rows, element, hints)
        # constant targets: RefereeGame proves their root against the skeleton's, which the read carries
        if plan.reads[3].kind == row_rules.REF_CONSTANT:
            plan.reads[3].a = row_rules._constant_root(raw, 1)
        return plan
    return self._final_plan(parsed, rows, output, element)


@internal
@pure
def _final_index(rows: Rows, stat: uint256, row: uint256) -> uint256:
    """
    @notice Where statistic `stat` of row `row` after its last piece lies in the statistics output.
    @param rows The entry's rows.
    @param stat The statistic.
    @param row The row.
    @return (stat · R + row) · P + P - 1.
    """
    return (stat * rows.rows + row) * rows.pieces + rows.pieces - 1


@internal
@pure
def _piece_plan(parsed: host_rules.Skeleton, rows: Rows, element: uint256) -> host_rules.Plan:
    """
    @notice Statistic s of row r after piece c (element (s · R + r) · P + c): RULE_ROW_PIECE with
            [mode, c > 0, D]; reads the final statistic its mode reads (softmax's M for Σ exp, layer
            norm's Σ x for Σ (x - μ)²: an earlier statistic of the same output), then the running value
            before it (c > 0: the element before it), then its blocks, each the piece's segment of a
            row (one run, or two across a RUN_ELEMENTS boundary) or of w (one run: L divides it).
    @param parsed The parsed skeleton.
    @param rows The entry's rows (`_check`).
    @param element The statistic's index.
    @return The plan.
    """
    stat: uint256 = element // (rows.rows * rows.pieces)
    rest: uint256 = element % (rows.rows * rows.pieces)
    row: uint256 = rest // rows.pieces
    piece: uint256 = rest % rows.pieces
    start: uint256 = piece * rows.length
    n: uint256 = min(rows.length, rows.width - start)
    # each kernel's mode for its statistic s, and its blocks (inputs, in order; w is the backwards' input 2)
    mode: uint256 = PIECE_DOT
    blocks: DynArray[uint256, 3] = [0, 1]
    if rows.kernel == KERNEL_SOFTMAX or rows.kernel >= KERNEL_NLL:
        mode = PIECE_MAX
        if stat == 1:
            mode = PIECE_EXP_SUM
        blocks = [0]
    elif rows.kernel == KERNEL_LAYER_NORM:
        mode = PIECE_SUM
        if stat == 1:
            mode = PIECE_SQ_DEV
        blocks = [0]
    elif rows.kernel == KERNEL_RMS_NORM:
        mode = PIECE_SQUARE
        blocks = [0]
    elif rows.kernel == KERNEL_LAYER_NORM_BACKWARD or rows.kernel == KERNEL_RMS_NORM_BACKWARD:
        # dy, w, then x̂ for Σ (dy · w) · x̂: layer norm's second statistic, rms norm's only one
        blocks = [3, 2]
        if stat + 1 == rows.stats:
            mode = PIECE_DOT3
            blocks.append(0)
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = RULE_ROW_PIECE
    plan.params = [mode, 0, rows.width]
    if mode == PIECE_EXP_SUM or mode == PIECE_SQ_DEV:
        plan.reads.append(row_rules._self_read(parsed, rows.output, self._final_index(rows, 0, row), 1))
    if piece > 0:
        plan.params[1] = 1
        plan.reads.append(row_rules._self_read(parsed, rows.output, element - 1, 1))
    for k: uint256 in blocks:
        if k == 2:
            plan.reads.append(host_rules._read(parsed, 2, start, n))
        else:
            segment: DynArray[host_rules.Read, 2] = host_rules._row_reads(parsed, k, row * rows.width + start, n)
            for read: host_rules.Read in segment:
                plan.reads.append(read)
    return plan


@internal
@pure
def _final_plan(parsed: host_rules.Skeleton, rows: Rows, output: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice An output element e (row r = e // D, column j = e % D; rstd's element r is row r):
            RULE_ROW_FINAL with [kernel's mode, output, D, eps (0 but for the forward norms)]; reads, in
            its layout's order, its own inputs as runs of one (x, z, y or x̂ at e, rstd[r], w[j], dy[e],
            b[j]) and its row's final statistics (REF_SELF reads of the statistics output).
    @param parsed The parsed skeleton.
    @param rows The entry's rows (`_check`).
    @param output The disputed output (a final one).
    @param element The element's row-major index.
    @return The plan.
    """
    row: uint256 = element // rows.width
    column: uint256 = element % rows.width
    eps: uint256 = 0
    if rows.kernel == KERNEL_LAYER_NORM:
        eps = host_rules._fill_value(host_rules._arg(parsed, 3))
    elif rows.kernel == KERNEL_RMS_NORM:
        eps = host_rules._fill_value(host_rules._arg(parsed, 2))
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = RULE_ROW_FINAL
    plan.params = [rows.kernel, output, rows.width, eps]
    if output == 2:
        # a forward norm's rstd[r]: the variance's statistic alone (layer norm's second, rms norm's only one)
        plan.reads = [row_rules._self_read(parsed, rows.output, self._final_index(rows, rows.stats - 1, element), 1)]
        return plan
    if rows.kernel >= KERNEL_LAYER_NORM_BACKWARD:
        plan.reads = [
            host_rules._read(parsed, 0, element, 1),
            host_rules._read(parsed, 1, row, 1),
            host_rules._read(parsed, 2, column, 1),
            host_rules._read(parsed, 3, element, 1),
        ]
    else:
        plan.reads = [host_rules._read(parsed, 0, element, 1)]
        if rows.kernel == KERNEL_SOFTMAX_BACKWARD:
            plan.reads.append(host_rules._read(parsed, 1, element, 1))
    for stat: uint256 in range(2):
        if stat >= rows.stats:
            break
        plan.reads.append(row_rules._self_read(parsed, rows.output, self._final_index(rows, stat, row), 1))
    if output == 0 and (rows.kernel == KERNEL_LAYER_NORM or rows.kernel == KERNEL_RMS_NORM):
        # y = x̂ · w[j] (+ b[j])
        plan.reads.append(host_rules._read(parsed, 1, column, 1))
        if rows.kernel == KERNEL_LAYER_NORM:
            plan.reads.append(host_rules._read(parsed, 2, column, 1))
    return plan


@internal
@pure
def _cross_entropy_plan(
    parsed: host_rules.Skeleton, rows: Rows, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> host_rules.Plan:
    """
    @notice A cross-entropy output element from its row's final statistics (softmax's M and S): nll[r]
            (`cross_entropy`'s and `causal_lm`'s output 1) RULE_ROW_FINAL [FINAL_NLL, t, D, 0] with the row's
            target t as the one hint (z[r, t] is read where the target says, which the plan cannot know; the
            rule requires the target read to be t; a causal row that is not counted is hinted -1 as IGNORE,
            reads z[r, 0] and is +0), reading z[r, t], M, S and t[r]; dz[r, j] (`cross_entropy_backward`)
            [FINAL_CE_BACKWARD, j, R, grad] reading z[r, j], M, S and t[r], and `causal_lm_backward`'s
            [FINAL_CAUSAL_BACKWARD, j, R, grad] reading also the count N (its input 2), by which it divides.
    @param parsed The parsed skeleton.
    @param rows The entry's rows (`_check`).
    @param element nll's row r, or dz's element r · D + j.
    @param hints nll: [t], t < D (or IGNORE for the causal loss's); the backwards: none.
    @return The plan.
    """
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = RULE_ROW_FINAL
    row: uint256 = element
    at: uint256 = element
    if rows.kernel == KERNEL_NLL or rows.kernel == KERNEL_CAUSAL_NLL:
        ignored: bool = rows.kernel == KERNEL_CAUSAL_NLL and len(hints) == 1 and hints[0] == IGNORE
        assert len(hints) == 1 and (hints[0] < rows.width or ignored), "row_piece_rules: nll's hint is its row's target"
        at = element * rows.width
        if not ignored:
            at += hints[0]
        plan.params = [KERNEL_NLL, hints[0], rows.width, 0]
    else:
        row = element // rows.width
        plan.params = [rows.kernel, element % rows.width, rows.rows, host_rules._fill_value(host_rules._arg(parsed, parsed.arg_count - 1))]
    plan.reads = [
        host_rules._read(parsed, 0, at, 1),
        row_rules._self_read(parsed, rows.output, self._final_index(rows, 0, row), 1),
        row_rules._self_read(parsed, rows.output, self._final_index(rows, 1, row), 1),
        host_rules._read(parsed, 1, row, 1),
    ]
    if rows.kernel == KERNEL_CAUSAL_BACKWARD:
        plan.reads.append(host_rules._read(parsed, 2, 0, 1))
    return plan
