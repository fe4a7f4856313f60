"""Disputes end to end on anvil, every role in its own process, balances checked to the wei.

One run covers the four scenarios of issue 6 at once (they share the chain, each has its own job):

1. `fake-trace`: the worker commits a made-up trace        → challenged, Rejected, collateral slashed
2. `tamper-segment`: one middle boundary hash altered       → challenged, Rejected, collateral slashed
3. `withhold-checkpoint`: one checkpoint deleted            → challenged, Rejected, collateral slashed
4. an honest worker challenged by a `buggy` verifier        → arbiter rules for the worker: bond to the
   worker, job back to Committed, then Finalized and paid

Processes: `tessera arbiter run` (encrypted keystore account), an honest `tessera verifier run` that
checks every job and every segment, a buggy one that watches only the honest worker, and one
`tessera worker run` per job (`--behaviour` for the cheats). Jobs are posted one at a time and each
cheating worker is stopped (SIGTERM, drained) once it has committed, so each worker takes exactly its
own job; the honest worker keeps running and finalizes its job itself after the dispute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

TOKEN = 10**18
ROOT = Path(__file__).resolve().parents[2]
PAYMENT = 40 * TOKEN
COLLATERAL = 100 * TOKEN
SCENARIOS = ["fake-trace", "tamper-segment", "withhold-checkpoint", "honest"]
DEADLINE_S = 240  # the whole dispute run (four jobs, three rulings, one finalize) must end by then
# The local parameter set with windows wide enough for seven Python processes sharing two CPU cores.
WINDOWS = {"challenge_window": 45, "arbiter_window": 45, "unbonding_delay": 900}


@pytest.fixture(scope="module")
def dispute_deployment(w3, deployer, tmp_path_factory):
    """A deployment of its own on the session anvil: local parameters with wider windows."""
    from protocol.deploy import DeployParams, deploy_all

    params = DeployParams.load("local").model_dump()
    params.update(WINDOWS)
    return deploy_all(w3, deployer, params, out_dir=tmp_path_factory.mktemp("dispute-deployment"))


@pytest.fixture(scope="module")
def client_for(w3, dispute_deployment):
    from protocol.client import TesseraClient

    return lambda account: TesseraClient(w3, dispute_deployment, account)


def tiny_spec(seed: int) -> Any:
    """Digits MLP, 8 steps in 4 segments: a replay takes milliseconds."""
    from engine.presets import digits_spec

    return digits_spec(steps=8, segment_steps=2, batch_size=16, seed=seed, schedule={"name": "constant"})


# ---------------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------------

class Processes:
    """Child processes with their logs in files; stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.children.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for name, proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.children:
            try:
                codes[name] = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(timeout=10)
        return codes


def cli(rpc: str, deployment_path: Path, account: str) -> list[str]:
    return [sys.executable, "-m", "protocol.cli.main", "--network", rpc, "--account", account,
            "--deployment", str(deployment_path)]


DAEMON_FLAGS = ["--confirmations", "0", "--poll-interval", "0.3", "--device", "cpu", "--log-format", "json"]


@pytest.mark.e2e
def test_four_dispute_scenarios_on_anvil(tmp_path, anvil, w3, dispute_deployment, client_for, submitter, worker,
                                         worker2, verifier, submitter2, arbiter, treasury, test_keys):
    from protocol.accounts import create_keystore
    from protocol.artifacts import LocalStore
    from protocol.events import JobState

    sub = client_for(submitter)
    sub.faucet(1_000 * TOKEN)
    from eth_account import Account

    # One account per cheating worker (accounts 6, 8, 9): each process owns its nonce.
    cheaters = {"fake-trace": worker2, "tamper-segment": Account.from_key(test_keys[8]),
                "withhold-checkpoint": Account.from_key(test_keys[9])}
    cheater_index = {"fake-trace": 6, "tamper-segment": 8, "withhold-checkpoint": 9}
    for account in (worker, *cheaters.values()):
        client = client_for(account)
        client.faucet(500 * TOKEN)
        client.stake(COLLATERAL)
    good_verifier, bad_verifier = client_for(verifier), client_for(submitter2)  # account 7 plays the buggy verifier
    for client in (good_verifier, bad_verifier):
        client.faucet(100 * TOKEN)
        client.stake(1 * TOKEN)

    people = {"submitter": submitter.address, "worker": worker.address, "verifier": verifier.address,
              "buggy": submitter2.address, "treasury": treasury.address,
              **{name: account.address for name, account in cheaters.items()}}
    before = {k: sub.token_balance(a) for k, a in people.items()}
    stake_before = {k: sub.stake_info(people[k]).staked for k in ("worker", *cheaters)}

    # One job per scenario, posted below one at a time; specs differ by seed (no shared checkpoints).
    spec_store = LocalStore(tmp_path / "specs")
    jobs: dict[str, int] = {}

    bond = sub.param("Disputes", "challenge_bond")
    fee_bps = sub.param("JobEscrow", "fee_bps")
    reward_bps = sub.param("Disputes", "challenger_reward_bps")
    compensation_bps = sub.param("Disputes", "submitter_compensation_bps")

    # The arbiter signs from an encrypted ape keystore, passphrase from an env var.
    ape_dir = tmp_path / "ape"
    create_keystore("e2e-arbiter", test_keys[4], "arbiter pass", data_folder=ape_dir, iterations=2)
    env = {**os.environ, "APE_DATA_FOLDER": str(ape_dir), "ARBITER_PASS": "arbiter pass",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs = Processes(tmp_path)
    rpc, dep = anvil.rpc_url, dispute_deployment.path
    try:
        procs.start("arbiter", cli(rpc, dep, "e2e-arbiter") + [
            "arbiter", "run", "--passphrase", "env:ARBITER_PASS", "--data-dir", str(tmp_path / "arbiter"),
            "--store", str(tmp_path / "evidence"), *DAEMON_FLAGS], env)
        procs.start("verifier", cli(rpc, dep, "TEST::3") + [
            "verifier", "run", "--data-dir", str(tmp_path / "verifier"), "--verify-fraction", "1",
            "--segments-per-check", "4", "--store", str(tmp_path / "verifier-store"), *DAEMON_FLAGS], env)
        procs.start("buggy", cli(rpc, dep, "TEST::7") + [
            "verifier", "run", "--data-dir", str(tmp_path / "buggy"), "--verify-fraction", "0",
            "--watch-worker", worker.address, "--behaviour", "buggy", "--store", str(tmp_path / "buggy-store"),
            *DAEMON_FLAGS], env)
        time.sleep(4)  # let the daemons import torch before the first commit opens the window
        deadline = time.monotonic() + DEADLINE_S
        for i, name in enumerate(SCENARIOS):
            spec = tiny_spec(seed=100 + i)
            spec_store.put(spec.canonical_bytes())
            jobs[name] = job_id = sub.post_job(spec, PAYMENT, COLLATERAL, spec_store.uri).job_id
            account = "TEST::2" if name == "honest" else f"TEST::{cheater_index[name]}"
            flags = ["--store", str(tmp_path / f"store-{name}"), "--data-dir", str(tmp_path / f"worker-{name}"),
                     "--confirmations", "0", "--poll-interval", "0.3", "--device-class", "cpu",
                     "--log-format", "json"]
            if name != "honest":
                flags += ["--behaviour", name]
            proc = procs.start(f"worker-{name}", cli(rpc, dep, account) + ["worker", "run", *flags], env)
            while sub.job_state(job_id) not in (JobState.COMMITTED, JobState.CHALLENGED, JobState.REJECTED):
                assert time.monotonic() < deadline and proc.poll() is None, procs.log(f"worker-{name}")[-3_000:]
                time.sleep(0.5)
            if name != "honest":
                proc.send_signal(signal.SIGTERM)  # done cheating: leave the next job to the next worker
                assert proc.wait(timeout=60) == 0, procs.log(f"worker-{name}")[-3_000:]

        while time.monotonic() < deadline:
            states = {name: sub.job_state(job_id) for name, job_id in jobs.items()}
            if all(states[n] == JobState.REJECTED for n in SCENARIOS[:3]) and states["honest"] == JobState.FINALIZED:
                break
            time.sleep(1)
            w3.provider.make_request("evm_mine", [])  # keep chain time moving with wall time
        states = {name: sub.job_state(job_id).label for name, job_id in jobs.items()}
        logs = {n: procs.log(n)[-3_000:] for n in ("arbiter", "verifier", "buggy")}
        assert states == {"fake-trace": "Rejected", "tamper-segment": "Rejected", "withhold-checkpoint": "Rejected",
                          "honest": "Finalized"}, (states, logs)
    finally:
        codes = procs.stop_all()
    assert all(code == 0 for code in codes.values()), codes  # every daemon drained gracefully

    # --- balances, to the wei ------------------------------------------------------------------------
    after = {k: sub.token_balance(a) for k, a in people.items()}
    delta = {k: after[k] - before[k] for k in people}
    slashed = COLLATERAL
    reward = slashed * reward_bps // 10_000
    compensation = slashed * compensation_bps // 10_000
    fee = PAYMENT * fee_bps // 10_000
    # Three rejected jobs: payment refunded + compensation each; the honest job's payment spent.
    assert delta["submitter"] == 3 * compensation - PAYMENT
    assert delta["verifier"] == 3 * reward  # bonds back, rewards in
    assert delta["treasury"] == 3 * (slashed - reward - compensation)
    for name, account in cheaters.items():
        assert delta[name] == 0  # never paid; its loss is its collateral, taken from its stake
        assert stake_before[name] - sub.stake_info(account.address).staked == COLLATERAL
        assert sub.stake_info(account.address).locked == 0
    assert delta["worker"] == PAYMENT - fee + bond  # paid, plus the buggy verifier's forfeited bond
    assert sub.stake_info(worker.address).staked == stake_before["worker"]
    assert sub.stake_info(worker.address).locked == 0
    assert delta["buggy"] == -bond

    # --- what the contract recorded, through decoded events -----------------------------------------
    for name in SCENARIOS:
        events = sub.job(jobs[name]).events
        challenged = [e for e in events if e.name == "Challenged"]
        verdicts = [e for e in events if e.name == "Verdict"]
        assert len(challenged) == 1 and len(verdicts) == 1, (name, [e.name for e in events])
        verdict = verdicts[0]
        expected_challenger = submitter2.address if name == "honest" else verifier.address
        assert challenged[0].challenger.lower() == expected_challenger.lower()
        assert verdict.worker_wrong is (name != "honest")
        assert verdict.slashed == (0 if name == "honest" else slashed)
        # The evidence artifact named in the verdict is in the arbiter's store and says the same.
        store_uri, _, evidence_hash = verdict.evidence_uri.partition("#evidence=")
        evidence = json.loads(LocalStore(tmp_path / "evidence").get(evidence_hash))
        assert evidence["job_id"] == jobs[name] and evidence["recomputed_hash"] == verdict.recomputed_hash
        assert evidence["decision"] == ("worker_right" if name == "honest" else "worker_wrong")
        assert evidence["arbiter_fingerprint"]["device_type"] == "cpu"
        if name in ("honest", "tamper-segment") and evidence["checkpoint"] == "ok":
            assert evidence["recomputed_hash"] != "0x" + "00" * 32  # it replayed
        if name == "honest":
            assert verdict.recomputed_hash == challenged[0].h_next  # the replay reached the committed hash
    arbiter_log = procs.log("arbiter")
    assert '"event": "ruling"' in arbiter_log and "arbiter_fingerprint" in arbiter_log

