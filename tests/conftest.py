"""Shared fixtures for every Tessera test on a real local chain (anvil).

Only `_private_state_dir` is autouse (it points TESSERA_STATE_DIR at a temporary folder). Contract
unit tests in tests/unit/contracts use ape's own fixtures and their own conftest (which overrides the
persona names). Session fixtures start one anvil and one fresh
deployment (local parameters, into a temporary folder); use `fresh_chain` in tests that must not see
or leave state, and `time_travel` to move chain time.

Personas follow docs/architecture.md: test mnemonic index 0 deployer, 1 submitter, 2 worker,
3 verifier, 4 arbiter, 5 treasury, 6 worker2, 7 submitter2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TOKEN = 10**18


def _hypothesis_profiles() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # pragma: no cover
        return
    settings.register_profile("default", max_examples=30, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture])
    settings.register_profile("thorough", max_examples=2_000, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture])
    settings.load_profile(os.environ.get("TESSERA_HYPOTHESIS_PROFILE", "default"))


_hypothesis_profiles()


@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test's transaction journal (protocol.tx_journal) out of the real ~/.tessera: the one
    autouse fixture, because every signed write journals itself, subprocesses included."""
    previous = os.environ.get("TESSERA_STATE_DIR")
    os.environ["TESSERA_STATE_DIR"] = str(tmp_path_factory.mktemp("tessera-state"))
    yield
    if previous is None:
        os.environ.pop("TESSERA_STATE_DIR", None)
    else:
        os.environ["TESSERA_STATE_DIR"] = previous


@pytest.fixture(scope="session")
def anvil() -> Iterator[Any]:
    """One anvil for the session (automine, chain id 31337, the test mnemonic)."""
    from protocol.devnet import start_anvil

    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def w3(anvil: Any) -> Any:
    """A bounded web3 connection to the session anvil."""
    from protocol.chain import connect

    return connect(anvil.rpc_url, timeout=30.0)


@pytest.fixture(scope="session")
def test_keys() -> list[str]:
    from protocol.devnet import test_account_keys

    return test_account_keys(10)


def _persona(keys: list[str], index: int) -> Any:
    from eth_account import Account

    return Account.from_key(keys[index])


@pytest.fixture(scope="session")
def deployer(test_keys: list[str]) -> Any:
    return _persona(test_keys, 0)


@pytest.fixture(scope="session")
def submitter(test_keys: list[str]) -> Any:
    return _persona(test_keys, 1)


@pytest.fixture(scope="session")
def worker(test_keys: list[str]) -> Any:
    return _persona(test_keys, 2)


@pytest.fixture(scope="session")
def verifier(test_keys: list[str]) -> Any:
    return _persona(test_keys, 3)


@pytest.fixture(scope="session")
def arbiter(test_keys: list[str]) -> Any:
    return _persona(test_keys, 4)


@pytest.fixture(scope="session")
def treasury(test_keys: list[str]) -> Any:
    return _persona(test_keys, 5)


@pytest.fixture(scope="session")
def worker2(test_keys: list[str]) -> Any:
    return _persona(test_keys, 6)


@pytest.fixture(scope="session")
def submitter2(test_keys: list[str]) -> Any:
    return _persona(test_keys, 7)


@pytest.fixture(scope="session")
def deployments_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the session deployment's `<chain_id>.json` (for CLI `--deployment`)."""
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="session")
def deployment(w3: Any, deployer: Any, deployments_dir: Path) -> Any:
    """A fresh deployment of all five contracts on the session anvil, local parameters.

    `deployment.path` is the written `<chain_id>.json`.
    """
    from protocol.deploy import deploy_all
    from worker.testing_chain import open_local_env_class

    deployed = deploy_all(w3, deployer, "local", out_dir=deployments_dir)
    open_local_env_class(w3, deployed)
    return deployed


@pytest.fixture(scope="session")
def client_of(w3: Any, deployment: Any) -> Callable[..., Any]:
    """Factory: `client_of(account)` → a `TesseraClient` signing as `account` (None: read-only)."""
    from protocol.client import TesseraClient

    def make(account: Any = None, **kwargs: Any) -> Any:
        return TesseraClient(w3, deployment, account, **kwargs)

    return make


@pytest.fixture
def funded(client_of: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: `funded(account, tokens=1_000, stake=0)` mints dev tokens (whole tokens) and stakes; returns the client."""

    def fund(account: Any, tokens: int = 1_000, stake: int = 0) -> Any:
        client = client_of(account)
        if tokens:
            client.faucet(tokens * TOKEN)
        if stake:
            client.stake(stake * TOKEN)
        return client

    return fund


@pytest.fixture
def fresh_chain(w3: Any, deployment: Any) -> Iterator[Any]:
    """Snapshot the chain before the test and revert to it afterwards (anvil `evm_snapshot`/`evm_revert`).

    Depends on `deployment` so the snapshot always contains the contracts.
    """
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        yield w3
    finally:
        reverted = w3.provider.make_request("evm_revert", [snapshot])
        assert reverted.get("result") is True, f"evm_revert failed: {reverted}"


@pytest.fixture
def time_travel(w3: Any) -> Callable[[int], int]:
    """`time_travel(seconds)` moves chain time forward and mines a block; returns the new block timestamp."""

    def travel(seconds: int) -> int:
        w3.provider.make_request("evm_increaseTime", [int(seconds)])
        w3.provider.make_request("evm_mine", [])
        return int(w3.eth.get_block("latest")["timestamp"])

    return travel
