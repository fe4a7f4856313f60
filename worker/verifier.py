"""The verifier: recompute sampled parts of committed jobs and challenge the wrong ones (level 1, v2).

For every committed job it samples (with a secret only it knows, so no worker can tell in advance which
jobs and segments get checked), the verifier reads the trace h_0 … h_N from the `JobCommitted` log
(readable however the worker sent its commit) and, with `worker.judging` (shared with the arbiter),
checks: the initial state, `segments_per_check` sampled segments, and the output extracted from
checkpoint N. In the job's environment class (when this machine reproduces it) it recomputes; in any
other class it still validates every fetched checkpoint and the output extraction. On a fault it files
a sealed challenge (commit-reveal: a copy from the mempool cannot be revealed by anyone else), reveals
it a block later, and follows it to the end: asks for `timeout` when the arbiter stays silent, closes
it when another dispute settled the job. A challenge by somebody else never makes it drop a job: it
checks every job it sampled, and follows every dispute on the jobs it tracks (timing out silent ones,
expiring unrevealed filings).

Claims, from what was found: a wrong initial state → INITIAL; a segment whose replay (or checkpoint
validity) is wrong → SEGMENT i; a wrong output → OUTPUT; a checkpoint or input that could not be fetched
→ UNAVAILABLE i (a losing one forfeits only a tenth of its bond, to the treasury: a worker that serves
late farms nothing, and costs the verifier a tenth of a bond).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocol.errors import DisputeError, TraceUnavailableError
from worker.judging import (
    CheckKind,
    ChildGroup,
    CheckResult,
    Environment,
    Outcome,
    first_fault,
    is_own_failure,
    judge_committed,
    plan_checks,
    reproducible_environments,
)
from worker.runtime.config import DaemonConfig
from worker.runtime.daemon import Daemon

SECRET_FILE = "verifier-secret"


# ---------------------------------------------------------------------------------------------------
# Sampling: which jobs and which segments (unpredictable without the verifier's secret)
# ---------------------------------------------------------------------------------------------------

class SamplingPolicy(BaseModel):
    """How much a verifier checks. Keyed by a secret, so a worker cannot compute the choices."""

    model_config = ConfigDict(extra="forbid")

    verify_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of committed jobs to check")
    segments_per_check: int = Field(1, ge=1, le=1_024, description="segments replayed per checked job (m)")
    watch_workers: list[str] = Field(default_factory=list, description="workers whose jobs are always checked")
    watch_jobs: list[int] = Field(default_factory=list, description="job ids always checked")

    @field_validator("watch_workers")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            if not re.match(r"^0x[0-9a-fA-F]{40}$", value):
                raise ValueError(f"watch_workers entry is not an address: {value!r}")
            out.append(value.lower())
        return out


def load_secret(path: Path) -> bytes:
    """The verifier's sampling secret (32 random bytes, created 0600 on first use, kept across restarts)."""
    if path.is_file():
        data = path.read_bytes()
        if len(data) == 32:
            return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data


def _uniform(secret: bytes, *labels: object) -> float:
    """A number in [0, 1) fixed by the secret and the labels (HMAC-SHA256; no global RNG state)."""
    digest = hmac.new(secret, ":".join(str(x) for x in labels).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def should_check(policy: SamplingPolicy, secret: bytes, job_id: int, worker: str, result_root: str) -> tuple[bool, str]:
    """Whether to check job `job_id` by `worker` (watch lists, else a keyed draw), and why.

    The draw covers the committed root, so it is fixed only once the commit is: a worker cannot learn
    it before committing, and a new commit (after a reorg) is drawn afresh."""
    if job_id in policy.watch_jobs:
        return True, "job on watch list"
    if worker.lower() in policy.watch_workers:
        return True, "worker on watch list"
    draw = _uniform(secret, "job", job_id, result_root.lower())
    if draw < policy.verify_fraction:
        return True, f"sampled ({draw:.3f} < {policy.verify_fraction})"
    return False, f"not sampled ({draw:.3f} >= {policy.verify_fraction})"


def choose_segments(policy: SamplingPolicy, secret: bytes, job_id: int, result_root: str, num_segments: int) -> list[int]:
    """`segments_per_check` distinct segments of 0 … N−1 for the job, keyed by the secret, ascending."""
    if num_segments < 1:
        raise DisputeError(f"job {job_id} has no segments to check (N = {num_segments})")
    count = min(policy.segments_per_check, num_segments)
    ranked = sorted(range(num_segments), key=lambda i: _uniform(secret, "segment", job_id, result_root.lower(), i))
    return sorted(ranked[:count])


def claim_for(result: CheckResult) -> tuple[str, int]:
    """The claim to file for a finding, as (claim name, segment or boundary): see the module docstring."""
    check, outcome = result.check, result.outcome
    if outcome in (Outcome.CHECKPOINT_MISSING, Outcome.INPUT_MISSING):
        return "unavailable", check.boundary
    if check.kind is CheckKind.INITIAL:
        return "initial", 0
    if check.kind is CheckKind.OUTPUT:
        return "output", check.boundary
    return "segment", check.boundary


def load_committed_trace(client: Any, job_id: int, view: Any = None) -> list[str]:
    """The trace job `job_id` committed (`TesseraClient.committed_trace`, from its log); an RPC that
    answers a trace that does not hash to the root is a `TraceUnavailableError` (retried later)."""
    from protocol.errors import CommittedTraceError

    try:
        return client.committed_trace(job_id, view)
    except CommittedTraceError as exc:
        raise TraceUnavailableError(str(exc)) from None


# ---------------------------------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------------------------------

VERIFIER_STATES = ("pending", "skipped", "clean", "missed", "filing", "filed", "revealed", "won", "lost", "voided",
                   "closed", "unrevealed", "challenge_failed", "settled")
FOLLOWED = ("clean", "filing", "filed", "revealed")
MAX_UINT = 2**256 - 1
MAX_FILE_ATTEMPTS = 3
CHECK_THREADS = 2
MAX_CHECK_FAILURES = 3  # a job whose chain reads keep failing (e.g. an unreadable trace) is given up
RETRY_BASE_S = 2.0  # a check that failed on our side (disk, RPC) waits this long, doubled each time, to run again
RETRY_MAX_S = 120.0


class VerifierConfig(DaemonConfig):
    """The verifier's sampling and recomputation settings (`[verifier]` table)."""

    verify_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of committed jobs to check")
    segments_per_check: int = Field(1, ge=1, le=1_024, description="segments replayed per checked job")
    watch_workers: list[str] = Field(default_factory=list, description="workers whose jobs are always checked")
    watch_jobs: list[int] = Field(default_factory=list, description="job ids always checked")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where recomputations run")
    cpu_capabilities: list[Literal["default", "avx2", "avx512"]] = Field(
        default_factory=list, description="extra CPU kernel sets (ATEN_CPU_CAPABILITY) whose classes we reproduce")
    challenge_margin: float = Field(3.0, ge=0, description="seconds of window a filing and reveal need")
    max_checkpoint_bytes: int = Field(2 * 1024**3, ge=1_024, description="largest checkpoint we download")
    max_spec_bytes: int = Field(1_000_000, ge=1_024, description="largest spec we download")
    fetch_timeout: float = Field(30.0, gt=0, le=600, description="seconds per artifact download")
    memory_limit_mb: int = Field(8_192, ge=256, description="memory limit of a recomputation child")
    cache_dir: str | None = Field(None, description="local store for fetched checkpoints (default data_dir/cache)")

    def policy(self) -> SamplingPolicy:
        """The sampling part as a `SamplingPolicy`."""
        return SamplingPolicy(verify_fraction=self.verify_fraction, segments_per_check=self.segments_per_check,
                              watch_workers=self.watch_workers, watch_jobs=self.watch_jobs)


class VerifierDaemon(Daemon):
    """Checks committed jobs, challenges wrong ones, and follows every dispute on them to its end.

    Local state (SQLite table `verifier_jobs`, one row per job) makes every step idempotent across
    restarts: a job is checked once per commit, its challenge (claim, segment, salt) is stored before
    the filing is queued (outbox `file:<job>`), revealed once (`reveal:<dispute>`), and followed until
    the contract says how it ended.
    """

    name = "verifier"
    event_names = ["JobCommitted", "ChallengeFiled", "ChallengeRevealed", "Verdict", "DisputeClosed", "JobSettled",
                   "RefereeGameOpened", "RefereeGameEscalated"]

    def __init__(self, config: VerifierConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config: VerifierConfig = config
        self.client: Any = None
        self.db: Any = None
        self.cache: Any = None
        self.secret: bytes = b""
        self.environments: dict[str, Environment] = {}
        self._checks_metric: Any = None
        self._check_seconds: Any = None
        # Fetching and recomputing run on these threads, so a slow or hostile artifact server holds up
        # only its own job; chain reads and writes stay on the loop thread.
        self._pool = ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="tessera-check")
        self.children = ChildGroup()  # the judge children of those threads (stopped on drain)
        self._checks: dict[int, tuple[Any, list[int], Any, Future]] = {}
        # job id -> (checks in a row that failed on our side, monotonic time it may run again)
        self._retries: dict[int, tuple[int, float]] = {}
        self._deadlines: dict[int, int] = {}  # job id -> challenge_end of the commit we check (queue order)
        self.referee: Any = None  # worker.referee_duty.RefereeDuties: the games we play as challenger

    # ------------------------------------------------------------------ wiring

    def open(self) -> None:
        super().open()
        from prometheus_client import Counter, Histogram

        from protocol.artifacts import LocalStore
        from protocol.client import TesseraClient
        from worker.runtime.db import connect

        self.client = TesseraClient(self.w3, self.deployment, self.account)
        self.db = connect(self.config.db_path("verifier-jobs.sqlite"))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS verifier_jobs (job_id INTEGER PRIMARY KEY, worker TEXT, state TEXT NOT NULL,"
            " result_root TEXT, segments TEXT, claim TEXT, segment INTEGER, salt TEXT, dispute_id INTEGER,"
            " attempts INTEGER NOT NULL DEFAULT 0, reason TEXT, updated_at REAL NOT NULL)")
        columns = {row["name"] for row in self.db.execute("PRAGMA table_info(verifier_jobs)").fetchall()}
        if "referee" not in columns:  # a refereed SEGMENT claim's material (spec, skeleton): JSON
            self.db.execute("ALTER TABLE verifier_jobs ADD COLUMN referee TEXT")
        self.cache = LocalStore(self.config.cache_dir or self.config.db_path("cache"))
        self.secret = load_secret(self.config.db_path(SECRET_FILE))
        registry = self.metrics.registry
        if self._checks_metric is None:
            self._checks_metric = Counter("tessera_verifier_checks_total", "checks by kind and outcome",
                                          ["daemon", "kind", "outcome"], registry=registry)
            self._check_seconds = Histogram("tessera_verifier_check_seconds", "wall time of one job's checks",
                                            ["daemon"], registry=registry,
                                            buckets=(1, 2, 5, 10, 30, 60, 300, 1_800))

    def on_start(self) -> None:
        assert self.outbox is not None, "the verifier needs an account (it locks bonds)"
        from worker.referee_duty import RefereeDuties

        self.referee = RefereeDuties(self, "challenger", self.config.db_path("referee"), Path(self.cache.root))
        self.referee.register(self.outbox)
        for kind in ("file_challenge", "reveal", "dispute_timeout", "expire_reveal", "close_dispute"):
            self.outbox.register_check(kind, self._still_needed)
        self.outbox.register_check("approve", lambda intent: True)
        for env in reproducible_environments(self.config.device, list(self.config.cpu_capabilities)):
            self.environments[env.env_class] = env
        bond = self.client.param("Disputes", "challenge_bond")
        available = self.client.stake_info(self.address).available
        if available < bond:
            self.log.warning("verifier %s has %s available stake, below the bond %s: it cannot challenge until "
                             "it stakes more", self.address, available, bond, extra={"event": "no_stake"})

    # ------------------------------------------------------------------ local state

    def _row(self, job_id: int) -> Any:
        return self.db.execute("SELECT * FROM verifier_jobs WHERE job_id=?", (job_id,)).fetchone()

    def _set(self, job_id: int, state: str, reason: str = "", *, quiet: bool = False, **fields: Any) -> None:
        if state not in VERIFIER_STATES:
            raise ValueError(f"unknown verifier state {state}")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO verifier_jobs(job_id, state, updated_at) VALUES (?,?,?)",
                            (job_id, state, time.time()))
            sets = ", ".join(f"{k}=?" for k in ("state", "reason", "updated_at", *fields))
            self.db.execute(f"UPDATE verifier_jobs SET {sets} WHERE job_id=?",
                            (state, reason[:900], time.time(), *fields.values(), job_id))
        if not quiet:
            self.log.info("job %s: %s %s", job_id, state, reason[:300],
                          extra={"event": f"verifier_{state}", "job_id": job_id})

    def job_state(self, job_id: int) -> str | None:
        """Local state of `job_id` (None when never seen)."""
        row = self._row(job_id)
        return row["state"] if row else None

    def job_counts(self) -> dict[str, int]:
        if self.db is None:
            return {}
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM verifier_jobs GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    def _jobs_in(self, *states: str) -> list[int]:
        marks = ",".join("?" for _ in states)
        rows = self.db.execute(f"SELECT job_id FROM verifier_jobs WHERE state IN ({marks}) ORDER BY job_id", states)
        return [int(r["job_id"]) for r in rows.fetchall()]

    # ------------------------------------------------------------------ events and state

    def on_reorg(self, reorg: Any) -> None:
        """A refereed dispute whose duty ended may be open again: the duties look on the next tick."""
        if self.referee is not None:
            self.referee.on_reorg()

    def handle_event(self, event: Any) -> None:
        job_id = event.job_id
        if job_id is None:
            return
        if event.name == "JobCommitted":
            self._deadlines.pop(job_id, None)  # a commit mined again (reorg) has a new challenge_end
            row = self._row(job_id)
            if row is None or (row["result_root"] and row["result_root"] != event.result_root.lower()):
                self._set(job_id, "pending", "committed" if row is None else "committed again (reorg)",
                          worker=event.worker.lower())

    def reconcile(self) -> None:
        """State is truth: find committed jobs we never saw (a missed log cannot hide a job)."""
        from protocol.events import JobState

        known = {int(r["job_id"]) for r in self.db.execute("SELECT job_id FROM verifier_jobs").fetchall()}
        for job_id in range(1, self.client.job_count() + 1):
            if job_id in known:
                continue
            state = self.client.job_state(job_id)
            if state in (JobState.COMMITTED, JobState.CHALLENGED):
                self._set(job_id, "pending", "found by reconcile")
            elif state.terminal:  # settled before we looked: remember it so reconcile never asks again
                self._set(job_id, "settled", f"job is {state.label}", quiet=True)

    def _pending_queue(self) -> list[int]:
        """Pending jobs in the order their checks start: those on a thread first (collecting a result
        frees the thread), then earliest challenge deadline, then id. One job read per new job."""
        pending = self._jobs_in("pending")
        unknown: dict[int, int] = {}
        for job_id in pending:
            if job_id not in self._deadlines:
                try:
                    self._deadlines[job_id] = int(self.client.job(job_id).job.challenge_end)
                except Exception:  # noqa: BLE001 - ordering only; check_job reads the job again
                    unknown[job_id] = MAX_UINT  # last this tick only: asked again next tick, never cached
        deadline = {**self._deadlines, **unknown}
        return sorted(pending, key=lambda j: (j not in self._checks, deadline[j], j))

    def tick(self) -> None:
        for job_id in self._pending_queue():
            if self.stopping:
                return
            if self.isolated(f"job {job_id}", self.check_job, job_id) >= MAX_CHECK_FAILURES:
                self._set(job_id, "skipped", f"could not be checked after {MAX_CHECK_FAILURES} attempts")
        for job_id in self._jobs_in(*FOLLOWED):
            if self.stopping:
                return
            self.isolated(f"job {job_id}", self.follow, job_id)
        if self.referee is not None:
            self.referee.tick()  # our refereed disputes: kits built in children, moves through the outbox

    # ------------------------------------------------------------------ checking

    def drain(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.children.stop()  # a recomputation on a thread would otherwise hold the exit for its budget
        if self.referee is not None:
            self.referee.stop()

    def check_job(self, job_id: int) -> None:
        """Decide, check and (when the worker is wrong) queue the sealed challenge for one committed job.

        The fetching and recomputation run on a check thread; each visit starts it, waits for it, or
        acts on its results."""
        from protocol.events import JobState

        cfg = self.config
        running = self._checks.get(job_id)
        if running is not None:
            if running[3].done():
                del self._checks[job_id]
                return self._checked(job_id, *running)
            return
        if len(self._checks) >= CHECK_THREADS:
            return  # both threads busy: the job waits its turn (earliest deadline first)
        if self._retries.get(job_id, (0, 0.0))[1] > time.monotonic():
            return  # backing off after a failure of our side; the thread goes to other jobs meanwhile
        view = self.client.job(job_id)
        job = view.job
        if view.state not in (JobState.COMMITTED, JobState.CHALLENGED):
            self._set(job_id, "settled", f"job is {view.state.label}")
            return
        if job.worker.lower() == (self.address or "").lower():
            self._set(job_id, "skipped", "our own job", result_root=job.result_root)
            return
        wanted, why = should_check(cfg.policy(), self.secret, job_id, job.worker, job.result_root)
        if not wanted:
            self._set(job_id, "skipped", why, result_root=job.result_root, worker=job.worker.lower())
            return
        if self.client.chain_time() >= job.challenge_end - cfg.challenge_margin:
            self._set(job_id, "missed", "challenge window (nearly) closed before we could check")
            return
        trace = load_committed_trace(self.client, job_id, view)
        segments = choose_segments(cfg.policy(), self.secret, job_id, job.result_root, job.num_segments)
        environment = self.environments.get(job.env_class.lower())
        budget = job.challenge_end - self.client.chain_time() - cfg.challenge_margin
        refereed = self.client.is_refereed(job)
        future = self._pool.submit(self._check_thread, view, trace, segments, environment,
                                   time.monotonic() + max(1.0, budget), refereed)
        self._checks[job_id] = (view, segments, environment, future)
        future.add_done_callback(lambda _done: self.wake())  # a fraud found is filed at once, not a poll later

    def _check_thread(self, view: Any, trace: list[str], segments: list[int], environment: Environment | None,
                      finish_by: float, refereed: bool) -> tuple[list[CheckResult], float, dict[str, Any] | None]:
        """On a check thread: `_recompute`, then, for a job of the refereed class, what a SEGMENT claim's
        game needs (`_referee_material`)."""
        results, seconds = self._recompute(view, trace, segments, environment, finish_by)
        return results, seconds, self._referee_material(view, finish_by) if refereed else None

    def _recompute(self, view: Any, trace: list[str], segments: list[int], environment: Environment | None,
                   finish_by: float) -> tuple[list[CheckResult], float]:
        """On a check thread: fetch the spec and artifacts (bounded) and judge the planned checks, all
        before `finish_by` (monotonic). A spec neither its URI nor the worker's store serves is what the
        arbiter rules the worker's fault (INPUT_MISSING), so it is a finding here too, found once."""
        started = time.perf_counter()
        checks = plan_checks(trace, view.job.output_hash, segments, initial=environment is not None)
        results = judge_committed(view, checks, cache=self.cache, environment=environment, config=self.config,
                                  finish_by=finish_by, children=self.children)
        return results, time.perf_counter() - started

    def _referee_material(self, view: Any, finish_by: float) -> dict[str, Any] | None:
        """The spec and the job's step-record skeleton (S, L, per_epoch) its judge child reported, kept with a
        refereed claim so that its reveal and its dispute kit survive a restart (None: not known)."""
        from worker.judging import fetch_spec_within, known_naming

        naming = known_naming(view.job.spec_hash, 0)
        if naming is None:
            return None
        try:
            spec = fetch_spec_within(view.spec_uri, view.job.spec_hash, deadline=finish_by,
                                     max_bytes=self.config.max_spec_bytes, timeout=self.config.fetch_timeout,
                                     fallback_uris=[view.artifact_uri])
        except Exception as exc:  # noqa: BLE001 - the claim is then revealed as a level-1 one would be refused
            self.log.warning("job %s: spec not fetched again for its referee game: %s", view.job_id, exc)
            return None
        binding = naming.binding
        return {"spec": spec.canonical_bytes().decode(), "skeleton_root": "0x" + binding.skeleton_root.hex(),
                "record_length": binding.record_length, "per_epoch": binding.per_epoch}

    def _check_failed(self, job_id: int, exc: Exception) -> None:
        """A check raised. Our side's failure (disk, RPC) is retried after a growing pause, without
        holding a thread; anything else the job made, so it is recorded with its reason, once."""
        if not is_own_failure(exc):
            self._retries.pop(job_id, None)
            self._set(job_id, "skipped", f"could not be checked: {type(exc).__name__}: {exc}")
            return
        failures = self._retries.get(job_id, (0, 0.0))[0] + 1
        pause = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (failures - 1))
        self._retries[job_id] = (failures, time.monotonic() + pause)
        self.log.warning("job %s: check failed on our side (%s in a row), retried in %.0fs: %s", job_id, failures,
                         pause, exc, extra={"event": "check_retry", "job_id": job_id})

    def _checked(self, job_id: int, view: Any, segments: list[int], environment: Environment | None,
                 future: Future) -> None:
        """Back on the loop thread: record the results and file on the first fault."""
        cfg, job = self.config, view.job
        try:
            results, seconds, material = future.result()
        except Exception as exc:  # noqa: BLE001 - sorted into ours (retried) and the job's (recorded)
            return self._check_failed(job_id, exc)
        self._retries.pop(job_id, None)
        current = self.client.job(job_id)
        if current.job.result_root != job.result_root or current.job.worker != job.worker:
            return  # a reorg replaced the commit while we checked: the new one is checked next tick
        self._check_seconds.labels(self.name).observe(seconds)
        for r in results:
            self._checks_metric.labels(self.name, r.check.kind.value, r.outcome.value).inc()
        fault = self.choose_fault(results)
        note = "" if environment else f" (class {job.env_class} not reproducible here: validity and output only)"
        if fault is None:
            errors = [r for r in results if r.outcome is Outcome.ERROR]
            summary = ", ".join(f"{r.check.kind.value} {r.check.boundary}: {r.outcome.value}" for r in results)
            why = f"; not judged: {errors[0].detail}" if errors else ""  # e.g. its recomputation exhausted its budget
            self._set(job_id, "clean", f"{summary}{note}{why}", segments=json.dumps(segments),
                      result_root=job.result_root, worker=job.worker.lower())
            if errors:
                self.log.warning("job %s: some checks could not run: %s", job_id, errors[0].detail,
                                 extra={"event": "check_error", "job_id": job_id})
            return
        claim, segment = claim_for(fault)
        if self.client.chain_time() >= job.challenge_end - cfg.challenge_margin:
            self._set(job_id, "missed", f"found {fault.outcome.value} ({claim} {segment}) too late")
            return
        salt = os.urandom(32)
        referee = json.dumps(material) if claim == "segment" and material is not None else None
        self._set(job_id, "filing", f"{claim} {segment}: {fault.outcome.value}: {fault.detail}", claim=claim,
                  segment=segment, salt=salt.hex(), segments=json.dumps(segments), result_root=job.result_root,
                  worker=job.worker.lower(), referee=referee)
        self._file(job_id, job, claim, segment, salt, attempt=0)

    def choose_fault(self, results: Sequence[CheckResult]) -> CheckResult | None:
        """Which finding to challenge (a hook: the test personas override it)."""
        return first_fault(results)

    def _file(self, job_id: int, job: Any, claim: str, segment: int, salt: bytes, attempt: int) -> None:
        from protocol.client import challenge_commitment, parse_claim

        commitment = challenge_commitment(job_id, self.address, parse_claim(claim), segment, salt)
        key = f"file:{job_id}" if attempt == 0 else f"file:{job_id}:{attempt}"
        self.outbox.submit(key, "file_challenge", self.client.build_file_challenge(job_id, commitment, job),
                           job_id=job_id)

    # ------------------------------------------------------------------ following

    def follow(self, job_id: int) -> None:
        """Move our own challenge along (filed → revealed → ruled) and keep every dispute on the job moving."""
        from protocol.events import DisputeStatus, JobState

        row = self._row(job_id)
        state = row["state"]
        job_state = self.client.job_state(job_id)
        if state == "filing":
            self._after_filing(job_id, row, job_state)
            return
        if state in ("filed", "revealed"):
            dispute = self.client.dispute(int(row["dispute_id"]))
            if dispute.job_id != job_id or dispute.challenger.lower() != (self.address or "").lower():
                # a reorg re-mined our filing under another id: read it from the receipt again
                self._set(job_id, "filing", f"dispute {row['dispute_id']} is not ours any more (reorg)")
                return
            if dispute.status == DisputeStatus.FILED:
                self._reveal(job_id, row, dispute)
            elif dispute.status == DisputeStatus.REVEALED:
                if state != "revealed":
                    self._set(job_id, "revealed", f"{dispute.label}, arbiter deadline {dispute.deadline}")
            else:
                ended = {DisputeStatus.WORKER_WRONG: "won", DisputeStatus.WORKER_RIGHT: "lost",
                         DisputeStatus.VOIDED: "voided", DisputeStatus.CLOSED: "closed",
                         DisputeStatus.UNREVEALED: "unrevealed"}[dispute.status]
                self._set(job_id, ended, dispute.label)
                return
        if job_state.terminal and state == "clean":
            self._set(job_id, "settled", f"job is {job_state.label}", quiet=True)
            return
        if job_state in (JobState.CHALLENGED, JobState.REJECTED, JobState.VOIDED):
            self._move_disputes(job_id, job_state)

    def _after_filing(self, job_id: int, row: Any, job_state: Any) -> None:
        """Our filing: learn its dispute id from its receipt, or file again (bounded) when it failed."""
        from protocol.events import decode_receipt

        attempt = int(row["attempts"])
        intent = self.outbox.get(f"file:{job_id}" if attempt == 0 else f"file:{job_id}:{attempt}")
        if intent is None:
            return self._retry_filing(job_id, row, job_state, attempt)
        if not intent.done:
            return
        if intent.succeeded and intent.tx_hash:
            receipt = self.w3.eth.get_transaction_receipt(intent.tx_hash)
            filed = [e for e in decode_receipt(receipt, self.deployment)
                     if e.name == "ChallengeFiled" and e.job_id == job_id]
            if filed:
                self._set(job_id, "filed", f"dispute {filed[0].dispute_id} filed", dispute_id=filed[0].dispute_id)
                return
        self._set(job_id, "filing", f"filing {intent.state}: {intent.reason or ''}", attempts=attempt + 1)
        self._retry_filing(job_id, self._row(job_id), job_state, attempt + 1)

    def _retry_filing(self, job_id: int, row: Any, job_state: Any, attempt: int) -> None:
        from protocol.events import JobState

        view = self.client.job(job_id)
        if (job_state not in (JobState.COMMITTED, JobState.CHALLENGED) or attempt >= MAX_FILE_ATTEMPTS
                or self.client.chain_time() >= view.job.challenge_end - self.config.challenge_margin):
            self._set(job_id, "challenge_failed", f"could not file within the window after {attempt} attempt(s)")
            return
        self._file(job_id, view.job, row["claim"], int(row["segment"]), bytes.fromhex(row["salt"]), attempt)

    def _reveal(self, job_id: int, row: Any, dispute: Any) -> None:
        from protocol.client import parse_claim

        # The filing is mined (its receipt gave us the id), so the reveal lands in a later block.
        if self.outbox.get(f"reveal:{dispute.dispute_id}") is not None:
            return
        view = self.client.job(job_id)
        if row["claim"] == "segment" and self.client.is_refereed(view.job):
            request = self._refereed_reveal(job_id, row, dispute, view)
        else:
            request = self.client.build_reveal(dispute.dispute_id, view.job, parse_claim(row["claim"]),
                                               int(row["segment"]), bytes.fromhex(row["salt"]), view.state_hashes)
        self.outbox.submit(f"reveal:{dispute.dispute_id}", "reveal", request, job_id=job_id)

    def _refereed_reveal(self, job_id: int, row: Any, dispute: Any, view: Any) -> Any:
        """`reveal_refereed` of our SEGMENT claim, the agreed checkpoint read from our cache (staged and
        verified by the check), and the dispute's referee duty written (its kit starts building now)."""
        from protocol.spec import load_spec
        from protocol.state_naming import StateRootNaming
        from worker.referee_duty import agreed_binding

        material = json.loads(row["referee"]) if row["referee"] else {}
        if "per_epoch" not in material:  # material kept before headers bound per_epoch names no usable binding
            raise DisputeError(f"job {job_id}: no referee material kept for its refereed claim (the check did not "
                               "report the job's step-record skeleton)")
        segment = int(row["segment"])
        spec_bytes = material["spec"].encode()
        skeleton = (bytes.fromhex(material["skeleton_root"].removeprefix("0x")), int(material["record_length"]),
                    int(material["per_epoch"]))
        binding = agreed_binding(load_spec(spec_bytes), segment, skeleton)
        checkpoint = self.cache.get(view.state_hashes[segment], max_bytes=self.config.max_checkpoint_bytes,
                                    naming=StateRootNaming(binding))
        self.referee.add(dispute.dispute_id, job_id, segment, spec_bytes, checkpoint, skeleton, dispute.filed_block)
        return self.client.build_reveal_refereed(dispute.dispute_id, view.job, segment, bytes.fromhex(row["salt"]),
                                                 view.state_hashes, checkpoint, binding)

    def _move_disputes(self, job_id: int, job_state: Any) -> None:
        """Anyone's disputes on a job we follow: time out a silent arbiter, expire a filing never revealed,
        and close the open ones once the job is settled."""
        from protocol.events import DisputeStatus, JobState

        now = self.client.chain_time()
        window = self.client.param("Disputes", "reveal_window")
        view = None
        for dispute in self.client.disputes_of_job(job_id):
            key = request = None
            if job_state in (JobState.REJECTED, JobState.VOIDED) and dispute.open:
                key, request = f"close:{dispute.dispute_id}", self.client.build_close_dispute(dispute.dispute_id)
            elif dispute.status == DisputeStatus.REVEALED and dispute.deadline and now > dispute.deadline:
                # (a refereed dispute has no deadline, 0, until its game escalates: it ends by its game)
                view = view or self.client.job(job_id)
                key = f"timeout:{dispute.dispute_id}"
                request = self.client.build_dispute_timeout(dispute.dispute_id, view.job)
            elif dispute.status == DisputeStatus.FILED and now > dispute.filed_at + window:
                view = view or self.client.job(job_id)
                key = f"expire_reveal:{dispute.dispute_id}"
                request = self.client.build_expire_reveal(dispute.dispute_id, view.job)
            if key is not None and self.outbox.get(key) is None:
                kind = key.split(":", 1)[0]
                self.outbox.submit(key, {"close": "close_dispute", "timeout": "dispute_timeout"}.get(kind, kind),
                                   request, job_id=job_id)

    def _still_needed(self, intent: Any) -> bool:
        """Chain state decides before every send and resend of a dispute transaction."""
        from protocol.events import DisputeStatus, JobState

        kind, _, rest = intent.key.partition(":")
        if kind == "file":
            view = self.client.job(intent.job_id)
            return (view.state in (JobState.COMMITTED, JobState.CHALLENGED)
                    and self.client.chain_time() < view.job.challenge_end)
        dispute = self.client.dispute(int(rest))
        if kind == "reveal":
            return (dispute.status == DisputeStatus.FILED
                    and self.client.job_state(dispute.job_id) == JobState.CHALLENGED)
        if kind == "timeout":
            return (dispute.status == DisputeStatus.REVEALED and dispute.deadline != 0
                    and self.client.chain_time() > dispute.deadline)
        if kind == "expire_reveal":
            return dispute.status == DisputeStatus.FILED
        if kind == "close":
            return dispute.open and self.client.job_state(dispute.job_id) in (JobState.REJECTED, JobState.VOIDED)
        return True

