"""FoldRules' folds in pieces (contracts/lib/fold_rules.vy `_piecings`, docs/referee.md "Long reductions"),
on anvil: a folded output whose element is over 256 terms or whose column proofs overflow MAX_COLUMN_LOAD
is checked piece by piece from the entry's own running values (its last output, a REF_SELF read):

- FoldRules plans every piece as the Python mirror (`fold_rules.fold_reads`) and the referee model
  (`referee_calls.encode`) say, on every pieced output of a GPT step and of an MLP step over 300 rows;
- games rule against exactly the wrong party at a middle piece's running value and at a pieced output's
  final element, and a running value made wrong with every later piece consistent with it is caught at
  the first wrong piece (the honest challenger disputes the running values first);
- a running value proven from another entry's outputs or at another index is refused.
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
from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt
from protocol import fold_rules
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.referee_kit import FOLD_RULES, SELF, SELF_READ, parse_skeleton, rules_of, self_input_proof

from ..engine.helpers import examples
from .test_fold_rules import chain, fold_contracts  # noqa: F401 (fixtures)
from .test_referee_game import ARITY, LEVELS, checkable_output, gpt_step, recorded_step  # noqa: F401


@pytest.fixture(scope="module")
def mlp_step() -> dict[str, Any]:
    """The states and step record of an MLP over batches of 300 rows (its head's dW and db fold 300 rows:
    nineteen pieces of 16 and ten of 32)."""
    from ..portable.test_step_record import mlp

    return recorded_step(mlp(batch_size=300), 2)


def _pieced(rec: record.StepRecord) -> list[tuple[record.Entry, tuple[fold_rules.Piecing, ...]]]:
    """The entries FoldRules decides with some output in pieces."""
    found = []
    for entry in rec.entries:
        if entry.kernel in fold_rules.FOLD_KERNELS:
            parsed = parse_skeleton(entry.skeleton_bytes())
            pieced = fold_rules.piecings(parsed)
            if pieced and fold_rules.fold_checkable(parsed, fold_rules.BASE_OUTPUTS[entry.kernel]):
                found.append((entry, pieced))
    return found


def _laid_out(rec: record.StepRecord, entry: record.Entry, reads: list, zipped: bool) -> tuple[int, ...]:
    """The values prove_element hands the rule: a running value's read (kind SELF) from the entry's own
    output, then the columns from its inputs, the two columns zipped when the plan says so."""
    runs = []
    for k, kind, _, b, *_, first, count, stride in reads:
        source = entry.outputs[b] if kind == SELF else rec.input_value(entry, k)
        runs.append(source.reshape(-1)[first : first + count * stride : stride].view(np.uint32).tolist())
    lead = 1 if reads and reads[0][1] == SELF else 0
    head = runs[:lead]
    body = runs[lead:]
    zip_part = [v for pair in zip(body[0], body[1], strict=True) for v in pair] if zipped else []
    rest = body[2 if zipped else 0 :]
    return tuple(v for run in [*head, zip_part, *rest] for v in run)


@pytest.mark.parametrize("which", ["gpt", "mlp"])
def test_every_piece_is_planned_as_the_mirror_and_the_model_say(fold_contracts, gpt_step, mlp_step, which: str) -> None:  # noqa: F811
    """On every pieced entry of the GPT step (five dW and three layer norms' dw: 64 rows, pieces of 32) and of the
    300-row MLP step
    (both layers' dW and db: the first reads x, an output of the batch's gather): FoldRules calls the folded outputs and the running values checkable, as the
    mirror does, and for the first and last element of every piece (running values and final elements)
    its reads are `fold_reads`' (the running value's a REF_SELF read of the entry's last output, at the
    element's previous piece), and its rule, parameters and values `referee_calls.encode`'s."""
    from protocol import referee_calls

    folds = fold_contracts["folds"].functions
    rec = gpt_step["rec"] if which == "gpt" else mlp_step["rec"]
    pieced_entries = _pieced(rec)
    assert len(pieced_entries) == (8 if which == "gpt" else 2)
    planned = 0
    for entry, pieced in pieced_entries:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        base = fold_rules.BASE_OUTPUTS[entry.kernel]
        for output in range(len(entry.out_shapes)):
            assert checkable_output(folds, entry, output) == fold_rules.fold_checkable(parsed, output)
        call = record.referee_call(entry)
        for piecing in pieced:
            for e in (0, piecing.size - 1):
                targets = [(base, piecing.offset + c * piecing.size + e) for c in range(piecing.pieces - 1)]
                for output, element in [*targets, (piecing.output, e)]:
                    rule, params, reads, zipped = folds.plan(skeleton, output, element, []).call()
                    assert [(r[0], r[7], r[8], r[9]) for r in reads] == fold_rules.fold_reads(parsed, output, element)
                    piece = (element - piecing.offset) // piecing.size if output == base else piecing.pieces - 1
                    if piece:
                        k, kind, a, b, dtype, ndim, dims, first, count, stride = reads[0]
                        assert (k, kind, a, b, dtype, ndim, dims[0]) == (SELF_READ + base, SELF, 0, base, 1, 1, entry.outputs[base].size)
                        assert (first, count) == (piecing.offset + (piece - 1) * piecing.size + e, 1)
                    assert all(r[8] <= piecing.length for r in reads)
                    expected = referee_calls.encode(call, output, element, record.proven_values(rec, entry, output, element))
                    assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.index, output, element)
                    assert _laid_out(rec, entry, reads, zipped) == expected.values, (entry.index, output, element)
                    planned += 1
    assert planned >= 16


def step_match(chain, contracts, step, output: int, element: int, wrong: bool, defender_rec=None, target=None) -> Match:  # noqa: F811
    """A game over `step`'s record at entry `target` (the first fold in pieces by default), output `output`,
    element `element`: an honest defender, or (`wrong`) one whose record is corrupted there (or is
    `defender_rec`) and whose later states are made up, against the honest challenger."""
    rec = step["rec"]
    target = _pieced(rec)[0][0].index if target is None else target
    truth = Side(step["roots"], rec, step["next_leaves"])
    if not wrong:
        defender = truth
    else:
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
        bad = defender_rec if defender_rec is not None else corrupt(rec, target, element, output)
        defender = Side([step["roots"][0], *later], bad, step["next_leaves"])
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth,
                 honest_challenger=wrong, target=target, target_element=element, output=output)  # fmt: skip


def _middle_running_value(rec: record.StepRecord) -> tuple[record.Entry, fold_rules.Piecing, int]:
    entry, pieced = _pieced(rec)[0]
    piecing = next(p for p in pieced if p.pieces >= 4)
    return entry, piecing, piecing.offset + (piecing.pieces // 2) * piecing.size + piecing.size // 2


@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
@pytest.mark.parametrize("where", ["middle-piece", "final-element"])
def test_a_piece_is_ruled_on_chain(chain, fold_contracts, gpt_step, mlp_step, where: str, wrong: bool) -> None:  # noqa: F811
    """A running value in the middle of the MLP head's dW (piece 5 of 10, from the running value after
    piece 4) and the final element of a GPT dW (its last piece from the running value after the first):
    a one-bit-wrong element is caught by the honest challenger, a right one upheld against a lying one,
    decided on chain by FoldRules (not escalated)."""
    if where == "middle-piece":
        entry, piecing, element = _middle_running_value(mlp_step["rec"])
        step, output = mlp_step, fold_rules.BASE_OUTPUTS[entry.kernel]
    else:
        entry, pieced = _pieced(gpt_step["rec"])[0]
        step, output, element = gpt_step, pieced[0].output, pieced[0].size - 3
    match = step_match(chain, fold_contracts, step, output, element, wrong, target=entry.index)
    assert rules_of(parse_skeleton(entry.skeleton_bytes()), output) == FOLD_RULES
    match.play()
    game = match.game()
    assert (game["stage"], game["entry"], game["output"], game["rules"]) == (DECIDED, entry.index, output, FOLD_RULES)
    assert match.ruling() == (True, wrong, False)
    assert sum(match.gas.values()) <= 5_000_000  # issue 15: a whole game, every party's moves


def consistent_from(rec: record.StepRecord, j: int, piecing: fold_rules.Piecing, piece: int, e: int) -> record.StepRecord:
    """The record with the running value of element e after `piece` one bit wrong, and every later running
    value of e and the output element recomputed from it by the referee model (consistent with it)."""
    entry = rec.entries[j]
    call = record.referee_call(entry)
    base = fold_rules.BASE_OUTPUTS[entry.kernel]
    running, final = entry.outputs[base].copy(), entry.outputs[piecing.output].copy()
    running.view(np.uint32)[piecing.offset + piece * piecing.size + e] ^= 1 << 20
    inputs = {k: rec.input_value(entry, k).reshape(-1) for k in range(len(entry.inputs))}

    def value(output: int, element: int) -> int:
        keys = rm.dependencies(call, output, element)
        proven = {key: (running[rm.running_value_index(call, output, element, key[1])] if key[0] == "partial"
                        else inputs[key[0]][key[1]]) for key in keys}  # fmt: skip
        return rm.check_element(call, output, element, proven)

    for later in range(piece + 1, piecing.pieces - 1):
        index = piecing.offset + later * piecing.size + e
        running.view(np.uint32)[index] = value(base, index)
    final.reshape(-1).view(np.uint32)[e] = value(piecing.output, e)
    outputs, roots = list(entry.outputs), list(entry.out_roots)
    for o, array in ((base, running), (piecing.output, final)):
        outputs[o], roots[o] = array, tc.tensor_root(array)
    bad = dataclasses.replace(entry, outputs=tuple(outputs), out_roots=tuple(roots))
    return dataclasses.replace(rec, entries=[*rec.entries[:j], bad, *rec.entries[j + 1 :]])


def test_a_wrong_running_value_with_consistent_later_pieces_is_caught_at_the_first_wrong_piece(chain, fold_contracts,  # noqa: F811
                                                                                               mlp_step) -> None:  # fmt: skip
    """The defender's running value of one dW element after piece 1 is one bit wrong and its pieces 2, 3
    and the output element are recomputed from it (each consistent with the one before): the honest
    production player names the running values (not the output, whose element is consistent with them),
    the descent reaches the first wrong piece, and the check from the agreed running value before it rules
    the defender wrong."""
    from worker.referee_player import RefereePlayer

    rec = mlp_step["rec"]
    entry, pieced = _pieced(rec)[0]
    piecing = next(p for p in pieced if p.pieces >= 4)
    e = piecing.size // 3
    bad = consistent_from(rec, entry.index, piecing, 1, e)
    base = fold_rules.BASE_OUTPUTS[entry.kernel]
    wrong_running = bad.entries[entry.index].outputs[base].view(np.uint32)
    differs = np.flatnonzero(wrong_running != entry.outputs[base].view(np.uint32)).tolist()
    assert differs[0] == piecing.offset + piecing.size + e and len(differs) >= 2  # later pieces follow it
    first_wrong = differs[0]

    # the honest challenger's kit entry: its own output roots and the skeleton
    mine = SimpleNamespace(out_roots=entry.out_roots, parsed=parse_skeleton(entry.skeleton_bytes()))
    player = SimpleNamespace(kit=SimpleNamespace(entries={entry.index: mine}))
    chosen = RefereePlayer.choose_output(player, entry.index, list(bad.entries[entry.index].out_roots))  # type: ignore[arg-type]
    assert chosen == base  # not dW, whose element is consistent with the wrong running values
    match = step_match(chain, fold_contracts, mlp_step, base, first_wrong, True, defender_rec=bad, target=entry.index)
    match.play()
    game = match.game()
    assert (game["stage"], game["output"]) == (DECIDED, base)
    assert game["chunk_index"] * 8 + game["element"] == first_wrong
    assert match.ruling() == (True, True, False)


def test_a_running_value_from_another_entry_or_index_is_refused(chain, fold_contracts, gpt_step) -> None:  # noqa: F811
    """At PROOF for a GPT dW's final element (its last piece reads the running value after the first): the
    running values of another entry (their roots do not fill this entry's leaf), a run of this entry's
    running values that does not hold the planned element, and a run of its dW output instead are refused;
    the honest proof passes."""
    entries = _pieced(gpt_step["rec"])
    entry, pieced = entries[0]
    dw = next(p for p in pieced if p.output == 1)  # (dx and db may be in pieces too)
    # another dW's running values of the same size (a layer norm's dw has 16: its rows would be refused first)
    other = next(e for e, _ in entries[1:] if e.kernel == entry.kernel and e.outputs[3].size == entry.outputs[3].size
                 and e.out_roots[3] != entry.out_roots[3])  # fmt: skip
    match = step_match(chain, fold_contracts, gpt_step, 1, dw.size - 3, wrong=False, target=entry.index)
    match.play(PROOF, "defender")
    skeleton = entry.skeleton_bytes()
    prove = match.host.functions.prove_element
    proofs, columns = match.element_proof_args()
    k, first, count, _ = fold_rules.fold_reads(parse_skeleton(skeleton), 1, dw.size - 3)[0]
    assert k == SELF_READ + 3 and count == 1 and proofs[0][2] == []
    running = entry.outputs[3]
    forged = [
        (self_input_proof(other.out_roots, other.outputs[3], first % other.outputs[3].size, 1), "not the revealed entry's outputs"),
        (self_input_proof(entry.out_roots, running, (first + 256) % running.size, 1), "not the rows read"),
        (self_input_proof(entry.out_roots, running.reshape(-1)[::-1].copy(), first, 1), "run not proven"),
    ]
    for proof, reason in forged:
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, skeleton, [proof, *proofs[1:]], [], columns).call({"from": match.d})
    prove(match.game_id, skeleton, proofs, [], columns).call({"from": match.d})


def test_the_largest_piece_accepted_costs_under_a_million_gas(chain, fold_contracts) -> None:  # noqa: F811
    """The persona's dearest piece (`personas.fold_worst_case.largest_piece_proof`, the calibration sweep's top until
    FoldRules weighed a piece length once; since 944,034 against the sweep's 948,502): a linear_backward dx piece of
    8 terms, dy's row and W's column 4,095 apart, at the start whose column proofs are longest, both inputs
    prefixes of the largest sources a kit holds under the deepest record path, and the running value before it read
    from the entry's own running values), written into PROOF by storage and played with keccak words and every
    ADVERSE_FOLD_SCALES scaling: decided, under 1,000,000 gas (docs/gas.md)."""
    from personas.fold_worst_case import ADVERSE_FOLD_SCALES, largest_piece_proof

    from .test_fold_rules import PROVE_ELEMENT_TARGET

    found = {scales: largest_piece_proof(chain, fold_contracts["host"], 78 + n, scales)
             for n, scales in enumerate((None, *ADVERSE_FOLD_SCALES))}  # fmt: skip
    print("largest piece", found)
    assert {words for _, words in found.values()} == {134}, found  # the start `dearest_start` found
    assert max(gas for gas, _ in found.values()) <= PROVE_ELEMENT_TARGET, found


def test_every_swept_piece_costs_under_a_million_gas(chain, fold_contracts) -> None:  # noqa: F811
    """`piece_sweep` over PIECE_SHAPES (GPT-like and wide dW, dx and db, norm columns, matmuls, and the geometries
    whose pieces cost over 1,000,000 gas under the old load cap), each at the start whose column proofs are
    longest, with ADVERSE_FOLD_SCALES[1] (the dearest scaling): every one decided under 1,000,000 gas."""
    from personas.fold_worst_case import piece_sweep

    from .test_fold_rules import PROVE_ELEMENT_TARGET

    found = piece_sweep(chain, fold_contracts["host"])
    print("piece sweep", found[:3])
    assert len(found) >= 40 and found[0][0] <= PROVE_ELEMENT_TARGET, found[:3]


def test_a_dx_piece_beside_short_weight_gradient_pieces_costs_under_a_million_gas(chain, fold_contracts) -> None:  # noqa: F811
    """The calibration sweep's dearest pieces (`calibration_geometries` at rank 8): linear_backward dx over x and dy
    of 31 or 32 rows of about 513, whose dW of 31 or 32 terms is in pieces of 4 beside it. FoldRules weighed that dW
    again at every candidate length of 32 or more (one and the same piece), 1,016,329 gas; now it is weighed once:
    every pieced case decided, under 1,000,000 gas (ADVERSE_FOLD_SCALES[1]; measured 917,581)."""
    from personas.fold_worst_case import calibration_geometries, piece_sweep

    from .test_fold_rules import PROVE_ELEMENT_TARGET

    cases = [case for case in calibration_geometries() if case[1][0][-2:] in ((31, 513), (32, 511)) and case[3] == 0]
    found = piece_sweep(chain, fold_contracts["host"], cases=cases, first_game_id=600)
    print("short dW beside", found[:3])
    assert any(shapes[1] == (255, 513) for _, _, _, shapes, _ in found), found  # the 1,016,329-gas case, pieced
    assert found[0][0] <= PROVE_ELEMENT_TARGET, found[:3]


@pytest.fixture(scope="module")
def fold_harness(w3: Any) -> Any:
    from .vyper_harness import deploy

    return deploy(w3, "contracts/test/FoldRulesHarness.vy")


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 2**40), st.integers(1, 2**34), st.integers(1, 256))
def test_the_column_bound_is_the_mirror_s(fold_harness, chunks: int, stride: int, count: int) -> None:
    """`fold_rules._column_words` (its levels of distinct nodes and its top levels in closed form) is
    `protocol.fold_rules.column_words` (the level-by-level definition) for any tensor, stride and count."""
    assert fold_harness.functions.column_words(chunks, stride, count).call() == fold_rules.column_words(chunks, stride, count)


@settings(max_examples=examples(20), deadline=None)
@given(st.sampled_from(["matmul", "linear_backward", "sum_rows", "layer_norm_backward"]), st.integers(1, 5000),
       st.integers(1, 3000), st.integers(1, 70))  # fmt: skip
def test_the_piecings_are_the_mirror_s(fold_harness, fold_contracts, kernel: str, terms: int, width: int, other: int) -> None:  # noqa: F811
    """For drawn shapes of each fold kernel (folds of 1 to 5,000 terms down columns 1 to 3,000 apart),
    FoldRules' piecings (piece lengths, pieces, where each output's running values lie) are the mirror's,
    and so is which outputs it decides: of the entry as the recorder writes it, of the entry without its
    running values, and with running values one element short."""
    if kernel == "matmul":
        shapes, outs = ((other, terms), (terms, width)), ((other, width),)
    elif kernel == "linear_backward":
        shapes, outs = ((terms, width), (other, width), (terms, other)), ((terms, width), (other, width), (other,))
    elif kernel == "sum_rows":
        shapes, outs = ((terms, width),), ((width,),)
    else:
        shapes, outs = ((terms, width), (terms,), (width,), (terms, width)), ((terms, width), (width,), (width,))
    refs = tuple(record.Ref(record.OUTPUT, 3, 0, 1, s) for s in shapes)
    entry = record.Entry(9, kernel, tuple(("input", k) for k in range(len(shapes))), refs, tuple((1, s) for s in outs),
                         (tc.ZERO,) * len(outs))  # fmt: skip
    pieced = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
    expected = [tuple(dataclasses.astuple(p)) for p in pieced]
    assert [tuple(p) for p in fold_harness.functions.piecings(entry.skeleton_bytes()).call()] == expected
    variants = [entry]
    if pieced:
        total = pieced[-1].offset + (pieced[-1].pieces - 1) * pieced[-1].size
        for size in (total, total - 1):
            outs = (*entry.out_shapes, (1, (size,)))
            variants.append(dataclasses.replace(entry, out_shapes=outs, out_roots=(tc.ZERO,) * len(outs)))
    folds = fold_contracts["folds"].functions
    for variant in variants:
        parsed = parse_skeleton(variant.skeleton_bytes())
        for output in range(len(variant.out_shapes)):
            assert folds.output_of(variant.skeleton_bytes(), output).call()[1] == fold_rules.fold_checkable(parsed, output)
