"""The base daemon loop shared by the worker, verifier and arbiter.

Each iteration: reconcile from contract state when due (on start, then every `reconcile_interval`
seconds: events are hints, state is truth), poll the event cursor and hand events to
`handle_event`, let the outbox follow and send transactions, then `tick()`. Every step is guarded:
an RPC failure marks the daemon unhealthy and backs off (exponentially, capped), any other error is
logged with its traceback and counted; nothing ends the loop but a stop request. SIGTERM/SIGINT ask
for a drain: the current iteration finishes, `drain()` stops children and flushes state, then the
process exits 0.

Subclasses override the hooks `on_start`, `reconcile`, `handle_event`, `tick`, `on_intent`, `drain`
and `job_counts`. Tests may pass `w3`, `account` and `deployment` directly instead of the config's.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from protocol.errors import AccountError, ChainError, ConfigError, TesseraError
from protocol.redaction import redact
from worker.runtime.config import DaemonConfig
from worker.runtime.cursor import EventCursor, Reorg
from worker.runtime.metrics import DaemonMetrics, Health, MetricsServer
from worker.runtime.outbox import Intent, Outbox

MAX_BACKOFF = 30.0


def is_rpc_failure(exc: BaseException) -> bool:
    """True when `exc` means the chain could not be reached or answered badly (retry later)."""
    import requests
    from web3.exceptions import TimeExhausted, Web3Exception

    if isinstance(exc, (ChainError, requests.RequestException, TimeExhausted, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, Web3Exception) and "revert" not in str(exc).lower()


def resolve_passphrase_source(source: str, alias: str) -> str | None:
    """The passphrase named by a config source: `env:VAR`, `file:/path`, or None for `prompt`
    (then `protocol.accounts` asks `TESSERA_PASSPHRASE`, `TESSERA_PASSPHRASE_FILE`, or the terminal)."""
    if source.startswith("env:"):
        name = source[4:]
        if name not in os.environ:
            raise AccountError(f"passphrase for {alias!r} should come from ${name}, which is not set")
        return os.environ[name]
    if source.startswith("file:"):
        path = Path(source[5:]).expanduser()
        try:
            with open(path, encoding="utf8") as handle:
                return handle.read(4_096).rstrip("\r\n")
        except OSError as exc:
            raise AccountError(f"cannot read the passphrase file {path}: {exc}") from None
    return None


class Daemon:
    """A long-running chain follower with a durable outbox, metrics and graceful shutdown."""

    name: ClassVar[str] = "daemon"
    #: event names the cursor asks for (None = every log of the deployment's contracts)
    event_names: ClassVar[list[str] | None] = None

    def __init__(
        self,
        config: DaemonConfig,
        *,
        w3: Any = None,
        account: Any = None,
        deployment: Any = None,
        clock: Any = time.time,
    ) -> None:
        self.config = config
        self.w3 = w3
        self.account = account
        self.deployment = deployment
        self.clock = clock
        self.log = logging.getLogger(f"tessera.{self.name}")
        self.health = Health(stale_after=config.stale_after)
        self.metrics = DaemonMetrics(self.name)
        self.cursor: EventCursor | None = None
        self.outbox: Outbox | None = None
        self.server: MetricsServer | None = None
        self.iterations = 0
        self._stop = threading.Event()
        # set by `wake` (a screening thread that finished, a stop): the next iteration starts at once
        self._wake = threading.Event()
        self._stop_reason: str | None = None
        self._failures = 0
        self._last_reconcile = 0.0
        self._opened = False
        self._item_failures: dict[Any, int] = {}

    # ------------------------------------------------------------------ wiring

    @property
    def address(self) -> str | None:
        """Our account address (None for a read-only daemon)."""
        return self.account.address if self.account is not None else None

    def open(self) -> None:
        """Connect to the chain, unlock the account, load the deployment, open cursor/outbox/metrics."""
        if self._opened:
            return
        cfg = self.config
        if self.w3 is None:
            from protocol.chain import connect

            self.w3 = connect(cfg.network, timeout=cfg.rpc_timeout, check=True)
        chain_id = int(self.w3.eth.chain_id)
        if self.account is None and cfg.account:
            from protocol.accounts import keyfile_mode_warning, load_account

            warning = keyfile_mode_warning(cfg.account)
            if warning:
                self.log.warning(warning, extra={"event": "keyfile_mode", "account": cfg.account})

            passphrase = None if cfg.account.startswith("TEST::") else resolve_passphrase_source(cfg.passphrase, cfg.account)
            self.account = load_account(cfg.account, passphrase=passphrase, chain_id=chain_id)
        if self.deployment is None:
            from protocol.deploy import Deployment

            self.deployment = Deployment.load(cfg.deployment) if cfg.deployment else Deployment.for_chain(chain_id)
        if int(self.deployment.chain_id) != chain_id:
            raise ConfigError(f"deployment is for chain {self.deployment.chain_id}, the RPC serves chain {chain_id}")
        from protocol.events import decode_log, topics_of_interest

        deployment = self.deployment
        self.cursor = EventCursor(
            self.w3,
            cfg.db_path(f"{self.name}.sqlite"),
            self.contract_addresses(),
            topics=topics_of_interest(self.event_names) if self.event_names else None,
            confirmations=cfg.confirmations,
            range_size=cfg.log_range,
            start_block=max(cfg.start_block, deployment.start_block),
            decoder=lambda entry: decode_log(entry, deployment),
            on_reorg=self._on_reorg,
        )
        if self.account is not None:
            self.outbox = Outbox(
                self.w3, self.account, cfg.db_path(f"{self.name}.sqlite"), fee_cap_wei=cfg.fee_cap_wei,
                priority_fee_wei=cfg.priority_fee_wei, bump_timeout=cfg.bump_timeout,
                confirmations=cfg.confirmations, clock=self.clock, on_queued=self.wake,
            )
        if cfg.metrics_port:
            self.server = MetricsServer(self.metrics, self.health, cfg.metrics_host, cfg.metrics_port).start()
        self._opened = True

    def contract_addresses(self) -> list[str]:
        """Contracts whose logs the cursor reads (default: all of the deployment)."""
        return [record.address for record in self.deployment.contracts.values()]

    # ------------------------------------------------------------------ hooks

    def on_start(self) -> None:
        """After `open`, before the first iteration (e.g. register outbox checks)."""

    def reconcile(self) -> None:
        """Re-derive what to do from contract state (not events). Called on start and periodically."""

    def handle_event(self, event: Any) -> None:
        """React to one decoded event (a hint; must be idempotent: events can be re-delivered)."""

    def tick(self) -> None:
        """Periodic work after events and transactions (start runs, collect results, ...)."""

    def on_intent(self, intent: Intent) -> None:
        """An outbox intent changed state (sent, confirmed, reverted, failed, ...)."""

    def on_reorg(self, reorg: Reorg) -> None:
        """The cursor rolled back; the default forces a reconcile on the next iteration."""

    def drain(self) -> None:
        """Stop children and flush state before exit."""

    def job_counts(self) -> dict[str, int]:
        """Jobs tracked by local state, for the `tessera_jobs` gauge and the status line."""
        return {}

    # ------------------------------------------------------------------ loop

    def _on_reorg(self, reorg: Reorg) -> None:
        self.metrics.reorgs.labels(self.name).inc()
        self._last_reconcile = 0.0  # state may have changed under us: reconcile now
        self.on_reorg(reorg)

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the loop to finish its iteration and drain (safe from signal handlers and threads)."""
        self._stop_reason = reason
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Start the next iteration now instead of after the poll interval (safe from any thread): work
        finished off the loop (a screening phase) is acted on at once. A backoff after failures is kept."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def _guard(self, step: str, fn: Any, *args: Any) -> bool:
        """Run one step; on failure log, count, mark unhealthy if the RPC failed, and return False."""
        try:
            fn(*args)
            return True
        except Exception as exc:
            rpc = is_rpc_failure(exc)
            self.metrics.loop_errors.labels(self.name, step).inc()
            if rpc:
                self.metrics.rpc_errors.labels(self.name).inc()
                self.health.chain_ok = False
                self.health.last_error = redact(f"{type(exc).__name__}: {str(exc)}")[:300]
                self.log.warning("%s failed (RPC): %s", step, str(exc)[:300],
                                 extra={"event": "rpc_error", "step": step})
            else:
                self.log.error("%s failed: %s", step, exc, exc_info=not isinstance(exc, TesseraError),
                               extra={"event": "step_error", "step": step})
            return False

    def isolated(self, key: Any, fn: Any, *args: Any) -> int:
        """Run one item's step (a job, a dispute) so that its failure stays its own.

        Returns 0 on success, else how many times in a row this item has failed (the caller decides
        when to give up on it). An RPC failure is re-raised: it is nobody's item, the loop backs off and
        reports it. Anything else is logged (with its traceback the first time) and the loop goes on
        with the other items, so one hostile job never starves the rest.
        """
        try:
            fn(*args)
        except Exception as exc:
            if is_rpc_failure(exc):
                raise
            failures = self._item_failures.get(key, 0) + 1
            self._item_failures[key] = failures
            self.metrics.loop_errors.labels(self.name, "item").inc()
            self.log.error("%s: failed (%s in a row): %s", key, failures, exc,
                           exc_info=failures == 1 and not isinstance(exc, TesseraError),
                           extra={"event": "item_error", "item": str(key)})
            return failures
        self._item_failures.pop(key, None)
        return 0

    def _poll_events(self) -> None:
        assert self.cursor is not None
        events = self.cursor.poll()
        for event in events:
            if self._stop.is_set():
                break
            self._guard("handle_event", self.handle_event, event)
        self.cursor.ack()
        self.health.last_poll_at = time.time()

    def _process_outbox(self) -> None:
        if self.outbox is None:
            return
        for intent in self.outbox.process():
            if intent.state in ("confirmed", "reverted", "failed", "dropped", "cancelled", "skipped"):
                self.metrics.tx_total.labels(self.name, intent.kind, intent.state).inc()
            self._guard("on_intent", self.on_intent, intent)

    def run_once(self) -> bool:
        """One iteration; True when every step succeeded."""
        ok = True
        now = time.monotonic()
        if self._last_reconcile == 0.0 or now - self._last_reconcile >= self.config.reconcile_interval:
            if self._guard("reconcile", self.reconcile):
                self._last_reconcile = now
            else:
                ok = False
        ok &= self._guard("poll", self._poll_events)
        ok &= self._guard("outbox", self._process_outbox)
        ok &= self._guard("tick", self.tick)
        if ok:
            self.health.chain_ok = True
            self.health.last_chain_ok_at = time.time()
            self.health.last_error = None
        self._update_metrics()
        self.iterations += 1
        return ok

    def _update_metrics(self) -> None:
        m, name = self.metrics, self.name
        m.up.labels(name).set(1)
        m.chain_reachable.labels(name).set(1 if self.health.chain_ok else 0)
        if self.cursor is not None:
            if self.cursor.head is not None:
                m.head_block.labels(name).set(self.cursor.head)
                m.head_lag.labels(name).set(self.cursor.lag or 0)
            m.cursor_block.labels(name).set(max(self.cursor.block, 0))
        if self.health.last_poll_at:
            m.last_poll.labels(name).set(self.health.last_poll_at)
        if self.outbox is not None:
            try:
                m.outbox_pending.labels(name).set(self.outbox.pending_count())
                m.tx_bumps.labels(name)  # make the series exist
            except Exception:  # metrics must never break the loop
                pass
        try:
            m.set_jobs(self.job_counts())
        except Exception:
            pass

    def status_line(self) -> str:
        """One line for the terminal progress display."""
        head = self.cursor.head if self.cursor else None
        block = self.cursor.block if self.cursor else None
        jobs = ", ".join(f"{k} {v}" for k, v in sorted(self.job_counts().items())) or "no jobs"
        pending = self.outbox.pending_count() if self.outbox else 0
        health = "ok" if self.health.chain_ok else "chain unreachable"
        return f"[{self.name}] head {head} cursor {block} | {jobs} | pending tx {pending} | {health}"

    def _sleep(self, ok: bool) -> None:
        if ok:
            self._failures = 0
            self._wake.wait(self.config.poll_interval)
            self._wake.clear()
            return
        self._failures += 1
        self._stop.wait(min(MAX_BACKOFF, self.config.poll_interval * 2 ** min(self._failures, 10)))

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a graceful drain (main thread only)."""
        def handler(signum: int, _frame: Any) -> None:
            self.request_stop(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, *, max_iterations: int | None = None, install_signals: bool = True,
            progress: bool | None = None) -> int:
        """Open, run until stopped (or `max_iterations`), drain. Returns the process exit code."""
        if install_signals and threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()
        self.open()
        self.on_start()
        if self.outbox is not None:
            self._guard("outbox_recover", self._recover_outbox)
        progress = sys.stderr.isatty() if progress is None else progress
        status = None
        if progress:
            from rich.console import Console

            status = Console(stderr=True).status(self.status_line())
            status.start()
        self.log.info("%s started", self.name, extra={"event": "start", "address": self.address})
        try:
            while not self._stop.is_set():
                ok = self.run_once()
                if status is not None:
                    status.update(self.status_line())
                if max_iterations is not None and self.iterations >= max_iterations:
                    break
                self._sleep(ok)
        finally:
            if status is not None:
                status.stop()
            self.log.info("draining (%s)", self._stop_reason or "loop ended", extra={"event": "drain"})
            self._guard("drain", self.drain)
            self.close()
        return 0

    def _recover_outbox(self) -> None:
        assert self.outbox is not None
        for intent in self.outbox.recover():
            self._guard("on_intent", self.on_intent, intent)

    def close(self) -> None:
        """Release the metrics port and SQLite connections."""
        self.metrics.up.labels(self.name).set(0)
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.cursor is not None:
            self.cursor.close()
        if self.outbox is not None:
            self.outbox.close()
        self._opened = False
