"""The causal-LM loss played on anvil (docs/referee.md, "The causal-LM loss"): games over step 0 of a portable tiny
Llama LM job (4 examples of 8 tokens a batch, some padded) pinned at its `causal_lm` and `causal_lm_backward` entries
are decided on chain, not escalated: by RowRules at the mean and the count, by RowPieceRules at nll (a counted row
and one that is not) and dz. A one-bit-wrong element is caught by the honest challenger, a right one upheld against
a lying challenger; the honest defender's proofs are its dispute kit's (the nll hint −1 for a row not counted)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak

from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt
from protocol import referee_kit as rk

from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401
from .test_referee_game import ARITY, LEVELS


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
    from engine.referee_kit import kit_from_record

    step = lm_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(tmp_path_factory.mktemp("lm-kit") / "kit", kit))


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
    rec = lm_step["rec"]
    truth = Side(lm_step["roots"], rec, lm_step["next_leaves"])
    defender = truth
    if wrong:
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(lm_step["roots"]))]
        defender = Side([lm_step["roots"][0], *later], corrupt(rec, entry.index, element, output), lm_step["next_leaves"])
    match = Match(chain, stack, ARITY, LEVELS, lm_step["before"], lm_step["binding"], defender, truth, honest_challenger=wrong,
                  target=entry.index, target_element=element, output=output)  # fmt: skip
    match.play(PROOF, "defender")
    game = match.game()
    assert (game["entry"], game["output"], game["rules"]) == (entry.index, output, slot)
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        proofs, columns = lm_kit.element_proof_args(entry.index, output, element)
        hints = list(lm_kit.element_hints(entry.index, output, element))
        assert (proofs, columns) == tuple(match.element_proof_args()) and hints == match.hints(entry, output, element)
        if which == "nll of a row not counted":
            assert hints == [2**64 - 1]
        match.send("defender", "host", "prove_element", match.game_id, lm_kit.entries[entry.index].skeleton, proofs, hints, columns)
    proof_gas = match.gas["defender"] - before
    print(f"{kernel} output {output} ({which}): prove_element {proof_gas:,} gas, whole game {sum(match.gas.values()):,}")
    assert match.game()["stage"] == DECIDED and match.ruling() == (True, wrong, False)
    assert proof_gas < PROVE_ELEMENT_TARGET and sum(match.gas.values()) < WHOLE_GAME_TARGET
