"""The compiled batch keccak256 (protocol/keccak_batch.py) against safe-pysha3, message by message, and the
tensor and tree roots it computes against the one-message-at-a-time path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sha3 import keccak_256

from protocol import keccak_batch
from protocol import tensor_commit as tc

pytestmark = pytest.mark.skipif(not keccak_batch.NATIVE, reason="the batch path runs on little-endian hosts only")


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, keccak_batch.RATE_BYTES - 1), data=st.data())
def test_every_row_hashes_as_the_reference_keccak256(length: int, data) -> None:
    rows = data.draw(st.lists(st.binary(min_size=length, max_size=length), min_size=1, max_size=6))
    out = keccak_batch.hash_rows(np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), length))
    assert [bytes(row) for row in out] == [keccak_256(row).digest() for row in rows]


def test_a_message_of_a_whole_rate_block_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 135 bytes"):
        keccak_batch.hash_rows(np.zeros((1, keccak_batch.RATE_BYTES), np.uint8))


def _one_at_a_time_root(leaves: list[bytes], node: bytes) -> bytes:
    return tc._levels(leaves, node)[-1][0]


@settings(max_examples=15, deadline=None)
@given(count=st.integers(tc.BATCH_MIN - 1, 3 * tc.BATCH_MIN), seed=st.integers(0, 2**32 - 1))
def test_batched_tree_roots_equal_one_message_at_a_time(count: int, seed: int) -> None:
    leaves = [bytes(row) for row in np.random.default_rng(seed).integers(0, 256, (count, 32), dtype=np.uint8)]
    assert tc.tree_root(leaves, tc.STATE_NODE) == _one_at_a_time_root(leaves, tc.STATE_NODE)


@settings(max_examples=15, deadline=None)
@given(size=st.integers(1, 8 * 3 * tc.BATCH_MIN), dtype=st.sampled_from(["float32", "int64", "float64", "bool"]),
       seed=st.integers(0, 2**32 - 1))
def test_batched_data_roots_equal_one_message_at_a_time(size: int, dtype: str, seed: int) -> None:
    raw = np.random.default_rng(seed).integers(0, 256, size * np.dtype(dtype).itemsize, dtype=np.uint8)
    array = raw.view(np.uint8).astype(bool) if dtype == "bool" else raw.view(dtype)  # any bits, NaNs included
    data = tc.element_bytes(array)
    data += bytes(-len(data) % tc.CHUNK_BYTES)
    leaves = [keccak_256(tc.CHUNK_LEAF + data[i : i + 32]).digest() for i in range(0, len(data), 32)]
    assert tc.data_root(array) == _one_at_a_time_root(leaves, tc.TENSOR_NODE)
