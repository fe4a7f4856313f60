"""Long folds and heavy column folds in pieces (docs/referee.md, "Long reductions"): an entry whose fold
FoldRules checks in pieces (`protocol.fold_rules.piecings`) carries one more output, the running values
after each piece but the last, computed vectorised by the recorder (`record.running_values`). They must
be the fold's own values: each piece, recomputed one scalar operation at a time by the referee model
from the running value before it, gives the recorded running value, and the last piece gives the
recorded output, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import initial_checkpoint
from engine.portable import record
from engine.portable import reference as ref
from protocol import fold_rules
from protocol import referee_model as rm
from protocol import tensor_commit as tc
from protocol.referee_kit import parse_skeleton

from ..engine.helpers import examples
from .test_step_record import gpt, mlp


def _bits(value) -> int:
    return int(np.asarray(value, dtype=np.float32).reshape(-1).view(np.uint32)[0])


def _pieced_entries(rec: record.StepRecord) -> list[tuple[record.Entry, tuple[fold_rules.Piecing, ...]]]:
    found = []
    for entry in rec.entries:
        if entry.kernel in fold_rules.FOLD_KERNELS:
            pieced = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
            found.append((entry, pieced))
    return found


def _assert_chains(rec: record.StepRecord, entry: record.Entry, pieced: tuple[fold_rules.Piecing, ...]) -> None:
    """Every running value of a few elements of each pieced output (first, middle, last), and those
    elements of the output, recomputed by the referee model from exactly its dependencies (the running
    value before it read from the record), equal the recorded bits; a flipped bit is caught."""
    call = record.referee_call(entry)
    base = fold_rules.BASE_OUTPUTS[entry.kernel]
    running = entry.outputs[base]
    assert len(entry.outputs) == base + 1 and running.shape == (sum((p.pieces - 1) * p.size for p in pieced),)
    for piecing in pieced:
        for e in sorted({0, piecing.size // 2, piecing.size - 1}):
            checks = [(base, piecing.offset + c * piecing.size + e) for c in range(piecing.pieces - 1)] + [(piecing.output, e)]
            for output, element in checks:
                proven = record.proven_values(rec, entry, output, element)
                assert set(proven) == set(rm.dependencies(call, output, element))
                bits = rm.check_element(call, output, element, proven)
                assert bits == _bits(entry.outputs[output].reshape(-1)[element]), (entry.kernel, output, element)
                if any(k[0] == "partial" for k in proven):
                    key = next(k for k in proven if k[0] == "partial")
                    wrong = dict(proven)
                    wrong[key] = np.uint32(_bits(proven[key]) ^ (1 << 30)).view(np.float32)  # an exponent bit: no rounding absorbs it
                    assert rm.check_element(call, output, element, wrong) != bits


@pytest.mark.parametrize("which", ["mlp", "gpt"])
def test_the_running_values_chain_to_the_recorded_outputs(which: str) -> None:
    """MLP with a batch of 300 (dW and db fold over 300 rows: in pieces of 16 and 32 for the head's
    linear, 8 and 32 for the first, whose dx beside them is in pieces of 8 too) and the one-block GPT with dropout
    (its five dW and three layer norms' dw fold 64 rows down columns 16 to 48 apart, too heavy for one piece:
    pieces of 8; the db beside them pieces of 32). Recording changes no other bit:
    the step reaches the same state as before (test_step_record), and the outputs before the running
    values are the kernel's."""
    spec = mlp(batch_size=300) if which == "mlp" else gpt(dropout=0.1)
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    found = [(e, p) for e, p in _pieced_entries(rec) if p]
    assert len(found) == (2 if which == "mlp" else 8)
    for entry, pieced in _pieced_entries(rec):
        if not pieced:
            assert len(entry.outputs) == fold_rules.BASE_OUTPUTS[entry.kernel]
            continue
        _assert_chains(rec, entry, pieced)
        # the recorder's vectorised fold, run to its end as one piece, is the kernel's whole output
        for piecing in pieced:
            inputs = [rec.input_value(entry, k).reshape(r.shape) for k, r in enumerate(entry.inputs)]
            whole = record.running_values(entry.kernel, piecing.output, inputs, entry.out_shapes[piecing.output][1],
                                          piecing.terms, 2)  # fmt: skip
            assert whole.tobytes() == entry.outputs[piecing.output].tobytes()
    if which == "gpt":  # every dW of the step is now decidable (census: rules_of)
        from protocol.referee_kit import rules_of

        for entry in rec.entries:
            if entry.kernel == "linear_backward" and all(r.kind in (record.STATE, record.OUTPUT) for r in entry.inputs):
                assert rules_of(parse_skeleton(entry.skeleton_bytes()), 1) is not None, entry.index


@settings(max_examples=examples(5), deadline=None)
@given(st.integers(257, 700), st.sampled_from(["linear_backward", "matmul"]), st.data())
def test_a_fold_over_257_to_700_terms_chains_piece_by_piece(terms: int, kernel: str, data) -> None:
    """A linear_backward over `terms` rows (its dW and db) and a matmul of depth `terms`: the vectorised
    running values are the referee model's running values of a drawn element, each piece recomputes the
    next, and the last piece gives the reference kernel's bits."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if kernel == "linear_backward":
        x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in ((terms, 3), (2, 3), (terms, 2)))
        inputs, outputs = [x, w, dy], list(ref.linear_backward(x, w, dy))
    else:
        a, b = rng.standard_normal((2, terms)).astype(np.float32), rng.standard_normal((terms, 3)).astype(np.float32)
        inputs, outputs = [a, b], [ref.matmul(a, b)]
    refs = tuple(record.Ref(record.OUTPUT, 0, k, 1, v.shape) for k, v in enumerate(inputs))
    entry = record.Entry(1, kernel, tuple(("input", k) for k in range(len(inputs))), refs,
                         tuple((1, o.shape) for o in outputs), tuple(b"\0" * 32 for _ in outputs), tuple(outputs))  # fmt: skip
    entry = record.with_running_values(entry, inputs)
    pieced = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
    assert pieced and all(p.terms == terms and p.length <= fold_rules.MAX_FOLD for p in pieced)
    call = record.referee_call(entry)
    values = {(k, i): v for k, array in enumerate(inputs) for i, v in enumerate(array.reshape(-1))}
    running = entry.outputs[-1]
    for piecing in pieced:
        e = data.draw(st.integers(0, piecing.size - 1))
        partials = rm.partial_sums(call, piecing.output, e, values)
        assert len(partials) == piecing.pieces
        recorded = [running[piecing.offset + c * piecing.size + e] for c in range(piecing.pieces - 1)]
        assert [_bits(p) for p in partials[:-1]] == [_bits(r) for r in recorded]
        for c in range(piecing.pieces - 1):
            element = piecing.offset + c * piecing.size + e
            keys = rm.dependencies(call, len(outputs), element)
            assert sum(1 for key in keys if key[0] != "partial") <= 2 * piecing.length
            proven = {key: (recorded[key[1]] if key[0] == "partial" else values[key]) for key in keys}
            assert rm.check_element(call, len(outputs), element, proven) == _bits(recorded[c])
        final = {key: (recorded[key[1]] if key[0] == "partial" else values[key]) for key in rm.dependencies(call, piecing.output, e)}
        assert rm.check_element(call, piecing.output, e, final) == _bits(outputs[piecing.output].reshape(-1)[e])


def _loss_entry(kernel: str, inputs: list[np.ndarray], outputs: list[np.ndarray], args: tuple) -> record.Entry:
    """A loss kernel's entry over these inputs (earlier outputs) with the kernel's outputs (no running values)."""
    refs = tuple(record.Ref(record.OUTPUT, 0, k, tc.dtype_code(v), v.shape) for k, v in enumerate(inputs))
    return record.Entry(1, kernel, args, refs, tuple((tc.dtype_code(o), o.shape) for o in outputs),
                        tuple(b"\0" * 32 for _ in outputs), tuple(outputs))  # fmt: skip


@settings(max_examples=examples(8), deadline=None)
@given(st.sampled_from(["cross_entropy", "embedding_backward"]), st.integers(1, 1_100), st.data())
def test_a_loss_fold_s_running_values_chain_to_the_reference_kernel(kernel: str, terms: int, data) -> None:
    """cross-entropy over `terms` rows and embedding_backward over `terms` positions (drawn ids, a drawn D
    and V): the recorder (`with_loss_running_values`) adds running values exactly when
    `fold_rules.loss_piecing` cuts the fold (R > 256; P > 256 or a load over 404); each running value of a
    drawn element is its piece recomputed by the referee model from the recorded one before it (its terms
    at most a piece long), and the last piece gives the reference kernel's bits (the mean, dW)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if kernel == "cross_entropy":
        classes = data.draw(st.sampled_from([2, 5, 32]))
        z = (3 * rng.standard_normal((terms, classes))).astype(np.float32)
        t = rng.integers(0, classes, terms).astype(np.int64)
        inputs, outputs = [z, t], [np.asarray(ref.cross_entropy(z, t), dtype=np.float32), ref.cross_entropy_rows(z, t)]
        entry = _loss_entry(kernel, inputs, outputs, (("input", 0), ("input", 1)))
    else:
        width, vocab = data.draw(st.sampled_from([1, 3, 8, 32])), data.draw(st.integers(1, 40))
        ids = rng.integers(0, vocab, terms).astype(np.int64)
        dy = (rng.standard_normal((terms, width)) * 10.0 ** rng.integers(-3, 3, (terms, 1))).astype(np.float32)
        inputs, outputs = [ids, dy], [ref.embedding_backward(ids, dy, vocab)]
        entry = _loss_entry(kernel, inputs, outputs, (("input", 0), ("input", 1), vocab))
    piecing = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
    entry = record.with_loss_running_values(entry, inputs)
    base = fold_rules.LOSS_BASE_OUTPUTS[kernel]
    if piecing is None:
        assert len(entry.outputs) == base and (kernel != "cross_entropy" or terms <= fold_rules.MAX_FOLD)
        return
    assert terms > fold_rules.MAX_FOLD or kernel == "embedding_backward"
    running = entry.outputs[base]
    assert running.shape == ((piecing.pieces - 1) * piecing.size,)
    call = record.referee_call(entry)
    values = {(k, i): v for k, array in enumerate(inputs) for i, v in enumerate(array.reshape(-1))}
    values.update({("nll", r): v for r, v in enumerate(outputs[1])} if kernel == "cross_entropy" else {})
    e = data.draw(st.integers(0, piecing.size - 1))

    def proven(output: int, element: int) -> dict:
        keys = rm.dependencies(call, output, element)
        assert sum(1 for key in keys if key[0] != "partial") <= (1 if kernel == "cross_entropy" else 2) * piecing.length
        return {key: (running[rm.running_value_index(call, output, element, key[1])] if key[0] == "partial" else values[key])
                for key in keys}  # fmt: skip

    for c in range(piecing.pieces - 1):
        element = c * piecing.size + e
        assert rm.check_element(call, base, element, proven(base, element)) == _bits(running[element])
    assert rm.check_element(call, 0, e, proven(0, e)) == _bits(outputs[0].reshape(-1)[e])


def test_the_referee_model_finds_the_pieces_of_calls_whose_rules_read_their_arguments() -> None:
    """FoldRules' linear reads whether a bias is named (a zero word) and fold_head_groups its G: the referee
    model hands fold_rules the call's arguments as skeleton words, with or without running values."""
    from protocol import referee_model as rm

    x, w = ("input", 0), ("input", 1)
    pieced = rm.Call("linear", (x, w, None), ((4, 300), (10, 300)), ((4, 10), (4 * 40,)))  # 5 pieces of 64
    assert rm.has_running_values(pieced, 1, 0) and rm.has_running_values(pieced, 0, 3)
    one_piece = rm.Call("linear", (x, w, None), ((2, 32, 12), (8, 12)), ((2, 32, 8),))
    assert not rm.has_running_values(one_piece, 0, 3)
    heads = rm.Call("fold_head_groups", (x, 2), ((2, 2, 32, 4),), ((2, 1, 32, 4), (1,)))
    assert not rm.has_running_values(heads, 0, 0)  # one piece only: an extra output is no running values
