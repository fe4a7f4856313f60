"""Attack: im2col and col2im skeletons whose columns' shape [B, C·k·k, OH·OW] has a dimension over MAX_DIM (a window
of 1,024 over 65,536 channels; OH·OW = 2**62 of a 2**31-square image with k 1). `_columns_geometry` computed that
shape and `_columns_checkable` took its `commitments._element_count`, which asserts every dimension is at most
MAX_DIM: DataRules.output_of reverted (RefereeGame's dispute_output with it), where every rules contract must
answer "not checkable". The Python mirror answered False."""

from __future__ import annotations

import numpy as np
import pytest

from engine.portable import record
from protocol import data_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, parse_skeleton

from .helpers import changed_input
from .test_sgd_rules import _first_slot, all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (fixtures)

OUTPUT, FLOAT32 = 3, 1


def _im2col(image: tuple[int, ...], k: int, s: int, p: int, cols: tuple[int, ...]) -> record.Entry:
    return record.Entry(5, "im2col", (("input", 0), k, s, p), (record.Ref(OUTPUT, 4, 0, FLOAT32, image),),
                        ((FLOAT32, cols),), (tc.ZERO,))  # fmt: skip


def _col2im(image: tuple[int, ...], k: int, s: int, p: int, cols: tuple[int, ...]) -> record.Entry:
    return record.Entry(9, "col2im", (("input", 0), image, k, s, p), (record.Ref(OUTPUT, 8, 0, FLOAT32, cols),),
                        ((FLOAT32, image),), (tc.ZERO,))  # fmt: skip


def _huge() -> list[tuple[str, record.Entry]]:
    wide = (1, 2**16, 1, 1)  # k 1,024, p 512: OH = OW = 2, C·k·k = 2**36
    square = (1, 1, 2**31, 2**31)  # k 1: OH·OW = 2**62
    return [("im2col: C·k·k over MAX_DIM", _im2col(wide, 1024, 1, 512, (1, 2**16, 4))),
            ("im2col: OH·OW over MAX_DIM", _im2col(square, 1, 1, 0, (1, 1, 2**32 - 1))),
            ("col2im: C·k·k over MAX_DIM", _col2im(wide, 1024, 1024, 512, (1, 2**16, 4))),
            ("col2im: OH·OW over MAX_DIM", _col2im(square, 1, 1, 0, (1, 1, 2**32 - 1))),
            ("col2im: a 3-d dcols", changed_input(_col2im((1, 1, 4, 4), 3, 1, 1, (1, 9, 16)), 0, shape=(9, 16)))]  # fmt: skip


def test_the_mirror_answers_not_checkable(all_rules) -> None:
    for why, entry in _huge():
        assert not data_rules.data_checkable(parse_skeleton(entry.skeleton_bytes()), 0), why


@pytest.mark.parametrize("case", range(5))
def test_columns_over_max_dim_never_revert(all_rules, case: int) -> None:
    assert_checkable_only_when_good(all_rules, [_huge()[case]], DATA_RULES)


# (image [B, C, H, W], k, s, p): k 1, a stride over the window and over the image, a padding of k and more, OH or OW 1,
# s·L 1 and 2, C and B over 1, windows wider than the image
EDGES = [((1, 1, 1, 1), 1, 1, 0), ((2, 3, 2, 3), 1, 2, 0), ((1, 2, 3, 3), 2, 3, 2), ((1, 1, 4, 5), 3, 1, 3),
         ((2, 1, 1, 2), 3, 1, 1), ((1, 1, 2, 1), 3, 1, 1), ((1, 1, 5, 5), 5, 5, 0), ((1, 1, 3, 3), 4, 1, 1),
         ((1, 2, 6, 7), 4, 2, 3), ((1, 1, 3, 3), 2, 7, 3), ((2, 2, 3, 4), 3, 1, 0), ((1, 1, 7, 2), 4, 1, 2)]  # fmt: skip


def _bits(values: np.ndarray) -> list[int]:
    return [int(v) for v in np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


@pytest.mark.parametrize("edge", EDGES, ids=[f"{e[0]}-k{e[1]}-s{e[2]}-p{e[3]}" for e in EDGES])
def test_edge_shapes_plan_as_the_mirror_and_rule_the_engine_s_bits(all_rules, edge) -> None:
    from engine.portable import cpu
    from protocol import referee_model as rm

    image, k, s, p = edge
    rng = np.random.default_rng(len(image) * k + s + p)
    x = rng.standard_normal(image).astype(np.float32)
    x.reshape(-1)[::3] = -0.0  # signed zeros: padding and empty folds must give +0, a copy −0
    cols = cpu.im2col(x, k, s, p)
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    dcols.reshape(-1)[::4] = -0.0
    dx = cpu.col2im(dcols, image, k, s, p)
    for entry, source, out in ((_im2col(image, k, s, p, cols.shape), x, cols), (_col2im(image, k, s, p, cols.shape), dcols, dx)):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        assert _first_slot(all_rules, skeleton, 0) == DATA_RULES, entry.kernel
        call = record.referee_call(entry)
        flat, expected = _bits(source), _bits(out)
        on_chain = set(range(0, out.size, max(1, out.size // 40))) | {out.size - 1}  # (the suite's time: a sample)
        for element in range(out.size):
            mirror = data_rules.data_strided_reads(parsed, 0, element, ())
            assert [(0, f + t * st) for _, f, c, st in mirror for t in range(c)] == rm.dependencies(call, 0, element)
            if element not in on_chain and mirror:  # every element that reads nothing is asked on chain too
                continue
            rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 0, element, []).call()
            assert [(r[0], r[7], r[8], r[9]) for r in reads] == mirror, (entry.kernel, element)
            values = [flat[f + t * st] for _, f, c, st in mirror for t in range(c)]
            got = int(all_rules["element"].element(rule, params, values).call())
            assert got == expected[element], (entry.kernel, element, hex(got), hex(expected[element]))


def test_random_geometries_plan_as_the_mirror(all_rules) -> None:
    """DataRules' plan is the mirror's on 60 seeded random geometries (windows to 6, strides to 7, paddings to 6;
    the mirror is the referee model's dependencies on every element of 1,500 such: checked off chain)."""
    rng = np.random.default_rng(11)
    tried = 0
    while tried < 60:
        b, c, h, w, k, s, p = (int(v) for v in rng.integers(1, [3, 3, 7, 7, 7, 8, 7]))
        p -= 1
        if h + 2 * p < k or w + 2 * p < k:
            continue
        tried += 1
        cols = (b, c * k * k, ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1))
        for entry in (_im2col((b, c, h, w), k, s, p, cols), _col2im((b, c, h, w), k, s, p, cols)):
            skeleton = entry.skeleton_bytes()
            parsed = parse_skeleton(skeleton)
            checkable = data_rules.data_checkable(parsed, 0)
            assert checkable == (_first_slot(all_rules, skeleton, 0) == DATA_RULES)
            if not checkable:
                continue
            size = int(np.prod(entry.out_shapes[0][1]))
            for element in {0, size - 1, *(int(e) for e in rng.integers(0, size, 3))}:
                reads = all_rules["DataRules"].plan(skeleton, 0, element, []).call()[2]
                assert [(r[0], r[7], r[8], r[9]) for r in reads] == data_rules.data_strided_reads(parsed, 0, element, ())
