"""Fault tests of the worker daemon on anvil, bounded in time (the whole file stays within minutes).

- SIGKILL at seeded random points of 6 process lifetimes (TESSERA_WORKER_KILL_RUNS for more), each drawn after the daemon reported it started
  (so every kill lands in the daemon's work: screening, claim, run, commit, finalize, never in the
  interpreter's start-up): every job still ends Finalized, none is claimed or committed twice (counted
  over every transaction the worker sent), no nonce gap, no lost payment. TESSERA_WORKER_KILL_RUNS
  raises the count for a longer chaos run.
- A reorg right after a claim, with a competitor claiming on the new branch: the cursor rolls back,
  the orphaned claim is not resent (its nonce is filled), the ghost job is never run.
- The RPC endpoint (a TCP proxy in front of anvil) goes away for 10 s mid-job: the worker stays up,
  reports unhealthy, recovers by itself and finishes.
- Two workers compete for the same jobs: each job is claimed once, the loser moves on, no error spam.
- Hostile specs (hash mismatch, pickle, unknown layer, oversized model, disallowed URI scheme,
  segment-count lie): skipped with a logged reason while the daemon keeps working.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import sqlite3
import time
import urllib.error
import urllib.request

import pytest
from eth_abi import decode as abi_decode

from engine.presets import digits_spec
from protocol.devnet import free_port
from protocol.events import JobState
from worker.testing import DaemonProcess, TcpProxy
from worker.testing_chain import TOKEN, start_devnet, tiny_spec, wait_until

pytestmark = pytest.mark.e2e

# Six seeded kill points cover screening, claims, child starts and runs in CI; raise it for a soak.
KILL_RUNS = int(os.environ.get("TESSERA_WORKER_KILL_RUNS", "6"))


@pytest.fixture(scope="module")
def devnet(tmp_path_factory, deployer, submitter, worker, worker2):
    net = start_devnet(tmp_path_factory.mktemp("worker-faults"), deployer)
    try:
        for account in (worker, worker2):
            client = net.client(account)
            client.faucet(200 * TOKEN)
            client.stake(200 * TOKEN)
        net.client(submitter).faucet(500 * TOKEN)
        yield net
    finally:
        net.anvil.stop()


def job_events(devnet, job_id, name):
    return [e for e in devnet.client().job_events(job_id) if e.name == name]


def sent_calls(devnet, sender, from_block):
    """(function name, job id, status) of every transaction `sender` got mined since `from_block`."""
    w3 = devnet.w3
    escrow = devnet.client().escrow
    selectors = {}
    for fn in ("claim", "commit", "finalize"):
        abi = escrow.get_function_by_name(fn).abi
        types = ",".join(i["type"] if i["type"] != "tuple" else "(" + ",".join(c["type"] for c in i["components"]) + ")"
                         for i in abi["inputs"])
        selectors[w3.keccak(text=f"{fn}({types})")[:4]] = fn
    calls = []
    for number in range(from_block, w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"].lower() != sender.lower():
                continue
            data = bytes(tx["input"])
            name = selectors.get(data[:4], "other")
            job_id = abi_decode(["uint256"], data[4:36])[0] if name != "other" else None
            status = w3.eth.get_transaction_receipt(tx["hash"])["status"]
            calls.append((name, job_id, status))
    return calls


def db_rows(data_dir):
    if not (data_dir / "worker.sqlite").exists():
        return {}
    conn = sqlite3.connect(f"file:{data_dir / 'worker.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT job_id, state, reason FROM worker_jobs")}
    except sqlite3.OperationalError:  # the daemon has not created its table yet
        return {}
    finally:
        conn.close()


def log_lines(proc):
    out = []
    for line in proc.log_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def started_events(proc) -> int:
    return sum(1 for l in log_lines(proc) if l.get("event") == "start")


def test_sigkill_at_random_points_loses_nothing_and_repeats_nothing(devnet, submitter, worker, tmp_path):
    client = devnet.client()
    start_block = devnet.w3.eth.block_number
    balance_before = client.token_balance(worker.address)
    payment = 5 * TOKEN
    jobs = [devnet.post(submitter, tiny_spec(seed=100 + i), payment=payment) for i in range(3)]
    config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store")
    proc = DaemonProcess("worker", config, tmp_path / "worker.log")
    rng = random.Random(20_240_601)
    try:
        for run in range(KILL_RUNS):
            proc.start()
            wait_until(lambda: started_events(proc) > run, 60, interval=0.05, what=f"start {run} reported")
            # mostly early in a lifetime (screening, claims, children starting), sometimes deep in a run
            time.sleep(rng.uniform(0.0, 2.0) if rng.random() < 0.6 else rng.uniform(2.0, 10.0))
            proc.kill()
        proc.start()
        devnet.finalize_soon(jobs, timeout=180)
        wait_until(lambda: all(client.job_state(j) == JobState.FINALIZED for j in jobs), 120,
                   what=f"all of {jobs} finalized after {KILL_RUNS} kills; log:\n{proc.log_text()[-3000:]}")
    finally:
        if proc.alive():
            proc.terminate()
    assert proc.starts == KILL_RUNS + 1
    calls = sent_calls(devnet, worker.address, start_block)
    for job_id in jobs:
        assert len(job_events(devnet, job_id, "JobClaimed")) == 1
        assert len(job_events(devnet, job_id, "JobCommitted")) == 1
        # Never sent twice, not even a reverted duplicate.
        assert [c for c in calls if c[:2] == ("claim", job_id)] == [("claim", job_id, 1)]
        assert [c for c in calls if c[:2] == ("commit", job_id)] == [("commit", job_id, 1)]
        assert client.job(job_id).job.worker == worker.address
    w3 = devnet.w3
    assert w3.eth.get_transaction_count(worker.address, "pending") == w3.eth.get_transaction_count(worker.address)
    payouts = sum(job_events(devnet, j, "JobFinalized")[0].args["worker_payout"] for j in jobs)
    fee_bps = client.param("JobEscrow", "fee_bps")
    assert payouts == len(jobs) * (payment - payment * fee_bps // 10_000)
    assert client.token_balance(worker.address) - balance_before == payouts


def test_reorg_after_a_claim_leaves_no_ghost_job(devnet, submitter, worker, worker2, tmp_path):
    w3 = devnet.w3
    client = devnet.client()
    job_id = devnet.post(submitter, tiny_spec(seed=7))
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    # The cursor reads one block behind head (it will have read the claim's block when the reorg hits),
    # but a run starts only once the claim is 8 blocks deep.
    config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                  confirmations=1, run_confirmations=8)
    proc = DaemonProcess("worker", config, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: client.job_state(job_id) == JobState.CLAIMED, 30, interval=0.1, what="the claim mined")
        claim_block = job_events(devnet, job_id, "JobClaimed")[0].block_number
        wait_until(lambda: w3.eth.block_number >= claim_block + 3, 10, interval=0.1, what="the cursor passing the claim")
        time.sleep(1.0)  # a poll or two of the worker
        os.kill(proc.process.pid, signal.SIGSTOP)
        assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True
        assert client.job_state(job_id) == JobState.OPEN  # the claim is gone with its block
        devnet.client(worker2).claim(job_id)  # the competitor wins on the new branch
        os.kill(proc.process.pid, signal.SIGCONT)
        wait_until(lambda: db_rows(tmp_path / "data").get(job_id, ("",))[0] == "lost", 40,
                   what=f"worker marks job {job_id} lost; log:\n{proc.log_text()[-2000:]}")
        lines = log_lines(proc)
        wait_until(lambda: any(l.get("key") == f"claim:{job_id}" and l.get("state") == "cancelled"
                               for l in log_lines(proc)), 30, what="the orphaned claim's nonce filled")
        lines = log_lines(proc)
    finally:
        if proc.alive():
            proc.terminate()
    assert any(l.get("event") == "reorg" for l in lines), "the cursor saw the reorg"
    assert not any(l.get("event") == "run_start" and l.get("job_id") == job_id for l in lines), "ghost job was run"
    assert client.job(job_id).job.worker == worker2.address
    assert len(job_events(devnet, job_id, "JobClaimed")) == 1
    assert w3.eth.get_transaction_count(worker.address, "pending") == w3.eth.get_transaction_count(worker.address)


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_rpc_away_for_ten_seconds_mid_job(devnet, submitter, worker, tmp_path):
    client = devnet.client()
    proxy = TcpProxy(devnet.anvil.port).start()
    metrics_port = free_port()
    job_id = devnet.post(submitter, tiny_spec(seed=9, steps=8))
    config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                  rpc_url=proxy.url, metrics_port=metrics_port, stale_after=5.0)
    proc = DaemonProcess("worker", config, tmp_path / "worker.log").start()
    try:
        # Mid-job: the training child is running when the endpoint goes away.
        wait_until(lambda: db_rows(tmp_path / "data").get(job_id, ("",))[0] == "running", 60, interval=0.1,
                   what="the run started")
        proxy.stop()
        outage_end = time.monotonic() + 10
        statuses = set()
        while time.monotonic() < outage_end:
            statuses.add(healthz(metrics_port))
            assert proc.alive(), "the worker died while the RPC was away"
            time.sleep(0.5)
        proxy.start()
        devnet.finalize_soon([job_id])
        wait_until(lambda: client.job_state(job_id) == JobState.FINALIZED, 90,
                   what=f"finalized after the outage; log:\n{proc.log_text()[-2000:]}")
        wait_until(lambda: healthz(metrics_port) == 200, 20, what="healthy again")
    finally:
        if proc.alive():
            proc.terminate()
        proxy.stop()
    assert 503 in statuses, f"unhealthy during the outage (saw {statuses})"
    assert any(l.get("event") == "rpc_error" for l in log_lines(proc))
    assert len(job_events(devnet, job_id, "JobCommitted")) == 1


def test_two_workers_compete_each_job_claimed_once(devnet, submitter, worker, worker2, tmp_path):
    client = devnet.client()
    jobs = [devnet.post(submitter, tiny_spec(seed=200 + i)) for i in range(3)]
    procs = []
    for name, alias in (("a", "TEST::2"), ("b", "TEST::6")):
        config = devnet.worker_config(tmp_path / f"{name}.toml", alias, tmp_path / f"data-{name}",
                                      tmp_path / f"store-{name}", poll_interval=0.2)
        procs.append(DaemonProcess("worker", config, tmp_path / f"{name}.log"))
    try:
        for proc in procs:
            proc.start()
        devnet.finalize_soon(jobs, timeout=120)
        wait_until(lambda: all(client.job_state(j) == JobState.FINALIZED for j in jobs), 90,
                   what=f"{jobs} finalized by the two workers")

        def winner_recorded_each() -> bool:
            # The chain says Finalized as soon as the finalize tx is mined; the winner's own job table
            # catches up on its next loop. Stop the daemons only after that.
            rows = [db_rows(tmp_path / f"data-{n}") for n in ("a", "b")]
            return all(any(r.get(j, ("",))[0] == "finalized" for r in rows) for j in jobs)

        wait_until(winner_recorded_each, 30, what="each winner recorded its job finalized")
    finally:
        for proc in procs:
            if proc.alive():
                proc.terminate()
    for job_id in jobs:
        assert len(job_events(devnet, job_id, "JobClaimed")) == 1
    for proc in procs:
        errors = [l for l in log_lines(proc) if l.get("level") == "ERROR"]
        assert errors == [], f"error spam: {errors[:3]}"
    winners = {client.job(j).job.worker for j in jobs}
    losers_rows = [db_rows(tmp_path / f"data-{n}") for n in ("a", "b")]
    for job_id in jobs:
        states = sorted(rows.get(job_id, ("",))[0] for rows in losers_rows)
        assert "finalized" in states and states.count("finalized") == 1, states
    assert winners <= {worker.address, worker2.address}


def test_hostile_specs_are_skipped_and_the_daemon_keeps_working(devnet, submitter, tmp_path):
    from protocol.artifacts import LocalStore
    from protocol.hashing import sha256_hex

    client = devnet.client()
    store = LocalStore(devnet.spec_store_dir)
    good = tiny_spec(seed=77)
    hostile: dict[str, int] = {}
    # Bytes that do not hash to the posted spec hash (a file planted under someone else's hash).
    other = tiny_spec(seed=78)
    planted = store.path_of(other.spec_hash())
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(good.canonical_bytes())
    hostile["hash mismatch"] = devnet.post(submitter, other, spec_bytes=b"", spec_hash=other.spec_hash())
    planted.write_bytes(good.canonical_bytes())  # post() stored b"" under its own hash; keep the lie in place
    hostile["pickle"] = devnet.post(submitter, None, spec_bytes=pickle.dumps({"version": 1, "kind": "train"}),
                                    num_segments=1)
    bad_layer = json.loads(good.canonical_bytes())
    bad_layer["model"]["layers"][1] = {"type": "lambda", "code": "__import__('os').system('id')"}
    hostile["unknown layer"] = devnet.post(submitter, None, spec_bytes=json.dumps(bad_layer).encode(),
                                           num_segments=good.num_segments)
    huge = json.loads(good.canonical_bytes())
    huge["model"]["layers"][0]["out_features"] = 60_000
    huge["model"]["layers"][3]["in_features"] = 60_000
    from protocol.spec import load_spec

    try:
        huge_spec = load_spec(huge)
        hostile["oversized model"] = devnet.post(submitter, huge_spec)
    except Exception:  # over the protocol's own limit: post the raw bytes
        hostile["oversized model"] = devnet.post(submitter, None, spec_bytes=json.dumps(huge).encode(),
                                                 num_segments=good.num_segments)
    lie = tiny_spec(seed=79)
    hostile["segment lie"] = devnet.post(submitter, lie, num_segments=lie.num_segments + 3)
    scheme_spec = tiny_spec(seed=80)
    store.put(scheme_spec.canonical_bytes())
    receipt = devnet.client(submitter).post(5 * TOKEN, 2 * TOKEN, scheme_spec.spec_hash(), scheme_spec.num_segments,
                                            "s3://bucket/specs")
    hostile["uri scheme"] = int(receipt.job_id)
    # F-12: a wall-time limit no run can meet is refused before the claim
    hostile["wall-time limit"] = devnet.post(submitter, digits_spec(
        steps=4, segment_steps=2, seed=81, schedule={"name": "constant"}, resources={"max_wall_s": 0.001}))
    # inputs that are served and hash right but do not fit the model (F-12): the worker builds checkpoint 0
    # in a child before it claims, so neither is claimed and no collateral is put at risk
    from engine import tensors_io

    import torch

    misfit = store.put(tensors_io.encode({"0.weight": torch.zeros(3, 3)}))
    hostile["misfit weights"] = devnet.post(submitter, digits_spec(
        steps=4, segment_steps=2, seed=82, schedule={"name": "constant"}, kind="finetune",
        init_weights={"hash": misfit, "uris": [str(devnet.spec_store_dir)]}))
    wrong_dtype = store.put(tensors_io.encode({"train_x": torch.zeros(40, 64, dtype=torch.int64),
                                               "train_y": torch.zeros(40, dtype=torch.int64)}))
    hostile["misfit dataset"] = devnet.post(submitter, digits_spec(
        steps=4, segment_steps=2, seed=83, schedule={"name": "constant"}, batch_size=8,
        dataset={"hash": wrong_dtype, "uris": [str(devnet.spec_store_dir)]}))
    five_classes = json.loads(good.canonical_bytes())  # the built-in dataset has ten: refused with the spec
    five_classes["model"]["layers"][-1]["out_features"] = 5
    hostile["misfit built-in dataset"] = devnet.post(submitter, None, spec_bytes=json.dumps(five_classes).encode(),
                                                     num_segments=good.num_segments)
    good_id = devnet.post(submitter, good)
    config = devnet.worker_config(tmp_path / "w.toml", "TEST::2", tmp_path / "data", tmp_path / "store",
                                  max_parameters=1_000_000)
    with DaemonProcess("worker", config, tmp_path / "worker.log") as proc:
        wait_until(lambda: client.job_state(good_id) == JobState.COMMITTED, 90,
                   what=f"the good job committed; log:\n{proc.log_text()[-2000:]}")
        wait_until(lambda: all(db_rows(tmp_path / "data").get(j, ("",))[0] == "skipped" for j in hostile.values()),
                   60, what=f"every hostile job skipped; log:\n{proc.log_text()[-2000:]}")
        rows = db_rows(tmp_path / "data")
        assert proc.alive()
        assert not [l for l in log_lines(proc) if l.get("event") == "job_at_risk"]
    assert "infeasible inputs" in rows[hostile["misfit weights"]][1] and "do not fit" in rows[hostile["misfit weights"]][1]
    assert "infeasible inputs" in rows[hostile["misfit dataset"]][1] and "dtype" in rows[hostile["misfit dataset"]][1]
    assert "class ids up to 9" in rows[hostile["misfit built-in dataset"]][1]
    assert "max_wall_s" in rows[hostile["wall-time limit"]][1]
    for what, job_id in hostile.items():
        assert client.job_state(job_id) == JobState.OPEN, what
        state, reason = rows[job_id]
        assert state == "skipped" and reason, (what, state, reason)
    assert "parameters" in rows[hostile["oversized model"]][1] or "spec" in rows[hostile["oversized model"]][1]
    assert "segments" in rows[hostile["segment lie"]][1]
    assert "scheme" in rows[hostile["uri scheme"]][1]
    assert sha256_hex(good.canonical_bytes()) == good.spec_hash()
