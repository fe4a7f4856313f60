"""`make demo` is the first command of the README's quick start: run it for real and check its outcome.

The demo starts anvil, deploys, runs a worker, a verifier and an arbiter as separate processes, trains
two real jobs, fine-tunes an imported tiny Llama with LoRA and registers the adapter under its base, and
catches a worker that tampers with one segment. This test keeps that promise true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from protocol.devnet import test_account_keys

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TOKEN = 10**18


def test_make_demo_runs_the_whole_protocol(tmp_path):
    summary_path = tmp_path / "demo-summary.json"
    env = {**os.environ, "TESSERA_DEMO_WORKDIR": str(tmp_path / "work"), "TESSERA_DEMO_SUMMARY": str(summary_path)}
    result = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads(summary_path.read_text())

    states = {(job["worker"], job["what"]): job["state"] for job in summary["jobs"]}
    assert list(states.values()) == ["FINALIZED", "FINALIZED", "FINALIZED", "REJECTED"]
    assert summary["models"]["parent"] != summary["models"]["child"]
    # The cheater lost exactly the collateral of its job; the honest worker lost nothing.
    cheater = summary["stake"]["cheater"]
    assert int(cheater["before"]["staked"]) - int(cheater["after"]["staked"]) == 50 * TOKEN
    honest = summary["stake"]["worker"]
    assert honest["before"]["staked"] == honest["after"]["staked"]
    # The puppet's challenge (test account 7) blocked nobody: the verifier (account 3) filed its own and won;
    # the puppet's bond is gone (to the treasury), so blocking costs the coalition.
    keys = test_account_keys(8)
    verifier, puppet = Account.from_key(keys[3]).address, Account.from_key(keys[7]).address
    by_challenger = {d["challenger"]: d for d in summary["disputes"]}
    assert by_challenger[puppet]["puppet"] and by_challenger[puppet]["status"] == "worker_right"
    assert by_challenger[verifier]["status"] == "worker_wrong"
    puppet_stake = summary["stake"]["puppet"]
    assert int(puppet_stake["before"]["staked"]) - int(puppet_stake["after"]["staked"]) == 10 * TOKEN
    for call in ("post", "claim", "commit", "finalize", "file challenge", "reveal challenge", "verdict", "register"):
        assert summary["gas"].get(call), f"no gas measured for {call}"
    assert "lineage of the fine-tuned model" in result.stdout
    # The imported Llama's LoRA job ran through the network: the adapter is the Finalized job's output
    # (JobVerified) with the imported base (Declared) as parent by relation adapter, and `model show` says so.
    lora = summary["lora"]
    assert states[("honest", "LoRA on imported tiny Llama")] == "FINALIZED"
    lineage = lora["lineage"]
    assert (lineage["model_hash"], lineage["status"], lineage["job_id"]) == (lora["adapter"], "JobVerified", lora["job_id"])
    [base] = lineage["parents"]
    assert (base["model_hash"], base["relation"], base["status"]) == (lora["base"], "adapter", "Declared")
    assert lora["adapter"] != lora["base"] and "LlamaForCausalLM" in result.stdout  # what the import printed
    shown = [line.strip() for line in lora["show"].splitlines() if line.strip().startswith("0x")]  # lineage rows
    assert any(lora["adapter"] in line and "JobVerified" in line for line in shown), lora["show"]
    assert any(lora["base"] in line and "adapter" in line and "Declared" in line for line in shown), lora["show"]
    assert all(line in result.stdout for line in shown)  # printed for the user
    assert "base_model" in lora["show"]  # the model card registered with it (Hugging Face metadata names)
    assert summary["total_s"] < 600
