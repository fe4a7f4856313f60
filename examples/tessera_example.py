"""Shared steps of the example scripts: post a job, wait with progress, fetch and verify, register.

Each step is a plain function over the SDK (`protocol.client.TesseraClient`) so the examples read
top to bottom and tests can drive the steps one by one (playing the worker in between).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from protocol.amounts import format_tokens
from protocol.errors import PreflightError

TOKEN = 10**18


def log(message: str, quiet: bool = False) -> None:
    """Progress on stderr, so `--json` output on stdout stays clean."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def ensure_funds(client: Any, needed: int, quiet: bool = False) -> None:
    """On the local chain, top the account up from the dev faucet; elsewhere just check the balance."""
    balance = client.token_balance(client.address)
    if balance >= needed:
        return
    if int(client.w3.eth.chain_id) != 31337:
        raise PreflightError(f"balance {format_tokens(balance)} tokens is below the {format_tokens(needed)} needed "
                             "(a DevToken deployment such as the testnet's mints them: `tessera faucet AMOUNT`)")
    log(f"minting {format_tokens(needed - balance)} dev tokens from the faucet", quiet)
    client.faucet(needed - balance)


def post_spec(client: Any, spec: Any, store: Any, payment: int, collateral: int, quiet: bool = False,
              store_url: str | None = None) -> int:
    """Upload the spec to `store`, approve and post; return the job id.

    Workers fetch the spec by hash from the posted spec URI: `store_url`, the public http(s) URL that
    serves `store` (checked by fetching the spec back), else the store's own URI (a `file://` one is
    only for workers on this host; docs/sdk.md)."""
    from protocol.publishing import publish_spec

    published = publish_spec(spec, store, store_url)
    ensure_funds(client, payment, quiet)
    receipt = client.post_job(spec, payment, collateral, published.spec_uri)
    log(f"posted job {receipt.job_id}: spec {spec.spec_hash()} ({spec.num_segments} segments) at "
        f"{published.spec_uri}, payment {format_tokens(payment)}, collateral {format_tokens(collateral)}", quiet)
    return int(receipt.job_id)


def wait_finalized(client: Any, job_id: int, timeout: float | None = None, quiet: bool = False) -> Any:
    """Wait until the job settles, printing each state change; error unless it Finalized.

    `timeout` None lets the SDK cover the deployment's windows (a claim, the run, the challenge window)."""
    import time

    from protocol.events import JobState

    started = time.monotonic()

    def on_change(old: Any, new: Any, view: Any) -> None:
        log(f"[{time.monotonic() - started:6.1f}s] job {job_id}: {old.label if old else 'start'} -> {new.label}", quiet)

    view = client.wait_for_job(job_id, timeout=timeout, on_change=on_change)
    if view.state != JobState.FINALIZED:
        raise PreflightError(f"job {job_id} ended {view.state.label}, not Finalized; nothing to register")
    return view


def collect_and_register(
    client: Any, job_id: int, spec: Any, store: Any, out_dir: Path, *, parents: list[tuple[str, str]] = (),
    license: str = "Apache-2.0", quiet: bool = False,
) -> dict[str, Any]:
    """Fetch the result (every hash checked), keep the weights, register the model, read its lineage."""
    from protocol.hashing import sha256_hex

    view = client.job(job_id)
    weights = client.fetch_result(job_id)  # checks the output hash (the trace is on chain)
    output_hash = sha256_hex(weights)
    if output_hash != view.job.output_hash:
        raise AssertionError("fetch_result returned bytes that do not hash to the committed output")
    store.put(weights)  # our own copy, so a fine-tune can name these weights by hash
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{output_hash[2:18]}.safetensors"
    weights_path.write_bytes(weights)
    log(f"result verified: {output_hash} ({len(weights)} bytes) -> {weights_path}", quiet)
    datasets = [spec.dataset.hash] if spec.dataset is not None else []
    if client.job_attestation(job_id):
        log(f"job {job_id}'s output is already attested (attestations are never overwritten)", quiet)
    else:
        client.register_model(output_hash, parents=list(parents), datasets=datasets, spec_hash=spec.spec_hash(),
                              job_id=job_id, metadata_uri=store.uri, license=license)
    model = client.model(output_hash)
    tree = client.lineage(output_hash)
    log(f"registered {output_hash} as {model.status_name}", quiet)
    return {
        "job_id": job_id,
        "spec_hash": spec.spec_hash(),
        "output_hash": output_hash,
        "datasets": datasets,
        "weights_path": str(weights_path),
        "status": model.status_name,
        "lineage": tree.model_dump(mode="json"),
        "lineage_text": tree.render(),
    }


def emit(summary: dict[str, Any], as_json: bool) -> None:
    """The final result: JSON on stdout, or the lineage tree."""
    if as_json:
        print(json.dumps({k: v for k, v in summary.items() if k != "lineage_text"}, indent=2))
    else:
        print(f"job {summary['job_id']} finalized; model {summary['output_hash']} is {summary['status']}")
        print("lineage:")
        print(summary["lineage_text"])
