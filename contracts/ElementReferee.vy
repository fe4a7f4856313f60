# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title ElementReferee
@notice The level-3 element rules (`lib/element_rules.vy`) as a deployed contract of their own, which
        `RefereeGame.vy` calls as a view: one output element's bits recomputed from proven values.
@dev A separate contract because of EIP-170: the rules alone are 31 KB of runtime code under the
     legacy pipeline and fit only with Venom (`experimental-codegen`, `optimize codesize`), leaving no
     room for the game around them. The two clipping rules (binary64) are a further contract,
     `ClipReferee.vy`, fixed at deployment, which this one calls for them. It holds no state.
"""

from .lib import element_rules


# ClipReferee.vy: the clipping rules' elements
CLIP: public(immutable(address))


@deploy
def __init__(clip: address):
    """
    @notice Fix the clipping rules' contract (no one can change it later).
    @param clip ClipReferee.vy.
    """
    assert clip != empty(address), "element_referee: zero address"
    CLIP = clip


@external
@view
def element(
    rule: uint256,
    params: DynArray[uint256, element_rules.MAX_PARAMS],
    values: DynArray[uint256, element_rules.MAX_VALUES],
) -> uint256:
    """
    @notice One output element's bits under `rule` (element_rules._element; the clipping rules by
            ClipReferee.vy).
    @param rule An element_rules.RULE_* code.
    @param params The rule's parameters.
    @param values The proven values in dependency order.
    @return The element's bits.
    """
    if rule == element_rules.RULE_CLIP_PIECE or rule == element_rules.RULE_CLIP_SCALE:
        # the same call, forwarded as it came (ClipReferee.element has this signature): a typed call's
        # buffer for MAX_VALUES words would enlarge this function's memory frame, about 19,500 gas on
        # every element; a revert of ClipReferee's comes back as it is
        return abi_decode(raw_call(CLIP, msg.data, max_outsize=32, is_static_call=True), uint256)
    return element_rules._element(rule, params, values)
