"""The verifier: re-run sampled segments of committed jobs and challenge the wrong ones (level-1 disputes).

A verifier watches `JobCommitted`, decides (seeded, per job) whether to check the job, reads the trace
h_0 … h_N the worker committed from the commit transaction's calldata (`TesseraClient.committed_trace`:
on chain, so a worker cannot withhold it), replays a few randomly chosen segments from the worker's own checkpoints with `engine.api.replay_segment`, and
compares each result with the committed `h_{i+1}`. On a mismatch, or when checkpoint `h_i` cannot be
fetched or does not hash to `h_i`, it challenges before the window closes with Merkle proofs of `h_i`
and `h_{i+1}` against the committed root, posting the bond, and follows the dispute to its end.

This module holds the pure decision logic (sampling, the committed trace, comparison, proofs), tested on
its own in tests/unit/disputes, and `VerifierDaemon`, which runs it on the shared runtime
(`worker.runtime`: cursor with reorgs, outbox, metrics, encrypted keys). torch is only imported by the
engine when a segment is actually replayed.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocol.errors import (
    ArtifactError,
    CheckpointError,
    DisputeError,
    HashMismatchError,
    TesseraError,
    TraceUnavailableError,
)
from protocol.hashing import from_hex, to_hex
from protocol.merkle import merkle_proof, merkle_root, verify_proof
from worker.runtime.config import DaemonConfig
from worker.runtime.daemon import Daemon

EVIDENCE_FRAGMENT = "#evidence="
HEX32_RE = re.compile(r"^0x[0-9a-f]{64}$")
ZERO_HASH = "0x" + "00" * 32


class ArtifactStoreLike(Protocol):
    """What we need of `protocol.artifacts.ArtifactStore`: content-addressed put/get/has."""

    uri: str

    def put(self, data: bytes) -> str: ...

    def get(self, hash_hex: str, max_bytes: int = ...) -> bytes: ...

    def has(self, hash_hex: str) -> bool: ...


def _hex32(value: str, what: str) -> str:
    text = value.lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not HEX32_RE.match(text):
        raise ValueError(f"{what} must be 0x + 64 hex digits, got {value!r}")
    return text


# ---------------------------------------------------------------------------------------------------
# The committed trace: the leaves h_0 … h_N behind a result root (read from the commit's calldata)
# ---------------------------------------------------------------------------------------------------

class CommittedTrace(BaseModel):
    """The trace a job committed to, as read back from chain; its Merkle root is the committed root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    result_root: str
    state_hashes: list[str] = Field(min_length=2, max_length=1_025)

    @field_validator("result_root")
    @classmethod
    def _is_hash(cls, value: str) -> str:
        return _hex32(value, "result root")

    @field_validator("state_hashes")
    @classmethod
    def _are_hashes(cls, values: list[str]) -> list[str]:
        return [_hex32(v, f"state_hashes[{i}]") for i, v in enumerate(values)]

    @property
    def num_segments(self) -> int:
        """N: the trace holds h_0 … h_N."""
        return len(self.state_hashes) - 1

    def computed_root(self) -> str:
        """Merkle root over the state hashes (equals `result_root` for a trace read from chain)."""
        return to_hex(merkle_root([from_hex(h) for h in self.state_hashes]))


def load_committed_trace(client: Any, job_id: int, view: Any = None) -> CommittedTrace:
    """The trace job `job_id` committed, from its commit transaction (`TesseraClient.committed_trace`).

    Raises `TraceUnavailableError` when the calldata cannot be read as this job's commit or does not
    produce the committed root (e.g. the worker committed through another contract); RPC failures
    (other ChainErrors) propagate, so the daemon retries them.
    """
    from protocol.errors import CommittedTraceError

    view = view or client.job(job_id)
    try:
        hashes = client.committed_trace(job_id, view)
    except CommittedTraceError as exc:
        raise TraceUnavailableError(str(exc)) from None
    trace = CommittedTrace(result_root=view.job.result_root, state_hashes=hashes)
    if trace.num_segments != view.job.num_segments:  # the escrow checks this; a defence against a bad RPC
        raise TraceUnavailableError(f"job {job_id}: committed trace has {trace.num_segments} segments, "
                                    f"job {view.job.num_segments}")
    return trace


# ---------------------------------------------------------------------------------------------------
# Sampling: which jobs and which segments
# ---------------------------------------------------------------------------------------------------

class SamplingPolicy(BaseModel):
    """How much a verifier checks. Seeded, so a restart makes the same choices for the same job."""

    model_config = ConfigDict(extra="forbid")

    verify_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of committed jobs to check")
    segments_per_check: int = Field(1, ge=1, le=1_024, description="segments replayed per checked job (m)")
    watch_workers: list[str] = Field(default_factory=list, description="workers whose jobs are always checked")
    watch_jobs: list[int] = Field(default_factory=list, description="job ids always checked")
    seed: int = Field(0, ge=0, description="seed of the per-job choices")

    @field_validator("watch_workers")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            if not re.match(r"^0x[0-9a-fA-F]{40}$", value):
                raise ValueError(f"watch_workers entry is not an address: {value!r}")
            out.append(value.lower())
        return out


def _uniform(seed: int, *labels: object) -> float:
    """A number in [0, 1) fixed by `seed` and `labels` (sha256; no global RNG state)."""
    digest = hashlib.sha256(":".join(str(x) for x in (seed, *labels)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def should_check(policy: SamplingPolicy, job_id: int, worker: str) -> tuple[bool, str]:
    """Whether to check job `job_id` by `worker`, and why (watch list, sampled, or skipped)."""
    if job_id in policy.watch_jobs:
        return True, "job on watch list"
    if worker.lower() in policy.watch_workers:
        return True, "worker on watch list"
    draw = _uniform(policy.seed, "job", job_id)
    if draw < policy.verify_fraction:
        return True, f"sampled ({draw:.3f} < {policy.verify_fraction})"
    return False, f"not sampled ({draw:.3f} >= {policy.verify_fraction})"


def choose_segments(policy: SamplingPolicy, job_id: int, num_segments: int) -> list[int]:
    """`segments_per_check` distinct segments of 0 … N−1 for job `job_id`, seeded, in ascending order."""
    if num_segments < 1:
        raise DisputeError(f"job {job_id} has no segments to check (N = {num_segments})")
    count = min(policy.segments_per_check, num_segments)
    ranked = sorted(range(num_segments), key=lambda i: _uniform(policy.seed, "segment", job_id, i))
    return sorted(ranked[:count])


# ---------------------------------------------------------------------------------------------------
# Checking a segment and building a challenge
# ---------------------------------------------------------------------------------------------------

class CheckStatus(str, enum.Enum):
    """Outcome of checking one segment."""

    MATCH = "match"
    MISMATCH = "mismatch"  # replay from h_i reached something other than h_{i+1}
    CHECKPOINT_MISSING = "checkpoint_missing"  # h_i could not be fetched from the worker's store
    CHECKPOINT_WRONG = "checkpoint_wrong"  # bytes served for h_i do not hash to h_i, or are no valid checkpoint

    @property
    def worker_wrong(self) -> bool:
        """True for every outcome that justifies a challenge."""
        return self is not CheckStatus.MATCH


class SegmentCheck(BaseModel):
    """What the verifier found for one segment: the evidence for (or against) a challenge."""

    segment: int
    status: CheckStatus
    committed_next: str
    replayed_next: str | None = None
    detail: str = ""


def check_segment(
    trace: CommittedTrace,
    segment: int,
    fetch_checkpoint: Callable[[str], None],
    replay: Callable[[int, str], str],
) -> SegmentCheck:
    """Check segment `segment` of `trace`: fetch checkpoint h_i (verified), replay it, compare with h_{i+1}.

    `fetch_checkpoint(h)` makes checkpoint `h` available to `replay` (raising ArtifactError when it cannot
    be fetched, HashMismatchError when it does not hash to `h`); `replay(i, h_i)` returns the 0x hash the
    replay reached. Failures of the worker's data are findings, not exceptions; engine failures propagate.
    """
    if not 0 <= segment < trace.num_segments:
        raise DisputeError(f"segment {segment} outside 0..{trace.num_segments - 1}")
    h_i, h_next = trace.state_hashes[segment], trace.state_hashes[segment + 1]
    try:
        fetch_checkpoint(h_i)
    except HashMismatchError as exc:
        return SegmentCheck(segment=segment, status=CheckStatus.CHECKPOINT_WRONG, committed_next=h_next,
                            detail=str(exc))
    except ArtifactError as exc:
        return SegmentCheck(segment=segment, status=CheckStatus.CHECKPOINT_MISSING, committed_next=h_next,
                            detail=str(exc))
    try:
        reached = _hex32(replay(segment, h_i), "replayed hash")
    except CheckpointError as exc:  # hashes to h_i but is not a valid checkpoint of this spec and segment
        return SegmentCheck(segment=segment, status=CheckStatus.CHECKPOINT_WRONG, committed_next=h_next,
                            detail=str(exc))
    status = CheckStatus.MATCH if reached == h_next else CheckStatus.MISMATCH
    detail = "" if status is CheckStatus.MATCH else f"replay of segment {segment} reached {reached}, committed {h_next}"
    return SegmentCheck(segment=segment, status=status, committed_next=h_next, replayed_next=reached, detail=detail)


def first_fault(checks: Sequence[SegmentCheck]) -> SegmentCheck | None:
    """The lowest segment whose check found the worker wrong (the one to challenge), or None."""
    faults = sorted((c for c in checks if c.status.worker_wrong), key=lambda c: c.segment)
    return faults[0] if faults else None


class ChallengeArgs(BaseModel):
    """The arguments of `Disputes.challenge` after the job: the disputed pair and its proofs (0x hex)."""

    segment: int
    h_i: str
    proof_i: list[str]
    h_next: str
    proof_next: list[str]


def build_challenge(state_hashes: Sequence[str], result_root: str, segment: int) -> ChallengeArgs:
    """Merkle proofs of h_i and h_{i+1} against `result_root`, checked locally before anyone pays gas."""
    n = len(state_hashes) - 1
    if not 0 <= segment < n:
        raise DisputeError(f"segment {segment} outside 0..{n - 1} for a trace of {n} segment(s)")
    leaves = [from_hex(h) for h in state_hashes]
    root = from_hex(result_root)
    proofs = [merkle_proof(leaves, segment), merkle_proof(leaves, segment + 1)]
    for index, proof in zip((segment, segment + 1), proofs):
        if not verify_proof(root, index, leaves[index], proof):
            raise DisputeError(f"proof of leaf {index} does not match the committed root {result_root}")
    return ChallengeArgs(
        segment=segment,
        h_i=state_hashes[segment].lower(),
        proof_i=[to_hex(p) for p in proofs[0]],
        h_next=state_hashes[segment + 1].lower(),
        proof_next=[to_hex(p) for p in proofs[1]],
    )




# ---------------------------------------------------------------------------------------------------
# Fetching what a replay needs (shared with the arbiter)
# ---------------------------------------------------------------------------------------------------

MAX_FINGERPRINT_BYTES = 64_000


def fetch_spec(spec_uri: str, spec_hash: str, *, max_bytes: int = 1_000_000, timeout: float = 30.0) -> Any:
    """Fetch the job's spec by hash from `spec_uri` (a store URI, or a URL ending in the hash) and parse it.

    The bytes must hash to the posted spec hash; `protocol.spec.load_spec` validates them.
    """
    from protocol.artifacts import open_store
    from protocol.spec import load_spec

    candidates = [spec_uri]
    tail = spec_uri.rstrip("/").rsplit("/", 1)
    if len(tail) == 2 and re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", tail[1]):
        candidates.append(tail[0])  # the URI names the artifact itself: its folder is the store
    errors = []
    for uri in candidates:
        try:
            data = open_store(uri, timeout=timeout, max_bytes=max_bytes).get(spec_hash, max_bytes=max_bytes)
            return load_spec(data)
        except (ArtifactError, HashMismatchError) as exc:
            errors.append(f"{uri}: {exc}")
    raise ArtifactError(f"spec {spec_hash} not fetchable from {spec_uri!r}: {'; '.join(errors)}")


def fetch_fingerprint(store: ArtifactStoreLike, fingerprint_hash: str) -> tuple[dict[str, Any] | None, str]:
    """The committed environment fingerprint JSON, or (None, why) when missing, wrong or not a JSON object."""
    try:
        data = store.get(fingerprint_hash, max_bytes=MAX_FINGERPRINT_BYTES)
    except HashMismatchError as exc:
        return None, f"wrong bytes: {exc}"
    except ArtifactError as exc:
        return None, f"unavailable: {exc}"
    try:
        value = json.loads(data)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, "ok"


def stage_inputs(spec: Any, cache: ArtifactStoreLike, sources: Sequence[ArtifactStoreLike],
                 *, timeout: float = 30.0) -> None:
    """Copy the spec's dataset / initial weights / inputs into `cache` (where the replay reads them).

    Tries the spec's own URI hints first, then `sources` (the worker's store); every copy is
    hash-checked by the store it comes from. `builtin://` hints are left to the engine.
    """
    from protocol.artifacts import open_store

    for ref in (getattr(spec, "dataset", None), getattr(spec, "init_weights", None), getattr(spec, "inputs", None)):
        if ref is None or cache.has(ref.hash):
            continue
        limit = int(getattr(getattr(spec, "resources", None), "max_dataset_bytes", 512 * 1024**2))
        stores: list[Any] = []
        for uri in ref.uris:
            if uri.startswith("builtin://"):
                continue
            try:
                stores.append(open_store(uri, timeout=timeout, max_bytes=limit))
            except (ArtifactError, ValueError):
                continue
        for store in [*stores, *sources]:
            try:
                cache.put(store.get(ref.hash, max_bytes=limit))
                break
            except (ArtifactError, HashMismatchError):
                continue


def own_fingerprint(device: str, spec: Any) -> tuple[dict[str, Any], str]:
    """This machine's environment fingerprint for replaying `spec` on `device`, and its hash.

    Computed exactly as the engine does for a run (determinism configured with the spec's CPU thread
    count first), so an honest worker on the same kind of machine has the same one. Imports torch.
    """
    from engine.api import configure, environment_fingerprint, fingerprint_hash

    threads = int(spec.resources.cpu_threads)
    configure(device, threads)
    fingerprint = environment_fingerprint(device, threads)
    return fingerprint, fingerprint_hash(fingerprint)


def warm_engine() -> None:
    """Import the engine (and torch) now, so the first check does not spend the challenge window on it."""
    import engine.api  # noqa: F401
    import engine.training  # noqa: F401


def resolve_device(requested: str, spec: Any, worker_fingerprint: Mapping[str, Any] | None = None) -> str:
    """The torch device to replay on: the configured class, else the worker's (from its fingerprint).

    A replay is a proof only on the device class the worker used, so `auto` follows the committed
    fingerprint's `device_type`; `engine.api.select_device` refuses what the spec forbids or the
    machine lacks. CUDA needs `CUBLAS_WORKSPACE_CONFIG` before it starts: set here when unset.
    """
    import os

    from engine.api import select_device

    choice: str | None = None if requested == "auto" else requested
    if choice is None and worker_fingerprint and worker_fingerprint.get("device_type") in ("cpu", "cuda"):
        choice = str(worker_fingerprint["device_type"])
    if choice == "cuda" or (choice is None and spec.device != "cpu"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        return select_device(spec.device, choice)
    except TesseraError:
        if requested == "auto" and choice is not None:
            return select_device(spec.device, None)  # e.g. no CUDA here: the fingerprint check will say so
        raise


# ---------------------------------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------------------------------

VERIFIER_STATES = ("pending", "skipped", "clean", "unverifiable", "missed", "challenging", "challenged",
                   "won", "lost", "timed_out", "challenge_failed", "gone", "error")
MAX_UINT = 2**256 - 1


class VerifierConfig(DaemonConfig):
    """The verifier's sampling and behaviour on top of the common daemon settings (`[verifier]` table)."""

    verify_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of committed jobs to check")
    segments_per_check: int = Field(1, ge=1, le=1_024, description="segments replayed per checked job")
    watch_workers: list[str] = Field(default_factory=list, description="workers whose jobs are always checked")
    watch_jobs: list[int] = Field(default_factory=list, description="job ids always checked")
    seed: int = Field(0, ge=0, description="seed of the per-job sampling (restarts make the same choices)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where replays run")
    challenge_margin: float = Field(3.0, ge=0, description="give up when the window closes in less than this (s)")
    max_checkpoint_bytes: int = Field(2 * 1024**3, ge=1_024, description="largest checkpoint we download")
    max_spec_bytes: int = Field(1_000_000, ge=1_024, description="largest spec we download")
    fetch_timeout: float = Field(30.0, gt=0, le=600, description="seconds per artifact download")
    cache_dir: str | None = Field(None, description="local store for fetched checkpoints (default data_dir/cache)")
    behaviour: Literal["honest", "buggy"] = Field(
        "honest", description="test persona: 'buggy' reports a mismatch on a job it found correct")

    def policy(self) -> SamplingPolicy:
        """The sampling part as a `SamplingPolicy`."""
        return SamplingPolicy(verify_fraction=self.verify_fraction, segments_per_check=self.segments_per_check,
                              watch_workers=self.watch_workers, watch_jobs=self.watch_jobs, seed=self.seed)


class VerifierDaemon(Daemon):
    """Checks committed jobs, challenges wrong ones, and follows each dispute to its end.

    Local state (SQLite table `verifier_jobs`, one row per job) makes every step idempotent across
    restarts: a job is checked once, challenged at most once (outbox key `challenge:<id>`), and its
    dispute is followed until the contract says how it ended.
    """

    name = "verifier"
    event_names = ["JobCommitted", "Challenged", "Verdict", "DisputeTimedOut", "JobSettled"]

    def __init__(self, config: VerifierConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config: VerifierConfig = config
        self.client: Any = None
        self.db: Any = None
        self.cache: Any = None
        self._checks_metric: Any = None
        self._replay_seconds: Any = None

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
            " segments TEXT, challenged_segment INTEGER, reason TEXT, updated_at REAL NOT NULL)")
        self.cache = LocalStore(self.config.cache_dir or self.config.db_path("cache"))
        registry = self.metrics.registry
        if self._checks_metric is None:
            self._checks_metric = Counter("tessera_verifier_checks_total", "segment checks by outcome",
                                          ["daemon", "outcome"], registry=registry)
            self._replay_seconds = Histogram("tessera_verifier_replay_seconds", "wall time of one segment replay",
                                             ["daemon"], registry=registry,
                                             buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1_800))

    def on_start(self) -> None:
        assert self.outbox is not None, "the verifier needs an account (it posts bonds)"
        self.outbox.register_check("challenge", self._challenge_still_needed)
        self.outbox.register_check("dispute_timeout", self._timeout_still_needed)
        self.outbox.register_check("approve", lambda intent: True)
        warm_engine()
        staked = self.client.stake_info(self.address).staked
        if staked == 0:
            self.log.warning("verifier %s has no stake: challenges will be refused until it stakes", self.address,
                             extra={"event": "no_stake"})
        bond = self.client.param("Disputes", "challenge_bond")
        if self.client.allowance(self.address, self.deployment.disputes) < bond:
            self.outbox.submit("approve:disputes", "approve",
                               self.client.build_approve(self.deployment.disputes, MAX_UINT))

    # ------------------------------------------------------------------ local state

    def _row(self, job_id: int) -> Any:
        return self.db.execute("SELECT * FROM verifier_jobs WHERE job_id=?", (job_id,)).fetchone()

    def _set(self, job_id: int, state: str, reason: str = "", *, quiet: bool = False, **fields: Any) -> None:
        import time as _time

        if state not in VERIFIER_STATES:
            raise ValueError(f"unknown verifier state {state}")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO verifier_jobs(job_id, state, updated_at) VALUES (?,?,?)",
                            (job_id, state, _time.time()))
            sets = ", ".join(f"{k}=?" for k in ("state", "reason", "updated_at", *fields))
            self.db.execute(f"UPDATE verifier_jobs SET {sets} WHERE job_id=?",
                            (state, reason, _time.time(), *fields.values(), job_id))
        if not quiet:
            self.log.info("job %s: %s %s", job_id, state, reason, extra={"event": f"verifier_{state}", "job_id": job_id})

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

    def handle_event(self, event: Any) -> None:
        job_id = event.job_id
        if job_id is None:
            return
        if event.name == "JobCommitted" and self._row(job_id) is None:
            self._set(job_id, "pending", worker=event.worker.lower())
        elif event.name in ("Verdict", "DisputeTimedOut", "JobSettled") and self.job_state(job_id) in (
                "challenging", "challenged"):
            self._follow_dispute(job_id)
        elif event.name == "Challenged" and self.job_state(job_id) == "pending":
            # Someone else challenged first: nothing left for us to do on this job.
            self._set(job_id, "gone", f"challenged by {event.challenger}")

    def reconcile(self) -> None:
        """State is truth: find committed jobs we never saw, and re-read every open dispute of ours."""
        from protocol.events import JobState

        known = {int(r["job_id"]) for r in self.db.execute("SELECT job_id FROM verifier_jobs").fetchall()}
        count = self.client.job_count()
        for job_id in range(1, count + 1):
            if job_id in known:
                continue
            state = self.client.job_state(job_id)
            if state == JobState.COMMITTED:
                self._set(job_id, "pending", "found by reconcile")
            elif state.terminal:  # settled before we looked: remember it so reconcile never asks again
                self._set(job_id, "gone", f"job is {state.label}", quiet=True)
        for job_id in self._jobs_in("challenging", "challenged"):
            self._follow_dispute(job_id)

    def tick(self) -> None:
        for job_id in self._jobs_in("pending"):
            if self.stopping:
                return
            try:
                self.check_job(job_id)
            except TraceUnavailableError as exc:
                self._set(job_id, "unverifiable", str(exc))
        for job_id in self._jobs_in("challenged"):
            self._follow_dispute(job_id)

    def on_intent(self, intent: Any) -> None:
        if intent.kind != "challenge" or intent.job_id is None:
            return
        if intent.succeeded:
            self._set(intent.job_id, "challenged", f"challenge tx {intent.tx_hash}")
        elif intent.state in ("failed", "reverted", "skipped", "dropped", "cancelled"):
            self._set(intent.job_id, "challenge_failed", f"{intent.state}: {intent.reason or ''}")

    # ------------------------------------------------------------------ checking

    def check_job(self, job_id: int) -> None:
        """Decide, check and (when the worker is wrong) queue the challenge for one committed job."""
        from protocol.artifacts import open_store
        from protocol.events import JobState

        cfg = self.config
        view = self.client.job(job_id)
        job = view.job
        if view.state != JobState.COMMITTED:
            self._set(job_id, "gone", f"job is {view.state.label}")
            return
        if job.worker.lower() == (self.address or "").lower():
            self._set(job_id, "skipped", "our own job")
            return
        wanted, why = should_check(cfg.policy(), job_id, job.worker)
        if not wanted:
            self._set(job_id, "skipped", why)
            return
        if self.client.chain_time() >= job.challenge_end - cfg.challenge_margin:
            self._set(job_id, "missed", "challenge window (nearly) closed before we could check")
            return
        trace = load_committed_trace(self.client, job_id, view)  # on chain: the worker cannot withhold it
        if not view.artifact_uri:
            self._set(job_id, "unverifiable", "the job committed no artifact store URI")
            return
        worker_store = open_store(view.artifact_uri, timeout=cfg.fetch_timeout, max_bytes=cfg.max_checkpoint_bytes)
        segments = choose_segments(cfg.policy(), job_id, job.num_segments)
        spec = fetch_spec(view.spec_uri, job.spec_hash, max_bytes=cfg.max_spec_bytes, timeout=cfg.fetch_timeout)
        theirs, fp_note = fetch_fingerprint(worker_store, job.fingerprint)
        device = resolve_device(cfg.device, spec, theirs)
        mine, _ = own_fingerprint(device, spec)
        from worker.arbiter import fingerprint_differences

        comparable = theirs is not None and not fingerprint_differences(theirs, mine)
        stage_inputs(spec, self.cache, [worker_store], timeout=cfg.fetch_timeout)

        def fetch(h: str) -> None:
            if not self.cache.has(h):
                self.cache.put(worker_store.get(h, max_bytes=cfg.max_checkpoint_bytes))

        def replay(segment: int, h: str) -> str:
            import time as _time

            from engine.api import replay_segment

            started = _time.perf_counter()
            reached = replay_segment(spec, self.cache, segment, h, device=device)
            self._replay_seconds.labels(self.name).observe(_time.perf_counter() - started)
            return reached

        def availability_only(segment: int, h: str) -> str:
            return trace.state_hashes[segment + 1]  # cannot judge the computation across environments

        checks = [check_segment(trace, i, fetch, replay if comparable else availability_only) for i in segments]
        for c in checks:
            self._checks_metric.labels(self.name, c.status.value).inc()
        fault = first_fault(checks)
        if fault is None and cfg.behaviour == "buggy" and checks:
            wrong = "0x" + hashlib.sha256(f"buggy:{checks[0].committed_next}".encode()).hexdigest()
            fault = checks[0].model_copy(update={"status": CheckStatus.MISMATCH, "replayed_next": wrong,
                                                 "detail": "buggy verifier persona: reports a mismatch it did not see"})
        if fault is None:
            note = "" if comparable else f" (availability only: fingerprint {fp_note}, environments differ or unknown)"
            self._set(job_id, "clean", f"segments {segments} match{note}", segments=json.dumps(segments))
            return
        args = build_challenge(trace.state_hashes, job.result_root, fault.segment)
        if self.client.chain_time() >= job.challenge_end:
            self._set(job_id, "missed", f"found {fault.status.value} on segment {fault.segment} too late")
            return
        request = self.client.build_challenge(job_id, args.segment, args.h_i, args.proof_i, args.h_next,
                                              args.proof_next, job=job)
        self.outbox.submit(f"challenge:{job_id}", "challenge", request, job_id=job_id)
        self._set(job_id, "challenging", f"{fault.status.value} on segment {fault.segment}: {fault.detail}"[:900],
                  segments=json.dumps(segments), challenged_segment=fault.segment)

    # ------------------------------------------------------------------ following the dispute

    def _follow_dispute(self, job_id: int) -> None:
        """Read how our dispute stands; ask for `timeout` when the arbiter stayed silent past its window."""
        from protocol.events import JobState

        dispute = self.client.dispute(job_id)
        state = self.client.job_state(job_id)
        if dispute.open:
            if self.job_state(job_id) == "challenging":
                self._set(job_id, "challenged", "dispute open")
            if self.client.chain_time() > dispute.deadline:
                self.outbox.submit(f"timeout:{job_id}", "dispute_timeout", self.client.build_dispute_timeout(job_id),
                                   job_id=job_id)
            return
        if self.job_state(job_id) == "challenging" and (dispute.challenger or "").lower() != (self.address or "").lower():
            return  # our challenge is not mined yet (or was never): on_intent settles it
        if state == JobState.REJECTED:
            self._set(job_id, "won", "arbiter ruled the worker wrong")
        else:
            events = [e.name for e in self.client.job_events(job_id)]
            if "DisputeTimedOut" in events and "Verdict" not in events:
                self._set(job_id, "timed_out", "arbiter silent: bond returned")
            else:
                self._set(job_id, "lost", "arbiter ruled the worker right: bond forfeited")

    def _challenge_still_needed(self, intent: Any) -> bool:
        from protocol.events import JobState

        view = self.client.job(intent.job_id)
        return view.state == JobState.COMMITTED and self.client.chain_time() < view.job.challenge_end

    def _timeout_still_needed(self, intent: Any) -> bool:
        dispute = self.client.dispute(intent.job_id)
        return dispute.open and self.client.chain_time() > dispute.deadline
