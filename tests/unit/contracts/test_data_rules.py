"""DataRules.vy (contracts/lib/data_rules.vy), the fourth of RefereeGame's rules contracts: `batch_index`
(the step's example ids from the `orders` constant at the agreed header's cursor) and `gather` (the
dataset's rows by those ids, int64 tokens or binary32 features, and the embedding's rows by the
tokens). Their reads depend on values, so the defender hints them (the cursor, the id) and the rule
reverts unless each hint is its proven value. Against the Python mirror (`protocol.data_rules`) and
the referee model (`referee_calls.encode`) on the recorded MLP and GPT steps; then games on anvil."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import PROOF, Match, Side, corrupt, deploy_referee_stack
from protocol import data_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, parse_skeleton, rules_of
from worker.referee_player import RefereePlayer

from ..engine.helpers import examples
from .helpers import reverted
from .test_referee_game import ARITY, LEVELS, MOVE, WHOLE_GAME_TARGET, _deploy, checkable_output, one_entry_of_each_kind

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the element's proof and recomputation
RULES = ("HostRules", "FoldRules", "RowRules", "DataRules")


@pytest.fixture(scope="module")
def data_contracts(w3: Any) -> dict[str, Any]:
    """The referee stack with RefereeGame's rules contracts [HostRules, FoldRules, RowRules, DataRules]."""
    made = deploy_referee_stack(w3, _deploy, RULES, ARITY, LEVELS, MOVE)
    return {**made, "host_rules": made["rules"], "rules": made["data_rules"]}


@pytest.fixture
def chain(w3: Any, data_contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


def _segment(spec: Any, steps: int) -> dict[str, Any]:
    from engine.api import record_first_steps

    states, records, bindings = record_first_steps(spec, None, steps)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1])}  # fmt: skip


@pytest.fixture(scope="module")
def gpt_step() -> dict[str, Any]:
    """A one-step segment of a one-block GPT (test_step_record's `gpt`, dropout 0.1): int64 tokens."""
    from ..engine.helpers import with_fields
    from ..portable.test_step_record import gpt

    return _segment(with_fields(gpt(dropout=0.1), segment_steps=1), 1)


@pytest.fixture(scope="module")
def mlp_step() -> dict[str, Any]:
    """A one-step segment of the MLP (test_step_record's `mlp`): binary32 features, int64 labels."""
    from ..engine.helpers import with_fields
    from ..portable.test_step_record import mlp

    return _segment(with_fields(mlp(), segment_steps=1), 1)


def _bits(value: np.ndarray) -> list[int]:
    """Elements as the rules read them: a binary32's pattern, an int64's 64 bits."""
    flat = value.reshape(-1)
    return [int(v) for v in flat.view(np.uint32 if flat.dtype == np.float32 else np.uint64)]


def _cursor(step: dict[str, Any]) -> tuple[int, int]:
    header = tc.StateHeader.decode(tc.header_proof(step["before"], step["binding"])[0])
    return header.epoch, header.position


def _honest_hints(step: dict[str, Any], entry: record.Entry, element: int) -> list[int]:
    parsed = parse_skeleton(entry.skeleton_bytes())
    ids = None if entry.kernel == "batch_index" else step["rec"].input_value(entry, 1)
    return list(data_rules.data_hints(parsed, element, _cursor(step), ids))


def _assert_plans_match(rules: Any, step: dict[str, Any], entry: record.Entry) -> None:
    """DataRules' plans of the first, second, middle and last element at the honest hints against
    `data_reads` (input, reference, run; a constant's read carrying the skeleton's root in `a`) and
    `referee_calls.encode` (rule, parameters, the values read in the plan's order; the header read's
    values the agreed header's cursor)."""
    from protocol import referee_calls
    from protocol.referee_kit import CONSTANT, HEADER

    rec, skeleton = step["rec"], entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    size = entry.outputs[0].size
    for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
        hints = _honest_hints(step, entry, element)
        rule, params, reads, zipped = rules.plan(skeleton, 0, element, hints).call()
        assert [(r[0], r[7], r[8]) for r in reads] == data_rules.data_reads(parsed, 0, element, hints) and not zipped
        values: list[int] = []
        for k, kind, a, b, dtype, ndim, read_dims, first, count, stride in reads:
            ref = parsed.inputs[k]
            expected_a = int.from_bytes(ref.root, "big") if ref.kind == CONSTANT else ref.a
            assert (kind, a, b, dtype, tuple(read_dims[:ndim]), stride) == (ref.kind, expected_a, ref.b, ref.dtype, ref.shape, 1)
            values += list(_cursor(step)) if kind == HEADER else _bits(rec.input_value(entry, k))[first : first + count]
        proven = record.proven_values(rec, entry, 0, element)
        expected = referee_calls.encode(record.referee_call(entry), 0, element, proven)
        assert (rule, tuple(params), tuple(values)) == (expected.rule, expected.params, expected.values), entry.kernel
        assert tuple(params) == tuple(hints) and values[-1] == _bits(entry.outputs[0])[element]


@pytest.mark.parametrize("which", ["mlp", "gpt"])
def test_the_data_rules_mirror_the_python_and_the_referee_model(data_contracts, mlp_step, gpt_step, which: str) -> None:
    """On every entry of the MLP and the GPT step: DataRules calls an output checkable exactly when
    `data_checkable` does (with the skeleton's output count, dtype and shape), and exactly the batch
    entries and the embedding's gather are; its plans at the honest hints are the mirror's and the referee
    model's. An element outside the output, a cursor outside the orders and an id outside the source are
    refused."""
    rules = data_contracts["rules"].functions
    step = mlp_step if which == "mlp" else gpt_step
    decided = []
    for entry in one_entry_of_each_kind(step["rec"]):
        parsed = parse_skeleton(entry.skeleton_bytes())
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(rules, entry, output)
            assert checkable == data_rules.data_checkable(parsed, output), (entry.index, entry.kernel, output)
            if checkable:
                decided.append(entry.index)
                _assert_plans_match(rules, step, entry)
    # idx, x, y (in the GPT y's gather is alike x's: int64 [845, 32] by the same ids), and in the GPT the
    # embedding of the tokens (a binary32 state tensor by int64 ids)
    assert decided == ([0, 1, 2] if which == "mlp" else [0, 1, 3])
    index, gather = step["rec"].entries[0], step["rec"].entries[1]
    epochs, count = index.inputs[1].shape
    size = index.outputs[0].size
    cases = [(index, size, [0, 0], "not a checkable element"), (index, 0, [epochs, 0], "cursor outside the orders"),
             (index, size - 1, [0, count - size + 1], "cursor outside the orders"), (index, 0, [0], "the hints are the cursor"),
             (gather, 0, [gather.inputs[0].shape[0]], "id outside the source"), (gather, 0, [], "the hint is the id")]  # fmt: skip
    for entry, element, hints, reason in cases:
        with pytest.raises(Exception, match=reason):
            rules.plan(entry.skeleton_bytes(), 0, element, hints).call()
        with pytest.raises(ValueError):
            data_rules.data_reads(parse_skeleton(entry.skeleton_bytes()), 0, element, hints)


def test_the_mlp_s_first_linear_and_its_backward_become_decidable(data_contracts, mlp_step) -> None:
    """The census: with the batch read from the dataset, no entry reads a batch input, and the MLP's
    first linear (HostRules) and its linear_backward (dx, dW, db: FoldRules) read x as the dataset
    gather's output, so the contracts decide them; the batch entries go to DataRules."""
    rec = mlp_step["rec"]
    assert not any(r.kind == record.BATCH for e in rec.entries for r in e.inputs)
    first = next(e for e in rec.entries if e.kernel == "linear")
    backward = next(e for e in rec.entries if e.kernel == "linear_backward" and e.inputs[0].a == 1)
    assert first.inputs[0].kind == record.OUTPUT and rec.entries[first.inputs[0].a].kernel == "gather"
    slots = {"linear": data_contracts["host_rules"], "linear_backward": data_contracts["fold_rules"]}
    for entry in (first, backward):
        for output in range(len(entry.out_shapes)):
            assert checkable_output(slots[entry.kernel].functions, entry, output)
            assert rules_of(parse_skeleton(entry.skeleton_bytes()), output) is not None
    assert [rules_of(parse_skeleton(e.skeleton_bytes()), 0) for e in rec.entries[:3]] == [DATA_RULES] * 3


# (which step, entry, what it shows)
DATA_TARGETS = [
    ("gpt", 0, "batch_index: an int64 example id from the orders constant at the header's cursor"),
    ("gpt", 1, "the dataset's gather of int64 tokens (4 a chunk)"),
    ("mlp", 1, "the dataset's gather of binary32 features"),
    ("gpt", 3, "the embedding's gather: a binary32 state row by an int64 token id"),
]


def _data_match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], target: int, wrong: bool) -> Match:
    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    element = max(rec.entries[target].outputs[0].size - 3, 0)  # in the last chunk
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
    defender = Side([step["roots"][0], *later], corrupt(rec, target, element), step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element)  # fmt: skip


@pytest.mark.parametrize(("which", "target", "why"), DATA_TARGETS, ids=[f"{t[0]}-{t[1]}" for t in DATA_TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_data_entry_is_ruled(chain, data_contracts, mlp_step, gpt_step, wrong: bool, which: str, target: int, why: str) -> None:
    """A one-bit-wrong element of a batch_index or gather output is caught and a right one upheld, DataRules
    deciding, within the whole-game and the proof's gas targets. Before the honest defender proves, proofs
    of its element at another place (the next batch's cursor, or the next row's id) are valid runs of the
    bound tensors, yet the rule refuses them: the hint is not its proven value."""
    step = mlp_step if which == "mlp" else gpt_step
    match = _data_match(chain, data_contracts, step, target, wrong)
    match.play(PROOF, "defender")
    assert match.game()["rules"] == DATA_RULES
    if not wrong:
        _assert_another_place_cannot_prove(match, step, target)
    before = match.gas["defender"]
    match.prove_element()
    assert match.ruling() == (True, wrong, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


def _assert_another_place_cannot_prove(match: Match, step: dict[str, Any], target: int) -> None:
    from protocol.referee_kit import header_input_proof

    entry = step["rec"].entries[target]
    game = match.game()
    element = match.per_chunk() * game["chunk_index"] + game["element"]
    honest = _honest_hints(step, entry, element)
    other = [honest[0], honest[1] + entry.outputs[0].size] if target == 0 else [(honest[0] + 1) % entry.inputs[0].shape[0]]
    proofs = []
    for k, first, count in data_rules.data_reads(parse_skeleton(entry.skeleton_bytes()), 0, element, other):
        ref = entry.inputs[k]
        if ref.kind == record.HEADER:
            proofs.append(header_input_proof(*tc.header_proof(step["before"], step["binding"])))
        elif ref.kind == record.CONSTANT:
            proofs.append(match.constant_proof(ref.root, entry.loose[k], first, count))
        else:
            proofs.append(match.input_proof(target, ref, first, count))
    with pytest.raises(Exception, match="a hint is not its proven value"):
        match.host.functions.prove_element(match.game_id, entry.skeleton_bytes(), proofs, other).call({"from": match.d})


KINDS = (record.STATE, record.OUTPUT, record.HEADER, record.CONSTANT)


@st.composite
def _data_entries(draw: Any) -> record.Entry:
    """A batch_index or gather entry with drawn shapes, reference kinds and dtypes: mostly as the engine
    records them, sometimes off (a float index, a header where a tensor is read, a batch wider than the
    orders, an output shape that is not ids' then W's)."""
    kernel = draw(st.sampled_from(["batch_index", "gather"]))
    off = draw(st.integers(0, 3)) == 0

    def ref(kind: int, dtype: int, shape: tuple[int, ...]) -> record.Ref:
        if off and draw(st.booleans()):
            kind, dtype = draw(st.sampled_from(KINDS)), draw(st.sampled_from([1, 2, 4]))
        root = keccak(repr(shape).encode()) if kind == record.CONSTANT else tc.ZERO
        return record.Ref(kind, draw(st.integers(0, 50)), 0, dtype, shape, root)

    if kernel == "batch_index":
        epochs, count, size = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 44))
        refs = (record.Ref(record.HEADER) if not off else ref(record.HEADER, 1, ()), ref(record.CONSTANT, 2, (epochs, count)))
        outs = ((2, (size,)),)
    else:
        rows, row = draw(st.integers(1, 30)), draw(st.sampled_from([(), (3,), (2, 5)]))
        ids = draw(st.sampled_from([(4,), (2, 3)]))
        dtype = draw(st.sampled_from([1, 2]))
        refs = (ref(draw(st.sampled_from([record.STATE, record.OUTPUT, record.CONSTANT])), dtype, (rows, *row)),
                ref(record.OUTPUT, 2, ids))  # fmt: skip
        shape = (*ids, *row) if not off else draw(st.sampled_from([(*ids, *row), (*ids, *row, 1), ids]))
        outs = ((dtype if not off else draw(st.sampled_from([1, 2])), shape),)
    return record.Entry(7, kernel, (("input", 0), ("input", 1)), refs, outs, (tc.ZERO,))


@settings(max_examples=examples(20), deadline=None)
@given(_data_entries(), st.data())
def test_data_rules_and_their_mirror_agree_on_any_entry(data_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn skeletons: DataRules' `output_of` says checkable exactly when `data_checkable` does, and for
    a drawn element and drawn hints (inside the source or not) it plans exactly when `data_reads` does, with
    the same reads."""
    rules = data_contracts["rules"].functions
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    checkable = rules.output_of(skeleton, 0).call()[1]
    assert checkable == data_rules.data_checkable(parsed, 0)
    if not checkable:
        return
    element = data.draw(st.integers(0, int(np.prod(entry.out_shapes[0][1])) - 1))
    hints = data.draw(st.lists(st.integers(0, 45), min_size=1 if entry.kernel == "gather" else 2,
                               max_size=1 if entry.kernel == "gather" else 2))  # fmt: skip
    try:
        expected = data_rules.data_reads(parsed, 0, element, hints)
    except ValueError:
        with pytest.raises(Exception, match="data_rules"):
            rules.plan(skeleton, 0, element, hints).call()
        return
    reads = rules.plan(skeleton, 0, element, hints).call()[2]
    assert [(r[0], r[7], r[8]) for r in reads] == expected


def test_a_kit_proves_a_batch_element_with_its_hints(chain, data_contracts, gpt_step, tmp_path) -> None:
    """A dispute kit of the GPT step, written and read back, holds the dataset constants (orders, the
    tokens) and gives the honest hints (r_t's cursor; the token id) and proofs the personas send; the
    production player's prove_element of the embedding gather's element is the same move, and wins."""
    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    step = gpt_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    loaded = rk.load_kit(rk.write_kit(tmp_path / "kit", kit))
    assert all((j, k) in loaded.constants for j, k in ((0, 1), (1, 0), (2, 0)))
    for element in range(step["rec"].entries[0].outputs[0].size):  # batch_index: r_t's cursor
        assert list(loaded.element_hints(0, 0, element)) == _honest_hints(step, step["rec"].entries[0], element)
    target = 3  # the embedding's gather: the token id
    match = _data_match(chain, data_contracts, step, target, wrong=False)
    match.play(PROOF, "defender")
    game = match.game()
    element = match.per_chunk() * game["chunk_index"] + game["element"]
    entry = step["rec"].entries[target]
    hints = loaded.element_hints(target, 0, element)
    assert list(hints) == match.hints(entry, 0, element) == _honest_hints(step, entry, element)
    proofs = loaded.element_proofs(target, 0, element)
    assert proofs == [tuple(p) for p in match.element_proofs()]
    move = RefereePlayer(chain, data_contracts, "defender", loaded).next_move(match.game_id)  # the production player
    assert move is not None and move.function == "prove_element"
    assert move.args == (match.game_id, entry.skeleton_bytes(), proofs, list(hints), [])
    match.send("defender", "host", "prove_element", *move.args)
    assert match.ruling() == (True, False, False)


@settings(max_examples=examples(15), deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=3), st.integers(0, 2**64 - 1), st.data())
def test_the_select_rule_returns_the_selected_value_only_when_every_hint_is_proven(data_contracts, proven: list[int],
                                                                                   selected: int, data: Any) -> None:  # fmt: skip
    """ElementReferee's RULE_SELECT on any 64-bit values: the selected value when the parameters (the hints)
    equal the proven values before it, a revert when any one differs (one bit flipped) or the values are
    not one longer than the hints."""
    from protocol import referee_calls as rc

    referee = data_contracts["referee"].functions
    flips = [data.draw(st.sampled_from([0, 0, 1 << data.draw(st.integers(0, 63))])) for _ in proven]
    hints = [v ^ f for v, f in zip(proven, flips)]
    if hints == proven:
        assert referee.element(rc.RULE["select"], hints, [*proven, selected]).call() == selected
    else:
        with pytest.raises(Exception, match="a hint is not its proven value"):
            referee.element(rc.RULE["select"], hints, [*proven, selected]).call()
    with pytest.raises(Exception, match="select layout"):
        referee.element(rc.RULE["select"], proven, [*proven, selected, selected]).call()
