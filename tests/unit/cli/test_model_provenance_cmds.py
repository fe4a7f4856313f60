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

    cards = tmp_path / "cards"
    reg = tessera("model", "register", "--job-id", str(job_id), "--spec", str(spec_file), "--relation", "adapter",
                  "--register-base", "--license", "Apache-2.0", "--card-store", str(cards), "--json",
                  account="TEST::1", json_out=True)
    assert reg["model_hash"] == adapter and reg["model_status"] == "JobVerified"
    assert reg["metadata_uri"].startswith(cards.resolve().as_uri() + "/")
    shown = tessera("model", "show", adapter, "--json", json_out=True)
    assert shown["model"]["parents"] == [{"model_hash": BASE, "relation": "adapter"}]
    assert shown["model"]["datasets"] == [DATASET] and shown["model"]["job_id"] == job_id
    assert shown["lineage"]["parents"][0]["status"] == "Declared"
    card = shown["card"]
    assert card["pinned"] and card["error"] is None and card["uri"] == reg["metadata_uri"]
    assert {k: card["document"][k] for k in ("base_model", "base_model_relation", "datasets", "license")} == {
        "base_model": BASE, "base_model_relation": "adapter", "datasets": [DATASET], "license": "Apache-2.0"}
    assert card["document"]["tessera"]["job_id"] == job_id
    assert card["document"]["tessera"]["spec_hash"] == spec.spec_hash()
    human = tessera("model", "show", adapter).stdout
    assert f"{BASE} [Declared] -adapter-> {adapter} [JobVerified]" in human
    assert "model card (pinned)" in human and "Apache-2.0" in human

    # a card changed after registration no longer matches the hash its URI pins: shown as unreadable
    card_path = next(cards.iterdir())
    card_path.write_text(card_path.read_text().replace("Apache-2.0", "MIT"))
    tampered = tessera("model", "show", adapter, "--json", json_out=True)["card"]
    assert tampered["document"] is None and "hash" in tampered["error"]
    assert "model card: unreadable" in tessera("model", "show", adapter).stdout
    assert tessera("model", "show", adapter, "--no-card", "--json", json_out=True)["card"] is None
