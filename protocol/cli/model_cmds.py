"""`tessera model …`: on-chain provenance of models (who, from what, by which job), Hugging Face import and
export, and OpenSSF model-signing manifests.

Every registration is an attestation that is never overwritten: a Declared one per attester, a
JobVerified one per finalized job (which shows that job's submitter and worker). `show` lists them and
walks the parents to the roots, each node with its status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from protocol.cli.common import (
    HASH,
    RELATIONS,
    CliSettings,
    json_option,
    make_client,
    pass_settings,
    print_fields,
    print_json,
    print_receipt,
    say,
)
from protocol.errors import ConfigError, NotFoundError

MAX_WEIGHTS_BYTES = 4 * 1024**3


def parse_parent(text: str) -> tuple[str, int]:
    """`0x<hash>:<relation>` (relation a name such as finetune, or its number) -> (hash, relation id)."""
    from protocol.cli.common import parse_hash

    model_hash, sep, relation = text.partition(":")
    if not sep:
        relation = "finetune"
    model_hash = parse_hash(model_hash, "parent model hash")
    relation = relation.strip().lower()
    if relation.isdigit() and int(relation) in RELATIONS.values():
        return model_hash, int(relation)
    if relation not in RELATIONS:
        raise ConfigError(f"unknown relation {relation!r} in --parent {text!r}; known: {', '.join(RELATIONS)}")
    return model_hash, RELATIONS[relation]


def model_json(view: Any) -> dict[str, Any]:
    """The stable `--json` shape of a model record (docs/cli.md, "model")."""
    return {
        "model_hash": view.model_hash,
        "exists": view.exists,
        "status": view.status_name,
        "creator": view.creator,
        "job_id": view.job_id,
        "job_submitter": view.job_submitter,
        "job_worker": view.job_worker,
        "spec_hash": view.spec_hash,
        "metadata_uri": view.metadata_uri,
        "license": view.license,
        "block": view.block,
        "parents": [{"model_hash": p.model_hash, "relation": p.relation_name} for p in view.parents],
        "datasets": list(view.datasets),
        "attestation_count": view.attestation_count,
        "attestations": [
            {"attestation_id": a.attestation_id, "attester": a.attester, "status": a.status_name, "job_id": a.job_id,
             "job_submitter": a.job_submitter, "job_worker": a.job_worker, "self_dealt": a.self_dealt,
             "metadata_uri": a.metadata_uri, "license": a.license, "block": a.block}
            for a in view.attestations
        ],
    }


def lineage_json(node: Any) -> dict[str, Any]:
    """One lineage node and its parents, recursively (docs/cli.md, "lineage")."""
    return {
        "model_hash": node.model_hash,
        "status": node.status,
        "relation": node.relation,
        "depth": node.depth,
        "creator": node.creator,
        "job_id": node.job_id,
        "spec_hash": node.spec_hash,
        "datasets": list(node.datasets),
        "truncated": node.truncated,
        "repeated": node.repeated,
        "parents": [lineage_json(parent) for parent in node.parents],
    }


def card_json(view: Any) -> dict[str, Any] | None:
    """The record's model card, read and validated (docs/cli.md, "card"); None without a metadata URI. A card
    that cannot be read or is invalid is reported in `error`, never fatal: the record on chain stands."""
    from protocol.errors import TesseraError
    from protocol.model_card import read_model_card

    if not view.metadata_uri:
        return None
    from protocol.provenance import card_record_problems

    try:
        card, pinned = read_model_card(view.metadata_uri, model_hash=view.model_hash)
    except TesseraError as exc:
        return {"uri": view.metadata_uri, "pinned": False, "document": None, "error": str(exc), "disagreements": []}
    return {"uri": view.metadata_uri, "pinned": pinned, "document": card.model_dump(mode="json", exclude_none=True),
            "error": None, "disagreements": card_record_problems(card, view)}


def spec_check_json(client: Any, view: Any) -> dict[str, Any] | None:
    """The lineage of a JobVerified record checked against the spec its job ran (docs/cli.md, "spec_check");
    None for a record without a job. The registry checks the output and spec hashes, not the parents a
    submitter lists; the spec, fetched by its hash, says what they must be."""
    from protocol.errors import TesseraError
    from protocol.provenance import spec_lineage_problems

    if not view.job_id:
        return None
    try:
        spec = client.job_spec(view.job_id)
    except TesseraError as exc:
        return {"job_id": view.job_id, "checked": False, "problems": [], "error": str(exc)}
    return {"job_id": view.job_id, "checked": True, "problems": spec_lineage_problems(view, spec), "error": None}


def _hash_file(path: Path) -> str:
    import hashlib

    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ConfigError(f"weights file {path} is larger than {MAX_WEIGHTS_BYTES} bytes")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "0x" + digest.hexdigest()


@click.group()
def model() -> None:
    """Register models, read their provenance, import and export Hugging Face checkpoints."""


@model.command()
@click.argument("model_hash", type=HASH, required=False)
@click.option("--weights", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Hash this safetensors file instead of passing MODEL_HASH.")
@click.option("--parent", "parents", multiple=True, help="HASH:RELATION (finetune, adapter, merge, quantize, distill, other); repeat.")
@click.option("--dataset", "datasets", multiple=True, type=HASH, help="Dataset hash (repeat).")
@click.option("--spec-hash", type=HASH, default=None, help="Spec of the job that produced it.")
@click.option("--job-id", type=click.IntRange(min=0), default=0,
              help="Producing job: registers its committed output (JobVerified once Finalized) with the lineage "
                   "its spec implies.")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="With --job-id: the job's task spec (default: fetched by hash from the job's spec URI).")
@click.option("--relation", type=click.Choice(list(RELATIONS)), default=None,
              help="With --job-id: the output's relation to the spec's base model; must agree with the spec.")
@click.option("--register-base", is_flag=True,
              help="With --job-id: declare the spec's base model first when nobody has registered it.")
@click.option("--metadata-uri", default="", help="Model card / manifest URI.")
@click.option("--card-store", default=None,
              help="Write a model card (base_model, relation, datasets, license) into this store and record its "
                   "pinned URI as the metadata URI.")
@click.option("--license", "license_", default="", help="License identifier, e.g. Apache-2.0.")
@json_option
@pass_settings
def register(
    settings: CliSettings, model_hash: str | None, weights: Path | None, parents: tuple[str, ...], datasets: tuple[str, ...],
    spec_hash: str | None, job_id: int, spec_file: Path | None, relation: str | None, register_base: bool,
    metadata_uri: str, card_store: str | None, license_: str, as_json: bool,
) -> None:
    """Register MODEL_HASH (or --weights FILE, or job --job-id's output) with its parents, datasets, spec and job.

    With --job-id the model is the job's committed output, and its parent and datasets come from the
    job's spec: a LoRA finetune's output is an `adapter` of the spec's init_weights, a full finetune's a
    `finetune`, a train job's has no base.
    """
    if model_hash is not None and weights is not None:
        raise ConfigError("pass at most one of MODEL_HASH or --weights FILE")
    if card_store is not None and metadata_uri:
        raise ConfigError("pass --metadata-uri or --card-store, not both")
    if weights is not None:
        model_hash = _hash_file(weights)
    parent_list = [parse_parent(text) for text in parents]
    if not job_id:
        if model_hash is None:
            raise ConfigError("pass MODEL_HASH, --weights FILE or --job-id ID")
        for name, value in (("--spec", spec_file), ("--relation", relation), ("--register-base", register_base or None)):
            if value is not None:
                raise ConfigError(f"{name} only goes with --job-id")
        client = make_client(settings, need_account=True)
        receipt = client.register_model(
            model_hash, parents=parent_list, datasets=list(datasets), spec_hash=spec_hash or "0x" + "00" * 32,
            metadata_uri=metadata_uri, license=license_, card_store=card_store,
        )
    else:
        client = make_client(settings, need_account=True)
        job = client.job(job_id).job
        if model_hash is not None and model_hash.lower() != job.output_hash.lower():
            raise ConfigError(f"job {job_id} committed output {job.output_hash}, not {model_hash}")
        if spec_hash is not None and spec_hash.lower() != job.spec_hash.lower():
            raise ConfigError(f"job {job_id} ran spec {job.spec_hash}, not {spec_hash}")
        names = {number: name for name, number in RELATIONS.items()}
        receipt = client.register_job_output(
            job_id, spec_file, relation=relation, parents=[(h, names[r]) for h, r in parent_list],
            datasets=list(datasets), metadata_uri=metadata_uri, license=license_, register_base=register_base,
            card_store=card_store,
        )
        model_hash = job.output_hash
    view = client.model(model_hash)
    print_receipt(receipt, as_json, model_hash=model_hash, model_status=view.status_name,
                  metadata_uri=receipt.event("ModelRegistered").metadata_uri)


@model.command()
@click.argument("model_hash", type=HASH)
@click.option("--depth", type=click.IntRange(0, 64), default=16, show_default=True, help="How far to walk the parents.")
@click.option("--no-card", is_flag=True, help="Do not fetch the model card the metadata URI points at.")
@click.option("--no-spec-check", is_flag=True, help="Do not fetch the job's spec to check the lineage against it.")
@json_option
@pass_settings
def show(settings: CliSettings, model_hash: str, depth: int, no_card: bool, no_spec_check: bool, as_json: bool) -> None:
    """Show a model's record, its model card and its lineage to the roots."""
    client = make_client(settings)
    view = client.model(model_hash)
    if not view.exists:
        # Exit 1 with or without --json (a fact read from the chain, not bad input); --json still
        # prints the document with `exists: false` for scripts that parse it.
        if as_json:
            print_json({"model": model_json(view), "lineage": None, "card": None, "spec_check": None})
        raise NotFoundError(f"model {model_hash} is not registered")
    tree = client.lineage(model_hash, max_depth=depth)
    card = None if no_card else card_json(view)
    spec_check = None if no_spec_check else spec_check_json(client, view)
    if as_json:
        print_json({"model": model_json(view), "lineage": lineage_json(tree), "card": card, "spec_check": spec_check})
        return
    data = model_json(view)
    data["parents"] = ", ".join(f"{p['model_hash']} ({p['relation']})" for p in data["parents"]) or "-"
    data["datasets"] = ", ".join(data["datasets"]) or "-"
    data["attestations"] = "; ".join(
        f"#{a['attestation_id']} {a['status']} by {a['attester']}"
        + (f" (job {a['job_id']}: submitter {a['job_submitter']}, worker {a['job_worker']}"
           f"{', self-dealt' if a['self_dealt'] else ''})" if a["job_id"] else "")
        for a in data["attestations"])
    if view.attestation_count > len(view.attestations):
        data["attestations"] += f"; … {view.attestation_count - len(view.attestations)} more not read"
    print_fields(f"model {model_hash}", data)
    if card is not None:
        say("")
        if card["error"]:
            click.echo(f"model card: unreadable: {card['error']}")
        else:
            doc = card["document"]
            bases = doc.get("base_model") or "-"
            print_fields(f"model card ({'pinned' if card['pinned'] else 'not pinned'}) {card['uri']}", {
                "base_model": ", ".join(bases) if isinstance(bases, list) else bases,
                "relation": doc["tessera"].get("relation") or "-",
                "datasets": ", ".join(doc.get("datasets", [])) or "-",
                "license": doc.get("license") or "-"})
            if card["disagreements"]:
                click.echo("model card DISAGREES with the record (the record stands): " + "; ".join(card["disagreements"]))
    if spec_check is not None:
        say("")
        if spec_check["error"]:
            click.echo(f"job {spec_check['job_id']}'s spec: not checked ({spec_check['error']})")
        elif spec_check["problems"]:
            click.echo(f"job {spec_check['job_id']}'s spec CONTRADICTS the listed lineage: " + "; ".join(spec_check["problems"]))
        else:
            click.echo(f"job {spec_check['job_id']}'s spec: the listed parents and datasets are the ones it implies")
    say("")
    click.echo("lineage:")
    click.echo(tree.render())
    if tree.parents:
        say("")
        click.echo("from the roots:")
        click.echo(tree.render_chains())


def _fragment_model(path: Path) -> Any:
    """The model section of SPEC: a whole task spec, a fragment `{"model": …}`, or the section itself."""
    from pydantic import ValidationError

    from protocol.errors import SpecError
    from protocol.spec import MAX_SPEC_BYTES, ModelSpec, first_error, load_spec, load_untrusted_json

    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"spec file {path} is larger than {MAX_SPEC_BYTES} bytes")
    data = load_untrusted_json(path.read_bytes(), f"spec {path}")
    if isinstance(data, dict) and "version" in data:
        return load_spec(data).model
    section = data.get("model", data) if isinstance(data, dict) else data
    try:
        return ModelSpec.model_validate(section)
    except ValidationError as exc:
        raise SpecError(f"{path}: not a model section: {first_error(exc, 'model')}") from None


@model.command("import")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the spec fragment (model section and init_weights) here instead of stdout.")
@click.option("--store", default=".tessera/store", show_default=True, help="Artifact store (directory or URI) for the init weights.")
@click.option("--seq-len", type=click.IntRange(1, 65_536), default=None,
              help="Sequence length of the model's input (default: the model's context, at most 2048).")
@json_option
def import_(directory: Path, out_file: Path | None, store: str, seq_len: int | None, as_json: bool) -> None:
    """Import a Hugging Face checkpoint DIRECTORY (config.json + safetensors; docs/models.md)."""
    from protocol.artifacts import open_store
    from protocol.hf_import import import_hf
    from protocol.spec import estimate_parameters

    imported = import_hf(directory, seq_len)
    target = open_store(store)
    weights_hash = target.put(imported.weights_bytes())
    fragment = {"model": imported.model.model_dump(mode="json"),
                "init_weights": {"hash": weights_hash, "uris": [target.uri]}}  # fmt: skip
    if out_file is not None:
        try:
            out_file.write_text(json.dumps(fragment, indent=2) + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    summary = {"architecture": imported.architecture, "parameters": estimate_parameters(imported.model),
               "init_weights": weights_hash, "store": target.uri, "out": str(out_file) if out_file else None}  # fmt: skip
    if as_json:
        print_json({**summary, "fragment": fragment})
        return
    say(f"{imported.architecture}: {summary['parameters']} parameters; init_weights {weights_hash} in {target.uri}")
    if out_file is None:
        click.echo(json.dumps(fragment, indent=2))
    else:
        say(f"spec fragment written to {out_file}")


@model.command("export")
@click.argument("weights", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="Task spec, spec fragment or model section the weights belong to.")
@json_option
def export(weights: Path, directory: Path, spec_file: Path, as_json: bool) -> None:
    """Write WEIGHTS (engine names) as a Hugging Face save_pretrained DIRECTORY."""
    from protocol.hf_import import export_hf, read_engine_weights

    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ConfigError(f"weights file {weights} is larger than {MAX_WEIGHTS_BYTES} bytes")
    try:
        architecture = export_hf(_fragment_model(spec_file), read_engine_weights(weights), directory)
    except OSError as exc:
        raise ConfigError(f"cannot export to {directory}: {exc.strerror or exc}") from None
    if as_json:
        print_json({"architecture": architecture, "directory": str(directory)})
        return
    say(f"{architecture} written to {directory} (config.json, model.safetensors)")


@model.command("manifest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the manifest here instead of stdout (inside PATH, it leaves itself out).")
@click.option("--ignore", "ignore", multiple=True, help="A path inside PATH to leave out (repeat); git metadata always is.")
@json_option
def manifest(path: Path, out_file: Path | None, ignore: tuple[str, ...], as_json: bool) -> None:
    """Write the OpenSSF model-signing manifest (in-toto statement) of the model file or directory PATH."""
    from protocol.model_manifest import build_manifest, model_hash_in, write_manifest

    ignored = list(ignore)
    if out_file is not None and path.is_dir():
        try:
            ignored.append(out_file.resolve().relative_to(path.resolve()).as_posix())
        except ValueError:
            pass  # written outside the model
    statement = build_manifest(path, ignore=tuple(ignored))
    model_hash = model_hash_in(statement)
    if out_file is not None:
        try:
            write_manifest(statement, out_file)
        except OSError as exc:
            raise ConfigError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    if as_json:
        print_json({"files": len(statement.predicate.resources), "model_hash": model_hash,
                    "subject_digest": statement.root_digest(), "out": str(out_file) if out_file else None,
                    "statement": statement.to_json()})
        return
    if out_file is None:
        click.echo(json.dumps(statement.to_json(), indent=2))
    else:
        say(f"manifest of {len(statement.predicate.resources)} files written to {out_file}")
    say(f"model hash: {model_hash or '- (no model.safetensors)'}")


@model.command("verify-manifest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.argument("manifest_file", metavar="MANIFEST", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--model-hash", type=HASH, default=None, help="Also require the manifest's model hash to be this one.")
@json_option
def verify_manifest_cmd(path: Path, manifest_file: Path, model_hash: str | None, as_json: bool) -> None:
    """Check the model at PATH against MANIFEST (ours, or a model_signing signature bundle, whose signature
    this does not check): exit 1 naming every changed, missing or extra file."""
    from protocol.errors import HashMismatchError
    from protocol.model_manifest import MAX_MANIFEST_BYTES, model_hash_in, read_statement, verify_manifest

    if manifest_file.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"manifest {manifest_file} is larger than {MAX_MANIFEST_BYTES} bytes")
    statement, signed = read_statement(manifest_file.read_bytes())
    files = verify_manifest(path, statement)
    listed = model_hash_in(statement)
    if model_hash is not None and (listed or "").lower() != model_hash.lower():
        raise HashMismatchError(f"the manifest's model hash is {listed or 'absent'}, not {model_hash}")
    if as_json:
        print_json({"ok": True, "files": len(files), "model_hash": listed, "signed_bundle": signed,
                    "signature_checked": False})
        return
    say(f"{path} matches {manifest_file}: {len(files)} files; model hash {listed or '-'}")
    if signed:
        say("the manifest came from a signature bundle; its signature was NOT checked (use model_signing verify)")


@model.command("export-adapter")
@click.argument("adapter", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The LoRA job's task spec (its model and lora block).")
@click.option("--base-model", default="", help="base_model_name_or_path to write into adapter_config.json "
              "(where PEFT loads the base from: a hub id or a directory, e.g. one `model export` wrote).")
@json_option
def export_adapter(adapter: Path, directory: Path, spec_file: Path, base_model: str, as_json: bool) -> None:
    """Write a LoRA job's output ADAPTER (engine names) as a PEFT adapter DIRECTORY
    (adapter_config.json + adapter_model.safetensors)."""
    from protocol.errors import SpecError
    from protocol.hf_import import read_engine_weights
    from protocol.peft_export import export_peft
    from protocol.spec import MAX_SPEC_BYTES, load_spec

    if adapter.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ConfigError(f"adapter file {adapter} is larger than {MAX_WEIGHTS_BYTES} bytes")
    if spec_file.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"spec file {spec_file} is larger than {MAX_SPEC_BYTES} bytes")
    spec = load_spec(spec_file.read_bytes())
    if spec.lora is None:
        raise SpecError(f"{spec_file} has no lora block: its output is full weights (use `tessera model export`)")
    try:
        written = export_peft(spec, read_engine_weights(adapter), directory, base_model)
    except OSError as exc:
        raise ConfigError(f"cannot export to {directory}: {exc.strerror or exc}") from None
    if as_json:
        print_json({"directory": str(directory), "tensors": len(written), "r": spec.lora.rank,
                    "lora_alpha": spec.lora.alpha, "target_modules": sorted(set(spec.lora.target_modules))})
        return
    say(f"PEFT adapter ({len(written)} tensors, r={spec.lora.rank}) written to {directory} "
        "(adapter_config.json, adapter_model.safetensors)")
