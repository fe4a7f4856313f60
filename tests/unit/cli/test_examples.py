"""The example scripts' SDK steps on anvil, with the test playing the worker (no torch, no daemon).

The full run with a real worker daemon is the e2e/demo's job; here every step the example owns
(post with the dataset in the store, wait, verified fetch, register, two-level lineage) runs for real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.artifacts import open_store, serve_store
from protocol.hashing import sha256_hex
from protocol.merkle import merkle_root

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
sys.path.insert(0, str(EXAMPLES))

import finetune  # noqa: E402
import submit_training  # noqa: E402
import tessera_example  # noqa: E402


def _play_worker(worker_client: Any, job_id: int, spec: Any, worker_store: Any, weights: bytes, time_travel: Any) -> None:
    """Claim, put the weights in the worker's store, commit the trace on chain, and let the window pass."""
    worker_client.claim(job_id)
    states = [sha256_hex(f"{job_id} state {i}".encode()) for i in range(spec.num_segments + 1)]
    root = "0x" + merkle_root([bytes.fromhex(h[2:]) for h in states]).hex()
    output = worker_store.put(weights)
    worker_client.commit(job_id, states, output, worker_store.uri)
    assert worker_client.job(job_id).job.result_root == root
    assert worker_client.committed_trace(job_id) == states
    time_travel(worker_client.job(job_id).job.challenge_end - worker_client.chain_time() + 2)
    worker_client.finalize(job_id)


def test_training_then_finetune_two_level_lineage(fresh_chain, funded, client_of, submitter, worker, tmp_path, time_travel):
    submitter_client = client_of(submitter)
    worker_client = funded(worker, tokens=500, stake=200)
    store = open_store(str(tmp_path / "submitter-store"))
    worker_store = open_store(str(tmp_path / "worker-store"))

    spec = submit_training.build_spec(store, steps=50, segment_steps=25)
    assert store.has(spec.dataset.hash), "the digits dataset is in the store for workers to fetch"
    with serve_store(store.root) as server:  # --store-url: the spec URI a shipped worker fetches
        job_id = tessera_example.post_spec(submitter_client, spec, store, 10 * 10**18, 50 * 10**18, quiet=True,
                                           store_url=server.url)
    assert store.has(spec.spec_hash())
    posted = submitter_client.job(job_id)
    assert posted.spec_uri == server.url and posted.job.spec_hash == spec.spec_hash()

    _play_worker(worker_client, job_id, spec, worker_store, b"parent weights", time_travel)
    tessera_example.wait_finalized(submitter_client, job_id, timeout=10, quiet=True)
    parent = tessera_example.collect_and_register(submitter_client, job_id, spec, store, tmp_path / "models", quiet=True)
    assert parent["status"] == "JobVerified"
    assert parent["output_hash"] == sha256_hex(b"parent weights")
    assert Path(parent["weights_path"]).read_bytes() == b"parent weights"
    assert store.has(parent["output_hash"]), "weights kept in the store for a later fine-tune"

    child_spec = finetune.build_finetune_spec(store, parent["output_hash"], steps=25, segment_steps=25)
    assert child_spec.kind == "finetune" and child_spec.init_weights.hash == parent["output_hash"]
    child_job = tessera_example.post_spec(submitter_client, child_spec, store, 5 * 10**18, 25 * 10**18, quiet=True)
    _play_worker(worker_client, child_job, child_spec, worker_store, b"child weights", time_travel)
    tessera_example.wait_finalized(submitter_client, child_job, timeout=10, quiet=True)
    child = tessera_example.collect_and_register(
        submitter_client, child_job, child_spec, store, tmp_path / "models", parents=[(parent["output_hash"], "finetune")],
        quiet=True)
    assert child["status"] == "JobVerified"
    lineage = child["lineage"]
    assert lineage["model_hash"] == child["output_hash"]
    assert [(p["model_hash"], p["relation"], p["status"]) for p in lineage["parents"]] == [
        (parent["output_hash"], "finetune", "JobVerified")]
    assert parent["output_hash"] in child["lineage_text"] and child["output_hash"] in child["lineage_text"]
    json.dumps(child)  # the --json summary is serialisable


def test_tampered_result_is_refused(fresh_chain, funded, client_of, submitter, worker, tmp_path, time_travel):
    from protocol.errors import HashMismatchError

    submitter_client = client_of(submitter)
    worker_client = funded(worker, tokens=500, stake=200)
    store = open_store(str(tmp_path / "s"))
    worker_store = open_store(str(tmp_path / "w"))
    spec = submit_training.build_spec(store, steps=25, segment_steps=25)
    job_id = tessera_example.post_spec(submitter_client, spec, store, 10**18, 10**18, quiet=True)
    _play_worker(worker_client, job_id, spec, worker_store, b"honest bytes", time_travel)
    output = submitter_client.job(job_id).job.output_hash
    worker_store.path_of(output).write_bytes(b"swapped bytes")  # the store now serves other bytes
    with pytest.raises(HashMismatchError):
        tessera_example.collect_and_register(submitter_client, job_id, spec, store, tmp_path / "m", quiet=True)
    assert not submitter_client.model(output).exists, "nothing registered from unverified bytes"


def test_script_reports_a_missing_deployment_in_one_line(tmp_path, anvil, capsys, monkeypatch):
    monkeypatch.setenv("TESSERA_DEPLOYMENTS_DIR", str(tmp_path))
    code = submit_training.main(["--network", anvil.rpc_url, "--store", str(tmp_path / "s"), "--json"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: no deployment for chain id 31337") and err.count("\n") == 1
