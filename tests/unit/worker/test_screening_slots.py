"""Screening slots per origin on fakes: one server (here a slow one) never holds more than
MAX_SCREENS_PER_ORIGIN screening threads, a phase past its budget keeps its slot until its thread ends,
and other servers' jobs start at once whatever waits."""

from __future__ import annotations

import threading

import pytest

from worker.policy import Machine
from worker.runtime.config import WorkerConfig
from worker.worker import MAX_SCREENS_PER_ORIGIN, WorkerDaemon


@pytest.fixture
def daemon(tmp_path):
    worker = WorkerDaemon(WorkerConfig(data_dir=tmp_path / "data", store=str(tmp_path / "store")),
                          machine=Machine("cpu"))
    yield worker
    worker._pool.shutdown(wait=True, cancel_futures=True)


def test_one_server_gets_at_most_its_slots_and_others_go_first(daemon):
    release = threading.Event()
    slow, fast = frozenset({"http://slow"}), frozenset({"http://fast"})
    for job_id in range(1, 6):
        daemon._screen(job_id, "spec", slow, release.wait, 30)
    running = set(daemon._screens)
    assert len(running) == MAX_SCREENS_PER_ORIGIN and set(daemon._queued_screens) == {1, 2, 3, 4, 5} - running
    daemon._screen(9, "spec", fast, lambda: "spec")  # an honest job elsewhere is not queued behind them
    assert 9 in daemon._screens and daemon._screens[9][2].result(5) == "spec"
    # a phase abandoned at its budget still holds its slot while its thread hangs on
    first = min(running)
    daemon._abandoned.append((daemon._screen_origins[first], daemon._screens[first][2]))
    daemon._end_screen(first)
    waiting = min(daemon._queued_screens)
    daemon._screen(waiting, *daemon._queued_screens[waiting][:3], *daemon._queued_screens[waiting][3])
    assert waiting in daemon._queued_screens
    release.set()
    for _, _, future in daemon._screens.values():
        future.result(5)
    daemon._abandoned[0][1].result(5)
    daemon._screen(waiting, *daemon._queued_screens[waiting][:3], *daemon._queued_screens[waiting][3])
    assert waiting in daemon._screens and waiting not in daemon._queued_screens
