"""The causal-LM loss played on anvil (docs/referee.md, "The causal-LM loss"): games over step 0 of a portable tiny
Llama LM job (4 examples of 8 tokens a batch, some padded) pinned at its `causal_lm` and `causal_lm_backward` entries
are decided on chain, not escalated: by RowRules at the mean and the count, by RowPieceRules at nll (a counted row
and one that is not) and dz. A one-bit-wrong element is caught by the honest challenger, a right one upheld against
a lying challenger; the honest defender's proofs are its dispute kit's (the nll hint −1 for a row not counted)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from protocol import referee_kit as rk

from .helpers import play_element_game, step_kit
from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401


@pytest.fixture(scope="module")
def lm_step(tmp_path_factory: Any) -> dict[str, Any]:
    """Step 0 of the LM job in segments of one step (tests/unit/contracts/helpers.py `first_step`, with its store)."""
    from engine.api import record_first_steps
    from protocol import tensor_commit as tc
    from protocol.artifacts import LocalStore
    from tests.unit.finetune.lm_helpers import lm_dataset, lm_spec

    store = LocalStore(tmp_path_factory.mktemp("lm-games"))
    spec = lm_spec(lm_dataset(store), arithmetic="portable/1", steps=1, segment_steps=1)
    states, records, bindings = record_first_steps(spec, store, 1)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1])}  # fmt: skip


@pytest.fixture(scope="module")
def lm_kit(lm_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    return step_kit(lm_step, tmp_path_factory.mktemp("lm-kit"))


def _targets(step: dict[str, Any]) -> tuple[Any, np.ndarray]:
    rec = step["rec"]
    forward = next(e for e in rec.entries if e.kernel == "causal_lm")
    return forward, rec.input_value(forward, 1).reshape(-1)


# (kernel, output, which element, the rules contract)
TARGETS = [("causal_lm", 0, "the mean", rk.ROW_RULES), ("causal_lm", 2, "the count", rk.ROW_RULES),
           ("causal_lm", 1, "nll of a counted row", rk.ROW_PIECE_RULES),
           ("causal_lm", 1, "nll of a row not counted", rk.ROW_PIECE_RULES),
           ("causal_lm_backward", 0, "dz at a counted row's target", rk.ROW_PIECE_RULES),
           ("causal_lm_backward", 0, "dz of a row not counted", rk.ROW_PIECE_RULES)]  # fmt: skip


@pytest.mark.parametrize(("kernel", "output", "which", "slot"), TARGETS, ids=[t[2].replace(" ", "-") for t in TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_causal_loss_element_is_ruled_on_chain(chain, stack, lm_step, lm_kit, wrong: bool, kernel: str, output: int,  # noqa: F811
                                                 which: str, slot: int) -> None:  # fmt: skip
    forward, targets = _targets(lm_step)
    entry = next(e for e in lm_step["rec"].entries if e.kernel == kernel)
    width = forward.inputs[0].shape[1]
    counted, ignored = int(np.flatnonzero(targets != -1)[-1]), int(np.flatnonzero(targets == -1)[0])
    row = ignored if "not counted" in which else counted
    element = {"the mean": 0, "the count": 0}.get(which, row if output == 1 else row * width + max(int(targets[row]), 0))
    if which == "nll of a row not counted":  # the kit hints −1 (the 64-bit pattern) where a row is not counted
        assert lm_kit.element_hints(entry.index, output, element) == (2**64 - 1,)
    proof_gas, game_gas = play_element_game(chain, stack, lm_step, lm_kit, entry, output, element, wrong, slot)
    print(f"{kernel} output {output} ({which}): prove_element {proof_gas:,} gas, whole game {game_gas:,}")
    assert proof_gas < PROVE_ELEMENT_TARGET and game_gas < WHOLE_GAME_TARGET
