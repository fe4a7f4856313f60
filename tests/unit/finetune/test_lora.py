"""LoRA fine-tuning through run_spec: frozen base, moving adapters, adapter-only checkpoints and
output bound to the base hash, deterministic replay, exact counts, and refusals."""

from __future__ import annotations

import pytest

from engine import tensors_io
from engine.api import replay_segment, run_spec
from engine.lora import adapter_parameters
from engine.model import build_model
from engine.training import META_KEY, Job
from protocol.artifacts import LocalStore
from protocol.errors import SpecError
from protocol.spec import (
    ArtifactRef,
    estimate_memory_bytes,
    estimate_parameters,
    lora_parameters,
    max_checkpoint_bytes,
    parse_untrusted_json,
)

from .lm_helpers import lm_dataset, lm_spec

LORA = {"rank": 2, "alpha": 4.0, "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]}


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _base(store: LocalStore, dataset: ArtifactRef) -> tuple[ArtifactRef, bytes]:
    model = build_model(lm_spec(dataset).model, 11)
    data = tensors_io.encode(dict(model.named_parameters()))
    return ArtifactRef(hash=store.put(data)), data


def _lora_spec(store: LocalStore, **overrides):
    dataset = lm_dataset(store)
    base, base_bytes = _base(store, dataset)
    spec = lm_spec(dataset, kind="finetune", init_weights=base.model_dump(), lora=LORA, steps=4, segment_steps=2,
                   **overrides)  # fmt: skip
    return spec, base_bytes


def test_lora_trains_only_the_adapters_and_outputs_them_alone(store) -> None:
    spec, base_bytes = _lora_spec(store)
    job = Job(spec, store, "cpu")
    adapters = adapter_parameters(job.model)
    assert sum(p.numel() for p in adapters.values()) == lora_parameters(spec) == 2 * ((16 + 16) + (8 + 16) + (16 + 16) + (24 + 16) + (16 + 24))  # q, v, o, gate, down
    assert set(job.params) == set(adapters) and all(not p.requires_grad for n, p in job.model.named_parameters() if n not in adapters)
    before = job.evaluate("train")["train_loss"]
    result = run_spec(spec, store)
    # every checkpoint holds the adapters and their slots only, and names the base it adapts
    final, _ = tensors_io.decode(store.get(result.state_hashes[-1]), "checkpoint")
    assert {n.split("/", 1)[1].rsplit("/", 1)[0] for n in final} == set(adapters)
    header = parse_untrusted_json(tensors_io.decode(store.get(result.state_hashes[-1]), "c")[1][META_KEY])
    assert header["base_weights"] == spec.init_weights.hash
    # the output is the adapter alone; B moved away from zero, so the adapters were trained
    output = tensors_io.load_weights(store.get(result.output_hash))
    assert set(output) == set(adapters)
    assert all(float(t.abs().sum()) > 0 for n, t in output.items() if n.endswith("lora_B"))
    # the base is bitwise unchanged: a job that loads the output's base still holds the init bytes
    after = Job(spec, store, "cpu")
    after.restore(store.get(result.state_hashes[-1]), spec.num_segments)
    base = {n: p for n, p in after.model.named_parameters() if n not in adapters}
    assert tensors_io.encode(base) == base_bytes
    assert after.evaluate("train")["train_loss"] < before  # and the adapters learned something


def test_a_segment_replays_to_the_same_hash_and_the_base_is_bound(store) -> None:
    spec, _ = _lora_spec(store)
    result = run_spec(spec, store)
    assert replay_segment(spec, store, 1, result.state_hashes[1]) == result.state_hashes[2]
    # the same adapters on another base are another spec: its checkpoint 1 is refused by this one
    other_base = ArtifactRef(hash=store.put(tensors_io.encode(dict(build_model(spec.model, 12).named_parameters()))))
    other = spec.model_copy(update={"init_weights": other_base})
    other_run = run_spec(other, store)
    assert other_run.state_hashes[1] != result.state_hashes[1]
    with pytest.raises(Exception, match="spec"):
        replay_segment(spec, store, 1, other_run.state_hashes[1])


def test_estimates_count_the_adapters_not_the_base(store) -> None:
    spec, _ = _lora_spec(store)
    full = spec.model_copy(update={"lora": None})
    assert max_checkpoint_bytes(spec) < max_checkpoint_bytes(full)
    assert max_checkpoint_bytes(spec) == 4 * lora_parameters(spec) * 3 + max_checkpoint_bytes(full) - 4 * estimate_parameters(full) * 3
    assert estimate_memory_bytes(spec) < estimate_memory_bytes(full)


@pytest.mark.parametrize("change, message", [
    ({"kind": "train", "init_weights": None}, "only for kind finetune"),
    ({"lora": {**LORA, "target_modules": ["q_proj", "q_proj"]}}, "twice"),
    ({"lora": {**LORA, "target_modules": ["lm_head"]}}, "target_modules"),
    ({"lora": {**LORA, "rank": 0}}, "rank"),
])  # fmt: skip
def test_bad_lora_specs_are_refused(store, change, message) -> None:
    spec, _ = _lora_spec(store)
    with pytest.raises(SpecError, match=message):
        lm_spec(spec.dataset, **{**{"kind": "finetune", "init_weights": spec.init_weights.model_dump(), "lora": LORA}, **change})


def test_specs_without_lora_keep_their_hash(store) -> None:
    spec, _ = _lora_spec(store)
    assert b"lora" not in spec.model_copy(update={"lora": None}).canonical_bytes()
    assert b'"lora"' in spec.canonical_bytes()


def test_worker_screening_counts_base_and_adapters(store) -> None:
    from protocol.screening import ScreeningPolicy, term_problems

    spec, _ = _lora_spec(store)
    total = estimate_parameters(spec) + lora_parameters(spec)
    fits, short = ScreeningPolicy(max_parameters=total), ScreeningPolicy(max_parameters=total - 1)
    assert not term_problems(fits, payment=10**18, collateral=0, spec=spec, execution_timeout=10**6)
    assert any("parameters" in p for p in term_problems(short, payment=10**18, collateral=0, spec=spec, execution_timeout=10**6))
