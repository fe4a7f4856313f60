"""max_pool over windows of more than MAX_POOL_WINDOW (3) rows, decided in pieces of 2 rows (DataRules' `_pool_plan`,
its mirror `data_rules.max_pool_piece`, the referee model's `max_pool_piece`, the recorder's `_pool_running_best`, the
element rule MAX_POOL's [output, base] layout), reviewed as a cheater would attack it: a running best or place one bit
wrong in a slot, a place pointing at a value that is not the first maximum, a piece that reads another slot or other
rows, NaN, ±0 and ties (the first maximum wins, a NaN first stays), k at the cap and one over it, rows across
256-element run boundaries, the int64 place read as binary32. Over hypothesis' geometries the contract plans every
sampled element as the mirror reads, and the element rule over the values the plan reads gives the model's and the
recorder's bits; on anvil a slot one bit wrong is caught, the honest defender wins with its kit, and a consistent cheat
(a wrong best slot and a y that follows from it) is caught only at the slot, which is why the honest challenger
disputes the slots first (`output_to_dispute`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import cpu, record
from protocol import data_rules, referee_calls
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.errors import EngineError
from protocol.referee_kit import DATA_RULES, SELF_READ, output_to_dispute, parse_skeleton, rules_of

from ..engine.helpers import examples
from .helpers import changed
from .test_row_piece_games import PROVE_ELEMENT_TARGET, chain, stack  # noqa: F401 (the game fixtures, shared)
from .test_sgd_rules import all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (the contracts fixtures, shared)

OUTPUT, FLOAT32, INT64, SELF = 3, 1, 2, 7
NAN_MAGNITUDE = 0x7F800000
CAP = data_rules.MAX_POOL_PIECED


def _entry(x: np.ndarray, k: int, s: int) -> record.Entry:
    """A recorded max_pool of x (the CPU kernel's y and places, the recorder's running best and place)."""
    y, where = cpu.max_pool(x, k, s)
    outputs = [y, where, *record._pool_running_best(x, k, s, y, where)]
    return record.Entry(5, "max_pool", (("input", 0), k, s), (record.Ref(OUTPUT, 4, 0, FLOAT32, x.shape),),
                        tuple((tc.dtype_code(o), tuple(o.shape)) for o in outputs), tuple(tc.tensor_root(o) for o in outputs),
                        tuple(outputs))  # fmt: skip


def _x(rng: np.random.Generator, shape: tuple[int, ...], awkward: bool = True) -> np.ndarray:
    """Values with ties (a few integers), ±0 and NaN (first in some windows), ±inf."""
    x = rng.integers(-2, 3, shape).astype(np.float32)
    if awkward:
        flat = x.reshape(-1)
        specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 2.0], dtype=np.float32)
        at = rng.integers(0, flat.size, max(1, flat.size // 8))
        flat[at] = rng.choice(specials, at.size)
    return x


def _word(value: Any) -> int:
    a = np.asarray(value)
    return int(a.astype(np.int64).view(np.uint64)) if a.dtype == np.int64 else int(a.astype(np.float32).view(np.uint32))


def _same(got: int, want: int) -> bool:
    return got == want or ((got & 0x7FFFFFFF) > NAN_MAGNITUDE and (want & 0x7FFFFFFF) > NAN_MAGNITUDE)


def _values(entry: record.Entry, x: np.ndarray, reads: list, outputs: tuple | None = None) -> tuple[list[int], dict]:
    """The words a plan's reads hand the rule (x's elements; REF_SELF the entry's own outputs 2 and 3, or `outputs`'),
    and the same values as the model's proven keys."""
    own = outputs or entry.outputs
    values, proven = [], {}
    for r in reads:
        if r[1] == SELF:
            got = own[r[3]].reshape(-1)[r[7]]
            values.append(_word(got))
            proven[("pool_best" if r[3] == 2 else "pool_place", r[7])] = got
        else:
            for i in range(r[7], r[7] + r[8]):
                values.append(_word(x.reshape(-1)[i]))
                proven[(0, i)] = x.reshape(-1)[i]
    return values, proven


def _expected_reads(k: int, s: int, shape: tuple[int, ...], pooled: tuple[int, ...], output: int, element: int) -> list:
    """The reads from first principles (not the mirror): piece t of window (b, c, oh, ow) reads slot t − 1 of outputs 2
    and 3 (t ≥ 1), then rows oh·s + 2t and oh·s + 2t + 1 of x (inside the window), each split at 256 elements."""
    size = int(np.prod(pooled))
    pieces = -(-k // 2)
    t, e = divmod(element, size) if output >= 2 else (pieces - 1, element)
    b, c, oh, ow = np.unravel_index(e, pooled)
    reads = [(SELF_READ + 2, (t - 1) * size + e, 1), (SELF_READ + 3, (t - 1) * size + e, 1)] if t else []
    for i in range(2 * t, min(2 * t + 2, k)):
        first = (((b * shape[1] + c) * shape[2] + oh * s + i) * shape[3]) + ow * s
        edge = (first // 256 + 1) * 256
        reads += [(0, int(first), k)] if first + k <= edge else [(0, int(first), int(edge - first)), (0, int(edge), int(first + k - edge))]
    return reads


def _check_elements(all_rules: dict, entry: record.Entry, x: np.ndarray, elements_of: Any) -> None:
    """Every chosen element: the contract plans it as the mirror and as first principles say, the encoding is the
    model's, and the element rule and the model give the recorded bits."""
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    call = record.referee_call(entry)
    k, s = entry.args[1], entry.args[2]
    pooled = entry.out_shapes[0][1]
    for output, out in enumerate(entry.outputs):
        assert rules_of(parsed, output) == DATA_RULES, (k, s, output)
        flat = out.reshape(-1)
        for element in elements_of(flat.size):
            rule, params, reads, zipped = all_rules["DataRules"].plan(skeleton, output, element, []).call()
            mirror = data_rules.data_reads(parsed, output, element, ())
            assert not zipped and [(r[0], r[7], r[8]) for r in reads] == mirror == _expected_reads(k, s, x.shape, pooled, output, element)
            assert len(reads) <= 6 and tuple(params) == data_rules.pool_params(parsed, output, element)
            for r in reads:
                if r[1] == SELF:  # a slot of the entry's own running values: best binary32, place int64, an earlier slot
                    assert (r[3], r[4]) in ((2, FLOAT32), (3, INT64)) and (output < 2 or r[7] < element)
            values, proven = _values(entry, x, reads)
            want = referee_calls.encode(call, output, element, proven)
            assert (rule, tuple(params), tuple(values)) == (want.rule, want.params, want.values)
            got = int(all_rules["element"].element(rule, params, values).call())
            assert _same(got, _word(flat[element])), (k, s, output, element, hex(got))
            assert _same(rm.check_element(call, output, element, proven), _word(flat[element]))


# ------------------------------------------------------------------------------- the recorder's running values


def _slow_scan(x: np.ndarray, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot t by definition: the scan (best = the first value, then v if v > best, row-major) over rows 0 … 2t + 1."""
    b_n, c_n, h_n, w_n = x.shape
    oh_n, ow_n = (h_n - k) // s + 1, (w_n - k) // s + 1
    slots = -(-k // 2) - 1
    best = np.zeros((slots, b_n, c_n, oh_n, ow_n), dtype=np.float32)
    place = np.zeros(best.shape, dtype=np.int64)
    for b, c, oh, ow in np.ndindex(b_n, c_n, oh_n, ow_n):
        m, q = x[b, c, oh * s, ow * s], 0
        for i in range(k):
            for j in range(k):
                v = x[b, c, oh * s + i, ow * s + j]
                if v > m:
                    m, q = v, i * k + j
            if i % 2 == 1 and i // 2 < slots:
                best[i // 2, b, c, oh, ow], place[i // 2, b, c, oh, ow] = m, q
    return best, place


@pytest.mark.parametrize("window", [(4, 1), (5, 2), (6, 3), (7, 7), (9, 1)], ids=lambda w: f"k{w[0]}-s{w[1]}")
def test_the_running_best_and_place_are_the_kernels_scan(window: tuple[int, int]) -> None:
    k, s = window
    rng = np.random.default_rng(k * 10 + s)
    x = _x(rng, (2, 2, k + 3, k + 2))
    y, where = cpu.max_pool(x, k, s)
    best, place = record._pool_running_best(x, k, s, y, where)
    slow_best, slow_place = _slow_scan(x, k, s)
    assert best.shape == (-(-k // 2) - 1, *y.shape) and best.dtype == np.float32 and place.dtype == np.int64
    assert np.array_equal(best.view(np.uint32), slow_best.view(np.uint32)) and np.array_equal(place, slow_place)


def test_a_max_pool_that_is_not_the_scan_is_refused() -> None:
    """y or a place the scan does not end at (a kernel that took the last maximum of a tie): not recorded."""
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)  # every value ties: the first (place 0) wins
    y, where = cpu.max_pool(x, 4, 4)
    with pytest.raises(EngineError):
        record._pool_running_best(x, 4, 4, y, where + 15)
    with pytest.raises(EngineError):
        record._pool_running_best(x, 4, 4, y + np.float32(1), where)
    with pytest.raises(EngineError):  # -0 for +0: the same value, other bits
        record._pool_running_best(x, 4, 4, -y, where)


# ------------------------------------------------------------------------- the plan, the mirror, the model


# (k, s, B, C, H, W): the cap and edge shapes (H = k, OW = 1), rows across 256-element boundaries (W = 300)
SHAPES = [(4, 1, 1, 1, 4, 4), (4, 4, 2, 1, 8, 8), (5, 2, 1, 2, 9, 7), (6, 1, 1, 1, 7, 300), (7, 3, 1, 1, 7, 270),
          (CAP, 1, 1, 1, CAP, CAP + 1), (CAP, 5, 1, 1, CAP + 5, 260)]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES, ids=lambda g: "k{}-s{}-{}x{}x{}x{}".format(*g))
def test_wide_windows_are_planned_from_first_principles_and_ruled_as_recorded(all_rules, shape) -> None:
    k, s, *image = shape
    x = _x(np.random.default_rng(sum(shape)), tuple(image))
    entry = _entry(x, k, s)
    _check_elements(all_rules, entry, x, lambda n: sorted(set(range(0, n, max(1, n // 12))) | {n - 1}))


@settings(max_examples=examples(12), deadline=None)
@given(st.integers(4, CAP), st.integers(1, 6), st.integers(0, 3), st.integers(0, 6), st.booleans(), st.integers(0, 2**32 - 1))
def test_wide_windows_over_geometries(all_rules, k: int, s: int, extra_h: int, extra_w: int, awkward: bool, seed: int) -> None:
    x = _x(np.random.default_rng(seed), (1, 2, k + extra_h, k + extra_w), awkward)
    entry = _entry(x, k, s)
    _check_elements(all_rules, entry, x, lambda n: sorted({0, n // 2, n - 1}))


# ------------------------------------------------------------------------------------------------- cheats


def _slot_cheat(entry: record.Entry, output: int, at: int, bits: int) -> tuple:
    outputs = list(entry.outputs)
    wrong = outputs[output].copy()
    wide = wrong.dtype == np.int64
    view = wrong.reshape(-1).view(np.uint64 if wide else np.uint32)
    view[at] ^= np.uint64(bits) if wide else np.uint32(bits)
    outputs[output] = wrong
    return tuple(outputs)


def test_a_wrong_slot_is_caught_by_its_own_piece(all_rules) -> None:
    """A running best or place one bit wrong in slot t: the piece of slot t (from the true slot t − 1 and its rows)
    differs from it, so a challenger disputing that slot wins."""
    k, s = 7, 1  # four pieces: slots 0, 1, 2
    x = _x(np.random.default_rng(7), (1, 1, 9, 9), awkward=False)
    entry = _entry(x, k, s)
    skeleton = entry.skeleton_bytes()
    size = entry.outputs[0].size
    for output, bits in ((2, 1 << 22), (3, 1)):  # the best (a large change) and the place (pointing elsewhere)
        e = 4
        at = 1 * size + e  # slot 1
        bad = _slot_cheat(entry, output, at, bits)
        rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, output, at, []).call()
        values, _ = _values(entry, x, reads, bad)  # the slot before it is right
        got = int(all_rules["element"].element(rule, params, values).call())
        assert got == _word(entry.outputs[output].reshape(-1)[at]) != _word(bad[output].reshape(-1)[at])


def test_a_place_at_a_value_that_is_not_the_first_maximum_is_caught(all_rules) -> None:
    """Ties: the first maximum wins. A place naming a later equal value, or a NaN, is not the rule's."""
    k, s = 4, 4
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 1, 2] = x[0, 0, 3, 3] = 5.0  # the first 5 at place 6; an equal one at place 15
    entry = _entry(x, k, s)
    assert int(entry.outputs[1].reshape(-1)[0]) == 6 and int(entry.outputs[3].reshape(-1)[0]) == 6
    skeleton = entry.skeleton_bytes()
    rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 1, 0, []).call()
    values, _ = _values(entry, x, reads)
    assert int(all_rules["element"].element(rule, params, values).call()) == 6  # not 15
    x[0, 0, 0, 0] = np.nan  # a NaN first stays: nothing compares above it
    entry = _entry(x, k, s)
    assert np.isnan(entry.outputs[0].reshape(-1)[0]) and int(entry.outputs[1].reshape(-1)[0]) == 0
    for output in (0, 1):
        rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, output, 0, []).call()
        values, _ = _values(entry, x, reads)
        got = int(all_rules["element"].element(rule, params, values).call())
        assert _same(got, _word(entry.outputs[output].reshape(-1)[0]))
    x[0, 0, 0, 0] = -0.0  # -0 first, +0 after it: equal, the first stays (bits 0x80000000)
    x[0, 0, 1, 2] = x[0, 0, 3, 3] = 0.0
    entry = _entry(x, k, s)
    rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 0, 0, []).call()
    values, _ = _values(entry, x, reads)
    assert int(all_rules["element"].element(rule, params, values).call()) == 0x80000000 == _word(entry.outputs[0].reshape(-1)[0])


def test_a_piece_reads_only_its_slot_and_rows(all_rules) -> None:
    """The plan is fixed by the skeleton: no hints, and a piece's reads are its slot's and its two rows'; values of
    another slot or other rows (a defender proving them in the plan's place) give another answer."""
    k, s = 6, 2
    x = -np.arange(2 * 8 * 10, dtype=np.float32).reshape(1, 2, 8, 10)  # strictly falling, row-major: place 0 wins
    x[0, 0, 5, 3] = 1e6  # one large value in row 5 of window (0, 0, 0, 1): piece 2's (rows 4, 5), at place 5·6 + 1
    entry = _entry(x, k, s)
    skeleton = entry.skeleton_bytes()
    with pytest.raises(Exception, match="data_rules: rotary, pooling and columns take no hints"):
        all_rules["DataRules"].plan(skeleton, 0, 1, [0]).call()
    rule, params, reads, _ = all_rules["DataRules"].plan(skeleton, 1, 1, []).call()
    assert tuple(params) == (1, 4 * k - 2)
    values, _ = _values(entry, x, reads)
    assert int(all_rules["element"].element(rule, params, values).call()) == 5 * k + 1 == int(entry.outputs[1].reshape(-1)[1])
    other = list(values)
    other[2:] = other[2 + k :] + other[2 : 2 + k]  # rows 4 and 5 swapped (another row's values)
    assert int(all_rules["element"].element(rule, params, other).call()) != 5 * k + 1


def _piece(k: int, s: int, image: tuple[int, ...], outputs: tuple | None = None) -> record.Entry:
    pooled = (image[0], image[1], (image[2] - k) // s + 1, (image[3] - k) // s + 1)
    slots = (-(-k // 2) - 1, *pooled)
    shapes = outputs or ((FLOAT32, pooled), (INT64, pooled), (FLOAT32, slots), (INT64, slots))
    return record.Entry(5, "max_pool", (("input", 0), k, s), (record.Ref(OUTPUT, 4, 0, FLOAT32, image),), shapes,
                        (tc.ZERO,) * len(shapes))  # fmt: skip


def test_the_cap_and_malformed_wide_windows(all_rules) -> None:
    """k at the cap is checkable, one over it is not (the arbiter's); running values of another shape or dtype (the
    int64 place as binary32), missing or extra, are checkable nowhere, and no rules contract reverts."""
    image = (1, 2, CAP + 2, CAP + 3)
    base = _piece(4, 1, (1, 2, 8, 8))
    pooled, slots = base.out_shapes[0][1], base.out_shapes[2][1]
    cases = [
        ("good: k = 4", base), ("good: k = 5 by 2", _piece(5, 2, (2, 1, 9, 12))), ("good: k at the cap", _piece(CAP, 1, image)),
        ("good: dims at their largest", _piece(4, 4, (2**32 - 1,) * 4)),
        ("k one over the cap", _piece(CAP + 1, 1, image)),
        ("k = 4, no running values", changed(base, out_shapes=base.out_shapes[:2])),
        ("k = 4, the best only", changed(base, out_shapes=base.out_shapes[:3])),
        ("k = 4, five outputs", changed(base, out_shapes=(*base.out_shapes, (INT64, slots)))),
        ("the place binary32", changed(base, out_shapes=(*base.out_shapes[:3], (FLOAT32, slots)))),
        ("the best int64", changed(base, out_shapes=(*base.out_shapes[:2], (INT64, slots), (INT64, slots)))),
        ("best and place swapped", changed(base, out_shapes=(*base.out_shapes[:2], (INT64, slots), (FLOAT32, slots)))),
        ("a slot too many", changed(base, out_shapes=(*base.out_shapes[:2], (FLOAT32, (2, *pooled)), (INT64, (2, *pooled))))),
        ("running values flat", changed(base, out_shapes=(*base.out_shapes[:2], (FLOAT32, (25 * 2,)), (INT64, (25 * 2,))))),
        ("k = 3 with running values", _piece(3, 1, (1, 2, 8, 8), ((FLOAT32, (1, 2, 6, 6)), (INT64, (1, 2, 6, 6)),
                                                                   (FLOAT32, (1, 1, 2, 6, 6)), (INT64, (1, 1, 2, 6, 6))))),
    ]  # fmt: skip
    assert_checkable_only_when_good(all_rules, cases, DATA_RULES)


def test_the_slots_are_disputed_before_y_and_the_places() -> None:
    """y reads the best slot (output 2), the place reads both slots, a place slot the best one: when several differ the
    honest challenger disputes the best slots, then the place slots (`output_to_dispute`)."""
    entry = _piece(5, 1, (1, 1, 8, 8))
    parsed, mine = parse_skeleton(entry.skeleton_bytes()), [tc.keccak(b"mine %d" % o) for o in range(4)]

    def other(*outputs: int) -> list[bytes]:
        return [tc.keccak(b"theirs %d" % o) if o in outputs else mine[o] for o in range(4)]

    assert output_to_dispute(parsed, mine, other(0, 1, 2, 3)) == 2
    assert output_to_dispute(parsed, mine, other(0, 1, 3)) == 0
    assert output_to_dispute(parsed, mine, other(1, 3)) == 3
    assert output_to_dispute(parsed, mine, other(1, 2)) == 2
    assert output_to_dispute(parsed, mine, other(0, 2)) == 2


# ------------------------------------------------------------------------------------------- games on anvil


@pytest.fixture(scope="module")
def wide_step() -> dict[str, Any]:
    """Step 0 of a CNN pooling 5×5 windows by 1 (8×8 → 4×4: three pieces, the running slots [2, 4, 2, 4, 4])."""
    from .helpers import first_step
    from .test_pool_rules import _cnn

    return first_step(_cnn(5, 1))


@pytest.fixture(scope="module")
def wide_kit(wide_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    from .helpers import step_kit

    return step_kit(wide_step, tmp_path_factory.mktemp("wide-pool-kit"))


# y and the place of window 21 (piece 2, from slot 1), slot 1 of the best and of the place (from slot 0), slot 0 (rows 0, 1)
WIDE_TARGETS = [(0, 21), (1, 21), (2, 128 + 21), (3, 128 + 21), (2, 5)]


@pytest.mark.parametrize(("output", "element"), WIDE_TARGETS, ids=["y", "place", "best-slot-1", "place-slot-1", "best-slot-0"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_wide_windows_are_ruled_on_chain(chain, stack, wide_step, wide_kit, wrong: bool, output: int, element: int) -> None:  # noqa: F811
    from protocol import referee_kit as rk

    from .helpers import play_element_game

    entry = next(e for e in wide_step["rec"].entries if e.kernel == "max_pool")
    assert [shape for _, shape in entry.out_shapes[2:]] == [(2, 4, 2, 4, 4)] * 2
    proof_gas, _ = play_element_game(chain, stack, wide_step, wide_kit, entry, output, element, wrong, rk.DATA_RULES)
    assert proof_gas < PROVE_ELEMENT_TARGET


@pytest.mark.parametrize("disputed", [0, 2], ids=["y (not the honest choice)", "the best slot"])
def test_a_consistent_cheat_is_caught_only_at_its_slot(chain, stack, wide_step, disputed: int) -> None:  # noqa: F811
    """A defender whose best slot 1 of a window is one bit wrong and whose y follows from it (the rule over the wrong
    slot): the honest challenger disputes the slot (`output_to_dispute`) and wins; one disputing y loses."""
    from eth_hash.auto import keccak

    from personas.referee_game import DECIDED, PROOF, Match, Side
    from protocol import referee_kit as rk

    from .test_referee_game import ARITY, LEVELS

    rec = wide_step["rec"]
    entry = next(e for e in rec.entries if e.kernel == "max_pool")
    j, e, size = entry.index, 21, entry.outputs[0].size
    first = size + e  # slot 1
    outputs = list(entry.outputs)
    best = outputs[2].copy()
    best.reshape(-1).view(np.uint32)[first] ^= np.uint32(1 << 22)  # a large change: it beats rows 4's values
    outputs[2] = best
    call = record.referee_call(entry)
    proven = dict(record.proven_values(rec, entry, 0, e))
    proven[("pool_best", first)] = best.reshape(-1)[first]
    y = outputs[0].copy()
    y.reshape(-1)[e] = np.uint32(rm.check_element(call, 0, e, proven)).view(np.float32)
    assert y.reshape(-1)[e] != entry.outputs[0].reshape(-1)[e]
    outputs[0] = y
    wrong = dataclasses.replace(entry, outputs=tuple(outputs), out_roots=tuple(tc.tensor_root(o) for o in outputs))
    bad = dataclasses.replace(rec, entries=[*rec.entries[:j], wrong, *rec.entries[j + 1 :]])
    assert rk.output_to_dispute(rk.parse_skeleton(entry.skeleton_bytes()), list(entry.out_roots), list(wrong.out_roots)) == 2
    truth = Side(wide_step["roots"], rec, wide_step["next_leaves"])
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(wide_step["roots"]))]
    defender = Side([wide_step["roots"][0], *later], bad, wide_step["next_leaves"])
    match = Match(chain, stack, ARITY, LEVELS, wide_step["before"], wide_step["binding"], defender, truth,
                  honest_challenger=True, target=j, target_element=first if disputed == 2 else e, output=disputed)  # fmt: skip
    match.play(PROOF, "defender")
    match.prove_element()
    assert match.game()["stage"] == DECIDED
    assert match.ruling()[1] == (disputed == 2)


# ----------------------------------------------------------------------------------------------------- gas


def dearest_wide_window(k: int) -> tuple[record.Entry, int]:
    """A max_pool by 1 over x [1, 1, 2**22, 512] (2**31 binary32, the largest source a kit holds) and the window
    whose rows' runs are the longest the honest kit proves (each row split at 256 elements, each part the smallest
    aligned run of 2^m chunks holding it: a part across a 16-chunk line is 32 chunks)."""
    x = (1, 1, 2**22, 512)
    pooled = (1, 1, x[2] - k + 1, x[3] - k + 1)
    slots = (-(-k // 2) - 1, *pooled)
    entry = record.Entry(3, "max_pool", (("input", 0), k, 1), (record.Ref(OUTPUT, 4, 0, FLOAT32, x),),
                         ((FLOAT32, pooled), (INT64, pooled), (FLOAT32, slots), (INT64, slots)), (tc.ZERO,) * 4)  # fmt: skip

    def chunks(ow: int) -> int:
        total = 0
        for first, count in ((ow, min(k, 256 - ow)), (256, ow + k - 256)):
            if count > 0:
                a, b = first // 8, (first + count - 1) // 8
                level = next(m for m in range(9) if a >> m == b >> m)
                total += 1 << level
        return total

    return entry, max(range(256), key=chunks)


def wide_window_gas(chain: Any, stack: dict, k: int, output: int, game_id: int) -> int:  # noqa: F811
    """The dearest prove_element of a piece of `output` at window k: outputs 0 and 1 the last piece (2 rows for an
    even k), outputs 2 and 3 slot 1 (rows 2 and 3, from slot 0), or slot 0 where there is only one."""
    import personas.row_worst_case as rw

    entry, ow = dearest_wide_window(k)
    pooled = entry.out_shapes[0][1]
    size = int(np.prod(pooled))
    slot = min(1, -(-k // 2) - 2)
    element = ow if output < 2 else slot * size + ow
    parsed = parse_skeleton(entry.skeleton_bytes())
    assert rules_of(parsed, output) == DATA_RULES
    return rw.loss_proof(chain, stack["host"], entry, output, element, game_id, np.random.default_rng((k, output)))


def test_the_dearest_wide_window_pieces_cost_under_a_million_gas(chain, stack) -> None:  # noqa: F811
    """At the cap (108) every output's piece whose rows are the longest single runs the honest kit proves, its slot
    under deep trees, proves under 1,000,000 gas (not the dearest: rows split at 256 with every value a new maximum
    cost more, test_pool_piece_attacks.py)."""
    gas = [wide_window_gas(chain, stack, CAP, output, 720 + output) for output in range(4)]
    print(f"the dearest wide max_pool pieces at k = {CAP} (y, place, best slot, place slot): {gas}")
    assert max(gas) < PROVE_ELEMENT_TARGET, gas
