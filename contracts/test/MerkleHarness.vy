# pragma version ~=0.4.3
"""
@title MerkleHarness
@notice Test-only contract exposing the internal `merkle` module so the shared vectors in
        tests/vectors/merkle.json can be checked against the exact Vyper code the disputes use.
@dev Never deployed outside tests.
"""

from ..lib import merkle


@external
@pure
def depth(num_leaves: uint256) -> uint256:
    """
    @notice Proof length for a tree of `num_leaves` leaves.
    @param num_leaves Leaf count before padding.
    @return ceil(log2(num_leaves)).
    """
    return merkle._depth(num_leaves)


@external
@pure
def root_from_proof(
    index: uint256, state_hash: bytes32, proof: DynArray[bytes32, merkle.MAX_DEPTH]
) -> bytes32:
    """
    @notice Root recomputed from one leaf and its proof.
    @param index Leaf position.
    @param state_hash The leaf's state hash.
    @param proof Sibling words, bottom-up.
    @return The recomputed root.
    """
    return merkle._root_from_proof(index, state_hash, proof)


@external
@pure
def verify(
    root: bytes32,
    num_leaves: uint256,
    index: uint256,
    state_hash: bytes32,
    proof: DynArray[bytes32, merkle.MAX_DEPTH],
) -> bool:
    """
    @notice Full check as the disputes contract does it.
    @param root The committed root.
    @param num_leaves Leaf count before padding.
    @param index Leaf position.
    @param state_hash The claimed state hash.
    @param proof Sibling words, bottom-up.
    @return Whether the proof is valid.
    """
    return merkle._verify(root, num_leaves, index, state_hash, proof)


@external
@pure
def leaf_hash(index: uint256, state_hash: bytes32) -> bytes32:
    """
    @notice The leaf encoding on its own.
    @param index Leaf position.
    @param state_hash The state hash.
    @return keccak256(0x00 ‖ uint256_be(index) ‖ state_hash).
    """
    return merkle._leaf(index, state_hash)


@external
@pure
def node_hash(left: bytes32, right: bytes32) -> bytes32:
    """
    @notice The inner-node encoding on its own.
    @param left Left child.
    @param right Right child.
    @return keccak256(0x01 ‖ left ‖ right).
    """
    return merkle._node(left, right)
