"""When a job is ours again after a reorg, does the trace we computed still fit it (issue 16)?

The worker's state machine on fakes (no chain, no child): a trace fits the job only while the job under
its id has the spec the trace was computed for and every checkpoint and the output are still in our
store; otherwise the job is run again, never committed as is. A job whose id another job took on the new
branch is not claimed unscreened.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from protocol.artifacts import LocalStore
from protocol.events import JobState
from protocol.hashing import DIVERGED_HASH
from worker.policy import Machine
from worker.runtime.config import WorkerConfig
from worker.worker import WorkerDaemon

SPEC = "0x" + "ab" * 32
OTHER_SPEC = "0x" + "cd" * 32


@pytest.fixture
def daemon(tmp_path):
    worker = WorkerDaemon(WorkerConfig(data_dir=tmp_path / "data", store=str(tmp_path / "store")),
                          machine=Machine("cpu"))
    worker.store = LocalStore(tmp_path / "store")
    worker.open_db()
    yield worker
    worker.db.close()


def stored_trace(store: LocalStore) -> dict:
    """A run result whose checkpoints and output are in `store`."""
    hashes = [store.put(f"checkpoint {i}".encode()) for i in range(3)]
    return {"spec_hash": SPEC, "state_hashes": hashes, "output_hash": store.put(b"output")}


def view_of(spec_hash: str = SPEC, deadline: int = 1_000) -> SimpleNamespace:
    from protocol.events import Job

    return SimpleNamespace(job=Job(spec_hash=spec_hash, deadline=deadline, worker="0x" + "11" * 20))


def test_a_trace_fits_only_the_spec_and_the_store_it_was_computed_for(daemon):
    result = stored_trace(daemon.store)
    row = {"result": json.dumps(result)}
    assert daemon._unfit(view_of(), row) is None
    assert "spec" in daemon._unfit(view_of(OTHER_SPEC), row)  # another job under the id
    daemon.store.path_of(result["state_hashes"][1]).unlink()  # pruned since the run
    assert "no longer in our store" in daemon._unfit(view_of(), row)
    diverged = {**result, "state_hashes": [result["state_hashes"][0], DIVERGED_HASH, DIVERGED_HASH],
                "output_hash": DIVERGED_HASH}  # markers, never artifacts: nothing to serve
    assert daemon._unfit(view_of(), {"result": json.dumps(diverged)}) is None


def test_a_trace_that_no_longer_fits_is_run_again_not_committed(daemon, monkeypatch):
    result = stored_trace(daemon.store)
    daemon.store.path_of(result["output_hash"]).unlink()
    daemon._set(7, "committed", None, spec_hash=SPEC, result=json.dumps(result), commit_args=json.dumps({}))
    daemon.executor.result_path(7).write_text(json.dumps({"result": result}))  # the old run's result file
    started = []
    monkeypatch.setattr(daemon, "_start_run", lambda job_id, chain, row: started.append(job_id))
    daemon._rerun(7, view_of(), daemon._unfit(view_of(), daemon._row(7)))
    row = daemon._row(7)
    assert started == [7] and row["state"] == "running"  # a new child, not the old result from disk
    assert row["result"] is None and row["commit_args"] is None
    assert not daemon.executor.result_path(7).exists()


def test_an_id_another_job_took_on_the_new_branch_is_not_claimed_unscreened(daemon):
    retried = []
    daemon.client = SimpleNamespace(job=lambda job_id: view_of(OTHER_SPEC))
    daemon.outbox = SimpleNamespace(get=lambda key: SimpleNamespace(done=True, succeeded=False),
                                    retry=lambda key, request: retried.append(key))
    daemon._set(9, "committed", None, spec_hash=SPEC)
    daemon._settle(9, JobState.OPEN, "committed")
    row = daemon._row(9)
    assert row["state"] == "lost" and "not claimed unscreened" in row["reason"]
    assert retried == []


def test_an_id_reposted_with_other_terms_on_the_new_branch_is_not_claimed_unscreened(daemon):
    """The same spec posted twice with other terms (here: twice the collateral), the posts reordered by a
    reorg: the job under our id is not the one we screened, so it is not claimed again blindly."""
    from protocol.events import Job
    from worker.worker import _terms

    screened = Job(submitter="0x" + "22" * 20, payment=5, collateral=10, spec_hash=SPEC, num_segments=2,
                   env_class="0x" + "ee" * 32, segment_seconds=6)
    retried = []
    daemon.outbox = SimpleNamespace(get=lambda key: SimpleNamespace(done=True, succeeded=False),
                                    retry=lambda key, request: retried.append(key))
    daemon._set_meta("terms:9", _terms(screened))
    daemon._set(9, "committed", None, spec_hash=SPEC)
    daemon.client = SimpleNamespace(job=lambda job_id: SimpleNamespace(job=screened.model_copy(update={"collateral": 20})))
    daemon._settle(9, JobState.OPEN, "committed")
    assert daemon._row(9)["state"] == "lost" and "not claimed unscreened" in daemon._row(9)["reason"]
    assert retried == []
    daemon._set(9, "committed", None, spec_hash=SPEC)  # the same terms come back: claimed again
    daemon.client = SimpleNamespace(job=lambda job_id: SimpleNamespace(job=screened),
                                    build_claim=lambda job_id, job: "claim")
    daemon._settle(9, JobState.OPEN, "committed")
    assert daemon._row(9)["state"] == "claiming" and retried == ["claim:9"]
