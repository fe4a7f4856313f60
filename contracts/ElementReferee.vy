# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title ElementReferee
@notice The level-3 element rules (`lib/element_rules.vy`) as a deployed contract of their own, which
        `RefereeGame.vy` calls as a pure view: one output element's bits recomputed from proven values.
@dev A separate contract because of EIP-170: the rules alone are 31 KB of runtime code under the
     legacy pipeline and fit only with Venom (`experimental-codegen`, `optimize codesize`), leaving no
     room for the game around them. It holds no state and makes no calls.
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
    @notice One output element's bits under `rule` (element_rules._element).
    @param rule An element_rules.RULE_* code.
    @param params The rule's parameters.
    @param values The proven values in dependency order.
    @return The element's bits.
    """
    return element_rules._element(rule, params, values)
