"""The decoder layers of the IR (rmsnorm, decoder_block, lm_head): shape inference, exact parameter
counts against the built engine model, estimates, refusals, and unchanged hashes of existing specs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from engine.model import build_model
from protocol.errors import SpecError
from protocol.hf_import import parameter_shapes
from protocol.spec import (
    ModelSpec,
    decoder_block_activations,
    estimate_activation_elements,
    estimate_memory_bytes,
    estimate_parameters,
    load_spec,
    model_layers,
)

D, VOCAB, T = 16, 40, 8


def _model(block: dict[str, Any], *, tied: bool = True, head: dict[str, Any] | None = None, steps: int = T) -> dict[str, Any]:
    return {"input_shape": [steps], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": VOCAB, "embedding_dim": D},
        {"type": "decoder_block", "d_model": D, "n_heads": 4, "d_ff": 24, **block},
        {"type": "rmsnorm", "normalized_shape": D},
        {"type": "lm_head", "d_model": D, "vocab_size": VOCAB, "tie_to_embedding": tied, **(head or {})}]}  # fmt: skip


VARIANTS = [
    dict(norm=norm, mlp=mlp, positions=positions, n_kv_heads=kv, head_dim=width, qkv_bias=b1, out_bias=b2, mlp_bias=b3)
    for (norm, mlp, positions), kv, width, (b1, b2, b3) in itertools.product(
        [("rmsnorm", "swiglu", "rotary"), ("layernorm", "gelu_tanh", "none"), ("layernorm", "gelu", "rotary")],
        [None, 2, 1], [None, 6], [(False, False, False), (True, False, False), (True, True, True)])
]  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS[::5] + VARIANTS[-1:], ids=lambda v: "-".join(map(str, v.values())))
def test_parameter_count_and_names_are_exact(variant: dict[str, Any]) -> None:
    spec = ModelSpec.model_validate(_model(variant, tied=variant["qkv_bias"]))
    model = build_model(spec, 0)  # raises when the count differs from estimate_parameters
    assert sum(p.numel() for p in model.parameters()) == estimate_parameters(spec)
    assert {n: tuple(p.shape) for n, p in model.named_parameters()} == parameter_shapes(spec)
    logits = model(torch.randint(0, VOCAB, (2, T)))
    assert logits.shape == (2, T, VOCAB) and torch.isfinite(logits).all()


def test_forward_and_backward_run_in_deterministic_mode_bit_for_bit() -> None:
    from engine.determinism import configure

    configure("cpu", 1)  # what every job runs under: torch's deterministic mode, one thread
    spec = ModelSpec.model_validate(_model({"n_kv_heads": 2, "dropout": 0.1}, tied=True))
    ids = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(3))
    grads = []
    for _ in range(2):
        model = build_model(spec, 7).train()
        model.source.generator = torch.Generator().manual_seed(5)
        model(ids).square().mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert torch.equal(grads[0], grads[1])


def test_causality_later_tokens_do_not_change_earlier_logits() -> None:
    model = build_model(ModelSpec.model_validate(_model({"n_kv_heads": 1})), 0).eval()
    ids = torch.randint(0, VOCAB, (1, T))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % VOCAB
    with torch.no_grad():
        assert torch.equal(model(ids)[0, :-1], model(changed)[0, :-1])
        assert not torch.equal(model(ids)[0, -1], model(changed)[0, -1])


@pytest.mark.parametrize(("model", "path", "message"), [
    (_model({"n_heads": 5}), "model.layers[1].n_heads", "5 does not divide d_model 16"),
    (_model({"n_kv_heads": 3}), "model.layers[1].n_kv_heads", "3 does not divide n_heads 4"),
    (_model({"head_dim": 5}), "model.layers[1].head_dim", "even head width"),
    (_model({}, head={"vocab_size": VOCAB + 1}), "model.layers[3].tie_to_embedding", f"the head needs [{VOCAB + 1}, {D}]"),
    ({**_model({}), "input_dtype": "float32", "input_shape": [T, D], "layers": _model({})["layers"][1:]},
     "model.layers[2].tie_to_embedding", "needs an embedding layer before the head"),
    ({**_model({}), "layers": [_model({})["layers"][0], {"type": "rmsnorm", "normalized_shape": D + 1}]},
     "model.layers[1].normalized_shape", "is 17"),
])  # fmt: skip
def test_shape_problems_name_the_field(model: dict[str, Any], path: str, message: str) -> None:
    _, problems, final = model_layers(ModelSpec.model_validate(model))
    assert final is None and any(p == path and message in m for p, m in problems), problems


def _eval_spec(model: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"version": 1, "kind": "eval", "model": model, "dataset": {"hash": "0x" + "11" * 32},
            "init_weights": {"hash": "0x" + "22" * 32}, **fields}  # fmt: skip


def test_estimates_cover_the_attention_scores_and_refuse_oversized_batches() -> None:
    short, long = load_spec(_eval_spec(_model({}, steps=8))), load_spec(_eval_spec(_model({}, steps=64)))
    block = short.model.layers[1]
    assert decoder_block_activations(block, 64) - 8 * decoder_block_activations(block, 8) == 2 * 4 * (64 * 64 - 8 * 8 * 8)
    assert estimate_activation_elements(long) > 8 * estimate_activation_elements(short)
    assert estimate_memory_bytes(long) > estimate_memory_bytes(short)
    with pytest.raises(SpecError, match="batch_size: needs about"):
        load_spec(_eval_spec(_model({}, steps=4096), batch_size=4096))


def test_portable_arithmetic_accepts_every_new_layer() -> None:
    # issue 13 step 2: rmsnorm, decoder_block and lm_head have portable/1 kernels (docs/arithmetic.md, 5a)
    spec = load_spec(_eval_spec(_model({}, tied=False), arithmetic="portable/1"))
    model = build_model(spec.model, 0, arithmetic="portable/1")
    assert {n: tuple(p.shape) for n, p in model.named_parameters()} == parameter_shapes(spec.model)
    assert torch.isfinite(model(torch.randint(0, VOCAB, (2, T)))).all()


def test_existing_spec_hashes_are_unchanged() -> None:
    from engine.presets import digits_cnn_spec, digits_spec, tiny_gpt_spec

    assert [make().spec_hash() for make in (digits_spec, digits_cnn_spec, tiny_gpt_spec)] == [
        "0x200b45c85d6916d68430065775beb86229b653c5b841965996b39948457faae2",
        "0x8f6b91997a88403a8f824d3df7a98d59f513fca3aeb0f5d9e82fe42a69674dca",
        "0x0e01c7ecdea3932a337841dcd4359ca0c61a76643bf6e75a9ad09de12708394e",
    ]  # computed before the decoder layers were added
