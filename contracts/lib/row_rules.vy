# pragma version ~=0.4.3
"""
@title row_rules
@notice The referee game's row and selection rules (docs/referee.md, "Host rules built"): the host
        rules of the normalisations `host_rules.vy` has no room for, and of the selections that read a
        bool mask or a constant. For one output element: the element rule, its parameters and the runs
        of inputs it reads, in the order the rule takes the values (`host_rules.Plan`).
        Built: `rms_norm` (y, x̂ and rstd) over rows of at most MAX_RMS_NORM_ROW (a row read as one
        run, or two where it crosses a 256-element boundary, like `layer_norm`); `rms_norm_backward`
        and `layer_norm_backward` output 0 (dx: the rows of x̂ and dy, rstd of the row and all of w)
        over rows of at most host_rules' MAX_RMS_NORM_BACKWARD_ROW and MAX_LAYER_NORM_BACKWARD_ROW that never
        cross a 256-element boundary (the width divides 256, or x̂ has at most 256 elements and the
        width is at most MAX_NORM_BACKWARD_SPLIT_ROW: the four runs fit a plan); the caps are the widest rows whose dearest honest `prove_element`
        stays under 1,000,000 gas (personas/row_worst_case.py), wider rows escalate; `scaled_keep` (x and its bool keep mask, broadcast like
        `add`) and `where` (a bool mask, then two binary32 operands, broadcast; an operand may be a
        CONSTANT of the skeleton: its read carries the constant's root in `a`, which the skeleton
        binds to S); `dropout_keep` (its bool keep mask: the rule reads the seed and step of the
        agreed state's header, which the game proves as leaf 0 of r_t, and takes p, the call's
        number and the element as parameters); and the loss rules (`_loss_checkable`, `_loss_plan`):
        `cross_entropy`'s mean (a fold over nll, the entry's own output 1: a REF_SELF read) and
        nll[r] (z's row r and the int64 target t[r]), `cross_entropy_backward` (the same reads),
        `embedding_backward` (every int64 id, then dy's column d: a strided read RefereeGame proves
        by a column proof), and the causal-LM loss `causal_lm`'s mean (a fold over nll divided by the
        entry's own count, output 2), its count (a fold of 1 for each int64 target that is not -1) and
        their running values (its rows are always RowPieceRules'). The mean over more than MAX_FOLD rows and dW over more positions than one
        piece holds are folds in pieces (`_loss_piecing`): the entry's last output holds the running
        values after each piece but the last, and a piece reads the one before it (REF_SELF), then its
        terms (docs/referee.md, "Loss rules"). Every other kernel, output, input kind or shape is not
        checkable here.
@dev Pure (no state, no calls), deployed as `RowRules.vy` (EIP-170: HostRules has no room). Its
     Python mirror is `protocol/referee_kit.py` (`row_checkable`, `row_reads`, `row_strided_reads`),
     compared with it on every entry of recorded steps (tests/unit/contracts/test_row_rules.py,
     test_loss_rules.py).
"""

from . import commitments
from . import fold_rules
from . import host_rules

RULE_WHERE: constant(uint256) = 17
RULE_SCALED_KEEP: constant(uint256) = 18
RULE_RMS_NORM: constant(uint256) = 24
RULE_LAYER_NORM_BACKWARD: constant(uint256) = 25
RULE_RMS_NORM_BACKWARD: constant(uint256) = 26
RULE_DROPOUT_KEEP: constant(uint256) = 37
RULE_FOLD: constant(uint256) = 0
RULE_CROSS_ENTROPY_NLL: constant(uint256) = 21
RULE_CROSS_ENTROPY_BACKWARD: constant(uint256) = 22
RULE_EMBEDDING_BACKWARD: constant(uint256) = 33
RULE_CAUSAL_LM: constant(uint256) = 1_001  # not an element rule: causal_lm's loss and count are folds (RULE_FOLD)
EPILOGUE_DIV: constant(uint256) = 2
EPILOGUE_DIV_LAST: constant(uint256) = 3
RULE_NONE: constant(uint256) = 1_000  # a kernel without a row rule

# The widest rows planned: the whole prove_element of the dearest honest element (deepest proofs, a row
# in two runs where it can be, the longest skeleton, sources of MAX_NDIM axes, adversarial values) stays
# under 1,000,000 gas, and so does every narrower row (personas/row_worst_case.py, docs/referee.md "Row
# caps"); at 210 an attacker review measured 1,005,582, and at 199 (under the cap of 200 then) 983,444 with x
# of one binade near 2^-64; at 196 the dearest is 974,631 (195), 2 % under the target ("Margins"). Wider rows are
# decided in pieces (row_piece_rules.vy). (The norm backwards' caps, host_rules.MAX_RMS_NORM_BACKWARD_ROW and
# MAX_LAYER_NORM_BACKWARD_ROW, live in host_rules.vy: fold_rules.vy and row_piece_rules.vy read them too.)
MAX_RMS_NORM_ROW: constant(uint256) = 196

# the loss rules (docs/referee.md, "Loss rules"): cross-entropy's row (its loss nll[r] and its backward pay
# one exp per logit of the row, as softmax does) and embedding_backward's load (its reads' proof words
# and values, as fold_rules' MAX_COLUMN_LOAD)
MAX_CROSS_ENTROPY_ROW: constant(uint256) = 32  # a row that never crosses a 256-element boundary (C divides 256)
MAX_CROSS_ENTROPY_SPLIT_ROW: constant(uint256) = 29  # any row (one across a boundary pays a second input proof)
# (404 until an attacker review's built values, ids of non-zero bytes and dy's adds cancelling, cost 993,481 gas;
# at 392 at most 974,594: docs/referee.md "Margins")
MAX_EMBEDDING_LOAD: constant(uint256) = 392
# cross-entropy rows in pieces (row_piece_rules.vy PIECE_LENGTH_SOFTMAX): where their statistics end the outputs
PIECE_LENGTH_CROSS_ENTROPY: constant(uint256) = 16
INT64_RUN: constant(uint256) = 128  # int64 values of the widest aligned run a proof opens (32 chunks of 4)

REF_HEADER: constant(uint256) = 4
REF_CONSTANT: constant(uint256) = 5
REF_SELF: constant(uint256) = 7  # an output of the pinned entry itself (RefereeGame proves it from the entry leaf)
SELF_READ: constant(uint256) = 1_000  # a read's `input` SELF_READ + b: output b of the entry itself (referee_kit.SELF_READ)
ONE_F64: constant(uint256) = 4_607_182_418_800_017_408  # 1.0 in binary64: p in [0, 1] is a pattern at most this


@internal
@pure
def _rule(name_key: uint256) -> uint256:
    """
    @notice The element rule of a kernel this module plans (by its name's key, host_rules._parse).
    @param name_key The kernel name's key.
    @return A RULE_* code, or RULE_NONE.
    """
    if name_key == 2110815576703265565960:  # rms_norm
        return RULE_RMS_NORM
    if name_key == 9968044730942662032321881697510010106569745:  # rms_norm_backward
        return RULE_RMS_NORM_BACKWARD
    if name_key == 618744750640376440682374728143722151207742104595:  # layer_norm_backward
        return RULE_LAYER_NORM_BACKWARD
    if name_key == 35710919854699798918232109067:  # scaled_keep
        return RULE_SCALED_KEEP
    if name_key == 131290262299909:  # where
        return RULE_WHERE
    if name_key == 7958232264273142489124039913484:  # dropout_keep
        return RULE_DROPOUT_KEEP
    if name_key == 2017025053695532826565717150169357:  # cross_entropy
        return RULE_CROSS_ENTROPY_NLL
    if name_key == 9525131508680130637155899359732047165988681930153026582:  # cross_entropy_backward
        return RULE_CROSS_ENTROPY_BACKWARD
    if name_key == 2261903986663406910364744931612820663446955026:  # embedding_backward
        return RULE_EMBEDDING_BACKWARD
    if name_key == 469312079194487547260169:  # causal_lm
        return RULE_CAUSAL_LM
    return RULE_NONE


@internal
@pure
def _width(ref: host_rules.Ref) -> uint256:
    """
    @notice The last axis of a reference (0 for a 0-d one).
    @param ref The reference.
    @return Its row width.
    """
    if len(ref.dims) == 0:
        return 0
    return ref.dims[len(ref.dims) - 1]


@internal
@pure
def _whole_rows(z: host_rules.Ref) -> bool:
    """
    @notice Whether cross-entropy's rows of z [R, C] are checked whole here (C at most
            MAX_CROSS_ENTROPY_SPLIT_ROW, or at most MAX_CROSS_ENTROPY_ROW where C divides 256: no row
            across a run boundary); wider rows are decided in pieces (row_piece_rules.vy), and the entry
            then has one more output, last: its rows' statistics.
    @param z The logits' reference (2-d).
    @return Whether its rows are whole-row checkable.
    """
    width: uint256 = self._width(z)
    return width <= MAX_CROSS_ENTROPY_SPLIT_ROW or (width <= MAX_CROSS_ENTROPY_ROW and host_rules.RUN_ELEMENTS % width == 0)


@internal
@pure
def _broadcasts(ref: host_rules.Ref, shape: host_rules.Ref) -> bool:
    """
    @notice Whether an operand broadcasts to the output: right-aligned, every axis equal or of size 1.
    @param ref The operand.
    @param shape The output.
    @return Whether it does.
    """
    ndim: uint256 = len(shape.dims)
    if len(ref.dims) > ndim:
        return False
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= len(ref.dims):
            break
        if ref.dims[i] != 1 and ref.dims[i] != shape.dims[ndim - len(ref.dims) + i]:
            return False
    return True


@internal
@pure
def _norm_checkable(parsed: host_rules.Skeleton, rule: uint256, output: uint256) -> bool:
    """
    @notice rms_norm(x, w, eps): x of rows of W (1 … MAX_RMS_NORM_ROW), w [W], eps binary64 or
            binary32, outputs y and x̂ of x's shape and rstd one value a row. The backwards (x̂, rstd,
            w, dy) output 0: x̂, dy and dx of one shape whose rows (at most the kernel's cap) never
            cross a 256-element boundary, rstd one value a row, w [W], and the outputs the kernel
            has (dx, dw; layer norm's also db; then the running values of dw and db when FoldRules
            checks them in pieces).
    @param parsed The parsed skeleton.
    @param rule Its rule.
    @param output The disputed output.
    @return Whether every element of that output can be planned.
    """
    operands: uint256 = 4
    outputs: uint256 = 2
    widest: uint256 = host_rules.MAX_RMS_NORM_BACKWARD_ROW
    if rule == RULE_RMS_NORM:
        operands = 2
        outputs = 3
        widest = MAX_RMS_NORM_ROW
    elif rule == RULE_LAYER_NORM_BACKWARD:
        outputs = 3
        widest = host_rules.MAX_LAYER_NORM_BACKWARD_ROW
    # (checked before any input or output is indexed: a malformed skeleton is not checkable, never a revert;
    # a backward whose dw and db FoldRules checks in pieces has one more output, their running values)
    count: uint256 = len(parsed.outputs)
    if not host_rules._names_inputs(parsed, operands) or (count != outputs and (rule == RULE_RMS_NORM or count != outputs + 1)):
        return False
    x: host_rules.Ref = parsed.inputs[0]
    width: uint256 = self._width(x)
    if width == 0 or width > widest:
        return False
    rows: uint256 = commitments._element_count(x.dims) // width
    if rule == RULE_RMS_NORM:
        tag: uint256 = host_rules._arg(parsed, 2) >> 248
        return (
            parsed.arg_count == 3
            and (tag == host_rules.TAG_FLOAT64 or tag == host_rules.TAG_FLOAT32)
            and host_rules._same_dims(parsed.inputs[1].dims, [width])
            and host_rules._same_dims(parsed.outputs[0].dims, x.dims)
            and host_rules._same_dims(parsed.outputs[1].dims, x.dims)
            and commitments._element_count(parsed.outputs[2].dims) == rows
        )
    return (
        output == 0
        and parsed.arg_count == 4
        and (
            host_rules.RUN_ELEMENTS % width == 0
            or (commitments._element_count(x.dims) <= host_rules.RUN_ELEMENTS and width <= host_rules.MAX_NORM_BACKWARD_SPLIT_ROW)
        )
        and commitments._element_count(parsed.inputs[1].dims) == rows
        and host_rules._same_dims(parsed.inputs[2].dims, [width])
        and host_rules._same_dims(parsed.inputs[3].dims, x.dims)
        and host_rules._same_dims(parsed.outputs[0].dims, x.dims)
    )


@internal
@pure
def _provable(ref: host_rules.Ref, code: uint256, constant_ok: bool) -> bool:
    """
    @notice Whether RefereeGame can prove an input of this reference: a state tensor or an earlier
            output (or, where `constant_ok`, a constant the skeleton carries the root of) of dtype `code`.
    @param ref The reference.
    @param code The dtype the rule reads.
    @param constant_ok Whether a constant may be read.
    @return Whether it is provable.
    """
    kind_ok: bool = ref.kind == host_rules.REF_STATE or ref.kind == host_rules.REF_OUTPUT
    if constant_ok and ref.kind == REF_CONSTANT:
        kind_ok = True
    return kind_ok and ref.code == code


@internal
@pure
def _loss_check(parsed: host_rules.Skeleton, rule: uint256, output: uint256) -> (bool, fold_rules.Piecing):
    """
    @notice Whether every element of a loss kernel's output can be checked (`_loss_checkable`, after the
            checks every row rule makes: an output of the entry, binary32, not empty; two inputs named
            by the arguments), and its piecing, computed once for the check and the plan.
    @param parsed The parsed skeleton.
    @param rule Its rule (a loss rule).
    @param output The disputed output.
    @return Whether it is checkable, and the piecing (`_loss_piecing`; empty when not checkable).
    """
    whole: fold_rules.Piecing = empty(fold_rules.Piecing)
    if output >= len(parsed.outputs) or parsed.input_count > host_rules.MAX_INPUTS:
        return False, whole
    shape: host_rules.Ref = parsed.outputs[output]
    if shape.code != commitments.DTYPE_FLOAT32 or commitments._element_count(shape.dims) == 0:
        return False, whole
    if not host_rules._names_inputs(parsed, 2):
        return False, whole
    piecing: fold_rules.Piecing = self._loss_piecing(parsed, rule)
    return self._loss_checkable(parsed, rule, output, piecing), piecing


@internal
@pure
def _loss_checkable(parsed: host_rules.Skeleton, rule: uint256, output: uint256, piecing: fold_rules.Piecing) -> bool:
    """
    @notice cross_entropy(z, t): z [R, C] binary32, t [R] int64 targets, outputs the mean (one value)
            and nll [R], and for R over MAX_FOLD a third, the running sums of nll after each piece of
            MAX_FOLD rows but the last; the mean (output 0) and a running sum read only nll and the
            running sum before them, nll[r] the row of z (at most MAX_CROSS_ENTROPY_ROW) and t[r].
            cross_entropy_backward(z, t, grad): the same inputs, grad binary64 or binary32, one output
            of z's shape. embedding_backward(ids, dy, V): ids int64 of P positions, dy binary32 [..., D]
            of P rows, output [V, D]: alone when P is at most MAX_FOLD and the reads' load at most
            MAX_EMBEDDING_LOAD, else with the running dW of its pieces (`_loss_piecing`) as a second
            output, which is checkable too. Targets and ids may be constants; z and dy state tensors or
            earlier outputs.
    @param parsed The parsed skeleton (two inputs named by its arguments: `_loss_check`).
    @param rule Its rule.
    @param output The disputed output.
    @param piecing The entry's piecing (`_loss_piecing`).
    @return Whether every element of that output can be planned.
    """
    # a cross_entropy whose rows are in pieces ends with their statistics, binary32 [2 · R · P] (P pieces
    # of 16: row_piece_rules.vy decides them and nll; the mean and its running sums are decided here as
    # without them, which are also checkable where the statistics are missing)
    # (the causal-LM loss's rows are always in pieces: its statistics are never missing)
    statistics: uint256 = 0
    causal: bool = rule == RULE_CAUSAL_LM
    z: host_rules.Ref = parsed.inputs[0]
    last: host_rules.Ref = parsed.outputs[len(parsed.outputs) - 1]
    if (rule == RULE_CROSS_ENTROPY_NLL or causal) and len(z.dims) == 2 and z.dims[0] != 0 and (causal or not self._whole_rows(z)):
        pieces: uint256 = (z.dims[1] + PIECE_LENGTH_CROSS_ENTROPY - 1) // PIECE_LENGTH_CROSS_ENTROPY
        if last.code == commitments.DTYPE_FLOAT32 and host_rules._same_dims(last.dims, [2 * z.dims[0] * pieces]):
            statistics = 1
    if output + statistics >= len(parsed.outputs) or (causal and (statistics == 0 or output == 1)):
        return False
    if piecing.pieces != 0:
        # exactly one more output: binary32, the running values after every piece but the last
        base: uint256 = self._loss_base(rule)
        if len(parsed.outputs) != base + 1 + statistics or parsed.outputs[base].code != commitments.DTYPE_FLOAT32:
            return False
        if not host_rules._same_dims(parsed.outputs[base].dims, [(piecing.pieces - 1) * piecing.size]):
            return False
    if rule == RULE_EMBEDDING_BACKWARD:
        ids: host_rules.Ref = parsed.inputs[0]
        dy: host_rules.Ref = parsed.inputs[1]
        positions: uint256 = commitments._element_count(ids.dims)
        width: uint256 = self._width(dy)
        out: host_rules.Ref = parsed.outputs[0]
        if width == 0 or positions == 0 or len(out.dims) != 2 or out.dims[1] != width:
            return False
        if not self._provable(ids, commitments.DTYPE_INT64, True) or not self._provable(dy, commitments.DTYPE_FLOAT32, False):
            return False
        if parsed.arg_count != 3 or commitments._element_count(dy.dims) != positions * width:
            return False
        # in pieces, each piece's load is bounded by its length; in one piece (the shapes fit, so
        # `_loss_piecing` found at most MAX_FOLD positions within MAX_EMBEDDING_LOAD) no running values
        return piecing.pieces != 0 or len(parsed.outputs) == 1
    if len(z.dims) != 2 or z.dims[0] == 0 or z.dims[1] == 0 or not host_rules._same_dims(parsed.inputs[1].dims, [z.dims[0]]):
        return False
    rows: uint256 = z.dims[0]
    if rule == RULE_CROSS_ENTROPY_NLL or causal:
        outputs: uint256 = self._loss_base(rule) + statistics
        if piecing.pieces != 0:
            outputs += 1
        if parsed.arg_count != 2 or len(parsed.outputs) != outputs or not host_rules._same_dims(parsed.outputs[1].dims, [rows]):
            return False
        if causal:
            # the mean, the count and their running values: folds over nll (REF_SELF), the count (REF_SELF) and t
            # (t[r] int64, as nll's rows read it); the count one binary32 value
            count: host_rules.Ref = parsed.outputs[2]
            if count.code != commitments.DTYPE_FLOAT32 or commitments._element_count(count.dims) != 1:
                return False
            if not self._provable(parsed.inputs[1], commitments.DTYPE_INT64, True):
                return False
        if output != 1:
            # the mean, or a running sum of its pieces, reads nll (output 1 of this entry, REF_SELF) and the
            # running sum before it (output 2): the challenger disputes those instead if they are wrong;
            # neither z nor t is read
            return commitments._element_count(parsed.outputs[0].dims) == 1 and parsed.outputs[1].code == commitments.DTYPE_FLOAT32
    else:
        tag: uint256 = host_rules._arg(parsed, 2) >> 248
        if parsed.arg_count != 3 or len(parsed.outputs) != 1 or not host_rules._same_dims(parsed.outputs[0].dims, z.dims):
            return False
        if tag != host_rules.TAG_FLOAT64 and tag != host_rules.TAG_FLOAT32:
            return False
    return (
        self._whole_rows(z)
        and self._provable(z, commitments.DTYPE_FLOAT32, False)
        and self._provable(parsed.inputs[1], commitments.DTYPE_INT64, True)
    )


@internal
@pure
def _loss_base(rule: uint256) -> uint256:
    """
    @notice The outputs of a loss kernel before the running values of its pieces.
    @param rule RULE_CROSS_ENTROPY_NLL (the mean and nll) or RULE_EMBEDDING_BACKWARD (dW).
    @return 2 or 1.
    """
    if rule == RULE_CROSS_ENTROPY_NLL:
        return 2
    if rule == RULE_CAUSAL_LM:
        return 3
    return 1


@internal
@pure
def _embedding_load(chunks: uint256, width: uint256, count: uint256) -> uint256:
    """
    @notice embedding_backward's reads of `count` positions: dy's column proof words (bounded as
            `fold_rules._column_words` does) and values, the ids' chunks (4 a chunk) and values.
    @param chunks dy's chunks.
    @param width dy's row width D (the column's stride).
    @param count The positions read.
    @return The load.
    """
    return fold_rules._column_words(chunks, width, count) + 2 * count + (count + 3) // 4


@internal
@pure
def _loss_piecing(parsed: host_rules.Skeleton, rule: uint256) -> fold_rules.Piecing:
    """
    @notice How a loss fold is checked in pieces, a function of the shapes alone (the recorder computes it
            before the running values exist; `protocol.fold_rules.loss_piecing` mirrors it): cross-entropy's
            mean over R > MAX_FOLD rows of z [R, C] in pieces of MAX_FOLD rows; embedding_backward's dW
            over P positions of dy [..., D] when P is over MAX_FOLD or their load over
            MAX_EMBEDDING_LOAD, in pieces of the largest power of two up to MAX_FOLD positions whose piece
            and last piece load at most fold_rules.MAX_PIECE_LOAD (a piece also proves a running value).
            The running value of element e after piece c < pieces - 1 is element c · size + e of the
            entry's running values, its last output.
    @param parsed The parsed skeleton (two inputs named by its arguments).
    @param rule Its rule.
    @return The piecing; `pieces` 0 when the fold is one piece (or the shapes are not the rule's).
    """
    whole: fold_rules.Piecing = empty(fold_rules.Piecing)
    if rule == RULE_CROSS_ENTROPY_NLL or rule == RULE_CAUSAL_LM:
        z: DynArray[uint256, commitments.MAX_NDIM] = parsed.inputs[0].dims
        if len(z) != 2 or z[0] <= fold_rules.MAX_FOLD:
            return whole
        # the causal loss's running values: the sum of nll and the count after each piece (elements 0 and 1)
        size: uint256 = 1
        if rule == RULE_CAUSAL_LM:
            size = 2
        return fold_rules.Piecing(output=0, terms=z[0], length=fold_rules.MAX_FOLD, pieces=(z[0] + fold_rules.MAX_FOLD - 1) // fold_rules.MAX_FOLD, offset=0, size=size)
    if rule != RULE_EMBEDDING_BACKWARD:
        return whole
    positions: uint256 = commitments._element_count(parsed.inputs[0].dims)
    dy: host_rules.Ref = parsed.inputs[1]
    width: uint256 = self._width(dy)
    if width == 0 or positions == 0 or commitments._element_count(dy.dims) != positions * width:
        return whole
    chunks: uint256 = commitments._chunk_count(commitments.DTYPE_FLOAT32, dy.dims)
    if positions <= fold_rules.MAX_FOLD:
        if self._embedding_load(chunks, width, positions) <= MAX_EMBEDDING_LOAD:
            return whole
    length: uint256 = fold_rules.MAX_FOLD
    for i: uint256 in range(8):
        last: uint256 = positions - (positions - 1) // length * length
        if self._embedding_load(chunks, width, length) <= fold_rules.MAX_PIECE_LOAD and self._embedding_load(chunks, width, last) <= fold_rules.MAX_PIECE_LOAD:
            break
        length //= 2
    size: uint256 = commitments._element_count(parsed.outputs[0].dims)
    return fold_rules.Piecing(output=0, terms=positions, length=length, pieces=(positions + length - 1) // length, offset=0, size=size)


@internal
@pure
def _dropout_checkable(parsed: host_rules.Skeleton) -> bool:
    """
    @notice dropout_keep(header, p, number): the one input the state header, p a binary64 in [0, 1]
            (the rule's threshold; anything else would make the rule revert), the call's number a
            non-negative integer, one non-empty bool output (the keep mask).
    @param parsed The parsed skeleton.
    @return Whether every element of the mask can be planned.
    """
    p: uint256 = host_rules._arg(parsed, 1)
    number: uint256 = host_rules._arg(parsed, 2)
    return (
        host_rules._names_inputs(parsed, 1)
        and parsed.arg_count == 3
        and parsed.inputs[0].kind == REF_HEADER
        and len(parsed.outputs) == 1
        and parsed.outputs[0].code == commitments.DTYPE_BOOL
        and commitments._element_count(parsed.outputs[0].dims) != 0
        and p >> 248 == host_rules.TAG_FLOAT64
        and p & host_rules.MASK64 <= ONE_F64
        and number >> 248 == host_rules.TAG_INT
        and number & host_rules.INT_SIGN == 0
    )


@internal
@pure
def _checkable(parsed: host_rules.Skeleton, output: uint256) -> bool:
    """
    @notice Whether every element of this output can be checked: a row rule, a non-empty binary32
            output, inputs that are state tensors or earlier outputs (or, for a selection, constants)
            of the dtypes the rule reads (a mask bool, every other input binary32), and the shapes and
            arguments its index map assumes.
    @param parsed The parsed skeleton.
    @param output The disputed output.
    @return Whether the rules plan every element of this output.
    """
    rule: uint256 = self._rule(parsed.name_key)
    if rule == RULE_NONE or output >= len(parsed.outputs) or parsed.input_count > host_rules.MAX_INPUTS:
        return False
    if rule == RULE_DROPOUT_KEEP:
        return self._dropout_checkable(parsed)
    shape: host_rules.Ref = parsed.outputs[output]
    if shape.code != commitments.DTYPE_FLOAT32 or commitments._element_count(shape.dims) == 0:
        return False
    if rule == RULE_CROSS_ENTROPY_NLL or rule == RULE_CROSS_ENTROPY_BACKWARD or rule == RULE_EMBEDDING_BACKWARD or rule == RULE_CAUSAL_LM:
        checkable: bool = False
        piecing: fold_rules.Piecing = empty(fold_rules.Piecing)
        checkable, piecing = self._loss_check(parsed, rule, output)
        return checkable
    selection: bool = rule == RULE_WHERE or rule == RULE_SCALED_KEEP
    # the input that is a bool mask: where's first, scaled_keep's second (none for the norms)
    mask: uint256 = host_rules.MAX_INPUTS
    if rule == RULE_WHERE:
        mask = 0
    elif rule == RULE_SCALED_KEEP:
        mask = 1
    for k: uint256 in range(host_rules.MAX_INPUTS):
        if k >= len(parsed.inputs):
            break
        ref: host_rules.Ref = parsed.inputs[k]
        kind_ok: bool = ref.kind == host_rules.REF_STATE or ref.kind == host_rules.REF_OUTPUT
        if selection and ref.kind == REF_CONSTANT:
            kind_ok = True
        code: uint256 = commitments.DTYPE_FLOAT32
        if k == mask:
            code = commitments.DTYPE_BOOL
        if not kind_ok or ref.code != code:
            return False
    if not selection:
        return self._norm_checkable(parsed, rule, output)
    operands: uint256 = 3
    if rule == RULE_SCALED_KEEP:
        operands = 2
    if not host_rules._names_inputs(parsed, operands) or len(parsed.outputs) != 1:
        return False
    for ref: host_rules.Ref in parsed.inputs:
        if not self._broadcasts(ref, shape):
            return False
    if rule == RULE_WHERE:
        return parsed.arg_count == 3
    tag: uint256 = host_rules._arg(parsed, 2) >> 248
    return parsed.arg_count == 3 and (tag == host_rules.TAG_FLOAT64 or tag == host_rules.TAG_FLOAT32)


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
def _constant_root(raw: Bytes[host_rules.MAX_SKELETON], k: uint256) -> uint256:
    """
    @notice The root a skeleton carries for its reference k (a constant's; zero for other kinds),
            walked as host_rules._parse walks the references (docs/referee.md, "Byte layouts").
    @param raw The skeleton bytes (parsed: well formed).
    @param k The reference.
    @return The 32-byte root as an integer.
    """
    skeleton: Bytes[host_rules.MAX_SKELETON + 32] = concat(raw, empty(bytes32))
    at: uint256 = 2 + host_rules._word_at(skeleton, 0, 2)
    at += 4 + 32 * host_rules._word_at(skeleton, at, 4) + 4
    for i: uint256 in range(host_rules.MAX_INPUTS):
        at += 11 + 4 * host_rules._word_at(skeleton, at + 10, 1)  # kind, a, b, code, ndim, dims
        if i == k:
            break
        at += 32
    return convert(extract32(skeleton, at), uint256)


@internal
@pure
def _plan(
    raw: Bytes[host_rules.MAX_SKELETON], output: uint256, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> host_rules.Plan:
    """
    @notice How output element `element` of a checkable output is decided (reverts for an output these
            rules cannot check, or an element outside it).
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index in it.
    @param hints Unused (no row kernel hashes an argument the plan needs).
    @return The plan.
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    rule: uint256 = self._rule(parsed.name_key)
    checkable: bool = False
    if rule == RULE_CROSS_ENTROPY_NLL or rule == RULE_CROSS_ENTROPY_BACKWARD or rule == RULE_EMBEDDING_BACKWARD or rule == RULE_CAUSAL_LM:
        # the loss rules: the piecing computed once, for the check and the plan
        piecing: fold_rules.Piecing = empty(fold_rules.Piecing)
        checkable, piecing = self._loss_check(parsed, rule, output)
        assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "row_rules: not a checkable element"
        return self._loss_plan(raw, parsed, rule, output, element, piecing)
    checkable = self._checkable(parsed, output)
    assert checkable and element < commitments._element_count(parsed.outputs[output].dims), "row_rules: not a checkable element"
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = rule
    if rule == RULE_DROPOUT_KEEP:
        # the header's seed and step (the game proves r_t's header); p, the call's number, the element
        plan.params = [host_rules._arg(parsed, 1) & host_rules.MASK64, host_rules._arg(parsed, 2) & (host_rules.INT_SIGN - 1), element]
        plan.reads = [host_rules._read(parsed, 0, 0, 2)]
        return plan
    if rule == RULE_WHERE or rule == RULE_SCALED_KEEP:
        # each operand at its broadcast source; a constant's read carries its root in `a`
        index: DynArray[uint256, commitments.MAX_NDIM] = host_rules._unravel(element, parsed.outputs[0].dims)
        for k: uint256 in range(host_rules.MAX_INPUTS):
            if k >= parsed.input_count:
                break
            read: host_rules.Read = host_rules._read(parsed, k, host_rules._broadcast_source(index, parsed.inputs[k].dims), 1)
            if read.kind == REF_CONSTANT:
                read.a = self._constant_root(raw, k)
            plan.reads.append(read)
        if rule == RULE_SCALED_KEEP:
            plan.params = [host_rules._fill_value(host_rules._arg(parsed, 2))]
        return plan
    width: uint256 = self._width(parsed.inputs[0])
    row: uint256 = element // width
    column: uint256 = element % width
    if rule == RULE_RMS_NORM:
        # the row of x; for y also w[j]. rstd (output 2) is one value a row: element r is row r
        if output == 2:
            row = element
            column = 0
        plan.params = [output, column, host_rules._fill_value(host_rules._arg(parsed, 2))]
        plan.reads = host_rules._row_reads(parsed, 0, row * width, width)
        if output == 0:
            plan.reads.append(host_rules._read(parsed, 1, column, 1))
        return plan
    # a backward's dx[r, j]: the row of x̂, rstd[r], all of w, the row of dy (each one run)
    plan.params = [column]
    plan.reads = [
        host_rules._read(parsed, 0, row * width, width),
        host_rules._read(parsed, 1, row, 1),
        host_rules._read(parsed, 2, 0, width),
        host_rules._read(parsed, 3, row * width, width),
    ]
    return plan


@internal
@pure
def _loss_plan(
    raw: Bytes[host_rules.MAX_SKELETON], parsed: host_rules.Skeleton, rule: uint256, output: uint256, element: uint256,
    piecing: fold_rules.Piecing
) -> host_rules.Plan:
    """
    @notice The plan of a loss kernel's element (`_loss_checkable`): cross_entropy's mean the fold of
            nll (output 1 of the entry itself) over R, or in pieces (`_loss_piece_plan`); nll[r] the
            row r of z, then t[r]; the backward's [r, j] the same reads with (j, R, grad);
            embedding_backward's dW[v, d] every id (runs of at most INT64_RUN), then dy's column d (a
            column read, every D-th element), with v, or in pieces (`_loss_piece_plan`).
    @param raw The entry's skeleton bytes (a constant's root is read from it).
    @param parsed The parsed skeleton.
    @param rule Its rule.
    @param output The disputed output.
    @param element The element's row-major index.
    @param piecing The entry's piecing (`_loss_piecing`).
    @return The plan.
    """
    plan: host_rules.Plan = empty(host_rules.Plan)
    plan.rule = rule
    if rule == RULE_EMBEDDING_BACKWARD or rule == RULE_CAUSAL_LM or (rule == RULE_CROSS_ENTROPY_NLL and output != 1):
        # a fold: cross-entropy's mean (or a running sum of its pieces), embedding_backward's dW, the causal
        # loss's mean and count
        plan = self._loss_piece_plan(parsed, rule, piecing, output, element)
        if rule == RULE_CROSS_ENTROPY_NLL:
            return plan
    else:
        rows: uint256 = parsed.inputs[0].dims[0]
        width: uint256 = parsed.inputs[0].dims[1]
        # nll[r] is row r; the backward's [r, j] is in row r
        row: uint256 = element
        if rule == RULE_CROSS_ENTROPY_BACKWARD:
            row = element // width
            plan.params = [element % width, rows, host_rules._fill_value(host_rules._arg(parsed, 2))]
        plan.reads = host_rules._row_reads(parsed, 0, row * width, width)
        plan.reads.append(host_rules._read(parsed, 1, row, 1))
    for i: uint256 in range(host_rules.MAX_READS):
        if i >= len(plan.reads):
            break
        if plan.reads[i].kind == REF_CONSTANT:
            plan.reads[i].a = self._constant_root(raw, plan.reads[i].input)
    return plan


@internal
@pure
def _self_read(parsed: host_rules.Skeleton, output: uint256, first: uint256, count: uint256) -> host_rules.Read:
    """
    @notice A REF_SELF read: `count` elements from `first` of output `output` of the pinned entry itself,
            which RefereeGame proves under the output roots of the revealed entry leaf.
    @param parsed The parsed skeleton.
    @param output The entry's output read (binary32, flat).
    @param first The first element.
    @param count The elements.
    @return The read.
    """
    dims: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
    dims[0] = commitments._element_count(parsed.outputs[output].dims)
    return host_rules.Read(input=SELF_READ + output, kind=REF_SELF, a=0, b=output, code=commitments.DTYPE_FLOAT32, ndim=1, dims=dims, first=first, count=count, stride=1)


@internal
@pure
def _loss_piece_plan(parsed: host_rules.Skeleton, rule: uint256, piecing: fold_rules.Piecing, output: uint256, element: uint256) -> host_rules.Plan:
    """
    @notice A loss fold's plan, whole (`piecing.pieces` 0: one piece from +0 over every term) or one piece
            (`_loss_piecing`): a final element (output 0) is its last piece, running value c · size + e
            (the running values' output) piece c of element e. A piece c > 0 first reads the running value
            before it, (c − 1) · size + e (REF_SELF: an earlier element of the same output, or from output
            0 another output, so the honest challenger agrees with it), then its terms: cross-entropy's
            nll rows of the piece (a fold, / R after the last piece); embedding_backward's ids of the
            piece's positions (runs of at most INT64_RUN) and dy's column d at those positions (stride D),
            with v (and 1 where it starts from a running value).
    @param parsed The parsed skeleton.
    @param rule RULE_CROSS_ENTROPY_NLL or RULE_EMBEDDING_BACKWARD.
    @param piecing The entry's piecing.
    @param output The disputed output (0, or the running values).
    @param element The element's row-major index.
    @return The plan (a constant's root not yet copied in).
    """
    base: uint256 = self._loss_base(rule)
    piece: uint256 = 0
    e: uint256 = element
    start: uint256 = 0
    # the terms: cross-entropy's rows (z [R, C]), embedding_backward's positions (every id)
    terms: uint256 = commitments._element_count(parsed.inputs[0].dims)
    if rule == RULE_CROSS_ENTROPY_NLL or rule == RULE_CAUSAL_LM:
        terms = parsed.inputs[0].dims[0]
    count: uint256 = terms
    if rule == RULE_CAUSAL_LM and output == 2:
        e = 1  # the count: element 1 of the running values
    if piecing.pieces != 0:
        piece = piecing.pieces - 1
        if output == base:
            piece = element // piecing.size
            e = element % piecing.size
        start = piece * piecing.length
        count = min(piecing.length, piecing.terms - start)
    plan: host_rules.Plan = empty(host_rules.Plan)
    if piece > 0:
        plan.reads.append(self._self_read(parsed, base, (piece - 1) * piecing.size + e, 1))
    if rule == RULE_CAUSAL_LM:
        plan.rule = RULE_FOLD
        plan.params = [1, 0, 0, 0]
        if piece > 0:
            plan.params[1] = 1
        if e == 1:
            # the count: 1 for each target of the piece that is not -1 (its int64 runs)
            plan.params[0] = 0
            for i: uint256 in range(2):
                first: uint256 = start + i * INT64_RUN
                if first >= start + count:
                    break
                plan.reads.append(host_rules._read(parsed, 1, first, min(INT64_RUN, start + count - first)))
            return plan
        plan.reads.append(self._self_read(parsed, 1, start, count))
        if output == 0:
            # the mean: / the count (output 2 of this entry)
            plan.params[2] = EPILOGUE_DIV_LAST
            plan.reads.append(self._self_read(parsed, 2, 0, 1))
        return plan
    if rule == RULE_CROSS_ENTROPY_NLL:
        plan.rule = RULE_FOLD
        plan.params = [1, 0, 0, 0]
        if piece > 0:
            plan.params[1] = 1
        if output == 0:
            plan.params[2] = EPILOGUE_DIV
            plan.params[3] = terms
        plan.reads.append(self._self_read(parsed, 1, start, count))
        return plan
    width: uint256 = self._width(parsed.inputs[1])
    plan.rule = RULE_EMBEDDING_BACKWARD
    plan.params = [e // width]
    if piece > 0:
        plan.params.append(1)
    for i: uint256 in range(2):
        first: uint256 = start + i * INT64_RUN
        if first >= start + count:
            break
        plan.reads.append(host_rules._read(parsed, 0, first, min(INT64_RUN, start + count - first)))
    column: host_rules.Read = host_rules._read(parsed, 1, start * width + e % width, count)
    column.stride = width
    plan.reads.append(column)
    return plan
