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
from worker.testing_chain import TOKEN, start_devnet, tiny_spec, wait_until

pytestmark = pytest.mark.e2e


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
