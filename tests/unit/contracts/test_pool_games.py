"""Max pooling played on anvil: games over step 0 of the digits CNN pinned at `max_pool` (its y and its winners, int64)
and `max_pool_backward` are decided on chain by DataRules, not escalated, for the honest party in both directions (the
honest defender proving with its dispute kit); and the dearest max_pool element an honest defender can be asked (a
3×3 window whose three rows each cross a 256-element boundary: six runs, every input under the deepest record path,
`personas.row_worst_case.loss_proof`) and a backward element cost under 1,000,000 gas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import referee_kit as rk
from protocol import tensor_commit as tc

from .helpers import play_element_game, step_kit
from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401


@pytest.fixture(scope="module")
def cnn_step() -> dict[str, Any]:
    from protocol.spec import load_spec

    from ..portable.test_step_record import cnn
    from .helpers import first_step

    return first_step(load_spec(cnn()))


@pytest.fixture(scope="module")
def cnn_kit(cnn_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    return step_kit(cnn_step, tmp_path_factory.mktemp("pool-kit"))


TARGETS = [("max_pool", 0, 77), ("max_pool", 1, 77), ("max_pool_backward", 0, 3 * 64 + 9)]


@pytest.mark.parametrize(("kernel", "output", "element"), TARGETS, ids=["y", "winners", "dx"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_max_pooling_is_ruled_on_chain(chain, stack, cnn_step, cnn_kit, wrong: bool, kernel: str, output: int, element: int) -> None:  # noqa: F811
    entry = next(e for e in cnn_step["rec"].entries if e.kernel == kernel)
    proof_gas, game_gas = play_element_game(chain, stack, cnn_step, cnn_kit, entry, output, element, wrong, rk.DATA_RULES)
    print(f"{kernel} output {output}: prove_element {proof_gas:,} gas, whole game {game_gas:,}")
    assert proof_gas < PROVE_ELEMENT_TARGET and game_gas < WHOLE_GAME_TARGET


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
