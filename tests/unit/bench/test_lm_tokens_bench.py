"""bench/lm_tokens.py's plumbing on a tiny GPT-2-shaped config: both arithmetics are timed on the same
weights, tokens/s come from the measured seconds, and a refused spec is reported, not hidden (the
benchmark never passes or fails; the 124M figures are in docs/performance.md)."""

from __future__ import annotations

import statistics

from bench.lm_tokens import GPT2_SMALL_CONFIG, Sizes, figures, generation_seconds, lm_model, lora_step_seconds
from protocol.spec import estimate_parameters

TINY = {**GPT2_SMALL_CONFIG, "vocab_size": 40, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2}
SIZES = Sizes(seq_len=8, batch=2, steps=1, new_tokens=2, repeats=2)


def test_the_bench_model_is_gpt2_small_through_the_importers_parser() -> None:
    assert estimate_parameters(lm_model(GPT2_SMALL_CONFIG, 32)) == 124_439_808  # GPT-2 small, tied head


def test_lora_steps_and_generation_are_timed_and_turned_into_tokens_per_second() -> None:
    lora = lora_step_seconds(TINY, SIZES)
    gen = generation_seconds(TINY, SIZES)
    assert len(lora["native"]) == SIZES.repeats and all(t > 0 for t in lora["native"])
    assert set(gen) == {"native", "portable/1"} and all(len(v) == SIZES.repeats for v in gen.values())
    out = figures(lora, gen, SIZES, 1_000)
    tokens_per_s = SIZES.batch * SIZES.seq_len / statistics.median(lora["native"])
    assert abs(out["lm_lora_step_tokens_per_s_native"]["value"] - tokens_per_s) <= 0.01
    ratio = out["lm_generate_portable_slowdown"]["value"]
    native, portable = out["lm_generate_tokens_per_s_native"]["value"], out["lm_generate_tokens_per_s_portable"]["value"]
    assert abs(ratio - native / portable) < 0.01 * ratio + 0.01
    portable_step = lora["portable/1"]
    if isinstance(portable_step, str):  # the validator still refuses LoRA in portable/1: said, not measured
        assert out["lm_lora_step_tokens_per_s_portable"]["value"] == "not measured"
        assert portable_step in out["lm_lora_step_tokens_per_s_portable"]["how"]
        assert "lm_lora_step_portable_slowdown" not in out
    else:
        assert out["lm_lora_step_portable_slowdown"]["value"] > 0
