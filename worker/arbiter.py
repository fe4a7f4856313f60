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
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from worker.verifier import EVIDENCE_FRAGMENT, ZERO_HASH

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
