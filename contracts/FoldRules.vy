# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title FoldRules
@notice The referee game's fold rules (`lib/fold_rules.vy`) as a deployed contract of their own, the
        second of `RefereeGame.vy`'s rules contracts (asked when `HostRules.vy` cannot check an
        output): `matmul`, `linear_backward`, `sum_rows` and the column sums of the norms' backwards,
        each element one fold piece whose operands are read down a column (every stride-th element).
@dev The same interface as HostRules.vy; pure views, no state, no calls. The game proves each read of
     these plans by a column proof (`prove_element`'s `columns`).
"""

from .lib import commitments
from .lib import host_rules
from .lib import fold_rules


@external
@pure
def output_of(
    skeleton: Bytes[host_rules.MAX_SKELETON], output: uint256
) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent (fold_rules._output_of).
    @param skeleton The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether every element of that output can be checked here, and
            its dtype code and dims.
    """
    return fold_rules._output_of(skeleton, output)


@external
@pure
def plan(
    skeleton: Bytes[host_rules.MAX_SKELETON],
    output: uint256,
    element: uint256,
    hints: DynArray[uint256, commitments.MAX_NDIM],
) -> host_rules.Plan:
    """
    @notice How one element of a checkable output is decided (fold_rules._plan): RULE_FOLD, its
            parameters and the reads (each with its stride), zipped term by term for products.
    @param skeleton The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index.
    @param hints Unused (no fold hashes an argument the plan needs); kept for the shared interface.
    @return The plan.
    """
    return fold_rules._plan(skeleton, output, element)
