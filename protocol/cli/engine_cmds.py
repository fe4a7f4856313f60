"""`tessera spec`, `tessera run`, `tessera replay`: task specs and the engine without any chain.

`run` is a submitter's dry run before paying (and a worker's smoke test); `replay` is the
verifier's and the arbiter's tool, by hand. torch is imported only inside `run`, `replay` and `spec coverage`.
Errors are `TesseraError`s; the root group prints them on one line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from protocol.cli.common import json_option, print_fields, print_json, print_table, say
from protocol.errors import ArtifactError, EngineError

MAX_CHECKPOINT_FILE_BYTES = 8 * 1024**3


@click.group()
def spec() -> None:
    """Task specs: print the JSON Schema, validate a file, say whether its disputes are decided on chain."""


@spec.command("schema")
def schema() -> None:
    """Print the JSON Schema of task specs (docs/spec-format.md explains each field)."""
    from protocol.spec import spec_json_schema

    click.echo(json.dumps(spec_json_schema(), indent=2, sort_keys=True))


@spec.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def validate(file: Path, as_json: bool) -> None:
    """Validate FILE; list every problem with its field path (exit code 2 when invalid)."""
    from protocol.spec import (
        estimate_activation_elements,
        estimate_memory_bytes,
        estimate_parameters,
        load_spec,
        lora_parameters,
    )

    task = load_spec(file)
    summary = {
        "valid": True, "spec_hash": task.spec_hash(), "kind": task.kind, "num_segments": task.num_segments,
        "parameters": estimate_parameters(task), "activation_elements": estimate_activation_elements(task),
        "memory_bytes": estimate_memory_bytes(task), "device": task.device,
    }  # fmt: skip
    if task.lora is not None:  # the trained (and checkpointed) parameters of a LoRA job
        summary["adapter_parameters"] = lora_parameters(task)
    if as_json:
        print_json(summary)
    else:
        print_fields(f"{file}: valid", summary)


@spec.command("coverage")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact store holding the spec's dataset or checkpoint, when it names one.")
@click.option("--strict", is_flag=True, help="Exit with code 3 unless every call has an on-chain rule.")
@json_option
def coverage(file: Path, store_dir: Path | None, strict: bool, as_json: bool) -> None:
    """Say whether a refereed dispute over FILE's jobs is decided on chain: every call of a portable training
    step with an on-chain rule, or the calls where a game can still be steered to the arbiter (docs/disputes.md).
    Records step 0 on CPU (torch)."""
    from protocol.artifacts import LocalStore
    from protocol.spec import load_spec

    task = load_spec(file)
    from engine.api import uncovered_calls, uses_state_roots  # torch loads here, after the spec proved valid

    summary: dict = {"spec_hash": task.spec_hash(), "arithmetic": task.arithmetic, "kind": task.kind}
    if not uses_state_roots(task):
        why = "native arithmetic" if task.arithmetic == "native" else f"{task.kind} jobs have no step record"
        summary |= {"refereed_on_chain": False, "reason": f"{why}: its disputes go to the arbiter", "uncovered": None}
    else:
        store = LocalStore(store_dir) if store_dir is not None else None
        found = uncovered_calls(task, store)
        summary |= {"refereed_on_chain": not found, "reason": None if not found else "calls without an on-chain rule"
                    if all(kernel != "kit" for _, kernel, _ in found) else "a step's dispute kit too large to play",
                    "uncovered": [{"entry": entry, "kernel": kernel, {"link": "leaves", "kit": "bytes"}.get(kernel, "output"): n}
                                  for entry, kernel, n in found]}  # fmt: skip
    if as_json:
        print_json(summary)
    else:
        print_fields(f"{file}: coverage", {k: v for k, v in summary.items() if k != "uncovered"})
        if summary["uncovered"]:
            print_table("calls a refereed game escalates to the arbiter (kit: a step too large to play)",
                        ["entry", "kernel", "output (link: leaves; kit: bytes)"],
                        [(c["entry"], c["kernel"], c.get("output", c.get("leaves", c.get("bytes")))) for c in summary["uncovered"]])
    if strict and not summary["refereed_on_chain"]:
        raise click.exceptions.Exit(3)


@spec.command("example")
@click.argument("name", type=click.Choice(["digits", "digits-cnn", "tiny-gpt"]))
def example(name: str) -> None:
    """Print a ready-made spec over a built-in dataset (canonical JSON), e.g. `> spec.json`."""
    from engine import presets

    make = {"digits": presets.digits_spec, "digits-cnn": presets.digits_cnn_spec, "tiny-gpt": presets.tiny_gpt_spec}[name]
    click.echo(json.dumps(json.loads(make().canonical_bytes()), indent=2, sort_keys=True))


def _summary(result) -> dict:
    data = result.model_dump(mode="json")
    return data


@click.command("run")
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact store directory for checkpoints and outputs (default: a temporary one, discarded).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: from the spec; CUDA when present for 'any').")
@json_option
def run(spec_file: Path, store_dir: Path | None, device: str | None, as_json: bool) -> None:
    """Run SPEC locally: result root, output hash, segment trace, fingerprint, metrics."""
    from protocol.artifacts import LocalStore
    from protocol.spec import load_spec

    task = load_spec(spec_file)
    from engine.api import run_spec  # torch loads here, after the spec proved valid

    def progress(index: int, digest: str) -> None:
        if not as_json:
            say(f"h_{index} = {digest}")

    with tempfile.TemporaryDirectory(prefix="tessera-run-") as scratch:
        store = LocalStore(store_dir if store_dir is not None else scratch)
        result = run_spec(task, store, device=device, on_segment=progress)
    data = _summary(result)
    if store_dir is None:
        data["store_uri"] = None  # the scratch store is gone
    if as_json:
        print_json(data)
        return
    metrics = {k: v for k, v in result.metrics.items() if k != "loss_curve"}
    print_fields("run", {
        "spec_hash": result.spec_hash, "result_root": result.result_root, "output_hash": result.output_hash,
        "fingerprint_hash": result.fingerprint_hash, "segments": result.num_segments, "device": result.device,
        "wall_s": round(result.wall_s, 3), **metrics, "store": data["store_uri"] or "(discarded)",
    })  # fmt: skip


@click.command("replay")
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--checkpoint", "checkpoint_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File holding checkpoint i (h_i: its sha256; a portable training job's: its state root).")
@click.option("--segment", type=click.IntRange(min=0), required=True, help="Segment i to replay (0-based).")
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact store holding the dataset/inputs (the spec's URI hints are tried too).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N; use the device class of the committed fingerprint.")
@click.option("--expect", default=None, help="The committed h_{i+1}; the output says whether the replay matches it.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the checkpoint reached to this file.")
@json_option
def replay(spec_file: Path, checkpoint_file: Path, segment: int, store_dir: Path | None, device: str | None,
           expect: str | None, out_file: Path | None, as_json: bool) -> None:  # fmt: skip
    """Replay segment I of SPEC from checkpoint FILE and print the hash it reached (h_{i+1})."""
    from protocol.artifacts import LocalStore, normalize_hash
    from protocol.spec import load_spec

    task = load_spec(spec_file)
    try:
        if checkpoint_file.stat().st_size > MAX_CHECKPOINT_FILE_BYTES:
            raise ArtifactError(f"checkpoint file {checkpoint_file} is over {MAX_CHECKPOINT_FILE_BYTES} bytes")
        data = checkpoint_file.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read checkpoint {checkpoint_file}: {exc.strerror or exc}") from None
    expected = normalize_hash(expect) if expect is not None else None
    from engine.api import replay_checkpoint_bytes

    store = LocalStore(store_dir) if store_dir is not None else None
    reached, reached_bytes = replay_checkpoint_bytes(task, store, segment, data, device=device)
    if out_file is not None:
        try:
            out_file.write_bytes(reached_bytes)
        except OSError as exc:
            raise EngineError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    from engine.api import checkpoint_name

    summary = {"spec_hash": task.spec_hash(), "segment": segment,
               "checkpoint_hash": checkpoint_name(task, store, segment, data),
               "reached_hash": reached, "expected_hash": expected,
               "matches": None if expected is None else reached == expected}  # fmt: skip
    if as_json:
        print_json(summary)
    else:
        print_fields(f"replay of segment {segment}", summary)
    if expected is not None and reached != expected:
        raise click.exceptions.Exit(3)
