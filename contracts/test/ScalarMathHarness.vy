# pragma version ~=0.4.3
"""
@title ScalarMathHarness
@notice Test-only contract exposing `scalar_math` in batches (one eth_call checks many drawn steps and
        configurations against the engine's binary64 scalars).
@dev Never deployed outside tests.
"""

from ..lib import scalar_math

BATCH: constant(uint256) = 128


@external
@pure
def scalars(params: DynArray[DynArray[uint256, 16], BATCH], steps: DynArray[uint256, BATCH]) -> DynArray[uint256, BATCH]:
    """
    @notice scalar_math._optimizer_scalar for each (params[i], steps[i]).
    @param params The rule's parameters per call.
    @param steps The 0-based step per call (same length).
    @return The binary32 patterns.
    """
    assert len(params) == len(steps), "ScalarMathHarness: lengths differ"
    out: DynArray[uint256, BATCH] = []
    for i: uint256 in range(len(steps), bound=BATCH):
        out.append(scalar_math._optimizer_scalar(params[i], steps[i]))
    return out


@external
@pure
def cos(x: DynArray[uint256, BATCH]) -> DynArray[uint256, BATCH]:
    """
    @notice The portable cos of each binary64 in [0, π].
    @param x The arguments.
    @return The binary64 results.
    """
    out: DynArray[uint256, BATCH] = []
    for v: uint256 in x:
        out.append(scalar_math._cos(v))
    return out
