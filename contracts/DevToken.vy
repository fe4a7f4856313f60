# pragma version ~=0.4.3
"""
@title DevToken
@notice A plain ERC20 (18 decimals) for local chains and testnets, with a faucet that mints
        at most FAUCET_CAP per call to the caller.
@dev Not for value: anyone can mint. The protocol contracts work with any standard ERC20;
     this token exists so that a devnet has something to stake and pay with.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

# ---------------------------------------------------------------- constants

FAUCET_CAP: public(constant(uint256)) = 1_000_000 * 10**18

# ---------------------------------------------------------------- storage

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

# ---------------------------------------------------------------- events

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@deploy
def __init__(name_: String[32], symbol_: String[8]):
    """
    @notice Create the token with a name and symbol; supply starts at zero.
    @param name_ Token name.
    @param symbol_ Token symbol.
    """
    self.name = name_
    self.symbol = symbol_
    self.decimals = 18


# ---------------------------------------------------------------- external


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` from the caller to `receiver`.
    @param receiver The recipient (not the zero address).
    @param amount The amount.
    @return True.
    """
    self._move(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` from `sender` to `receiver` using the caller's allowance.
    @dev An allowance of max(uint256) is never decreased (saves a storage write).
    @param sender The owner of the tokens.
    @param receiver The recipient (not the zero address).
    @param amount The amount.
    @return True.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "token: allowance too low"
        self.allowance[sender][msg.sender] = allowed - amount
    self._move(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's tokens.
    @param spender The spender.
    @param amount The allowance (replaces the previous one).
    @return True.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def faucet(amount: uint256):
    """
    @notice Mint `amount` (at most FAUCET_CAP) to the caller.
    @param amount The amount to mint.
    """
    assert amount <= FAUCET_CAP, "token: above faucet cap"
    self.totalSupply += amount
    self.balanceOf[msg.sender] += amount
    log Transfer(sender=empty(address), receiver=msg.sender, value=amount)


# ---------------------------------------------------------------- internal


@internal
def _move(sender: address, receiver: address, amount: uint256):
    """
    @notice Balance bookkeeping shared by transfer and transferFrom.
    @param sender Debited account.
    @param receiver Credited account.
    @param amount The amount.
    """
    assert receiver != empty(address), "token: transfer to zero address"
    balance: uint256 = self.balanceOf[sender]
    assert balance >= amount, "token: balance too low"
    self.balanceOf[sender] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)
