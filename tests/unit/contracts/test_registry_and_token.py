"""ModelRegistry provenance records and DevToken; tokens without a bool, fee-on-transfer and blocklists."""

from __future__ import annotations

import ape
import pytest

from tests.unit.contracts.helpers import E18, ENV_CLASS, PARAMS, STATES, Job, JobDriver, deploy_all, one_event

NO_JOB = Job(submitter="0x" + "00" * 20).as_tuple()
H = [bytes([i]) * 32 for i in range(1, 12)]


@pytest.fixture
def d(funded, chain):
    return JobDriver(funded, chain)


def test_declared_attestation_and_views(registry, submitter, chain):
    receipt = registry.register(H[0], [], [H[5]], H[6], 0, NO_JOB, "ipfs://card", "MIT", sender=submitter)
    ev = one_event(receipt, registry.ModelRegistered)
    assert (ev.model_hash, ev.attester, ev.attestation_id, ev.job_id, ev.status, ev.metadata_uri, ev.license) == (
        H[0], submitter.address, 1, 0, 1, "ipfs://card", "MIT"
    )
    assert registry.exists(H[0]) and registry.status_of(H[0]) == 1
    assert not registry.is_job_verified(H[0])
    assert registry.attestations_of_count(H[0]) == 1 and registry.attestation_id_of(H[0], 0) == 1
    rec = registry.attestation(1)
    assert (rec.attester, rec.spec_hash, rec.block_number, rec.license, rec.status) == (
        submitter.address, H[6], receipt.block_number, "MIT", 1
    )
    assert list(registry.attestation_datasets(1)) == [H[5]]
    assert registry.declared_by(H[0], submitter) == 1
    assert registry.model_count() == 1
    assert not registry.exists(H[1]) and registry.status_of(H[1]) == 0


def test_parents_and_rejections(registry, submitter, worker):
    registry.register(H[0], [], [], H[6], 0, NO_JOB, "", "MIT", sender=submitter)
    registry.register(H[1], [(H[0], 0)], [], H[6], 0, NO_JOB, "", "MIT", sender=worker)
    parents = registry.parents_of(H[1])
    assert [(p.model_hash, p.relation) for p in parents] == [(H[0], 0)]
    with ape.reverts("registry: already declared by this attester"):
        registry.register(H[1], [], [], H[6], 0, NO_JOB, "", "", sender=worker)
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


def test_job_verified_attestation(d, funded, registry, submitter, worker, submitter2):
    out = b"\x22" * 32  # JobDriver.commit's default output hash
    job_id, job, _ = d.committed_job(submitter, worker, spec=H[6])
    with ape.reverts("registry: job not finalized"):
        registry.register(out, [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter)
    d.warp_to(job.challenge_end)
    funded.escrow.finalize(job_id, job.as_tuple(), sender=worker)
    with ape.reverts("registry: job mismatch"):
        registry.register(out, [], [], H[6], job_id, job.but(payment=1).as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: output hash differs"):
        registry.register(H[9], [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: spec hash differs"):
        registry.register(out, [], [], H[7], job_id, job.as_tuple(), "", "", sender=submitter)
    with ape.reverts("registry: not job submitter"):
        registry.register(out, [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter2)
    receipt = registry.register(out, [], [], H[6], job_id, job.as_tuple(), "card", "Apache-2.0", sender=submitter)
    ev = one_event(receipt, registry.ModelRegistered)
    assert (ev.status, ev.job_submitter, ev.job_worker) == (2, submitter.address, worker.address)
    assert registry.is_job_verified(out) and registry.status_of(out) == 2
    rec = registry.attestation(registry.attestation_of_job(job_id))
    assert (rec.attester, rec.job_id, rec.job_submitter, rec.job_worker, rec.metadata_uri) == (
        submitter.address, job_id, submitter.address, worker.address, "card")
    with ape.reverts("registry: job already attested"):
        registry.register(out, [], [], H[6], job_id, job.as_tuple(), "", "", sender=submitter)


def test_f04_a_self_dealt_job_cannot_overwrite_the_owners_record(d, funded, registry, submitter, worker, submitter2):
    """F-04: the owner declares model M; an attacker self-deals a job whose output is M and registers it.
    The owner's attestation stays exactly as it was; the attacker's is a second attestation that shows
    its own submitter and worker, so a reader sees who vouches for what."""
    model = b"\x22" * 32
    owner = registry.register(model, [], [], H[6], 0, NO_JOB, "ipfs://owner-card", "Apache-2.0", sender=submitter)
    owner_id = one_event(owner, registry.ModelRegistered).attestation_id
    funded.token.faucet(1_000 * E18, sender=submitter2)
    funded.token.approve(funded.escrow, 2**256 - 1, sender=submitter2)
    job_id, job, _ = d.committed_job(submitter2, worker, spec=H[6])
    d.warp_to(job.challenge_end)
    funded.escrow.finalize(job_id, job.as_tuple(), sender=worker)
    registry.register(model, [], [], H[6], job_id, job.as_tuple(), "ipfs://attacker-card", "PROPRIETARY",
                      sender=submitter2)
    first = registry.attestation(owner_id)
    assert (first.attester, first.metadata_uri, first.license, first.status) == (
        submitter.address, "ipfs://owner-card", "Apache-2.0", 1)
    assert registry.attestations_of_count(model) == 2
    second = registry.attestation(registry.attestation_id_of(model, 1))
    assert (second.attester, second.job_submitter, second.job_worker) == (
        submitter2.address, submitter2.address, worker.address)
    assert registry.declared_by(model, submitter) == owner_id


def test_f13_a_front_run_declaration_does_not_lock_out_the_owner(registry, submitter, submitter2):
    """F-13: a squatter copies the owner's registration first; the owner still declares its own."""
    registry.register(H[0], [], [], H[6], 0, NO_JOB, "ipfs://copied", "MIT", sender=submitter2)
    receipt = registry.register(H[0], [], [], H[6], 0, NO_JOB, "ipfs://owner", "MIT", sender=submitter)
    assert one_event(receipt, registry.ModelRegistered).attester == submitter.address
    assert registry.attestation(registry.declared_by(H[0], submitter)).metadata_uri == "ipfs://owner"
    assert registry.model_count() == 1


def test_f14_lineage_cannot_become_a_cycle(registry, submitter, worker):
    """F-14: register A, then B with parent A; a later attestation of A naming B as its parent would
    close a cycle, and is refused: parents must be older than the model."""
    registry.register(H[0], [], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    registry.register(H[1], [(H[0], 0)], [], H[6], 0, NO_JOB, "", "", sender=submitter)
    with ape.reverts("registry: parent registered after the model"):
        registry.register(H[0], [(H[1], 0)], [], H[6], 0, NO_JOB, "", "", sender=worker)
    registry.register(H[1], [(H[0], 4)], [], H[6], 0, NO_JOB, "", "", sender=worker)  # older parents are fine


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
    drv.warp_to(job.challenge_end)
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
        s.escrow.post(E18, E18, H[0], 1, ENV_CLASS, 1, "", sender=submitter)


def test_token_returning_false_rejected(project, deployer, arbiter, treasury, worker):
    falsy = deployer.deploy(project.FalseToken)
    s = deploy_all(project, deployer, arbiter, treasury, token=falsy)
    with ape.reverts("safe_token: transferFrom failed"):
        s.staking.stake(E18, sender=worker)


def test_f19_a_blocked_submitter_or_treasury_cannot_make_a_ruling_revert(project, deployer, arbiter, treasury,
                                                                        submitter, worker, verifier, chain):
    """F-19: with a blocklist token (USDC-like) the submitter and the treasury are blocked after the job
    is posted. The worker-wrong verdict still lands (everything it pays is a credit), the worker is slashed,
    the challenger can withdraw its reward; only the blocked parties' own withdrawals fail."""
    listed = deployer.deploy(project.BlocklistToken)
    s = deploy_all(project, deployer, arbiter, treasury, token=listed)
    for who in (submitter, worker, verifier):
        listed.mint(who, 1_000 * E18, sender=deployer)
        listed.approve(s.staking, 2**256 - 1, sender=who)
        listed.approve(s.escrow, 2**256 - 1, sender=who)
    s.staking.stake(100 * E18, sender=worker)
    s.staking.stake(100 * E18, sender=verifier)
    drv = JobDriver(s, chain)
    job_id, job, hashes = drv.committed_job(submitter, worker)
    dispute_id, _ = drv.challenge(job_id, job, verifier, hashes, 1)
    listed.set_blocked(submitter, True, sender=deployer)
    listed.set_blocked(treasury, True, sender=deployer)
    s.disputes.verdict(dispute_id, job.as_tuple(), True, b"\x77" * 32, "file:///e", sender=arbiter)
    assert s.escrow.job_state(job_id) == STATES["Rejected"]
    reward = job.collateral * PARAMS["challenger_reward_bps"] // 10_000
    before = listed.balanceOf(verifier)
    s.disputes.withdraw(sender=verifier)
    assert listed.balanceOf(verifier) == before + reward
    with ape.reverts("blocklist token: blocked"):
        s.escrow.withdraw(sender=submitter)  # the refund waits, credited, until the submitter is unblocked
    assert s.escrow.owed(submitter) == job.payment
    listed.set_blocked(submitter, False, sender=deployer)
    s.escrow.withdraw(sender=submitter)
    assert s.escrow.owed(submitter) == 0
