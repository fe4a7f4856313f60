"""Adversarial review: the honest party's `output_to_dispute` on row-pieced cross-entropy entries never names an output whose plan
(any element's, from the mirror's game_reads: SELF reads) reads another differing output."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.portable import record
from protocol import tensor_commit as tc
from protocol.referee_kit import SELF_READ, game_reads, output_to_dispute, parse_skeleton

STATE, FLOAT32, INT64 = 1, 1, 2


def _entry(kernel, rows, d):
    refs = (record.Ref(STATE, 0, 0, FLOAT32, (rows, d)), record.Ref(STATE, 1, 0, INT64, (rows,)))
    args = (("input", 0), ("input", 1))
    if kernel == "cross_entropy":
        outs = [(), (rows,)] + ([(-(-rows // 256) - 1,)] if rows > 256 else [])
    else:
        args += (0.5,)
        outs = [(rows, d)]
    outs += [(2 * rows * -(-d // 16),)]
    return record.Entry(9, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))


@pytest.mark.parametrize(("kernel", "rows", "d"), [("cross_entropy", 3, 40), ("cross_entropy", 300, 33),
                                                    ("cross_entropy_backward", 3, 40), ("cross_entropy_backward", 257, 40)])
def test_output_to_dispute_reads_no_other_differing_output(kernel, rows, d) -> None:
    parsed = parse_skeleton(_entry(kernel, rows, d).skeleton_bytes())
    count = len(parsed.outputs)
    reads: dict[int, set[int]] = {}
    for o in range(count):
        size = int(np.prod(parsed.outputs[o][1]))
        elements = sorted({0, 1, size // 2, size - 2, size - 1} & set(range(size)))
        got = set()
        for e in elements:
            hints = (0,) if kernel == "cross_entropy" and o == 1 else ()
            got |= {k - SELF_READ for k, _, _ in game_reads(parsed, o, e, hints) if k >= SELF_READ}
        reads[o] = got - {o}
    for n in range(1, count + 1):
        for differ in itertools.combinations(range(count), n):
            mine = [b"a"] * count
            theirs = [b"b" if o in differ else b"a" for o in range(count)]
            chosen = output_to_dispute(parsed, mine, theirs)
            assert chosen in differ, (differ, chosen)
            assert not reads[chosen] & set(differ), (kernel, differ, chosen, reads)
