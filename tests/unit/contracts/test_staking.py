"""Staking: stake / unstake / withdraw, escrow-only lock/unlock, guarded slash, wiring."""

from __future__ import annotations

import ape
import pytest

from tests.unit.contracts.helpers import E18, PARAMS, ZERO32, ZERO_ADDRESS, deploy_all, one_event


@pytest.fixture(scope="module")
def staker(accounts, system):
    who = accounts[8]
    system.token.faucet(5_000 * E18, sender=who)
    system.token.approve(system.staking, 2**256 - 1, sender=who)
    return who


def test_parameters(staking, token, escrow, disputes, deployer):
    assert staking.token() == token.address
    assert staking.unbonding_delay() == PARAMS["unbonding_delay"]
    assert staking.escrow() == escrow.address
    assert staking.disputes() == disputes.address
    assert staking.deployer() == deployer.address


def test_stake_and_views(staking, token, staker):
    receipt = staking.stake(300 * E18, sender=staker)
    ev = one_event(receipt, staking.Staked)
    assert (ev.staker, ev.amount) == (staker.address, 300 * E18)
    assert staking.staked_of(staker) == staking.available_of(staker) == 300 * E18
    assert staking.locked_of(staker) == staking.unbonding_of(staker) == 0
    assert token.balanceOf(staking) == 300 * E18
    with ape.reverts("staking: zero amount"):
        staking.stake(0, sender=staker)


def test_unstake_and_withdraw(staking, token, staker, chain):
    staking.stake(300 * E18, sender=staker)
    with ape.reverts("staking: nothing unbonding"):
        staking.withdraw(sender=staker)
    receipt = staking.request_unstake(100 * E18, sender=staker)
    ev = one_event(receipt, staking.UnstakeRequested)
    assert ev.amount == 100 * E18
    assert ev.release_at == chain.blocks.head.timestamp + PARAMS["unbonding_delay"]
    assert staking.unbonding_release_at(staker) == ev.release_at
    assert staking.available_of(staker) == 200 * E18
    assert staking.unbonding_of(staker) == 100 * E18
    assert staking.staked_of(staker) == 300 * E18
    with ape.reverts("staking: still unbonding"):
        staking.withdraw(sender=staker)
    with ape.reverts("staking: insufficient available stake"):
        staking.request_unstake(201 * E18, sender=staker)
    with ape.reverts("staking: zero amount"):
        staking.request_unstake(0, sender=staker)
    chain.pending_timestamp = ev.release_at
    before = token.balanceOf(staker)
    receipt = staking.withdraw(sender=staker)
    assert one_event(receipt, staking.Withdrawn).amount == 100 * E18
    assert token.balanceOf(staker) == before + 100 * E18
    assert staking.staked_of(staker) == 200 * E18
    assert staking.unbonding_of(staker) == 0


def test_new_request_restarts_the_clock(staking, staker, chain):
    staking.stake(300 * E18, sender=staker)
    first = one_event(staking.request_unstake(10 * E18, sender=staker), staking.UnstakeRequested).release_at
    chain.pending_timestamp = first - 10
    second = one_event(staking.request_unstake(10 * E18, sender=staker), staking.UnstakeRequested).release_at
    assert second > first
    chain.pending_timestamp = first + 1
    with ape.reverts("staking: still unbonding"):
        staking.withdraw(sender=staker)


def test_escrow_only_lock_unlock_and_guarded_slash(staking, staker, submitter):
    staking.stake(10 * E18, sender=staker)
    with ape.reverts("staking: not escrow or disputes"):
        staking.lock(staker, 1, sender=staker)
    with ape.reverts("staking: not escrow or disputes"):
        staking.unlock(staker, 1, sender=staker)
    with ape.reverts("staking: not escrow or disputes"):
        staking.slash(staker, 1, sender=submitter)


def test_lock_unlock_slash_arithmetic(project, deployer, accounts):
    """Through a test-only caller wired as escrow and disputes: lock/unlock move stake between
    available and locked; slash takes locked first, then unbonding, never more than asked or
    than exists, never touches available, and pays the caller."""
    token = deployer.deploy(project.DevToken, "T", "T")
    staking = deployer.deploy(project.Staking, token, 1_000)
    caller = deployer.deploy(project.StakingCaller, staking, 100)
    staking.wire(caller, caller, sender=deployer)
    who = accounts[8]
    token.faucet(100 * E18, sender=who)
    token.approve(staking, 2**256 - 1, sender=who)
    staking.stake(100 * E18, sender=who)
    staking.request_unstake(40 * E18, sender=who)
    receipt = caller.lock(who, 50 * E18, sender=deployer)
    assert one_event(receipt, staking.Locked).amount == 50 * E18
    assert staking.locked_of(who) == 50 * E18 and staking.available_of(who) == 10 * E18
    with ape.reverts("staking: insufficient available stake"):
        caller.lock(who, 11 * E18, sender=deployer)
    with ape.reverts("staking: insufficient locked stake"):
        caller.unlock(who, 51 * E18, sender=deployer)
    receipt = caller.unlock(who, 20 * E18, sender=deployer)
    assert one_event(receipt, staking.Unlocked).amount == 20 * E18
    assert staking.locked_of(who) == 30 * E18 and staking.available_of(who) == 30 * E18
    receipt = caller.slash(who, 50 * E18, sender=deployer)
    ev = one_event(receipt, staking.Slashed)
    assert (ev.staker, ev.amount, ev.recipient) == (who.address, 50 * E18, caller.address)
    assert staking.locked_of(who) == 0
    assert staking.unbonding_of(who) == 20 * E18
    assert staking.available_of(who) == 30 * E18
    assert token.balanceOf(caller) == 50 * E18
    receipt = caller.slash(who, 1_000 * E18, sender=deployer)
    assert one_event(receipt, staking.Slashed).amount == 20 * E18
    assert staking.staked_of(who) == 30 * E18 == token.balanceOf(staking)
    receipt = caller.slash(who, 5 * E18, sender=deployer)
    assert one_event(receipt, staking.Slashed).amount == 0


def _escrow_and_disputes(project, deployer, token, staking, treasury, arbiter, window=3_600, max_segment=600,
                         reveal=600):
    escrow = deployer.deploy(project.JobEscrow, token, staking, treasury, 0, window, window, max_segment, 500)
    disputes = deployer.deploy(project.Disputes, escrow, staking, token, treasury, arbiter, window, reveal, 1, 0, 0,
                               ZERO_ADDRESS, ZERO32)
    return escrow, disputes


def test_wire_guards(project, deployer, arbiter, treasury, submitter):
    token = deployer.deploy(project.DevToken, "T", "T")
    staking = deployer.deploy(project.Staking, token, PARAMS["unbonding_delay"])
    escrow, disputes = _escrow_and_disputes(project, deployer, token, staking, treasury, arbiter)
    with ape.reverts("staking: not deployer"):
        staking.wire(escrow, disputes, sender=submitter)
    with ape.reverts("staking: wiring target has no code"):
        staking.wire(submitter, disputes, sender=deployer)
    other = deploy_all(project, deployer, arbiter, treasury)
    with ape.reverts("staking: escrow uses another staking"):
        staking.wire(other.escrow, disputes, sender=deployer)
    receipt = staking.wire(escrow, disputes, sender=deployer)
    assert one_event(receipt, staking.Wired).disputes == disputes.address
    with ape.reverts("staking: already wired"):
        staking.wire(escrow, disputes, sender=deployer)


def test_unbonding_delay_must_outlast_windows(project, deployer, arbiter, treasury):
    """The delay must outlast the longest settlement: execution 3,600 + challenge 3,600 + 3 × 600 +
    reveal 600 + arbiter 3,600 + 3 × 600 = 15,000 s; exactly that is too short, one second more wires."""
    token = deployer.deploy(project.DevToken, "T", "T")
    short = deployer.deploy(project.Staking, token, 15_000)
    escrow, disputes = _escrow_and_disputes(project, deployer, token, short, treasury, arbiter)
    with ape.reverts("staking: unbonding delay too short"):
        short.wire(escrow, disputes, sender=deployer)
    enough = deployer.deploy(project.Staking, token, 15_001)
    escrow, disputes = _escrow_and_disputes(project, deployer, token, enough, treasury, arbiter)
    enough.wire(escrow, disputes, sender=deployer)


def test_packed_totals_never_carry(project, deployer, accounts):
    """Audit F-20: no half of a packed word can overflow into the other, whatever the token supply."""
    token = deployer.deploy(project.DevToken, "T", "T")
    staking = deployer.deploy(project.Staking, token, 1_000)
    caller = deployer.deploy(project.StakingCaller, staking, 100)
    staking.wire(caller, caller, sender=deployer)
    who = accounts[8]
    cap = 2**128 - 1
    token.faucet(10**24, sender=who)
    token.approve(staking, 2**256 - 1, sender=who)
    staking.stake(10**24, sender=who)
    with ape.reverts("staking: amount too large"):
        staking.stake(cap, sender=who)
    with ape.reverts("staking: insufficient available stake"):
        caller.lock(who, cap, sender=deployer)
    caller.lock(who, 10**24, sender=deployer)
    with ape.reverts("staking: insufficient locked stake"):
        caller.unlock(who, cap, sender=deployer)
    assert staking.locked_of(who) == 10**24 and staking.available_of(who) == 0


def test_constructor_bounds(project, deployer, token):
    with ape.reverts("staking: zero unbonding delay"):
        deployer.deploy(project.Staking, token, 0)
    with ape.reverts("staking: unbonding delay too long"):
        deployer.deploy(project.Staking, token, 366 * 86_400)
    with ape.reverts("staking: token has no code"):
        deployer.deploy(project.Staking, deployer, 100)
