"""Rows in pieces (docs/referee.md, "Rows in pieces"; protocol/row_pieces.py): a softmax or norm row wider than
its kernel's cap, or a norm backward's row across a 256-element boundary, is recorded with one more output, its
rows' running statistics, and decided in pieces. The statistics must be the kernel's own folds: each one,
recomputed one binary32 operation at a time by the referee model from the recorded one before it and its piece
of the row, is the recorded one, and every output element recomputed from the final statistics is the reference
kernel's, bit for bit. The game's mirror (`row_piece_reads`, `row_piece_rule`) reads exactly the model's
dependencies and plans `referee_calls.encode`'s rule and parameters. Entries that are not row-pieced are
recorded exactly as before."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import initial_checkpoint
from engine.portable import record
from engine.portable import reference as ref
from protocol import referee_calls as rc
from protocol import referee_kit as rk
from protocol import referee_model as rm
from protocol import row_pieces
from protocol import tensor_commit as tc

from ..engine.helpers import examples
from .test_step_record import gpt, llama

EPS = 1e-5
# the kernels `_row_inputs` draws (the cross-entropies' rows in pieces: test_cross_entropy_pieces.py)
NORM_AND_SOFTMAX_KERNELS = tuple(k for k in row_pieces.KERNELS if k not in row_pieces.LOSSES)


def _bits(value: Any) -> int:
    return int(np.asarray(value, dtype=np.float32).reshape(-1).view(np.uint32)[0])


def _same(got: int, want: int) -> bool:
    """Equal bits, a NaN equal to any NaN (the referee compares NaN as a class)."""
    nan = (got & 0x7FFFFFFF) > 0x7F800000 and (want & 0x7FFFFFFF) > 0x7F800000
    return got == want or nan


def _row_inputs(kernel: str, rows: int, width: int, rng: np.random.Generator, ties: bool) -> list[np.ndarray]:
    """The kernel's tensor inputs over `rows` rows of `width`, drawn like a model's activations (a scale per
    row); softmax's scores with ties (a coarse grid) and the attention mask's −inf (never a whole row)."""
    scale = 10.0 ** rng.uniform(-2, 1, (rows, 1))
    x = (rng.standard_normal((rows, width)) * scale).astype(np.float32)
    if kernel == "softmax":
        if ties:
            x = (np.round(x * 2) / 2).astype(np.float32)
        x[:, 1:][rng.random((rows, width - 1)) < 0.2] = -np.inf
        return [x]
    vector = (1 + 0.1 * rng.standard_normal(width)).astype(np.float32)
    if kernel == "softmax_backward":
        return [ref.softmax(x), (0.01 * rng.standard_normal((rows, width))).astype(np.float32)]
    if kernel == "layer_norm":
        return [x, vector, (0.1 * rng.standard_normal(width)).astype(np.float32)]
    if kernel == "rms_norm":
        return [x, vector]
    rstd = rng.uniform(0.5, 4.0, rows).astype(np.float32)
    return [rng.standard_normal((rows, width)).astype(np.float32), rstd, vector, (0.01 * x).astype(np.float32)]


def _outputs(kernel: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The reference kernel's outputs."""
    if kernel in ("layer_norm", "rms_norm"):
        return list(getattr(ref, kernel)(*inputs, EPS))
    found = getattr(ref, kernel)(*inputs)
    return list(found) if isinstance(found, tuple) else [found]


def _entry(kernel: str, inputs: list[np.ndarray]) -> record.Entry:
    """The kernel's entry over these inputs (earlier outputs), recorded as the recorder records it: FoldRules'
    running values (the backwards' dw/db, where it pieces them), then the row statistics."""
    outputs = _outputs(kernel, inputs)
    refs = tuple(record.Ref(record.OUTPUT, 0, k, 1, v.shape) for k, v in enumerate(inputs))
    args = tuple(("input", k) for k in range(len(inputs))) + ((EPS,) if kernel in ("layer_norm", "rms_norm") else ())
    entry = record.Entry(1, kernel, args, refs, tuple((1, o.shape) for o in outputs),
                         tuple(tc.tensor_root(o) for o in outputs), tuple(outputs))  # fmt: skip
    if kernel in record.FOLD_KERNELS:
        entry = record.with_running_values(entry, inputs)
    return record.with_row_statistics(entry, inputs)


def _defender_values(call: rm.Call, inputs: list[np.ndarray], stats: np.ndarray, output: int, element: int) -> dict:
    """The values a defender whose statistics are `stats` proves for an element, in its rule's order."""
    return {key: (stats[key[1]] if key[0] == "stats" else inputs[key[0]].reshape(-1)[key[1]])
            for key in rm.dependencies(call, output, element)}  # fmt: skip


def _proven(entry: record.Entry, inputs: list[np.ndarray], output: int, element: int) -> dict:
    """What an honest defender proves: the inputs' elements and the entry's own statistics."""
    return _defender_values(record.referee_call(entry), inputs, entry.outputs[-1].reshape(-1), output, element)


def _assert_decided(entry: record.Entry, inputs: list[np.ndarray], output: int, element: int) -> int:
    """The element recomputed by the referee model from exactly its dependencies is the recorded one; the
    mirror reads exactly those values (SELF reads: the statistics) and plans encode's rule and parameters.
    Returns the recorded bits."""
    call, skeleton = record.referee_call(entry), rk.parse_skeleton(entry.skeleton_bytes())
    proven = _proven(entry, inputs, output, element)
    want = _bits(entry.outputs[output].reshape(-1)[element])
    assert _same(rm.check_element(call, output, element, proven), want), (entry.kernel, output, element)
    statistics = rk.SELF_READ + len(entry.outputs) - 1
    reads = row_pieces.row_piece_reads(skeleton, output, element)
    assert all(k == statistics or 0 <= k < len(inputs) for k, _, _ in reads) and len(reads) <= 6
    keys = [("stats" if k == statistics else k, first + i) for k, first, count in reads for i in range(count)]
    assert keys == list(proven), (entry.kernel, output, element)
    encoded = rc.encode(call, output, element, proven)
    assert (encoded.rule, encoded.params) == row_pieces.row_piece_rule(skeleton, output, element)
    assert len(encoded.values) == len(keys)
    return want


def _rows_strategy(kernel: str, data: Any) -> tuple[int, int]:
    """(rows, width): a width just over the kernel's cap up to a few hundred, a few rows; for a norm backward
    also a row under its cap that does not divide 256, over rows of more than 256 elements."""
    cap = rk.ROW_CAPS[kernel]
    if kernel in row_pieces.BACKWARDS and data.draw(st.booleans()):
        width = data.draw(st.integers(3, cap).filter(lambda d: 256 % d != 0))
        return 256 // width + data.draw(st.integers(1, 2)), width
    return data.draw(st.integers(1, 3)), data.draw(st.integers(cap + 1, 300))


@settings(max_examples=examples(24), deadline=None)
@given(st.sampled_from(NORM_AND_SOFTMAX_KERNELS), st.data())
def test_the_statistics_chain_to_the_reference_outputs(kernel: str, data: Any) -> None:
    """For each of the six kernels on wide rows: the recorder appends the statistics as the last output (its
    other outputs the reference kernel's); every statistic is its piece recomputed by the referee model from
    the recorded statistic before it (and the final M or S1 it reads), the output elements recomputed from
    the final statistics are the reference's (first, last and a drawn element of each final output), and the
    mirror's reads, rule and parameters are the model's and encode's."""
    rows, width = _rows_strategy(kernel, data)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    inputs = _row_inputs(kernel, rows, width, rng, ties=data.draw(st.booleans()))
    if kernel.startswith("softmax") and data.draw(st.booleans()):  # the attention core's [B, H, T, T] scores
        inputs = [v.reshape(1, rows, 1, width) for v in inputs]
    entry = _entry(kernel, inputs)
    piecing = row_pieces.row_piecing(kernel, [v.shape for v in inputs])
    assert piecing is not None and piecing.pieces == -(-width // row_pieces.PIECE_LENGTH[kernel])
    assert entry.out_shapes[-1] == (1, (row_pieces.STATS[kernel] * rows * piecing.pieces,))
    for got, want in zip(entry.outputs, _outputs(kernel, inputs)):  # the kernel's own outputs, unchanged
        assert got.tobytes() == want.tobytes()
    statistics = len(entry.outputs) - 1
    skeleton = rk.parse_skeleton(entry.skeleton_bytes())
    assert rk.rules_of(skeleton, statistics) == rk.ROW_PIECE_RULES
    for element in range(entry.outputs[-1].size):
        _assert_decided(entry, inputs, statistics, element)
    for output in row_pieces.FINAL_OUTPUTS[kernel]:
        assert rk.rules_of(skeleton, output) == rk.ROW_PIECE_RULES
        size = entry.outputs[output].size
        for element in sorted({0, size - 1, data.draw(st.integers(0, size - 1))}):
            _assert_decided(entry, inputs, output, element)


def test_a_softmax_row_with_a_nan_chains_too() -> None:
    """A NaN in a softmax row: the running maximum keeps whatever the first-maximum fold keeps (a NaN
    never replaces and is never replaced), and every statistic and output element is still the model's."""
    z = np.linspace(-3, 3, 3 * 70, dtype=np.float32).reshape(3, 70)
    z[0, 40], z[1, 0], z[2, 69] = np.nan, np.nan, np.nan
    entry = _entry("softmax", [z])
    for element in range(entry.outputs[-1].size):
        _assert_decided(entry, [z], 1, element)
    for element in (0, 39, 40, 70, 139, 209):
        _assert_decided(entry, [z], 0, element)


def test_a_flipped_statistic_is_caught_at_its_piece() -> None:
    """A defender whose running A (layer_norm_backward, row 2, piece 1) is one bit wrong, and whose every
    later statistic and dx of that row are recomputed consistently from it: the honest challenger disputes the
    statistics (not dx, which the wrong statistics would uphold), the first differing statistic is the wrong
    one, and the referee model recomputes it from the agreed one before it and its piece: the honest bits."""
    rng = np.random.default_rng(7)
    inputs = _row_inputs("layer_norm_backward", 3, 200, rng, ties=False)
    honest = _entry("layer_norm_backward", inputs)
    piecing = row_pieces.row_piecing("layer_norm_backward", [v.shape for v in inputs])
    assert piecing is not None and piecing.pieces == 7
    call, statistics = record.referee_call(honest), len(honest.outputs) - 1
    stats = honest.outputs[-1].copy()
    wrong_at = piecing.index(0, 2, 1)
    stats[wrong_at] = np.uint32(_bits(stats[wrong_at]) ^ (1 << 20)).view(np.float32)  # off by an eighth or so
    for element in range(wrong_at + 1, piecing.index(0, 2, piecing.pieces - 1) + 1):  # the rest of row 2's A
        values = list(_defender_values(call, inputs, stats, statistics, element).values())
        stats[element] = rm.row_element(*rm.row_piece_rule(call, statistics, element), values)
    dx = honest.outputs[0].copy().reshape(-1)
    for element in range(2 * piecing.width, 3 * piecing.width):
        values = list(_defender_values(call, inputs, stats, 0, element).values())
        dx[element] = rm.row_element(*rm.row_piece_rule(call, 0, element), values)
    wrong = (dx.reshape(honest.outputs[0].shape), *honest.outputs[1:-1], stats)
    theirs = [tc.tensor_root(o) for o in wrong]
    assert theirs[0] != honest.out_roots[0] and theirs[-1] != honest.out_roots[-1]
    skeleton = rk.parse_skeleton(honest.skeleton_bytes())
    assert rk.output_to_dispute(skeleton, honest.out_roots, theirs) == statistics
    assert rk.output_to_dispute(skeleton, honest.out_roots, [*theirs[:-1], honest.out_roots[-1]]) == 0  # dx alone
    first = int(np.flatnonzero(stats.view(np.uint32) != honest.outputs[-1].view(np.uint32))[0])
    assert first == wrong_at
    proven = _defender_values(call, inputs, stats, statistics, first)
    assert ("stats", first - 1) in proven  # the agreed running value before the piece
    assert rm.check_element(call, statistics, first, proven) == _bits(honest.outputs[-1][first]) != _bits(stats[first])


def checkable_where_expected_and_broken(skeleton: Any) -> list[Any]:
    """Asserts a row-pieced skeleton is checkable at exactly its final outputs and its statistics (the last), and
    returns the variants every row kernel's rules must refuse: the statistics one longer, int64 or missing, and
    x (input 0) from the batch."""
    last = len(skeleton.outputs) - 1
    decided = {o for o in range(last + 1) if row_pieces.row_piece_checkable(skeleton, o)}
    assert decided == {*row_pieces.FINAL_OUTPUTS[skeleton.kernel], last}
    code, (size,) = skeleton.outputs[last]
    outputs, inputs = skeleton.outputs, skeleton.inputs
    return [replace(skeleton, outputs=(*outputs[:last], (code, (size + 1,)))),
            replace(skeleton, outputs=(*outputs[:last], (rk.INT64, (size,)))),
            replace(skeleton, outputs=outputs[:last]),
            replace(skeleton, inputs=(replace(inputs[0], kind=rk.BATCH), *inputs[1:]))]


def test_the_mirror_refuses_what_row_piece_rules_refuse() -> None:
    """A wide layer norm and a wide layer_norm_backward are checkable at their final outputs and statistics
    only, and not at all with their statistics misshapen, missing or of another dtype, an input from the
    batch, w of another width, or (the forward) an eps that is not a float."""
    rng = np.random.default_rng(3)
    for kernel in ("layer_norm", "layer_norm_backward"):
        skeleton = rk.parse_skeleton(_entry(kernel, _row_inputs(kernel, 2, 130, rng, ties=False)).skeleton_bytes())
        inputs = skeleton.inputs
        broken = checkable_where_expected_and_broken(skeleton)
        broken.append(replace(skeleton, inputs=(*inputs[:2], replace(inputs[2], shape=(131,)), *inputs[3:])))
        if kernel == "layer_norm":
            broken.append(replace(skeleton, args=(*skeleton.args[:3], record.encode_arg(1))))
        for other in broken:
            assert not any(row_pieces.row_piece_checkable(other, o) for o in range(len(other.outputs)))


@pytest.mark.parametrize("kernel", NORM_AND_SOFTMAX_KERNELS)
def test_rows_within_their_cap_are_recorded_as_before(kernel: str) -> None:
    """At the cap (and, for a norm backward, a row dividing 256 over many rows or one under 256 elements at the
    split cap; for softmax_backward rows at the split cap) no statistics are appended: the entry is the very same
    one, and the whole-row rules decide it as before."""
    cap = rk.ROW_CAPS[kernel]
    shapes = [(3, cap)] + ([(40, 32), (2, rk.MAX_NORM_BACKWARD_SPLIT_ROW)] if kernel in row_pieces.BACKWARDS else [])
    if kernel == "softmax_backward":
        shapes.append((3, rk.MAX_SOFTMAX_BACKWARD_SPLIT_ROW))
    for rows, width in shapes:
        inputs = _row_inputs(kernel, rows, width, np.random.default_rng(width), ties=False)
        outputs = _outputs(kernel, inputs)
        assert row_pieces.row_piecing(kernel, [v.shape for v in inputs]) is None
        entry = _entry(kernel, inputs)
        extra = (0, 1) if kernel in row_pieces.BACKWARDS else (0,)  # dw/db's running values only
        assert len(entry.outputs) - len(outputs) in extra
        assert rk.rules_of(rk.parse_skeleton(entry.skeleton_bytes()), 0) in (rk.HOST_RULES, rk.ROW_RULES)
    wide = row_pieces.row_piecing(kernel, [(3, cap + 1)])
    assert wide is not None and wide.rows == 3 and wide.length in (16, 32, 64, 128) and 256 % wide.length == 0


# S and P_{L-1} of step 0 of the one-block GPT (dropout 0.1) and the Llama-style decoder, recorded before rows in
# pieces existed: their rows (softmax over 32 positions, norms over d = 16 and 8) are within every cap. Re-pinned
# when FoldRules' whole weight became 3 · load + values and its pieces were weighed alike (docs/referee.md "Fold
# weight", "Fold pieces", a fold beside pieces weighed as a piece): the entries that changed were exactly the fold
# entries in pieces (the GPT's five linear_backward and three layer_norm_backward, the Llama's two linear_backward),
# each only in its running values (one more output, or other pieces), the other roots unchanged.
FROZEN_RECORDS = {
    "gpt": ("3bbc5dc54c2c249c6c9d5a8c0f170fad210a187bd2c82837e6cf8d41b5c9bfbc",
            "20cba1bc578295821a358b57d0036efdb38a8e6ce1b1b40efb5058c5e2177153"),
    "llama": ("74e47030e88e7c28cdcf29e19f84a2342de0ba6cff653cbc3e506f4f81b0c6f4",
              "07b65ea412b800239e7829e9eeb9ca38eecda4f1ed99a3d1bab4ca1b733b389d"),
}  # fmt: skip


@pytest.mark.parametrize("which", sorted(FROZEN_RECORDS))
def test_records_without_wide_rows_are_unchanged(which: str) -> None:
    """The skeleton root and the last prefix root of records whose rows are all within their caps are the
    ones pinned before rows in pieces: no entry that is not row-pieced changed by one bit."""
    spec = gpt(dropout=0.1) if which == "gpt" else llama()
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    assert (rec.skeleton_root().hex(), rec.prefix_roots()[-1].hex()) == FROZEN_RECORDS[which]


@pytest.fixture(scope="module")
def wide_gpt() -> record.StepRecord:
    """Step 0 of a one-block GPT 128 wide: its layer norms' rows (128) are over layer_norm's cap (104) and its
    backward's dx's (67)."""
    spec = gpt(dropout=0.0, width=128)
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    return rec


def test_a_wide_gpt_s_norm_rows_are_decided_in_pieces(wide_gpt: record.StepRecord) -> None:
    """Every layer_norm and layer_norm_backward entry of the GPT 128 wide is row-pieced: its statistics are its
    last output (a backward's after FoldRules' running values of dw and db), RowPieceRules decides every final
    output and every statistic, and each statistic and the first and last element of each final output, from
    exactly the values the mirror reads (`proven_values`: the statistics from the record), is the recorded one."""
    found = 0
    for entry in wide_gpt.entries:
        if entry.kernel not in ("layer_norm", "layer_norm_backward"):  # softmax over 32 positions: within its caps
            assert entry.kernel not in row_pieces.KERNELS or len(entry.outputs) == row_pieces.BASE_OUTPUTS[entry.kernel]
            continue
        found += 1
        skeleton, call = rk.parse_skeleton(entry.skeleton_bytes()), record.referee_call(entry)
        statistics = row_pieces.statistics_output(skeleton)
        pieces = {"layer_norm": 2, "layer_norm_backward": 4}[entry.kernel]  # 128 in pieces of 64 and of 32
        assert statistics == len(entry.outputs) - 1 and entry.outputs[-1].size == 2 * 64 * pieces
        inputs = [wide_gpt.input_value(entry, k) for k in range(len(entry.inputs))]
        for output in (*row_pieces.FINAL_OUTPUTS[entry.kernel], statistics):
            assert rk.rules_of(skeleton, output) == rk.ROW_PIECE_RULES
            elements = range(entry.outputs[statistics].size) if output == statistics else (0, entry.outputs[output].size - 1)
            for element in elements:
                proven = record.proven_values(wide_gpt, entry, output, element)
                assert proven == _proven(entry, inputs, output, element)
                assert rm.check_element(call, output, element, proven) == _bits(entry.outputs[output].reshape(-1)[element])
                assert rk.game_reads(skeleton, output, element) == row_pieces.row_piece_reads(skeleton, output, element)
        if entry.kernel == "layer_norm_backward":  # dx, dw, db, their running values, the statistics
            mine, theirs = list(entry.out_roots), [bytes(32)] * 5
            assert rk.output_to_dispute(skeleton, mine, theirs) == 3  # nothing it reads differs from its own
            assert rk.output_to_dispute(skeleton, mine, [theirs[0], *mine[1:4], theirs[4]]) == 4  # before dx
            assert rk.output_to_dispute(skeleton, mine, [*mine[:3], theirs[3], theirs[4]]) == 3
    assert found == 6  # three layer norms forward, three backward
