"""Model cards: written pinned into a store, read back with size, time and hash limits, validated."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.artifacts import LocalStore
from protocol.errors import ArtifactError, HashMismatchError
from protocol.model_card import build_model_card, parse_model_card, pinned_hash, read_model_card, write_model_card
from tests.unit.engine.helpers import examples

MODEL, BASE, OTHER, DATA = ("0x" + c * 64 for c in "abcd")


def test_card_round_trip_is_pinned_and_uses_hugging_face_names(tmp_path: Path) -> None:
    card = build_model_card(MODEL, [(BASE, "adapter"), (OTHER, "merge")], [DATA], license="Apache-2.0", job_id=7,
                            spec_hash="0x" + "00" * 32)
    uri = write_model_card(LocalStore(tmp_path / "store"), card)
    assert pinned_hash(uri) is not None and uri.startswith((tmp_path / "store").as_uri() + "/")
    document = json.loads(Path(uri.removeprefix("file://")).read_bytes())
    assert (document["base_model"], document["base_model_relation"], document["datasets"], document["license"]) == (
        [BASE, OTHER], "adapter", [DATA], "Apache-2.0")
    assert document["tessera"]["relation"] == "adapter" and "spec_hash" not in document["tessera"]
    read, pinned = read_model_card(uri, model_hash=MODEL.upper().replace("0X", "0x"))
    assert pinned and read == card
    single = build_model_card(MODEL, [(BASE, "quantize")], [])
    assert (single.base_model, single.base_model_relation) == (BASE, "quantized")
    assert build_model_card(MODEL, [(BASE, "distill")], []).base_model_relation is None  # HF has no name for it

    with pytest.raises(ArtifactError, match=f"describes model {MODEL}, not {OTHER}"):
        read_model_card(uri, model_hash=OTHER)
    Path(uri.removeprefix("file://")).write_bytes(card.model_copy(update={"license": "MIT"}).to_bytes())
    with pytest.raises(HashMismatchError):
        read_model_card(uri)


def test_unpinned_cards_are_limited_and_validated(tmp_path: Path) -> None:
    card = build_model_card(MODEL, [(BASE, "finetune")], [DATA])
    path = tmp_path / "card.json"
    document = json.loads(card.to_bytes()) | {"pipeline_tag": "text-generation"}  # other tools' keys are kept
    path.write_text(json.dumps(document))
    read, pinned = read_model_card(path.as_uri())
    assert not pinned and read.base_models == [BASE] and read.model_extra == {"pipeline_tag": "text-generation"}
    path.write_text(json.dumps(document | {"datasets": ["imdb"]}))  # a name, not a hash
    with pytest.raises(ArtifactError, match="is not valid: datasets.0"):
        read_model_card(str(path))
    path.write_text(" " * 70_000)
    with pytest.raises(ArtifactError, match="over the limit"):
        read_model_card(str(path))
    with pytest.raises(ArtifactError, match="not a regular file"):
        read_model_card(tmp_path.as_uri())
    with pytest.raises(ArtifactError, match="unsupported model card URI scheme"):
        read_model_card("ipfs://whatever")


def test_a_silent_server_times_out() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with pytest.raises(ArtifactError, match="cannot fetch model card"):
            read_model_card(f"http://127.0.0.1:{server.getsockname()[1]}/card.json", timeout=0.2)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=12)


@settings(max_examples=examples(25), deadline=None)
@given(document=st.dictionaries(st.sampled_from(["base_model", "datasets", "license", "tessera", "tags", "x"]),
                                json_values, max_size=5))
def test_any_json_document_is_a_card_or_one_artifact_error(document: dict) -> None:
    try:
        parse_model_card(json.dumps(document).encode())
    except ArtifactError:
        pass
