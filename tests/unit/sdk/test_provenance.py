"""Model registration and lineage walks: two levels on chain, statuses, bounded depth, cycles."""

from __future__ import annotations

import pytest

from protocol.client import ModelView, Parent
from protocol.errors import PreflightError, TransactionRevertedError
from protocol.provenance import lineage

from .helpers import TOKEN, make_trace, spec_hash_for


def test_two_level_lineage_on_chain(fresh_chain, funded, submitter, worker, time_travel) -> None:
    sub = funded(submitter)
    wk = funded(worker, stake=20)
    base = "0x" + "ba" * 32
    dataset = "0x" + "da" * 32
    receipt = sub.register_model(base, datasets=[dataset], metadata_uri="file:///base-card", license="MIT")
    assert receipt.event("ModelRegistered").status == 1

    spec = spec_hash_for("finetune")
    trace = make_trace(2, seed=3)
    job_id = sub.post(4 * TOKEN, 2 * TOKEN, spec, 2, "file:///spec", segment_seconds=5).job_id
    wk.claim(job_id)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")
    with pytest.raises(PreflightError, match=f"cannot register a model from job {job_id}: it is Committed"):
        sub.register_model(trace.output_hash, parents=[(base, "finetune")], spec_hash=spec, job_id=job_id)
    time_travel(40)
    wk.finalize(job_id)
    with pytest.raises(PreflightError, match="only job .* submitter"):
        wk.register_model(trace.output_hash, parents=[(base, "finetune")], spec_hash=spec, job_id=job_id)
    with pytest.raises(PreflightError, match="ran spec"):
        sub.register_model(trace.output_hash, parents=[(base, "finetune")], spec_hash=spec_hash_for("other"),
                           job_id=job_id)
    graft = "0x" + "9f" * 32  # a model a stranger will try to graft onto the verified lineage
    wk.register_model(graft)
    child = sub.register_model(trace.output_hash, parents=[(base, "finetune")], datasets=[dataset], spec_hash=spec,
                               job_id=job_id, metadata_uri="file:///child-card", license="MIT")
    assert child.event("ModelRegistered").status == 2
    with pytest.raises(PreflightError, match=f"job {job_id}'s output is already attested"):
        sub.register_model(trace.output_hash, spec_hash=spec, job_id=job_id)
    # anyone else may add a Declared attestation of the same model, even naming another parent; it changes
    # nobody else's, and the lineage a reader sees stays the verified one's
    wk.register_model(trace.output_hash, parents=[(graft, "merge")], datasets=["0x" + "66" * 32],
                      metadata_uri="file:///worker-card")
    view = sub.model(trace.output_hash)
    assert [p.model_hash for p in view.parents] == [base] and view.datasets == [dataset]
    assert view.attestations[1].parents[0].model_hash == graft  # still readable, attributed to its attester
    assert [(a.attester, a.status_name) for a in view.attestations] == [
        (sub.address, "JobVerified"), (wk.address, "Declared")]
    assert view.metadata_uri == "file:///child-card" and view.job_worker == wk.address
    assert not view.attestations[0].self_dealt
    with pytest.raises(PreflightError, match="registered after"):
        wk.register_model(base, parents=[(trace.output_hash, "distill")])  # a cycle, refused before sending

    adapter = "0x" + "ad" * 32
    with pytest.raises(PreflightError, match="parent 0x" + "ee" * 32 + " is not registered"):
        sub.register_model(adapter, parents=[("0x" + "ee" * 32, "adapter")])
    sub.register_model(adapter, parents=[Parent(model_hash=trace.output_hash, relation=1)])
    with pytest.raises(PreflightError, match="already declared"):
        sub.register_model(adapter)

    tree = sub.lineage(adapter)
    assert [(n.model_hash, n.status, n.relation, n.depth) for n in tree.walk()] == [
        (adapter, "Declared", None, 0),
        (trace.output_hash, "JobVerified", "adapter", 1),
        (base, "Declared", "finetune", 2),
    ]
    assert tree.parents[0].job_id == job_id and tree.parents[0].datasets == [dataset]
    assert [r.model_hash for r in tree.roots] == [base]
    view = sub.model(trace.output_hash)
    assert view.status_name == "JobVerified" and view.creator == sub.address and view.block > 0
    shallow = sub.lineage(adapter, max_depth=1)
    assert shallow.parents[0].truncated and not shallow.parents[0].parents
    assert "JobVerified" in tree.render() and "finetune" in tree.render()


def test_register_revert_is_decoded_with_preflight_off(fresh_chain, funded, submitter, client_of) -> None:
    sub = funded(submitter, tokens=1)
    raw = client_of(submitter, preflight=False)
    with pytest.raises(TransactionRevertedError, match="registry: unknown parent"):
        raw.register_model("0x" + "01" * 32, parents=[("0x" + "02" * 32, 0)])


class FakeRegistry:
    """An in-memory stand-in for `client.model` to test the walk's bounds (cycles cannot happen on chain)."""

    def __init__(self, parents: dict[str, list[str]]):
        self.parents = parents
        self.calls = 0

    def model(self, model_hash: str) -> ModelView:
        self.calls += 1
        if model_hash not in self.parents:
            return ModelView(model_hash=model_hash, exists=False, status=0)
        return ModelView(model_hash=model_hash, exists=True, status=1,
                         parents=[Parent(model_hash=p, relation=0) for p in self.parents[model_hash]])


def h(i: int) -> str:
    return "0x" + f"{i:064x}"


def test_walk_is_bounded_and_survives_cycles() -> None:
    chain = {h(i): [h(i + 1)] for i in range(100)}
    fake = FakeRegistry(chain)
    tree = lineage(fake, h(0), max_depth=16)
    nodes = list(tree.walk())
    assert len(nodes) == 17 and nodes[-1].truncated and fake.calls == 17
    cyclic = FakeRegistry({h(1): [h(2)], h(2): [h(1)]})
    nodes = list(lineage(cyclic, h(1)).walk())
    assert [n.repeated for n in nodes] == [False, False, True]
    diamond = FakeRegistry({h(1): [h(2), h(3)], h(2): [h(4)], h(3): [h(4)], h(4): []})
    tree = lineage(diamond, h(1))
    assert [n.model_hash for n in tree.roots] == [h(4)]
    unknown = lineage(FakeRegistry({h(1): [h(9)]}), h(1))
    assert unknown.parents[0].status == "Unknown"
    with pytest.raises(ValueError):
        lineage(fake, h(0), max_depth=-1)
