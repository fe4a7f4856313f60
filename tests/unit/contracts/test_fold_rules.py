"""FoldRules.vy (contracts/lib/fold_rules.vy), RefereeGame's second rules contract, and the column proofs
prove_element takes for its reads, on anvil over the recorded tiny-GPT (of two sequences a step, and of one:
every fold in one piece) and MLP steps of tests/unit/portable/test_step_record.py:

- FoldRules says an output is checkable exactly when `protocol.fold_rules.fold_checkable` does, and its
  plans (reads with their strides, rule, parameters, the values in the order prove_element hands them
  to the rule) are the mirror's and `referee_calls.encode`'s from the referee model;
- a game pinned at a matmul, a linear_backward (dx, dW, db), the sum_rows and a layer_norm_backward (dw,
  db) entry rules against exactly the wrong party, the element decided on chain (no escalation);
- forged column proofs (a wrong chunk, a missing or an extra word, another column, a run where a column
  proof is due) are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt, deploy_referee_stack
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import FOLD_RULES, parse_skeleton, rules_of

from ..engine.helpers import examples
from ..portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)
from .helpers import reverted
from .test_referee_game import (  # noqa: F401
    ARITY, LEVELS, MOVE, _deploy, assert_plan_is_the_model_s, checkable_output, gpt_step, one_entry_of_each_kind, recorded_step,
)

FOLD_DECIDED = {"gpt": {("matmul", 0), ("linear_backward", 0), ("linear_backward", 1), ("linear_backward", 2),
                        ("linear_backward", 3), ("sum_rows", 0), ("layer_norm_backward", 1), ("layer_norm_backward", 2),
                        ("layer_norm_backward", 3)},
                "short_gpt": {("matmul", 0), ("linear_backward", 0), ("linear_backward", 1), ("linear_backward", 2),
                              ("sum_rows", 0), ("layer_norm_backward", 1), ("layer_norm_backward", 2)},
                "mlp": {("linear_backward", 0), ("linear_backward", 1), ("linear_backward", 2)}}  # fmt: skip


@pytest.fixture(scope="module")
def fold_contracts(w3: Any) -> dict[str, Any]:
    """The game with HostRules and FoldRules in its first two RULES slots."""
    made = deploy_referee_stack(w3, _deploy, ("HostRules", "FoldRules", None), ARITY, LEVELS, MOVE)
    return {**made, "folds": made["fold_rules"]}


@pytest.fixture
def chain(w3: Any, fold_contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def short_gpt_step() -> dict[str, Any]:
    """`gpt_step`'s model over one sequence a step: its dW and layer norms' dw fold 32 rows and are one piece each
    (over two sequences, 64 rows 16 to 48 elements apart weigh more than MAX_WHOLE_WEIGHT: in pieces)."""
    from ..portable.test_step_record import gpt

    return recorded_step(gpt(batch_size=1))


def _assert_fold_plans_match(folds: Any, rec: record.StepRecord, entry: record.Entry, output: int) -> None:
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    size = entry.outputs[output].size
    for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
        plan = folds.plan(skeleton, output, element, []).call()
        assert [(r[0], r[7], r[8], r[9]) for r in plan[2]] == fold_rules.fold_reads(parsed, output, element)
        if plan[2][0][0] >= fold_rules.SELF_READ:  # a piece from a running value: test_fold_pieces.py
            continue
        assert_plan_is_the_model_s(rec, entry, parsed, output, element, plan)


@pytest.mark.parametrize("which", ["mlp", "gpt", "short_gpt"])
def test_the_fold_rules_mirror_the_python_and_the_referee_model(fold_contracts, mlp_steps, gpt_step,  # noqa: F811
                                                                 short_gpt_step, which: str) -> None:
    """On every entry of a recorded MLP and tiny-GPT step: FoldRules says an output is checkable exactly
    when `fold_rules.fold_checkable` does; for the first, second, middle and last element of each
    checkable output (one entry of each kernel, arguments and input shapes) its reads are the mirror's
    and its rule, parameters and values are `referee_calls.encode`'s. In the GPT steps every matmul,
    linear_backward dx, dW and db, sum_rows and layer_norm_backward dw and db is decided: over two sequences
    every dW and dw in pieces, and the db beside them (the running values, the last output, decided too), over
    one every fold whole.
    The MLP's first linear_backward reads x from the dataset gather's output: all three outputs checkable."""
    folds = fold_contracts["folds"].functions
    rec = {"mlp": lambda: mlp_steps[2][0], "gpt": lambda: gpt_step["rec"], "short_gpt": lambda: short_gpt_step["rec"]}[which]()
    decided = set()
    for entry in one_entry_of_each_kind(rec):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(folds, entry, output)
            assert checkable == fold_rules.fold_checkable(parsed, output), (entry.index, entry.kernel, output)
            if checkable:
                decided.add((entry.kernel, output))
                _assert_fold_plans_match(folds, rec, entry, output)
    assert decided == FOLD_DECIDED[which]
    if which != "mlp":  # every dW checkable: over two sequences in pieces (the 16 × 16 projection's, load 404, weighs
        # 1,340 > MAX_WHOLE_WEIGHT; the others' loads are over MAX_COLUMN_LOAD), with the running values an output more
        dws = [(e.inputs[1].shape, fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), 1), len(e.out_shapes))
               for e in rec.entries if e.kernel == "linear_backward"]  # fmt: skip
        outputs = 4 if which == "gpt" else 3
        assert set(dws) == {((16, 16), True, outputs), ((16, 32), True, outputs), ((32, 16), True, outputs), ((48, 16), True, outputs)}
        every = {("matmul", 0), ("linear_backward", 0), ("linear_backward", 2), ("sum_rows", 0), ("layer_norm_backward", 1),
                 ("layer_norm_backward", 2)}  # fmt: skip
        assert all(fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), o)
                   for e in rec.entries for k, o in every if e.kernel == k)  # fmt: skip
    if which == "mlp":  # the first linear's backward reads x from the batch: the dataset gather's output
        batch_read = next(e for e in rec.entries if e.kernel == "linear_backward" and e.inputs[0].kind == record.OUTPUT
                          and rec.entries[e.inputs[0].a].kernel == "gather")  # fmt: skip
        assert all(folds.output_of(batch_read.skeleton_bytes(), o).call()[1] for o in range(3))
    matmul = next(e for e in rec.entries if e.kernel in ("matmul", "linear_backward"))
    with pytest.raises(Exception, match="fold_rules: not a checkable element"):
        folds.plan(matmul.skeleton_bytes(), 0, matmul.outputs[0].size, []).call()


def test_the_column_bound_holds_for_every_first_element() -> None:
    """`column_words` (the contract's bound, from the shapes alone) is at least the words of the column
    proof of every read of that stride and count, wherever it starts, and over-counts by at most two words
    a tree level (here)."""
    rng = np.random.default_rng(5)
    for size, stride, count in ((4096, 32, 32), (3072, 48, 64), (1024, 16, 64), (1024, 1, 32), (1000, 7, 100), (40, 3, 9)):
        array = rng.standard_normal(size).astype(np.float32)
        bound = fold_rules.column_words(tc.chunk_count(1, (size,)), stride, count)
        words = [len(fold_rules.column_proof(array, first, count, stride))
                 for first in range(0, size - (count - 1) * stride, max(1, (size - (count - 1) * stride) // 40))]  # fmt: skip
        depth = tc.depth_of(tc.chunk_count(1, (size,)))
        assert max(words) <= bound <= max(words) + 2 * depth, (size, stride, count, bound, max(words))


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 600), st.integers(1, 70), st.integers(1, 40), st.data())
def test_the_column_bound_holds_for_any_read(size: int, stride: int, count: int, data) -> None:
    """Property: for any tensor size, stride, count and first element, the column proof's words are at most
    the bound."""
    if (count - 1) * stride >= size:
        count = (size - 1) // stride + 1
    first = data.draw(st.integers(0, size - 1 - (count - 1) * stride))
    array = np.arange(size, dtype=np.float32)
    assert len(fold_rules.column_proof(array, first, count, stride)) <= fold_rules.column_words(tc.chunk_count(1, (size,)), stride, count)


def _gpt_match(chain: Any, contracts: dict[str, Any], gpt_step: dict[str, Any], kernel: str, output: int, wrong: bool,  # noqa: F811
               at: int = -3) -> Match:  # fmt: skip
    rec = gpt_step["rec"]
    # the first entry of the kernel whose outputs FoldRules decides in one piece (a folded output in pieces is
    # test_fold_pieces.py's)
    target = next(e.index for e in rec.entries if e.kernel == kernel and not fold_rules.piecings(parse_skeleton(e.skeleton_bytes()))
                  and fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), output))  # fmt: skip
    element = at % rec.entries[target].outputs[output].size
    truth = Side(gpt_step["roots"], rec, gpt_step["next_leaves"])
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(gpt_step["roots"]))]
    defender = Side([gpt_step["roots"][0], *later], corrupt(rec, target, element, output), gpt_step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, gpt_step["before"], gpt_step["binding"], defender, truth,
                 honest_challenger=wrong, target=target, target_element=element, output=output)  # fmt: skip


GAMES = [("matmul", 0, False), ("matmul", 0, True), ("linear_backward", 0, False), ("linear_backward", 1, True),
         ("linear_backward", 2, True), ("sum_rows", 0, False), ("layer_norm_backward", 1, True),
         ("layer_norm_backward", 2, False)]  # fmt: skip


@pytest.mark.parametrize(("kernel", "output", "wrong"), GAMES, ids=[f"{k}-{o}-{'wrong' if w else 'honest'}" for k, o, w in GAMES])
def test_a_fold_entry_is_ruled_on_chain(chain, fold_contracts, short_gpt_step, kernel: str, output: int, wrong: bool) -> None:  # noqa: F811
    """The first entry of each fold kernel of the one-sequence GPT step, the output named: a one-bit-wrong element
    is caught by the honest challenger, and a right one upheld against a lying challenger, decided on chain
    by FoldRules' plan and the column proofs (not escalated)."""
    match = _gpt_match(chain, fold_contracts, short_gpt_step, kernel, output, wrong)
    assert rules_of(parse_skeleton(match.defender.rec.entries[match.target].skeleton_bytes()), output) == FOLD_RULES
    match.play()
    game = match.game()
    assert game["stage"] == DECIDED and game["entry"] == match.target and game["rules"] == FOLD_RULES
    assert match.ruling() == (True, wrong, False)


def test_forged_column_proofs_are_refused(chain, fold_contracts, short_gpt_step) -> None:  # noqa: F811
    """At PROOF for a linear_backward dW element (a column of dy zipped with a column of x): a flipped
    chunk, a missing word, an extra word, another column's proof, the proof of a column at another stride,
    a run proof where the plan reads a column, and a column proof with a run offset are refused; the
    honest proof passes."""
    match = _gpt_match(chain, fold_contracts, short_gpt_step, "linear_backward", 1, wrong=False)
    match.play(PROOF, "defender")
    entry = match.defender.rec.entries[match.target]
    skeleton = entry.skeleton_bytes()
    prove = match.host.functions.prove_element
    proofs, columns = match.element_proof_args()
    assert all(not p[5] for p in proofs) and len(columns) > 0
    parsed = parse_skeleton(skeleton)
    element = match.target_element
    (_, dy_first, rows, n_width), (_, x_first, _, k_width) = fold_rules.fold_reads(parsed, 1, element)
    dy, x = (match.defender.rec.input_value(entry, k).reshape(-1) for k in (2, 0))
    other = fold_rules.column_proof(dy, (dy_first + 1) % n_width, rows, n_width) + fold_rules.column_proof(x, x_first, rows, k_width)
    # the column of dy at twice the plan's stride (half its rows), then x's: words for a read the plan does not ask
    strided = fold_rules.column_proof(dy, dy_first, rows // 2, 2 * n_width) + fold_rules.column_proof(x, x_first, rows, k_width)
    flipped = list(columns)
    flipped[0] = bytes([flipped[0][0] ^ 0x40]) + flipped[0][1:]
    for words, reason in ((flipped, "column not proven"), (other, "column not proven"), (strided, "column not proven"),
                          ([*columns, tc.ZERO], "column words left over")):  # fmt: skip
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, skeleton, proofs, [], words).call({"from": match.d})
    with pytest.raises(Exception):  # a word short: the last read runs out of words
        prove(match.game_id, skeleton, proofs, [], columns[:-1]).call({"from": match.d})
    run = match.input_proof(match.target, entry.inputs[2], dy_first, 1)  # a run: the plan's stride is refused there
    with pytest.raises(Exception, match="strided reads not built"):
        prove(match.game_id, skeleton, [run, proofs[1]], [], columns[len(fold_rules.column_proof(dy, dy_first, rows, n_width)) :]).call({"from": match.d})
    with pytest.raises(Exception, match="a column proof has no run"):
        prove(match.game_id, skeleton, [(*proofs[0][:4], 1, [], []), proofs[1]], [], columns).call({"from": match.d})
    prove(match.game_id, skeleton, proofs, [], columns).call({"from": match.d})


# ------------------------------------------------------------------ the largest element accepted: its gas

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the referee's final step for the largest element it accepts


@pytest.mark.parametrize("kernel", ["matmul", "layer_norm_backward"])
def test_the_largest_fold_element_accepted_costs_under_a_million_gas(chain, fold_contracts, kernel: str) -> None:
    """The dearest prove_element FoldRules lets an honest defender make (`personas.fold_worst_case`: a fold
    of 123 terms over two contiguous columns, the largest weight accepted, both inputs under the deepest
    record path, each a prefix of a source as large as a kit holds), written into PROOF by storage and
    played with keccak words, ordinary values and adversarial ones (`ADVERSE_FOLD_SCALES`: subnormal times
    large values, subnormal products): decided, under 1,000,000 gas (docs/gas.md)."""
    from personas.fold_worst_case import ADVERSE_FOLD_SCALES, largest_fold_proof

    measured = [largest_fold_proof(chain, fold_contracts["host"], kernel, game_id=77 + n, scales=scales)
                for n, scales in enumerate((None, *ADVERSE_FOLD_SCALES))]  # fmt: skip
    assert {words for _, words in measured} == {80}, measured
    assert max(gas for gas, _ in measured) <= PROVE_ELEMENT_TARGET, (kernel, measured)


def test_a_fold_over_the_whole_weight_is_cut_in_pieces(fold_contracts) -> None:
    """MAX_WHOLE_WEIGHT: a matmul [1, T] x [T, 1] (two contiguous columns, the mix that costs most) is one piece
    at T = 123 (load 292, weight 3 · 292 + 246 = 1,122) and in pieces at T = 124, whose load (294) is within
    MAX_COLUMN_LOAD but whose weight (1,130) is not, in Vyper and in the mirror: as one piece the dearest such element costs over 1,000,000 gas
    with adversarial values (docs/referee.md "Adversarial values"; test_fold_weight_attack.py)."""
    folds = fold_contracts["folds"].functions
    for terms, one_piece in ((123, True), (124, False)):
        shapes = ((1, terms), (terms, 1))
        refs = tuple(record.Ref(record.OUTPUT, 4 + k, 0, 1, shape) for k, shape in enumerate(shapes))
        entry = record.Entry(3, "matmul", (("input", 0), ("input", 1)), refs, ((1, (1, 1)),), (tc.ZERO,))
        parsed = parse_skeleton(entry.skeleton_bytes())
        reads = fold_rules._plan_reads(parsed, 0, 0)[0]  # the whole fold's reads
        assert fold_rules.column_load(parsed, reads) <= fold_rules.MAX_COLUMN_LOAD, terms
        assert (fold_rules.whole_weight(parsed, reads) <= fold_rules.MAX_WHOLE_WEIGHT) is one_piece, terms
        assert (not fold_rules.piecings(parsed)) is one_piece, terms
        # without the running values the recorder adds to a fold in pieces, the entry is checkable only whole
        assert checkable_output(folds, entry, 0) is one_piece is fold_rules.fold_checkable(parsed, 0), terms


def test_the_player_proves_a_fold_element_from_its_kit(chain, fold_contracts, gpt_step, tmp_path) -> None:  # noqa: F811
    """worker.referee_player as honest defender, from the dispute kit of the GPT step (its column proofs
    from `DisputeKit.element_proof_args`), beats a challenger that steers to a dW element of the first
    linear_backward FoldRules decides (in pieces: its last piece from the running value the kit proves
    from the entry's own outputs); the game is decided on chain, not escalated."""
    from personas.referee_game import side_kit, steered_challenger
    from tests.unit.disputes.test_referee_player import Party, _drive, _open
    from worker.referee_player import RefereePlayer

    rec = gpt_step["rec"]
    target = next(e.index for e in rec.entries
                  if e.kernel == "linear_backward" and fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), 1))
    element = rec.entries[target].outputs[1].size - 3
    kit = side_kit(Side(gpt_step["roots"], rec, gpt_step["next_leaves"]), gpt_step["before"], gpt_step["binding"])
    defender = Party(chain, RefereePlayer(chain, fold_contracts, "defender", kit), tmp_path / "d.db")
    challenger = Party(chain, steered_challenger(chain, fold_contracts, kit, target, element, output=1), tmp_path / "c.db")
    game_id = _open(chain, fold_contracts, gpt_step, kit.state_roots)
    assert _drive([defender, challenger], game_id) == []
    game = defender.player.game(game_id)
    assert (game["entry"], game["output"], game["rules"], game["chunk_index"] * 8 + game["element"]) == (target, 1, FOLD_RULES, element)
    assert defender.player.ruling(game_id) == (True, False, False)


@pytest.mark.parametrize("kernel", ["matmul", "rms_norm_backward"])
def test_shapes_the_recorded_steps_lack_are_planned_as_the_model_says(fold_contracts, kernel: str) -> None:
    """A batched matmul whose a has a batch axis of one (broadcast over b's three) and whose b has one more
    axis, and rms_norm_backward's dw (the llama-style norm, not in the GPT step): FoldRules' reads are the
    mirror's and its rule, parameters and values `referee_calls.encode`'s (every 13th element, the second,
    middle and last); a matmul whose batch axes do not broadcast is not checkable."""
    from protocol import referee_calls
    from protocol import referee_model as rm

    rng = np.random.default_rng(11)
    if kernel == "matmul":
        shapes, outputs, output = ((2, 4, 8), (3, 2, 8, 5)), ((1, (3, 2, 4, 5)),), 0
    else:  # x̂, rstd, w, dy -> dx, dw
        shapes, outputs, output = ((3, 5, 6), (15,), (6,), (3, 5, 6)), ((1, (3, 5, 6)), (1, (6,))), 1
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    refs = tuple(record.Ref(record.OUTPUT, k, 0, 1, s) for k, s in enumerate(shapes))
    entry = record.Entry(9, kernel, tuple(("input", k) for k in range(len(shapes))), refs, outputs, (tc.ZERO,) * len(outputs))
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    folds = fold_contracts["folds"].functions
    assert folds.output_of(skeleton, output).call()[1] and fold_rules.fold_checkable(parsed, output)
    flat = [v.reshape(-1) for v in values]
    call = record.referee_call(entry)
    size = int(np.prod(outputs[output][1]))
    for element in sorted({1, size // 2, size - 1, *range(0, size, 13)}):
        rule, params, reads, zipped = folds.plan(skeleton, output, element, []).call()
        assert [(r[0], r[7], r[8], r[9]) for r in reads] == fold_rules.fold_reads(parsed, output, element)
        runs = [flat[k][first : first + count * stride : stride].view(np.uint32).tolist() for k, *_, first, count, stride in reads]
        laid = [v for pair in zip(runs[0], runs[1], strict=True) for v in pair] if zipped else runs[0]
        proven = {key: flat[key[0]][key[1]] for key in rm.dependencies(call, output, element)}
        expected = referee_calls.encode(call, output, element, proven)
        assert (rule, tuple(params), tuple(laid)) == (expected.rule, expected.params, expected.values), element
    if kernel == "matmul":  # batch axes 2 and 3: no broadcast
        bad = record.Entry(9, kernel, entry.args, (refs[0], record.Ref(record.OUTPUT, 1, 0, 1, (3, 3, 8, 5))), ((1, (3, 3, 4, 5)),), (tc.ZERO,))
        assert not folds.output_of(bad.skeleton_bytes(), 0).call()[1] and not fold_rules.fold_checkable(parse_skeleton(bad.skeleton_bytes()), 0)
