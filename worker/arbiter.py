"""The arbiter: settle a disputed segment by recomputing it (level-1 disputes, docs/disputes.md).

On `Challenged` the arbiter reads the pinned pair (segment i, h_i, h_{i+1}) from the Disputes contract,
fetches checkpoint h_i from the worker's committed store, checks environments, replays segment i with
`engine.api.replay_segment` and calls `verdict` within the arbiter window. The rules, in order:

1. checkpoint h_i cannot be fetched, or its bytes do not hash to h_i → the worker loses;
2. the worker's environment fingerprint cannot be fetched, or does not hash to what it committed → the
   worker loses (it committed to an environment it cannot show);
3. the fingerprints differ in a field that decides bits, and the job is not portable → refuse to rule
   and say why (the arbiter stays silent, the contract's timeout returns the bond and the job goes back
   to Committed): a replay on different hardware proves nothing;
4. otherwise replay: reached h_{i+1} → the worker was right (the bond goes to it), else the worker loses.

Every ruling is written as a JSON evidence artifact in the arbiter's store (fingerprints, recomputed
hash, reason) and named in the verdict call (`recomputed_hash`, `evidence_uri`).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from protocol.errors import ArtifactError, CheckpointError, ConfigError, HashMismatchError
from worker.runtime.config import DaemonConfig
from worker.runtime.daemon import Daemon
from worker.verifier import (
    EVIDENCE_FRAGMENT,
    ZERO_HASH,
    fetch_fingerprint,
    fetch_spec,
    own_fingerprint,
    resolve_device,
    stage_inputs,
    warm_engine,
)

# Fingerprint fields that describe the run but do not decide a single bit of the result. Everything else
# (torch/CUDA/cuDNN versions, device name and capability, determinism flags, thread count, dtype ...)
# must match for a replay to be a proof.
NON_DETERMINING_FIELDS = frozenset({"hostname", "host", "created_at", "timestamp", "pid", "python_executable",
                                    "platform_release", "wall_s"})


class Decision(str, enum.Enum):
    """What the arbiter does about one dispute."""

    WORKER_WRONG = "worker_wrong"
    WORKER_RIGHT = "worker_right"
    REFUSE = "refuse"  # no verdict: the contract's timeout settles it (bond back, job back to Committed)


class CheckpointState(str, enum.Enum):
    """How fetching checkpoint h_i from the worker's store went."""

    OK = "ok"
    MISSING = "missing"
    WRONG_HASH = "wrong_hash"


class Ruling(BaseModel):
    """The arbiter's decision with its reason and the hash it recomputed (0x00… when it did not replay)."""

    decision: Decision
    reason: str
    recomputed_hash: str = ZERO_HASH

    @property
    def worker_wrong(self) -> bool:
        return self.decision is Decision.WORKER_WRONG


def fingerprint_differences(worker_fp: Mapping[str, Any], own_fp: Mapping[str, Any]) -> list[str]:
    """Fields (dotted paths) that decide bits and differ between two environment fingerprints."""
    differences: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                if key in NON_DETERMINING_FIELDS:
                    continue
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif a != b:
            differences.append(f"{path}: worker {a!r} vs arbiter {b!r}")

    walk(worker_fp, own_fp, "")
    return differences


def rule_before_replay(
    checkpoint: CheckpointState,
    worker_fingerprint: Mapping[str, Any] | None,
    own_fingerprint: Mapping[str, Any],
    *,
    portable: bool,
    fingerprint_detail: str = "",
) -> Ruling | None:
    """Rules 1–3: a ruling when one can be made without replaying, else None (go and replay).

    `worker_fingerprint` is None when the committed fingerprint artifact could not be fetched or did
    not hash to the committed value (`fingerprint_detail` says which).
    """
    if checkpoint is CheckpointState.MISSING:
        return Ruling(decision=Decision.WORKER_WRONG, reason="checkpoint h_i unavailable from the worker's store")
    if checkpoint is CheckpointState.WRONG_HASH:
        return Ruling(decision=Decision.WORKER_WRONG, reason="checkpoint served for h_i does not hash to h_i")
    if worker_fingerprint is None:
        return Ruling(decision=Decision.WORKER_WRONG,
                      reason=f"committed environment fingerprint unavailable or wrong ({fingerprint_detail})")
    differences = fingerprint_differences(worker_fingerprint, own_fingerprint)
    if differences and not portable:
        return Ruling(decision=Decision.REFUSE,
                      reason="environment fingerprints differ and the job is not portable: "
                             + "; ".join(differences[:8]))
    return None


def rule_after_replay(recomputed_hash: str, h_next: str) -> Ruling:
    """Rule 4: the replay from h_i reached `recomputed_hash`; the worker committed `h_next`."""
    recomputed, committed = recomputed_hash.lower(), h_next.lower()
    if recomputed == committed:
        return Ruling(decision=Decision.WORKER_RIGHT, reason="replay reached the committed h_{i+1}",
                      recomputed_hash=recomputed)
    return Ruling(decision=Decision.WORKER_WRONG,
                  reason=f"replay reached {recomputed}, worker committed {committed}", recomputed_hash=recomputed)


class Evidence(BaseModel):
    """The JSON artifact an arbiter stores for each ruling and names in its verdict (`evidence_uri`)."""

    version: int = 1
    chain_id: int
    disputes: str
    job_id: int
    segment: int
    h_i: str
    h_next: str
    challenger: str
    worker: str
    decision: Decision
    reason: str
    recomputed_hash: str
    checkpoint: CheckpointState
    worker_fingerprint_hash: str
    worker_fingerprint: dict[str, Any] | None = None
    arbiter_fingerprint_hash: str | None = None
    arbiter_fingerprint: dict[str, Any] = Field(default_factory=dict)
    portable: bool = False
    replay_wall_s: float | None = None

    def canonical_bytes(self) -> bytes:
        """Sorted keys, no spaces: the stored bytes (their sha256 names the artifact)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def evidence_uri(store_uri: str, evidence_hash: str) -> str:
    """`<arbiter store URI>#evidence=<hash>`: where anyone can fetch and check the evidence."""
    return f"{store_uri}{EVIDENCE_FRAGMENT}{evidence_hash}"


# ---------------------------------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------------------------------

ARBITER_STATES = ("pending", "ruling", "ruled", "refused", "missed", "closed", "error")


class ArbiterConfig(DaemonConfig):
    """The arbiter's replay settings on top of the common daemon settings (`[arbiter]` table)."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where replays run")
    rule_margin: float = Field(2.0, ge=0, description="do not send a verdict with less than this left (s)")
    max_checkpoint_bytes: int = Field(2 * 1024**3, ge=1_024, description="largest checkpoint we download")
    max_spec_bytes: int = Field(1_000_000, ge=1_024, description="largest spec we download")
    fetch_timeout: float = Field(30.0, gt=0, le=600, description="seconds per artifact download")
    cache_dir: str | None = Field(None, description="local store for fetched checkpoints (default data_dir/cache)")


class ArbiterDaemon(Daemon):
    """Rules every dispute of the deployment it is the arbiter of, within the arbiter window.

    One row per dispute (`arbiter_disputes`, keyed by job id and arbiter deadline, since a job whose
    worker was found right can be challenged again): each is ruled once, its evidence stored before
    the verdict is queued (outbox key `verdict:<job>:<deadline>`), so a restart never rules twice.
    """

    name = "arbiter"
    event_names = ["Challenged", "Verdict", "DisputeTimedOut"]

    def __init__(self, config: ArbiterConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config: ArbiterConfig = config
        self.client: Any = None
        self.db: Any = None
        self.cache: Any = None
        self.evidence_store: Any = None
        self._rulings: Any = None
        self._settled: set[int] = set()  # job ids in a terminal state (reconcile skips them)

    def open(self) -> None:
        super().open()
        from prometheus_client import Counter

        from protocol.artifacts import LocalStore, open_store
        from protocol.client import TesseraClient
        from worker.runtime.db import connect

        self.client = TesseraClient(self.w3, self.deployment, self.account)
        self.db = connect(self.config.db_path("arbiter-disputes.sqlite"))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS arbiter_disputes (job_id INTEGER NOT NULL, deadline INTEGER NOT NULL,"
            " state TEXT NOT NULL, decision TEXT, reason TEXT, recomputed_hash TEXT, evidence_uri TEXT,"
            " updated_at REAL NOT NULL, PRIMARY KEY (job_id, deadline))")
        self.cache = LocalStore(self.config.cache_dir or self.config.db_path("cache"))
        self.evidence_store = open_store(self.config.store)
        if self._rulings is None:
            self._rulings = Counter("tessera_arbiter_rulings_total", "disputes by ruling", ["daemon", "decision"],
                                    registry=self.metrics.registry)

    def on_start(self) -> None:
        assert self.outbox is not None, "the arbiter needs its account (it signs verdicts)"
        arbiter = self.client.param_address("Disputes", "arbiter")
        if arbiter.lower() != (self.address or "").lower():
            raise ConfigError(f"this deployment's arbiter is {arbiter}, not our account {self.address}")
        self.outbox.register_check("verdict", self._verdict_still_needed)
        warm_engine()

    # ------------------------------------------------------------------ local state

    def _set(self, job_id: int, deadline: int, state: str, reason: str = "", **fields: Any) -> None:
        if state not in ARBITER_STATES:
            raise ValueError(f"unknown arbiter state {state}")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO arbiter_disputes(job_id, deadline, state, updated_at)"
                            " VALUES (?,?,?,?)", (job_id, deadline, state, time.time()))
            sets = ", ".join(f"{k}=?" for k in ("state", "reason", "updated_at", *fields))
            self.db.execute(f"UPDATE arbiter_disputes SET {sets} WHERE job_id=? AND deadline=?",
                            (state, reason, time.time(), *fields.values(), job_id, deadline))

    def dispute_state(self, job_id: int, deadline: int | None = None) -> str | None:
        """Local state of the (latest) dispute on `job_id`."""
        if deadline is None:
            row = self.db.execute("SELECT state FROM arbiter_disputes WHERE job_id=? ORDER BY deadline DESC",
                                  (job_id,)).fetchone()
        else:
            row = self.db.execute("SELECT state FROM arbiter_disputes WHERE job_id=? AND deadline=?",
                                  (job_id, deadline)).fetchone()
        return row["state"] if row else None

    def job_counts(self) -> dict[str, int]:
        if self.db is None:
            return {}
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM arbiter_disputes GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    # ------------------------------------------------------------------ events and state

    def handle_event(self, event: Any) -> None:
        if event.name == "Challenged" and event.job_id is not None:
            if self.dispute_state(event.job_id, int(event.arbiter_deadline)) is None:
                self._set(event.job_id, int(event.arbiter_deadline), "pending", f"challenged by {event.challenger}")

    def reconcile(self) -> None:
        """State is truth: every job that is Challenged now has an open dispute we must know about."""
        from protocol.events import JobState

        for job_id in range(1, self.client.job_count() + 1):
            if job_id in self._settled:
                continue
            state = self.client.job_state(job_id)
            if state.terminal:
                self._settled.add(job_id)  # can never be challenged again: skip it from now on
            if state != JobState.CHALLENGED:
                continue
            dispute = self.client.dispute(job_id)
            if dispute.open and self.dispute_state(job_id, dispute.deadline) is None:
                self._set(job_id, dispute.deadline, "pending", "found by reconcile")

    def tick(self) -> None:
        rows = self.db.execute("SELECT job_id, deadline FROM arbiter_disputes WHERE state='pending' ORDER BY deadline")
        for row in rows.fetchall():
            if self.stopping:
                return
            job_id, deadline = int(row["job_id"]), int(row["deadline"])
            try:
                self.rule(job_id, deadline)
            except Exception as exc:
                # Transient (RPC, a slow store) or not, try again next tick: the deadline bounds the retries.
                self._set(job_id, deadline, "pending", f"retrying after {type(exc).__name__}: {exc}"[:900])
                raise

    def on_intent(self, intent: Any) -> None:
        if intent.kind == "verdict" and intent.state in ("failed", "reverted", "dropped", "skipped"):
            self.log.warning("verdict on job %s %s: %s", intent.job_id, intent.state, intent.reason,
                             extra={"event": "verdict_" + intent.state, "job_id": intent.job_id})

    # ------------------------------------------------------------------ ruling

    def rule(self, job_id: int, deadline: int) -> Ruling | None:
        """Gather the evidence for the dispute on `job_id`, decide, store the evidence, queue the verdict."""
        from protocol.artifacts import open_store
        from protocol.events import JobState

        cfg = self.config
        dispute = self.client.dispute(job_id)
        view = self.client.job(job_id)
        if not dispute.open or dispute.deadline != deadline or view.state != JobState.CHALLENGED:
            self._set(job_id, deadline, "closed", "dispute no longer open")
            return None
        if self.client.chain_time() > deadline - cfg.rule_margin:
            self._set(job_id, deadline, "missed", "arbiter window closed before we could rule")
            return None
        self._set(job_id, deadline, "ruling")
        job = view.job
        spec = fetch_spec(view.spec_uri, job.spec_hash, max_bytes=cfg.max_spec_bytes, timeout=cfg.fetch_timeout)
        worker_store = open_store(view.artifact_uri, timeout=cfg.fetch_timeout, max_bytes=cfg.max_checkpoint_bytes)
        checkpoint = CheckpointState.OK
        try:
            if not self.cache.has(dispute.h_i):
                self.cache.put(worker_store.get(dispute.h_i, max_bytes=cfg.max_checkpoint_bytes))
        except HashMismatchError:
            checkpoint = CheckpointState.WRONG_HASH
        except ArtifactError:
            checkpoint = CheckpointState.MISSING
        theirs, fp_note = fetch_fingerprint(worker_store, job.fingerprint)
        device = resolve_device(cfg.device, spec, theirs)
        mine, mine_hash = own_fingerprint(device, spec)
        portable = bool(getattr(spec, "portable", False))  # no portable mode in the engine yet: always False
        ruling = rule_before_replay(checkpoint, theirs, mine, portable=portable, fingerprint_detail=fp_note)
        replay_wall_s = None
        if ruling is None:
            from engine.api import replay_segment

            stage_inputs(spec, self.cache, [worker_store], timeout=cfg.fetch_timeout)
            started = time.perf_counter()
            try:
                recomputed = replay_segment(spec, self.cache, dispute.segment, dispute.h_i, device=device)
                ruling = rule_after_replay(recomputed, dispute.h_next)
            except CheckpointError as exc:
                checkpoint = CheckpointState.WRONG_HASH
                ruling = Ruling(decision=Decision.WORKER_WRONG,
                                reason=f"checkpoint h_i is not a valid checkpoint of this job: {exc}")
            replay_wall_s = round(time.perf_counter() - started, 3)
        evidence = Evidence(
            chain_id=int(self.deployment.chain_id), disputes=self.deployment.disputes, job_id=job_id,
            segment=dispute.segment, h_i=dispute.h_i, h_next=dispute.h_next, challenger=dispute.challenger,
            worker=job.worker, decision=ruling.decision, reason=ruling.reason,
            recomputed_hash=ruling.recomputed_hash, checkpoint=checkpoint, worker_fingerprint_hash=job.fingerprint,
            worker_fingerprint=theirs, arbiter_fingerprint_hash=mine_hash, arbiter_fingerprint=mine,
            portable=portable, replay_wall_s=replay_wall_s,
        )
        evidence_hash = self.evidence_store.put(evidence.canonical_bytes())
        uri = evidence_uri(self.config.artifact_uri, evidence_hash)
        self._rulings.labels(self.name, ruling.decision.value).inc()
        self.log.info(
            "job %s segment %s: %s (%s)", job_id, dispute.segment, ruling.decision.value, ruling.reason,
            extra={"event": "ruling", "job_id": job_id, "segment": dispute.segment, "decision": ruling.decision.value,
                   "recomputed_hash": ruling.recomputed_hash, "worker_fingerprint": job.fingerprint,
                   "arbiter_fingerprint": mine_hash, "evidence_uri": uri, "replay_wall_s": replay_wall_s},
        )
        if ruling.decision is Decision.REFUSE:
            self._set(job_id, deadline, "refused", ruling.reason, decision=ruling.decision.value, evidence_uri=uri)
            return ruling
        if self.client.chain_time() > deadline - cfg.rule_margin:
            self._set(job_id, deadline, "missed", f"ruled {ruling.decision.value} too late", evidence_uri=uri)
            return ruling
        request = self.client.build_verdict(job_id, ruling.worker_wrong, ruling.recomputed_hash, uri, job=job)
        self.outbox.submit(f"verdict:{job_id}:{deadline}", "verdict", request, job_id=job_id)
        self._set(job_id, deadline, "ruled", ruling.reason, decision=ruling.decision.value,
                  recomputed_hash=ruling.recomputed_hash, evidence_uri=uri)
        return ruling

    def _verdict_still_needed(self, intent: Any) -> bool:
        dispute = self.client.dispute(intent.job_id)
        return dispute.open and self.client.chain_time() <= dispute.deadline
