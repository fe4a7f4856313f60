"""Content-addressed artifact stores: specs, datasets, checkpoints, weights, fingerprints.

Every artifact is named by the 0x sha256 of its exact bytes, and every read checks the bytes against
that name, so any transport is safe: a wrong or tampered artifact is a `HashMismatchError`, never
silently used. A checkpoint of a portable training job is named by its keccak state root instead
(docs/referee.md, section 2): `put` and `get` take a `naming` (`protocol.state_naming.StateRootNaming`)
that computes the name from the bytes, and a read checks the bytes by recomputing it. Reads have a size
limit; HTTP reads have a timeout. Names are only ever built from a validated 64-hex-digit hash, so no
request can reach outside the store (no path traversal).

Backends: `LocalStore` (a flat directory `<root>/<64 hex>`), `HttpStore` (read-only GET
`<base>/<64 hex>`). `open_store(uri)` picks one from a URI; `s3://` is reserved for a future backend.
`serve_store` runs the read-only HTTP server of `protocol.store_server` over a local store (tests, the
demo); `tessera store serve DIR` is the same server as a command.

Artifacts are public (specs, datasets, checkpoints; never keys), so a local store's files are written
0644 and a directory it creates 0755: a web server running as another user must be able to read them.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import stat
import time
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from protocol.errors import ArtifactError, CheckpointError, HashMismatchError, StoreWriteError
from protocol.hashing import from_hex, sha256_hex, verify

DEFAULT_MAX_BYTES = 1024**3  # 1 GiB: bigger artifacts need an explicit, larger limit
DEFAULT_TIMEOUT_S = 30.0
MIN_RATE_BYTES_PER_S = 1024**2  # a download slower than 1 MiB/s (beyond its fixed allowance) is abandoned
_CHUNK = 1 << 20
ARTIFACT_FILE_MODE = 0o644


def normalize_hash(hash_hex: str) -> str:
    """Return the lower-case `0x…` form of a 32-byte hex hash, or raise ArtifactError."""
    try:
        return "0x" + from_hex(hash_hex).hex()
    except ValueError as exc:
        raise ArtifactError(f"bad artifact hash: {exc}") from None


@runtime_checkable
class Naming(Protocol):
    """How an artifact's name follows from its bytes (the default, None everywhere, is sha256)."""

    def name_of(self, data: bytes) -> str:
        """The 0x name of `data`; CheckpointError (or ValueError) when no name of this kind fits it."""
        ...


def name_of(data: bytes, naming: Naming | None) -> str:
    """The name `data` is stored under: its sha256, or what `naming` computes."""
    return sha256_hex(data) if naming is None else naming.name_of(data)


def check_named(data: bytes, name: str, naming: Naming | None, what: str = "artifact") -> None:
    """HashMismatchError unless `data` is named `name` under `naming` (bytes that no name of that kind
    fits, e.g. a checkpoint that is not canonical, are a mismatch too)."""
    if naming is None:
        verify(data, name, what=what)
        return
    try:
        actual = naming.name_of(data)
    except (CheckpointError, ValueError) as exc:
        raise HashMismatchError(f"{what} {name.lower()} cannot carry that name: {exc}") from None
    if actual != name.lower():
        raise HashMismatchError(f"{what} name mismatch: expected {name.lower()}, got {actual}")


@runtime_checkable
class ArtifactStore(Protocol):
    """What every backend offers. `uri` is what a job commits as `artifact_uri`."""

    uri: str
    writable: bool

    def put(self, data: bytes, naming: Naming | None = None) -> str:
        """Store `data`; return its 0x name, sha256 or `naming`'s (idempotent)."""
        ...

    def get(self, hash_hex: str, max_bytes: int = DEFAULT_MAX_BYTES, naming: Naming | None = None) -> bytes:
        """Fetch the bytes named `hash_hex`, verified (by sha256 or `naming`); ArtifactError /
        HashMismatchError otherwise."""
        ...

    def has(self, hash_hex: str) -> bool:
        """Whether the store holds `hash_hex` (cheap; not a verification)."""
        ...


class LocalStore:
    """A flat directory of artifacts, one file per hash, written atomically (temp file + rename)."""

    writable = True

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True):
        """`create` False for a store an untrusted party names (a spec's hint, a worker's artifact URI):
        opening it to read must not make directories on this machine."""
        try:
            self.root = Path(root).expanduser().resolve()
            if create and not self.root.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                self.root.chmod(0o755)  # whatever the umask: served to other users (module docstring)
        except (OSError, ValueError, RuntimeError) as exc:  # ValueError: an embedded NUL byte
            raise ArtifactError(f"cannot use store directory {str(root)[:120]!r}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path_of(self, hash_hex: str) -> Path:
        """Where `hash_hex` lives; only a validated hash ever becomes a file name."""
        return self.root / normalize_hash(hash_hex)[2:]

    def put(self, data: bytes, naming: Naming | None = None) -> str:
        """Store `data` under its sha256, or under the name `naming` computes (no-op when already
        there); return the 0x name."""
        data = bytes(data)
        digest = name_of(data, naming)
        target = self.path_of(digest)
        if target.exists() and target.stat().st_size == len(data):
            try:
                if target.read_bytes() == data:
                    if target.stat().st_mode & 0o777 != ARTIFACT_FILE_MODE:
                        os.chmod(target, ARTIFACT_FILE_MODE)  # written 0600 by an older version
                    return digest  # already stored intact; a damaged copy is rewritten below
            except OSError:
                pass
        if target.is_dir() and not target.is_symlink():
            # never one of ours: planted under an artifact's name (e.g. by a hostile hint that named this
            # path as a store), it would make every write of that artifact fail
            shutil.rmtree(target, ignore_errors=True)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        except OSError as exc:
            raise StoreWriteError(f"cannot write artifact {digest} to {self.root}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), ARTIFACT_FILE_MODE)  # mkstemp makes 0600; artifacts are public
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreWriteError(f"cannot write artifact {digest} to {self.root}: {exc.strerror or exc}") from None
        return digest

    def get(self, hash_hex: str, max_bytes: int = DEFAULT_MAX_BYTES, naming: Naming | None = None) -> bytes:
        """Read and verify `hash_hex` (by sha256, or by recomputing `naming`'s name); refuse files
        larger than `max_bytes` before reading them."""
        digest = normalize_hash(hash_hex)
        path = self.path_of(digest)
        try:
            # O_NONBLOCK: a FIFO planted under an artifact's name (in a directory a stranger's URI names)
            # would block a plain open until a writer came; a regular file reads as usual
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ArtifactError(f"artifact {digest} in {self.uri} is not a regular file")
                size = info.st_size
                if size > max_bytes:
                    raise ArtifactError(f"artifact {digest} is {size} bytes, over the limit of {max_bytes}")
                data = handle.read(min(size, max_bytes) + 1)  # read(n) allocates n bytes up front
        except FileNotFoundError:
            raise ArtifactError(f"artifact {digest} not found in {self.uri}") from None
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {digest}: {exc.strerror or exc}") from None
        if len(data) > max_bytes:
            raise ArtifactError(f"artifact {digest} is over the limit of {max_bytes} bytes")
        check_named(data, digest, naming, what=f"artifact in {self.uri}")
        return data

    def has(self, hash_hex: str) -> bool:
        """Whether a file for `hash_hex` exists."""
        return self.path_of(hash_hex).is_file()


class HttpStore:
    """Read-only store over HTTP(S): GET `<base_url>/<64 hex>`, with a timeout and a size limit."""

    writable = False

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES,
                 deadline: float | None = None):
        check_uri_text(base_url)
        try:
            parsed = urllib.parse.urlparse(base_url)
            host = parsed.hostname
        except ValueError as exc:
            raise ArtifactError(f"malformed store URL {base_url[:80]!r}: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.netloc or not host:
            raise ArtifactError(f"not an http(s) store URL: {base_url!r}")
        if timeout <= 0:
            raise ArtifactError("HTTP store timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.uri = self.base_url
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        # time.monotonic() after which no download goes on: a job's whole budget, however many artifacts
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"HttpStore({self.base_url!r})"

    def _time_left(self, digest: str) -> float:
        """Seconds a request may still take: `timeout`, less when the store's deadline is nearer."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ArtifactError(f"fetching {digest} from {self.uri}: the budget for this job's downloads is spent")
        return min(self.timeout, left)

    def url_of(self, hash_hex: str) -> str:
        """The URL of one artifact (built only from a validated hash)."""
        return f"{self.base_url}/{normalize_hash(hash_hex)[2:]}"

    def put(self, data: bytes, naming: Naming | None = None) -> str:
        """HTTP stores are read-only: always raises ArtifactError."""
        raise ArtifactError(f"store {self.uri} is read-only (HTTP)")

    def _open(self, hash_hex: str, method: str):
        request = urllib.request.Request(self.url_of(hash_hex), method=method)
        timeout = self._time_left(normalize_hash(hash_hex))
        # `timeout` bounds each socket read, so a server that trickles its status line and headers a byte
        # at a time would hold us for ever: they must arrive within the same grace as a body's start
        headers_in = threading.Event()
        grace = 2 * timeout if self.deadline is None else min(2 * timeout, max(0.0, self.deadline - time.monotonic()))
        opener = urllib.request.build_opener(_WatchedHTTPHandler(headers_in, grace), _WatchedHTTPSHandler(headers_in, grace))
        try:
            response = opener.open(request, timeout=timeout)
            headers_in.set()
            return response
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise ArtifactError(f"artifact {normalize_hash(hash_hex)} not found at {self.uri}") from None
            raise ArtifactError(f"HTTP {exc.code} fetching {normalize_hash(hash_hex)} from {self.uri}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            if not headers_in.is_set() and isinstance(reason, OSError | http.client.HTTPException):
                reason = f"no complete response headers within {grace:.0f}s ({reason})"
            raise ArtifactError(f"cannot reach {self.uri}: {reason}") from None
        finally:
            headers_in.set()  # the watchdog, if still waiting, stands down

    def get(self, hash_hex: str, max_bytes: int | None = None, naming: Naming | None = None) -> bytes:
        """Download and verify (sha256, or `naming`); stop reading as soon as the size limit is passed."""
        digest = normalize_hash(hash_hex)
        limit = self.max_bytes if max_bytes is None else min(int(max_bytes), self.max_bytes)
        # `timeout` bounds each socket read; the whole download must also keep up MIN_RATE_BYTES_PER_S
        # after a grace of twice `timeout`, so a server that trickles bytes (slow loris) costs at most
        # about that grace, however large the limit.
        started = time.monotonic()
        with self._open(digest, "GET") as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ArtifactError(f"artifact {digest} is {declared} bytes, over the limit of {limit}")
            chunks: list[bytes] = []
            total = 0
            try:
                while True:
                    elapsed = time.monotonic() - started
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        raise ArtifactError(f"download of {digest} from {self.uri} ran past the job's budget: "
                                            f"{total} bytes in {elapsed:.0f}s")
                    if elapsed > 2 * self.timeout + total / MIN_RATE_BYTES_PER_S:
                        raise ArtifactError(f"download of {digest} from {self.uri} is too slow: {total} bytes "
                                            f"in {elapsed:.0f}s")
                    chunk = response.read1(min(_CHUNK, limit + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > limit:
                        raise ArtifactError(f"artifact {digest} is over the limit of {limit} bytes")
            except (OSError, TimeoutError, http.client.HTTPException) as exc:
                raise ArtifactError(f"download of {digest} from {self.uri} failed: {exc}") from None
        data = b"".join(chunks)
        check_named(data, digest, naming, what=f"artifact from {self.uri}")
        return data

    def has(self, hash_hex: str) -> bool:
        """HEAD request: True on 200, False on 404; other failures raise ArtifactError."""
        try:
            with self._open(hash_hex, "HEAD"):
                return True
        except ArtifactError as exc:
            if "not found" in str(exc):
                return False
            raise


MAX_URI_CHARS = 2_048


def check_uri_text(uri: object, what: str = "store URI") -> str:
    """`uri` as text fit to parse: a non-empty str of at most MAX_URI_CHARS without control characters
    (a NUL, CR or LF in a URI is an injection attempt, never a location); ArtifactError otherwise."""
    if not isinstance(uri, str) or not uri.strip():
        raise ArtifactError(f"empty {what}")
    if len(uri) > MAX_URI_CHARS:
        raise ArtifactError(f"{what} is longer than {MAX_URI_CHARS} characters")
    bad = next((c for c in uri if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ArtifactError(f"{what} contains the control character {bad!r}: {uri[:80]!r}")
    if "\ufffd" in uri:
        raise ArtifactError(f"{what} is not valid UTF-8 (it decoded with replacement characters): {uri[:80]!r}")
    return uri


def _watch_headers(sock: socket.socket, headers_in: threading.Event, grace: float) -> None:
    """Shut `sock` down unless the response headers are in within `grace` seconds: the blocked read
    then fails at once (a watchdog thread, since each read alone is only bounded by `timeout`)."""
    def watch() -> None:
        if not headers_in.wait(grace):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    threading.Thread(target=watch, daemon=True, name="tessera-http-watchdog").start()


def _watched(connection: type, headers_in: threading.Event, grace: float) -> type:
    """`connection` whose socket gets a header watchdog (`_watch_headers`) as soon as it connects."""
    class Watched(connection):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            super().connect()
            _watch_headers(self.sock, headers_in, grace)

    return Watched


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, headers_in: threading.Event, grace: float) -> None:
        super().__init__()
        self.connection = _watched(http.client.HTTPConnection, headers_in, grace)

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self.connection, req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, headers_in: threading.Event, grace: float) -> None:
        super().__init__()
        self.connection = _watched(http.client.HTTPSConnection, headers_in, grace)

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self.connection, req, context=self._context, check_hostname=self._check_hostname)


def open_store(uri: str, *, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES,
               deadline: float | None = None, create: bool = True) -> ArtifactStore:
    """Open the store a URI names: `file://…` or a plain path (LocalStore), `http(s)://…` (HttpStore).

    `s3://` is reserved for an S3-compatible backend and raises a clear ArtifactError today. Any URI
    that cannot name a store (control characters, a malformed host, an unknown scheme) is an
    ArtifactError, never another exception. `deadline` (time.monotonic()) ends every HTTP download of
    the store, so a job's fetches together cost at most its budget. `create` False: a local directory
    is not made (a URI an untrusted party gave).
    """
    check_uri_text(uri)
    try:
        parsed = urllib.parse.urlparse(uri)
        parsed.port  # noqa: B018 - validates the port ("http://h:x" raises ValueError here)
    except ValueError as exc:  # e.g. a malformed IPv6 host: "http://[::1"
        raise ArtifactError(f"malformed store URI {uri[:80]!r}: {exc}") from None
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return HttpStore(uri, timeout=timeout, max_bytes=max_bytes, deadline=deadline)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ArtifactError(f"file URI with a remote host is not supported: {uri!r}")
        return LocalStore(urllib.parse.unquote(parsed.path), create=create)
    if scheme == "s3":
        raise ArtifactError("s3:// stores are not supported yet; use a local directory or an http(s) URL")
    if scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive letter
        raise ArtifactError(f"unsupported store URI scheme {scheme!r} in {uri!r}")
    return LocalStore(uri, create=create)


def serve_store(root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
    """Serve `root` read-only over HTTP from a daemon thread (port 0 picks a free port); a started
    `protocol.store_server.StoreServer` (a context manager; `url` is its base URL)."""
    from protocol.store_server import StoreServer

    return StoreServer(root, host, port, **options).start()
