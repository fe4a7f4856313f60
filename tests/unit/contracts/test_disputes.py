"""Disputes v2: parallel sealed challenges, every claim kind, verdicts both ways, void, and the attacks
of the 2026-12 review (../shared/security/audit-2026-12.md) played against the contracts.

Each `test_fNN_…` plays the finding's attack and asserts that it now fails."""

from __future__ import annotations

import ape
import pytest

from protocol.merkle import merkle_proof
from tests.unit.contracts.helpers import (
    E18,
    KIND,
    PARAMS,
    REPLAY_FACTOR,
    SEGMENT_SECONDS,
    STATES,
    STATUS,
    ZERO32,
    JobDriver,
    claim_key,
    commitment_of,
    one_event,
    reveal_args,
)

BOND = PARAMS["challenge_bond"]
ARBITER_WINDOW = PARAMS["arbiter_window"] + REPLAY_FACTOR * SEGMENT_SECONDS
CHALLENGE_WINDOW = PARAMS["challenge_window"] + REPLAY_FACTOR * SEGMENT_SECONDS


@pytest.fixture
def d(funded, chain):
    return JobDriver(funded, chain)


@pytest.fixture
def puppet(accounts, funded):
    """A second address of the worker, staked just enough to challenge."""
    who = accounts[8]
    funded.token.faucet(1_000 * E18, sender=who)
    funded.token.approve(funded.staking, 2**256 - 1, sender=who)
    funded.staking.stake(BOND, sender=who)
    return who


def rule(funded, arbiter, dispute_id, job, worker_wrong, recomputed=b"\x77" * 32, uri="file:///evidence"):
    return funded.disputes.verdict(dispute_id, job.as_tuple(), worker_wrong, recomputed, uri, sender=arbiter)


def dispute(funded, dispute_id):
    return funded.disputes.dispute_of(dispute_id)


# ---------------------------------------------------------------- parameters


def test_parameters(disputes, escrow, staking, token, treasury, arbiter):
    assert disputes.escrow() == escrow.address
    assert disputes.staking() == staking.address
    assert disputes.token() == token.address
    assert disputes.treasury() == treasury.address
    assert disputes.arbiter() == arbiter.address
    assert disputes.arbiter_window() == PARAMS["arbiter_window"]
    assert disputes.reveal_window() == PARAMS["reveal_window"]
    assert disputes.challenge_bond() == BOND
    assert disputes.challenger_reward_bps() == PARAMS["challenger_reward_bps"]
    assert disputes.submitter_compensation_bps() == PARAMS["submitter_compensation_bps"]
    assert disputes.arbiter_window_of(SEGMENT_SECONDS) == ARBITER_WINDOW
    assert disputes.max_dispute_time() == (PARAMS["reveal_window"] + PARAMS["arbiter_window"]
                                           + REPLAY_FACTOR * PARAMS["max_segment_seconds"])


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"window": 0}, "disputes: bad arbiter window"),
        ({"reveal": 0}, "disputes: bad reveal window"),
        ({"reveal": 86_401}, "disputes: bad reveal window"),
        ({"bond": 0}, "disputes: zero challenge bond"),
        ({"reward": 6_000, "comp": 4_001}, "disputes: shares above 100%"),
        ({"window": 30 * 86_400}, "disputes: segment seconds too large for the windows"),
    ],
)
def test_constructor_bounds(project, deployer, escrow, staking, token, treasury, arbiter, change, reason):
    p = {"window": 10, "reveal": 10, "bond": 1, "reward": 0, "comp": 0, **change}
    zero = "0x" + "00" * 20
    with ape.reverts(reason):
        deployer.deploy(project.Disputes, escrow, staking, token, treasury, arbiter, p["window"], p["reveal"],
                        p["bond"], p["reward"], p["comp"], zero, ZERO32)


def test_constructor_rejects_zero_roles(project, deployer, escrow, staking, token, treasury):
    zero = "0x" + "00" * 20
    with ape.reverts("disputes: zero arbiter"):
        deployer.deploy(project.Disputes, escrow, staking, token, treasury, zero, 1, 1, 1, 0, 0, zero, ZERO32)
    with ape.reverts("disputes: zero treasury"):
        deployer.deploy(project.Disputes, escrow, staking, token, zero, treasury, 1, 1, 1, 0, 0, zero, ZERO32)
    with ape.reverts("disputes: escrow uses another token"):
        deployer.deploy(project.Disputes, escrow, staking, staking, treasury, treasury, 1, 1, 1, 0, 0, zero, ZERO32)


# ---------------------------------------------------------------- filing and revealing


def test_file_locks_the_bond_and_blocks_finalize(d, funded, submitter, worker, verifier, chain):
    job_id, job, hashes = d.committed_job(submitter, worker, n=5)
    available = funded.staking.available_of(verifier)
    dispute_id, receipt = d.file(job_id, job, verifier, "segment", 3)
    ev = one_event(receipt, funded.disputes.ChallengeFiled)
    assert (ev.dispute_id, ev.job_id, ev.challenger, ev.bond) == (1, job_id, verifier.address, BOND)
    assert ev.commitment == commitment_of(job_id, verifier.address, KIND["segment"], 3, b"\x5a" * 32)
    assert ev.reveal_deadline == chain.blocks.head.timestamp + PARAMS["reveal_window"]
    assert one_event(receipt, funded.escrow.JobChallenged).job_id == job_id
    assert funded.escrow.job_state(job_id) == STATES["Challenged"]
    assert funded.staking.available_of(verifier) == available - BOND
    assert funded.staking.locked_of(verifier) == BOND
    assert funded.disputes.open_disputes(job_id) == 1
    assert dispute(funded, dispute_id).status == STATUS["filed"]
    d.warp(CHALLENGE_WINDOW + 1)  # a job with a dispute open never finalizes, window or not
    with ape.reverts("escrow: job not committed"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=verifier)


def test_reveal_pins_the_pair_and_starts_the_arbiter_clock(d, funded, submitter, worker, verifier, chain):
    job_id, job, hashes = d.committed_job(submitter, worker, n=5)
    dispute_id, receipt = d.challenge(job_id, job, verifier, hashes, 3)
    ev = one_event(receipt, funded.disputes.ChallengeRevealed)
    assert (ev.dispute_id, ev.job_id, ev.kind, ev.segment, ev.h_a, ev.h_b) == (
        dispute_id, job_id, KIND["segment"], 3, hashes[3], hashes[4])
    assert ev.arbiter_deadline == chain.blocks.head.timestamp + ARBITER_WINDOW
    record = dispute(funded, dispute_id)
    assert (record.status, record.kind, record.segment, record.deadline) == (
        STATUS["revealed"], KIND["segment"], 3, ev.arbiter_deadline)


def test_reveal_guards(d, funded, submitter, worker, verifier, submitter2, chain):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    salt = b"\x01" * 32
    dispute_id, _ = d.file(job_id, job, verifier, "segment", 1, salt)
    a, b, pa, pb = reveal_args(job, hashes, "segment", 1)

    def call(kind=KIND["segment"], segment=1, s=salt, h_a=a, p_a=pa, h_b=b, p_b=pb, sender=verifier, j=job):
        return funded.disputes.reveal(dispute_id, j.as_tuple(), kind, segment, s, h_a, p_a, h_b, p_b, sender=sender)

    with ape.reverts("disputes: not the challenger"):
        call(sender=submitter2)
    with ape.reverts("disputes: reveal does not match the commitment"):
        call(s=b"\x02" * 32)
    with ape.reverts("disputes: reveal does not match the commitment"):
        call(segment=2)
    with ape.reverts("disputes: job mismatch"):
        call(j=job.but(payment=1))
    with ape.reverts("disputes: bad proof length"):
        call(p_a=pa[:-1])
    with ape.reverts("disputes: bad proof for h_a"):
        call(h_a=b"\x09" * 32)
    with ape.reverts("disputes: bad proof for h_b"):
        call(h_b=hashes[3], p_b=merkle_proof(hashes, 3))
    call()
    with ape.reverts("disputes: not a filed dispute"):
        call()


def test_reveal_after_its_window_reverts_and_the_filing_forfeits(d, funded, submitter, worker, verifier, treasury):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    dispute_id, _ = d.file(job_id, job, verifier, "segment", 1)
    with ape.reverts("disputes: reveal window open"):
        funded.disputes.expire_reveal(dispute_id, job.as_tuple(), sender=submitter)
    d.warp(PARAMS["reveal_window"] + 1)
    with ape.reverts("disputes: reveal window closed"):
        d.reveal(dispute_id, job, verifier, hashes, "segment", 1)
    staked = funded.staking.staked_of(verifier)
    receipt = funded.disputes.expire_reveal(dispute_id, job.as_tuple(), sender=submitter)
    ev = one_event(receipt, funded.disputes.DisputeClosed)
    assert (ev.status, ev.bond_forfeited) == (STATUS["unrevealed"], BOND)
    assert funded.staking.staked_of(verifier) == staked - BOND
    assert funded.disputes.owed(treasury) == BOND
    assert funded.escrow.job_state(job_id) == STATES["Committed"]  # no dispute left open


@pytest.mark.parametrize("kind", ["initial", "output"])
def test_initial_and_output_claims_pin_one_boundary(d, funded, submitter, worker, verifier, kind):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    segment = 0 if kind == "initial" else 4
    dispute_id, receipt = d.challenge(job_id, job, verifier, hashes, segment, kind=kind)
    ev = one_event(receipt, funded.disputes.ChallengeRevealed)
    assert (ev.kind, ev.segment, ev.h_a) == (KIND[kind], segment, hashes[segment])
    assert ev.h_b == (b"\x00" * 32 if kind == "initial" else job.output_hash)


def test_claims_that_do_not_fit_their_kind_revert(d, funded, submitter, worker, verifier, chain):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    cases = [
        ("segment", 4, "disputes: segment out of range", hashes[4], merkle_proof(hashes, 4), hashes[4], merkle_proof(hashes, 4)),
        ("initial", 1, "disputes: initial claim is about boundary 0", hashes[1], merkle_proof(hashes, 1), b"\x00" * 32, []),
        ("initial", 0, "disputes: initial claim pins one hash", hashes[0], merkle_proof(hashes, 0), hashes[1], []),
        ("output", 3, "disputes: output claim is about boundary N", hashes[3], merkle_proof(hashes, 3), job.output_hash, []),
        ("output", 4, "disputes: output claim pins the output hash", hashes[4], merkle_proof(hashes, 4), b"\x01" * 32, []),
    ]
    for index, (kind, segment, reason, h_a, p_a, h_b, p_b) in enumerate(cases):
        salt = bytes([index + 1]) * 32
        dispute_id, _ = d.file(job_id, job, verifier, kind, segment, salt)
        chain.mine()
        with ape.reverts(reason):
            funded.disputes.reveal(dispute_id, job.as_tuple(), KIND[kind], segment, salt, h_a, p_a, h_b, p_b,
                                   sender=verifier)
    salt = b"\x42" * 32
    commitment = commitment_of(job_id, verifier.address, 9, 0, salt)
    dispute_id = one_event(funded.disputes.file_challenge(job_id, job.as_tuple(), commitment, sender=verifier),
                           funded.disputes.ChallengeFiled).dispute_id
    chain.mine()
    with ape.reverts("disputes: unknown claim"):
        funded.disputes.reveal(dispute_id, job.as_tuple(), 9, 0, salt, hashes[0], merkle_proof(hashes, 0),
                               hashes[1], merkle_proof(hashes, 1), sender=verifier)


def test_file_guards(d, funded, submitter, worker, verifier, arbiter, submitter2):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    c = b"\x01" * 32
    with ape.reverts("disputes: job mismatch"):
        funded.disputes.file_challenge(job_id, job.but(payment=1).as_tuple(), c, sender=verifier)
    with ape.reverts("disputes: worker cannot challenge"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), c, sender=worker)
    with ape.reverts("disputes: empty commitment"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), b"\x00" * 32, sender=verifier)
    with ape.reverts("disputes: available stake below the bond"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), c, sender=submitter2)
    open_id, open_job = d.post(submitter, n=1)[:2]
    with ape.reverts("disputes: job not committed"):
        funded.disputes.file_challenge(open_id, open_job.as_tuple(), c, sender=verifier)
    d.warp(CHALLENGE_WINDOW)
    with ape.reverts("disputes: challenge window closed"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), c, sender=verifier)


# ---------------------------------------------------------------- verdicts


def test_worker_wrong_slashes_credits_and_unlocks(d, funded, submitter, worker, verifier, arbiter, treasury):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    dispute_id, _ = d.challenge(job_id, job, verifier, hashes, 2)
    receipt = rule(funded, arbiter, dispute_id, job, True)
    slashed = job.collateral
    reward = slashed * PARAMS["challenger_reward_bps"] // 10_000
    comp = slashed * PARAMS["submitter_compensation_bps"] // 10_000
    ev = one_event(receipt, funded.disputes.Verdict)
    assert ev.worker_wrong and ev.recomputed_hash == b"\x77" * 32 and ev.evidence_uri == "file:///evidence"
    assert (ev.slashed, ev.rewarded, ev.challenger_reward, ev.submitter_compensation, ev.bond_forfeited) == (
        slashed, verifier.address, reward, comp, 0)
    assert one_event(receipt, funded.escrow.JobSettled).outcome == 1
    assert funded.escrow.job_state(job_id) == STATES["Rejected"]
    assert funded.escrow.owed(submitter) == job.payment
    assert funded.disputes.owed(submitter) == comp
    assert funded.disputes.owed(verifier) == reward
    assert funded.disputes.owed(treasury) == slashed - reward - comp
    assert funded.staking.staked_of(worker) == 1_000 * E18 - slashed
    assert funded.staking.locked_of(worker) == 0
    assert funded.staking.locked_of(verifier) == 0  # the bond is free again
    assert funded.disputes.open_disputes(job_id) == 0
    assert dispute(funded, dispute_id).status == STATUS["worker_wrong"]
    with ape.reverts("disputes: not a revealed dispute"):
        rule(funded, arbiter, dispute_id, job, True)
    # every credit is pulled, and the contracts end up holding nothing
    for who in (submitter, verifier, treasury):
        funded.disputes.withdraw(sender=who)
    funded.escrow.withdraw(sender=submitter)
    assert funded.token.balanceOf(funded.disputes) == 0
    assert funded.token.balanceOf(funded.escrow) == 0
    with ape.reverts("disputes: nothing owed"):
        funded.disputes.withdraw(sender=verifier)


def test_worker_right_forfeits_the_bond_to_the_treasury(d, funded, submitter, worker, verifier, arbiter, treasury):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    dispute_id, _ = d.challenge(job_id, job, verifier, hashes, 0)
    worker_balance = funded.token.balanceOf(worker)
    receipt = rule(funded, arbiter, dispute_id, job, False, hashes[1])
    ev = one_event(receipt, funded.disputes.Verdict)
    assert not ev.worker_wrong and ev.slashed == 0 and ev.bond_forfeited == BOND
    assert funded.disputes.owed(treasury) == BOND
    assert funded.disputes.owed(worker) == 0 and funded.token.balanceOf(worker) == worker_balance
    assert funded.staking.staked_of(verifier) == 1_000 * E18 - BOND
    assert funded.escrow.job_state(job_id) == STATES["Committed"]
    with ape.reverts("escrow: challenge window open"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=submitter)
    d.warp(CHALLENGE_WINDOW)
    funded.escrow.finalize(job_id, job.as_tuple(), sender=submitter)
    assert funded.escrow.job_state(job_id) == STATES["Finalized"]


def test_verdict_guards(d, funded, submitter, worker, verifier, arbiter):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    filed, _ = d.file(job_id, job, verifier, "segment", 0)
    with ape.reverts("disputes: not a revealed dispute"):
        rule(funded, arbiter, filed, job, True)
    d.chain.mine()
    d.reveal(filed, job, verifier, hashes, "segment", 0)
    with ape.reverts("disputes: not arbiter"):
        funded.disputes.verdict(filed, job.as_tuple(), True, b"\x00" * 32, "", sender=verifier)
    with ape.reverts("disputes: job mismatch"):
        rule(funded, arbiter, filed, job.but(collateral=10**30), True)
    d.warp(ARBITER_WINDOW + 1)
    with ape.reverts("disputes: arbiter window closed"):
        rule(funded, arbiter, filed, job, True)


def test_arbiter_silence_voids_the_job(d, funded, submitter, worker, verifier):
    """The neutral outcome: nobody the delay may be due to is paid (audit F-02, F-11)."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    dispute_id, _ = d.challenge(job_id, job, verifier, hashes, 1)
    with ape.reverts("disputes: arbiter window open"):
        funded.disputes.timeout(dispute_id, job.as_tuple(), sender=submitter)
    d.warp(ARBITER_WINDOW + 1)
    receipt = funded.disputes.timeout(dispute_id, job.as_tuple(), sender=submitter)
    assert one_event(receipt, funded.disputes.DisputeClosed).status == STATUS["voided"]
    assert one_event(receipt, funded.escrow.JobSettled).outcome == 2
    assert funded.escrow.job_state(job_id) == STATES["Voided"]
    assert funded.escrow.owed(submitter) == job.payment  # the submitter gets its payment back
    assert funded.staking.locked_of(worker) == 0 and funded.staking.staked_of(worker) == 1_000 * E18
    assert funded.staking.locked_of(verifier) == 0 and funded.staking.staked_of(verifier) == 1_000 * E18
    with ape.reverts("escrow: job not committed"):  # and the worker is never paid
        funded.escrow.finalize(job_id, job.as_tuple(), sender=worker)
    with ape.reverts("disputes: not a revealed dispute"):
        funded.disputes.timeout(dispute_id, job.as_tuple(), sender=submitter)


def test_one_missed_window_does_not_let_a_wrong_result_escape(d, funded, submitter, worker, verifier, puppet,
                                                              arbiter, chain):
    """The cheater's puppet reveals a claim early; the arbiter misses its window (flooded, or down for an
    hour). The timeout no longer voids the job while the honest dispute is open: the arbiter still finds the
    worker wrong on it, and the worker is slashed."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    puppet_id, _ = d.challenge(job_id, job, puppet, hashes, 0, kind="unavailable", salt=b"\x01" * 32)
    d.warp(ARBITER_WINDOW - 30)
    honest_id, _ = d.challenge(job_id, job, verifier, hashes, 2, salt=b"\x02" * 32)
    d.warp(60)  # past the puppet's window, inside the honest one's
    receipt = funded.disputes.timeout(puppet_id, job.as_tuple(), sender=submitter)
    assert one_event(receipt, funded.disputes.DisputeClosed).status == STATUS["voided"]
    assert not receipt.events.filter(funded.escrow.JobSettled)
    assert funded.disputes.timed_out(job_id)
    assert funded.escrow.job_state(job_id) == STATES["Challenged"]
    assert funded.staking.locked_of(puppet) == 0  # the timed-out bond is unlocked, nobody's fault but the arbiter's
    receipt = rule(funded, arbiter, honest_id, job, True)
    assert one_event(receipt, funded.escrow.JobSettled).outcome == 1
    assert funded.escrow.job_state(job_id) == STATES["Rejected"]
    assert one_event(receipt, funded.disputes.Verdict).slashed == job.collateral


def test_a_timed_out_job_is_voided_when_its_last_dispute_closes(d, funded, submitter, worker, verifier, worker2,
                                                                arbiter, chain):
    """Once a dispute timed out the job can no longer resume and be paid: the last worker-right ruling (or
    unrevealed filing) voids it instead."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    first, _ = d.challenge(job_id, job, verifier, hashes, 1, salt=b"\x01" * 32)
    d.warp(ARBITER_WINDOW - 30)
    second, _ = d.challenge(job_id, job, worker2, hashes, 2, salt=b"\x02" * 32)
    d.warp(60)
    funded.disputes.timeout(first, job.as_tuple(), sender=submitter)
    receipt = rule(funded, arbiter, second, job, False, hashes[3])
    assert one_event(receipt, funded.escrow.JobSettled).outcome == 2
    assert funded.escrow.job_state(job_id) == STATES["Voided"]
    assert funded.escrow.owed(submitter) == job.payment
    assert funded.staking.locked_of(worker) == 0 and funded.staking.staked_of(worker) == 1_000 * E18
    assert funded.staking.staked_of(worker2) == 1_000 * E18 - BOND  # a wrong claim still costs its bond


def test_an_unrevealed_filing_on_a_settled_job_is_closed_not_forfeited(d, funded, submitter, worker, verifier,
                                                                       worker2, arbiter, treasury, chain):
    """A filing that was about to be revealed when another dispute rejected the job had nothing left to
    reveal against (reveal needs a Challenged job): `expire_reveal` unlocks its bond."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    late, _ = d.file(job_id, job, worker2, "segment", 1, b"\x0a" * 32)
    winner, _ = d.challenge(job_id, job, verifier, hashes, 2)
    rule(funded, arbiter, winner, job, True)
    treasury_before = funded.disputes.owed(treasury)
    d.warp(PARAMS["reveal_window"] + 1)
    receipt = funded.disputes.expire_reveal(late, job.as_tuple(), sender=submitter)
    closed = one_event(receipt, funded.disputes.DisputeClosed)
    assert (closed.status, closed.bond_forfeited) == (STATUS["closed"], 0)
    assert funded.staking.locked_of(worker2) == 0 and funded.staking.staked_of(worker2) == 1_000 * E18
    assert funded.disputes.owed(treasury) == treasury_before
    assert funded.disputes.open_disputes(job_id) == 0


def test_a_filing_left_unrevealed_past_its_window_forfeits_even_after_the_job_settles(d, funded, submitter, worker,
                                                                                       verifier, worker2, arbiter,
                                                                                       treasury, chain):
    """A sealed filing that held the job Challenged (and made the arbiter wait for it) and was never
    revealed in its window cannot escape its forfeit by waiting for another dispute to settle the job."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    stale, _ = d.file(job_id, job, worker2, "segment", 1, b"\x0a" * 32)
    d.warp(PARAMS["reveal_window"] + 1)  # its window ends unrevealed
    winner, _ = d.challenge(job_id, job, verifier, hashes, 2)
    rule(funded, arbiter, winner, job, True)
    treasury_before = funded.disputes.owed(treasury)
    receipt = funded.disputes.close(stale, sender=submitter)
    closed = one_event(receipt, funded.disputes.DisputeClosed)
    assert (closed.status, closed.bond_forfeited) == (STATUS["unrevealed"], BOND)
    assert funded.staking.staked_of(worker2) == 1_000 * E18 - BOND
    assert funded.disputes.owed(treasury) == treasury_before + BOND


def test_other_disputes_close_with_their_bonds_once_the_job_is_rejected(d, funded, submitter, worker, verifier,
                                                                       worker2, arbiter, chain):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    first, _ = d.challenge(job_id, job, verifier, hashes, 2)
    second, _ = d.file(job_id, job, worker2, "segment", 0, b"\x09" * 32)
    chain.mine()
    d.reveal(second, job, worker2, hashes, "segment", 0, b"\x09" * 32)
    third, _ = d.file(job_id, job, worker2, "segment", 1, b"\x0a" * 32)  # never revealed
    with ape.reverts("disputes: job not settled"):
        funded.disputes.close(second, sender=submitter)
    rule(funded, arbiter, first, job, True)
    assert funded.staking.locked_of(worker2) == 2 * BOND
    for dispute_id in (second, third):
        receipt = funded.disputes.close(dispute_id, sender=submitter)
        assert one_event(receipt, funded.disputes.DisputeClosed).status == STATUS["closed"]
    assert funded.staking.locked_of(worker2) == 0 and funded.staking.staked_of(worker2) == 1_000 * E18
    assert funded.disputes.open_disputes(job_id) == 0
    with ape.reverts("disputes: dispute not open"):
        funded.disputes.close(second, sender=submitter)


# ---------------------------------------------------------------- the audit's attacks


def test_f01_a_puppet_challenge_no_longer_blocks_an_honest_one(d, funded, submitter, worker, verifier, puppet,
                                                               arbiter, chain):
    """F-01: the worker's puppet challenges a correct segment one block after the commit. The honest
    verifier still files and reveals its challenge on the wrong segment, the arbiter rules both, and the
    worker is slashed; the puppet's bond is lost to the treasury, not returned to the coalition."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    puppet_id, _ = d.challenge(job_id, job, puppet, hashes, 0, salt=b"\x01" * 32)
    honest_id, _ = d.challenge(job_id, job, verifier, hashes, 2, salt=b"\x02" * 32)
    assert funded.disputes.open_disputes(job_id) == 2
    coalition_before = funded.staking.staked_of(worker) + funded.staking.staked_of(puppet)
    rule(funded, arbiter, puppet_id, job, False, hashes[1])  # segment 0 was correct
    assert funded.escrow.job_state(job_id) == STATES["Challenged"]  # the honest dispute is still open
    chain.pending_timestamp = job.challenge_end  # the window is over while the honest dispute is open
    with ape.reverts("escrow: job not committed"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=worker)
    rule(funded, arbiter, honest_id, job, True)
    assert funded.escrow.job_state(job_id) == STATES["Rejected"]
    coalition_after = funded.staking.staked_of(worker) + funded.staking.staked_of(puppet)
    assert coalition_before - coalition_after == job.collateral + BOND
    assert funded.disputes.owed(verifier) == job.collateral * PARAMS["challenger_reward_bps"] // 10_000


def test_f01_re_challenge_loop_costs_the_coalition_a_bond_per_round(d, funded, submitter, worker, puppet, arbiter,
                                                                     treasury, chain):
    """F-01 variant: back-to-back puppet challenges that a fast honest arbiter rules worker-right cost a
    bond each (to the treasury), instead of netting to zero."""
    funded.staking.stake(4 * BOND, sender=puppet)
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    before = funded.staking.staked_of(puppet)
    for round_ in range(5):
        dispute_id, _ = d.challenge(job_id, job, puppet, hashes, round_ % 4, salt=bytes([round_ + 1]) * 32)
        rule(funded, arbiter, dispute_id, job, False, hashes[round_ % 4 + 1])
    assert before - funded.staking.staked_of(puppet) == 5 * BOND
    assert funded.disputes.owed(treasury) == 5 * BOND


def test_f05_a_copied_challenge_cannot_be_revealed(d, funded, submitter, worker, verifier, worker2, chain):
    """F-05 attack 1: a bot copies the verifier's pending filing (the commitment) from the mempool. The
    commitment binds the verifier's address, so the copy can never be revealed and its bond is lost."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    salt = b"\x33" * 32
    commitment = commitment_of(job_id, verifier.address, KIND["segment"], 2, salt)
    copy = one_event(funded.disputes.file_challenge(job_id, job.as_tuple(), commitment, sender=worker2),
                     funded.disputes.ChallengeFiled).dispute_id
    original = one_event(funded.disputes.file_challenge(job_id, job.as_tuple(), commitment, sender=verifier),
                         funded.disputes.ChallengeFiled).dispute_id
    chain.mine()
    a, b, pa, pb = reveal_args(job, hashes, "segment", 2)
    with ape.reverts("disputes: reveal does not match the commitment"):
        funded.disputes.reveal(copy, job.as_tuple(), KIND["segment"], 2, salt, a, pa, b, pb, sender=worker2)
    funded.disputes.reveal(original, job.as_tuple(), KIND["segment"], 2, salt, a, pa, b, pb, sender=verifier)
    assert dispute(funded, original).status == STATUS["revealed"]


def test_f05_a_copied_reveal_filed_later_does_not_take_the_reward(d, funded, submitter, worker, verifier, worker2,
                                                                   arbiter, chain):
    """F-05: a bot that reads the verifier's reveal and files the same claim itself comes later in filing
    order; whichever of the two disputes the arbiter rules, the reward goes to the earliest filer."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    honest, _ = d.challenge(job_id, job, verifier, hashes, 2, salt=b"\x01" * 32)
    copier, _ = d.challenge(job_id, job, worker2, hashes, 2, kind="unavailable", salt=b"\x02" * 32)
    assert funded.disputes.leader_of(claim_key(job_id, "segment", 2)) == honest
    receipt = rule(funded, arbiter, copier, job, True)
    assert one_event(receipt, funded.disputes.Verdict).rewarded == verifier.address
    assert funded.disputes.owed(worker2) == 0
    assert funded.disputes.owed(verifier) == job.collateral * PARAMS["challenger_reward_bps"] // 10_000
    funded.disputes.close(honest, sender=verifier)
    assert funded.staking.locked_of(verifier) == 0 and funded.staking.locked_of(worker2) == 0


def test_f05_self_capture_is_bounded_by_the_reward_share(d, funded, submitter, worker, verifier, puppet, arbiter):
    """F-05 attack 2, priced in docs/economics.md: a worker whose puppet files first on its own wrong
    segment still loses K·(1 − challenger_reward_bps), never less."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    puppet_id, _ = d.challenge(job_id, job, puppet, hashes, 2, salt=b"\x01" * 32)
    honest_id, _ = d.challenge(job_id, job, verifier, hashes, 2, salt=b"\x02" * 32)
    before = funded.staking.staked_of(worker) + funded.staking.staked_of(puppet)
    rule(funded, arbiter, honest_id, job, True)
    after = funded.staking.staked_of(worker) + funded.staking.staked_of(puppet) + funded.disputes.owed(puppet)
    assert before - after == job.collateral - job.collateral * PARAMS["challenger_reward_bps"] // 10_000
    assert funded.disputes.owed(verifier) == 0  # filed second: no reward, bond back after close
    funded.disputes.close(puppet_id, sender=verifier)


def test_f08_a_late_served_checkpoint_farms_nothing_for_the_worker(d, funded, submitter, worker, verifier, arbiter,
                                                                   treasury):
    """F-08: the worker withholds checkpoint h_1 until challenged, then serves it, and the arbiter rules it
    right. A losing UNAVAILABLE claim forfeits only part of its bond, and to the treasury: the worker gains
    nothing (and a flood of UNAVAILABLE claims is never free)."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    dispute_id, _ = d.challenge(job_id, job, verifier, hashes, 1, kind="unavailable")
    receipt = rule(funded, arbiter, dispute_id, job, False, hashes[2])
    part = BOND * funded.disputes.UNAVAILABLE_FORFEIT_BPS() // 10_000
    assert 0 < part < BOND
    assert one_event(receipt, funded.disputes.Verdict).bond_forfeited == part
    assert funded.staking.staked_of(verifier) == 1_000 * E18 - part and funded.staking.locked_of(verifier) == 0
    assert funded.disputes.owed(worker) == 0 and funded.disputes.owed(treasury) == part
    assert funded.escrow.job_state(job_id) == STATES["Committed"]


def test_f08_an_unavailable_final_checkpoint_is_the_output_claim(d, funded, submitter, worker, verifier, worker2,
                                                                  arbiter, chain):
    """UNAVAILABLE at boundary N pins h_N and the output hash like an OUTPUT claim, competes with it for
    the reward, and loses only part of its bond when the arbiter finds the worker right."""
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    missing, receipt = d.challenge(job_id, job, verifier, hashes, 4, kind="unavailable", salt=b"\x01" * 32)
    ev = one_event(receipt, funded.disputes.ChallengeRevealed)
    assert (ev.segment, ev.h_a, ev.h_b) == (4, hashes[4], job.output_hash)
    later, _ = d.challenge(job_id, job, worker2, hashes, 4, kind="output", salt=b"\x02" * 32)
    assert funded.disputes.leader_of(claim_key(job_id, "output", 4)) == missing
    rule(funded, arbiter, later, job, False, job.output_hash)
    rule(funded, arbiter, missing, job, False, job.output_hash)
    part = BOND * funded.disputes.UNAVAILABLE_FORFEIT_BPS() // 10_000
    assert funded.staking.staked_of(verifier) == 1_000 * E18 - part  # most of the UNAVAILABLE bond came back
    assert funded.staking.staked_of(worker2) == 1_000 * E18 - BOND  # the OUTPUT bond did not


def test_f09_the_arbiter_cannot_challenge(d, funded, submitter, worker, arbiter):
    """F-09: the arbiter's own address can no longer challenge (and pay itself the reward)."""
    funded.token.faucet(100 * E18, sender=arbiter)
    funded.token.approve(funded.staking, 2**256 - 1, sender=arbiter)
    funded.staking.stake(100 * E18, sender=arbiter)
    job_id, job, _ = d.committed_job(submitter, worker, n=4)
    with ape.reverts("disputes: arbiter cannot challenge"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), b"\x01" * 32, sender=arbiter)


def test_f17_a_challenger_needs_the_bond_in_available_stake_and_risks_it(d, funded, submitter, worker, accounts,
                                                                          arbiter):
    """F-17: 1 wei of stake no longer qualifies a challenger, and the bond it locks is at risk."""
    dust = accounts[9]
    funded.token.faucet(100 * E18, sender=dust)
    funded.token.approve(funded.staking, 2**256 - 1, sender=dust)
    funded.staking.stake(1, sender=dust)
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    with ape.reverts("disputes: available stake below the bond"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), b"\x01" * 32, sender=dust)
    funded.staking.stake(BOND, sender=dust)
    funded.staking.request_unstake(BOND + 1, sender=dust)  # unbonding stake does not qualify either
    with ape.reverts("disputes: available stake below the bond"):
        funded.disputes.file_challenge(job_id, job.as_tuple(), b"\x01" * 32, sender=dust)
