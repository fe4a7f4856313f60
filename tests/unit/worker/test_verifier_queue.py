"""The verifier's queue order (earliest challenge deadline first) on fakes: a failed read is not
remembered as "last for good", and a commit mined again is ordered by its new deadline."""

from __future__ import annotations

from types import SimpleNamespace

from worker.verifier import VerifierConfig, VerifierDaemon


def test_a_failed_deadline_read_is_asked_again_and_a_recommit_is_reordered(tmp_path, monkeypatch) -> None:
    daemon = VerifierDaemon(VerifierConfig(data_dir=tmp_path))
    monkeypatch.setattr(daemon, "_jobs_in", lambda *states: [1, 2])
    deadlines = {1: 50, 2: 100}
    failing = {1}

    def job(job_id: int) -> SimpleNamespace:
        if job_id in failing:
            failing.discard(job_id)
            raise ConnectionError("RPC hiccup")
        return SimpleNamespace(job=SimpleNamespace(challenge_end=deadlines[job_id]))

    daemon.client = SimpleNamespace(job=job)
    assert daemon._pending_queue() == [2, 1]  # unknown this tick: last
    assert daemon._pending_queue() == [1, 2]  # read again: the earliest deadline goes first
    deadlines[1] = 500  # a reorg mined job 1's commit again, later: its JobCommitted event says so
    monkeypatch.setattr(daemon, "_row", lambda job_id: {"result_root": "0x" + "aa" * 32})
    daemon.handle_event(SimpleNamespace(name="JobCommitted", job_id=1, result_root="0x" + "AA" * 32, worker="0x0"))
    assert daemon._pending_queue() == [2, 1]
