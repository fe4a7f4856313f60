"""SGD's update played on anvil: games over step 1 of the digits CNN (SGD with Nesterov momentum; at step 1 the
momentum buffer is no longer zero) pinned at an `sgd` entry are decided on chain by ScalarRules, not escalated: at
p' and at the buffer of the convolution's weight, a one-bit-wrong element caught by the honest challenger and a
right one upheld against a lying challenger, the honest defender proving with its dispute kit's arguments;
prove_element under 1,000,000 gas, the whole game under 5,000,000."""

from __future__ import annotations

from typing import Any

import pytest
from eth_hash.auto import keccak

from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt
from protocol import referee_kit as rk

from .test_referee_game import ARITY, LEVELS
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
    from engine.referee_kit import kit_from_record

    step = cnn_step
    kit = kit_from_record(0, 1, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(tmp_path_factory.mktemp("cnn-kit") / "kit", kit))


@pytest.mark.parametrize("output", [0, 1], ids=["p", "buffer"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_an_sgd_update_is_ruled_on_chain(chain, stack, cnn_step, cnn_kit, wrong: bool, output: int) -> None:  # noqa: F811
    rec = cnn_step["rec"]
    entry = next(e for e in rec.entries if e.kernel == "sgd")  # the convolution's weight [8, 1, 3, 3]
    element = 41
    truth = Side(cnn_step["roots"], rec, cnn_step["next_leaves"])
    defender = truth
    if wrong:
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(cnn_step["roots"]))]
        defender = Side([cnn_step["roots"][0], *later], corrupt(rec, entry.index, element, output), cnn_step["next_leaves"])
    match = Match(chain, stack, ARITY, LEVELS, cnn_step["before"], cnn_step["binding"], defender, truth, honest_challenger=wrong,
                  target=entry.index, target_element=element, output=output)  # fmt: skip
    match.play(PROOF, "defender")
    game = match.game()
    assert (game["entry"], game["output"], game["rules"]) == (entry.index, output, rk.SCALAR_RULES)
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        proofs, columns = cnn_kit.element_proof_args(entry.index, output, element)
        assert (proofs, columns) == tuple(match.element_proof_args()) and columns == []
        hints = list(cnn_kit.element_hints(entry.index, output, element))
        match.send("defender", "host", "prove_element", match.game_id, cnn_kit.entries[entry.index].skeleton, proofs, hints, [])
    proof_gas = match.gas["defender"] - before
    print(f"sgd output {output}: prove_element {proof_gas:,} gas, whole game {sum(match.gas.values()):,}")
    assert match.game()["stage"] == DECIDED and match.ruling() == (True, wrong, False)
    assert proof_gas < PROVE_ELEMENT_TARGET and sum(match.gas.values()) < WHOLE_GAME_TARGET
