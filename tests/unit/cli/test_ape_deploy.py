"""`ape run deploy` (scripts/deploy.py) deploys with an ape account and writes the same record as
`tessera deploy`; a second run refuses to overwrite it without --force. ape-foundry starts (and stops)
its own anvil for the run, so this is a real subprocess against a real chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONTRACTS = {"DevToken", "Staking", "JobEscrow", "Disputes", "ModelRegistry", "Bisection", "TensorDescent", "ClipReferee", "ElementReferee",
             "StateLink", "HostRules", "FoldRules", "RowRules", "DataRules", "ScalarRules", "RowPieceRules", "RefereeGame"}


def ape_deploy(out_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    ape = Path(sys.executable).with_name("ape")
    command = [str(ape), "run", "deploy", "--network", "ethereum:local:foundry", "--account", "TEST::0",
               "--out-dir", str(out_dir), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})})


def test_ape_run_deploy_writes_the_record_and_refuses_overwrite(tmp_path):
    # ape connects through its own network config; TESSERA_RPC_URL (here a dead URL with a key) is
    # not used, and the script says so without showing the key.
    first = ape_deploy(tmp_path, env={"TESSERA_RPC_URL": "http://127.0.0.1:9/v2/SECRET-KEY-ABCDEFGH"})
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ape run deploy ignores TESSERA_RPC_URL (http://127.0.0.1:9/***) for this network" in first.stderr
    assert "SECRET-KEY-ABCDEFGH" not in first.stdout + first.stderr
    record = json.loads((tmp_path / "31337.json").read_text())
    assert record["chain_id"] == 31337
    assert set(record["contracts"]) == CONTRACTS
    addresses = {c["address"] for c in record["contracts"].values()}
    assert len(addresses) == len(CONTRACTS)

    again = ape_deploy(tmp_path)
    assert again.returncode != 0
    assert "already" in (again.stdout + again.stderr).lower() or "force" in (again.stdout + again.stderr).lower()
    assert json.loads((tmp_path / "31337.json").read_text()) == record  # nothing lost

    forced = ape_deploy(tmp_path, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
