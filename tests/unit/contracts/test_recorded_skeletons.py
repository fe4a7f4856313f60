"""Every skeleton the recorder writes is one the rules contracts parse, and they pick the slot the mirror names.

RefereeGame's `dispute_output` asks the rules contracts' `output_of` in slot order: one that reverted on an honest
skeleton would leave the challenger no move (it would lose on the clock), and one that disagreed with the mirror
(`protocol.referee_kit.rules_of`, which the players steer by) would make a game escalate or plan what the kit cannot
prove. `host_rules._parse` refuses skeletons no recorder writes (test_skeleton_parse_attack.py); here the recorded
steps of the presets and of models that reach every rules contract are asked output by output, of every contract.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol.referee_kit import MAX_SKELETON, parse_skeleton, rules_of

from .test_row_piece_games import stack  # noqa: F401 (the deployed rules contracts, shared)

ROLES = ("rules", "fold_rules", "row_rules", "data_rules", "scalar_rules", "row_piece_rules")  # RULES slots 0 … 5


def _spec(name: str) -> Any:
    from engine.presets import digits_cnn_spec, tiny_gpt_spec
    from tests.unit.portable.test_step_record import llama, overlapping_pool_cnn, wide_logits_mlp

    return {"tiny_gpt": lambda: tiny_gpt_spec(arithmetic="portable/1"), "digits_cnn": lambda: digits_cnn_spec(arithmetic="portable/1"),
            "llama": llama, "wide_logits_mlp": wide_logits_mlp, "overlapping_pool_cnn": overlapping_pool_cnn}[name]()  # fmt: skip


@pytest.mark.parametrize("name", ["tiny_gpt", "digits_cnn", "llama", "wide_logits_mlp", "overlapping_pool_cnn"])
def test_every_recorded_skeleton_parses_and_is_decided_by_the_mirror_s_slot(stack, name: str) -> None:  # noqa: F811
    from engine.api import initial_checkpoint, record_step

    spec = _spec(name)
    rec, _ = record_step(spec, None, 0, initial_checkpoint(spec, None))
    slots, asked = set(), 0
    for entry in rec.entries:
        skeleton = entry.skeleton_bytes()
        if len(skeleton) > MAX_SKELETON:
            continue  # revealed with reveal_long_entry, which escalates without asking the rules
        parsed = parse_skeleton(skeleton)
        for output in range(len(parsed.outputs)):
            checkable = [stack[role].functions.output_of(skeleton, output).call()[1] for role in ROLES]
            first = checkable.index(True) if True in checkable else None
            assert first == rules_of(parsed, output), (name, entry.index, entry.kernel, output, checkable)
            slots.add(first)
            asked += 1
    print(name, len(rec.entries), "entries,", asked, "outputs, slots", sorted(slots, key=str))
    assert asked and None not in slots  # every preset's and model's call has a rule (test_referee_coverage.py)
