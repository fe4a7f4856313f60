"""Shipped ABIs: loading, and the drift test against the compile of the current sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


MANIFEST = REPO / ".build" / "__local__.json"


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


def _current_manifest() -> dict:
    """ape's compile output (`make compile`, which `make test` runs first), refused unless it was compiled
    from exactly the contract sources in the checkout now."""
    assert MANIFEST.is_file(), "no .build/__local__.json: run `make compile`"
    manifest = json.loads(MANIFEST.read_text(encoding="utf8"))
    on_disk = {str(p.relative_to(REPO)): p.read_text(encoding="utf8") for p in (REPO / "contracts").rglob("*.vy")}
    compiled = {name: source.get("content") for name, source in (manifest.get("sources") or {}).items()}
    stale = sorted(name for name in on_disk.keys() | compiled.keys() if on_disk.get(name) != compiled.get(name))
    assert not stale, f".build was compiled from other sources than {stale}: run `make compile`"
    return manifest


def test_shipped_abis_match_the_compile_of_the_current_sources() -> None:
    """Fails when protocol/abi/*.json drift from the contracts: run `make abi` to regenerate. Every shipped
    contract must be ape's compile of the sources in the checkout (`make compile`; a clean clone compiles
    all of them), byte for byte in its deployment bytecode, and have the same ABI."""
    import vyper

    fresh = artifacts_from_manifest(_current_manifest())
    drifted = []
    for name, artifact in fresh.items():
        shipped = json.loads((ABI_DIR / f"{name}.json").read_text(encoding="utf8"))
        if artifact["bytecode"] != shipped["bytecode"] or _abi_entries(artifact["abi"]) != _abi_entries(shipped["abi"]):
            drifted.append(name)
        assert shipped["compiler"] == f"vyper {vyper.__version__.split('+')[0]}", name
    assert not drifted, f"shipped ABI/bytecode out of date for {drifted}: run `make abi`"


def test_ape_compiles_what_the_pinned_vyper_compiles_alone(tmp_path: Path) -> None:
    """The shipped bytecode is what anyone gets from the pinned vyper on its own (no ape settings in the
    way): Staking, which imports a library module, compiled afresh in a copy of contracts/ equals ape's."""
    work = tmp_path / "project"  # a copy, so a concurrent edit elsewhere in the checkout cannot race the compile
    shutil.copytree(REPO / "contracts" / "lib", work / "contracts" / "lib")
    shutil.copy(REPO / "contracts" / "Staking.vy", work / "contracts" / "Staking.vy")
    abi, bytecode = _compile(work, "Staking")
    compiled = artifacts_from_manifest(_current_manifest())["Staking"]
    assert bytecode == compiled["bytecode"] and _abi_entries(abi) == _abi_entries(compiled["abi"])


def test_a_stale_compile_output_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .build compiled from other sources is refused by name, not compared."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf8"))
    manifest["sources"]["contracts/Staking.vy"]["content"] += "\n# edited after the compile\n"
    stale = tmp_path / "__local__.json"
    stale.write_text(json.dumps(manifest), encoding="utf8")
    monkeypatch.setattr(sys.modules[__name__], "MANIFEST", stale)
    with pytest.raises(AssertionError, match=r"other sources than \['contracts/Staking.vy'\]"):
        _current_manifest()
