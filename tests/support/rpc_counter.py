"""A real JSON-RPC proxy in front of anvil that counts calls by method and can act like a capped provider.

Tests point the CLI or SDK at `proxy.url` instead of anvil's URL and then read `proxy.counts`
(method -> calls). With `max_log_range=K` the proxy refuses, as public providers do, any
`eth_getLogs` over more than K blocks with a JSON-RPC error (`log_range_error` words it) and
counts the refusal under `refused`.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 8 * 1024 * 1024


class RpcCounter:
    """`with RpcCounter(anvil_url, max_log_range=None) as proxy:` a counting proxy on 127.0.0.1."""

    def __init__(self, upstream: str, *, max_log_range: int | None = None,
                 log_range_error: str = "eth_getLogs is limited to a {limit} block range",
                 timeout: float = 30.0) -> None:
        self.upstream = upstream
        self.max_log_range = max_log_range
        self.log_range_error = log_range_error
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self.refused = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.refused = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> "RpcCounter":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------------

    def _answer(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """A refusal for a too-wide eth_getLogs, else None (forward it)."""
        method = str(request.get("method"))
        with self._lock:
            self.counts[method] += 1
        if method != "eth_getLogs" or self.max_log_range is None:
            return None
        query = (request.get("params") or [{}])[0]
        start, stop = query.get("fromBlock"), query.get("toBlock")
        if not (isinstance(start, str) and isinstance(stop, str) and start.startswith("0x") and stop.startswith("0x")):
            return None
        if int(stop, 16) - int(start, 16) + 1 <= self.max_log_range:
            return None
        with self._lock:
            self.refused += 1
        message = self.log_range_error.format(limit=self.max_log_range)
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32602, "message": message}}

    def _forward(self, body: bytes) -> bytes:
        upstream = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(upstream, timeout=self.timeout) as response:
            return response.read(MAX_BODY)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, MAX_BODY))
                payload = json.loads(body)
                requests_ = payload if isinstance(payload, list) else [payload]
                refusals = [proxy._answer(r) for r in requests_]
                if isinstance(payload, dict) and refusals[0] is not None:
                    out = json.dumps(refusals[0]).encode()
                elif isinstance(payload, list) and any(refusals):
                    forwarded = [r for r, refused in zip(requests_, refusals) if refused is None]
                    answers = json.loads(proxy._forward(json.dumps(forwarded).encode())) if forwarded else []
                    by_id = {a.get("id"): a for a in answers}
                    merged = [refused or by_id.get(r.get("id")) for r, refused in zip(requests_, refusals)]
                    out = json.dumps(merged).encode()
                else:
                    out = proxy._forward(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
