# pragma version ~=0.4.3
"""
@title Inspector
@notice Test-only view that reads everything the stateful test's invariants need in one call
        (token balances, stake parts, job records, fees, supply), so checking after every step
        stays cheap.
@dev Never deployed outside tests.
"""

from ethereum.ercs import IERC20


interface Staking:
    def available_of(staker: address) -> uint256: view
    def locked_of(staker: address) -> uint256: view
    def unbonding_of(staker: address) -> uint256: view
    def staked_of(staker: address) -> uint256: view


interface Escrow:
    def job_record(job_id: uint256) -> bytes32: view
    def fees_accrued() -> uint256: view


@view
@external
def read(
    token: address,
    staking: address,
    escrow: address,
    holders: DynArray[address, 16],
    stakers: DynArray[address, 8],
    first_job: uint256,
    last_job: uint256,
) -> (DynArray[uint256, 16], DynArray[uint256, 32], DynArray[bytes32, 64], uint256, uint256):
    """
    @notice One snapshot of the protocol's bookkeeping.
    @param token The token.
    @param staking The staking contract.
    @param escrow The escrow.
    @param holders Accounts whose token balance to read.
    @param stakers Accounts whose stake parts to read (available, locked, unbonding, staked each).
    @param first_job First job id to read.
    @param last_job Last job id to read (inclusive; at most 64 jobs).
    @return balances, stake parts, job records, fees accrued, total supply.
    """
    balances: DynArray[uint256, 16] = []
    for holder: address in holders:
        balances.append(staticcall IERC20(token).balanceOf(holder))
    parts: DynArray[uint256, 32] = []
    for staker: address in stakers:
        parts.append(staticcall Staking(staking).available_of(staker))
        parts.append(staticcall Staking(staking).locked_of(staker))
        parts.append(staticcall Staking(staking).unbonding_of(staker))
        parts.append(staticcall Staking(staking).staked_of(staker))
    records: DynArray[bytes32, 64] = []
    for offset: uint256 in range(64):
        if first_job + offset > last_job:
            break
        records.append(staticcall Escrow(escrow).job_record(first_job + offset))
    return (
        balances,
        parts,
        records,
        staticcall Escrow(escrow).fees_accrued(),
        staticcall IERC20(token).totalSupply(),
    )
