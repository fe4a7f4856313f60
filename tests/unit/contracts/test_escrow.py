"""JobEscrow: every external function, success path, every revert reason, events decoded."""

from __future__ import annotations

import json
from pathlib import Path

import ape
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.merkle import merkle_root
from tests.unit.contracts.helpers import (
    E18,
    PARAMS,
    STATES,
    JobDriver,
    deploy_all,
    one_event,
    state_hashes,
)

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "merkle.json").read_text())


@pytest.fixture
def d(funded, chain):
    return JobDriver(funded, chain)


def test_constructor_parameters(escrow, token, staking, treasury, deployer):
    assert escrow.token() == token.address
    assert escrow.staking() == staking.address
    assert escrow.treasury() == treasury.address
    assert escrow.fee_bps() == PARAMS["fee_bps"]
    assert escrow.execution_timeout() == PARAMS["execution_timeout"]
    assert escrow.challenge_window() == PARAMS["challenge_window"]
    assert escrow.expiry_compensation_bps() == PARAMS["expiry_compensation_bps"]
    assert escrow.deployer() == deployer.address
    assert escrow.job_count() == 0
    assert escrow.MAX_SEGMENTS() == 1_024


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"fee_bps": 1_001}, "escrow: fee too high"),
        ({"execution_timeout": 0}, "escrow: bad execution timeout"),
        ({"challenge_window": 0}, "escrow: bad challenge window"),
        ({"challenge_window": 31 * 86_400}, "escrow: bad challenge window"),
        ({"expiry_compensation_bps": 10_001}, "escrow: compensation above 100%"),
    ],
)
def test_constructor_bounds(project, deployer, treasury, token, staking, change, reason):
    p = {**PARAMS, **change}
    with ape.reverts(reason):
        deployer.deploy(
            project.JobEscrow, token, staking, treasury, p["fee_bps"], p["execution_timeout"],
            p["challenge_window"], p["expiry_compensation_bps"],
        )  # fmt: skip


def test_constructor_rejects_zero_treasury_and_foreign_staking(project, deployer, token, staking):
    zero = "0x" + "00" * 20
    with ape.reverts("escrow: zero treasury"):
        deployer.deploy(project.JobEscrow, token, staking, zero, 0, 1, 1, 0)
    other = deployer.deploy(project.DevToken, "Other", "OTH")
    with ape.reverts("escrow: staking uses another token"):
        deployer.deploy(project.JobEscrow, other, staking, deployer, 0, 1, 1, 0)
    with ape.reverts("escrow: token has no code"):
        deployer.deploy(project.JobEscrow, deployer, staking, deployer, 0, 1, 1, 0)


def test_wire_once_by_deployer_only(project, deployer, arbiter, treasury, submitter):
    s = deploy_all(project, deployer, arbiter, treasury)
    assert s.escrow.disputes() == s.disputes.address
    with ape.reverts("escrow: not deployer"):
        s.escrow.wire(s.disputes, sender=submitter)
    with ape.reverts("escrow: already wired"):
        s.escrow.wire(s.disputes, sender=deployer)


def test_wire_rejects_foreign_disputes(project, deployer, arbiter, treasury):
    a = deploy_all(project, deployer, arbiter, treasury)
    token = a.token
    staking = deployer.deploy(project.Staking, token, PARAMS["unbonding_delay"])
    escrow = deployer.deploy(project.JobEscrow, token, staking, treasury, 0, 10, 10, 0)
    with ape.reverts("escrow: disputes uses another escrow"):
        escrow.wire(a.disputes, sender=deployer)
    with ape.reverts("escrow: disputes has no code"):
        escrow.wire(arbiter, sender=deployer)


# ---------------------------------------------------------------- post


def test_post_pulls_payment_and_emits(d, funded, submitter):
    before = funded.token.balanceOf(submitter)
    job_id, job, receipt = d.post(submitter, payment=100 * E18, collateral=50 * E18, n=7, uri="https://x/spec.json")
    assert job_id == 1 and funded.escrow.job_count() == 1
    ev = one_event(receipt, funded.escrow.JobPosted)
    assert (ev.submitter, ev.payment, ev.collateral, ev.num_segments, ev.spec_uri) == (
        submitter.address, 100 * E18, 50 * E18, 7, "https://x/spec.json"
    )
    assert ev.spec_hash == job.spec_hash
    assert funded.token.balanceOf(submitter) == before - 100 * E18
    assert funded.token.balanceOf(funded.escrow) == 100 * E18
    assert funded.escrow.job_state(job_id) == STATES["Open"]
    assert funded.escrow.job_record(job_id) == job.record(STATES["Open"])
    assert funded.escrow.matches(job_id, job.as_tuple())
    assert funded.escrow.job_hash(job.as_tuple())[:31] == job.record(1)[:31]
    second, _, _ = d.post(submitter)
    assert second == 2


@pytest.mark.parametrize(
    "args, reason",
    [
        ((0, 1, b"\x11" * 32, 1), "escrow: zero payment"),
        ((1, 0, b"\x11" * 32, 1), "escrow: zero collateral"),
        ((1, 1, b"\x00" * 32, 1), "escrow: empty spec hash"),
        ((1, 1, b"\x11" * 32, 0), "escrow: bad segment count"),
        ((1, 1, b"\x11" * 32, 1_025), "escrow: bad segment count"),
    ],
)
def test_post_rejects_bad_input(funded, submitter, args, reason):
    with ape.reverts(reason):
        funded.escrow.post(*args, "u", sender=submitter)


def test_post_without_allowance_reverts(escrow, token, accounts):
    stranger = accounts[8]
    token.faucet(10 * E18, sender=stranger)
    with ape.reverts("token: allowance too low"):
        escrow.post(E18, E18, b"\x11" * 32, 1, "u", sender=stranger)


# ---------------------------------------------------------------- cancel


def test_cancel_refunds(d, funded, submitter):
    job_id, job, _ = d.post(submitter)
    before = funded.token.balanceOf(submitter)
    receipt = funded.escrow.cancel(job_id, job.as_tuple(), sender=submitter)
    assert one_event(receipt, funded.escrow.JobCancelled).job_id == job_id
    assert funded.token.balanceOf(submitter) == before + job.payment
    assert funded.escrow.job_state(job_id) == STATES["Cancelled"]
    with ape.reverts("escrow: job not open"):
        funded.escrow.cancel(job_id, job.as_tuple(), sender=submitter)


def test_cancel_reverts(d, funded, submitter, worker):
    job_id, job, _ = d.post(submitter)
    with ape.reverts("escrow: not submitter"):
        funded.escrow.cancel(job_id, job.as_tuple(), sender=worker)
    with ape.reverts("escrow: job mismatch"):
        funded.escrow.cancel(job_id, job.but(payment=1).as_tuple(), sender=submitter)
    with ape.reverts("escrow: unknown job"):
        funded.escrow.cancel(99, job.as_tuple(), sender=submitter)
    job, _ = d.claim(job_id, job, worker)
    with ape.reverts("escrow: job not open"):
        funded.escrow.cancel(job_id, job.as_tuple(), sender=submitter)


# ---------------------------------------------------------------- claim


def test_claim_locks_collateral(d, funded, submitter, worker, chain):
    job_id, job, _ = d.post(submitter, collateral=60 * E18)
    receipt = funded.escrow.claim(job_id, job.as_tuple(), sender=worker)
    ev = one_event(receipt, funded.escrow.JobClaimed)
    assert ev.worker == worker.address
    assert ev.deadline == chain.blocks.head.timestamp + PARAMS["execution_timeout"]
    assert funded.staking.locked_of(worker) == 60 * E18
    assert funded.staking.available_of(worker) == 940 * E18
    locked = one_event(receipt, funded.staking.Locked)
    assert (locked.staker, locked.amount) == (worker.address, 60 * E18)
    claimed = job.but(worker=worker.address, deadline=ev.deadline)
    assert funded.escrow.job_record(job_id) == claimed.record(STATES["Claimed"])
    with ape.reverts("escrow: job mismatch"):  # old struct no longer matches
        funded.escrow.claim(job_id, job.as_tuple(), sender=worker)
    with ape.reverts("escrow: job not open"):
        funded.escrow.claim(job_id, claimed.as_tuple(), sender=worker)


def test_claim_needs_available_stake(d, funded, submitter, submitter2):
    job_id, job, _ = d.post(submitter, collateral=2_000 * E18)
    with ape.reverts("staking: insufficient available stake"):
        funded.escrow.claim(job_id, job.as_tuple(), sender=submitter2)


# ---------------------------------------------------------------- commit


def test_commit_opens_window(d, funded, submitter, worker, chain):
    job_id, job, _ = d.post(submitter)
    job, _ = d.claim(job_id, job, worker)
    committed, receipt = d.commit(job_id, job, worker, uri="s3://bucket/run")
    ev = one_event(receipt, funded.escrow.JobCommitted)
    assert ev.worker == worker.address and ev.artifact_uri == "s3://bucket/run"
    assert (ev.result_root, ev.output_hash, ev.fingerprint) == (
        committed.result_root, committed.output_hash, committed.fingerprint
    )
    assert ev.challenge_end == chain.blocks.head.timestamp + PARAMS["challenge_window"]
    assert funded.escrow.job_record(job_id) == committed.record(STATES["Committed"])


def test_commit_reverts(d, funded, submitter, worker, worker2):
    job_id, job, _ = d.post(submitter, n=4)
    trace, out = state_hashes(4), b"\x02" * 32
    with ape.reverts("escrow: job not claimed"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, out, out, "u", sender=worker)
    job, _ = d.claim(job_id, job, worker)
    with ape.reverts("escrow: not worker"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, out, out, "u", sender=worker2)
    for wrong in ([], trace[:-1], trace + [b"\x05" * 32], state_hashes(1)):
        with ape.reverts("escrow: trace length is not N + 1"):
            funded.escrow.commit(job_id, job.as_tuple(), wrong, out, out, "u", sender=worker)
    with ape.reverts("escrow: empty output hash"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, b"\x00" * 32, out, "u", sender=worker)
    d.warp(PARAMS["execution_timeout"] + 1)
    with ape.reverts("escrow: deadline passed"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, out, out, "u", sender=worker)


def test_commit_accepts_zero_state_hashes(d, funded, submitter, worker):
    """A zero h_i is no padding (leaves are domain-hashed) and no checkpoint: accepted, and challengeable."""
    job_id, job, _ = d.post(submitter, n=3)
    job, _ = d.claim(job_id, job, worker)
    trace = [b"\x00" * 32, b"\x01" * 32, b"\x00" * 32, b"\x00" * 32]
    committed, _ = d.commit(job_id, job, worker, hashes=trace)
    assert committed.result_root == merkle_root(trace) != b"\x00" * 32
    assert funded.escrow.job_record(job_id) == committed.record(STATES["Committed"])


def test_commit_computes_the_root_of_every_vector(d, funded, submitter, worker):
    """The escrow's streamed root equals protocol/merkle.py for every shared vector with >= 2 leaves."""
    for case in VECTORS["cases"]:
        hashes = [bytes.fromhex(h[2:]) for h in case["state_hashes"]]
        if len(hashes) < 2:  # N >= 1: a one-leaf trace is no job (the harness covers the encoding)
            continue
        job_id, job, _ = d.post(submitter, n=len(hashes) - 1)
        job, _ = d.claim(job_id, job, worker)
        _, receipt = d.commit(job_id, job, worker, hashes=hashes)
        assert one_event(receipt, funded.escrow.JobCommitted).result_root == bytes.fromhex(case["root"][2:])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=1, max_value=70), salt=st.integers(min_value=0, max_value=2**32 - 1))
def test_commit_root_matches_python_for_any_n(d, funded, submitter, worker, n, salt):
    job_id, job, _ = d.post(submitter, n=n)
    job, _ = d.claim(job_id, job, worker)
    hashes = state_hashes(n, salt)
    _, receipt = d.commit(job_id, job, worker, hashes=hashes)
    assert one_event(receipt, funded.escrow.JobCommitted).result_root == merkle_root(hashes)


def test_commit_of_the_largest_trace(d, funded, submitter, worker):
    job_id, job, _ = d.post(submitter, n=1_024)
    job, _ = d.claim(job_id, job, worker)
    hashes = state_hashes(1_024, 7)
    committed, _ = d.commit(job_id, job, worker, hashes=hashes)
    assert committed.result_root == merkle_root(hashes)
    assert funded.escrow.job_record(job_id) == committed.record(STATES["Committed"])


# ---------------------------------------------------------------- finalize


def test_finalize_pays_worker_and_accrues_fee(d, funded, submitter, worker, verifier, treasury):
    job_id, job, _ = d.committed_job(submitter, worker)
    with ape.reverts("escrow: challenge window open"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=verifier)
    d.warp(PARAMS["challenge_window"])
    before = funded.token.balanceOf(worker)
    receipt = funded.escrow.finalize(job_id, job.as_tuple(), sender=verifier)
    fee = job.payment * PARAMS["fee_bps"] // 10_000
    ev = one_event(receipt, funded.escrow.JobFinalized)
    assert (ev.worker, ev.worker_payout, ev.fee) == (worker.address, job.payment - fee, fee)
    assert funded.token.balanceOf(worker) == before + job.payment - fee
    assert funded.escrow.fees_accrued() == fee
    assert funded.staking.locked_of(worker) == 0
    assert funded.staking.available_of(worker) == 1_000 * E18
    assert funded.escrow.job_state(job_id) == STATES["Finalized"]
    with ape.reverts("escrow: job not committed"):
        funded.escrow.finalize(job_id, job.as_tuple(), sender=verifier)
    # the treasury withdraws accrued fees; nobody else can
    with ape.reverts("escrow: not treasury"):
        funded.escrow.withdraw_fees(sender=worker)
    receipt = funded.escrow.withdraw_fees(sender=treasury)
    assert one_event(receipt, funded.escrow.FeesWithdrawn).amount == fee
    assert funded.token.balanceOf(treasury) == fee
    assert funded.token.balanceOf(funded.escrow) == 0
    assert funded.escrow.fees_accrued() == 0  # the counter's sentinel is never reported
    with ape.reverts("escrow: no fees"):
        funded.escrow.withdraw_fees(sender=treasury)


# ---------------------------------------------------------------- expire


def test_expire_refunds_and_compensates(d, funded, submitter, worker, verifier):
    job_id, job, _ = d.post(submitter, payment=100 * E18, collateral=50 * E18)
    job, _ = d.claim(job_id, job, worker)
    with ape.reverts("escrow: deadline not passed"):
        funded.escrow.expire(job_id, job.as_tuple(), sender=verifier)
    d.warp(PARAMS["execution_timeout"] + 1)
    before = funded.token.balanceOf(submitter)
    receipt = funded.escrow.expire(job_id, job.as_tuple(), sender=verifier)
    compensation = 50 * E18 * PARAMS["expiry_compensation_bps"] // 10_000
    assert one_event(receipt, funded.escrow.JobExpired).compensation == compensation
    assert funded.token.balanceOf(submitter) == before + 100 * E18 + compensation
    assert funded.staking.locked_of(worker) == 0
    assert funded.staking.staked_of(worker) == 1_000 * E18 - compensation
    assert funded.token.balanceOf(funded.escrow) == 0
    assert funded.escrow.job_state(job_id) == STATES["Expired"]
    with ape.reverts("escrow: job not claimed"):
        funded.escrow.expire(job_id, job.as_tuple(), sender=verifier)


# ---------------------------------------------------------------- disputes-only entry points


def test_disputes_only_functions(d, funded, submitter, worker):
    job_id, job, _ = d.committed_job(submitter, worker)
    with ape.reverts("escrow: not disputes"):
        funded.escrow.mark_challenged(job_id, job.as_tuple(), sender=submitter)
    with ape.reverts("escrow: not disputes"):
        funded.escrow.settle(job_id, job.as_tuple(), True, sender=worker)


def test_views_of_unknown_job(escrow):
    assert escrow.job_state(5) == 0
    assert escrow.job_record(5) == b"\x00" * 32
