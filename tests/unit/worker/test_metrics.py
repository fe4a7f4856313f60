"""/metrics and /healthz over real HTTP: names present, health flips with the chain and the cursor."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from worker.runtime.metrics import DaemonMetrics, Health, MetricsServer


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_metrics_and_health_endpoints():
    metrics = DaemonMetrics("worker")
    health = Health(stale_after=60)
    server = MetricsServer(metrics, health, port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        metrics.set_jobs({"running": 1, "finalized": 3})
        metrics.head_lag.labels("worker").set(2)
        status, body = get(base + "/metrics")
        text = body.decode()
        assert status == 200
        for name in ("tessera_up", "tessera_head_lag_blocks", "tessera_jobs", "tessera_outbox_pending",
                     "tessera_job_duration_seconds", "tessera_stake_available", "tessera_rpc_errors_total",
                     "tessera_jobs_at_risk"):
            assert name in text
        assert 'tessera_jobs{daemon="worker",state="finalized"} 3.0' in text
        status, body = get(base + "/healthz")
        assert status == 503 and "chain unreachable" in json.loads(body)["reasons"][0]
        health.chain_ok, health.last_poll_at = True, time.time()
        status, body = get(base + "/healthz")
        assert status == 200 and json.loads(body)["healthy"] is True
        health.jobs_at_risk[7] = "commit failed after a reorg moved the deadline"  # shown, not unhealthy
        status, body = get(base + "/healthz")
        assert status == 200 and json.loads(body)["jobs_at_risk"] == [
            {"job_id": 7, "reason": "commit failed after a reorg moved the deadline"}]
        health.last_poll_at = time.time() - 120
        status, body = get(base + "/healthz")
        assert status == 503 and any("stale" in r for r in json.loads(body)["reasons"])
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()
