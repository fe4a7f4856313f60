"""`tessera model register --job-id` registers a finished job's output with the lineage its spec implies, and
`tessera model show` prints that lineage from the base to the adapter with both statuses."""

from __future__ import annotations

from tests.unit.sdk.helpers import BASE, DATASET, finished_job, lm_spec


def test_register_job_output_and_show_the_chain(
    tessera, fresh_chain, funded, submitter, worker, time_travel, tmp_path
) -> None:
    sub = funded(submitter)
    wk = funded(worker, stake=20)
    spec = lm_spec()
    job_id, adapter = finished_job(sub, wk, spec, tmp_path / "store", time_travel)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())

    refused = tessera("model", "register", "--job-id", str(job_id), "--relation", "finetune", "--register-base",
                      account="TEST::1", ok=False)
    assert refused.exit_code == 2 and "relation 'finetune' contradicts the spec" in refused.stderr
    wrong = tessera("model", "register", BASE, "--job-id", str(job_id), account="TEST::1", ok=False)
    assert wrong.exit_code == 2 and f"committed output {adapter}, not {BASE}" in wrong.stderr
    lonely = tessera("model", "register", "--job-id", str(job_id), account="TEST::1", ok=False)
    assert lonely.exit_code == 1 and "is not registered; register it first" in lonely.stderr
    misplaced = tessera("model", "register", BASE, "--relation", "adapter", account="TEST::1", ok=False)
    assert misplaced.exit_code == 2 and "--relation only goes with --job-id" in misplaced.stderr

    reg = tessera("model", "register", "--job-id", str(job_id), "--spec", str(spec_file), "--relation", "adapter",
                  "--register-base", "--license", "Apache-2.0", "--json", account="TEST::1", json_out=True)
    assert reg["model_hash"] == adapter and reg["model_status"] == "JobVerified"
    shown = tessera("model", "show", adapter, "--json", json_out=True)
    assert shown["model"]["parents"] == [{"model_hash": BASE, "relation": "adapter"}]
    assert shown["model"]["datasets"] == [DATASET] and shown["model"]["job_id"] == job_id
    assert shown["lineage"]["parents"][0]["status"] == "Declared"
    human = tessera("model", "show", adapter).stdout
    assert f"{BASE} [Declared] -adapter-> {adapter} [JobVerified]" in human
