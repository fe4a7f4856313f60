"""`tessera devnet up|status|down` as real subprocesses: anvil in the background, state kept across restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.devnet import free_port, rpc_answers



def tessera(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESSERA_DEVNET_DIR": str(cwd / ".devnet")}
    return subprocess.run(
        [sys.executable, "-m", "protocol.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture()
def devnet_dir(tmp_path: Path):
    yield tmp_path
    pid_file = tmp_path / ".devnet" / "anvil.pid"
    if pid_file.exists():  # a failed test must not leave anvil behind
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _rpc(url: str, method: str) -> object:
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def test_up_status_down_keeps_state(devnet_dir: Path) -> None:
    port = free_port()
    status = tessera(devnet_dir, "devnet", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["running"] is False

    up = tessera(devnet_dir, "devnet", "up", "--port", str(port), "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["running"] is True and info["rpc_url"] == f"http://127.0.0.1:{port}" and info["chain_id"] == 31337
    assert rpc_answers(info["rpc_url"])

    again = tessera(devnet_dir, "devnet", "up", "--port", str(port))
    assert again.returncode == 1
    assert again.stderr.startswith("error: devnet already running") and again.stderr.count("\n") == 1

    for _ in range(3):
        _rpc(info["rpc_url"], "evm_mine")
    report = json.loads(tessera(devnet_dir, "devnet", "status", "--json").stdout)
    assert report["running"] is True and report["block_number"] == 3
    assert report["deployment"]["exists"] is False

    human = tessera(devnet_dir, "devnet", "status")
    assert "running" in human.stdout and "tessera deploy" in human.stdout

    down = tessera(devnet_dir, "devnet", "down")
    assert down.returncode == 0 and "devnet down" in down.stderr
    assert not rpc_answers(info["rpc_url"])
    assert (devnet_dir / ".devnet" / "state.json").exists()

    # Back up on the same state: the mined blocks are still there.
    up2 = tessera(devnet_dir, "devnet", "up", "--port", str(port), "--json")
    assert up2.returncode == 0, up2.stderr
    assert json.loads(tessera(devnet_dir, "devnet", "status", "--json").stdout)["block_number"] == 3
    assert tessera(devnet_dir, "devnet", "down").returncode == 0
    assert "not running" in tessera(devnet_dir, "devnet", "down").stderr


def test_status_flags_a_stale_deployment(devnet_dir: Path) -> None:
    port = free_port()
    assert tessera(devnet_dir, "devnet", "up", "--port", str(port)).returncode == 0
    try:
        deployments = devnet_dir / "deployments"
        deployments.mkdir()
        (deployments / "31337.json").write_text(json.dumps(
            {"chain_id": 31337, "contracts": {"JobEscrow": {"address": "0x" + "11" * 20}}}
        ))
        report = json.loads(tessera(devnet_dir, "devnet", "status", "--json").stdout)
        assert report["deployment"]["exists"] is True
        assert report["deployment"]["code_ok"] is False
        assert "STALE" in tessera(devnet_dir, "devnet", "status").stdout
    finally:
        tessera(devnet_dir, "devnet", "down")


def test_up_refuses_a_busy_port(devnet_dir: Path) -> None:
    from protocol.devnet import start_anvil

    with start_anvil() as other:
        result = tessera(devnet_dir, "devnet", "up", "--port", str(other.port))
    assert result.returncode == 1
    assert "already answers JSON-RPC" in result.stderr
