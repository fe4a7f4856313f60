"""The Llama-style decoder's calls that had no on-chain rule: `rotary` and `rotary_backward` (DataRules,
contracts/lib/data_rules.vy: x at the element and its rotation partner, the cos and sin tables at (t, j),
RULE_ROTARY) and `fold_head_groups` (FoldRules, contracts/lib/fold_rules.vy: kv head g folds heads g·G …
g·G + G − 1, a column read one head's elements apart, proven by a column proof), and `linear` where
HostRules cannot plan it (FoldRules: K not a power of two from 8 to 256, the SwiGLU down projection's
K = 12, and K > 256 in pieces from the entry's running values, the MLP with hidden = 300). Against the
Python mirrors (`protocol.data_rules`, `protocol.fold_rules`) and the referee model (`referee_calls.encode`)
on a recorded Llama step (test_step_record's `llama`); then games on anvil: a worker corrupting one output
element loses, an honest one wins, and forged proofs (the tables swapped, the partner from elsewhere) are
refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import PROOF, Match, Side, corrupt, deploy_referee_stack
from protocol import data_rules, fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, FOLD_RULES, parse_skeleton, rules_of
from worker.referee_player import RefereePlayer

from ..engine.helpers import examples
from .helpers import drawn_plans, reverted
from .test_referee_game import (ARITY, LEVELS, MOVE, WHOLE_GAME_TARGET, _deploy, assert_plan_is_the_model_s, checkable_output,
                                one_entry_of_each_kind)  # fmt: skip

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the element's proof and recomputation
RULES = ("HostRules", "FoldRules", "RowRules", "DataRules")


@pytest.fixture(scope="module")
def decoder_contracts(w3: Any) -> dict[str, Any]:
    """The referee stack with RefereeGame's rules contracts [HostRules, FoldRules, RowRules, DataRules]."""
    made = deploy_referee_stack(w3, _deploy, RULES, ARITY, LEVELS, MOVE)
    return {**made, "host_rules": made["rules"]}


@pytest.fixture
def chain(w3: Any, decoder_contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def llama_step() -> dict[str, Any]:
    """A one-step segment of the Llama-style decoder (rotary, grouped-query attention, SwiGLU, RMSNorm)."""
    from engine.api import record_first_steps

    from ..engine.helpers import with_fields
    from ..portable.test_step_record import llama

    states, records, bindings = record_first_steps(with_fields(llama(), segment_steps=1), None, 1)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1])}  # fmt: skip


def _elements(size: int) -> list[int]:
    """The first, second, third, fourth, middle and last element (both halves of a row of 4)."""
    return sorted({0, 1, 2, 3, size // 2, size - 1} & set(range(size)))


def _assert_rotary_plans_match(rules: Any, rec: record.StepRecord, entry: record.Entry) -> None:
    """DataRules' plans of several elements of a rotation (no hints) against `data_reads` (input, run) and
    the referee model (rule, parameters, the values read in the plan's order; a table's read carrying its
    constant root in `a`)."""
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    for element in _elements(entry.outputs[0].size):
        plan = rules.plan(skeleton, 0, element, []).call()
        assert [(r[0], r[7], r[8]) for r in plan[2]] == data_rules.data_reads(parsed, 0, element, ())
        assert all(r[9] == 1 for r in plan[2]) and not plan[3]
        assert_plan_is_the_model_s(rec, entry, parsed, 0, element, plan)


def test_the_decoder_rules_mirror_the_python_and_the_referee_model(decoder_contracts, llama_step) -> None:
    """On every entry of the Llama step: DataRules calls an output checkable exactly when `data_checkable`
    does, exactly the batch entries, the embedding's gather and the four rotations are, and each rotation's
    plans (the element, its partner in the other half of the row, cos and sin at (t, j)) are the mirror's
    and the referee model's. Hints, or an element outside the output, are refused by both."""
    rules = decoder_contracts["data_rules"].functions
    rec = llama_step["rec"]
    decided: set[str] = set()
    for entry in one_entry_of_each_kind(rec):
        parsed = parse_skeleton(entry.skeleton_bytes())
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(rules, entry, output)
            assert checkable == data_rules.data_checkable(parsed, output), (entry.index, entry.kernel, output)
            if checkable:
                decided.add(entry.kernel)
                if entry.kernel in data_rules.ROTARY_KERNELS:
                    _assert_rotary_plans_match(rules, rec, entry)
    assert decided == {"batch_index", "gather", "rotary", "rotary_backward"}
    rotations = [e for e in rec.entries if e.kernel in data_rules.ROTARY_KERNELS]
    assert [e.index for e in rotations] == [8, 10, 72, 73]
    assert all(rules_of(parse_skeleton(e.skeleton_bytes()), 0) == DATA_RULES for e in rotations)
    for entry, element, hints, reason in ((rotations[0], 0, [1], "rotary, pooling and columns take no hints"),
                                          (rotations[0], rotations[0].outputs[0].size, [], "not a checkable element")):  # fmt: skip
        with pytest.raises(Exception, match=reason):
            rules.plan(entry.skeleton_bytes(), 0, element, hints).call()
        with pytest.raises(ValueError):
            data_rules.data_reads(parse_skeleton(entry.skeleton_bytes()), 0, element, hints)


# (entry, element offset from the output's end: in the last chunk; a row of 4 has j = 1 in its first half,
# j = 3 in its second)
ROTARY_TARGETS = [(8, 3), (10, 1), (72, 1), (73, 3)]


def _match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], target: int, back: int, wrong: bool) -> Match:
    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    element = rec.entries[target].outputs[0].size - back
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
    defender = Side([step["roots"][0], *later], corrupt(rec, target, element), step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element)  # fmt: skip


@pytest.mark.parametrize(("target", "back"), ROTARY_TARGETS, ids=[f"entry-{t}" for t, _ in ROTARY_TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_rotation_is_ruled(chain, decoder_contracts, llama_step, wrong: bool, target: int, back: int) -> None:
    """A one-bit-wrong element of a rotary or rotary_backward output (q's and k's rotations, and their
    backwards; an element of each half of the row) is caught and a right one upheld, DataRules deciding,
    within the proof's and the whole game's gas targets."""
    match = _match(chain, decoder_contracts, llama_step, target, back, wrong)
    match.play(PROOF, "defender")
    assert match.game()["rules"] == DATA_RULES
    before = match.gas["defender"]
    match.prove_element()
    assert match.ruling() == (True, wrong, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


@settings(max_examples=examples(8), deadline=None)
@given(st.sampled_from([8, 10, 72, 73, 70, 71, 32]), st.integers(0, 2**20), st.booleans())
def test_any_element_of_a_decoder_call_is_ruled(w3, decoder_contracts, llama_step, target: int, draw: int, wrong: bool) -> None:
    """Any element of any rotation, head fold or the K = 12 linear of the Llama step: a defender with that
    element one bit wrong loses to the honest challenger, and an honest defender disputed there wins."""
    size = llama_step["rec"].entries[target].outputs[0].size
    with reverted(w3):
        match = _match(w3, decoder_contracts, llama_step, target, size - draw % size, wrong)
        match.play()
        assert match.ruling() == (True, wrong, False)


def test_forged_rotation_proofs_are_refused(chain, decoder_contracts, llama_step) -> None:
    """At PROOF for a rotation, the honest proofs with the cos and sin tables swapped (each a valid run of a
    constant, but not the root its read names), with the partner proven from another chunk of x (a
    valid run of x, not holding the partner), or with x's element proven from the entry's own output are refused; the honest ones
    then win."""
    match = _match(chain, decoder_contracts, llama_step, 8, 3, wrong=False)
    match.play(PROOF, "defender")
    entry = llama_step["rec"].entries[8]
    game = match.game()
    element = match.per_chunk() * game["chunk_index"] + game["element"]
    honest = match.element_proofs()
    elsewhere = match.input_proof(8, entry.inputs[0], element - 8, 1)  # the partner's row one chunk earlier
    output_run = tc.prove_run(entry.outputs[0], element, 1)
    from_output = (entry.skeleton_leaf(), list(entry.out_roots), list(llama_step["rec"].entry_proof(8, 8)),
                   list(entry.outputs[0].shape), output_run.first, list(output_run.chunks), list(output_run.path))  # fmt: skip
    forged = [[honest[0], honest[1], honest[3], honest[2]], [honest[0], elsewhere, honest[2], honest[3]],
              [from_output, honest[1], honest[2], honest[3]]]  # fmt: skip
    for proofs in forged:
        with pytest.raises(Exception):  # noqa: B017  (the game reverts; which check says so differs by forgery)
            match.host.functions.prove_element(match.game_id, entry.skeleton_bytes(), proofs, [], []).call({"from": match.d})
    match.prove_element()
    assert match.ruling() == (True, False, False)


def test_a_kit_proves_a_rotation(chain, decoder_contracts, llama_step, tmp_path) -> None:
    """A dispute kit of the Llama step, written and read back, holds the rotary tables; its hints for a
    rotation are none and its proofs are the personas'; the production player's prove_element is the same
    move, and wins."""
    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    step = llama_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    loaded = rk.load_kit(rk.write_kit(tmp_path / "kit", kit))
    target = 72
    match = _match(chain, decoder_contracts, step, target, 1, wrong=False)
    match.play(PROOF, "defender")
    game = match.game()
    element = match.per_chunk() * game["chunk_index"] + game["element"]
    entry = step["rec"].entries[target]
    assert list(loaded.element_hints(target, 0, element)) == match.hints(entry, 0, element) == []
    proofs = loaded.element_proofs(target, 0, element)
    assert proofs == [tuple(p) for p in match.element_proofs()]
    move = RefereePlayer(chain, decoder_contracts, "defender", loaded).next_move(match.game_id)
    assert move is not None and move.function == "prove_element"
    assert move.args == (match.game_id, entry.skeleton_bytes(), proofs, [], [])
    match.send("defender", "host", "prove_element", *move.args)
    assert match.ruling() == (True, False, False)


KINDS = (record.STATE, record.OUTPUT, record.HEADER, record.CONSTANT)


@st.composite
def _rotary_entries(draw: Any) -> record.Entry:
    """A rotary or rotary_backward entry with drawn shapes, kinds and dtypes: mostly as the engine records
    them, sometimes off (an odd head width, tables of another shape, x a constant, int64 tables, an output
    of another shape)."""
    kernel = draw(st.sampled_from(data_rules.ROTARY_KERNELS))
    off = draw(st.integers(0, 3)) == 0
    steps, width = draw(st.integers(1, 9)), draw(st.sampled_from([2, 4, 6, 8, 16]))
    lead = draw(st.sampled_from([(), (2,), (2, 3), (1, 2, 2)]))
    x_shape = (*lead, steps, width)
    if off and draw(st.booleans()):
        x_shape = draw(st.sampled_from([(*lead, steps, width + 1), (width,), (*lead, steps + 1, width)]))

    def ref(kind: int, shape: tuple[int, ...]) -> record.Ref:
        dtype = 1
        if off and draw(st.booleans()):
            kind, dtype = draw(st.sampled_from(KINDS)), draw(st.sampled_from([1, 2]))
        root = keccak(repr(shape).encode()) if kind == record.CONSTANT else tc.ZERO
        return record.Ref(kind, draw(st.integers(0, 50)), 0, dtype, shape, root)

    table = (steps, width) if not (off and draw(st.booleans())) else draw(st.sampled_from([(steps, width // 2), (width, steps)]))
    refs = (ref(draw(st.sampled_from([record.STATE, record.OUTPUT])), x_shape), ref(record.CONSTANT, table),
            ref(record.CONSTANT, (steps, width)))  # fmt: skip
    out = x_shape if not off else draw(st.sampled_from([x_shape, (*x_shape, 1)]))
    return record.Entry(7, kernel, (("input", 0), ("input", 1), ("input", 2)), refs, ((1, out),), (tc.ZERO,))


@settings(max_examples=examples(25), deadline=None)
@given(_rotary_entries(), st.data())
def test_rotary_rules_and_their_mirror_agree_on_any_entry(decoder_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn rotation skeletons: DataRules' `output_of` says checkable exactly when `data_checkable` does,
    and for a drawn element its reads are `data_reads`' (a table read carrying its constant's root)."""
    rules = decoder_contracts["data_rules"].functions
    for parsed, _, element, reads in drawn_plans(rules, entry, data_rules.data_checkable, data, outputs=(0,)):
        assert [(r[0], r[7], r[8]) for r in reads] == data_rules.data_reads(parsed, 0, element, ())
        roots = [int.from_bytes(parsed.inputs[k].root, "big") if parsed.inputs[k].kind == record.CONSTANT else parsed.inputs[k].a
                 for k, *_ in data_rules.data_reads(parsed, 0, element, ())]  # fmt: skip
        assert [r[2] for r in reads] == roots


def test_the_head_group_fold_mirrors_the_python_and_the_referee_model(decoder_contracts, llama_step) -> None:
    """On every entry of the Llama step FoldRules calls an output checkable exactly when `fold_checkable`
    does; the grouped-query backward's two fold_head_groups ([2, 2, 32, 4] -> [2, 1, 32, 4], G = 2) are
    decided, each element a column of G heads 128 elements apart, and the plans are the mirror's and the
    referee model's; an element outside the output is refused."""
    folds = decoder_contracts["fold_rules"].functions
    rec = llama_step["rec"]
    heads = [e for e in rec.entries if e.kernel == "fold_head_groups"]
    assert [e.index for e in heads] == [70, 71]
    for entry in one_entry_of_each_kind(rec):
        parsed = parse_skeleton(entry.skeleton_bytes())
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(folds, entry, output)
            assert checkable == fold_rules.fold_checkable(parsed, output), (entry.index, entry.kernel, output)
    for entry in heads:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        assert rules_of(parsed, 0) == FOLD_RULES
        size = entry.outputs[0].size
        for element in sorted({0, 1, 127, 128, size // 2, size - 1}):
            plan = folds.plan(skeleton, 0, element, []).call()
            reads = [(r[0], r[7], r[8], r[9]) for r in plan[2]]
            assert reads == fold_rules.fold_reads(parsed, 0, element) and not plan[3]
            b, rest = divmod(element, 128)
            assert reads == [(0, b * 256 + rest, 2, 128)]  # heads 0 and 1 of batch b
            assert_plan_is_the_model_s(rec, entry, parsed, 0, element, plan)
        with pytest.raises(Exception, match="fold_rules: not a checkable element"):
            folds.plan(skeleton, 0, size, []).call()


@pytest.mark.parametrize("target", [70, 71], ids=["entry-70", "entry-71"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_head_group_fold_is_ruled(chain, decoder_contracts, llama_step, wrong: bool, target: int) -> None:
    """A one-bit-wrong element of a fold_head_groups output is caught and a right one upheld, FoldRules
    deciding from a column proof, within the proof's and the whole game's gas targets."""
    match = _match(chain, decoder_contracts, llama_step, target, 3, wrong)
    match.play(PROOF, "defender")
    assert match.game()["rules"] == FOLD_RULES
    before = match.gas["defender"]
    match.prove_element()
    assert match.ruling() == (True, wrong, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


def test_a_head_group_fold_proven_down_another_column_is_refused(chain, decoder_contracts, llama_step) -> None:
    """At PROOF for a fold_head_groups element, a column proof of the same heads eight positions earlier
    (a valid multiproof of the source, other chunks) or of one head only is refused; the honest one wins."""
    match = _match(chain, decoder_contracts, llama_step, 70, 3, wrong=False)
    match.play(PROOF, "defender")
    entry = llama_step["rec"].entries[70]
    proofs, columns = match.element_proof_args()
    (k, first, count, stride), = fold_rules.fold_reads(parse_skeleton(entry.skeleton_bytes()), 0, match.target_element)
    source = match.input_source(70, entry.inputs[0])[3]
    for forged in (fold_rules.column_proof(source, first - 8, count, stride), fold_rules.column_proof(source, first, 1, stride),
                   columns[:-1]):  # fmt: skip
        with pytest.raises(Exception):  # noqa: B017  (the game reverts: the words are not this column's proof)
            match.host.functions.prove_element(match.game_id, entry.skeleton_bytes(), proofs, [], forged).call({"from": match.d})
    match.prove_element()
    assert match.ruling() == (True, False, False)


@st.composite
def _head_group_entries(draw: Any) -> record.Entry:
    """A fold_head_groups entry with drawn shapes and group sizes: mostly as the engine records them,
    sometimes off (a group that does not divide the heads, an output of the wrong head count, a negative
    or zero group, a float argument, an int64 input, a header input)."""
    off = draw(st.integers(0, 3)) == 0
    batch, kept, group = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 8))
    rest = draw(st.sampled_from([(), (3,), (5, 4), (2, 2, 2)]))
    heads = kept * group + (draw(st.integers(0, 1)) if off else 0)
    kind, dtype = record.OUTPUT, 1
    if off and draw(st.booleans()):
        kind, dtype = draw(st.sampled_from([record.STATE, record.OUTPUT, record.HEADER])), draw(st.sampled_from([1, 2]))
    out = (batch, kept + (draw(st.integers(0, 1)) if off else 0), *rest)
    argument: Any = group if not (off and draw(st.booleans())) else draw(st.sampled_from([0, -group, float(group)]))
    refs = (record.Ref(kind, draw(st.integers(0, 50)), 0, dtype, (batch, heads, *rest), tc.ZERO),)
    return record.Entry(7, "fold_head_groups", (("input", 0), argument), refs, ((1, out),), (tc.ZERO,))


@settings(max_examples=examples(25), deadline=None)
@given(_head_group_entries(), st.data())
def test_head_group_rules_and_their_mirror_agree_on_any_entry(decoder_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn fold_head_groups skeletons: FoldRules' `output_of` says checkable exactly when
    `fold_checkable` does, and for a drawn element its column read is `fold_reads`'."""
    folds = decoder_contracts["fold_rules"].functions
    for parsed, _, element, reads in drawn_plans(folds, entry, fold_rules.fold_checkable, data, outputs=(0,)):
        assert [(r[0], r[7], r[8], r[9]) for r in reads] == fold_rules.fold_reads(parsed, 0, element)


@pytest.fixture(scope="module")
def wide_step() -> dict[str, Any]:
    """A one-step segment of the MLP with hidden = 300: its head's linear folds K = 300 terms (pieces of 16)."""
    from engine.api import record_first_steps

    from ..engine.helpers import with_fields
    from ..portable.test_step_record import mlp

    states, records, bindings = record_first_steps(with_fields(mlp(hidden=300), segment_steps=1), None, 1)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1])}  # fmt: skip


def _wide_linear(rec: record.StepRecord) -> record.Entry:
    return next(e for e in rec.entries if e.kernel == "linear" and e.inputs[1].shape[1] == 300)


def test_a_linear_host_rules_cannot_plan_is_folded(decoder_contracts, llama_step, wide_step) -> None:
    """FoldRules decides the linears HostRules leaves (K = 12 without a bias in the Llama step, one piece; K =
    300 with a bias in the MLP step, nineteen pieces of 16 whose running values the record carries) and no
    other: on every entry of both steps FoldRules' checkable is `fold_checkable`'s, and a linear is one of
    FoldRules' exactly when HostRules does not decide it. For the first and last element of every piece
    (running values and final elements, the bias added after the last piece only) its reads are
    `fold_reads`' and its rule, parameters and values `referee_calls.encode`'s; the referee model recomputes
    every running value and output element to the recorded bits."""
    from protocol import referee_calls
    from protocol import referee_model as rm
    from protocol.referee_kit import host_checkable

    from .test_fold_pieces import _laid_out

    folds = decoder_contracts["fold_rules"].functions
    for rec in (llama_step["rec"], wide_step["rec"]):
        for entry in one_entry_of_each_kind(rec):
            parsed = parse_skeleton(entry.skeleton_bytes())
            for output in range(len(entry.out_shapes)):
                assert checkable_output(folds, entry, output) == fold_rules.fold_checkable(parsed, output), (entry.index, output)
            if entry.kernel == "linear":
                assert fold_rules.fold_checkable(parsed, 0) != host_checkable(parsed, 0), entry.index
    entries = [llama_step["rec"].entries[32], _wide_linear(wide_step["rec"])]
    assert [len(e.outputs) for e in entries] == [1, 2]  # the wide one carries its running values
    for rec, entry in zip((llama_step["rec"], wide_step["rec"]), entries, strict=True):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        call = record.referee_call(entry)
        pieced = fold_rules.piecings(parsed)
        targets = [(0, e) for e in (0, 1, entry.outputs[0].size - 1)]
        if pieced:
            (piecing,) = pieced
            assert (piecing.terms, piecing.length, piecing.pieces) == (300, 16, 19)
            targets += [(1, c * piecing.size + e) for c in range(piecing.pieces - 1) for e in (0, piecing.size - 1)]
        for output, element in targets:
            plan = folds.plan(skeleton, output, element, []).call()
            rule, params, reads, zipped = plan
            assert [(r[0], r[7], r[8], r[9]) for r in reads] == fold_rules.fold_reads(parsed, output, element)
            proven = record.proven_values(rec, entry, output, element)
            expected = referee_calls.encode(call, output, element, proven)
            assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.index, output, element)
            assert _laid_out(rec, entry, reads, zipped) == expected.values, (entry.index, output, element)
            bias_read = any(r[0] == 2 for r in reads)
            assert bias_read == (output == 0 and len(entry.inputs) == 3) == (params[2] == 1)
        for output in range(len(entry.outputs)):
            bits = entry.outputs[output].reshape(-1).view(np.uint32)
            for element in range(entry.outputs[output].size):
                proven = record.proven_values(rec, entry, output, element)
                assert rm.check_element(call, output, element, proven) == int(bits[element]), (entry.index, output, element)


# (step, output, element, what): the K = 12 linear's last chunk; the wide linear's running value in its third
# piece; its final element (the last piece from the last running value, then + b[n])
LINEAR_TARGETS = [("llama", 0, -3, "K = 12, no bias"), ("wide", 1, 2 * 160 + 77, "a running value"),
                  ("wide", 0, -3, "the final element, + the bias")]  # fmt: skip


@pytest.mark.parametrize(("which", "output", "element", "what"), LINEAR_TARGETS, ids=[t[3] for t in LINEAR_TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_folded_linear_is_ruled(chain, decoder_contracts, llama_step, wide_step, wrong: bool, which: str, output: int,
                                  element: int, what: str) -> None:  # fmt: skip
    """A one-bit-wrong element of a linear FoldRules decides (an output element in one piece; a running value
    of the K = 300 fold; its final element) is caught and a right one upheld, within the proof's and the
    whole game's gas targets."""
    step = llama_step if which == "llama" else wide_step
    rec = step["rec"]
    entry = rec.entries[32] if which == "llama" else _wide_linear(rec)
    element = element % entry.outputs[output].size
    truth = Side(step["roots"], rec, step["next_leaves"])
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
    bad = corrupt(rec, entry.index, element, output)
    defender = Side([step["roots"][0], *later], bad, step["next_leaves"]) if wrong else truth
    match = Match(chain, decoder_contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth,
                  honest_challenger=wrong, target=entry.index, target_element=element, output=output)  # fmt: skip
    match.play(PROOF, "defender")
    assert match.game()["rules"] == FOLD_RULES and match.game()["output"] == output
    before = match.gas["defender"]
    match.prove_element()
    assert match.ruling() == (True, wrong, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


def test_a_wrong_running_value_of_a_linear_is_caught_where_it_goes_wrong(chain, decoder_contracts, wide_step) -> None:
    """A defender whose wide linear has running value (piece 1, element e) one bit wrong and every later
    running value and the output folded on consistently from it: the honest challenger's choice
    (`output_to_dispute`) is the running values, not the consistent output, and the defender loses at
    that piece."""
    from protocol.referee_kit import output_to_dispute

    rec = wide_step["rec"]
    entry = _wide_linear(rec)
    (piecing,) = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
    e, size = 77, piecing.size
    running, output = entry.outputs[1].copy(), entry.outputs[0].copy()
    running.view(np.uint32)[size + e] ^= np.uint32(8)
    x, w, b = (rec.input_value(entry, k) for k in range(3))
    x = x.reshape(-1, piecing.terms)
    r, n = divmod(e, w.shape[0])
    total = running[size + e]
    for t in range(2 * piecing.length, piecing.terms):  # pieces 2, 3 and the last, from the wrong value
        total = np.float32(total + np.float32(x[r, t] * w[n, t]))
        if (t + 1) % piecing.length == 0:
            running[((t + 1) // piecing.length - 1) * size + e] = total
    output.reshape(-1)[e] = np.float32(total + b[n])
    bad = _replaced(entry, output, running)
    assert output_to_dispute(parse_skeleton(entry.skeleton_bytes()), entry.out_roots, bad.out_roots) == 1
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(wide_step["roots"]))]
    defender = Side([wide_step["roots"][0], *later], _with_entry(rec, bad), wide_step["next_leaves"])
    truth = Side(wide_step["roots"], rec, wide_step["next_leaves"])
    match = Match(chain, decoder_contracts, ARITY, LEVELS, wide_step["before"], wide_step["binding"], defender, truth,
                  honest_challenger=True, target=entry.index, target_element=size + e, output=1)  # fmt: skip
    match.play(PROOF, "defender")
    match.prove_element()
    assert match.ruling() == (True, True, False)


def _replaced(entry: record.Entry, output: np.ndarray, running: np.ndarray) -> record.Entry:
    """The entry with its output and running values replaced (their roots recomputed)."""
    import dataclasses

    return dataclasses.replace(entry, outputs=(output, running), out_roots=(tc.tensor_root(output), tc.tensor_root(running)))


def _with_entry(rec: record.StepRecord, entry: record.Entry) -> record.StepRecord:
    import dataclasses

    return dataclasses.replace(rec, entries=[*rec.entries[: entry.index], entry, *rec.entries[entry.index + 1 :]])


@st.composite
def _linear_entries(draw: Any) -> record.Entry:
    """A linear entry with drawn K (powers of two HostRules decides, others, over 256), rows, N, with or
    without its bias: mostly as the engine records it (with the running values `piecings` asks for),
    sometimes off (W of another K, a bias of another length, no running values, x of another rank)."""
    off = draw(st.integers(0, 3)) == 0
    terms = draw(st.sampled_from([1, 3, 8, 12, 64, 100, 256, 257, 300, 520]))
    width, lead = draw(st.integers(1, 12)), draw(st.sampled_from([(4,), (2, 3), (1,)]))
    bias = draw(st.booleans())
    x_shape = (*lead, terms)
    w_shape = (width, terms + (1 if off and draw(st.booleans()) else 0))
    b_shape = (width + (1 if off and draw(st.booleans()) else 0),)
    y_shape = (*lead, width) if not (off and draw(st.booleans())) else (int(np.prod(lead)) * width,)
    refs = [record.Ref(record.OUTPUT, 3, 0, 1, x_shape, tc.ZERO), record.Ref(record.STATE, 1, 0, 1, w_shape, tc.ZERO)]
    if bias:
        refs.append(record.Ref(record.STATE, 0, 0, 1, b_shape, tc.ZERO))
    args = (("input", 0), ("input", 1), ("input", 2) if bias else None)
    outs: list = [(1, y_shape)]
    entry = record.Entry(7, "linear", args, tuple(refs), tuple(outs), (tc.ZERO,))
    pieced = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
    if pieced and not (off and draw(st.booleans())):
        last = pieced[-1]
        outs.append((1, (last.offset + (last.pieces - 1) * last.size,)))
    return record.Entry(7, "linear", args, tuple(refs), tuple(outs), (tc.ZERO,) * len(outs))


@settings(max_examples=examples(30), deadline=None)
@given(_linear_entries(), st.data())
def test_linear_fold_rules_and_their_mirror_agree_on_any_entry(decoder_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn linear skeletons: FoldRules' `output_of` says checkable exactly when `fold_checkable` does
    (never for a K HostRules decides), and for a drawn element of each checkable output (a running value or
    a final element) its reads are `fold_reads`'."""
    folds = decoder_contracts["fold_rules"].functions
    for parsed, output, element, reads in drawn_plans(folds, entry, fold_rules.fold_checkable, data):
        assert [(r[0], r[7], r[8], r[9]) for r in reads] == fold_rules.fold_reads(parsed, output, element)


def test_the_dearest_decoder_fold_element_costs_under_a_million_gas(chain, decoder_contracts) -> None:
    """`personas.decoder_worst_case.sweep` over its sample (the bench plays the whole sweep): linears of K 12,
    110, 255 and 300 with and without the bias (one piece, and in pieces: a running value past the first
    piece, the final element with its bias), x [2, 114] with W [1, 114] and its bias, and head groups of 128 to 256 heads (the dearest the whole sweep
    found among them), every read under the deepest record path and a prefix of a source as large as a kit
    holds, written into PROOF by storage and played: every one decided under 1,000,000 gas (the dearest in
    docs/referee.md)."""
    from personas.decoder_worst_case import SAMPLED_HEAD_GROUP_CASES, SAMPLED_LINEAR_CASES, sweep

    found = sweep(chain, decoder_contracts["host"], SAMPLED_LINEAR_CASES, SAMPLED_HEAD_GROUP_CASES)
    print("dearest decoder fold elements:", found[:6])
    kinds = {(kernel, output) for _, kernel, _, output, _ in found}
    assert kinds == {("linear", 0), ("linear", 1), ("fold_head_groups", 0)}
    assert found[0][0] < PROVE_ELEMENT_TARGET, found[0]


@pytest.mark.parametrize("backward", [False, True], ids=["rotary", "rotary_backward"])
def test_the_dearest_rotation_costs_under_a_million_gas(chain, decoder_contracts, backward: bool) -> None:
    """`personas.decoder_worst_case.largest_rotary_proof`: x and its partner two runs of their own under the
    deepest record path, the tables constants of 2**31 binary32 (28 path words a run), written into PROOF by
    storage and played: decided, under 1,000,000 gas."""
    from personas.decoder_worst_case import largest_rotary_proof

    gas = largest_rotary_proof(chain, decoder_contracts["host"], 79, backward)
    print("dearest rotation:", gas)
    assert gas < PROVE_ELEMENT_TARGET
