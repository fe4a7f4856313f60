"""Convolutions decided on chain. A recorded conv2d is im2col, a transpose, linear's fold and a transpose; its
backward a transpose, linear_backward (FoldRules' pieces over B·L rows), a transpose and col2im
(engine/portable/record.py). DataRules decides the two moves of its own (contracts/lib/data_rules.vy
`_columns_checkable`, `_columns_plan`): on recorded steps of CNNs with padding, strides of 1 to 3, windows of 2
to 5 and two input channels, every entry of the convolutions is checked by the contract the Python mirror names
(`rules_of`: im2col and col2im by DataRules), every element's reads are the referee model's dependencies in
their order (`data_rules.data_strided_reads`: one x or none for im2col, a column per covering row for col2im),
a sample of elements is planned on chain as the mirror reads, and the element rule over the values read gives
the recorded bits (+0 for padding and for the elements no window covers). Malformed entries are checkable
nowhere and never make a rules contract revert."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import data_rules
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.referee_kit import DATA_RULES, parse_skeleton, rules_of, tuple_word

from .helpers import changed, changed_input
from .test_sgd_rules import _first_slot, all_rules, assert_checkable_only_when_good, rules  # noqa: F401 (the contracts fixtures, shared)

OUTPUT, FLOAT32, INT64 = 3, 1, 2
CONVOLUTION = ("im2col", "transpose", "linear", "transpose", "transpose", "linear_backward", "transpose", "col2im")


def _cnn(name: str) -> Any:
    """Two convolutions (the second over 2 channels: stride 3 over a window of 2 leaves elements no window
    covers), or one 5×5 window with stride 2 and padding 2."""
    from engine.presets import digits_cnn_spec

    first = {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1}
    if name == "two":
        layers = [first, {"type": "relu"}, {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 2, "stride": 3,
                                            "padding": 1}, {"type": "flatten"}, {"type": "linear", "in_features": 27, "out_features": 10}]
    else:
        layers = [{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 5, "stride": 2, "padding": 2},
                  {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "in_features": 32, "out_features": 10}]
    return digits_cnn_spec(arithmetic="portable/1", steps=2, segment_steps=1, batch_size=4,
                           model={"input_shape": [64], "layers": [{"type": "reshape", "shape": [1, 8, 8]}, *layers]})  # fmt: skip


@pytest.fixture(scope="module")
def conv_records() -> dict[str, record.StepRecord]:
    from engine.api import record_first_steps

    return {name: record_first_steps(_cnn(name), None, 1)[1][0] for name in ("two", "wide")}


def _bits(values: np.ndarray) -> list[int]:
    flat = np.ascontiguousarray(values).reshape(-1)
    return [int(v) for v in flat.view(np.uint32)]


def _read_values(rec: record.StepRecord, entry: record.Entry, reads: list[tuple[int, int, int, int]]) -> list[int]:
    values = []
    for k, first, count, stride in reads:
        flat = _bits(rec.value_of(entry.inputs[k]))
        values += [flat[first + t * stride] for t in range(count)]
    return values


@pytest.mark.parametrize("name", ["two", "wide"])
def test_convolutions_are_decided_as_recorded(all_rules, conv_records, name: str) -> None:
    rec = conv_records[name]
    assert rec.complete and not {"conv2d", "conv2d_backward"} & {e.kernel for e in rec.entries}
    starts = [i for i, e in enumerate(rec.entries) if e.kernel == "im2col"]
    assert len(starts) == (2 if name == "two" else 1)
    zeros = {"im2col": 0, "col2im": 0}
    for entry in (e for e in rec.entries if e.kernel in data_rules.COLUMN_KERNELS):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        assert _first_slot(all_rules, skeleton, 0) == rules_of(parsed, 0) == DATA_RULES
        call = record.referee_call(entry)
        size = entry.outputs[0].size
        recorded = _bits(entry.outputs[0])
        for element in range(size):  # the mirror reads exactly the model's dependencies, in the fold's order
            reads = data_rules.data_strided_reads(parsed, 0, element, ())
            assert [(k, first + t * stride) for k, first, count, stride in reads for t in range(count)] == rm.dependencies(call, 0, element)
        zero_elements = [e for e in range(size) if not data_rules.data_strided_reads(parsed, 0, e, ())]
        assert all(recorded[e] == 0 for e in zero_elements)  # padding; windows that miss the element
        zeros[entry.kernel] += len(zero_elements)
        chosen = set(range(0, size, max(1, size // 17))) | {size - 1} | set(zero_elements[:1] + zero_elements[-1:])
        for element in sorted(chosen):
            rule, params, reads, zipped = all_rules["DataRules"].plan(skeleton, 0, element, []).call()
            mirror = data_rules.data_strided_reads(parsed, 0, element, ())
            assert not zipped and [(r[0], r[7], r[8], r[9]) for r in reads] == mirror
            got = int(all_rules["element"].element(rule, params, _read_values(rec, entry, mirror)).call())
            assert got == recorded[element], (name, entry.kernel, element)
        with pytest.raises(Exception, match="data_rules: rotary, pooling and columns take no hints"):
            all_rules["DataRules"].plan(skeleton, 0, 0, [0]).call()
        with pytest.raises(ValueError, match="takes no hints"):
            data_rules.data_strided_reads(parsed, 0, 0, (0,))
    assert zeros["im2col"] and bool(zeros["col2im"]) == (name == "two")  # stride 3 over a window of 2 misses some
    # every entry of a convolution is decided somewhere (the linear folds by HostRules or FoldRules' pieces)
    for start in starts:
        forward = rec.entries[start : start + 4]
        assert [e.kernel for e in forward] == list(CONVOLUTION[:4])
        for entry in (*forward, *(e for e in rec.entries if e.kernel in ("linear_backward", "col2im"))):
            parsed = parse_skeleton(entry.skeleton_bytes())
            assert all(rules_of(parsed, output) is not None for output in range(len(entry.out_shapes))), entry.kernel


def test_the_backward_reads_the_forward_s_columns(conv_records) -> None:
    """One im2col per convolution: linear_backward's x is the forward's colsT (the same entry's output), and the
    engine's dW, db and dx are the linear_backward's and col2im's outputs (the optimizer reads them there)."""
    rec = conv_records["two"]
    for start in (i for i, e in enumerate(rec.entries) if e.kernel == "im2col"):
        columns = rec.entries[start + 1]
        backward = next(e for e in rec.entries if e.kernel == "linear_backward" and e.inputs[0].kind == OUTPUT
                        and e.inputs[0].a == columns.index)  # fmt: skip
        assert rec.entries[backward.index - 1].kernel == "transpose"
        assert [e.kernel for e in rec.entries[backward.index + 1 : backward.index + 3]] == ["transpose", "col2im"]
    sgd_grads = {(r.a, r.b) for e in rec.entries if e.kernel == "sgd" for r in e.inputs[1:2]}
    folds = [e.index for e in rec.entries if e.kernel == "linear_backward"]
    assert any((index, 1) in sgd_grads for index in folds) and any((index, 2) in sgd_grads for index in folds)


def _entries() -> tuple[record.Entry, record.Entry]:
    image, cols = (2, 3, 8, 8), (2, 27, 16)  # k 3, s 2, p 1: 4×4 windows
    forward = record.Entry(5, "im2col", (("input", 0), 3, 2, 1), (record.Ref(OUTPUT, 4, 0, FLOAT32, image),),
                           ((FLOAT32, cols),), (tc.ZERO,))  # fmt: skip
    backward = record.Entry(9, "col2im", (("input", 0), image, 3, 2, 1), (record.Ref(OUTPUT, 8, 0, FLOAT32, cols),),
                            ((FLOAT32, image),), (tc.ZERO,))  # fmt: skip
    return forward, backward


def _malformed() -> list[tuple[str, record.Entry]]:
    forward, backward = _entries()
    image = backward.args[1]
    return [("cols of another shape", changed(forward, out_shapes=((FLOAT32, (2, 27, 15)),))),
            ("a stride of 0", changed(forward, args=(("input", 0), 3, 0, 1))), ("a window of 0", changed(forward, args=(("input", 0), 0, 2, 1))),
            ("a negative padding", changed(forward, args=(("input", 0), 3, 2, -1))), ("a padding of 2**32", changed(forward, args=(("input", 0), 3, 2, 2**32))),
            ("a float padding", changed(forward, args=(("input", 0), 3, 2, 1.0))), ("a window over the image", changed(forward, args=(("input", 0), 11, 2, 1))),
            ("x 3-d", changed_input(forward, 0, shape=(6, 8, 8))), ("a constant x", changed_input(forward, 0, kind=5)), ("x int64", changed_input(forward, 0, dtype=INT64)),
            ("cols int64", changed(forward, out_shapes=((INT64, (2, 27, 16)),))), ("two outputs", changed(forward, out_shapes=((FLOAT32, (2, 27, 16)),) * 2)),
            ("x not argument 0", changed(forward, args=(None, 3, 2, 1))), ("no padding argument", changed(forward, args=(("input", 0), 3, 2))),
            ("the shape another tuple", changed(backward, args=(("input", 0), (2, 3, 8, 9), 3, 2, 1))),
            ("dcols of another shape", changed_input(backward, 0, shape=(2, 27, 17))), ("dcols int64", changed_input(backward, 0, dtype=INT64)),
            ("dx int64", changed(backward, out_shapes=((INT64, image),))),
            ("six covering rows, no running values", changed(backward, args=(("input", 0), (2, 3, 8, 8), 6, 1, 3), inputs=(
                dataclasses.replace(backward.inputs[0], shape=(2, 108, 81)),))),
            ("six covering rows at stride 2, no running values", changed(backward, args=(("input", 0), (2, 3, 8, 8), 11, 2, 5), inputs=(
                dataclasses.replace(backward.inputs[0], shape=(2, 363, 16)),))),
            ("a header input", changed_input(backward, 0, kind=4))]  # fmt: skip


def test_malformed_column_entries_are_not_checkable_and_never_revert(all_rules) -> None:
    good = [("good", e) for e in _entries()]
    four = dataclasses.replace(_entries()[1], args=(("input", 0), (2, 3, 8, 8), 8, 2, 4), inputs=(
        dataclasses.replace(_entries()[1].inputs[0], shape=(2, 192, 25)),))  # fmt: skip
    assert parse_skeleton(four.skeleton_bytes()).args[1] == tuple_word((2, 3, 8, 8))
    assert_checkable_only_when_good(all_rules, [*_malformed(), *good, ("good: four covering rows", four)], DATA_RULES)
