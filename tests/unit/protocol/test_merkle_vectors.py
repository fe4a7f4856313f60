"""protocol.merkle against the shared vectors (the Vyper tests check the same file)."""

import json
from pathlib import Path

import pytest

from protocol.merkle import leaf_hash, merkle_proof, merkle_root, node_hash, root_from_proof, verify_proof

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "merkle.json").read_text())


def _b(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def test_node_example() -> None:
    example = VECTORS["node_example"]
    assert node_hash(_b(example["left"]), _b(example["right"])) == _b(example["node"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"n{len(c['state_hashes'])}")
def test_case(case: dict) -> None:
    hashes = [_b(h) for h in case["state_hashes"]]
    assert [leaf_hash(i, h) for i, h in enumerate(hashes)] == [_b(x) for x in case["leaves"]]
    root = merkle_root(hashes)
    assert root == _b(case["root"])
    for index, proof in enumerate(case["proofs"]):
        assert merkle_proof(hashes, index) == [_b(x) for x in proof]
        assert root_from_proof(index, hashes[index], [_b(x) for x in proof]) == root
        # a proof never verifies a different hash or a different position
        assert not verify_proof(root, index, bytes(32) if hashes[index] != bytes(32) else b"\x01" * 32, [_b(x) for x in proof])
        if len(hashes) > 1:
            assert not verify_proof(root, (index + 1) % len(hashes), hashes[index], [_b(x) for x in proof]) or hashes[index] == hashes[(index + 1) % len(hashes)]
