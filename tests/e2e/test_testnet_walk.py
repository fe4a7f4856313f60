"""The testnet rehearsal's whole walk, as the docs tell a new user to do it (issue: ready for a public
testnet; ../shared/ux/testnet-rehearsal-2026-12.md).

anvil stands in for Sepolia (chain id 11155111, a block a second). Every step is a documented command
run as its own process: keys in encrypted ape keystores (what `ape accounts import` writes), the
README's deploy with a copy of the testnet parameter set, the arbiter daemon, the operator guide's
faucet, stake and `worker run` with the shipped `examples/worker.toml` (its documented environment
overrides only), `tessera store serve` for both artifact stores, the submitter's example script with
its defaults, and `tessera model show` for provenance. The only thing the test does that a user
would not is move chain time over the 2-hour challenge window instead of waiting it out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from protocol.devnet import start_anvil
from protocol.events import JobState
from worker.testing import DaemonProcess
from worker.testing_chain import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SEPOLIA = 11_155_111
NETWORK = "ethereum:sepolia:node"
PASSPHRASE = "walk-passphrase"


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, f"{' '.join(args)}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
    return done


def _tessera(*args: str, env: dict[str, str], cwd: Path, account: str | None = None) -> str:
    globals_ = ["--network", NETWORK, *(["--account", account] if account else [])]
    return _run([sys.executable, "-m", "protocol.cli.main", *globals_, *args], env, cwd).stdout


def _alive(daemon: DaemonProcess) -> bool:
    """True while `daemon` runs; its log in the failure when it has stopped (no waiting out a timeout)."""
    assert daemon.alive(), f"{daemon.daemon} exited:\n{daemon.log_text()[-3000:]}"
    return True


class StoreServer:
    """`tessera store serve DIR --port 0`: the URL comes from its start-up line."""

    def __init__(self, directory: Path, env: dict[str, str], log: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "protocol.cli.main", "store", "serve", str(directory), "--port", "0"],
            stdout=subprocess.PIPE, stderr=open(log, "wb"), stdin=subprocess.DEVNULL, env=env, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, f"no URL in the store server's start-up line: {line!r}"
        self.url = match.group(1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def test_the_rehearsal_walk_from_the_docs(tmp_path: Path) -> None:
    anvil = start_anvil(block_time=1, chain_id=SEPOLIA, log_path=tmp_path / "anvil.log")
    servers: list[StoreServer] = []
    daemons: list[DaemonProcess] = []
    try:
        _walk(tmp_path, anvil, servers, daemons)
    finally:
        for daemon in daemons:
            daemon.terminate()
        for server in servers:
            server.stop()
        anvil.stop()


def _walk(tmp: Path, anvil: Any, servers: list[StoreServer], daemons: list[DaemonProcess]) -> None:
    from web3 import Web3

    from protocol.accounts import create_keystore

    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    env = {**os.environ, "TESSERA_RPC_URL": anvil.rpc_url, "APE_DATA_FOLDER": str(tmp / "ape"),
           "TESSERA_PASSPHRASE": PASSPHRASE, "TESSERA_STATE_DIR": str(tmp / "state"),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("TESSERA_DEPLOYMENTS_DIR", None)
    # 1. Keys: fresh ones (the public test keys are refused off the local chain), encrypted in the ape
    # keystore, and test ETH for gas (a faucet's job on Sepolia).
    addresses = {}
    for alias in ("deployer", "arbiter", "gpu-worker", "submitter"):
        key = Account.create()
        create_keystore(alias, key.key, PASSPHRASE, data_folder=tmp / "ape", iterations=2**10)
        w3.provider.make_request("anvil_setBalance", [key.address, hex(10 * 10**18)])
        addresses[alias] = key.address
    treasury = Account.create().address

    # 2. README "Deploy to a public testnet": a copy of the testnet parameters with our arbiter and treasury.
    params = json.loads((ROOT / "protocol" / "params" / "testnet.json").read_text())
    params.update(arbiter=addresses["arbiter"], treasury=treasury)
    (tmp / "my-params.json").write_text(json.dumps(params))
    _tessera("deploy", "--params", "my-params.json", "--yes", env=env, cwd=tmp, account="deployer")
    record = json.loads((tmp / "deployments" / f"{SEPOLIA}.json").read_text())
    assert record["chain_id"] == SEPOLIA
    # Operator guide: daemons and scripts elsewhere find the deployer's record through this variable.
    env["TESSERA_DEPLOYMENTS_DIR"] = str(tmp / "deployments")

    # 3. The arbiter's daemon publishes the environment class it reproduces (no job can be posted before).
    (tmp / "arbiter.toml").write_text(
        f'network = "{NETWORK}"\naccount = "arbiter"\npassphrase = "env:TESSERA_PASSPHRASE"\n'
        f'store = "file://{tmp / "arbiter-store"}"\ndata_dir = "{tmp / "arbiter-data"}"\nmetrics_port = 0\n'
    )
    arbiter = DaemonProcess("arbiter", tmp / "arbiter.toml", tmp / "arbiter.log", env=env).start()
    daemons.append(arbiter)
    wait_until(lambda: _alive(arbiter) and "portable/1" in _tessera("env", "list", env=env, cwd=tmp), 60,
               what="the arbiter's classes published")  # fmt: skip

    # 4. Operator guide §1-3: faucet, stake, serve the store, run the daemon with the shipped config.
    _tessera("faucet", "300", env=env, cwd=tmp, account="gpu-worker")
    _tessera("stake", "deposit", "200", env=env, cwd=tmp, account="gpu-worker")
    assert "200" in _tessera("stake", "show", env=env, cwd=tmp, account="gpu-worker")
    worker_store = tmp / "worker-store"
    servers.append(StoreServer(worker_store, env, tmp / "worker-store.log"))
    worker_env = {**env, "TESSERA_WORKER_PASSPHRASE": PASSPHRASE, "TESSERA_NETWORK": NETWORK,
                  "TESSERA_STORE": f"file://{worker_store}", "TESSERA_PUBLIC_STORE": servers[-1].url,
                  "TESSERA_DATA_DIR": str(tmp / "worker-data"), "TESSERA_METRICS_PORT": "0"}  # fmt: skip
    worker = DaemonProcess("worker", ROOT / "examples" / "worker.toml", tmp / "worker.log", env=worker_env).start()
    daemons.append(worker)

    # 5. The submitter's script with its defaults, its spec published through its own store server;
    # its tokens from the DevToken faucet (off the local chain the script does not mint them itself).
    _tessera("faucet", "100", env=env, cwd=tmp, account="submitter")
    servers.append(StoreServer(tmp / "submitter-store", env, tmp / "submitter-store.log"))
    script = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "submit_training.py"), "--network", NETWORK, "--account",
         "submitter", "--store", str(tmp / "submitter-store"), "--store-url", servers[-1].url, "--json"],
        env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=open(tmp / "script.log", "wb"), stdin=subprocess.DEVNULL,
        text=True)  # fmt: skip
    try:
        from protocol.client import TesseraClient

        _alive(worker)

        reader = TesseraClient.connect(anvil.rpc_url, deployment=tmp / "deployments" / f"{SEPOLIA}.json")
        try:
            job_id = wait_until(lambda: script.poll() is None and reader.job_count() or None, 90,
                                what="the script's job posted")
            wait_until(lambda: reader.job_state(job_id) == JobState.COMMITTED, 180, what="the job committed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker:\n{worker.log_text()[-2500:]}\n"
                                 f"script:\n{(tmp / 'script.log').read_text()[-1500:]}") from None
        # the testnet challenge window is 2 h (+ 3 x segment seconds): move chain time past it
        view = reader.job(job_id)
        w3.provider.make_request("evm_increaseTime", [view.job.challenge_end - reader.block_time() + 5])
        w3.provider.make_request("evm_mine", [])
        out, _ = script.communicate(timeout=180)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 0, (tmp / "script.log").read_text()[-3000:]
    summary = json.loads(out)
    assert reader.job_state(job_id) == JobState.FINALIZED
    assert reader.job(job_id).job.worker == addresses["gpu-worker"]

    # 6. Provenance, read by anyone without a key.
    shown = _tessera("model", "show", summary["output_hash"], env=env, cwd=tmp)
    assert "JobVerified" in shown, shown
    shown_json = json.loads(_tessera("model", "show", summary["output_hash"], "--json", env=env, cwd=tmp))
    assert shown_json["model"]["status"] == "JobVerified" and shown_json["model"]["job_id"] == job_id
