"""Adversarial review: the dearest honest row-pieced nll / dz element with extreme logits (z − M deep in exp's subnormal range,
tiny, or huge) stays under 1,000,000 gas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from .test_row_piece_games import PROVE_ELEMENT_TARGET, chain, stack  # noqa: F401

# (z's values, M, S): honest rows have M >= z and S >= 1
EXTREMES = [(-95.0, 0.0, 1.0), (-1e-40, 0.0, 1.0), (-1e-40, 1e-40, 47.0), (-3.0e38, 3.0e38, 1.0), (-87.5, 1e-39, 1.0000001)]


@pytest.mark.parametrize(("kernel", "output"), [("cross_entropy", 1), ("cross_entropy_backward", 0)])
def test_dearest_cross_entropy_final_with_extreme_logits(chain, stack, kernel, output, monkeypatch) -> None:  # noqa: F811
    import personas.row_worst_case as rw

    original = rw._loss_values
    gas = []
    for i, (z, m, s) in enumerate(EXTREMES):
        calls = [0]

        def values(kernel_: str, k: int, n: int, width: int, rng: np.random.Generator, z=z, m=m, s=s, calls=calls) -> np.ndarray:
            if k == 1:
                return original(kernel_, k, n, width, rng)
            if k >= 1_000:  # the M read first, then the S read (a chunk each)
                calls[0] += 1
                return np.full(n, m if calls[0] == 1 else s, dtype=np.float32)
            return np.full(n, z, dtype=np.float32)

        monkeypatch.setattr(rw, "_loss_values", values)
        gas.append(rw.largest_row_piece_proof(chain, stack["host"], kernel, 47, output, game_id=400 + i, seed=i))
    print(kernel, gas)
    assert max(gas) < PROVE_ELEMENT_TARGET, (kernel, gas)


# (z's scale, z's offset, statistics' value): subnormal terms; exp results near and in the subnormal range; sums of
# subnormals. (loss_proof draws the cross-entropies' values with rw._loss_values, not rw._piece_values: the other
# kernels' subnormal test, test_row_piece_attacks.py, patches the latter.)
STAT_EXTREMES = [(1e-39, 0.0, 1e-39), (1.0, -88.0, 1e-39), (1.0, -100.0, 2e-39), (1e-3, -86.0, 0.0), (30.0, 0.0, 5.0)]


def _extreme_values(original: Any, scale: float, offset: float, stat: float) -> Any:
    """The persona's value drawer with logits offset + ±[1, 2)·scale and statistics ±stat (the targets as drawn)."""

    def values(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        if k == 1:
            return original(kernel, k, n, width, rng)
        if k >= 1_000:  # the entry's own statistics
            return (np.full(n, stat) * rng.choice([-1, 1], n)).astype(np.float32) if stat else np.zeros(n, np.float32)
        return (offset + (rng.random(n) + 1.0) * scale * rng.choice([-1, 1], n)).astype(np.float32)

    return values


@pytest.mark.parametrize("kernel", ["cross_entropy", "cross_entropy_backward"])
@pytest.mark.parametrize("width", [33, 47, 100])
def test_dearest_cross_entropy_statistic_with_extreme_logits(chain, stack, kernel, width, monkeypatch) -> None:  # noqa: F811
    import personas.row_worst_case as rw

    original = rw._loss_values
    gas = []
    for i, (scale, offset, stat) in enumerate(STAT_EXTREMES):
        monkeypatch.setattr(rw, "_loss_values", _extreme_values(original, scale, offset, stat))
        gas.append(rw.largest_row_piece_proof(chain, stack["host"], kernel, width, None, game_id=500 + i, seed=i))
    print(kernel, width, gas)
    assert max(gas) < PROVE_ELEMENT_TARGET, (kernel, width, gas)


@pytest.mark.parametrize("kernel", ["cross_entropy", "cross_entropy_backward"])
@pytest.mark.parametrize("width", [33, 47, 100])
def test_dearest_exp_sum_statistic_with_extreme_logits(chain, stack, kernel, width, monkeypatch) -> None:  # noqa: F811
    """The S piece (16 exps) of the dearest statistic's row and piece, measured on its own (the persona's dearest
    statistic is picked by proof words alone, and its first such is an M piece, which computes no exp)."""
    import personas.row_worst_case as rw
    from protocol import row_pieces
    from protocol.referee_kit import game_reads, parse_skeleton

    original = rw._loss_values
    entry, output, element = rw.dearest_row_piece(kernel, width, None)
    piecing = row_pieces.row_piecing(kernel, [r.shape for r in entry.inputs])
    s, r, c = piecing.locate(element)
    chosen = piecing.index(1, r, c)
    parsed = parse_skeleton(entry.skeleton_bytes())
    assert game_reads(parsed, output, chosen)  # checkable
    gas = []
    for i, (scale, offset, stat) in enumerate(STAT_EXTREMES + [(1e-39, 0.0, 1e-38), (1e-38, -1e-38, 1e-39), (1e-45, 0.0, 1e-45), (1e-44, 0.0, 1e-41), (1e-42, 0.0, 1e-40), (5e-39, 0.0, 5e-39), (1e-39, 0.0, 0.0), (1e-40, 0.0, 1e-40)]):
        monkeypatch.setattr(rw, "_loss_values", _extreme_values(original, scale, offset, stat))
        gas.append(rw.loss_proof(chain, stack["host"], entry, output, chosen, 600 + i, np.random.default_rng(i)))
    print(kernel, width, (s, r, c), gas)
    assert max(gas) < PROVE_ELEMENT_TARGET, (kernel, width, gas)
