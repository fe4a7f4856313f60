"""A reorg that moves the worker's claim must not cost an honest worker its job (issue 16, first case).

`anvil_reorg` replaces the blocks holding the worker's claim and commit; the worker's own signed claim
is handed back to the node and lands in a later block (what peers do with the transactions of orphaned
blocks), so the job's deadline, and with it the job's struct, changes. The pending commit built against
the old struct must be rebuilt against the new one (before v2's fix it was judged "not needed" and
dropped, and the job expired with the worker's collateral slashed).
"""

from __future__ import annotations

import pytest

from protocol.events import JobState
from worker.testing import DaemonProcess
from worker.testing_chain import TOKEN, no_nonce_gap, reorg_from, signed_claim, start_devnet, tiny_spec, wait_until

pytestmark = pytest.mark.e2e


def fund_worker_and_rival(devnet, submitter, worker, worker2):
    """Clients of the submitter (funded) and of two staked workers: ours and a rival."""
    sub, wk, rival = devnet.client(submitter), devnet.client(worker), devnet.client(worker2)
    sub.faucet(100 * TOKEN)
    for client in (wk, rival):
        client.faucet(100 * TOKEN)
        client.stake(50 * TOKEN)
    return sub, wk, rival


def test_a_claim_moved_by_a_reorg_is_committed_again_and_paid(tmp_path_factory, tmp_path, deployer, submitter,
                                                              worker):
    devnet = start_devnet(tmp_path_factory.mktemp("reorg-devnet"), deployer)
    try:
        w3 = devnet.w3
        sub, wk = devnet.client(submitter), devnet.client(worker)
        sub.faucet(100 * TOKEN)
        wk.faucet(100 * TOKEN)
        wk.stake(50 * TOKEN)
        staked = wk.stake_info().staked
        balance = wk.token_balance()
        config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                      confirmations=1)
        with DaemonProcess("worker", config, tmp_path / "worker.log") as proc:
            job_id = devnet.post(submitter, tiny_spec(seed=61))
            wait_until(lambda: sub.job_state(job_id) == JobState.COMMITTED, 90,
                       what=f"the first commit; log:\n{proc.log_text()[-3000:]}")
            first = sub.job(job_id)
            claim = next(e for e in first.events if e.name == "JobClaimed")
            raw_claim = w3.eth.get_raw_transaction(claim.tx_hash)
            depth = w3.eth.block_number - claim.block_number + 1
            # replace every block from the claim on; the worker's own claim comes back one block later
            reply = w3.provider.make_request("anvil_reorg", [depth, [["0x" + bytes(raw_claim).hex(), 1]]])
            assert "error" not in reply, reply
            wait_until(lambda: sub.job_state(job_id) in (JobState.CLAIMED, JobState.COMMITTED), 30,
                       what="the re-included claim")
            moved = sub.job(job_id)
            assert moved.job.deadline != first.job.deadline  # a new claim block: a new struct
            devnet.finalize_soon([job_id], timeout=60)
            wait_until(lambda: sub.job_state(job_id) == JobState.FINALIZED, 120,
                       what=f"the job finalized after the reorg; log:\n{proc.log_text()[-4000:]}")
            log = proc.log_text()
            assert proc.terminate() == 0
        final = sub.job(job_id)
        assert final.job.worker == worker.address and final.job.deadline == moved.job.deadline
        assert "commit_rebuilt" in log or "reclaim" in log or len([e for e in final.events
                                                                   if e.name == "JobCommitted"]) == 1
        assert wk.stake_info().staked == staked and wk.stake_info().locked == 0  # never slashed
        paid = next(e for e in final.events if e.name == "JobFinalized").worker_payout
        assert wk.token_balance() - balance == paid
        # no nonce gap: every nonce the worker used is a mined transaction
        assert w3.eth.get_transaction_count(worker.address, "latest") == w3.eth.get_transaction_count(
            worker.address, "pending")
    finally:
        devnet.anvil.stop()


def _event(view, name):
    return next(e for e in view.events if e.name == name)


def test_the_worker_converges_after_rival_deep_commit_and_finalize_reorgs(tmp_path_factory, tmp_path, deployer,
                                                                        submitter, worker, worker2):
    """Issue 16's other cases, one worker process, three jobs:
    1. a rival's claim wins on the new branch (our claim and commit replaced): the job is given up
       cleanly, our orphaned nonces are filled, nothing reverts;
    2. a reorg deeper than the confirmations removes our claim and commit and nothing comes back: the job
       is Open again, we claim it again, re-commit the same trace and are paid;
    3. the commit alone is reorganised away, and later the finalize: each is sent again, paid once.
    No nonce gap, never slashed."""
    devnet = start_devnet(tmp_path_factory.mktemp("reorg-cases"), deployer)
    try:
        w3 = devnet.w3
        sub, wk, rival = fund_worker_and_rival(devnet, submitter, worker, worker2)
        staked, balance = wk.stake_info().staked, wk.token_balance()
        contested = devnet.post(submitter, tiny_spec(seed=71))
        rival_claim = signed_claim(devnet, worker2, contested)  # built against the Open struct
        config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                      confirmations=1)
        with DaemonProcess("worker", config, tmp_path / "worker.log") as proc:
            # 1. the rival's claim replaces ours
            wait_until(lambda: sub.job_state(contested) == JobState.COMMITTED, 90,
                       what=f"the contested commit; log:\n{proc.log_text()[-3000:]}")
            reorg_from(w3, _event(sub.job(contested), "JobClaimed").block_number, [rival_claim])
            assert sub.job(contested).job.worker == worker2.address
            wait_until(lambda: f'"job_id": {contested}, "state": "lost"' in proc.log_text(), 60,
                       what=f"job {contested} given up; log:\n{proc.log_text()[-3000:]}")
            # 2. a deep reorg takes claim and commit away for good
            deep = devnet.post(submitter, tiny_spec(seed=72))
            wait_until(lambda: sub.job_state(deep) == JobState.COMMITTED, 90, what="the deep job's first commit")
            reorg_from(w3, _event(sub.job(deep), "JobClaimed").block_number)
            assert sub.job_state(deep) == JobState.OPEN
            # 3. the commit alone, then the finalize
            shallow = devnet.post(submitter, tiny_spec(seed=73))
            wait_until(lambda: sub.job_state(shallow) == JobState.COMMITTED, 90, what="the shallow job's commit")
            reorg_from(w3, _event(sub.job(shallow), "JobCommitted").block_number)
            assert sub.job_state(shallow) == JobState.CLAIMED
            devnet.finalize_soon([deep, shallow], timeout=60)
            wait_until(lambda: sub.job_state(shallow) == JobState.FINALIZED, 150,
                       what=f"the shallow job re-committed and finalized; log:\n{proc.log_text()[-3000:]}")
            reorg_from(w3, _event(sub.job(shallow), "JobFinalized").block_number)
            assert sub.job_state(shallow) == JobState.COMMITTED
            wait_until(lambda: all(sub.job_state(j) == JobState.FINALIZED for j in (deep, shallow)), 150,
                       what=f"both jobs finalized after the reorgs; log:\n{proc.log_text()[-4000:]}")
            wait_until(lambda: no_nonce_gap(w3, worker.address), 30, what="every orphaned nonce filled")
            assert proc.terminate() == 0
        assert_paid_once_never_slashed(sub, wk, (deep, shallow), worker.address, staked, balance)
    finally:
        devnet.anvil.stop()


def assert_paid_once_never_slashed(sub, wk, jobs, address, staked, balance):
    """Each of `jobs` finalized exactly once for `address`, whose stake is whole and unlocked and whose
    balance grew by exactly the payouts."""
    for job_id in jobs:
        view = sub.job(job_id)
        assert view.job.worker == address
        assert [e.name for e in view.events].count("JobFinalized") == 1
    assert wk.stake_info().staked == staked and wk.stake_info().locked == 0  # never slashed
    assert wk.token_balance() - balance == sum(_event(sub.job(j), "JobFinalized").worker_payout for j in jobs)


def _runs_of(log: str, job_id: int) -> int:
    return log.count(f'"event": "run_start", "job_id": {job_id},')


def test_a_job_given_back_by_a_reorg_is_resumed_and_a_trace_it_cannot_serve_is_run_again(
        tmp_path_factory, tmp_path, deployer, submitter, worker, worker2):
    """Issue 16, the last cases, one worker process, two jobs:
    1. a rival's claim wins on a first new branch (the job is given up as lost), then a second reorg
       replaces that branch with one holding our own signed claim: the job is Claimed by us again, so the
       worker resumes it and commits the trace it has (no second run), instead of leaving its collateral
       locked until the expiry slash;
    2. a reorg takes claim and commit away after a checkpoint of the trace left our store: the worker
       claims again and runs the job again (the checkpoint is back) rather than committing a trace it
       could not serve in a dispute.
    Both are paid once, never slashed, no nonce gap."""
    from protocol.artifacts import LocalStore

    devnet = start_devnet(tmp_path_factory.mktemp("reorg-resume"), deployer)
    try:
        w3 = devnet.w3
        sub, wk, rival = fund_worker_and_rival(devnet, submitter, worker, worker2)
        staked, balance = wk.stake_info().staked, wk.token_balance()
        returned = devnet.post(submitter, tiny_spec(seed=81))
        rival_claim = signed_claim(devnet, worker2, returned)
        config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                      confirmations=1)
        with DaemonProcess("worker", config, tmp_path / "worker.log") as proc:
            # 1. lost to a rival, then ours again
            wait_until(lambda: sub.job_state(returned) == JobState.COMMITTED, 90,
                       what=f"the first commit; log:\n{proc.log_text()[-3000:]}")
            our_claim = w3.eth.get_raw_transaction(_event(sub.job(returned), "JobClaimed").tx_hash)
            reorg_from(w3, _event(sub.job(returned), "JobClaimed").block_number, [rival_claim])
            wait_until(lambda: f'"job_id": {returned}, "state": "lost"' in proc.log_text(), 60,
                       what=f"job {returned} given up; log:\n{proc.log_text()[-3000:]}")
            wait_until(lambda: no_nonce_gap(w3, worker.address), 30, what="the orphaned nonces filled")
            reorg_from(w3, _event(sub.job(returned), "JobClaimed").block_number, [our_claim])
            assert sub.job(returned).job.worker == worker.address and sub.job_state(returned) == JobState.CLAIMED
            wait_until(lambda: sub.job_state(returned) == JobState.COMMITTED, 60,
                       what=f"job {returned} resumed and committed; log:\n{proc.log_text()[-4000:]}")
            # 2. a checkpoint pruned from our store, then claim and commit reorganised away
            pruned = devnet.post(submitter, tiny_spec(seed=82))
            wait_until(lambda: sub.job_state(pruned) == JobState.COMMITTED, 90, what="the pruned job's commit")
            checkpoint = LocalStore(tmp_path / "store").path_of(sub.job(pruned).state_hashes[1])
            checkpoint.unlink()
            reorg_from(w3, _event(sub.job(pruned), "JobClaimed").block_number)
            devnet.finalize_soon([returned, pruned], timeout=90)
            wait_until(lambda: all(sub.job_state(j) == JobState.FINALIZED for j in (returned, pruned)), 90,
                       what=f"both jobs finalized; log:\n{proc.log_text()[-4000:]}")
            wait_until(lambda: no_nonce_gap(w3, worker.address), 30, what="every orphaned nonce filled")
            log = proc.log_text()
            assert proc.terminate() == 0
        assert _runs_of(log, returned) == 1  # the trace we had, committed again
        assert _runs_of(log, pruned) == 2 and checkpoint.is_file()  # run again: the checkpoint is served again
        assert_paid_once_never_slashed(sub, wk, (returned, pruned), worker.address, staked, balance)
    finally:
        devnet.anvil.stop()
