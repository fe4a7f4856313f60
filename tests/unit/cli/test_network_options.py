"""The network is what it says, on the command line: chain-id checks, trailing global options,
`--rpc-timeout` against a node that never answers, redacted URLs, reads without a passphrase."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_account import Account

from protocol.accounts import create_keystore
from protocol.cli.main import cli
from protocol.devnet import free_port, start_anvil, test_account_keys
from tests.unit.cli.conftest import CLI_ENV_VARS

API_KEY = "MY-ALCHEMY-KEY-123456"


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner(mix_stderr=False).invoke(cli, list(args), input=input, catch_exceptions=True)


def error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*CLI_ENV_VARS, "TESSERA_RPC_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))


class SilentRpc:
    """Accepts connections and reads requests, never answers: the hanging RPC of the rehearsal."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.running = False
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent_rpc() -> Iterator[SilentRpc]:
    server = SilentRpc()
    yield server
    server.close()


def test_hanging_rpc_times_out_after_rpc_timeout(silent_rpc: SilentRpc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("protocol.chain.SLOW_NOTICE_SECONDS", 0.3)
    url = f"http://127.0.0.1:{silent_rpc.port}/v2/{API_KEY}"
    started = time.monotonic()
    # given after the subcommand, where ape users type it
    result = invoke("job", "list", "--network", url, "--rpc-timeout", "1.5")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1 and 1.4 < elapsed < 3.5, (elapsed, result.stderr)
    line = error_line(result)
    assert "timed out" in line and "within 1.5s" in line and "--rpc-timeout" in line
    assert "waiting for RPC" in result.stderr  # a visible note while it waits
    assert API_KEY not in result.stderr
    monkeypatch.setenv("TESSERA_RPC_TIMEOUT", "0.5")
    started = time.monotonic()
    result = invoke("--network", url, "stake", "show", "0x" + "11" * 20)
    assert result.exit_code == 1 and time.monotonic() - started < 2.5 and "within 0.5s" in error_line(result)


def test_dead_rpc_error_is_one_redacted_line_with_the_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}/v2/{API_KEY}?apikey=SECOND-SECRET-77"
    result = invoke("--network", url, "--rpc-timeout", "2", "job", "list")
    assert result.exit_code == 1
    line = error_line(result)
    assert "Connection refused" in line and f"http://127.0.0.1:{url.split(':')[2].split('/')[0]}/***" in line
    assert API_KEY not in result.stderr and "SECOND-SECRET-77" not in result.stderr


def test_misspelt_network_is_a_usage_error() -> None:
    result = invoke("--network", "ethereum:sepoila:node", "job", "list")
    assert result.exit_code == 2 and "did you mean ethereum:sepolia:node?" in error_line(result)


def test_mainnet_name_on_a_sepolia_rpc_signs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = test_account_keys(2)[1]
    create_keystore("alice", key, "pw", data_folder=tmp_path / "ape", iterations=2**4)
    monkeypatch.setenv("TESSERA_PASSPHRASE", "pw")
    with start_anvil(chain_id=11155111) as node:
        monkeypatch.setenv("TESSERA_RPC_URL", node.rpc_url + f"/?apikey={API_KEY}")
        from protocol.chain import connect

        w3 = connect(node.rpc_url)
        address = Account.from_key(key).address
        nonce = w3.eth.get_transaction_count(address)
        for argv in (["--network", "ethereum:mainnet:node", "--account", "alice", "faucet", "5"],
                     ["faucet", "5", "--network", "ethereum:mainnet:node", "--account", "alice"],
                     ["--account", "alice", "faucet", "5"]):  # the default network is the local chain, 31337
            result = invoke(*argv)
            assert result.exit_code == 2, result.stderr
            line = error_line(result)
            assert "serves chain id 11155111" in line and "nothing was signed" in line and API_KEY not in line
        assert "is chain id 1," in error_line(invoke("job", "list", "--network", "ethereum:mainnet:node"))
        assert w3.eth.get_transaction_count(address) == nonce
        # the matching name gets past the check (and on to the missing deployment)
        result = invoke("--network", "ethereum:sepolia:node", "job", "list")
        assert result.exit_code == 1 and "no deployment for chain id 11155111" in error_line(result)


def test_read_only_commands_never_ask_for_the_passphrase(tessera: Any, tmp_path: Path) -> None:
    key = test_account_keys(3)[2]
    create_keystore("reader", key, "never typed", data_folder=tmp_path / "ape", iterations=2**4)
    address = Account.from_key(key).address
    # stdin is empty and not a terminal, no TESSERA_PASSPHRASE: decrypting would fail
    shown = tessera("stake", "show", "--json", account="reader", json_out=True)
    assert shown["address"] == address
    assert tessera("job", "list", "--mine", "--json", account="reader", json_out=True) == {"jobs": []}
    # a command that signs still needs the passphrase, and says so
    result = tessera("faucet", "1", account="reader", ok=False)
    assert result.exit_code == 1 and "no passphrase for account 'reader'" in error_line(result)


def test_trailing_account_and_bad_address(tessera: Any) -> None:
    shown = tessera("stake", "show", "--json", "--account", "TEST::2", json_out=True)
    assert shown["address"] == Account.from_key(test_account_keys(3)[2]).address
    result = tessera("stake", "show", "0x1234", ok=False)
    assert result.exit_code == 2 and "'0x1234' is not an address" in result.stderr
    assert "unexpected" not in result.stderr


def test_daemon_flags_see_trailing_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    # `tessera worker run --network … --rpc-timeout …` must override the config file like the root flags do.
    import click

    from protocol.cli.common import explicit_global_flags

    seen: list[dict[str, Any]] = []

    @click.command("probe-flags")
    @click.pass_context
    def probe(ctx: click.Context) -> None:
        seen.append(explicit_global_flags(ctx))

    cli.add_command(probe)
    try:
        assert invoke("probe-flags").exit_code == 0 and seen[-1] == {}
        result = invoke("probe-flags", "--network", "http://127.0.0.1:1", "--rpc-timeout", "7", "--account", "op")
        assert result.exit_code == 0, result.stderr
        assert seen[-1] == {"network": "http://127.0.0.1:1", "rpc_timeout": 7.0, "account": "op"}
        monkeypatch.setenv("TESSERA_RPC_TIMEOUT", "3")
        assert invoke("probe-flags").exit_code == 0 and seen[-1] == {"rpc_timeout": 3.0}
    finally:
        cli.commands.pop("probe-flags", None)


def test_signing_warns_about_a_readable_keyfile(tessera: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = create_keystore("loose", test_account_keys(4)[3], "pw", data_folder=tmp_path / "ape", iterations=2**4)
    os.chmod(path, 0o644)
    monkeypatch.setenv("TESSERA_PASSPHRASE", "pw")
    result = tessera("faucet", "1", account="loose")
    assert f"warning: keyfile {path} has mode 0644" in result.stderr and "chmod 600" in result.stderr


def test_dispute_credits_is_a_read(tessera: Any, tmp_path: Path) -> None:
    key = Account.create().key  # a fresh address: nothing owed to it
    create_keystore("creditor", key, "never typed", data_folder=tmp_path / "ape", iterations=2**4)
    owed = tessera("dispute", "credits", "--json", account="creditor", json_out=True)
    assert owed and all(value == "0" for value in owed.values())
    result = tessera("dispute", "credits", ok=False)
    assert result.exit_code == 2 and "pass an ADDRESS or --account" in result.stderr


def test_deploy_summary_redacts_the_rpc_url(anvil: Any, tmp_path: Path) -> None:
    result = invoke("--network", f"{anvil.rpc_url}/?apikey={API_KEY}", "--account", "TEST::0", "deploy",
                    "--dry-run", "--out-dir", str(tmp_path / "none"))
    assert result.exit_code == 0, result.stderr
    assert f"{anvil.rpc_url}/***" in result.stderr and API_KEY not in result.stderr + result.stdout
