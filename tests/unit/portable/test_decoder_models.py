"""Decoder models (docs/arithmetic.md, section 5a) trained a few steps in portable/1: the same bits
under the NumPy reference, the numba kernels and another torch kernel ISA, and the same function as
the native layers (rotary, grouped-query attention, SwiGLU, RMSNorm, tied head; GPT-2's GELU-tanh,
layer norm, biases and untied head)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.model import build_model
from engine.portable import ops
from protocol.spec import ModelSpec
from tests.support.cpu import runnable

ROOT = Path(__file__).resolve().parents[3]
VOCAB, D, T = 13, 8, 5

LLAMA = {"input_shape": [T], "input_dtype": "int64", "layers": [
    {"type": "embedding", "num_embeddings": VOCAB, "embedding_dim": D},
    {"type": "decoder_block", "d_model": D, "n_heads": 2, "n_kv_heads": 1, "head_dim": 4, "d_ff": 12, "rope_theta": 500.0,
     "dropout": 0.2},
    {"type": "rmsnorm", "normalized_shape": D},
    {"type": "lm_head", "d_model": D, "vocab_size": VOCAB, "tie_to_embedding": True}]}  # fmt: skip
GPT2 = {"input_shape": [T], "input_dtype": "int64", "layers": [
    {"type": "embedding", "num_embeddings": VOCAB, "embedding_dim": D},
    {"type": "positional_embedding", "max_len": T, "embedding_dim": D},
    {"type": "decoder_block", "d_model": D, "n_heads": 2, "d_ff": 12, "norm": "layernorm", "mlp": "gelu_tanh",
     "positions": "none", "qkv_bias": True, "out_bias": True, "mlp_bias": True},
    {"type": "layernorm", "normalized_shape": D},
    {"type": "lm_head", "d_model": D, "vocab_size": VOCAB, "bias": True}]}  # fmt: skip
MODELS = {"llama": LLAMA, "gpt2": GPT2}
SGD = {"weight_decay": np.float32(0.0), "momentum": np.float32(0.0), "lr": np.float32(0.5)}


def train_hashes(model: dict[str, Any], steps: int = 3, device: str = "cpu") -> list[str]:
    """sha256 of every parameter after each of `steps` portable SGD steps on fixed token ids (and of
    the losses), under whatever backend TESSERA_PORTABLE_BACKEND selects for `device`."""
    net = build_model(ModelSpec.model_validate(model), 7, arithmetic="portable/1").to(device)
    ids = torch.from_numpy(np.arange(2 * (T + 1), dtype=np.int64).reshape(2, T + 1) * 5 % VOCAB).to(device)
    impl = ops.backend(torch.device(device))
    hashes = []
    for step in range(steps):
        net.source.start_step(lambda call, step=step: 1_000 * step + call)  # dropout's keys, as the trainer sets them
        net.zero_grad()
        loss = ops.loss("cross_entropy", net(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        digest = hashlib.sha256(np.float32(loss.item()).tobytes())
        for _, param in net.named_parameters():
            if ops.takes_tensors(impl):  # the Triton backend updates device tensors in place
                impl.sgd(param.data, param.grad, None, SGD, False)
            else:
                impl.sgd(param.detach().numpy(), param.grad.numpy(), None, SGD, False)
            digest.update(ops.host_array(param).tobytes())
        hashes.append(digest.hexdigest())
    return hashes


CHILD = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
from tests.unit.portable.test_decoder_models import MODELS, train_hashes
from tests.unit.finetune.test_portable_lm import lm_job_hashes_once
print("RESULT " + json.dumps({**{name: train_hashes(model) for name, model in MODELS.items()},
                              "lm_jobs": lm_job_hashes_once()}))
"""


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_and_numba_backends_train_to_the_same_bits(name, monkeypatch) -> None:
    monkeypatch.setenv(ops.BACKEND_ENV, "reference")
    slow = train_hashes(MODELS[name])
    monkeypatch.setenv(ops.BACKEND_ENV, "cpu")
    assert train_hashes(MODELS[name]) == slow
    assert len(set(slow)) == len(slow)  # every step changed the weights


@pytest.mark.parametrize(("capability", "threads"), [("default", 1), ("avx2", 2), ("avx512", 4)])
def test_every_torch_kernel_isa_and_thread_count_trains_to_the_same_bits(capability, threads) -> None:
    # a kernel set this CPU lacks is replaced by its highest (the thread count still differs)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATEN_CPU_CAPABILITY": runnable(capability), ops.BACKEND_ENV: "cpu"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    other = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
    from tests.unit.finetune.test_portable_lm import lm_job_hashes_once  # LoRA, LM eval and infer jobs too

    assert other == {**{name: train_hashes(model) for name, model in MODELS.items()}, "lm_jobs": lm_job_hashes_once()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_portable_layers_compute_what_the_native_layers_compute(name) -> None:
    spec = ModelSpec.model_validate(MODELS[name])
    portable, native = build_model(spec, 7, arithmetic="portable/1").eval(), build_model(spec, 0).eval()  # no dropout
    native.load_state_dict(portable.state_dict())
    ids = torch.from_numpy(np.arange(3 * T, dtype=np.int64).reshape(3, T) * 7 % VOCAB)
    grads = []
    for net in (portable, native):
        out = net(ids)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (po, pg), (no, ng) = grads
    assert torch.allclose(po, no, rtol=1e-5, atol=1e-6)
    assert pg.keys() == ng.keys() and all(torch.allclose(pg[n], ng[n], rtol=1e-4, atol=1e-5) for n in pg)
