"""Seeds for one purpose each, derived from the spec's seed (pure integer and sha256 arithmetic)."""

from __future__ import annotations

import hashlib

from protocol.spec import canonical_json


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed for one purpose: sha256 of the canonical JSON `[seed, *labels]` (as strings)."""
    digest = hashlib.sha256(canonical_json([str(seed), *[str(label) for label in labels]])).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
