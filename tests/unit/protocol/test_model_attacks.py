"""Attack tests for issue 13's provenance surface (manifests, lineage): each one failed before its fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from protocol.errors import ArtifactError
from protocol.model_manifest import PREDICATE_TYPE, STATEMENT_TYPE, build_manifest, read_statement, verify_manifest


def _model_dir(root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "evil.py").write_text("import os\n")
    return model


@pytest.mark.parametrize("ignore", ["", ".", "/", "./", "a/..", "../model", "a//b", "a/./b"])
def test_an_ignore_path_that_covers_the_model_or_escapes_it_is_refused(tmp_path: Path, ignore: str) -> None:
    """`.`, `` and `/` would ignore every file, so the manifest would list nothing and match anything."""
    with pytest.raises(ArtifactError, match="ignore path"):
        build_manifest(_model_dir(tmp_path), ignore=(ignore,))


@pytest.mark.parametrize("ignore", [".", "", "/", "x/../.."])
def test_a_manifest_that_ignores_everything_does_not_verify_any_directory(tmp_path: Path, ignore: str) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    hostile = {"_type": STATEMENT_TYPE, "subject": [{"name": "m", "digest": {"sha256": empty}}],
               "predicateType": PREDICATE_TYPE,
               "predicate": {"serialization": {"method": "files", "hash_type": "sha256", "ignore_paths": [ignore]},
                             "resources": []}}  # fmt: skip
    model = _model_dir(tmp_path)
    with pytest.raises(ArtifactError, match="ignore path"):
        verify_manifest(model, read_statement(json.dumps(hostile).encode())[0])


def test_plain_ignore_paths_still_work(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    statement = build_manifest(model, ignore=("evil.py", "/sub/dir/"))
    assert set(statement.digests()) == {"model.safetensors"}
    assert "sub/dir" in (statement.predicate.serialization.ignore_paths or [])
    verify_manifest(model, read_statement(json.dumps(statement.to_json()).encode())[0])


def test_a_special_file_in_the_model_is_refused_not_skipped(tmp_path: Path) -> None:
    """A FIFO (or socket, device) is neither hashed nor listed: skipped silently, the manifest would claim a
    directory holds only its regular files while it holds something else too."""
    import os

    model = _model_dir(tmp_path)
    os.mkfifo(model / "pipe")
    with pytest.raises(ArtifactError, match="not a regular file"):
        build_manifest(model)
    with pytest.raises(ArtifactError, match="neither a file nor a directory"):
        build_manifest(model / "pipe")  # never opened: opening a FIFO for reading would block
