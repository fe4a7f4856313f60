"""The causal-LM loss on chain (docs/referee.md, "The causal-LM loss"): a portable language-model step records
`causal_lm` (the logits z [R, C] and the targets t [R], −1 where a row is not counted; out the mean, nll [R] with +0
at uncounted rows, the count R_c as binary32, over 256 rows the running sum and count after each piece, then
softmax's statistics of z) and `causal_lm_backward` (z, t and that count; out dz [R, C], then the statistics).
RowRules decides the mean (a fold of nll divided by the proven count), the count (a fold of 1 for each target that
is not −1) and their running values; RowPieceRules nll (hinted by the target, −1 included), dz (divided by the
count) and the statistics. On real recorded steps (32 and 320 rows), for a sample of every checkable output's
elements, the contracts' plans are the Python mirror's, and the element rule over the values each plan reads
gives the recorded bits. Malformed entries are checkable nowhere and never make a rules contract revert."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import row_pieces
from protocol import tensor_commit as tc
from protocol.referee_kit import parse_skeleton, rules_of, row_strided_reads

from .test_row_piece_rules import rules  # noqa: F401 (the contracts fixture, shared)

SELF_READ, STATE, OUTPUT, CONSTANT = 1_000, 1, 3, 5
FLOAT32, INT64 = 1, 2
SLOTS = ((0, "HostRules"), (1, "FoldRules"), (2, "RowRules"), (5, "RowPieceRules"))  # RefereeGame's, in its order


@pytest.fixture(scope="module")
def lm_records(tmp_path_factory) -> dict[int, record.StepRecord]:
    """Step 0 of a portable tiny Llama LM job at 4 and at 40 examples a batch (T = 8: 32 and 320 rows)."""
    from engine.api import record_first_steps
    from protocol.artifacts import LocalStore
    from tests.unit.finetune.lm_helpers import lm_dataset, lm_spec

    store = LocalStore(tmp_path_factory.mktemp("lm"))
    made = {}
    for batch in (4, 40):
        spec = lm_spec(lm_dataset(store, rows=48, test=False), arithmetic="portable/1", batch_size=batch, steps=1, segment_steps=1)
        made[batch] = record_first_steps(spec, store, 1)[1][0]
    return made


def _bits(values: np.ndarray) -> list[int]:
    flat = np.ascontiguousarray(values).reshape(-1)
    return [int(v) for v in flat.view(np.uint64 if flat.dtype == np.int64 else np.uint32)]


def _read_values(rec: record.StepRecord, entry: record.Entry, read: Any) -> list[int]:
    """The values one planned read takes (input, kind, a, b, code, ndim, dims, first, count, stride), from the record."""
    k, first, count, stride = read[0], read[7], read[8], read[9]
    source = entry.outputs[k - SELF_READ] if k >= SELF_READ else rec.value_of(entry.inputs[k])
    return _bits(np.ascontiguousarray(source).reshape(-1)[first : first + count * stride : stride])


def _samples(size: int, rows: int, width: int) -> list[int]:
    return sorted({0, 1, size // 2, size - 1, width, rows * width // 3} & set(range(size)))


def _first_slot(rules: dict[str, Any], skeleton: bytes, output: int) -> int | None:  # noqa: F811
    for slot, name in SLOTS:
        if rules[name].output_of(skeleton, output).call()[1]:
            return slot
    return None


@pytest.mark.parametrize("batch", [4, 40])
def test_every_output_of_a_recorded_causal_loss_is_decided_as_recorded(rules, lm_records, batch: int) -> None:  # noqa: F811
    """Both entries: each output's rules contract is the one the mirror names (RowRules the mean, the count and the
    running values; RowPieceRules nll, dz and the statistics); a sample of each output's elements (uncounted rows'
    nll and dz among them): the plan's reads are the mirror's, and the element rule over the recorded values they
    read gives the recorded bits."""
    rec = lm_records[batch]
    entries = [e for e in rec.entries if e.kernel in ("causal_lm", "causal_lm_backward")]
    assert [e.kernel for e in entries] == ["causal_lm", "causal_lm_backward"]
    forward = entries[0]
    targets = rec.value_of(forward.inputs[1]).reshape(-1)
    rows, width = forward.inputs[0].shape
    assert rows == 8 * batch and (targets == -1).any() and (targets != -1).any()
    assert float(forward.outputs[2][0]) == float((targets != -1).sum())
    uncounted = int(np.flatnonzero(targets == -1)[0])
    for entry in entries:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output, (_, shape) in enumerate(entry.out_shapes):
            slot = _first_slot(rules, skeleton, output)
            assert slot is not None and slot == rules_of(parsed, output), (entry.kernel, output)
            size = int(np.prod(shape, dtype=np.int64))
            chosen = set(_samples(size, rows, width))
            if entry.kernel == "causal_lm" and output == 1:
                chosen.add(uncounted)
            elif entry.kernel == "causal_lm_backward" and output == 0:
                chosen |= {uncounted * width, uncounted * width + width - 1}
            for element in sorted(chosen):
                hints = [row_pieces.nll_hint(targets[element])] if (entry.kernel, output) == ("causal_lm", 1) else []
                name = dict(SLOTS)[slot]
                rule, params, reads, zipped = rules[name].plan(skeleton, output, element, hints).call()
                assert not zipped
                mirror = (row_pieces.row_piece_reads(parsed, output, element, hints) if slot == 5
                          else [(k, f, n) for k, f, n, _ in row_strided_reads(parsed, output, element)])  # fmt: skip
                assert [(r[0], r[7], r[8]) for r in reads] == mirror, (entry.kernel, output, element)
                if slot == 5:
                    assert (rule, list(params)) == (lambda m: (m[0], list(m[1])))(row_pieces.row_piece_rule(parsed, output, element, hints))
                values = [v for read in reads for v in _read_values(rec, entry, read)]
                got = int(rules["element"].element(rule, params, values).call())
                assert got == _bits(entry.outputs[output])[element], (entry.kernel, output, element)
    assert _bits(forward.outputs[1])[uncounted] == 0
    assert all(v == 0 for v in _bits(entries[1].outputs[0])[uncounted * width : (uncounted + 1) * width])


def test_a_wrong_hint_or_count_cannot_prove_an_element(rules, lm_records) -> None:  # noqa: F811
    """nll of an uncounted row hinted a class, or of a counted row hinted −1, is refused by the rule (the target read
    is not the hint); a counted row's dz over another count than the proven one gives other bits."""
    rec = lm_records[4]
    forward, backward = (e for e in rec.entries if e.kernel in ("causal_lm", "causal_lm_backward"))
    targets = rec.value_of(forward.inputs[1]).reshape(-1)
    skeleton = forward.skeleton_bytes()
    for row, hint in ((int(np.flatnonzero(targets == -1)[0]), 0), (int(np.flatnonzero(targets != -1)[0]), row_pieces.IGNORE)):
        rule, params, reads, _ = rules["RowPieceRules"].plan(skeleton, 1, row, [hint]).call()
        values = [v for read in reads for v in _read_values(rec, forward, read)]
        with pytest.raises(Exception, match="element_rules: row layout"):
            rules["element"].element(rule, params, values).call()
    counted = int(np.flatnonzero(targets != -1)[0])
    width = forward.inputs[0].shape[1]
    rule, params, reads, _ = rules["RowPieceRules"].plan(backward.skeleton_bytes(), 0, counted * width, []).call()
    values = [v for read in reads for v in _read_values(rec, backward, read)]
    honest = int(rules["element"].element(rule, params, values).call())
    assert honest == _bits(backward.outputs[0])[counted * width]
    other = values[:-1] + [int(np.array([np.float32(forward.outputs[2][0]) + 1], dtype=np.float32).view(np.uint32)[0])]
    assert int(rules["element"].element(rule, params, other).call()) != honest


def _entry(kernel: str, rows: int, width: int, constant: bool = False) -> record.Entry:
    """A well-formed hand-built entry: z and t state tensors (t a constant if asked), the backward's count an
    earlier output, its grad binary32."""
    targets = record.Ref(CONSTANT, 0, 0, INT64, (rows,), root=b"\x07" * 32) if constant else record.Ref(STATE, 1, 0, INT64, (rows,))
    refs: tuple[record.Ref, ...] = (record.Ref(STATE, 0, 0, FLOAT32, (rows, width)), targets)
    args: tuple[Any, ...] = (("input", 0), ("input", 1))
    stats = [(2 * rows * -(-width // 16),)]
    if kernel == "causal_lm":
        pieces = -(-rows // 256)
        outs = [(), (rows,), (1,)] + ([(2 * (pieces - 1),)] if pieces > 1 else []) + stats
    else:
        refs += (record.Ref(OUTPUT, 4, 2, FLOAT32, (1,)),)
        args += (("input", 2), np.float32(1.0))
        outs = [(rows, width)] + stats
    return record.Entry(9, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))


def _malformed() -> list[tuple[str, record.Entry]]:
    good, backward, many = _entry("causal_lm", 8, 24), _entry("causal_lm_backward", 8, 24), _entry("causal_lm", 300, 24)

    def with_outs(entry: record.Entry, new: list[tuple[int, tuple[int, ...]]]) -> record.Entry:
        return dataclasses.replace(entry, out_shapes=tuple(new), out_roots=(tc.ZERO,) * len(new))

    def with_ref(entry: record.Entry, k: int, **change: Any) -> record.Entry:
        return dataclasses.replace(entry, inputs=tuple(dataclasses.replace(r, **change) if i == k else r for i, r in enumerate(entry.inputs)))

    outs = list(good.out_shapes)
    return [("no statistics", with_outs(good, outs[:-1])), ("the count int64", with_outs(good, [*outs[:2], (2, (1,)), outs[3]])),
            ("a count of two", with_outs(good, [*outs[:2], (1, (2,)), outs[3]])), ("no count", with_outs(good, [*outs[:2], outs[3]])),
            ("running values under 256 rows", with_outs(good, [*outs[:3], (1, (2,)), outs[3]])),
            ("no running values over 256 rows", with_outs(many, [*many.out_shapes[:3], many.out_shapes[4]])),
            ("one running value a piece", with_outs(many, [*many.out_shapes[:3], (1, (1,)), many.out_shapes[4]])),
            ("targets binary32", with_ref(good, 1, dtype=FLOAT32)), ("z int64", with_ref(good, 0, dtype=INT64)),
            ("an argument more", dataclasses.replace(good, args=(*good.args, 3))),
            ("the backward's count of two", with_ref(backward, 2, shape=(2,))),
            ("the backward's count int64", with_ref(backward, 2, dtype=INT64)),
            ("the backward without its count", dataclasses.replace(backward, inputs=backward.inputs[:2], args=(*backward.args[:2], backward.args[3]))),
            ("the backward's grad an integer", dataclasses.replace(backward, args=(*backward.args[:3], 1))),
            ("dz of another shape", with_outs(backward, [(1, (24, 8)), backward.out_shapes[1]]))]  # fmt: skip


def test_malformed_causal_entries_are_not_checkable_and_never_revert(rules) -> None:  # noqa: F811
    """Every malformed variant: RowPieceRules checks none of its outputs, RowRules none but the folds over an int64 z
    (which they never read), and no rules contract reverts on it; the contract RefereeGame would ask is the mirror's
    for every output of the good ones too (constant targets and 300 rows among them), each of whose outputs is
    checked."""
    good = [_entry("causal_lm", 8, 24), _entry("causal_lm", 300, 24), _entry("causal_lm", 5, 40, constant=True),
            _entry("causal_lm_backward", 8, 24), _entry("causal_lm_backward", 3, 100, constant=True)]  # fmt: skip
    for why, entry in _malformed() + [(f"good {e.kernel} {e.inputs[0].shape}", e) for e in good]:
        skeleton = entry.skeleton_bytes()
        for output in range(len(entry.out_shapes) + 1):
            for _, name in SLOTS:
                rules[name].output_of(skeleton, output).call()  # never a revert
            if output < len(entry.out_shapes):
                assert _first_slot(rules, skeleton, output) == rules_of(parse_skeleton(skeleton), output), (why, output)
        checked = [o for o in range(len(entry.out_shapes)) if _first_slot(rules, skeleton, o) is not None]
        if why.startswith("good"):
            assert checked == list(range(len(entry.out_shapes))), why
            continue
        assert not any(rules["RowPieceRules"].output_of(skeleton, o).call()[1] for o in range(len(entry.out_shapes))), why
        # (the mean and the count read nll, the count and t, never z: RowRules still decides them over an int64 z,
        # whose rows, nll and statistics, nothing decides)
        assert checked == ([0, 2] if why == "z int64" else []), (why, checked)
