"""Attack tests for issue 13's job surface (screening of language-model specs): each failed before its fix."""

from __future__ import annotations

from typing import Any

from protocol.screening import ScreeningPolicy, term_problems
from protocol.spec import estimate_memory_bytes, estimate_parameters, load_spec


def _memory_bomb(**overrides: Any) -> Any:
    """A LoRA finetune of a 1.6 M-parameter model (far under any max_parameters) whose logits alone are
    [batch, T, vocab] = 32 × 4 096 × 16 384 float32 values (8 GiB), forward and backward."""
    vocab, width, steps = 16_384, 64, 4_096
    model = {"input_shape": [steps], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": vocab, "embedding_dim": width},
        {"type": "decoder_block", "d_model": width, "n_heads": 4, "d_ff": 128},
        {"type": "rmsnorm", "normalized_shape": width},
        {"type": "lm_head", "d_model": width, "vocab_size": vocab, "tie_to_embedding": True}]}  # fmt: skip
    return load_spec({"version": 1, "kind": "finetune", "model": model, "dataset": {"hash": "0x" + "11" * 32},
                      "init_weights": {"hash": "0x" + "22" * 32}, "loss": "causal_lm",
                      "optimizer": {"name": "adamw", "lr": 1e-3}, "batch_size": 32, "steps": 1, "segment_steps": 1,
                      "lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj"]},
                      "resources": {"max_activation_elements": 10_000_000_000}, **overrides})  # fmt: skip


def test_a_job_that_cannot_fit_the_workers_memory_limit_is_not_claimed() -> None:
    """Screening compared parameters only: a submitter could post a small model with enormous activations,
    an honest worker claimed it, its child died at memory_limit_mb, and the job expired on the worker's
    collateral (the submitter's compensation)."""
    bomb = _memory_bomb()
    assert estimate_parameters(bomb) < 5_000_000 and estimate_memory_bytes(bomb) > 16 * 1024**3
    policy = ScreeningPolicy(max_parameters=5_000_000, memory_limit_mb=16_384)
    problems = term_problems(policy, payment=10**18, collateral=0, spec=bomb, execution_timeout=10**6)
    assert any("memory_limit_mb" in problem for problem in problems), problems


def test_a_job_that_fits_passes_the_memory_rule() -> None:
    spec = load_spec({**_memory_bomb().model_dump(mode="json"), "batch_size": 1,
                      "model": {**_memory_bomb().model.model_dump(mode="json"), "input_shape": [64]}})
    policy = ScreeningPolicy(max_parameters=5_000_000, memory_limit_mb=16_384)
    assert not term_problems(policy, payment=10**18, collateral=0, spec=spec, execution_timeout=10**6)
    tight = ScreeningPolicy(max_parameters=5_000_000, memory_limit_mb=256)
    assert any("memory_limit_mb" in p for p in term_problems(tight, payment=10**18, collateral=0, spec=spec,
                                                              execution_timeout=10**6))


def _lora_on(base_bytes: bytes, store_dir, **resources: Any) -> Any:
    """A LoRA finetune (1.6 M-parameter base) whose init_weights are `base_bytes`, hinted at `store_dir`."""
    import hashlib

    spec = _memory_bomb().model_dump(mode="json")
    spec["model"]["input_shape"], spec["batch_size"] = [64], 1
    spec["init_weights"] = {"hash": "0x" + hashlib.sha256(base_bytes).hexdigest(), "uris": [str(store_dir)]}
    spec["resources"] = {**spec["resources"], **resources}
    return load_spec(spec)


def test_staging_bounds_weights_by_the_model_not_by_max_dataset_bytes(tmp_path) -> None:
    """Workers and judges staged init_weights (and adapters) under max_dataset_bytes, a limit the submitter
    sets up to 16 GiB whatever the model: a 1.6 M-parameter job could make every worker download 16 GiB
    before its claim, while an honest LoRA job on a base larger than its token dataset's limit was unstageable."""
    from protocol.artifacts import open_store
    from protocol.spec import CHECKPOINT_OVERHEAD_BYTES
    from worker.judging import stage_inputs

    source = open_store(str(tmp_path / "hints"))
    weights_bound = 4 * estimate_parameters(_lora_on(b"", source.root)) + CHECKPOINT_OVERHEAD_BYTES
    padded = b"\0" * (weights_bound + 1)  # hashes right, cannot be this model's float32 weights
    source.put(padded)
    cache = open_store(str(tmp_path / "cache"))
    hostile = _lora_on(padded, source.root, max_dataset_bytes=16 * 1024**3)
    # (the dataset, named by hash only, is missing in both cases: only the weights matter here)
    assert hostile.init_weights.hash in stage_inputs(hostile, cache, []) and not cache.has(hostile.init_weights.hash)

    honest_bytes = b"\1" * (weights_bound - 64)
    source.put(honest_bytes)
    honest = _lora_on(honest_bytes, source.root, max_dataset_bytes=1024**2)  # a small token dataset
    assert honest.init_weights.hash not in stage_inputs(honest, cache, []) and cache.has(honest.init_weights.hash)
