"""The size of a dispute kit's tensor file, known before it is written (protocol/referee_kit.py): a kit larger
than `load_kit` reads (MAX_TENSOR_FILE_BYTES a file, MAX_HEADER_BYTES of header) could never be played from, so
`write_kit` refuses it with the reason and writes nothing, and `engine.api.uncovered_calls` lists such a job
(tests/unit/engine/test_cli.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import referee_kit as rk

DTYPES = (np.float32, np.int64, np.float64, np.bool_)
TENSORS = st.dictionaries(
    st.from_regex(r"e[0-9]{7}\.[oc][0-9]", fullmatch=True),
    st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=3)).map(
        lambda t: np.zeros(t[1], dtype=t[0]) if t[0] is np.bool_ else np.arange(int(np.prod(t[1])), dtype=t[0]).reshape(t[1])),
    max_size=6,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(TENSORS)
def test_the_file_size_is_known_before_the_file_is_built(tensors: dict[str, np.ndarray]) -> None:
    """`tensor_file_bytes` is (the header's length, the file's length) of `encode_tensors`, for any tensors."""
    data = rk.encode_tensors(tensors)
    header, size = rk.tensor_file_bytes(tensors)
    assert size == len(data) and header == struct.unpack("<Q", data[:8])[0]
    assert rk.decode_tensors(data, "test").keys() == tensors.keys()


def test_kit_overflow_names_the_first_limit_passed(monkeypatch) -> None:
    """At each limit exactly: fine; one byte under it: the file, the header or the state named with both sizes."""
    tensors = {"e0000000.o0": np.arange(100, dtype=np.float32)}
    header, size = rk.tensor_file_bytes(tensors)
    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", size)
    assert rk.kit_overflow(tensors, size) is None
    assert rk.kit_overflow(tensors, size + 1) == f"{rk.STATE_FILE} would be {size + 1:,} bytes, over the limit of {size:,}"
    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", size - 1)
    assert rk.kit_overflow(tensors, 0) == f"{rk.OUTPUTS_FILE} would be {size:,} bytes, over the limit of {size - 1:,}"
    monkeypatch.setattr(rk, "MAX_HEADER_BYTES", header - 1)
    assert rk.kit_overflow(tensors, 0).startswith(f"{rk.OUTPUTS_FILE}'s header would be {header:,} bytes")


def test_a_kit_too_large_to_load_is_refused_before_anything_is_written(tmp_path, monkeypatch) -> None:
    """write_kit of a recorded kit past the limit raises KitError with the reason and leaves the directory without
    kit files; a kit.json past its limit is refused too (no kit.json names the files); under the limits the same
    kit is written."""
    kit = rk.DisputeKit(segment=0, start_step=0, state_roots=[b"\x01" * 32] * 2, skeleton_root=b"\x02" * 32,
                        record_length=1, step=0, state=b"\x00" * 64,
                        outputs={(0, 0): np.arange(1_000, dtype=np.float32)})  # fmt: skip
    size = rk.tensor_file_bytes(rk.kit_tensors(kit.outputs, kit.constants, kit.batch))[1]
    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", size - 1)
    with pytest.raises(rk.KitError, match=f"outputs.safetensors would be {size:,} bytes.*cannot be played"):
        rk.write_kit(tmp_path / "kit", kit)
    assert not any((tmp_path / "kit" / name).exists() for name in (rk.KIT_JSON, rk.OUTPUTS_FILE, rk.STATE_FILE))
    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", size)
    monkeypatch.setattr(rk, "MAX_KIT_JSON_BYTES", 100)
    with pytest.raises(rk.KitError, match=r"kit.json would be [0-9,]+ bytes, over the limit of 100"):
        rk.write_kit(tmp_path / "kit", kit)
    assert not (tmp_path / "kit" / rk.KIT_JSON).exists()
    monkeypatch.setattr(rk, "MAX_KIT_JSON_BYTES", 64 * 1024)
    rk.write_kit(tmp_path / "kit", kit)
    assert (tmp_path / "kit" / rk.OUTPUTS_FILE).stat().st_size == size
