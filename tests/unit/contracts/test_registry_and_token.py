"""ModelRegistry provenance records and DevToken; tokens without a bool and fee-on-transfer."""

from __future__ import annotations

import ape
import pytest

from tests.unit.contracts.helpers import E18, PARAMS, Job, JobDriver, deploy_all, one_event

NO_JOB = Job(submitter="0x" + "00" * 20).as_tuple()
H = [bytes([i]) * 32 for i in range(1, 12)]


@pytest.fixture
def d(funded, chain):
    return JobDriver(funded, chain)


def test_declared_record_and_views(registry, submitter, chain):
    receipt = registry.register(H[0], [], [H[5]], H[6], 0, NO_JOB, "ipfs://card", "MIT", sender=submitter)
    ev = one_event(receipt, registry.ModelRegistered)
    assert (ev.model_hash, ev.creator, ev.job_id, ev.status, ev.metadata_uri, ev.license) == (
        H[0], submitter.address, 0, 1, "ipfs://card", "MIT"
    )
    assert registry.exists(H[0]) and registry.status_of(H[0]) == 1
    assert not registry.is_job_verified(H[0])
    rec = registry.record_of(H[0])
    assert (rec.creator, rec.spec_hash, rec.block_number, rec.license) == (
        submitter.address, H[6], receipt.block_number, "MIT"
    )
    assert list(registry.datasets_of(H[0])) == [H[5]]
    assert registry.model_count() == 1
    assert not registry.exists(H[1]) and registry.status_of(H[1]) == 0


def test_parents_and_rejections(registry, submitter, worker):
    registry.register(H[0], [], [], H[6], 0, NO_JOB, "", "MIT", sender=submitter)
    registry.register(H[1], [(H[0], 0)], [], H[6], 0, NO_JOB, "", "MIT", sender=worker)
    parents = registry.parents_of(H[1])
    assert [(p.model_hash, p.relation) for p in parents] == [(H[0], 0)]
    with ape.reverts("registry: already registered"):
        registry.register(H[1], [], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    with ape.reverts("registry: empty model hash"):
        registry.register(b"\x00" * 32, [], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    with ape.reverts("registry: bad relation"):
        registry.register(H[2], [(H[0], 6)], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    with ape.reverts("registry: unknown parent"):
        registry.register(H[2], [(H[3], 1)], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    with ape.reverts("registry: model is its own parent"):
        registry.register(H[2], [(H[2], 1)], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    with ape.reverts("registry: duplicate parent"):
        registry.register(H[2], [(H[0], 1), (H[1], 2), (H[0], 3)], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    registry.register(H[2], [(H[0], 2), (H[1], 2)], [], H[6], 0, NO_JOB, "", "", sender=submitter)


def test_job_verified_record(d, funded, registry, submitter, worker, submitter2):
    out = b"\x22" * 32  # JobDriver.commit's default output hash
    job_id, job, _ = d.committed_job(submitter, worker, spec=H[6])
    with ape.reverts("registry: job not finalized"):
        registry.register(out, [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter)
    d.warp(PARAMS["challenge_window"])
    funded.escrow.finalize(job_id, job.as_tuple(), sender=worker)
    with ape.reverts("registry: job mismatch"):
        registry.register(out, [], [], H[6], job_id, job.but(payment=1).as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: output hash differs"):
        registry.register(H[9], [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: spec hash differs"):
        registry.register(out, [], [], H[7], job_id, job.as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: not job submitter"):
        registry.register(out, [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter2)
    # a squatter's Declared record is superseded by the chain-proven one, exactly once
    registry.register(out, [], [], H[6], 0, NO_JOB, "squat", "", sender=submitter2)
    receipt = registry.register(out, [], [], H[6], job_id, job.as_tuple(), "card", "Apache-2.0", sender=submitter)
    assert one_event(receipt, registry.ModelRegistered).status == 2
    assert registry.is_job_verified(out) and registry.status_of(out) == 2
    rec = registry.record_of(out)
    assert (rec.creator, rec.job_id, rec.metadata_uri) == (submitter.address, job_id, "card")
    assert registry.model_count() == 1
    with ape.reverts("registry: already registered"):
        registry.register(out, [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: already registered"):
        registry.register(out, [], [], H[6], 0, NO_JOB, "", "", sender=submitter)


def test_devtoken(token, submitter, worker):
    assert (token.name(), token.symbol(), token.decimals()) == ("Tessera Dev", "TDEV", 18)
    supply = token.totalSupply()
    receipt = token.faucet(5 * E18, sender=submitter)
    ev = one_event(receipt, token.Transfer)
    assert (ev.receiver, ev.value) == (submitter.address, 5 * E18)
    assert token.totalSupply() == supply + 5 * E18
    with ape.reverts("token: above faucet cap"):
        token.faucet(token.FAUCET_CAP() + 1, sender=submitter)
    with ape.reverts("token: balance too low"):
        token.transfer(worker, token.balanceOf(submitter) + 1, sender=submitter)
    with ape.reverts("token: transfer to zero address"):
        token.transfer("0x" + "00" * 20, 1, sender=submitter)
    one_event(token.approve(worker, 2 * E18, sender=submitter), token.Approval)
    with ape.reverts("token: allowance too low"):
        token.transferFrom(submitter, worker, 3 * E18, sender=worker)
    worker_before = token.balanceOf(worker)
    token.transferFrom(submitter, worker, 2 * E18, sender=worker)
    assert token.balanceOf(worker) == worker_before + 2 * E18 and token.allowance(submitter, worker) == 0


def test_protocol_runs_on_a_token_without_bool(project, deployer, arbiter, treasury, submitter, worker, chain):
    nobool = deployer.deploy(project.NoBoolToken, 0)
    s = deploy_all(project, deployer, arbiter, treasury, token=nobool)
    for who in (submitter, worker):
        nobool.mint(who, 1_000 * E18, sender=deployer)
        nobool.approve(s.staking, 2**256 - 1, sender=who)
        nobool.approve(s.escrow, 2**256 - 1, sender=who)
    s.staking.stake(100 * E18, sender=worker)
    drv = JobDriver(s, chain)
    job_id, job, _ = drv.committed_job(submitter, worker)
    drv.warp(PARAMS["challenge_window"])
    s.escrow.finalize(job_id, job.as_tuple(), sender=worker)
    fee = job.payment * PARAMS["fee_bps"] // 10_000
    assert nobool.balanceOf(worker) == 900 * E18 + job.payment - fee
    assert nobool.balanceOf(s.escrow) == fee


def test_fee_on_transfer_token_rejected(project, deployer, arbiter, treasury, worker, submitter):
    lossy = deployer.deploy(project.NoBoolToken, 100)
    s = deploy_all(project, deployer, arbiter, treasury, token=lossy)
    lossy.mint(worker, 1_000 * E18, sender=deployer)
    lossy.approve(s.staking, 2**256 - 1, sender=worker)
    with ape.reverts("safe_token: fee-on-transfer token"):
        s.staking.stake(100 * E18, sender=worker)
    lossy.mint(submitter, 1_000 * E18, sender=deployer)
    lossy.approve(s.escrow, 2**256 - 1, sender=submitter)
    with ape.reverts("safe_token: fee-on-transfer token"):
        s.escrow.post(E18, E18, H[0], 1, "", sender=submitter)


def test_token_returning_false_rejected(project, deployer, arbiter, treasury, worker):
    falsy = deployer.deploy(project.FalseToken)
    s = deploy_all(project, deployer, arbiter, treasury, token=falsy)
    with ape.reverts("safe_token: transferFrom failed"):
        s.staking.stake(E18, sender=worker)
