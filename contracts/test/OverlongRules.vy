# pragma version ~=0.4.3
"""
@title OverlongRules
@notice Test-only rules contract that plans one run read longer than RefereeGame.vy's MAX_FOLD, which no
        real rules contract plans: RefereeGame must refuse such a plan, not read its first MAX_FOLD values
        and decide on them.
@dev Never deployed outside tests.
"""

from ..lib import commitments
from ..lib import host_rules


@external
@pure
def output_of(
    skeleton: Bytes[host_rules.MAX_SKELETON], output: uint256
) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice Any output: 1,024 binary32, checkable (the plan's read is what the test is about).
    @param skeleton Ignored.
    @param output Ignored.
    @return Element count, checkable, dtype code, shape.
    """
    return 1_024, True, commitments.DTYPE_FLOAT32, [1_024]


@external
@pure
def plan(
    skeleton: Bytes[host_rules.MAX_SKELETON],
    output: uint256,
    element: uint256,
    hints: DynArray[uint256, commitments.MAX_NDIM],
) -> host_rules.Plan:
    """
    @notice Rule 0 over one run of MAX_FOLD + `element` bools of input 0 (an output of entry 4): element 0
            plans the longest run RefereeGame reads, element 1 one value more (bools, 32 a chunk: a run
            proof of MAX_RUN chunks holds 1,024 of them, so only the MAX_FOLD check stops it).
    @param skeleton Ignored.
    @param output Ignored.
    @param element The element (0 or 1 in the test).
    @param hints Ignored.
    @return The plan.
    """
    dims: uint256[commitments.MAX_NDIM] = empty(uint256[commitments.MAX_NDIM])
    dims[0] = 1_024
    read: host_rules.Read = host_rules.Read(
        input=0,
        kind=host_rules.REF_OUTPUT,
        a=4,
        b=0,
        code=commitments.DTYPE_BOOL,
        ndim=1,
        dims=dims,
        first=0,
        count=256 + element,
        stride=1,
    )
    return host_rules.Plan(rule=0, params=[], reads=[read], zipped=False)
