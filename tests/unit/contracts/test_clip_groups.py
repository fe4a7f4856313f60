"""Clipping over more gradients than one entry lists, decided on chain. A step whose clipping reads more than
CLIP_GROUP gradients (a GPT of six blocks: 78) records the binary64 fold Σ g² as `clip_sum` entries of at most 32
gradients each (every group after the first reads the previous group's partials, its input 0, and starts from
their last) and one `clip_factor` (the last group's partials in, the factor out), so every skeleton stays within
the 4,096 bytes the rules read, where one clip_scale over them all was longer and escalated (reveal_long_entry).
ScalarRules decides every output of them (contracts/lib/scalar_rules.vy `_clip_walk` summing, clip_factor): its
plans are the mirror's (`scalar_reads`) and the referee model's (`referee_calls.encode`), every element of each
entry is the recorded bits by the model from exactly its dependencies, and games over the start of a later group,
a piece after it and the factor are decided for the honest party in both directions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import referee_model as rm
from protocol import scalar_rules
from protocol.referee_kit import MAX_SKELETON, SCALAR_RULES, parse_skeleton, rules_of

from .helpers import play_element_game
from .test_referee_game import WHOLE_GAME_TARGET, checkable_output
from .test_scalar_rules import PROVE_ELEMENT_TARGET, _assert_plans_match, _header, chain, scalar_contracts  # noqa: F401


@pytest.fixture(scope="module")
def deep_step() -> dict[str, Any]:
    """Step 0 of a GPT of six blocks, in segments of one step."""
    from ..portable.test_step_record import deep_gpt
    from .helpers import first_step

    return first_step(deep_gpt())


def _clip_entries(rec: record.StepRecord) -> list[record.Entry]:
    return [e for e in rec.entries if e.kernel in scalar_rules.CLIP_KERNELS]


def test_a_deep_model_s_clipping_is_recorded_in_groups(deep_step) -> None:
    """78 gradients: clip_sum over 32, 32 and 14 (the later ones reading the one before's partials), then
    clip_factor; every skeleton within what the rules read; the partials are the whole fold's running values cut
    at the groups; every scale entry reads clip_factor's factor; every element of each entry is its recorded
    bits by the referee model from exactly its dependencies, and one flipped bit is caught."""
    rec = deep_step["rec"]
    entries = _clip_entries(rec)
    assert [e.kernel for e in entries] == ["clip_sum"] * 3 + ["clip_factor"]
    grads = [len(e.inputs) for e in entries[:3]]
    assert grads == [32, 33, 15] and all(len(e.skeleton_bytes()) <= MAX_SKELETON for e in entries)
    for before, after in zip(entries, entries[1:], strict=False):
        assert (after.inputs[0].kind, after.inputs[0].a, after.inputs[0].b, after.inputs[0].dtype) == (record.OUTPUT, before.index, 0, 3)
    gradients = [rec.input_value(entries[0], k) for k in range(32)] + [
        rec.input_value(e, k) for e in entries[1:3] for k in range(1, len(e.inputs))]
    whole = scalar_rules.clip_partials([g.reshape(-1) for g in gradients])
    assert np.array_equal(np.concatenate([e.outputs[0] for e in entries[:3]]).view(np.uint64), whole.view(np.uint64))
    scales = [e for e in rec.entries if e.kernel == "scale"]
    assert len(scales) == 78 and {(e.inputs[-1].a, e.inputs[-1].b) for e in scales} == {(entries[3].index, 0)}
    for entry in entries:
        call = record.referee_call(entry)
        values = entry.outputs[0].reshape(-1)
        for element in range(values.size):
            proven = record.proven_values(rec, entry, 0, element)
            deps = rm.dependencies(call, 0, element)
            assert set(proven) == set(deps)
            bits, read = rm._check(call, 0, element, proven, None)
            want = int(values.view(np.uint64 if values.dtype == np.float64 else np.uint32)[element])
            assert bits == want and read == set(deps) and bits != want ^ (1 << 40 if values.dtype == np.float64 else 1)


def test_scalar_rules_decide_every_output_of_the_groups(scalar_contracts, deep_step) -> None:
    """ScalarRules calls each clip_sum's partials and clip_factor's factor checkable exactly as the mirror does
    (the slot RefereeGame asks is ScalarRules'), and plans their first, second, middle and last elements (a later
    group's piece 0: from the previous group's last partial, a binary64 input) as the mirror and the referee
    model say."""
    rules = scalar_contracts["rules"].functions
    rec, header = deep_step["rec"], _header(deep_step)
    for entry in _clip_entries(rec):
        parsed = parse_skeleton(entry.skeleton_bytes())
        assert checkable_output(rules, entry, 0) and scalar_rules.scalar_checkable(parsed, 0)
        assert rules_of(parsed, 0) == SCALAR_RULES and not rules.output_of(entry.skeleton_bytes(), 1).call()[1]
        _assert_plans_match(rules, rec, entry, 0, header)
    later = _clip_entries(rec)[1]
    assert scalar_rules.scalar_reads(parse_skeleton(later.skeleton_bytes()), 0, 0)[0] == (0, later.inputs[0].shape[0] - 1, 1)


# (entry of the clip kernels, element): a later group's first piece (from the group before's last partial), a piece
# after it (an own-output read), the factor (from the last group's last partial)
GROUP_TARGETS = {"start": (1, 0), "a-piece": (1, 5), "factor": (3, 0)}


@pytest.fixture(scope="module")
def deep_kit(deep_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    from .helpers import step_kit

    return step_kit(deep_step, tmp_path_factory.mktemp("clip-kit"))


@pytest.mark.parametrize("target", list(GROUP_TARGETS))
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_the_groups_and_the_factor_are_ruled(chain, scalar_contracts, deep_step, deep_kit, wrong: bool, target: str) -> None:  # noqa: F811
    """One element one bit wrong loses (the first difference), a right one, proven with the honest defender's
    dispute kit (the personas' arguments), wins against a lying challenger; each prove_element and whole game
    under its gas target."""
    which, element = GROUP_TARGETS[target]
    entry = _clip_entries(deep_step["rec"])[which]
    proof, game = play_element_game(chain, scalar_contracts, deep_step, deep_kit, entry, 0, element, wrong, SCALAR_RULES)
    print(f"{entry.kernel} {target}: prove_element {proof:,} gas, whole game {game:,}")
    assert proof < PROVE_ELEMENT_TARGET and game < WHOLE_GAME_TARGET


def test_the_dearest_clip_sum_piece_costs_under_a_million_gas(scalar_contracts) -> None:
    """personas.clip_worst_case: the first piece of a later group of CLIP_GROUP gradients of eight dims each (its
    skeleton within what the rules read), from the previous group's last partial (an earlier output) and 64
    elements of a gradient under the deepest record path and a source of 2**31 binary32: under 1,000,000 gas."""
    from personas.clip_worst_case import clip_sum_entry, largest_clip_sum_proof

    assert len(clip_sum_entry(64).skeleton_bytes()) <= MAX_SKELETON
    gas = largest_clip_sum_proof(scalar_contracts["host"].w3, scalar_contracts["host"])
    print(f"the dearest clip_sum piece: {gas:,} gas")
    assert gas < PROVE_ELEMENT_TARGET
