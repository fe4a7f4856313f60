"""Max pooling played on anvil: games over step 0 of the digits CNN pinned at `max_pool` (its y and its winners, int64)
and `max_pool_backward` are decided on chain by DataRules, not escalated, for the honest party in both directions (the
honest defender proving with its dispute kit); and the dearest max_pool element an honest defender can be asked (a
3×3 window whose three rows each cross a 256-element boundary: six runs, every input under the deepest record path,
`personas.row_worst_case.loss_proof`) and a backward element cost under 1,000,000 gas. Over overlapping windows
(a CNN pooling 3×3 by 2) the backward's dx, a running value after its first window and one copied past its
windows are decided too, the dearest such piece (its running value, winner and dy under the deepest record path)
under 1,000,000 gas."""

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


@pytest.fixture(scope="module")
def overlap_step() -> dict[str, Any]:
    from .helpers import first_step
    from .test_pool_rules import _cnn

    return first_step(_cnn(3, 2))


@pytest.fixture(scope="module")
def overlap_kit(overlap_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    return step_kit(overlap_step, tmp_path_factory.mktemp("overlap-kit"))


# dx[0, 0, 2, 2] (covered by 4 windows: from running slot 2), slot 1 of it (its second window, from slot 0), slot 2 of
# dx[0, 0, 0, 0] (one window: a copy of slot 1); |dx| = 4·2·64 = 512
OVERLAP_TARGETS = [(0, 2 * 8 + 2), (1, 512 + 2 * 8 + 2), (1, 2 * 512)]


@pytest.mark.parametrize(("output", "element"), OVERLAP_TARGETS, ids=["dx", "a-piece", "a-copy"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_overlapping_windows_are_ruled_on_chain(chain, stack, overlap_step, overlap_kit, wrong: bool, output: int, element: int) -> None:  # noqa: F811
    entry = next(e for e in overlap_step["rec"].entries if e.kernel == "max_pool_backward")
    reads = rk.game_reads(rk.parse_skeleton(entry.skeleton_bytes()), output, element)
    assert [k >= rk.SELF_READ for k, _, _ in reads] == ([True, False, False] if element != 2 * 512 else [True])
    proof_gas, game_gas = play_element_game(chain, stack, overlap_step, overlap_kit, entry, output, element, wrong, rk.DATA_RULES)
    print(f"max_pool_backward (overlapping) output {output} element {element}: prove_element {proof_gas:,} gas, whole game {game_gas:,}")
    assert proof_gas < PROVE_ELEMENT_TARGET and game_gas < WHOLE_GAME_TARGET


def test_the_dearest_overlapping_backward_piece_costs_under_a_million_gas(chain, stack) -> None:  # noqa: F811
    import personas.row_worst_case as rw

    image, k, s = (1, 1, 2**20, 2**10), 3, 2  # |dx| = 2**30: the running values [3, 1, 1, 2**20, 2**10]
    pooled = (1, 1, (image[2] - k) // s + 1, (image[3] - k) // s + 1)
    backward = record.Entry(3, "max_pool_backward", (image, ("input", 0), ("input", 1), k, s),
                            (record.Ref(record.OUTPUT, 4, 0, 2, pooled), record.Ref(record.OUTPUT, 5, 0, 1, pooled)),
                            ((1, image), (1, (3, *image))), (tc.ZERO,) * 2)  # fmt: skip
    element = 2**30 - 4 * 2**10 - 4  # dx[.., H − 4, W − 4]: four windows, the last read after running slot 2
    parsed = rk.parse_skeleton(backward.skeleton_bytes())
    assert rk.rules_of(parsed, 0) == rk.DATA_RULES and len(rk.game_reads(parsed, 0, element)) == 3
    gas = rw.loss_proof(chain, stack["host"], backward, 0, element, 704, np.random.default_rng(4))
    print(f"the dearest overlapping max_pool_backward piece: {gas:,} gas")
    assert gas < PROVE_ELEMENT_TARGET, gas


def test_the_running_values_are_disputed_before_dx(overlap_step) -> None:
    """dx reads the running values (output 1): a challenger whose both outputs differ disputes the running values,
    whose every element reads only earlier ones and the agreed inputs (`output_to_dispute`)."""
    entry = next(e for e in overlap_step["rec"].entries if e.kernel == "max_pool_backward")
    parsed, mine = rk.parse_skeleton(entry.skeleton_bytes()), list(entry.out_roots)
    other = [tc.keccak(b"another dx"), tc.keccak(b"other running values")]
    assert rk.output_to_dispute(parsed, mine, other) == 1
    assert rk.output_to_dispute(parsed, mine, [other[0], mine[1]]) == 0
