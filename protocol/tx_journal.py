"""The transaction journal of the CLI and SDK: store the signed transaction, then send it.

The worker's outbox (worker/runtime/outbox.py) keeps the daemons from losing or doubling a transaction;
this is the same write-ahead rule for one-shot commands and scripts. Before a write is broadcast,
`protocol.chain.send_transaction` stores one entry: what was asked (description, target, calldata,
value) and the signed raw transaction with its hash, nonce, chain and sender. The entry is removed
once the transaction has a receipt, or when the node refused it outright.

When the RPC fails after signing, the entry stays. The next call with the same intent (same chain,
sender, target, calldata and value: the same command with the same arguments) finds it and follows
that transaction instead of signing a new one: it returns the receipt of a mined one, waits for a
pending one, sends the very same bytes again when the node forgot it (same hash: the chain executes it
at most once), and drops the entry when the nonce was used by another transaction.

Entries live in `$TESSERA_STATE_DIR/journal` (default `~/.tessera/journal`), one JSON file per intent,
written atomically with mode 0600 in 0700 folders, scoped by chain id, the chain's genesis hash (a
restarted devnet is another chain) and sender. An entry older than `max_age` (7 days) is discarded
the next time that account writes on that chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.errors import JournalError

ENV_STATE_DIR = "TESSERA_STATE_DIR"
DEFAULT_STATE_DIR = "~/.tessera"
DEFAULT_MAX_AGE = 7 * 86_400.0
_DIR_MODE = stat.S_IRWXU  # 0700
_FILE_MODE = stat.S_IRUSR | stat.S_IWUSR  # 0600


def state_dir() -> Path:
    """The per-user folder for Tessera's own state: `TESSERA_STATE_DIR`, else `~/.tessera`."""
    return Path(os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR).expanduser()


def intent_key(chain_id: int, sender: str, to: str | None, data: str, value: int) -> str:
    """The identity of a write: the same call from the same account on the same chain has the same key."""
    canonical = json.dumps(
        [int(chain_id), sender.lower(), (to or "").lower(), _hex(data), int(value)], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _hex(data: str | bytes) -> str:
    if isinstance(data, (bytes, bytearray)):
        return "0x" + bytes(data).hex()
    text = str(data).lower()
    return text if text.startswith("0x") else "0x" + text


class JournalScope(BaseModel):
    """Whose journal: one sender on one chain (the genesis hash tells a restarted devnet apart)."""

    model_config = ConfigDict(frozen=True)

    chain_id: int
    genesis: str
    sender: str

    @property
    def folder(self) -> str:
        return f"{self.chain_id}-{self.genesis.lower().removeprefix('0x')[:16]}/{self.sender.lower()}"


class JournalEntry(BaseModel):
    """One signed transaction whose outcome the sender has not seen yet."""

    model_config = ConfigDict(extra="forbid")

    key: str
    description: str
    chain_id: int
    genesis: str
    sender: str
    to: str | None
    data: str
    value: int
    nonce: int
    tx_hash: str
    raw: str
    created_at: float

    @property
    def scope(self) -> JournalScope:
        return JournalScope(chain_id=self.chain_id, genesis=self.genesis, sender=self.sender)


class TxJournal:
    """The journal folder; every method touches only the files of one scope."""

    def __init__(self, root: str | Path, *, max_age: float = DEFAULT_MAX_AGE,
                 clock: Callable[[], float] | None = None) -> None:
        self.root = Path(root)
        self.max_age = float(max_age)
        self._clock = clock or time.time

    @classmethod
    def default(cls) -> "TxJournal":
        """The journal under `state_dir()`."""
        return cls(state_dir() / "journal")

    def path(self, scope: JournalScope, key: str) -> Path:
        return self.root / scope.folder / f"{key}.json"

    def find(self, scope: JournalScope, key: str) -> JournalEntry | None:
        """The stored entry for `key`, or None (also for an entry past `max_age`, which is removed)."""
        path = self.path(scope, key)
        if not path.is_file():
            return None
        entry = self._read(path)
        if self._expired(entry):
            self._unlink(path)
            return None
        return entry

    def entries(self, scope: JournalScope) -> list[JournalEntry]:
        """Every live entry of `scope`, oldest first."""
        folder = self.root / scope.folder
        if not folder.is_dir():
            return []
        found = [self._read(p) for p in folder.glob("*.json")]
        return sorted((e for e in found if not self._expired(e)), key=lambda e: e.created_at)

    def record(self, entry: JournalEntry) -> Path:
        """Write `entry` durably (temp file, fsync, rename, 0600); drop expired entries of its scope."""
        path = self.path(entry.scope, entry.key)
        self._make_dirs(path.parent)
        self.expire(entry.scope)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf8") as handle:
                handle.write(entry.model_dump_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise JournalError(f"cannot write the transaction journal at {path}: {exc}; nothing was sent") from exc
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def clear(self, entry: JournalEntry) -> None:
        """Remove `entry` (its transaction has a receipt, or can never be mined)."""
        self._unlink(self.path(entry.scope, entry.key))

    def expire(self, scope: JournalScope) -> int:
        """Remove the entries of `scope` older than `max_age`; return how many."""
        folder = self.root / scope.folder
        removed = 0
        for path in folder.glob("*.json") if folder.is_dir() else []:
            try:
                entry = self._read(path)
            except JournalError:
                continue  # left for a person to look at; `find` names it when it matters
            if self._expired(entry):
                self._unlink(path)
                removed += 1
        return removed

    # ------------------------------------------------------------------ internals

    def _expired(self, entry: JournalEntry) -> bool:
        return self._clock() - entry.created_at > self.max_age

    def _read(self, path: Path) -> JournalEntry:
        try:
            return JournalEntry.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            raise JournalError(
                f"unreadable transaction journal entry {path}: {exc.__class__.__name__}; check that transaction "
                "on an explorer, then delete the file"
            ) from exc

    def _make_dirs(self, folder: Path) -> None:
        try:
            folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            for part in [folder, *folder.parents]:
                if part == self.root.parent:
                    break
                if part.stat().st_mode & 0o077:
                    part.chmod(_DIR_MODE)
        except OSError as exc:
            raise JournalError(f"cannot create the transaction journal folder {folder}: {exc}; nothing was sent") from exc

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
