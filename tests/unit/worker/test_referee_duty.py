"""worker/referee_duty.py without a chain: a duty is written once and read back by a fresh instance (a
restart), a finished duty is no longer played, a referee move whose game's kit is not loaded is asked
about again later (the outbox's still-needed check raises instead of answering), and a kit child that
keeps failing is started at most MAX_BUILD_FAILURES times, and twin duties (the same segment, spec and
checkpoint) share one kit child. (tests/e2e/test_refereed_disputes.py plays
whole games with both daemons.)"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from protocol.errors import DisputeError
from worker.referee_duty import CHECKPOINT_BIN, MAX_BUILD_FAILURES, RefereeDuties

# a stand-in kit child (`python -c`, then the builder's arguments): writes its --out in builds.log beside the
# duties, takes a moment, and writes a roots-only kit whose roots are its checkpoint's and segment's digests
FAKE_BUILDER = """
import hashlib, sys, time
from pathlib import Path
from protocol import referee_kit as rk
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = Path(args["--out"])
with open(out.parents[2] / "builds.log", "a") as log:
    log.write(str(out) + "\\n")
time.sleep(0.3)
seed = Path(args["--checkpoint"]).read_bytes() + args["--segment"].encode()
roots = [hashlib.sha256(seed + bytes([n])).digest() for n in range(3)]
rk.write_kit(out, rk.DisputeKit(segment=int(args["--segment"]), start_step=0, state_roots=roots,
                                skeleton_root=b"\\x5a" * 32, record_length=7))
"""

SKELETON = (b"\x5a" * 32, 7, 9)  # (S, L, per_epoch)


class FakeDaemon:
    def __init__(self) -> None:
        self.log = logging.getLogger("test.referee_duty")
        self.stopping = False
        self.client = SimpleNamespace()

    def isolated(self, key, fn, *args) -> int:
        fn(*args)
        return 0


def _duties(tmp_path: Path) -> RefereeDuties:
    return RefereeDuties(FakeDaemon(), "defender", tmp_path / "referee", tmp_path / "store")


def test_a_duty_is_written_once_and_survives_a_restart(tmp_path: Path) -> None:
    first = _duties(tmp_path)
    duty = first.add(5, 2, 1, b'{"spec": 1}', b"checkpoint bytes", SKELETON, 40)
    again = first.add(5, 2, 1, b'{"other": 2}', b"other bytes", (b"\x00" * 32, 1), 41)  # idempotent: kept as it is
    assert again == duty and (duty.directory / CHECKPOINT_BIN).read_bytes() == b"checkpoint bytes"
    restarted = _duties(tmp_path)
    [loaded] = restarted.open_duties()
    assert (loaded.dispute_id, loaded.job_id, loaded.segment, loaded.role, loaded.skeleton, loaded.from_block) == (
        5, 2, 1, "defender", SKELETON, 40)
    restarted.finished(loaded, "dispute 5 (segment 1, worker_right)")
    assert restarted.open_duties() == [] and restarted.has(5) and _duties(tmp_path).open_duties() == []


def test_a_move_of_a_game_not_loaded_yet_is_asked_about_again(tmp_path: Path) -> None:
    duties = _duties(tmp_path)
    intent = SimpleNamespace(key="referee:0xhost:9:steps:1:0:post")
    with pytest.raises(DisputeError, match="no referee game of ours is loaded"):
        duties._move_still_needed(intent)
    duties._games[9] = 5
    with pytest.raises(DisputeError, match="kit is not loaded"):
        duties._move_still_needed(intent)
    duties._players[5] = (None, SimpleNamespace(still_needed=lambda it: it.key.endswith(":post")))
    assert duties._move_still_needed(intent) is True


def test_a_failing_kit_child_is_started_a_bounded_number_of_times(tmp_path: Path) -> None:
    duties = _duties(tmp_path)
    duty = duties.add(3, 1, 0, b"not a spec", b"not a checkpoint", SKELETON, 0)
    children: set[int] = set()
    give_up = time.monotonic() + 30
    while duties._failures.get(3, 0) < MAX_BUILD_FAILURES or 3 in duties._children:
        assert duties._kit(duty, None) is None  # no kit while a child builds or after it failed
        if 3 in duties._children:
            children.add(duties._children[3][0].pid)
        assert time.monotonic() < give_up, "the kit child never failed"
        time.sleep(0.05)
    assert duties._kit(duty, None) is None and 3 not in duties._children  # given up: no fourth child
    assert len(children) == MAX_BUILD_FAILURES == duties._failures[3]
    assert "error" in (duty.directory / "kit-child.log").read_text().lower()


def test_a_finished_duty_whose_dispute_a_reorg_reopened_is_taken_up_again(tmp_path: Path) -> None:
    """The settle that closed dispute 5 was orphaned: after the daemon's reorg the duty is open again (its
    reopened moves need a loaded player); dispute 6 stays closed, and without a reorg nothing is read."""
    from protocol.events import DisputeStatus

    duties = _duties(tmp_path)
    for dispute_id in (5, 6):
        duties.finished(duties.add(dispute_id, 2, 0, b"{}", b"checkpoint", SKELETON, 40), "closed")
    status = {5: DisputeStatus.REVEALED, 6: DisputeStatus.WORKER_RIGHT}
    reads: list[int] = []

    def dispute(dispute_id: int):
        reads.append(dispute_id)
        return SimpleNamespace(status=status[dispute_id], label="")

    duties.daemon.client.dispute = dispute
    duties.tick()  # no reorg seen: no duty reads its dispute
    assert reads == [] and duties.open_duties() == []
    duties.on_reorg()
    assert duties.reopen_reorged() == [5] and [d.dispute_id for d in duties.open_duties()] == [5]
    assert sorted(reads) == [5, 6]


def _all_kits(duties: RefereeDuties, wanted: list, timeout: float = 30.0) -> dict[int, object]:
    kits: dict[int, object] = {}
    give_up = time.monotonic() + timeout
    while len(kits) < len(wanted):
        for duty in wanted:
            kit = duties._kit(duty, None)
            if kit is not None:
                kits[duty.dispute_id] = kit
        assert time.monotonic() < give_up, f"kits of {sorted(kits)} only"
        time.sleep(0.05)
    return kits


def test_twin_duties_share_one_replay_and_others_get_their_own(tmp_path: Path) -> None:
    """Challenges 1, 2 and 5 of one segment (the same spec and checkpoint): one kit child, the others wait for
    it and copy its roots; 3 (another checkpoint) and 4 (another segment) are built by children of their
    own. After a restart, a twin whose kit is gone takes it from disk at once, with no child."""
    duties = _duties(tmp_path)
    duties.kit_builder = ("-c", FAKE_BUILDER)
    same = [duties.add(n, 1, 0, b'{"spec": 1}', b"h_0", SKELETON, 0) for n in (1, 2, 5)]
    other_checkpoint = duties.add(3, 1, 0, b'{"spec": 1}', b"another h_0", SKELETON, 0)
    other_segment = duties.add(4, 1, 1, b'{"spec": 1}', b"h_0", SKELETON, 0)
    kits = _all_kits(duties, [*same, other_checkpoint, other_segment])
    builds = (tmp_path / "builds.log").read_text().split()
    assert sorted(builds) == sorted(str(d.kit_dir) for d in (same[0], other_checkpoint, other_segment)), builds
    roots = {n: kit.state_roots for n, kit in kits.items()}
    assert roots[1] == roots[2] == roots[5] and len({roots[1][0], roots[3][0], roots[4][0]}) == 3

    import shutil

    shutil.rmtree(same[1].kit_dir)
    restarted = _duties(tmp_path)
    restarted.kit_builder = ("-c", "raise SystemExit(3)")  # no child may be needed
    kit = restarted._kit(same[1], None)
    assert kit is not None and kit.state_roots == roots[1] and not restarted._children
    assert (tmp_path / "builds.log").read_text().split() == builds


def test_a_duty_of_another_spec_is_no_twin(tmp_path: Path) -> None:
    """A duty waits only for a twin's child: the child of a duty with the same segment and checkpoint but
    another spec does not hold it up."""
    duties = _duties(tmp_path)
    duties.kit_builder = ("-c", FAKE_BUILDER)
    first = duties.add(1, 1, 0, b'{"spec": 1}', b"h_0", SKELETON, 0)
    other = duties.add(2, 1, 0, b'{"spec": 2}', b"h_0", SKELETON, 0)  # another spec: not a twin
    assert duties._kit(first, None) is None and duties._kit(other, None) is None
    assert set(duties._children) == {1, 2}
    _all_kits(duties, [first, other])
