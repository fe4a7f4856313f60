"""SQLite connections for daemon state: WAL journal, full sync, busy timeout.

State that must survive a SIGKILL (cursor, outbox, job table) is written in short transactions on
these connections; `synchronous=FULL` makes a committed transaction durable before we act on it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating) the SQLite database at `path` for durable daemon state."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
