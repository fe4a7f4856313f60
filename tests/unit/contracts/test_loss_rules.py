"""RowRules.vy's loss rules (contracts/lib/row_rules.vy, docs/referee.md "Loss rules"): cross-entropy's mean
(a fold over its own per-row losses, output 1, read with REF_SELF) and each row's loss nll[r], its
backward, and embedding_backward (dW[v, d]: every id, then dy's column d by a column proof). Against the
Python mirror (`protocol.referee_kit.row_checkable`, `row_strided_reads`) and the referee model
(`referee_calls.encode`) on every such output of a recorded tiny-GPT step (dropout 0.1) and MLP step;
then games over the GPT step played to a ruling on anvil (RefereeGame asking HostRules, then RowRules),
and forged proofs of nll (another output root) and of a target refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import PROOF, Match, Side, corrupt, deploy_referee_stack
from protocol import tensor_commit as tc

from ..engine.helpers import examples
from .helpers import drawn_plans, reverted
from .test_referee_game import ARITY, LEVELS, MOVE, WHOLE_GAME_TARGET, _deploy, checkable_output

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the element's proof and recomputation
LOSS_KERNELS = ("cross_entropy", "cross_entropy_backward", "embedding_backward")


@pytest.fixture(scope="module")
def loss_contracts(w3: Any) -> dict[str, Any]:
    """The referee stack with RefereeGame's rules contracts [HostRules, none, RowRules] (the others empty)."""
    return deploy_referee_stack(w3, _deploy, ("HostRules", None, "RowRules"), ARITY, LEVELS, MOVE)


@pytest.fixture
def chain(w3: Any, loss_contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def loss_step() -> dict[str, Any]:
    """test_step_record's GPT with dropout 0.1 in segments of one step (step 0 recorded: its entries are the
    GPT step's), its states, binding and roots, and a recorded MLP step."""
    from engine.api import initial_checkpoint, record_first_steps

    from ..engine.helpers import with_fields
    from ..portable.test_step_record import gpt, mlp

    states, records, bindings = record_first_steps(with_fields(gpt(dropout=0.1), steps=2, segment_steps=1), None, 1)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1]),
            "mlp": record.record_step(mlp(), None, 0, initial_checkpoint(mlp(), None))[0]}  # fmt: skip


@pytest.fixture(scope="module")
def loss_kit(loss_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    """The honest party's dispute kit of the GPT step, written and read back."""
    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    step = loss_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(tmp_path_factory.mktemp("loss") / "kit", kit))


def consistently_wrong(rec: record.StepRecord, j: int, row: int) -> record.StepRecord:
    """The record with nll[row] of cross-entropy entry j one bit wrong (bit 20, so the mean moves too) and
    its mean recomputed from that nll (the referee model's fold): only a dispute of nll can catch it."""
    import dataclasses

    from protocol import referee_model as rm

    entry = rec.entries[j]
    nll = entry.outputs[1].copy()
    nll.view(np.uint32)[row] ^= 1 << 20
    bits = rm.check_element(record.referee_call(entry), 0, 0, {("nll", r): v for r, v in enumerate(nll)})
    mean = np.array(bits, dtype=np.uint32).view(np.float32).reshape(())
    assert mean.tobytes() != entry.outputs[0].tobytes()  # the wrong row moved the mean
    fixed = dataclasses.replace(entry, outputs=(mean, nll), out_roots=(tc.tensor_root(mean), tc.tensor_root(nll)))
    return dataclasses.replace(rec, entries=[*rec.entries[:j], fixed, *rec.entries[j + 1 :]])


def as_batch(entry: record.Entry) -> record.Entry:
    """The entry with its targets (cross-entropy's input 1) or ids (embedding_backward's input 0) a batch
    input (kind 2), as recorded before the batch was an entry of its own."""
    import dataclasses

    k = 0 if entry.kernel == "embedding_backward" else 1
    refs = tuple(dataclasses.replace(r, kind=record.BATCH, a=1) if i == k else r for i, r in enumerate(entry.inputs))
    return dataclasses.replace(entry, inputs=refs)


def _pattern(values: np.ndarray) -> list[int]:
    """Elements as RefereeGame reads them: a binary32's 32-bit pattern, an int64's 64-bit one."""
    flat = np.ascontiguousarray(values.reshape(-1))
    return flat.view(np.uint64 if flat.dtype.itemsize == 8 else np.uint32).tolist()


def plan_values(rec: record.StepRecord, entry: record.Entry, reads: list) -> tuple[int, ...]:
    """The values prove_element hands the rule for a RowRules plan (no zipped reads): each read's elements
    (`count` from `first`, `stride` apart) of its input, or of the entry's own output for a SELF read."""
    from protocol.referee_kit import SELF_READ

    values: list[int] = []
    for k, *_, first, count, stride in reads:
        source = entry.outputs[k - SELF_READ] if k >= SELF_READ else rec.input_value(entry, k)
        values += _pattern(source.reshape(-1)[first : first + count * stride : stride])
    return tuple(values)


@pytest.mark.parametrize("which", ["gpt", "mlp"])
def test_the_loss_rules_mirror_the_python_and_the_referee_model(loss_contracts, loss_step, which: str) -> None:
    """On every cross_entropy, cross_entropy_backward and embedding_backward output of the step (targets
    and ids outputs of its batch entries): RowRules checks it exactly when `row_checkable` does (all of
    them, and HostRules none), and for the first, second, middle and last element its reads are
    `row_strided_reads`' (a SELF read of output 1 for the mean, with the entry's own output fields; a
    stride of D for dy's column) and its rule, parameters and values read are `referee_calls.encode`'s
    from the referee model; with the targets or ids a batch input (kind 2) only the mean stays checkable."""
    from protocol import referee_calls
    from protocol.referee_kit import SELF, SELF_READ, host_checkable, parse_skeleton, row_checkable, row_strided_reads

    rules = loss_contracts["row_rules"].functions
    rec = loss_step["rec"] if which == "gpt" else loss_step["mlp"]
    seen = set()
    for entry in (e for e in rec.entries if e.kernel in LOSS_KERNELS):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in range(len(entry.out_shapes)):
            assert checkable_output(rules, entry, output) and row_checkable(parsed, output), (entry.kernel, output)
            assert not host_checkable(parsed, output)
            batch = as_batch(entry)
            mean = output == 0 and entry.kernel == "cross_entropy"
            assert checkable_output(rules, batch, output) is row_checkable(parse_skeleton(batch.skeleton_bytes()), output) is mean
            seen.add((entry.kernel, output))
            size = entry.outputs[output].size
            for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
                rule, params, reads, zipped = rules.plan(skeleton, output, element, []).call()
                assert [(r[0], r[7], r[8], r[9]) for r in reads] == row_strided_reads(parsed, output, element) and not zipped
                for k, kind, a, b, dtype, ndim, dims, *_ in reads:
                    if k >= SELF_READ:
                        assert (kind, b, dtype, tuple(dims[:ndim])) == (SELF, k - SELF_READ, *entry.out_shapes[k - SELF_READ])
                    else:
                        ref = parsed.inputs[k]
                        assert (kind, a, b, dtype, tuple(dims[:ndim])) == (ref.kind, ref.a, ref.b, ref.dtype, ref.shape)
                proven = record.proven_values(rec, entry, output, element)
                expected = referee_calls.encode(record.referee_call(entry), output, element, proven)
                assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.kernel, output, element)
                assert plan_values(rec, entry, reads) == expected.values, (entry.kernel, output, element)
    assert seen == {("cross_entropy", 0), ("cross_entropy", 1), ("cross_entropy_backward", 0)} | (
        {("embedding_backward", 0)} if which == "gpt" else set())


def _loss_match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], kernel: str, output: int, element: int,
                wrong: bool) -> Match:  # fmt: skip
    rec = step["rec"]
    target = next(e.index for e in rec.entries if e.kernel == kernel)
    truth = Side(step["roots"], rec, step["next_leaves"])
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
    # a wrong nll row comes with the mean recomputed from it (the mean then agrees with the defender's own nll)
    bad = consistently_wrong(rec, target, element) if (kernel, output) == ("cross_entropy", 1) else corrupt(rec, target, element, output)
    defender = Side([step["roots"][0], *later], bad, step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element, output=output)  # fmt: skip


def _element_of(rec: record.StepRecord, kernel: str, output: int) -> int:
    """The element each game disputes: the mean's one value; a row's loss and the backward in row 3;
    dW[v, d] of the first position's id v (a sum of several dy values where that id recurs)."""
    entry = next(e for e in rec.entries if e.kernel == kernel)
    if kernel == "embedding_backward":
        return int(rec.input_value(entry, 0).reshape(-1)[0]) * entry.out_shapes[0][1][1] + 3
    return 0 if (kernel, output) == ("cross_entropy", 0) else 3 * (entry.outputs[output].shape[-1] if output == 0 else 1) + 1


LOSS_TARGETS = [
    ("cross_entropy", 0, "the mean: a fold of the entry's own nll (a SELF read) over R"),
    ("cross_entropy", 1, "nll[r]: z's row r, then the int64 target t[r]"),
    ("cross_entropy_backward", 0, "[r, j]: z's row r, t[r], j, R and the upstream gradient"),
    ("embedding_backward", 0, "dW[v, d]: every int64 id, then dy's column d by a column proof"),
]


@pytest.mark.parametrize(("kernel", "output", "why"), LOSS_TARGETS, ids=[f"{t[0]}-{t[1]}" for t in LOSS_TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_loss_entry_is_ruled(chain, loss_contracts, loss_step, loss_kit, wrong: bool, kernel: str, output: int,
                               why: str) -> None:  # fmt: skip
    """Each loss output of the GPT step: a one-bit-wrong element is caught and a right one upheld by
    RowRules, within the proof's and the whole game's gas targets; the honest defender proves it with its
    dispute kit's arguments (read back from disk: the SELF proof of nll, the column proof of dy), which are
    the personas'. A wrong nll row whose mean was recomputed from it: the production player, as the honest
    challenger, disputes nll (the mean's rule reads it), not the mean, though both differ."""
    from worker.referee_player import RefereePlayer

    element = _element_of(loss_step["rec"], kernel, output)
    match = _loss_match(chain, loss_contracts, loss_step, kernel, output, element, wrong)
    if wrong and kernel == "cross_entropy":
        player = RefereePlayer(chain, loss_contracts, "challenger", loss_kit)
        theirs = match.defender.rec.entries[match.target].out_roots
        assert player.choose_output(match.target, theirs) == output
    match.play(PROOF, "defender")
    assert (match.game()["rules"], match.game()["output"]) == (2, output)  # RowRules decides it
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        j, e = match.target, match.per_chunk() * match.game()["chunk_index"] + match.game()["element"]
        proofs, columns = loss_kit.element_proof_args(j, output, e)
        assert (proofs, columns) == tuple(match.element_proof_args())
        match.send("defender", "host", "prove_element", match.game_id, loss_kit.entries[j].skeleton, proofs, [], columns)
    assert match.ruling() == (True, wrong, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


def test_forged_nll_roots_and_targets_are_refused(chain, loss_contracts, loss_step) -> None:
    """At PROOF for the mean (an honest defender): nll proven under output roots other than the revealed
    entry's (nll's root swapped for another tensor's) or with a value changed in its run is refused; at
    PROOF for a row's loss, a target with a changed value, or a target run proven as binary32 (z's
    chunks: the root binds the dtype), is refused; the honest proofs win."""
    step = loss_step
    match = _loss_match(chain, loss_contracts, step, "cross_entropy", 0, 0, wrong=False)
    match.play(PROOF, "defender")
    entry = match.defender.rec.entries[match.target]
    prove = match.host.functions.prove_element
    (nll,) = match.element_proofs()
    other = tc.tensor_root(entry.outputs[1] + np.float32(1.0))
    changed = list(nll[5])
    changed[0] = bytes([changed[0][0] ^ 1]) + changed[0][1:]
    forged = [((nll[0], [nll[1][0], other], *nll[2:]), "not the revealed entry's outputs"),
              ((*nll[:5], changed, nll[6]), "run not proven")]
    for proof, reason in forged:
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, entry.skeleton_bytes(), [proof], [], []).call({"from": match.d})
    match.prove_element()
    assert match.ruling() == (True, False, False)

    row = _loss_match(chain, loss_contracts, step, "cross_entropy", 1, 5, wrong=False)
    row.play(PROOF, "defender")
    *z_runs, target = row.element_proofs()
    flipped = list(target[5])
    flipped[0] = flipped[0][:15] + bytes([flipped[0][15] ^ 1]) + flipped[0][16:]  # t[5]'s low byte
    as_floats = (*target[:5], list(z_runs[0][5][: len(target[5])]), target[6])
    for proof in ((*target[:5], flipped, target[6]), as_floats):
        with pytest.raises(Exception, match="run not proven"):
            prove(row.game_id, entry.skeleton_bytes(), [*z_runs, proof], [], []).call({"from": row.d})
    row.prove_element()
    assert row.ruling() == (True, False, False)


# (kernel, output, size, width, one wider): the dearest accepted elements (personas.row_worst_case) and the
# next size, not checkable: cross-entropy's rows of 32 logits (32 divides 256: one run) and of 29 (a row
# across a run boundary: two), the mean over 256 rows, embedding_backward at its one-piece load (160 positions
# of dy rows of 1, a load of 391; 136 of rows of 4, 392)
WIDEST = [("cross_entropy", 1, 32, 1, 33), ("cross_entropy", 1, 29, 1, 30), ("cross_entropy_backward", 0, 32, 1, 33),
          ("cross_entropy_backward", 0, 29, 1, 30), ("cross_entropy", 0, 256, 1, 257), ("embedding_backward", 0, 160, 1, 161),
          ("embedding_backward", 0, 136, 4, 137)]  # fmt: skip


@pytest.mark.parametrize(("kernel", "output", "size", "width", "wider"), WIDEST, ids=[f"{w[0]}-{w[1]}-{w[2]}x{w[3]}" for w in WIDEST])
def test_the_widest_loss_element_accepted_costs_under_a_million_gas(chain, loss_contracts, kernel, output, size, width, wider) -> None:
    """The dearest prove_element the loss rules let an honest defender make in one piece (every input under
    the deepest record path, a prefix of a source as large as a kit holds; the mean's nll under the entry's
    own output roots), with values as a trained model's and adversarial ones (`ADVERSE_SCALES`): decided,
    under 1,000,000 gas; one size larger is not checkable as one piece in
    RowRules or its mirror: a row escalates, while the mean's and dW's folds are then cut in pieces
    (`fold_rules.loss_piecing`: checkable only with the running values the recorder adds, test_loss_pieces)."""
    import dataclasses

    from personas.row_worst_case import ADVERSE_SCALES, dearest_loss_element, largest_loss_proof
    from protocol import fold_rules
    from protocol.referee_kit import parse_skeleton, row_checkable, rules_of

    gas = [largest_loss_proof(chain, loss_contracts["host"], kernel, size, output, game_id=70 + n, width=width, scale=scale)
           for n, scale in enumerate((1.0, *ADVERSE_SCALES[kernel]))]  # values as trained, then adversarial ones
    print(f"{kernel} output {output} at {size}x{width}: {gas} gas")
    assert max(gas) <= PROVE_ELEMENT_TARGET, (kernel, size, gas)
    rules = loss_contracts["row_rules"].functions
    for at, checkable in ((size, True), (wider, False)):
        entry = dearest_loss_element(kernel, at, output, width)[0]
        fold = kernel in ("cross_entropy", "embedding_backward") and output == 0
        if fold:  # the mean's or dW's fold: in pieces exactly past the one-piece cap
            assert (fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes())) is not None) is not checkable
        if fold and not checkable:  # as one piece (no running values): not checkable
            base = fold_rules.LOSS_BASE_OUTPUTS[kernel]
            entry = dataclasses.replace(entry, out_shapes=entry.out_shapes[:base], out_roots=entry.out_roots[:base])
        skeleton = entry.skeleton_bytes()
        assert rules.output_of(skeleton, output).call()[1] is checkable, (kernel, at)
        parsed = parse_skeleton(skeleton)
        assert row_checkable(parsed, output) is checkable and (rules_of(parsed, output) is not None) is checkable


KINDS = (record.STATE, record.BATCH, record.OUTPUT, record.HEADER, record.CONSTANT)


@st.composite
def _loss_entries(draw: Any) -> record.Entry:
    """A loss kernel's entry with drawn shapes, reference kinds, dtypes and arguments: mostly as the engine
    records them, sometimes off (a batch, header or binary32 target, a row or a fold too wide, a load over
    the cap, a mismatched shape, an integer gradient, a mean without its nll)."""
    kernel = draw(st.sampled_from(LOSS_KERNELS))

    def ref(shape: tuple[int, ...], dtype: int) -> record.Ref:
        kind = draw(st.sampled_from(KINDS)) if draw(st.integers(0, 5)) == 0 else record.OUTPUT
        dtype = draw(st.sampled_from([1, 2])) if draw(st.integers(0, 9)) == 0 else dtype
        root = keccak(repr(shape).encode()) if kind == record.CONSTANT else tc.ZERO
        return record.Ref(kind, draw(st.integers(0, 50)), draw(st.integers(0, 3)), dtype, shape, root)

    def off(shape: tuple[int, ...]) -> tuple[int, ...]:  # itself, mostly
        return draw(st.sampled_from([shape] * 4 + [(*shape[:-1], shape[-1] + 1), (*shape, 1)]))

    if kernel == "embedding_backward":
        positions = draw(st.sampled_from([1, 16, 64, 128, 129, 140, 141, 164, 165, 256, 257]))
        width = draw(st.sampled_from([1, 2, 4, 16, 33]))
        ids = draw(st.sampled_from([(positions,), (1, positions)]))
        refs = (ref(ids, 2), ref(off((positions, width)), 1))
        return record.Entry(7, kernel, (("input", 0), ("input", 1), 8), refs, ((1, off((8, width))),), (tc.ZERO,))
    rows = draw(st.sampled_from([1, 5, 64, 256, 257]))
    width = draw(st.sampled_from([1, 3, 8, 16, 29, 30, 32, 33, 64]))
    refs = (ref(off((rows, width)), 1), ref(off((rows,)), 2))
    if kernel == "cross_entropy":
        outs = draw(st.sampled_from([((1, ()), (1, (rows,)))] * 4 + [((1, ()),), ((1, ()), (1, (rows + 1,))), ((1, (2,)), (1, (rows,)))]))
        return record.Entry(7, kernel, (("input", 0), ("input", 1)), refs, outs, (tc.ZERO,) * len(outs))
    grad = draw(st.sampled_from([np.float32(1.0), 0.5, 1]))
    return record.Entry(7, kernel, (("input", 0), ("input", 1), grad), refs, ((1, off((rows, width))),), (tc.ZERO,))


@settings(max_examples=examples(25), deadline=None)
@given(_loss_entries(), st.data())
def test_the_loss_rules_and_their_mirror_agree_on_any_entry(loss_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn loss skeletons: RowRules' `output_of` says checkable exactly when `row_checkable` does, and
    for a drawn element of a checkable output its reads (input, first, count, stride) are
    `row_strided_reads`', a constant's with its root in `a`."""
    from protocol.referee_kit import CONSTANT, SELF_READ, row_checkable, row_strided_reads

    rules = loss_contracts["row_rules"].functions
    for parsed, output, element, reads in drawn_plans(rules, entry, row_checkable, data):
        assert [(r[0], r[7], r[8], r[9]) for r in reads] == row_strided_reads(parsed, output, element)
        for r in reads:
            if r[0] < SELF_READ:
                ref = parsed.inputs[r[0]]
                assert r[2] == (int.from_bytes(ref.root, "big") if ref.kind == CONSTANT else ref.a)
