"""max_pool over windows of more than 3 rows in pieces of 2 rows (commit d020601), attacked once more: the dearest honest
piece is not the window whose rows are the longest single runs but one whose rows are each split at a 256-element
boundary (four runs, each under its own record path) with every value a new maximum, negative (the rule's dearest
comparisons): at k = 127 that piece costs over 1,000,000 gas, so the cap was 112 (986,469 there), and is 108 for the
margin (975,760; docs/referee.md "Margins"). And the running place a defender
commits, read by the rule as a raw int64: a negative pattern or one past the window is carried only where no later value
wins, never reverts the rule, and is caught at its own slot; the honest challenger disputes the slots a wrong output
reads before it for every mix of differing outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import data_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, output_to_dispute, parse_skeleton, rules_of

from .test_pool_forward_pieces import CAP, _check_elements, _entry, _piece, _slot_cheat, _values, _word, _x
from .test_row_piece_games import chain, stack  # noqa: F401 (the game fixtures, shared)
from .test_sgd_rules import all_rules, rules  # noqa: F401 (the contracts fixtures, shared)
from .test_widest_skeletons import MARGIN_TARGET

OUTPUT, FLOAT32, INT64 = 3, 1, 2


def _wide(k: int) -> record.Entry:
    """max_pool by 1 over x [1, 1, 2**22, 512] (2**31 binary32, the largest source a kit holds): a window's rows all
    start at its column ow, so every row of a piece is split (or not) at 256 elements alike."""
    x = (1, 1, 2**22, 512)
    pooled = (1, 1, x[2] - k + 1, x[3] - k + 1)
    slots = (-(-k // 2) - 1, *pooled)
    return record.Entry(3, "max_pool", (("input", 0), k, 1), (record.Ref(OUTPUT, 4, 0, FLOAT32, x),),
                        ((FLOAT32, pooled), (INT64, pooled), (FLOAT32, slots), (INT64, slots)), (tc.ZERO,) * 4)  # fmt: skip


def _piece_gas(chain: Any, stack: dict, monkeypatch: Any, k: int, ow: int, output: int, game_id: int) -> int:  # noqa: F811
    """prove_element of window ow's piece (outputs 0, 1: the last; 2, 3: slot 1 from slot 0) when every value read
    rises from the one before it and is negative (each a new maximum; a negative value's order key is the dearer)."""
    import personas.row_worst_case as rw

    start = [0xC4FFFFFF]  # -2047.99…: the bits fall, the values rise

    def rising(kernel: str, source: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        bits = np.uint32(start[0]) - np.arange(n, dtype=np.uint32) * np.uint32(3)
        start[0] -= 3 * n
        return bits.view(np.float32)

    monkeypatch.setattr(rw, "_piece_values", rising)
    entry = _wide(k)
    size = int(np.prod(entry.out_shapes[0][1]))
    element = ow if output < 2 else min(1, -(-k // 2) - 2) * size + ow
    assert rules_of(parse_skeleton(entry.skeleton_bytes()), output) == DATA_RULES
    return rw.loss_proof(chain, stack["host"], entry, output, element, game_id, np.random.default_rng(ow))


# columns whose rows the dearest pieces start at (measured over every ow < 256 at k = 96 … 127): each row split at 256
DEAREST_COLUMNS = (162, 167, 181, 183, 194, 209, 210)


def test_the_dearest_wide_piece_at_the_cap_costs_under_a_million_gas(chain, stack, monkeypatch) -> None:  # noqa: F811
    """At the cap every output's dearest piece (rows split at 256 under the deepest record path, values each a new
    maximum) proves within the margin (975,760 gas at k = 108, MARGIN_TARGET); the window of the longest single runs
    (ow 2) is cheaper. (At k = 127, the element rule's own bound, the same piece measured 1,007,856 gas; at 112
    986,469.)"""
    gas = {(ow, output): _piece_gas(chain, stack, monkeypatch, CAP, ow, output, 760 + 4 * i + output)
           for i, ow in enumerate((2, *DEAREST_COLUMNS)) for output in range(4)}  # fmt: skip
    dearest = max(gas, key=gas.get)
    print(f"the dearest wide max_pool piece at k = {CAP}: {gas[dearest]:,} gas (ow, output {dearest})")
    assert gas[dearest] <= MARGIN_TARGET, gas
    assert dearest[0] != 2


def test_the_cap_is_checkable_and_one_over_it_is_not(all_rules) -> None:
    """108 rows are checkable; 109 (the cap was 112) and 127 (which would cost over 1,000,000 gas) are checkable
    nowhere."""
    from .test_sgd_rules import assert_checkable_only_when_good

    image = (1, 1, 130, 131)
    cases = [("good: k at the cap", _piece(CAP, 1, image)), ("k one over the cap", _piece(CAP + 1, 1, image)),
             ("k = 127", _piece(127, 1, image))]  # fmt: skip
    assert_checkable_only_when_good(all_rules, cases, DATA_RULES)


# (k, s, B, C, H, W): a stride over k, OH = OW = 1, an odd k (the last piece one row), k = 4 by 1
GEOMETRIES = [(4, 6, 1, 2, 10, 17), (5, 9, 2, 1, 14, 5), (9, 1, 1, 1, 9, 9), (4, 1, 1, 1, 6, 4), (CAP, 3, 1, 1, CAP, CAP + 7)]


@pytest.mark.parametrize("shape", GEOMETRIES, ids=lambda g: "k{}-s{}-{}x{}x{}x{}".format(*g))
def test_edge_geometries_are_planned_and_ruled_as_recorded(all_rules, shape) -> None:
    k, s, *image = shape
    x = _x(np.random.default_rng(sum(shape) + 1), tuple(image))
    entry = _entry(x, k, s)
    _check_elements(all_rules, entry, x, lambda n: sorted(set(range(0, n, max(1, n // 6))) | {n - 1}))


@pytest.mark.parametrize("place", [(1 << 64) - 1, 1 << 63, 25, 2**40 + 3], ids=["minus-1", "int64-min", "k-squared", "huge"])
def test_a_malformed_running_place_is_carried_only_unbeaten_and_caught_at_its_slot(all_rules, place: int) -> None:
    """The rule reads the running place as the raw 64-bit pattern the defender committed: it never reverts on it and
    carries it only where no later value wins (then y's place is the committed, wrong one: the slot decides it), and
    the slot's own piece, from the true slot before it, gives the true place, so the wrong slot is caught."""
    k, s = 5, 1  # three pieces: slots 0, 1
    x = -np.arange(1 * 1 * 6 * 6, dtype=np.float32).reshape(1, 1, 6, 6)  # strictly falling: place 0 wins everywhere
    entry = _entry(x, k, s)
    skeleton = entry.skeleton_bytes()
    size = entry.outputs[0].size
    e, at = 1, size + 1  # slot 1 of window 1
    bad = list(entry.outputs)
    bad[3] = entry.outputs[3].copy()
    bad[3].reshape(-1).view(np.uint64)[at] = np.uint64(place)
    rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 1, e, []).call()  # the place, from slot 1
    values, _ = _values(entry, x, reads, tuple(bad))
    assert values[1] == place
    assert int(all_rules["element"].element(rule, params, values).call()) == place  # unbeaten: carried as committed
    rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 3, at, []).call()  # slot 1 itself, from slot 0
    values, _ = _values(entry, x, reads, tuple(bad))
    got = int(all_rules["element"].element(rule, params, values).call())
    assert got == _word(entry.outputs[3].reshape(-1)[at]) == 0 != _word(bad[3].reshape(-1)[at])
    wrong = _slot_cheat(entry, 3, 0 * size + e, 7)  # slot 0 wrong too: the first wrong slot (the leftmost) reads no other
    rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 3, e, []).call()
    assert not [r for r in reads if r[1] == 7]  # slot 0: rows 0 and 1 only
    values, _ = _values(entry, x, reads, wrong)
    assert int(all_rules["element"].element(rule, params, values).call()) == 0 != _word(wrong[3].reshape(-1)[e])


@pytest.mark.parametrize(("differ", "disputed"), [((3,), 3), ((1, 3), 3), ((2, 3), 2), ((0, 3), 0), ((1,), 1),
                                                  ((0, 1, 3), 0), ((1, 2, 3), 2), ((2,), 2)])  # fmt: skip
def test_the_honest_challenger_disputes_an_output_whose_slots_agree(differ: tuple[int, ...], disputed: int) -> None:
    """Every mix of differing outputs: the output disputed reads no differing slot output (y reads the best slots only;
    the place both; a place slot the best slots and earlier place slots, which the leftmost element never reads wrong)."""
    entry = _piece(6, 1, (1, 1, 9, 9))
    parsed, mine = parse_skeleton(entry.skeleton_bytes()), [tc.keccak(b"mine %d" % o) for o in range(4)]
    theirs = [tc.keccak(b"theirs %d" % o) if o in differ else mine[o] for o in range(4)]
    assert output_to_dispute(parsed, mine, theirs) == disputed
    reads = {0: {2}, 1: {2, 3}, 2: {2}, 3: {2, 3}}  # the outputs a piece of each reads (its own: an earlier slot)
    assert not (reads[disputed] - {disputed}) & set(differ)


def test_the_mirror_refuses_what_the_contract_refuses() -> None:
    assert data_rules.MAX_POOL_PIECED == CAP == 108
