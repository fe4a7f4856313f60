"""Regenerate tests/vectors/merkle.json: `python tests/vectors/generate_merkle.py`.

The vectors pin the commitment encoding for both sides: the Python tests check `protocol.merkle`
against them and the contract tests check the Vyper verifier against them. The state hashes are
sha256 of fixed labels, so regeneration is byte-identical unless the encoding itself changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from protocol.merkle import leaf_hash, merkle_proof, merkle_root, node_hash

LEAF_COUNTS = [1, 2, 3, 4, 5, 8, 9, 17]


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def build() -> dict:
    cases = []
    for count in LEAF_COUNTS:
        hashes = [hashlib.sha256(f"tessera-vector-{count}-{i}".encode()).digest() for i in range(count)]
        cases.append(
            {
                "state_hashes": [_hex(h) for h in hashes],
                "leaves": [_hex(leaf_hash(i, h)) for i, h in enumerate(hashes)],
                "root": _hex(merkle_root(hashes)),
                "proofs": [[_hex(s) for s in merkle_proof(hashes, i)] for i in range(count)],
            }
        )
    a, b = bytes(range(32)), bytes(range(32, 64))
    return {
        "encoding": "leaf = keccak256(0x00 || uint256_be(i) || h_i); node = keccak256(0x01 || left || right); "
        "pad with zero words to a power of two",
        "node_example": {"left": _hex(a), "right": _hex(b), "node": _hex(node_hash(a, b))},
        "cases": cases,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("merkle.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
