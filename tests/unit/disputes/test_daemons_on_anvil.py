"""The verifier and arbiter daemons in this process on anvil (real chain, real engine, real children).

1. A worker that publishes nothing is still challenged and rejected: the trace is in the commit's log.
2. An arbiter that cannot reproduce a job's class stays silent, and the job is voided: nobody is paid,
   nobody slashed (audit F-03's escape is closed: silence no longer favours the worker).
3. A restart of the verifier reveals the challenge it filed before (the salt is persisted) and never
   files twice.
"""

from __future__ import annotations

import json

import pytest

TOKEN = 10**18


def deploy_with(w3, deployer, out_dir, **windows):
    """A fresh deployment with the local parameters and these windows, the local class open."""
    from protocol.deploy import DeployParams, deploy_all
    from worker.testing_chain import open_local_env_class

    params = DeployParams.load("local").model_dump()
    params.update(windows)
    dep = deploy_all(w3, deployer, params, out_dir=out_dir)
    open_local_env_class(w3, dep)
    return dep


@pytest.fixture(scope="module")
def dispute_deployment(w3, deployer, tmp_path_factory):
    return deploy_with(w3, deployer, tmp_path_factory.mktemp("disputes-daemons"), challenge_window=600,
                       arbiter_window=30, reveal_window=60, unbonding_delay=2_500)


def claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed, env_class=None, spec=None):
    """Fund and stake the personas, post a tiny digits job (or `spec`) and let `worker` claim it."""
    from engine.presets import digits_spec
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient

    sub, wrk, ver = (TesseraClient(w3, dep, a) for a in (submitter, worker, verifier))
    for client, stake in ((sub, 0), (wrk, 50), (ver, 20)):
        client.faucet(200 * TOKEN)
        if stake:
            client.stake(stake * TOKEN)
    if spec is None:
        spec = digits_spec(steps=4, segment_steps=2, batch_size=16, schedule={"name": "constant"}, seed=seed)
    specs = LocalStore(tmp_path / "specs")
    specs.put(spec.canonical_bytes())
    job_id = sub.post_job(spec, 10 * TOKEN, 20 * TOKEN, specs.uri, env_class=env_class).job_id
    wrk.claim(job_id)
    return sub, wrk, ver, spec, job_id


def run_until(daemon, condition, timeout=120.0):
    """Drive `daemon` iteration by iteration (its checks run on threads) until `condition` holds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemon.run_once()
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{daemon.name}: condition not reached in {timeout:g}s; jobs {daemon.job_counts()}")


def daemons(tmp_path, anvil, w3, dep, verifier, arbiter, job_id, verifier_cls=None):
    from worker.arbiter import ArbiterConfig, ArbiterDaemon
    from worker.verifier import VerifierConfig, VerifierDaemon

    common = {"network": anvil.rpc_url, "confirmations": 0, "poll_interval": 0.05, "device": "cpu", "start_block": 0}
    v = (verifier_cls or VerifierDaemon)(
        VerifierConfig(**common, data_dir=tmp_path / "v", store=str(tmp_path / "v-store"), verify_fraction=0.0,
                       watch_jobs=[job_id], segments_per_check=2), w3=w3, account=verifier, deployment=dep)
    a = ArbiterDaemon(ArbiterConfig(**common, data_dir=tmp_path / "a", store=str(tmp_path / "evidence")),
                      w3=w3, account=arbiter, deployment=dep)
    for daemon in (v, a):
        daemon.open()
        daemon.on_start()
    return v, a


def test_worker_cannot_withhold_the_trace(tmp_path, anvil, w3, dispute_deployment, submitter, worker, verifier,
                                          arbiter):
    """A worker that publishes nothing (no checkpoints, an empty store) is still challenged and rejected."""
    from protocol.artifacts import LocalStore
    from protocol.events import ClaimKind, JobState
    from protocol.hashing import sha256_hex

    dep = dispute_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=6)
    made_up = [sha256_hex(f"never computed {i}".encode()) for i in range(spec.num_segments + 1)]
    empty_store = LocalStore(tmp_path / "worker-store-that-serves-nothing")
    wrk.commit(job_id, made_up, sha256_hex(b"made-up weights"), empty_store.uri)
    assert sub.committed_trace(job_id) == made_up  # anyone can read it, without the worker
    v, a = daemons(tmp_path, anvil, w3, dep, verifier, arbiter, job_id)
    try:
        run_until(v, lambda: v.job_state(job_id) == "revealed")
        dispute = sub.dispute(int(v._row(job_id)["dispute_id"]))
        assert dispute.claim is ClaimKind.INITIAL or dispute.claim is ClaimKind.UNAVAILABLE
        assert dispute.challenger.lower() == verifier.address.lower()
        run_until(a, lambda: sub.job_state(job_id) == JobState.REJECTED)
        run_until(v, lambda: v.job_state(job_id) == "won")
        assert ver.owed()["Disputes"] > 0  # the reward, pulled later
    finally:
        for daemon in (v, a):
            daemon.close()


def test_an_arbiter_that_cannot_reproduce_the_class_voids_the_job(tmp_path, anvil, w3, dispute_deployment, submitter,
                                                                  worker, verifier, arbiter, time_travel):
    """F-03 closed: a job in a class the arbiter does not actually reproduce cannot be judged; the arbiter
    says so in its evidence and sends no verdict, and the timeout voids the job: the worker is not paid
    (the refusal that used to let a cheat finalize is gone), nobody is slashed, the submitter is refunded."""
    from engine.api import run_spec
    from personas.verifier import BuggyVerifier
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient
    from protocol.events import JobState

    dep = dispute_deployment
    foreign = "0x" + "f0" * 32  # published, but no machine of this arbiter reproduces it
    arb = TesseraClient(w3, dep, arbiter)
    if not arb.env_class_open(foreign):
        arb.send(arb.build_publish_env_class(foreign, "file:///a-class-we-do-not-have"))
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=5,
                                                   env_class=foreign)
    arb.send(arb.build_retire_env_class(foreign))  # closed for new jobs; this one keeps its term
    store = LocalStore(tmp_path / "worker-store")
    result = run_spec(spec, store, device="cpu")
    wrk.commit(job_id, result.state_hashes, result.output_hash, store.uri, env_class=foreign)
    stake_before = {c.address: c.stake_info().staked for c in (wrk, ver)}
    owed_before = sub.owed()["JobEscrow"]
    v, a = daemons(tmp_path, anvil, w3, dep, verifier, arbiter, job_id, verifier_cls=BuggyVerifier)
    try:
        run_until(v, lambda: v.job_state(job_id) == "revealed")
        dispute_id = int(v._row(job_id)["dispute_id"])
        run_until(a, lambda: a.dispute_state(dispute_id) == "cannot_judge")
        row = a.db.execute("SELECT * FROM arbiter_disputes WHERE dispute_id=?", (dispute_id,)).fetchone()
        assert "not reproducible here" in row["reason"]
        assert not [i for i in a.outbox.intents() if i.kind == "verdict"]
        evidence = json.loads(LocalStore(tmp_path / "evidence").get(row["evidence_uri"].partition("#evidence=")[2]))
        assert evidence["decision"] == "cannot_judge" and evidence["env_class"] == foreign
        time_travel(sub.dispute(dispute_id).deadline - sub.chain_time() + 2)
        run_until(v, lambda: v.job_state(job_id) == "voided")  # the verifier times the silent arbiter out
        assert sub.job_state(job_id) == JobState.VOIDED
        assert sub.owed()["JobEscrow"] == owed_before + 10 * TOKEN
        assert {c.address: c.stake_info().staked for c in (wrk, ver)} == stake_before
        assert wrk.stake_info().locked == 0 and ver.stake_info().locked == 0
    finally:
        for daemon in (v, a):
            daemon.close()


def test_a_daemon_asked_for_a_kernel_set_its_cpu_lacks_stops_at_start_with_the_reason(
        tmp_path, anvil, w3, dispute_deployment, verifier, monkeypatch):
    """torch 2.13 runs AVX-512 kernels on an AVX2-only CPU when told to, and the child dies of SIGILL: a
    verifier configured with `avx512` on such a CPU refuses to start, naming the missing flags."""
    from engine import determinism
    from protocol.errors import EngineError
    from worker.verifier import VerifierConfig, VerifierDaemon

    monkeypatch.setattr(determinism, "_cpu_flags", lambda: ["avx", "avx2", "fma"])
    config = VerifierConfig(network=anvil.rpc_url, confirmations=0, poll_interval=0.05, start_block=0,
                            data_dir=tmp_path / "v", store=str(tmp_path / "v-store"), cpu_capabilities=["avx512"])
    v = VerifierDaemon(config, w3=w3, account=verifier, deployment=dispute_deployment)
    v.open()
    try:
        with pytest.raises(EngineError, match="cannot run torch's avx512 kernels .*lacks avx512bw"):
            v.on_start()
        assert v.environments == {}
    finally:
        v.close()


def test_a_restarted_verifier_reveals_what_it_filed_and_never_files_twice(tmp_path, anvil, w3, dispute_deployment,
                                                                          submitter, worker, verifier, arbiter):
    from protocol.artifacts import LocalStore
    from protocol.events import DisputeStatus
    from protocol.hashing import sha256_hex
    from worker.verifier import VerifierConfig, VerifierDaemon

    dep = dispute_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=7)
    made_up = [sha256_hex(f"restart {i}".encode()) for i in range(spec.num_segments + 1)]
    wrk.commit(job_id, made_up, sha256_hex(b"x"), LocalStore(tmp_path / "nothing").uri)
    config = VerifierConfig(network=anvil.rpc_url, confirmations=0, poll_interval=0.05, start_block=0,
                            data_dir=tmp_path / "v", store=str(tmp_path / "v-store"), verify_fraction=0.0,
                            watch_jobs=[job_id])
    v = VerifierDaemon(config, w3=w3, account=verifier, deployment=dep)
    v.open()
    v.on_start()
    try:
        run_until(v, lambda: v.job_state(job_id) == "filed")
    finally:
        v.close()  # "crash" between the filing and the reveal
    v2 = VerifierDaemon(config, w3=w3, account=verifier, deployment=dep)
    v2.open()
    v2.on_start()
    try:
        run_until(v2, lambda: v2.job_state(job_id) == "revealed")
        for _ in range(5):
            v2.run_once()
        filings = [i.key for i in v2.outbox.intents() if i.kind == "file_challenge"]
        assert filings == [f"file:{job_id}"]
        disputes = sub.disputes_of_job(job_id)
        assert len(disputes) == 1 and disputes[0].status == DisputeStatus.REVEALED
    finally:
        v2.close()


@pytest.fixture(scope="module")
def roomy_deployment(w3, deployer, tmp_path_factory):
    """An arbiter window long enough to wait out an earlier filing's reveal window."""
    return deploy_with(w3, deployer, tmp_path_factory.mktemp("roomy-disputes"), challenge_window=600,
                       arbiter_window=600, reveal_window=60, unbonding_delay=5_000)


def arbiter_only(tmp_path, anvil, w3, dep, arbiter):
    from worker.arbiter import ArbiterConfig, ArbiterDaemon

    a = ArbiterDaemon(ArbiterConfig(network=anvil.rpc_url, confirmations=0, poll_interval=0.05, device="cpu",
                                    start_block=0, data_dir=tmp_path / "a", store=str(tmp_path / "evidence")),
                      w3=w3, account=arbiter, deployment=dep)
    a.open()
    a.on_start()
    return a


def test_a_flood_of_one_claim_costs_the_arbiter_one_replay(tmp_path, anvil, w3, roomy_deployment, submitter, worker,
                                                           verifier, worker2, arbiter):
    """A griefer files the same (false) claim four times, once as UNAVAILABLE: the arbiter replays segment 0
    once and rules all four with that one ruling and evidence; the honest job resumes."""
    from engine.api import run_spec
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient
    from protocol.events import DisputeStatus, JobState

    dep = roomy_deployment
    sub, wrk, _ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=11)
    store = LocalStore(tmp_path / "worker-store")
    result = run_spec(spec, store, device="cpu")
    wrk.commit(job_id, result.state_hashes, result.output_hash, store.uri)
    griefer = TesseraClient(w3, dep, worker2)
    griefer.faucet(100 * TOKEN)
    griefer.stake(50 * TOKEN)
    ids = [griefer.challenge(job_id, claim, 0)[0] for claim in ("segment", "segment", "unavailable", "segment")]
    a = arbiter_only(tmp_path, anvil, w3, dep, arbiter)
    recomputed: list[int] = []
    original = a._recompute
    a._recompute = lambda dispute_id, *rest: (recomputed.append(dispute_id), original(dispute_id, *rest))[1]
    try:
        run_until(a, lambda: sub.job_state(job_id) == JobState.COMMITTED)
    finally:
        a.close()
    assert recomputed == [ids[0]]  # the earliest deadline first, then reused
    disputes = [sub.dispute(i) for i in ids]
    assert all(d.status == DisputeStatus.WORKER_RIGHT for d in disputes)
    verdicts = [e for e in sub.job_events(job_id) if e.name == "Verdict"]
    assert sorted(e.dispute_id for e in verdicts) == sorted(ids)
    assert len({e.evidence_uri for e in verdicts}) == 1
    assert not any(e.worker_wrong for e in verdicts)


def test_the_arbiter_waits_for_an_earlier_sealed_filing_before_rewarding(tmp_path, anvil, w3, roomy_deployment,
                                                                         submitter, worker, verifier, worker2,
                                                                         arbiter):
    """The honest verifier files first (sealed); the cheater's accomplice, who knows the fault, files after
    it and reveals at once, hoping the arbiter rules before the honest reveal and hands the reward to the
    accomplice (the contract rewards the earliest-filed *revealed* challenger). The arbiter finds the worker
    wrong but waits for the earlier filing; once it is revealed, the reward goes to the honest verifier."""
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient
    from protocol.events import JobState
    from protocol.hashing import sha256_hex

    dep = roomy_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=12)
    made_up = [sha256_hex(f"leader {i}".encode()) for i in range(spec.num_segments + 1)]
    wrk.commit(job_id, made_up, sha256_hex(b"made up"), LocalStore(tmp_path / "nothing").uri)
    honest_id, salt, _ = ver.file_challenge(job_id, "initial", 0)
    accomplice = TesseraClient(w3, dep, worker2)
    accomplice.faucet(100 * TOKEN)
    accomplice.stake(20 * TOKEN)
    quick_id, _ = accomplice.challenge(job_id, "initial", 0)
    a = arbiter_only(tmp_path, anvil, w3, dep, arbiter)
    try:
        run_until(a, lambda: a.dispute_state(quick_id) == "pending_wait")
        assert a._queue()[0] == quick_id  # the held verdict is looked at first on every tick
        for _ in range(5):
            a.run_once()
        assert not [i for i in a.outbox.intents() if i.kind == "verdict"]
        assert sub.job_state(job_id) == JobState.CHALLENGED
        ver.reveal_challenge(honest_id, "initial", 0, salt)
        run_until(a, lambda: sub.job_state(job_id) == JobState.REJECTED)
    finally:
        a.close()
    (verdict,) = [e for e in sub.job_events(job_id) if e.name == "Verdict"]
    assert verdict.worker_wrong and verdict.rewarded == ver.address
    assert ver.owed()["Disputes"] > 0 and accomplice.owed()["Disputes"] == 0


def test_a_reorged_filing_and_a_reorged_verdict_are_sent_again(tmp_path, anvil, w3, roomy_deployment, submitter,
                                                               worker, verifier, arbiter):
    """Issue 16 for the dispute daemons: the verifier's filing is reorganised away before its reveal,
    and later the arbiter's worker-wrong verdict is. Each daemon converges on the chain: the verifier
    files (or re-sends) once more and reveals, the arbiter rules again, the cheat is Rejected and slashed,
    the verifier is rewarded, nobody files twice and no nonce is left unfilled."""
    from protocol.artifacts import LocalStore
    from protocol.events import DisputeStatus, JobState
    from protocol.hashing import sha256_hex
    from worker.testing_chain import no_nonce_gap, reorg_from

    dep = roomy_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=13)
    made_up = [sha256_hex(f"reorg {i}".encode()) for i in range(spec.num_segments + 1)]
    wrk.commit(job_id, made_up, sha256_hex(b"made up"), LocalStore(tmp_path / "nothing").uri)
    v, a = daemons(tmp_path, anvil, w3, dep, verifier, arbiter, job_id)
    try:
        run_until(v, lambda: v.job_state(job_id) == "filed")
        filed_block = next(e for e in sub.job_events(job_id) if e.name == "ChallengeFiled").block_number
        reorg_from(w3, filed_block)
        assert sub.disputes_of_job(job_id) == []  # the filing is gone with its block
        run_until(v, lambda: v.job_state(job_id) == "revealed")
        disputes = sub.disputes_of_job(job_id)
        assert [d.status for d in disputes] == [DisputeStatus.REVEALED]
        assert disputes[0].challenger == ver.address
        run_until(a, lambda: sub.job_state(job_id) == JobState.REJECTED)
        verdict_block = next(e for e in sub.job_events(job_id) if e.name == "Verdict").block_number
        reorg_from(w3, verdict_block)
        assert sub.job_state(job_id) == JobState.CHALLENGED  # the verdict is gone with its block
        run_until(a, lambda: sub.job_state(job_id) == JobState.REJECTED)
        run_until(v, lambda: v.job_state(job_id) == "won")
    finally:
        for daemon in (v, a):
            daemon.close()
    events = sub.job_events(job_id)
    assert len([e for e in events if e.name == "ChallengeFiled"]) == 1
    (verdict,) = [e for e in events if e.name == "Verdict"]
    assert verdict.worker_wrong and verdict.rewarded == ver.address
    assert verdict.slashed == sub.job(job_id).job.collateral and ver.owed()["Disputes"] > 0
    assert no_nonce_gap(w3, verifier.address) and no_nonce_gap(w3, arbiter.address)


def test_a_check_of_a_commit_a_reorg_replaced_is_dropped(tmp_path, anvil, w3, roomy_deployment, submitter, worker,
                                                         verifier, arbiter):
    """Issue 16 for the verifier: while a check of a made-up commit runs on its thread, a reorg replaces
    that commit with the honest one. The faults found in the old commit say nothing of the new one: the
    verifier files nothing against the honest worker (its bond would be lost), checks the new commit
    and finds it clean."""
    import threading

    from engine.api import run_spec
    from protocol.artifacts import LocalStore
    from protocol.events import JobState
    from protocol.hashing import sha256_hex
    from worker.testing_chain import reorg_from

    dep = roomy_deployment
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=16)
    wrk.commit(job_id, [sha256_hex(f"replaced {i}".encode()) for i in range(spec.num_segments + 1)],
               sha256_hex(b"replaced"), LocalStore(tmp_path / "nothing").uri)
    store = LocalStore(tmp_path / "worker-store")
    honest = run_spec(spec, store, device="cpu")
    v, a = daemons(tmp_path, anvil, w3, dep, verifier, arbiter, job_id)
    a.close()
    gate = threading.Event()
    checks = v._recompute
    v._recompute = lambda *args: (gate.wait(60), checks(*args))[1]  # hold the first check until the reorg
    try:
        run_until(v, lambda: job_id in v._checks)
        reorg_from(w3, next(e for e in sub.job_events(job_id) if e.name == "JobCommitted").block_number)
        assert sub.job_state(job_id) == JobState.CLAIMED
        wrk.commit(job_id, honest.state_hashes, honest.output_hash, store.uri)
        gate.set()
        run_until(v, lambda: v.job_state(job_id) != "pending")
        row, filings = v._row(job_id), [i for i in v.outbox.intents() if i.kind == "file_challenge"]
    finally:
        gate.set()
        v.close()
    assert row["state"] == "clean" and row["result_root"] == sub.job(job_id).job.result_root
    assert filings == [] and sub.disputes_of_job(job_id) == []


def test_a_slow_loris_store_holds_up_only_its_own_job(tmp_path, anvil, w3, roomy_deployment, submitter, worker,
                                                      verifier, arbiter):
    """Issue 17 for the verifier: one job's artifact server trickles a byte every two seconds. Its check
    runs on a check thread, so a second job (a made-up trace) is checked and challenged meanwhile."""
    from protocol.artifacts import LocalStore
    from protocol.hashing import sha256_hex
    from worker.testing import SlowLoris
    from worker.verifier import VerifierConfig, VerifierDaemon

    dep = roomy_deployment
    loris = SlowLoris()
    sub, wrk, ver, spec, slow_job = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=14)
    wrk.commit(slow_job, [sha256_hex(f"slow {i}".encode()) for i in range(spec.num_segments + 1)],
               sha256_hex(b"slow"), f"http://127.0.0.1:{loris.port}")
    *_, fake_job = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=15)
    wrk.commit(fake_job, [sha256_hex(f"fake {i}".encode()) for i in range(spec.num_segments + 1)],
               sha256_hex(b"fake"), LocalStore(tmp_path / "nothing").uri)
    v = VerifierDaemon(VerifierConfig(network=anvil.rpc_url, confirmations=0, poll_interval=0.05, start_block=0,
                                      data_dir=tmp_path / "v", store=str(tmp_path / "v-store"), verify_fraction=0.0,
                                      watch_jobs=[slow_job, fake_job], fetch_timeout=60.0),
                       w3=w3, account=verifier, deployment=dep)
    v.open()
    v.on_start()
    try:
        run_until(v, lambda: v.job_state(fake_job) == "revealed", timeout=45)
        assert v.job_state(slow_job) == "pending"  # still being fetched, on its own thread
    finally:
        loris.close()
        v.close()


# ---------------------------------------------------------------------------------------------------
# Issue 17: a job's own failure costs its budget once; only our side's failures are retried
# ---------------------------------------------------------------------------------------------------

def committed_fake_job(w3, dep, submitter, worker, verifier, tmp_path, seed, *, spec_uri=None, artifact_uri=None):
    """A claimed tiny job committed with a made-up trace (nothing served unless the URIs say so)."""
    from protocol.artifacts import LocalStore
    from protocol.hashing import sha256_hex

    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=seed)
    if spec_uri is not None:  # post again under a URI that does not serve the spec, and claim that one
        job_id = sub.post_job(spec, 10 * TOKEN, 20 * TOKEN, spec_uri).job_id
        wrk.claim(job_id)
    wrk.commit(job_id, [sha256_hex(f"fake {seed} {i}".encode()) for i in range(spec.num_segments + 1)],
               sha256_hex(f"fake {seed}".encode()), artifact_uri or LocalStore(tmp_path / f"nothing-{seed}").uri)
    return sub, wrk, ver, spec, job_id


def verifier_watching(tmp_path, anvil, w3, dep, verifier, jobs):
    from worker.verifier import VerifierConfig, VerifierDaemon

    v = VerifierDaemon(VerifierConfig(network=anvil.rpc_url, confirmations=0, poll_interval=0.05, start_block=0,
                                      data_dir=tmp_path / "v", store=str(tmp_path / "v-store"), verify_fraction=0.0,
                                      watch_jobs=list(jobs)), w3=w3, account=verifier, deployment=dep)
    v.open()
    v.on_start()
    return v


def counting(daemon, key_of):
    """Wrap `daemon._recompute` to record (key, monotonic start) of every call."""
    import time

    calls: list[tuple[int, float]] = []
    original = daemon._recompute

    def wrapped(*args):
        calls.append((key_of(*args), time.monotonic()))
        return original(*args)

    daemon._recompute = wrapped
    return calls


def test_a_spec_nobody_serves_is_checked_once_and_challenged_unavailable(tmp_path, anvil, w3, roomy_deployment,
                                                                        submitter, worker, verifier):
    """Neither the spec URI nor the worker's store serves the spec: the arbiter rules that the worker's
    fault, so the verifier checks the job once and files UNAVAILABLE (no retry loop, no silent skip)."""
    from protocol.artifacts import LocalStore

    dep = roomy_deployment
    *_, job_id = committed_fake_job(w3, dep, submitter, worker, verifier, tmp_path, seed=21,
                                    spec_uri=LocalStore(tmp_path / "specs-gone").uri)
    v = verifier_watching(tmp_path, anvil, w3, dep, verifier, [job_id])
    calls = counting(v, lambda view, *rest: view.job_id)
    try:
        run_until(v, lambda: v.job_state(job_id) in ("filed", "revealed"), timeout=60)
        row = v._row(job_id)
        assert row["claim"] == "unavailable", dict(row)
        for _ in range(10):
            v.run_once()
        assert [job for job, _ in calls] == [job_id]
    finally:
        v.close()


def test_the_verifier_retries_only_its_own_failures_with_backoff(tmp_path, anvil, w3, roomy_deployment, submitter,
                                                                 worker, verifier, monkeypatch):
    """Three jobs: A's check fails twice on our side (disk full) and is retried with growing pauses, then
    challenged; B's check raises on something the job made (a hostile spec) and is recorded with its reason
    after ONE attempt; C's recomputation always exhausts its budget and is recorded clean with that reason
    after one attempt. None of them holds up the others."""
    import time

    from protocol.errors import SpecError
    from worker import judging as judging_module
    from worker.judging import CheckResult, Outcome

    dep = roomy_deployment
    jobs = [committed_fake_job(w3, dep, submitter, worker, verifier, tmp_path, seed=s)[-1] for s in (22, 23, 24)]
    a, b, c = jobs
    v = verifier_watching(tmp_path, anvil, w3, dep, verifier, jobs)
    calls: list[tuple[int, float]] = []
    original = v._recompute

    def flaky(view, trace, segments, environment, finish_by):
        calls.append((view.job_id, time.monotonic()))
        if view.job_id == a and len([j for j, _ in calls if j == a]) <= 2:
            raise OSError(28, "No space left on device")
        if view.job_id == b:
            raise SpecError("a hostile spec: an integer of 5000 digits")
        return original(view, trace, segments, environment, finish_by)

    def exhausted(spec, checks, **kwargs):
        return [CheckResult(check=ch, outcome=Outcome.ERROR, detail="recomputation exceeded its budget of 9s")
                for ch in checks]

    def judge_by_job(spec, checks, **kwargs):
        if kwargs["worker_store"].uri.endswith("nothing-24"):
            return exhausted(spec, checks, **kwargs)
        return real_judge(spec, checks, **kwargs)

    real_judge = judging_module.judge
    monkeypatch.setattr(judging_module, "judge", judge_by_job)
    v._recompute = flaky
    try:
        run_until(v, lambda: v.job_state(a) in ("filed", "revealed") and v.job_state(b) == "skipped"
                  and v.job_state(c) == "clean", timeout=90)
        for _ in range(10):
            v.run_once()
    finally:
        v.close()
    per_job = {j: [t for k, t in calls if k == j] for j in jobs}
    assert len(per_job[b]) == 1 and len(per_job[c]) == 1, per_job
    assert "5000 digits" in v_reason(tmp_path, b)
    assert "exceeded its budget" in v_reason(tmp_path, c)
    times = per_job[a]
    assert len(times) == 3 and times[1] - times[0] >= 1.5 and times[2] - times[1] >= 3.5, times


def v_reason(tmp_path, job_id):
    from worker.runtime.db import connect

    db = connect(tmp_path / "v" / "verifier-jobs.sqlite")
    try:
        return db.execute("SELECT reason FROM verifier_jobs WHERE job_id=?", (job_id,)).fetchone()["reason"]
    finally:
        db.close()


def test_a_worker_store_uri_that_names_no_store_is_ruled_once(tmp_path, anvil, w3, roomy_deployment, submitter,
                                                              worker, verifier, arbiter):
    """The worker committed a malformed store URI: no checkpoint can be fetched from it, which the ruling
    table calls the worker's fault. The arbiter recomputes once and rules it wrong (no retry every tick)."""
    from protocol.events import JobState

    dep = roomy_deployment
    sub, _wrk, ver, _spec, job_id = committed_fake_job(w3, dep, submitter, worker, verifier, tmp_path, seed=25,
                                                       artifact_uri="http://[::1/checkpoints")
    dispute_id, _ = ver.challenge(job_id, "segment", 0)
    a = arbiter_only(tmp_path, anvil, w3, dep, arbiter)
    calls = counting(a, lambda dispute_id, *rest: dispute_id)
    try:
        run_until(a, lambda: sub.job_state(job_id) == JobState.REJECTED, timeout=60)
    finally:
        a.close()
    assert [d for d, _ in calls if d == dispute_id] == [dispute_id]  # earlier tests' disputes are ruled too
    (verdict,) = [e for e in sub.job_events(job_id) if e.name == "Verdict"]
    assert verdict.worker_wrong


def test_the_arbiter_retries_only_its_own_failures_with_backoff(tmp_path, anvil, w3, roomy_deployment, submitter,
                                                                worker, verifier, arbiter):
    """Dispute X's recomputation fails twice on our side (disk full) and is retried with growing pauses,
    then ruled; dispute Y's raises on something its job made and is ruled by the table's last row (cannot
    judge: the timeout voids the job) after ONE attempt, never retried."""
    import time

    from protocol.errors import StoreWriteError

    dep = roomy_deployment
    jobs = [committed_fake_job(w3, dep, submitter, worker, verifier, tmp_path, seed=s) for s in (26, 27)]
    x, y = (ver.challenge(job_id, "segment", 0)[0] for *_, ver, _spec, job_id in jobs)
    a = arbiter_only(tmp_path, anvil, w3, dep, arbiter)
    calls: list[tuple[int, float]] = []
    original = a._recompute

    def flaky(dispute_id, *rest):
        calls.append((dispute_id, time.monotonic()))
        if dispute_id == x and len([d for d, _ in calls if d == x]) <= 2:
            raise StoreWriteError("cannot write artifact: No space left on device")
        if dispute_id == y:
            raise ValueError("a hostile checkpoint header")
        return original(dispute_id, *rest)

    a._recompute = flaky
    try:
        run_until(a, lambda: a.dispute_state(x) == "ruled" and a.dispute_state(y) == "cannot_judge", timeout=90)
        for _ in range(10):
            a.run_once()
        reason = a.db.execute("SELECT reason FROM arbiter_disputes WHERE dispute_id=?", (y,)).fetchone()["reason"]
    finally:
        a.close()
    assert "hostile checkpoint header" in reason
    per_dispute = {d: [t for k, t in calls if k == d] for d in (x, y)}
    assert len(per_dispute[y]) == 1, per_dispute
    times = per_dispute[x]
    assert len(times) == 3 and times[1] - times[0] >= 1.5 and times[2] - times[1] >= 3.5, times


# ---------------------------------------------------------------------------------------------------
# Judging threads: a check starts only when a thread is free, earliest deadline first, and its budget
# is counted from its start (so a check that waited never runs past its window)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def queue_deployment(w3, deployer, tmp_path_factory):
    """A deployment of its own: no earlier test's disputes in the arbiter's queue."""
    return deploy_with(w3, deployer, tmp_path_factory.mktemp("queue-disputes"), challenge_window=600,
                       arbiter_window=600, reveal_window=60, unbonding_delay=5_000)


class Gate:
    """Stands in for `_recompute`: records each start, then blocks until the test releases that key."""

    def __init__(self, result, key_of, remaining_of):
        import threading

        self.result, self.key_of, self.remaining_of = result, key_of, remaining_of
        self.started: list[tuple[int, float, float]] = []  # (key, budget handed over, window left at start)
        self.release = {}
        self._lock = threading.Lock()
        self._threading = threading

    def __call__(self, *args):
        import time

        key, finish_by = self.key_of(*args), args[-1]
        with self._lock:
            event = self.release.setdefault(key, self._threading.Event())
            self.started.append((key, finish_by - time.monotonic(), self.remaining_of(*args)))
        event.wait(60)
        return self.result

    def running(self):
        return [k for k, *_ in self.started if not self.release[k].is_set()]

    def free(self, key):
        self.release[key].set()


def drive(daemon, times=8):
    import time

    for _ in range(times):
        daemon.run_once()
        time.sleep(0.05)


def play_earliest_deadline_first(daemon, gate, keys, threads, time_travel):
    """Three held recomputations, `keys` in deadline order: the two earliest start on the free threads;
    once the first is freed, after the third's window shrank, the third starts with what is left of it."""
    first, second, last = keys
    drive(daemon)
    assert sorted(gate.running()) == sorted([first, second]) and len(gate.started) == threads
    time_travel(100)  # the waiting one's window shrinks while both threads are busy
    gate.free(first)
    run_until(daemon, lambda: len(gate.started) == 3, timeout=30)
    key, budget, remaining = gate.started[-1]
    assert key == last and budget <= remaining + 2, gate.started
    for held in (second, last):
        gate.free(held)


def test_the_verifier_starts_checks_on_free_threads_earliest_deadline_first(tmp_path, anvil, w3, queue_deployment,
                                                                            submitter, worker, verifier,
                                                                            time_travel):
    from protocol.hashing import sha256_hex
    from worker.verifier import CHECK_THREADS

    dep = queue_deployment
    claimed = [claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=s) for s in (31, 32, 33)]
    for _sub, wrk, _ver, spec, job_id in reversed(claimed):  # the highest id commits first: earliest deadline
        wrk.commit(job_id, [sha256_hex(f"queue {job_id} {i}".encode()) for i in range(spec.num_segments + 1)],
                   sha256_hex(b"queue"), f"file:///nothing-{job_id}")
        time_travel(5)
    first, second, last = (job_id for *_, job_id in reversed(claimed))
    v = verifier_watching(tmp_path, anvil, w3, dep, verifier, [first, second, last])
    margin = v.config.challenge_margin
    gate = Gate(([], 0.0), lambda view, *rest: view.job_id,
                lambda view, *rest: view.job.challenge_end - v.client.chain_time() - margin)
    v._recompute = gate
    try:
        play_earliest_deadline_first(v, gate, (first, second, last), CHECK_THREADS, time_travel)
        run_until(v, lambda: all(v.job_state(j) == "clean" for j in (first, second, last)), timeout=30)
    finally:
        for key in list(gate.release):
            gate.free(key)
        v.close()


def test_the_arbiter_starts_recomputations_on_free_threads_earliest_deadline_first(
        tmp_path, anvil, w3, queue_deployment, submitter, worker, verifier, arbiter, time_travel):
    from protocol.artifacts import LocalStore
    from protocol.hashing import sha256_hex
    from worker.arbiter import JUDGE_THREADS, Decision, Ruling

    dep = queue_deployment
    jobs = []
    for seed in (34, 35, 36):
        _sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=seed)
        wrk.commit(job_id, [sha256_hex(f"arb {job_id} {i}".encode()) for i in range(spec.num_segments + 1)],
                   sha256_hex(b"arb"), LocalStore(tmp_path / "nothing").uri)
        jobs.append(job_id)
    filed = [ver.file_challenge(job_id, "initial", 0)[:2] for job_id in jobs]  # ids in filing order
    for dispute_id, salt in reversed(filed):  # revealed last-filed first: its deadline is the earliest
        ver.reveal_challenge(dispute_id, "initial", 0, salt)
        time_travel(5)
    first, second, last = (dispute_id for dispute_id, _ in reversed(filed))
    a = arbiter_only(tmp_path, anvil, w3, dep, arbiter)
    margin = a.config.rule_margin
    gate = Gate((Ruling(decision=Decision.CANNOT_JUDGE, reason="cannot judge: test"), ""),
                lambda dispute_id, *rest: dispute_id,
                lambda dispute_id, dispute, *rest: dispute.deadline - a.client.chain_time() - margin)
    a._recompute = gate
    try:
        play_earliest_deadline_first(a, gate, (first, second, last), JUDGE_THREADS, time_travel)
        run_until(a, lambda: all(a.dispute_state(d) == "cannot_judge" for d in (first, second, last)), timeout=30)
    finally:
        for key in list(gate.release):
            gate.free(key)
        a.close()


def test_an_escalated_referee_game_is_ruled_by_the_arbiter_daemon_and_a_running_one_is_not(
        tmp_path, anvil, w3, deployer, submitter, worker, verifier, arbiter, tmp_path_factory):
    """A refereed SEGMENT claim waits in the arbiter as `refereed` while its game runs (no window: ruling it
    then would revert, and marking it missed would lose it). A lying challenger steers the game to the
    max pooling backward of a CNN over 4×4 windows by 1 (a call without an on-chain rule), so it escalates;
    once `settle_refereed` opens the window, the arbiter daemon replays the pinned step from the agreed state the worker serves (level 2)
    and rules for the worker."""
    from engine.api import run_spec
    from engine.determinism import portable_env_class
    from engine.referee_kit import build_kit
    from personas.referee_game import steered_challenger
    from protocol import referee_kit as rk
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient
    from protocol.events import DisputeStatus
    from protocol.spec import load_spec
    from protocol.state_naming import StateRootNaming
    from tests.unit.disputes.test_referee_player import Party, _drive
    from tests.unit.portable.test_step_record import wide_pool_cnn
    from worker.referee_duty import agreed_binding, referee_contracts
    from worker.referee_player import RefereePlayer

    portable = portable_env_class("portable/1")[1]
    dep = deploy_with(w3, deployer, tmp_path_factory.mktemp("refereed-arbiter"), challenge_window=600,
                      arbiter_window=30, reveal_window=60, unbonding_delay=200_000, referee_move_seconds=60,
                      refereed_class=portable)  # fmt: skip
    arb = TesseraClient(w3, dep, arbiter)
    arb.send(arb.build_publish_env_class(portable, "file:///portable-class.json"))
    sub, wrk, ver, spec, job_id = claimed_tiny_job(w3, dep, submitter, worker, verifier, tmp_path, seed=0,
                                                   env_class=portable, spec=load_spec(wide_pool_cnn()))
    store = LocalStore(tmp_path / "worker-store")
    result = run_spec(spec, store, device="cpu")
    wrk.commit(job_id, result.state_hashes, result.output_hash, store.uri, env_class=portable)
    record = result.metrics["step_record"]
    skeleton = (bytes.fromhex(record["skeleton_root"].removeprefix("0x")), int(record["length"]), int(record["per_epoch"]))
    binding = agreed_binding(spec, 0, skeleton)
    h_0 = store.get(result.state_hashes[0], naming=StateRootNaming(binding))
    dispute_id, salt, _ = ver.file_challenge(job_id, "segment", 0)
    ver.reveal_refereed(dispute_id, 0, salt, h_0, binding)

    a = arbiter_only(tmp_path, anvil, w3, dep, arbiter)
    try:
        run_until(a, lambda: a.dispute_state(dispute_id) == "refereed")
        for _ in range(5):
            a.run_once()
        assert a.dispute_state(dispute_id) == "refereed" and not [i for i in a.outbox.intents() if i.kind == "verdict"]

        kit_dir = tmp_path / "kit"
        build_kit(spec, store, 0, h_0, kit_dir, skeleton=skeleton)
        kit = build_kit(spec, store, 0, h_0, kit_dir, step=0)
        contracts = referee_contracts(sub)
        defender = Party(w3, RefereePlayer(w3, contracts, "defender", rk.load_kit(kit_dir)), tmp_path / "d.db")
        undecided = next(j for j, e in enumerate(kit.entries) if e.parsed.kernel == "max_pool_backward")  # no rule: 4×4 by 1
        assert rk.rules_of(kit.entries[undecided].parsed, 0) is None
        liar = Party(w3, steered_challenger(w3, contracts, kit, undecided, 0), tmp_path / "c.db")
        assert _drive([defender, liar], sub.game_of(dispute_id)) == []
        game = sub.referee_game_view(dispute_id)
        assert game is not None and game.escalated and not game.decided
        sub.settle_refereed(dispute_id)
        assert sub.dispute(dispute_id).deadline > 0  # the arbiter's window is open now

        run_until(a, lambda: sub.dispute(dispute_id).status == DisputeStatus.WORKER_RIGHT)
        [verdict] = [e for e in sub.job(job_id).events if e.name == "Verdict"]
        assert not verdict.worker_wrong and verdict.evidence_uri  # the arbiter's ruling, with its evidence
        assert a.dispute_state(dispute_id) == "ruled"
        [ruled] = a.db.execute("SELECT check_key FROM arbiter_rulings").fetchall()
        assert ruled["check_key"].split(":")[1] == "step" and ruled["check_key"].endswith(f":{game.step}")
    finally:
        a.close()
