"""The training child: real engine runs, results as JSON, stop before the deadline, memory limit, kill."""

from __future__ import annotations

import time

from worker.executor import Executor
from worker.testing_chain import tiny_spec


def wait(executor, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = executor.poll(job_id)
        if outcome is not None:
            return outcome
        time.sleep(0.1)
    raise AssertionError("child did not finish")


def test_runs_a_real_spec_and_returns_json_result(tmp_path):
    spec = tiny_spec(seed=3)
    executor = Executor(tmp_path / "runs", memory_limit_mb=3_000)
    executor.start(1, spec.canonical_bytes(), str(tmp_path / "store"), stop_at=time.time() + 120)
    outcome = wait(executor, 1)
    assert outcome.ok, outcome.error
    result = outcome.result
    assert result["spec_hash"] == spec.spec_hash()
    assert len(result["state_hashes"]) == spec.num_segments + 1
    # Every checkpoint and the output are in the store under their hashes.
    from protocol.artifacts import open_store

    store = open_store(str(tmp_path / "store"))
    for digest in result["state_hashes"] + [result["output_hash"], result["fingerprint_hash"]]:
        assert store.has(digest)
    # A later life of the daemon finds the same result on disk.
    assert Executor(tmp_path / "runs").read_result(1).result == result


def test_stop_time_ends_a_long_run_with_an_error(tmp_path):
    spec = tiny_spec(seed=4, steps=200_000, segment_steps=100_000)
    executor = Executor(tmp_path / "runs", memory_limit_mb=3_000, stop_grace=2)
    started = time.monotonic()
    executor.start(2, spec.canonical_bytes(), str(tmp_path / "store"), stop_at=time.time() + 6)
    outcome = wait(executor, 2, timeout=60)
    assert not outcome.ok
    assert time.monotonic() - started < 30


def test_memory_limit_is_enforced(tmp_path):
    executor = Executor(tmp_path / "runs", memory_limit_mb=256)
    executor.start(3, tiny_spec().canonical_bytes(), str(tmp_path / "store"))
    outcome = wait(executor, 3, timeout=60)
    assert not outcome.ok and outcome.error


def test_stop_kills_the_child(tmp_path):
    spec = tiny_spec(seed=5, steps=200_000, segment_steps=100_000)
    executor = Executor(tmp_path / "runs", memory_limit_mb=3_000, stop_grace=2)
    handle = executor.start(4, spec.canonical_bytes(), str(tmp_path / "store"))
    time.sleep(1.0)
    executor.stop(4)
    assert handle.process.poll() is not None
    assert 4 not in executor.running
