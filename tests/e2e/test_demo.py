"""`make demo` is the first command of the README's quick start: run it for real and check its outcome.

The demo starts anvil, deploys, runs a worker, a verifier and an arbiter as separate processes, trains
two real jobs, and catches a worker that tampers with one segment. This test keeps that promise true.
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
    assert list(states.values()) == ["FINALIZED", "FINALIZED", "REJECTED"]
    assert summary["models"]["parent"] != summary["models"]["child"]
    # The cheater lost exactly the collateral of its job; the honest worker lost nothing.
    cheater = summary["stake"]["cheater"]
    assert int(cheater["before"]["staked"]) - int(cheater["after"]["staked"]) == 50 * TOKEN
    honest = summary["stake"]["worker"]
    assert honest["before"]["staked"] == honest["after"]["staked"]
    # The verifier persona (test account 3) challenged, and the arbiter closed the dispute.
    verifier = Account.from_key(test_account_keys(4)[3]).address
    assert summary["dispute"]["challenger"] == verifier and not summary["dispute"]["open"]
    for call in ("post", "claim", "commit", "finalize", "challenge", "verdict", "register"):
        assert summary["gas"].get(call), f"no gas measured for {call}"
    assert "lineage of the fine-tuned model" in result.stdout
    assert summary["total_s"] < 600
