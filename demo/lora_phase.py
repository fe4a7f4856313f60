"""The demo's language-model phase: an imported Llama-style checkpoint fine-tuned with LoRA through the network.

Everything is made offline and deterministically, without `transformers`:

1. `write_tiny_llama_checkpoint` draws a tiny random Llama-style model (grouped-query attention, SwiGLU,
   RMSNorm, rotary positions) with the engine's own initialiser and writes it in the Hugging Face
   `save_pretrained` layout with our exporter (`protocol.hf_import.export_hf`), as a user's checkpoint;
2. the demo imports it with `tessera model import` like any checkpoint (its `init_weights` is the base
   model's hash) and registers the base as Declared (nobody's job produced it);
3. `lora_spec` is a `finetune` job with `lora` over `token_dataset` (counting sequences with trailing
   padding), posted to the network; the honest worker runs it, and once it is Finalized the adapter is
   registered JobVerified with relation `adapter` and the base as parent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A Llama in miniature: every feature the importer maps (GQA: 4 query heads over 2 key/value heads).
TINY_LLAMA = {"vocab": 48, "d_model": 32, "layers": 2, "heads": 4, "kv_heads": 2, "d_ff": 64, "seq_len": 16}
LORA = {"rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj", "o_proj"]}
DATASET_ROWS = 32
DATASET_DESCRIPTION = f"{DATASET_ROWS} counting sequences of token ids (trailing padding)"


def tiny_llama_model() -> Any:
    """The model section of the tiny Llama (what `tessera model import` makes of its config.json)."""
    from protocol.spec import ModelSpec

    size = TINY_LLAMA
    return ModelSpec.model_validate({"input_shape": [size["seq_len"]], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": size["vocab"], "embedding_dim": size["d_model"]},
        *[{"type": "decoder_block", "d_model": size["d_model"], "n_heads": size["heads"], "n_kv_heads": size["kv_heads"],
           "d_ff": size["d_ff"], "norm_eps": 1e-6}] * size["layers"],
        {"type": "rmsnorm", "normalized_shape": size["d_model"]},
        {"type": "lm_head", "d_model": size["d_model"], "vocab_size": size["vocab"], "tie_to_embedding": False}]})  # fmt: skip


def write_tiny_llama_checkpoint(directory: Path, seed: int = 13) -> str:
    """A random tiny Llama in the `save_pretrained` layout (config.json + model.safetensors); returns the
    architecture written."""
    from engine.model import build_model
    from protocol.hf_import import export_hf

    model = tiny_llama_model()
    weights = {name: param.detach().numpy() for name, param in build_model(model, seed).named_parameters()}
    return export_hf(model, weights, directory)


def token_dataset() -> bytes:
    """Counting sequences (row r: r, r+s, r+2s, … mod vocab for a step s of 1 to 3) of 6 to 16 tokens with
    trailing padding: a causal-LM dataset (safetensors of token ids and attention mask) the same every run."""
    import torch

    from engine import tensors_io

    vocab, length = TINY_LLAMA["vocab"], TINY_LLAMA["seq_len"]
    rows = torch.arange(DATASET_ROWS).unsqueeze(1)
    ids = (rows + (rows % 3 + 1) * torch.arange(length).unsqueeze(0)) % vocab
    lengths = 6 + (rows * 7) % (length - 5)
    mask = (torch.arange(length).unsqueeze(0) < lengths).long()
    return tensors_io.encode({"train_input_ids": ids * mask, "train_attention_mask": mask})


def lora_spec(fragment_path: Path, dataset: dict[str, Any]) -> Any:
    """A `finetune` + `lora` job on the imported base (the fragment's model section and init_weights)."""
    from protocol.spec import load_spec

    fragment = json.loads(fragment_path.read_text())
    return load_spec({
        "version": 1, "kind": "finetune", "name": "tiny-llama-lora", "model": fragment["model"],
        "init_weights": fragment["init_weights"], "dataset": dataset, "lora": LORA, "loss": "causal_lm",
        "optimizer": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0}, "batch_size": 8, "steps": 8,
        "segment_steps": 4, "seed": 5, "device": "cpu",
    })  # fmt: skip
