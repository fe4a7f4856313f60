"""Max pooling played on anvil: games over step 0 of the digits CNN pinned at `max_pool` (its y and its winners, int64)
and `max_pool_backward` are decided on chain by DataRules, not escalated, for the honest party in both directions (the
honest defender proving with its dispute kit); and the dearest max_pool element an honest defender can be asked (a
3×3 window whose three rows each cross a 256-element boundary: six runs, every input under the deepest record path,
`personas.row_worst_case.loss_proof`) and a backward element cost under 1,000,000 gas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak

from engine.portable import record
from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt
from protocol import referee_kit as rk
from protocol import tensor_commit as tc

from .test_referee_game import ARITY, LEVELS
from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401


@pytest.fixture(scope="module")
def cnn_step() -> dict[str, Any]:
    from protocol.spec import load_spec

    from ..portable.test_step_record import cnn
    from .helpers import first_step

    return first_step(load_spec(cnn()))


@pytest.fixture(scope="module")
def cnn_kit(cnn_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    from engine.referee_kit import kit_from_record

    step = cnn_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(tmp_path_factory.mktemp("pool-kit") / "kit", kit))


TARGETS = [("max_pool", 0, 77), ("max_pool", 1, 77), ("max_pool_backward", 0, 3 * 64 + 9)]


@pytest.mark.parametrize(("kernel", "output", "element"), TARGETS, ids=["y", "winners", "dx"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_max_pooling_is_ruled_on_chain(chain, stack, cnn_step, cnn_kit, wrong: bool, kernel: str, output: int, element: int) -> None:  # noqa: F811
    rec = cnn_step["rec"]
    entry = next(e for e in rec.entries if e.kernel == kernel)
    truth = Side(cnn_step["roots"], rec, cnn_step["next_leaves"])
    defender = truth
    if wrong:
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(cnn_step["roots"]))]
        defender = Side([cnn_step["roots"][0], *later], corrupt(rec, entry.index, element, output), cnn_step["next_leaves"])
    match = Match(chain, stack, ARITY, LEVELS, cnn_step["before"], cnn_step["binding"], defender, truth, honest_challenger=wrong,
                  target=entry.index, target_element=element, output=output)  # fmt: skip
    match.play(PROOF, "defender")
    game = match.game()
    assert (game["entry"], game["output"], game["rules"]) == (entry.index, output, rk.DATA_RULES)
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        proofs, columns = cnn_kit.element_proof_args(entry.index, output, element)
        assert (proofs, columns) == tuple(match.element_proof_args()) and cnn_kit.element_hints(entry.index, output, element) == ()
        match.send("defender", "host", "prove_element", match.game_id, cnn_kit.entries[entry.index].skeleton, proofs, [], columns)
    proof_gas = match.gas["defender"] - before
    print(f"{kernel} output {output}: prove_element {proof_gas:,} gas, whole game {sum(match.gas.values()):,}")
    assert match.game()["stage"] == DECIDED and match.ruling() == (True, wrong, False)
    assert proof_gas < PROVE_ELEMENT_TARGET and sum(match.gas.values()) < WHOLE_GAME_TARGET


def test_the_dearest_pooling_elements_cost_under_a_million_gas(chain, stack) -> None:  # noqa: F811
    import personas.row_worst_case as rw

    x, pooled = (1, 1, 2**22, 512), (1, 1, 2**21 - 1, 255)  # 2**31 binary32; k = 3, stride 2
    forward = record.Entry(3, "max_pool", (("input", 0), 3, 2), (record.Ref(record.OUTPUT, 4, 0, 1, x),),
                           ((1, pooled), (2, pooled)), (tc.ZERO,) * 2)  # fmt: skip
    element = 127  # ow 127: columns 254 … 256 of each of its three rows, each across a 256-element boundary
    parsed = rk.parse_skeleton(forward.skeleton_bytes())
    assert len(rk.game_reads(parsed, 0, element)) == 6
    image = (1, 1, 2**21, 2**10)
    small = (1, 1, 2**20, 2**9)
    backward = record.Entry(3, "max_pool_backward", (image, ("input", 0), ("input", 1), 2, 2),
                            (record.Ref(record.OUTPUT, 4, 0, 2, small), record.Ref(record.OUTPUT, 5, 0, 1, small)),
                            ((1, image),), (tc.ZERO,))  # fmt: skip
    gas = [rw.loss_proof(chain, stack["host"], forward, output, element, 700 + output, np.random.default_rng(output)) for output in (0, 1)]
    gas.append(rw.loss_proof(chain, stack["host"], backward, 0, 2**31 - 1, 702, np.random.default_rng(2)))
    print("max_pool y, winners; max_pool_backward dx:", gas)
    assert max(gas) < PROVE_ELEMENT_TARGET, gas
