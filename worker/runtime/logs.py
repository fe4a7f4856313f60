"""Structured logs for the daemons: one JSON object per line, with job ids and event fields.

`log.info("claimed", extra={"event": "claim", "job_id": 7})` becomes
`{"ts": "...", "level": "INFO", "daemon": "worker", "logger": "tessera.worker", "msg": "claimed",
"event": "claim", "job_id": 7}`. On a terminal with `log_format = "text"` rich renders them instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from protocol.redaction import redact

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; extra fields are kept, values that are not JSON become text."""

    def __init__(self, daemon: str) -> None:
        super().__init__()
        self.daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "daemon": self.daemon,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # RPC URLs carry API keys: whatever a message or traceback echoes of one is masked.
        return redact(json.dumps(payload, default=str))


def setup_logging(daemon: str, level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Send `tessera.*` logs to `stream` (stderr) as JSON lines, or through rich when `fmt` is text on a TTY."""
    stream = stream or sys.stderr
    root = logging.getLogger("tessera")
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    if fmt == "text" and getattr(stream, "isatty", lambda: False)():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter(daemon))
    root.addHandler(handler)
    root.propagate = False
