"""Reorg-safe event ingestion: a persisted cursor over `eth_getLogs`.

The cursor stores the last block it has read as (number, hash) plus the hashes of recent blocks.
Each `poll()` first checks that the stored hash is still canonical; if not, it walks back through
the stored hashes to the fork point, rolls back to it and re-reads from there, so a reorg never
loses or keeps a stale event. Reads stay `confirmations` blocks behind head and cover at most
`range_size` blocks per call; a provider that refuses a range (its "block range too large" error)
gets it halved, and the cursor keeps the smaller range. Delivery is at least once: the position moves on durably only when
the next `poll()` (or `ack()`) says the previous batch was handled, so a crash re-delivers it.
Consumers must be idempotent; the daemons treat events as hints and contract state as truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.errors import ChainError
from protocol.logrange import is_range_refusal
from worker.runtime.db import connect

log = logging.getLogger("tessera.cursor")

Decoder = Callable[[Any], Any | None]


@dataclass(frozen=True)
class Reorg:
    """A detected reorg: the old tip we had read, and the fork point we rolled back to."""

    old_block: int
    old_hash: str
    fork_block: int
    detected_at: float


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if hasattr(value, "hex") and not isinstance(value, str):
        text = value.hex()
        return text if text.startswith("0x") else "0x" + text
    return str(value).lower()


def default_decoder(log_entry: Any) -> Any | None:
    """`protocol.events.decode_log`, imported on first use so the cursor has no hard dependency."""
    from protocol.events import decode_log

    return decode_log(log_entry)


class EventCursor:
    """Reads logs of `addresses` (optionally only `topics`) block range by block range, reorg-safe.

    `w3` is a web3 instance whose provider has a request timeout; `db_path` the SQLite file; `name`
    lets several cursors share one file. `keep_blocks` recent block hashes are kept to find a fork
    point; a reorg deeper than that rolls back to the oldest kept block (re-delivery is harmless).
    """

    def __init__(
        self,
        w3: Any,
        db_path: Path | str,
        addresses: Sequence[str],
        *,
        topics: Sequence[str] | None = None,
        confirmations: int = 2,
        range_size: int = 2_000,
        start_block: int = 0,
        keep_blocks: int = 128,
        decoder: Decoder | None = None,
        name: str = "main",
        on_reorg: Callable[[Reorg], None] | None = None,
    ) -> None:
        if range_size < 1:
            raise ValueError("range_size must be >= 1")
        self.w3 = w3
        self.addresses = [w3.to_checksum_address(a) for a in addresses]
        self.topics = list(topics) if topics else None
        self.confirmations = confirmations
        self.range_size = range_size
        self.start_block = start_block
        self.keep_blocks = max(keep_blocks, confirmations + 2)
        self.decoder = decoder or default_decoder
        self.name = name
        self.on_reorg = on_reorg
        self.reorgs: list[Reorg] = []
        self.head: int | None = None
        self.last_poll_at: float | None = None
        self._pending: tuple[int, str, list[tuple[int, str]]] | None = None
        self._conn = connect(db_path)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS cursor_position (name TEXT PRIMARY KEY, block INTEGER NOT NULL, hash TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS cursor_blocks (name TEXT NOT NULL, block INTEGER NOT NULL, hash TEXT NOT NULL,"
            " PRIMARY KEY (name, block))"
        )

    # ------------------------------------------------------------------ persisted position

    @property
    def position(self) -> tuple[int, str] | None:
        """The durable (block, hash) read up to, or None before the first acknowledged batch."""
        row = self._conn.execute("SELECT block, hash FROM cursor_position WHERE name=?", (self.name,)).fetchone()
        return (row["block"], row["hash"]) if row else None

    @property
    def block(self) -> int:
        """Last block read (durably), or `start_block - 1` when nothing has been read yet."""
        pos = self.position
        return pos[0] if pos else self.start_block - 1

    def _stored_hashes(self) -> list[tuple[int, str]]:
        rows = self._conn.execute(
            "SELECT block, hash FROM cursor_blocks WHERE name=? ORDER BY block DESC", (self.name,)
        ).fetchall()
        return [(r["block"], r["hash"]) for r in rows]

    def ack(self) -> None:
        """Make the last delivered batch durable: the cursor will not deliver it again."""
        if self._pending is None:
            return
        block, block_hash, hashes = self._pending
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT INTO cursor_position(name, block, hash) VALUES (?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET block=excluded.block, hash=excluded.hash",
                (self.name, block, block_hash),
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO cursor_blocks(name, block, hash) VALUES (?,?,?)",
                [(self.name, n, h) for n, h in hashes],
            )
            self._conn.execute(
                "DELETE FROM cursor_blocks WHERE name=? AND block < ?", (self.name, block - self.keep_blocks)
            )
        self._pending = None

    def _rollback_to(self, fork_block: int, fork_hash: str) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM cursor_blocks WHERE name=? AND block > ?", (self.name, fork_block))
            if fork_block < self.start_block:
                self._conn.execute("DELETE FROM cursor_position WHERE name=?", (self.name,))
            else:
                self._conn.execute(
                    "UPDATE cursor_position SET block=?, hash=? WHERE name=?", (fork_block, fork_hash, self.name)
                )

    # ------------------------------------------------------------------ chain reads

    def _block_hash(self, number: int) -> str | None:
        """Hash of canonical block `number`, or None when the chain is (now) shorter than that."""
        from web3.exceptions import BlockNotFound, Web3RPCError

        if self.head is not None and number > self.head:
            return None
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        except (ValueError, Web3RPCError) as exc:  # some nodes answer a JSON-RPC error for a block above head
            if "out of range" in str(exc).lower() or "not found" in str(exc).lower():
                return None
            raise
        return _hex(block["hash"]) if block is not None else None

    def _check_reorg(self) -> Reorg | None:
        """Compare the stored tip with the chain; on mismatch roll back to the newest matching block."""
        pos = self.position
        if pos is None:
            return None
        tip_block, tip_hash = pos
        if self._block_hash(tip_block) == tip_hash:
            return None
        fork = self.start_block - 1
        for number, stored in self._stored_hashes():
            if number >= tip_block:
                continue
            if self._block_hash(number) == stored:
                fork = number
                break
        else:
            # Deeper than our memory: restart from the oldest block we remember (or the start).
            kept = self._stored_hashes()
            fork = max(self.start_block - 1, (kept[-1][0] - 1) if kept else self.start_block - 1)
        reorg = Reorg(old_block=tip_block, old_hash=tip_hash, fork_block=fork, detected_at=time.time())
        self._rollback_to(fork, (self._block_hash(fork) or "") if fork >= self.start_block else "")
        self.reorgs.append(reorg)
        log.warning(
            "reorg detected: block %s hash changed, rolled back to %s", tip_block, fork,
            extra={"event": "reorg", "old_block": tip_block, "fork_block": fork},
        )
        if self.on_reorg:
            self.on_reorg(reorg)
        return reorg

    def poll(self) -> list[Any]:
        """Acknowledge the previous batch, then read the next confirmed range and return its decoded events.

        Returns [] when there is nothing new behind the confirmation depth. Raises `ChainError`
        subclasses (or the web3/requests error) when the RPC fails; the position is then unchanged.
        """
        self.ack()
        head = self.w3.eth.block_number
        self.head = head
        self._check_reorg()
        safe = head - self.confirmations
        start = self.block + 1
        if start > safe:
            self.last_poll_at = time.time()
            return []
        end = min(safe, start + self.range_size - 1)
        params: dict[str, Any] = {"address": self.addresses}
        if self.topics:
            params["topics"] = [self.topics]
        while True:
            try:
                logs = self.w3.eth.get_logs({**params, "fromBlock": start, "toBlock": end})
                break
            except Exception as exc:  # a provider's range cap: read fewer blocks, and keep reading fewer
                if end <= start or not is_range_refusal(exc):
                    raise
                refused = end - start + 1
                self.range_size = max(1, refused // 2)
                end = start + self.range_size - 1
                log.warning("the RPC refused eth_getLogs over %d blocks; reading %d at a time from now on",
                            refused, self.range_size, extra={"event": "log_range_reduced"})
        end_hash = self._block_hash(end)
        if end_hash is None:
            raise ChainError(f"block {end} vanished while reading (reorg in progress); retrying")
        # Every log must come from the blocks we now consider canonical; if one does not, the chain
        # moved under us between the calls: deliver nothing and read the range again next time.
        seen: dict[int, str] = {end: end_hash}
        for entry in logs:
            number = int(entry["blockNumber"])
            if number not in seen:
                seen[number] = self._block_hash(number)
            if _hex(entry["blockHash"]) != seen[number]:
                raise ChainError(f"logs of block {number} changed while reading (reorg in progress); retrying")
        if self._block_hash(end) != end_hash:
            raise ChainError(f"block {end} changed while reading (reorg in progress); retrying")
        # Remember the hash of every block in the last `keep_blocks` of the range, for fork finding.
        for number in range(max(start, end - self.keep_blocks + 1), end + 1):
            if number not in seen:
                seen[number] = self._block_hash(number) if end - number < 8 else ""
        hashes = [(n, h) for n, h in sorted(seen.items()) if h]
        self._pending = (end, end_hash, hashes)
        self.last_poll_at = time.time()
        events = []
        for entry in sorted(logs, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"]))):
            decoded = self.decoder(entry)
            if decoded is not None:
                events.append(decoded)
        return events

    def poll_all(self, max_batches: int = 1_000) -> list[Any]:
        """Poll until caught up with the confirmed head (bounded), acknowledging each batch."""
        events: list[Any] = []
        for _ in range(max_batches):
            before = self.block
            events.extend(self.poll())
            self.ack()
            if self.block == before:
                break
        return events

    @property
    def lag(self) -> int | None:
        """Blocks between head and the cursor (None before the first poll)."""
        return None if self.head is None else max(0, self.head - self.block)

    def close(self) -> None:
        """Close the SQLite connection (pending batch is not acknowledged)."""
        self._conn.close()

