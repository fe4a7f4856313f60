# pragma version ~=0.4.3
"""
@title safe_token
@notice Token transfers that work with any standard ERC20, including tokens whose
        `transfer`/`transferFrom` return no bool, and that reject fee-on-transfer tokens.
@dev Stateless module: the Tessera contracts import it and call its internal functions.
     A call that reverts bubbles its revert data up; a call that returns data must return `true`.
"""

from ethereum.ercs import IERC20


@internal
def _transfer(token: address, to: address, amount: uint256):
    """
    @notice Send `amount` of `token` from this contract to `to`.
    @dev Accepts empty return data (non-standard tokens) or an ABI `true`.
    @param token The ERC20 token (checked to have code at construction by the caller).
    @param to The recipient.
    @param amount The amount in token units.
    """
    response: Bytes[32] = raw_call(
        token,
        abi_encode(to, amount, method_id=method_id("transfer(address,uint256)")),
        max_outsize=32,
    )
    if len(response) != 0:
        assert convert(response, bool), "safe_token: transfer failed"


@internal
def _pull(token: address, sender: address, amount: uint256):
    """
    @notice Pull exactly `amount` of `token` from `sender` into this contract.
    @dev `transferFrom`, then a balance-delta check so that fee-on-transfer (or otherwise
         lossy) tokens are rejected instead of leaving the contract short.
    @param token The ERC20 token.
    @param sender The owner who approved this contract.
    @param amount The amount that must arrive.
    """
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    response: Bytes[32] = raw_call(
        token,
        abi_encode(
            sender, self, amount, method_id=method_id("transferFrom(address,address,uint256)")
        ),
        max_outsize=32,
    )
    if len(response) != 0:
        assert convert(response, bool), "safe_token: transferFrom failed"
    after: uint256 = staticcall IERC20(token).balanceOf(self)
    assert after == before + amount, "safe_token: fee-on-transfer token"
