"""The worker daemon end to end on anvil: real processes, real training, real payment.

A submitter posts jobs from this process; `tessera worker run` in a child process selects, claims,
trains (in its own child), commits and finalizes them and gets paid. Also: hostile specs are
skipped while the daemon stays up, and two workers competing claim each job once.
"""

from __future__ import annotations

import json

import pytest

from protocol.events import JobState
from worker.testing import DaemonProcess
from worker.testing_chain import TOKEN, start_devnet, tiny_spec, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def devnet(tmp_path_factory, deployer):
    net = start_devnet(tmp_path_factory.mktemp("worker-devnet"), deployer)
    try:
        yield net
    finally:
        net.anvil.stop()


def stake(devnet, account, tokens=100):
    client = devnet.client(account)
    client.faucet(tokens * TOKEN)
    client.stake(tokens * TOKEN)
    return client


def fund(devnet, account, tokens=200):
    client = devnet.client(account)
    client.faucet(tokens * TOKEN)
    return client


def events_named(devnet, name, job_id):
    return [e for e in devnet.client().job_events(job_id) if e.name == name]


def _logged_finalized(log_text: str, job_id: int) -> bool:
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return any(l.get("event") == "job_state" and l.get("state") == "finalized" and l.get("job_id") == job_id
               for l in lines)


def test_worker_takes_runs_commits_finalizes_and_gets_paid(devnet, submitter, worker, tmp_path):
    stake(devnet, worker)
    fund(devnet, submitter)
    client = devnet.client()
    balance_before = client.token_balance(worker.address)
    jobs = [devnet.post(submitter, tiny_spec(seed=s)) for s in (1, 2)]
    config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                  metrics_port=0)
    with DaemonProcess("worker", config, tmp_path / "worker.log") as proc:
        devnet.finalize_soon(jobs)
        wait_until(lambda: all(client.job_state(j) == JobState.FINALIZED for j in jobs), 90,
                   what=f"jobs {jobs} finalized; log:\n{proc.log_text()[-3000:]}")
        # the worker records the payout once it sees the finalization on chain (its next poll)
        wait_until(lambda: all(_logged_finalized(proc.log_text(), j) for j in jobs), 30,
                   what=f"the worker logs jobs {jobs} as finalized; log:\n{proc.log_text()[-3000:]}")
        assert proc.terminate() == 0  # SIGTERM drains and exits cleanly
    payouts = 0
    for job_id in jobs:
        view = client.job(job_id)
        assert view.job.worker == worker.address
        assert len(events_named(devnet, "JobClaimed", job_id)) == 1
        assert len(events_named(devnet, "JobCommitted", job_id)) == 1
        (finalized,) = events_named(devnet, "JobFinalized", job_id)
        payouts += finalized.args["worker_payout"]
        # The committed artifacts are in the worker's store: the output verifies against the commit.
        from protocol.artifacts import open_store

        weights = client.fetch_result(job_id, open_store(str(tmp_path / "store")))
        assert len(weights) > 0
    assert payouts > 0
    assert client.token_balance(worker.address) - balance_before == payouts
