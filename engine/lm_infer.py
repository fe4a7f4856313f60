"""Language-model inference (`kind: infer` with `lm_infer`): continuation scoring and greedy generation.

Inputs are safetensors of token ids; outputs are float32 rows, as every infer job's `out/y`:
a score per row, or the generated ids (exact in float32 below 2²⁴; the output artifact holds them as
int64). With trailing padding and causal attention, the logits at a position depend only on the
tokens up to it, so each batch runs at the model's fixed length T and the padding never matters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from protocol.errors import EngineError
from protocol.spec import TaskSpec, first_leaf


def _check_ids(spec: TaskSpec, ids: torch.Tensor) -> None:
    steps = spec.model.input_shape[0]
    if ids.dtype != torch.int64 or ids.dim() != 2 or ids.shape[1] != steps or ids.shape[0] < 1:
        raise EngineError(f"inputs input_ids must be int64 [N, {steps}], got {ids.dtype} {list(ids.shape)}")
    first = first_leaf(spec.model.layers)
    vocab = first.num_embeddings if first.type == "embedding" else None
    if int(ids.min()) < 0 or (vocab is not None and int(ids.max()) >= vocab):
        raise EngineError(f"inputs input_ids has token ids outside 0..{(vocab or 0) - 1}")


def _check_mask(ids: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
    if mask is None or mask.dtype != torch.int64 or mask.shape != ids.shape:
        raise EngineError(f"inputs {name} must be int64 {list(ids.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise EngineError(f"inputs {name} must hold only 0 and 1")
    return mask


def parse_lm_inputs(spec: TaskSpec, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checked inputs of an lm_infer job: `input_ids` and `continuation_mask` or `attention_mask`."""
    assert spec.lm_infer is not None
    name = "continuation_mask" if spec.lm_infer.mode == "score" else "attention_mask"
    if set(tensors) != {"input_ids", name}:
        raise EngineError(f"lm_infer {spec.lm_infer.mode} inputs hold input_ids and {name}, found {sorted(tensors)}")
    ids = tensors["input_ids"]
    _check_ids(spec, ids)
    mask = _check_mask(ids, tensors[name], name)
    if name == "continuation_mask":
        if bool((mask[:, 0] == 1).any()) or bool((mask.sum(dim=1) == 0).any()):
            raise EngineError("inputs continuation_mask: position 0 has no context, and each row needs a continuation")
    else:
        lengths = mask.sum(dim=1)
        if bool((mask[:, 1:] > mask[:, :-1]).any()) or bool((lengths == 0).any()):
            raise EngineError("inputs attention_mask: each prompt is 1…1 0…0 with at least one token")
        room = ids.shape[1] - int(lengths.max())
        if room < (spec.lm_infer.max_new_tokens or 0):
            raise EngineError(f"inputs: the longest prompt leaves {room} positions, max_new_tokens is {spec.lm_infer.max_new_tokens}")
    return {"input_ids": ids, name: mask}


def score(model: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
    """Per row: Σ_t continuation[t] · log_softmax(logits[t − 1])[ids[t]] (float32, summed in order t)."""
    logp = torch.log_softmax(model(ids)[:, :-1].float(), dim=-1)
    picked = logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (picked * continuation[:, 1:]).sum(dim=1)


def generate(model: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, prompt: torch.Tensor,
             new_tokens: int) -> torch.Tensor:  # fmt: skip
    """[N, new_tokens] greedy continuation: token k of row n is the argmax (lowest id on ties) of the
    logits at position len_n − 1 + k, written at position len_n + k before the next model call."""
    window = ids * prompt  # the padding's ids are irrelevant; zero them so the bytes do not matter either
    lengths = prompt.sum(dim=1)
    rows = torch.arange(ids.shape[0], device=ids.device)
    out = torch.empty(ids.shape[0], new_tokens, dtype=torch.int64, device=ids.device)
    for k in range(new_tokens):
        logits = model(window)[rows, lengths - 1 + k]
        best = logits.argmax(dim=-1)  # torch returns the first maximal index
        out[:, k] = best
        window = window.clone()
        window[rows, lengths + k] = best
    return out


def run(spec: TaskSpec, model: Callable[[torch.Tensor], torch.Tensor], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The outputs `out/y` of an lm_infer job, in batches of `batch_size`."""
    assert spec.lm_infer is not None
    ids, chunks = inputs["input_ids"], []
    scorer = score
    if spec.arithmetic != "native":  # docs/arithmetic.md, section 6, "Scoring"
        from engine.portable.language import score as scorer  # type: ignore[no-redef]
    for begin in range(0, ids.shape[0], spec.batch_size):
        part = slice(begin, begin + spec.batch_size)
        if spec.lm_infer.mode == "score":
            chunks.append(scorer(model, ids[part], inputs["continuation_mask"][part]))
        else:
            chunks.append(generate(model, ids[part], inputs["attention_mask"][part], spec.lm_infer.max_new_tokens or 0).float())
    return torch.cat(chunks)
