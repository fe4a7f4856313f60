"""How each dishonest worker persona changes the honest commit (pure functions over the commit arguments).

| behaviour | what it commits | how v2 catches it |
| --- | --- | --- |
| `honest` | the honest result (with `--claim-device`: described as another machine's run) | nothing to catch: it finalizes |
| `fake-trace` | the real h_0, then random state hashes and a made-up output (as if it skipped training) | any sampled segment: checkpoint missing (UNAVAILABLE), output check |
| `tamper-segment` | the real trace with h_j altered, j = max(1, N//2) (portable training: the root of a checkpoint j it stores, a weight bit flipped) | segment j−1 replay mismatch (SEGMENT) |
| `corrupt-op` | the honest commit of a run whose one kernel call was wrong: in the last step of segment j = max(1, N//2), the last positive element of the first portable `linear` output has a mantissa bit flipped (`personas.corrupting`); its dispute kits replay the same wrong call | segment j replay mismatch (SEGMENT); a refereed game bisects to that call and the element rule recomputes it |
| `withhold-checkpoint` | the real trace, checkpoint h_j deleted from its store, j = N//2 | segment j: UNAVAILABLE, arbiter rules worker wrong |
| `late-checkpoint` | the real trace, checkpoint h_j served only once a dispute is filed | UNAVAILABLE filed, arbiter finds it and rules right: a tenth of the bond to the treasury, nothing to the worker (F-08) |
| `wrong-output` | the real trace, another artifact's hash as output | the output check (OUTPUT) |
| `foreign-environment` | a made-up trace claimed in an environment class of its own choosing | the escrow refuses the commit (F-03); the job expires and costs the worker its expiry compensation |

The worker daemon's `transform_commit` hook calls `apply`; production code never imports this package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from protocol.errors import ConfigError
from protocol.hashing import from_hex, sha256_hex

CORRUPT_OP = "corrupt-op"
BEHAVIOURS = ("honest", "fake-trace", "tamper-segment", CORRUPT_OP, "withhold-checkpoint", "late-checkpoint",
              "wrong-output", "foreign-environment")
CORRUPTING_CHILD = ("-m", "personas.corrupting")  # the child entry of `corrupt-op`'s runs and kits


def tampered_index(num_segments: int) -> int:
    """The boundary `tamper-segment` alters: a middle one, never h_0 (which the spec fixes)."""
    return max(1, num_segments // 2)


def withheld_index(num_segments: int) -> int:
    """The checkpoint `withhold-checkpoint` / `late-checkpoint` holds back: one a replay of segment j needs."""
    return num_segments // 2 if num_segments >= 2 else 0


def check_name(name: str) -> None:
    if name not in BEHAVIOURS:
        raise ConfigError(f"unknown worker behaviour {name!r}: expected one of {', '.join(BEHAVIOURS)}")


def apply(name: str, args: dict[str, Any], store: Any, hold_dir: Path | None = None, spec: Any = None,
          skeleton: tuple[bytes, int, int] | None = None) -> dict[str, Any]:
    """Persona `name`'s version of the honest commit `args` (state_hashes, output_hash, env_class, …).

    `store` is the worker's local artifact store; `hold_dir` where `late-checkpoint` parks its checkpoint;
    `spec` the job's (a portable training job's tampered checkpoint is stored under its state root, bound
    to `skeleton`, the job's step-record (S, L) and per_epoch: recorded here when not given).
    """
    check_name(name)
    args = dict(args)
    hashes = list(args["state_hashes"])
    n = len(hashes) - 1
    if name in ("fake-trace", "foreign-environment"):
        hashes = [hashes[0], *(sha256_hex(os.urandom(32)) for _ in range(n))]
        args["output_hash"] = store.put(b"made-up weights " + os.urandom(32))
        if name == "foreign-environment":
            args["env_class"] = sha256_hex(b"an environment class of the worker's own choosing")
    elif name == "tamper-segment":
        j = tampered_index(n)
        hashes[j] = tampered_state(spec, store, j, hashes[j], skeleton) if spec is not None and _by_root(spec) else \
            sha256_hex(b"tampered:" + from_hex(hashes[j]))
    elif name == "withhold-checkpoint":
        _path(store, hashes[withheld_index(n)]).unlink(missing_ok=True)
    elif name == "late-checkpoint":
        assert hold_dir is not None, "late-checkpoint needs a folder to park the checkpoint in"
        path = _path(store, hashes[withheld_index(n)])
        hold_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.replace(hold_dir / path.name)
    elif name == "wrong-output":
        args["output_hash"] = store.put(b"some other model " + os.urandom(32))
    args["state_hashes"] = hashes
    return args


def _by_root(spec: Any) -> bool:
    from engine.api import uses_state_roots

    return uses_state_roots(spec)


def tampered_state(spec: Any, store: Any, boundary: int, honest: str, skeleton: tuple[bytes, int, int] | None = None) -> str:
    """The state root of honest checkpoint `boundary` with the lowest bit of its last value flipped (the
    last tensor in name order is a float32 weight: still a valid checkpoint, another state), stored under
    that root so a judge can fetch it: the replay of the segment before reaches another root."""
    from engine.api import checkpoint_naming

    data = bytearray(_path(store, honest).read_bytes())
    data[-4] ^= 1  # little-endian float32: the low byte of the last value's mantissa
    return store.put(bytes(data), naming=checkpoint_naming(spec, store, boundary, skeleton))


def release_held(store: Any, hold_dir: Path) -> int:
    """Put every parked checkpoint back into the store (`late-checkpoint`, once challenged)."""
    moved = 0
    for parked in sorted(hold_dir.glob("*")) if hold_dir.is_dir() else []:
        parked.replace(_path(store, "0x" + parked.name[-64:]))
        moved += 1
    return moved


def _path(store: Any, hash_hex: str) -> Path:
    path_of = getattr(store, "path_of", None)
    if path_of is None:
        raise ConfigError(f"this persona needs a local store it can change, got {store!r}")
    return Path(path_of(hash_hex))
