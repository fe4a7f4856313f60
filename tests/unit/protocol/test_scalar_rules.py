"""protocol.scalar_rules' Python side: clipping's pieces, groups and running sums (the recorder's output 1 of
clip_scale) against the fold of docs/arithmetic.md, section 8, written as a plain loop, on any binary32
gradients; the pieces never cross a gradient and are aligned runs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol import scalar_rules

from ..engine.helpers import examples

_gradient = st.integers(0, 200).flatmap(lambda n: hnp.arrays(np.uint32, n).map(lambda a: a.view(np.float32)))


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(_gradient, min_size=1, max_size=5))
def test_clip_partials_are_the_fold_s_running_values(gradients: list[np.ndarray]) -> None:
    """t = +0, then t = t + float64(g)·float64(g) over the gradients in order (any bits: subnormals,
    infinities, NaN), read after each piece: the vectorized running sums equal the loop's, bit for bit."""
    pieces = scalar_rules.clip_pieces([g.size for g in gradients])
    expected, total = [], 0.0
    for k, first, count in pieces:
        assert 0 <= first and count <= scalar_rules.CLIP_PIECE_TERMS and first % scalar_rules.CLIP_PIECE_TERMS == 0
        assert first + count <= gradients[k].size or count == 0
        for value in gradients[k][first : first + count]:
            g = float(value)
            total = total + g * g
        expected.append(total)
    got = scalar_rules.clip_partials(gradients)
    assert got.dtype == np.float64 and got.view(np.uint64).tolist() == np.array(expected).view(np.uint64).tolist()
    covered = [(k, i) for k, first, count in pieces for i in range(first, first + count)]
    assert covered == [(k, i) for k, g in enumerate(gradients) for i in range(g.size)]  # every term once, in order


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 400))
def test_clip_groups_cut_the_gradients_in_order(count: int) -> None:
    """Up to CLIP_GROUP gradients one clip_scale takes them all (no groups); over it the groups are consecutive
    runs of at most CLIP_GROUP gradients covering every gradient once, in order, all full but the last."""
    groups = scalar_rules.clip_groups(count)
    if count <= scalar_rules.CLIP_GROUP:
        assert groups == []
        return
    assert [k for g in groups for k in g] == list(range(count))
    assert all(len(g) == scalar_rules.CLIP_GROUP for g in groups[:-1]) and 1 <= len(groups[-1]) <= scalar_rules.CLIP_GROUP
