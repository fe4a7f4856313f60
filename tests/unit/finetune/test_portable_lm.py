"""Language-model jobs in portable/1 (docs/arithmetic.md, sections 5b and 6): LoRA's adapted projections
and the causal-LM loss are their written compositions bit for bit, and a LoRA fine-tune, an LM eval and
LM scoring/generation give the same hashes under the NumPy reference, the numba kernels and another
torch kernel ISA (`ATEN_CPU_CAPABILITY` default, avx2 and avx512: the child processes of
tests/unit/portable/test_decoder_models.py run `lm_job_hashes` too)."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine import tensors_io
from engine.api import run_spec
from engine.lm_data import IGNORE, causal_lm_loss
from engine.model import build_model
from engine.portable import ops, reference
from protocol.artifacts import LocalStore
from protocol.spec import ArtifactRef

from .lm_helpers import T, VOCAB, lm_dataset, lm_spec, padded_ids

LORA = {"rank": 2, "alpha": 3.0, "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().numpy().tobytes()


def test_an_adapted_projection_is_its_written_composition_bit_for_bit() -> None:
    """y = linear(x, W, b) + linear(linear(x, A_cat) split, B_i) × scale on the targets' slices; the frozen
    base gets no gradient; dx = dx_base + dx_A (here autograd adds the two contributions once)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, generator=gen, requires_grad=True)
    w, b = torch.randn(7, 6, generator=gen), torch.randn(7, generator=gen)
    a1, b1 = torch.randn(2, 6, generator=gen, requires_grad=True), torch.randn(3, 2, generator=gen, requires_grad=True)
    a2, b2 = torch.randn(2, 6, generator=gen, requires_grad=True), torch.randn(2, 2, generator=gen, requires_grad=True)
    scale, dy = float(np.float32(1.5)), torch.randn(2, 3, 7, generator=gen)
    y = ops.AdaptedLinear.apply(x, w, b, scale, ((0, 3), (5, 7)), a1, b1, a2, b2)
    got = torch.autograd.grad(y, [x, a1, b1, a2, b2], dy)
    base = ops.Linear.apply(x, w, b)
    h1, h2 = ops.Linear.apply(x, torch.cat([a1, a2]), None).split([2, 2], dim=-1)
    u1, u2 = ops.Linear.apply(h1.contiguous(), b1, None) * scale, ops.Linear.apply(h2.contiguous(), b2, None) * scale
    composed = torch.cat([base[..., 0:3] + u1, base[..., 3:5], base[..., 5:7] + u2], dim=-1)
    want = torch.autograd.grad(composed, [x, a1, b1, a2, b2], dy)
    assert _bits(y) == _bits(composed)
    assert [_bits(g) for g in got] == [_bits(g) for g in want]


def test_the_causal_lm_loss_is_cross_entropy_of_the_counted_rows() -> None:
    gen = torch.Generator().manual_seed(5)
    logits = (torch.randn(3, T, VOCAB, generator=gen) * 4).requires_grad_()
    ids, mask = padded_ids(3, seed=2)
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = torch.where(mask[:, 1:] == 1, ids[:, 1:], IGNORE)
    loss = ops.loss("causal_lm", logits, targets)
    (grad,) = torch.autograd.grad(loss, [logits])
    rows, wanted = logits.detach().reshape(-1, VOCAB).numpy(), targets.reshape(-1).numpy()
    counted = wanted != IGNORE
    assert np.float32(loss.item()).tobytes() == reference.cross_entropy(rows[counted], wanted[counted]).tobytes()
    flat = grad.reshape(-1, VOCAB).numpy()
    assert flat[counted].tobytes() == reference.cross_entropy_backward(rows[counted], wanted[counted], np.float32(1)).tobytes()
    assert not flat[~counted].view(np.uint32).any()  # +0 exactly on the rows that do not count
    assert abs(loss.item() - causal_lm_loss(logits.detach(), targets).item()) < 1e-5  # the native loss's value


def lm_job_hashes(root: str) -> dict[str, Any]:
    """Checkpoint and output hashes of a portable LoRA fine-tune, an LM eval (of the base, and of the base
    plus the trained adapter) and LM scoring and generation (tiny Llama-style model), under whatever backend TESSERA_PORTABLE_BACKEND selects."""
    store = LocalStore(Path(root) / "store")
    dataset = lm_dataset(store)
    # the base from portable/1's own initialisation: torch's native random fills differ between kernel ISAs
    base_model = build_model(lm_spec(dataset).model, 11, arithmetic="portable/1")
    base = ArtifactRef(hash=store.put(tensors_io.encode(dict(base_model.named_parameters()))))
    common = {"arithmetic": "portable/1", "init_weights": base.model_dump()}
    lora = run_spec(lm_spec(dataset, kind="finetune", lora=LORA, steps=2, segment_steps=1, **common), store)
    evaluated = run_spec(lm_spec(dataset, kind="eval", optimizer=None, steps=0, segment_steps=1, **common), store)
    adapter = {"hash": lora.output_hash}  # eval of the base plus the adapter just trained
    adapted = run_spec(lm_spec(dataset, kind="eval", optimizer=None, steps=0, segment_steps=1, lora=LORA, adapter=adapter,
                               **common), store)  # fmt: skip
    ids, mask = padded_ids(4, seed=7)
    cont = torch.zeros_like(ids)
    cont[:, 2:5] = 1
    prompt = (torch.arange(T).unsqueeze(0) < torch.tensor([[2], [3], [1], [4]])).long()
    runs = {"lora": lora, "eval": evaluated, "adapter_eval": adapted}
    for mode, inputs in (("score", {"input_ids": ids, "continuation_mask": cont}),
                         ("generate", {"input_ids": ids, "attention_mask": prompt})):  # fmt: skip
        lm_infer = {"mode": mode} | ({"max_new_tokens": 3} if mode == "generate" else {})
        spec = lm_spec(None, kind="infer", optimizer=None, steps=0, segment_steps=1, batch_size=3, loss="cross_entropy",
                       inputs={"hash": store.put(tensors_io.encode(inputs))}, lm_infer=lm_infer, **common)  # fmt: skip
        runs[mode] = run_spec(spec, store)
    out = {name: [run.state_hashes, run.output_hash] for name, run in runs.items()}
    out["metrics"] = store.get(evaluated.output_hash).decode()
    return out


@functools.lru_cache(maxsize=1)
def lm_job_hashes_once() -> dict[str, Any]:
    """lm_job_hashes under this process's backend, computed once (also for the kernel-ISA children of
    tests/unit/portable/test_decoder_models.py, which compare their runs under ATEN_CPU_CAPABILITY
    default, avx2 and avx512 with this process's: one child process each instead of one more)."""
    with tempfile.TemporaryDirectory() as root:
        return lm_job_hashes(root)


@pytest.fixture(scope="module")
def fast_hashes() -> dict[str, Any]:
    return lm_job_hashes_once()


def test_lm_jobs_give_the_reference_backends_hashes(fast_hashes, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(ops.BACKEND_ENV, "reference")
    assert lm_job_hashes(str(tmp_path)) == fast_hashes
    assert len(set(fast_hashes["lora"][0])) == 3  # every step moved the adapters
    metrics = json.loads(fast_hashes["metrics"])
    assert metrics["test_tokens"] > 0 and 0 <= metrics["test_accuracy"] <= 1


def test_a_frozen_linear_gives_the_same_input_gradient_without_its_weight_gradient() -> None:
    gen = torch.Generator().manual_seed(8)
    x, w, dy = torch.randn(3, 4, 6, generator=gen), torch.randn(5, 6, generator=gen), torch.randn(3, 4, 5, generator=gen)
    grads = []
    for frozen in (True, False):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_(not frozen)
        ops.Linear.apply(xi, wi, None).backward(dy)
        grads.append(_bits(xi.grad))
        assert (wi.grad is None) == frozen
    assert grads[0] == grads[1]


def test_a_causal_lm_step_record_has_one_skeleton_whatever_rows_a_batch_counts(tmp_path) -> None:
    """The causal-LM loss counts a different number of rows in each batch. Its record holds it as one
    `causal_lm` entry and one `causal_lm_backward` entry over every row, so the skeleton (which every state
    header binds from step 0) is the same at every step and the record is complete; recording changes no
    bit. (Recorded as the calls inside, the skeleton changed with the counted rows: an honest worker could
    not build its dispute kit at such a step, and a challenger steering there won on the clock.)"""
    from engine.api import record_first_steps, replay_step_bytes

    store = LocalStore(tmp_path)
    spec = lm_spec(lm_dataset(store), arithmetic="portable/1")
    states, records, _ = record_first_steps(spec, store, 3)
    counted = []
    for step, rec in enumerate(records):
        assert rec.complete and replay_step_bytes(spec, store, step, states[step])[1] == states[step + 1]
        kernels = [e.kernel for e in rec.entries]
        assert kernels.count("causal_lm") == kernels.count("causal_lm_backward") == 1
        assert "cross_entropy" not in kernels and "cross_entropy_backward" not in kernels
        targets = rec.value_of(rec.entries[kernels.index("causal_lm")].inputs[1])
        counted.append(int((targets != IGNORE).sum()))
    assert len(set(counted)) > 1  # the batches count different rows
    assert len({rec.skeleton_root() for rec in records}) == 1 and len({len(rec.entries) for rec in records}) == 1
