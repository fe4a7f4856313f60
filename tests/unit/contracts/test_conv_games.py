"""Convolutions played on anvil: games over step 0 of the digits CNN pinned at its convolution's entries (im2col inside
the image and in its padding, the forward's linear fold, linear_backward's dW in FoldRules' pieces over B·L rows, and
col2im, whose columns are proven by column proofs) are decided on chain for the honest party in both directions (the
honest defender proving with its dispute kit, which must agree with the personas'); and a one-fold col2im element of
the most values (four covering rows of four columns, each value in a chunk of its own of dcols read as a prefix of a
2**31-element source under the deepest record path, `personas.row_worst_case.loss_proof`) over a 64² image costs under
1,000,000 gas (over the largest image the load cap takes, and the pieces: test_col2im_piece_attacks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.portable import record
from protocol import data_rules
from protocol import referee_kit as rk
from protocol import tensor_commit as tc

from .helpers import play_element_game
from .test_pool_games import cnn_kit, cnn_step  # noqa: F401 (the digits CNN's step 0 and its kit: fixtures)
from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401

# (kernel, output, element, rules): im2col's element (b 0, q 4 = the window's centre, l 9) and (q 0, l 0): padding;
# the conv's linear (K = 9: FoldRules) at row 77; dW[3, 4] over the B·L = 1,024 rows (its last piece); dx[1, 0, 3, 5]
TARGETS = [("im2col", 0, 4 * 64 + 9, rk.DATA_RULES), ("im2col", 0, 0, rk.DATA_RULES), ("linear", 0, 77 * 8 + 3, rk.FOLD_RULES),
           ("linear_backward", 1, 3 * 9 + 4, rk.FOLD_RULES), ("col2im", 0, 64 + 3 * 8 + 5, rk.DATA_RULES)]  # fmt: skip


@pytest.mark.parametrize(("kernel", "output", "element", "rules"), TARGETS, ids=["cols", "padding", "y", "dW", "dx"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_convolutions_are_ruled_on_chain(chain, stack, cnn_step, cnn_kit, wrong: bool, kernel: str, output: int, element: int,  # noqa: F811
                                         rules: int) -> None:  # fmt: skip
    found = [e for e in cnn_step["rec"].entries if e.kernel == kernel]
    entry = found[0] if kernel in ("im2col", "linear") else found[-1]  # the convolution's: the first layer's
    if kernel == "im2col":
        parsed = rk.parse_skeleton(entry.skeleton_bytes())
        assert bool(data_rules.data_reads(parsed, 0, element, ())) == (element != 0)  # (0, 0, 0): above the image
    proof_gas, game_gas = play_element_game(chain, stack, cnn_step, cnn_kit, entry, output, element, wrong, rules)
    print(f"{kernel} output {output} element {element}: prove_element {proof_gas:,} gas, whole game {game_gas:,}")
    assert proof_gas < PROVE_ELEMENT_TARGET and game_gas < WHOLE_GAME_TARGET


def test_the_dearest_col2im_element_costs_under_a_million_gas(chain, stack) -> None:  # noqa: F811
    import personas.row_worst_case as rw

    # k 4, s 1, p 3: the middle element of a 64×64 image is covered by all 16 windows (MAX_COL2IM_ROWS), its columns
    # L − 1 = 4,488 elements apart (each value in a chunk of its own; loss_proof reads dcols as a prefix of the
    # largest source), its values near the smallest normal (a binary32 add's dearest)
    image, k = (1, 1, 64, 64), 4
    oh, ow = image[2] + 2 * (k - 1) - k + 1, image[3] + 2 * (k - 1) - k + 1
    cols = (1, k * k, oh * ow)
    backward = record.Entry(3, "col2im", (("input", 0), image, k, 1, k - 1), (record.Ref(record.OUTPUT, 4, 0, 1, cols),),
                            ((1, image),), (tc.ZERO,))  # fmt: skip
    parsed = rk.parse_skeleton(backward.skeleton_bytes())
    assert rk.rules_of(parsed, 0) == rk.DATA_RULES
    element = (image[2] // 2) * image[3] + image[3] // 2
    reads = data_rules.data_strided_reads(parsed, 0, element, ())
    assert [count for _, _, count, _ in reads] == [k] * k and all(stride > 8 for *_, stride in reads)
    gas = rw.loss_proof(chain, stack["host"], backward, 0, element, 703, np.random.default_rng(3), scale=1e-38)
    print(f"the dearest col2im element: {gas:,} gas")
    assert gas < PROVE_ELEMENT_TARGET, gas
