"""The commitment tree shared with the contracts (docs/protocol.md, "Result root").

Leaves are `keccak256(0x00 ‖ uint256_be(i) ‖ h_i)` for the segment-boundary state hashes
`h_0 … h_N`; inner nodes are `keccak256(0x01 ‖ left ‖ right)`. The leaf list is padded with zero words
to the next power of two, so a proof is exactly `log2(width)` siblings and the index bits alone say
left or right. The domain bytes keep a leaf from ever being read as a node and vice versa; the index
inside the leaf pins every hash to its position.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak

ZERO = bytes(32)
MAX_LEAVES = 2048  # N <= 1024 segments -> 1025 leaves -> width 2048 -> proofs of 11 siblings


def leaf_hash(index: int, state_hash: bytes) -> bytes:
    """Hash of leaf `index` holding the 32-byte state hash `state_hash`."""
    if not 0 <= index < 2**256:
        raise ValueError(f"leaf index out of range: {index}")
    if len(state_hash) != 32:
        raise ValueError(f"state hash must be 32 bytes, got {len(state_hash)}")
    return keccak(b"\x00" + index.to_bytes(32, "big") + state_hash)


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an inner node from its two 32-byte children."""
    return keccak(b"\x01" + left + right)


def _width(count: int) -> int:
    width = 1
    while width < count:
        width *= 2
    return width


def _levels(state_hashes: Sequence[bytes]) -> list[list[bytes]]:
    if not state_hashes:
        raise ValueError("a result root needs at least one state hash")
    if len(state_hashes) > MAX_LEAVES:
        raise ValueError(f"too many leaves: {len(state_hashes)} > {MAX_LEAVES}")
    level = [leaf_hash(i, h) for i, h in enumerate(state_hashes)]
    level += [ZERO] * (_width(len(level)) - len(level))
    levels = [level]
    while len(level) > 1:
        level = [node_hash(level[j], level[j + 1]) for j in range(0, len(level), 2)]
        levels.append(level)
    return levels


def merkle_root(state_hashes: Sequence[bytes]) -> bytes:
    """Result root over `h_0 … h_N`."""
    return _levels(state_hashes)[-1][0]


def merkle_proof(state_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling words, bottom-up, proving leaf `index` against `merkle_root(state_hashes)`."""
    if not 0 <= index < len(state_hashes):
        raise ValueError(f"index {index} outside 0..{len(state_hashes) - 1}")
    proof = []
    position = index
    for level in _levels(state_hashes)[:-1]:
        proof.append(level[position ^ 1])
        position //= 2
    return proof


def root_from_proof(index: int, state_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from one leaf and its proof (what the contract does)."""
    node = leaf_hash(index, state_hash)
    position = index
    for sibling in proof:
        node = node_hash(sibling, node) if position & 1 else node_hash(node, sibling)
        position //= 2
    if position != 0:
        raise ValueError("index has more bits than the proof has levels")
    return node


def verify_proof(root: bytes, index: int, state_hash: bytes, proof: Sequence[bytes]) -> bool:
    """True when `proof` shows `state_hash` at `index` under `root`."""
    try:
        return root_from_proof(index, state_hash, proof) == root
    except ValueError:
        return False
