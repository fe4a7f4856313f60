"""A finished job's output is registered with the lineage its spec implies: a LoRA finetune's output is an
`adapter` of the spec's init_weights (the base model), a full finetune's a `finetune`, a train job's a root."""

from __future__ import annotations

import pytest

from protocol.errors import ConfigError, PreflightError
from protocol.provenance import job_output_lineage

from .helpers import BASE, DATASET, finished_job, lm_spec

def test_lineage_follows_the_spec() -> None:
    adapter = job_output_lineage(lm_spec())
    assert (adapter.relation, adapter.base_model, adapter.parents, adapter.datasets) == (
        "adapter", BASE, [(BASE, "adapter")], [DATASET])
    assert job_output_lineage(lm_spec(lora=False)).parents == [(BASE, "finetune")]
    trained = job_output_lineage(lm_spec("train", lora=False))
    assert (trained.relation, trained.parents) == (None, [])
    other = "0x" + "0e" * 32
    assert job_output_lineage(lm_spec(), "adapter", [(BASE, "adapter"), (other, "merge")]).parents == [
        (BASE, "adapter"), (other, "merge")]
    with pytest.raises(ConfigError, match="relation 'finetune' contradicts the spec: its output relates to the base model .* as 'adapter'"):
        job_output_lineage(lm_spec(), "finetune")
    with pytest.raises(ConfigError, match=f"parent {BASE}:finetune contradicts the spec"):
        job_output_lineage(lm_spec(), extra_parents=[(BASE, "finetune")])
    with pytest.raises(ConfigError, match="a train job starts from no base model"):
        job_output_lineage(lm_spec("train", lora=False), "finetune")
    with pytest.raises(PreflightError, match="an eval job outputs no model"):
        job_output_lineage(lm_spec(lora=False).model_copy(update={"kind": "eval"}))


def test_lora_job_output_registers_as_adapter_of_its_base(
    fresh_chain, funded, submitter, worker, time_travel, tmp_path
) -> None:
    sub = funded(submitter)
    wk = funded(worker, stake=20)
    spec = lm_spec()
    job_id, adapter = finished_job(sub, wk, spec, tmp_path / "store", time_travel)
    with pytest.raises(PreflightError, match=f"the base model {BASE} .* is not registered"):
        sub.register_job_output(job_id)
    with pytest.raises(PreflightError, match=f"job {job_id} ran spec .* not the given one"):
        sub.register_job_output(job_id, lm_spec(lora=False))
    with pytest.raises(ConfigError, match="contradicts the spec"):
        sub.register_job_output(job_id, relation="finetune", register_base=True)
    assert not sub.model(BASE).exists, "a refused registration declared nothing"

    receipt = sub.register_job_output(job_id, register_base=True)  # the spec is fetched from its URI by hash
    assert receipt.event("ModelRegistered").status == 2
    view = sub.model(adapter)
    assert [(p.model_hash, p.relation_name) for p in view.parents] == [(BASE, "adapter")]
    assert view.datasets == [DATASET] and view.spec_hash == spec.spec_hash() and view.job_id == job_id
    tree = sub.lineage(adapter)
    assert [(n.model_hash, n.status, n.relation) for n in tree.walk()] == [
        (adapter, "JobVerified", None), (BASE, "Declared", "adapter")]

    # a full finetune of the same base is a `finetune` child, from the spec passed in
    full = lm_spec(lora=False)
    job2, tuned = finished_job(sub, wk, full, tmp_path / "store", time_travel, seed=1)
    sub.register_job_output(job2, full.model_dump(mode="json"))
    assert [(p.model_hash, p.relation_name) for p in sub.model(tuned).parents] == [(BASE, "finetune")]
