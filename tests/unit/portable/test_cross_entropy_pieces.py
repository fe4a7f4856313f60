"""Cross-entropy rows in pieces (issue 15; docs/referee.md, "Rows in pieces"; protocol/row_pieces.py): a
cross_entropy or cross_entropy_backward whose logit rows are wider than RowRules' whole-row cap is recorded with
softmax's statistics of z (M, S) as its last output, and RowPieceRules decides the statistics, nll and dz from
them. Each statistic, recomputed by the referee model's RULE_ROW_PIECE from exactly the values the mirror reads, is
the recorded one; each nll and dz element, recomputed by RULE_ROW_FINAL (FINAL_NLL with the kit's hint, the
target; FINAL_CE_BACKWARD), is the reference kernel's, bit for bit. RowRules still decides the mean (and its
running sums over more than 256 rows); entries within the cap are recorded exactly as before."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import record_first_steps, uncovered_calls
from engine.portable import record
from engine.portable import reference as ref
from engine.referee_kit import kit_from_record
from protocol import referee_calls as rc
from protocol import referee_kit as rk
from protocol import referee_model as rm
from protocol import row_pieces
from protocol import tensor_commit as tc

from ..engine.helpers import examples, with_fields
from .test_row_pieces import checkable_where_expected_and_broken
from .test_step_record import wide_logits_mlp

INT64 = 2  # tensor_commit's dtype code of the targets


def _bits(value: Any) -> int:
    return int(np.asarray(value, dtype=np.float32).reshape(-1).view(np.uint32)[0])


def _ce_entry(kernel: str, z: np.ndarray, t: np.ndarray, grad: float = 1.0, statistics: bool = True) -> record.Entry:
    """The kernel's entry over z and t (earlier outputs), its outputs the reference kernel's and recorded as the
    recorder records them: cross_entropy's mean and nll, RowRules' loss running sums (over 256 rows), then, where
    `statistics`, the row statistics (`record.with_row_statistics`)."""
    if kernel == "cross_entropy":
        outputs = [np.asarray(ref.cross_entropy(z, t), dtype=np.float32), ref.cross_entropy_rows(z, t)]
        args: tuple[Any, ...] = (("input", 0), ("input", 1))
    else:
        outputs = [ref.cross_entropy_backward(z, t, np.float32(grad))]
        args = (("input", 0), ("input", 1), grad)
    refs = (record.Ref(record.OUTPUT, 0, 0, 1, z.shape), record.Ref(record.OUTPUT, 0, 1, INT64, t.shape))
    entry = record.Entry(1, kernel, args, refs, tuple((tc.dtype_code(o), o.shape) for o in outputs),
                         tuple(tc.tensor_root(o) for o in outputs), tuple(outputs))  # fmt: skip
    if kernel == "cross_entropy":
        entry = record.with_loss_running_values(entry, [z, t])
    return record.with_row_statistics(entry, [z, t]) if statistics else entry


def _logits(rows: int, width: int, rng: np.random.Generator, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Logits drawn like a model's (a scale per row; a coarse grid for ties) and targets in range."""
    z = (rng.standard_normal((rows, width)) * 10.0 ** rng.uniform(-2, 1.5, (rows, 1))).astype(np.float32)
    if ties:
        z = (np.round(z * 2) / 2).astype(np.float32)
    return z, rng.integers(0, width, rows).astype(np.int64)


def _read(entry: record.Entry, inputs: list[np.ndarray], reads: list[tuple[int, int, int]]) -> list[Any]:
    """The values an honest defender proves for the mirror's reads: inputs, or the entry's own outputs."""
    def run(k: int, first: int, count: int) -> np.ndarray:
        source = entry.outputs[k - rk.SELF_READ] if k >= rk.SELF_READ else inputs[k]
        return source.reshape(-1)[first : first + count]

    return [value for k, first, count in reads for value in run(k, first, count)]


def _decided(entry: record.Entry, inputs: list[np.ndarray], output: int, element: int, hints: tuple[int, ...] = ()) -> int:
    """The element recomputed by the referee model's row rule from the values the mirror reads: the mirror's
    rule and parameters are the model's and encode's (nll's with its hint), its reads the model's keys.
    Returns the recomputed bits."""
    skeleton, call = rk.parse_skeleton(entry.skeleton_bytes()), record.referee_call(entry)
    reads = row_pieces.row_piece_reads(skeleton, output, element, hints)
    rule, params = row_pieces.row_piece_rule(skeleton, output, element, hints)
    assert (rule, params) == rm.row_piece_rule(call, output, element, hints)
    statistics = rk.SELF_READ + len(entry.outputs) - 1
    keys = [("stats" if k == statistics else k, first + i) for k, first, count in reads for i in range(count)]
    assert keys == rm.row_piece_keys(call, output, element, None, hints)
    values = _read(entry, inputs, reads)
    encoded = rc.encode(call, output, element, dict(zip(keys, values, strict=True)), hints=hints)
    assert (encoded.rule, encoded.params, len(encoded.values)) == (rule, params, len(values))
    return int(np.array([rm.row_element(rule, params, values)], dtype=np.float32).view(np.uint32)[0])


# --------------------------------------------------------------------------------------------------
# The recorded MLP with 40 logits: its kit's hints, the mirror's reads and the model's rules agree
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_logits_step() -> dict[str, Any]:
    """Step 0 of the MLP with 40 logits (test_step_record's `wide_logits_mlp`, one-step segments) and the
    defender's dispute kit of it."""
    spec = with_fields(wide_logits_mlp(), segment_steps=1)
    states, records, bindings = record_first_steps(spec, None, 1)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    kit = kit_from_record(0, 0, roots, 0, records[0], states[0], bindings[0], tc.bound_state_leaves(states[1], bindings[1]))
    return {"rec": records[0], "kit": kit}


def _losses(rec: record.StepRecord) -> list[record.Entry]:
    found = [e for e in rec.entries if e.kernel in row_pieces.LOSSES]
    assert [e.kernel for e in found] == ["cross_entropy", "cross_entropy_backward"]
    return found


def test_the_wide_logits_losses_are_recorded_with_statistics(wide_logits_step: dict[str, Any]) -> None:
    """z [16, 40] in pieces of 16 (3 pieces): each entry's last output is the statistics, binary32 [2·16·3];
    RowPieceRules decides nll, dz and the statistics, RowRules still the mean; the honest challenger disputes
    the statistics before nll or dz and nll before the mean."""
    for entry in _losses(wide_logits_step["rec"]):
        skeleton = rk.parse_skeleton(entry.skeleton_bytes())
        piecing = row_pieces.row_piecing(entry.kernel, [r.shape for r in entry.inputs])
        assert piecing is not None and (piecing.rows, piecing.width, piecing.length, piecing.pieces) == (16, 40, 16, 3)
        statistics = len(entry.outputs) - 1
        assert row_pieces.statistics_output(skeleton) == statistics == row_pieces.BASE_OUTPUTS[entry.kernel]
        assert entry.out_shapes[-1] == (1, (2 * 16 * 3,))
        final = row_pieces.FINAL_OUTPUTS[entry.kernel][0]
        assert rk.rules_of(skeleton, final) == rk.rules_of(skeleton, statistics) == rk.ROW_PIECE_RULES
        assert not rk.row_checkable(skeleton, final) and not rk.row_checkable(skeleton, statistics)
        mine, theirs = list(entry.out_roots), [bytes(32)] * len(entry.out_roots)
        assert rk.output_to_dispute(skeleton, mine, theirs) == statistics
        if entry.kernel == "cross_entropy":
            assert rk.rules_of(skeleton, 0) == rk.ROW_RULES
            assert rk.row_reads(skeleton, 0, 0) == [(rk.SELF_READ + 1, 0, 16)]  # the mean: a fold over nll, as before
            assert rk.output_to_dispute(skeleton, mine, [theirs[0], theirs[1], mine[2]]) == 1  # nll before the mean
            assert rk.output_to_dispute(skeleton, mine, [theirs[0], mine[1], mine[2]]) == 0


def test_every_wide_logits_element_is_its_row_rule(wide_logits_step: dict[str, Any]) -> None:
    """Every statistic, nll and dz element of the MLP's losses, recomputed by the referee model's row rules from
    the values the mirror reads (nll's at the kit's hint, the target t[r] of the input the entry reads), is the
    recorded one; the game's reads are the mirror's and the kit proves them."""
    rec, kit = wide_logits_step["rec"], wide_logits_step["kit"]
    for entry in _losses(rec):
        skeleton = rk.parse_skeleton(entry.skeleton_bytes())
        inputs = [rec.input_value(entry, k) for k in range(len(entry.inputs))]
        targets = inputs[1].reshape(-1)
        for output in (*row_pieces.FINAL_OUTPUTS[entry.kernel], len(entry.outputs) - 1):
            for element in range(entry.outputs[output].size):
                hints = kit.element_hints(entry.index, output, element)
                nll = entry.kernel == "cross_entropy" and output == 1
                assert hints == ((int(targets[element]),) if nll else ())
                assert rk.game_reads(skeleton, output, element, hints) == row_pieces.row_piece_reads(skeleton, output, element, hints)
                got = _decided(entry, inputs, output, element, hints)
                assert got == _bits(entry.outputs[output].reshape(-1)[element]), (entry.kernel, output, element)
        element = entry.outputs[0].size - 1 if entry.kernel == "cross_entropy_backward" else 15
        proofs = kit.element_proofs(entry.index, row_pieces.FINAL_OUTPUTS[entry.kernel][0], element)
        assert len(proofs) == 4  # z's logit, M, S (own-output runs), t[r]


def test_a_wrong_nll_hint_is_refused(wide_logits_step: dict[str, Any]) -> None:
    """An nll element's plan takes exactly one hint, a column of z (else the mirror refuses: ValueError, as
    RowPieceRules reverts); a hint in the row that is not the proven target t[r] is refused by the rule."""
    rec = wide_logits_step["rec"]
    entry = _losses(rec)[0]
    skeleton = rk.parse_skeleton(entry.skeleton_bytes())
    inputs = [rec.input_value(entry, k) for k in range(len(entry.inputs))]
    target = int(inputs[1].reshape(-1)[5])
    for hints in ((), (target, target), (40,), (-1,)):
        with pytest.raises(ValueError):
            row_pieces.row_piece_reads(skeleton, 1, 5, hints)
        with pytest.raises(ValueError):
            row_pieces.row_piece_rule(skeleton, 1, 5, hints)
    wrong = ((target + 1) % 40,)
    reads = row_pieces.row_piece_reads(skeleton, 1, 5, wrong)
    assert reads[0] == (0, 5 * 40 + wrong[0], 1) and reads[-1] == (1, 5, 1)
    rule, params = row_pieces.row_piece_rule(skeleton, 1, 5, wrong)
    assert (rule, params) == (row_pieces.RULE_ROW_FINAL, (row_pieces.FINAL_NLL, wrong[0], 40, 0))
    with pytest.raises(rm.ElementError):
        rm.row_element(rule, params, _read(entry, inputs, reads))


def test_the_kit_read_back_hints_nll_with_its_target(wide_logits_step: dict[str, Any], tmp_path: Path) -> None:
    """The kit written and read back (its own check: only a move's entry carries hints) still hints each nll
    element with its target, from the target tensor it holds."""
    kit, rec = wide_logits_step["kit"], wide_logits_step["rec"]
    loaded = rk.load_kit(rk.write_kit(tmp_path / "kit", kit))
    entry = _losses(rec)[0]
    targets = rec.input_value(entry, 1).reshape(-1)
    assert [loaded.element_hints(entry.index, 1, r) for r in range(16)] == [(int(t),) for t in targets]
    assert loaded.element_hints(entry.index, 0, 0) == ()  # the mean: RowRules, no hints


def test_the_wide_logits_mlp_has_no_call_left_to_the_arbiter() -> None:
    """Its nll and cross_entropy_backward, over RowRules' cap, are decided in pieces (RowPieceRules): no output
    of its step is left without a rules contract."""
    assert uncovered_calls(wide_logits_mlp(), None) == []


# --------------------------------------------------------------------------------------------------
# More than 256 rows: the mean in RowRules' pieces, the rows in RowPieceRules'
# --------------------------------------------------------------------------------------------------


def test_over_256_rows_the_running_sums_come_before_the_statistics() -> None:
    """z [300, 40]: cross_entropy's outputs are the mean, nll, RowRules' running sums (one: the fold after the
    first 256 rows) and the statistics [2·300·3]; RowRules decides the mean and the running sum reading their
    own outputs as before, RowPieceRules every statistic and nll element (a sample of rows here)."""
    rng = np.random.default_rng(11)
    z, t = _logits(300, 40, rng, ties=False)
    entry = _ce_entry("cross_entropy", z, t)
    assert [s for _, s in entry.out_shapes] == [(), (300,), (1,), (2 * 300 * 3,)]
    skeleton = rk.parse_skeleton(entry.skeleton_bytes())
    assert [rk.rules_of(skeleton, o) for o in range(4)] == [rk.ROW_RULES, rk.ROW_PIECE_RULES, rk.ROW_RULES, rk.ROW_PIECE_RULES]
    assert rk.row_reads(skeleton, 0, 0) == [(rk.SELF_READ + 2, 0, 1), (rk.SELF_READ + 1, 256, 44)]
    assert rk.row_reads(skeleton, 2, 0) == [(rk.SELF_READ + 1, 0, 256)]
    call = record.referee_call(entry)
    assert rm.running_values_output(call) == 2 and rm.has_running_values(call, 0, 0)
    for output in (0, 2):  # the mean and its running sum, by the model from nll and the running sum (as before)
        keys = rm.dependencies(call, output, 0)
        proven = {key: entry.outputs[2][rm.running_value_index(call, output, 0, key[1])] if key[0] == "partial"
                  else entry.outputs[1][key[1]] for key in keys}  # fmt: skip
        assert rm.check_element(call, output, 0, proven) == _bits(entry.outputs[output])
    mine = list(entry.out_roots)
    assert rk.output_to_dispute(skeleton, mine, [bytes(32)] * 4) == 3
    assert rk.output_to_dispute(skeleton, mine, [bytes(32), bytes(32), bytes(32), mine[3]]) == 1
    inputs = [z, t]
    for element in range(entry.outputs[3].size):
        assert _decided(entry, inputs, 3, element) == _bits(entry.outputs[3][element])
    for row in (0, 1, 255, 256, 299):
        assert _decided(entry, inputs, 1, row, (int(t[row]),)) == _bits(entry.outputs[1][row])
    narrow = _ce_entry("cross_entropy", z[:, :32], np.minimum(t, 31))  # within the cap: no statistics
    assert [s for _, s in narrow.out_shapes] == [(), (300,), (1,)]


def test_the_mirror_refuses_malformed_cross_entropy_entries() -> None:
    """Row-pieced cross-entropies are checkable at nll or dz and the statistics only, and RowPieceRules decides
    nothing (nor RowRules nll or dz) with the statistics misshapen, missing or of another dtype, z from the
    batch or int64, the targets binary32 or of another length, the backward's grad not a float, or (over 256
    rows) the running sums left out."""
    rng = np.random.default_rng(5)
    for kernel, rows in (("cross_entropy", 3), ("cross_entropy_backward", 3), ("cross_entropy", 300)):
        z, t = _logits(rows, 40, rng, ties=False)
        skeleton = rk.parse_skeleton(_ce_entry(kernel, z, t).skeleton_bytes())
        outputs, inputs = skeleton.outputs, skeleton.inputs
        broken = checkable_where_expected_and_broken(skeleton)
        broken += [replace(skeleton, inputs=(replace(inputs[0], dtype=rk.INT64), inputs[1])),
                  replace(skeleton, inputs=(inputs[0], replace(inputs[1], dtype=rk.FLOAT32))),
                  replace(skeleton, inputs=(inputs[0], replace(inputs[1], shape=(rows + 1,))))]
        if kernel == "cross_entropy_backward":
            broken.append(replace(skeleton, args=(*skeleton.args[:2], record.encode_arg(1))))
        if rows > 256:
            broken.append(replace(skeleton, outputs=(*outputs[:2], outputs[3])))
        for other in broken:
            assert not any(rk.rules_of(other, o) == rk.ROW_PIECE_RULES for o in range(len(other.outputs)))
            assert not rk.row_checkable(other, row_pieces.FINAL_OUTPUTS[kernel][0])  # (RowRules: the mean, as before)


# --------------------------------------------------------------------------------------------------
# Properties: the piecing condition, and the new modes against the reference kernels
# --------------------------------------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(("cross_entropy", "cross_entropy_backward")), st.integers(1, 4), st.integers(1, 300))
def test_row_pieced_exactly_where_row_rules_refuse_the_whole_row(kernel: str, rows: int, width: int) -> None:
    """A cross-entropy entry is row-pieced exactly when RowRules does not decide its nll or dz as whole rows (its
    `within` false): recorded without statistics, RowRules decides the row output iff the piecing is None; with
    them, RowPieceRules decides it (and the statistics) and RowRules does not. Not row-pieced, the recorder
    appends nothing: the entry is the very same."""
    z, t = _logits(rows, width, np.random.default_rng(rows * 1000 + width), ties=False)
    plain = _ce_entry(kernel, z, t, statistics=False)
    recorded = _ce_entry(kernel, z, t)
    piecing = row_pieces.row_piecing(kernel, [z.shape, t.shape])
    final = row_pieces.FINAL_OUTPUTS[kernel][0]
    assert rk.row_checkable(rk.parse_skeleton(plain.skeleton_bytes()), final) == (piecing is None)
    assert (piecing is None) == rk.cross_entropy_row_within(width)
    if piecing is None:
        assert recorded.leaf() == plain.leaf()
        return
    skeleton = rk.parse_skeleton(recorded.skeleton_bytes())
    assert (piecing.rows, piecing.pieces) == (rows, -(-width // 16))
    assert rk.rules_of(skeleton, final) == rk.rules_of(skeleton, len(recorded.outputs) - 1) == rk.ROW_PIECE_RULES
    if kernel == "cross_entropy":
        assert rk.rules_of(skeleton, 0) == rk.ROW_RULES


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 3), st.integers(1, 90), st.integers(0, 2**32 - 1), st.booleans(),
       st.sampled_from([1.0, 0.5, 0.1, 3.0]))  # fmt: skip
def test_the_loss_modes_are_the_reference_kernels(rows: int, width: int, seed: int, ties: bool, grad: float) -> None:
    """On drawn rows (any width: the modes do not depend on the piecing), FINAL_NLL on [z_t, M, S, t] is
    engine/portable/reference.py's `cross_entropy_rows` and FINAL_CE_BACKWARD on [z, M, S, t] its
    `cross_entropy_backward`, bit for bit, M and S the recorder's softmax statistics after the last piece."""
    z, t = _logits(rows, width, np.random.default_rng(seed), ties)
    piecing = row_pieces.RowPiecing("cross_entropy", width, rows, 16, -(-width // 16), 2)
    with np.errstate(all="ignore"):
        stats = record.row_statistics("cross_entropy", [z], piecing)
    nll, dz = ref.cross_entropy_rows(z, t), ref.cross_entropy_backward(z, t, np.float32(grad))
    grad_bits = _bits(np.float32(grad))
    for r in range(rows):
        top, total, target = stats[piecing.final(0, r)], stats[piecing.final(1, r)], t[r]
        got = rm.row_element(rm.RULE_ROW_FINAL, (row_pieces.FINAL_NLL, int(target), width, 0), [z[r, target], top, total, target])
        assert _bits(got) == _bits(nll[r])
        for j in range(width):
            params = (row_pieces.FINAL_CE_BACKWARD, j, rows, grad_bits)
            assert _bits(rm.row_element(rm.RULE_ROW_FINAL, params, [z[r, j], top, total, target])) == _bits(dz[r, j])
