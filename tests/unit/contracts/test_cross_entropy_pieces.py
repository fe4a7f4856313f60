"""Cross-entropy rows in pieces on chain (contracts/lib/row_piece_rules.vy, docs/referee.md "Rows in pieces"): rows of
logits wider than RowRules' whole-row caps (32 where C divides 256, else 29) are decided with softmax's statistics,
the running first maximum M and Σ exp(z − M), pieces of 16; nll[r] from M, S, the target t[r] and z[r, t] (t hinted:
the plan cannot know where the target points, the rule requires the target read to be the hint), dz[r, j] from M,
S, z[r, j] and t[r]. On hand-built skeletons: which rules contract checks which output (RowRules keeps the mean and
its running sums, with the statistics after them; the Python mirror names the same), the plan RowPieceRules makes
(written here from the spec, and the mirror's, `protocol.row_pieces`), and on
real values each planned element, read as its plan says and ruled by ElementReferee's rules, is
engine/portable/reference.py's bit for bit. Malformed entries are checkable nowhere and never make a rules
contract revert."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from engine.portable import record
from engine.portable import reference as ref
from protocol import row_pieces
from protocol import tensor_commit as tc
from protocol.referee_kit import parse_skeleton, rules_of

from .test_row_piece_elements import b, piece_oracle
from .test_row_piece_rules import rules  # noqa: F401 (the contracts fixture, shared)

SELF_READ, REF_SELF, STATE, CONSTANT = 1_000, 7, 1, 5
FLOAT32, INT64 = 1, 2
RULE_ROW_PIECE, RULE_ROW_FINAL = 40, 41
MAX, EXP_SUM = 0, 1
NLL, CE_BACKWARD = 6, 7
LENGTH = 16
MAX_FOLD = 256  # rows of one piece of the mean (RowRules' loss pieces)
GRAD64, GRAD32 = 0.25, np.float32(1.5)
# (kernel, z's shape, grad, the targets a constant): wide rows, rows across a 256-element boundary, more than
# MAX_FOLD rows (the mean in pieces: a running-sums output before the statistics)
CASES = [("cross_entropy", (3, 40), None, False), ("cross_entropy", (5, 100), None, True),
         ("cross_entropy", (300, 33), None, False), ("cross_entropy_backward", (3, 40), GRAD64, False),
         ("cross_entropy_backward", (2, 300), GRAD32, True)]  # fmt: skip


def _pieces(d: int) -> int:
    return -(-d // LENGTH)


def _entry(kernel: str, z: tuple[int, int], grad: Any = None, constant: bool = False, statistics: bool = True) -> record.Entry:
    """z a state tensor, t an int64 state tensor (or a constant), the kernel's outputs (cross_entropy: the mean,
    nll, the mean's running sums over more than MAX_FOLD rows), then the statistics [2·R·P]."""
    rows, d = z
    targets = record.Ref(CONSTANT, 0, 0, INT64, (rows,), root=b"\x07" * 32) if constant else record.Ref(STATE, 1, 0, INT64, (rows,))
    refs = (record.Ref(STATE, 0, 0, FLOAT32, z), targets)
    args: tuple[Any, ...] = (("input", 0), ("input", 1))
    if kernel == "cross_entropy":
        outs = [(), (rows,)] + ([(-(-rows // MAX_FOLD) - 1,)] if rows > MAX_FOLD else [])  # a running sum a piece but the last
    else:
        args += (grad,)
        outs = [z]
    outs += [(2 * rows * _pieces(d),)] if statistics else []
    return record.Entry(9, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))


def _final(stats_out: int, rows: int, d: int, s: int, r: int) -> tuple[int, int, int]:
    return SELF_READ + stats_out, (s * rows + r) * _pieces(d) + _pieces(d) - 1, 1


def _row_runs(first: int, count: int) -> list[tuple[int, int, int]]:
    boundary = (first // 256 + 1) * 256
    return [(0, first, count)] if first + count <= boundary else [(0, first, boundary - first), (0, boundary, first + count - boundary)]


def expected_plan(kernel: str, z: tuple[int, int], grad: Any, outputs: int, output: int, element: int,
                  hint: int | None) -> tuple[int, list[int], list[tuple[int, int, int]]]:  # fmt: skip
    """(rule, params, reads (k, first, count)) of one element, from the spec."""
    rows, d = z
    stats_out = outputs - 1
    if output == stats_out:  # softmax's statistics over z
        s, rest = divmod(element, rows * _pieces(d))
        r, c = divmod(rest, _pieces(d))
        n = min(LENGTH, d - c * LENGTH)
        reads = [_final(stats_out, rows, d, 0, r)] if s == 1 else []
        reads += [(SELF_READ + stats_out, element - 1, 1)] if c > 0 else []
        return RULE_ROW_PIECE, [(MAX, EXP_SUM)[s], int(c > 0), d], reads + _row_runs(r * d + c * LENGTH, n)
    finals = [_final(stats_out, rows, d, s, 0) for s in (0, 1)]
    if kernel == "cross_entropy":
        assert hint is not None
        r = element
        finals = [_final(stats_out, rows, d, s, r) for s in (0, 1)]
        return RULE_ROW_FINAL, [NLL, hint, d, 0], [(0, r * d + hint, 1), *finals, (1, r, 1)]
    r, j = divmod(element, d)
    finals = [_final(stats_out, rows, d, s, r) for s in (0, 1)]
    return RULE_ROW_FINAL, [CE_BACKWARD, j, rows, b(np.float32(grad))], [(0, element, 1), *finals, (1, r, 1)]


def _planned(rules: dict[str, Any], entry: record.Entry, output: int, element: int, hints: list[int]) -> tuple[int, list[int], list[tuple[int, int, int]]]:  # noqa: F811
    rule, params, reads, zipped = rules["RowPieceRules"].plan(entry.skeleton_bytes(), output, element, hints).call()
    assert not zipped and all(r[9] == 1 for r in reads)
    for k, kind, _, b_, dtype, ndim, dims, _, _, _ in reads:
        if k >= SELF_READ:  # the entry's own statistics: REF_SELF, binary32, flat
            assert (kind, b_, dtype, tuple(dims[:ndim])) == (REF_SELF, k - SELF_READ, FLOAT32, entry.out_shapes[k - SELF_READ][1])
        else:
            assert (kind, dtype, tuple(dims[:ndim])) == (entry.inputs[k].kind, entry.inputs[k].dtype, entry.inputs[k].shape)
    return rule, list(params), [(r[0], r[7], r[8]) for r in reads]


def _bits(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


def _statistics(z: np.ndarray) -> list[int]:
    """M then S of every row after every piece, chained with the element rule's oracle."""
    rows, d = z.shape
    flat = [int(v) for v in z.reshape(-1).view(np.uint32)]
    out = [0] * (2 * rows * _pieces(d))
    for s, mode in enumerate((MAX, EXP_SUM)):
        for r in range(rows):
            for c in range(_pieces(d)):
                n = min(LENGTH, d - c * LENGTH)
                stat = out[r * _pieces(d) + _pieces(d) - 1] if mode == EXP_SUM else None
                partial = out[(s * rows + r) * _pieces(d) + c - 1] if c else None
                segment = flat[r * d + c * LENGTH : r * d + c * LENGTH + n]
                out[(s * rows + r) * _pieces(d) + c] = piece_oracle(mode, partial, d, stat, [segment])
    return out


@pytest.mark.parametrize(("kernel", "z", "grad", "constant"), CASES, ids=[f"{c[0]}-{c[1][0]}x{c[1][1]}" for c in CASES])
def test_wide_cross_entropy_rows_are_planned_as_the_spec_says_and_ruled_as_the_reference(rules, kernel, z, grad, constant) -> None:  # noqa: F811
    """Every statistic of the first, second, middle and last rows and a sample of nll or dz elements (targets, their
    neighbours, the row edges):
    RowPieceRules checks exactly nll or dz and the statistics, RowRules exactly the mean and its running sums (as
    without the statistics), HostRules and FoldRules nothing; the plan is the spec's; the element rule over the
    values the plan reads gives the reference's bits; the last statistics are the reference's M and S."""
    entry = _entry(kernel, z, grad, constant)
    skeleton, count = entry.skeleton_bytes(), len(entry.out_shapes)
    parsed = parse_skeleton(skeleton)
    rng = np.random.default_rng(sum(z))
    logits = (rng.standard_normal(z) * 4).astype(np.float32)
    targets = rng.integers(0, z[1], z[0])
    stats = _statistics(logits)
    sources = [_bits(logits), [int(t) for t in targets]]
    mine = {"cross_entropy": (1,), "cross_entropy_backward": (0,)}[kernel]
    for output in range(count):
        piece = rules["RowPieceRules"].output_of(skeleton, output).call()
        assert (piece[0], tuple(piece[3])) == (count, entry.out_shapes[output][1])
        assert piece[1] == (output in mine or output == count - 1), (kernel, output)
        assert rules["RowRules"].output_of(skeleton, output).call()[1] == (kernel == "cross_entropy" and output in (0, 2) and output < count - 1)
        for other in ("HostRules", "FoldRules"):
            assert not rules[other].output_of(skeleton, output).call()[1]
    if kernel == "cross_entropy":
        wanted = _bits(ref.cross_entropy_rows(logits, targets))
        elements = sorted({0, 1, z[0] // 2, z[0] - 1})
    else:
        wanted = _bits(ref.cross_entropy_backward(logits, targets, np.float32(grad)))
        picked = [r * z[1] + int(targets[r]) for r in (0, z[0] - 1)]
        elements = sorted({0, z[1] - 1, z[1], len(wanted) - 1, *picked, *(p + 1 for p in picked)} & set(range(len(wanted))))
    # every statistic of a few rows (all of them where there are few): the first two, the middle and the last
    rows_checked = sorted({0, 1, z[0] // 2, z[0] - 1} & set(range(z[0])))
    chosen_stats = [(st * z[0] + r) * _pieces(z[1]) + c for st in (0, 1) for r in rows_checked for c in range(_pieces(z[1]))]
    for output, chosen, values_of in ((count - 1, chosen_stats, stats), (mine[0], elements, wanted)):
        for element in chosen:
            hint = int(targets[element]) if kernel == "cross_entropy" and output == 1 else None
            planned = _planned(rules, entry, output, element, [] if hint is None else [hint])
            assert planned == expected_plan(kernel, z, grad, count, output, element, hint), (kernel, output, element)
            hints = () if hint is None else (hint,)
            mirror = row_pieces.row_piece_rule(parsed, output, element, hints)
            assert planned == (mirror[0], list(mirror[1]), row_pieces.row_piece_reads(parsed, output, element, hints))
            rule, params, reads = planned
            values = [v for k, first, n in reads for v in (stats if k >= SELF_READ else sources[k])[first : first + n]]
            assert int(rules["element"].element(rule, params, values).call()) == values_of[element], (kernel, output, element)
    m = ref._max_last(logits)
    whole = _bits(m) + _bits(ref._fold_last(ref.exp(logits - m[:, None])))
    last = [stats[(s * z[0] + r) * _pieces(z[1]) + _pieces(z[1]) - 1] for s in (0, 1) for r in range(z[0])]
    assert last == whole


def test_nll_needs_its_row_s_target_as_the_hint(rules) -> None:  # noqa: F811
    """No hint, two, or one past the row: the plan reverts; a hint other than the target read: the element rule
    refuses it (the defender cannot prove an nll from another logit)."""
    entry = _entry("cross_entropy", (3, 40))
    skeleton = entry.skeleton_bytes()
    for hints in ([], [1, 2], [40]):
        with pytest.raises(Exception, match="row_piece_rules: nll's hint is its row's target"):
            rules["RowPieceRules"].plan(skeleton, 1, 0, hints).call()
    rule, params, _, _ = rules["RowPieceRules"].plan(skeleton, 1, 2, [7]).call()
    with pytest.raises(Exception, match="element_rules: row layout"):
        rules["element"].element(rule, params, [b(np.float32(1.0)), b(np.float32(2.0)), b(np.float32(3.0)), 8]).call()


def _malformed() -> list[tuple[str, record.Entry]]:
    """Skeletons no rules contract may check nll, dz or the statistics of (each a change of a good one)."""
    good, backward, many = _entry("cross_entropy", (3, 40)), _entry("cross_entropy_backward", (3, 40), GRAD64), _entry("cross_entropy", (300, 33))

    def with_outs(entry: record.Entry, new: list[tuple[int, tuple[int, ...]]]) -> record.Entry:
        return dataclasses.replace(entry, out_shapes=tuple(new), out_roots=(tc.ZERO,) * len(new))

    def with_ref(entry: record.Entry, k: int, **change: Any) -> record.Entry:
        return dataclasses.replace(entry, inputs=tuple(dataclasses.replace(r, **change) if i == k else r for i, r in enumerate(entry.inputs)))

    outs, stats = list(good.out_shapes), good.out_shapes[-1][1][0]
    return [("no statistics", with_outs(good, outs[:-1])), ("statistics one short", with_outs(good, [*outs[:-1], (1, (stats - 1,))])),
            ("statistics int64", with_outs(good, [*outs[:-1], (2, (stats,))])), ("an output more", with_outs(good, [*outs, (1, (1,))])),
            ("nll int64", with_outs(good, [outs[0], (2, (3,)), outs[2]])), ("nll one short", with_outs(good, [outs[0], (1, (2,)), outs[2]])),
            ("targets binary32", with_ref(good, 1, dtype=FLOAT32)), ("targets one short", with_ref(good, 1, shape=(2,))),
            ("z int64", with_ref(good, 0, dtype=INT64)), ("a constant z", with_ref(good, 0, kind=CONSTANT)),
            ("z 3-d", with_ref(good, 0, shape=(1, 3, 40))), ("an argument more", dataclasses.replace(good, args=(*good.args, 3))),
            ("no running sums over 256 rows", with_outs(many, [*many.out_shapes[:2], many.out_shapes[3]])),
            ("running sums under 256 rows", with_outs(good, [*outs[:2], (1, (1,)), outs[2]])),
            ("rows RowRules takes whole", _entry("cross_entropy", (3, 32))), ("rows of 29", _entry("cross_entropy_backward", (4, 29), GRAD32)),
            ("the backward's grad an integer", dataclasses.replace(backward, args=(*backward.args[:2], 1))),
            ("dz of another shape", with_outs(backward, [(1, (40, 3)), backward.out_shapes[1]]))]  # fmt: skip


def _first_slot(rules: dict[str, Any], skeleton: bytes, output: int) -> int | None:  # noqa: F811
    """RefereeGame's choice: the first of its rules contracts (slots 0 HostRules, 1 FoldRules, 2 RowRules, 5
    RowPieceRules; DataRules and ScalarRules take no loss kernel) whose output_of says checkable."""
    for slot, name in ((0, "HostRules"), (1, "FoldRules"), (2, "RowRules"), (5, "RowPieceRules")):
        if rules[name].output_of(skeleton, output).call()[1]:
            return slot
    return None


def test_malformed_cross_entropy_entries_are_not_checkable_and_never_revert(rules) -> None:  # noqa: F811
    """Every malformed variant: RowPieceRules checks none of its outputs (its plan reverts), no rules contract
    reverts on it, and the contract RefereeGame would ask is the one the Python mirror names (`rules_of`), as
    for every output of the good cases."""
    for why, entry in _malformed() + [(f"good {c[0]} {c[1]}", _entry(*c)) for c in CASES]:
        skeleton = entry.skeleton_bytes()
        for output in range(len(entry.out_shapes) + 1):
            for name in ("HostRules", "FoldRules", "RowRules", "RowPieceRules"):
                rules[name].output_of(skeleton, output).call()  # never a revert
            if output < len(entry.out_shapes):
                assert _first_slot(rules, skeleton, output) == rules_of(parse_skeleton(skeleton), output), (why, output)
        if why.startswith("good"):
            continue
        for output in range(len(entry.out_shapes) + 1):
            assert not rules["RowPieceRules"].output_of(skeleton, output).call()[1], (why, output)
        with pytest.raises(Exception, match="row_piece_rules: not a checkable element"):
            rules["RowPieceRules"].plan(skeleton, len(entry.out_shapes) - 1, 0, []).call()
    narrow = _entry("cross_entropy", (3, 32))
    assert not rules["RowRules"].output_of(narrow.skeleton_bytes(), 0).call()[1]  # statistics it does not expect
    plain = _entry("cross_entropy", (3, 32), statistics=False)
    assert all(rules["RowRules"].output_of(plain.skeleton_bytes(), o).call()[1] for o in (0, 1))


@pytest.mark.parametrize("rows", [3, 300])
def test_the_mean_of_row_pieced_rows_is_planned_as_without_them(rules, rows: int) -> None:  # noqa: F811
    """RowRules' plans of the mean (and of a running sum) read nll and the running sums as they would without the
    trailing statistics: the same rule, parameters and reads."""
    pieced = _entry("cross_entropy", (rows, 40))
    plain = _entry("cross_entropy", (rows, 40), statistics=False)
    plain_rows = dataclasses.replace(plain, inputs=(dataclasses.replace(plain.inputs[0], shape=(rows, 16)), plain.inputs[1]))
    for output in (0, 2) if rows > MAX_FOLD else (0,):
        size = int(np.prod(pieced.out_shapes[output][1]))
        for element in sorted({0, size - 1}):
            got = rules["RowRules"].plan(pieced.skeleton_bytes(), output, element, []).call()
            want = rules["RowRules"].plan(plain_rows.skeleton_bytes(), output, element, []).call()
            assert got == want, (rows, output, element)
