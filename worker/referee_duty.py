"""The refereed disputes a daemon plays (docs/disputes.md, "Refereed SEGMENT claims"): the verifier as
challenger, the worker as defender, each game through the daemon's durable outbox.

One duty per dispute, on disk under `<data_dir>/referee/d<dispute id>/` so that a restart picks every game
up where it was: `duty.json` (dispute, job, segment, role, the job's step-record skeleton), `spec.json`,
`checkpoint.bin` (the agreed checkpoint h_segment) and `kit/` (the dispute kit, protocol/referee_kit.py).
The kit is built by a child process (`python -m engine.referee_kit`: the state roots of the segment
first, then the record of the step the step bisection pinned, on `KitIncompleteError`), polled each tick
so the daemon's loop never waits on torch. Twins, duties whose kits come from the same spec, segment,
checkpoint and skeleton (several challenges of one segment), share one replay: while a twin's child builds
what a duty needs the duty waits for it, and a twin's finished kit is copied, so a flood of challenges on
one segment costs its defender one replay of it inside the move window, not one a challenge. Moves are
`RefereePlayer.play` (outbox-keyed by the chain state they answer: sent once, dropped when the chain moved
past them, re-derived after a restart or a reorg); once the game is decided or escalated either party sends
`settle_refereed` (anyone may).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from protocol.errors import DisputeError, TesseraError

DUTY_JSON, SPEC_JSON, CHECKPOINT_BIN, KIT_DIR, DONE_MARK, CHILD_LOG = (
    "duty.json", "spec.json", "checkpoint.bin", "kit", "done", "kit-child.log")
SETTLE_KIND = "settle_refereed"
MAX_BUILD_FAILURES = 3  # a kit child that keeps failing (a broken store) is logged, not retried for ever
REOPEN_HORIZON_S = 86_400  # a reorg can reopen a dispute whose duty ended this recently (far deeper than any reorg)

Role = Literal["defender", "challenger"]


@dataclass(frozen=True)
class Duty:
    """One refereed dispute this daemon plays, as written in its `duty.json`."""

    dispute_id: int
    job_id: int
    segment: int
    role: Role
    skeleton_root: str  # 0x: the job's step-record skeleton S
    record_length: int  # L
    from_block: int  # where the game's logs start (the reveal's block or earlier)
    directory: Path
    per_epoch: int = 0  # the batches of one epoch (engine.api.job_skeleton), bound by every state header

    @property
    def kit_dir(self) -> Path:
        return self.directory / KIT_DIR

    @property
    def skeleton(self) -> tuple[bytes, int, int]:
        return bytes.fromhex(self.skeleton_root.removeprefix("0x")), self.record_length, self.per_epoch


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def agreed_binding(spec: Any, segment: int, skeleton: tuple[bytes, int, int]) -> Any:
    """What the agreed checkpoint h_segment's header binds (protocol.tensor_commit.StateBinding)."""
    from engine.api import checkpoint_naming

    naming = checkpoint_naming(spec, None, segment, skeleton)
    if naming is None:
        raise DisputeError("a refereed dispute needs a portable training job (its h_i are state roots)")
    return naming.binding


def referee_contracts(client: Any) -> dict[str, Any]:
    """The web3 contracts a RefereePlayer moves on ("host", "bisection", "descent") for `client`'s deployment."""
    from protocol.abi import load_abi

    w3, deployment = client.w3, client.deployment
    return {"host": client.referee_game,
            "bisection": w3.eth.contract(address=deployment.address("Bisection"), abi=load_abi("Bisection")),
            "descent": w3.eth.contract(address=deployment.address("TensorDescent"), abi=load_abi("TensorDescent"))}


class RefereeDuties:
    """The refereed games of one daemon (`role`): add a duty, then `tick()` each loop.

    `store_dir` is a local store with the job's inputs (the verifier's cache, the worker's own store): the
    kit child reads the data from it. `python` runs the child (tests pass the venv's)."""

    def __init__(self, daemon: Any, role: Role, root: Path, store_dir: Path, *, python: str = sys.executable):
        self.daemon, self.role, self.python = daemon, role, python
        self.root, self.store_dir = Path(root), Path(store_dir)
        self._children: dict[int, tuple[subprocess.Popen, int | None]] = {}  # dispute -> (child, step)
        self._failures: dict[int, int] = {}
        self._sources: dict[int, str] = {}  # dispute -> the digest of its kit's sources (`_source`)
        self._players: dict[int, tuple[int | None, Any]] = {}  # dispute -> (kit step, RefereePlayer)
        self._games: dict[int, int] = {}  # game id -> dispute id (the outbox's still-needed dispatch)
        self._refused: dict[str, int] = {}  # settle key -> times queued again after the contract refused it
        self._recheck_done = False  # a reorg was seen: look whether it reopened a finished duty's dispute
        # builds the player of a duty from its kit (a hook: a test persona steers its choices)
        self.player_factory: Callable[[Duty, Any, dict[str, Any]], Any] = self.honest_player
        # the kit child's entry after the interpreter (a hook: a test persona runs its own wrapper of it)
        self.kit_builder: tuple[str, ...] = ("-m", "engine.referee_kit")

    # ------------------------------------------------------------------ wiring

    @property
    def client(self) -> Any:
        return self.daemon.client

    @property
    def log(self) -> Any:
        return self.daemon.log

    def register(self, outbox: Any) -> None:
        from worker.referee_player import OUTBOX_KIND

        outbox.register_check(OUTBOX_KIND, self._move_still_needed)
        outbox.register_check(SETTLE_KIND, self._settle_still_needed)

    def contracts(self) -> dict[str, Any]:
        return referee_contracts(self.client)

    # ------------------------------------------------------------------ duties on disk

    def add(self, dispute_id: int, job_id: int, segment: int, spec_bytes: bytes, checkpoint: bytes,
            skeleton: tuple[bytes, int, int], from_block: int) -> Duty:  # fmt: skip
        """Write the duty of `dispute_id` (idempotent: an existing duty is kept as it is)."""
        directory = self.root / f"d{int(dispute_id)}"
        if (directory / DUTY_JSON).is_file():
            return self._load(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / SPEC_JSON, spec_bytes)
        _write_atomic(directory / CHECKPOINT_BIN, checkpoint)
        duty = {"dispute_id": int(dispute_id), "job_id": int(job_id), "segment": int(segment), "role": self.role,
                "skeleton_root": "0x" + skeleton[0].hex(), "record_length": int(skeleton[1]),
                "per_epoch": int(skeleton[2]), "from_block": int(from_block)}  # fmt: skip
        _write_atomic(directory / DUTY_JSON, json.dumps(duty, sort_keys=True).encode())  # last: the duty is whole
        self.log.info("dispute %s: referee game duty as %s (segment %s)", dispute_id, self.role, segment,
                      extra={"event": "referee_duty", "job_id": job_id})
        return self._load(directory)

    def has(self, dispute_id: int) -> bool:
        return (self.root / f"d{int(dispute_id)}" / DUTY_JSON).is_file()

    def _load(self, directory: Path) -> Duty:
        data = json.loads((directory / DUTY_JSON).read_text())
        return Duty(directory=directory, **data)

    def open_duties(self) -> list[Duty]:
        if not self.root.is_dir():
            return []
        found = [d for d in self.root.iterdir() if (d / DUTY_JSON).is_file() and not (d / DONE_MARK).exists()]
        return sorted((self._load(d) for d in found), key=lambda duty: duty.dispute_id)

    def finished(self, duty: Duty, why: str) -> None:
        """The dispute closed: stop its child and keep its files (evidence), marked done."""
        self._stop_child(duty.dispute_id)
        self._players.pop(duty.dispute_id, None)
        (duty.directory / DONE_MARK).write_text(why)
        self.log.info("dispute %s: referee duty done: %s", duty.dispute_id, why,
                      extra={"event": "referee_done", "job_id": duty.job_id})

    # ------------------------------------------------------------------ each loop

    def on_reorg(self) -> None:
        """The daemon's cursor rolled back: a dispute whose duty ended may be open again (the settle or
        the verdict that closed it was orphaned). The next tick looks (`reopen_reorged`)."""
        self._recheck_done = True

    def reopen_reorged(self) -> list[int]:
        """Take up again every duty that ended within REOPEN_HORIZON_S whose dispute is open on chain
        again: the outbox reopened its orphaned moves, and only a loaded player can judge and send them."""
        from protocol.events import DisputeStatus

        reopened = []
        horizon = time.time() - REOPEN_HORIZON_S
        for directory in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            mark = directory / DONE_MARK
            if not (directory / DUTY_JSON).is_file() or not mark.exists() or mark.stat().st_mtime < horizon:
                continue
            duty = self._load(directory)
            if self.client.dispute(duty.dispute_id).status in (DisputeStatus.FILED, DisputeStatus.REVEALED):
                mark.unlink()
                reopened.append(duty.dispute_id)
                self.log.warning("dispute %s: open again after a reorg; referee duty taken up again", duty.dispute_id,
                                 extra={"event": "referee_reopened", "job_id": duty.job_id})
        return reopened

    def tick(self) -> None:
        if self._recheck_done and self.daemon.isolated("referee duties after a reorg", self.reopen_reorged) == 0:
            self._recheck_done = False
        for duty in self.open_duties():
            if self.daemon.stopping:
                return
            self.daemon.isolated(f"referee dispute {duty.dispute_id}", self.advance, duty)

    def advance(self, duty: Duty) -> None:
        """One visit: settle a decided game, else build what the kit lacks, else play the owed move."""
        from protocol.events import DisputeStatus
        from worker.referee_player import KitIncompleteError, submit_owed

        dispute = self.client.dispute(duty.dispute_id)
        if dispute.status not in (DisputeStatus.FILED, DisputeStatus.REVEALED):
            return self.finished(duty, dispute.label)
        game = self.client.referee_game_view(duty.dispute_id)
        if game is None:
            self._kit(duty, None)  # not revealed yet (the reveal is on its way): phase 1 builds meanwhile
            return
        self._games[game.game_id] = duty.dispute_id
        if game.decided or game.escalated:
            self._stop_child(duty.dispute_id)
            if dispute.deadline == 0:  # not carried over yet (a settle a reorg made look needless is sent again)
                submit_owed(self.daemon.outbox, f"{SETTLE_KIND}:{duty.dispute_id}", SETTLE_KIND,
                            self.client.build_settle_refereed(duty.dispute_id), self._refused, job_id=duty.job_id)
            return
        player = self._player(duty)
        if player is None:
            return  # the kit child is still building
        try:
            move = player.play(self.daemon.outbox, game.game_id)
        except KitIncompleteError as exc:
            self._build(duty, exc.step)
            return
        if move is not None:
            self.log.debug("dispute %s: move %s", duty.dispute_id, move.key)

    def kit_ready(self, duty: Duty) -> bool:
        """Start (or poll) phase 1 of the kit; True once its state roots are on disk."""
        return self._kit(duty, None) is not None

    # ------------------------------------------------------------------ the kit and its child

    def honest_player(self, duty: Duty, kit: Any, contracts: dict[str, Any]) -> Any:
        from worker.referee_player import RefereePlayer

        return RefereePlayer(self.client.w3, contracts, duty.role, kit, from_block=duty.from_block)

    def _player(self, duty: Duty) -> Any:
        kit = self._kit(duty, None)
        if kit is None:
            return None
        cached = self._players.get(duty.dispute_id)
        if cached is not None and cached[0] == kit.step:
            return cached[1]
        player = self.player_factory(duty, kit, self.contracts())
        self._players[duty.dispute_id] = (kit.step, player)
        return player

    def _kit(self, duty: Duty, step: int | None) -> Any:
        """The kit on disk (None while its child builds or when it failed); a finished child is reaped."""
        from protocol import referee_kit as rk

        if not self._reap(duty):
            return None
        if not (duty.kit_dir / rk.KIT_JSON).is_file():
            self._build(duty, step)
            if not (duty.kit_dir / rk.KIT_JSON).is_file():
                return None  # a child builds it (this duty's or a twin's)
        cached = self._players.get(duty.dispute_id)
        if cached is not None:
            return cached[1].kit
        try:
            return rk.load_kit(duty.kit_dir)
        except rk.KitError as exc:  # a cut write: build it again (the child reuses nothing it cannot load)
            self.log.warning("dispute %s: kit unreadable, rebuilding: %s", duty.dispute_id, exc,
                             extra={"event": "referee_kit_bad", "job_id": duty.job_id})
            (duty.kit_dir / rk.KIT_JSON).unlink(missing_ok=True)
            self._build(duty, step)
            return None

    def _reap(self, duty: Duty) -> bool:
        """False while the duty's kit child runs; a child that ended is reaped (its failure counted)."""
        running = self._children.get(duty.dispute_id)
        if running is None:
            return True
        child, step = running
        if child.poll() is None:
            return False
        del self._children[duty.dispute_id]
        if child.returncode != 0:
            self._failures[duty.dispute_id] = self._failures.get(duty.dispute_id, 0) + 1
            log_path = duty.directory / CHILD_LOG
            tail = log_path.read_text(errors="replace")[-400:] if log_path.is_file() else ""
            self.log.warning("dispute %s: kit child (step %s) exited %s: %s", duty.dispute_id, step, child.returncode,
                             tail, extra={"event": "referee_kit_failed", "job_id": duty.job_id})
        else:
            self._players.pop(duty.dispute_id, None)  # a new phase: load it afresh
            self.log.info("dispute %s: kit built (step %s)", duty.dispute_id, step,
                          extra={"event": "referee_kit_built", "job_id": duty.job_id})
        return True

    def _build(self, duty: Duty, step: int | None) -> None:
        """Start the kit child for phase 1 (`step` None) or the record of `step` (nothing when one runs).
        A twin's kit (module docstring) that holds what is asked is copied instead, and while a twin's
        child builds it, this duty waits for that child rather than start a second one."""
        if duty.dispute_id in self._children:
            return
        twins = self._twins(duty)
        if self._adopt_twin_kit(duty, step, twins) or any(self._children.get(t.dispute_id, (None, -1))[1] == step
                                                          for t in twins):  # a twin's child builds it: wait
            return
        if self._failures.get(duty.dispute_id, 0) >= MAX_BUILD_FAILURES:
            return
        argv = [self.python, *self.kit_builder, "--spec", str(duty.directory / SPEC_JSON),
                "--store", str(self.store_dir), "--segment", str(duty.segment),
                "--checkpoint", str(duty.directory / CHECKPOINT_BIN), "--out", str(duty.kit_dir)]  # fmt: skip
        if step is not None:
            argv += ["--step", str(step)]
        with open(duty.directory / CHILD_LOG, "ab") as log_file:
            child = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._children[duty.dispute_id] = (child, step)
        self.log.info("dispute %s: building the kit (step %s) in child %s", duty.dispute_id, step, child.pid,
                      extra={"event": "referee_kit_build", "job_id": duty.job_id})

    # ------------------------------------------------------------------ twins: one kit per segment replayed

    def _source(self, duty: Duty) -> str:
        """What a duty's kit is a function of: the spec, the segment, the agreed checkpoint and the skeleton."""
        cached = self._sources.get(duty.dispute_id)
        if cached is None:
            digest = hashlib.sha256()
            for part in ((duty.directory / SPEC_JSON).read_bytes(), (duty.directory / CHECKPOINT_BIN).read_bytes(),
                         f"{duty.segment}:{duty.skeleton_root}:{duty.record_length}:{duty.per_epoch}".encode()):
                digest.update(hashlib.sha256(part).digest())
            cached = self._sources[duty.dispute_id] = digest.hexdigest()
        return cached

    def _twins(self, duty: Duty) -> list[Duty]:
        """The other duties (open or done) whose kit is built from the same sources as `duty`'s."""
        found = []
        for directory in sorted(self.root.iterdir()):
            if directory == duty.directory or not (directory / DUTY_JSON).is_file():
                continue
            other = self._load(directory)
            if self._source(other) == self._source(duty):
                found.append(other)
        return found

    def _adopt_twin_kit(self, duty: Duty, step: int | None, twins: list[Duty]) -> bool:
        """Copy a twin's kit that holds what `step` asks for (its state roots; with `step`, that step's record)
        into `duty`'s; True when one was copied. A step's record is not taken from a twin whose child runs (it
        may be writing another step's); the state roots, kit.json's alone, are."""
        from protocol import referee_kit as rk

        for twin in twins:
            if (step is not None and twin.dispute_id in self._children) or not (twin.kit_dir / rk.KIT_JSON).is_file():
                continue
            try:
                kit = rk.load_kit(twin.kit_dir)
            except rk.KitError:
                continue
            if step is None:
                kit = rk.DisputeKit(segment=kit.segment, start_step=kit.start_step, state_roots=kit.state_roots,
                                    skeleton_root=kit.skeleton_root, record_length=kit.record_length,
                                    job_constants=kit.job_constants)  # fmt: skip
            elif kit.step != step:
                continue
            rk.write_kit(duty.kit_dir, kit)
            self._players.pop(duty.dispute_id, None)
            self.log.info("dispute %s: kit (step %s) taken from dispute %s (the same segment, spec and checkpoint)",
                          duty.dispute_id, step, twin.dispute_id, extra={"event": "referee_kit_built", "job_id": duty.job_id})
            return True
        return False

    def _stop_child(self, dispute_id: int) -> None:
        running = self._children.pop(dispute_id, None)
        if running is not None and running[0].poll() is None:
            running[0].terminate()
            try:
                running[0].wait(timeout=5)
            except subprocess.TimeoutExpired:
                running[0].kill()

    def stop(self) -> None:
        """On drain: stop every kit child (a restart builds again from what is on disk)."""
        for dispute_id in list(self._children):
            self._stop_child(dispute_id)

    # ------------------------------------------------------------------ still needed?

    def _move_still_needed(self, intent: Any) -> bool:
        """A referee move is still needed when its game's player still owes exactly it (raises, so the
        outbox asks again later, while that player's kit is not loaded yet)."""
        parts = intent.key.split(":")
        dispute_id = self._games.get(int(parts[2])) if len(parts) == 7 and parts[2].isdigit() else None
        if dispute_id is None:
            raise DisputeError(f"{intent.key}: no referee game of ours is loaded yet")
        cached = self._players.get(dispute_id)
        if cached is None:
            raise DisputeError(f"{intent.key}: its game's kit is not loaded yet")
        return bool(cached[1].still_needed(intent))

    def _settle_still_needed(self, intent: Any) -> bool:
        from protocol.events import DisputeStatus

        dispute_id = int(intent.key.rsplit(":", 1)[1])
        dispute = self.client.dispute(dispute_id)
        game = self.client.referee_game_view(dispute_id)
        return (dispute.status == DisputeStatus.REVEALED and dispute.deadline == 0 and game is not None
                and (game.decided or game.escalated))


def load_spec_bytes(store: Any, spec_hash: str, max_bytes: int = 1_000_000) -> bytes:
    """A job's canonical spec from a local store (sha256-checked), for a duty's `spec.json`."""
    try:
        return store.get(spec_hash, max_bytes=max_bytes)
    except TesseraError as exc:
        raise DisputeError(f"spec {spec_hash} is not in the local store: {exc}") from None

