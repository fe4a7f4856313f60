"""The arbiter: settle revealed disputes by recomputing the one thing each claims (docs/disputes.md).

Protocol v2, level 1. The arbiter publishes the environment classes it reproduces (its machine's own,
plus any CPU kernel sets listed in `cpu_capabilities`, plus the portable classes every machine
reproduces: docs/protocol.md, "Portable class"), and a job can only be posted in a published
class. For every revealed dispute it recomputes, with `worker.judging` (shared with the verifier),
exactly what the claim pins, and rules within the dispute's window. The ruling table is total and
checks the worker's data before anything else:

| claim | recomputed | ruling |
| --- | --- | --- |
| any | the job's class does not fit its spec's arithmetic (nothing fetched) | worker wrong |
| any | checkpoint it starts from missing, or its bytes do not hash to it | worker wrong |
| any | checkpoint hashes right but is not that boundary of the spec | worker wrong |
| any | an input the job needs (dataset, weights, inputs) not served by the spec's hints or the worker | worker wrong |
| SEGMENT / UNAVAILABLE i < N | replay of segment i reaches h_{i+1} / anything else (a diverging replay reaches DIVERGED_HASH) | worker right / wrong |
| SEGMENT of an escalated referee game (level 2) | one step replayed from the agreed r_t (served by the worker, checked by its root) reaches the disputed r_{t+1} / anything else, or r_t not served | worker right / wrong |
| INITIAL | the spec's checkpoint 0 hashes to h_0 / not | worker right / wrong |
| OUTPUT / UNAVAILABLE N | the output extracted from h_N hashes to the committed output / not | worker right / wrong |
| any | the arbiter cannot recompute (class not reproducible here, budget exceeded, crash) | no verdict: it logs the failure; after its window `timeout` marks the job, which is voided (the neutral outcome) unless another dispute rules it wrong |

There is no "refusal" that favours anyone: a silent arbiter voids the job (once its other disputes
close without a worker-wrong ruling), so neither the worker nor the challenger gains from making it
fail.

Two rules keep a flood of disputes cheap to judge and the reward with the first honest finder:
- one recomputation per claim: disputes that pin the same check (same job, claim, boundary and hashes,
  UNAVAILABLE counting as the SEGMENT or OUTPUT claim it stands for) share one ruling and its evidence;
- before ruling a worker wrong, the arbiter waits, while its window allows, for disputes on the job
  filed earlier and not yet revealed: the contract rewards the earliest-filed revealed challenger of a
  claim, and ruling at once would hand it to whoever revealed fastest (a copier of an honest finding).

A job's spec is fetched from its spec URI, then from the worker's store (the worker keeps the spec it
claimed there); a spec neither serves is the worker's fault (it committed to work nobody can check). Every ruling is written as a JSON evidence artifact in the
arbiter's store (claim, hashes, recomputed hash, every check result, environment) and named in the
verdict; the checkpoint a dispute was about is mirrored into that store too, so a worker that served
it only to the arbiter has published it to everyone.
"""

from __future__ import annotations

import enum
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from protocol.errors import ConfigError, TesseraError
from worker.judging import (
    ZERO_HASH,
    Check,
    ChildGroup,
    CheckKind,
    CheckResult,
    Environment,
    Outcome,
    is_own_failure,
    judge_committed,
    known_naming,
    reproducible_environments,
)
from worker.runtime.config import DaemonConfig
from worker.runtime.daemon import Daemon

EVIDENCE_FRAGMENT = "#evidence="
JUDGE_THREADS = 2
RETRY_BASE_S = 2.0  # a recomputation that failed on our side (disk, RPC) waits this long, doubled each time
RETRY_MAX_S = 60.0


class Decision(str, enum.Enum):
    """What the arbiter does about one dispute."""

    WORKER_WRONG = "worker_wrong"
    WORKER_RIGHT = "worker_right"
    CANNOT_JUDGE = "cannot_judge"  # no verdict: the dispute times out; the job is voided unless another rejects it


class Ruling(BaseModel):
    """The arbiter's decision with its reason and the hash it recomputed (0x00… when none)."""

    decision: Decision
    reason: str
    recomputed_hash: str = ZERO_HASH

    @property
    def worker_wrong(self) -> bool:
        return self.decision is Decision.WORKER_WRONG


def check_of_claim(kind: int, segment: int, h_a: str, h_b: str, num_segments: int) -> Check:
    """The one recomputation a revealed claim asks for (`Disputes.reveal` pins h_a and h_b)."""
    from protocol.events import ClaimKind

    claim = ClaimKind(kind)
    if claim is ClaimKind.INITIAL:
        return Check(kind=CheckKind.INITIAL, boundary=0, expected=h_a)
    if claim is ClaimKind.OUTPUT or (claim is ClaimKind.UNAVAILABLE and segment == num_segments):
        return Check(kind=CheckKind.OUTPUT, boundary=segment, checkpoint=h_a, expected=h_b)
    return Check(kind=CheckKind.SEGMENT, boundary=segment, checkpoint=h_a, expected=h_b)


def rule(result: CheckResult) -> Ruling:
    """The ruling table (module docstring) applied to the recomputation of the claimed value."""
    outcome = result.outcome
    if outcome.worker_wrong:
        return Ruling(decision=Decision.WORKER_WRONG, reason=f"{outcome.value}: {result.detail}"[:900],
                      recomputed_hash=result.recomputed_or_zero)
    if outcome is Outcome.MATCH:
        return Ruling(decision=Decision.WORKER_RIGHT, reason="recomputation reached the committed value",
                      recomputed_hash=result.recomputed_or_zero)
    why = "the job's environment class is not reproducible here" if outcome is Outcome.VALID else result.detail
    return Ruling(decision=Decision.CANNOT_JUDGE, reason=f"cannot judge: {why}"[:900])


class Evidence(BaseModel):
    """The JSON artifact an arbiter stores for each ruling and names in its verdict (`evidence_uri`)."""

    version: int = 2
    chain_id: int
    disputes: str
    dispute_id: int
    job_id: int
    claim: str
    segment: int
    h_a: str
    h_b: str
    challenger: str
    worker: str
    decision: Decision
    reason: str
    recomputed_hash: str
    results: list[CheckResult]
    env_class: str
    environment: dict[str, Any] | None = None
    recompute_wall_s: float | None = None

    def canonical_bytes(self) -> bytes:
        """Sorted keys, no spaces: the stored bytes (their sha256 names the artifact)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def evidence_uri(store_uri: str, evidence_hash: str) -> str:
    """`<arbiter store URI>#evidence=<hash>`: where anyone can fetch and check the evidence."""
    return f"{store_uri}{EVIDENCE_FRAGMENT}{evidence_hash}"


def check_key(job_id: int, check: Check) -> str:
    """Disputes with the same key ask for the same recomputation, so they share one ruling."""
    key = f"{job_id}:{check.kind.value}:{check.boundary}:{(check.checkpoint or '').lower()}:{check.expected.lower()}"
    return key if check.step is None else f"{key}:{check.step}"


# ---------------------------------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------------------------------

# 'refereed': a refereed SEGMENT claim whose referee game has not escalated (no arbiter window yet)
ARBITER_STATES = ("pending", "pending_wait", "refereed", "ruling", "ruled", "cannot_judge", "missed", "closed")


class ArbiterConfig(DaemonConfig):
    """The arbiter's recomputation settings on top of the common daemon settings (`[arbiter]` table)."""

    device: Literal["cpu", "cuda"] = Field("cpu", description="where recomputations run")
    cpu_capabilities: list[Literal["default", "avx2", "avx512"]] = Field(
        default_factory=list, description="extra CPU kernel sets (ATEN_CPU_CAPABILITY) whose classes we reproduce")
    publish_env_classes: bool = Field(True, description="publish our classes on chain at start when not open")
    rule_margin: float = Field(2.0, ge=0, description="do not send a verdict with less than this left (s)")
    max_checkpoint_bytes: int = Field(2 * 1024**3, ge=1_024, description="largest checkpoint we download")
    max_spec_bytes: int = Field(1_000_000, ge=1_024, description="largest spec we download")
    fetch_timeout: float = Field(30.0, gt=0, le=600, description="seconds per artifact download")
    memory_limit_mb: int = Field(8_192, ge=256, description="memory limit of a recomputation child")
    cache_dir: str | None = Field(None, description="local store for fetched checkpoints (default data_dir/cache)")


class ArbiterDaemon(Daemon):
    """Rules every revealed dispute of the deployment it is the arbiter of, within each dispute's window.

    One row per dispute (`arbiter_disputes`, keyed by dispute id): each is ruled once, its evidence
    stored before the verdict is queued (outbox key `verdict:<dispute>`), so a restart never rules twice.
    Disputes are taken earliest deadline first, then the larger collateral, then filing order; each
    recomputation has a budget that ends before the dispute's deadline, so a slow or hostile job costs
    at most its own window and never another dispute's. A refereed SEGMENT claim waits in `refereed`
    while its game runs; if the game escalates, the arbiter rules the pinned step (level 2: a STEP check, one
    step replayed from the agreed state the worker serves) rather than the claim as at level 1 (a replay of
    the segment) within the window `settle_refereed` opened.
    """

    name = "arbiter"
    event_names = ["ChallengeRevealed", "Verdict", "DisputeClosed"]

    def __init__(self, config: ArbiterConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config: ArbiterConfig = config
        self.client: Any = None
        self.db: Any = None
        self.cache: Any = None
        self.evidence_store: Any = None
        self.environments: dict[str, Environment] = {}
        self._rulings: Any = None
        # dispute id -> the earlier filings its held worker-wrong verdict waits for (read once)
        self._waits: dict[int, list[int]] = {}
        # Recomputations (fetches and the judging child) run on these threads, so a slow or hostile
        # artifact server holds up only its own dispute; chain reads and writes stay on the loop thread.
        self._pool = ThreadPoolExecutor(max_workers=JUDGE_THREADS, thread_name_prefix="tessera-judge")
        self.children = ChildGroup()  # the judge children of those threads (stopped on drain)
        self._running: dict[int, Future] = {}
        self._running_checks: dict[str, int] = {}  # check key -> the dispute whose recomputation runs
        # dispute id -> (recomputations in a row that failed on our side, monotonic time it may run again)
        self._retries: dict[int, tuple[int, float]] = {}

    def open(self) -> None:
        super().open()
        from prometheus_client import Counter

        from protocol.artifacts import LocalStore, open_store
        from protocol.client import TesseraClient
        from worker.runtime.db import connect

        self.client = TesseraClient(self.w3, self.deployment, self.account)
        self.db = connect(self.config.db_path("arbiter-disputes.sqlite"))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS arbiter_disputes (dispute_id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL,"
            " deadline INTEGER NOT NULL, state TEXT NOT NULL, decision TEXT, reason TEXT, recomputed_hash TEXT,"
            " evidence_uri TEXT, updated_at REAL NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS arbiter_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # one ruling per distinct check: a flood of disputes pinning the same claim costs one replay
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS arbiter_rulings (check_key TEXT PRIMARY KEY, dispute_id INTEGER NOT NULL,"
            " decision TEXT NOT NULL, reason TEXT NOT NULL, recomputed_hash TEXT NOT NULL, evidence_uri TEXT NOT NULL)")
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
        self.outbox.register_check("publish_env_class", lambda intent: True)
        for env in reproducible_environments(self.config.device, list(self.config.cpu_capabilities)):
            self.environments[env.env_class] = env
            self.log.info("reproduces environment class %s (%s, %s)", env.env_class, env.device,
                          env.descriptor.get("cpu_capability") or env.descriptor.get("arithmetic"),
                          extra={"event": "env_class", "env_class": env.env_class})
            if self.config.publish_env_classes and not self.client.env_class_open(env.env_class):
                from protocol.spec import canonical_json

                stored = self.evidence_store.put(canonical_json(env.descriptor))
                assert stored == env.env_class  # the class is the descriptor's content hash
                self.outbox.submit(f"publish:{env.env_class}", "publish_env_class",
                                   self.client.build_publish_env_class(env.env_class, self.config.artifact_uri))

    # ------------------------------------------------------------------ local state

    def _set(self, dispute_id: int, state: str, reason: str = "", **fields: Any) -> None:
        if state not in ARBITER_STATES:
            raise ValueError(f"unknown arbiter state {state}")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            sets = ", ".join(f"{k}=?" for k in ("state", "reason", "updated_at", *fields))
            self.db.execute(f"UPDATE arbiter_disputes SET {sets} WHERE dispute_id=?",
                            (state, reason, time.time(), *fields.values(), dispute_id))

    def _track(self, dispute: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO arbiter_disputes(dispute_id, job_id, deadline, state, updated_at)"
                            " VALUES (?,?,?,?,?)", (dispute.dispute_id, dispute.job_id, dispute.deadline, "pending",
                                                     time.time()))

    def dispute_state(self, dispute_id: int) -> str | None:
        """Local state of dispute `dispute_id` (None when never seen)."""
        row = self.db.execute("SELECT state FROM arbiter_disputes WHERE dispute_id=?", (dispute_id,)).fetchone()
        return row["state"] if row else None

    def job_counts(self) -> dict[str, int]:
        if self.db is None:
            return {}
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM arbiter_disputes GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    def _meta(self, key: str, default: str = "0") -> str:
        row = self.db.execute("SELECT value FROM arbiter_meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else default

    # ------------------------------------------------------------------ events and state

    def handle_event(self, event: Any) -> None:
        if event.name == "ChallengeRevealed" and self.dispute_state(event.dispute_id) is None:
            self._track(self.client.dispute(event.dispute_id))

    def reconcile(self) -> None:
        """State is truth: every revealed dispute the contract holds must be known here."""
        from protocol.events import DisputeStatus

        scanned = int(self._meta("scanned_up_to"))
        count = self.client.dispute_count()
        restart: int | None = None
        for dispute_id in range(scanned + 1, count + 1):
            dispute = self.client.dispute(dispute_id)
            if dispute.status == DisputeStatus.FILED and restart is None:
                restart = dispute_id - 1  # not revealed yet: scan again from here next time
            elif dispute.status == DisputeStatus.REVEALED:
                self._track(dispute)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO arbiter_meta(key, value) VALUES ('scanned_up_to', ?)",
                            (str(max(scanned, count if restart is None else restart)),))
        # a verdict reorged away puts its dispute back to Revealed: rule it again
        for row in self.db.execute("SELECT dispute_id FROM arbiter_disputes WHERE state IN ('ruled','closed')").fetchall():
            dispute = self.client.dispute(int(row["dispute_id"]))
            if dispute.status == DisputeStatus.REVEALED and self.outbox.get(f"verdict:{dispute.dispute_id}") is None:
                self._set(dispute.dispute_id, "pending", "open again on chain", deadline=dispute.deadline)

    def _queue(self) -> list[int]:
        # 'ruling' too: a ruling that failed (or a daemon killed mid-ruling) is taken up again
        # 'refereed' too: a refereed dispute's game may escalate to us (its deadline is set then)
        rows = self.db.execute("SELECT dispute_id, job_id, deadline, state FROM arbiter_disputes"
                               " WHERE state IN ('pending', 'pending_wait', 'ruling', 'refereed')").fetchall()
        collateral: dict[int, int] = {}
        for row in rows:
            job_id = int(row["job_id"])
            if job_id not in collateral:
                try:
                    collateral[job_id] = self.client.job(job_id).job.collateral
                except Exception:  # noqa: BLE001 - ordering only; the ruling reads the job again
                    collateral[job_id] = 0
        # held verdicts first (each costs a few reads), then earliest deadline, larger collateral, filing order
        ordered = sorted(rows, key=lambda r: (r["state"] != "pending_wait", int(r["deadline"]),
                                              -collateral[int(r["job_id"])], int(r["dispute_id"])))
        return [int(r["dispute_id"]) for r in ordered]

    def tick(self) -> None:
        for dispute_id in self._queue():
            if self.stopping:
                return
            # a failing dispute is retried next tick (its deadline bounds the retries); the others go on
            self.isolated(f"dispute {dispute_id}", self.rule, dispute_id)

    def drain(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.children.stop()  # a recomputation on a thread would otherwise hold the exit for its budget

    def on_intent(self, intent: Any) -> None:
        if intent.kind == "verdict" and intent.state in ("failed", "reverted", "dropped", "skipped"):
            self.log.warning("verdict %s %s: %s", intent.key, intent.state, intent.reason,
                             extra={"event": "verdict_" + intent.state, "job_id": intent.job_id})

    # ------------------------------------------------------------------ ruling

    def rule(self, dispute_id: int) -> Ruling | None:
        """Recompute what dispute `dispute_id` claims (or reuse the ruling of the same claim), decide,
        store the evidence, and queue the verdict unless an earlier filing may still reveal."""
        from protocol.events import DisputeStatus, JobState

        cfg = self.config
        dispute = self.client.dispute(dispute_id)
        if dispute.status == DisputeStatus.REVEALED and dispute.deadline == 0:
            # only a refereed SEGMENT claim is revealed without a window (every other reveal sets one): its
            # game decides it on chain, and the window opens only if the game escalates (settle_refereed
            # sets the deadline). One read a tick until then.
            if self.dispute_state(dispute_id) != "refereed":
                self._set(dispute_id, "refereed", "its referee game decides it unless the game escalates")
            return None
        view = self.client.job(dispute.job_id)
        if dispute.status != DisputeStatus.REVEALED or view.state != JobState.CHALLENGED:
            self._forget(dispute_id)
            self._set(dispute_id, "closed", f"{dispute.label}; job {view.state.label}")
            return None
        budget = dispute.deadline - self.client.chain_time() - cfg.rule_margin
        if budget <= 0:
            self._forget(dispute_id)
            self._set(dispute_id, "missed", "the dispute's window closed before we could rule")
            return None
        job = view.job
        check = check_of_claim(dispute.kind, dispute.segment, dispute.h_a, dispute.h_b, job.num_segments)
        if check.kind is CheckKind.SEGMENT:
            game = self.client.referee_game_view(dispute_id)
            if game is not None and game.escalated:
                # level 2: the game pinned step t (r_t agreed, r_{t+1} disputed) and found no on-chain rule
                # for where it was steered: judge that step, not the whole segment
                check = Check(kind=CheckKind.STEP, boundary=dispute.segment, checkpoint=game.state_root,
                              expected=game.next_root, step=game.step)
        key = check_key(dispute.job_id, check)
        known = self.db.execute("SELECT * FROM arbiter_rulings WHERE check_key=?", (key,)).fetchone()
        if known is not None:
            ruling = Ruling(decision=Decision(known["decision"]), reason=known["reason"],
                            recomputed_hash=known["recomputed_hash"])
            uri = str(known["evidence_uri"])
            if int(known["dispute_id"]) != dispute_id and self.dispute_state(dispute_id) != "pending_wait":
                self.log.info("dispute %s: same claim as dispute %s, ruled %s", dispute_id, known["dispute_id"],
                              ruling.decision.value, extra={"event": "ruling_reused", "job_id": dispute.job_id,
                                                            "dispute_id": dispute_id})
        else:
            running = self._running.get(dispute_id)
            if running is None and self._running_checks.get(key, dispute_id) != dispute_id:
                return None  # the same check is being recomputed for another dispute: share its ruling
            if running is None:  # start the recomputation on a judging thread; look again next tick
                if len(self._running) >= JUDGE_THREADS:
                    return None  # both threads busy: the queue (earliest deadline first) waits its turn
                if self._retries.get(dispute_id, (0, 0.0))[1] > time.monotonic():
                    return None  # backing off after a failure of our side; the threads serve the others
                self._set(dispute_id, "ruling")
                self._running[dispute_id] = future = self._pool.submit(
                    self._recompute, dispute_id, dispute, view, check, time.monotonic() + budget)
                future.add_done_callback(lambda _done: self.wake())  # the ruling is sent at once, not a poll later
                self._running_checks[key] = dispute_id
                return None
            if not running.done():
                return None
            del self._running[dispute_id]
            self._running_checks.pop(key, None)
            try:
                ruling, uri = running.result()
            except Exception as exc:  # noqa: BLE001 - sorted into ours (retried) and the job's (ruled)
                ruling, uri = self._recompute_failed(dispute_id, exc)
                if ruling is None:
                    return None
            self._retries.pop(dispute_id, None)
            if ruling.decision is Decision.CANNOT_JUDGE:
                self._set(dispute_id, "cannot_judge", ruling.reason, decision=ruling.decision.value, evidence_uri=uri)
                return ruling
            with self.db:
                self.db.execute("INSERT OR IGNORE INTO arbiter_rulings VALUES (?,?,?,?,?,?)",
                                (key, dispute_id, ruling.decision.value, ruling.reason, ruling.recomputed_hash, uri))
        if self.client.chain_time() > dispute.deadline - cfg.rule_margin:
            self._set(dispute_id, "missed", f"ruled {ruling.decision.value} too late", evidence_uri=uri)
            return ruling
        if ruling.worker_wrong:
            waiting = self._earlier_unrevealed(dispute)
            if waiting:
                if self.dispute_state(dispute_id) != "pending_wait":
                    self.log.info("dispute %s: worker wrong; waiting for earlier filings %s to reveal", dispute_id,
                                  waiting, extra={"event": "ruling_deferred", "job_id": dispute.job_id,
                                                  "dispute_id": dispute_id})
                self._set(dispute_id, "pending_wait", f"worker wrong; waiting for earlier filings {waiting} to reveal",
                          decision=ruling.decision.value, recomputed_hash=ruling.recomputed_hash, evidence_uri=uri)
                return ruling
        self._waits.pop(dispute_id, None)
        request = self.client.build_verdict(dispute_id, ruling.worker_wrong, ruling.recomputed_hash, uri, job=job)
        self.outbox.submit(f"verdict:{dispute_id}", "verdict", request, job_id=dispute.job_id)
        self._set(dispute_id, "ruled", ruling.reason, decision=ruling.decision.value,
                  recomputed_hash=ruling.recomputed_hash, evidence_uri=uri)
        return ruling

    def _recompute_failed(self, dispute_id: int, exc: Exception) -> tuple[Ruling | None, str]:
        """A recomputation raised. Our side's failure (disk, RPC) is retried after a growing pause within
        the dispute's window (None); anything else came from the job, and the ruling table's last row
        rules it: cannot judge, once (the timeout then voids the job unless another dispute rejects it)."""
        if is_own_failure(exc):
            failures = self._retries.get(dispute_id, (0, 0.0))[0] + 1
            pause = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (failures - 1))
            self._retries[dispute_id] = (failures, time.monotonic() + pause)
            self.log.warning("dispute %s: recomputation failed on our side (%s in a row), retried in %.0fs: %s",
                             dispute_id, failures, pause, exc, extra={"event": "ruling_retry", "dispute_id": dispute_id})
            return None, ""
        self.log.error("dispute %s: recomputation failed: %s: %s", dispute_id, type(exc).__name__, exc,
                       exc_info=not isinstance(exc, TesseraError),
                       extra={"event": "ruling", "dispute_id": dispute_id, "decision": Decision.CANNOT_JUDGE.value})
        return Ruling(decision=Decision.CANNOT_JUDGE,
                      reason=f"cannot judge: the recomputation failed: {type(exc).__name__}: {exc}"[:900]), ""

    def _forget(self, dispute_id: int) -> None:
        """Drop a recomputation nobody needs any more (its thread ends within its budget)."""
        self._running.pop(dispute_id, None)
        for key in [k for k, owner in self._running_checks.items() if owner == dispute_id]:
            del self._running_checks[key]

    def _earlier_unrevealed(self, dispute: Any) -> list[int]:
        """Disputes on the job filed before `dispute`, not revealed yet, that can still reveal while our
        window leaves room to rule after them."""
        from protocol.events import DisputeStatus

        reveal_window = int(self.client.param("Disputes", "reveal_window"))
        slack = 2 * self.config.rule_margin + 2 * self.config.poll_interval + 5
        if dispute.dispute_id not in self._waits:  # one log scan; later filings never extend the wait
            self._waits[dispute.dispute_id] = [
                d.dispute_id for d in self.client.disputes_of_job(dispute.job_id)
                if d.dispute_id < dispute.dispute_id and d.status == DisputeStatus.FILED
                and d.filed_at + reveal_window + slack < dispute.deadline]
        now = self.client.chain_time()
        still = []
        for dispute_id in self._waits[dispute.dispute_id]:
            earlier = self.client.dispute(dispute_id)
            if earlier.status == DisputeStatus.FILED and now <= earlier.filed_at + reveal_window:
                still.append(dispute_id)
        self._waits[dispute.dispute_id] = still
        return still

    def _recompute(self, dispute_id: int, dispute: Any, view: Any, check: Check,
                   finish_by: float) -> tuple[Ruling, str]:
        """On a judging thread: run the check the claim asks for before `finish_by` (monotonic) and
        store the evidence; returns the ruling and its URI."""
        from protocol.events import ClaimKind

        cfg = self.config
        job = view.job
        environment = self.environments.get(job.env_class.lower())
        started = time.perf_counter()
        result = self._judge_claim(view, check, environment, finish_by)
        # publish what we were served, under its name (a STEP check's r_t is the worker's to serve)
        if check.kind is not CheckKind.STEP and check.checkpoint and self.cache.has(check.checkpoint):
            naming = known_naming(job.spec_hash, check.boundary)  # a portable job's: its state root
            self.evidence_store.put(self.cache.get(check.checkpoint, max_bytes=cfg.max_checkpoint_bytes, naming=naming),
                                    naming=naming)
        wall = round(time.perf_counter() - started, 3)
        ruling = rule(result)
        evidence = Evidence(
            chain_id=int(self.deployment.chain_id), disputes=self.deployment.disputes, dispute_id=dispute_id,
            job_id=dispute.job_id, claim=ClaimKind(dispute.kind).label, segment=dispute.segment, h_a=dispute.h_a,
            h_b=dispute.h_b, challenger=dispute.challenger, worker=job.worker, decision=ruling.decision,
            reason=ruling.reason, recomputed_hash=ruling.recomputed_hash, results=[result], env_class=job.env_class,
            environment=environment.descriptor if environment else None, recompute_wall_s=wall,
        )
        uri = evidence_uri(self.config.artifact_uri, self.evidence_store.put(evidence.canonical_bytes()))
        self._rulings.labels(self.name, ruling.decision.value).inc()
        log = self.log.error if ruling.decision is Decision.CANNOT_JUDGE else self.log.info
        log("dispute %s (job %s, %s %s): %s (%s)", dispute_id, dispute.job_id, ClaimKind(dispute.kind).label,
            dispute.segment, ruling.decision.value, ruling.reason,
            extra={"event": "ruling", "job_id": dispute.job_id, "dispute_id": dispute_id,
                   "decision": ruling.decision.value, "recomputed_hash": ruling.recomputed_hash,
                   "env_class": job.env_class, "evidence_uri": uri, "recompute_wall_s": wall})
        return ruling, uri

    def _judge_claim(self, view: Any, check: Check, environment: Environment | None,
                     finish_by: float) -> CheckResult:
        """The recomputation itself, every fetch and the child within `finish_by` (monotonic). A spec
        nobody serves is the worker's fault; a failure the job's bytes cause is ERROR (cannot judge);
        only our side's failures (disk, memory) raise, to be retried."""
        try:
            [result] = judge_committed(view, [check], cache=self.cache, environment=environment, config=self.config,
                                       finish_by=finish_by, children=self.children)
        except Exception as exc:  # noqa: BLE001 - whatever the job's bytes make the judge do is no finding
            if is_own_failure(exc):
                raise
            return CheckResult(check=check, outcome=Outcome.ERROR, detail=f"{type(exc).__name__}: {exc}"[:600])
        return result

    def _verdict_still_needed(self, intent: Any) -> bool:
        from protocol.events import DisputeStatus, JobState

        dispute_id = int(intent.key.split(":", 1)[1])
        dispute = self.client.dispute(dispute_id)
        return (dispute.status == DisputeStatus.REVEALED and self.client.chain_time() <= dispute.deadline
                and self.client.job_state(dispute.job_id) == JobState.CHALLENGED)
