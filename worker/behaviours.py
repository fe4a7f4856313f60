"""Dishonest worker personas, for tests and demos of the dispute path only. Never imported when honest.

The worker daemon has a `behaviour` setting (default "honest"). For any other value it calls
`apply(name, run_result, store)` after the engine ran and before committing, and commits what it
returns. `apply` also rewrites `run_result.state_hashes` / `result_root` / `output_hash` to the trace it
commits, so the worker commits `run_result.state_hashes` (the escrow computes the root from them)
exactly as on the honest path.

Personas (the three ways to cheat a verifier must catch, docs/disputes.md):
- `fake-trace`: commits a made-up trace (unguessable random state hashes, a made-up output) as if it had
  skipped training; none of its checkpoints exist, so any check of any segment catches it.
- `tamper-segment`: trains correctly but alters the hash of one middle boundary `h_j` (j = max(1, N//2));
  replaying segment j−1 reaches the real h_j, and checkpoint h_j cannot be fetched: segments j−1 and j
  are both caught.
- `withhold-checkpoint`: commits the correct trace but deletes checkpoint `h_j` (j = N//2) from its store;
  segment j cannot be replayed and the arbiter rules against it.
"""

from __future__ import annotations

import os
from typing import Any

from protocol.errors import ConfigError
from protocol.hashing import from_hex, sha256_hex, to_hex
from protocol.merkle import merkle_root

BEHAVIOURS = ("fake-trace", "tamper-segment", "withhold-checkpoint")
# The worker may skip the engine run for these (it commits nothing it computed).
SKIPS_TRAINING = frozenset({"fake-trace"})


def skips_training(name: str) -> bool:
    """True when persona `name` commits without needing a real run (the worker may skip the engine)."""
    _check_name(name)
    return name in SKIPS_TRAINING


def tampered_index(num_segments: int) -> int:
    """The boundary `tamper-segment` alters: a middle one, never h_0 (which follows from the spec)."""
    return max(1, num_segments // 2)


def withheld_index(num_segments: int) -> int:
    """The checkpoint `withhold-checkpoint` deletes: one a replay of segment j needs (j < N)."""
    return num_segments // 2 if num_segments >= 2 else 0


def apply(name: str, run_result: Any, store: Any) -> tuple[str, str, str]:
    """Turn an honest `run_result` into what persona `name` commits: (result_root, output_hash, fingerprint_hash).

    Rewrites `run_result`'s trace fields in place to the committed ones. `store` is the worker's own
    artifact store (a `protocol.artifacts.LocalStore` for `withhold-checkpoint`, which deletes a file).
    """
    _check_name(name)
    state_hashes = list(run_result.state_hashes)
    output_hash = run_result.output_hash
    if name == "fake-trace":
        state_hashes = [sha256_hex(os.urandom(32)) for _ in state_hashes]
        output_hash = store.put(b"made-up weights " + os.urandom(32))
    elif name == "tamper-segment":
        j = tampered_index(len(state_hashes) - 1)
        state_hashes[j] = sha256_hex(b"tampered:" + from_hex(state_hashes[j]))
    elif name == "withhold-checkpoint":
        _delete_from_store(store, state_hashes[withheld_index(len(state_hashes) - 1)])
    result_root = to_hex(merkle_root([from_hex(h) for h in state_hashes]))
    _rewrite(run_result, state_hashes=state_hashes, result_root=result_root, output_hash=output_hash)
    return result_root, output_hash, run_result.fingerprint_hash


def _check_name(name: str) -> None:
    if name not in BEHAVIOURS:
        raise ConfigError(f"unknown worker behaviour {name!r}: expected honest or one of {', '.join(BEHAVIOURS)}")


def _delete_from_store(store: Any, hash_hex: str) -> None:
    """Remove one artifact from a local store (no store API deletes: only this persona needs it)."""
    path_of = getattr(store, "path_of", None)
    if path_of is None:
        raise ConfigError(f"withhold-checkpoint needs a local store it can delete from, got {store!r}")
    path = path_of(hash_hex)
    if path.exists():
        path.unlink()


def _rewrite(run_result: Any, **fields: Any) -> None:
    for key, value in fields.items():
        try:
            setattr(run_result, key, value)
        except (TypeError, ValueError, AttributeError):  # a frozen model: this persona lies on purpose
            object.__setattr__(run_result, key, value)
