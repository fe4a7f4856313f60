"""A private devnet for worker e2e tests: anvil with block time, a short-window deployment, helpers.

Kept next to `worker.testing` so the worker's e2e files share one setup instead of copying it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = 10**18

# Short windows so a job settles in seconds (a job's windows add 3 × its declared segment seconds);
# unbonding must outlast execution + the longest challenge, reveal and arbiter windows.
FAST_PARAMS: dict[str, Any] = {
    "name": "worker-e2e", "fee_bps": 100, "execution_timeout": 120, "challenge_window": 4, "arbiter_window": 4,
    "max_segment_seconds": 30, "reveal_window": 4, "unbonding_delay": 400, "expiry_compensation_bps": 2_000,
    "challenge_bond": str(10 * TOKEN),
    "challenger_reward_bps": 5_000, "submitter_compensation_bps": 3_000, "arbiter": "TEST::4",
    "treasury": "TEST::5", "token": None, "token_args": {"name": "Tessera Dev Token", "symbol": "TDEV"},
}


@dataclass
class Devnet:
    """anvil + deployment + a spec store; `client(account)` gives a TesseraClient."""

    anvil: Any
    w3: Any
    deployment: Any
    spec_store_dir: Path
    env_class: str = ""

    def client(self, account: Any = None) -> Any:
        from protocol.client import TesseraClient

        return TesseraClient(self.w3, self.deployment, account)

    def post(self, submitter: Any, spec: Any, *, payment: int = 5 * TOKEN, collateral: int = 2 * TOKEN,
             spec_bytes: bytes | None = None, spec_hash: str | None = None, num_segments: int | None = None,
             segment_seconds: int | None = None) -> int:
        """Store the spec bytes (or hostile `spec_bytes`) and post a job for them; return its id."""
        from protocol.artifacts import LocalStore
        from protocol.spec import estimate_segment_seconds

        store = LocalStore(self.spec_store_dir)
        data = spec_bytes if spec_bytes is not None else spec.canonical_bytes()
        stored_hash = store.put(data)
        seconds = segment_seconds or (estimate_segment_seconds(spec) if spec is not None else 5)
        receipt = self.client(submitter).post(
            payment, collateral, spec_hash or stored_hash, num_segments or (spec.num_segments if spec else 1),
            str(self.spec_store_dir), env_class=self.env_class or None, segment_seconds=seconds)
        return int(receipt.job_id)

    def finalize_soon(self, job_ids: Any, timeout: float = 90.0) -> None:
        """Wait until every job is Committed, then move chain time past the latest challenge window, so a
        test waits for the daemons' finalize, not for the window (the daemons read chain time)."""
        from protocol.events import JobState

        client = self.client()
        wait_until(lambda: all(client.job_state(j) in (JobState.COMMITTED, JobState.FINALIZED) for j in job_ids),
                   timeout, what=f"jobs {list(job_ids)} committed")
        gap = max(client.job(j).job.challenge_end for j in job_ids) - client.chain_time() + 1
        if gap > 0:
            self.w3.provider.make_request("evm_increaseTime", [gap])
            self.w3.provider.make_request("evm_mine", [])

    def worker_config(self, path: Path, account: str, data_dir: Path, store: Path, rpc_url: str | None = None,
                      **overrides: Any) -> Path:
        """Write a worker TOML config for a daemon process."""
        values: dict[str, Any] = {
            "network": rpc_url or self.anvil.rpc_url, "account": account, "deployment": str(self.deployment.path),
            "data_dir": str(data_dir), "store": str(store), "confirmations": 1, "poll_interval": 0.3,
            "reconcile_interval": 2.0, "rpc_timeout": 3.0, "bump_timeout": 20.0, "log_format": "json",
            "log_level": "INFO",
        }
        worker = {"deadline_margin": 10.0, "memory_limit_mb": 3_000, "device_class": "cpu",
                  "concurrency_per_gpu": 1}
        for key, value in overrides.items():
            (worker if key in ("deadline_margin", "memory_limit_mb", "device_class", "concurrency_per_gpu",
                               "min_payment", "max_collateral", "run_confirmations", "allowed_kinds", "max_parameters",
                               "spec_uri_schemes", "max_spec_bytes", "screening_budget_s") else values)[key] = value
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        lines += ["", "[worker]"] + [f"{k} = {json.dumps(v)}" for k, v in worker.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


def start_devnet(tmp: Path, deployer: Any, *, block_time: float | None = 1.0) -> Devnet:
    """Start anvil (mining every `block_time` s) and deploy FAST_PARAMS into `tmp`."""
    from protocol.chain import connect
    from protocol.deploy import deploy_all
    from protocol.devnet import start_anvil

    # Deploy under automine (a block per transaction, no waiting), then switch to interval mining:
    # the same chain as `--block-time` from the start, about ten seconds sooner per devnet.
    whole_seconds = block_time is not None and float(block_time).is_integer()
    node = start_anvil(block_time=None if whole_seconds else block_time)
    try:
        w3 = connect(node.rpc_url, timeout=30.0)
        deployment = deploy_all(w3, deployer, dict(FAST_PARAMS), out_dir=tmp / "deployments")
        env_class = open_local_env_class(w3, deployment)
        if whole_seconds:
            reply = w3.provider.make_request("evm_setIntervalMining", [int(block_time)])
            if "error" in reply:
                raise RuntimeError(f"anvil refused interval mining: {reply['error']}")
    except BaseException:
        node.stop()
        raise
    store = tmp / "specs"
    store.mkdir(exist_ok=True)
    return Devnet(node, w3, deployment, store, env_class)


def open_local_env_class(w3: Any, deployment: Any, arbiter_index: int = 4) -> str:
    """Publish this machine's CPU environment class as the local arbiter (test account 4); return it.

    What the arbiter daemon does at start, done up front so jobs can be posted before it runs."""
    from engine.determinism import local_env_class
    from protocol.accounts import test_account
    from protocol.client import TesseraClient

    _, env_class = local_env_class("cpu")
    arbiter = TesseraClient(w3, deployment, test_account(arbiter_index, int(w3.eth.chain_id)))
    if not arbiter.env_class_open(env_class):
        arbiter.send(arbiter.build_publish_env_class(env_class, "file:///local-arbiter"))
    return env_class


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll `predicate` until truthy; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def tiny_spec(seed: int = 1, steps: int = 4, segment_steps: int = 2) -> Any:
    """A digits MLP that trains in about a second: the smallest real job."""
    from engine.presets import digits_spec

    return digits_spec(steps=steps, segment_steps=segment_steps, seed=seed, schedule={"name": "constant"})


def reorg_from(w3: Any, from_block: int, raw_txs: Any = ()) -> None:
    """`anvil_reorg`: replace every block from `from_block` on (their transactions are gone, as when a
    competing branch wins); `raw_txs` (signed bytes) land in the first new block."""
    depth = w3.eth.block_number - from_block + 1
    reply = w3.provider.make_request("anvil_reorg", [depth, [["0x" + bytes(raw).hex(), 0] for raw in raw_txs]])
    assert "error" not in reply, reply


def signed_claim(devnet: Devnet, account: Any, job_id: int) -> bytes:
    """`account`'s claim of the Open job `job_id`, signed at its next nonce but not sent: a rival's claim
    for `reorg_from` to put on a new branch."""
    w3 = devnet.w3
    request = devnet.client(account).build_claim(job_id, devnet.client().job(job_id).job)
    return account.sign_transaction({
        "to": request.to, "data": request.data, "value": 0, "gas": 400_000, "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address), "maxFeePerGas": 50 * 10**9,
        "maxPriorityFeePerGas": 10**9}).raw_transaction


def no_nonce_gap(w3: Any, address: str) -> bool:
    """Every nonce `address` used is a mined transaction (nothing pending behind a hole)."""
    return w3.eth.get_transaction_count(address, "latest") == w3.eth.get_transaction_count(address, "pending")
