# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title StateLink
@notice The link checks of the referee game (`lib/state_link.vy`) as a deployed contract of their own,
        which `RefereeGame.vy` calls as pure views: the root of a revealed state's leaves, the proof
        that a disputed tensor leaf of the next state is what the agreed step record makes of it, and
        the proof that the next state's header is what one step makes of the agreed state's header.
@dev A separate contract because of EIP-170: with the link inline the host is 24,981 bytes of runtime
     code under Venom (`experimental-codegen`, `optimize codesize`), over the 24,576-byte limit. It
     holds no state and makes no calls.
"""

from .lib import commitments
from .lib import state_link


@external
@pure
def state_root(leaves: DynArray[bytes32, state_link.MAX_LINK_LEAVES]) -> bytes32:
    """
    @notice The state tree's root over `leaves` (state_link._state_tree_root).
    @param leaves The header leaf, then one leaf per tensor in sorted-name order.
    @return The root.
    """
    return state_link._state_tree_root(leaves)


@external
@pure
def verify_link(claim: state_link.LinkClaim, proof: state_link.LinkProof) -> bool:
    """
    @notice Whether the link proof holds (state_link._verify_link); reverts naming the first failing part.
    @param claim The game's agreed and pinned values.
    @param proof The defender's proof.
    @return True.
    """
    return state_link._verify_link(claim, proof)


@external
@pure
def verify_header_link(claim: state_link.LinkClaim, proof: state_link.HeaderLinkProof) -> bool:
    """
    @notice Whether the header link proof holds (state_link._verify_header_link); reverts naming the
            first failing part.
    @param claim The game's agreed and pinned values (leaf 0).
    @param proof The defender's two headers and their paths.
    @return True.
    """
    return state_link._verify_header_link(claim, proof)


@external
@pure
def next_header_holds(agreed: Bytes[commitments.HEADER_BYTES], after: Bytes[commitments.HEADER_BYTES]) -> bool:
    """
    @notice Whether `after` is the header one optimizer step after `agreed` (state_link._next_header_holds,
            the advance rule alone); reverts naming the first field class that differs.
    @param agreed The agreed state's 156-byte header.
    @param after The next state's 156-byte header.
    @return True.
    """
    return state_link._next_header_holds(commitments._decode_header(agreed), commitments._decode_header(after))
