"""Adversarial review of rows in pieces (RowPieceRules, RULE_ROW_PIECE/ROW_FINAL, the statistics output,
MAX_OUTPUTS 5, MAX_READS 6). As in test_rules_attacks.py each test asserts the SAFE behaviour, so a failing test
shows a hole.

Hole found, now fixed: FoldRules' dearest honest element with each input proven under an entry leaf of five
output roots (a row-pieced norm backward has five) cost 1,004,980 gas, over the 1,000,000 target. prove_element
no longer copies its reads into buffers of their own (about 45,000 gas less), and `personas.fold_worst_case` and
`personas.decoder_worst_case` now prove every input under MAX_OUTPUTS roots (their tests in test_fold_rules.py,
test_fold_pieces.py and test_decoder_rules.py).
Checked and sound (pass):
- every output of honest row-pieced skeletons (six kernels, rows of 1 … 300, rows across 256-element
  boundaries, FoldRules' running values present or not) is claimed by exactly the slot `rules_of` names when
  the six deployed rules contracts are asked in RefereeGame's order, and RowPieceRules' plan is the mirror's;
- every SELF read of a statistic is a strictly earlier element of the same row (M_final before S, S1_final
  before S2, the running value before it); finals read only inputs and the statistics; `output_to_dispute`
  names the statistics whenever they differ with a final output;
- the dearest piece or final over unaligned widths and short last pieces, with values drawn like a trained
  model's and with rows of subnormal products (values a spec's own data can give, the dearest to emulate),
  stays under the target.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocol import row_pieces

from .test_row_piece_games import PROVE_ELEMENT_TARGET, chain, stack  # noqa: F401 (the games' stack, shared)

SWEEP = {"softmax": (35, 47, 49, 63, 65, 81, 255, 257),
         "softmax_backward": (131, 191, 193, 255, 257, 321),
         "layer_norm": (113, 127, 129, 191, 255, 257),
         "rms_norm": (230, 255, 257, 383, 385, 511),
         "layer_norm_backward": (33, 65, 95, 97, 127, 129, 255, 257),
         "rms_norm_backward": (33, 67, 95, 97, 127, 129, 255, 257),
         "cross_entropy": (30, 33, 47, 49, 65, 81, 255, 257), "cross_entropy_backward": (30, 33, 47, 49, 65, 255, 257),
         "causal_lm": (8, 24, 33, 47, 65, 257), "causal_lm_backward": (8, 24, 33, 47, 65, 257)}  # fmt: skip


@pytest.mark.parametrize("kernel", row_pieces.KERNELS)
def test_gas_sweep_of_row_pieces_at_unaligned_widths(chain, stack, kernel: str) -> None:
    from personas.row_worst_case import largest_row_piece_proof

    worst = []
    for i, width in enumerate(SWEEP[kernel]):
        for j, output in enumerate((None, *row_pieces.FINAL_OUTPUTS[kernel])):
            gas = largest_row_piece_proof(chain, stack["host"], kernel, width, output, game_id=200 + 10 * i + j)
            worst.append((gas, width, output))
    worst.sort(reverse=True)
    print(kernel, worst[:6])
    assert worst[0][0] < PROVE_ELEMENT_TARGET, (kernel, worst[:6])


ROLES = ("rules", "fold_rules", "row_rules", "data_rules", "scalar_rules", "row_piece_rules")
GRID = {"softmax": ((35, 1), (35, 8), (47, 257), (100, 3), (300, 2)),
        "softmax_backward": ((131, 2), (193, 5), (257, 3)),
        "layer_norm": ((113, 1), (113, 9), (128, 300), (257, 2)),
        "rms_norm": ((230, 1), (230, 3), (257, 300), (513, 2)),
        "layer_norm_backward": ((3, 100), (33, 9), (65, 3), (68, 300), (100, 257), (128, 2), (129, 300)),
        "rms_norm_backward": ((3, 100), (40, 7), (67, 2), (100, 300), (129, 257)),
        "cross_entropy": ((30, 1), (33, 8), (47, 257), (100, 3), (300, 300)),
        "cross_entropy_backward": ((30, 1), (33, 8), (47, 257), (100, 3)),
        "causal_lm": ((8, 4), (24, 32), (33, 8), (47, 257), (100, 3), (30, 300)),
        "causal_lm_backward": ((8, 4), (24, 32), (47, 257), (100, 3))}  # fmt: skip


def _hints(kernel: str, output: int) -> list[int]:
    """A row-pieced nll's hint (its row's target: any class plans)."""
    return [0] if kernel in row_pieces.NLL_ROWS and output == 1 else []


@pytest.mark.parametrize("kernel", row_pieces.KERNELS)
def test_the_first_slot_that_checks_a_row_pieced_output_is_the_mirror_s_and_plans_as_it(chain, stack, kernel: str) -> None:
    """On honest row-pieced skeletons (`row_piece_entry`: FoldRules' running values where it pieces dw/db, then the
    statistics), RefereeGame's slot order (the first of the six deployed rules contracts whose output_of says
    checkable) picks the slot `rules_of` names for every output, and RowPieceRules' plan is the mirror's at the
    first, last and every piece boundary element of each row it decides."""
    from personas.row_worst_case import row_piece_entry
    from protocol import referee_kit as rk

    for width, rows in GRID[kernel]:
        entry = row_piece_entry(kernel, width, rows)
        skeleton = entry.skeleton_bytes()
        parsed = rk.parse_skeleton(skeleton)
        piecing = row_pieces.row_piecing(kernel, [r.shape for r in parsed.inputs])
        assert piecing is not None
        for output in range(len(parsed.outputs)):
            first = None
            for slot, role in enumerate(ROLES):
                if stack[role].functions.output_of(skeleton, output).call()[1]:
                    first = slot
                    break
            assert first == rk.rules_of(parsed, output), (kernel, width, rows, output, first)
            if first != rk.ROW_PIECE_RULES:
                continue
            size = int(np.prod(parsed.outputs[output][1]))
            if output == len(parsed.outputs) - 1:
                picks = {piecing.index(s, r, c) for s in range(piecing.stats) for r in {0, rows // 2, rows - 1}
                         for c in range(piecing.pieces)}  # fmt: skip
            else:
                picks = {0, size - 1, size // 2, min(size - 1, width - 1), min(size - 1, width)}
            for element in sorted(picks):
                hints = _hints(kernel, output)
                plan = stack["row_piece_rules"].functions.plan(skeleton, output, element, hints).call()
                rule, params, reads = plan[0], plan[1], plan[2]
                want_rule, want_params = row_pieces.row_piece_rule(parsed, output, element, hints)
                assert (rule, tuple(params)) == (want_rule, want_params), (kernel, output, element)
                got = [(r[0], r[7], r[8]) for r in reads]
                assert got == row_pieces.row_piece_reads(parsed, output, element, hints), (kernel, output, element)


# values an honest record may hold (a spec's own init and data decide them) that make binary32 emulation dearest:
# products and sums in the subnormal range (kernel: (scale of the row's values, scale of the running statistic))
ADVERSE = {"softmax": (1e-39, 1e-39), "softmax_backward": (1e-22, 3.0), "layer_norm": (1e-22, 3.0),
           "rms_norm": (1e-22, 1e-22), "layer_norm_backward": (1e-14, 1e-14), "rms_norm_backward": (1e-14, 1e-14)}  # fmt: skip
WIDTHS = {"softmax": 47, "softmax_backward": 257, "layer_norm": 255, "rms_norm": 257, "layer_norm_backward": 255,
          "rms_norm_backward": 67}  # the dearest widths of the sweep above  # fmt: skip


@pytest.mark.parametrize("kernel", [k for k in row_pieces.KERNELS if k not in row_pieces.LOSSES])
def test_the_dearest_row_piece_with_subnormal_values(chain, stack, kernel: str, monkeypatch) -> None:
    """`largest_row_piece_proof` with the values it draws replaced by rows whose terms, products and running sums
    are subnormal (ADVERSE): the honest statistic's prove_element stays under 1,000,000 gas. (The cross-entropies
    draw their values elsewhere, `_loss_values`: their extreme logits are test_cross_entropy_piece_gas.py's.)"""
    import personas.row_worst_case as rw

    scale, stat = ADVERSE[kernel]

    def values(kernel_: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        if k >= 1_000:
            return (np.full(n, stat) * rng.choice([-1, 1], n)).astype(np.float32)
        return ((rng.random(n) + 1.0) * scale * rng.choice([-1, 1], n)).astype(np.float32)

    monkeypatch.setattr(rw, "_piece_values", values)
    gas = [rw.largest_row_piece_proof(chain, stack["host"], kernel, WIDTHS[kernel], None, game_id=300 + i, seed=i)
           for i in range(3)]  # fmt: skip
    print(kernel, gas)
    assert max(gas) < PROVE_ELEMENT_TARGET, (kernel, gas)


@pytest.mark.parametrize("kernel", row_pieces.KERNELS)
def test_every_self_read_is_earlier_or_of_the_output_disputed_first(kernel: str) -> None:
    """The descent soundness argument, checked on the mirror's plans (equal to the contract's: the test above):
    every SELF read of a statistic reads a strictly earlier statistic (M_final before S, S1_final before S2, the
    running value before it) of the same row and statistic block or the block before, inside the statistics; every
    final output reads only its own inputs and the statistics; and whenever the statistics differ together with
    any final output, `output_to_dispute` names the statistics."""
    from personas.row_worst_case import row_piece_entry
    from protocol import referee_kit as rk

    for width, rows in GRID[kernel]:
        parsed = rk.parse_skeleton(row_piece_entry(kernel, width, rows).skeleton_bytes())
        p = row_pieces.row_piecing(kernel, [r.shape for r in parsed.inputs])
        assert p is not None
        stats = len(parsed.outputs) - 1
        for element in range(p.size):
            s, r, c = p.locate(element)
            for k, first, count in row_pieces.row_piece_reads(parsed, stats, element):
                if k >= rk.SELF_READ:
                    assert k == rk.SELF_READ + stats and count == 1 and first < element
                    s2, r2, _ = p.locate(first)
                    assert r2 == r and s2 <= s
                else:
                    assert k < len(parsed.inputs)
        for output in row_pieces.FINAL_OUTPUTS[kernel]:
            size = int(np.prod(parsed.outputs[output][1]))
            for element in {0, size - 1, size // 2}:
                for k, first, count in row_pieces.row_piece_reads(parsed, output, element, _hints(kernel, output)):
                    assert k < len(parsed.inputs) or (k == rk.SELF_READ + stats and first < p.size)
            mine = [bytes([o]) * 32 for o in range(len(parsed.outputs))]
            theirs = list(mine)
            theirs[output] = theirs[stats] = b"\xff" * 32
            assert rk.output_to_dispute(parsed, mine, theirs) == stats
