"""ScalarRules.vy (contracts/lib/scalar_rules.vy, lib/scalar_math.vy), the fifth of RefereeGame's rules
contracts: the optimizer's per-step scalars (`adamw_scalars`, `sgd_scalars`: the schedule, the portable
cos and powers in binary64, for the step the defender names and the header proves) and clipping
(`clip_scale`: its binary64 running Σ g² piece by piece, reading the previous piece's value of the same
output, and the factor from the last). Against the Python mirror (`protocol.scalar_rules`) and the
referee model on recorded MLP (AdamW, cosine schedule, clipping), GPT (linear schedule, dropout) and CNN
(SGD with Nesterov momentum) steps and against engine/portable/scalars.py on drawn configurations; then
games played to a ruling on anvil."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import ELEMENT, OUTPUT, PROOF, Match, Side, corrupt, deploy_referee_stack
from protocol import referee_calls, scalar_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import SCALAR_RULES, SELF_READ, parse_skeleton, rules_of

from ..engine.helpers import examples, tiny_cnn
from .helpers import drawn_plans, reverted
from .test_referee_game import ARITY, LEVELS, MOVE, WHOLE_GAME_TARGET, _deploy, checkable_output, one_entry_of_each_kind
from .vyper_harness import deploy

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the element's proof and recomputation
SCALAR_DECIDED = {"mlp": {"adamw_scalars", "clip_scale"}, "gpt": {"adamw_scalars", "clip_scale"}, "cnn": {"sgd_scalars", "sgd"}}


@pytest.fixture(scope="module")
def scalar_contracts(w3: Any) -> dict[str, Any]:
    """The referee stack with RefereeGame's rules contracts [HostRules, none, none, none, ScalarRules]."""
    made = deploy_referee_stack(w3, _deploy, ("HostRules", None, None, None, "ScalarRules"), ARITY, LEVELS, MOVE)
    return {**made, "rules": made["scalar_rules"], "host_rules": made["rules"]}


@pytest.fixture
def chain(w3: Any, scalar_contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


def _steps(spec: Any, count: int) -> dict[str, Any]:
    from engine.api import record_first_steps

    states, records, bindings = record_first_steps(spec, None, count)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"states": states, "bindings": bindings, "roots": roots, "records": records}


@pytest.fixture(scope="module")
def cnn_step() -> dict[str, Any]:
    """Step 0 of a small CNN (SGD with Nesterov momentum)."""
    return _step_at(_steps(tiny_cnn(arithmetic="portable/1", batch_size=2), 1), 0)


@pytest.fixture(scope="module")
def mlp_clip() -> dict[str, Any]:
    """Two steps of test_step_record's MLP with grad_clip_norm 0.5 (AdamW, cosine after one warm-up step)."""
    from ..portable.test_step_record import mlp

    return _steps(mlp(grad_clip_norm=0.5), 2)


def _step_at(steps: dict[str, Any], t: int) -> dict[str, Any]:
    """What both parties hold for a game over step t (r_t agreed)."""
    return {"before": steps["states"][t], "binding": steps["bindings"][t], "roots": steps["roots"][t:],
            "rec": steps["records"][t], "next_leaves": tc.bound_state_leaves(steps["states"][t + 1], steps["bindings"][t + 1])}  # fmt: skip


def _header(step: dict[str, Any]) -> bytes:
    return tc.header_proof(step["before"], step["binding"])[0]


def _values(rec: record.StepRecord, entry: record.Entry, reads: list, header: bytes) -> tuple[int, ...]:
    """The values prove_element hands the rule: the header's seed and step, or each run's bit patterns
    (binary32 of a gradient, binary64 of the entry's own partials or of a clip_sum's previous group's)."""
    values: list[int] = []
    for k, kind, _, b, code, _, _, first, count, _ in reads:
        if kind == scalar_rules.HEADER:
            values += [int.from_bytes(header[80:88], "big"), int.from_bytes(header[32:40], "big")]
        elif kind == scalar_rules.SELF:
            values += entry.outputs[b].reshape(-1).view(np.uint64)[first : first + count].tolist()
        else:
            wide = np.uint64 if code == scalar_rules.FLOAT64 else np.uint32
            values += rec.input_value(entry, k).reshape(-1).view(wide)[first : first + count].tolist()
    return tuple(values)


def _assert_plans_match(rules: Any, rec: record.StepRecord, entry: record.Entry, output: int, header: bytes) -> None:
    """ScalarRules' plans of every scalar (or the first, second, middle and last partial, the factor)
    against `scalar_reads` and `referee_calls.encode` (rule, parameters, the values in the plan's order)."""
    parsed = parse_skeleton(entry.skeleton_bytes())
    step = int.from_bytes(header[32:40], "big")
    scalar = entry.kernel in scalar_rules.SCALAR_KERNELS
    hints = list(scalar_rules.scalar_hints(step)) if scalar else []
    size = entry.outputs[output].size
    for element in sorted(range(size) if scalar else {0, 1, size // 2, size - 1} & set(range(size))):
        rule, params, reads, zipped = rules.plan(entry.skeleton_bytes(), output, element, hints).call()
        mirror = [(SELF_READ + r[3] if r[1] == scalar_rules.SELF else r[0], r[7], r[8]) for r in reads]
        assert mirror == scalar_rules.scalar_reads(parsed, output, element) and not zipped
        own = 0 if entry.kernel == "clip_sum" else 1  # the partials: clip_sum's output 0, clip_scale's 1
        for k, kind, a, b, dtype, ndim, dims, _, _, stride in reads:
            expected = (scalar_rules.SELF, 0, own, 3, entry.outputs[own].shape) if kind == scalar_rules.SELF else \
                (parsed.inputs[k].kind, parsed.inputs[k].a, parsed.inputs[k].b, parsed.inputs[k].dtype, parsed.inputs[k].shape)  # fmt: skip
            assert (kind, a, b, dtype, tuple(dims[:ndim])) == expected and stride == 1
        proven = record.proven_values(rec, entry, output, element)
        want = referee_calls.encode(record.referee_call(entry), output, element, proven)
        assert (rule, tuple(params), _values(rec, entry, reads, header)) == (want.rule, want.params, want.values)
        if scalar:  # the plan's scalar is the recorded one
            assert params[0] == int(entry.outputs[0].view(np.uint32)[element])


@pytest.mark.parametrize("which", ["mlp", "gpt", "cnn"])
def test_the_scalar_rules_mirror_the_python_and_the_referee_model(scalar_contracts, mlp_clip, cnn_step, which: str) -> None:
    """On every entry of an MLP step with clipping (step 1: the cosine schedule), a GPT step with dropout
    (linear warm-up) and a CNN step (SGD, Nesterov momentum): ScalarRules calls an output checkable exactly
    when `scalar_checkable` does, no output HostRules decides, and exactly the scalar entries',
    clipping's and SGD's updates' outputs are left to it; its plans are the mirror's and the referee model's,
    and each planned scalar is the one the engine recorded."""
    from protocol.referee_kit import host_checkable

    from ..portable.test_step_record import gpt

    rules = scalar_contracts["rules"].functions
    step = {"mlp": lambda: _step_at(mlp_clip, 1), "cnn": lambda: cnn_step, "gpt": lambda: _step_at(_steps(gpt(dropout=0.1), 1), 0)}[which]()
    rec, header = step["rec"], _header(step)
    decided = set()
    for entry in one_entry_of_each_kind(rec):
        parsed = parse_skeleton(entry.skeleton_bytes())
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(rules, entry, output)
            assert checkable == scalar_rules.scalar_checkable(parsed, output), (entry.kernel, output)
            assert not (checkable and host_checkable(parsed, output))
            if checkable:
                assert rules_of(parsed, output) == SCALAR_RULES
                decided.add(entry.kernel)
                _assert_plans_match(rules, rec, entry, output, header)
    assert decided == SCALAR_DECIDED[which]


@st.composite
def _configs(draw: Any) -> tuple[Any, Any, int, int]:
    from protocol.spec import SGD, AdamW, Schedule

    total = draw(st.integers(1, 5_000))
    unit = st.floats(0, 1, exclude_max=True)
    schedule = Schedule(name=draw(st.sampled_from(scalar_rules.SCHEDULES)), warmup_steps=draw(st.sampled_from([0, 1, 7, total, total + 3])),
                        final_ratio=draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0, 1)))  # fmt: skip
    lr = draw(st.sampled_from([1e-3, 3e-4, 1.0]) | st.floats(1e-9, 10))
    if draw(st.booleans()):
        optimizer = AdamW(name="adamw", lr=lr, beta1=draw(st.sampled_from([0.9, 0.0]) | unit),
                          beta2=draw(st.sampled_from([0.999, 0.95]) | unit), eps=draw(st.sampled_from([1e-8, 1.0]) | st.floats(1e-12, 1)),
                          weight_decay=draw(st.sampled_from([0.0, 0.01, 1.0]) | st.floats(0, 1)))  # fmt: skip
    else:
        optimizer = SGD(name="sgd", lr=lr, momentum=draw(unit), nesterov=draw(st.booleans()), weight_decay=draw(st.floats(0, 1)))
    step = draw(st.sampled_from([0, total - 1, max(0, schedule.warmup_steps - 1), schedule.warmup_steps]) | st.integers(0, total + 10))
    return optimizer, schedule, total, step


@settings(max_examples=examples(6), deadline=None)
@given(st.lists(_configs(), min_size=16, max_size=16))
def test_the_vyper_scalars_are_the_engine_s_for_any_schedule_and_step(scalar_harness, configs) -> None:
    """scalar_math._optimizer_scalar on drawn optimizers (AdamW, SGD), schedules (constant, cosine,
    linear; with and without warm-up, steps inside, at the edges of and past it and the job) and
    steps equals engine/portable/scalars.py's scalars, every one of them, bit for bit."""
    from engine.portable import scalars as engine_scalars

    params, steps, want = [], [], []
    for optimizer, schedule, total, step in configs:
        lr = optimizer.lr * engine_scalars.lr_factor(schedule, step, total)
        constants = engine_scalars.optimizer_scalars(optimizer, lr, step + 1)
        args = scalar_rules.scalar_args(optimizer, schedule, total)
        for element, value in enumerate(constants.values()):
            params.append(scalar_rules.scalar_params(args, element))
            steps.append(step)
            want.append(int(np.array([value]).view(np.uint32)[0]))
    got = [v for i in range(0, len(steps), 128) for v in scalar_harness.functions.scalars(params[i : i + 128], steps[i : i + 128]).call()]
    assert got == want


@pytest.fixture(scope="module")
def scalar_harness(w3: Any) -> Any:
    return deploy(w3, "contracts/test/ScalarMathHarness.vy")


def test_the_portable_cos_is_the_engine_s(scalar_harness) -> None:
    """The Vyper cos at 0, π/2, π, either side of π/2 and on a grid of [0, π] equals engine/portable/scalars.py's."""
    from engine.portable.scalars import PI, cos

    xs = [0.0, PI / 2, PI, np.nextafter(PI / 2, 0), np.nextafter(PI / 2, 4), *np.linspace(0, PI, 60)]
    bits = [int(np.array([x], dtype=np.float64).view(np.uint64)[0]) for x in xs]
    got = scalar_harness.functions.cos(bits).call()
    assert got == [int(np.array([cos(float(x))]).view(np.uint64)[0]) for x in xs]


# --------------------------------------------------------------------------------------------------
# Games
# --------------------------------------------------------------------------------------------------


def _match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], kernel: str, output: int, element: int,
           defender_rec: record.StepRecord | None = None) -> Match:  # fmt: skip
    """A game over `step` pinned at the first `kernel` entry: an honest defender and a lying challenger that
    disputes `element` of `output`, or (with `defender_rec`) that record's defender and an honest challenger."""
    rec = step["rec"]
    target = next(e.index for e in rec.entries if e.kernel == kernel)
    truth = Side(step["roots"], rec, step["next_leaves"])
    wrong = defender_rec is not None
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
    defender = Side([step["roots"][0], *later], defender_rec, step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element, output=output)  # fmt: skip


def _snapshot(w3: Any) -> str:
    return w3.provider.make_request("evm_snapshot", [])["result"]


def _revert(w3: Any, snapshot: str) -> None:
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True


def _every_element_ruled(chain: Any, match: Match, elements: range, defender_wrong: bool) -> dict[int, int]:
    """From ELEMENT (the challenger's move), each element disputed and proven: the ruling, each proof under
    its gas target, each whole game (the moves to ELEMENT, then that element's two) under its target.
    Returns prove_element's gas per element."""
    match.play(ELEMENT, "challenger")
    assert match.game()["rules"] == SCALAR_RULES
    to_element = sum(match.gas.values())
    snapshot = _snapshot(chain)
    proofs = {}
    for element in elements:
        begin = sum(match.gas.values())
        match.send("challenger", "host", "dispute_element", match.game_id, element)
        before = match.gas["defender"]
        match.prove_element()
        assert match.ruling() == (True, defender_wrong, False), element
        proofs[element] = match.gas["defender"] - before
        assert proofs[element] < PROVE_ELEMENT_TARGET
        assert to_element + sum(match.gas.values()) - begin < WHOLE_GAME_TARGET
        _revert(chain, snapshot)
        snapshot = _snapshot(chain)
    return proofs


def test_each_adamw_scalar_is_ruled_and_a_step_hint_not_the_header_s_is_refused(chain, scalar_contracts, mlp_clip) -> None:
    """On the MLP's step 1 (cosine schedule): a defender whose adamw_scalars have each of the eight one bit
    wrong loses every one of them to the honest challenger, and an honest defender challenged on any of
    them wins; within the whole-game gas target. At PROOF, the step of another state, no step or a second
    hint are refused (the honest defender then proves with the agreed header's step and wins)."""
    step = _step_at(mlp_clip, 1)
    j = next(e.index for e in step["rec"].entries if e.kernel == "adamw_scalars")
    wrong = step["rec"]
    for element in range(8):
        wrong = corrupt(wrong, j, element)
    _every_element_ruled(chain, _match(chain, scalar_contracts, step, "adamw_scalars", 0, 0, wrong), range(8), True)
    match = _match(chain, scalar_contracts, step, "adamw_scalars", 0, 7)
    proofs = _every_element_ruled(chain, match, range(8), False)
    print("adamw_scalars prove_element gas:", proofs)
    match.dispute_element()  # back at ELEMENT: scalar 7, the step size
    entry = step["rec"].entries[match.target]
    honest, _ = match.element_proof_args()
    prove = match.host.functions.prove_element
    for hints, reason in (([0], "not the header's step"), ([2], "not the header's step"), ([], "not one step"),
                          ([1, 0], "not one step")):  # fmt: skip
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, entry.skeleton_bytes(), honest, hints, []).call({"from": match.d})
    match.prove_element()
    assert match.ruling() == (True, False, False)


def test_sgd_scalars_are_ruled(chain, scalar_contracts, cnn_step) -> None:
    """On a CNN step (SGD, Nesterov momentum): weight decay, momentum and the learning rate one bit wrong
    lose, right ones win."""
    step = cnn_step
    j = next(e.index for e in step["rec"].entries if e.kernel == "sgd_scalars")
    wrong = step["rec"]
    for element in range(3):
        wrong = corrupt(wrong, j, element)
    _every_element_ruled(chain, _match(chain, scalar_contracts, step, "sgd_scalars", 0, 0, wrong), range(3), True)
    proofs = _every_element_ruled(chain, _match(chain, scalar_contracts, step, "sgd_scalars", 0, 2), range(3), False)
    print("sgd_scalars prove_element gas:", proofs)


def _consistent_after(rec: record.StepRecord, j: int, piece: int) -> record.StepRecord:
    """The record with clip_scale's running value `piece` off by a high bit and every later running value
    and the factor recomputed from it: a wrong fold whose later pieces all check."""
    import dataclasses

    entry = rec.entries[j]
    call = record.referee_call(entry)
    flat = {k: rec.input_value(entry, k).reshape(-1) for k in range(len(entry.inputs))}
    partials = entry.outputs[1].copy()
    partials.view(np.uint64)[piece] ^= np.uint64(1 << 44)
    from protocol import referee_model as rm

    for c in range(piece + 1, partials.size):
        proven = {key: (int(partials.view(np.uint64)[key[1]]) if key[0] == "partial" else flat[key[0]][key[1]])
                  for key in rm.dependencies(call, 1, c)}  # fmt: skip
        partials.view(np.uint64)[c] = rm.check_element(call, 1, c, proven)
    factor_bits = rm.check_element(call, 0, 0, {("partial", partials.size - 1): int(partials.view(np.uint64)[-1])})
    factor = np.array([factor_bits], dtype=np.uint32).view(np.float32)
    outputs = (factor, partials)
    bad = dataclasses.replace(entry, outputs=outputs, out_roots=tuple(tc.tensor_root(o) for o in outputs))
    return dataclasses.replace(rec, entries=[*rec.entries[:j], bad, *rec.entries[j + 1 :]])


def test_a_wrong_partial_followed_by_consistent_ones_is_caught_at_the_first_wrong_piece(chain, scalar_contracts, mlp_clip) -> None:
    """A defender whose running Σ g² is wrong from piece 5 on, every later piece and the factor consistent
    with it: the production player, as the honest challenger, disputes the running sums (not the factor,
    whose rule reads them) and the descent pins piece 5, whose recomputation from piece 4 and its 64
    gradient elements catches it, under 1,000,000 gas."""
    from personas.referee_game import side_kit
    from worker.referee_player import RefereePlayer

    step = _step_at(mlp_clip, 1)
    rec = step["rec"]
    j = next(e.index for e in rec.entries if e.kernel == "clip_scale")
    wrong = _consistent_after(rec, j, 5)
    assert wrong.entries[j].out_roots[1] != rec.entries[j].out_roots[1]
    honest = side_kit(Side(step["roots"], rec, step["next_leaves"]), step["before"], step["binding"])
    player = RefereePlayer(chain, scalar_contracts, "challenger", honest)
    assert player.choose_output(j, list(wrong.entries[j].out_roots)) == 1
    match = _match(chain, scalar_contracts, step, "clip_scale", 1, 5, wrong)
    match.play(ELEMENT, "challenger")
    game = match.game()
    assert game["wide_code"] == 3 and 4 * game["chunk_index"] + player.choose_element(game) == 5
    match.dispute_element()
    before = match.gas["defender"]
    match.prove_element()
    assert match.ruling() == (True, True, False)
    assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET


# (output, element) of clip_scale: the first running value (from +0), a later one (from the previous value
# of the same output: an own-output read), the factor (from the last running value)
CLIP_TARGETS = {"first-piece": (1, 0), "a-piece": (1, 6), "factor": (0, 0)}


@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_clip_piece_and_the_factor_are_ruled(chain, scalar_contracts, mlp_clip, wrong: bool) -> None:
    """A running value of clipping's fold and the factor one bit wrong lose (the first running value and
    the factor each wrong alone: the first difference; a later piece wrong after right ones is the test
    above), right ones win; from one game played to OUTPUT, each output disputed in turn; every
    prove_element and whole game under its gas target."""
    step = _step_at(mlp_clip, 1)
    j = next(e.index for e in step["rec"].entries if e.kernel == "clip_scale")
    targets = {name: target for name, target in CLIP_TARGETS.items() if not wrong or name != "a-piece"}
    defender = corrupt(corrupt(step["rec"], j, 0, 1), j, 0, 0) if wrong else None
    match = _match(chain, scalar_contracts, step, "clip_scale", 1, 0, defender)
    match.play(OUTPUT, "challenger")
    to_output, snapshot = sum(match.gas.values()), _snapshot(chain)
    for name, (output, element) in targets.items():
        match.output, match.target_element = output, element
        begin = sum(match.gas.values())
        match.dispute_output()
        match.descend(None)
        match.dispute_element()
        before = match.gas["defender"]
        match.prove_element()
        assert match.ruling() == (True, wrong, False), name
        assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
        assert to_output + sum(match.gas.values()) - begin < WHOLE_GAME_TARGET
        print(f"clip_scale {name} prove_element gas:", match.gas["defender"] - before,
              "game:", to_output + sum(match.gas.values()) - begin)
        _revert(chain, snapshot)
        snapshot = _snapshot(chain)


def test_the_dearest_clip_piece_costs_under_a_million_gas(scalar_contracts) -> None:
    """personas.clip_worst_case: the last 64-term piece of a clip_scale whose skeleton is as long as the
    rules read (4,096 bytes), its gradient under the deepest record path and a source of 2**31 binary32,
    its running value before it an own-output read: prove_element under 1,000,000 gas; one more gradient
    and the skeleton is longer than the rules read (reveal_long_entry: the game escalates)."""
    from personas.clip_worst_case import clip_entry, largest_clip_proof
    from protocol.referee_kit import MAX_SKELETON

    gas, gradients = largest_clip_proof(scalar_contracts["host"].w3, scalar_contracts["host"])
    print(f"the dearest clip piece: {gas:,} gas over {gradients} gradients")
    assert gas < PROVE_ELEMENT_TARGET
    assert len(clip_entry(gradients + 1).skeleton_bytes()) > MAX_SKELETON


@st.composite
def _scalar_entries(draw: Any) -> record.Entry:
    """A clipping (clip_scale, clip_sum, clip_factor) or scalar entry with drawn gradients, shapes, kinds, dtypes and arguments: mostly as the
    recorder writes them, sometimes off (an empty or int64 gradient, a header or constant input, a
    partials output of the wrong length or dtype, a max_norm that is not a binary64; an unknown schedule,
    a negative warm-up, a binary32 number, a missing argument)."""
    from protocol.spec import SGD, AdamW, Schedule

    off = lambda: draw(st.integers(0, 7)) == 0  # noqa: E731
    clipping = draw(st.sampled_from(["clip_scale", "clip_sum", "clip_factor", None]))
    if clipping == "clip_factor":  # the last group's partials (binary64 [P], an earlier output) and max_norm
        partials = record.Ref(record.STATE if off() else record.OUTPUT, 3, 0, 1 if off() else 3, (draw(st.integers(0 if off() else 1, 9)),))
        args = (("input", 0), np.float32(1.0) if off() else 1.0) + ((2.0,) if off() else ())
        return record.Entry(9, clipping, args, (partials,), ((1, (2 if off() else 1,)),), (tc.ZERO,))
    if clipping is not None:  # clip_scale(g…, max_norm); clip_sum([partials,] g…)
        shapes = draw(st.lists(st.lists(st.integers(0 if off() else 1, 200), min_size=1, max_size=3).map(tuple), min_size=1, max_size=6))
        refs = tuple(record.Ref(draw(st.sampled_from([record.STATE, record.HEADER, record.CONSTANT])) if off() else record.OUTPUT,
                                draw(st.integers(0, 40)), 0, 2 if off() else 1, s) for s in shapes)  # fmt: skip
        pieces = len(scalar_rules.clip_pieces([int(np.prod(s)) for s in shapes])) + (1 if off() else 0)
        if clipping == "clip_sum":
            if draw(st.booleans()):  # the previous group's partials first (sometimes binary64 of 2 dims, or a state)
                start = record.Ref(record.STATE if off() else record.OUTPUT, 2, 0, 3, (2, 3) if off() else (draw(st.integers(1, 9)),))
                refs = (start, *refs)
            args = tuple(("input", k) for k in range(len(refs))) + ((1.0,) if off() else ())
            return record.Entry(9, clipping, args, refs, ((1 if off() else 3, (pieces,)),), (tc.ZERO,))
        max_norm = np.float32(1.0) if off() else 1.0
        return record.Entry(9, "clip_scale", (*(("input", k) for k in range(len(shapes))), max_norm), refs,
                            ((1, (1,)), (1 if off() else 3, (pieces,))), (tc.ZERO,) * 2)  # fmt: skip
    adamw = draw(st.booleans())
    optimizer = AdamW(name="adamw", lr=1e-3) if adamw else SGD(name="sgd", lr=0.1, momentum=0.9)
    args = list(scalar_rules.scalar_args(optimizer, Schedule(name=draw(st.sampled_from(scalar_rules.SCHEDULES)), warmup_steps=3), 50))
    if off():
        args[-4] = "warmup_cosine"
    if off():
        args[-3] = -1
    if off():
        args[0] = np.float32(args[0])
    if off():
        args = args[:-1]
    kernel = "adamw_scalars" if adamw else "sgd_scalars"
    count = scalar_rules.SCALAR_COUNT[kernel] + (1 if off() else 0)
    return record.Entry(9, kernel, tuple(args), (record.Ref(record.STATE if off() else record.HEADER),), ((1, (count,)),), (tc.ZERO,))


@settings(max_examples=examples(12), deadline=None)
@given(_scalar_entries(), st.data())
def test_scalar_rules_and_their_mirror_agree_on_any_entry(scalar_contracts, entry: record.Entry, data: Any) -> None:
    """On drawn clipping and scalar skeletons: ScalarRules' `output_of` says checkable exactly when
    `scalar_checkable` does, and for a drawn element of a checkable output its reads are `scalar_reads`'."""
    rules = scalar_contracts["rules"].functions

    def hints(data: Any, entry: record.Entry) -> list[int]:  # a step for the scalars, none for clipping
        return [] if entry.kernel in scalar_rules.CLIP_KERNELS else [data.draw(st.integers(0, 60))]

    for parsed, output, element, reads in drawn_plans(rules, entry, scalar_rules.scalar_checkable, data, hints=hints):
        mirror = [(SELF_READ + r[3] if r[1] == scalar_rules.SELF else r[0], r[7], r[8]) for r in reads]
        assert mirror == scalar_rules.scalar_reads(parsed, output, element)
