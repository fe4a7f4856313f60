"""The v2 dispute game end to end on anvil: every role its own process, the audit's escapes played for real.

Processes: `tessera arbiter run` (encrypted keystore account; it publishes its environment class on
chain at start), an honest `tessera verifier run` that checks every job and every segment, a buggy
verifier (`python -m personas verifier run`) that watches the honest worker, and one worker process per
scenario (`python -m personas worker run --behaviour …` for the dishonest ones). Jobs are posted one at
a time. The scenarios (../shared/security/audit-2026-12.md):

1. `foreign-environment` (F-03): the worker commits a made-up trace in an environment class of its own
   choosing → the escrow refuses the commit; the job expires and costs the worker its compensation.
2. `tamper-segment` + a puppet (F-01): the worker's second address challenges a correct segment one block
   after the commit → the honest verifier still challenges the wrong segment, the job is Rejected, and
   the puppet's bond goes to the treasury.
3. a worker that commits through a forwarder contract (F-15) → the trace is read from the log like any
   other: challenged and Rejected.
4. `late-checkpoint` (F-08): a checkpoint is served only once a dispute is filed → the verifier's
   UNAVAILABLE claim is ruled for the (honest) worker; a tenth of the verifier's bond goes to the treasury
   (never to the worker: late serving farms nothing, and UNAVAILABLE floods are not free).
5. an honest worker challenged by the buggy verifier → the arbiter rules for the worker, the buggy
   bond goes to the treasury (not to the worker), the job finalizes and the worker is paid.

Credits and stake are checked to the wei at the end.
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
DEADLINE_S = 300  # the whole run must end by then
# Local parameters with windows wide enough for seven Python processes sharing two CPU cores.
WINDOWS = {"execution_timeout": 150, "challenge_window": 45, "arbiter_window": 45, "reveal_window": 20,
           "max_segment_seconds": 60, "unbonding_delay": 1_000}


def deploy_with_windows(w3, deployer, windows: dict, out_dir) -> Any:
    """The local parameters with `windows`, deployed on the session anvil (no class published yet: the
    arbiter does that)."""
    from protocol.deploy import DeployParams, deploy_all

    params = DeployParams.load("local").model_dump()
    params.update(windows)
    return deploy_all(w3, deployer, params, out_dir=out_dir)


@pytest.fixture(scope="module")
def dispute_deployment(w3, deployer, tmp_path_factory):
    """A deployment of its own on the session anvil."""
    return deploy_with_windows(w3, deployer, WINDOWS, tmp_path_factory.mktemp("dispute-deployment"))


def tiny_spec(seed: int) -> Any:
    """Digits MLP, 8 steps in 4 segments: a replay takes milliseconds."""
    from engine.presets import digits_spec

    return digits_spec(steps=8, segment_steps=2, batch_size=16, seed=seed, schedule={"name": "constant"})


class Processes:
    """Child processes with their logs in files; stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        self.children[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        return self.children[name]

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str) -> int:
        proc = self.children[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.children)}


def cli(module: str, rpc: str, deployment: Path, account: str) -> list[str]:
    return [sys.executable, "-m", module, "--network", rpc, "--account", account, "--deployment", str(deployment)]


DAEMON = ["--confirmations", "0", "--poll-interval", "0.3", "--log-format", "json"]
WORKER = [*DAEMON, "--device-class", "cpu"]


def wait_for(predicate: Any, what: str, deadline: float, procs: Processes, names: tuple[str, ...] = ()) -> Any:
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(
                f"--- {n}\n{procs.log(n)[-2_500:]}" for n in names))
        time.sleep(0.4)


@pytest.mark.e2e
def test_the_audits_escapes_are_caught_by_the_real_daemons(tmp_path, anvil, w3, dispute_deployment, submitter,
                                                           worker, worker2, verifier, submitter2, treasury,
                                                           deployer, test_keys):
    from eth_account import Account

    from engine.api import initial_checkpoint
    from protocol.accounts import create_keystore
    from protocol.artifacts import LocalStore
    from protocol.client import TesseraClient
    from protocol.events import ClaimKind, DisputeStatus, JobState
    from protocol.hashing import sha256_hex

    dep = dispute_deployment
    client = lambda account: TesseraClient(w3, dep, account)  # noqa: E731
    sub = client(submitter)
    sub.faucet(1_000 * TOKEN)
    late_worker, foreign_worker = Account.from_key(test_keys[8]), Account.from_key(test_keys[9])
    puppet, wallet_owner = Account.create(), Account.create()
    for fresh in (puppet, wallet_owner):
        w3.provider.make_request("anvil_setBalance", [fresh.address, hex(10**20)])
    bond = sub.param("Disputes", "challenge_bond")
    for account, stake in ((worker, COLLATERAL), (worker2, COLLATERAL), (late_worker, COLLATERAL),
                           (foreign_worker, COLLATERAL), (verifier, 3 * bond), (submitter2, bond), (puppet, bond)):
        c = client(account)
        c.faucet(500 * TOKEN)
        c.stake(stake)
    reward_bps = sub.param("Disputes", "challenger_reward_bps")
    compensation_bps = sub.param("Disputes", "submitter_compensation_bps")
    fee_bps = sub.param("JobEscrow", "fee_bps")
    watched = [worker, worker2, late_worker, foreign_worker, verifier, submitter2, puppet]
    stake_before = {a.address: sub.stake_info(a.address).staked for a in watched}

    # The arbiter signs from an encrypted ape keystore, passphrase from an env var.
    ape_dir = tmp_path / "ape"
    create_keystore("e2e-arbiter", test_keys[4], "arbiter pass", data_folder=ape_dir, iterations=2)
    env = {**os.environ, "APE_DATA_FOLDER": str(ape_dir), "ARBITER_PASS": "arbiter pass", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}
    procs = Processes(tmp_path)
    rpc, path = anvil.rpc_url, dep.path
    spec_store = LocalStore(tmp_path / "specs")
    jobs: dict[str, int] = {}

    def post(name: str, seed: int, payment: int = PAYMENT) -> int:
        spec = tiny_spec(seed)
        spec_store.put(spec.canonical_bytes())
        jobs[name] = sub.post_job(spec, payment, COLLATERAL, spec_store.uri).job_id
        return jobs[name]

    def start_worker(name: str, account_index: int, behaviour: str | None, *extra: str) -> subprocess.Popen:
        flags = ["--store", str(tmp_path / f"store-{name}"), "--data-dir", str(tmp_path / f"worker-{name}"), *WORKER,
                 *extra]
        if behaviour is None:
            return procs.start(name, cli("protocol.cli.main", rpc, path, f"TEST::{account_index}")
                               + ["worker", "run", *flags], env)
        return procs.start(name, cli("personas", rpc, path, f"TEST::{account_index}")
                           + ["worker", "run", "--behaviour", behaviour, *flags], env)

    deadline = time.monotonic() + DEADLINE_S
    try:
        procs.start("arbiter", cli("protocol.cli.main", rpc, path, "e2e-arbiter") + [
            "arbiter", "run", "--passphrase", "env:ARBITER_PASS", "--data-dir", str(tmp_path / "arbiter"),
            "--store", str(tmp_path / "evidence"), *DAEMON], env)
        procs.start("verifier", cli("protocol.cli.main", rpc, path, "TEST::3") + [
            "verifier", "run", "--data-dir", str(tmp_path / "verifier"), "--verify-fraction", "1",
            "--segments-per-check", "4", "--store", str(tmp_path / "verifier-store"), *DAEMON], env)
        procs.start("buggy", cli("personas", rpc, path, "TEST::7") + [
            "verifier", "run", "--data-dir", str(tmp_path / "buggy"), "--verify-fraction", "0",
            "--watch-worker", worker.address, "--store", str(tmp_path / "buggy-store"), *DAEMON], env)
        # the arbiter opens its own environment class for jobs: nothing can be posted before
        wait_for(lambda: [c for c in sub.env_classes() if c.open], "the arbiter's environment class", deadline,
                 procs, ("arbiter",))

        # 1. F-03: a commit in a class of the worker's own choosing is refused by the escrow.
        job = post("foreign", 201)
        start_worker("foreign", 9, "foreign-environment")
        wait_for(lambda: "environment outside the job's class" in procs.log("foreign"), "the refused commit",
                 deadline, procs, ("foreign",))
        assert procs.stop("foreign") == 0
        assert sub.job_state(job) == JobState.CLAIMED

        # 2. F-01: a puppet challenge on a correct segment, one block after the commit, blocks nobody.
        job = post("tamper", 202)
        start_worker("tamper", 6, "tamper-segment")
        wait_for(lambda: sub.job_state(job) in (JobState.COMMITTED, JobState.CHALLENGED), "the tampered commit",
                 deadline, procs, ("tamper",))
        puppet_dispute, _ = client(puppet).challenge(job, "segment", 0)
        assert procs.stop("tamper") == 0

        # 3. F-15: a worker that is a contract wallet; the test plays it, committing a made-up trace.
        from tests.e2e.forwarder import ForwarderWallet

        wallet = ForwarderWallet.deploy(w3, dep, wallet_owner)
        wallet.call(dep.token, client(None).build_faucet(500 * TOKEN).data)
        wallet.call(dep.token, client(None).build_approve(dep.staking, 2**256 - 1).data)
        wallet.call(dep.staking, client(None).build_stake(COLLATERAL).data)
        job = post("forwarder", 203)
        spec = tiny_spec(203)
        wallet.call(dep.escrow, client(None).build_claim(job).data)
        made_up = [sha256_hex(initial_checkpoint(spec, None, device="cpu"))]
        made_up += [sha256_hex(f"never computed {i}".encode()) for i in range(spec.num_segments)]
        wallet.call(dep.escrow, client(None).build_commit(job, made_up, sha256_hex(b"made-up weights"),
                                                          str(tmp_path / "store-forwarder")).data)
        assert sub.committed_trace(job) == made_up  # read from the log, not from top-level calldata

        # 4. F-08: a checkpoint served only once a dispute is filed farms no bond.
        job = post("late", 204)
        start_worker("late", 8, "late-checkpoint", "--min-payment", str(PAYMENT))

        # 5. An honest worker, challenged by the buggy verifier (it takes only the cheaper job).
        wait_for(lambda: sub.job_state(job) != JobState.OPEN, "the late worker's claim", deadline, procs, ("late",))
        post("honest", 205, payment=PAYMENT // 2)
        start_worker("honest", 2, None)

        expected = {"foreign": JobState.CLAIMED, "tamper": JobState.REJECTED, "forwarder": JobState.REJECTED,
                    "late": JobState.FINALIZED, "honest": JobState.FINALIZED}

        def settled() -> bool:
            w3.provider.make_request("evm_mine", [])  # keep chain time moving with wall time
            return {n: sub.job_state(j) for n, j in jobs.items()} == expected

        wait_for(settled, f"the final states {expected}", deadline, procs, ("arbiter", "verifier", "buggy", "late",
                                                                              "honest"))
        # The verifier closes its dispute on a job another dispute settled, and every bond is free again.
        wait_for(lambda: all(not d.open for j in jobs.values() for d in sub.disputes_of_job(j)),
                 "every dispute closed", deadline, procs, ("verifier",))
    finally:
        codes = procs.stop_all()
    assert all(code == 0 for code in codes.values()), codes  # every daemon drained gracefully

    # The F-03 job expires: the worker that could not commit pays the submitter's compensation.
    expire_in = sub.job(jobs["foreign"]).job.deadline - sub.chain_time() + 2
    w3.provider.make_request("evm_increaseTime", [max(expire_in, 0)])
    w3.provider.make_request("evm_mine", [])
    sub.expire(jobs["foreign"])

    # --- the disputes, through contract state and decoded events --------------------------------------
    disputes = {name: sub.disputes_of_job(job) for name, job in jobs.items()}
    assert disputes["foreign"] == []
    by_challenger = {name: {d.challenger: d for d in ds} for name, ds in disputes.items()}
    assert by_challenger["tamper"][puppet.address].status == DisputeStatus.WORKER_RIGHT
    assert by_challenger["tamper"][verifier.address].status == DisputeStatus.WORKER_WRONG
    assert by_challenger["forwarder"][verifier.address].status == DisputeStatus.WORKER_WRONG
    late = by_challenger["late"][verifier.address]
    assert late.claim is ClaimKind.UNAVAILABLE and late.status == DisputeStatus.WORKER_RIGHT
    assert by_challenger["honest"][submitter2.address].status == DisputeStatus.WORKER_RIGHT
    assert verifier.address not in by_challenger["honest"] or \
        by_challenger["honest"][verifier.address].status != DisputeStatus.WORKER_WRONG
    for name in ("tamper", "forwarder"):
        [verdict] = [e for e in sub.job(jobs[name]).events if e.name == "Verdict" and e.worker_wrong]
        assert verdict.rewarded == verifier.address and verdict.slashed == COLLATERAL
        evidence = json.loads(LocalStore(tmp_path / "evidence").get(verdict.evidence_uri.partition("#evidence=")[2]))
        assert evidence["dispute_id"] == verdict.dispute_id and evidence["decision"] == "worker_wrong"
        assert evidence["recomputed_hash"] == verdict.recomputed_hash
    assert puppet_dispute == by_challenger["tamper"][puppet.address].dispute_id

    # --- stake and credits, to the wei ---------------------------------------------------------------
    slashed, reward = COLLATERAL, COLLATERAL * reward_bps // 10_000
    compensation = COLLATERAL * compensation_bps // 10_000
    expiry = COLLATERAL * sub.param("JobEscrow", "expiry_compensation_bps") // 10_000
    staked = {a.address: sub.stake_info(a.address).staked for a in watched}
    assert stake_before[worker2.address] - staked[worker2.address] == COLLATERAL  # tamper-segment slashed
    assert stake_before[foreign_worker.address] - staked[foreign_worker.address] == expiry
    assert staked[late_worker.address] == stake_before[late_worker.address]  # its computation was right
    assert staked[worker.address] == stake_before[worker.address]
    unavailable_forfeit = bond * sub.param("Disputes", "UNAVAILABLE_FORFEIT_BPS") // 10_000
    assert stake_before[verifier.address] - staked[verifier.address] == unavailable_forfeit
    assert stake_before[puppet.address] - staked[puppet.address] == bond  # the puppet's bond is gone
    assert stake_before[submitter2.address] - staked[submitter2.address] == bond  # so is the buggy one's
    assert sub.stake_info(wallet.address).staked == 0
    assert all(sub.stake_info(a.address).locked == 0 for a in watched)
    assert sub.owed(verifier.address) == {"JobEscrow": 0, "Disputes": 2 * reward}
    assert sub.owed(treasury.address)["Disputes"] == (2 * (slashed - reward - compensation) + 2 * bond
                                                      + unavailable_forfeit)
    assert sub.owed(worker.address) == {"JobEscrow": 0, "Disputes": 0}  # a lost challenge pays no worker
    assert sub.owed(submitter.address) == {"JobEscrow": 2 * PAYMENT + PAYMENT + expiry,
                                           "Disputes": 2 * compensation}
    for name, account, payment in (("late", late_worker, PAYMENT), ("honest", worker, PAYMENT // 2)):
        [paid] = [e for e in sub.job(jobs[name]).events if e.name == "JobFinalized"]
        assert (paid.worker, paid.worker_payout) == (account.address, payment - payment * fee_bps // 10_000)
    assert '"event": "ruling"' in procs.log("arbiter")
