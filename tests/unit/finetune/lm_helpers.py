"""A tiny Llama-style causal-LM spec and token-id datasets for the fine-tuning tests."""

from __future__ import annotations

from typing import Any

import torch

from engine import tensors_io
from protocol.artifacts import ArtifactStore
from protocol.spec import ArtifactRef, TaskSpec, load_spec

D, VOCAB, T = 16, 24, 8


def tiny_llama_model() -> dict[str, Any]:
    return {"input_shape": [T], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": VOCAB, "embedding_dim": D},
        {"type": "decoder_block", "d_model": D, "n_heads": 4, "n_kv_heads": 2, "d_ff": 24},
        {"type": "rmsnorm", "normalized_shape": D},
        {"type": "lm_head", "d_model": D, "vocab_size": VOCAB, "tie_to_embedding": False}]}  # fmt: skip


def padded_ids(rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with trailing padding: row lengths between 2 and T; padding holds id 0."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (rows, T), generator=gen)
    lengths = torch.randint(2, T + 1, (rows,), generator=gen)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).long()
    return ids * mask, mask


def lm_dataset(store: ArtifactStore, rows: int = 16, *, test: bool = True) -> ArtifactRef:
    ids, mask = padded_ids(rows)
    tensors = {"train_input_ids": ids, "train_attention_mask": mask}
    if test:
        test_ids, test_mask = padded_ids(6, seed=1)
        tensors |= {"test_input_ids": test_ids, "test_attention_mask": test_mask}
    return ArtifactRef(hash=store.put(tensors_io.encode(tensors)))


def lm_spec(dataset: ArtifactRef | None, **overrides: Any) -> TaskSpec:
    return load_spec({"version": 1, "kind": "train", "model": tiny_llama_model(),
                      "dataset": None if dataset is None else dataset.model_dump(),
                      "loss": "causal_lm", "optimizer": {"name": "adamw", "lr": 0.01}, "batch_size": 4,
                      "steps": 4, "segment_steps": 2, "device": "cpu", **overrides})  # fmt: skip
