"""Hugging Face `config.json` -> the model IR, as pure data: a dict in, a `ModelSpec` out.

Every field is type-checked, every option that would change the arithmetic is either mapped to the IR
or refused by name (ConfigError), and a result that does not fit the IR's limits is a SpecError; no
other exception escapes (tests/unit/models/test_hf_config_parser.py fuzzes this). docs/models.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from protocol.errors import ConfigError, SpecError
from protocol.spec import MAX_PARAMETERS, ModelSpec, estimate_parameters, first_error, model_layers

MAX_LAYER_COUNT = 200  # decoder blocks; the IR allows 256 layers in all
DEFAULT_MAX_SEQ_LEN = 2_048  # input_shape when --seq-len is not given: min(the model's context, this)

SUPPORTED_ARCHITECTURES = ("GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
_MODEL_TYPES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                "Qwen2ForCausalLM": "qwen2"}  # fmt: skip
_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def _field(config: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = config.get(key, default)
    if value is ...:
        raise ConfigError(f"config.json: {key} is missing")
    if value is None and default is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config.json: {key} must be an integer, got {value!r:.60}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"config.json: {key} must be a finite number, got {value!r:.60}")
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"config.json: {key} must be true or false, got {value!r:.60}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"config.json: {key} must be a string, got {value!r:.60}")
    return value


def _positive(config: Mapping[str, Any], key: str, default: Any = ..., upper: int = 65_536) -> int:
    value = _field(config, key, int, default)
    if not 1 <= value <= upper:
        raise ConfigError(f"config.json: {key} = {value} is outside 1..{upper}")
    return value


def _architecture(config: Mapping[str, Any]) -> str:
    if "auto_map" in config:
        raise ConfigError("config.json names custom model code (auto_map); code from a checkpoint is never run")
    names = config.get("architectures")
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        raise ConfigError(f"config.json: architectures must list exactly one name (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    name = names[0]
    if name not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(f"architecture {name[:100]!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    model_type = config.get("model_type")
    if model_type != _MODEL_TYPES[name]:
        raise ConfigError(f"config.json: model_type {model_type!r:.60} does not match {name} (expected {_MODEL_TYPES[name]!r})")
    return name


def _refuse_if(condition: bool, option: str) -> None:
    if condition:
        raise ConfigError(f"config.json: {option} is not supported")


def _seq_len(context: int, seq_len: int | None) -> int:
    if seq_len is None:
        return min(context, DEFAULT_MAX_SEQ_LEN)
    if not 1 <= seq_len <= context:
        raise ConfigError(f"sequence length {seq_len} is outside 1..{context} (the model's context)")
    return seq_len


def _gpt2_layers(config: Mapping[str, Any], seq_len: int | None) -> tuple[list[dict[str, Any]], int]:
    vocab, d = _positive(config, "vocab_size"), _positive(config, "n_embd")
    context, n_layer = _positive(config, "n_positions"), _positive(config, "n_layer", upper=MAX_LAYER_COUNT)
    heads = _positive(config, "n_head", upper=256)
    d_ff = _field(config, "n_inner", int, None)
    d_ff = 4 * d if d_ff is None else _positive(config, "n_inner")
    eps = _field(config, "layer_norm_epsilon", float, 1e-5)
    activation = _field(config, "activation_function", str, "gelu_new")
    if activation not in _GPT2_ACTIVATIONS:
        raise ConfigError(f"config.json: activation_function {activation[:60]!r} is not supported (supported: {', '.join(_GPT2_ACTIVATIONS)})")
    _refuse_if(not _field(config, "scale_attn_weights", bool, True), "scale_attn_weights = false")
    _refuse_if(_field(config, "scale_attn_by_inverse_layer_idx", bool, False), "scale_attn_by_inverse_layer_idx = true")
    _refuse_if(_field(config, "add_cross_attention", bool, False), "add_cross_attention = true")
    tied = _field(config, "tie_word_embeddings", bool, True)
    block = {"type": "decoder_block", "d_model": d, "n_heads": heads, "d_ff": d_ff, "norm": "layernorm",
             "norm_eps": eps, "mlp": _GPT2_ACTIVATIONS[activation], "positions": "none", "qkv_bias": True,
             "out_bias": True, "mlp_bias": True}  # fmt: skip
    layers = [{"type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
              {"type": "positional_embedding", "max_len": context, "embedding_dim": d},
              *[block] * n_layer,
              {"type": "layernorm", "normalized_shape": d, "eps": eps},
              {"type": "lm_head", "d_model": d, "vocab_size": vocab, "tie_to_embedding": tied}]  # fmt: skip
    return layers, _seq_len(context, seq_len)


def _rope_theta(config: Mapping[str, Any]) -> float:
    """The rotary base, refusing every RoPE variant but the original (scaling changes the angles)."""
    parameters = config.get("rope_parameters")  # transformers 5 spelling
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise ConfigError("config.json: rope_parameters must be an object")
        rope_type = parameters.get("rope_type", parameters.get("type", "default"))
        _refuse_if(rope_type != "default", f"rope_parameters.rope_type {str(rope_type)[:40]!r} (only the default RoPE)")
        return _field(parameters, "rope_theta", float, 10_000.0)
    scaling = config.get("rope_scaling")
    if scaling is not None:
        rope_type = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else scaling
        _refuse_if(rope_type != "default", f"rope_scaling {str(rope_type)[:40]!r} (only the default RoPE)")
    return _field(config, "rope_theta", float, 10_000.0)


def _llama_layers(name: str, config: Mapping[str, Any], seq_len: int | None) -> tuple[list[dict[str, Any]], int]:
    vocab, d = _positive(config, "vocab_size"), _positive(config, "hidden_size")
    d_ff = _positive(config, "intermediate_size")
    n_layer = _positive(config, "num_hidden_layers", upper=MAX_LAYER_COUNT)
    heads = _positive(config, "num_attention_heads", upper=256)
    kv_heads = _field(config, "num_key_value_heads", int, None)
    kv_heads = heads if kv_heads is None else _positive(config, "num_key_value_heads", upper=256)
    head_dim = _field(config, "head_dim", int, None)
    if head_dim is not None and not 1 <= head_dim <= 1024:
        raise ConfigError(f"config.json: head_dim = {head_dim} is outside 1..1024")
    if head_dim is None and d % heads:
        raise ConfigError(f"config.json: num_attention_heads {heads} does not divide hidden_size {d}")
    context = _positive(config, "max_position_embeddings", upper=1 << 24)
    act = _field(config, "hidden_act", str, "silu")
    _refuse_if(act != "silu", f"hidden_act {act[:40]!r} (the Llama family uses silu)")
    _refuse_if(_field(config, "partial_rotary_factor", float, 1.0) != 1.0, "partial_rotary_factor other than 1")
    theta = _rope_theta(config)
    if not 1 < theta <= 1e12:
        raise ConfigError(f"config.json: rope_theta = {theta} is outside (1, 1e12]")
    eps = _field(config, "rms_norm_eps", float, 1e-6)
    if not 0 < eps <= 1:
        raise ConfigError(f"config.json: rms_norm_eps = {eps} is outside (0, 1]")
    tied = _field(config, "tie_word_embeddings", bool, False)
    length = _seq_len(min(context, 65_536), seq_len)
    if name == "LlamaForCausalLM":
        attention_bias = _field(config, "attention_bias", bool, False)
        qkv_bias = out_bias = attention_bias
        mlp_bias = _field(config, "mlp_bias", bool, False)
    elif name == "MistralForCausalLM":
        qkv_bias = out_bias = mlp_bias = False
        _check_window(_field(config, "sliding_window", int, None), length, "sliding_window")
    else:  # Qwen2: biased q/k/v, unbiased output and MLP projections
        qkv_bias, out_bias, mlp_bias = True, False, False
        if _field(config, "use_sliding_window", bool, False):
            _check_window(_field(config, "sliding_window", int, None), length, "sliding_window (use_sliding_window = true)")
    block = {"type": "decoder_block", "d_model": d, "n_heads": heads, "n_kv_heads": kv_heads, "head_dim": head_dim,
             "d_ff": d_ff, "norm": "rmsnorm", "norm_eps": eps, "mlp": "swiglu", "positions": "rotary",
             "rope_theta": theta, "qkv_bias": qkv_bias, "out_bias": out_bias, "mlp_bias": mlp_bias}  # fmt: skip
    layers = [{"type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
              *[block] * n_layer,
              {"type": "rmsnorm", "normalized_shape": d, "eps": eps},
              {"type": "lm_head", "d_model": d, "vocab_size": vocab, "tie_to_embedding": tied}]  # fmt: skip
    return layers, length


def _check_window(window: int | None, seq_len: int, option: str) -> None:
    """Sliding-window attention (a key at distance ≥ window is masked) cannot change sequences of at
    most `window` positions; longer ones would need it, which the IR does not have."""
    if window is not None and window < seq_len:
        raise ConfigError(f"config.json: {option} = {window} is shorter than the sequence length {seq_len}: "
                          f"sliding-window attention is not supported (import with a sequence length ≤ {max(window, 1)})")


def parse_hf_config(config: Any, seq_len: int | None = None) -> tuple[str, ModelSpec]:
    """`(architecture, model section)` for a parsed `config.json`. Raises ConfigError naming the
    unsupported architecture or option, or SpecError when the result is not a valid model."""
    if not isinstance(config, dict):
        raise ConfigError("config.json must hold a JSON object")
    name = _architecture(config)
    if name == "GPT2LMHeadModel":
        layers, length = _gpt2_layers(config, seq_len)
    else:
        layers, length = _llama_layers(name, config, seq_len)
    try:
        model = ModelSpec.model_validate({"input_shape": [length], "input_dtype": "int64", "layers": layers})
    except ValidationError as exc:
        raise SpecError(f"{name} config does not fit the model IR: {first_error(exc, 'model')}") from None
    _, problems, _ = model_layers(model)
    if problems:
        raise SpecError(f"{name} config does not fit the model IR: " + "; ".join(f"{p}: {m}" for p, m in problems[:3]))
    count = estimate_parameters(model)
    if count > MAX_PARAMETERS:
        raise SpecError(f"{name} model has {count} parameters, over the limit {MAX_PARAMETERS}")
    return name, model
