# pragma version ~=0.4.3
"""
@title NoBoolToken
@notice Test-only ERC20 whose transfer/transferFrom return nothing (like USDT), to prove the
        protocol handles such tokens. Optionally takes a fee on every transfer (fee_bps) to prove
        that fee-on-transfer tokens are rejected.
@dev Never deployed outside tests.
"""

balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)
fee_bps: public(immutable(uint256))


@deploy
def __init__(fee_bps_: uint256):
    """
    @notice Create the token.
    @param fee_bps_ Fee burned on each transfer, in basis points (0 for a plain no-bool token).
    """
    fee_bps = fee_bps_


@external
def mint(receiver: address, amount: uint256):
    """
    @notice Mint freely (test token).
    @param receiver Credited account.
    @param amount Amount.
    """
    self.balanceOf[receiver] += amount
    self.totalSupply += amount


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Set an allowance.
    @param spender Spender.
    @param amount Allowance.
    @return True.
    """
    self.allowance[msg.sender][spender] = amount
    return True


@external
def transfer(receiver: address, amount: uint256):
    """
    @notice Transfer without a return value.
    @param receiver Recipient.
    @param amount Amount.
    """
    self._move(msg.sender, receiver, amount)


@external
def transferFrom(sender: address, receiver: address, amount: uint256):
    """
    @notice transferFrom without a return value.
    @param sender Owner.
    @param receiver Recipient.
    @param amount Amount.
    """
    assert self.allowance[sender][msg.sender] >= amount, "nobool: allowance"
    self.allowance[sender][msg.sender] -= amount
    self._move(sender, receiver, amount)


@internal
def _move(sender: address, receiver: address, amount: uint256):
    """
    @notice Move tokens, burning the fee.
    @param sender Debited.
    @param receiver Credited.
    @param amount Amount debited.
    """
    assert self.balanceOf[sender] >= amount, "nobool: balance"
    fee: uint256 = amount * fee_bps // 10_000
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount - fee
    self.totalSupply -= fee
