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
        When the disputed leaf is the header (leaf 0), the defender instead reveals r_t's header (leaf 0
        under the agreed r_t) and r_{t+1}'s (leaf 0 under r_{t+1}), and the next header must be what
        one optimizer step makes of the agreed one (`_next_header_holds`, mirrored by
        `protocol.tensor_commit.next_header`).
@dev Pure checks (no state, no calls), so the host can run them in a contract of their own under
     EIP-170 (`StateLink.vy`).
"""

from . import commitments

# The link reveals every leaf of r_{t+1} in one move; larger states escalate at the link.
MAX_LINK_LEAVES: constant(uint256) = 2_048
MAX_MAP_BYTES: constant(uint256) = 10_235  # 5 bytes per state tensor, MAX_LINK_LEAVES - 1 tensors
UNCHANGED: constant(uint256) = 4_294_967_295  # the map's entry field of a tensor the step leaves as it was
NULL_BOUNDARY: constant(uint256) = 18_446_744_073_709_551_615  # 2**64 - 1: the boundary of a state inside a segment


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


# The defender's proof that the header of r_{t+1} is what one step makes of the agreed r_t's header.
struct HeaderLinkProof:
    # r_t's header and its path (leaf 0) under the agreed r_t
    agreed_header: Bytes[commitments.HEADER_BYTES]
    agreed_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH]
    # r_{t+1}'s header and its path (leaf 0) under r_{t+1}
    next_header: Bytes[commitments.HEADER_BYTES]
    next_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH]


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


@internal
@pure
def _next_header_holds(agreed: commitments.StateHeader, after: commitments.StateHeader) -> bool:
    """
    @notice True when `after` is the header one optimizer step after `agreed` (the mirror of
            `protocol.tensor_commit.next_header`); reverts naming the first field class that differs.
    @dev With k = agreed.step + 1 (agreed.step < total steps), S the segment length, B the batch size
         and E per_epoch: step k; boundary ceil(k / S) when k % S == 0 or k is the total, else
         2**64 - 1; cursor epoch k // E and position (k % E) * B; data_epoch k // E and dropout_counter
         k; segment steps min(S - k % S, total - k); every other field carried over. The constants
         must be bound (non-zero) in the agreed header.
    @param agreed The agreed r_t's header.
    @param after The header of r_{t+1} to check.
    @return True.
    """
    total: uint256 = convert(agreed.total_steps, uint256)
    per_epoch: uint256 = convert(agreed.per_epoch, uint256)
    length: uint256 = convert(agreed.segment_length, uint256)
    batch: uint256 = convert(agreed.batch_size, uint256)
    assert total != 0 and per_epoch != 0 and length != 0 and batch != 0, "state_link: job constants unbound"
    step: uint256 = convert(agreed.step, uint256) + 1
    assert step <= total, "state_link: the agreed state is the last"
    assert convert(after.step, uint256) == step, "state_link: next step"
    boundary: uint256 = NULL_BOUNDARY
    if step % length == 0 or step == total:
        boundary = (step + length - 1) // length
    assert convert(after.boundary, uint256) == boundary, "state_link: next boundary"
    epoch: uint256 = step // per_epoch
    assert convert(after.epoch, uint256) == epoch, "state_link: next cursor"
    assert convert(after.position, uint256) == (step % per_epoch) * batch, "state_link: next cursor"
    assert convert(after.data_epoch, uint256) == epoch, "state_link: next rng"
    assert convert(after.dropout_counter, uint256) == step, "state_link: next rng"
    assert convert(after.segment_steps, uint256) == min(length - step % length, total - step), "state_link: next segment steps"
    assert (
        after.spec_hash == agreed.spec_hash
        and after.seed == agreed.seed
        and after.skeleton_root == agreed.skeleton_root
        and after.record_length == agreed.record_length
        and after.leaf_count == agreed.leaf_count
        and after.total_steps == agreed.total_steps
        and after.per_epoch == agreed.per_epoch
        and after.segment_length == agreed.segment_length
        and after.batch_size == agreed.batch_size
    ), "state_link: next header not carried over"
    return True


@internal
@pure
def _verify_header_link(claim: LinkClaim, proof: HeaderLinkProof) -> bool:
    """
    @notice True when the agreed header is leaf 0 of the agreed r_t, the next header leaf 0 of the
            disputed r_{t+1} (both trees of claim.leaf_count leaves), and the next header is what one
            step makes of the agreed one; reverts naming the first part that fails.
    @param claim The game's agreed and pinned values (its leaf must be 0, the header).
    @param proof The two headers and their paths.
    @return True.
    """
    assert claim.leaf == 0, "state_link: not the header leaf"
    assert commitments._verify_state_leaf(
        claim.state_root, claim.leaf_count, 0, commitments._header_leaf(proof.agreed_header), proof.agreed_path
    ), "state_link: header not in the agreed state"
    assert commitments._verify_state_leaf(
        claim.next_root, claim.leaf_count, 0, commitments._header_leaf(proof.next_header), proof.next_path
    ), "state_link: header not in the next state"
    return self._next_header_holds(
        commitments._decode_header(proof.agreed_header), commitments._decode_header(proof.next_header)
    )
