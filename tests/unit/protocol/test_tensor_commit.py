"""Tensor and state commitments (protocol/tensor_commit.py): every element and aligned run of a tensor
is provable against its root, and nothing else is."""

from __future__ import annotations

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import tensor_commit as tc
from protocol.errors import CheckpointError

from ..engine.helpers import examples


@st.composite
def tensors(draw) -> np.ndarray:
    """Any bits (subnormals, NaN payloads, ±0) in float32, int64 or float64 tensors of 0 to 3 dims, or masks."""
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    dtype = np.dtype(draw(st.sampled_from(["float32", "int64", "float64", "bool"])))
    count = int(np.prod(shape, dtype=np.int64))
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    if dtype == np.bool_:  # a mask: bytes 0 or 1
        return (np.frombuffer(raw, dtype=np.uint8) & 1).astype(np.bool_).reshape(shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=examples(25), deadline=None)
@given(tensors(), st.data())
def test_every_element_and_run_verifies_and_a_flipped_bit_does_not(array: np.ndarray, data) -> None:
    code, root = tc.dtype_code(array), tc.tensor_root(array)
    first = data.draw(st.integers(0, array.size - 1))
    count = data.draw(st.integers(1, array.size - first))
    proof = tc.prove_run(array, first, count)
    assert tc.verify_run(root, code, array.shape, proof)
    flat = array.reshape(-1)
    for element in range(first, first + count):  # the run holds exactly the elements' bits
        assert tc.element_of_run(code, proof, element).tobytes() == flat[element : element + 1].tobytes()
    # any flipped bit of any chunk, or the run claimed elsewhere, fails
    chunk = data.draw(st.integers(0, len(proof.chunks) - 1))
    bit = data.draw(st.integers(0, 255))
    chunks = list(proof.chunks)
    chunks[chunk] = _flip(chunks[chunk], bit)
    assert not tc.verify_run(root, code, array.shape, tc.RunProof(proof.first, tuple(chunks), proof.path))
    moved = tc.RunProof(proof.first + len(proof.chunks), proof.chunks, proof.path)
    actual = tuple(tc.chunks_of(array)[moved.first : moved.first + len(moved.chunks)])
    # only equal bytes can pass (equal bytes need not: the siblings of another place differ unless they repeat too)
    assert not tc.verify_run(root, code, array.shape, moved) or actual == moved.chunks
    if proof.path:
        bad_path = (_flip(proof.path[0], bit),) + proof.path[1:]
        assert not tc.verify_run(root, code, array.shape, tc.RunProof(proof.first, proof.chunks, bad_path))


@settings(max_examples=examples(15), deadline=None)
@given(tensors())
def test_the_root_binds_shape_and_dtype(array: np.ndarray) -> None:
    root = tc.tensor_root(array)
    flat = array.reshape(-1)
    assert tc.tensor_root(flat) != root or array.shape == flat.shape  # same bytes, other shape
    proof = tc.prove_run(array, 0)
    code = tc.dtype_code(array)
    assert not tc.verify_run(root, code, (*array.shape, 1), proof)
    other = 1 + code % 4
    assert not tc.verify_run(root, other, array.shape, proof)


def test_layout_is_big_endian_words_the_evm_reads_by_shifting() -> None:
    values = np.array([1.0, -2.5, 3.0e-40, 0.0, -0.0, 7.0, 8.0, 9.0, 10.0], dtype=np.float32)
    chunks = tc.chunks_of(values)
    assert len(chunks) == 2 and chunks[1][4:] == bytes(28)  # the last chunk zero-padded
    word = int.from_bytes(chunks[0], "big")
    for k in range(8):  # element k of a word: (word >> (32·(7 − k))) & 0xffffffff, its binary32 bits
        assert (word >> (32 * (7 - k))) & 0xFFFFFFFF == int(values[k : k + 1].view(np.uint32)[0])
    # the root written out from the document's formulas, as a contract would compute it
    leaves = [keccak(b"\x10" + c) for c in chunks]
    data_root = keccak(b"\x11" + leaves[0] + leaves[1])
    expected = keccak(b"\x12" + bytes([1, 1]) + (9).to_bytes(4, "big") + data_root)
    assert tc.tensor_root(values) == expected
    ints = np.array([[1, -1]], dtype=np.int64)
    assert tc.chunks_of(ints)[0][:16] == (1).to_bytes(8, "big") + (2**64 - 1).to_bytes(8, "big")


def _vyper_style_root(leaf: bytes, index: int, proof: list[bytes], domain: bytes) -> bytes:
    """contracts/lib/merkle.vy's `_root_from_proof` loop, transcribed: bit 0 of the position decides
    the order, then the position shifts right."""
    node, position = leaf, index
    for sibling in proof:
        if position & 1 == 1:
            node = keccak(domain + sibling + node)
        else:
            node = keccak(domain + node + sibling)
        position >>= 1
    return node


@settings(max_examples=examples(10), deadline=None)
@given(st.integers(1, 40), st.data())
def test_single_chunk_proofs_follow_the_merkle_vy_walk(count: int, data) -> None:
    array = np.arange(count * 8, dtype=np.float32)
    chunk = data.draw(st.integers(0, count - 1))
    proof = tc.prove_run(array, chunk * 8)
    assert len(proof.path) == tc.depth_of(count)
    data_root = _vyper_style_root(tc.chunk_leaf(proof.chunks[0]), chunk, list(proof.path), b"\x11")
    assert tc.root_of_data(1, array.shape, data_root) == tc.tensor_root(array)


# ---- checkpoints ----


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    from engine.api import initial_checkpoint

    from ..engine.helpers import tiny_digits

    return initial_checkpoint(tiny_digits(arithmetic="portable/1"), None)


def test_state_root_opens_every_tensor_and_the_header(checkpoint: bytes) -> None:
    tensors, header, _ = tc.read_checkpoint(checkpoint)
    assert header.step == 0 and header.boundary == 0 and len(tensors) == 12  # 4 params, 8 AdamW slots
    root = tc.state_root(checkpoint)
    leaves = 1 + len(tensors)
    for name in sorted(tensors)[::5]:  # a few names: each proof re-reads the checkpoint
        index, troot, path = tc.state_tensor_proof(checkpoint, name)
        assert troot == tc.tensor_root(tensors[name])
        assert tc.verify_state_leaf(root, leaves, index, tc.state_tensor_leaf(name, troot), path)
        assert not tc.verify_state_leaf(root, leaves, index, tc.state_tensor_leaf(name + "x", troot), path)
    index, troot, path = tc.state_tensor_proof(checkpoint, "param/layers.0.weight")
    assert index == 1 + sorted(tensors).index("param/layers.0.weight")
    # one element of a parameter, through the tensor root and the state root
    run = tc.prove_run(tensors["param/layers.0.weight"], 77)
    assert tc.verify_run(troot, 1, tensors["param/layers.0.weight"].shape, run)
    # the header leaf opens too, with its fixed binary layout
    header_path = tc.tree_proof(tc.state_leaves(tensors, header), 0, tc.STATE_NODE)
    assert tc.verify_state_leaf(root, leaves, 0, tc.header_leaf(header), header_path)
    encoded = header.encode()
    assert len(encoded) == tc.HEADER_BYTES == 156 and encoded[32:40] == (0).to_bytes(8, "big")
    assert encoded[124:132] == (0).to_bytes(4, "big") + leaves.to_bytes(4, "big")  # unbound segment steps, leaf count
    assert encoded[132:] == bytes(24)  # unbound job constants
    assert tc.header_proof(checkpoint) == (encoded, header_path)
    # everything the binding carries is part of the state
    for binding in (tc.StateBinding(b"\x01" * 32), tc.StateBinding(record_length=1), tc.StateBinding(segment_steps=1),
                    tc.StateBinding(total_steps=1), tc.StateBinding(per_epoch=1), tc.StateBinding(segment_length=1),
                    tc.StateBinding(batch_size=1)):  # fmt: skip
        assert tc.state_root(checkpoint, binding) != root
    bound = tc.StateBinding(b"\x02" * 32, 7, 3, total_steps=2**40, per_epoch=9, segment_length=5, batch_size=4)
    encoded = tc.header_proof(checkpoint, bound)[0]
    assert encoded[88:120] == bound.skeleton_root and encoded[120:132] == b"".join(v.to_bytes(4, "big") for v in (7, 3, leaves))
    assert encoded[132:] == (2**40).to_bytes(8, "big") + (9).to_bytes(8, "big") + (5).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert tc.StateHeader.decode(encoded).encode() == encoded  # and it reads back
    with pytest.raises(ValueError):
        tc.StateBinding(segment_steps=2**32)
    with pytest.raises(ValueError):
        tc.StateBinding(batch_size=2**32)
    with pytest.raises(ValueError):
        tc.StateBinding(per_epoch=2**64 - 1)


def test_state_root_refuses_non_canonical_bytes(checkpoint: bytes) -> None:
    length = int.from_bytes(checkpoint[:8], "little")
    with pytest.raises(CheckpointError):
        tc.state_root(checkpoint + b"\x00" * 4)  # trailing bytes
    with pytest.raises(CheckpointError):
        tc.state_root(checkpoint[: 8 + length] + checkpoint[8 + length : -4])  # a tensor cut short
    spaced = checkpoint[:8] + checkpoint[8:9] + b" " + checkpoint[9 : 8 + length - 1] + checkpoint[8 + length :]
    with pytest.raises(CheckpointError):
        tc.state_root(spaced)  # a space inside the JSON header
    flipped = bytearray(checkpoint)
    flipped[-1] ^= 1  # a data bit: still canonical, another root
    assert tc.state_root(bytes(flipped)) != tc.state_root(checkpoint)
