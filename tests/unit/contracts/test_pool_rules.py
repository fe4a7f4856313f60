"""Max pooling decided on chain (DataRules, contracts/lib/data_rules.vy `_pool_checkable`, `_pool_plan`,
`_overlap_plan`; the element rules MAX_POOL and MAX_POOL_BACKWARD): on recorded steps of the digits CNN (2×2
windows, stride 2) and of CNNs pooling 3×3 windows with stride 3, 2×2 windows with stride 3 (elements no window
covers) and overlapping windows (3×3 by 2, 3×3 by 1, 2×2 by 1: the backward in pieces of one window from the
running values its record carries as output 1), every `max_pool` and `max_pool_backward` output is checked by the
contract the Python mirror names (`rules_of`: DataRules), a sample of each output's elements is planned as the
mirror reads (`data_rules.data_strided_reads`, `pool_params`; a running value read of the entry's own output 1),
and the element rule over the recorded values the plan reads gives the recorded bits (the winners' places as
int64); malformed entries are checkable nowhere and never make a rules contract revert."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import data_rules, referee_calls
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, parse_skeleton, rules_of

from .helpers import changed, changed_input
from .test_sgd_rules import _first_slot, all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (the contracts fixtures, shared)

STATE, OUTPUT, FLOAT32, INT64, SELF = 1, 3, 1, 2, 7


def _cnn(kernel: int, stride: int) -> Any:
    from engine.presets import digits_cnn_spec

    pooled = (8 - kernel) // stride + 1
    return digits_cnn_spec(arithmetic="portable/1", steps=2, segment_steps=1, batch_size=4, model={"input_shape": [64], "layers": [
        {"type": "reshape", "shape": [1, 8, 8]}, {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": kernel, "stride": stride}, {"type": "flatten"},
        {"type": "linear", "in_features": 2 * pooled * pooled, "out_features": 10}]})  # fmt: skip


@pytest.fixture(scope="module")
def pool_records() -> dict[tuple[int, int], record.StepRecord]:
    from engine.api import record_first_steps

    return {(k, s): record_first_steps(_cnn(k, s), None, 1)[1][0] for k, s in WINDOWS}


def _bits(values: np.ndarray) -> list[int]:
    flat = np.ascontiguousarray(values).reshape(-1)
    return [int(v) for v in flat.view(np.uint64 if flat.dtype == np.int64 else np.uint32)]


WINDOWS = ((2, 2), (3, 3), (2, 3), (3, 2), (3, 1), (2, 1))


def _read_values(rec: record.StepRecord, entry: record.Entry, reads: list) -> list[int]:
    """The bits a plan's reads hand the rule: an input's elements, or (REF_SELF) the entry's own output's."""
    values = []
    for r in reads:
        source = entry.outputs[r[3]] if r[1] == SELF else rec.value_of(entry.inputs[r[0]])
        values += _bits(source.reshape(-1)[r[7] : r[7] + r[8]])
    return values


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"k{w[0]}-s{w[1]}")
def test_max_pooling_is_decided_as_recorded(all_rules, pool_records, window: tuple[int, int]) -> None:
    rec = pool_records[window]
    k, s = window
    entries = [e for e in rec.entries if e.kernel in data_rules.POOL_KERNELS]
    assert [e.kernel for e in entries] == ["max_pool", "max_pool_backward"]
    for entry in entries:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output, (_, shape) in enumerate(entry.out_shapes):
            slot = _first_slot(all_rules, skeleton, output)
            assert slot == rules_of(parsed, output), (window, entry.kernel, output)
            assert slot == DATA_RULES
            size = int(np.prod(shape))
            chosen = set(range(0, size, max(1, size // 23))) | {size - 1}
            for element in sorted(chosen):
                rule, params, reads, zipped = all_rules["DataRules"].plan(skeleton, output, element, []).call()
                assert not zipped and [(r[0], r[7], r[8]) for r in reads] == data_rules.data_reads(parsed, output, element, ())
                assert tuple(params) == data_rules.pool_params(parsed, output, element)
                values = _read_values(rec, entry, reads)
                want = referee_calls.encode(record.referee_call(entry), output, element, record.proven_values(rec, entry, output, element))
                assert (rule, tuple(params), tuple(values)) == (want.rule, want.params, want.values)
                got = int(all_rules["element"].element(rule, params, values).call())
                assert got == _bits(entry.outputs[output])[element], (window, entry.kernel, output, element)
    if window == (2, 3):  # an element no window covers (row 2 of each plane: 2 % 3 >= k) gets +0, read from nothing
        backward = entries[1]
        element = 2 * 8
        assert data_rules.data_reads(parse_skeleton(backward.skeleton_bytes()), 0, element, ()) == []
        assert _bits(backward.outputs[0])[element] == 0


def _entries() -> tuple[record.Entry, record.Entry]:
    x, pooled = (2, 3, 8, 8), (2, 3, 4, 4)
    forward = record.Entry(5, "max_pool", (("input", 0), 2, 2), (record.Ref(OUTPUT, 4, 0, FLOAT32, x),),
                           ((FLOAT32, pooled), (INT64, pooled)), (tc.ZERO,) * 2)  # fmt: skip
    backward = record.Entry(9, "max_pool_backward", (x, ("input", 0), ("input", 1), 2, 2),
                            (record.Ref(OUTPUT, 5, 1, INT64, pooled), record.Ref(OUTPUT, 8, 0, FLOAT32, pooled)),
                            ((FLOAT32, x),), (tc.ZERO,))  # fmt: skip
    return forward, backward


def _malformed() -> list[tuple[str, record.Entry]]:
    forward, backward = _entries()
    return [("a window of 4 without its running values", changed(forward, args=(("input", 0), 4, 4), out_shapes=((FLOAT32, (2, 3, 2, 2)), (INT64, (2, 3, 2, 2))))),
            ("winners binary32", changed(forward, out_shapes=(forward.out_shapes[0], (FLOAT32, (2, 3, 4, 4))))),
            ("y of another shape", changed(forward, out_shapes=((FLOAT32, (2, 3, 4, 5)), forward.out_shapes[1]))),
            ("no winners", changed(forward, out_shapes=forward.out_shapes[:1])), ("a stride of 0", changed(forward, args=(("input", 0), 2, 0))),
            ("x 3-d", changed_input(forward, 0, shape=(6, 8, 8))), ("a constant x", changed_input(forward, 0, kind=5)), ("x int64", changed_input(forward, 0, dtype=INT64)),
            ("overlapping windows", changed(backward, args=(backward.args[0], *backward.args[1:3], 3, 2))),
            ("the shape another tuple", changed(backward, args=((2, 3, 8, 9), *backward.args[1:]))),
            ("winners binary32", changed_input(backward, 0, dtype=FLOAT32)), ("dy of another shape", changed_input(backward, 1, shape=(2, 3, 4, 5))),
            ("inputs swapped", changed(backward, args=(backward.args[0], backward.args[2], backward.args[1], 2, 2))),
            ("dx int64", changed(backward, out_shapes=((INT64, (2, 3, 8, 8)),)))]  # fmt: skip


def _overlapping(k: int, s: int, running: tuple[int, ...] | None = None) -> record.Entry:
    """max_pool_backward over (2, 3, 8, 8) with k over s: dx and the running values ([R² − 1, 2, 3, 8, 8] unless
    `running` says another shape)."""
    x, pooled = (2, 3, 8, 8), (2, 3, (8 - k) // s + 1, (8 - k) // s + 1)
    rows = -(-k // s)
    return record.Entry(9, "max_pool_backward", (x, ("input", 0), ("input", 1), k, s),
                        (record.Ref(OUTPUT, 5, 1, INT64, pooled), record.Ref(OUTPUT, 8, 0, FLOAT32, pooled)),
                        ((FLOAT32, x), (FLOAT32, running or (rows * rows - 1, *x))), (tc.ZERO,) * 2)  # fmt: skip


def test_malformed_pooling_entries_are_not_checkable_and_never_revert(all_rules) -> None:
    overlapping = [("good: overlapping windows", _overlapping(3, 2)), ("good: windows of 3 by 1", _overlapping(3, 1)),
                   ("overlapping windows of 4", _overlapping(4, 2)), ("running values a slot short", _overlapping(3, 2, (2, 2, 3, 8, 8))),
                   ("running values int64", changed(_overlapping(3, 2), out_shapes=((FLOAT32, (2, 3, 8, 8)), (INT64, (3, 2, 3, 8, 8))))),
                   ("running values flat", _overlapping(3, 2, (1152,))), ("running values 2-d", _overlapping(3, 2, (3, 384))),
                   ("no overlap, running values", changed(_entries()[1], out_shapes=((FLOAT32, (2, 3, 8, 8)), (FLOAT32, (1, 2, 3, 8, 8)))))]  # fmt: skip
    assert_checkable_only_when_good(all_rules, [*_malformed(), *overlapping, *(("good", e) for e in _entries())], DATA_RULES)
