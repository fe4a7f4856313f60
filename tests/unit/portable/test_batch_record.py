"""The batch as entries of the step record (issue 15, dataset commitment): `batch_index` selects the
step's example ids from the `orders` constant at the header's cursor, and two `gather`s take those rows
of the `train_x` and `train_y` constants, so no entry reads an unproven batch input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import initial_checkpoint
from engine.portable import record
from engine.training import Job, epoch_permutation
from protocol import referee_model as rm
from protocol import tensor_commit as tc

from ..engine.helpers import examples
from .test_step_record import gpt, mlp


def _batch_entries_hold(spec, rec: record.StepRecord, step: int) -> None:
    """The record's first three entries are the batch the engine trains on at `step`, read from the
    dataset constants at the step's cursor, and every later reader of x or y reads their outputs."""
    job = Job(spec, None, "cpu", fetch_init=False)
    x, y = (t.numpy() for t in job._batch(step))
    cursor = job._cursor(step)
    assert rec.header == {"seed": spec.seed, "step": step, **cursor}
    index, gather_x, gather_y = rec.entries[:3]
    assert [index.kernel, gather_x.kernel, gather_y.kernel] == ["batch_index", "gather", "gather"]
    count = job.data["train_x"].shape[0]
    order = epoch_permutation(spec.seed, cursor["epoch"], count)
    np.testing.assert_array_equal(index.outputs[0], order[cursor["position"] : cursor["position"] + spec.batch_size])
    assert index.outputs[0].dtype == np.int64 and [r.kind for r in index.inputs] == [record.HEADER, record.CONSTANT]
    assert index.inputs[1].shape[1] == count and index.inputs[1].root == tc.tensor_root(index.loose[1])
    for entry, values, name in ((gather_x, x, "train_x"), (gather_y, y, "train_y")):
        np.testing.assert_array_equal(entry.outputs[0], values)
        assert entry.outputs[0].dtype == values.dtype
        source, ids = entry.inputs
        assert (source.kind, source.root) == (record.CONSTANT, tc.tensor_root(job.data[name].numpy()))
        assert (ids.kind, ids.a, ids.b) == (record.OUTPUT, 0, 0)
    assert not any(r.kind == record.BATCH for e in rec.entries for r in e.inputs) and rec.complete
    readers = [(e.index, r.a) for e in rec.entries[3:] for r in e.inputs if r.kind == record.OUTPUT and r.a in (1, 2)]
    assert {a for _, a in readers} == {1, 2}  # x and y are read, as the gathers' outputs
    for entry in rec.entries[:3]:  # the referee model recomputes their elements from the proven values
        call = record.referee_call(entry)
        for element in (0, entry.outputs[0].size - 1):
            got = rm.check_element(call, 0, element, record.proven_values(rec, entry, 0, element))
            value = entry.outputs[0].reshape(-1)[element]
            assert got == (int(value) if value.dtype == np.int64 else int(np.float32(value).view(np.uint32)))


def test_the_gpt_batch_is_read_from_the_dataset_at_steps_0_and_1() -> None:
    spec = gpt(dropout=0.1)
    rec0, reached = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    rec1, _ = record.record_step(spec, None, 1, reached)
    for step, rec in enumerate((rec0, rec1)):
        _batch_entries_hold(spec, rec, step)
        embedding = rec.entries[3]
        assert embedding.kernel == "gather" and (embedding.inputs[1].kind, embedding.inputs[1].a) == (record.OUTPUT, 1)
    assert rec0.skeleton_root() == rec1.skeleton_root() and rec0.entries[0].out_roots != rec1.entries[0].out_roots


def test_a_step_in_the_second_epoch_reads_the_second_row_of_orders() -> None:
    """Batches of 700 of 1,437 examples: two batches an epoch, so step 2 is epoch 1 at position 0 and
    `orders` holds both epochs' permutations (E = ceil(4 / 2))."""
    spec = mlp(batch_size=700)
    state = initial_checkpoint(spec, None)
    for step in range(3):
        rec, state = record.record_step(spec, None, step, state)
    _batch_entries_hold(spec, rec, 2)
    orders = rec.entries[0].loose[1]
    assert orders.shape == (2, 1437) and rec.header["epoch"] == 1 and rec.header["position"] == 0
    np.testing.assert_array_equal(orders[1], epoch_permutation(spec.seed, 1, 1437))


def test_the_skeleton_binds_the_seed_and_the_dataset(monkeypatch) -> None:
    """S carries the constants' roots: another seed (other orders) or one other value of a training
    example outside the batch gives another S; a dataset whose rows at the cursor are not the trained
    batch is refused."""
    spec = gpt()
    base = record.record_step(spec, None, 0, initial_checkpoint(spec, None))[0]
    reseeded = gpt().model_copy(update={"seed": spec.seed + 1})
    assert record.record_step(reseeded, None, 0, initial_checkpoint(reseeded, None))[0].skeleton_root() != base.skeleton_root()
    ids = set(base.entries[0].outputs[0].tolist())
    original = record.dataset_constants

    def altered(row: int):
        def constants(spec, data):
            train_x, train_y, orders = original(spec, data)
            train_x = train_x.copy()
            train_x[row, 0] = (train_x[row, 0] + 1) % 32
            return train_x, train_y, orders
        return constants

    outside = next(r for r in range(len(base.entries[1].loose[0])) if r not in ids)
    monkeypatch.setattr(record, "dataset_constants", altered(outside))
    other = record.record_step(spec, None, 0, initial_checkpoint(spec, None))[0]
    assert other.skeleton_root() != base.skeleton_root()
    assert [e.out_roots for e in other.entries] == [e.out_roots for e in base.entries]  # the same step's values
    monkeypatch.setattr(record, "dataset_constants", altered(min(ids)))
    with pytest.raises(ValueError, match="not the dataset's rows"):
        record.record_step(spec, None, 0, initial_checkpoint(spec, None))


@settings(max_examples=examples(60), deadline=None)
@given(st.data())
def test_the_batch_index_rule_selects_at_any_cursor(data) -> None:
    """idx[b] = orders[epoch, position + b] from the cursor and that one orders element (the rule reads
    nothing else); a cursor outside `orders` is refused."""
    epochs, size = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    count = size * data.draw(st.integers(1, 5))
    orders = np.array(data.draw(st.lists(st.integers(0, 2**40), min_size=epochs * count, max_size=epochs * count)))
    call = rm.Call("batch_index", (("input", 0), ("input", 1)), ((), (epochs, count)), ((size,),))
    epoch, batch = data.draw(st.integers(0, epochs - 1)), data.draw(st.integers(0, count // size - 1))
    b = data.draw(st.integers(0, size - 1))
    proven = {("epoch", 0): epoch, ("position", 0): batch * size, **{(1, i): int(v) for i, v in enumerate(orders)}}
    deps = rm.dependencies(call, 0, b)
    bits, read = rm._check(call, 0, b, {k: proven[k] for k in deps}, None)
    assert bits == orders[epoch * count + batch * size + b]
    assert read == {("epoch", 0), ("position", 0), (1, epoch * count + batch * size + b)}
    with pytest.raises(rm.ElementError):
        rm.check_element(call, 0, b, {**proven, ("epoch", 0): epochs})


def test_a_gather_of_a_one_dimensional_source_selects_single_values() -> None:
    """The labels' gather: out[p] = source[ids[p]] (a row of one element)."""
    call = rm.Call("gather", (("input", 0), ("input", 1)), ((5,), (3,)), ((3,),))
    source = np.array([10, 11, 12, 13, 14])
    ids = [4, 0, 2]
    for p in range(3):
        proven = {(1, p): ids[p], **{(0, i): int(v) for i, v in enumerate(source)}}
        assert rm.check_element(call, 0, p, proven) == source[ids[p]]
