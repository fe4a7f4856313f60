"""Built-in datasets: the shipped bytes are what the build script makes, and fetching verifies."""

from __future__ import annotations

import pytest

from engine.data.build_datasets import build_digits, build_tinytext, generate_corpus
from engine.datasets import (
    builtin_dataset_bytes, builtin_dataset_hash, builtin_dataset_ref, fetch_artifact, put_builtin_datasets,
)  # fmt: skip
from protocol.artifacts import LocalStore, serve_store
from protocol.errors import ArtifactError, HashMismatchError
from protocol.spec import ArtifactRef


def test_shipped_files_are_reproducible() -> None:
    assert build_digits() == builtin_dataset_bytes("digits")
    assert build_tinytext(generate_corpus()) == builtin_dataset_bytes("tinytext")


def test_unknown_builtin() -> None:
    with pytest.raises(ArtifactError, match="unknown built-in dataset"):
        builtin_dataset_bytes("../../etc/passwd")


def test_fetch_from_hint_fills_the_store(tmp_path) -> None:
    store = LocalStore(tmp_path)
    ref = builtin_dataset_ref("digits")
    assert not store.has(ref.hash)
    assert fetch_artifact(ref, store) == builtin_dataset_bytes("digits")
    assert store.has(ref.hash)  # a verifier can now get it from this worker's store


def test_fetch_over_http_and_lying_hints(tmp_path) -> None:
    source = LocalStore(tmp_path / "remote")
    hashes = put_builtin_datasets(source)
    assert hashes["tinytext"] == builtin_dataset_hash("tinytext")
    with serve_store(source.root) as server:
        ref = ArtifactRef(hash=hashes["tinytext"], uris=["s3://nowhere/x", server.url])
        assert fetch_artifact(ref, LocalStore(tmp_path / "local")) == builtin_dataset_bytes("tinytext")
    lying = ArtifactRef(hash=hashes["tinytext"], uris=["builtin://digits"])
    with pytest.raises(HashMismatchError):
        fetch_artifact(lying, None)
    with pytest.raises(ArtifactError, match="over the limit"):
        fetch_artifact(builtin_dataset_ref("digits"), None, max_bytes=1000)
