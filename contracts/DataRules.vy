# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title DataRules
@notice The referee game's batch and dataset rules (`lib/data_rules.vy`: `batch_index` and `gather`; also the
        rotations and max pooling, which read fixed places) as a deployed contract of the HostRules interface, the fourth of `RefereeGame.vy`'s rules contracts: whether a disputed output
        can be checked on chain, and for one of its elements the element rule, its parameters and the
        runs of inputs it reads.
@dev A contract of its own because the other rules contracts are near EIP-170. It holds no state and
     makes no calls.
"""

from .lib import commitments
from .lib import host_rules
from .lib import data_rules


@external
@pure
def output_of(
    skeleton: Bytes[host_rules.MAX_SKELETON], output: uint256
) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent (data_rules._output_of).
    @param skeleton The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether every element of that output can be checked, and its
            dtype code and dims.
    """
    return data_rules._output_of(skeleton, output)


@external
@pure
def plan(
    skeleton: Bytes[host_rules.MAX_SKELETON],
    output: uint256,
    element: uint256,
    hints: DynArray[uint256, commitments.MAX_NDIM],
) -> host_rules.Plan:
    """
    @notice How one element of a checkable output is decided (data_rules._plan): the rule, its
            parameters, the runs it reads and their order.
    @param skeleton The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index.
    @param hints What the skeleton holds only hashed or what a read's place depends on (checked by the rule).
    @return The plan.
    """
    return data_rules._plan(skeleton, output, element, hints)
