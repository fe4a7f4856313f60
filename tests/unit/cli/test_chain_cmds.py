"""Every chain command through click's runner against anvil: happy paths, `--json` schemas, roles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.accounts import test_account
from protocol.artifacts import open_store
from protocol.hashing import sha256_hex
from protocol.merkle import merkle_root
from tests.unit.cli.conftest import tiny_spec

TOKEN = 10**18
JOB_KEYS = {
    "job_id", "state", "submitter", "worker", "payment", "collateral", "spec_hash", "num_segments", "env_class",
    "segment_seconds", "deadline", "result_root", "output_hash", "challenge_end", "spec_uri", "artifact_uri",
    "posted_block", "disputes", "open",
}
RECEIPT_KEYS = {"tx_hash", "block_number", "gas_used", "status", "description", "events"}


def _write_spec(tmp_path: Path, **kwargs: Any) -> tuple[Path, str]:
    """A spec file whose dataset lives in a local 'source' store (so submit must copy it)."""
    source = open_store(str(tmp_path / "source"))
    dataset_hash = source.put(b"pretend dataset bytes " * 10)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec(dataset_hash, dataset_uris=[str(tmp_path / "source")], **kwargs)))
    return path, dataset_hash


def test_faucet_and_stake_lifecycle(tessera, fresh_chain, worker, time_travel) -> None:
    out = tessera("faucet", "500", "--json", account="TEST::2", json_out=True)
    assert RECEIPT_KEYS | {"address", "minted", "balance"} <= set(out)
    assert out["address"] == worker.address and out["minted"] == str(500 * TOKEN)
    assert out["events"] and out["balance"] == str(500 * TOKEN)

    tessera("stake", "deposit", "200", account="TEST::2")
    show = tessera("stake", "show", worker.address, "--json", json_out=True)
    assert show == {
        "address": worker.address, "staked": str(200 * TOKEN), "available": str(200 * TOKEN), "locked": "0",
        "unbonding": "0", "unbonding_release_at": 0, "withdrawable": False,
    }
    human = tessera("stake", "show", account="TEST::2")
    assert "200" in human.stdout and "available" in human.stdout

    tessera("stake", "request-unstake", "50.5", account="TEST::2")
    show = tessera("stake", "show", "--json", account="TEST::2", json_out=True)
    assert show["unbonding"] == str(50 * TOKEN + 5 * 10**17) and show["available"] == str(149 * TOKEN + 5 * 10**17)
    assert show["withdrawable"] is False

    early = tessera("stake", "withdraw", account="TEST::2", ok=False)
    assert early.exit_code == 1 and early.stderr.startswith("error: withdraw: stake still unbonding")

    time_travel(show["unbonding_release_at"])
    out = tessera("stake", "withdraw", "--json", account="TEST::2", json_out=True)
    assert out["status"] == 1
    assert tessera("stake", "show", "--json", account="TEST::2", json_out=True)["unbonding"] == "0"


def test_job_full_path_with_challenge_and_provenance(
    tessera, fresh_chain, tmp_path, submitter, worker, deployer, client_of, time_travel
) -> None:
    spec_path, dataset_hash = _write_spec(tmp_path)
    store_dir = tmp_path / "store"
    for account in ("TEST::1", "TEST::2", "TEST::3"):
        tessera("faucet", "1000", account=account)
    tessera("stake", "deposit", "300", account="TEST::2")
    tessera("stake", "deposit", "50", account="TEST::3")

    posted = tessera("job", "submit", str(spec_path), "--payment", "20", "--collateral", "100",
                     "--store", str(store_dir), "--json", account="TEST::1", json_out=True)
    job_id = posted["job_id"]
    assert isinstance(job_id, int) and job_id >= 1
    assert open_store(str(store_dir)).has(dataset_hash), "the local dataset was copied into the store"
    assert open_store(str(store_dir)).has(posted["spec_hash"])
    assert posted["spec_uri"] == open_store(str(store_dir)).uri

    job = tessera("job", "show", str(job_id), "--json", json_out=True)
    assert set(job) == JOB_KEYS
    assert (job["state"], job["submitter"], job["payment"], job["collateral"], job["num_segments"]) == (
        "Open", submitter.address, str(20 * TOKEN), str(100 * TOKEN), 2)
    listed = tessera("job", "list", "--json", "--state", "open", json_out=True)
    assert job_id in [j["job_id"] for j in listed["jobs"]]
    assert all(j["state"] == "Open" for j in listed["jobs"])
    assert "Open" in tessera("job", "list").stdout

    claimed = tessera("job", "claim", str(job_id), "--json", account="TEST::2", json_out=True)
    assert claimed["state"] == "Claimed" and "JobClaimed" in [e["name"] for e in claimed["events"]]
    assert tessera("stake", "show", worker.address, "--json", json_out=True)["locked"] == str(100 * TOKEN)

    # The worker commits a trace (a RunResult-shaped JSON); the escrow computes its root.
    hashes = [sha256_hex(f"state {i}".encode()) for i in range(3)]
    root = "0x" + merkle_root([bytes.fromhex(h[2:]) for h in hashes]).hex()
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"state_hashes": hashes, "result_root": root}))
    short = tmp_path / "short.json"
    short.write_text(json.dumps(hashes[:2]))
    too_short = tessera("job", "commit", str(job_id), "--trace", str(short), "--output-hash", hashes[-1],
                        "--artifact-uri", "file:///nowhere", account="TEST::2", ok=False)
    assert "its trace needs 3 state hashes (h_0 … h_N), got 2" in too_short.stderr
    foreign = tessera("job", "commit", str(job_id), "--trace", str(trace), "--output-hash", hashes[-1],
                      "--env-class", sha256_hex(b"my own machine"), "--artifact-uri", "file:///nowhere",
                      account="TEST::2", ok=False)
    assert "must reproduce in environment class" in foreign.stderr
    committed = tessera("job", "commit", str(job_id), "--trace", str(trace), "--output-hash", hashes[-1],
                        "--artifact-uri", "file:///nowhere", "--json", account="TEST::2", json_out=True)
    assert committed["state"] == "Committed"
    assert tessera("job", "show", str(job_id), "--json", json_out=True)["result_root"] == root

    waited = tessera("job", "wait", str(job_id), "--until", "committed", "--timeout", "5", "--json", json_out=True)
    assert waited["state"] == "Committed" and waited["transitions"][-1]["state"] == "Committed"
    human_wait = tessera("job", "wait", str(job_id), "--until", "committed", "--until", "finalized", "--timeout", "5")
    assert f"job {job_id} is Committed" in human_wait.stderr

    too_early = tessera("job", "finalize", str(job_id), account="TEST::3", ok=False)
    assert too_early.stderr.startswith(f"error: cannot finalize job {job_id} yet: its challenge window is open")

    # The verifier needs no file: the trace is read back from the commit's log on chain.
    challenged = tessera("job", "challenge", str(job_id), "--segment", "1", "--json",
                         account="TEST::3", json_out=True)
    assert challenged["state"] == "Challenged"
    assert "ChallengeRevealed" in [e["name"] for e in challenged["events"]]
    dispute_id = challenged["dispute_id"]
    shown = tessera("dispute", "show", str(dispute_id), "--json", json_out=True)
    assert (shown["status"], shown["claim"], shown["segment"], shown["job_id"]) == ("revealed", "segment", 1, job_id)
    assert tessera("job", "show", str(job_id), "--json", json_out=True)["disputes"][0]["dispute_id"] == dispute_id

    # The arbiter rules the worker right: the challenger's bond goes to the treasury, the job finalizes.
    arbiter = client_of(test_account(4))
    arbiter.verdict(dispute_id, False, hashes[2], "file:///evidence")
    time_travel(int(client_of(deployer).job(job_id).job.challenge_end) + 1)
    final = tessera("job", "finalize", str(job_id), "--json", account="TEST::3", json_out=True)
    assert final["state"] == "Finalized"

    # Provenance: the output registered with its job is JobVerified; a fine-tuned child is Declared.
    reg = tessera("model", "register", hashes[-1], "--dataset", dataset_hash, "--spec-hash", posted["spec_hash"],
                  "--job-id", str(job_id), "--license", "Apache-2.0", "--json", account="TEST::1", json_out=True)
    assert reg["model_status"] == "JobVerified" and reg["status"] == 1
    child = sha256_hex(b"child weights")
    reg = tessera("model", "register", child, "--parent", f"{hashes[-1]}:finetune", "--json",
                  account="TEST::7", json_out=True)
    assert reg["model_status"] == "Declared"
    shown = tessera("model", "show", child, "--json", json_out=True)
    assert shown["model"]["parents"] == [{"model_hash": hashes[-1], "relation": "finetune"}]
    lineage = shown["lineage"]
    assert lineage["status"] == "Declared" and lineage["parents"][0]["status"] == "JobVerified"
    assert lineage["parents"][0]["relation"] == "finetune" and lineage["parents"][0]["job_id"] == job_id
    human = tessera("model", "show", child)
    assert "JobVerified" in human.stdout and "lineage" in human.stdout


def test_cancel_and_expire(tessera, fresh_chain, tmp_path, time_travel, deployment) -> None:
    spec_path, _ = _write_spec(tmp_path)
    tessera("faucet", "1000", account="TEST::1")
    tessera("faucet", "1000", account="TEST::6")
    tessera("stake", "deposit", "100", account="TEST::6")
    store = str(tmp_path / "store")
    first = tessera("job", "submit", str(spec_path), "--payment", "5", "--collateral", "10", "--store", store,
                    "--json", account="TEST::1", json_out=True)["job_id"]
    second = tessera("job", "submit", str(spec_path), "--payment", "5", "--collateral", "10", "--store", store,
                     "--json", account="TEST::1", json_out=True)["job_id"]
    assert tessera("job", "cancel", str(first), "--json", account="TEST::1", json_out=True)["state"] == "Cancelled"
    tessera("job", "claim", str(second), account="TEST::6")
    not_yet = tessera("job", "expire", str(second), account="TEST::1", ok=False)
    assert "cannot expire job" in not_yet.stderr
    time_travel(int(deployment.params["execution_timeout"]) + 2)
    assert tessera("job", "expire", str(second), "--json", account="TEST::1", json_out=True)["state"] == "Expired"
    waited = tessera("job", "wait", str(second), "--timeout", "5", "--json", json_out=True)
    assert waited["state"] == "Expired"
