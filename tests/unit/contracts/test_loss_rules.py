"""RowRules.vy's loss rules (contracts/lib/row_rules.vy, docs/referee.md "Loss rules"): cross-entropy's mean
(a fold over its own per-row losses, output 1, read with REF_SELF) and each row's loss nll[r], its
backward, and embedding_backward (dW[v, d]: every id, then dy's column d by a column proof). Against the
Python mirror (`protocol.referee_kit.row_checkable`, `row_strided_reads`) and the referee model
(`referee_calls.encode`) on every such output of a recorded tiny-GPT step (dropout 0.1) and MLP step."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.portable import record

from .test_referee_game import _deploy, checkable_output

LOSS_KERNELS = ("cross_entropy", "cross_entropy_backward", "embedding_backward")


@pytest.fixture(scope="module")
def row_rules(w3: Any) -> Any:
    return _deploy(w3, "contracts/RowRules.vy")


@pytest.fixture(scope="module")
def loss_steps() -> dict[str, record.StepRecord]:
    """Step 0 of test_step_record's GPT (dropout 0.1) and MLP, recorded."""
    from engine.api import initial_checkpoint

    from ..portable.test_step_record import gpt, mlp

    return {name: record.record_step(spec, None, 0, initial_checkpoint(spec, None))[0]
            for name, spec in (("gpt", gpt(dropout=0.1)), ("mlp", mlp()))}  # fmt: skip


def provable(entry: record.Entry) -> record.Entry:
    """The entry with each batch input (targets, ids) referenced as an earlier entry's output instead, as
    the record refers to them once the batch is an entry of its own (a batch input is not provable)."""
    import dataclasses

    refs = tuple(dataclasses.replace(r, kind=record.OUTPUT, a=max(entry.index - 1, 0)) if r.kind == record.BATCH else r
                 for r in entry.inputs)  # fmt: skip
    return dataclasses.replace(entry, inputs=refs)


def _pattern(values: np.ndarray) -> list[int]:
    """Elements as RefereeGame reads them: a binary32's 32-bit pattern, an int64's 64-bit one."""
    flat = np.ascontiguousarray(values.reshape(-1))
    return flat.view(np.uint64 if flat.dtype.itemsize == 8 else np.uint32).tolist()


def plan_values(rec: record.StepRecord, entry: record.Entry, reads: list) -> tuple[int, ...]:
    """The values prove_element hands the rule for a RowRules plan (no zipped reads): each read's elements
    (`count` from `first`, `stride` apart) of its input, or of the entry's own output for a SELF read."""
    from protocol.referee_kit import SELF_READ

    values: list[int] = []
    for k, *_, first, count, stride in reads:
        source = entry.outputs[k - SELF_READ] if k >= SELF_READ else rec.input_value(entry, k)
        values += _pattern(source.reshape(-1)[first : first + count * stride : stride])
    return tuple(values)


@pytest.mark.parametrize("which", ["gpt", "mlp"])
def test_the_loss_rules_mirror_the_python_and_the_referee_model(row_rules, loss_steps, which: str) -> None:
    """On every cross_entropy, cross_entropy_backward and embedding_backward output of the step (its batch
    inputs referenced as earlier outputs): RowRules checks it exactly when `row_checkable` does (and
    all of them are checkable), and for the first, second, middle and last element its reads are
    `row_strided_reads`' (a SELF read of output 1 for the mean, with the entry's own reference fields;
    a stride of D for dy's column) and its rule, parameters and values read are `referee_calls.encode`'s
    from the referee model; with the batch reference a batch (kind 2) only the mean stays checkable."""
    from protocol import referee_calls
    from protocol.referee_kit import SELF, SELF_READ, parse_skeleton, row_checkable, row_strided_reads

    rules = row_rules.functions
    rec = loss_steps[which]
    seen = set()
    for original in (e for e in rec.entries if e.kernel in LOSS_KERNELS):
        entry = provable(original)
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in range(len(entry.out_shapes)):
            assert checkable_output(rules, entry, output) and row_checkable(parsed, output), (entry.kernel, output)
            batch = parse_skeleton(original.skeleton_bytes())
            assert checkable_output(rules, original, output) is row_checkable(batch, output) is (output == 0 and entry.kernel == "cross_entropy")
            seen.add((entry.kernel, output))
            size = entry.outputs[output].size
            for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
                rule, params, reads, zipped = rules.plan(skeleton, output, element, []).call()
                assert [(r[0], r[7], r[8], r[9]) for r in reads] == row_strided_reads(parsed, output, element) and not zipped
                for k, kind, a, b, dtype, ndim, dims, *_ in reads:
                    if k >= SELF_READ:
                        assert (kind, b, dtype, tuple(dims[:ndim])) == (SELF, k - SELF_READ, *entry.out_shapes[k - SELF_READ])
                    else:
                        ref = parsed.inputs[k]
                        assert (kind, a, b, dtype, tuple(dims[:ndim])) == (ref.kind, ref.a, ref.b, ref.dtype, ref.shape)
                proven = record.proven_values(rec, original, output, element)
                expected = referee_calls.encode(record.referee_call(original), output, element, proven)
                assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.kernel, output, element)
                assert plan_values(rec, original, reads) == expected.values, (entry.kernel, output, element)
    assert seen == {("cross_entropy", 0), ("cross_entropy", 1), ("cross_entropy_backward", 0)} | (
        {("embedding_backward", 0)} if which == "gpt" else set())
