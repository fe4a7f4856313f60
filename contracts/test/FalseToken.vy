# pragma version ~=0.4.3
"""
@title FalseToken
@notice Test-only ERC20 whose transfers return false instead of reverting, to prove the
        protocol treats `false` as failure.
@dev Never deployed outside tests.
"""

balanceOf: public(HashMap[address, uint256])


@external
def mint(receiver: address, amount: uint256):
    """
    @notice Mint freely (test token).
    @param receiver Credited account.
    @param amount Amount.
    """
    self.balanceOf[receiver] += amount


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Accept any allowance.
    @param spender Spender.
    @param amount Allowance.
    @return True.
    """
    return True


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Always fails softly.
    @param receiver Recipient.
    @param amount Amount.
    @return False.
    """
    return False


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Always fails softly.
    @param sender Owner.
    @param receiver Recipient.
    @param amount Amount.
    @return False.
    """
    return False
