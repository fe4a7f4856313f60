"""RPC connection rules: URL resolution, timeouts, size limits, unreachable endpoints, revert decoding."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_abi import encode
from hypothesis import given
from hypothesis import strategies as st

from protocol.chain import (
    BoundedHTTPProvider,
    connect,
    decode_revert_data,
    expected_chain_id,
    node_message,
    resolve_rpc_url,
    revert_reason_of,
)
from protocol.devnet import free_port, start_anvil
from protocol.errors import ChainError, ConfigError, RpcUnreachableError


def test_plain_urls_pass_through() -> None:
    assert resolve_rpc_url("http://10.0.0.1:8545") == "http://10.0.0.1:8545"
    assert resolve_rpc_url("https://rpc.example/v1") == "https://rpc.example/v1"


def test_local_foundry_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_RPC_URL", raising=False)
    assert resolve_rpc_url("ethereum:local:foundry") == "http://127.0.0.1:8545"
    monkeypatch.setenv("TESSERA_RPC_URL", "http://127.0.0.1:9999")
    assert resolve_rpc_url("ethereum:local:foundry") == "http://127.0.0.1:9999"


def test_remote_choice_from_ape_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TESSERA_RPC_URL", raising=False)
    config = tmp_path / "ape-config.yaml"
    config.write_text("node:\n  ethereum:\n    sepolia:\n      uri: https://sepolia.example/rpc\n")
    assert resolve_rpc_url("ethereum:sepolia:node", config) == "https://sepolia.example/rpc"
    with pytest.raises(ConfigError, match="no RPC URL for network 'ethereum:holesky:node'.*TESSERA_RPC_URL"):
        resolve_rpc_url("ethereum:holesky:node", config)


@pytest.mark.parametrize("bad", ["", "ws://x", "a::b", "a:b:c:d"])
def test_bad_network_strings(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_RPC_URL", raising=False)
    with pytest.raises(ConfigError):
        resolve_rpc_url(bad)


def test_ape_test_provider_has_no_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_RPC_URL", raising=False)
    with pytest.raises(ConfigError, match="in-process"):
        resolve_rpc_url("ethereum:local:test")


def test_unreachable_rpc_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RpcUnreachableError, match=url.replace(".", r"\.")):
        connect(url, timeout=1.0, retries=1)
    assert time.monotonic() - started < 10


class _Server:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def huge_server() -> Iterator[_Server]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"jsonrpc":"2.0","id":0,"result":"' + b"a" * 200_000 + b'"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(Handler)
    yield server
    server.close()


@pytest.fixture
def silent_server() -> Iterator[_Server]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            time.sleep(3)

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(Handler)
    yield server
    server.close()


def test_response_size_limit(huge_server: _Server) -> None:
    provider = BoundedHTTPProvider(huge_server.url, timeout=5, max_response_bytes=100_000, retries=0)
    with pytest.raises(ChainError, match="exceeds 100000 bytes"):
        provider.make_request("eth_chainId", [])


def test_hanging_rpc_times_out_within_one_budget(silent_server: _Server) -> None:
    # Retries share the timeout: a node that never answers costs about `timeout`, not attempts x timeout.
    provider = BoundedHTTPProvider(silent_server.url, timeout=0.5, retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(RpcUnreachableError, match=r"timed out: no answer to eth_blockNumber within 0\.5s"):
        provider.make_request("eth_blockNumber", [])
    assert time.monotonic() - started < 0.9


def test_sends_are_not_retried(silent_server: _Server) -> None:
    provider = BoundedHTTPProvider(silent_server.url, timeout=0.3, retries=3, backoff=0.05)
    with pytest.raises(RpcUnreachableError, match="1 attempt"):
        provider.make_request("eth_sendRawTransaction", ["0x00"])


def test_connects_to_anvil(anvil) -> None:
    w3 = connect(anvil.rpc_url)
    assert w3.eth.chain_id == 31337
    assert w3.provider.is_connected()


def _error_data(reason: str) -> bytes:
    return bytes.fromhex("08c379a0") + encode(["string"], [reason])


@given(st.text(max_size=200))
def test_error_string_round_trip(reason: str) -> None:
    assert decode_revert_data(_error_data(reason)) == reason
    assert decode_revert_data("0x" + _error_data(reason).hex()) == reason


@given(st.binary(max_size=100))
def test_decoding_arbitrary_bytes_never_crashes(data: bytes) -> None:
    result = decode_revert_data(data)
    assert result is None or isinstance(result, str)


def test_panic_and_reason_from_exception() -> None:
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert decode_revert_data(panic) == "panic 0x11"

    class Fake(Exception):
        pass

    exc = Fake("execution reverted: escrow: job not open")
    assert revert_reason_of(exc) == "escrow: job not open"
    exc2 = Fake("boom")
    exc2.data = "0x" + _error_data("staking: zero amount").hex()
    assert revert_reason_of(exc2) == "staking: zero amount"


def test_global_ape_config_names_the_rpc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # ape reads its global ape-config.yaml too; so does tessera, after the project's.
    monkeypatch.delenv("TESSERA_RPC_URL", raising=False)
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    (tmp_path / "ape").mkdir()
    (tmp_path / "ape" / "ape-config.yaml").write_text("node:\n  ethereum:\n    sepolia:\n      uri: https://global.example/rpc\n")
    project = tmp_path / "project-ape-config.yaml"
    assert resolve_rpc_url("ethereum:sepolia:node", project) == "https://global.example/rpc"
    project.write_text("node:\n  ethereum:\n    sepolia:\n      uri: https://project.example/rpc\n")
    assert resolve_rpc_url("ethereum:sepolia:node", project) == "https://project.example/rpc"
    monkeypatch.setenv("TESSERA_RPC_URL", "https://env.example/rpc")
    assert resolve_rpc_url("ethereum:sepolia:node", project) == "https://env.example/rpc"


def test_config_variables_expand_as_ape_expands_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`uri: $VAR` in an ape-config.yaml is the variable's value for tessera as for ape; an unset one is
    no URL (so the next source, or the error naming them, applies)."""
    monkeypatch.delenv("TESSERA_RPC_URL", raising=False)
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "no-global"))
    project = tmp_path / "ape-config.yaml"
    project.write_text("node:\n  ethereum:\n    sepolia:\n      uri: ${MY_RPC}\n")
    monkeypatch.setenv("MY_RPC", "https://expanded.example/rpc")
    assert resolve_rpc_url("ethereum:sepolia:node", project) == "https://expanded.example/rpc"
    monkeypatch.delenv("MY_RPC")
    with pytest.raises(ConfigError, match="no RPC URL for network 'ethereum:sepolia:node'"):
        resolve_rpc_url("ethereum:sepolia:node", project)


def test_the_project_config_gives_ape_and_tessera_the_same_sepolia_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: TESSERA_RPC_URL reaches `ape run deploy` on the testnet through this project's
    ape-config.yaml (`uri: $TESSERA_RPC_URL`), and `tessera` reads that file the same way."""
    import subprocess
    import sys

    url = "https://rpc.example.org/v2/some-key"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", "from ape import config; print(config.get_config('node').ethereum.sepolia['uri'])"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TESSERA_RPC_URL": url})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == url
    monkeypatch.setenv("TESSERA_RPC_URL", url)
    assert resolve_rpc_url("ethereum:sepolia:node", root / "ape-config.yaml") == url
    monkeypatch.delenv("TESSERA_RPC_URL")
    monkeypatch.setenv("APE_DATA_FOLDER", "/nonexistent")
    with pytest.raises(ConfigError, match="set TESSERA_RPC_URL"):
        resolve_rpc_url("ethereum:sepolia:node", root / "ape-config.yaml")


def test_misspelt_network_is_flagged_with_a_suggestion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESSERA_RPC_URL", "http://127.0.0.1:8545")  # even with a URL exported
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown network 'sepoila'.*did you mean ethereum:sepolia:node\?"):
        resolve_rpc_url("ethereum:sepoila:node", tmp_path / "none.yaml")
    # an ape custom network is a known network, with its own chain id
    config = tmp_path / "ape-config.yaml"
    config.write_text("networks:\n  custom:\n    - name: mychain\n      chain_id: 4242\n      ecosystem: ethereum\n")
    assert resolve_rpc_url("ethereum:mychain:node", config) == "http://127.0.0.1:8545"
    assert expected_chain_id("ethereum:mychain:node", config) == 4242
    assert expected_chain_id("ethereum:sepolia:node", config) == 11155111
    assert expected_chain_id("http://127.0.0.1:8545") is None


def test_named_network_must_match_the_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path))
    with start_anvil(chain_id=11155111) as node:
        monkeypatch.setenv("TESSERA_RPC_URL", node.rpc_url)
        assert connect("ethereum:sepolia:node").eth.chain_id == 11155111
        for wrong, expected in (("ethereum:mainnet:node", 1), ("ethereum:local:foundry", 31337)):
            with pytest.raises(ConfigError) as caught:
                connect(wrong)
            message = str(caught.value)
            assert f"is chain id {expected}" in message and "serves chain id 11155111" in message
            assert "from TESSERA_RPC_URL" in message and "nothing was signed" in message
        assert connect(node.rpc_url).eth.chain_id == 11155111  # a plain URL names no chain


def test_refused_connection_keeps_the_os_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}/v2/SECRET-KEY-42"
    with pytest.raises(RpcUnreachableError) as caught:
        connect(url, timeout=2.0, retries=0)
    message = str(caught.value)
    assert "Connection refused" in message and "SECRET-KEY-42" not in message and "127.0.0.1" in message


def test_insufficient_funds_reads_as_a_sentence(anvil) -> None:
    from eth_account import Account

    from protocol.chain import send_transaction

    exc = ValueError({"code": -32003, "message": "Insufficient funds for gas * price + value"})
    assert node_message(exc).startswith("the sending account has too little ETH") and "{" not in node_message(exc)
    penniless = Account.create()
    with pytest.raises(ChainError) as caught:  # what anvil really answers, through web3
        send_transaction(connect(anvil.rpc_url), penniless, to=penniless.address, value=1, description="pay")
    message = str(caught.value)
    assert "too little ETH to pay gas x fee + value" in message and "{" not in message and "'code'" not in message


@given(st.text(max_size=60))
def test_any_network_text_resolves_or_is_a_config_error(text: str) -> None:
    import os

    saved = os.environ.pop("TESSERA_RPC_URL", None)
    try:
        try:
            url = resolve_rpc_url(text, Path("/nonexistent/ape-config.yaml"))
        except ConfigError:
            return
        assert url.startswith(("http://", "https://"))
    finally:
        if saved is not None:
            os.environ["TESSERA_RPC_URL"] = saved


@given(st.sampled_from(["mainnet", "sepolia", "holesky"]), st.data())
def test_one_typo_away_suggests_the_network(network: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(network) - 2))
    typo = network[:i] + network[i + 1] + network[i] + network[i + 2:]  # two letters swapped
    if typo == network:
        return
    with pytest.raises(ConfigError, match=f"did you mean ethereum:{network}:node"):
        resolve_rpc_url(f"ethereum:{typo}:node", Path("/nonexistent/ape-config.yaml"))
