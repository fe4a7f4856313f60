# pragma version ~=0.4.3
"""
@title merkle
@notice Tessera result roots, byte for byte as `protocol/merkle.py`: proof verification (disputes) and
        the fold that finishes a root streamed over a committed trace (escrow).
@dev leaf = keccak256(0x00 ‖ uint256_be(i) ‖ h_i); node = keccak256(0x01 ‖ left ‖ right);
     the leaf list is padded with zero words to the next power of two, so a proof for a tree
     of `num_leaves` leaves has exactly ceil(log2(num_leaves)) siblings, bottom-up, and bit j
     of the index says whether the running node is the right child at level j.
"""

# 2048 leaves (N <= 1024 segments -> N + 1 <= 1025 leaves) -> 11 levels.
MAX_DEPTH: constant(uint256) = 11
# N + 1 state hashes for N <= 1_024 segments.
MAX_LEAVES: constant(uint256) = 1_025


@internal
@pure
def _depth(num_leaves: uint256) -> uint256:
    """
    @notice Number of siblings in a proof for a tree of `num_leaves` leaves.
    @dev ceil(log2(num_leaves)); 0 for a one-leaf tree. Reverts above 2**MAX_DEPTH leaves.
    @param num_leaves Leaf count before padding (N + 1 for a job of N segments).
    @return The proof length.
    """
    assert num_leaves != 0 and num_leaves <= 1 << MAX_DEPTH, "merkle: bad leaf count"
    depth: uint256 = 0
    width: uint256 = 1
    for _: uint256 in range(MAX_DEPTH):
        if width >= num_leaves:
            break
        width <<= 1
        depth += 1
    return depth


@internal
@pure
def _root_from_proof(
    index: uint256, state_hash: bytes32, proof: DynArray[bytes32, MAX_DEPTH]
) -> bytes32:
    """
    @notice Recompute the root from leaf `index` holding `state_hash` and its proof.
    @param index Leaf position (segment boundary i).
    @param state_hash The state hash h_i stored in the leaf.
    @param proof Sibling words, bottom-up.
    @return The root the proof leads to.
    """
    node: bytes32 = keccak256(concat(b"\x00", convert(index, bytes32), state_hash))
    position: uint256 = index
    for sibling: bytes32 in proof:
        if position & 1 == 1:
            node = keccak256(concat(b"\x01", sibling, node))
        else:
            node = keccak256(concat(b"\x01", node, sibling))
        position >>= 1
    return node


@internal
@pure
def _verify(
    root: bytes32,
    num_leaves: uint256,
    index: uint256,
    state_hash: bytes32,
    proof: DynArray[bytes32, MAX_DEPTH],
) -> bool:
    """
    @notice True when `proof` shows `state_hash` at `index` under `root`.
    @dev Rejects an index outside the tree and any proof whose length is not exactly the
         tree depth, so a proof can never be reinterpreted at another level or position.
    @param root The committed result root.
    @param num_leaves Leaf count before padding (N + 1).
    @param index Leaf position.
    @param state_hash The state hash claimed at `index`.
    @param proof Sibling words, bottom-up.
    @return Whether the proof is valid.
    """
    if index >= num_leaves:
        return False
    if len(proof) != self._depth(num_leaves):
        return False
    return self._root_from_proof(index, state_hash, proof) == root



@internal
@pure
def _leaf(index: uint256, state_hash: bytes32) -> bytes32:
    """
    @notice The leaf encoding: keccak256(0x00 ‖ uint256_be(index) ‖ state_hash).
    @param index Leaf position (segment boundary i).
    @param state_hash The state hash h_i.
    @return The leaf hash.
    """
    return keccak256(concat(b"\x00", convert(index, bytes32), state_hash))


@internal
@pure
def _node(left: bytes32, right: bytes32) -> bytes32:
    """
    @notice The inner-node encoding: keccak256(0x01 ‖ left ‖ right).
    @param left Left child.
    @param right Right child.
    @return The node hash.
    """
    return keccak256(concat(b"\x01", left, right))


@internal
@pure
def _fold(frontier: bytes32[MAX_DEPTH + 1], count: uint256) -> bytes32:
    """
    @notice Finish a streamed root: fold the frontier left by `count` leaves up to the root.
    @dev The caller streams leaves 0 .. count-1 through `frontier`: leaf i becomes `node`; while
         bit `level` of i is 1, node = _node(frontier[level], node) and level += 1; then
         frontier[level] = node. That keeps one pending left subtree per level instead of the
         padded width-sized level (up to 2_048 words), and never hashes the padding leaf by leaf.
         Here the path from position `count` (the first padding word) goes up to the root,
         combining with frontier[level] where that bit of `count` is 1 and with the all-padding
         subtree Z_level (Z_0 = 0, Z_{l+1} = _node(Z_l, Z_l)) where it is 0.
    @param frontier The streamed frontier.
    @param count Number of leaves streamed, 1 .. 2**MAX_DEPTH.
    @return The root, equal to `protocol.merkle.merkle_root` over the same state hashes.
    """
    depth: uint256 = self._depth(count)
    if count == 1 << depth:
        return frontier[depth]  # a full tree: the last merge left the root on top
    root: bytes32 = empty(bytes32)  # the subtree holding position `count`: all padding so far
    zero: bytes32 = empty(bytes32)  # Z_level
    for level: uint256 in range(depth, bound=MAX_DEPTH):
        if (count >> level) & 1 == 1:
            root = self._node(frontier[level], root)
        else:
            root = self._node(root, zero)
        zero = self._node(zero, zero)
    return root
