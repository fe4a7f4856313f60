"""Shipped ABIs: loading, and the drift test against a fresh compile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from protocol.abi import ABI_DIR, CONTRACT_NAMES, load_abi, load_bytecode, load_runtime_bytecode
from protocol.abi.export import artifacts_from_manifest
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


def _compile(work: Path, name: str) -> tuple[list[dict], str]:
    """ABI and deployment bytecode of contracts/<name>.vy under `work`, from the pinned vyper."""
    result = subprocess.run([sys.executable, "-m", "vyper", "-f", "abi,bytecode", f"contracts/{name}.vy"], cwd=work,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    abi_line, bytecode = result.stdout.strip().splitlines()
    return json.loads(abi_line), bytecode.strip()


def _abi_entries(abi: list[dict]) -> list[str]:
    """An ABI as sorted canonical entries (ape's manifest keeps the compiler's entries, in its own order,
    and drops a constructor's empty `outputs`)."""
    return sorted(json.dumps({k: v for k, v in entry.items() if not (entry.get("type") == "constructor" and k == "outputs")},
                             sort_keys=True) for entry in abi)  # fmt: skip


def test_shipped_abis_match_fresh_compile(tmp_path: Path) -> None:
    """Fails when protocol/abi/*.json drift from the contracts: run `make abi` to regenerate. Every shipped
    contract is compiled afresh by the pinned vyper (the compiler `ape compile` runs; two at a time, each on
    its own: a shipped contract imports only the library modules) and must give the shipped deployment
    bytecode, byte for byte, and the shipped ABI."""
    import vyper

    # a copy, so a concurrent edit elsewhere in the checkout cannot race this test's compiles
    work = tmp_path / "project"
    shutil.copytree(REPO / "contracts" / "lib", work / "contracts" / "lib")
    for name in CONTRACT_NAMES:
        shutil.copy(REPO / "contracts" / f"{name}.vy", work / "contracts" / f"{name}.vy")
    with ThreadPoolExecutor(max_workers=2) as pool:
        fresh = dict(zip(CONTRACT_NAMES, pool.map(lambda name: _compile(work, name), CONTRACT_NAMES), strict=True))
    drifted = []
    for name, (abi, bytecode) in fresh.items():
        shipped = json.loads((ABI_DIR / f"{name}.json").read_text(encoding="utf8"))
        if bytecode != shipped["bytecode"] or _abi_entries(abi) != _abi_entries(shipped["abi"]):
            drifted.append(name)
        assert shipped["compiler"] == f"vyper {vyper.__version__.split('+')[0]}", name
    assert not drifted, f"shipped ABI/bytecode out of date for {drifted}: run `make abi`"
