"""RowRules' loss folds in pieces (contracts/lib/row_rules.vy `_loss_piecing`, docs/referee.md "Loss rules"),
on anvil, over the tiny-GPT preset's step (16 windows of 32 characters: 512 rows and positions):

- cross-entropy's mean over R > 256 rows: the recorder adds the running sums of nll after each piece of
  256 rows but the last (output 2); a running sum is decided as its piece from the one before (+0 first)
  and its nll rows, the mean as the last piece from the last running sum, then / R;
- embedding_backward over more positions than one piece loads: the running dW after each piece of
  positions but the last (output 1); a piece reads the running value of its element before it, the ids of
  its positions and dy's column d at those positions.

RowRules plans every piece as the Python mirror (`referee_kit.row_strided_reads`) and the referee model
(`referee_calls.encode`) say; games rule against exactly the wrong party at a running value and at a
final element (both directions); a wrong running value (or nll row) with everything after it recomputed
consistently is disputed by the honest player at the first wrong value; a forged running-value proof is
refused; the dearest piece costs under 1,000,000 gas; the contract and its mirror agree on drawn shapes.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import DECIDED, PROOF, Match
from protocol import fold_rules
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.referee_kit import ROW_RULES, SELF, SELF_READ, parse_skeleton, row_checkable, row_strided_reads, rules_of

from ..engine.helpers import examples
from .helpers import drawn_plans
from .test_fold_pieces import step_match
from .test_loss_rules import PROVE_ELEMENT_TARGET, chain, loss_contracts, plan_values  # noqa: F401 (fixtures)
from .test_referee_game import checkable_output

PIECED = ("cross_entropy", "embedding_backward")
WHOLE_GAME = 5_000_000  # issue 15: a whole game, every party's moves (as test_fold_pieces')


@pytest.fixture(scope="module")
def preset_step() -> dict[str, Any]:
    """The tiny-GPT preset (portable/1) in segments of one step: step 0's states, binding, roots and record."""
    from engine.presets import tiny_gpt_spec

    from ..engine.helpers import with_fields
    from .helpers import first_step

    return first_step(with_fields(tiny_gpt_spec(arithmetic="portable/1"), steps=20))


@pytest.fixture(scope="module")
def preset_kit(preset_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    """The honest party's dispute kit of the preset's step (its running values among the outputs), written
    and read back."""
    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    step = preset_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(tmp_path_factory.mktemp("loss-pieces") / "kit", kit))


def _entry(rec: record.StepRecord, kernel: str) -> record.Entry:
    return next(e for e in rec.entries if e.kernel == kernel)


def _piecing(entry: record.Entry) -> fold_rules.Piecing:
    piecing = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
    assert piecing is not None
    return piecing


def test_the_preset_s_loss_folds_are_in_pieces(preset_step) -> None:
    """The mean over 512 rows in two pieces of 256 (one running sum); dW [32, 32] over 512 positions in 16
    pieces of 32 (a piece of 64 would load 353 > 280: dy's column is 32 apart in 2,048 chunks); each
    entry's running values are its last output, and every output has a rule (RowRules)."""
    rec = preset_step["rec"]
    mean, dw = _entry(rec, "cross_entropy"), _entry(rec, "embedding_backward")
    assert _piecing(mean) == fold_rules.Piecing(0, 512, 256, 2, 0, 1)
    assert _piecing(dw) == fold_rules.Piecing(0, 512, 32, 16, 0, 1_024)
    assert [s for _, s in mean.out_shapes] == [(), (512,), (1,)] and [s for _, s in dw.out_shapes] == [(32, 32), (15 * 1_024,)]
    for entry in (mean, dw):
        parsed = parse_skeleton(entry.skeleton_bytes())
        assert all(rules_of(parsed, o) == ROW_RULES for o in range(len(entry.out_shapes)))


def _elements(entry: record.Entry, output: int) -> list[int]:
    """The first and last element of the first, second, middle and last piece of a running-values output;
    the first, second, middle and last of another."""
    size = entry.outputs[output].size
    if output != fold_rules.LOSS_BASE_OUTPUTS[entry.kernel]:
        return sorted({0, 1, size // 2, size - 1} & set(range(size)))
    piecing = _piecing(entry)
    pieces = {0, 1, (piecing.pieces - 2) // 2, piecing.pieces - 2} & set(range(piecing.pieces - 1))
    return sorted({c * piecing.size + e for c in pieces for e in (0, piecing.size - 1)})


def test_every_loss_piece_is_planned_as_the_mirror_and_the_model_say(loss_contracts, preset_step) -> None:
    """On every output of the preset's cross_entropy and embedding_backward entries: RowRules checks it
    exactly when `row_checkable` does (all of them), and at the first and last element of the first,
    second, middle and last pieces its reads (a running value first, a SELF read of the entry's own
    running values; nll a SELF read; ids then dy's column at stride D) are `row_strided_reads`', and its
    rule, parameters (from_partial, the division after the last piece only; v and 1 for a dW piece) and
    values are `referee_calls.encode`'s from the referee model."""
    from protocol import referee_calls

    rules = loss_contracts["row_rules"].functions
    rec = preset_step["rec"]
    for entry in (_entry(rec, k) for k in PIECED):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in range(len(entry.out_shapes)):
            assert checkable_output(rules, entry, output) and row_checkable(parsed, output), (entry.kernel, output)
            for element in _elements(entry, output):
                rule, params, reads, zipped = rules.plan(skeleton, output, element, []).call()
                assert [(r[0], r[7], r[8], r[9]) for r in reads] == row_strided_reads(parsed, output, element) and not zipped
                for k, kind, _, b, dtype, ndim, dims, *_ in reads:
                    if k >= SELF_READ:
                        assert (kind, b, dtype, tuple(dims[:ndim])) == (SELF, k - SELF_READ, *entry.out_shapes[k - SELF_READ])
                proven = record.proven_values(rec, entry, output, element)
                expected = referee_calls.encode(record.referee_call(entry), output, element, proven)
                assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.kernel, output, element)
                assert plan_values(rec, entry, reads) == expected.values, (entry.kernel, output, element)


def test_the_running_values_chain_to_the_recorded_outputs(preset_step) -> None:
    """Each recorded running value (every one of the mean's; every piece of the dW elements of the first,
    middle and last rows) is its piece recomputed by the referee model from the recorded running value
    before it, and the last piece gives the recorded mean or dW bit for bit: recording the running values
    changed no bit of the kernel's outputs. A running value one exponent bit wrong moves the next piece."""
    rec = preset_step["rec"]
    for entry in (_entry(rec, k) for k in PIECED):
        call, piecing = record.referee_call(entry), _piecing(entry)
        base = fold_rules.LOSS_BASE_OUTPUTS[entry.kernel]
        for e in sorted({0, 3, piecing.size // 2 + 5, piecing.size - 1} & set(range(piecing.size))):
            checks = [(base, c * piecing.size + e) for c in range(piecing.pieces - 1)] + [(0, e)]
            for output, element in checks:
                proven = record.proven_values(rec, entry, output, element)
                bits = rm.check_element(call, output, element, proven)
                assert bits == int(entry.outputs[output].reshape(-1).view(np.uint32)[element]), (entry.kernel, output, element)
                key = next((k for k in proven if k[0] == "partial"), None)
                if key is not None:
                    wrong = dict(proven)
                    wrong[key] = np.uint32(int(np.float32(proven[key]).view(np.uint32)) ^ (1 << 30)).view(np.float32)
                    assert rm.check_element(call, output, element, wrong) != bits


def _dw_element(rec: record.StepRecord) -> int:
    """dW[v, 3] of the first position's id v (a sum over every position holding that id)."""
    entry = _entry(rec, "embedding_backward")
    return int(rec.input_value(entry, 0).reshape(-1)[0]) * entry.out_shapes[0][1][1] + 3


def _match(chain, contracts, step, kernel: str, output: int, element: int, wrong: bool,  # noqa: F811
           defender_rec: record.StepRecord | None = None) -> Match:  # fmt: skip
    return step_match(chain, contracts, step, output, element, wrong, defender_rec, target=_entry(step["rec"], kernel).index)


# (kernel, output, which element, what it shows)
TARGETS = [
    ("cross_entropy", 2, "first", "the running sum after piece 0: nll rows 0 … 255 from +0"),
    ("cross_entropy", 0, "first", "the mean: nll rows 256 … 511 from the running sum, then / 512"),
    ("embedding_backward", 1, "first", "a running dW value after piece 0: positions 0 … 31 from +0 (params [v])"),
    ("embedding_backward", 1, "middle", "a running dW value after piece 7 of 16, from the one after piece 6"),
    ("embedding_backward", 0, "final", "a dW element: its last piece from the running value after piece 14"),
]


@pytest.mark.parametrize(("kernel", "output", "where", "why"), TARGETS, ids=[f"{t[0]}-{t[1]}-{t[2]}" for t in TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_loss_piece_is_ruled_on_chain(chain, loss_contracts, preset_step, preset_kit, wrong: bool, kernel: str,  # noqa: F811
                                        output: int, where: str, why: str) -> None:  # fmt: skip
    """A one-bit-wrong running value or final element is caught by the honest challenger, and a right one
    upheld against a lying challenger, decided on chain by RowRules (not escalated): prove_element under
    1,000,000 gas, the whole game under 5,000,000. The honest defender proves with its dispute kit's
    arguments (read back from disk: the running value and nll as SELF runs, dy's column proof), which are
    the personas'."""
    rec = preset_step["rec"]
    element = 0
    if kernel == "embedding_backward":
        e = _dw_element(rec)
        element = {"first": 0, "middle": 7}.get(where, 0) * _piecing(_entry(rec, kernel)).size + e
    match = _match(chain, loss_contracts, preset_step, kernel, output, element, wrong)
    match.play(PROOF, "defender")
    game = match.game()
    assert (game["entry"], game["output"], game["rules"]) == (_entry(rec, kernel).index, output, ROW_RULES)
    assert game["chunk_index"] * 8 + game["element"] == element
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        j = match.target
        proofs, columns = preset_kit.element_proof_args(j, output, element)
        assert (proofs, columns) == tuple(match.element_proof_args())
        match.send("defender", "host", "prove_element", match.game_id, preset_kit.entries[j].skeleton, proofs, [], columns)
    proof_gas = match.gas["defender"] - before
    print(f"{kernel} output {output}: prove_element {proof_gas:,} gas, whole game {sum(match.gas.values()):,}")
    assert match.game()["stage"] == DECIDED and match.ruling() == (True, wrong, False)
    assert proof_gas < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME


def _replaced(rec: record.StepRecord, entry: record.Entry, arrays: dict[int, np.ndarray]) -> record.StepRecord:
    outputs, roots = list(entry.outputs), list(entry.out_roots)
    for o, array in arrays.items():
        outputs[o], roots[o] = array, tc.tensor_root(array)
    bad = dataclasses.replace(entry, outputs=tuple(outputs), out_roots=tuple(roots))
    return dataclasses.replace(rec, entries=[*rec.entries[: entry.index], bad, *rec.entries[entry.index + 1 :]])


def _recomputed(rec: record.StepRecord, entry: record.Entry, arrays: dict[int, np.ndarray], output: int, element: int) -> int:
    """The referee model's bits of one element from `arrays` (the entry's outputs as the defender has them)
    and the honest inputs."""
    call = record.referee_call(entry)
    proven = {}
    for key in rm.dependencies(call, output, element):
        if key[0] == "partial":
            proven[key] = arrays[len(entry.outputs) - 1][rm.running_value_index(call, output, element, key[1])]
        elif key[0] == "nll":
            proven[key] = arrays[1][key[1]]
        else:
            proven[key] = rec.input_value(entry, key[0]).reshape(-1)[key[1]]
    return rm.check_element(call, output, element, proven)


def consistent_from(rec: record.StepRecord, kernel: str, piece: int, e: int, nll_row: int | None = None) -> record.StepRecord:
    """The record with entry `kernel`'s running value of element e after `piece` one bit wrong (or, with
    `nll_row`, that nll row instead), and every later running value of e and the final element
    recomputed from it by the referee model: each consistent with the values before it."""
    entry = _entry(rec, kernel)
    piecing, base = _piecing(entry), fold_rules.LOSS_BASE_OUTPUTS[kernel]
    arrays = {o: entry.outputs[o].copy() for o in range(len(entry.outputs))}
    if nll_row is not None:
        arrays[1].view(np.uint32)[nll_row] ^= 1 << 20
        first = 0
    else:
        arrays[base].view(np.uint32)[piece * piecing.size + e] ^= 1 << 20
        first = piece + 1
    for later in range(first, piecing.pieces - 1):
        index = later * piecing.size + e
        arrays[base].view(np.uint32)[index] = _recomputed(rec, entry, arrays, base, index)
    arrays[0].reshape(-1).view(np.uint32)[e] = _recomputed(rec, entry, arrays, 0, e)
    return _replaced(rec, entry, arrays)


def _chosen(entry: record.Entry, bad: record.StepRecord) -> int:
    """The output the honest production player disputes against the defender's record `bad`."""
    from worker.referee_player import RefereePlayer

    mine = SimpleNamespace(out_roots=entry.out_roots, parsed=parse_skeleton(entry.skeleton_bytes()))
    player = SimpleNamespace(kit=SimpleNamespace(entries={entry.index: mine}))
    return RefereePlayer.choose_output(player, entry.index, list(bad.entries[entry.index].out_roots))  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel", PIECED)
def test_a_wrong_running_value_with_consistent_later_pieces_is_caught_at_the_first_wrong_piece(chain, loss_contracts,  # noqa: F811
                                                                                               preset_step, kernel: str) -> None:  # fmt: skip
    """The defender's running value after piece 1 (dW) or 0 (the mean's one running sum) is one bit wrong and
    every later piece and the final element are recomputed from it (each consistent with the one before):
    the honest production player names the running values (not the final output, consistent with them),
    the game reaches the first wrong running value and the check from the agreed value before it (or +0)
    and the honest terms rules the defender wrong."""
    rec = preset_step["rec"]
    entry = _entry(rec, kernel)
    piecing, base = _piecing(entry), fold_rules.LOSS_BASE_OUTPUTS[kernel]
    piece, e = (0, 0) if kernel == "cross_entropy" else (1, _dw_element(rec))
    bad = consistent_from(rec, kernel, piece, e)
    mine, theirs = entry.outputs[base].view(np.uint32), bad.entries[entry.index].outputs[base].view(np.uint32)
    differs = np.flatnonzero(mine != theirs).tolist()
    first_wrong = piece * piecing.size + e
    assert differs[0] == first_wrong and (kernel == "cross_entropy" or len(differs) >= 2)
    assert bad.entries[entry.index].out_roots[0] != entry.out_roots[0]  # the final element follows it
    assert _chosen(entry, bad) == base
    match = _match(chain, loss_contracts, preset_step, kernel, base, first_wrong, True, defender_rec=bad)
    match.play()
    game = match.game()
    assert (game["stage"], game["output"], game["chunk_index"] * 8 + game["element"]) == (DECIDED, base, first_wrong)
    assert match.ruling() == (True, True, False)


def test_a_wrong_nll_row_with_consistent_running_sums_and_mean_is_disputed_at_nll(preset_step) -> None:
    """nll[300] one bit wrong, with the running sum (unchanged: row 300 is in the last piece) and the mean
    recomputed from it; and nll[7] wrong with the running sum and the mean recomputed (all three outputs
    differ): the honest player disputes nll, which neither the mean's nor a running sum's rule can
    contradict (they read it), and which test_loss_rules decides from z's row and the target."""
    rec = preset_step["rec"]
    entry = _entry(rec, "cross_entropy")
    for row in (300, 7):
        bad = consistent_from(rec, "cross_entropy", 0, 0, nll_row=row)
        differ = [o for o in range(3) if bad.entries[entry.index].out_roots[o] != entry.out_roots[o]]
        assert differ == ([0, 1] if row >= 256 else [0, 1, 2])
        assert _chosen(entry, bad) == 1


def test_a_forged_running_value_is_refused(chain, loss_contracts, preset_step) -> None:  # noqa: F811
    """At PROOF for a dW element (its last piece reads the running value after piece 14): that value proven
    under output roots other than the revealed entry's, from a run of the running values that does not
    hold it, or with its chunk changed is refused; the honest proof wins."""
    from protocol.referee_kit import self_input_proof

    rec = preset_step["rec"]
    entry = _entry(rec, "embedding_backward")
    element = _dw_element(rec)
    match = _match(chain, loss_contracts, preset_step, "embedding_backward", 0, element, wrong=False)
    match.play(PROOF, "defender")
    skeleton = entry.skeleton_bytes()
    proofs, columns = match.element_proof_args()
    k, first, count, _ = row_strided_reads(parse_skeleton(skeleton), 0, element)[0]
    assert (k, first, count) == (SELF_READ + 1, 14 * 1_024 + element, 1)
    running = entry.outputs[1]
    changed = running.copy()
    changed.view(np.uint32)[first] ^= 1
    forged = [
        (self_input_proof([entry.out_roots[0], tc.tensor_root(changed)], running, first, 1), "not the revealed entry's outputs"),
        (self_input_proof(entry.out_roots, running, first + 8, 1), "not the rows read"),
        (self_input_proof(entry.out_roots, changed, first, 1), "run not proven"),
    ]
    prove = match.host.functions.prove_element
    for proof, reason in forged:
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, skeleton, [proof, *proofs[1:]], [], columns).call({"from": match.d})
    match.prove_element()
    assert match.ruling() == (True, False, False)


def test_the_dearest_loss_piece_costs_under_a_million_gas(chain, loss_contracts) -> None:  # noqa: F811
    """The dearest pieces (`personas.row_worst_case.largest_loss_piece_proof`: inputs prefixes of the largest
    sources a kit holds under the deepest record path, the running value and nll read from the entry's own
    outputs as large as their shapes): the mean's last piece over 2**30 rows (256 nll rows from a running
    sum, then / R) and a running sum; dW's pieces at the three widths whose pieces load the most
    (`embedding_piece_sweep`), a running value and a final element each: decided, under 1,000,000 gas."""
    from personas.row_worst_case import embedding_piece_sweep, largest_loss_piece_proof

    host = loss_contracts["host"]
    measured = [("cross_entropy", o, 1, largest_loss_piece_proof(chain, host, "cross_entropy", o, game_id=80 + o)) for o in (0, 2)]
    for width, length, load in embedding_piece_sweep()[:3]:
        assert load <= fold_rules.MAX_PIECE_LOAD
        for o in (0, 1):
            measured.append(("embedding_backward", o, width,
                             largest_loss_piece_proof(chain, host, "embedding_backward", o, width, game_id=90 + 2 * width + o)))  # fmt: skip
    for kernel, output, width, gas in measured:
        print(f"{kernel} output {output} width {width}: {gas:,} gas")
    assert max(gas for *_, gas in measured) <= PROVE_ELEMENT_TARGET, measured


KINDS = (record.STATE, record.BATCH, record.OUTPUT, record.CONSTANT)


@st.composite
def _pieced_entries(draw: Any) -> record.Entry:
    """A cross_entropy or embedding_backward entry over drawn shapes, mostly long enough for pieces, with
    its running values output shaped as the recorder makes it, or one off (missing, one too many, an int64
    one), the inputs mostly earlier outputs."""
    kernel = draw(st.sampled_from(PIECED))

    def ref(shape: tuple[int, ...], dtype: int) -> record.Ref:
        kind = draw(st.sampled_from(KINDS)) if draw(st.integers(0, 5)) == 0 else record.OUTPUT
        root = keccak(repr(shape).encode()) if kind == record.CONSTANT else tc.ZERO
        return record.Ref(kind, draw(st.integers(0, 50)), draw(st.integers(0, 3)), dtype, shape, root)

    if kernel == "embedding_backward":
        positions = draw(st.sampled_from([100, 164, 165, 256, 257, 300, 512, 1_000, 4_096, 70_001]))
        width = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 32, 33, 64, 300]))
        refs = (ref((positions,), 2), ref((positions, width), 1))
        args: tuple[Any, ...] = (("input", 0), ("input", 1), 8)
        outs: tuple[tuple[int, tuple[int, ...]], ...] = ((1, (8, width)),)
    else:
        rows = draw(st.sampled_from([200, 256, 257, 512, 513, 1_000, 70_001]))
        width = draw(st.sampled_from([2, 29, 32]))
        refs = (ref((rows, width), 1), ref((rows,), 2))
        args, outs = (("input", 0), ("input", 1)), ((1, ()), (1, (rows,)))
    entry = record.Entry(7, kernel, args, refs, outs, (tc.ZERO,) * len(outs))
    piecing = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
    count = (piecing.pieces - 1) * piecing.size if piecing is not None else 3
    running = draw(st.sampled_from([[(1, (count,))]] * 4 + [[], [(1, (count + 1,))], [(2, (count,))], [(1, (count,)), (1, (1,))]]))
    outs = (*outs, *running)
    return dataclasses.replace(entry, out_shapes=outs, out_roots=(tc.ZERO,) * len(outs))


@settings(max_examples=examples(25), deadline=None)
@given(_pieced_entries(), st.data())
def test_the_pieces_and_their_mirror_agree_on_any_entry(loss_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn long loss skeletons: RowRules' `output_of` says checkable exactly when `row_checkable` does
    (so the contract's piecing and shapes are the mirror's), and for a drawn element of each checkable
    output its reads (input, first, count, stride: the running value before the piece, the terms of the
    piece) are `row_strided_reads`'."""
    rules = loss_contracts["row_rules"].functions
    for parsed, output, element, reads in drawn_plans(rules, entry, row_checkable, data):
        assert [(r[0], r[7], r[8], r[9]) for r in reads] == row_strided_reads(parsed, output, element)
