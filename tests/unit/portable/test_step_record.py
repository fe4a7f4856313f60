"""Step computation records (engine/portable/record.py): one portable optimizer step as the kernel
calls it makes, with a skeleton fixed by the spec and prefix roots to bisect over."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import numpy as np
import pytest

from engine.api import initial_checkpoint, record_first_steps, replay_step_bytes
from engine.portable import ops, record
from protocol import tensor_commit as tc
from protocol.hashing import sha256_hex

from ..engine.helpers import tiny_digits, tiny_gpt


def mlp(hidden: int = 16, **overrides: Any):
    """A portable MLP without dropout: every operation of its step is a backend kernel call."""
    return tiny_digits(arithmetic="portable/1", steps=4, segment_steps=2, model={"input_shape": [64], "layers": [
        {"type": "linear", "in_features": 64, "out_features": hidden}, {"type": "relu"},
        {"type": "linear", "in_features": hidden, "out_features": 10}]}, **overrides)  # fmt: skip


def wide_norm_mlp():
    """A portable MLP whose hidden layer is normalised over 128 values, wider than HostRules' layer_norm rows
    (104) and RowRules' layer_norm_backward rows (64): both are decided in pieces (RowPieceRules,
    docs/referee.md "Rows in pieces")."""
    return tiny_digits(arithmetic="portable/1", steps=4, segment_steps=2, model={"input_shape": [64], "layers": [
        {"type": "linear", "in_features": 64, "out_features": 128}, {"type": "layernorm", "normalized_shape": 128},
        {"type": "relu"}, {"type": "linear", "in_features": 128, "out_features": 10}]})  # fmt: skip


def wide_logits_mlp():
    """A portable MLP with 40 logits: its cross-entropy rows (40 classes) are wider than RowRules' cap (32),
    so nll and `cross_entropy_backward` are decided in pieces (RowPieceRules, with softmax's statistics of
    the logits: docs/referee.md "Rows in pieces", tests/unit/portable/test_cross_entropy_pieces.py)."""
    return tiny_digits(arithmetic="portable/1", steps=4, segment_steps=2, model={"input_shape": [64], "layers": [
        {"type": "linear", "in_features": 64, "out_features": 16}, {"type": "relu"},
        {"type": "linear", "in_features": 16, "out_features": 40}]})  # fmt: skip


def cnn():
    """The digits CNN preset, portable and short: every call has an on-chain rule (its convolution recorded as
    im2col, linear's folds and col2im: DataRules and FoldRules; its max pooling and the backward DataRules'; its
    SGD with Nesterov momentum ScalarRules')."""
    from engine.presets import digits_cnn_spec

    return digits_cnn_spec(arithmetic="portable/1", steps=4, segment_steps=2, batch_size=16)


def wide_pool_cnn():
    """The digits CNN pooling 4×4 windows by 1 (8×8 → 5×5): max_pool's forward is decided in pieces of 2 rows, but its
    backward's windows overlap over 4 rows, more than DataRules' 3 (MAX_POOL_OVERLAP), so the backward has no on-chain
    rule (`engine.api.uncovered_calls`) and a refereed game steered to it escalates to the arbiter."""
    from engine.presets import digits_cnn_spec

    return digits_cnn_spec(arithmetic="portable/1", steps=4, segment_steps=2, batch_size=16, model={"input_shape": [64], "layers": [
        {"type": "reshape", "shape": [1, 8, 8]}, {"type": "conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 4, "stride": 1}, {"type": "flatten"},
        {"type": "linear", "in_features": 200, "out_features": 10}]})  # fmt: skip


def gpt(dropout: float = 0.0, width: int = 16, batch_size: int = 2):
    vocab = 32
    return tiny_gpt(arithmetic="portable/1", steps=3, segment_steps=3, batch_size=batch_size, model={
        "input_shape": [32], "input_dtype": "int64", "layers": [
            {"type": "embedding", "num_embeddings": vocab, "embedding_dim": width},
            {"type": "positional_embedding", "max_len": 32, "embedding_dim": width},
            {"type": "transformer_block", "d_model": width, "n_heads": 2, "d_ff": 32, "dropout": dropout},
            {"type": "layernorm", "normalized_shape": width},
            {"type": "linear", "in_features": width, "out_features": vocab}]})  # fmt: skip


def overlapping_pool_cnn():
    """The digits CNN pooling overlapping 3×3 windows by 2 (8×8 → 3×3): its max_pool_backward's elements fold up to
    four windows, checked in pieces of one from the running values the record adds (DataRules)."""
    from engine.presets import digits_cnn_spec

    return digits_cnn_spec(arithmetic="portable/1", steps=4, segment_steps=2, batch_size=16, model={"input_shape": [64], "layers": [
        {"type": "reshape", "shape": [1, 8, 8]}, {"type": "conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 3, "stride": 2}, {"type": "flatten"},
        {"type": "linear", "in_features": 72, "out_features": 10}]})  # fmt: skip


def deep_gpt(blocks: int = 6):
    """A GPT of `blocks` narrow blocks with clipping: more gradients (2 + 12 a block + 4) than one clip_scale entry
    lists (protocol.scalar_rules.CLIP_GROUP), so its clipping is recorded as clip_sum groups and clip_factor."""
    vocab, width = 32, 8
    block = {"type": "transformer_block", "d_model": width, "n_heads": 2, "d_ff": 16, "dropout": 0.0}
    return tiny_gpt(arithmetic="portable/1", steps=3, segment_steps=3, batch_size=2, model={
        "input_shape": [32], "input_dtype": "int64", "layers": [
            {"type": "embedding", "num_embeddings": vocab, "embedding_dim": width},
            {"type": "positional_embedding", "max_len": 32, "embedding_dim": width}, *[block] * blocks,
            {"type": "layernorm", "normalized_shape": width}, {"type": "linear", "in_features": width, "out_features": vocab}]})  # fmt: skip


def llama():
    """A Llama-style decoder (rotary, grouped-query attention, SwiGLU, RMSNorm, tied head, dropout)."""
    vocab, width = 32, 8
    return tiny_gpt(arithmetic="portable/1", steps=3, segment_steps=3, batch_size=2, model={
        "input_shape": [32], "input_dtype": "int64", "layers": [
            {"type": "embedding", "num_embeddings": vocab, "embedding_dim": width},
            {"type": "decoder_block", "d_model": width, "n_heads": 2, "n_kv_heads": 1, "head_dim": 4, "d_ff": 12,
             "rope_theta": 500.0, "dropout": 0.2},
            {"type": "rmsnorm", "normalized_shape": width},
            {"type": "lm_head", "d_model": width, "vocab_size": vocab, "tie_to_embedding": True}]})  # fmt: skip


@pytest.fixture(scope="module")
def mlp_steps():
    """The records of steps 0 and 1 of the MLP, with the states before and after each."""
    spec = mlp()
    states, records, bindings = record_first_steps(spec, None, 2)
    assert [b.segment_steps for b in bindings] == [2, 1, 2]  # states 0, 1, 2 of a job in segments of 2
    assert {(b.skeleton_root, b.record_length) for b in bindings} == {(records[0].skeleton_root(), len(records[0].entries))}
    return spec, states, records


def test_recording_changes_no_bit_and_the_recorder_switches_off(mlp_steps) -> None:
    spec, states, _ = mlp_steps
    for step in range(2):
        assert replay_step_bytes(spec, None, step, states[step])[1] == states[step + 1]
    assert ops.RECORDER is None


def test_the_mlp_record_is_complete_and_its_final_tensors_are_the_next_state(mlp_steps) -> None:
    _, states, records = mlp_steps
    for step, rec in enumerate(records):
        assert rec.complete
        kernels = [e.kernel for e in rec.entries]
        assert kernels[:7] == ["batch_index", "gather", "gather", "linear", "relu", "linear", "cross_entropy"]
        assert kernels.count("adamw") == 4
        after, _, _ = tc.read_checkpoint(states[step + 1])
        assert sorted(rec.final) == sorted(after)
        for name, ref in rec.final.items():
            assert ref.kind == record.OUTPUT  # every state tensor is rewritten by an update entry
            produced = rec.entries[ref.a]
            assert produced.out_roots[ref.b] == tc.tensor_root(after[name])
            np.testing.assert_array_equal(rec.value_of(ref), after[name])
        # every input is traced to the agreed state, the header, a constant or an earlier entry (the batch
        # is the dataset gathers' outputs: no entry reads an unproven batch input)
        before, _, _ = tc.read_checkpoint(states[step])
        for entry in rec.entries:
            for ref in entry.inputs:
                assert ref.kind in (record.STATE, record.OUTPUT, record.HEADER, record.CONSTANT)
                if ref.kind == record.OUTPUT:
                    assert ref.a < entry.index
                if ref.kind == record.STATE:
                    np.testing.assert_array_equal(rec.value_of(ref).reshape(-1), before[rec.state_names[ref.a]].reshape(-1))


def test_the_skeleton_is_the_spec_s_and_the_outputs_are_the_step_s(mlp_steps) -> None:
    spec, states, records = mlp_steps
    first, second = records
    assert first.skeleton_root() == second.skeleton_root()
    assert [e.out_roots for e in first.entries] != [e.out_roots for e in second.entries]
    assert first.prefix_roots()[-1] != second.prefix_roots()[-1]
    again, _ = record.record_step(spec, None, 0, states[0])  # a second party records the same step
    assert again.prefix_roots() == first.prefix_roots()
    other = mlp(hidden=12)
    rec, _ = record.record_step(other, None, 0, initial_checkpoint(other, None))
    assert rec.skeleton_root() != first.skeleton_root()


def test_the_state_map_is_leaf_L_of_S_and_links_the_last_prefix_to_the_next_state(mlp_steps) -> None:
    """The state map (leaf L of S) is the spec's: the same at steps 0 and 1; each entry it names holds,
    in the last prefix root's entry leaf, the root of the next state's tensor leaf at 1 + a; a tensor
    the step leaves as it was maps to 0xffffffff; any other origin is refused."""
    _, states, records = mlp_steps
    first, second = records
    assert first.map_leaf() == second.map_leaf() and len(first.map_bytes()) == 5 * len(first.state_names)
    for step, rec in enumerate(records):
        width, length = rec.width, len(rec.entries)
        assert width == tc.width_of(length + 1) and width >= length + 1
        assert tc.root_from_path(rec.map_leaf(), length, rec.skeleton_proof(length), record.RECORD_NODE) == rec.skeleton_root()
        after, _, _ = tc.read_checkpoint(states[step + 1])
        last = rec.prefix_roots()[-1]
        for a, name in enumerate(rec.state_names):
            j, o = struct.unpack(">IB", rec.map_bytes()[5 * a : 5 * a + 5])
            entry = rec.entries[j]
            assert record.verify_entry(last, width, entry.leaf(), j, rec.entry_proof(j, length - 1))
            leaf = tc.state_leaves(after, tc.read_checkpoint(states[step + 1])[1])[1 + a]
            assert leaf == tc.state_tensor_leaf(name, entry.out_roots[o])
    name = first.state_names[2]
    unchanged = dataclasses.replace(first, final={**first.final, name: record.Ref(record.STATE, 2)})
    assert unchanged.map_bytes()[10:15] == b"\xff\xff\xff\xff\x00" and unchanged.skeleton_root() != first.skeleton_root()
    for other in (record.Ref(record.STATE, 3), record.Ref(record.UNRECORDED), record.Ref(record.BATCH)):
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(first, final={**first.final, name: other}).skeleton_root()


def test_prefix_roots_open_every_entry_at_its_own_and_later_prefixes(mlp_steps) -> None:
    _, _, records = mlp_steps
    rec = records[0]
    roots = rec.prefix_roots()
    assert len(roots) == len(rec.entries) and len(set(roots)) == len(roots)
    width = rec.width
    for j in range(0, len(rec.entries), 3):
        leaf = rec.entries[j].leaf()
        for later in (j, len(rec.entries) - 1):
            assert record.verify_entry(roots[later], width, leaf, j, rec.entry_proof(j, later))
        if j:  # not provable against an earlier prefix, nor as another entry
            assert not record.verify_entry(roots[j - 1], width, leaf, j, rec.entry_proof(j, j - 1))
            assert not record.verify_entry(roots[j], width, leaf, j - 1, rec.entry_proof(j, j))


def test_a_gpt_step_with_dropout_is_recorded_completely() -> None:
    """Besides the backend kernels: the embedding gather, the positional and residual additions,
    autograd's sums of two gradient contributions, the attention core's operations, the head moves
    (views copied to contiguous memory), the q/k/v gradient concatenation, the positional gradient's
    placement, and dropout (one keep mask per call, from the header's seed and step and the call's
    number; the select, the scales and their backward) are entries too, so every input is traced."""
    spec = gpt(dropout=0.1)
    state = initial_checkpoint(spec, None)
    rec, reached = record.record_step(spec, None, 0, state)
    assert reached == replay_step_bytes(spec, None, 0, state)[1]
    assert rec.complete
    kernels = [e.kernel for e in rec.entries]
    assert kernels[:5] == ["batch_index", "gather", "gather", "gather", "add"]  # idx, x, y, the embedding
    assert {"layer_norm", "linear", "move", "transpose", "matmul", "mul_scalar", "fill_above_diagonal", "softmax",
            "gelu", "cross_entropy", "softmax_backward", "cat", "layer_norm_backward", "place", "where",
            "scaled_keep", "embedding_backward", "clip_scale", "scale", "adamw_scalars", "adamw"} <= set(kernels)  # fmt: skip
    assert kernels.count("add") == 5  # positional, two residuals, the gradient sums at the two forks
    masks = [e for e in rec.entries if e.kernel == "dropout_keep"]
    assert [e.args[-1] for e in masks] == [0, 1]  # attention weights, then the block's output
    after, _, _ = tc.read_checkpoint(reached)
    for name, ref in rec.final.items():
        assert rec.entries[ref.a].out_roots[ref.b] == tc.tensor_root(after[name])
    rec1, _ = record.record_step(spec, None, 1, reached)
    assert rec1.skeleton_root() == rec.skeleton_root()  # the masks' roots change, the skeleton does not
    assert [e.out_roots for e in rec1.entries if e.kernel == "dropout_keep"] != [e.out_roots for e in masks]


def test_step_state_roots_follow_the_step_hashes(tmp_path) -> None:
    from engine.api import checkpoint_naming, record_step, run_spec, step_hashes, step_state_roots
    from protocol.artifacts import LocalStore

    spec = mlp()
    store = LocalStore(tmp_path)
    result = run_spec(spec, store)
    roots = step_state_roots(spec, store, 1, result.state_hashes[1])
    hashes = step_hashes(spec, store, 1, result.state_hashes[1], put_states=True)
    assert len(roots) == len(hashes) == 3 and len(set(roots)) == 3
    # a portable job's h_i is a state root bound to its step record: its checkpoints are read by that name
    first, last = (store.get(result.state_hashes[b], naming=checkpoint_naming(spec, store, b)) for b in (1, 2))
    # steps 2, 3, 4 of a 4-step job in segments of 2: 2 and 1 steps to the next boundary, 0 at the last state
    constants = {"total_steps": 4, "segment_length": 2, "batch_size": spec.batch_size}  # the spec's, in every header
    bindings = [tc.StateBinding(segment_steps=n, **constants) for n in (2, 1, 0)]
    states = [first, *(store.get(h) for h in hashes[1:])]
    assert roots == ["0x" + tc.state_root(s, b).hex() for s, b in zip(states, bindings, strict=True)]
    bound = step_state_roots(spec, store, 1, result.state_hashes[1], skeleton=(b"\x01" * 32, 5))
    assert bound == ["0x" + tc.state_root(s, tc.StateBinding(b"\x01" * 32, 5, b.segment_steps, **constants)).hex()
                     for s, b in zip(states, bindings, strict=True)]  # fmt: skip
    assert hashes[-1] == sha256_hex(last)
    rec, reached = record_step(spec, store, 2, first)  # the API's entry point
    assert sha256_hex(reached) == hashes[1] and rec.complete


def test_steps_to_boundary_count_down_to_each_segment_end() -> None:
    from engine.api import state_binding, steps_to_boundary
    from protocol.errors import EngineError

    spec = tiny_digits(steps=5, segment_steps=2)  # segments of 2: [0, 2), [2, 4), [4, 5)
    assert [steps_to_boundary(spec, s) for s in range(6)] == [2, 1, 2, 1, 1, 0]
    constants = {"total_steps": 5, "segment_length": 2, "batch_size": spec.batch_size}
    assert state_binding(spec, 4, (b"\x01" * 32, 9)) == tc.StateBinding(b"\x01" * 32, 9, 1, **constants)
    assert state_binding(spec, 4, (b"\x01" * 32, 9, 7)) == tc.StateBinding(b"\x01" * 32, 9, 1, per_epoch=7, **constants)
    with pytest.raises(EngineError):
        steps_to_boundary(spec, 6)


def test_a_llama_style_step_is_recorded_completely() -> None:
    spec = llama()
    state = initial_checkpoint(spec, None)
    rec, reached = record.record_step(spec, None, 0, state)
    assert reached == replay_step_bytes(spec, None, 0, state)[1] and rec.complete
    kernels = {e.kernel for e in rec.entries}
    assert {"rms_norm", "rotary", "silu", "mul", "fold_head_groups", "rotary_backward", "silu_backward",
            "rms_norm_backward", "dropout_keep", "where"} <= kernels  # fmt: skip
    assert any(r.kind == record.CONSTANT for e in rec.entries for r in e.inputs)  # the rotary tables


def test_only_the_recording_thread_is_recorded() -> None:
    """A daemon may train another job in another thread while it records a disputed step."""
    import threading

    import torch

    x, weight, bias = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
    recorder = record.Recorder(mlp(), {})
    with recorder.active():
        other = threading.Thread(target=lambda: ops.Linear.apply(x, weight, bias))
        other.start()
        other.join()
        assert recorder.entries == []
        ops.Linear.apply(x, weight, bias)
    assert [e.kernel for e in recorder.entries] == ["linear"] and ops.RECORDER is None


def test_an_entry_s_inputs_are_provable_against_the_agreed_prefix_and_state(mlp_steps) -> None:
    """What the operation game needs: with P_{j−1} agreed, every input of entry j that an earlier entry
    made opens against P_{j−1} (its entry leaf holds the output's root), and every state input opens
    against the agreed state root."""
    _, states, records = mlp_steps
    rec = records[1]
    roots, width = rec.prefix_roots(), rec.width
    state_root = tc.state_root(states[1])
    leaf_count = 1 + len(rec.state_names)
    for j in range(1, len(rec.entries)):
        for ref in rec.entries[j].inputs:
            if ref.kind == record.OUTPUT:
                source = rec.entries[ref.a]
                assert record.verify_entry(roots[j - 1], width, source.leaf(), ref.a, rec.entry_proof(ref.a, j - 1))
                assert tc.tensor_root(source.outputs[ref.b]) == source.out_roots[ref.b]
            elif ref.kind == record.STATE:
                name = rec.state_names[ref.a]
                index, troot, path = tc.state_tensor_proof(states[1], name)
                assert index == 1 + ref.a  # the reference's index is the state leaf's, less the header
                assert tc.verify_state_leaf(state_root, leaf_count, index, tc.state_tensor_leaf(name, troot), path)
