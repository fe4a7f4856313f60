"""Attacks on the causal-LM loss's on-chain rules (docs/referee.md, "The causal-LM loss"): plans at edge shapes, and
the gas of a mean over rows a model is sure of (float32._add's far-operand return)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from protocol import row_pieces
from protocol.referee_kit import parse_skeleton, row_strided_reads, rules_of

from .test_causal_lm_rules import SLOTS, _entry, _first_slot
from .test_row_piece_games import chain, stack  # noqa: F401 (the games' fixtures, shared)
from .test_row_piece_rules import rules  # noqa: F401 (the contracts fixture, shared)


def _elements(size: int) -> list[int]:
    return sorted({0, 1, 2, 3, 255, 256, 257, 511, 512, 513, size // 2, size - 2, size - 1} & set(range(size)))


@pytest.mark.parametrize("kernel", ["causal_lm", "causal_lm_backward"])
@pytest.mark.parametrize(("rows", "width"), [(1, 1), (256, 1), (257, 3), (512, 16), (513, 17), (255, 33), (768, 2), (2, 300)])
def test_contract_plans_are_the_mirrors_at_edge_shapes(rules, kernel: str, rows: int, width: int) -> None:  # noqa: F811
    """Rows at and around the loss pieces' edges (1, 255, 256, 257, 512, 513, 768) and one column, a piece of 16 and
    one past it: every output's contract is the mirror's, and each sampled element's plan (nll hinted the first and
    last column and −1) reads what `row_strided_reads` / `row_piece_reads` say with the mirror's rule and params."""
    entry = _entry(kernel, rows, width)
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    for output, (_, shape) in enumerate(entry.out_shapes):
        slot = _first_slot(rules, skeleton, output)
        assert slot is not None and slot == rules_of(parsed, output), (output, slot)
        size = int(np.prod(shape, dtype=np.int64))
        for element in _elements(size):
            hint_sets = [[0], [width - 1], [row_pieces.IGNORE]] if (kernel, output) == ("causal_lm", 1) else [[]]
            for hints in hint_sets:
                name = dict(SLOTS)[slot]
                rule, params, reads, zipped = rules[name].plan(skeleton, output, element, hints).call()
                mirror = (row_pieces.row_piece_reads(parsed, output, element, hints) if slot == 5
                          else [(k, f, n) for k, f, n, _ in row_strided_reads(parsed, output, element)])  # fmt: skip
                assert [(r[0], r[7], r[8]) for r in reads] == mirror, (output, element, hints)
                if slot == 5:
                    m = row_pieces.row_piece_rule(parsed, output, element, hints)
                    assert (rule, list(params)) == (m[0], list(m[1])), (output, element)


def test_a_fold_of_tiny_terms_onto_a_large_running_value_is_exact(w3) -> None:
    """float32._add's fast path returns the larger operand where the other lies more than 40 binades below it (the
    sum rounds to it): against NumPy for both signs and orders, gaps 38 to 64, powers of two (whose binade below has
    half the ulp), the largest fractions and subnormal-adjacent exponents."""
    from tests.unit.contracts.test_float32 import check_binary
    from tests.unit.contracts.vyper_harness import deploy

    harness = deploy(w3, "contracts/test/Float32Harness.vy")
    rng = np.random.default_rng(7)
    big, small = [], []
    for ex in (1 + 64, 127, 150, 200, 254):
        for gap in range(38, 65):
            ey = ex - gap
            if ey < 1:
                continue
            for fx in (0, 1, 0x7FFFFF, int(rng.integers(0, 1 << 23))):
                for fy in (0, 0x7FFFFF, int(rng.integers(0, 1 << 23))):
                    for sx, sy in ((0, 0), (0, 1), (1, 0), (1, 1)):
                        big.append((sx << 31) | (ex << 23) | fx)
                        small.append((sy << 31) | (ey << 23) | fy)
    a, b = np.array(big, dtype=np.uint32), np.array(small, dtype=np.uint32)
    for op in ("add", "sub"):
        check_binary(harness, op, a, b)
        check_binary(harness, op, b, a)


def test_the_mean_over_confident_rows_after_a_large_running_sum_costs_under_a_million_gas(chain, stack, monkeypatch) -> None:  # noqa: F811
    """A well-trained model's nll is about 1.2e-7 on a row it is sure of (log(1 + 2^-23)); after earlier pieces the
    running sum is easily 2^20 (2^30 rows). Each term then lies over 40 binades under the running value, which
    float32._add's general path used to take (about 950 gas more an addition): the causal mean's last piece cost
    1,030,317 gas, a running sum 1,013,134, and cross-entropy's mean and running sum 1,002,298 and 1,000,545."""
    import personas.row_worst_case as worst
    from protocol import fold_rules

    from .test_row_piece_games import PROVE_ELEMENT_TARGET

    original = worst._loss_values

    def confident(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        if k == 1_001:  # nll (SELF_READ + 1): rows the model is sure of
            return (1.2e-7 * (1 + rng.random(n))).astype(np.float32)
        if k in (1_000 + fold_rules.LOSS_BASE_OUTPUTS[kernel], 1_002):  # the running values, the causal count
            return np.full(n, 2.0**20, dtype=np.float32)
        return original(kernel, k, n, width, rng)

    monkeypatch.setattr(worst, "_loss_values", confident)
    gas = {(kernel, output): worst.largest_loss_piece_proof(chain, stack["host"], kernel, output, 1, game_id=640 + i)
           for i, (kernel, output) in enumerate((("causal_lm", 0), ("causal_lm", 3), ("cross_entropy", 0), ("cross_entropy", 2)))}  # fmt: skip
    print("confident rows:", gas)
    assert max(gas.values()) < PROVE_ELEMENT_TARGET, gas
