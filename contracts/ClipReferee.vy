# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title ClipReferee
@notice The level-3 element rules of gradient clipping (`element_rules._clip_element`: a piece of the
        binary64 Σ g² and the clip factor) as a deployed contract of their own, which
        `RefereeGame.vy` calls for those two rules as a pure view (`ElementReferee.vy` forwards them
        here too, for any other caller).
@dev A separate contract because of EIP-170: the binary64 arithmetic they need (`lib/float64.vy`) is
     about 3 KB of runtime code that `ElementReferee.vy` has no room for. It holds no state and makes
     no calls.
"""

from .lib import element_rules


@external
@pure
def element(
    rule: uint256,
    params: DynArray[uint256, element_rules.MAX_PARAMS],
    values: DynArray[uint256, element_rules.MAX_VALUES],
) -> uint256:
    """
    @notice One clipping element's bits under `rule` (element_rules._clip_element).
    @param rule element_rules.RULE_CLIP_PIECE or element_rules.RULE_CLIP_SCALE.
    @param params The rule's parameters.
    @param values The proven values in dependency order.
    @return The element's bits.
    """
    return element_rules._clip_element(rule, params, values)
