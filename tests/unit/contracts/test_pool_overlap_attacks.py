"""An attacker's review of max_pool_backward over overlapping windows (commit 60cae2c): DataRules' `_overlap_plan`, its
mirror `data_rules.overlap_piece`, the referee model, the recorder's running values and RULE_MAX_POOL_BACKWARD's new
layout (a leading running value), at edge shapes (H or W equal to k, OH or OW 1, k = 2 by 1, k = 3 by 1 with nine
windows, B and C over 1, rows and columns no window covers) and over awkward gradients (NaN, ±inf, ±0, overflow,
subnormals; ties in x). Elements of dx and of the running values (every one, or about a hundred spread over a larger
output) are planned by the contract as the mirror reads,
and the element rule over the values the plan reads gives the recorded bits (NaN as a class); malformed skeletons
are checkable nowhere and never make a rules contract revert."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.portable import cpu, record
from protocol import data_rules, referee_calls
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, parse_skeleton, rules_of

from .helpers import changed
from .test_pool_rules import _overlapping
from .test_row_piece_games import chain, stack  # noqa: F401 (the game fixtures, shared)
from .test_sgd_rules import all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (the contracts fixtures, shared)

OUTPUT, FLOAT32, INT64, SELF = 3, 1, 2, 7
NAN_MAGNITUDE = 0x7F800000

# (k, s, B, C, H, W)
SHAPES = [
    (2, 1, 1, 1, 2, 2),  # OH = OW = 1: every element one window
    (2, 1, 1, 1, 3, 2),  # OW = 1
    (3, 1, 1, 2, 3, 5),  # H = k: OH = 1, C = 2
    (3, 1, 2, 1, 5, 5),  # nine windows over the centre, B = 2
    (3, 2, 1, 2, 3, 4),  # H = k, OW = 1, column 3 no window covers
    (3, 2, 2, 1, 7, 6),  # column 5 no window covers
]


def _case(k: int, s: int, b: int, c: int, h: int, w: int, seed: int) -> tuple[record.Entry, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, (b, c, h, w)).astype(np.float32)  # ties: the first maximum wins
    _, where = cpu.max_pool(x, k, s)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, -3e38, 1e-40, 1.5, -2.25], dtype=np.float32)
    dy = rng.choice(specials, where.shape).astype(np.float32)
    dx = cpu.max_pool_backward(x.shape, where, dy, k, s)
    running = record._pool_running_values(x.shape, where, dy, k, s, dx)
    pooled = where.shape
    entry = record.Entry(9, "max_pool_backward", (x.shape, ("input", 0), ("input", 1), k, s),
                         (record.Ref(OUTPUT, 5, 1, INT64, pooled), record.Ref(OUTPUT, 8, 0, FLOAT32, pooled)),
                         ((FLOAT32, x.shape), (FLOAT32, running.shape)), (tc.tensor_root(dx), tc.tensor_root(running)),
                         (dx, running))  # fmt: skip
    return entry, where, dy


def _word(value: Any) -> int:
    a = np.asarray(value)
    return int(a.astype(np.int64).view(np.uint64)) if a.dtype == np.int64 else int(a.astype(np.float32).view(np.uint32))


def _same(got: int, want: int) -> bool:
    return got == want or ((got & 0x7FFFFFFF) > NAN_MAGNITUDE and (want & 0x7FFFFFFF) > NAN_MAGNITUDE)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda g: "k{}-s{}-{}x{}x{}x{}".format(*g))
def test_overlapping_elements_are_planned_as_the_mirror_and_ruled_as_recorded(all_rules, shape) -> None:
    k, s, *image = shape
    entry, where, dy = _case(k, s, *image, seed=sum(shape))
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    call = record.referee_call(entry)
    proven_of = {0: where.reshape(-1), 1: dy.reshape(-1)}
    for output, out in enumerate(entry.outputs):
        assert rules_of(parsed, output) == DATA_RULES
        flat = out.reshape(-1)
        for element in sorted(set(range(0, flat.size, max(1, flat.size // 100))) | {flat.size - 1}):  # (a sample: the suite's time)
            rule, params, reads, zipped = all_rules["DataRules"].plan(skeleton, output, element, []).call()
            assert not zipped and [(r[0], r[7], r[8]) for r in reads] == data_rules.data_reads(parsed, output, element, ()), (shape, output, element)
            assert tuple(params) == data_rules.pool_params(parsed, output, element), (shape, output, element)
            values = []
            proven: dict = {}
            for r in reads:
                if r[1] == SELF:
                    assert r[3] == 1
                    if output == 1:
                        assert r[7] < element  # a REF_SELF read of the disputed output: an earlier element only
                    values.append(_word(entry.outputs[1].reshape(-1)[r[7]]))
                    proven[("pool_running", r[7])] = entry.outputs[1].reshape(-1)[r[7]]
                else:
                    values.append(_word(proven_of[r[0]][r[7]]))
                    proven[(r[0], r[7])] = proven_of[r[0]][r[7]]
            want = referee_calls.encode(call, output, element, proven)
            assert (rule, tuple(params), tuple(values)) == (want.rule, want.params, want.values), (shape, output, element)
            got = int(all_rules["element"].element(rule, params, values).call())
            assert _same(got, _word(flat[element])), (shape, output, element, hex(got), hex(_word(flat[element])))
            assert _same(rm.check_element(call, output, element, proven), _word(flat[element]))


def _big(k: int, s: int, image: tuple[int, int, int, int], running: tuple[int, ...] | None = None) -> record.Entry:
    pooled = (image[0], image[1], (image[2] - k) // s + 1, (image[3] - k) // s + 1)
    rows = -(-k // s)
    return record.Entry(9, "max_pool_backward", (image, ("input", 0), ("input", 1), k, s),
                        (record.Ref(OUTPUT, 5, 1, INT64, pooled), record.Ref(OUTPUT, 8, 0, FLOAT32, pooled)),
                        ((FLOAT32, image), (FLOAT32, running or (rows * rows - 1, *image))), (tc.ZERO,) * 2)  # fmt: skip


def test_edge_skeletons_are_not_checkable_and_never_revert(all_rules) -> None:
    base = _overlapping(3, 2)
    x = (2, 3, 8, 8)
    cases = [
        ("good: k = 3 by 1, H = W = k", _big(3, 1, (1, 1, 3, 3))),
        ("good: k = 2 by 1, H = W = k", _big(2, 1, (1, 1, 2, 2))),
        ("good: a dx of 2**31 elements (its running values' axes are its own and 8)", _big(3, 1, (1, 1, 2**16, 2**15))),
        ("good: dims at their largest", _big(3, 2, (2**32 - 1,) * 4)),
        ("running values flat", _big(3, 1, (1, 1, 4, 4), (8 * 16,))),
        ("three outputs", changed(base, out_shapes=(*base.out_shapes, (FLOAT32, (3, 2, 3, 8, 8))))),
        ("outputs swapped", changed(base, out_shapes=(base.out_shapes[1], base.out_shapes[0]))),
        ("dx int64, running values", changed(base, out_shapes=((INT64, x), base.out_shapes[1]))),
        ("running values a slot long", _overlapping(3, 2, (4, 2, 3, 8, 8))),
        ("running values of R = floor(k / s)", _overlapping(3, 2, (0, 2, 3, 8, 8))),
        ("running values empty", changed(base, out_shapes=(base.out_shapes[0], (FLOAT32, ())))),
        ("running values of 9 slots by 1", _overlapping(3, 1, (9, 2, 3, 8, 8))),
        ("stride 0", changed(base, args=(x, ("input", 0), ("input", 1), 3, 0))),
        ("k = 4 by 3, running values", _big(4, 3, (1, 1, 8, 8))),
        ("k over s, one output (no running values)", changed(base, out_shapes=(base.out_shapes[0],))),
        ("k = s, running values of R = 1 (none)", _big(2, 2, (1, 1, 4, 4), (0, 1, 1, 4, 4))),
        ("k = s, running values as if overlapping", _big(3, 3, (1, 1, 6, 6), (3, 1, 1, 6, 6))),
    ]
    assert_checkable_only_when_good(all_rules, cases, DATA_RULES)


# ------------------------------------------------------------------------------------------- games on anvil


@pytest.fixture(scope="module")
def nine_step() -> dict[str, Any]:
    """Step 0 of a CNN pooling 3×3 by 1 (dx [4, 2, 8, 8], |dx| = 512; the running values 8·512)."""
    from .helpers import first_step
    from .test_pool_rules import _cnn

    return first_step(_cnn(3, 1))


@pytest.fixture(scope="module")
def nine_kit(nine_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    from .helpers import step_kit

    return step_kit(nine_step, tmp_path_factory.mktemp("nine-kit"))


# dx[0, 0, 4, 4] (nine windows: from running slot 7), slot 7 of it (from slot 6), slot 7 of dx[0, 0, 0, 0] (one window:
# a copy of slot 6)
NINE_TARGETS = [(0, 4 * 8 + 4), (1, 7 * 512 + 4 * 8 + 4), (1, 7 * 512)]


@pytest.mark.parametrize(("output", "element"), NINE_TARGETS, ids=["dx", "slot-7", "a-copy"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_nine_windows_are_ruled_on_chain(chain, stack, nine_step, nine_kit, wrong: bool, output: int, element: int) -> None:  # noqa: F811
    from protocol import referee_kit as rk

    from .helpers import play_element_game

    entry = next(e for e in nine_step["rec"].entries if e.kernel == "max_pool_backward")
    assert entry.out_shapes[1] == (FLOAT32, (8, *entry.out_shapes[0][1]))
    play_element_game(chain, stack, nine_step, nine_kit, entry, output, element, wrong, rk.DATA_RULES)


def _consistent_cheat(rec: record.StepRecord, j: int, e: int) -> tuple[record.StepRecord, int]:
    """The record with centre element e's running slot 7 (after 8 of its 9 windows) one bit wrong and dx[e] its piece
    from it (the rule over the wrong slot): a dispute of dx alone finds dx right from the slot before it. (the
    record, the wrong element of output 1)."""
    import dataclasses

    entry = rec.entries[j]
    dx, running = entry.outputs[0].copy(), entry.outputs[1].copy()
    size = dx.size
    first = 7 * size + e
    running.reshape(-1).view(np.uint32)[first] ^= np.uint32(8)
    call = record.referee_call(entry)
    proven = dict(record.proven_values(rec, entry, 0, e))
    proven[("pool_running", first)] = running.reshape(-1)[first]
    dx.reshape(-1)[e] = np.uint32(rm.check_element(call, 0, e, proven)).view(np.float32)
    assert dx.reshape(-1)[e] != entry.outputs[0].reshape(-1)[e]
    outputs = (dx, running)
    wrong = dataclasses.replace(entry, outputs=outputs, out_roots=tuple(tc.tensor_root(o) for o in outputs))
    return dataclasses.replace(rec, entries=[*rec.entries[:j], wrong, *rec.entries[j + 1 :]]), first


@pytest.mark.parametrize("disputed", [0, 1], ids=["dx (not the honest choice)", "running values"])
def test_a_consistent_cheat_is_caught_only_at_its_running_values(chain, stack, nine_step, disputed: int) -> None:  # noqa: F811
    """A defender whose running slot and dx are both wrong, consistently: the honest challenger disputes the running
    values (`output_to_dispute`) at their wrong element and wins; a challenger disputing dx instead loses (dx is
    right from the defender's own slot before it), which is why the order matters."""
    from eth_hash.auto import keccak

    from personas.referee_game import DECIDED, PROOF, Match, Side
    from protocol import referee_kit as rk

    from .test_referee_game import ARITY, LEVELS

    rec = nine_step["rec"]
    entry = next(e for e in rec.entries if e.kernel == "max_pool_backward")
    e = 4 * 8 + 4
    bad, first = _consistent_cheat(rec, entry.index, e)
    parsed = rk.parse_skeleton(entry.skeleton_bytes())
    assert rk.output_to_dispute(parsed, list(entry.out_roots), list(bad.entries[entry.index].out_roots)) == 1
    truth = Side(nine_step["roots"], rec, nine_step["next_leaves"])
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(nine_step["roots"]))]
    defender = Side([nine_step["roots"][0], *later], bad, nine_step["next_leaves"])
    element = first if disputed == 1 else e
    match = Match(chain, stack, ARITY, LEVELS, nine_step["before"], nine_step["binding"], defender, truth,
                  honest_challenger=True, target=entry.index, target_element=element, output=disputed)  # fmt: skip
    match.play(PROOF, "defender")
    match.prove_element()
    assert match.game()["stage"] == DECIDED
    assert match.ruling()[1] == (disputed == 1)  # the defender is found wrong only at the running values
