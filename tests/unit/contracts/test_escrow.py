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
    ENV_CLASS,
    PARAMS,
    REPLAY_FACTOR,
    SEGMENT_SECONDS,
    STATES,
    ZERO32,
    ZERO_ADDRESS,
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
    assert escrow.max_segment_seconds() == PARAMS["max_segment_seconds"]
    assert escrow.expiry_compensation_bps() == PARAMS["expiry_compensation_bps"]
    assert escrow.deployer() == deployer.address
    assert escrow.job_count() == 0
    assert escrow.MAX_SEGMENTS() == 1_024
    assert escrow.challenge_window_of(7) == PARAMS["challenge_window"] + REPLAY_FACTOR * 7
    assert escrow.max_challenge_window() == PARAMS["challenge_window"] + REPLAY_FACTOR * PARAMS["max_segment_seconds"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"fee_bps": 1_001}, "escrow: fee too high"),
        ({"execution_timeout": 0}, "escrow: bad execution timeout"),
        ({"challenge_window": 0}, "escrow: bad challenge window"),
        ({"challenge_window": 31 * 86_400}, "escrow: bad challenge window"),
        ({"expiry_compensation_bps": 10_001}, "escrow: compensation above 100%"),
        ({"expiry_compensation_bps": 0}, "escrow: expiry compensation below the minimum"),
        ({"expiry_compensation_bps": 499}, "escrow: expiry compensation below the minimum"),
        ({"max_segment_seconds": 0}, "escrow: zero max segment seconds"),
        ({"max_segment_seconds": 10 * 86_400}, "escrow: segment seconds too large for the windows"),
    ],
)
def test_constructor_bounds(project, deployer, treasury, token, staking, change, reason):
    p = {**PARAMS, **change}
    with ape.reverts(reason):
        deployer.deploy(
            project.JobEscrow, token, staking, treasury, p["fee_bps"], p["execution_timeout"],
            p["challenge_window"], p["max_segment_seconds"], p["expiry_compensation_bps"],
        )  # fmt: skip


def test_constructor_rejects_zero_treasury_and_foreign_staking(project, deployer, token, staking):
    zero = "0x" + "00" * 20
    with ape.reverts("escrow: zero treasury"):
        deployer.deploy(project.JobEscrow, token, staking, zero, 0, 1, 1, 1, 500)
    other = deployer.deploy(project.DevToken, "Other", "OTH")
    with ape.reverts("escrow: staking uses another token"):
        deployer.deploy(project.JobEscrow, other, staking, deployer, 0, 1, 1, 1, 500)
    with ape.reverts("escrow: token has no code"):
        deployer.deploy(project.JobEscrow, deployer, staking, deployer, 0, 1, 1, 1, 500)


def test_wire_once_by_deployer_only(project, deployer, arbiter, treasury, submitter):
    s = deploy_all(project, deployer, arbiter, treasury)
    assert s.escrow.disputes() == s.disputes.address
    assert s.escrow.arbiter() == arbiter.address
    with ape.reverts("escrow: not deployer"):
        s.escrow.wire(s.disputes, sender=submitter)
    with ape.reverts("escrow: already wired"):
        s.escrow.wire(s.disputes, sender=deployer)


def _escrow(project, deployer, token, staking, treasury):
    p = PARAMS
    return deployer.deploy(project.JobEscrow, token, staking, treasury, 0, p["execution_timeout"],
                           p["challenge_window"], p["max_segment_seconds"], 500)


def _disputes(project, deployer, escrow, staking, token, treasury, arbiter):
    p = PARAMS
    return deployer.deploy(project.Disputes, escrow, staking, token, treasury, arbiter, p["arbiter_window"],
                           p["reveal_window"], p["challenge_bond"], 0, 0, ZERO_ADDRESS, ZERO32)


def test_wire_rejects_foreign_disputes(project, deployer, arbiter, treasury):
    a = deploy_all(project, deployer, arbiter, treasury)
    token = a.token
    staking = deployer.deploy(project.Staking, token, PARAMS["unbonding_delay"])
    escrow = _escrow(project, deployer, token, staking, treasury)
    with ape.reverts("escrow: disputes uses another escrow"):
        escrow.wire(a.disputes, sender=deployer)
    with ape.reverts("escrow: disputes has no code"):
        escrow.wire(arbiter, sender=deployer)


def test_wire_cross_checks_staking(project, deployer, arbiter, treasury):
    """Audit F-16: a disputes contract the staking contract was not wired to could settle but never
    slash (every worker-wrong verdict would revert and the cheat would win by timeout): refused."""
    token = deployer.deploy(project.DevToken, "Tessera Dev", "TDEV")
    staking = deployer.deploy(project.Staking, token, PARAMS["unbonding_delay"])
    escrow = _escrow(project, deployer, token, staking, treasury)
    first = _disputes(project, deployer, escrow, staking, token, treasury, arbiter)
    second = _disputes(project, deployer, escrow, staking, token, treasury, arbiter)
    with ape.reverts("escrow: staking wired to another escrow"):  # staking not wired yet
        escrow.wire(first, sender=deployer)
    staking.wire(escrow, first, sender=deployer)
    with ape.reverts("escrow: staking wired to another disputes"):
        escrow.wire(second, sender=deployer)
    escrow.wire(first, sender=deployer)
    assert escrow.disputes() == first.address


# ---------------------------------------------------------------- environment classes


def test_only_the_arbiter_publishes_and_retires_classes(funded, arbiter, submitter, deployer):
    other = b"\x44" * 32
    with ape.reverts("escrow: not arbiter"):
        funded.escrow.publish_env_class(other, "u", sender=deployer)
    receipt = funded.escrow.publish_env_class(other, "https://arbiter/env/44.json", sender=arbiter)
    ev = one_event(receipt, funded.escrow.EnvClassPublished)
    assert (ev.env_class, ev.descriptor_uri) == (other, "https://arbiter/env/44.json")
    assert funded.escrow.env_class_open(other)
    with ape.reverts("escrow: environment class already open"):
        funded.escrow.publish_env_class(other, "u", sender=arbiter)
    with ape.reverts("escrow: empty environment class"):
        funded.escrow.publish_env_class(b"\x00" * 32, "u", sender=arbiter)
    with ape.reverts("escrow: not arbiter"):
        funded.escrow.retire_env_class(other, sender=submitter)
    assert one_event(funded.escrow.retire_env_class(other, sender=arbiter), funded.escrow.EnvClassRetired).env_class == other
    assert not funded.escrow.env_class_open(other)
    with ape.reverts("escrow: environment class not open"):
        funded.escrow.retire_env_class(other, sender=arbiter)


def test_post_rejects_a_class_no_arbiter_reproduces(d, funded, submitter, arbiter):
    """Audit F-03: the environment is the job's term, and only a class the arbiter published can be
    posted, so no job exists that the arbiter could not judge."""
    with ape.reverts("escrow: environment class not open"):
        d.post(submitter, env_class=b"\x66" * 32)
    funded.escrow.publish_env_class(b"\x66" * 32, "u", sender=arbiter)
    job_id, _, _ = d.post(submitter, env_class=b"\x66" * 32)
    funded.escrow.retire_env_class(b"\x66" * 32, sender=arbiter)
    with ape.reverts("escrow: environment class not open"):
        d.post(submitter, env_class=b"\x66" * 32)
    assert funded.escrow.job_state(job_id) == STATES["Open"]  # a posted job keeps its class


# ---------------------------------------------------------------- post


def test_post_pulls_payment_and_emits(d, funded, submitter):
    before = funded.token.balanceOf(submitter)
    job_id, job, receipt = d.post(submitter, payment=100 * E18, collateral=50 * E18, n=7, uri="https://x/spec.json")
    assert job_id == 1 and funded.escrow.job_count() == 1
    ev = one_event(receipt, funded.escrow.JobPosted)
    assert (ev.submitter, ev.payment, ev.collateral, ev.num_segments, ev.spec_uri) == (
        submitter.address, 100 * E18, 50 * E18, 7, "https://x/spec.json"
    )
    assert (ev.env_class, ev.segment_seconds) == (ENV_CLASS, SEGMENT_SECONDS)
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
        ((0, 5, b"\x11" * 32, 1, ENV_CLASS, 1), "escrow: zero payment"),
        ((1, 0, b"\x11" * 32, 1, ENV_CLASS, 1), "escrow: collateral too small"),
        # 4 units at 20 % compensate 0: squatting a claim would be free (audit F-10)
        ((1, 4, b"\x11" * 32, 1, ENV_CLASS, 1), "escrow: collateral too small"),
        ((1, 5, b"\x00" * 32, 1, ENV_CLASS, 1), "escrow: empty spec hash"),
        ((1, 5, b"\x11" * 32, 0, ENV_CLASS, 1), "escrow: bad segment count"),
        ((1, 5, b"\x11" * 32, 1_025, ENV_CLASS, 1), "escrow: bad segment count"),
        ((1, 5, b"\x11" * 32, 1, b"\x00" * 32, 1), "escrow: environment class not open"),
        ((1, 5, b"\x11" * 32, 1, ENV_CLASS, 0), "escrow: bad segment seconds"),
        ((1, 5, b"\x11" * 32, 1, ENV_CLASS, PARAMS["max_segment_seconds"] + 1), "escrow: bad segment seconds"),
    ],
)
def test_post_rejects_bad_input(funded, submitter, args, reason):
    with ape.reverts(reason):
        funded.escrow.post(*args, "u", sender=submitter)


def test_post_without_allowance_reverts(escrow, token, accounts):
    stranger = accounts[8]
    token.faucet(10 * E18, sender=stranger)
    with ape.reverts("token: allowance too low"):
        escrow.post(E18, E18, b"\x11" * 32, 1, ENV_CLASS, 1, "u", sender=stranger)


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


def test_commit_opens_a_window_sized_to_the_job(d, funded, submitter, worker, chain):
    job_id, job, _ = d.post(submitter, segment_seconds=40)
    job, _ = d.claim(job_id, job, worker)
    hashes = state_hashes(job.num_segments, 3)
    committed, receipt = d.commit(job_id, job, worker, hashes=hashes, uri="s3://bucket/run")
    ev = one_event(receipt, funded.escrow.JobCommitted)
    assert ev.worker == worker.address and ev.artifact_uri == "s3://bucket/run"
    assert (ev.result_root, ev.output_hash) == (committed.result_root, committed.output_hash)
    assert list(ev.state_hashes) == hashes  # the trace is in the log, however the commit was sent
    assert ev.challenge_end == chain.blocks.head.timestamp + PARAMS["challenge_window"] + REPLAY_FACTOR * 40
    assert funded.escrow.job_record(job_id) == committed.record(STATES["Committed"])


def test_commit_outside_the_jobs_environment_class_reverts(d, funded, submitter, worker, arbiter):
    """Audit F-03: a worker cannot name an environment of its own choosing, even one the arbiter
    also reproduces; only the job's class commits."""
    funded.escrow.publish_env_class(b"\x77" * 32, "u", sender=arbiter)
    job_id, job, _ = d.post(submitter)
    job, _ = d.claim(job_id, job, worker)
    for foreign in (b"\x77" * 32, b"\x33" * 32, b"\x00" * 32):
        with ape.reverts("escrow: environment outside the job's class"):
            d.commit(job_id, job, worker, env_class=foreign)
    d.commit(job_id, job, worker)
    assert funded.escrow.job_state(job_id) == STATES["Committed"]


def test_commit_reverts(d, funded, submitter, worker, worker2):
    job_id, job, _ = d.post(submitter, n=4)
    trace, out = state_hashes(4), b"\x02" * 32
    with ape.reverts("escrow: job not claimed"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, out, ENV_CLASS, "u", sender=worker)
    job, _ = d.claim(job_id, job, worker)
    with ape.reverts("escrow: not worker"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, out, ENV_CLASS, "u", sender=worker2)
    for wrong in ([], trace[:-1], trace + [b"\x05" * 32], state_hashes(1)):
        with ape.reverts("escrow: trace length is not N + 1"):
            funded.escrow.commit(job_id, job.as_tuple(), wrong, out, ENV_CLASS, "u", sender=worker)
    with ape.reverts("escrow: empty output hash"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, b"\x00" * 32, ENV_CLASS, "u", sender=worker)
    d.warp(PARAMS["execution_timeout"] + 1)
    with ape.reverts("escrow: deadline passed"):
        funded.escrow.commit(job_id, job.as_tuple(), trace, out, ENV_CLASS, "u", sender=worker)


def test_commit_refuses_a_zero_state_hash(d, funded, submitter, worker):
    """No checkpoint hashes to zero, and a zero h_i would keep a refereed SEGMENT claim from opening its
    game (Bisection refuses a zero commitment): refused wherever it stands, and the job stays Claimed."""
    job_id, job, _ = d.post(submitter, n=3)
    job, _ = d.claim(job_id, job, worker)
    for at in (0, 2, 3):
        trace = [bytes([i + 1]) * 32 for i in range(4)]
        trace[at] = b"\x00" * 32
        with ape.reverts("escrow: zero state hash"):
            funded.escrow.commit(job_id, job.as_tuple(), trace, b"\x07" * 32, ENV_CLASS, "u", sender=worker)
    assert funded.escrow.job_record(job_id) == job.record(STATES["Claimed"])


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
    with ape.reverts("escrow: challenge window open"):  # the window grows with the job's segment cost
        funded.escrow.finalize(job_id, job.as_tuple(), sender=verifier)
    d.warp(REPLAY_FACTOR * SEGMENT_SECONDS)
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


def test_expire_credits_refund_and_compensation(d, funded, submitter, worker, verifier):
    job_id, job, _ = d.post(submitter, payment=100 * E18, collateral=50 * E18)
    job, _ = d.claim(job_id, job, worker)
    with ape.reverts("escrow: deadline not passed"):
        funded.escrow.expire(job_id, job.as_tuple(), sender=verifier)
    d.warp(PARAMS["execution_timeout"] + 1)
    before = funded.token.balanceOf(submitter)
    receipt = funded.escrow.expire(job_id, job.as_tuple(), sender=verifier)
    compensation = 50 * E18 * PARAMS["expiry_compensation_bps"] // 10_000
    assert one_event(receipt, funded.escrow.JobExpired).compensation == compensation
    assert funded.escrow.owed(submitter) == 100 * E18 + compensation  # pulled, never pushed
    assert funded.token.balanceOf(submitter) == before
    assert funded.staking.locked_of(worker) == 0
    assert funded.staking.staked_of(worker) == 1_000 * E18 - compensation
    assert funded.escrow.job_state(job_id) == STATES["Expired"]
    with ape.reverts("escrow: job not claimed"):
        funded.escrow.expire(job_id, job.as_tuple(), sender=verifier)
    with ape.reverts("escrow: nothing owed"):
        funded.escrow.withdraw(sender=verifier)
    receipt = funded.escrow.withdraw(sender=submitter)
    assert one_event(receipt, funded.escrow.Withdrawn).amount == 100 * E18 + compensation
    assert funded.token.balanceOf(submitter) == before + 100 * E18 + compensation
    assert funded.token.balanceOf(funded.escrow) == 0 and funded.escrow.owed(submitter) == 0
    with ape.reverts("escrow: nothing owed"):
        funded.escrow.withdraw(sender=submitter)


# ---------------------------------------------------------------- disputes-only entry points


def test_disputes_only_functions(d, funded, submitter, worker):
    job_id, job, _ = d.committed_job(submitter, worker)
    with ape.reverts("escrow: not disputes"):
        funded.escrow.mark_challenged(job_id, job.as_tuple(), sender=submitter)
    for outcome in (0, 1, 2):
        with ape.reverts("escrow: not disputes"):
            funded.escrow.settle(job_id, job.as_tuple(), outcome, sender=worker)


def test_views_of_unknown_job(escrow):
    assert escrow.job_state(5) == 0
    assert escrow.job_record(5) == b"\x00" * 32
