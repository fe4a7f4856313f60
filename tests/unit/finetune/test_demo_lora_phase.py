"""The demo's LoRA phase builds its inputs offline (tests/e2e/test_demo.py runs it through the network):
the tiny checkpoint is a Llama layout our importer reads back to the same weights, and the token dataset
and the LoRA spec are valid and the same bytes every run."""

from __future__ import annotations

import json

import numpy as np

from demo.lora_phase import TINY_LLAMA, lora_spec, token_dataset, write_tiny_llama_checkpoint
from engine import tensors_io
from engine.lm_data import IGNORE, parse_lm_dataset
from protocol.artifacts import LocalStore
from protocol.hf_import import encode_float32, import_hf


def test_the_checkpoint_imports_as_a_grouped_query_llama_and_the_job_spec_is_valid(tmp_path) -> None:
    assert write_tiny_llama_checkpoint(tmp_path / "ckpt") == "LlamaForCausalLM"
    config = json.loads((tmp_path / "ckpt/config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (TINY_LLAMA["heads"], TINY_LLAMA["kv_heads"])
    imported = import_hf(tmp_path / "ckpt")
    assert imported.architecture == "LlamaForCausalLM"
    write_tiny_llama_checkpoint(tmp_path / "again")  # the same seed: the same base model hash every run
    assert import_hf(tmp_path / "again").weights_bytes() == imported.weights_bytes()
    assert not all(np.all(w == 0) for w in imported.weights.values())
    store = LocalStore(tmp_path / "store")
    base = store.put(encode_float32(imported.weights))
    fragment = tmp_path / "fragment.json"
    fragment.write_text(json.dumps({"model": imported.model.model_dump(mode="json"),
                                    "init_weights": {"hash": base, "uris": [store.uri]}}))
    data = token_dataset()
    assert data == token_dataset()
    spec = lora_spec(fragment, {"hash": store.put(data), "uris": [store.uri]})
    assert (spec.kind, spec.init_weights.hash, spec.loss) == ("finetune", base, "causal_lm") and spec.lora is not None
    parsed = parse_lm_dataset(spec, tensors_io.decode(data)[0])  # the engine's own checks: trailing padding, ids
    counted = (parsed["train_y"] != IGNORE).sum(dim=1)
    assert int(counted.min()) >= 5 and int(counted.max()) == TINY_LLAMA["seq_len"] - 1
