"""Content hashes and their text forms.

Artifacts, specs, checkpoints and weights are named by the sha256 of their exact bytes (32 bytes,
shown as 0x-prefixed lower-case hex). Only the Merkle tree uses keccak256 (see `protocol.merkle`),
because the contracts must recompute it cheaply.
"""

from __future__ import annotations

import hashlib
import re

from protocol.errors import HashMismatchError

HASH_HEX_RE = re.compile(r"^0x[0-9a-f]{64}$")


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 32-byte sha256 digest of `data`."""
    return hashlib.sha256(data).digest()


def to_hex(digest: bytes) -> str:
    """Render a 32-byte digest as `0x` + 64 lower-case hex digits."""
    if len(digest) != 32:
        raise ValueError(f"expected 32 bytes, got {len(digest)}")
    return "0x" + digest.hex()


def from_hex(text: str) -> bytes:
    """Parse `0x` + 64 hex digits (any case) into 32 bytes; raise ValueError with the reason."""
    if not isinstance(text, str):
        raise ValueError(f"hash must be a string, got {type(text).__name__}")
    lowered = text.lower()
    if not HASH_HEX_RE.match(lowered):
        raise ValueError(f"not a 32-byte hex hash (0x + 64 hex digits): {text!r}")
    return bytes.fromhex(lowered[2:])


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """sha256 of `data` as `0x…` hex."""
    return to_hex(sha256(data))


def verify(data: bytes, expected_hex: str, what: str = "artifact") -> None:
    """Raise `HashMismatchError` unless sha256(data) equals `expected_hex`."""
    actual = sha256_hex(data)
    if actual != expected_hex.lower():
        raise HashMismatchError(f"{what} hash mismatch: expected {expected_hex.lower()}, got {actual}")


# The state hash of every boundary after a training run diverged (a NaN or infinite loss), and the
# output hash of such a run. Divergence is a deterministic result of the spec in its environment class:
# the worker commits it instead of failing the job, and anyone can check it by replaying the segment it
# began in. No checkpoint can hash to it (its preimage is this label, not a checkpoint).
DIVERGED_HASH = sha256_hex(b"tessera/diverged/1")
