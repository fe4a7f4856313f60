# pragma version ~=0.4.3
"""
@title BlocklistToken
@notice Test-only ERC20 with a blocklist, like USDC's: a transfer to or from a blocked address
        reverts. Proves that a blocked submitter, challenger or treasury cannot make a ruling
        revert (audit F-19).
@dev Never deployed outside tests.
"""

# ---------------------------------------------------------------- storage

balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
blocked: public(HashMap[address, bool])


# ---------------------------------------------------------------- external


@external
def mint(receiver: address, amount: uint256):
    """
    @notice Mint freely (test token).
    @param receiver Credited account.
    @param amount Amount.
    """
    self.balanceOf[receiver] += amount


@external
def set_blocked(account: address, is_blocked: bool):
    """
    @notice Block or unblock an account (anyone: test token).
    @param account The account.
    @param is_blocked True to block.
    """
    self.blocked[account] = is_blocked


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
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Transfer unless either side is blocked.
    @param receiver Recipient.
    @param amount Amount.
    @return True.
    """
    self._move(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Transfer with an allowance unless either side is blocked.
    @param sender Owner.
    @param receiver Recipient.
    @param amount Amount.
    @return True.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "blocklist token: allowance too low"
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._move(sender, receiver, amount)
    return True


# ---------------------------------------------------------------- internal


@internal
def _move(sender: address, receiver: address, amount: uint256):
    """
    @notice Move `amount` from `sender` to `receiver`.
    @param sender Debited account.
    @param receiver Credited account.
    @param amount Amount.
    """
    assert not self.blocked[sender] and not self.blocked[receiver], "blocklist token: blocked"
    assert self.balanceOf[sender] >= amount, "blocklist token: balance too low"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
