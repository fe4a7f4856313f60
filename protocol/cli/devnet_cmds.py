"""`tessera devnet up|down|status`: a local anvil chain that outlives the command.

anvil runs in the background with `--state` under the devnet folder (default `.devnet/`), so the
chain and any deployment on it survive `down`/`up`. The folder holds:
`anvil.pid` (the process id), `devnet.json` (port, RPC URL, chain id, start time), `anvil.log`,
`state.json` (anvil's dumped state), `anvil-cache/` (old block states anvil spills to disk; `down`
removes it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import click

from protocol.cli.common import json_option, print_fields, print_json, say, settings_of
from protocol.errors import ChainError, ConfigError

DEVNET_DIR_ENV = "TESSERA_DEVNET_DIR"
DEFAULT_PORT = 8545  # where ape's `ethereum:local:foundry` looks for a running node
RPC_TIMEOUT_S = 3.0
STATE_INTERVAL_S = 5  # anvil also dumps state every few seconds, so a crash loses little


class DevnetPaths:
    """The files of one devnet folder."""

    def __init__(self, root: Path):
        self.root = root
        self.pid = root / "anvil.pid"
        self.info = root / "devnet.json"
        self.log = root / "anvil.log"
        self.state = root / "state.json"
        self.cache = root / "anvil-cache"  # anvil's persisted old states; removed by `down`


def _paths(devnet_dir: Path | None) -> DevnetPaths:
    return DevnetPaths(Path(devnet_dir or os.environ.get(DEVNET_DIR_ENV) or ".devnet").resolve())


def _read_pid(paths: DevnetPaths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_anvil(pid: int) -> bool:
    """True when `pid` is alive and is an anvil process (guards against a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    return b"anvil" in cmdline


def _read_info(paths: DevnetPaths) -> dict[str, Any]:
    try:
        return json.loads(paths.info.read_text())
    except (OSError, ValueError):
        return {}


def _rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """One JSON-RPC call with a timeout; ChainError when it cannot be answered."""
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=RPC_TIMEOUT_S) as response:
            reply = json.loads(response.read(1_000_000))
    except (OSError, ValueError) as exc:
        raise ChainError(f"devnet RPC {url} did not answer {method}: {exc}") from exc
    if "error" in reply:
        raise ChainError(f"devnet RPC {url} refused {method}: {reply['error']}")
    return reply.get("result")


def _deployment_status(rpc_url: str, chain_id: int, deployment: Path | None) -> dict[str, Any]:
    """Whether a deployment file exists for this chain and its contracts have code on the devnet."""
    path = deployment or Path("deployments") / f"{chain_id}.json"
    result: dict[str, Any] = {"path": str(path), "exists": path.exists(), "code_ok": None, "contracts": {}}
    if not path.exists():
        return result
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"deployment file {path} is not valid JSON: {exc}") from exc
    contracts = data.get("contracts", {}) if isinstance(data, dict) else {}
    code_ok = True
    for name, entry in contracts.items():
        address = entry.get("address") if isinstance(entry, dict) else entry
        if not isinstance(address, str):
            continue
        code = _rpc(rpc_url, "eth_getCode", [address, "latest"])
        has_code = bool(code) and code != "0x"
        result["contracts"][name] = {"address": address, "has_code": has_code}
        code_ok = code_ok and has_code
    result["code_ok"] = code_ok if result["contracts"] else False
    return result


@click.group()
def devnet() -> None:
    """Run a local anvil chain in the background (state kept under .devnet/)."""


_dir_option = click.option(
    "--dir",
    "devnet_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Devnet folder (pid, logs, state). Default: .devnet or TESSERA_DEVNET_DIR.",
)


@devnet.command()
@_dir_option
@click.option("--port", type=click.IntRange(1, 65_535), default=DEFAULT_PORT, show_default=True)
@click.option("--block-time", type=click.FloatRange(min=0.1), default=None, help="Seconds per block (default: a block per transaction).")
@click.option("--fresh", is_flag=True, help="Discard the saved chain state first.")
@json_option
def up(devnet_dir: Path | None, port: int, block_time: float | None, fresh: bool, as_json: bool) -> None:
    """Start anvil in the background, loading the saved state if there is one."""
    from protocol.devnet import LOCAL_CHAIN_ID, rpc_answers, start_anvil

    paths = _paths(devnet_dir)
    pid = _read_pid(paths)
    if pid is not None and _is_anvil(pid):
        info = _read_info(paths)
        raise ChainError(f"devnet already running (pid {pid}, {info.get('rpc_url', '?')}): run `tessera devnet down` first")
    if rpc_answers(f"http://127.0.0.1:{port}", timeout=0.5):
        raise ChainError(f"port {port} already answers JSON-RPC (another node?): pick another with --port")
    paths.root.mkdir(parents=True, exist_ok=True)
    if fresh and paths.state.exists():
        paths.state.unlink()
    shutil.rmtree(paths.cache, ignore_errors=True)  # a killed anvil's leftovers
    anvil = start_anvil(
        port=port,
        block_time=block_time,
        state_path=paths.state,
        log_path=paths.log,
        extra_args=["--state-interval", str(STATE_INTERVAL_S)],
        cache_path=paths.cache,
    )
    info = {
        "pid": anvil.process.pid,
        "port": port,
        "rpc_url": anvil.rpc_url,
        "chain_id": LOCAL_CHAIN_ID,
        "state_path": str(paths.state),
        "log_path": str(paths.log),
        "started_at": int(time.time()),
    }
    paths.pid.write_text(f"{anvil.process.pid}\n")
    paths.info.write_text(json.dumps(info, indent=2))
    # The anvil process is in its own session and keeps running after we exit; forget the handle
    # without waiting so Python does not warn about it.
    anvil.process.returncode = 0
    if as_json:
        print_json({"running": True, **info})
    else:
        say(f"devnet up: anvil pid {info['pid']} on {info['rpc_url']} (chain {LOCAL_CHAIN_ID}), state in {paths.state}")


@devnet.command()
@_dir_option
@click.option("--timeout", type=click.FloatRange(min=1), default=15.0, show_default=True, help="Seconds to wait for anvil to save state and exit.")
def down(devnet_dir: Path | None, timeout: float) -> None:
    """Stop the background anvil (it saves its state on the way out)."""
    paths = _paths(devnet_dir)
    pid = _read_pid(paths)
    if pid is None or not _is_anvil(pid):
        paths.pid.unlink(missing_ok=True)
        shutil.rmtree(paths.cache, ignore_errors=True)
        say("devnet is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_anvil(pid):
        time.sleep(0.1)
    if _is_anvil(pid):
        os.kill(pid, signal.SIGKILL)
        say(f"anvil (pid {pid}) did not stop within {timeout:.0f}s: killed; state may be up to {STATE_INTERVAL_S}s old")
    paths.pid.unlink(missing_ok=True)
    shutil.rmtree(paths.cache, ignore_errors=True)
    say(f"devnet down (state kept in {paths.state})")


@devnet.command()
@_dir_option
@json_option
@click.pass_context
def status(ctx: click.Context, devnet_dir: Path | None, as_json: bool) -> None:
    """Is the devnet running; its block number; is there a deployment with code on it."""
    paths = _paths(devnet_dir)
    pid = _read_pid(paths)
    info = _read_info(paths)
    running = pid is not None and _is_anvil(pid)
    report: dict[str, Any] = {
        "running": running,
        "pid": pid if running else None,
        "rpc_url": info.get("rpc_url"),
        "chain_id": info.get("chain_id"),
        "block_number": None,
        "state_saved": paths.state.exists(),
        "deployment": None,
    }
    if running and info.get("rpc_url"):
        report["block_number"] = int(_rpc(info["rpc_url"], "eth_blockNumber"), 16)
        report["chain_id"] = int(_rpc(info["rpc_url"], "eth_chainId"), 16)
        report["deployment"] = _deployment_status(info["rpc_url"], report["chain_id"], settings_of(ctx).deployment)
    if as_json:
        print_json(report)
        return
    fields = {
        "running": "yes" if running else "no",
        "pid": report["pid"],
        "rpc url": report["rpc_url"],
        "chain id": report["chain_id"],
        "block": report["block_number"],
        "saved state": str(paths.state) if report["state_saved"] else "none",
    }
    deployment = report["deployment"]
    if deployment is not None:
        if not deployment["exists"]:
            fields["deployment"] = f"none ({deployment['path']}): run `tessera deploy`"
        elif deployment["code_ok"]:
            fields["deployment"] = f"{deployment['path']} (code present at every address)"
        else:
            fields["deployment"] = f"{deployment['path']} (STALE: contract code missing on this chain)"
    print_fields("devnet", fields)
