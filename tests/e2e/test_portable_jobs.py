"""Portable jobs end to end on anvil: a worker whose fingerprints say it ran on an H100 is judged by CPU daemons.

Processes: `tessera arbiter run` (it publishes its machine class and the portable class at start), an
honest `tessera verifier run` that checks every job and every segment, and two worker personas started
with `--claim-device h100`: each run happens on this CPU, but the fingerprint the worker commits by (and
stores) describes an NVIDIA H100. A portable job's class holds only the arithmetic and engine versions,
so both commits are in the job's class and are judged by their bits alone:

1. the honest one (`--behaviour honest`) is checked clean by the CPU verifier and finalizes;
2. the dishonest one (`--behaviour tamper-segment`) is challenged by the verifier, the CPU arbiter rules
   it worker-wrong in the portable class and the collateral is slashed;
3. jobs whose class does not fit their spec (a native spec under the portable class, a portable spec
   under the arbiter's machine class) are never claimed by the workers: the second is cancelled by its
   submitter; the first is claimed by a rogue the test plays, whose commit the verifier challenges and
   the arbiter rules worker-wrong (`class_mismatch`), slashing it.

Stake and credits are checked to the wei.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_disputes import DAEMON, WORKER, Processes, cli, deploy_with_windows, wait_for

TOKEN = 10**18
PAYMENT = 40 * TOKEN
COLLATERAL = 100 * TOKEN
DEADLINE_S = 150
WINDOWS = {"execution_timeout": 150, "challenge_window": 30, "arbiter_window": 45, "reveal_window": 20,
           "max_segment_seconds": 60, "unbonding_delay": 1_000}


@pytest.fixture(scope="module")
def portable_deployment(w3, deployer, tmp_path_factory):
    """A deployment of its own (no class published yet: the arbiter does that)."""
    return deploy_with_windows(w3, deployer, WINDOWS, tmp_path_factory.mktemp("portable-deployment"))


def portable_spec(seed: int, arithmetic: str = "portable/1") -> Any:
    """Digits MLP, 4 steps in 2 segments."""
    from engine.presets import digits_spec

    return digits_spec(steps=4, segment_steps=2, batch_size=16, seed=seed, schedule={"name": "constant"},
                       arithmetic=arithmetic)


def verifier_state(data_dir: Path, job_id: int) -> str | None:
    path = data_dir / "verifier-jobs.sqlite"
    if not path.exists():
        return None
    try:
        with sqlite3.connect(path, timeout=5) as db:
            row = db.execute("SELECT state FROM verifier_jobs WHERE job_id=?", (job_id,)).fetchone()
    except sqlite3.OperationalError:  # the daemon has not created its table yet
        return None
    return row[0] if row else None


def worker_reason(data_dir: Path, job_id: int) -> str:
    """Why the worker daemon left job `job_id` where it is ('' while it has not looked at it)."""
    path = data_dir / "worker.sqlite"
    if not path.exists():
        return ""
    try:
        with sqlite3.connect(path, timeout=5) as db:
            row = db.execute("SELECT state, reason FROM worker_jobs WHERE job_id=?", (job_id,)).fetchone()
    except sqlite3.OperationalError:  # the daemon has not created its table yet
        return ""
    return f"{row[0]}: {row[1]}" if row else ""


def stores_h100_fingerprint(store: Path) -> bool:
    """Whether the worker's store serves a fingerprint describing an H100 (the one it committed by)."""
    for path in store.rglob("*"):
        if path.is_file() and path.stat().st_size < 8_192 and b"NVIDIA H100" in path.read_bytes():
            return json.loads(path.read_bytes())["device_type"] == "cuda"
    return False


@pytest.mark.e2e
def test_a_portable_job_claimed_on_an_h100_is_judged_by_cpu_daemons(tmp_path, anvil, w3, portable_deployment,
                                                                    submitter, worker, worker2, verifier, treasury,
                                                                    submitter2):
    import os

    from engine.determinism import portable_env_class
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient
    from protocol.events import ClaimKind, DisputeStatus, JobState
    from protocol.hashing import sha256_hex

    dep = portable_deployment
    client = lambda account: TesseraClient(w3, dep, account)  # noqa: E731
    sub = client(submitter)
    sub.faucet(1_000 * TOKEN)
    bond = sub.param("Disputes", "challenge_bond")
    rogue = submitter2
    for account, stake in ((worker, COLLATERAL), (worker2, COLLATERAL), (rogue, COLLATERAL), (verifier, 2 * bond)):
        c = client(account)
        c.faucet(500 * TOKEN)
        c.stake(stake)
    watched = [worker, worker2, rogue, verifier]
    stake_before = {a.address: sub.stake_info(a.address).staked for a in watched}
    descriptor, portable = portable_env_class("portable/1")

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs = Processes(tmp_path)
    rpc, path = anvil.rpc_url, dep.path
    spec_store = LocalStore(tmp_path / "specs")

    def post(spec: Any, payment: int) -> int:
        spec_store.put(spec.canonical_bytes())
        return sub.post_job(spec, payment, COLLATERAL, spec_store.uri).job_id

    def start_worker(name: str, account_index: int, behaviour: str, *extra: str) -> None:
        procs.start(name, cli("personas", rpc, path, f"TEST::{account_index}") + [
            "worker", "run", "--behaviour", behaviour, "--claim-device", "h100",
            "--store", str(tmp_path / f"store-{name}"), "--data-dir", str(tmp_path / f"worker-{name}"), *WORKER,
            *extra], env)

    started = time.monotonic()
    deadline = started + DEADLINE_S
    try:
        procs.start("arbiter", cli("protocol.cli.main", rpc, path, "TEST::4") + [
            "arbiter", "run", "--data-dir", str(tmp_path / "arbiter"), "--store", str(tmp_path / "evidence"),
            *DAEMON], env)
        procs.start("verifier", cli("protocol.cli.main", rpc, path, "TEST::3") + [
            "verifier", "run", "--data-dir", str(tmp_path / "verifier"), "--verify-fraction", "1",
            "--segments-per-check", "4", "--store", str(tmp_path / "verifier-store"), *DAEMON], env)
        wait_for(lambda: sub.env_class_open(portable), "the arbiter's portable class", deadline, procs, ("arbiter",))
        assert len([c for c in sub.env_classes() if c.open]) == 2  # its machine's class and the portable one

        # Classes that do not fit their specs (posted with the raw `post`; post_job refuses them).
        machine = sub.default_env_class()

        def post_misfit(spec: Any, env_class: str) -> int:
            spec_store.put(spec.canonical_bytes())
            return sub.post(PAYMENT, COLLATERAL, spec.spec_hash(), spec.num_segments, spec_store.uri,
                            env_class=env_class, segment_seconds=5).job_id

        misfit = post_misfit(portable_spec(300, arithmetic="native"), portable)
        cancelled = post_misfit(portable_spec(303), machine)
        honest = post(portable_spec(301), PAYMENT)
        assert sub.job(honest).job.env_class.lower() == portable  # chosen by post_job from the spec
        start_worker("honest", 2, "honest", "--min-payment", str(PAYMENT))
        wait_for(lambda: sub.job_state(honest) != JobState.OPEN, "the honest claim", deadline, procs, ("honest",))
        tampered = post(portable_spec(302), PAYMENT // 2)  # below the honest worker's minimum
        start_worker("tamper", 6, "tamper-segment")

        for job in (misfit, cancelled):  # neither worker claims them: no run of theirs lies in the class
            for name in ("honest", "tamper"):
                wait_for(lambda: "does not fit its spec" in worker_reason(tmp_path / f"worker-{name}", job),
                         f"worker {name} skipping job {job}", deadline, procs, (name,))
        assert "native spec posted under the portable class" in worker_reason(tmp_path / "worker-honest", misfit)
        assert "must be posted under its portable class" in worker_reason(tmp_path / "worker-honest", cancelled)
        sub.cancel(cancelled)
        # a rogue claims the misfit anyway and commits in its class: no honest commit exists there
        client(rogue).claim(misfit)
        client(rogue).commit(misfit, [sha256_hex(f"made up {i}".encode()) for i in range(3)],
                             sha256_hex(b"made-up weights"), str(tmp_path / "store-rogue"))

        def reached(expected: dict[int, JobState]) -> bool:
            w3.provider.make_request("evm_mine", [])  # keep chain time moving with wall time
            return {j: sub.job_state(j) for j in expected} == expected

        rejected = {tampered: JobState.REJECTED, misfit: JobState.REJECTED}
        wait_for(lambda: reached(rejected), f"the rulings {rejected}", deadline, procs,
                 ("arbiter", "verifier", "tamper"))
        wait_for(lambda: verifier_state(tmp_path / "verifier", honest) == "clean", "the verifier's clean check",
                 deadline, procs, ("verifier", "honest"))
        # no dispute is left whose windows a jump could close: skip the rest of the honest job's window
        gap = sub.job(honest).job.challenge_end - sub.chain_time() + 1
        w3.provider.make_request("evm_increaseTime", [max(gap, 0)])
        expected = {**rejected, honest: JobState.FINALIZED, cancelled: JobState.CANCELLED}
        wait_for(lambda: reached(expected), f"the final states {expected}", deadline, procs, ("honest",))
        wait_for(lambda: all(not d.open for j in (tampered, misfit) for d in sub.disputes_of_job(j)),
                 "every dispute closed", deadline, procs, ("verifier",))
    finally:
        codes = procs.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    elapsed = time.monotonic() - started

    # both workers committed by an H100 fingerprint, in the portable class
    assert stores_h100_fingerprint(tmp_path / "store-honest") and stores_h100_fingerprint(tmp_path / "store-tamper")
    [dispute] = sub.disputes_of_job(tampered)
    assert (dispute.challenger, dispute.claim, dispute.status) == (verifier.address, ClaimKind.SEGMENT,
                                                                   DisputeStatus.WORKER_WRONG)
    [verdict] = [e for e in sub.job(tampered).events if e.name == "Verdict"]
    assert verdict.worker_wrong and verdict.slashed == COLLATERAL
    evidence = json.loads(LocalStore(tmp_path / "evidence").get(verdict.evidence_uri.partition("#evidence=")[2]))
    assert evidence["env_class"].lower() == portable and evidence["environment"] == descriptor
    assert evidence["decision"] == "worker_wrong" and evidence["results"][0]["outcome"] == "mismatch"
    [dispute] = sub.disputes_of_job(misfit)  # the verifier's first finding: the initial state, judged first
    assert (dispute.challenger, dispute.claim, dispute.status) == (verifier.address, ClaimKind.INITIAL,
                                                                   DisputeStatus.WORKER_WRONG)
    [verdict] = [e for e in sub.job(misfit).events if e.name == "Verdict"]
    evidence = json.loads(LocalStore(tmp_path / "evidence").get(verdict.evidence_uri.partition("#evidence=")[2]))
    assert evidence["results"][0]["outcome"] == "class_mismatch" and verdict.slashed == COLLATERAL

    # stake and credits, to the wei
    reward = COLLATERAL * sub.param("Disputes", "challenger_reward_bps") // 10_000
    compensation = COLLATERAL * sub.param("Disputes", "submitter_compensation_bps") // 10_000
    fee_bps = sub.param("JobEscrow", "fee_bps")
    staked = {a.address: sub.stake_info(a.address).staked for a in watched}
    assert stake_before[worker2.address] - staked[worker2.address] == COLLATERAL
    assert stake_before[rogue.address] - staked[rogue.address] == COLLATERAL
    assert staked[worker.address] == stake_before[worker.address]
    assert staked[verifier.address] == stake_before[verifier.address]
    assert all(sub.stake_info(a.address).locked == 0 for a in watched)
    assert sub.owed(verifier.address) == {"JobEscrow": 0, "Disputes": 2 * reward}
    assert sub.owed(treasury.address)["Disputes"] == 2 * (COLLATERAL - reward - compensation)
    assert sub.owed(submitter.address) == {"JobEscrow": PAYMENT // 2 + PAYMENT, "Disputes": 2 * compensation}
    [paid] = [e for e in sub.job(honest).events if e.name == "JobFinalized"]
    assert (paid.worker, paid.worker_payout) == (worker.address, PAYMENT - PAYMENT * fee_bps // 10_000)
    assert elapsed < 120, f"took {elapsed:.0f}s"
