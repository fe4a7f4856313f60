"""Small helpers for the SDK tests: a fake committed trace and a posted job."""

from __future__ import annotations

import json
from dataclasses import dataclass

from protocol.hashing import sha256_hex
from protocol.merkle import merkle_root

TOKEN = 10**18


@dataclass
class Trace:
    state_hashes: list[str]
    result_root: str
    output: bytes
    output_hash: str
    fingerprint: bytes
    fingerprint_hash: str


def make_trace(num_segments: int, seed: int = 0) -> Trace:
    """A made-up but self-consistent trace h_0..h_N with an output and a fingerprint."""
    states = [sha256_hex(f"state {seed} {i}".encode()) for i in range(num_segments + 1)]
    root = "0x" + merkle_root([bytes.fromhex(h[2:]) for h in states]).hex()
    output = f"weights of run {seed}".encode() * 10
    fingerprint = json.dumps({"device": "cpu", "seed": seed}, sort_keys=True, separators=(",", ":")).encode()
    return Trace(states, root, output, sha256_hex(output), fingerprint, sha256_hex(fingerprint))


def spec_hash_for(label: str) -> str:
    return sha256_hex(label.encode())
