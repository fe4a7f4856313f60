"""Canonical safetensors: round trips, one encoding only, and a parser that never crashes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save

from engine import tensors_io
from engine.api import run_spec
from protocol.artifacts import LocalStore
from protocol.errors import ArtifactError

from .helpers import examples, tiny_digits

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.bool]


@st.composite
def tensor_dicts(draw):
    count = draw(st.integers(0, 4))
    names = draw(st.lists(st.text("abc./_0123", min_size=1, max_size=8), min_size=count, max_size=count, unique=True))
    out = {}
    for name in names:
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        dtype = draw(st.sampled_from(DTYPES))
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        out[name] = (torch.rand(shape, generator=gen) * 100).to(dtype)
    return out


@settings(max_examples=examples(50), deadline=None)
@given(tensor_dicts(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_round_trip_through_safetensors(tensors, metadata) -> None:
    data = tensors_io.encode(tensors, metadata)
    loaded = load(data)  # the reference reader accepts our bytes
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    decoded, meta = tensors_io.decode_canonical(data)
    assert meta == metadata
    assert tensors_io.encode(decoded, meta) == data  # one encoding


def test_encoding_ignores_insertion_order_and_layout() -> None:
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    first = tensors_io.encode({"b": a, "a": a.t().contiguous()})
    second = tensors_io.encode({"a": a.t(), "b": a.clone()})  # a non-contiguous view encodes the same
    assert first == second


def test_reference_writer_output_is_readable_but_not_canonical() -> None:
    tensors = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    data = save(tensors, {"k": "v"})
    loaded = tensors_io.load_weights(data)
    assert torch.equal(loaded["w"], tensors["w"])
    if data != tensors_io.encode(tensors, {"k": "v"}):
        with pytest.raises(ArtifactError, match="canonical"):
            tensors_io.decode_canonical(data)


@settings(max_examples=examples(50), deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parser(data) -> None:
    try:
        tensors_io.decode_canonical(data)
    except ArtifactError:
        pass


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    store = LocalStore(tmp_path_factory.mktemp("ckpt"))
    result = run_spec(tiny_digits(steps=3, segment_steps=3), store)
    return store.get(result.state_hashes[1])


@settings(max_examples=examples(50), deadline=None)
@given(st.data())
def test_mutated_checkpoints_are_rejected_or_canonical(checkpoint, data) -> None:
    position = data.draw(st.integers(0, len(checkpoint) - 1))
    value = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([None, position]))
    mutated = bytearray(checkpoint)
    mutated[position] = value
    blob = bytes(mutated[:cut] if cut is not None else mutated)
    try:
        tensors, metadata = tensors_io.decode_canonical(blob)
    except ArtifactError:
        return
    assert tensors_io.encode(tensors, metadata or None) == blob


def test_metadata_must_be_strings() -> None:
    with pytest.raises(ArtifactError):
        tensors_io.encode({"a": torch.zeros(1)}, {"k": 1})  # type: ignore[dict-item]


def test_deeply_nested_header_is_refused_not_a_crash() -> None:
    import struct

    header = b"[" * 500_000
    with pytest.raises(ArtifactError, match="nested too deeply"):
        tensors_io.decode(struct.pack("<Q", len(header)) + header)
