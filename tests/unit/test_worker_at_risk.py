"""A restarted worker reports again the jobs it claimed and can no longer finish (issue 16/17 follow-up).

The report lives in memory (log, `tessera_jobs_at_risk`, `jobs_at_risk` in /healthz); the job's row
says `failed`. After a restart, a failed job whose claim is still ours on chain is at risk again; a
failed job that is not (never claimed by us) is not.
"""

from __future__ import annotations

TOKEN = 10**18


def worker_daemon(anvil, w3, deployment, worker, data_dir, monkeypatch):
    from worker import judging
    from worker.runtime.config import WorkerConfig
    from worker.worker import WorkerDaemon

    # no judge child needed to name this machine's class: the test never runs a job
    monkeypatch.setattr(judging, "describe_environment", lambda device, *a, **k: judging.Environment(
        env_class="0x" + "11" * 32, descriptor={}, device=device))
    config = WorkerConfig(network=anvil.rpc_url, confirmations=0, poll_interval=0.05, start_block=0,
                          data_dir=data_dir, store=str(data_dir / "store"), device_class="cpu")
    daemon = WorkerDaemon(config, w3=w3, account=worker, deployment=deployment)
    daemon.open()
    daemon.on_start()
    return daemon


def test_a_restarted_worker_reports_its_failed_claimed_jobs_at_risk_again(tmp_path, anvil, w3, deployment,
                                                                           client_of, submitter, worker,
                                                                           monkeypatch):
    from protocol.hashing import sha256_hex

    sub, wrk = client_of(submitter), client_of(worker)
    sub.faucet(100 * TOKEN)
    wrk.faucet(100 * TOKEN)
    wrk.stake(50 * TOKEN)
    claimed = sub.post(TOKEN, 2 * TOKEN, sha256_hex(b"at risk"), 2, "file:///at-risk", segment_seconds=5).job_id
    wrk.claim(claimed)
    unclaimed = sub.post(TOKEN, 2 * TOKEN, sha256_hex(b"never ours"), 2, "file:///x", segment_seconds=5).job_id
    first = worker_daemon(anvil, w3, deployment, worker, tmp_path / "w", monkeypatch)
    try:
        for job_id in (claimed, unclaimed):
            first._set(job_id, "running")  # failed after the claim: at risk
            first._set(job_id, "failed", "run failed: killed by the memory limit")
        assert set(first.health.jobs_at_risk) == {claimed, unclaimed}
    finally:
        first.close()
    second = worker_daemon(anvil, w3, deployment, worker, tmp_path / "w", monkeypatch)
    try:
        assert second.health.jobs_at_risk == {claimed: "run failed: killed by the memory limit"}
        assert second.health.snapshot()["jobs_at_risk"] == [
            {"job_id": claimed, "reason": "run failed: killed by the memory limit"}]
        assert 'tessera_jobs_at_risk{daemon="worker"} 1.0' in second.metrics.exposition().decode()
    finally:
        second.close()
