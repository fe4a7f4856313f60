"""RowRules.vy (contracts/lib/row_rules.vy), the third of RefereeGame's rules contracts: the host rules of
rms_norm, the norm backwards' dx, dropout's selections (scaled_keep and where: a bool mask and a
constant) and its keep mask (dropout_keep: a bool output from the seed and step of r_t's header).
Against its Python mirror (`protocol.referee_kit.row_checkable`, `row_reads`) and the referee model
(`referee_calls.encode`) on every entry of a recorded tiny-GPT step with dropout and a Llama step; then
games played to a ruling on anvil over the GPT step (RefereeGame asking HostRules, then RowRules), and
forged proofs of a bool mask, a constant and a header refused."""

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
from .test_referee_game import ARITY, LEVELS, MOVE, WHOLE_GAME_TARGET, _deploy, checkable_output, one_entry_of_each_kind

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the element's proof and recomputation
ROW_DECIDED = {"gpt": {"layer_norm_backward", "scaled_keep", "where", "dropout_keep"},
               "llama": {"rms_norm", "rms_norm_backward", "scaled_keep", "where", "dropout_keep"}}  # fmt: skip


@pytest.fixture(scope="module")
def row_contracts(w3: Any) -> dict[str, Any]:
    """The referee stack with RefereeGame's rules contracts [HostRules, none, RowRules] (FoldRules' slot empty)."""
    made = deploy_referee_stack(w3, _deploy, ("HostRules", None, "RowRules"), ARITY, LEVELS, MOVE)
    return {**made, "rules": made["row_rules"], "host_rules": made["rules"]}


@pytest.fixture
def chain(w3: Any, row_contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def dropout_step() -> dict[str, Any]:
    """The states and step records of a one-block portable GPT with dropout 0.1 (test_step_record's `gpt`)."""
    from engine.api import record_first_steps

    from ..portable.test_step_record import gpt

    states, records, bindings = record_first_steps(gpt(dropout=0.1), None, 3)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1])}  # fmt: skip


def _bits(value: np.ndarray) -> list[int]:
    """Elements as the rules read them: a binary32's pattern, a bool 0 or 1."""
    flat = value.reshape(-1)
    return [int(v) for v in (flat.astype(np.uint8) if flat.dtype == np.bool_ else flat.view(np.uint32))]


def _header_words(header: bytes) -> list[int]:
    """The seed and step of a 156-byte state header (what RefereeGame decodes from the proven header)."""
    return [int.from_bytes(header[80:88], "big"), int.from_bytes(header[32:40], "big")]


def _assert_plans_match(rules: Any, rec: record.StepRecord, entry: record.Entry, output: int, header: bytes) -> None:
    """RowRules' plans of the first, second, middle and last element against `row_reads` (input, reference,
    run; a constant's read carrying the skeleton's root in `a`) and `referee_calls.encode` (rule,
    parameters, the values read in the plan's order; a header read's values the agreed header's seed and
    step)."""
    from protocol import referee_calls
    from protocol.referee_kit import CONSTANT, HEADER, parse_skeleton, row_reads

    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    size = entry.outputs[output].size
    for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
        rule, params, reads, zipped = rules.plan(skeleton, output, element, []).call()
        assert [(r[0], r[7], r[8]) for r in reads] == row_reads(parsed, output, element) and not zipped
        assert all(r[9] == 1 for r in reads)  # runs, never strided
        values: list[int] = []
        for k, kind, a, b, dtype, ndim, read_dims, first, count, _ in reads:
            ref = parsed.inputs[k]
            expected_a = int.from_bytes(ref.root, "big") if ref.kind == CONSTANT else ref.a
            assert (kind, a, b, dtype, tuple(read_dims[:ndim])) == (ref.kind, expected_a, ref.b, ref.dtype, ref.shape)
            values += _header_words(header) if kind == HEADER else _bits(rec.input_value(entry, k))[first : first + count]
        proven = record.proven_values(rec, entry, output, element)
        expected = referee_calls.encode(record.referee_call(entry), output, element, proven)
        assert (rule, tuple(params), tuple(values)) == (expected.rule, expected.params, expected.values), (entry.kernel, output)


@pytest.mark.parametrize("which", ["gpt", "llama"])
def test_the_row_rules_mirror_the_python_and_the_referee_model(row_contracts, dropout_step, which: str) -> None:
    """On every entry of a GPT step with dropout and of a Llama step: RowRules says an output is checkable
    exactly when `row_checkable` does (with the skeleton's output count, dtype and shape), never one that
    HostRules already decides, and its plans are the mirror's and the referee model's (one entry of each
    kernel, arguments and input shapes); the norm backwards' other outputs (column folds) are left to
    FoldRules' slot."""
    from engine.api import record_first_steps
    from protocol.referee_kit import host_checkable, parse_skeleton, row_checkable

    from ..portable.test_step_record import llama

    rules = row_contracts["rules"].functions
    if which == "gpt":
        rec, header = dropout_step["rec"], tc.header_proof(dropout_step["before"], dropout_step["binding"])[0]
    else:
        states, records, bindings = record_first_steps(llama(), None, 2)
        rec, header = records[0], tc.header_proof(states[0], bindings[0])[0]
    decided = set()
    for entry in one_entry_of_each_kind(rec):
        if entry.kernel in ("cross_entropy", "cross_entropy_backward", "embedding_backward"):
            continue  # the loss rules' int64, strided and own-output reads: tests/unit/contracts/test_loss_rules.py
        parsed = parse_skeleton(entry.skeleton_bytes())
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(rules, entry, output)
            assert checkable == row_checkable(parsed, output), (entry.index, entry.kernel, output)
            assert not (checkable and host_checkable(parsed, output))
            if checkable:
                decided.add(entry.kernel)
                _assert_plans_match(rules, rec, entry, output, header)
    assert decided == ROW_DECIDED[which]
    with pytest.raises(Exception, match="row_rules: not a checkable element"):
        backward = next(e for e in rec.entries if e.kernel.endswith("norm_backward"))
        rules.plan(backward.skeleton_bytes(), 1, 0, []).call()  # dw: a fold, not a row


def test_a_row_that_crosses_a_run_boundary(row_contracts) -> None:
    """rms_norm over rows of 48 reads row 5 (elements 240-287) in two runs; a backward over rows of 48 of
    more than 256 elements would need six runs, so it is not checkable (it escalates), while rows of 48 in
    at most 256 elements are."""
    from protocol.referee_kit import parse_skeleton, row_checkable, row_reads

    rules = row_contracts["rules"].functions
    x = record.Ref(record.OUTPUT, 0, 0, 1, (6, 48))
    w = record.Ref(record.STATE, 1, 0, 1, (48,))
    norm = record.Entry(9, "rms_norm", (("input", 0), ("input", 1), 1e-5), (x, w), ((1, (6, 48)), (1, (6, 48)), (1, (6,))),
                        (tc.ZERO,) * 3)  # fmt: skip
    skeleton = norm.skeleton_bytes()
    reads = rules.plan(skeleton, 0, 5 * 48 + 7, []).call()[2]
    assert [(r[0], r[7], r[8]) for r in reads] == [(0, 240, 16), (0, 256, 32), (1, 7, 1)]
    assert [(r[0], r[7], r[8]) for r in reads] == row_reads(parse_skeleton(skeleton), 0, 5 * 48 + 7)
    for rows, checkable in ((6, False), (5, True)):
        x = record.Ref(record.OUTPUT, 0, 1, 1, (rows, 48))
        refs = (x, record.Ref(record.OUTPUT, 0, 2, 1, (rows,)), w, record.Ref(record.OUTPUT, 1, 0, 1, (rows, 48)))
        backward = record.Entry(9, "rms_norm_backward", tuple(("input", k) for k in range(4)), refs,
                                ((1, (rows, 48)), (1, (48,))), (tc.ZERO,) * 2)  # fmt: skip
        assert rules.output_of(backward.skeleton_bytes(), 0).call()[1] is checkable
        assert row_checkable(parse_skeleton(backward.skeleton_bytes()), 0) is checkable


KINDS = (record.STATE, record.OUTPUT, record.HEADER, record.CONSTANT)


@st.composite
def _row_entries(draw: Any) -> record.Entry:
    """An entry of a row kernel with drawn shapes, reference kinds, dtypes and arguments: mostly as the
    engine records them, sometimes off (a wide or boundary-crossing row, a shape that does not
    broadcast, a float mask, a p outside [0, 1], a constant where a norm reads)."""
    kernel = draw(st.sampled_from(["rms_norm", "rms_norm_backward", "layer_norm_backward", "where", "scaled_keep",
                                   "dropout_keep"]))  # fmt: skip
    rows, width = draw(st.integers(1, 12)), draw(st.sampled_from([1, 3, 16, 48, 67, 68, 69, 100, 236, 237, 256, 257]))
    lead = draw(st.sampled_from([(), (rows,), (2, rows)]))
    x = (*lead, width)

    def ref(shape: tuple[int, ...], dtype: int = 1) -> record.Ref:
        kind = draw(st.sampled_from(KINDS)) if draw(st.integers(0, 9)) == 0 else record.OUTPUT
        dtype = draw(st.sampled_from([1, 4])) if draw(st.integers(0, 9)) == 0 else dtype
        root = keccak(repr(shape).encode()) if kind == record.CONSTANT else tc.ZERO
        return record.Ref(kind, draw(st.integers(0, 50)), draw(st.integers(0, 3)), dtype, shape, root)

    def some(shape: tuple[int, ...]) -> tuple[int, ...]:  # itself, or a broadcast source, or a mismatch
        return draw(st.sampled_from([shape, shape, shape, shape[1:], tuple(1 for _ in shape), (*shape[:-1], shape[-1] + 1)]))

    count = _size(x) // width
    if kernel == "rms_norm":
        refs, args = (ref(x), ref(some((width,)))), (("input", 0), ("input", 1), draw(st.sampled_from([1e-5, np.float32(1e-6)])))
        outs = ((1, x), (1, x), (1, (count,)))
    elif kernel.endswith("_backward"):
        refs = (ref(x), ref((count,)), ref(some((width,))), ref(some(x)))
        args = tuple(("input", k) for k in range(4))
        outs = ((1, x), (1, (width,))) + (((1, (width,)),) if kernel == "layer_norm_backward" else ())
    elif kernel == "dropout_keep":
        refs = (record.Ref(draw(st.sampled_from([record.HEADER, record.HEADER, record.STATE]))),)
        args = (("input", 0), draw(st.sampled_from([0.0, 0.1, 1.0, 1.5, -0.0])), draw(st.integers(0, 40)))
        outs = ((draw(st.sampled_from([4, 4, 1])), x),)
    else:
        operands = 3 if kernel == "where" else 2
        mask = 0 if kernel == "where" else 1
        refs = tuple(ref(some(x), 4 if k == mask else 1) for k in range(operands))
        args = tuple(("input", k) for k in range(operands)) + ((np.float32(1.25),) if kernel == "scaled_keep" else ())
        outs = ((1, x),)
    return record.Entry(7, kernel, args, refs, outs, (tc.ZERO,) * len(outs))


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@settings(max_examples=examples(25), deadline=None)
@given(_row_entries(), st.data())
def test_row_rules_and_their_mirror_agree_on_any_entry(row_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn row-kernel skeletons: RowRules' `output_of` says checkable exactly when `row_checkable`
    does, and for a drawn element of a checkable output its reads are `row_reads`' (a constant's with its
    root in `a`)."""
    from protocol.referee_kit import CONSTANT, row_checkable, row_reads

    rules = row_contracts["rules"].functions
    for parsed, output, element, reads in drawn_plans(rules, entry, row_checkable, data):
        assert [(r[0], r[7], r[8]) for r in reads] == row_reads(parsed, output, element)
        assert [r[2] for r in reads] == [int.from_bytes(parsed.inputs[r[0]].root, "big") if parsed.inputs[r[0]].kind == CONSTANT
                                         else parsed.inputs[r[0]].a for r in reads]  # fmt: skip


# The dropout GPT's entries RowRules decides: (kernel, element, what it shows)
ROW_TARGETS = [
    ("layer_norm_backward", -3, "dx: the row of x̂, rstd, all of w, the row of dy"),
    ("scaled_keep", -3, "the attention weights times their bool keep mask (32 a chunk)"),
    ("where", -3, "dropout's select: the bool mask, x, and the 0-d constant its skeleton carries the root of"),
    ("dropout_keep", -3, "a bool keep mask (32 a chunk) from the seed and step of r_t's header, proven as its leaf 0"),
]


def _row_match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], kernel: str, element: int, wrong: bool) -> Match:
    rec = step["rec"]
    target = next(e.index for e in rec.entries if e.kernel == kernel)
    truth = Side(step["roots"], rec, step["next_leaves"])
    element %= rec.entries[target].outputs[0].size
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
    defender = Side([step["roots"][0], *later], corrupt(rec, target, element), step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element)  # fmt: skip


@pytest.mark.parametrize(("kernel", "at", "why"), ROW_TARGETS, ids=[t[0] for t in ROW_TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_row_entry_is_ruled(chain, row_contracts, dropout_step, wrong: bool, kernel: str, at: int, why: str) -> None:
    """The first entry of each kernel RowRules decides in the dropout GPT step: a one-bit-wrong output
    element is caught and a right one upheld, within the whole-game and the proof's gas targets."""
    match = _row_match(chain, row_contracts, dropout_step, kernel, at, wrong)
    match.play(PROOF, "defender")
    assert match.game()["rules"] == 2  # RowRules decides it
    before = match.gas["defender"]
    match.prove_element()
    assert match.ruling() == (True, wrong, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


def test_forged_mask_and_constant_proofs_are_refused_and_a_kit_s_proofs_win(chain, row_contracts, dropout_step, tmp_path) -> None:
    """At PROOF for dropout's `where` (an honest defender): the constant proven under another root, the bool
    mask's run with a byte flipped, or its chunks replaced by binary32 chunks (a float read as bools: the
    mask's root binds its dtype), are refused. A dispute kit of the step, written and read back, holds
    each constant input (checked against the root its skeleton carries): its proofs of the element are
    the personas' and win; a kit whose constant is not that root is refused."""
    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    step = dropout_step
    match = _row_match(chain, row_contracts, step, "where", -3, wrong=False)
    match.play(PROOF, "defender")
    entry = match.defender.rec.entries[match.target]
    prove = match.host.functions.prove_element
    honest = match.element_proofs()
    mask, x, constant = honest
    assert [r.kind for r in entry.inputs] == [record.OUTPUT, record.OUTPUT, record.CONSTANT] and entry.inputs[0].dtype == 4
    one = np.array(1.0, dtype=np.float32)
    other = match.constant_proof(tc.tensor_root(one), one, 0, 1)
    flipped = list(mask)
    flipped[5] = [bytes([mask[5][0][0] ^ 1]) + mask[5][0][1:], *mask[5][1:]]
    as_floats = list(mask)
    as_floats[5] = list(x[5][: len(mask[5])])
    cases = [([mask, x, other], "not the skeleton's constant"), ([tuple(flipped), x, constant], "run not proven"),
             ([tuple(as_floats), x, constant], "run not proven")]  # fmt: skip
    for proofs, reason in cases:
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, entry.skeleton_bytes(), proofs, []).call({"from": match.d})

    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    path = rk.write_kit(tmp_path / "kit", kit)
    loaded = rk.load_kit(path)
    wheres = [e.index for e in step["rec"].entries if e.kernel == "where"]
    assert wheres and all((j, 2) in loaded.constants for j in wheres)
    game = match.game()
    proofs = loaded.element_proofs(game["entry"], 0, 8 * game["chunk_index"] + game["element"])
    assert proofs == [tuple(p) for p in honest]
    match.send("defender", "host", "prove_element", match.game_id, kit.entries[game["entry"]].skeleton, proofs, [])
    assert match.ruling() == (True, False, False)
    tensors = rk.decode_tensors((path / rk.OUTPUTS_FILE).read_bytes(), "outputs")
    name = f"e{wheres[0]:07d}.c2"
    tensors[name] = tensors[name] + np.float32(1.0)
    (path / rk.OUTPUTS_FILE).write_bytes(rk.encode_tensors(tensors))
    with pytest.raises(rk.KitError, match="not the root its skeleton carries"):
        rk.load_kit(path)


def test_the_production_player_answers_a_bool_output_and_forged_headers_are_refused(chain, row_contracts, dropout_step) -> None:
    """A game the personas play to ELEMENT against a defender whose dropout_keep mask (a bool output, 32 a
    chunk) has one element negated: worker.referee_player as the honest challenger names that element of
    the revealed chunk. At PROOF, the header of another state (the agreed checkpoint bound to another
    step count: another leaf 0), a header whose seed is changed, or one cut to four words are refused;
    the defender's player, from its own kit, proves r_t's header with the arguments the personas send,
    and loses."""
    import dataclasses

    from personas.referee_game import ELEMENT, side_kit
    from protocol.referee_kit import header_input_proof
    from worker.referee_player import PROOF as PLAYER_PROOF
    from worker.referee_player import RefereePlayer

    step, rec = dropout_step, dropout_step["rec"]
    match = _row_match(chain, row_contracts, step, "dropout_keep", -3, wrong=True)
    match.play(ELEMENT, "challenger")
    game = match.game()
    assert game["wide_code"] == 4 and game["chunk_index"] == match.target_element // 32
    honest = side_kit(Side(step["roots"], rec, step["next_leaves"]), step["before"], step["binding"])
    challenger = RefereePlayer(chain, row_contracts, "challenger", honest)
    assert challenger.choose_element(game) == match.target_element % 32
    match.dispute_element()

    entry = rec.entries[match.target]
    prove = match.host.functions.prove_element
    header, path = tc.header_proof(step["before"], step["binding"])
    other = tc.header_proof(step["before"], dataclasses.replace(step["binding"], segment_steps=5))
    reseeded = header[:80] + (int.from_bytes(header[80:88], "big") ^ 1).to_bytes(8, "big") + header[88:]
    right = header_input_proof(header, path)
    cut = (*right[:5], right[5][:4], right[6])
    for proof in (header_input_proof(*other), header_input_proof(reseeded, path), cut):
        with pytest.raises(Exception, match="header not under the agreed state"):
            prove(match.game_id, entry.skeleton_bytes(), [proof], []).call({"from": match.d})

    defender = RefereePlayer(chain, row_contracts, "defender", side_kit(match.defender, step["before"], step["binding"]))
    move = defender._host_move(match.game_id, match.game(), PLAYER_PROOF)
    assert move.function == "prove_element" and move.args[2] == match.element_proofs() == [right]
    match.send("defender", "host", move.function, *move.args)
    assert match.ruling() == (True, True, False)


@pytest.mark.parametrize("kernel", ["softmax", "softmax_backward", "layer_norm", "rms_norm", "rms_norm_backward",
                                    "layer_norm_backward"])  # fmt: skip
def test_the_widest_row_accepted_costs_under_a_million_gas(chain, row_contracts, kernel: str) -> None:
    """The dearest prove_element the row caps let an honest defender make (`personas.row_worst_case`: a
    row of the cap's width placed where its reads open the most proof words, in two runs where it
    crosses a 256-element boundary, every input under the deepest record path and a prefix of a source
    as large as a kit holds), for every output the cap covers, three draws of the values and the
    adversarial values (`ADVERSE_SCALES`: subnormal operands and products, sums of subnormals): decided,
    under 1,000,000 gas; one element wider is not checkable, in Vyper (HostRules or RowRules) and in
    the Python mirror (`host_checkable`, `row_checkable`), so it escalates."""
    from personas.row_worst_case import ADVERSE_SCALES, KERNELS, largest_row_proof, row_entry
    from protocol.referee_kit import ROW_CAPS, host_checkable, parse_skeleton, row_checkable, rules_of

    cap = ROW_CAPS[kernel]
    draws = [(seed, 1.0) for seed in range(3)] + [(0, scale) for scale in ADVERSE_SCALES[kernel]]
    gas = [(largest_row_proof(chain, row_contracts["host"], kernel, cap, output, game_id=80 + 16 * output + n, seed=seed,
                              scale=scale), output, scale) for output in KERNELS[kernel] for n, (seed, scale) in enumerate(draws)]  # fmt: skip
    assert max(g for g, _, _ in gas) <= PROVE_ELEMENT_TARGET, (kernel, cap, gas)
    rules = row_contracts["rules" if kernel in ("rms_norm", "rms_norm_backward", "layer_norm_backward") else "host_rules"]
    mirror = row_checkable if rules is row_contracts["rules"] else host_checkable
    for width, checkable in ((cap, True), (cap + 1, False)):
        skeleton = row_entry(kernel, width, 1).skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in KERNELS[kernel]:
            assert rules.functions.output_of(skeleton, output).call()[1] is checkable, (kernel, width, output)
            assert mirror(parsed, output) is checkable and (rules_of(parsed, output) is not None) is checkable


def test_a_norm_backward_whose_weight_gradients_are_pieced_still_has_its_dx_checked(row_contracts) -> None:
    """The tiny-GPT preset's layer_norm_backward over 512 rows: FoldRules checks its dw and db in pieces, so
    the entry has a fourth output (their running values); RowRules still decides dx, as its mirror does, and
    not the other outputs."""
    from engine.api import initial_checkpoint, record_step
    from engine.presets import tiny_gpt_spec
    from protocol import fold_rules
    from protocol.referee_kit import parse_skeleton, row_checkable

    spec = tiny_gpt_spec(arithmetic="portable/1")
    rec, _ = record_step(spec, None, 0, initial_checkpoint(spec, None))
    entry = next(e for e in rec.entries if e.kernel == "layer_norm_backward")
    parsed = parse_skeleton(entry.skeleton_bytes())
    assert len(entry.out_shapes) == 4 and fold_rules.running_values_output(parsed) == 3
    rules = row_contracts["rules"].functions
    assert [checkable_output(rules, entry, o) for o in range(4)] == [row_checkable(parsed, o) for o in range(4)]
    assert row_checkable(parsed, 0) and not any(row_checkable(parsed, o) for o in (1, 2, 3))
