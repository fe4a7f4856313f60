"""OpenSSF model-signing manifests: the same statement `model_signing` 1.1.1 computes (tests/vectors/
model_signing.json, made by that package), its signed bundles read back, and any changed file named."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ArtifactError, HashMismatchError
from protocol.model_manifest import build_manifest, model_hash_in, read_statement, verify_manifest
from tests.unit.engine.helpers import examples

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "model_signing.json").read_text())


def materialize(root: Path) -> Path:
    model = root / "model"
    for name, text in VECTORS["files"].items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_text(text)
    return model


def comparable(statement: dict) -> dict:
    """model_signing writes ignore_paths in set order; nothing reads that order."""
    statement = copy.deepcopy(statement)
    statement["predicate"]["serialization"]["ignore_paths"].sort()
    return statement


def test_statements_equal_model_signing_ones(tmp_path: Path) -> None:
    model = materialize(tmp_path)
    assert comparable(build_manifest(model).to_json()) == comparable(VECTORS["directory_statement"])
    one_file = build_manifest(model / "model.safetensors")
    assert comparable(one_file.to_json()) == comparable(VECTORS["file_statement"])
    weights_hash = "0x" + hashlib.sha256(b"weights").hexdigest()  # what Tessera registers for these weights
    assert model_hash_in(one_file) == weights_hash == model_hash_in(build_manifest(model))


def test_their_signed_bundle_checks_our_files_and_names_a_changed_one(tmp_path: Path) -> None:
    model = materialize(tmp_path)
    statement, signed = read_statement(json.dumps(VECTORS["bundle"]).encode())
    assert signed and model_hash_in(statement) == "0x" + hashlib.sha256(b"weights").hexdigest()
    assert set(verify_manifest(model, statement)) == set(VECTORS["files"]) - {".git/HEAD"}
    (model / ".git" / "HEAD").write_text("ignored, as the statement says")
    verify_manifest(model, statement)
    (model / "model.safetensors").write_text("weights, fine-tuned after signing")
    with pytest.raises(HashMismatchError, match=r"model\.safetensors changed") as raised:
        verify_manifest(model, statement)
    assert "config.json" not in str(raised.value)
    (model / "model.safetensors").write_text("weights")
    (model / "config.json").unlink()
    (model / "extra.bin").write_text("z")
    with pytest.raises(HashMismatchError, match="config.json is missing; extra.bin is not in the manifest"):
        verify_manifest(model, statement)


def test_malformed_manifests_are_refused(tmp_path: Path) -> None:
    good = build_manifest(materialize(tmp_path)).to_json()
    forged = copy.deepcopy(good)
    forged["predicate"]["resources"][0]["digest"] = "00" * 32
    with pytest.raises(ArtifactError, match="inconsistent"):
        read_statement(json.dumps(forged).encode())
    other = good | {"predicateType": "https://example.com/other"}
    with pytest.raises(ArtifactError, match="predicateType"):
        read_statement(json.dumps(other).encode())
    envelope = {"payloadType": "text/plain", "payload": ""}
    with pytest.raises(ArtifactError, match="not application/vnd.in-toto"):
        read_statement(json.dumps(envelope).encode())
    (tmp_path / "model" / "link").symlink_to(tmp_path / "model" / "config.json")
    with pytest.raises(ArtifactError, match="link in .* is a symbolic link"):
        build_manifest(tmp_path / "model")


names = st.lists(st.sampled_from(["a", "a-b", "b", "a.b", "z"]), min_size=1, max_size=3).map("/".join)


@settings(max_examples=examples(10), deadline=None)
@given(files=st.dictionaries(names, st.binary(max_size=16), min_size=1, max_size=5), data=st.data())
def test_round_trip_and_any_changed_file_is_named(tmp_path_factory: pytest.TempPathFactory, files: dict,
                                                  data: st.DataObject) -> None:
    # a name that is also a directory of another name cannot be a file: keep the leaves only
    files = {n: b for n, b in files.items() if not any(o.startswith(n + "/") for o in files)}
    model = tmp_path_factory.mktemp("m") / "model"
    for name, content in files.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(content)
    statement, signed = read_statement(json.dumps(build_manifest(model).to_json()).encode())
    assert not signed and verify_manifest(model, statement) == {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    victim = data.draw(st.sampled_from(sorted(files)))
    (model / victim).write_bytes(files[victim] + b"!")
    with pytest.raises(HashMismatchError, match=f"{victim} changed"):
        verify_manifest(model, statement)
