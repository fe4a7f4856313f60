"""One hostile post must not stall the network (issue 17), played against the real worker daemon.

Before two honest jobs, the chain holds one of each poison job found by the hostile-input run: a spec
with a 5,000-digit integer, a spec URI with a NUL byte, a malformed IPv6 spec URI, a spec URI that is
not UTF-8 (posted with a hand-encoded transaction), three spec URIs served by one slow-loris HTTP server (one more than the two screening phases allowed per origin), and
a real spec that declares too few seconds per segment for its windows (audit F-02), and a spec whose
dataset nobody serves (F-12: inputs are fetched before the claim, so withholding them costs no worker).
The worker must claim each honest job within 2 blocks of its post, record every poison job as skipped
with its reason, and stay healthy. The SDK must still show and cancel the non-UTF-8 job.
"""

from __future__ import annotations

import pytest

from engine.presets import digits_spec
from protocol.events import JobState
from worker.testing import DaemonProcess, SlowLoris
from worker.testing_chain import TOKEN, start_devnet, tiny_spec, wait_until

pytestmark = pytest.mark.e2e

# More slow-loris posts than the worker has screening threads for one server: the rest wait threadless
SLOW_LORIS_POSTS = 3


def post_raw_uri(devnet, submitter, spec_hash: str, uri: bytes) -> int:
    """A JobPosted whose spec URI is arbitrary bytes (the SDK would refuse to send them)."""
    from eth_abi import encode

    from protocol.client import TxRequest

    client = devnet.client(submitter)
    template = client.build_post(TOKEN, 2 * TOKEN, spec_hash, 2, devnet.env_class, 6, "x")
    data = template.data[:10] + encode(
        ["uint256", "uint256", "bytes32", "uint256", "bytes32", "uint256", "bytes"],
        [TOKEN, 2 * TOKEN, bytes.fromhex(spec_hash[2:]), 2, bytes.fromhex(devnet.env_class[2:]), 6, uri]).hex()
    receipt = client.send(TxRequest(to=template.to, data=data, description="post with a non-UTF-8 spec URI"))
    return int(receipt.job_id)


def test_poison_jobs_cost_their_budget_once_and_honest_jobs_are_claimed_in_two_blocks(
        tmp_path_factory, tmp_path, deployer, submitter, worker):
    from protocol.artifacts import LocalStore

    devnet = start_devnet(tmp_path_factory.mktemp("poison-devnet"), deployer)
    loris = SlowLoris()
    try:
        sub = devnet.client(submitter)
        sub.faucet(500 * TOKEN)
        sub.approve(devnet.deployment.escrow, 2**256 - 1)
        w = devnet.client(worker)
        w.faucet(200 * TOKEN)
        w.stake(100 * TOKEN)
        spec = tiny_spec(seed=41)
        store = LocalStore(devnet.spec_store_dir)
        huge = store.put(spec.canonical_bytes().replace(b'"seed":41', b'"seed":' + b"9" * 5_000))
        poison = {
            "huge-integer": devnet.post(submitter, spec, spec_hash=huge),
            "nul-byte": sub.post(TOKEN, 2 * TOKEN, spec.spec_hash(), spec.num_segments, "file:///specs\x00/x",
                                 env_class=devnet.env_class, segment_seconds=6).job_id,
            "bad-ipv6": sub.post(TOKEN, 2 * TOKEN, spec.spec_hash(), spec.num_segments, "http://[::1/specs",
                                 env_class=devnet.env_class, segment_seconds=6).job_id,
            "not-utf8": post_raw_uri(devnet, submitter, spec.spec_hash(), b"http://\xff\xfe/specs"),
            **{f"slow-loris-{n}": sub.post(TOKEN, 2 * TOKEN, spec.spec_hash(), spec.num_segments,
                                           f"http://127.0.0.1:{loris.port}/{n}", env_class=devnet.env_class,
                                           segment_seconds=6).job_id
               for n in range(SLOW_LORIS_POSTS)},
            # F-02: a real spec declaring 1 s per segment, so the windows would be too short to judge it
            "under-declared": devnet.post(submitter, tiny_spec(seed=44), segment_seconds=1),
            # F-12: a dataset nobody serves (a submitter that would withhold it after the claim): the worker
            # fetches and hash-checks every input before claiming, so it never claims
            "withheld-dataset": devnet.post(submitter, digits_spec(
                steps=4, segment_steps=2, seed=45, schedule={"name": "constant"},
                dataset={"hash": "0x" + "ab" * 32, "uris": ["http://127.0.0.1:9/withheld"]})),
        }
        # The SDK reads, lists and cancels a job whose spec URI is not UTF-8.
        assert "\ufffd" in sub.job(poison["not-utf8"]).spec_uri
        assert poison["not-utf8"] in sub.jobs()
        config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                      confirmations=0, rpc_timeout=3.0, concurrency_per_gpu=2,
                                      screening_budget_s=10.0)
        # From here 2-second blocks, as on the fastest L2s: "claimed within 2 blocks" then leaves the worker
        # 2 to 4 s, which it needs on a 2-core CI box that runs another test and this worker's first
        # training child beside the screening of the second job (with 1-second blocks it once took 3).
        assert "error" not in devnet.w3.provider.make_request("evm_setIntervalMining", [2])
        with DaemonProcess("worker", config, tmp_path / "worker.log") as proc:
            wait_until(lambda: '"event": "worker_start"' in proc.log_text() or "worker_start" in proc.log_text(),
                       60, what="the worker to start")
            honest = []
            for seed in (42, 43):
                job_id = devnet.post(submitter, tiny_spec(seed=seed))
                honest.append(job_id)
                wait_until(lambda: sub.job_state(job_id) != JobState.OPEN, 30,
                           what=f"honest job {job_id} claimed; log:\n{proc.log_text()[-3000:]}")
            for job_id in honest:
                view = sub.job(job_id)
                posted = next(e for e in view.events if e.name == "JobPosted").block_number
                claimed = next(e for e in view.events if e.name == "JobClaimed").block_number
                assert claimed - posted <= 2, (job_id, posted, claimed)
            def recorded(job_id: int) -> bool:
                return any('"job_id": %d' % job_id in line and '"state": "skipped"' in line
                           for line in proc.log_text().splitlines())

            wait_until(lambda: all(recorded(j) for j in poison.values()), 90,
                       what=f"every poison job skipped; log:\n{proc.log_text()[-3000:]}")
            assert proc.alive()
            text = proc.log_text()
        sub.cancel(poison["not-utf8"])  # the submitter's own SDK call, on a job no listing chokes on
        assert sub.job_state(poison["not-utf8"]) == JobState.CANCELLED
        import json

        skipped = {}
        for line in text.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == "job_state" and record.get("state") == "skipped":
                    skipped[record["job_id"]] = record.get("reason", "")
        for name, job_id in poison.items():
            assert job_id in skipped, (name, text[-3000:])
        assert "an integer of 5000 digits" in skipped[poison["huge-integer"]]
        for n in range(SLOW_LORIS_POSTS):
            reason = skipped[poison[f"slow-loris-{n}"]]
            assert any(why in reason for why in ("longer than its budget", "too slow", "no complete response headers")), reason
        assert "control character" in skipped[poison["nul-byte"]]
        assert "malformed" in skipped[poison["bad-ipv6"]] or "not fetchable" in skipped[poison["bad-ipv6"]]
        assert "UTF-8" in skipped[poison["not-utf8"]]
        assert "below the reference estimate" in skipped[poison["under-declared"]]
        assert "inputs not fetchable before the claim" in skipped[poison["withheld-dataset"]]
        for job_id in poison.values():
            assert sub.job_state(job_id) in (JobState.OPEN, JobState.CANCELLED)  # never claimed
    finally:
        loris.close()
        devnet.anvil.stop()
