# pragma version ~=0.4.3
"""
@title StakingCaller
@notice Test-only stand-in that plays both the escrow and the disputes contract towards a
        Staking contract, so its lock/unlock/slash arithmetic can be tested in isolation
        (including the slash-from-unbonding branch that the real escrow never reaches).
@dev Never deployed outside tests.
"""

interface Staking:
    def lock(staker: address, amount: uint256): nonpayable
    def unlock(staker: address, amount: uint256): nonpayable
    def slash(staker: address, amount: uint256) -> uint256: nonpayable


staking: public(address)
execution_timeout: public(uint256)
max_challenge_window: public(uint256)
max_dispute_time: public(uint256)


@deploy
def __init__(staking_: address, window: uint256):
    """
    @notice Point at a staking contract and report `window` for all three windows.
    @param staking_ The Staking under test.
    @param window Seconds reported as execution timeout, longest challenge window and longest
           dispute time.
    """
    self.staking = staking_
    self.execution_timeout = window
    self.max_challenge_window = window
    self.max_dispute_time = window


@view
@external
def escrow() -> address:
    """
    @notice This contract is its own escrow.
    @return self.
    """
    return self


@external
def lock(staker: address, amount: uint256):
    """
    @notice Forward to Staking.lock.
    @param staker Staker.
    @param amount Amount.
    """
    extcall Staking(self.staking).lock(staker, amount)


@external
def unlock(staker: address, amount: uint256):
    """
    @notice Forward to Staking.unlock.
    @param staker Staker.
    @param amount Amount.
    """
    extcall Staking(self.staking).unlock(staker, amount)


@external
def slash(staker: address, amount: uint256) -> uint256:
    """
    @notice Forward to Staking.slash (tokens arrive here).
    @param staker Staker.
    @param amount Amount.
    @return What was taken.
    """
    return extcall Staking(self.staking).slash(staker, amount)
