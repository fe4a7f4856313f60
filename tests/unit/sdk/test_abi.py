"""Shipped ABIs: loading, and the drift test against a fresh `ape compile`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.abi import ABI_DIR, CONTRACT_NAMES, load_abi, load_bytecode, load_runtime_bytecode
from protocol.abi.export import artifacts_from_manifest, render
from protocol.errors import DeploymentError

REPO = Path(__file__).resolve().parents[3]


def test_every_contract_ships_abi_and_bytecode() -> None:
    for name in CONTRACT_NAMES:
        abi = load_abi(name)
        assert any(entry.get("type") == "function" for entry in abi), name
        assert load_bytecode(name).startswith("0x") and len(load_bytecode(name)) > 100
        assert load_runtime_bytecode(name)[2:] in load_bytecode(name)


def test_unknown_contract_is_a_clear_error() -> None:
    with pytest.raises(DeploymentError, match="unknown contract 'Nope'"):
        load_abi("Nope")


def test_export_rejects_incomplete_manifest() -> None:
    with pytest.raises(DeploymentError, match="lacks contracts"):
        artifacts_from_manifest({"contractTypes": {"DevToken": {}}})


def test_shipped_abis_match_fresh_compile(tmp_path: Path) -> None:
    """Fails when protocol/abi/*.json drift from the contracts: run `make abi` to regenerate."""
    ape = shutil.which("ape") or str(Path(sys.executable).parent / "ape")
    if not Path(ape).exists():
        pytest.skip("ape is not installed")
    # Compile a copy so a concurrent edit elsewhere in the checkout cannot race this test's output: the
    # shipped contracts and the library modules they import (not the test harnesses, which take longer).
    work = tmp_path / "project"
    shutil.copytree(REPO / "contracts" / "lib", work / "contracts" / "lib")
    for name in CONTRACT_NAMES:
        shutil.copy(REPO / "contracts" / f"{name}.vy", work / "contracts" / f"{name}.vy")
    shutil.copy(REPO / "ape-config.yaml", work / "ape-config.yaml")
    env = {**os.environ, "APE_DATA_FOLDER": str(tmp_path / "ape-data")}
    result = subprocess.run([ape, "compile"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((work / ".build" / "__local__.json").read_text())
    fresh = artifacts_from_manifest(manifest)
    drifted = [name for name, artifact in fresh.items()
               if render(artifact) != (ABI_DIR / f"{name}.json").read_text(encoding="utf8")]
    assert not drifted, f"shipped ABI/bytecode out of date for {drifted}: run `make abi`"
