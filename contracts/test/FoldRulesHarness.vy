# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title FoldRulesHarness
@notice Test-only contract exposing `fold_rules`' column bound and piecings, which FoldRules.vy uses
        internally, so the tests can hold them to their Python mirror (`protocol.fold_rules`).
@dev Never deployed outside tests.
"""

from ..lib import fold_rules
from ..lib import host_rules


@external
@pure
def column_words(chunks: uint256, stride: uint256, count: uint256) -> uint256:
    """
    @notice fold_rules._column_words.
    @param chunks The tensor's chunks.
    @param stride The step between elements (at least 1).
    @param count The elements (at least 1).
    @return The bound.
    """
    return fold_rules._column_words(chunks, stride, count)


@external
@pure
def piecings(raw: Bytes[host_rules.MAX_SKELETON]) -> DynArray[fold_rules.Piecing, fold_rules.MAX_PIECED]:
    """
    @notice fold_rules._piecings of a fold entry whose shapes fit (none for another).
    @param raw The entry's skeleton bytes.
    @return The piecings.
    """
    parsed: host_rules.Skeleton = host_rules._parse(raw)
    kernel: uint256 = fold_rules._kernel(parsed.name_key)
    if kernel == fold_rules.KERNEL_NONE or parsed.input_count > host_rules.MAX_INPUTS or not fold_rules._shapes_fit(parsed, kernel):
        return []
    return fold_rules._piecings(parsed, kernel)
