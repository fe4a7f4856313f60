"""The read-only store server (`tessera store serve`): what a worker fetches through it, ranges, refusals,
limits, and the command's start-up line and clean exit."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.presets import digits_spec
from protocol.artifacts import LocalStore, open_store, serve_store
from protocol.errors import ArtifactError, SpecError
from protocol.screening import fetch_spec
from protocol.store_server import StoreServer, parse_range

BODY = bytes(range(256)) * 40  # 10 240 bytes


def _request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)  # raw path: no client-side cleaning
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_a_worker_fetches_and_verifies_a_spec_through_the_server(tmp_path: Path) -> None:
    spec = digits_spec()
    digest = LocalStore(tmp_path).put(spec.canonical_bytes())
    with serve_store(tmp_path) as server:
        # the worker's own fetch (protocol.screening.fetch_spec): shipped schemes, size limit, hash check
        fetched = fetch_spec(f"{server.url}/", digest, schemes=["https", "http"], timeout=5)
        assert fetched.spec_hash() == digest
        with pytest.raises(SpecError, match="scheme 'http' not allowed"):
            fetch_spec(server.url, digest, schemes=["https"], timeout=5)
        other = LocalStore(tmp_path).put(b"not a spec")
        with pytest.raises(SpecError):
            fetch_spec(server.url, other, timeout=5)
        # bytes that do not match their name are caught by the client, whatever the server says
        LocalStore(tmp_path).path_of(digest).write_bytes(spec.canonical_bytes()[:-1] + b" ")
        with pytest.raises(Exception, match="hash"):
            open_store(server.url, timeout=5).get(digest)


def test_ranges_headers_and_status_codes(tmp_path: Path) -> None:
    digest = LocalStore(tmp_path).put(BODY)
    name = "/" + digest[2:]
    with serve_store(tmp_path) as server:
        status, headers, body = _request(server.url, name)
        assert (status, body) == (200, BODY)
        assert headers["content-length"] == str(len(BODY)) and headers["content-type"] == "application/octet-stream"
        assert headers["accept-ranges"] == "bytes"
        status, headers, body = _request(server.url, name, headers={"Range": "bytes=10-19"})
        assert (status, body, headers["content-range"]) == (206, BODY[10:20], f"bytes 10-19/{len(BODY)}")
        assert headers["content-length"] == "10"
        status, _, body = _request(server.url, name, headers={"Range": "bytes=-5"})
        assert (status, body) == (206, BODY[-5:])
        status, _, body = _request(server.url, name, headers={"Range": "bytes=10240-"})
        assert status == 416
        status, headers, body = _request(server.url, name, method="HEAD")
        assert (status, body, headers["content-length"]) == (200, b"", str(len(BODY)))


def test_only_artifact_names_are_served(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    digest = store.put(BODY)
    (tmp_path / "secret").write_text("secret")
    paths = ["/", "/?list", "/..", "/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/0x{h}", "/{H}", "/{h}/",
             "/{h}/..", "/.tmp-x", "/{h}%00", "/../secret"]
    with serve_store(store.root) as server:
        for path in paths:
            status, _, body = _request(server.url, path.format(h=digest[2:], H=digest[2:].upper()))
            assert status == 404 and b"secret" not in body and digest[2:].encode() not in body, path


def test_symlinks_and_other_methods_are_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    (tmp_path / "secret").write_text("secret")
    planted = "ab" * 32
    os.symlink(tmp_path / "secret", store.root / planted)  # a link under an artifact's name leads nowhere
    digest = store.put(BODY)
    with serve_store(store.root) as server:
        assert _request(server.url, "/" + planted)[0] == 404
        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = _request(server.url, "/" + digest[2:], method=method)
            assert status == 405 and headers["allow"] == "GET, HEAD"
        assert store.get(digest) == BODY  # nothing was changed


def _until(condition, timeout: float = 10.0) -> None:
    """Wait for `condition()` (a server thread finishing its request after the client has its answer)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the store server never reached the expected state"
        time.sleep(0.01)


def test_size_limit_timeout_and_bounded_threads(tmp_path: Path) -> None:
    digest = LocalStore(tmp_path).put(BODY)
    with StoreServer(tmp_path, max_bytes=len(BODY) - 1, timeout=0.5, max_threads=1).start() as server:
        assert _request(server.url, "/" + digest[2:])[0] == 403
        _until(lambda: server.running_requests == 0)  # its slot is released once the server sees the close
        with pytest.raises(ArtifactError, match="HTTP 403"):
            open_store(server.url, timeout=5).get(digest)
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        _until(lambda: server.running_requests == 0)
        idle = socket.create_connection((host, int(port)), timeout=5)  # holds the only slot, says nothing
        try:
            _until(lambda: server.running_requests == 1)
            assert _request(server.url, "/" + digest[2:])[0] == 503  # no second thread
            started = time.monotonic()
            assert idle.recv(100) == b""  # closed by the server's per-connection timeout
            assert time.monotonic() - started < 3
        finally:
            idle.close()
        _until(lambda: server.running_requests == 0)
        assert _request(server.url, "/" + digest[2:])[0] == 403  # the slot came back


def test_a_client_trickling_its_request_is_dropped_within_the_timeout(tmp_path: Path) -> None:
    digest = LocalStore(tmp_path).put(BODY)
    with StoreServer(tmp_path, timeout=0.5).start() as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as slow:
            started = time.monotonic()
            request = f"GET /{digest[2:]} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            try:
                for byte in request:  # every byte well inside the per-read timeout
                    slow.sendall(bytes([byte]))
                    time.sleep(0.1)
                answer = slow.recv(100)
            except OSError:  # reset by the server
                answer = b""
            assert answer == b"" and time.monotonic() - started < 2.5


def test_local_store_writes_public_artifacts_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        store = LocalStore(tmp_path / "new" / "store")
        digest = store.put(b"public artifact")
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o755
    assert stat.S_IMODE(store.path_of(digest).stat().st_mode) == 0o644
    os.chmod(store.path_of(digest), 0o600)  # as an older version wrote it
    store.put(b"public artifact")
    assert stat.S_IMODE(store.path_of(digest).stat().st_mode) == 0o644


@given(size=st.integers(0, 300), first=st.one_of(st.none(), st.integers(0, 400)),
       last=st.one_of(st.none(), st.integers(0, 400)))
def test_parse_range_matches_slicing(size: int, first: int | None, last: int | None) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    got = parse_range(header, size)
    data = bytes(i % 251 for i in range(size))
    if first is None and last is None:
        assert got is None
    elif first is None:  # suffix: the last `last` bytes
        assert got is False if (last == 0 or size == 0) else data[got[0]:got[1] + 1] == data[-last:]
    elif last is not None and last < first:
        assert got is None  # invalid: ignored, the whole file is served
    elif first >= size:
        assert got is False
    else:
        assert data[got[0]:got[1] + 1] == data[first:None if last is None else last + 1]


@given(st.text(max_size=40))
def test_parse_range_never_raises_and_stays_in_bounds(header: str) -> None:
    got = parse_range(header, 100)
    assert got is None or got is False or 0 <= got[0] <= got[1] < 100


def test_the_command_prints_its_url_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    digest = LocalStore(tmp_path).put(BODY)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    command = [sys.executable, "-m", "protocol.cli.main", "store", "serve", str(tmp_path), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {tmp_path.resolve()} read-only at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split("/<", 1)[0]
        assert open_store(url, timeout=5).get(digest) == BODY
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "store server stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    missing = subprocess.run([*command[:-3], str(tmp_path / "nope")], capture_output=True, text=True, env=env,
                             timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: store directory {tmp_path / 'nope'} does not exist"]
