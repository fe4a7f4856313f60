"""The adapter in PEFT's layout: names and config as PEFT documents them, and applying the exported
A/B to the transformers model (merged as PEFT's forward computes W + (alpha/r)·B·A) reproduces the
engine's LoRA logits. peft itself is not a dependency."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from engine.lora import apply_lora  # noqa: E402
from engine.model import build_model  # noqa: E402
from protocol.errors import SpecError  # noqa: E402
from protocol.hf_import import import_hf  # noqa: E402
from protocol.hf_weights import read_safetensors_float32  # noqa: E402
from protocol.peft_export import export_peft  # noqa: E402
from protocol.spec import load_spec  # noqa: E402

SEQ, VOCAB = 8, 29
TOLERANCE = 1e-5
PEFT_NAME = re.compile(r"base_model\.model\.model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.lora_[AB]\.weight")


def _lora_spec(model, lora):
    return load_spec({"version": 1, "kind": "finetune", "model": model.model_dump(mode="json"), "loss": "causal_lm",
                      "dataset": {"hash": "0x" + "1" * 64}, "init_weights": {"hash": "0x" + "2" * 64},
                      "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 1, "lora": lora})  # fmt: skip


def test_exported_adapter_reproduces_the_engine_logits_in_transformers(tmp_path) -> None:
    torch.manual_seed(5)
    reference = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32)).eval()  # fmt: skip
    reference.save_pretrained(tmp_path / "base")
    imported = import_hf(tmp_path / "base", seq_len=SEQ)
    lora = {"rank": 3, "alpha": 6, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    spec = _lora_spec(imported.model, lora)
    engine = build_model(spec.model, 0)
    with torch.no_grad():
        for name, param in engine.named_parameters():
            param.copy_(torch.from_numpy(imported.weights[name]))
    adapters = apply_lora(engine, spec.lora, 1)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a trained-looking adapter: B away from zero
        for name, param in adapters.items():
            if name.endswith("lora_B"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=gen)
    with torch.no_grad():
        ours = engine.eval()(ids)

    written = export_peft(spec, {n: p.detach().numpy() for n, p in adapters.items()}, tmp_path / "adapter", "tiny-llama")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 3 and config["lora_alpha"] == 6
    assert config["target_modules"] == sorted(lora["target_modules"]) and config["task_type"] == "CAUSAL_LM"
    tensors = read_safetensors_float32(tmp_path / "adapter" / "adapter_model.safetensors")
    assert sorted(tensors) == written and len(written) == 2 * 7 * 2 and all(PEFT_NAME.fullmatch(n) for n in written)
    assert "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight" in tensors

    with torch.no_grad():
        base_logits = reference(ids).logits
    state = reference.state_dict()
    with torch.no_grad():
        for name in tensors:
            if ".lora_A." in name:
                target = name.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
                a = torch.from_numpy(tensors[name])
                b = torch.from_numpy(tensors[name.replace(".lora_A.", ".lora_B.")])
                state[target] += (config["lora_alpha"] / config["r"]) * (b @ a)
    reference.load_state_dict(state)
    with torch.no_grad():
        theirs = reference(ids).logits
    assert float((ours - theirs).abs().max()) < TOLERANCE
    assert float((ours - base_logits).abs().max()) > 100 * TOLERANCE  # the adapter really changes the model


def test_peft_export_refuses_adapters_that_do_not_fit(tmp_path) -> None:
    torch.manual_seed(6)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=24,
                                  num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=32)).save_pretrained(tmp_path / "b")  # fmt: skip
    spec = _lora_spec(import_hf(tmp_path / "b", seq_len=SEQ).model, {"rank": 2, "alpha": 2, "target_modules": ["q_proj"]})
    with pytest.raises(SpecError, match="missing"):
        export_peft(spec, {}, tmp_path / "out")
    wrong = {"layers.1.q_proj.lora_A": np.zeros((3, 16), np.float32), "layers.1.q_proj.lora_B": np.zeros((16, 2), np.float32)}
    with pytest.raises(SpecError, match="shape"):
        export_peft(spec, wrong, tmp_path / "out")
