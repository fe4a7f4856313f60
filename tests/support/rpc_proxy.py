"""A fault-injecting JSON-RPC proxy: a real HTTP server (in a thread) in front of a node such as anvil.

It forwards every request and can misbehave the way public RPC endpoints do:

- `mode="forward"`: a plain pass-through (it still counts calls, in `calls`).
- `mode="drop_after_send"`: forward `eth_sendRawTransaction` to the node, then close the connection
  without an answer (the transaction is on the node; the client cannot know). `drop_sends` picks which
  sends, by 1-based number among the sends the proxy saw (None: every one); `forward_dropped=False`
  drops such a send *without* forwarding it (a request lost on the way in).
- `mode="hang"`: accept the connection, read the request, and never answer (until `hang_seconds`
  pass or the proxy stops). `hang_methods` limits that to some methods (None: every one).

`mode` and the other knobs can be changed while it runs. Use it as a context manager; `url` is the
endpoint to give to `tessera --network` or `protocol.chain.connect`.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterable
from typing import Any

MODES = ("forward", "drop_after_send", "hang")
SEND_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})


class RpcProxy:
    """See the module docstring."""

    def __init__(
        self,
        upstream: str,
        *,
        mode: str = "forward",
        drop_sends: Iterable[int] | None = None,
        forward_dropped: bool = True,
        hang_methods: Iterable[str] | None = None,
        hang_seconds: float = 120.0,
        upstream_timeout: float = 30.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.upstream = upstream
        self.mode = mode
        self.drop_sends = set(drop_sends) if drop_sends is not None else None
        self.forward_dropped = forward_dropped
        self.hang_methods = set(hang_methods) if hang_methods is not None else None
        self.hang_seconds = hang_seconds
        self.upstream_timeout = upstream_timeout
        self.calls: Counter[str] = Counter()
        self.sends = 0  # eth_sendRawTransaction requests seen
        self.dropped: list[int] = []  # numbers of the sends whose connection was dropped
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rpc-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RpcProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RpcProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.upstream_timeout) as response:  # noqa: S310 - test-only
            return response.read()

    def _decide(self, method: str) -> str:
        """What to do with one request: "forward", "drop" (forwarded or not, then no answer) or "hang"."""
        with self._lock:
            self.calls[method] += 1
            if method in SEND_METHODS:
                self.sends += 1
                number = self.sends
            else:
                number = 0
            if self.mode == "hang" and (self.hang_methods is None or method in self.hang_methods):
                return "hang"
            if self.mode == "drop_after_send" and number and (self.drop_sends is None or number in self.drop_sends):
                self.dropped.append(number)
                return "drop"
        return "forward"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body)
                    method = parsed.get("method", "") if isinstance(parsed, dict) else "batch"
                except ValueError:
                    method = ""
                action = proxy._decide(method)
                if action == "hang":
                    proxy._stopping.wait(proxy.hang_seconds)
                    self.close_connection = True
                    return
                if action == "drop":
                    if proxy.forward_dropped:
                        proxy._forward(body)
                    self.close_connection = True  # no status line, no body: the client sees a dropped connection
                    return
                try:
                    answer = proxy._forward(body)
                except OSError:
                    self.send_error(502, "upstream unreachable")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler
