"""`tessera deploy` asks before it spends, on a chain standing in for Sepolia (chain id 11155111):
summary and cost bound first, `--dry-run` sends nothing, no `--yes` on a closed stdin refuses, a short
balance refuses, `--yes` deploys exactly the planned transactions within the planned gas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_account import Account

from protocol.accounts import create_keystore
from protocol.chain import connect
from protocol.cli.main import cli
from protocol.deploy import PARAMS_DIR
from protocol.devnet import start_anvil, test_account_keys
from tests.unit.cli.conftest import CLI_ENV_VARS


def invoke(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(cli, list(args), catch_exceptions=True)


def ask_on_a_terminal(argv: list[str], answer: str) -> str:
    """Run `tessera argv` on a pseudo-terminal, type `answer` at the question, return all it printed."""
    import os
    import pty
    import subprocess
    import sys
    import time

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "protocol.cli.main", *argv], stdin=follower,
                               stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(leader, answer.encode() + b"\n")
            answered = True
    process.wait(timeout=30)
    os.close(leader)
    return seen.decode(errors="replace")


def last_error(result: Any) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_deploy_asks_before_it_spends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CLI_ENV_VARS, "TESSERA_RPC_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    ape = tmp_path / "ape"
    monkeypatch.setenv("APE_DATA_FOLDER", str(ape))
    keys = test_account_keys(6)
    create_keystore("deployer", keys[0], "deployer pw", data_folder=ape, iterations=2**4)
    create_keystore("pauper", Account.create().key, "pauper pw", data_folder=ape, iterations=2**4)
    params = json.loads((PARAMS_DIR / "testnet.json").read_text())
    params.update(arbiter=Account.from_key(keys[4]).address, treasury=Account.from_key(keys[5]).address)
    params_file = tmp_path / "my-params.json"
    params_file.write_text(json.dumps(params))
    out = tmp_path / "deployments"
    deployer = Account.from_key(keys[0]).address
    with start_anvil(chain_id=11155111) as node:
        monkeypatch.setenv("TESSERA_RPC_URL", node.rpc_url)
        w3 = connect(node.rpc_url)
        base = ["--network", "ethereum:sepolia:node", "--account", "deployer", "deploy", "--out-dir", str(out)]

        shipped = invoke(*base, "--params", "testnet")
        assert shipped.exit_code == 2
        assert "must name the arbiter and treasury addresses" in last_error(shipped)
        hint = invoke(*base)
        assert hint.exit_code == 2 and "testnet.json and fill in its arbiter and treasury" in last_error(hint)

        # dry run: no passphrase is set, nothing is sent
        dry = invoke(*base, "--params", str(params_file), "--dry-run", "--json")
        assert dry.exit_code == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert plan["chain_id"] == 11155111 and plan["deployer"] == deployer
        assert [tx["description"] for tx in plan["transactions"]] == [
            "deploy DevToken", "deploy Staking", "deploy JobEscrow", "deploy Bisection", "deploy TensorDescent",
            "deploy ClipReferee", "deploy ElementReferee", "deploy StateLink", "deploy HostRules", "deploy FoldRules", "deploy RowRules",
            "deploy DataRules", "deploy ScalarRules", "deploy RowPieceRules", "deploy RefereeGame", "deploy Disputes", "deploy ModelRegistry", "Bisection.wire",
            "TensorDescent.wire", "RefereeGame.wire", "Staking.wire", "JobEscrow.wire", "faucet escrow seed",
            "seed the escrow's token balance"]
        assert int(plan["max_cost_wei"]) > 0 and plan["affordable"] is True
        human = invoke(*base, "--params", str(params_file), "--dry-run")
        assert human.exit_code == 0 and "nothing sent" in human.stdout and "Staking.wire" in human.stdout
        assert f"parameters {params_file} (name 'testnet')" in human.stderr and "deployer balance" in human.stderr
        assert w3.eth.get_transaction_count(deployer) == 0

        # no --yes and stdin is not a terminal: refused before signing
        monkeypatch.setenv("TESSERA_PASSPHRASE", "deployer pw")
        unconfirmed = invoke(*base, "--params", str(params_file))
        assert unconfirmed.exit_code == 2 and "pass --yes (nothing was sent)" in last_error(unconfirmed)
        assert "at most" in unconfirmed.stderr and "ETH" in unconfirmed.stderr
        assert w3.eth.get_transaction_count(deployer) == 0

        # a deployer without ETH is told so, before anything is sent
        monkeypatch.setenv("TESSERA_PASSPHRASE", "pauper pw")
        broke = invoke("--network", "ethereum:sepolia:node", "--account", "pauper", "deploy", "--out-dir", str(out),
                       "--params", str(params_file), "--yes")
        assert broke.exit_code == 1 and "has 0 ETH but the deployment may cost up to" in last_error(broke)

        # on a terminal it asks; answering no sends nothing
        monkeypatch.setenv("TESSERA_PASSPHRASE", "deployer pw")
        answered = ask_on_a_terminal([*base, "--params", str(params_file)], answer="n")
        assert "send these 24 transactions? [y/N]" in answered and "deploy cancelled: nothing was sent" in answered
        assert w3.eth.get_transaction_count(deployer) == 0

        done = invoke(*base, "--params", str(params_file), "--yes", "--json")
        assert done.exit_code == 0, done.stderr
        summary = json.loads(done.stdout)
        assert {name: c["address"] for name, c in summary["contracts"].items()} == {
            tx["description"].split()[1]: tx["creates"] for tx in plan["transactions"] if tx["creates"]}
        record = json.loads((out / "11155111.json").read_text())
        hashes = [c["tx_hash"] for c in record["contracts"].values()] + list(record["wiring"].values())
        used = sorted(int(w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in hashes)
        blocks = [w3.eth.get_block(n, full_transactions=True) for n in range(1, w3.eth.block_number + 1)]
        sent = [tx for block in blocks for tx in block["transactions"] if tx["from"] == deployer]
        assert len(sent) == len(plan["transactions"])  # the plan is the deployment, transaction for transaction
        for tx, planned in zip(sent, plan["transactions"]):
            assert int(w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"]) <= planned["gas"], planned
        assert used and sum(used) <= plan["gas"]
