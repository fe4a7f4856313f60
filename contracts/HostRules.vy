# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title HostRules
@notice The referee game's host rules (`lib/host_rules.vy`) as a deployed contract of their own, which
        `RefereeGame.vy` calls as pure views: whether a disputed output can be checked on chain, and
        for one of its elements the element rule, its parameters and the runs of inputs it reads.
@dev A separate contract because of EIP-170: with the host rules inline the game is 24,152 bytes of
     runtime code, 424 bytes under the limit, with no room for the rules of more kernels. It holds
     no state and makes no calls.
"""

from .lib import commitments
from .lib import host_rules


@external
@pure
def output_of(
    skeleton: Bytes[host_rules.MAX_SKELETON], output: uint256
) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent (host_rules._output_of).
    @param skeleton The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether every element of that output can be checked, and its
            dtype code and dims.
    """
    return host_rules._output_of(skeleton, output)


@external
@pure
def plan(
    skeleton: Bytes[host_rules.MAX_SKELETON],
    output: uint256,
    element: uint256,
    hints: DynArray[uint256, commitments.MAX_NDIM],
) -> host_rules.Plan:
    """
    @notice How one element of a checkable output is decided (host_rules._plan): the rule, its
            parameters, the runs it reads and their order.
    @param skeleton The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index.
    @param hints What the skeleton holds only hashed: a move's strides (empty for other kernels).
    @return The plan.
    """
    return host_rules._plan(skeleton, output, element, hints)
