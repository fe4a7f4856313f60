"""The on-chain commitments (contracts/lib/commitments.vy, through the test-only CommitmentsHarness)
against the Python that makes the proofs (protocol/tensor_commit.py and the step recorder on a real
portable MLP step): every proof the Python makes verifies on chain and reads the same bits, and a
flipped bit, another position, another shape or dtype fails exactly when the Python model says so.
Many cases go into one eth_call (the batch entry points) to keep the test budget."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import tensor_commit as tc

from ..engine.helpers import examples
from ..protocol.test_tensor_commit import tensors
from ..portable.test_step_record import mlp

MAX_RUN = 32  # chunks in the longest run commitments.vy takes (256 binary32 values)


class Harness:
    """The deployed harness through web3 on ape's chain (no ape call overhead per case)."""

    def __init__(self, contract: Any):
        w3 = contract.chain_manager.provider.web3
        abi = [entry.model_dump(mode="json", by_alias=True) for entry in contract.contract_type.abi]
        self.fn = w3.eth.contract(address=contract.address, abi=abi).functions

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: getattr(self.fn, name)(*args).call()


@pytest.fixture(scope="module")
def harness(project, deployer) -> Harness:
    return Harness(deployer.deploy(project.CommitmentsHarness))


def _flip(word: bytes, bit: int) -> bytes:
    out = bytearray(word)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _bits(array: np.ndarray, element: int) -> int:
    """Element `element`'s big-endian bit pattern, as the contract returns it."""
    return int.from_bytes(tc.element_bytes(array.reshape(-1)[element : element + 1]), "big")


def _case(root: bytes, code: int, shape: tuple[int, ...], proof: tc.RunProof, element: int) -> tuple:
    return (root, code, list(shape), proof.first, list(proof.chunks), list(proof.path), element)


def _other_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape of the same element count (so the same chunks) but another root."""
    return (*shape, 1)


@settings(max_examples=examples(6), deadline=None)
@given(tensors(), st.data())
def test_runs_verify_on_chain_exactly_as_in_python(harness: Harness, array: np.ndarray, data) -> None:
    code, root, shape = tc.dtype_code(array), tc.tensor_root(array), tuple(array.shape)
    per = tc.elements_per_chunk(code)
    cases, expected, bits = [], [], []
    for _ in range(3):
        element = data.draw(st.integers(0, array.size - 1))
        count = data.draw(st.integers(1, array.size - element))
        proof = tc.prove_run(array, element, count)
        if len(proof.chunks) > MAX_RUN:  # longer runs do not fit the contract's argument (one piece is 32 chunks)
            proof = tc.prove_run(array, element)
        cases.append(_case(root, code, shape, proof, element))
        expected.append(True)
        bits.append(_bits(array, element))
        # tampered: a flipped chunk bit, a flipped path bit, another first chunk, another shape/dtype
        which = data.draw(st.integers(0, len(proof.chunks) - 1))
        chunks = list(proof.chunks)
        chunks[which] = _flip(chunks[which], data.draw(st.integers(0, 255)))
        tampered = [dataclasses.replace(proof, chunks=tuple(chunks))]
        if proof.path:
            path = list(proof.path)
            level = data.draw(st.integers(0, len(path) - 1))
            path[level] = _flip(path[level], data.draw(st.integers(0, 255)))
            tampered.append(dataclasses.replace(proof, path=tuple(path)))
        tampered.append(dataclasses.replace(proof, first=proof.first + len(proof.chunks)))
        for bad in tampered:
            cases.append(_case(root, code, shape, bad, bad.first * per))
            expected.append(tc.verify_run(root, code, shape, bad))
            bits.append(None)
        other_code = {1: 2, 2: 3, 3: 2, 4: 1}[code]
        cases.append(_case(root, code, _other_shape(shape), proof, element))
        cases.append(_case(root, other_code, shape, proof, element))
        expected += [False, False]
        assert not tc.verify_run(root, other_code, shape, proof)
        bits += [None, None]
    proven, read = harness.verify_runs(cases)
    assert proven == expected
    for ok, want, got in zip(proven, bits, read, strict=True):
        if want is not None:
            assert ok and got == want


def test_the_tensor_root_binds_dtype_and_every_dimension(harness: Harness) -> None:
    rng = np.random.default_rng(5)
    for shape in [(), (1,), (3, 5), (2, 1, 3, 1, 2, 1, 1, 2), (2**32 - 1, 0)]:
        array = rng.standard_normal(shape).astype(np.float32)
        data_root = tc.data_root(array)
        assert harness.tensor_root(1, list(shape), data_root) == tc.tensor_root(array)
        assert harness.tensor_root(3, list(shape), data_root) == tc.root_of_data(3, shape, data_root)
    with pytest.raises(Exception, match="commitments: unknown dtype"):
        harness.tensor_root(5, [1], bytes(32))
    with pytest.raises(Exception, match="commitments: dimension too large"):
        harness.tensor_root(1, [2**32], bytes(32))


def test_elements_of_a_chunk_are_read_big_endian(harness: Harness) -> None:
    words = np.array([1.5, -0.0, np.inf, 1e-45, 3.0, -2.0, np.nan, 7.25], dtype=np.float32)
    (chunk,) = tc.chunks_of(words)
    assert [harness.element_of_chunk(chunk, 1, k) for k in range(8)] == [_bits(words, k) for k in range(8)]
    longs = np.array([-1, 2**62, 0, -(2**63)], dtype=np.int64)
    (chunk,) = tc.chunks_of(longs)
    assert [harness.element_of_chunk(chunk, 2, k) for k in range(4)] == [_bits(longs, k) for k in range(4)]
    mask = np.arange(32) % 3 == 0
    (chunk,) = tc.chunks_of(mask)
    assert [harness.element_of_chunk(chunk, 4, k) for k in (0, 1, 30, 31)] == [1, 0, 1, 0]
    with pytest.raises(Exception, match="commitments: element outside the chunk"):
        harness.element_of_chunk(chunk, 1, 8)


@pytest.fixture(scope="module")
def mlp_step():
    """A real portable MLP step: the record, the state before it with (S, L) and its steps to the next
    boundary bound, and its parts."""
    from engine.api import initial_checkpoint, state_binding
    from engine.portable import record

    spec = mlp()
    before = initial_checkpoint(spec, None)
    rec, _ = record.record_step(spec, None, 0, before)
    binding = state_binding(spec, 0, (rec.skeleton_root(), len(rec.entries)))
    tensors, header, _ = tc.read_checkpoint(before)
    header = dataclasses.replace(header, skeleton_root=binding.skeleton_root, record_length=binding.record_length,
                                 segment_steps=binding.segment_steps, total_steps=binding.total_steps,
                                 segment_length=binding.segment_length, batch_size=binding.batch_size)  # fmt: skip
    return rec, before, binding, tensors, header


def test_every_state_tensor_and_the_header_open_against_the_state_root(harness: Harness, mlp_step) -> None:
    _, before, binding, tensors, header = mlp_step
    root = tc.state_root(before, binding)
    leaf_count = 1 + len(tensors)
    for name in sorted(tensors):
        index, tensor_root, path = tc.state_tensor_proof(before, name, binding)
        name_hash = keccak(name.encode())
        assert harness.verify_state_tensor(root, leaf_count, index, name_hash, tensor_root, path)
        other = 1 + index % (leaf_count - 1)
        assert other != index and not harness.verify_state_tensor(root, leaf_count, other, name_hash, tensor_root, path)
        assert not harness.verify_state_tensor(root, leaf_count, index, keccak(b"other"), tensor_root, path)
        assert not harness.verify_state_tensor(root, leaf_count, index, name_hash, _flip(tensor_root, 7), path)
        assert not harness.verify_state_tensor(root, leaf_count, index, name_hash, tensor_root, path[:-1])
        # and one element of the tensor under that root
        array = tensors[name]
        proof = tc.prove_run(array, array.size - 1)
        assert harness.verify_runs([_case(tensor_root, 1, array.shape, proof, array.size - 1)]) == [
            [True], [_bits(array, array.size - 1)]]
    encoded = header.encode()
    path = tc.tree_proof(tc.state_leaves(tensors, header), 0, tc.STATE_NODE)
    assert tc.header_proof(before, binding) == (encoded, path)
    fields = harness.open_header(root, leaf_count, encoded, path)
    assert tuple(fields) == (header.spec_hash, header.step, tc.NULL_BOUNDARY if header.boundary is None else header.boundary,
                             header.epoch, header.position, header.data_epoch, header.dropout_counter, header.seed,
                             binding.skeleton_root, binding.record_length, 2, leaf_count, 4, 0, 2,
                             binding.batch_size)  # fmt: skip
    assert harness.header_leaf(encoded) == tc.header_leaf(header)
    for bad in (_flip(encoded, 8 * 120 + 3), encoded[:-1] + b"\x00" if encoded[-1] else encoded[:-1] + b"\x01"):
        with pytest.raises(Exception, match="CommitmentsHarness: header not proven"):
            harness.open_header(root, leaf_count, bad, path)
    with pytest.raises(Exception, match="commitments: header is 156 bytes"):
        harness.header_leaf(encoded[:-1])


def test_decoded_header_fields_sit_at_their_offsets(harness: Harness) -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        words = [int(w) for w in rng.integers(0, 2**63, size=7)]
        header = tc.StateHeader(spec_hash=rng.bytes(32), step=words[0], boundary=words[1], epoch=words[2],
                                position=words[3], data_epoch=words[4], dropout_counter=words[5], seed=words[6],
                                skeleton_root=rng.bytes(32), record_length=int(rng.integers(0, 2**32)),
                                segment_steps=int(rng.integers(0, 2**32)), leaf_count=int(rng.integers(0, 2**32)),
                                total_steps=int(rng.integers(0, 2**63)), per_epoch=int(rng.integers(0, 2**63)),
                                segment_length=int(rng.integers(0, 2**32)), batch_size=int(rng.integers(0, 2**32)))  # fmt: skip
        assert tuple(harness.decode_header(header.encode())) == (
            header.spec_hash, *words, header.skeleton_root, header.record_length, header.segment_steps, header.leaf_count,
            header.total_steps, header.per_epoch, header.segment_length, header.batch_size)


def test_record_leaves_and_prefix_steps_verify_on_chain(harness: Harness, mlp_step) -> None:
    rec = mlp_step[0]
    width, entries, prefixes = rec.width, rec.entries, rec.prefix_roots()
    skeleton_root = rec.skeleton_root()
    depth = width.bit_length() - 1
    empty = tc.tree_root([tc.ZERO] * width, b"\x18")
    for entry in entries:
        assert harness.skeleton_leaf(entry.skeleton_bytes()) == entry.skeleton_leaf()
        assert harness.entry_leaf(entry.index, entry.skeleton_leaf(), list(entry.out_roots)) == entry.leaf()
    for j in (0, len(entries) - 1):  # the entry leaf built on chain from its skeleton leaf and output roots
        skeleton_leaf, roots, path = entries[j].skeleton_leaf(), list(entries[j].out_roots), rec.entry_proof(j)
        assert harness.verify_entry(prefixes[j], width, j, skeleton_leaf, roots, path)
        assert not harness.verify_entry(prefixes[j], width, j, skeleton_leaf, [_flip(roots[0], 9)] + roots[1:], path)
        assert not harness.verify_entry(prefixes[j], width, j, skeleton_leaf, roots + [tc.ZERO], path)
        assert harness.verify_record_leaf(prefixes[j], width, j, entries[j].leaf(), path)
        assert harness.verify_prefix_step(prefixes[j - 1] if j else empty, prefixes[j], width, j, entries[j].leaf(), path)
    cases, expected = [], []
    for j, entry in enumerate(entries):
        skeleton_path = rec.skeleton_proof(j)
        cases += [(skeleton_root, width, j, entry.skeleton_leaf(), skeleton_path),
                  (skeleton_root, width, j, _flip(entry.skeleton_leaf(), 1), skeleton_path),
                  (prefixes[j], width, j, entry.leaf(), rec.entry_proof(j)),
                  (prefixes[-1], width, j, entry.leaf(), rec.entry_proof(j, len(entries) - 1)),
                  (prefixes[j], width, (j + 1) % width, entry.leaf(), rec.entry_proof(j)),
                  (prefixes[j], 2 * width, j, entry.leaf(), rec.entry_proof(j))]  # fmt: skip
        expected += [True, False, True, True, False, False]
        if j > 0:  # entry j is not in P_{j-1}: its slot there is the zero word
            cases.append((prefixes[j - 1], width, j, entry.leaf(), rec.entry_proof(j)))
            expected.append(False)
    # the state map is leaf L of S
    cases += [(skeleton_root, width, len(entries), rec.map_leaf(), rec.skeleton_proof(len(entries)))]
    expected += [True]
    for start in range(0, len(cases), 24):
        assert harness.verify_record_leaves(cases[start : start + 24]) == expected[start : start + 24]
    # P_{j-1} -> P_j: the same siblings, slot j empty before and entry leaf j after
    previous, steps, want = [], [], []
    for j, entry in enumerate(entries):
        before = prefixes[j - 1] if j else empty
        path = rec.entry_proof(j)
        previous += [before, before, prefixes[j], before]
        steps += [(prefixes[j], width, j, entry.leaf(), path),
                  (prefixes[j], width, j, _flip(entry.leaf(), 200), path),
                  (prefixes[j], width, j, entry.leaf(), path),
                  (prefixes[j], width, j, tc.ZERO, path)]  # fmt: skip
        want += [True, False, False, False]
    assert depth >= 1
    for start in range(0, len(steps), 24):
        assert harness.verify_prefix_steps(previous[start : start + 24], steps[start : start + 24]) == want[start : start + 24]


def test_an_entry_leaf_of_up_to_five_outputs_is_the_variable_length_one(harness: Harness) -> None:
    """commitments.MAX_OUTPUTS is 5 (a row-pieced layer_norm_backward: dx, dw, db, their running values, its row
    statistics); the preimage is cut after the last root, so an entry of any count up to it hashes as
    `referee_kit.entry_leaf` (no committed leaf changed with the cap), and a sixth root is refused."""
    from protocol import referee_kit as rk

    skeleton = b"\x00\x07softmax" + bytes(9)
    roots = [keccak(b"root %d" % i) for i in range(6)]
    for count in range(1, 6):
        assert harness.entry_leaf(70_000, rk.skeleton_leaf(skeleton), roots[:count]) == rk.entry_leaf(70_000, skeleton, roots[:count])
    with pytest.raises(Exception):  # noqa: B017 (the ABI bound of the roots)
        harness.entry_leaf(70_000, rk.skeleton_leaf(skeleton), roots)
