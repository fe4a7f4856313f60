"""Token-id datasets and the causal-LM loss (`loss: causal_lm`, docs/spec-format.md "Causal-LM datasets").

A causal-LM dataset is a safetensors file of `train_input_ids` [N, T] int64 with an optional
`train_attention_mask` [N, T] (0/1, 1 = real token), and optionally the held-out pair `test_input_ids`,
`test_attention_mask`. Padding must be trailing (each mask row is 1…1 0…0): with causal attention a
real token then never sees padding, so the mask need not enter the attention at all, and the loss of
a row is the same whatever ids the padding holds. A tokenizer runs outside the job.

Inside the job a split is kept as `x` = the ids and `y` = the next-token targets with IGNORE where
the target is padding, so the step loop, the data order and the checkpoints stay those of every
other dataset.
"""

from __future__ import annotations

import torch

from protocol.errors import EngineError
from protocol.spec import TaskSpec, first_leaf

IGNORE = -1  # target of a position that does not count (its next token is padding, or it is the last)
IDS, MASK = "input_ids", "attention_mask"


def _check_split(spec: TaskSpec, ids: torch.Tensor, mask: torch.Tensor | None, split: str) -> None:
    steps = spec.model.input_shape[0]
    if ids.dtype != torch.int64 or ids.dim() != 2 or ids.shape[1] != steps or ids.shape[0] < 1:
        raise EngineError(f"dataset {split}_{IDS} must be int64 [N, {steps}], got {ids.dtype} {list(ids.shape)}")
    first = first_leaf(spec.model.layers)
    vocab = first.num_embeddings if first.type == "embedding" else None
    if int(ids.min()) < 0 or (vocab is not None and int(ids.max()) >= vocab):
        raise EngineError(f"dataset {split}_{IDS} has token ids outside 0..{(vocab or 0) - 1}")
    if mask is None:
        return
    if mask.dtype != torch.int64 or list(mask.shape) != list(ids.shape):
        raise EngineError(f"dataset {split}_{MASK} must be int64 {list(ids.shape)}, got {mask.dtype} {list(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise EngineError(f"dataset {split}_{MASK} must hold only 0 and 1")
    if bool((mask[:, 1:] > mask[:, :-1]).any()):
        raise EngineError(f"dataset {split}_{MASK}: padding must be trailing (each row 1…1 0…0)")
    if int(mask.sum(dim=1).min()) < 2:
        raise EngineError(f"dataset {split}_{MASK}: every row needs at least 2 real tokens (one target)")


def next_token_targets(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """y[n, t] = ids[n, t + 1] where that token is real, else IGNORE; the last position is IGNORE."""
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = ids[:, 1:]
    if mask is not None:
        targets[:, :-1] = torch.where(mask[:, 1:] == 1, targets[:, :-1], IGNORE)
    return targets


def parse_lm_dataset(spec: TaskSpec, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`train_x`/`train_y` (and `test_x`/`test_y`) from a checked causal-LM dataset."""
    allowed = {f"{split}_{name}" for split in ("train", "test") for name in (IDS, MASK)}
    if f"train_{IDS}" not in tensors or set(tensors) - allowed:
        raise EngineError(f"a causal_lm dataset holds train_{IDS} and optionally train_{MASK}, test_{IDS}, "
                          f"test_{MASK}; found {sorted(tensors)}")  # fmt: skip
    if f"test_{MASK}" in tensors and f"test_{IDS}" not in tensors:
        raise EngineError(f"dataset has test_{MASK} but no test_{IDS}")
    out: dict[str, torch.Tensor] = {}
    for split in ("train", "test"):
        if f"{split}_{IDS}" not in tensors:
            continue
        ids, mask = tensors[f"{split}_{IDS}"], tensors.get(f"{split}_{MASK}")
        _check_split(spec, ids, mask, split)
        out[f"{split}_x"], out[f"{split}_y"] = ids, next_token_targets(ids, mask)
    return out


def causal_lm_sums(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of -log p(target), number of counted positions, number predicted right by argmax)."""
    flat, wanted = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    counted = wanted != IGNORE
    logp = torch.log_softmax(flat, dim=-1)
    picked = logp.gather(1, wanted.clamp(min=0).reshape(-1, 1)).reshape(-1)
    nll = -(picked * counted).sum()  # a multiply, not indexing: the same kernels on every device
    right = ((flat.argmax(dim=-1) == wanted) & counted).sum()
    return nll, counted.sum(), right


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the batch's counted positions (token-weighted)."""
    nll, count, _ = causal_lm_sums(logits, targets)
    return nll / count.clamp(min=1)
