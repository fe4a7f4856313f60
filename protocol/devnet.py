"""Run anvil, the local chain, as a child process (tests, the demo and `tessera devnet`).

anvil comes from npm (`make install` puts it under .tools/); we look for it on PATH first, then in the
repository's .tools folder, so a plain `python -m pytest` works after `make install`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import ChainError

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_FALLBACK = REPO_ROOT / ".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
# The well-known anvil/hardhat test mnemonic: local chains only, never holds real value.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
LOCAL_CHAIN_ID = 31337


def anvil_binary() -> str:
    """Path of the anvil executable, or a ChainError that says how to install it."""
    found = shutil.which("anvil")
    if found:
        return found
    if ANVIL_FALLBACK.exists():
        return str(ANVIL_FALLBACK)
    raise ChainError("anvil not found: run `make install` (installs @foundry-rs/anvil from npm into .tools/)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Anvil:
    """A running anvil process. Use as a context manager or call `stop()`."""

    port: int
    process: subprocess.Popen
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    # A cache folder this handle made and removes on stop (None when the caller chose the folder).
    owned_cache: Path | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate anvil (it dumps `--dump-state` on SIGTERM), killing it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self.owned_cache is not None:
            shutil.rmtree(self.owned_cache, ignore_errors=True)
            self.owned_cache = None

    def __enter__(self) -> "Anvil":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(
    port: int | None = None,
    block_time: float | None = None,
    state_path: Path | None = None,
    log_path: Path | None = None,
    accounts: int = 10,
    extra_args: list[str] | None = None,
    startup_timeout: float = 20.0,
    chain_id: int = LOCAL_CHAIN_ID,
    cache_path: Path | None = None,
) -> Anvil:
    """Start anvil on 127.0.0.1 and wait until it answers JSON-RPC.

    `block_time` None means a block per transaction (automine). `state_path` loads and saves the
    chain state so a devnet survives restarts. `chain_id` other than 31337 stands in for a public
    network (11155111 for Sepolia), with the same funded test accounts.

    anvil persists old block states under a cache folder that it never removes (by default
    ~/.foundry/anvil/tmp, which grows by gigabytes over a test run). `cache_path` names that
    folder (the caller removes it); None gives this anvil a temporary folder that `stop()` removes.
    """
    port = port or free_port()
    owned_cache = None
    if cache_path is None:
        owned_cache = cache_path = Path(tempfile.mkdtemp(prefix="tessera-anvil-cache-"))
    args = [
        anvil_binary(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--accounts", str(accounts),
        "--mnemonic", TEST_MNEMONIC,
        "--cache-path", str(cache_path),
        "--silent",
    ]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    if state_path is not None:
        args += ["--state", str(state_path)]
    args += extra_args or []
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        if owned_cache is not None:
            shutil.rmtree(owned_cache, ignore_errors=True)
        raise
    anvil = Anvil(port=port, process=process, log_path=log_path, args=args, owned_cache=owned_cache)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            anvil.stop()
            raise ChainError(f"anvil exited at start with code {process.returncode} (args: {' '.join(args)})")
        if rpc_answers(anvil.rpc_url):
            return anvil
        time.sleep(0.05)
    anvil.stop()
    raise ChainError(f"anvil did not answer on {anvil.rpc_url} within {startup_timeout:.0f}s")


def rpc_answers(rpc_url: str, timeout: float = 1.0) -> bool:
    """True when `rpc_url` answers `eth_chainId` within `timeout` seconds."""
    import json
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return "result" in json.loads(response.read(65_536))
    except (OSError, ValueError):
        return False


def test_account_keys(count: int = 10) -> list[str]:
    """Private keys of the local test mnemonic's first `count` accounts (anvil's defaults)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [
        "0x" + Account.from_mnemonic(TEST_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex().removeprefix("0x")
        for i in range(count)
    ]




test_account_keys.__test__ = False  # a helper named test_*: keep pytest from collecting it where imported
