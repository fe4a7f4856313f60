"""What verification and a dispute cost, measured on the real engine and chain (`python -m bench.verify_cost`).

Setup: anvil, a fresh deployment (local parameters, windows widened so timing noise cannot close
them), a digits MLP job of N segments trained for real by a `tamper-segment` worker. Then:

- `verify_fraction`: wall time of one verifier check (fetch checkpoint h_i from the worker's store
  into the verifier's cache + replay one segment, engine warm) divided by the job's training compute
  time. The design target is about 1/N: a check costs one segment.
- `dispute_gas_total`: gas of `file_challenge` + `reveal` + `verdict` for that job, sent by the real
  daemons (`VerifierDaemon` and `ArbiterDaemon`, run in this process, one loop iteration at a time).
- `dispute_wall_s`: from the reveal being mined to the verdict being mined: what the arbiter daemon
  needs to notice, fetch, recompute in its judging child, store evidence and send.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

SEGMENTS = 8
STEPS_PER_SEGMENT = 100
TOKEN = 10**18


def _spec() -> Any:
    from engine.presets import digits_spec

    return digits_spec(steps=SEGMENTS * STEPS_PER_SEGMENT, segment_steps=STEPS_PER_SEGMENT,
                       schedule={"name": "constant"}, seed=7)


def _until(step: Any, done: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        step()
        time.sleep(0.05)


def measure() -> dict:
    """Run the setup above and return the three figures (plus the raw timings they come from)."""
    from eth_account import Account

    from engine.api import replay_segment, run_spec
    from protocol.artifacts import LocalStore
    from protocol.chain import connect
    from protocol.client import TesseraClient, proof_depth
    from protocol.deploy import DeployParams, deploy_all
    from protocol.devnet import start_anvil, test_account_keys
    from personas import tampering
    from worker.arbiter import ArbiterConfig, ArbiterDaemon
    from worker.verifier import VerifierConfig, VerifierDaemon

    keys = test_account_keys(8)
    deployer, submitter, worker, verifier, arbiter = (Account.from_key(keys[i]) for i in range(5))
    with tempfile.TemporaryDirectory() as tmp_dir, start_anvil() as anvil:
        tmp = Path(tmp_dir)
        w3 = connect(anvil.rpc_url, timeout=30)
        params = DeployParams.load("local").model_dump()
        params.update({"challenge_window": 300, "arbiter_window": 300, "unbonding_delay": 2_000})
        deployment = deploy_all(w3, deployer, params, out_dir=tmp / "deployments")
        from worker.testing_chain import open_local_env_class

        open_local_env_class(w3, deployment)

        def client(account: Any) -> TesseraClient:
            return TesseraClient(w3, deployment, account)

        sub, wrk, ver = client(submitter), client(worker), client(verifier)
        for c, stake in ((sub, 0), (wrk, 200), (ver, 10)):
            c.faucet(500 * TOKEN)
            if stake:
                c.stake(stake * TOKEN)
        spec = _spec()
        spec_store = LocalStore(tmp / "specs")
        spec_store.put(spec.canonical_bytes())
        job_id = sub.post_job(spec, 50 * TOKEN, 100 * TOKEN, spec_store.uri).job_id
        wrk.claim(job_id)

        worker_store = LocalStore(tmp / "worker-store")
        result = run_spec(spec, worker_store, device="cpu")
        compute_s = float(result.metrics.get("compute_s", result.wall_s))
        honest_trace = list(result.state_hashes)
        tampered = tampering.apply("tamper-segment", {"state_hashes": result.state_hashes,
                                                      "output_hash": result.output_hash}, worker_store)
        wrk.commit(job_id, tampered["state_hashes"], result.output_hash, worker_store.uri)

        # One check, timed the way the verifier does it: fetch h_i into a cache, replay (engine warm).
        cache = LocalStore(tmp / "verify-cache")
        replay_segment(spec, worker_store, 0, honest_trace[0], device="cpu")  # warm-up: imports, dataset
        segment = SEGMENTS - 1
        started = time.perf_counter()
        cache.put(worker_store.get(honest_trace[segment]))
        reached = replay_segment(spec, cache, segment, honest_trace[segment], device="cpu")
        check_s = time.perf_counter() - started
        assert reached == honest_trace[segment + 1], "replay did not reproduce the honest trace"

        common = {"network": anvil.rpc_url, "confirmations": 0, "poll_interval": 0.05, "device": "cpu",
                  "log_format": "json"}
        v = VerifierDaemon(VerifierConfig(**common, data_dir=tmp / "verifier", store=str(tmp / "v-store"),
                                          verify_fraction=1.0, segments_per_check=SEGMENTS),
                           w3=w3, account=verifier, deployment=deployment)
        a = ArbiterDaemon(ArbiterConfig(**common, data_dir=tmp / "arbiter", store=str(tmp / "evidence")),
                          w3=w3, account=arbiter, deployment=deployment)
        for daemon in (v, a):
            daemon.open()
            daemon.on_start()
        try:
            _until(v.run_once, lambda: v.job_state(job_id) in ("revealed", "won", "challenge_failed"), 300,
                   "the verifier's challenge")
            _until(v.run_once, lambda: any(i.kind == "reveal" and i.succeeded for i in v.outbox.intents()), 60,
                   "the reveal's receipt")
            filing = v.outbox.get(f"file:{job_id}")
            reveal = next(i for i in v.outbox.intents() if i.kind == "reveal")
            challenge_receipts = [w3.eth.get_transaction_receipt(i.tx_hash) for i in (filing, reveal)]
            mined_at = time.time()
            _until(a.run_once, lambda: any(i.kind == "verdict" and i.succeeded for i in a.outbox.intents()), 120,
                   "the arbiter's verdict")
            dispute_s = time.time() - mined_at
            verdict = next(i for i in a.outbox.intents() if i.kind == "verdict")
            verdict_receipt = w3.eth.get_transaction_receipt(verdict.tx_hash)
        finally:
            for daemon in (v, a):
                daemon.close()
        state = sub.job_state(job_id).label

    file_gas, reveal_gas = (int(r["gasUsed"]) for r in challenge_receipts)
    gas = file_gas + reveal_gas + int(verdict_receipt["gasUsed"])
    return {
        "verify_fraction": {
            "value": round(check_s / compute_s, 4), "unit": "fraction of the job's compute",
            "target": round(1 / SEGMENTS, 4),
            "how": f"one check (fetch checkpoint + replay 1 of N={SEGMENTS} segments, {STEPS_PER_SEGMENT} steps each, "
                   f"digits MLP on CPU, engine warm) {check_s:.3f}s / training compute {compute_s:.3f}s",
        },
        "dispute_gas_total": {
            "value": gas, "unit": "gas",
            "how": f"file {file_gas:,} + reveal {reveal_gas:,} + verdict {int(verdict_receipt['gasUsed']):,} "
                   f"(N={SEGMENTS}: proofs of {proof_depth(SEGMENTS)} words), sent by VerifierDaemon/ArbiterDaemon; "
                   f"job ended {state}",
        },
        "dispute_wall_s": {
            "value": round(dispute_s, 3), "unit": "s",
            "how": "reveal mined -> verdict mined: ArbiterDaemon notices, fetches h_i, recomputes the segment in a "
                   "judging child (a fresh process: interpreter and torch import included), stores evidence, sends the verdict "
                   "(poll 0.05 s, anvil automine)",
        },
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
