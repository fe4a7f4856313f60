# pragma version ~=0.4.3
"""
@title state_link
@notice The link of the referee game (docs/referee.md, "On chain: the game"): with the step record's
        last prefix root P_{L-1} agreed and the next state root r_{t+1} disputed, the defender shows
        that a disputed tensor leaf 1 + a of r_{t+1} is what the agreed record makes of state tensor a.
        The state map (leaf L of the skeleton tree S: keccak256(0x19 ‖ map), per state tensor in
        sorted-name order `uint32 entry ‖ uint8 output`, 0xffffffff for a tensor left unchanged) names
        the entry output that becomes it; that entry's leaf is proven under P_{L-1}, the tensor's name
        and old root under the agreed r_t, and leaf 1 + a of r_{t+1} must be the same name with the
        output's root (or the old root when unchanged).
@dev Pure checks (no state, no calls), so the host can run them in a contract of their own under
     EIP-170 (`StateLink.vy`).
"""

from . import commitments

# The link reveals every leaf of r_{t+1} in one move; larger states escalate at the link.
MAX_LINK_LEAVES: constant(uint256) = 2_048
MAX_MAP_BYTES: constant(uint256) = 10_235  # 5 bytes per state tensor, MAX_LINK_LEAVES - 1 tensors
UNCHANGED: constant(uint256) = 4_294_967_295  # the map's entry field of a tensor the step leaves as it was


# What the game has agreed and pinned when the link opens.
struct LinkClaim:
    # S and L, from the agreed r_t's header
    skeleton_root: bytes32
    record_length: uint256
    # the agreed P_{L-1}, the agreed r_t and the disputed r_{t+1}
    last_prefix: bytes32
    state_root: bytes32
    next_root: bytes32
    # leaves of a state (1 + tensors) and the disputed leaf 1 + a
    leaf_count: uint256
    leaf: uint256


# The defender's proof that leaf 1 + a of r_{t+1} is what the agreed record makes of state tensor a.
struct LinkProof:
    # the state map and its path under S (leaf L)
    state_map: Bytes[MAX_MAP_BYTES]
    map_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH]
    # the tensor's name hash and root in the agreed r_t, and that leaf's path there
    name_hash: bytes32
    old_root: bytes32
    old_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH]
    # the path of leaf 1 + a under r_{t+1}
    new_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH]
    # the entry the map names (ignored when unchanged): skeleton leaf, output roots, path under P_{L-1}
    skeleton_leaf: bytes32
    out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS]
    entry_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH]


@internal
@pure
def _record_width(length: uint256) -> uint256:
    """
    @notice W: the next power of two >= L + 1 (the L skeleton leaves and the state map's leaf).
    @param length L.
    @return W.
    """
    width: uint256 = 1
    for _: uint256 in range(commitments.MAX_RECORD_DEPTH):
        if width > length:
            break
        width <<= 1
    assert width > length, "state_link: record too long"
    return width


@internal
@pure
def _state_tree_root(leaves: DynArray[bytes32, MAX_LINK_LEAVES]) -> bytes32:
    """
    @notice The state tree over `leaves`: nodes keccak256(0x15 ‖ l ‖ r), zero words to a power of two.
    @param leaves The leaves (1 … MAX_LINK_LEAVES).
    @return The root.
    """
    assert len(leaves) >= 1, "state_link: no leaves"
    width: uint256 = 1 << commitments._depth(len(leaves))
    nodes: DynArray[bytes32, MAX_LINK_LEAVES] = leaves
    for _: uint256 in range(MAX_LINK_LEAVES):
        if len(nodes) >= width:
            break
        nodes.append(empty(bytes32))
    for _: uint256 in range(11):
        if width == 1:
            break
        width >>= 1
        for i: uint256 in range(MAX_LINK_LEAVES // 2):
            if i >= width:
                break
            nodes[i] = keccak256(concat(b"\x15", nodes[2 * i], nodes[2 * i + 1]))
    return nodes[0]


@internal
@pure
def _verify_link(claim: LinkClaim, proof: LinkProof) -> bool:
    """
    @notice True when every part of the link proof holds; reverts naming the first that does not.
    @dev The map's length must be 5 per state tensor, so a map of another state cannot be read at a.
         The name hash is the same in both state leaves, so the linked tensor is the one named at
         1 + a in r_t (the sorted-name order of the state is the map's order).
    @param claim The game's agreed and pinned values.
    @param proof The defender's proof.
    @return True.
    """
    width: uint256 = self._record_width(claim.record_length)
    map_leaf: bytes32 = keccak256(concat(b"\x19", proof.state_map))
    assert commitments._verify_record_leaf(
        claim.skeleton_root, width, claim.record_length, map_leaf, proof.map_path
    ), "state_link: map not under S"
    assert claim.leaf >= 1 and claim.leaf < claim.leaf_count, "state_link: not a tensor leaf"
    assert len(proof.state_map) == 5 * (claim.leaf_count - 1), "state_link: map of another state"
    field: uint256 = convert(slice(proof.state_map, 5 * (claim.leaf - 1), 5), uint256)
    entry: uint256 = field >> 8
    depth: uint256 = commitments._depth(claim.leaf_count)
    assert len(proof.old_path) == depth and len(proof.new_path) == depth, "state_link: bad state path"
    old_leaf: bytes32 = commitments._state_tensor_leaf(proof.name_hash, proof.old_root)
    assert commitments._walk(old_leaf, claim.leaf, proof.old_path, 0x15) == claim.state_root, "state_link: tensor not in the agreed state"
    new_root: bytes32 = proof.old_root
    if entry != UNCHANGED:
        output: uint256 = field & 255
        assert entry < claim.record_length and output < len(proof.out_roots), "state_link: no such output"
        entry_leaf: bytes32 = commitments._entry_leaf(entry, proof.skeleton_leaf, proof.out_roots)
        assert commitments._verify_record_leaf(
            claim.last_prefix, width, entry, entry_leaf, proof.entry_path
        ), "state_link: entry not under the last prefix"
        new_root = proof.out_roots[output]
    new_leaf: bytes32 = commitments._state_tensor_leaf(proof.name_hash, new_root)
    assert commitments._walk(new_leaf, claim.leaf, proof.new_path, 0x15) == claim.next_root, "state_link: leaf not the linked tensor"
    return True
