# pragma version ~=0.4.3
"""
@title row_piece_rules
@notice The referee game's rules of rows decided in pieces (docs/referee.md, "Rows in pieces": softmax,
        softmax_backward, layer_norm, rms_norm and the norm backwards' dx over rows wider than their caps):
        for one output element, the element rule, its parameters and the runs of inputs it reads
        (`host_rules.Plan`). Built: nothing yet; every output is not checkable here, so its game escalates.
@dev Pure (no state, no calls), deployed as `RowPieceRules.vy`. Its Python mirror is `protocol/row_pieces.py`.
"""

from . import commitments
from . import host_rules


@internal
@pure
def _output_of(raw: Bytes[host_rules.MAX_SKELETON], output: uint256) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]):
    """
    @notice What the game needs of a disputed output before its descent (host_rules._output_of's).
    @param raw The entry's skeleton bytes.
    @param output The disputed output's number.
    @return The entry's output count, whether these rules check every element of that output (never yet),
            and its dtype code and dims (zero and none past the last output).
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    count: uint256 = len(parsed.outputs)
    if output >= count:
        return count, False, 0, []
    shape: host_rules.Ref = parsed.outputs[output]
    return count, False, shape.code, shape.dims


@internal
@pure
def _plan(
    raw: Bytes[host_rules.MAX_SKELETON], output: uint256, element: uint256, hints: DynArray[uint256, commitments.MAX_NDIM]
) -> host_rules.Plan:
    """
    @notice How one element of a checkable output is decided: none is checkable here yet.
    @param raw The entry's skeleton bytes.
    @param output The disputed output.
    @param element The element's row-major index.
    @param hints Unused.
    @return Never: it reverts.
    """
    raise "row_piece_rules: not checkable"
