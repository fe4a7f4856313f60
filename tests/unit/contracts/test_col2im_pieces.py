"""col2im over more than MAX_COL2IM_ROWS = 4 covering rows (a 7×7 or 6×6 convolution at stride 1), decided on chain in
pieces of whole rows (contracts/lib/data_rules.vy `_col2im_pieces`, `_columns_plan`). The recorder adds the running
values as col2im's output 1, [P − 1, B, C, H, W] (`record._col2im_running_values`: slot t of an element its fold after
its first (t + 1)·G covering rows, G = 20 // R); each slot and dx is one piece from the slot before it (REF_SELF).

On recorded steps of two CNNs the running values are the referee model's own fold (checked element by element, every
element of both outputs), the Python mirror reads exactly the model's dependencies in their order, a sample of
elements is planned on chain as the mirror reads and the element rule gives the recorded bits, no call of either job
is left to the arbiter; hypothesis draws geometries (windows of 6 to 24 rows and more, strides, padding, images
narrower than a window) for the recorder, the model and the mirror; malformed pieced entries are checkable nowhere
and never make a rules contract revert; a game pinned at a slot or at dx is decided on chain for the honest party
in both directions. (The dearest pieces, over the largest images DataRules takes: test_col2im_piece_attacks.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.portable import cpu, record
from protocol import data_rules
from protocol import referee_kit as rk
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, SELF_READ, parse_skeleton, rules_of

from .helpers import changed, play_element_game
from .test_row_piece_games import PROVE_ELEMENT_TARGET, WHOLE_GAME_TARGET, chain, stack  # noqa: F401 (fixtures)
from .test_sgd_rules import _first_slot, all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (fixtures)

OUTPUT, FLOAT32 = 3, 1


def wide_conv_cnn(name: str = "seven") -> Any:
    """The digits CNN with a 7×7 convolution at stride 1 ("seven": R = 7 covering rows, pieces of 2 rows) or a 6×6 one
    over two channels after a 3×3 ("six": R = 6, pieces of 3): col2im over more than 4 covering rows."""
    from engine.presets import digits_cnn_spec

    if name == "seven":
        layers = [{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 7, "padding": 3}, {"type": "relu"},
                  {"type": "flatten"}, {"type": "linear", "in_features": 128, "out_features": 10}]  # fmt: skip
    else:
        layers = [{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                  {"type": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 6, "padding": 2}, {"type": "relu"},
                  {"type": "flatten"}, {"type": "linear", "in_features": 98, "out_features": 10}]  # fmt: skip
    return digits_cnn_spec(arithmetic="portable/1", steps=2, segment_steps=1, batch_size=2,
                           model={"input_shape": [64], "layers": [{"type": "reshape", "shape": [1, 8, 8]}, *layers]})  # fmt: skip


@pytest.fixture(scope="module")
def wide_records() -> dict[str, record.StepRecord]:
    from engine.api import record_first_steps

    return {name: record_first_steps(wide_conv_cnn(name), None, 1)[1][0] for name in ("seven", "six")}


def _bits(values: np.ndarray) -> list[int]:
    return [int(v) for v in np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def _model_keys(reads: list[tuple[int, int, int, int]]) -> list[tuple[Any, int]]:
    """The mirror's reads as the referee model's keys (a REF_SELF read of output 1: "col2im_running")."""
    return [("col2im_running" if k == SELF_READ + 1 else k, first + t * stride) for k, first, count, stride in reads for t in range(count)]


def _read_values(rec: record.StepRecord, entry: record.Entry, reads: list[tuple[int, int, int, int]]) -> list[int]:
    values = []
    for k, first, count, stride in reads:
        flat = _bits(entry.outputs[k - SELF_READ] if k >= SELF_READ else rec.value_of(entry.inputs[k]))
        values += [flat[first + t * stride] for t in range(count)]
    return values


@pytest.mark.parametrize(("name", "rows"), [("seven", 7), ("six", 6)])
def test_col2im_over_five_rows_is_decided_in_pieces(all_rules, wide_records, name: str, rows: int) -> None:
    rec = wide_records[name]
    entry = next(e for e in rec.entries if e.kernel == "col2im" and int(e.args[2]) > 5)
    group, pieces = data_rules.col2im_pieces(int(entry.args[2]), int(entry.args[3]))
    assert -(-int(entry.args[2]) // int(entry.args[3])) == rows and (group, pieces) == (20 // rows, -(-rows // (20 // rows)))
    dx_shape = entry.out_shapes[0][1]
    assert entry.out_shapes[1] == (FLOAT32, (pieces - 1, *dx_shape))
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    call = record.referee_call(entry)
    for output in (0, 1):
        assert _first_slot(all_rules, skeleton, output) == rules_of(parsed, output) == DATA_RULES
        recorded = _bits(entry.outputs[output])
        for element in range(len(recorded)):  # every element: mirror = model, model over the record = the record
            reads = data_rules.data_strided_reads(parsed, output, element, ())
            assert _model_keys(reads) == rm.dependencies(call, output, element), (output, element)
            proven = record.proven_values(rec, entry, output, element)
            assert rm.check_element(call, output, element, proven) == recorded[element], (output, element)
        size = len(recorded)
        for element in sorted(set(range(0, size, max(1, size // 11))) | {size - 1}):
            rule, params, reads, zipped = all_rules["DataRules"].plan(skeleton, output, element, []).call()
            mirror = data_rules.data_strided_reads(parsed, output, element, ())
            assert not zipped and [(r[0], r[7], r[8], r[9]) for r in reads] == mirror
            starts = bool(mirror) and mirror[0][0] == SELF_READ + 1
            assert (rule, list(params)) == (0, [1, int(starts), 0, 0])
            got = int(all_rules["element"].element(rule, params, _read_values(rec, entry, mirror)).call())
            assert got == recorded[element], (name, output, element)
    if name == "seven":  # dx[0, 0, 3, 3] folds 7 rows of 7 windows in 4 pieces of 2 rows
        centre, size = 3 * 8 + 3, len(_bits(entry.outputs[0]))
        assert len(rm.dependencies(call, 1, centre)) == 2 * 7  # slot 0: rows 0, 1
        assert len(rm.dependencies(call, 1, size + centre)) == 1 + 2 * 7  # slot 1: slot 0, rows 2, 3
        assert len(rm.dependencies(call, 0, centre)) == 1 + 7  # dx: slot 2, row 6


@pytest.mark.parametrize("name", ["seven", "six"])
def test_no_call_of_a_wide_convolution_is_left_to_the_arbiter(name: str) -> None:
    from engine.api import uncovered_calls

    assert uncovered_calls(wide_conv_cnn(name), None) == []


def _call(image: tuple[int, int, int, int], k: int, s: int, p: int, pieces: int) -> rm.Call:
    oh, ow = (image[2] + 2 * p - k) // s + 1, (image[3] + 2 * p - k) // s + 1
    return rm.Call("col2im", (("input", 0), image, k, s, p), ((image[0], image[1] * k * k, oh * ow),), (image, (pieces - 1, *image)))


@st.composite
def _geometries(draw: Any) -> tuple[tuple[int, int, int, int], int, int, int]:
    s = draw(st.integers(1, 3))
    k = draw(st.integers(4 * s + 1, min(22 * s, 30)))  # R = ceil(k / s) from 5 to 22 (21 and 22: not checkable)
    p = draw(st.integers(0, k - 1))
    low = max(1, k - 2 * p)  # the image at least one window once padded
    h, w = draw(st.integers(low, low + 2 * s + 1)), draw(st.integers(low, low + s + 1))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), k, s, p


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry=_geometries(), seed=st.integers(0, 2**16), specials=st.booleans())
def test_the_running_values_are_the_folds_and_the_mirror_reads_the_model_s_keys(geometry, seed: int, specials: bool) -> None:
    image, k, s, p = geometry
    group, pieces = data_rules.col2im_pieces(k, s)
    if pieces == 0:  # over 20 covering rows: no piece holds one row's windows
        assert -(-k // s) > data_rules.MAX_COL2IM_PIECE_TERMS
        return
    oh, ow = (image[2] + 2 * p - k) // s + 1, (image[3] + 2 * p - k) // s + 1
    rng = np.random.default_rng(seed)
    dcols = rng.standard_normal((image[0], image[1] * k * k, oh * ow)).astype(np.float32)
    if specials:  # signed zeros, infinities (an inf − inf NaN), huge values that overflow in the fold
        flat = dcols.reshape(-1)
        picks = rng.integers(0, flat.size, size=min(flat.size, 12))
        flat[picks] = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, 3e38, -3e38], dtype=np.float32), size=picks.size)
    dx = cpu.col2im(dcols, image, k, s, p)
    running = record._col2im_running_values(dcols, k, s, p, dx)
    assert running.shape == (pieces - 1, *image)
    call = _call(image, k, s, p, pieces)
    entry = record.Entry(1, "col2im", (("input", 0), image, k, s, p), (record.Ref(OUTPUT, 0, 0, FLOAT32, dcols.shape),),
                         ((FLOAT32, image), (FLOAT32, running.shape)), (tc.ZERO,) * 2)  # fmt: skip
    parsed = parse_skeleton(entry.skeleton_bytes())
    values = {0: dcols.reshape(-1), "col2im_running": running.reshape(-1)}
    for output, recorded in ((0, dx), (1, running)):
        assert data_rules.data_checkable(parsed, output)
        bits = _bits(recorded)
        chosen = range(len(bits)) if len(bits) <= 150 else sorted(set(rng.integers(0, len(bits), size=150).tolist()))
        for element in chosen:
            reads = data_rules.data_strided_reads(parsed, output, element, ())
            keys = _model_keys(reads)
            assert keys == rm.dependencies(call, output, element)
            assert sum(1 for key in keys if key[0] == 0) <= data_rules.MAX_COL2IM_PIECE_TERMS and len(reads) <= 6
            got = rm.check_element(call, output, element, {key: values[key[0]][key[1]] for key in keys})
            assert got == bits[element] or (np.isnan(recorded.reshape(-1)[element]) and np.isnan(np.uint32(got).view(np.float32)))


def _entry(image: tuple[int, int, int, int] = (1, 1, 8, 8), k: int = 7, s: int = 1, p: int = 3,
           running: tuple[int, ...] | None = None) -> record.Entry:  # fmt: skip
    oh, ow = (image[2] + 2 * p - k) // s + 1, (image[3] + 2 * p - k) // s + 1
    cols = (image[0], image[1] * k * k, oh * ow)
    pieces = data_rules.col2im_pieces(k, s)[1]
    shapes = [(FLOAT32, image)] + ([(FLOAT32, running or (pieces - 1, *image))] if pieces > 1 or running else [])
    return record.Entry(9, "col2im", (("input", 0), image, k, s, p), (record.Ref(OUTPUT, 8, 0, FLOAT32, cols),), tuple(shapes),
                        (tc.ZERO,) * len(shapes))  # fmt: skip


def _malformed() -> list[tuple[str, record.Entry]]:
    good = _entry()
    return [
        ("good: 7 rows, 4 pieces", good),
        ("good: 20 rows, one row a piece", _entry((1, 1, 21, 21), 20, 1, 0)),
        ("good: 4 rows, one fold", _entry((1, 1, 6, 6), 4, 1, 2)),
        ("no running values", changed(good, out_shapes=good.out_shapes[:1])),
        ("running values of one slot too few", changed(good, out_shapes=(good.out_shapes[0], (FLOAT32, (2, 1, 1, 8, 8))))),
        ("running values of one slot too many", changed(good, out_shapes=(good.out_shapes[0], (FLOAT32, (4, 1, 1, 8, 8))))),
        ("running values as one axis", changed(good, out_shapes=(good.out_shapes[0], (FLOAT32, (128,))))),
        ("running values as int64", changed(good, out_shapes=(good.out_shapes[0], (2, (3, 1, 1, 8, 8))))),
        ("a third output", changed(good, out_shapes=(*good.out_shapes, good.out_shapes[1]))),
        ("running values of a 4-row col2im", _entry((1, 1, 6, 6), 4, 1, 2, running=(1, 1, 1, 6, 6))),
        ("21 rows: over a piece", _entry((1, 1, 22, 22), 21, 1, 0, running=(20, 1, 1, 22, 22))),
        ("5 rows in one fold (over MAX_COL2IM_ROWS)", changed(_entry((1, 1, 6, 6), 5, 1, 2), out_shapes=((FLOAT32, (1, 1, 6, 6)),))),
    ]


@pytest.mark.parametrize("case", range(12))
def test_malformed_pieced_col2im_entries_are_not_checkable_and_never_revert(all_rules, case: int) -> None:
    why, entry = _malformed()[case]
    parsed = parse_skeleton(entry.skeleton_bytes())
    assert all(data_rules.data_checkable(parsed, o) == why.startswith("good") for o in range(len(entry.out_shapes))), why
    assert_checkable_only_when_good(all_rules, [(why, entry)], DATA_RULES)


@pytest.fixture(scope="module")
def wide_step() -> dict[str, Any]:
    from protocol.spec import load_spec

    from .helpers import first_step

    return first_step(load_spec(wide_conv_cnn("seven")))


@pytest.fixture(scope="module")
def wide_kit(wide_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    from .helpers import step_kit

    return step_kit(wide_step, tmp_path_factory.mktemp("col2im-kit"))


# dx[1, 0, 3, 4] (its last piece, from slot 2), slot 1 of it (from slot 0), slot 0 of a corner (2 rows of 4 windows)
TARGETS = [(0, 64 + 3 * 8 + 4), (1, 128 + 64 + 3 * 8 + 4), (1, 0)]


@pytest.mark.parametrize(("output", "element"), TARGETS, ids=["dx", "slot-1", "slot-0"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_pieced_col2im_is_ruled_on_chain(chain, stack, wide_step, wide_kit, wrong: bool, output: int, element: int) -> None:  # noqa: F811
    entry = next(e for e in wide_step["rec"].entries if e.kernel == "col2im" and int(e.args[2]) > 5)
    proof_gas, game_gas = play_element_game(chain, stack, wide_step, wide_kit, entry, output, element, wrong, rk.DATA_RULES)
    print(f"col2im output {output} element {element}: prove_element {proof_gas:,} gas, whole game {game_gas:,}")
    assert proof_gas < PROVE_ELEMENT_TARGET and game_gas < WHOLE_GAME_TARGET
