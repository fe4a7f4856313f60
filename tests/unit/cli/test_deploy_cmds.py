"""`tessera deploy` on its own anvil: writes the record, checks code, refuses to overwrite without --force."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from protocol.cli.main import cli
from protocol.devnet import start_anvil

CONTRACTS = {"DevToken", "Staking", "JobEscrow", "Disputes", "ModelRegistry", "Bisection", "TensorDescent", "ClipReferee", "ElementReferee",
             "StateLink", "HostRules", "FoldRules", "RowRules", "DataRules", "ScalarRules", "RowPieceRules", "RefereeGame"}


def test_deploy_writes_record_and_refuses_overwrite(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TESSERA_ACCOUNT", raising=False)
    out_dir = tmp_path / "deployments"
    runner = CliRunner(mix_stderr=False)
    with start_anvil() as node:
        base = ["--network", node.rpc_url]
        no_account = runner.invoke(cli, [*base, "deploy", "--out-dir", str(out_dir)])
        assert no_account.exit_code == 2 and "pass --account" in no_account.stderr

        result = runner.invoke(cli, [*base, "--account", "TEST::0", "deploy", "--out-dir", str(out_dir), "--json"])
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["chain_id"] == 31337 and set(summary["contracts"]) == CONTRACTS
        assert summary["params"]["challenge_window"] == 20
        record = json.loads((out_dir / "31337.json").read_text())
        assert {name: c["address"] for name, c in record["contracts"].items()} == {
            name: c["address"] for name, c in summary["contracts"].items()}

        again = runner.invoke(cli, [*base, "--account", "TEST::0", "deploy", "--out-dir", str(out_dir)])
        assert again.exit_code == 1
        assert again.stderr.strip().splitlines()[-1].startswith("error: a deployment for chain id 31337 already exists")

        # The new deployment is usable at once by the other commands (default path under --deployment's folder).
        status = runner.invoke(cli, [*base, "--deployment", str(out_dir / "31337.json"), "job", "list", "--json"])
        assert status.exit_code == 0, status.stderr
        assert json.loads(status.stdout) == {"jobs": []}

        forced = runner.invoke(cli, [*base, "--account", "TEST::0", "deploy", "--out-dir", str(out_dir), "--force", "--json"])
        assert forced.exit_code == 0, forced.stderr
        assert json.loads(forced.stdout)["contracts"]["JobEscrow"]["address"] != summary["contracts"]["JobEscrow"]["address"]

        bad = runner.invoke(cli, [*base, "--account", "TEST::0", "deploy", "--params", "nonexistent", "--out-dir", str(tmp_path / "x")])
        assert bad.exit_code == 2 and "no parameter file 'nonexistent'" in bad.stderr
