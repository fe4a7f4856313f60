"""`tessera model manifest` / `verify-manifest` through the click runner: the manifest names our model hash,
leaves itself out when written inside the model, and a tampered file fails verification by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from protocol.cli.main import cli
from tests.unit.protocol.test_model_manifest import VECTORS, materialize


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_manifest_then_verify_then_tamper(tmp_path: Path) -> None:
    model = materialize(tmp_path)
    weights_hash = "0x" + hashlib.sha256(b"weights").hexdigest()
    inside = model / "model.manifest.json"
    code, out, err = run("model", "manifest", str(model), "--out", str(inside), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["model_hash"] == weights_hash and summary["files"] == len(VECTORS["files"]) - 1
    assert "model.manifest.json" in summary["statement"]["predicate"]["serialization"]["ignore_paths"]

    code, out, err = run("model", "verify-manifest", str(model), str(inside), "--model-hash", weights_hash, "--json")
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "files": 6, "model_hash": weights_hash, "signed_bundle": False,
                               "signature_checked": False}
    code, _, err = run("model", "verify-manifest", str(model), str(inside), "--model-hash", "0x" + "11" * 32)
    assert code == 1 and f"the manifest's model hash is {weights_hash}" in err

    bundle = tmp_path / "model.sig"
    bundle.write_text(json.dumps(VECTORS["bundle"]))
    inside.unlink()  # model_signing signed the directory without it
    code, _, err = run("model", "verify-manifest", str(model), str(bundle))
    assert code == 0 and "its signature was NOT checked" in err

    (model / "sub" / "deep.bin").write_text("tampered")
    code, out, err = run("model", "verify-manifest", str(model), str(bundle))
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "sub/deep.bin changed" in err

    code, out, err = run("model", "manifest", str(model / "model.safetensors"))
    assert code == 0 and json.loads(out)["predicate"]["resources"][0]["name"] == "."
    assert f"model hash: {weights_hash}" in err
