"""`lm_*_tokens_per_s`: CPU throughput of a LoRA training step and of greedy generation on a GPT-2-small
sized random model (124M parameters), in native and in portable/1 arithmetic.

The model is GPT-2 small's shape (12 layers, d 768, 12 heads, vocabulary 50 257, 1 024 positions) made
from a `config.json`-shaped dict by the importer's own parser (`protocol.hf_config.parse_hf_config`; no
checkpoint, no `transformers`), with random weights drawn once by the native initialiser and shared by
both arithmetics, so both run the same numbers.

- **LoRA step**: a `finetune` job with `lora` (rank 8, alpha 16, q_proj and v_proj) run by the engine's
  own `Job` (as a worker runs it: forward, causal-LM loss, backward to the adapters, AdamW on the
  adapters), B × T tokens per step; a spec the validator refuses is reported with its reason.
- **Generation**: `engine.lm_infer.generate` (what an `lm_infer` `generate` job runs: greedy, one full
  forward at the fixed length T per new token, no KV cache) on B prompts of T/2 tokens.

Times are the CPU time of the one computing thread (`time.thread_time`; one intra-op thread, as the
portable arithmetic requires), medians over `REPEATS` runs after a warm-up, the two arithmetics
interleaved; the ratio native/portable comes from the same run. Sizes are small (T = 32) so the
portable side stays short: the figures compare arithmetics, they do not predict long-context speed.
`TESSERA_BENCH_LM_PORTABLE=0` skips the portable side (most of the module's time).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GPT2_SMALL_CONFIG: dict[str, Any] = {
    "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50_257, "n_positions": 1_024,
    "n_embd": 768, "n_layer": 12, "n_head": 12, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
}  # fmt: skip
LORA = {"rank": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"]}
ARITHMETICS = ("native", "portable/1")


@dataclass(frozen=True)
class Sizes:
    """What one measurement runs: sequence length, batch, steps per timed run, new tokens, repeats."""

    seq_len: int = 32
    batch: int = 2
    steps: int = 1
    new_tokens: int = 4
    repeats: int = 3


def lm_model(config: dict[str, Any], seq_len: int) -> Any:
    """The model section our importer makes of a Hugging Face `config.json` (a dict here)."""
    from protocol.hf_config import parse_hf_config

    return parse_hf_config(config, seq_len)[1]


def _finetune_spec(model: Any, arithmetic: str, sizes: Sizes, init: str, dataset: str) -> Any:
    from protocol.spec import load_spec

    total = sizes.steps * (sizes.repeats + 1)
    return load_spec({
        "version": 1, "kind": "finetune", "model": model.model_dump(mode="json"), "arithmetic": arithmetic,
        "init_weights": {"hash": init}, "dataset": {"hash": dataset}, "lora": LORA, "loss": "causal_lm",
        "optimizer": {"name": "adamw", "lr": 1e-4}, "batch_size": sizes.batch, "steps": total,
        "segment_steps": total, "device": "cpu", "resources": {"max_parameters": 200_000_000},
    })  # fmt: skip


def _token_ids(rows: int, seq_len: int, vocab: int, seed: int) -> Any:
    import torch

    return torch.randint(0, vocab, (rows, seq_len), generator=torch.Generator().manual_seed(seed))


def lora_step_seconds(config: dict[str, Any], sizes: Sizes, arithmetics: tuple[str, ...] = ARITHMETICS,
                      ) -> dict[str, list[float] | str]:  # fmt: skip
    """Per arithmetic: CPU seconds per LoRA optimizer step (`repeats` runs of `steps` steps after one warm-up
    run, interleaved), or the reason the spec was refused."""
    from engine import tensors_io
    from engine.determinism import configure
    from engine.model import build_model
    from engine.training import Job
    from protocol.artifacts import LocalStore
    from protocol.errors import TesseraError

    model = lm_model(config, sizes.seq_len)
    configure("cpu", 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        init = store.put(tensors_io.encode(dict(build_model(model, 1).named_parameters())))
        rows = sizes.batch * sizes.steps * (sizes.repeats + 1)
        dataset = store.put(tensors_io.encode({"train_input_ids": _token_ids(rows, sizes.seq_len,
                                                                             config["vocab_size"], 2)}))
        jobs: dict[str, Any] = {}
        out: dict[str, list[float] | str] = {}
        for arithmetic in arithmetics:
            try:
                jobs[arithmetic] = Job(_finetune_spec(model, arithmetic, sizes, init, dataset), store, "cpu")
            except TesseraError as exc:
                out[arithmetic] = " ".join(str(exc).split())
        for job in jobs.values():
            job.train(job.step + sizes.steps)  # warm-up: first touch, compiled kernels
        for arithmetic in jobs:
            out[arithmetic] = []
        for _ in range(sizes.repeats):
            for arithmetic, job in jobs.items():
                begin = time.thread_time()
                job.train(job.step + sizes.steps)
                out[arithmetic].append((time.thread_time() - begin) / sizes.steps)  # type: ignore[union-attr]
    return out


def generation_seconds(config: dict[str, Any], sizes: Sizes, arithmetics: tuple[str, ...] = ARITHMETICS,
                       ) -> dict[str, list[float]]:  # fmt: skip
    """Per arithmetic: CPU seconds of one greedy generation of `new_tokens` tokens for `batch` prompts."""
    import torch

    from engine.determinism import configure
    from engine.lm_infer import generate
    from engine.model import TaskModel, build_model

    model = lm_model(config, sizes.seq_len)
    configure("cpu", 1)
    native = build_model(model, 1)
    models = {}
    for arithmetic in arithmetics:
        if arithmetic == "native":
            models[arithmetic] = native
        else:  # the same weights: portable/1's own initialiser would draw other numbers (and takes ~50 s at 124M)
            portable = TaskModel(model, portable=True)
            portable.load_state_dict(native.state_dict())
            models[arithmetic] = portable
    ids = _token_ids(sizes.batch, sizes.seq_len, config["vocab_size"], 3)
    prompt = (torch.arange(sizes.seq_len) < sizes.seq_len // 2).long().expand(sizes.batch, -1).contiguous()
    out: dict[str, list[float]] = {arithmetic: [] for arithmetic in models}
    with torch.no_grad():
        for network in models.values():
            network.eval()
            generate(network, ids, prompt, 1)  # warm-up
        for _ in range(sizes.repeats):
            for arithmetic, network in models.items():
                begin = time.thread_time()
                generate(network, ids, prompt, sizes.new_tokens)
                out[arithmetic].append(time.thread_time() - begin)
    return out


def figures(lora: dict[str, list[float] | str], gen: dict[str, list[float]], sizes: Sizes, parameters: int,
            ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The bench figures from measured seconds (tokens/s, and portable/native ratios of the same run)."""
    step_tokens, gen_tokens = sizes.batch * sizes.seq_len, sizes.batch * sizes.new_tokens
    model = f"GPT-2-small-sized random model ({parameters / 1e6:.1f}M parameters), T = {sizes.seq_len}"
    how_cpu = f"CPU time of one thread, median of {sizes.repeats} after a warm-up, arithmetics interleaved"
    out: dict[str, dict[str, Any]] = {}
    for arithmetic in ARITHMETICS:
        suffix = "native" if arithmetic == "native" else "portable"
        seconds = lora.get(arithmetic)
        if isinstance(seconds, list) and seconds:
            step = statistics.median(seconds)
            out[f"lm_lora_step_tokens_per_s_{suffix}"] = {
                "value": round(step_tokens / step, 2), "unit": "tokens/s",
                "how": f"{arithmetic}: LoRA finetune step (rank {LORA['rank']}, q_proj+v_proj, AdamW, causal-LM loss) "
                       f"through engine Job, B = {sizes.batch} x T tokens; {model}; {how_cpu}; {step:.3f} s/step"}  # fmt: skip
        elif isinstance(seconds, str):
            out[f"lm_lora_step_tokens_per_s_{suffix}"] = {
                "value": "not measured", "unit": "tokens/s", "how": f"{arithmetic}: the spec is refused: {seconds}"}
        gen_seconds = gen.get(arithmetic)
        if gen_seconds:
            run = statistics.median(gen_seconds)
            out[f"lm_generate_tokens_per_s_{suffix}"] = {
                "value": round(gen_tokens / run, 2), "unit": "tokens/s",
                "how": f"{arithmetic}: greedy generation (engine.lm_infer.generate, a full forward at T per new token, "
                       f"no KV cache), B = {sizes.batch} prompts of {sizes.seq_len // 2} tokens, {sizes.new_tokens} new "
                       f"tokens each; {model}; {how_cpu}; {run:.3f} s per generation"}  # fmt: skip
    for kind, label in (("lora_step", "LoRA step"), ("generate", "generation")):
        native, portable = out.get(f"lm_{kind}_tokens_per_s_native"), out.get(f"lm_{kind}_tokens_per_s_portable")
        if native and portable and isinstance(portable["value"], float):
            out[f"lm_{kind}_portable_slowdown"] = {
                "value": round(native["value"] / portable["value"], 2), "unit": "x",
                "how": f"{label}: native tokens/s / portable/1 tokens/s, the two figures above (same run)"}
    return out


def measure(sizes: Sizes | None = None, config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    from protocol.spec import estimate_parameters

    sizes = sizes or Sizes()
    config = config or GPT2_SMALL_CONFIG
    portable = os.environ.get("TESSERA_BENCH_LM_PORTABLE", "1") != "0"
    arithmetics = ARITHMETICS if portable else ("native",)
    lora = lora_step_seconds(config, sizes, arithmetics)
    gen = generation_seconds(config, sizes, arithmetics)
    return figures(lora, gen, sizes, estimate_parameters(lm_model(config, sizes.seq_len)))


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
