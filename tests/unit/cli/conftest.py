"""CLI fixtures: run `tessera` through click's runner against the session anvil and deployment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

CLI_ENV_VARS = ("TESSERA_NETWORK", "TESSERA_ACCOUNT", "TESSERA_PASSPHRASE", "TESSERA_PASSPHRASE_FILE",
                "TESSERA_DEPLOYMENTS_DIR", "TESSERA_RPC_URL")


@pytest.fixture
def tessera(anvil: Any, deployment: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`tessera(*args, account=None, ok=True, json_out=False)` runs the CLI on the session chain.

    With `ok`, asserts exit code 0 (showing stderr otherwise); with `json_out`, returns parsed stdout.
    """
    from protocol.cli.main import cli

    for name in CLI_ENV_VARS:
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, account: str | None = None, ok: bool = True, json_out: bool = False,
            network: str | None = None, deployment_path: Path | None = None, input: str | None = None) -> Any:
        argv = ["--network", network or anvil.rpc_url, "--deployment", str(deployment_path or deployment.path)]
        if account:
            argv += ["--account", account]
        result = CliRunner(mix_stderr=False).invoke(cli, [*argv, *args], input=input, catch_exceptions=True)
        if ok:
            assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.exception!r}"
        if json_out:
            return json.loads(result.stdout)
        return result

    return run


def tiny_spec(dataset_hash: str, *, steps: int = 4, segment_steps: int = 2, dataset_uris: list[str] | None = None) -> dict:
    """A small valid training spec (2 segments) over the dataset `dataset_hash`."""
    return {
        "version": 1,
        "kind": "train",
        "model": {"input_shape": [4], "layers": [{"type": "linear", "in_features": 4, "out_features": 3}]},
        "dataset": {"hash": dataset_hash, "uris": dataset_uris or []},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "steps": steps,
        "segment_steps": segment_steps,
        "batch_size": 2,
    }
