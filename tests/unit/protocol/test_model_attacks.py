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


class _WideRegistry:
    """A hostile registry: every model has 8 parents, each a model never seen before (8^depth ancestors, all
    distinct, so remembering visited hashes does not help). Registering them costs gas, reading them costs
    every reader a round of RPC calls per model; it raises past 2 000 reads instead of running for hours."""

    def __init__(self) -> None:
        self.calls = 0

    def model(self, model_hash: str):
        from protocol.client import ModelView, Parent

        self.calls += 1
        if self.calls > 2_000:
            raise RuntimeError("the lineage walk is unbounded")
        index = int(model_hash, 16)
        parents = [Parent(model_hash="0x" + f"{8 * index + k:064x}", relation=k % 6) for k in range(1, 9)]
        return ModelView(model_hash=model_hash, exists=True, status=1, parents=parents)


def test_lineage_of_a_wide_hostile_dag_reads_a_bounded_number_of_models() -> None:
    from protocol.provenance import MAX_LINEAGE_NODES, lineage

    registry = _WideRegistry()
    tree = lineage(registry, "0x" + "00" * 31 + "01", max_depth=16)
    nodes = list(tree.walk())
    assert registry.calls <= MAX_LINEAGE_NODES and len(nodes) <= MAX_LINEAGE_NODES
    # breadth first: the model's own parents (what a reader looks at first) are all shown, and the cut is marked
    assert len(tree.parents) == 8 and all(len(parent.parents) == 8 for parent in tree.parents)
    assert any(node.truncated for node in nodes)
    assert len(tree.render().splitlines()) == len(nodes) and len(tree.chains()) <= MAX_LINEAGE_NODES


def test_a_shared_ancestor_is_read_once() -> None:
    """A DAG where every model of a layer has all 8 models of the next layer as parents: 8 reads per layer,
    not one per edge."""
    from protocol.client import ModelView, Parent
    from protocol.provenance import lineage

    class Layered:
        calls = 0

        def model(self, model_hash: str) -> ModelView:
            self.calls += 1
            layer = int(model_hash, 16) >> 8
            parents = [Parent(model_hash="0x" + f"{((layer + 1) << 8) + k:064x}", relation=0) for k in range(8)]
            return ModelView(model_hash=model_hash, exists=True, status=1, parents=parents if layer < 5 else [])

    registry = Layered()
    tree = lineage(registry, "0x" + "00" * 32)
    assert registry.calls == 1 + 5 * 8
    assert sum(1 for node in tree.walk() if node.repeated) == 4 * 8 * 7  # every edge after the first is shown as such


def _lora_spec(kind: str = "finetune", lora: bool = True):
    from protocol.spec import load_spec

    model = {"input_shape": [8], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": 24, "embedding_dim": 16},
        {"type": "decoder_block", "d_model": 16, "n_heads": 4, "d_ff": 24, "norm_eps": 1e-6},
        {"type": "rmsnorm", "normalized_shape": 16, "eps": 1e-6},
        {"type": "lm_head", "d_model": 16, "vocab_size": 24, "tie_to_embedding": True}]}  # fmt: skip
    return load_spec({"version": 1, "kind": kind, "model": model, "dataset": {"hash": "0x" + "11" * 32},
                      "init_weights": None if kind == "train" else {"hash": "0x" + "22" * 32}, "loss": "causal_lm",
                      "optimizer": {"name": "adamw", "lr": 1e-3}, "batch_size": 1, "steps": 1, "segment_steps": 1,
                      **({"lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj"]}} if lora else {})})  # fmt: skip


@pytest.mark.parametrize(("kind", "lora", "relation"), [
    ("finetune", True, "adapter"), ("finetune", True, "finetune"), ("finetune", False, "finetune"),
    ("finetune", False, "quantize"), ("train", False, "finetune"), ("train", False, "adapter")])  # fmt: skip
def test_a_job_output_cannot_claim_a_second_base(kind: str, lora: bool, relation: str) -> None:
    """The spec's init_weights are the only weights a job starts from: an extra parent with a relation that
    says 'computed from that model's weights' (an adapter of a famous model it never saw) is a lie that the
    registration would have recorded as part of a JobVerified lineage."""
    from protocol.errors import ConfigError
    from protocol.provenance import job_output_lineage

    famous = "0x" + "fa" * 32
    with pytest.raises(ConfigError, match="contradicts the spec"):
        job_output_lineage(_lora_spec(kind, lora), extra_parents=[(famous, relation)])
    for allowed in ("distill", "other", "merge"):  # what the spec cannot tell: still the registrant's word
        assert (famous, allowed) in job_output_lineage(_lora_spec(kind, lora), extra_parents=[(famous, allowed)]).parents


def _record(parents: list[tuple[str, str]], datasets: list[str], job_id: int = 7, spec_hash: str = "0x" + "00" * 32):
    from protocol.client import RELATIONS, ModelView, Parent

    return ModelView(model_hash="0x" + "ad" * 32, exists=True, status=2, job_id=job_id, spec_hash=spec_hash,
                     parents=[Parent(model_hash=h, relation=RELATIONS[r]) for h, r in parents], datasets=datasets)


def test_spec_lineage_check_passes_the_honest_record_and_names_each_lie() -> None:
    from protocol.provenance import spec_lineage_problems

    spec, base, data, famous = _lora_spec(), "0x" + "22" * 32, "0x" + "11" * 32, "0x" + "fa" * 32
    assert spec_lineage_problems(_record([(base, "adapter")], [data]), spec) == []
    assert spec_lineage_problems(_record([(base, "adapter"), (famous, "distill")], [data]), spec) == []
    lies = spec_lineage_problems(_record([(base, "finetune"), (famous, "adapter")], []), spec)
    assert len(lies) == 3 and "listed as 'finetune'" in lies[0] and famous in lies[1] and data in lies[2]
    assert "not a listed parent" in spec_lineage_problems(_record([], [data]), spec)[0]


def test_a_card_that_claims_another_base_than_the_record_is_flagged() -> None:
    """A card is its author's text: pinned means unchanged, not true. Shown beside the record, a card naming
    a famous base the record does not was displayed as is."""
    from protocol.model_card import build_model_card
    from protocol.provenance import card_record_problems

    base, famous, data = "0x" + "22" * 32, "0x" + "fa" * 32, "0x" + "11" * 32
    record = _record([(base, "adapter")], [data], job_id=7, spec_hash="0x" + "5e" * 32)
    honest = build_model_card(record.model_hash, [(base, "adapter")], [data], job_id=7, spec_hash="0x" + "5e" * 32)
    assert card_record_problems(honest, record) == []
    lying = build_model_card(record.model_hash, [(famous, "finetune")], [], job_id=8, spec_hash="0x" + "5f" * 32)
    problems = card_record_problems(lying, record)
    assert [p.split(" ")[0] for p in problems] == ["base_model", "tessera.parents", "base_model_relation",
                                                   "relation", "datasets", "job", "spec"]


class _FloodedRegistry:
    """`ModelRegistry` views for one model with `declared` Declared attestations (one per stranger's account:
    free to add, one transaction each) registered before the job's JobVerified one; counts view calls."""

    def __init__(self, declared: int) -> None:
        from protocol.abi import load_abi

        self.abi = load_abi("ModelRegistry")
        self.declared, self.calls = declared, 0
        self.model_hash = b"\xad" * 32
        self.functions = self

    def _call(self, value):
        registry = self

        class Call:
            def call(self_inner):
                registry.calls += 1
                return value

        return Call()

    def attestations_of_count(self, key):
        return self._call(self.declared + 1 if key == self.model_hash else 0)

    def status_of(self, key):
        return self._call(2 if key == self.model_hash else 0)

    def attestation_id_of(self, key, index):
        return self._call(index + 1)

    def attestation(self, attestation_id):
        verified = attestation_id == self.declared + 1
        stranger = "0x" + f"{attestation_id:040x}"
        return self._call((self.model_hash, stranger, 2 if verified else 1, 9 if verified else 0,
                           stranger, stranger, b"\0" * 32, 1, "", ""))

    def attestation_parents(self, attestation_id):
        verified = attestation_id == self.declared + 1
        return self._call([(b"\x22" * 32, 1)] if verified else [(b"\xfa" * 32, 1)])

    def attestation_datasets(self, attestation_id):
        return self._call([])


def _client_over(registry: _FloodedRegistry, logs: list):
    from types import SimpleNamespace

    from protocol.client import TesseraClient

    client = object.__new__(TesseraClient)
    client.registry = registry
    client.deployment = SimpleNamespace(registry="0x" + "00" * 19 + "01")
    client.get_logs = lambda addresses, topics, **_: logs  # type: ignore[method-assign]
    return client


def test_a_flood_of_declared_attestations_costs_a_reader_a_bounded_number_of_calls() -> None:
    """Anyone may add a Declared attestation to any model, one per account; `model` read every attestation
    (four calls each), so a few thousand strangers made every `model show` of a popular model (and every
    lineage through it) thousands of RPC calls."""
    from types import SimpleNamespace

    from protocol.client import MAX_ATTESTATIONS_READ

    registry = _FloodedRegistry(declared=5_000)
    verified_event = SimpleNamespace(name="ModelRegistered", status=2, attestation_id=5_001)
    view = _client_over(registry, [verified_event]).model("0x" + "ad" * 32)
    assert registry.calls <= 4 * MAX_ATTESTATIONS_READ + 16
    # the primary is still the job's attestation (found from its event, read from state), never a stranger's
    assert view.status == 2 and view.job_id == 9 and [p.model_hash for p in view.parents] == ["0x" + "22" * 32]
    assert view.attestation_count == 5_001 and len(view.attestations) <= MAX_ATTESTATIONS_READ + 1
    # an event that lies about the status is checked against state; without a usable event, state is scanned
    liar = SimpleNamespace(name="ModelRegistered", status=2, attestation_id=7)
    small = _FloodedRegistry(declared=100)
    assert _client_over(small, [liar]).model("0x" + "ad" * 32).job_id == 9


def test_export_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    """An export into a directory someone else prepared (a shared /tmp folder): a symlink planted under an
    output name (`config.json -> ~/.bashrc`) made the export overwrite the link's target."""
    import numpy as np

    from protocol.hf_import import export_hf
    from protocol.hf_weights import parameter_shapes
    from protocol.peft_export import export_peft, peft_names

    spec = _lora_spec()
    weights = {name: np.zeros(shape, dtype=np.float32) for name, shape in parameter_shapes(spec.model).items()}
    adapter = {name: np.zeros(shape, dtype=np.float32) for name, (_, shape) in peft_names(spec).items()}
    out, victim = tmp_path / "shared", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious\n")
    for name in ("config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"):
        (out / name).symlink_to(victim)
    export_hf(spec.model, weights, out)
    export_peft(spec, adapter, out)
    assert victim.read_text() == "precious\n"
    for name in ("config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2


def test_a_pinned_card_uri_naming_a_fifo_fails_instead_of_hanging(tmp_path: Path) -> None:
    """A record's pinned card URI `file:///shared/dir/<hex>` where someone made `<hex>` a FIFO: opening it to
    read blocked until a writer came, so `model show` (or any reader of that local store) hung for good."""
    import os
    import threading

    from protocol.model_card import read_model_card

    digest = "ab" * 32
    os.mkfifo(tmp_path / digest)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_model_card(f"{tmp_path.as_uri()}/{digest}")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the outcome is asserted below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # release the blocked open so the thread ends, then fail
        with open(tmp_path / digest, "wb"):
            pass
        reader.join(5)
        pytest.fail("reading a card from a FIFO blocked")
    assert isinstance(outcome[0], ArtifactError) and "not a regular file" in str(outcome[0])


def _card_bytes() -> bytes:
    from protocol.model_card import build_model_card

    return build_model_card("0x" + "ad" * 32, [("0x" + "22" * 32, "adapter")], []).to_bytes()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-be", "utf-32-le"])
def test_a_card_that_is_not_utf8_json_is_refused(encoding: str) -> None:
    """JSON from outside is UTF-8 (RFC 8259 between systems); `json.loads` also guessed UTF-16 and UTF-32, so
    a reader accepted bytes that other tools refuse, and the nesting pre-check (which scans bytes for brackets
    and quotes) read another text than the parser (in UTF-16, '∀' holds a quote byte)."""
    from protocol.model_card import parse_model_card

    with pytest.raises(ArtifactError, match="UTF-8|not valid JSON"):
        parse_model_card(_card_bytes().decode().encode(encoding))
    assert parse_model_card(b"\xef\xbb\xbf" + _card_bytes()).base_model == "0x" + "22" * 32  # a UTF-8 BOM is fine


def test_a_json_document_with_a_key_twice_is_refused() -> None:
    """`{"base_model": REAL, …, "base_model": FAKE}`: Python keeps the last, other parsers the first, so two
    readers of one pinned card (or manifest, or safetensors header) saw two different documents."""
    from protocol.model_card import parse_model_card

    twice = _card_bytes()[:-1] + b',"base_model":"0x' + b"fa" * 32 + b'"}'
    with pytest.raises(ArtifactError, match="base_model.*twice"):
        parse_model_card(twice)


def test_a_lineage_node_reads_only_its_primary_attestation() -> None:
    """A lineage shows each node's primary attestation and how many there are: reading 32 per node made a
    256-node walk over flooded models some 33 000 calls."""
    from types import SimpleNamespace

    registry = _FloodedRegistry(declared=5_000)
    client = _client_over(registry, [SimpleNamespace(name="ModelRegistered", status=2, attestation_id=5_001)])
    tree = client.lineage("0x" + "ad" * 32, max_depth=0)
    assert tree.status == "JobVerified" and tree.job_id == 9 and tree.attestations == 5_001
    assert registry.calls <= 12


def test_a_tree_with_too_many_entries_stops_at_the_bound_without_listing_it_all(tmp_path: Path, monkeypatch) -> None:
    """The walk listed (and sorted) every path under the model, ignored folders included, before counting:
    a hostile download with millions of tiny files cost memory and minutes before the file limit fired."""
    import protocol.model_manifest as manifest

    monkeypatch.setattr(manifest, "MAX_FILES", 50)
    model = _model_dir(tmp_path)
    for folder in ("a", ".git"):
        (model / folder).mkdir()
        for i in range(200):
            (model / folder / f"{i}").write_bytes(b"")
    listed: list[str] = []
    real_scandir = manifest.os.scandir

    def counting_scandir(path):
        entries = list(real_scandir(path))
        listed.extend(entry.name for entry in entries)
        return _Entries(entries)

    monkeypatch.setattr(manifest.os, "scandir", counting_scandir)
    with pytest.raises(ArtifactError, match="more than 50"):
        manifest.build_manifest(model)
    assert len(listed) <= 200 + 10  # stopped inside the first big folder it entered
    listed.clear()
    (model / "a").rename(tmp_path / "a")  # the ignored .git alone: never entered
    manifest.build_manifest(model)
    assert len(listed) == 3  # model.safetensors, evil.py, .git (listed, not entered)


class _Entries(list):
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None
