"""Attacks on col2im decided on chain (in pieces of whole rows over more than 5 covering rows, commit 6f476ab; and the
one fold of at most 5): an honest defender must be able to prove every element a rules contract takes.

A larger image spreads an element's covering columns (s·L − 1 elements apart, L = OH·OW) over more of dcols' tree, so
each value's column proof needs more siblings of its own: at a 1,024² image a 6×6 piece cost 1,052,484 gas and a 5×5
element could not be proven at all (its column words over prove_element's MAX_COLUMN_PROOF), at 2,048² neither could a
piece of 6×6 or 24×24 — yet DataRules took them. Now (`data_rules._col2im_load`) an element's or piece's column reads
load at most MAX_COL2IM_LOAD (proof words bounded from dcols' shape, as fold_rules' loads, and values): the rest
escalates, and the dearest accepted element of each shape is proven under 1,000,000 gas, its values near the smallest
normal (where binary32 adds cost the most: 5 rows of 5 at 124² cost 1,003,745 so, which is why one fold takes at most
4 rows and a piece 20 values). The shapes measured are those of a full piece of the most values (16 to 20); a 7×7's
pieces of 14 values and a 12×12's of 12 at their largest images (6,682² and 39,508², beyond the personas' largest
source) load no more and read fewer values."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import data_rules
from protocol.referee_kit import DATA_RULES, parse_skeleton, rules_of

from .test_col2im_pieces import FLOAT32, OUTPUT, _entry
from .test_row_piece_games import PROVE_ELEMENT_TARGET, chain, stack  # noqa: F401 (fixtures)
from .test_sgd_rules import _first_slot, all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (fixtures)


def _load(side: int, k: int) -> int:
    oh = side + k - 1  # stride 1, padding k − 1
    return data_rules.col2im_load(k, 1, oh, (1, k * k, oh * oh), data_rules.col2im_pieces(k, 1)[0])


# (image side, k, slot or None for dx): stride 1, padding k − 1, the middle element (covered by all k rows of k); the
# largest images DataRules still takes for each piece shape (load up to MAX_COL2IM_LOAD), and some it must not
ACCEPTED = [(2045, 4, None), (405, 5, 0), (910, 6, 0), (910, 6, None), (2440, 8, 1), (530, 10, None), (624, 20, None)]
REFUSED = [(1024, 5, None), (1024, 6, 0), (2048, 6, 0), (2048, 20, None), (4096, 8, 1)]


@pytest.mark.parametrize(("side", "k", "slot"), ACCEPTED + REFUSED)
def test_datarules_takes_a_col2im_element_only_within_the_load_cap(all_rules, side: int, k: int, slot: int | None) -> None:
    entry = _entry((1, 1, side, side), k, 1, k - 1)
    skeleton = entry.skeleton_bytes()
    output = 0 if slot is None else 1
    taken = rules_of(parse_skeleton(skeleton), output)
    assert _first_slot(all_rules, skeleton, output) == taken
    assert (taken == DATA_RULES) == ((side, k, slot) in ACCEPTED), (_load(side, k), taken)
    if taken != DATA_RULES:  # escalates: no honest party is asked a proof it cannot give
        assert _load(side, k) > data_rules.MAX_COL2IM_LOAD and taken is None


@pytest.mark.parametrize(("side", "k", "slot"), ACCEPTED)
def test_every_col2im_element_taken_on_chain_is_provable_under_a_million_gas(chain, stack, side: int, k: int,  # noqa: F811
                                                                            slot: int | None) -> None:  # fmt: skip
    import personas.row_worst_case as rw

    image = (1, 1, side, side)
    entry = _entry(image, k, 1, k - 1)
    output = 0 if slot is None else 1
    assert rules_of(parse_skeleton(entry.skeleton_bytes()), output) == DATA_RULES
    centre = (image[2] // 2) * image[3] + image[3] // 2
    element = centre if slot is None else slot * side * side + centre
    gas = rw.loss_proof(chain, stack["host"], entry, output, element, 811 + k + output, np.random.default_rng(k), scale=1e-38)
    print(f"col2im {side}² k {k} output {output} (load {_load(side, k)}): {gas:,} gas")
    assert gas < PROVE_ELEMENT_TARGET, gas


def test_the_accepted_images_are_the_largest(all_rules) -> None:
    # any larger square image and the load is over the cap: the accepted cases above are the dearest of their shapes
    for side, k, _ in ACCEPTED:
        assert _load(side, k) <= data_rules.MAX_COL2IM_LOAD < min(_load(side + d, k) for d in range(1, 400)), (side, k)


@pytest.mark.parametrize("k", [4, 5, 6, 7, 12, 20])
def test_the_load_cap_is_the_mirror_s(all_rules, k: int) -> None:
    # images around the cap, strides 1 and 2 and a batch of channels: DataRules takes exactly what the mirror does
    for side in range(100, 700, 37):
        for s, p, image in ((1, k - 1, (1, 1, side, side)), (2, k // 2, (2, 3, side, side // 2 + k))):
            entry = _entry(image, k, s, p)
            skeleton = entry.skeleton_bytes()
            for output in range(len(entry.out_shapes)):
                assert _first_slot(all_rules, skeleton, output) == rules_of(parse_skeleton(skeleton), output), (side, s, output)


def test_dcols_of_more_chunks_than_a_tensor_is_not_checkable_and_never_reverts(all_rules) -> None:
    from engine.portable import record
    from protocol import tensor_commit as tc

    image, k = (2**32 - 1, 2**20, 8, 8), 7  # dcols [B, C·49, 64]: over 2**43 elements
    entry = _entry((1, 1, 8, 8), k, 1, 3)
    cols = (image[0], image[1] * k * k, 64)
    huge = record.Entry(9, "col2im", (("input", 0), image, k, 1, 3), (record.Ref(OUTPUT, 8, 0, FLOAT32, cols),),
                        ((FLOAT32, image), (FLOAT32, (2, *image))), (tc.ZERO,) * 2)  # fmt: skip
    assert_checkable_only_when_good(all_rules, [("good", entry), ("dcols of too many chunks", huge)], DATA_RULES)
