"""A read-only HTTP server over a flat artifact store directory (`tessera store serve DIR`).

It serves exactly what `HttpStore` asks for: `GET`/`HEAD /<64 hex>`. Nothing else is reachable: any
other path is a 404 (no listing, no traversal: only a validated hash becomes a file name, symlinks are
not followed), any other method a 405. Single byte ranges (`Range: bytes=a-b`, `a-`, `-n`) get a 206,
an unsatisfiable one a 416; a multi-range request gets the whole file (RFC 9110 lets a server ignore
Range). A request's line and headers must arrive within `timeout` seconds, each read and write is
bounded by it too, and a response sent slower than readers accept (`MIN_RATE_BYTES_PER_S` after a grace)
is dropped; at most `max_threads` requests run at once (more get a 503), and no file over `max_bytes`
is served. Clients verify the bytes by hash, so the server does not.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from protocol.artifacts import DEFAULT_MAX_BYTES, MIN_RATE_BYTES_PER_S, LocalStore
from protocol.errors import ArtifactError, ConfigError

DEFAULT_PORT = 8080
DEFAULT_CONNECTION_TIMEOUT_S = 30.0
DEFAULT_MAX_THREADS = 32
_CHUNK = 1 << 20
_NAME = re.compile(r"/([0-9a-f]{64})")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """The inclusive byte range a `Range` header asks of a `size`-byte file.

    None: serve the whole file (no header, a malformed one or several ranges: all may be ignored).
    False: the range cannot be satisfied (416). Otherwise `(first, last)` with 0 <= first <= last < size.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # suffix range: the last n bytes
        length = int(match[2])
        if length == 0 or size == 0:
            return False
        return max(0, size - length), size - 1
    first = int(match[1])
    if match[2] and int(match[2]) < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        return False
    return first, min(int(match[2]) if match[2] else size - 1, size - 1)


class _ArtifactHandler(http.server.BaseHTTPRequestHandler):
    """Serves `/<64 hex>` from one store directory, nothing else."""

    root: Path  # set on the subclass made by `make_server`
    max_bytes: int
    timeout = DEFAULT_CONNECTION_TIMEOUT_S  # socket timeout of each connection (StreamRequestHandler)
    quiet = True
    server_version = "tessera-store/1"
    protocol_version = "HTTP/1.1"

    def handle_one_request(self) -> None:
        # The socket timeout bounds each read, so a client trickling its request line and headers a byte
        # at a time would hold a thread for ever: they must all arrive within `timeout`.
        self._headers_in = threading.Timer(self.timeout, self._drop)
        self._headers_in.daemon = True
        self._headers_in.start()
        try:
            super().handle_one_request()
        finally:
            self._headers_in.cancel()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self._headers_in.cancel()
        return parsed

    def _drop(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nothing for a scanner

    def _open(self) -> tuple[Any, int] | None:
        """The artifact's open file and size, or None (after answering) when there is none to serve."""
        match = _NAME.fullmatch(self.path.split("?", 1)[0])
        if match is None:
            self.send_error(404, "not found")
            return None
        try:
            fd = os.open(self.root / match[1], os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            self.send_error(404, "not found")
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            self.send_error(404, "not found")
            return None
        if info.st_size > self.max_bytes:
            os.close(fd)
            self.send_error(403, f"artifact is over this server's limit of {self.max_bytes} bytes")
            return None
        return os.fdopen(fd, "rb"), info.st_size

    def _respond(self, include_body: bool) -> None:
        opened = self._open()
        if opened is None:
            return
        handle, size = opened
        with handle:
            wanted = parse_range(self.headers.get("Range"), size)
            if wanted is False:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            first, last = wanted if wanted else (0, size - 1)
            length = last - first + 1 if size else 0
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if wanted:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            # content-addressed: the bytes under a name never change
            self.send_header("ETag", f'"{self.path.lstrip("/")[:64]}"')
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if not include_body:
                return
            handle.seek(first)
            left = length
            started = time.monotonic()
            while left > 0:  # streamed: checkpoints can be large
                sent = length - left
                if time.monotonic() - started > 2 * self.timeout + sent / MIN_RATE_BYTES_PER_S:
                    # a reader slower than readers themselves accept (protocol.artifacts): free the thread
                    self.close_connection = True
                    return
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    break  # the file shrank under us; the client's length check fails loudly
                self.wfile.write(chunk)
                left -= len(chunk)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._respond(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(False)

    def _refuse(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class _BoundedHTTPServer(http.server.ThreadingHTTPServer):
    """A threading server that runs at most `max_threads` requests at once and answers 503 beyond."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, max_threads: int):
        self._slots = threading.BoundedSemaphore(max_threads)
        self._running = 0
        self._running_lock = threading.Lock()
        super().__init__(address, handler)

    @property
    def running(self) -> int:
        """Requests being answered now (each holds one of the `max_threads` slots)."""
        with self._running_lock:
            return self._running

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
                                b"Retry-After: 1\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._running_lock:
            self._running += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._running_lock:
                self._running -= 1
            self._slots.release()


class StoreServer:
    """A read-only HTTP server over a store directory; `url` is its `HttpStore` base URL.

    `start()` serves from a daemon thread (tests, the demo); `serve_forever()` from the caller's thread
    (the CLI) until `stop()` is called from elsewhere (a signal handler)."""

    def __init__(self, root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = DEFAULT_CONNECTION_TIMEOUT_S,
                 max_threads: int = DEFAULT_MAX_THREADS, quiet: bool = True, create: bool = True):
        if timeout <= 0 or max_threads < 1 or max_bytes < 0:
            raise ConfigError("store server: timeout and max_threads must be positive, max_bytes not negative")
        store = LocalStore(root, create=create)
        if not store.root.is_dir():
            raise ConfigError(f"store directory {store.root} does not exist")
        self.root = store.root
        handler = type("BoundArtifactHandler", (_ArtifactHandler,),
                       {"root": store.root, "max_bytes": int(max_bytes), "timeout": float(timeout), "quiet": quiet})
        try:
            self._server = _BoundedHTTPServer((host, port), handler, max_threads)
        except (OSError, OverflowError) as exc:
            raise ArtifactError(f"cannot serve store on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
        bound_host, bound_port = self._server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self._thread: threading.Thread | None = None

    @property
    def running_requests(self) -> int:
        """Requests being answered now; at most `max_threads`, and a request beyond gets a 503."""
        return self._server.running

    def start(self) -> "StoreServer":
        """Serve from a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="tessera-store",
                                        daemon=True)  # a short poll: close() returns quickly
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from this thread until `stop()`; the port is released on return."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        """Ask `serve_forever` to return (safe from a signal handler: it does not wait)."""
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "StoreServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
