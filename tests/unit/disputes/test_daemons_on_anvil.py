"""The verifier and arbiter daemons in this process on anvil: refusal across environments, timeout, restart.

A worker commits an honest trace but claims a CUDA environment; a `buggy` verifier challenges it. The
arbiter (CPU) must refuse to rule and say why, write that into its evidence, and send no verdict;
once the arbiter window has passed the verifier calls `timeout()` itself and gets its bond back.
"""

from __future__ import annotations

import json

import pytest

TOKEN = 10**18


@pytest.fixture(scope="module")
def short_arbiter_deployment(w3, deployer, tmp_path_factory):
    from protocol.deploy import DeployParams, deploy_all

    params = DeployParams.load("local").model_dump()
    params.update({"challenge_window": 600, "arbiter_window": 30, "unbonding_delay": 1_500})
    return deploy_all(w3, deployer, params, out_dir=tmp_path_factory.mktemp("disputes-daemons"))


def claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed):
    """Fund and stake the personas, post a tiny digits job and let `worker` claim it."""
    from engine.presets import digits_spec
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient

    sub, wrk, ver = (TesseraClient(w3, dep, a) for a in (submitter, worker, verifier))
    for client, stake in ((sub, 0), (wrk, 50), (ver, 1)):
        client.faucet(200 * TOKEN)
        if stake:
            client.stake(stake * TOKEN)
    spec = digits_spec(steps=4, segment_steps=2, batch_size=16, schedule={"name": "constant"}, seed=seed)
    specs = LocalStore(tmp_path / "specs")
    specs.put(spec.canonical_bytes())
    job_id = sub.post_job(spec, 10 * TOKEN, 20 * TOKEN, specs.uri).job_id
    wrk.claim(job_id)
    return sub, wrk, ver, spec, job_id


def run_until(daemon, condition, rounds=200):
    for _ in range(rounds):
        daemon.run_once()
        if condition():
            return
    raise AssertionError(f"{daemon.name}: condition not reached in {rounds} rounds; jobs {daemon.job_counts()}")


def test_arbiter_refuses_across_fingerprints_and_verifier_times_out(
        tmp_path, anvil, w3, short_arbiter_deployment, submitter, worker, verifier, arbiter, time_travel):
    from engine.api import fingerprint_bytes, run_spec
    from protocol.artifacts import LocalStore
    from protocol.events import JobState
    from worker.arbiter import ArbiterConfig, ArbiterDaemon
    from worker.verifier import VerifierConfig, VerifierDaemon

    dep = short_arbiter_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=5)
    store = LocalStore(tmp_path / "worker-store")
    result = run_spec(spec, store, device="cpu")
    claimed = {**result.fingerprint, "device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    result = result.model_copy(update={"fingerprint_hash": store.put(fingerprint_bytes(claimed))})
    wrk.commit(job_id, result.state_hashes, result.output_hash, result.fingerprint_hash, store.uri)

    common = {"network": anvil.rpc_url, "confirmations": 0, "poll_interval": 0.05, "device": "cpu",
              "start_block": 0}
    v = VerifierDaemon(VerifierConfig(**common, data_dir=tmp_path / "v", store=str(tmp_path / "v-store"),
                                      verify_fraction=0.0, watch_jobs=[job_id], segments_per_check=2,
                                      behaviour="buggy"), w3=w3, account=verifier, deployment=dep)
    a = ArbiterDaemon(ArbiterConfig(**common, data_dir=tmp_path / "a", store=str(tmp_path / "evidence")),
                      w3=w3, account=arbiter, deployment=dep)
    for daemon in (v, a):
        daemon.open()
        daemon.on_start()
    try:
        balance_before = ver.token_balance()
        run_until(v, lambda: v.job_state(job_id) == "challenged")
        row = v._row(job_id)
        assert row["challenged_segment"] in (0, 1) and json.loads(row["segments"]) == [0, 1]
        assert sub.dispute(job_id).challenger.lower() == verifier.address.lower()
        bond = ver.param("Disputes", "challenge_bond")
        assert ver.token_balance() == balance_before - bond

        run_until(a, lambda: a.dispute_state(job_id) == "refused")
        refused = a.db.execute("SELECT * FROM arbiter_disputes WHERE job_id=?", (job_id,)).fetchone()
        assert "not portable" in refused["reason"] and "device_type" in refused["reason"]
        assert not [i for i in a.outbox.intents() if i.kind == "verdict"]  # no verdict was sent
        evidence_hash = refused["evidence_uri"].partition("#evidence=")[2]
        evidence = json.loads(LocalStore(tmp_path / "evidence").get(evidence_hash))
        assert evidence["decision"] == "refuse" and evidence["worker_fingerprint"]["device_type"] == "cuda"
        assert evidence["recomputed_hash"] == "0x" + "00" * 32
        assert sub.job_state(job_id) == JobState.CHALLENGED

        time_travel(31)  # past the arbiter window: anyone may time out; the verifier does
        run_until(v, lambda: v.job_state(job_id) == "timed_out")
        assert sub.job_state(job_id) == JobState.COMMITTED
        assert ver.token_balance() == balance_before  # bond back
        assert not sub.dispute(job_id).open
        events = [e.name for e in sub.job(job_id).events]
        assert "DisputeTimedOut" in events and "Verdict" not in events
    finally:
        for daemon in (v, a):
            daemon.close()

    # A restart reads the same local state and never challenges the job again.
    v2 = VerifierDaemon(VerifierConfig(**common, data_dir=tmp_path / "v", store=str(tmp_path / "v-store"),
                                       verify_fraction=1.0, behaviour="buggy"),
                        w3=w3, account=verifier, deployment=dep)
    v2.open()
    v2.on_start()
    try:
        for _ in range(5):
            v2.run_once()
        assert v2.job_state(job_id) == "timed_out"
        assert [i.key for i in v2.outbox.intents() if i.kind == "challenge"] == [f"challenge:{job_id}"]
    finally:
        v2.close()


def test_worker_cannot_withhold_the_trace(
        tmp_path, anvil, w3, short_arbiter_deployment, submitter, worker, verifier, arbiter):
    """A worker that publishes nothing at all (no manifest, no checkpoints, an empty store) is still
    challenged and rejected: the verifier reads h_0 … h_N from the commit's calldata on chain."""
    from protocol.artifacts import LocalStore
    from protocol.events import JobState
    from protocol.hashing import sha256_hex
    from worker.arbiter import ArbiterConfig, ArbiterDaemon
    from worker.verifier import VerifierConfig, VerifierDaemon

    dep = short_arbiter_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=6)
    made_up = [sha256_hex(f"never computed {i}".encode()) for i in range(spec.num_segments + 1)]
    empty_store = LocalStore(tmp_path / "worker-store-that-serves-nothing")
    wrk.commit(job_id, made_up, sha256_hex(b"made-up weights"), sha256_hex(b"made-up fingerprint"), empty_store.uri)
    assert sub.committed_trace(job_id) == made_up  # anyone can read it, without the worker

    common = {"network": anvil.rpc_url, "confirmations": 0, "poll_interval": 0.05, "device": "cpu",
              "start_block": 0}
    v = VerifierDaemon(VerifierConfig(**common, data_dir=tmp_path / "v", store=str(tmp_path / "v-store"),
                                      verify_fraction=0.0, watch_jobs=[job_id]), w3=w3, account=verifier,
                       deployment=dep)
    a = ArbiterDaemon(ArbiterConfig(**common, data_dir=tmp_path / "a", store=str(tmp_path / "evidence")),
                      w3=w3, account=arbiter, deployment=dep)
    for daemon in (v, a):
        daemon.open()
        daemon.on_start()
    try:
        run_until(v, lambda: v.job_state(job_id) == "challenged")
        assert v._checks_metric.labels(v.name, "checkpoint_missing")._value.get() >= 1
        dispute = sub.dispute(job_id)
        assert dispute.h_i in made_up and dispute.challenger.lower() == verifier.address.lower()
        run_until(a, lambda: sub.job_state(job_id) == JobState.REJECTED)
        run_until(v, lambda: v.job_state(job_id) == "won")
    finally:
        for daemon in (v, a):
            daemon.close()
