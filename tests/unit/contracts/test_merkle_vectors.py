"""The shared Merkle vectors, checked against the Vyper `merkle` module (via the test-only
MerkleHarness): every case, every index, plus the rejections the disputes rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "merkle.json").read_text())


def b(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str[2:])


@pytest.fixture(scope="module")
def harness(project, deployer):
    return deployer.deploy(project.MerkleHarness)


def test_node_example(harness):
    ex = VECTORS["node_example"]
    assert harness.node_hash(b(ex["left"]), b(ex["right"])) == b(ex["node"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"leaves{len(c['state_hashes'])}")
def test_every_index_of_every_case(harness, case):
    hashes = [b(h) for h in case["state_hashes"]]
    root = b(case["root"])
    n_leaves = len(hashes)
    depth = harness.depth(n_leaves)
    assert depth == (n_leaves - 1).bit_length()
    for index, h in enumerate(hashes):
        proof = [b(p) for p in case["proofs"][index]]
        assert len(proof) == depth
        assert harness.leaf_hash(index, h) == b(case["leaves"][index])
        assert harness.root_from_proof(index, h, proof) == root
        assert harness.verify(root, n_leaves, index, h, proof)
        # wrong state hash, wrong index, tampered sibling: all rejected
        assert not harness.verify(root, n_leaves, index, b"\x01" * 32, proof)
        if n_leaves > 1:
            other = (index + 1) % n_leaves
            assert not harness.verify(root, n_leaves, other, h, proof)
            tampered = list(proof)
            tampered[0] = bytes(31) + b"\x01" if tampered[0] != bytes(31) + b"\x01" else bytes(32)
            assert not harness.verify(root, n_leaves, index, h, tampered)


@pytest.mark.parametrize("case", VECTORS["cases"][2:], ids=lambda c: f"leaves{len(c['state_hashes'])}")
def test_wrong_proof_length_rejected(harness, case):
    hashes = [b(h) for h in case["state_hashes"]]
    root = b(case["root"])
    proof = [b(p) for p in case["proofs"][0]]
    # one sibling short, one too many (a padded tree's root reached at another level)
    assert not harness.verify(root, len(hashes), 0, hashes[0], proof[:-1])
    assert not harness.verify(root, len(hashes), 0, hashes[0], proof + [bytes(32)])


def test_index_outside_tree_rejected(harness):
    case = VECTORS["cases"][3]  # 4 leaves, width 4
    hashes = [b(h) for h in case["state_hashes"]]
    proof = [b(p) for p in case["proofs"][0]]
    assert not harness.verify(b(case["root"]), len(hashes), len(hashes), hashes[0], proof)


def test_depth_bounds(harness):
    import ape

    assert harness.depth(1) == 0
    assert harness.depth(2) == 1
    assert harness.depth(1025) == 11
    assert harness.depth(2048) == 11
    with ape.reverts("merkle: bad leaf count"):
        harness.depth(2049)
    with ape.reverts("merkle: bad leaf count"):
        harness.depth(0)
