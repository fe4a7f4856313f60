"""Every loader turns hostile bytes into our own specific error, never another exception (issue 17).

Structured fuzzing (a valid spec with one value replaced by something hostile: 5,000-digit integers,
control characters, invalid UTF-8, deep nesting) and byte-level fuzzing of specs, safetensors headers,
checkpoints, store URIs and artifact references. `TESSERA_FUZZ_EXAMPLES` (default 60) sets the number
of examples per test; `TESSERA_HYPOTHESIS_PROFILE=thorough` runs the larger corpus."""

from __future__ import annotations

import copy
import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.artifacts import LocalStore, check_uri_text, open_store
from protocol.errors import ArtifactError, SpecError, TesseraError
from protocol.spec import load_spec

from .spec_strategies import valid_specs

THOROUGH = os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough"
EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "2000" if THOROUGH else "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

HOSTILE_SCALARS = st.one_of(
    st.just("BIG"),  # replaced by a 5,000-digit integer literal in the JSON text
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=8),  # control characters
    st.just("\ufffd\x00\r\n"),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.lists(st.integers(), max_size=3),
    st.none(),
    st.booleans(),
)


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from _paths(item, prefix + (index,))


def _replace(value, path, new):
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new


def _load_must_be_clean(raw: bytes) -> None:
    try:
        load_spec(raw)
    except SpecError:
        pass


@FUZZ
@given(spec=valid_specs(), data=st.data(), hostile=HOSTILE_SCALARS)
def test_a_spec_with_one_hostile_value_is_a_spec_error(spec, data, hostile):
    changed = copy.deepcopy(spec)
    path = data.draw(st.sampled_from(list(_paths(changed))))
    _replace(changed, path, "__BIG__" if hostile == "BIG" else hostile)
    text = json.dumps(changed).replace('"__BIG__"', "9" * 5_000)
    _load_must_be_clean(text.encode())


@FUZZ
@given(raw=st.binary(max_size=2_000))
def test_spec_bytes_never_escape(raw):
    _load_must_be_clean(raw)


@pytest.mark.parametrize("raw", [
    b'{"version": 1, "kind": "train", "steps": ' + b"9" * 5_000 + b"}",
    b'{"version": ' + b"1" * 5_000 + b"}",
    b"[" * 100_000,
    b'{"version": NaN}',
    b'{"version": Infinity}',
    b"\xff\xfe{}",
])
def test_known_poison_specs(raw):
    with pytest.raises(SpecError):
        load_spec(raw)


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


@FUZZ
@given(header=st.one_of(
    st.binary(max_size=400),
    st.just(b'{"x": {"dtype": "F32", "shape": [' + b"9" * 5_000 + b'], "data_offsets": [0, 4]}}'),
    st.just(b'{"__metadata__": {"tessera": "' + b"\xff" * 10 + b'"}}'),
    st.just(b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 99999999999999999999999]}}'),
), body=st.binary(max_size=64))
def test_safetensors_headers_never_escape(header, body):
    from engine import tensors_io

    data = _safetensors(header, body)
    for loader in (tensors_io.read_header, tensors_io.decode, tensors_io.decode_canonical):
        try:
            loader(data)
        except ArtifactError:
            pass
    try:
        tensors_io.load_weights(data)
    except ArtifactError:
        pass


def test_a_checkpoint_with_a_huge_integer_header_is_a_checkpoint_error(tmp_path):
    from engine import tensors_io
    from engine.api import validate_checkpoint
    from engine.presets import digits_spec
    from protocol.errors import CheckpointError

    spec = digits_spec(steps=4, segment_steps=2, batch_size=16, schedule={"name": "constant"})
    hostile = tensors_io.encode({}, {"tessera": '{"step": ' + "9" * 5_000 + "}"})
    with pytest.raises(CheckpointError):
        validate_checkpoint(spec, None, 0, hostile, device="cpu")


URIS = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["http://[::1", "http://[zz]/", "http://h:port/", "http://example.org/\r\nHost: x",
                     "file:///tmp/a\x00b", "file://remote/x", "s3://bucket", "\x00", "http://", "https:///x",
                     "ftp://x", "http://example.org/" + "a" * 5_000, "http://\ufffd/", "file:" + "\u202e" * 3]),
    st.builds(lambda a, b: a + b, st.sampled_from(["http://", "https://", "file://", ""]), st.text(max_size=40)),
)


@FUZZ
@given(uri=URIS)
def test_store_uris_never_escape(uri, tmp_path_factory):
    if uri and "://" not in uri and not uri.startswith(("/", ".")):
        uri = str(tmp_path_factory.mktemp("plain") / "store")  # a plain relative path would litter the cwd
    try:
        store = open_store(uri, timeout=0.5)
    except ArtifactError:
        return
    try:
        store.has("0x" + "00" * 32)
        store.get("0x" + "00" * 32, max_bytes=10)
    except ArtifactError:
        pass


@pytest.mark.parametrize("uri", ["http://[::1", "http://[zz]/", "file:///tmp/a\x00b", "http://x/\r\nA: b",
                                 "http://\ufffd.example/"])
def test_known_poison_uris(uri):
    with pytest.raises(ArtifactError):
        open_store(uri)


def test_local_store_rejects_nul_paths():
    with pytest.raises(ArtifactError):
        LocalStore("/tmp/with\x00nul")
    with pytest.raises(ArtifactError, match="control character"):
        check_uri_text("a\nb")


@FUZZ
@given(ref=st.dictionaries(st.sampled_from(["hash", "uris", "extra"]),
                           st.one_of(st.text(max_size=70), st.lists(st.text(max_size=30), max_size=10),
                                     st.integers(), st.none()), max_size=3))
def test_artifact_refs_never_escape(ref):
    from pydantic import ValidationError

    from protocol.spec import ArtifactRef

    try:
        ArtifactRef.model_validate(ref)
    except ValidationError:
        pass


def test_errors_are_ours():
    assert issubclass(SpecError, TesseraError) and issubclass(ArtifactError, TesseraError)


# ---------------------------------------------------------------------------------------------------
# Every loader, structured and byte-level: big integers, control characters and invalid UTF-8 each
# ---------------------------------------------------------------------------------------------------

BAD_UTF8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80abc"])
HOSTILE_TEXT = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=8),  # control characters
    st.text(max_size=20),
    st.just("9" * 5_000),
)
MARK = "__TESSERA_HOSTILE__"


def _with_raw(text: str, marker_bytes: bytes) -> bytes:
    """JSON text with the quoted marker string replaced by raw bytes (invalid UTF-8 or a big integer)."""
    return text.encode().replace(f'"{MARK}"'.encode(), marker_bytes)


@FUZZ
@given(spec=valid_specs(), data=st.data(), raw=st.one_of(BAD_UTF8.map(lambda b: b'"' + b + b'"'),
                                                        st.just(b"9" * 5_000), st.just(b"-" + b"1" * 4_400)))
def test_a_spec_with_invalid_utf8_or_a_huge_integer_inside_is_a_spec_error(spec, data, raw):
    changed = copy.deepcopy(spec)
    _replace(changed, data.draw(st.sampled_from(list(_paths(changed)))), MARK)
    _load_must_be_clean(_with_raw(json.dumps(changed), raw))


def _canonical_header(dtype: str = "F32", shape: list[int] | None = None) -> dict:
    shape = [2] if shape is None else shape
    return {"w": {"data_offsets": [0, 8], "dtype": dtype, "shape": shape}, "__metadata__": {"tessera": "{}"}}


@FUZZ
@given(data=st.data(), hostile=st.one_of(HOSTILE_SCALARS, HOSTILE_TEXT), raw=st.one_of(
    st.none(), BAD_UTF8.map(lambda b: b'"' + b + b'"'), st.just(b"9" * 5_000)))
def test_a_safetensors_header_with_one_hostile_value_is_an_artifact_error(data, hostile, raw):
    """Structured: a valid header with one value replaced (then, optionally, by raw bytes)."""
    from engine import tensors_io

    header = _canonical_header()
    path = data.draw(st.sampled_from(list(_paths(header))))
    _replace(header, path, MARK if raw is not None else ("__BIG__" if hostile == "BIG" else hostile))
    text = json.dumps(header).replace('"__BIG__"', "9" * 5_000)
    encoded = _with_raw(text, raw) if raw is not None else text.encode()
    blob = _safetensors(encoded, b"\x00" * 8)
    for loader in (tensors_io.read_header, tensors_io.decode, tensors_io.decode_canonical, tensors_io.load_weights):
        try:
            loader(blob)
        except ArtifactError:
            pass


@pytest.fixture(scope="module")
def checkpoint_zero():
    from engine.api import initial_checkpoint
    from engine.presets import digits_spec

    spec = digits_spec(steps=4, segment_steps=2, batch_size=16, schedule={"name": "constant"})
    return spec, initial_checkpoint(spec, None, device="cpu")


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))  # each example builds the job: kept small in CI
@given(data=st.data(), hostile=st.one_of(HOSTILE_SCALARS, HOSTILE_TEXT), cut=st.integers(0, 64),
       flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), max_size=4))
def test_hostile_checkpoints_are_checkpoint_errors(checkpoint_zero, data, hostile, cut, flips):
    """Structured (the `tessera` metadata of checkpoint 0 with one value replaced: big integers, control
    characters, invalid UTF-8) and byte-level (truncated, bytes flipped) checkpoints."""
    from engine import tensors_io
    from engine.api import validate_checkpoint
    from protocol.errors import CheckpointError

    spec, good = checkpoint_zero
    tensors, metadata = tensors_io.decode(good)
    inner = json.loads(metadata["tessera"])
    if isinstance(inner, dict) and inner:
        path = data.draw(st.sampled_from(list(_paths(inner))))
        _replace(inner, path, "__BIG__" if hostile == "BIG" else hostile)
    text = json.dumps(inner).replace('"__BIG__"', "9" * 5_000)
    if data.draw(st.booleans()):
        text = text.encode("utf-8", "surrogatepass").decode("latin-1")  # mojibake, still a str
    candidates = [tensors_io.encode(tensors, {**metadata, "tessera": text})]
    raw = bytearray(good[: len(good) - cut] if cut else good)
    for position, value in flips:
        if raw:
            raw[position % len(raw)] = value
    candidates.append(bytes(raw))
    for blob in candidates:
        try:
            validate_checkpoint(spec, None, 0, blob, device="cpu")
        except CheckpointError:
            pass


@FUZZ
@given(raw=st.binary(max_size=80), prefix=st.sampled_from([b"", b"http://", b"https://", b"file://", b"file:///"]))
def test_uri_bytes_from_a_log_never_escape(raw, prefix):
    """Byte-level: a URI as a log carries it (any bytes, decoded as events decode string fields)."""
    uri = (prefix + raw).decode("utf-8", errors="replace")
    if uri and "://" not in uri and not uri.startswith("/"):
        return  # a plain relative path names a directory in the cwd: covered by test_store_uris_never_escape
    try:
        store = open_store(uri, timeout=0.2, deadline=None)
    except ArtifactError:
        return
    try:
        store.get("0x" + "00" * 32, max_bytes=10)
    except ArtifactError:
        pass


@FUZZ
@given(hash_value=st.one_of(HOSTILE_TEXT, st.integers(min_value=-(2**300), max_value=2**300), st.none()),
       uris=st.lists(HOSTILE_TEXT, max_size=4), raw=st.one_of(st.none(), BAD_UTF8, st.just(b"9" * 5_000)))
def test_artifact_refs_with_hostile_values_are_validation_errors(hash_value, uris, raw):
    """Structured artifact references (big integers, control characters) and their JSON bytes with
    invalid UTF-8 or a 5,000-digit integer in place of the hash."""
    from pydantic import ValidationError

    from protocol.spec import ArtifactRef

    try:
        ArtifactRef.model_validate({"hash": hash_value, "uris": uris})
    except ValidationError:
        pass
    if raw is not None:
        text = json.dumps({"hash": MARK, "uris": uris})
        blob = _with_raw(text, raw if raw.isdigit() else b'"' + raw + b'"')
        try:
            ArtifactRef.model_validate_json(blob)
        except ValidationError:
            pass
