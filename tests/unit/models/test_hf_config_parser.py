"""`parse_hf_config` on hostile configs: every outcome is a model or a clean ConfigError/SpecError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ConfigError, SpecError
from protocol.hf_import import parse_hf_config
from protocol.spec import estimate_parameters

GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50, "n_embd": 16, "n_layer": 2,
        "n_head": 4, "n_positions": 32, "n_inner": None, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}  # fmt: skip
LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 50, "hidden_size": 16,
         "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 4, "max_position_embeddings": 64, "hidden_act": "silu", "rms_norm_eps": 1e-6,
         "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
         "tie_word_embeddings": False}  # fmt: skip
MISTRAL = {**LLAMA, "architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 4096}
QWEN2 = {**LLAMA, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "use_sliding_window": False,
         "sliding_window": 16, "tie_word_embeddings": True}  # fmt: skip
BASES = [GPT2, LLAMA, MISTRAL, QWEN2]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_configs(draw: Any) -> Any:
    config = dict(draw(st.sampled_from(BASES)))
    keys = sorted(set().union(*BASES)) + ["auto_map", "rope_parameters", "partial_rotary_factor", "add_cross_attention"]
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["drop", "replace", "small_int"]))
        if action == "drop":
            config.pop(key, None)
        elif action == "replace":
            config[key] = draw(json_values)
        else:
            config[key] = draw(st.integers(-2, 70_000))
    return draw(st.sampled_from([config, [config], None, "config"]))


@given(mutated_configs(), st.none() | st.integers(-1, 70_000))
def test_parser_never_crashes(config: Any, seq_len: int | None) -> None:
    try:
        _, model = parse_hf_config(config, seq_len)
    except (ConfigError, SpecError) as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert estimate_parameters(model) > 0 and model.input_dtype == "int64"


@pytest.mark.parametrize("base", BASES, ids=lambda config: config["model_type"])
def test_unmutated_configs_parse(base: dict[str, Any]) -> None:
    architecture, model = parse_hf_config(base, 8)
    assert architecture == base["architectures"][0] and model.input_shape == [8]


def test_rope_variants_other_than_the_default_are_refused_in_both_spellings() -> None:
    transformers5 = {**{k: v for k, v in LLAMA.items() if k not in ("rope_theta", "rope_scaling")},
                     "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}  # fmt: skip
    _, model = parse_hf_config(transformers5, 8)
    assert model.layers[1].rope_theta == 500000.0
    for config in ({**transformers5, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}},
                   {**LLAMA, "rope_scaling": {"type": "dynamic", "factor": 2.0}}):
        with pytest.raises(ConfigError, match="'(llama3|dynamic)' \\(only the default RoPE\\) is not supported"):
            parse_hf_config(config, 8)
