# pragma version ~=0.4.3
"""
@title Staking
@notice Holds workers' and challengers' stake. Stake is available + locked + unbonding:
        available stake can be locked behind a job (by the escrow: the worker's collateral) or
        behind a dispute (by the disputes contract: the challenger's bond), or put into unbonding
        (by its owner); unbonding stake can be withdrawn after `unbonding_delay`. Locked and
        unbonding stake stay slashable.
@dev One packed word per staker for available (low 128 bits) and locked (high 128 bits), so a
     lock or unlock is one storage write; unbonding amount and release time share a second word.
     Every total is asserted to stay below 2**128, so one half can never carry into the other.
     Only the escrow and the disputes contract may lock, unlock or slash, and they pass at most
     the collateral of the job or the bond of the dispute at hand. The deployer's one privilege is
     `wire`, callable once; it can never move funds.
"""

from ethereum.ercs import IERC20
from .lib import safe_token


interface EscrowParams:
    def staking() -> address: view
    def execution_timeout() -> uint256: view
    def max_challenge_window() -> uint256: view


interface DisputesParams:
    def staking() -> address: view
    def escrow() -> address: view
    def max_dispute_time() -> uint256: view


# ---------------------------------------------------------------- constants

LOW_128: constant(uint256) = (1 << 128) - 1

# ---------------------------------------------------------------- storage

token: public(immutable(address))
unbonding_delay: public(immutable(uint256))
deployer: public(immutable(address))

escrow: public(address)
disputes: public(address)

# available (low 128) | locked (high 128)
_balances: HashMap[address, uint256]
# unbonding amount (low 128) | release timestamp (high 128)
_unbonding: HashMap[address, uint256]

# ---------------------------------------------------------------- events

event Wired:
    escrow: address
    disputes: address


event Staked:
    staker: indexed(address)
    amount: uint256


event UnstakeRequested:
    staker: indexed(address)
    amount: uint256
    release_at: uint256


event Withdrawn:
    staker: indexed(address)
    amount: uint256


event Locked:
    staker: indexed(address)
    amount: uint256


event Unlocked:
    staker: indexed(address)
    amount: uint256


event Slashed:
    staker: indexed(address)
    amount: uint256
    recipient: indexed(address)


@deploy
def __init__(token_: address, unbonding_delay_: uint256):
    """
    @notice Deploy with the stake token and the unbonding delay (immutable).
    @dev The delay is checked against the escrow's and the disputes' windows in `wire`.
    @param token_ The ERC20 staked (must be a contract).
    @param unbonding_delay_ Seconds between `request_unstake` and `withdraw`.
    """
    assert token_.is_contract, "staking: token has no code"
    assert unbonding_delay_ > 0, "staking: zero unbonding delay"
    assert unbonding_delay_ <= 365 * 86_400, "staking: unbonding delay too long"
    token = token_
    unbonding_delay = unbonding_delay_
    deployer = msg.sender


# ================================================================ wiring


@external
def wire(escrow_: address, disputes_: address):
    """
    @notice Name the escrow and the disputes contract, once. Deployer only.
    @dev The only privileged call; it cannot move funds. Checks that both contracts point back
         at this staking contract and at each other, and that the unbonding delay outlasts the
         longest a job can take to settle (execution timeout + the longest challenge window +
         the longest reveal and arbiter windows of a dispute filed at its end), so stake behind a
         job or a dispute cannot escape before it settles. `JobEscrow.wire` then checks this
         wiring from its side.
    @param escrow_ The JobEscrow.
    @param disputes_ The Disputes contract.
    """
    assert msg.sender == deployer, "staking: not deployer"
    assert self.escrow == empty(address), "staking: already wired"
    assert escrow_.is_contract and disputes_.is_contract, "staking: wiring target has no code"
    assert staticcall EscrowParams(escrow_).staking() == self, "staking: escrow uses another staking"
    assert staticcall DisputesParams(disputes_).staking() == self, "staking: disputes uses another staking"
    assert staticcall DisputesParams(disputes_).escrow() == escrow_, "staking: disputes uses another escrow"
    settle_time: uint256 = (
        staticcall EscrowParams(escrow_).execution_timeout()
        + staticcall EscrowParams(escrow_).max_challenge_window()
        + staticcall DisputesParams(disputes_).max_dispute_time()
    )
    assert unbonding_delay > settle_time, "staking: unbonding delay too short"
    self.escrow = escrow_
    self.disputes = disputes_
    log Wired(escrow=escrow_, disputes=disputes_)


# ================================================================ stakers


@external
@nonreentrant
def stake(amount: uint256):
    """
    @notice Add `amount` to the caller's available stake (pulls tokens; approve first).
    @param amount Token amount, > 0.
    """
    assert amount > 0, "staking: zero amount"
    word: uint256 = self._balances[msg.sender]
    available: uint256 = (word & LOW_128) + amount
    assert available <= LOW_128, "staking: amount too large"
    self._balances[msg.sender] = (word & ~LOW_128) | available
    safe_token._pull(token, msg.sender, amount)
    log Staked(staker=msg.sender, amount=amount)


@external
@nonreentrant
def request_unstake(amount: uint256):
    """
    @notice Move `amount` of available stake into unbonding; the whole unbonding balance is
            released `unbonding_delay` seconds from now (a new request restarts the clock).
    @param amount Token amount, > 0 and <= available.
    """
    assert amount > 0, "staking: zero amount"
    word: uint256 = self._balances[msg.sender]
    available: uint256 = word & LOW_128
    assert available >= amount, "staking: insufficient available stake"
    self._balances[msg.sender] = word - amount
    pending: uint256 = (self._unbonding[msg.sender] & LOW_128) + amount
    assert pending <= LOW_128, "staking: unbonding total too large"
    release_at: uint256 = block.timestamp + unbonding_delay
    self._unbonding[msg.sender] = pending | (release_at << 128)
    log UnstakeRequested(staker=msg.sender, amount=amount, release_at=release_at)


@external
@nonreentrant
def withdraw():
    """
    @notice Pay out the caller's whole unbonding balance once its release time has come.
    """
    word: uint256 = self._unbonding[msg.sender]
    amount: uint256 = word & LOW_128
    assert amount > 0, "staking: nothing unbonding"
    assert block.timestamp >= word >> 128, "staking: still unbonding"
    self._unbonding[msg.sender] = 0
    safe_token._transfer(token, msg.sender, amount)
    log Withdrawn(staker=msg.sender, amount=amount)


# ================================================================ escrow / disputes


@external
@nonreentrant
def lock(staker: address, amount: uint256):
    """
    @notice Lock `amount` of `staker`'s available stake behind a job or a dispute. Escrow or
            disputes only.
    @param staker The worker claiming a job, or the challenger filing a dispute.
    @param amount The job's collateral, or the dispute's bond.
    """
    assert msg.sender == self.escrow or msg.sender == self.disputes, "staking: not escrow or disputes"
    word: uint256 = self._balances[staker]
    assert word & LOW_128 >= amount, "staking: insufficient available stake"
    assert (word >> 128) + amount <= LOW_128, "staking: locked total too large"
    self._balances[staker] = word - amount + (amount << 128)
    log Locked(staker=staker, amount=amount)


@external
@nonreentrant
def unlock(staker: address, amount: uint256):
    """
    @notice Return `amount` of `staker`'s locked stake to available. Escrow or disputes only.
    @param staker The worker of a settled job, or the challenger of a closed dispute.
    @param amount The (unslashed part of the) job's collateral, or the dispute's bond.
    """
    assert msg.sender == self.escrow or msg.sender == self.disputes, "staking: not escrow or disputes"
    word: uint256 = self._balances[staker]
    assert word >> 128 >= amount, "staking: insufficient locked stake"
    assert (word & LOW_128) + amount <= LOW_128, "staking: available total too large"
    self._balances[staker] = word - (amount << 128) + amount
    log Unlocked(staker=staker, amount=amount)


@external
@nonreentrant
def slash(staker: address, amount: uint256) -> uint256:
    """
    @notice Take up to `amount` from `staker` (locked first, then unbonding) and send it to the
            caller. Escrow or disputes only.
    @dev The callers pass at most the collateral of the job (or the bond of the dispute) at hand,
         which they locked and have not released, so its own backing always covers it.
    @param staker The worker (or challenger) being slashed.
    @param amount The most to take.
    @return The amount actually taken and sent to the caller.
    """
    assert msg.sender == self.escrow or msg.sender == self.disputes, "staking: not escrow or disputes"
    word: uint256 = self._balances[staker]
    locked: uint256 = word >> 128
    from_locked: uint256 = min(locked, amount)
    taken: uint256 = from_locked
    if from_locked > 0:
        self._balances[staker] = word - (from_locked << 128)
    if taken < amount:
        unbonding_word: uint256 = self._unbonding[staker]
        from_unbonding: uint256 = min(unbonding_word & LOW_128, amount - taken)
        if from_unbonding > 0:
            self._unbonding[staker] = unbonding_word - from_unbonding
            taken += from_unbonding
    if taken > 0:
        safe_token._transfer(token, msg.sender, taken)
    log Slashed(staker=staker, amount=taken, recipient=msg.sender)
    return taken


# ================================================================ views


@view
@external
def staked_of(staker: address) -> uint256:
    """
    @notice Total stake: available + locked + unbonding.
    @param staker The staker.
    @return Token amount.
    """
    word: uint256 = self._balances[staker]
    return (word & LOW_128) + (word >> 128) + (self._unbonding[staker] & LOW_128)


@view
@external
def available_of(staker: address) -> uint256:
    """
    @notice Stake free to back a job or to unstake.
    @param staker The staker.
    @return Token amount.
    """
    return self._balances[staker] & LOW_128


@view
@external
def locked_of(staker: address) -> uint256:
    """
    @notice Stake locked behind claimed or committed jobs.
    @param staker The staker.
    @return Token amount.
    """
    return self._balances[staker] >> 128


@view
@external
def unbonding_of(staker: address) -> uint256:
    """
    @notice Stake waiting for its release time.
    @param staker The staker.
    @return Token amount.
    """
    return self._unbonding[staker] & LOW_128


@view
@external
def unbonding_release_at(staker: address) -> uint256:
    """
    @notice When the unbonding stake can be withdrawn (0 when nothing was ever requested).
    @param staker The staker.
    @return Unix timestamp.
    """
    return self._unbonding[staker] >> 128
