"""Disputes: challenge with on-chain Merkle proofs, verdict both ways, arbiter timeout."""

from __future__ import annotations

import ape
import pytest

from protocol.merkle import merkle_proof
from tests.unit.contracts.helpers import E18, PARAMS, STATES, JobDriver, one_event


@pytest.fixture
def d(funded, chain):
    return JobDriver(funded, chain)


def test_parameters(disputes, escrow, staking, token, treasury, arbiter):
    assert disputes.escrow() == escrow.address
    assert disputes.staking() == staking.address
    assert disputes.token() == token.address
    assert disputes.treasury() == treasury.address
    assert disputes.arbiter() == arbiter.address
    assert disputes.arbiter_window() == PARAMS["arbiter_window"]
    assert disputes.challenge_bond() == PARAMS["challenge_bond"]
    assert disputes.challenger_reward_bps() == PARAMS["challenger_reward_bps"]
    assert disputes.submitter_compensation_bps() == PARAMS["submitter_compensation_bps"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"window": 0}, "disputes: bad arbiter window"),
        ({"bond": 0}, "disputes: zero challenge bond"),
        ({"reward": 6_000, "comp": 4_001}, "disputes: shares above 100%"),
    ],
)
def test_constructor_bounds(project, deployer, escrow, staking, token, treasury, arbiter, change, reason):
    p = {"window": 10, "bond": 1, "reward": 0, "comp": 0, **change}
    with ape.reverts(reason):
        deployer.deploy(
            project.Disputes, escrow, staking, token, treasury, arbiter, p["window"], p["bond"],
            p["reward"], p["comp"],
        )  # fmt: skip


def test_constructor_rejects_zero_roles(project, deployer, escrow, staking, token, treasury):
    zero = "0x" + "00" * 20
    with ape.reverts("disputes: zero arbiter"):
        deployer.deploy(project.Disputes, escrow, staking, token, treasury, zero, 1, 1, 0, 0)
    with ape.reverts("disputes: zero treasury"):
        deployer.deploy(project.Disputes, escrow, staking, token, zero, treasury, 1, 1, 0, 0)
    with ape.reverts("disputes: escrow uses another token"):
        deployer.deploy(project.Disputes, escrow, staking, staking, treasury, treasury, 1, 1, 0, 0)


def test_challenge_pins_the_pair(d, funded, submitter, worker, verifier, chain):
    job_id, job, hashes = d.committed_job(submitter, worker, n=5)
    before = funded.token.balanceOf(verifier)
    receipt = d.challenge(job_id, job, verifier, hashes, 3)
    ev = one_event(receipt, funded.disputes.Challenged)
    assert (ev.challenger, ev.segment, ev.h_i, ev.h_next, ev.bond) == (
        verifier.address, 3, hashes[3], hashes[4], PARAMS["challenge_bond"]
    )
    assert ev.arbiter_deadline == chain.blocks.head.timestamp + PARAMS["arbiter_window"]
    assert one_event(receipt, funded.escrow.JobChallenged).job_id == job_id
    assert funded.escrow.job_state(job_id) == STATES["Challenged"]
    assert funded.token.balanceOf(verifier) == before - PARAMS["challenge_bond"]
    assert funded.token.balanceOf(funded.disputes) == PARAMS["challenge_bond"]
    dispute = funded.disputes.dispute_of(job_id)
    assert dispute.challenger == verifier.address and dispute.open and dispute.segment == 3
    # a challenged job cannot finalize, even after its window
    d.warp(PARAMS["challenge_window"] + 1)
    with ape.reverts("escrow: job not committed"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=verifier)


def test_last_segment_can_be_challenged(d, funded, submitter, worker, verifier):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    d.challenge(job_id, job, verifier, hashes, 3)
    assert funded.escrow.job_state(job_id) == STATES["Challenged"]


def test_challenge_reverts(d, funded, submitter, worker, verifier, submitter2):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    t = job.as_tuple()
    good = dict(h_i=hashes[1], p_i=merkle_proof(hashes, 1), h_n=hashes[2], p_n=merkle_proof(hashes, 2))

    def call(segment=1, sender=verifier, job_tuple=t, **over):
        a = {**good, **over}
        return funded.disputes.challenge(job_id, job_tuple, segment, a["h_i"], a["p_i"], a["h_n"], a["p_n"], sender=sender)

    with ape.reverts("disputes: job mismatch"):
        call(job_tuple=job.but(payment=1).as_tuple())
    with ape.reverts("disputes: worker cannot challenge"):
        call(sender=worker)
    with ape.reverts("disputes: challenger not staked"):
        call(sender=submitter2)
    with ape.reverts("disputes: segment out of range"):
        call(segment=4, h_i=hashes[4], p_i=merkle_proof(hashes, 4))
    with ape.reverts("disputes: bad proof length"):
        call(p_i=merkle_proof(hashes, 1)[:-1])
    with ape.reverts("disputes: bad proof length"):
        call(p_n=merkle_proof(hashes, 2) + [b"\x00" * 32])
    with ape.reverts("disputes: bad proof for h_i"):
        call(h_i=b"\x09" * 32)
    with ape.reverts("disputes: bad proof for h_next"):
        call(h_n=hashes[3], p_n=merkle_proof(hashes, 3))
    d.challenge(job_id, job, verifier, hashes, 1)
    challenged = job
    with ape.reverts("disputes: job not committed"):  # the job is Challenged now
        call()
    assert funded.escrow.job_state(job_id) == STATES["Challenged"]
    del challenged


def test_challenge_after_window_reverts(d, funded, submitter, worker, verifier):
    job_id, job, hashes = d.committed_job(submitter, worker, n=2)
    d.warp(PARAMS["challenge_window"])
    with ape.reverts("escrow: challenge window closed"):
        d.challenge(job_id, job, verifier, hashes, 0)


def test_challenge_of_uncommitted_job_reverts(d, funded, submitter, worker, verifier):
    job_id, job, _ = d.post(submitter, n=1)
    job, _ = d.claim(job_id, job, worker)
    hashes = [b"\x01" * 32, b"\x02" * 32]
    with ape.reverts("disputes: job not committed"):
        d.challenge(job_id, job, verifier, hashes, 0)


def test_verdict_worker_wrong_slashes_and_splits(d, funded, submitter, worker, verifier, arbiter, treasury):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    d.challenge(job_id, job, verifier, hashes, 2)
    balances = {who: funded.token.balanceOf(who) for who in (submitter, verifier, treasury)}
    receipt = funded.disputes.verdict(job_id, job.as_tuple(), True, b"\x77" * 32, "file:///evidence", sender=arbiter)
    slashed = job.collateral
    reward = slashed * PARAMS["challenger_reward_bps"] // 10_000
    comp = slashed * PARAMS["submitter_compensation_bps"] // 10_000
    ev = one_event(receipt, funded.disputes.Verdict)
    assert ev.worker_wrong and ev.recomputed_hash == b"\x77" * 32 and ev.evidence_uri == "file:///evidence"
    assert (ev.slashed, ev.challenger_reward, ev.submitter_compensation) == (slashed, reward, comp)
    assert one_event(receipt, funded.escrow.JobSettled).worker_wrong
    assert funded.escrow.job_state(job_id) == STATES["Rejected"]
    assert funded.token.balanceOf(submitter) == balances[submitter] + job.payment + comp
    assert funded.token.balanceOf(verifier) == balances[verifier] + PARAMS["challenge_bond"] + reward
    assert funded.token.balanceOf(treasury) == balances[treasury] + slashed - reward - comp
    assert funded.staking.staked_of(worker) == 1_000 * E18 - slashed
    assert funded.staking.locked_of(worker) == 0
    assert funded.token.balanceOf(funded.disputes) == 0
    assert funded.token.balanceOf(funded.escrow) == 0
    assert not funded.disputes.dispute_of(job_id).open
    with ape.reverts("disputes: no open dispute"):
        funded.disputes.verdict(job_id, job.as_tuple(), True, b"\x00" * 32, "", sender=arbiter)


def test_verdict_challenger_wrong_pays_worker(d, funded, submitter, worker, verifier, arbiter):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    d.challenge(job_id, job, verifier, hashes, 0)
    before = funded.token.balanceOf(worker)
    receipt = funded.disputes.verdict(job_id, job.as_tuple(), False, hashes[1], "", sender=arbiter)
    ev = one_event(receipt, funded.disputes.Verdict)
    assert not ev.worker_wrong and ev.slashed == 0
    assert funded.token.balanceOf(worker) == before + PARAMS["challenge_bond"]
    assert funded.escrow.job_state(job_id) == STATES["Committed"]
    # back to Committed: finalizes once challenge_end has passed
    with ape.reverts("escrow: challenge window open"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=submitter)
    d.warp(PARAMS["challenge_window"])
    funded.escrow.finalize(job_id, job.as_tuple(), sender=submitter)
    assert funded.escrow.job_state(job_id) == STATES["Finalized"]


def test_verdict_guards(d, funded, submitter, worker, verifier, arbiter):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    with ape.reverts("disputes: no open dispute"):
        funded.disputes.verdict(job_id, job.as_tuple(), True, b"\x00" * 32, "", sender=arbiter)
    d.challenge(job_id, job, verifier, hashes, 0)
    with ape.reverts("disputes: not arbiter"):
        funded.disputes.verdict(job_id, job.as_tuple(), True, b"\x00" * 32, "", sender=verifier)
    with ape.reverts("escrow: job mismatch"):
        funded.disputes.verdict(job_id, job.but(collateral=10**30).as_tuple(), True, b"\x00" * 32, "", sender=arbiter)
    d.warp(PARAMS["arbiter_window"] + 1)
    with ape.reverts("disputes: arbiter window closed"):
        funded.disputes.verdict(job_id, job.as_tuple(), True, b"\x00" * 32, "", sender=arbiter)


def test_timeout_returns_bond(d, funded, submitter, worker, verifier):
    job_id, job, hashes = d.committed_job(submitter, worker, n=4)
    with ape.reverts("disputes: no open dispute"):
        funded.disputes.timeout(job_id, job.as_tuple(), sender=submitter)
    d.challenge(job_id, job, verifier, hashes, 1)
    with ape.reverts("disputes: arbiter window open"):
        funded.disputes.timeout(job_id, job.as_tuple(), sender=submitter)
    d.warp(PARAMS["arbiter_window"] + 1)
    before = funded.token.balanceOf(verifier)
    receipt = funded.disputes.timeout(job_id, job.as_tuple(), sender=submitter)
    assert one_event(receipt, funded.disputes.DisputeTimedOut).job_id == job_id
    assert not one_event(receipt, funded.escrow.JobSettled).worker_wrong
    assert funded.token.balanceOf(verifier) == before + PARAMS["challenge_bond"]
    assert funded.escrow.job_state(job_id) == STATES["Committed"]
    funded.escrow.finalize(job_id, job.as_tuple(), sender=submitter)  # window passed meanwhile
    assert funded.escrow.job_state(job_id) == STATES["Finalized"]
