"""protocol.artifacts: local and HTTP stores, verification on every read, limits, traversal."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.artifacts import HttpStore, LocalStore, normalize_hash, open_store, serve_store
from protocol.errors import ArtifactError, HashMismatchError
from protocol.hashing import sha256_hex

from .spec_strategies import examples


def test_put_get_has_round_trip(tmp_path) -> None:
    store = LocalStore(tmp_path / "s")
    digest = store.put(b"hello")
    assert digest == sha256_hex(b"hello")
    assert store.has(digest) and store.get(digest) == b"hello"
    assert store.put(b"hello") == digest  # idempotent
    assert sorted(os.listdir(store.root)) == [digest[2:]]  # flat layout, no temp files left
    assert store.get(digest.upper().replace("0X", "0x")) == b"hello"


def test_tampered_file_is_a_hash_mismatch(tmp_path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put(b"weights")
    store.path_of(digest).write_bytes(b"weightz")
    with pytest.raises(HashMismatchError):
        store.get(digest)


def test_size_limit_checked_before_reading(tmp_path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put(b"x" * 1000)
    with pytest.raises(ArtifactError, match="over the limit of 999"):
        store.get(digest, max_bytes=999)
    assert store.get(digest, max_bytes=1000) == b"x" * 1000


def test_a_generous_limit_reserves_no_memory(tmp_path) -> None:
    """A 4 GiB limit on a small artifact must not allocate 4 GiB (a memory-limited judge child failed so)."""
    import subprocess
    import sys

    digest = LocalStore(tmp_path).put(b"small artifact")
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from protocol.artifacts import LocalStore; import sys; "
            f"sys.stdout.write(LocalStore({str(tmp_path)!r}).get({digest!r}, max_bytes=4 << 30).decode())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "small artifact", done.stderr[-500:]


def test_a_server_that_trickles_its_headers_is_abandoned_within_the_grace() -> None:
    """Each read is bounded by `timeout`, so headers sent a byte a second would hold a fetch for minutes."""
    import time

    from worker.testing import SlowLoris

    loris = SlowLoris(interval=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(ArtifactError, match="no complete response headers within 2s"):
            HttpStore(f"http://127.0.0.1:{loris.port}", timeout=1.0).get("0x" + "11" * 32)
        assert time.monotonic() - started < 5
    finally:
        loris.close()


def test_a_store_named_by_someone_else_plants_nothing(tmp_path) -> None:
    """A hint naming `<our store>/<hash>` as a store must not create a directory there, and one planted
    anyway must not make our write of that artifact fail (it would stall a judge's staging for ever)."""
    ours = LocalStore(tmp_path / "ours")
    digest = sha256_hex(b"checkpoint bytes")
    planted = ours.path_of(digest)
    with pytest.raises(ArtifactError, match="not found"):
        open_store(str(planted), create=False).get("0x" + "22" * 32)
    assert not planted.exists()
    planted.mkdir()  # as an older daemon, or a hostile file:// hint elsewhere, would have left it
    assert ours.put(b"checkpoint bytes") == digest and ours.get(digest) == b"checkpoint bytes"


def test_missing_artifact(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        LocalStore(tmp_path).get("0x" + "00" * 32)


@pytest.mark.parametrize("name", [
    "../etc/passwd", "0x" + "../" * 20 + "a" * 4, "/etc/passwd", "0x" + "g" * 64, "0x" + "a" * 63,
    "0x" + "a" * 64 + "/..", "", "0x..%2f" + "a" * 59,
])  # fmt: skip
def test_traversal_and_bad_names_rejected(tmp_path, name) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ArtifactError, match="bad artifact hash"):
        store.get(name)
    with pytest.raises(ArtifactError):
        store.has(name)


@settings(max_examples=examples(50), deadline=None)
@given(st.text(max_size=80))
def test_any_name_is_valid_hash_or_artifact_error(name) -> None:
    try:
        normalized = normalize_hash(name)
    except ArtifactError:
        return
    assert len(normalized) == 66 and normalized == normalized.lower() and "/" not in normalized


def test_http_store_against_a_real_server(tmp_path) -> None:
    local = LocalStore(tmp_path)
    digest = local.put(b"checkpoint bytes" * 100)
    with serve_store(tmp_path) as server:
        remote = open_store(server.url, timeout=5)
        assert isinstance(remote, HttpStore)
        assert remote.has(digest) and not remote.has("0x" + "11" * 32)
        assert remote.get(digest) == b"checkpoint bytes" * 100
        with pytest.raises(ArtifactError, match="over the limit"):
            remote.get(digest, max_bytes=10)
        with pytest.raises(ArtifactError, match="not found"):
            remote.get("0x" + "11" * 32)
        with pytest.raises(ArtifactError, match="read-only"):
            remote.put(b"x")
        # a server that lies: serve other bytes under the hash
        local.path_of(digest).write_bytes(b"evil" * 400)
        with pytest.raises(HashMismatchError):
            remote.get(digest)


def test_http_timeout_and_unreachable() -> None:
    # a socket that accepts connections but never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = silent.getsockname()[1]
    try:
        with pytest.raises(ArtifactError):
            HttpStore(f"http://127.0.0.1:{port}", timeout=0.5).get("0x" + "22" * 32)
    finally:
        silent.close()
    with pytest.raises(ArtifactError, match="cannot reach"):
        HttpStore(f"http://127.0.0.1:{port}", timeout=0.5).get("0x" + "22" * 32)


def test_open_store_uris(tmp_path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    store = open_store(tmp_path.as_uri())
    assert isinstance(store, LocalStore) and store.root == tmp_path.resolve()
    assert open_store(store.uri).root == store.root
    with pytest.raises(ArtifactError, match="s3:// stores are not supported yet"):
        open_store("s3://bucket/prefix")
    with pytest.raises(ArtifactError, match="unsupported store URI scheme"):
        open_store("ftp://example.com/x")
    with pytest.raises(ArtifactError, match="empty"):
        open_store("")
    with pytest.raises(ArtifactError, match="remote host"):
        open_store("file://evil.example.com/x")


def test_put_repairs_a_damaged_copy(tmp_path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put(b"state")
    store.path_of(digest).write_bytes(b"stale")  # same size, wrong bytes
    assert store.put(b"state") == digest
    assert store.get(digest) == b"state"
