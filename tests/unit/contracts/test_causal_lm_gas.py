"""The dearest prove_element an honest defender makes in a game over the causal-LM loss (docs/referee.md, "The
causal-LM loss"), played on anvil with `personas.row_worst_case` (inputs prefixes of the largest sources a kit
holds under the deepest record path; the entry's own outputs read as runs under the roots its revealed entry leaf
binds): RowRules' pieces over 2**30 rows (the mean's last piece of 256 nll divided by the count, the count's last
piece of 256 int64 targets, a running sum and a running count from the one before), and RowPieceRules' statistics,
nll and dz (the rows of the dearest width the cross-entropies were measured at, their targets as hinted): each
under the issue's 1,000,000 gas."""

from __future__ import annotations

from .test_row_piece_games import DEAREST, PROVE_ELEMENT_TARGET, chain, stack  # noqa: F401


def test_the_dearest_causal_loss_pieces_cost_under_a_million_gas(chain, stack) -> None:  # noqa: F811
    from personas.row_worst_case import largest_loss_piece_proof

    host = stack["host"]
    measured = [(output, which, largest_loss_piece_proof(chain, host, "causal_lm", output, which, game_id=600 + 3 * output + which))
                for output, which in ((0, 1), (2, 1), (3, 1), (3, 2))]  # fmt: skip
    print("causal_lm pieces (output, 1 sum / 2 count, gas):", measured)
    assert max(gas for *_, gas in measured) < PROVE_ELEMENT_TARGET, measured


def test_the_dearest_causal_rows_cost_under_a_million_gas(chain, stack) -> None:  # noqa: F811
    from personas.row_worst_case import largest_row_piece_proof

    width = DEAREST["cross_entropy"]
    gas = {(kernel, output): largest_row_piece_proof(chain, stack["host"], kernel, width, output, game_id=620 + i)
           for i, (kernel, output) in enumerate((("causal_lm", None), ("causal_lm", 1), ("causal_lm_backward", None),
                                                 ("causal_lm_backward", 0)))}  # fmt: skip
    print("causal rows:", gas)
    assert max(gas.values()) < PROVE_ELEMENT_TARGET, gas
