"""`tessera job …`: post jobs and drive them through the on-chain state machine by hand.

`submit` is the submitter's everyday command; `claim`, `commit`, `challenge`, `finalize`, `expire` and
`cancel` are the low-level moves of every role, so operators can act by hand and tests can play any
part, including a dishonest one (commit any trace, challenge any segment).
"""

from __future__ import annotations

import json
import warnings
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
    unlock_account,
)
from protocol.errors import ConfigError, SpecError

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


def _human_job(view: Any, now: int) -> dict[str, Any]:
    from protocol.timefmt import format_chain_time

    data = job_json(view)
    data["payment"] = format_amount(view.job.payment)
    data["collateral"] = format_amount(view.job.collateral)
    for key in ("deadline", "challenge_end"):  # chain times: UTC and how long from now
        data[key] = format_chain_time(data[key], now) if data[key] else 0
    zero_word = "0x" + "00" * 32
    return {key: ("-" if value in (zero_word, "0x" + "00" * 20, 0, "") else value) for key, value in data.items()}


def _job_id_argument(func: Any) -> Any:
    return click.argument("job_id", type=click.IntRange(min=1))(func)


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
@click.option("--store", default=".tessera/store", show_default=True,
              help="Artifact store (directory or URI) to upload the spec and local inputs to.")
@click.option("--store-url", default=None,
              help="Public http(s) URL that serves --store (e.g. `tessera store serve DIR` behind a proxy): the "
                   "spec URI workers fetch from; checked by fetching the spec back before posting.")
@click.option("--spec-uri", default=None,
              help="Post this spec URI as is (no check). Default: --store-url, else the store's own URI.")
@click.option("--allow-file-uri", is_flag=True,
              help="Post a spec URI that shipped workers refuse (file://) on a public chain anyway.")
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
    settings: CliSettings, spec_path: Path, payment: int, collateral: int, store: str, store_url: str | None,
    spec_uri: str | None, allow_file_uri: bool, env_class: str | None, segment_seconds: int | None, no_approve: bool,
    new_post: bool, as_json: bool,
) -> None:
    """Validate SPEC, upload it (and local inputs) to the store, approve and post the job.

    Workers with the shipped configuration fetch specs only over http(s): serve the store (`tessera store
    serve`) and pass its public URL with --store-url. Off the local chain, a spec URI they refuse is an
    error unless --allow-file-uri; on the local chain it is a warning."""
    from protocol.publishing import LOCAL_CHAIN_ID, SpecUriWarning, publish_spec, spec_uri_warning
    from protocol.spec import load_spec

    spec = load_spec(spec_path)  # SpecError lists every problem
    if spec.num_segments < 1:
        raise SpecError(f"spec {spec_path} has no segments to commit (steps/segment_steps give {spec.num_segments})")
    if spec_uri is not None and store_url is not None:
        raise ConfigError("pass --store-url or --spec-uri, not both")
    if not settings.account:
        make_client(settings, need_account=True)  # the one "pass --account" error
    # connected without the key first: a refused spec URI is an error before any passphrase is asked
    client = make_client(settings.model_copy(update={"account": None}))
    chain_id = client.deployment.chain_id  # checked against the RPC's by connect
    warning = spec_uri_warning(spec_uri) if spec_uri is not None else None
    if spec_uri is None and store_url is None:
        from protocol.artifacts import open_store

        warning = spec_uri_warning(open_store(store, create=False).uri)  # nothing made before the check
    if warning is not None and chain_id != LOCAL_CHAIN_ID and not allow_file_uri:
        raise ConfigError(f"{warning}; or pass --allow-file-uri to post it anyway (chain id {chain_id})")
    client = client.with_account(unlock_account(settings.account, chain_id))
    published = publish_spec(spec, store, store_url)
    uri = spec_uri or published.spec_uri
    if warning is not None:
        say(f"warning: {warning}")
    if not as_json:
        say(f"spec {spec.spec_hash()} ({spec.num_segments} segments) uploaded to {published.store_uri}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecUriWarning)  # said above, as one line
        receipt = client.post_job(spec, payment, collateral, uri, env_class=env_class,
                                  segment_seconds=segment_seconds, approve=not no_approve,
                                  allow_duplicate=new_post)
    print_receipt(receipt, as_json, job_id=receipt.job_id, spec_hash=spec.spec_hash(), spec_uri=uri,
                  uploaded=published.uploaded if as_json else len(published.uploaded))


@job.command()
@_job_id_argument
@json_option
@pass_settings
def show(settings: CliSettings, job_id: int, as_json: bool) -> None:
    """Show one job (rebuilt from events, checked against the escrow's record).

    For an Open job, also how long it has been open and why workers with the shipped configuration
    would skip it (its spec URI, terms and spec checked as they check them)."""
    from protocol.cli.dispute_cmds import dispute_json
    from protocol.events import JobState
    from protocol.screening import explain_open_job

    client = make_client(settings)
    view = client.job(job_id)
    disputes = client.disputes_of_job(job_id, view)
    waiting = explain_open_job(client, job_id, view) if view.state == JobState.OPEN else None
    if as_json:
        print_json({**job_json(view), "disputes": [dispute_json(d) for d in disputes],
                    "open": waiting.model_dump(exclude={"job_id"}) if waiting is not None else None})
        return
    from protocol.timefmt import format_chain_time, format_duration

    now = client.block_time()
    print_fields(f"job {job_id}", _human_job(view, now))
    for item in disputes:
        deadline = format_chain_time(item.deadline, now) if item.deadline else "-"
        say(f"  {item.label}: challenger {item.challenger}, arbiter deadline {deadline}")
    if waiting is not None:
        say(f"open for {format_duration(waiting.open_for_s)} (chain time) with no claim")
        if waiting.skip_reasons:
            say(f"workers with {waiting.policy} would skip it:")
            for reason in waiting.skip_reasons:
                say(f"  - {reason}")
        else:
            say(f"its terms fit {waiting.policy}; a worker still needs free stake of at least the collateral, "
                "a machine of its environment class, and to see it (`tessera job cancel` refunds the payment)")


def due_of(view: Any) -> tuple[str, int]:
    """The time that matters next for a job in its state: (what, chain time), or ("", 0) when none does."""
    job = view.job
    if view.state.label == "Claimed":
        return "deadline", job.deadline
    if view.state.label in ("Committed", "Challenged"):
        return "finalizable from" if view.state.label == "Committed" else "window ends", job.challenge_end
    return "", 0


@job.command("list")
@click.option("--submitter", default=None, help="Only jobs posted by this address.")
@click.option("--mine", is_flag=True, help="Only jobs posted by --account.")
@click.option("--state", "states", multiple=True, help="Only jobs in this state (repeatable): open, claimed, ...")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many, the newest; scanning stops once they are found.")
@click.option("--log-range", type=click.IntRange(min=1), default=None,
              help="Blocks per eth_getLogs call (halved on its own when the provider refuses). "
                   "Default: TESSERA_LOG_RANGE, else 5000.")
@json_option
@pass_settings
def list_jobs(settings: CliSettings, submitter: str | None, mine: bool, states: tuple[str, ...], limit: int,
              log_range: int | None, as_json: bool) -> None:
    """List the newest jobs (printed oldest first), with the time that matters next for each."""
    from protocol.events import JobState
    from protocol.timefmt import format_chain_time

    try:
        wanted = {JobState.parse(s) for s in states}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if submitter:
        from web3 import Web3

        if not Web3.is_address(submitter):
            raise ConfigError(f"invalid --submitter {submitter!r}: expected a 0x address of 40 hex digits")
    client = make_client(settings, log_range=log_range)
    if mine:
        submitter = client.address
    views = client.list_jobs(submitter=submitter, states=wanted, limit=limit)
    if as_json:
        print_json({"jobs": [job_json(v) for v in views]})
        return
    now = client.block_time() if views else 0
    rows = []
    for v in views:
        what, when = due_of(v)
        rows.append((v.job_id, v.state.label, format_amount(v.job.payment), format_amount(v.job.collateral),
                     v.job.num_segments, v.job.submitter, v.job.worker if v.job.worker != "0x" + "00" * 20 else "-",
                     f"{what} {format_chain_time(when, now)}" if what else "-"))
    print_table(f"jobs ({len(views)})",
                ["id", "state", "payment", "collateral", "segments", "submitter", "worker", "next"], rows)


@job.command()
@_job_id_argument
@click.option("--until", "until", multiple=True, help="Stop at this state (repeatable). Default: any terminal state.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None,
              help="Seconds to wait. Default: 600, plus the time until the job can be finalized when Finalized "
                   "is a target (its challenge window: 2 h on testnet parameters).")
@click.option("--poll", type=click.FloatRange(min=0.05), default=0.5, show_default=True, help="Seconds between polls.")
@json_option
@pass_settings
def wait(settings: CliSettings, job_id: int, until: tuple[str, ...], timeout: float | None, poll: float,
         as_json: bool) -> None:
    """Wait for a job to reach a state, showing each transition and when it can be finalized."""
    import time

    from protocol.events import JobState
    from rich.console import Console

    from protocol.timefmt import format_chain_time, format_duration, iso_utc

    try:
        targets = [JobState.parse(s) for s in until] or [s for s in JobState if s.terminal]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    client = make_client(settings)
    wanted = set(targets)
    timeout = client.wait_timeout(client.job(job_id), wanted, timeout)  # refuses a timeout the window outlasts
    started = time.monotonic()
    transitions: list[dict[str, Any]] = []
    finalizable: dict[str, Any] = {"finalizable_at": None, "finalizable_at_utc": None}
    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def on_change(old: Any, new: Any, view: Any) -> None:
        transitions.append({"state": new.label, "elapsed_s": round(time.monotonic() - started, 3)})
        if view.finalizable_at is not None:
            finalizable.update(finalizable_at=view.finalizable_at, finalizable_at_utc=iso_utc(view.finalizable_at))
        if as_json:
            return
        line = f"job {job_id}: {old.label if old else 'start'} -> {new.label}"
        if view.finalizable_at is not None and JobState.FINALIZED in wanted and new not in wanted:
            line += (f"; finalizable from {format_chain_time(view.finalizable_at, client.block_time())}"
                     " (then the worker, or anyone with `tessera job finalize`, finalizes it)")
        console.print(line, markup=False)  # plain lines: no log-style source links (#19)

    if as_json:
        view = client.wait_for_job(job_id, targets, timeout=timeout, on_change=on_change, poll_interval=poll)
    else:
        wanted_text = " or ".join(s.label for s in targets)
        with console.status(f"waiting up to {format_duration(int(timeout))} for job {job_id} to become "
                            f"{wanted_text} ..."):
            view = client.wait_for_job(job_id, targets, timeout=timeout, on_change=on_change, poll_interval=poll)
    if as_json:
        print_json({**job_json(view), "transitions": transitions, **finalizable})
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
