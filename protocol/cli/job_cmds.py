"""`tessera job …`: post jobs and drive them through the on-chain state machine by hand.

`submit` is the submitter's everyday command; `claim`, `commit`, `challenge`, `finalize`, `expire` and
`cancel` are the low-level moves of every role, so operators can act by hand and tests can play any
part, including a dishonest one (commit any trace, challenge any segment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from protocol.cli.common import (
    AMOUNT,
    HASH,
    CliSettings,
    format_amount,
    json_option,
    make_client,
    pass_settings,
    print_fields,
    print_json,
    print_receipt,
    print_table,
    say,
)
from protocol.errors import ArtifactError, ConfigError, HashMismatchError, SpecError

MAX_TRACE_BYTES = 1_048_576


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------


def job_json(view: Any) -> dict[str, Any]:
    """The stable `--json` shape of one job (docs/cli.md, "job"); amounts are base-unit strings."""
    job = view.job
    return {
        "job_id": view.job_id,
        "state": view.state.label,
        "submitter": job.submitter,
        "worker": job.worker,
        "payment": str(job.payment),
        "collateral": str(job.collateral),
        "spec_hash": job.spec_hash,
        "num_segments": job.num_segments,
        "env_class": job.env_class,
        "segment_seconds": job.segment_seconds,
        "deadline": job.deadline,
        "result_root": job.result_root,
        "output_hash": job.output_hash,
        "challenge_end": job.challenge_end,
        "spec_uri": view.spec_uri,
        "artifact_uri": view.artifact_uri,
        "posted_block": view.posted_block,
    }


def _human_job(view: Any) -> dict[str, Any]:
    data = job_json(view)
    data["payment"] = format_amount(view.job.payment)
    data["collateral"] = format_amount(view.job.collateral)
    zero_word = "0x" + "00" * 32
    return {key: ("-" if value in (zero_word, "0x" + "00" * 20, 0, "") else value) for key, value in data.items()}


def _job_id_argument(func: Any) -> Any:
    return click.argument("job_id", type=click.IntRange(min=1))(func)


# --------------------------------------------------------------------------------------------------
# Spec upload
# --------------------------------------------------------------------------------------------------


def _is_local_uri(uri: str) -> bool:
    return uri.startswith("file://") or "://" not in uri


def upload_spec(spec: Any, store: Any) -> list[str]:
    """Put the spec's canonical bytes into `store` and copy in the inputs it references from local stores.

    Returns the hashes copied. A referenced artifact that is neither in `store` nor in any local store
    its hints name is left to its remote hints (http, builtin://); a local hint that is missing the
    artifact is an error, because the submitter clearly meant to provide it.
    """
    from protocol.artifacts import open_store

    stored = store.put(spec.canonical_bytes())
    if stored != spec.spec_hash():
        raise HashMismatchError(f"store returned {stored} for the spec, expected its hash {spec.spec_hash()}")
    copied = [stored]
    for field in ("dataset", "init_weights", "inputs"):
        ref = getattr(spec, field, None)
        if ref is None or store.has(ref.hash):
            continue
        local = [uri for uri in ref.uris if _is_local_uri(uri)]
        for uri in local:
            source = open_store(uri)
            if source.has(ref.hash):
                store.put(source.get(ref.hash))  # get() checks the hash
                copied.append(ref.hash)
                break
        else:
            if local and not any(not _is_local_uri(uri) for uri in ref.uris):
                raise ArtifactError(f"spec {field} {ref.hash} is not in {store.uri} nor in its local hints {local}")
    return copied


# --------------------------------------------------------------------------------------------------
# Trace files (h_0 … h_N)
# --------------------------------------------------------------------------------------------------


def read_trace_file(source: Path) -> list[str]:
    """`h_0 … h_N` from a JSON file: a list of 0x hashes, or an object with a `state_hashes` list
    (the engine's RunResult JSON from `tessera run --json`). Each must be 32 bytes of hex."""
    try:
        if source.stat().st_size > MAX_TRACE_BYTES:
            raise ConfigError(f"trace file {source} is larger than {MAX_TRACE_BYTES} bytes")
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read trace file {source}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"trace file {source} is not JSON: {exc}") from None
    hashes = data.get("state_hashes") if isinstance(data, dict) else data
    if not isinstance(hashes, list) or not hashes:
        raise ConfigError(f"trace file {source} holds no list of state hashes (a JSON list, or 'state_hashes')")
    out = []
    for index, value in enumerate(hashes):
        text = str(value).lower()
        try:
            ok = text.startswith("0x") and len(bytes.fromhex(text[2:])) == 32
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"trace file {source}: h_{index} is not 0x + 64 hex digits: {value!r}")
        out.append(text)
    return out


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


@click.group()
def job() -> None:
    """Submit, inspect and drive jobs (every role's moves)."""


@job.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--payment", type=AMOUNT, required=True, help="Paid to the worker on finalize (tokens, or 123wei).")
@click.option("--collateral", type=AMOUNT, required=True, help="Stake the worker must lock to claim.")
@click.option("--store", default=".tessera/store", show_default=True, help="Artifact store (directory or URI) to upload the spec and local inputs to.")
@click.option("--spec-uri", default=None, help="Where workers fetch the spec by its hash. Default: the store's URI.")
@click.option("--env-class", type=HASH, default=None,
              help="Environment class the results must reproduce in. Default: the portable class of a portable "
                   "spec, else the deployment's only open machine class.")
@click.option("--segment-seconds", type=click.IntRange(min=1), default=None,
              help="Declared seconds to replay one segment (sizes the windows). Default: the spec's estimate.")
@click.option("--no-approve", is_flag=True, help="Fail instead of approving the escrow when the allowance is short.")
@click.option("--new", "new_post", is_flag=True,
              help="Post a new job even when an identical post from an earlier run was cut off after signing "
                   "(by default that post is followed, not repeated).")
@json_option
@pass_settings
def submit(
    settings: CliSettings, spec_path: Path, payment: int, collateral: int, store: str, spec_uri: str | None,
    env_class: str | None, segment_seconds: int | None, no_approve: bool, new_post: bool, as_json: bool,
) -> None:
    """Validate SPEC, upload it (and local inputs) to the store, approve and post the job."""
    from protocol.artifacts import open_store
    from protocol.spec import load_spec

    spec = load_spec(spec_path)  # SpecError lists every problem
    if spec.num_segments < 1:
        raise SpecError(f"spec {spec_path} has no segments to commit (steps/segment_steps give {spec.num_segments})")
    client = make_client(settings, need_account=True)
    artifact_store = open_store(store)
    uploaded = upload_spec(spec, artifact_store)
    uri = spec_uri or artifact_store.uri
    if not as_json:
        say(f"spec {spec.spec_hash()} ({spec.num_segments} segments) uploaded to {artifact_store.uri}")
    receipt = client.post_job(spec, payment, collateral, uri, env_class=env_class, segment_seconds=segment_seconds,
                              approve=not no_approve, allow_duplicate=new_post)
    print_receipt(receipt, as_json, job_id=receipt.job_id, spec_hash=spec.spec_hash(), spec_uri=uri,
                  uploaded=uploaded if as_json else len(uploaded))


@job.command()
@_job_id_argument
@json_option
@pass_settings
def show(settings: CliSettings, job_id: int, as_json: bool) -> None:
    """Show one job (rebuilt from events, checked against the escrow's record)."""
    from protocol.cli.dispute_cmds import dispute_json

    client = make_client(settings)
    view = client.job(job_id)
    disputes = client.disputes_of_job(job_id, view)
    if as_json:
        print_json({**job_json(view), "disputes": [dispute_json(d) for d in disputes]})
    else:
        print_fields(f"job {job_id}", _human_job(view))
        for item in disputes:
            say(f"  {item.label}: challenger {item.challenger}, arbiter deadline {item.deadline or '-'}")


@job.command("list")
@click.option("--submitter", default=None, help="Only jobs posted by this address.")
@click.option("--mine", is_flag=True, help="Only jobs posted by --account.")
@click.option("--state", "states", multiple=True, help="Only jobs in this state (repeatable): open, claimed, ...")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many (newest).")
@json_option
@pass_settings
def list_jobs(settings: CliSettings, submitter: str | None, mine: bool, states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List jobs, newest last."""
    from protocol.events import JobState

    try:
        wanted = {JobState.parse(s) for s in states}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    client = make_client(settings)
    if mine:
        submitter = client.address
    ids = client.jobs(submitter=submitter)
    views = [client.job(job_id) for job_id in ids]
    views = [v for v in views if not wanted or v.state in wanted][-limit:]
    if as_json:
        print_json({"jobs": [job_json(v) for v in views]})
        return
    print_table(
        f"jobs ({len(views)})",
        ["id", "state", "payment", "collateral", "segments", "submitter", "worker"],
        [
            (v.job_id, v.state.label, format_amount(v.job.payment), format_amount(v.job.collateral),
             v.job.num_segments, v.job.submitter, v.job.worker if v.job.worker != "0x" + "00" * 20 else "-")
            for v in views
        ],
    )


@job.command()
@_job_id_argument
@click.option("--until", "until", multiple=True, help="Stop at this state (repeatable). Default: any terminal state.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=600.0, show_default=True, help="Seconds to wait.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=0.5, show_default=True, help="Seconds between polls.")
@json_option
@pass_settings
def wait(settings: CliSettings, job_id: int, until: tuple[str, ...], timeout: float, poll: float, as_json: bool) -> None:
    """Wait for a job to reach a state, showing each transition."""
    import time

    from rich.console import Console

    from protocol.events import JobState

    try:
        targets = [JobState.parse(s) for s in until] or [s for s in JobState if s.terminal]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    client = make_client(settings)
    console = Console(stderr=True)
    started = time.monotonic()
    transitions: list[dict[str, Any]] = []

    def on_change(old: Any, new: Any, view: Any) -> None:
        transitions.append({"state": new.label, "elapsed_s": round(time.monotonic() - started, 3)})
        if not as_json:
            console.log(f"job {job_id}: {old.label if old else 'start'} -> {new.label}")

    if as_json:
        view = client.wait_for_job(job_id, targets, timeout=timeout, on_change=on_change, poll_interval=poll)
    else:
        wanted = " or ".join(s.label for s in targets)
        with console.status(f"waiting for job {job_id} to become {wanted} ..."):
            view = client.wait_for_job(job_id, targets, timeout=timeout, on_change=on_change, poll_interval=poll)
    if as_json:
        print_json({**job_json(view), "transitions": transitions})
    else:
        say(f"job {job_id} is {view.state.label}")


def _simple_write(name: str, method: str, doc: str) -> None:
    @job.command(name=name, help=doc)
    @_job_id_argument
    @json_option
    @pass_settings
    def command(settings: CliSettings, job_id: int, as_json: bool) -> None:
        client = make_client(settings, need_account=True)
        receipt = getattr(client, method)(job_id)
        print_receipt(receipt, as_json, job_id=job_id, state=client.job_state(job_id).label)


_simple_write("cancel", "cancel", "Cancel an Open job (submitter only); the payment comes back.")
_simple_write("claim", "claim", "Claim an Open job as worker; its collateral is locked from your stake.")
_simple_write("finalize", "finalize", "Finalize a Committed job after its challenge window (anyone).")
_simple_write("expire", "expire", "Expire a Claimed job past its deadline (anyone); the submitter is compensated.")


@job.command()
@_job_id_argument
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON with h_0..h_N: a list of 0x hashes, or a RunResult JSON (its state_hashes).")
@click.option("--output-hash", type=HASH, required=True, help="sha256 of the output artifact (extracted from h_N).")
@click.option("--env-class", type=HASH, default=None, help="The environment class you ran in (default: the job's).")
@click.option("--artifact-uri", required=True, help="Store URI where checkpoints, output and inputs are fetched by hash.")
@json_option
@pass_settings
def commit(
    settings: CliSettings, job_id: int, trace_path: Path, output_hash: str, env_class: str | None, artifact_uri: str,
    as_json: bool,
) -> None:
    """Commit a result for a job you claimed: the trace goes on chain, the escrow computes its root.

    Any trace is accepted (tests use this to play a cheater); the class must be the job's."""
    hashes = read_trace_file(trace_path)
    client = make_client(settings, need_account=True)
    receipt = client.commit(job_id, hashes, output_hash, artifact_uri, env_class=env_class)
    print_receipt(receipt, as_json, job_id=job_id, state=client.job_state(job_id).label)


@job.command()
@_job_id_argument
@click.option("--claim", type=click.Choice(["segment", "unavailable", "initial", "output"]), default="segment",
              show_default=True, help="What is wrong: a segment's replay, a checkpoint not served, h_0, or the output.")
@click.option("--segment", type=click.IntRange(min=0), default=None,
              help="The segment (or boundary) the claim is about; initial: 0, output: N (the defaults).")
@json_option
@pass_settings
def challenge(settings: CliSettings, job_id: int, claim: str, segment: int | None, as_json: bool) -> None:
    """Challenge a Committed job: file a sealed challenge (locks the bond), then reveal it a block later.

    The proofs are built from the trace logged at commit; the salt never leaves this process before the
    reveal, so a copy of the filing cannot be revealed by anyone else."""
    client = make_client(settings, need_account=True)
    if segment is None:
        if claim == "segment" or claim == "unavailable":
            raise ConfigError(f"--segment is required for a {claim} claim")
        segment = 0 if claim == "initial" else client.job(job_id).job.num_segments
    dispute_id, receipt = client.challenge(job_id, claim, segment)
    print_receipt(receipt, as_json, job_id=job_id, dispute_id=dispute_id, claim=claim, segment=segment,
                  state=client.job_state(job_id).label)
