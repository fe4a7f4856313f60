"""The worker daemon with a dishonest commit (`personas.tampering`), everything else unchanged."""

from __future__ import annotations

from typing import Any

from personas import fingerprints, tampering
from worker.worker import WorkerDaemon


class DishonestWorker(WorkerDaemon):
    """Runs jobs like the honest worker, then commits what persona `behaviour` makes of the result;
    with `claim_device`, its runs' fingerprints describe that device instead of this machine."""

    def __init__(self, config: Any, *, behaviour: str, claim_device: str | None = None, **kwargs: Any) -> None:
        tampering.check_name(behaviour)
        fingerprints.check_device(claim_device)
        self._step_records: dict[int, Any] = {}  # job id -> the run's step_record metric (portable training)
        super().__init__(config, **kwargs)
        self.behaviour = behaviour
        self.claim_device = claim_device
        self.hold_dir = config.db_path("held-checkpoints")
        if behaviour == tampering.CORRUPT_OP:  # its runs and its dispute kits compute one kernel call wrong
            self.executor.runner = (*tampering.CORRUPTING_CHILD, "job_runner")

    def on_start(self) -> None:
        super().on_start()
        if self.behaviour == tampering.CORRUPT_OP and self.referee is not None:
            self.referee.kit_builder = (*tampering.CORRUPTING_CHILD, "referee_kit")

    def transform_result(self, job_id: int, result: dict[str, Any]) -> dict[str, Any]:
        # a portable training run reports the step-record skeleton its state roots bind (tamper-segment
        # names its tampered checkpoint with it, without recording a step in this process)
        self._step_records[job_id] = (result.get("metrics") or {}).get("step_record")
        if self.claim_device is None:
            return result
        from engine.determinism import fingerprint_bytes

        fingerprint = fingerprints.describe_as(result["fingerprint"], self.claim_device)
        # served like the engine's own: the fingerprint JSON under its hash in our store
        stored = self.store.put(fingerprint_bytes(fingerprint))
        return {**result, "fingerprint": fingerprint, "fingerprint_hash": stored}

    def transform_commit(self, job_id: int, args: dict[str, Any]) -> dict[str, Any]:
        record = self._step_records.get(job_id)
        skeleton = (bytes.fromhex(record["skeleton_root"][2:]), int(record["length"]), int(record["per_epoch"])) if record else None
        changed = tampering.apply(self.behaviour, args, self.store, self.hold_dir, spec=self._specs.get(job_id),
                                  skeleton=skeleton)
        self.log.warning("job %s: committing as persona %s", job_id, self.behaviour,
                         extra={"event": "persona_commit", "job_id": job_id, "behaviour": self.behaviour})
        return changed

    def _settle(self, job_id: int, chain: Any, local: str) -> None:
        from protocol.events import JobState

        if self.behaviour == "late-checkpoint" and chain == JobState.CHALLENGED:
            moved = tampering.release_held(self.store, self.hold_dir)
            if moved:
                self.log.warning("job %s: challenged, now serving the held checkpoint", job_id,
                                 extra={"event": "persona_release", "job_id": job_id})
        super()._settle(job_id, chain, local)
