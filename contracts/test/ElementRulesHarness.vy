# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title ElementRulesHarness
@notice Test-only contract exposing `element_rules` (the referee's element rules) to the tests and the
        gas bench: one element per call.
@dev Never deployed outside tests and the gas bench. Compiled with Venom for size: the legacy pipeline
     gives 31 KB of runtime code, over EIP-170's 24 KB. (Gas is measured per whole call: under Venom two
     `msg.gas` readings around a pure internal call do not bracket it.)
"""

from ..lib import element_rules


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
