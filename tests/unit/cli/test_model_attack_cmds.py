"""Attack tests: a submitter who calls the registry directly can list any parents for its job's output (the
registry checks the output and spec hashes only); `tessera model show` checks them against the job's spec, and a
model card against the record."""

from __future__ import annotations

from tests.unit.sdk.helpers import BASE, DATASET, finished_job, lm_spec

FAMOUS = "0x" + "fa" * 32


def test_show_flags_a_verified_output_registered_under_the_wrong_base(
    tessera, fresh_chain, funded, submitter, worker, time_travel, tmp_path
) -> None:
    sub = funded(submitter)
    wk = funded(worker, stake=20)
    spec = lm_spec()
    job_id, adapter = finished_job(sub, wk, spec, tmp_path / "store", time_travel)
    sub.register_model(BASE)
    sub.register_model(FAMOUS)
    # straight to the registry (no spec check on this path): an adapter of a famous model it never saw,
    # with a card that says so too (pinned: written at registration, so it matches the lying record)
    sub.register_model(adapter, parents=[(FAMOUS, "adapter")], datasets=[DATASET], spec_hash=spec.spec_hash(),
                       job_id=job_id, card_store=str(tmp_path / "cards"))
    shown = tessera("model", "show", adapter, "--json", json_out=True)
    assert shown["model"]["status"] == "JobVerified"
    check = shown["spec_check"]
    assert check["checked"] and check["job_id"] == job_id and check["error"] is None
    assert any(f"the spec's base model {BASE}" in p for p in check["problems"])
    assert any(f"{FAMOUS} is listed as a 'adapter' parent" in p for p in check["problems"])
    human = tessera("model", "show", adapter).stdout
    assert f"job {job_id}'s spec CONTRADICTS the listed lineage" in human
    assert shown["card"]["error"] is None and shown["card"]["disagreements"] == []  # the card repeats the lie
    assert tessera("model", "show", adapter, "--no-spec-check", "--json", json_out=True)["spec_check"] is None
    # a record without a job has nothing to check against
    assert tessera("model", "show", BASE, "--json", json_out=True)["spec_check"] is None
