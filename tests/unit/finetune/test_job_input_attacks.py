"""Attack probes of LM job inputs that found the engine sound (kept so it stays so): an adapter with an extra
tensor or a NaN, negative token ids, and a LoRA checkpoint replayed under a spec with another base."""

from __future__ import annotations

import pytest
import torch

from engine import tensors_io
from engine.training import Job
from protocol.artifacts import LocalStore
from protocol.errors import CheckpointError, EngineError

from .lm_helpers import T, lm_dataset, lm_spec
from .test_adapter_jobs import LORA, _base_and_adapter


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_an_adapter_with_an_extra_tensor_or_a_nan_is_refused(store) -> None:
    base, adapter, _ = _base_and_adapter(store)
    fields = {"kind": "eval", "optimizer": None, "steps": 0, "segment_steps": 1,
              "init_weights": {"hash": store.put(tensors_io.encode(base))}, "lora": LORA}  # fmt: skip
    dataset = lm_dataset(store)
    extra = {**adapter, "layers.1.q_proj.lora_C": torch.zeros(2, 2)}
    with pytest.raises(EngineError, match="unexpected.*lora_C"):
        Job(lm_spec(dataset, **fields, adapter={"hash": store.put(tensors_io.encode(extra))}), store, "cpu")
    poisoned = dict(adapter)
    name = next(iter(poisoned))
    poisoned[name] = poisoned[name].clone()
    poisoned[name][0, 0] = float("nan")
    with pytest.raises(EngineError, match="NaN or infinite"):
        Job(lm_spec(dataset, **fields, adapter={"hash": store.put(tensors_io.encode(poisoned))}), store, "cpu")


def test_negative_token_ids_are_refused(store) -> None:
    ids = torch.ones(4, T, dtype=torch.int64)
    ids[2, 3] = -1
    with pytest.raises(EngineError, match="token ids outside"):
        Job(lm_spec(type(lm_dataset(store))(hash=store.put(tensors_io.encode({"train_input_ids": ids})))), store, "cpu")


def test_a_lora_checkpoint_does_not_restore_under_a_spec_with_another_base(store) -> None:
    base, _, _ = _base_and_adapter(store)
    other = {name: tensor + 1 for name, tensor in base.items()}
    dataset = lm_dataset(store)
    fields = {"kind": "finetune", "lora": LORA, "steps": 2, "segment_steps": 1}
    job = Job(lm_spec(dataset, **fields, init_weights={"hash": store.put(tensors_io.encode(base))}), store, "cpu")
    state = job.checkpoint(0)
    swapped = Job(lm_spec(dataset, **fields, init_weights={"hash": store.put(tensors_io.encode(other))}), store, "cpu")
    with pytest.raises(CheckpointError, match="it is for spec"):
        swapped.restore(state, 0)
