"""Durable transaction outbox: write the intent, then send; own the nonce; never send twice.

Lifecycle of an intent (one row per idempotency `key`, e.g. `claim:7`, never deleted):

    queued --(still needed? simulate ok)--> sent --receipt--> mined --confirmations--> confirmed
      |  \\--simulation reverts--> failed          \\--status 0--> reverted
      \\--not needed--> skipped        sent --not needed any more--> cancelling --> cancelled
                                      sent --nonce used by a foreign tx--> dropped

Rules that make it crash-safe:
- An intent is stored before anything is sent; submitting the same key again returns the stored one.
- A nonce is assigned, the transaction signed and the raw bytes stored in one SQLite transaction
  *before* broadcasting, so after a crash we rebroadcast the very same bytes (same hash: the chain
  executes it at most once) instead of building a second transaction.
- The outbox owns the account's nonce (`next_nonce` is persisted); a foreign transaction on the
  same key is detected and adopted, with a warning.
- Before the first send and before any resend after a restart or timeout, a per-kind callable asks
  chain state whether the intent is still needed; an intent that is not is skipped, or its nonce is
  filled with a zero-value self-transfer so no nonce gap is left.
- Every send is simulated (`eth_call` at `pending`) first; reverts are decoded and the intent fails
  with the reason, spending no nonce.
- A transaction without a receipt after `bump_timeout` seconds is replaced at the same nonce with
  fees raised by 12.5 % (the replacement rule needs >= 10 %), never above `fee_cap_wei`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.chain import broadcast_refusal
from protocol.errors import TesseraError
from worker.runtime.db import connect

log = logging.getLogger("tessera.outbox")

TERMINAL_STATES = frozenset({"confirmed", "reverted", "failed", "skipped", "cancelled", "dropped"})
OPEN_STATES = frozenset({"queued", "sent", "mined", "cancelling"})
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8  # +12.5 %
GAS_MARGIN = 1.25
NOOP_GAS = 21_000
FORGOTTEN_AFTER_S = 5.0  # a sent transaction the node no longer knows this long after sending is sent again
ERROR_SELECTOR = "08c379a0"  # Error(string)
PANIC_SELECTOR = "4e487b71"  # Panic(uint256)

StillNeeded = Callable[["Intent"], bool]


class OutboxError(TesseraError):
    """The outbox was used wrongly (unknown key, conflicting request for an existing key)."""


@dataclass(frozen=True)
class OutboxRequest:
    """What to send: the shape of `protocol.client.TxRequest` (to, data, value, description)."""

    to: str
    data: str
    value: int = 0
    description: str = ""
    gas: int | None = None

    @classmethod
    def of(cls, request: Any) -> "OutboxRequest":
        """Accept a TxRequest-like object or mapping with `to`, `data`, `value`, `description`."""
        get = (lambda k, d=None: request.get(k, d)) if isinstance(request, dict) else (
            lambda k, d=None: getattr(request, k, d)
        )
        data = get("data", "0x") or "0x"
        if isinstance(data, (bytes, bytearray)):
            data = "0x" + bytes(data).hex()
        return cls(
            to=str(get("to")),
            data=str(data),
            value=int(get("value", 0) or 0),
            description=str(get("description", "") or ""),
            gas=get("gas"),
        )


@dataclass(frozen=True)
class Intent:
    """One stored intent, as last written."""

    id: int
    key: str
    kind: str
    job_id: int | None
    to: str
    data: str
    value: int
    description: str
    state: str
    nonce: int | None
    tx_hash: str | None
    block: int | None
    reason: str | None
    created_at: float
    updated_at: float

    @property
    def done(self) -> bool:
        """True once nothing more will happen to it."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when its transaction is mined with status 1 (confirmed or still gathering confirmations)."""
        return self.state in ("mined", "confirmed")


def decode_revert(data: Any) -> str | None:
    """Decode revert return data: `Error(string)` text, `Panic(uint256)` code, else None."""
    if data is None:
        return None
    if isinstance(data, (bytes, bytearray)):
        text = bytes(data).hex()
    else:
        text = str(data).lower().removeprefix("0x")
    try:
        if text.startswith(ERROR_SELECTOR) and len(text) >= 8 + 128:
            body = bytes.fromhex(text[8:])
            length = int.from_bytes(body[32:64], "big")
            if length <= len(body) - 64:
                return body[64 : 64 + length].decode("utf-8", errors="replace")
        if text.startswith(PANIC_SELECTOR) and len(text) >= 8 + 64:
            return f"panic 0x{int(text[8:72], 16):02x}"
    except ValueError:
        return None
    return None


def revert_reason(exc: BaseException) -> str | None:
    """The revert reason carried by a web3 exception (ContractLogicError and friends), if any."""
    reason = decode_revert(getattr(exc, "data", None))
    if reason:
        return reason
    message = getattr(exc, "message", None) or (exc.args[0] if exc.args else None)
    if isinstance(message, str):
        return message.removeprefix("execution reverted: ").removeprefix("execution reverted")  or None
    if isinstance(message, dict):
        return decode_revert(message.get("data")) or message.get("message")
    return None


def is_revert(exc: BaseException) -> bool:
    """True when `exc` says the call reverted (as opposed to the RPC failing)."""
    from web3.exceptions import ContractLogicError

    if isinstance(exc, ContractLogicError):
        return True
    text = str(exc).lower()
    return "revert" in text and "connection" not in text


class Outbox:
    """The durable sender for one account. Call `process()` from the daemon loop.

    `account` is an eth-account LocalAccount (decrypted from the keystore); `w3` a web3 instance
    with a request timeout; `clock` is injectable for tests of the bump timeout.
    """

    def __init__(
        self,
        w3: Any,
        account: Any,
        db_path: Path | str,
        *,
        fee_cap_wei: int,
        priority_fee_wei: int = 10**9,
        bump_timeout: float = 60.0,
        confirmations: int = 0,
        clock: Callable[[], float] = time.time,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.w3 = w3
        self.on_queued = on_queued  # told when a new intent is queued: its owner sends it without a poll's wait
        self.account = account
        self.address = w3.to_checksum_address(account.address)
        self.fee_cap_wei = int(fee_cap_wei)
        self.priority_fee_wei = int(priority_fee_wei)
        self.bump_timeout = bump_timeout
        self.confirmations = confirmations
        self.clock = clock
        self._checks: dict[str, StillNeeded] = {}
        self._chain_id: int | None = None
        self.stats = {"sent": 0, "bumped": 0, "failed": 0, "stuck_at_cap": 0, "rebroadcast": 0, "cancelled": 0}
        self._rebroadcast_at: dict[str, float] = {}  # tx hash -> when we last sent it again (forgotten by the node)
        self._conn = connect(db_path)
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox_intents (
                id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                job_id INTEGER, to_addr TEXT NOT NULL, data TEXT NOT NULL, value TEXT NOT NULL,
                description TEXT NOT NULL, gas INTEGER, state TEXT NOT NULL, nonce INTEGER,
                tx_hash TEXT, block INTEGER, reason TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS outbox_attempts (
                id INTEGER PRIMARY KEY AUTOINCREMENT, intent_id INTEGER NOT NULL, nonce INTEGER NOT NULL,
                tx_hash TEXT NOT NULL UNIQUE, raw TEXT NOT NULL, gas INTEGER NOT NULL, max_fee TEXT NOT NULL, priority_fee TEXT NOT NULL,
                noop INTEGER NOT NULL DEFAULT 0, broadcast INTEGER NOT NULL DEFAULT 0, sent_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS outbox_meta (account TEXT PRIMARY KEY, next_nonce INTEGER NOT NULL);
            """
        )

    # ------------------------------------------------------------------ public API

    def register_check(self, kind: str, still_needed: StillNeeded) -> None:
        """Say how to ask chain state whether an intent of `kind` is still needed (True = send it)."""
        self._checks[kind] = still_needed

    def submit(self, key: str, kind: str, request: Any, *, job_id: int | None = None) -> Intent:
        """Store an intent under `key` (idempotent: an existing key returns the stored intent unchanged)."""
        req = OutboxRequest.of(request)
        now = self.clock()
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            inserted = self._conn.execute(
                "INSERT OR IGNORE INTO outbox_intents(key, kind, job_id, to_addr, data, value, description, gas, state,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'queued',?,?)",
                (key, kind, job_id, req.to, req.data, str(req.value), req.description, req.gas, now, now),
            ).rowcount
        intent = self.get(key)
        assert intent is not None
        if intent.kind != kind:
            raise OutboxError(f"outbox key {key!r} already holds a {intent.kind!r} intent, not {kind!r}")
        if inserted and self.on_queued is not None:  # a new intent only: a daemon may submit a key every tick
            self.on_queued()
        return intent

    def retry(self, key: str, request: Any | None = None) -> Intent:
        """Queue a failed/skipped intent again (the daemon decided it is worth another try)."""
        intent = self.get(key)
        if intent is None:
            raise OutboxError(f"no intent {key!r}")
        if intent.state not in ("failed", "skipped", "reverted", "cancelled", "dropped"):
            raise OutboxError(f"intent {key!r} is {intent.state}; only an intent that ended without effect can be retried")
        req = OutboxRequest.of(request) if request is not None else None
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            if req is not None:
                self._conn.execute(
                    "UPDATE outbox_intents SET to_addr=?, data=?, value=?, description=? WHERE key=?",
                    (req.to, req.data, str(req.value), req.description, key),
                )
            self._set_state(intent.id, "queued", reason=None, nonce=None, tx_hash=None, block=None)
        return self.get(key)  # type: ignore[return-value]

    def get(self, key: str) -> Intent | None:
        """The stored intent for `key`, or None."""
        row = self._conn.execute("SELECT * FROM outbox_intents WHERE key=?", (key,)).fetchone()
        return self._intent(row) if row else None

    def intents(self, states: frozenset[str] | set[str] | None = None) -> list[Intent]:
        """All intents (optionally only those in `states`), oldest first."""
        rows = self._conn.execute("SELECT * FROM outbox_intents ORDER BY id").fetchall()
        found = [self._intent(r) for r in rows]
        return [i for i in found if states is None or i.state in states]

    def pending_count(self) -> int:
        """Intents that still need work (queued, sent, mined but unconfirmed, cancelling)."""
        row = self._conn.execute(
            "SELECT COUNT(*) AS n FROM outbox_intents WHERE state IN ('queued','sent','mined','cancelling')"
        ).fetchone()
        return int(row["n"])

    @property
    def next_nonce(self) -> int | None:
        """The next nonce the outbox will use (None before the first send)."""
        row = self._conn.execute("SELECT next_nonce FROM outbox_meta WHERE account=?", (self.address,)).fetchone()
        return int(row["next_nonce"]) if row else None

    def attempts(self, key: str) -> list[dict[str, Any]]:
        """Every signed transaction of the intent `key` (hash, nonce, fees, noop, broadcast)."""
        rows = self._conn.execute(
            "SELECT a.* FROM outbox_attempts a JOIN outbox_intents i ON a.intent_id=i.id WHERE i.key=? ORDER BY a.id",
            (key,),
        ).fetchall()
        return [dict(r) for r in rows]

    def process(self) -> list[Intent]:
        """One round: follow in-flight transactions, bump or cancel stuck ones, send queued intents.

        Returns the intents whose state changed in this round. RPC failures propagate (the daemon
        backs off); everything already written stays consistent.
        """
        changed: list[Intent] = []
        latest_nonce = self.w3.eth.get_transaction_count(self.address, "latest")
        head = self.w3.eth.block_number
        changed += self._reopen_reorged(latest_nonce)
        for intent in self.intents(frozenset({"sent", "mined", "cancelling"})):
            updated = self._follow(intent, latest_nonce, head)
            if updated is not None:
                changed.append(updated)
        for intent in self.intents(frozenset({"queued"})):
            updated = self._send_new(intent, latest_nonce)
            if updated is not None:
                changed.append(updated)
        return changed

    def _reopen_reorged(self, latest_nonce: int) -> list[Intent]:
        """Final intents whose nonce the chain no longer counts were reorged out deeper than our
        confirmations: reopen them (re-check, then resend or fill the nonce) so no nonce gap remains."""
        reopened = []
        rows = self._conn.execute(
            "SELECT * FROM outbox_intents WHERE state IN ('confirmed','reverted','cancelled') AND nonce >= ?",
            (latest_nonce,)).fetchall()
        for row in rows:
            intent = self._intent(row)
            if any(self._receipt(a["tx_hash"]) is not None for a in self._current_attempts(intent)):
                continue
            log.warning("%s: its transaction was reorged out after %s; reopening", intent.key, intent.state,
                        extra={"event": "receipt_lost", "key": intent.key, "job_id": intent.job_id})
            with self._conn:
                self._conn.execute("UPDATE outbox_attempts SET broadcast=0, sent_at=? WHERE intent_id=?",
                                   (self.clock(), intent.id))
            reopened.append(self._transition(intent, "sent", tx_hash=None, block=None))
        return reopened

    def recover(self) -> list[Intent]:
        """After a restart: mark every stored transaction as not known to be broadcast, so each open
        intent is re-checked against chain state (still needed?) before its same bytes are rebroadcast
        or its nonce is filled with a no-op. Then `process()`."""
        with self._conn:
            self._conn.execute("UPDATE outbox_attempts SET broadcast = 0, sent_at = ?", (self.clock(),))
        return self.process()

    def close(self) -> None:
        """Close the SQLite connection."""
        self._conn.close()

    # ------------------------------------------------------------------ internals

    def _intent(self, row: Any) -> Intent:
        return Intent(
            id=row["id"], key=row["key"], kind=row["kind"], job_id=row["job_id"], to=row["to_addr"],
            data=row["data"], value=int(row["value"]), description=row["description"], state=row["state"],
            nonce=row["nonce"], tx_hash=row["tx_hash"], block=row["block"], reason=row["reason"],
            created_at=row["created_at"], updated_at=row["updated_at"],
        )

    def _reload(self, intent_id: int) -> Intent:
        return self._intent(self._conn.execute("SELECT * FROM outbox_intents WHERE id=?", (intent_id,)).fetchone())

    def _set_state(self, intent_id: int, state: str, **fields: Any) -> None:
        assignments = ", ".join(f"{k}=?" for k in fields)
        sql = "UPDATE outbox_intents SET state=?, updated_at=?" + (", " + assignments if assignments else "")
        self._conn.execute(sql + " WHERE id=?", (state, self.clock(), *fields.values(), intent_id))

    def _transition(self, intent: Intent, state: str, **fields: Any) -> Intent:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._set_state(intent.id, state, **fields)
        updated = self._reload(intent.id)
        log.info(
            "%s %s -> %s%s", intent.key, intent.state, state, f" ({updated.reason})" if updated.reason else "",
            extra={"event": "intent", "key": intent.key, "job_id": intent.job_id, "state": state,
                   "tx_hash": updated.tx_hash, "reason": updated.reason},
        )
        return updated

    def _still_needed(self, intent: Intent) -> bool | None:
        """The kind's check; True when none is registered; None when the check itself failed (RPC)."""
        check = self._checks.get(intent.kind)
        if check is None:
            return True
        try:
            return bool(check(intent))
        except Exception as exc:  # an RPC hiccup must not decide; ask again next round
            log.warning("still-needed check for %s failed: %s", intent.key, exc,
                        extra={"event": "check_failed", "key": intent.key, "job_id": intent.job_id})
            return None

    def chain_id(self) -> int:
        """The chain id (read once)."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def _fees(self) -> tuple[int, int]:
        """(max fee, priority fee) for a new transaction, under the cap."""
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        priority = min(self.priority_fee_wei, self.fee_cap_wei)
        max_fee = min(self.fee_cap_wei, 2 * base + priority)
        if max_fee < base:
            log.warning("base fee %s is above the fee cap %s: the transaction will wait", base, self.fee_cap_wei,
                        extra={"event": "fee_cap_below_base"})
        return max_fee, priority

    def _simulate(self, intent: Intent) -> tuple[int | None, str | None]:
        """(gas limit, None) when the call would succeed, (None, reason) when it reverts."""
        tx = {"from": self.address, "to": self.w3.to_checksum_address(intent.to), "data": intent.data,
              "value": intent.value}
        try:
            self.w3.eth.call(tx, "pending")
            gas = self.w3.eth.estimate_gas(tx, "pending")
        except Exception as exc:
            if is_revert(exc):
                return None, revert_reason(exc) or "reverted without a reason"
            raise
        row = self._conn.execute("SELECT gas FROM outbox_intents WHERE id=?", (intent.id,)).fetchone()
        if row["gas"]:
            return max(int(row["gas"]), int(gas)), None
        return int(math.ceil(gas * GAS_MARGIN)), None

    def _allocate_nonce(self, latest_nonce: int) -> int:
        stored = self.next_nonce
        if stored is None:
            return latest_nonce
        if latest_nonce > stored:
            log.warning("account %s used outside the outbox: chain nonce %s > ours %s; adopting", self.address,
                        latest_nonce, stored, extra={"event": "foreign_nonce"})
            return latest_nonce
        return stored

    def _sign(self, to: str, data: str, value: int, gas: int, nonce: int, max_fee: int, priority: int) -> tuple[str, str]:
        tx = {
            "type": 2, "chainId": self.chain_id(), "nonce": nonce, "to": self.w3.to_checksum_address(to),
            "data": data, "value": value, "gas": gas, "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": min(priority, max_fee),
        }
        signed = self.account.sign_transaction(tx)
        raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
        tx_hash = signed.hash
        return "0x" + bytes(raw).hex(), "0x" + bytes(tx_hash).hex()

    def _record_attempt(self, intent: Intent, nonce: int, raw: str, tx_hash: str, gas: int, max_fee: int, priority: int,
                        *, noop: bool, state: str, first: bool) -> None:
        """Write the signed transaction (and the nonce) before it is broadcast: the write-ahead step."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT INTO outbox_attempts(intent_id, nonce, tx_hash, raw, gas, max_fee, priority_fee, noop, broadcast,"
                " sent_at) VALUES (?,?,?,?,?,?,?,?,0,?)",
                (intent.id, nonce, tx_hash, raw, gas, str(max_fee), str(priority), int(noop), self.clock()),
            )
            if first:
                self._conn.execute(
                    "INSERT INTO outbox_meta(account, next_nonce) VALUES (?,?) "
                    "ON CONFLICT(account) DO UPDATE SET next_nonce=excluded.next_nonce",
                    (self.address, nonce + 1),
                )
            self._set_state(intent.id, state, nonce=nonce)

    def _broadcast(self, tx_hash: str, raw: str) -> bool:
        """Send stored raw bytes; True when the node has it (accepted now or already known)."""
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            refusal = broadcast_refusal(exc)  # the same reading of node answers as the CLI's journal
            if refusal == "known":
                pass
            elif refusal == "nonce":
                # The nonce moved on (mined) or a sibling with a higher fee is pending: receipts decide.
                log.info("broadcast of %s not accepted: %s", tx_hash, exc, extra={"event": "broadcast_rejected"})
                return False
            elif is_revert(exc):
                log.info("broadcast of %s rejected: %s", tx_hash, exc, extra={"event": "broadcast_rejected"})
                return False
            else:
                raise
        with self._conn:
            self._conn.execute("UPDATE outbox_attempts SET broadcast=1 WHERE tx_hash=?", (tx_hash,))
        return True

    def _send_new(self, intent: Intent, latest_nonce: int) -> Intent | None:
        needed = self._still_needed(intent)
        if needed is None:
            return None
        if not needed:
            return self._transition(intent, "skipped", reason="no longer needed before sending")
        gas, reason = self._simulate(intent)
        if gas is None:
            self.stats["failed"] += 1
            return self._transition(intent, "failed", reason=reason)
        max_fee, priority = self._fees()
        nonce = self._allocate_nonce(latest_nonce)
        raw, tx_hash = self._sign(intent.to, intent.data, intent.value, gas, nonce, max_fee, priority)
        self._record_attempt(intent, nonce, raw, tx_hash, gas, max_fee, priority, noop=False, state="sent", first=True)
        self.stats["sent"] += 1
        self._broadcast(tx_hash, raw)
        updated = self._reload(intent.id)
        log.info("%s sent nonce %s tx %s", intent.key, nonce, tx_hash,
                 extra={"event": "tx_sent", "key": intent.key, "job_id": intent.job_id, "nonce": nonce,
                        "tx_hash": tx_hash})
        return updated

    def _receipt(self, tx_hash: str) -> Any | None:
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _current_attempts(self, intent: Intent) -> list[dict[str, Any]]:
        """The attempts of the intent's current nonce: a retried intent's earlier life (a reverted send, a
        no-op that filled its old nonce) must not decide how its new send ended."""
        return [a for a in self.attempts(intent.key) if a["nonce"] == intent.nonce]

    def _follow(self, intent: Intent, latest_nonce: int, head: int) -> Intent | None:
        attempts = self._current_attempts(intent)
        for attempt in attempts:
            receipt = self._receipt(attempt["tx_hash"])
            if receipt is None:
                continue
            block = int(receipt["blockNumber"])
            if attempt["noop"]:
                self.stats["cancelled"] += 1
                return self._transition(intent, "cancelled", tx_hash=attempt["tx_hash"], block=block,
                                        reason=intent.reason or "no longer needed; nonce filled with a no-op")
            if int(receipt["status"]) == 0:
                reason = self._replay_reason(intent, block)
                return self._transition(intent, "reverted", tx_hash=attempt["tx_hash"], block=block, reason=reason)
            confirmed = head - block + 1 >= max(self.confirmations, 1)
            state = "confirmed" if confirmed else "mined"
            if state == intent.state and intent.tx_hash == attempt["tx_hash"]:
                return None
            return self._transition(intent, state, tx_hash=attempt["tx_hash"], block=block)
        if intent.state == "mined":
            # Its receipt vanished: a reorg dropped the block. Ask chain state again, then resend the
            # same bytes (or fill the nonce with a no-op when the intent is no longer needed).
            log.warning("%s: receipt gone after a reorg; re-checking before resending", intent.key,
                        extra={"event": "receipt_lost", "key": intent.key, "job_id": intent.job_id})
            with self._conn:
                self._conn.execute("UPDATE outbox_attempts SET broadcast=0, sent_at=? WHERE intent_id=?",
                                   (self.clock(), intent.id))
            intent = self._transition(intent, "sent", tx_hash=None, block=None)
            self._resend(intent, self.attempts(intent.key)[-1])
            return self._reload(intent.id)
        if intent.nonce is not None and latest_nonce > intent.nonce and self._nonce_used(intent.nonce):
            # The nonce was used, but by none of our stored transactions.
            return self._transition(intent, "dropped", reason=f"nonce {intent.nonce} used by a foreign transaction")
        latest = attempts[-1]
        if not latest["broadcast"] or self.clock() - float(latest["sent_at"]) >= self.bump_timeout:
            return self._resend(intent, latest)
        tx_hash = latest["tx_hash"]
        last = max(float(latest["sent_at"]), self._rebroadcast_at.get(tx_hash, 0.0))
        if self.clock() - last >= FORGOTTEN_AFTER_S and not self._known(tx_hash):
            # The node forgot it: a reorg took its block before we saw a receipt, or the mempool dropped
            # it. Re-check, and send the same bytes again now rather than after the bump timeout. The bump
            # timer keeps running from the first broadcast, so a node that never shows pending
            # transactions (a load balancer, an L2 replica) still gets fee bumps.
            needed = self._still_needed(intent)
            if needed is False:
                return self._resend(intent, latest)  # fills the nonce with a no-op
            if needed:
                log.warning("%s: the node no longer knows %s; sending it again", intent.key, tx_hash,
                            extra={"event": "tx_forgotten", "key": intent.key, "job_id": intent.job_id})
                self.stats["rebroadcast"] += 1
                self._broadcast(tx_hash, latest["raw"])
                self._rebroadcast_at[tx_hash] = self.clock()
        return None

    def _nonce_used(self, nonce: int) -> bool:
        """Whether the chain counts `nonce` now: read again, since the round's nonce may predate a reorg
        that took our transaction away while we looked for its receipt (it is not a foreign one then)."""
        return self.w3.eth.get_transaction_count(self.address, "latest") > nonce

    def _known(self, tx_hash: str) -> bool:
        """Whether the node has the transaction (pending or mined)."""
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction(tx_hash) is not None
        except TransactionNotFound:
            return False

    def _resend(self, intent: Intent, latest: dict[str, Any]) -> Intent | None:
        """Re-check chain state, then rebroadcast, bump, or fill the nonce with a no-op."""
        timed_out = bool(latest["broadcast"]) and self.clock() - float(latest["sent_at"]) >= self.bump_timeout
        needed = True if intent.state == "cancelling" else self._still_needed(intent)
        if needed is None:
            return None
        if not needed and intent.state == "sent":
            log.info("%s no longer needed; replacing nonce %s with a no-op", intent.key, intent.nonce,
                     extra={"event": "tx_cancel", "key": intent.key, "job_id": intent.job_id})
            self._replace(intent, latest, noop=True, state="cancelling")
            return self._transition(self._reload(intent.id), "cancelling", reason="no longer needed after sending")
        if not latest["broadcast"] and not timed_out:
            self.stats["rebroadcast"] += 1
            self._broadcast(latest["tx_hash"], latest["raw"])
            with self._conn:
                self._conn.execute("UPDATE outbox_attempts SET sent_at=? WHERE tx_hash=?", (self.clock(), latest["tx_hash"]))
            return None
        self._replace(intent, latest, noop=bool(latest["noop"]), state=intent.state)
        return None

    def _replace(self, intent: Intent, latest: dict[str, Any], *, noop: bool, state: str) -> None:
        """Sign a same-nonce replacement with bumped fees (or rebroadcast when the cap stops the bump)."""
        old_max, old_tip = int(latest["max_fee"]), int(latest["priority_fee"])
        new_tip = old_tip * BUMP_NUMERATOR // BUMP_DENOMINATOR + 1
        base_max, _ = self._fees()
        new_max = max(old_max * BUMP_NUMERATOR // BUMP_DENOMINATOR + 1, base_max, new_tip)
        if new_max > self.fee_cap_wei:
            self.stats["stuck_at_cap"] += 1
            log.warning("%s stuck at the fee cap (%s wei); rebroadcasting without a bump", intent.key,
                        self.fee_cap_wei, extra={"event": "stuck_at_cap", "key": intent.key, "job_id": intent.job_id})
            self._broadcast(latest["tx_hash"], latest["raw"])
            with self._conn:
                self._conn.execute("UPDATE outbox_attempts SET sent_at=? WHERE tx_hash=?", (self.clock(), latest["tx_hash"]))
            return
        if noop:
            to, data, value, gas = self.address, "0x", 0, NOOP_GAS
        else:
            to, data, value, gas = intent.to, intent.data, intent.value, int(latest["gas"])
        nonce = int(latest["nonce"])
        raw, tx_hash = self._sign(to, data, value, gas, nonce, new_max, min(new_tip, new_max))
        self._record_attempt(intent, nonce, raw, tx_hash, gas, new_max, min(new_tip, new_max), noop=noop, state=state,
                             first=False)
        self.stats["bumped"] += 1
        log.info("%s replaced at nonce %s: max fee %s -> %s%s", intent.key, nonce, old_max, new_max,
                 " (no-op)" if noop else "", extra={"event": "tx_bumped", "key": intent.key, "job_id": intent.job_id,
                                                  "tx_hash": tx_hash, "nonce": nonce})
        self._broadcast(tx_hash, raw)

    def _replay_reason(self, intent: Intent, block: int) -> str:
        """Why a mined transaction reverted: replay it as a call on the parent block."""
        try:
            self.w3.eth.call({"from": self.address, "to": self.w3.to_checksum_address(intent.to),
                              "data": intent.data, "value": intent.value}, block - 1)
        except Exception as exc:
            return revert_reason(exc) or "reverted on chain"
        return "reverted on chain (not reproducible as a call)"


def dumps(intent: Intent) -> str:
    """JSON form of an intent for logs and the CLI."""
    return json.dumps(intent.__dict__, sort_keys=True)
