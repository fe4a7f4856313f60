"""FoldRules against strided and misaligned columns (a third attacker review, 2026-12-07).

- Whole folds down strided columns: MAX_WHOLE_WEIGHT was `load + values <= 538`, sized on two contiguous columns,
  where values outnumber proof words. A column whose stride is 8 or more puts every value in its own chunk with its
  own siblings, and a proof word costs about 1,220 gas where that weight assumed half a value (about 1,640 with
  adversarial values): a layer_norm_backward dw over x̂, dy [64, 16] (load 404) cost 1,060,379 gas with cancelling
  values, [84, 8] 1,039,237, a matmul down b [71, 35] 1,023,456. The weight is now `3 · load + values <= 1,122`
  (the contiguous persona's 123 terms stay one piece, at the cap): these tests play the largest whole fold of each
  strided geometry the rules now take, with every scaling and cancelling values, and check the old ones are pieced.
- Fold pieces whose rows straddle the tensor tree's subtrees: MAX_PIECE_LOAD (280) was sized on the persona's piece,
  aligned to the tree, with its words counted in the input's own tree; a piece at other starts takes the words the
  bound allows, and a read that is a prefix of a kit-sized source a sibling more a level above: up to 1,080,263 gas
  (a calibration sweep over 1,569 geometries, `fw.calibration_geometries`). A piece is now weighed as a whole fold
  is, its words counted in a source of at least 2^28 chunks (`fold_rules.piece_weight` <= MAX_PIECE_WEIGHT = 620).
- A whole fold in an entry with another output in pieces (a fourth review): every element of such an entry pays the
  piecings' plan, which MAX_WHOLE_WEIGHT was not sized on: a linear_backward dx whole at weight 1,120 beside dW and
  db in pieces cost 1,179,696 gas. In a pieced entry a fold stays whole only within a piece's weight.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

import personas.fold_worst_case as fw
from engine.portable import record
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import parse_skeleton

from .test_fold_rules import PROVE_ELEMENT_TARGET, chain, fold_contracts  # noqa: F401 (fixtures)
from .test_fold_weight_attack import cancelling_columns, cancelling_values, fold_proof


# (rows, k, n) of linear_backward dW pieces the calibration sweep measured over 1,000,000 gas under the old load cap
# (MAX_PIECE_LOAD = 280, pieces of 16): 1,015,734, 1,080,263 and 1,068,620 gas at their longest column proofs
OLD_CAP_PIECES = [(16_448, 255, 255), (63, 257, 1_024), (54, 300, 255)]


@pytest.mark.parametrize(("rows", "k", "n"), OLD_CAP_PIECES)
def test_a_piece_across_subtree_boundaries_stays_under_a_million_gas(chain, fold_contracts, rows: int, k: int, n: int) -> None:  # noqa: F811
    """linear_backward x [rows, k], dy [rows, n] at rank 8, W [n, k]: dW's pieces, whose rows straddle the tensor
    tree's subtrees, were 16 terms at a load within 280 and cost up to 1,080,263 gas at their longest column proofs;
    weighed now as in a kit-sized source (MAX_PIECE_WEIGHT) they are 4 terms, and at the start whose proofs are
    longest (`fw.dearest_start`) cost under 1,000,000 gas with keccak words and every scaling (863,060, 888,059 and
    913,837 measured, the dearest scaling each)."""
    entry = fw.linear_backward_entry(rows, k, n, 1)
    parsed = parse_skeleton(entry.skeleton_bytes())
    dw = next(p for p in fold_rules.piecings(parsed) if p.output == 1)
    reads = fold_rules._plan_reads(parsed, 1, 0)[0]  # the whole fold's column reads
    assert dw.length == 4 and fold_rules.piece_weight(parsed, reads, 8) > fold_rules.MAX_PIECE_WEIGHT, dw
    words, output, element = fw.dearest_start(entry, 1)
    found = {scales: fw.piece_proof(chain, fold_contracts["host"], entry, output, element, 7_000 + 10 * k + s, scales)
             for s, scales in enumerate((None, *fw.ADVERSE_FOLD_SCALES))}  # fmt: skip
    print("piece across subtrees", rows, k, n, words, found)
    assert max(gas for gas, _ in found.values()) <= PROVE_ELEMENT_TARGET, (rows, k, n, found)


def _norm_backward_fold(rows: int, width: int, rank: int) -> tuple[tuple, tuple]:
    """layer_norm_backward over x̂, dy [rows, width] (rstd [rows, 1], w [width]) at `rank`: (shapes, outputs)."""
    lead = (1,) * (rank - 2)
    shapes = ((*lead, rows, width), (*lead, rows, 1), (*(1,) * (rank - 1), width), (*lead, rows, width))
    return shapes, ((1, (*lead, rows, width)), (1, (*(1,) * (rank - 1), width)), (1, (*(1,) * (rank - 1), width)))


def _matmul_fold(terms: int, n: int, rank: int) -> tuple[tuple, tuple]:
    """a [1, terms] @ b [terms, n] at `rank`: (shapes, outputs); out[0, n - 1] reads b's column n - 1, n apart."""
    lead = (1,) * (rank - 2)
    return ((*lead, 1, terms), (*lead, terms, n)), ((1, (*lead, 1, n)),)


def _whole(kernel: str, shapes: tuple, outputs: tuple, output: int) -> bool:
    """Whether the rules (the mirror, which test_fold_rules holds to FoldRules) take `output`'s folds in one piece."""
    refs = tuple(record.Ref(record.OUTPUT, 4 + k, 0, 1, s) for k, s in enumerate(shapes))
    entry = record.Entry(3, kernel, tuple(("input", k) for k in range(len(shapes))), refs, outputs, (tc.ZERO,) * len(outputs))
    parsed = parse_skeleton(entry.skeleton_bytes())
    return fold_rules.fold_checkable(parsed, output) and not fold_rules.piecings(parsed)


def _largest_whole(make: Callable[[int], tuple[tuple, tuple]], kernel: str, output: int) -> int:
    """The largest size whose fold `make(size)` the rules still take in one piece (sizes from 8 up)."""
    size = 8
    assert _whole(kernel, *make(size), output), (kernel, size)
    while _whole(kernel, *make(size + 1), output):
        size += 1
    return size


def _every_scaling(chain: Any, host: Any, kernel: str, shapes: tuple, outputs: tuple, output: int, element: int,
                   at: tuple, terms: int, game_id: int) -> dict:  # fmt: skip
    """prove_element's gas for the fold at `element` with keccak words, every ADVERSE_FOLD_SCALES scaling and
    cancelling values (one game each)."""
    found: dict[Any, int] = {}
    for s, scales in enumerate((None, *fw.ADVERSE_FOLD_SCALES)):
        found[scales] = fold_proof(chain, host, kernel, shapes, outputs, output, at, game_id + s, None, scales,
                                   element, at_cap=False)  # fmt: skip
    found["cancelling"] = fold_proof(chain, host, kernel, shapes, outputs, output, at, game_id + 50,
                                     cancelling_values(terms), None, element, at_cap=False)  # fmt: skip
    return found


@pytest.mark.parametrize(("width", "rank", "old_rows"), [(16, 8, 64), (8, 8, 84), (16, 2, 64)])
def test_the_largest_whole_norm_backward_fold_down_strided_columns_stays_under_a_million_gas(
    chain, fold_contracts, width: int, rank: int, old_rows: int  # noqa: F811
) -> None:
    """dw[width - 1] of layer_norm_backward over x̂, dy [R, width], both columns `width` apart (every value its own
    chunk), at the most rows the rules take in one piece; the rows the old weight took whole (64 of 16: any small
    MLP's layer norm, 1,060,379 gas; 84 of 8, 1,039,237) are now pieced. Measured at the new cap: 963,450 (16, rank
    8, 52 rows), 976,640 (8, rank 8, 72 rows), 923,651 (16, rank 2)."""
    assert not _whole("layer_norm_backward", *_norm_backward_fold(old_rows, width, rank), 1)
    rows = _largest_whole(lambda r: _norm_backward_fold(r, width, rank), "layer_norm_backward", 1)
    shapes, outputs = _norm_backward_fold(rows, width, rank)
    found = _every_scaling(chain, fold_contracts["host"], "layer_norm_backward", shapes, outputs, 1, width - 1,
                           (4, 6, 7, 5), rows, 8_900 + 10 * width + rank)  # fmt: skip
    print("largest whole strided norm backward fold", rows, width, rank, found)
    assert max(found.values()) <= PROVE_ELEMENT_TARGET, (rows, width, rank, found)


@pytest.mark.parametrize(("n", "old_terms"), [(35, 71), (23, 78), (14, 87)])
def test_the_largest_whole_matmul_fold_down_a_strided_column_stays_under_a_million_gas(chain, fold_contracts,  # noqa: F811
                                                                                       n: int, old_terms: int) -> None:  # fmt: skip
    """out[0, n - 1] of a [1, T] @ b [T, n] at rank 8 (a's row contiguous, b's column n apart: every value its own
    chunk) at the most terms the rules take in one piece; the old weight took 71, 78 and 87 (1,023,456 gas at 71 of
    35), now pieced. Measured at the new cap: 935,677 (35), 945,318 (23), 944,250 (14)."""
    assert not _whole("matmul", *_matmul_fold(old_terms, n, 8), 0)
    terms = _largest_whole(lambda t: _matmul_fold(t, n, 8), "matmul", 0)
    shapes, outputs = _matmul_fold(terms, n, 8)
    found = _every_scaling(chain, fold_contracts["host"], "matmul", shapes, outputs, 0, n - 1, (4, 5), terms,
                           7_800 + 100 * n)  # fmt: skip
    print("largest whole strided matmul fold", n, terms, found)
    assert max(found.values()) <= PROVE_ELEMENT_TARGET, (n, terms, found)


# A fold whole by MAX_WHOLE_WEIGHT in an entry with other outputs in pieces (the fourth review): linear_backward
# (rows, k, n, the output, its element and the gas it cost then with ADVERSE_FOLD_SCALES[1] or cancelling values)
WHOLE_BESIDE_PIECES = [(60, 3, 107, 0, 179, 1_179_696), (49, 4_096, 257, 2, 256, 1_152_012),
                       (24, 300, 257, 1, 77_099, 1_068_888)]  # fmt: skip


@pytest.mark.parametrize(("rows", "k", "n", "output", "element", "then"), WHOLE_BESIDE_PIECES)
def test_a_fold_beside_pieces_is_weighed_as_a_piece(chain, fold_contracts, monkeypatch, rows: int, k: int, n: int,  # noqa: F811
                                                    output: int, element: int, then: int) -> None:  # fmt: skip
    """linear_backward x [rows, k], dy [rows, n] at rank 8, W [n, k], with another output in pieces: the output
    MAX_WHOLE_WEIGHT takes in one piece (the element given measured then as given) is now whole only
    within MAX_PIECE_WEIGHT, else in pieces; its dearest element (`fw.dearest_start`), and the element the review
    played, cost under 1,000,000 gas with keccak words, every scaling and cancelling values."""
    entry = fw.linear_backward_entry(rows, k, n, output)
    parsed = parse_skeleton(entry.skeleton_bytes())
    pieced = fold_rules.piecings(parsed)
    reads = fold_rules._plan_reads(parsed, output, 0)[0]
    assert fold_rules.whole_weight(parsed, reads) <= fold_rules.MAX_WHOLE_WEIGHT and fold_rules.piece_length(parsed, reads) == 0
    assert any(p.output != output for p in pieced)  # another output in pieces
    # whole only within a piece's weight
    assert any(p.output == output for p in pieced) or fold_rules.piece_weight(parsed, reads, reads[0][2]) <= fold_rules.MAX_PIECE_WEIGHT
    _, dearest_output, dearest = fw.dearest_start(entry, output)
    found = {}
    for target, at in ((dearest_output, dearest), (output, element)):
        for s, scales in enumerate((None, *fw.ADVERSE_FOLD_SCALES)):
            found[(target, at, scales)] = fw.piece_proof(chain, fold_contracts["host"], entry, target, at,
                                                         6_000 + 10 * k + 100 * output + s + 50 * (at == element), scales)[0]  # fmt: skip
    plan = fold_rules.fold_plan(parsed, output, element)
    cancelling_columns(monkeypatch, plan.reads[1 if plan.from_partial else 0][2])
    found["cancelling"] = fw.piece_proof(chain, fold_contracts["host"], entry, output, element, 6_999 + k + output)[0]
    print("fold beside pieces", rows, k, n, output, max(found.values()), found)
    assert max(found.values()) <= PROVE_ELEMENT_TARGET, (rows, k, n, output, found)

