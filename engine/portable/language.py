"""Language-model evaluation and scoring in portable/1 (docs/arithmetic.md, section 6): every value that
reaches a metric or an output is a portable op's result, folded in a stated order.

Training's causal-LM loss is `ops.CausalLMLoss`; generation needs only the model and argmax (exact
comparisons, the first maximal index: torch documents that for `argmax`), so `engine.lm_infer` keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from engine.portable import ops
from engine.portable.rotary_tables import exp as exp64

IGNORE_TARGET = ops.IGNORE_TARGET
MAX_LOG_PERPLEXITY = 700.0  # exp64 stays finite below 709; the native path clamps at the same place


def batch_sums(logits: torch.Tensor, targets: torch.Tensor) -> tuple[list[float], int]:
    """The counted rows' nll in row order (binary32 values as Python floats, exact) and how many of
    them the argmax (lowest index on ties) predicts."""
    rows, wanted = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    counted = wanted != IGNORE_TARGET
    nll = ops.cross_entropy_rows(rows, wanted.clamp(min=0))  # uncounted rows: target 0, then dropped
    right = int(((rows.argmax(dim=-1) == wanted) & counted).sum())
    return nll[counted].cpu().tolist(), right


def lm_metrics(split: str, examples: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Loss (binary64 fold of the counted nll in dataset order, over the token count), perplexity
    (binary64 exp without libm) and next-token accuracy, from (logits, targets) batches in order."""
    total, tokens, right = 0.0, 0, 0
    for logits, targets in batches:
        values, correct = batch_sums(logits, targets)
        for value in values:
            total += value  # binary64, left to right from +0
        tokens, right = tokens + len(values), right + correct
    loss = total / tokens
    return {f"{split}_loss": loss, f"{split}_perplexity": exp64(min(loss, MAX_LOG_PERPLEXITY)),
            f"{split}_accuracy": right / tokens, f"{split}_examples": examples, f"{split}_tokens": tokens}  # fmt: skip


def score(model: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
    """Per row: s = +0, then s = s − nll[t] for t = 1 … T − 1 in order where continuation[t] = 1, with
    nll[t] the cross-entropy row of the logits at t − 1 and target ids[t] (binary32)."""
    logits = model(ids)[:, :-1]
    batch, steps = ids.shape[0], ids.shape[1] - 1
    nll = ops.cross_entropy_rows(logits.reshape(batch * steps, -1), ids[:, 1:].reshape(-1)).reshape(batch, steps)
    total = torch.zeros(batch, dtype=torch.float32, device=ids.device)
    for t in range(steps):
        total = torch.where(continuation[:, t + 1] == 1, total - nll[:, t], total)  # one rounded subtraction
    return total
