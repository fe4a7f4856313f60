"""The contract tests deploy `make compile`'s bytecode only where it compiled exactly the sources in the checkout
(`vyper_harness._from_ape_build`): a stamp from another set of sources, or a manifest whose sources differ from the
files (ape alone recompiles no contract when only a library module changed), sends them to the pinned compiler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.contracts import vyper_harness as vh


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the checkout's manifest and its stamp, as `make compile` left them (`make test` runs it first)."""
    manifest, stamp = tmp_path / "__local__.json", tmp_path / ".compiled-sources"
    manifest.write_text(vh.APE_BUILD.read_text())
    stamp.write_text(vh.all_sources_key())
    monkeypatch.setattr(vh, "APE_BUILD", manifest)
    monkeypatch.setattr(vh, "APE_SOURCES", stamp)
    return tmp_path


def _entries(abi: list[dict]) -> list[str]:
    """An ABI as sorted canonical entries (ape keeps the compiler's entries in its own key order, and drops a
    constructor's empty `outputs`)."""
    return sorted(json.dumps({k: v for k, v in e.items() if not (e.get("type") == "constructor" and k == "outputs")}, sort_keys=True)
                  for e in abi)  # fmt: skip


def test_the_build_of_the_current_sources_is_what_the_compiler_gives(build: Path) -> None:
    abi, bytecode = vh._from_ape_build("contracts/Bisection.vy")
    result = subprocess.run([sys.executable, "-m", "vyper", "-f", "abi,bytecode", "contracts/Bisection.vy"], cwd=vh.ROOT,
                            capture_output=True, text=True, check=True, timeout=300)  # fmt: skip
    abi_line, fresh = result.stdout.strip().splitlines()
    assert bytecode == fresh.strip() and _entries(abi) == _entries(json.loads(abi_line))
    assert vh._from_ape_build("contracts/Nope.vy") is None


def test_a_stale_stamp_or_manifest_is_not_used(build: Path) -> None:
    assert vh._from_ape_build("contracts/Bisection.vy") is not None
    (build / ".compiled-sources").write_text("0" * 64)  # compiled from other sources than the checkout's
    assert vh._from_ape_build("contracts/Bisection.vy") is None
    (build / ".compiled-sources").write_text(vh.all_sources_key())
    manifest = json.loads((build / "__local__.json").read_text())
    manifest["sources"]["contracts/lib/merkle.vy"]["content"] += "\n# a library edited after ape compiled\n"
    (build / "__local__.json").write_text(json.dumps(manifest))
    assert vh._from_ape_build("contracts/Bisection.vy") is None
    (build / ".compiled-sources").unlink()
    assert vh._from_ape_build("contracts/Bisection.vy") is None
