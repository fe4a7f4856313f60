"""SGD's update played on anvil: games over step 1 of the digits CNN (SGD with Nesterov momentum; at step 1 the
momentum buffer is no longer zero) pinned at an `sgd` entry are decided on chain by ScalarRules, not escalated: at
p' and at the buffer of the convolution's weight, a one-bit-wrong element caught by the honest challenger and a
right one upheld against a lying challenger, the honest defender proving with its dispute kit's arguments;
prove_element under 1,000,000 gas, the whole game under 5,000,000."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import referee_kit as rk

from .helpers import play_element_game, step_kit
from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401


@pytest.fixture(scope="module")
def cnn_step() -> dict[str, Any]:
    """Step 1 of the digits CNN in segments of one step (the games' own layout: tests/unit/contracts/helpers.py)."""
    from engine.api import record_first_steps
    from protocol import tensor_commit as tc
    from protocol.spec import load_spec

    from ..engine.helpers import with_fields
    from ..portable.test_step_record import cnn

    states, records, bindings = record_first_steps(with_fields(load_spec(cnn()), segment_steps=1), None, 2)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[1], "binding": bindings[1], "roots": roots[1:], "rec": records[1],
            "next_leaves": tc.bound_state_leaves(states[2], bindings[2])}  # fmt: skip


@pytest.fixture(scope="module")
def cnn_kit(cnn_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    return step_kit(cnn_step, tmp_path_factory.mktemp("cnn-kit"), start_step=1)


@pytest.mark.parametrize("output", [0, 1], ids=["p", "buffer"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_an_sgd_update_is_ruled_on_chain(chain, stack, cnn_step, cnn_kit, wrong: bool, output: int) -> None:  # noqa: F811
    entry = next(e for e in cnn_step["rec"].entries if e.kernel == "sgd")  # the convolution's weight [8, 1, 3, 3]
    proof_gas, game_gas = play_element_game(chain, stack, cnn_step, cnn_kit, entry, output, 41, wrong, rk.SCALAR_RULES)
    print(f"sgd output {output}: prove_element {proof_gas:,} gas, whole game {game_gas:,}")
    assert proof_gas < PROVE_ELEMENT_TARGET and game_gas < WHOLE_GAME_TARGET
