"""Prometheus metrics and health for the daemons, served on `/metrics` and `/healthz`.

Metric names (all prefixed `tessera_`, label `daemon` = worker | verifier | arbiter):

| name | type | meaning |
| --- | --- | --- |
| `tessera_up` | gauge | 1 while the loop runs |
| `tessera_chain_reachable` | gauge | 1 when the last RPC round succeeded |
| `tessera_head_block` | gauge | chain head seen by the cursor |
| `tessera_cursor_block` | gauge | last block read (behind `confirmations`) |
| `tessera_head_lag_blocks` | gauge | head minus cursor |
| `tessera_last_poll_timestamp_seconds` | gauge | unix time of the last successful poll |
| `tessera_jobs` | gauge, `state` | jobs this daemon tracks, by local state |
| `tessera_outbox_pending` | gauge | intents not yet final |
| `tessera_tx_total` | counter, `kind`, `outcome` | transactions by outcome (confirmed, reverted, failed, ...) |
| `tessera_tx_bumps_total` | counter | fee-bump replacements |
| `tessera_stake_available` / `tessera_stake_locked` | gauge | stake in token base units |
| `tessera_job_duration_seconds` | histogram | claim to finalization time of jobs paid to this worker |
| `tessera_rpc_errors_total` | counter | failed loop steps caused by the RPC |
| `tessera_loop_errors_total` | counter, `step` | failed loop steps of any kind |
| `tessera_reorgs_total` | counter | reorgs the cursor rolled back |
| `tessera_gpu_memory_used_bytes` / `tessera_gpu_utilization_ratio` | gauge, `gpu` | from nvidia-smi, when present |

`/healthz` answers 200 with a JSON body when healthy, 503 with the reasons when the chain is
unreachable or the cursor has not advanced for `stale_after` seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from protocol.redaction import redact


@dataclass
class Health:
    """What `/healthz` reports. The loop updates it; the HTTP thread reads it."""

    stale_after: float = 120.0
    chain_ok: bool = False
    last_chain_ok_at: float | None = None
    last_poll_at: float | None = None
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)
    # job id -> why this daemon cannot finish a job whose collateral it holds (shown, not unhealthy)
    jobs_at_risk: dict[int, str] = field(default_factory=dict)

    def reasons(self, now: float | None = None) -> list[str]:
        """Why we are unhealthy (empty when healthy)."""
        now = time.time() if now is None else now
        found = []
        if not self.chain_ok:
            found.append(f"chain unreachable: {self.last_error or 'no successful RPC yet'}")
        reference = self.last_poll_at if self.last_poll_at is not None else self.started_at
        if now - reference > self.stale_after:
            found.append(f"cursor stale: last poll {now - reference:.0f}s ago (limit {self.stale_after:.0f}s)")
        return found

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state for `/healthz`."""
        reasons = [redact(reason) for reason in self.reasons()]  # served to whoever reaches the port
        return {"healthy": not reasons, "reasons": reasons, "chain_ok": self.chain_ok,
                "last_poll_at": self.last_poll_at,
                "last_error": redact(self.last_error) if self.last_error else None,
                "jobs_at_risk": [{"job_id": k, "reason": v} for k, v in sorted(self.jobs_at_risk.items())]}


class DaemonMetrics:
    """The metric families of one daemon, in their own registry (tests can build many)."""

    def __init__(self, daemon: str, registry: CollectorRegistry | None = None) -> None:
        self.daemon = daemon
        self.registry = registry or CollectorRegistry()
        r, labels = self.registry, ["daemon"]

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels + list(extra), registry=r)

        self.up = gauge("tessera_up", "1 while the daemon loop runs")
        self.chain_reachable = gauge("tessera_chain_reachable", "1 when the last RPC round succeeded")
        self.head_block = gauge("tessera_head_block", "chain head block seen by the cursor")
        self.cursor_block = gauge("tessera_cursor_block", "last block read by the cursor")
        self.head_lag = gauge("tessera_head_lag_blocks", "head block minus cursor block")
        self.last_poll = gauge("tessera_last_poll_timestamp_seconds", "unix time of the last successful poll")
        self.jobs = gauge("tessera_jobs", "jobs tracked by this daemon, by local state", ("state",))
        self.outbox_pending = gauge("tessera_outbox_pending", "transaction intents not yet final")
        self.jobs_at_risk = gauge("tessera_jobs_at_risk", "claimed jobs this worker cannot finish (collateral at risk)")
        self.stake_available = gauge("tessera_stake_available", "available stake, token base units")
        self.stake_locked = gauge("tessera_stake_locked", "locked stake, token base units")
        self.gpu_memory = gauge("tessera_gpu_memory_used_bytes", "GPU memory in use", ("gpu",))
        self.gpu_util = gauge("tessera_gpu_utilization_ratio", "GPU utilisation 0..1", ("gpu",))
        self.tx_total = Counter("tessera_tx_total", "transactions by outcome", labels + ["kind", "outcome"], registry=r)
        self.tx_bumps = Counter("tessera_tx_bumps_total", "fee-bump replacements", labels, registry=r)
        self.rpc_errors = Counter("tessera_rpc_errors_total", "loop steps failed by the RPC", labels, registry=r)
        self.loop_errors = Counter("tessera_loop_errors_total", "loop steps failed", labels + ["step"], registry=r)
        self.reorgs = Counter("tessera_reorgs_total", "reorgs rolled back by the cursor", labels, registry=r)
        self.job_duration = Histogram(
            "tessera_job_duration_seconds", "claim to finalization time of jobs paid to this worker", labels,
            registry=r,
            buckets=(5, 15, 30, 60, 120, 300, 900, 1_800, 3_600, 7_200, 21_600, 86_400),
        )
        self.up.labels(daemon).set(0)

    def set_jobs(self, counts: dict[str, int]) -> None:
        """Replace the jobs-by-state gauge with `counts`."""
        self.jobs.clear()
        for state, count in counts.items():
            self.jobs.labels(self.daemon, state).set(count)

    def sample_gpus(self, timeout: float = 5.0) -> None:
        """Fill the GPU gauges from `nvidia-smi` when it exists (no torch in the daemon process)."""
        exe = shutil.which("nvidia-smi")
        if not exe:
            return
        try:
            out = subprocess.run(
                [exe, "--query-gpu=index,memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=timeout, check=True,
            ).stdout
        except (subprocess.SubprocessError, OSError):
            return
        for line in out.strip().splitlines()[:64]:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 3:
                continue
            try:
                index, mem_mib, util = parts[0], float(parts[1]), float(parts[2])
            except ValueError:
                continue
            self.gpu_memory.labels(self.daemon, index).set(mem_mib * 1024 * 1024)
            self.gpu_util.labels(self.daemon, index).set(util / 100.0)

    def exposition(self) -> bytes:
        """The Prometheus text format of this registry."""
        return generate_latest(self.registry)


class MetricsServer:
    """A small threaded HTTP server: `/metrics` (Prometheus text) and `/healthz` (JSON, 200 or 503)."""

    def __init__(self, metrics: DaemonMetrics, health: Health, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics, self.health = metrics, health
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, outer.metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    snap = outer.health.snapshot()
                    self._reply(200 if snap["healthy"] else 503, json.dumps(snap).encode(), "application/json")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep scrapes out of the daemon log
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.httpd.server_address[1])

    def start(self) -> "MetricsServer":
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
