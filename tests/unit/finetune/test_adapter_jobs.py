"""eval/infer of a base plus a LoRA adapter (`init_weights` + `lora` + `adapter`, both bound by hash):
native infer equals infer of the merged weights within 1e-5, the output is bound to the final
checkpoint, the header names the adapter, and specs or adapters that do not fit are refused."""

from __future__ import annotations

import pytest
import torch

from engine import tensors_io
from engine.api import extract_output, run_spec
from engine.lora import apply_lora
from engine.model import build_model
from engine.training import META_KEY, Job
from protocol.artifacts import LocalStore
from protocol.errors import EngineError, SpecError
from protocol.spec import ArtifactRef, LoRA, ModelSpec, parse_untrusted_json

from .lm_helpers import T, VOCAB, lm_dataset, lm_spec, tiny_llama_model

LORA = {"rank": 2, "alpha": 6.0, "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
MERGED_TOLERANCE = 1e-5  # max |logit difference|: W x + s·B(A x) against (W + s·B A) x, float32 on CPU


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _base_and_adapter(store: LocalStore):
    """A base model and a random (non-zero B) adapter for it, both stored."""
    model = build_model(ModelSpec.model_validate(tiny_llama_model()), 5)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapters = apply_lora(model, LoRA.model_validate(LORA), 9)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for param in adapters.values():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    adapter = {n: p.detach().clone() for n, p in adapters.items()}
    return base, adapter, model


def _merged(base: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """W + (alpha / rank) · B A, in float64 then rounded once (what PEFT's merge computes)."""
    merged = dict(base)
    scale = LORA["alpha"] / LORA["rank"]
    for name in adapter:
        if name.endswith(".lora_A"):
            stem = name[: -len(".lora_A")]
            delta = adapter[f"{stem}.lora_B"].double() @ adapter[name].double()
            merged[f"{stem}.weight"] = (base[f"{stem}.weight"].double() + scale * delta).float()
    return merged


def _infer(store: LocalStore, weights: dict[str, torch.Tensor], ids: torch.Tensor, **extra):
    spec = lm_spec(None, kind="infer", optimizer=None, steps=0, segment_steps=1, batch_size=3, loss="cross_entropy",
                   init_weights={"hash": store.put(tensors_io.encode(weights))},
                   inputs={"hash": store.put(tensors_io.encode({"x": ids}))}, **extra)  # fmt: skip
    result = run_spec(spec, store)
    return spec, result, tensors_io.decode(store.get(result.output_hash), "out")[0]["y"]


def test_base_plus_adapter_infer_equals_infer_of_the_merged_weights(store) -> None:
    base, adapter, _ = _base_and_adapter(store)
    ids = torch.randint(0, VOCAB, (5, T), generator=torch.Generator().manual_seed(1))
    adapter_ref = {"hash": store.put(tensors_io.encode(adapter))}
    spec, result, adapted = _infer(store, base, ids, lora=LORA, adapter=adapter_ref)
    _, _, merged = _infer(store, _merged(base, adapter), ids)
    _, _, plain = _infer(store, base, ids)
    assert float((adapted - merged).abs().max()) <= MERGED_TOLERANCE
    assert float((adapted - plain).abs().max()) > 100 * MERGED_TOLERANCE  # the adapter does change the logits
    # the output is a function of the final checkpoint, which holds the adapter and names it
    final = store.get(result.state_hashes[-1])
    assert extract_output(spec, store, final) == store.get(result.output_hash)
    tensors, metadata = tensors_io.decode(final, "checkpoint")
    assert {n for n in tensors if n.startswith("param/")} == {f"param/{n}" for n in adapter}
    header = parse_untrusted_json(metadata[META_KEY])
    assert header["adapter"] == adapter_ref["hash"] and header["base_weights"] == spec.init_weights.hash


def test_portable_eval_of_base_plus_adapter_runs_and_binds_both(store) -> None:
    base, adapter, _ = _base_and_adapter(store)
    dataset = lm_dataset(store)
    spec = lm_spec(dataset, kind="eval", optimizer=None, steps=0, segment_steps=1, arithmetic="portable/1",
                   init_weights={"hash": store.put(tensors_io.encode(base))}, lora=LORA,
                   adapter={"hash": store.put(tensors_io.encode(adapter))})  # fmt: skip
    with_adapter = run_spec(spec, store)
    other = {n: t * 0.5 for n, t in adapter.items()}
    changed = run_spec(spec.model_copy(update={"adapter": ArtifactRef(hash=store.put(tensors_io.encode(other)))}), store)
    assert with_adapter.state_hashes[0] != changed.state_hashes[0] and with_adapter.output_hash != changed.output_hash


@pytest.mark.parametrize("change, message", [
    ({"adapter": None}, "adapter: required with lora"),
    ({"lora": None}, "adapter: only for kind eval or infer with lora"),
])  # fmt: skip
def test_specs_that_do_not_pair_lora_and_adapter_are_refused(store, change, message) -> None:
    fields = {"kind": "eval", "optimizer": None, "steps": 0, "segment_steps": 1, "init_weights": {"hash": "0x" + "1" * 64},
              "lora": LORA, "adapter": {"hash": "0x" + "2" * 64}}  # fmt: skip
    with pytest.raises(SpecError, match=message):
        lm_spec(lm_dataset(store), **{**fields, **change})
    with pytest.raises(SpecError, match="adapter: only for kind eval or infer"):
        lm_spec(lm_dataset(store), kind="finetune", init_weights=fields["init_weights"], lora=LORA, adapter=fields["adapter"])
    assert b"adapter" not in lm_spec(lm_dataset(store)).canonical_bytes()  # old specs keep their hash


def test_an_adapter_that_does_not_fit_the_lora_is_refused(store) -> None:
    base, adapter, _ = _base_and_adapter(store)
    dataset = lm_dataset(store)
    fields = {"kind": "eval", "optimizer": None, "steps": 0, "segment_steps": 1,
              "init_weights": {"hash": store.put(tensors_io.encode(base))}, "lora": LORA}  # fmt: skip
    short = dict(list(adapter.items())[:-1])
    with pytest.raises(EngineError, match="adapter does not fit"):
        Job(lm_spec(dataset, **fields, adapter={"hash": store.put(tensors_io.encode(short))}), store, "cpu")
    wide = {n: torch.zeros(t.shape[0], t.shape[1] + 1) if n.endswith("lora_A") else t for n, t in adapter.items()}
    with pytest.raises(EngineError, match="lora wants float32"):
        Job(lm_spec(dataset, **fields, adapter={"hash": store.put(tensors_io.encode(wide))}), store, "cpu")
