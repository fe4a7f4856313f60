"""`tessera job submit` and `tessera deploy` after a dropped RPC (rehearsal finding #1): the error keeps the
transaction hash (also under --json), and running the same command again finishes what was started
instead of posting a second job or orphaning half a deployment. A real anvil behind a fault-injecting proxy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from protocol.abi import load_abi
from protocol.chain import connect
from protocol.cli.main import cli
from protocol.deploy import PARAMS_DIR, Deployment, verify_code
from protocol.devnet import start_anvil
from tests.support.rpc_proxy import RpcProxy
from tests.unit.cli.test_chain_cmds import _write_spec

DEPLOY_TXS = 24  # 17 contracts, 5 wire calls, the escrow seed's faucet and transfer


def _count_reaches(w3, address: str, want: int, seconds: float = 10.0) -> bool:
    """Whether the address's mined nonce reaches `want` within `seconds`: anvil may answer a send (which the proxy
    then drops) before its automine has mined it, so a check right after it can still see the block before."""
    deadline = time.monotonic() + seconds
    while w3.eth.get_transaction_count(address) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return w3.eth.get_transaction_count(address) == want


def _posted_jobs(w3, deployment) -> int:
    escrow = w3.eth.contract(address=deployment.escrow, abi=load_abi("JobEscrow"))
    return len(escrow.events.JobPosted().get_logs(from_block=deployment.start_block))


def test_job_submit_retried_after_a_dropped_send_posts_one_job(
    tessera, anvil, w3, deployment, fresh_chain, tmp_path: Path
) -> None:
    spec_path, _ = _write_spec(tmp_path)
    store = str(tmp_path / "store")
    tessera("faucet", "1000", account="TEST::1")
    submit = ("job", "submit", str(spec_path), "--payment", "5", "--collateral", "10", "--store", store, "--json")
    before = _posted_jobs(w3, deployment)
    with RpcProxy(anvil.rpc_url, mode="drop_after_send", drop_sends={2}) as proxy:  # 1: approve, 2: post
        cut = tessera(*submit, account="TEST::1", network=proxy.url, ok=False)
    assert cut.exit_code == 1 and proxy.dropped == [2]
    error_lines = [line for line in cut.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "may have been broadcast" in error_lines[0]
    shown = json.loads(cut.stdout)  # --json still gives a script the hash and what is known
    assert shown["state"] == "unknown" and shown["tx_hash"] in error_lines[0]
    assert shown["error"] == error_lines[0].removeprefix("error: ")
    assert _posted_jobs(w3, deployment) == before + 1  # the post did land

    again = tessera(*submit, account="TEST::1", json_out=True)
    assert again["resumed"] is True and again["tx_hash"] == shown["tx_hash"]
    assert _posted_jobs(w3, deployment) == before + 1, "the retry posted a second job"
    assert again["job_id"] == before + 1  # job ids count the posts

    # --new asks for another job even while an earlier identical post is unresolved
    with RpcProxy(anvil.rpc_url, mode="drop_after_send", drop_sends={2}) as proxy:
        tessera(*submit, account="TEST::1", network=proxy.url, ok=False)
    assert _posted_jobs(w3, deployment) == before + 2
    human = tessera(*submit[:-1], "--new", account="TEST::1")
    assert "followed it" not in human.stderr
    assert _posted_jobs(w3, deployment) == before + 3


@pytest.mark.parametrize("cut_at", [3, 16])  # JobEscrow's creation; Disputes' creation
def test_deploy_cut_off_after_a_send_resumes_to_one_set_of_contracts(tmp_path: Path, monkeypatch, cut_at: int) -> None:
    monkeypatch.delenv("TESSERA_ACCOUNT", raising=False)
    out_dir = tmp_path / "deployments"
    runner = CliRunner(mix_stderr=False)
    with start_anvil() as node, RpcProxy(node.rpc_url, mode="drop_after_send", drop_sends={cut_at}) as proxy:
        w3 = connect(node.rpc_url)
        deploy = ["--account", "TEST::0", "deploy", "--out-dir", str(out_dir)]
        cut = runner.invoke(cli, ["--network", proxy.url, *deploy])
        assert cut.exit_code == 1 and "may have been broadcast" in cut.stderr
        assert not (out_dir / "31337.json").exists()
        landed = json.loads((out_dir / "31337.partial.json").read_text())
        assert len(landed["contracts"]) == min(cut_at - 1, 17)
        deployer = landed["deployer"]
        assert _count_reaches(w3, deployer, cut_at)  # the cut-off transaction was mined

        done = runner.invoke(cli, ["--network", proxy.url, *deploy, "--json"])
        assert done.exit_code == 0, done.stderr
        assert w3.eth.get_transaction_count(deployer) == DEPLOY_TXS, "the rerun sent transactions a second time"
        assert not (out_dir / "31337.partial.json").exists()
        record = Deployment.load(out_dir / "31337.json")
        for name, contract in landed["contracts"].items():
            assert record.contracts[name].address == contract["address"]  # kept, not orphaned
        record.check_code(w3)
        for name, contract in record.contracts.items():
            verify_code(w3, name, contract.address)
        assert json.loads(done.stdout)["contracts"]["JobEscrow"]["address"] == record.escrow
        staking = w3.eth.contract(address=record.staking, abi=load_abi("Staking"))
        assert staking.functions.escrow().call() == record.escrow

        refused = runner.invoke(cli, ["--network", node.rpc_url, *deploy])
        assert refused.exit_code == 1 and "already exists" in refused.stderr


def test_a_half_done_deployment_with_other_parameters_is_not_replaced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TESSERA_ACCOUNT", raising=False)
    out_dir = tmp_path / "deployments"
    params = json.loads((PARAMS_DIR / "local.json").read_text())
    runner = CliRunner(mix_stderr=False)
    with start_anvil() as node, RpcProxy(node.rpc_url, mode="drop_after_send", drop_sends={2}) as proxy:
        base = ["--account", "TEST::0", "deploy", "--out-dir", str(out_dir)]
        assert runner.invoke(cli, ["--network", proxy.url, *base]).exit_code == 1
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**params, "fee_bps": params["fee_bps"] + 1}))
        refused = runner.invoke(cli, ["--network", node.rpc_url, *base, "--params", str(other)])
        assert refused.exit_code == 1
        assert "half-done deployment on chain 31337 with other parameters" in refused.stderr
        assert "DevToken" in refused.stderr and (out_dir / "31337.partial.json").exists()
