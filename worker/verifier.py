"""The verifier: re-run sampled segments of committed jobs and challenge the wrong ones (level-1 disputes).

A verifier watches `JobCommitted`, decides (seeded, per job) whether to check the job, fetches the trace
manifest the worker committed to (`artifact_uri` = `<store>#trace=<hash>`, docs/architecture.md), replays
a few randomly chosen segments from the worker's own checkpoints with `engine.api.replay_segment`, and
compares each result with the committed `h_{i+1}`. On a mismatch, or when checkpoint `h_i` cannot be
fetched or does not hash to `h_i`, it challenges before the window closes with Merkle proofs of `h_i`
and `h_{i+1}` against the committed root, posting the bond, and follows the dispute to its end.

This module holds the pure decision logic (sampling, trace manifests, comparison, proofs), tested on
its own in tests/unit/disputes, and `VerifierDaemon`, which runs it on the shared runtime
(`worker.runtime`: cursor with reorgs, outbox, metrics, encrypted keys). torch is only imported by the
engine when a segment is actually replayed.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocol.errors import ArtifactError, DisputeError, HashMismatchError, TraceUnavailableError
from protocol.hashing import from_hex, to_hex
from protocol.merkle import merkle_proof, merkle_root, verify_proof

TRACE_FRAGMENT = "#trace="
EVIDENCE_FRAGMENT = "#evidence="
MAX_TRACE_BYTES = 256_000  # 1025 hashes of 68 characters plus the header, with room to spare
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
# Trace manifest: the leaves h_0 … h_N behind a committed result root
# ---------------------------------------------------------------------------------------------------

class TraceManifest(BaseModel):
    """The trace a worker committed to; its canonical JSON is stored in the worker's store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    spec_hash: str
    result_root: str
    output_hash: str
    fingerprint_hash: str
    state_hashes: list[str] = Field(min_length=2, max_length=1_025)

    @field_validator("spec_hash", "result_root", "output_hash", "fingerprint_hash")
    @classmethod
    def _is_hash(cls, value: str) -> str:
        return _hex32(value, "hash")

    @field_validator("state_hashes")
    @classmethod
    def _are_hashes(cls, values: list[str]) -> list[str]:
        return [_hex32(v, f"state_hashes[{i}]") for i, v in enumerate(values)]

    @property
    def num_segments(self) -> int:
        """N: the trace holds h_0 … h_N."""
        return len(self.state_hashes) - 1

    def canonical_bytes(self) -> bytes:
        """Sorted keys, no spaces, UTF-8: the bytes whose sha256 names the manifest."""
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()

    def computed_root(self) -> str:
        """Merkle root over the manifest's state hashes (must equal `result_root`)."""
        return to_hex(merkle_root([from_hex(h) for h in self.state_hashes]))


def trace_manifest_bytes(
    spec_hash: str, result_root: str, output_hash: str, fingerprint_hash: str, state_hashes: Sequence[str]
) -> bytes:
    """Canonical manifest bytes for a committed trace (docs/architecture.md, "Trace manifest")."""
    return TraceManifest(
        spec_hash=spec_hash, result_root=result_root, output_hash=output_hash,
        fingerprint_hash=fingerprint_hash, state_hashes=list(state_hashes),
    ).canonical_bytes()


def publish_trace(store: ArtifactStoreLike, run_result: Any) -> str:
    """Put the manifest of `run_result` (an `engine.api.RunResult`, after any behaviour) into `store`.

    Returns the manifest's hash, to be committed as `artifact_uri_with_trace(store_uri, hash)`.
    """
    data = trace_manifest_bytes(
        run_result.spec_hash, run_result.result_root, run_result.output_hash,
        run_result.fingerprint_hash, run_result.state_hashes,
    )
    return store.put(data)


def artifact_uri_with_trace(store_uri: str, trace_hash: str) -> str:
    """The `artifact_uri` a worker commits: its public store URI plus `#trace=<manifest hash>`."""
    if "#" in store_uri:
        raise ValueError(f"store URI must not carry a fragment: {store_uri!r}")
    return f"{store_uri}{TRACE_FRAGMENT}{_hex32(trace_hash, 'trace hash')}"


def split_artifact_uri(uri: str) -> tuple[str, str | None]:
    """Split a committed `artifact_uri` into (store URI, trace manifest hash or None when absent)."""
    if not isinstance(uri, str) or not uri:
        raise TraceUnavailableError(f"artifact URI is empty or not text: {uri!r}")
    if TRACE_FRAGMENT not in uri:
        return uri, None
    store_uri, _, fragment = uri.partition(TRACE_FRAGMENT)
    if not store_uri or not HEX32_RE.match(fragment.lower()):
        raise TraceUnavailableError(f"artifact URI has a malformed trace fragment: {uri!r}")
    return store_uri, fragment.lower()


def load_trace(store: ArtifactStoreLike, trace_hash: str, result_root: str, *, spec_hash: str | None = None,
               max_bytes: int = MAX_TRACE_BYTES) -> TraceManifest:
    """Fetch, verify and parse a trace manifest; it must match the committed root (and spec hash if given).

    Raises `TraceUnavailableError` saying which check failed; never trusts the manifest's own claims.
    """
    try:
        data = store.get(trace_hash, max_bytes=max_bytes)
    except (ArtifactError, HashMismatchError) as exc:
        raise TraceUnavailableError(f"trace manifest {trace_hash} unavailable: {exc}") from None
    try:
        manifest = TraceManifest.model_validate_json(data)
    except ValueError as exc:
        raise TraceUnavailableError(f"trace manifest {trace_hash} is malformed: {exc}") from None
    if manifest.result_root != result_root.lower():
        raise TraceUnavailableError(
            f"trace manifest {trace_hash} names root {manifest.result_root}, job committed {result_root.lower()}")
    if manifest.computed_root() != result_root.lower():
        raise TraceUnavailableError(f"trace manifest {trace_hash}: its state hashes do not hash to the committed root")
    if spec_hash is not None and manifest.spec_hash != spec_hash.lower():
        raise TraceUnavailableError(f"trace manifest {trace_hash} is for spec {manifest.spec_hash}, not {spec_hash}")
    return manifest


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
    CHECKPOINT_WRONG = "checkpoint_wrong"  # the bytes served for h_i do not hash to h_i

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
    trace: TraceManifest,
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
    reached = _hex32(replay(segment, h_i), "replayed hash")
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


