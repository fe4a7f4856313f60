"""Hugging Face checkpoints in and out of the model IR, without torch and without running the checkpoint.

`import_hf(DIR)` reads a local `save_pretrained` layout (`config.json` plus `model.safetensors`, or a
sharded `model.safetensors.index.json`) of a GPT-2 or Llama-family (Llama, Mistral, Qwen2) causal LM,
and returns the `model` section of a task spec (`protocol.spec.ModelSpec`) with float32 weights under
the engine's parameter names. `export_hf` writes such weights back as a layout `transformers` loads
with `AutoModelForCausalLM.from_pretrained`. docs/models.md says what is supported and why.

Safety: the config is data (bounded JSON, every field type-checked, every option that would change the
arithmetic either mapped or refused by name); `auto_map` (remote code) is refused; weights are read
with `safetensors` only (pickled `.bin` files are refused, never opened); shard names must be plain
files inside DIR; every tensor's shape must be what the config implies, and no tensor may be left over.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from protocol.errors import ConfigError, SpecError
from protocol.spec import (
    MAX_PARAMETERS,
    ModelSpec,
    canonical_json,
    estimate_parameters,
    json_too_deep,
    model_layers,
    parse_untrusted_json,
)

MAX_CONFIG_BYTES = 1_048_576
MAX_INDEX_BYTES = 16 * 1_048_576
MAX_HEADER_BYTES = 16 * 1_048_576
MAX_SHARDS = 1_024
MAX_LAYER_COUNT = 200  # decoder blocks; the IR allows 256 layers in all
CHECKPOINT_SLACK_BYTES = 256 * 1_048_576
DEFAULT_MAX_SEQ_LEN = 2_048  # input_shape when --seq-len is not given: min(the model's context, this)

SUPPORTED_ARCHITECTURES = ("GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
_MODEL_TYPES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                "Qwen2ForCausalLM": "qwen2"}  # fmt: skip
# Tensors a checkpoint may hold that are not weights (buffers older transformers versions saved).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
_DTYPE_BYTES = {"F32": 4, "F16": 2, "F64": 8, "BF16": 2}


@dataclass
class ImportedModel:
    """What `import_hf` read: the architecture, the model section, and float32 weights by engine name."""

    architecture: str
    model: ModelSpec
    weights: dict[str, np.ndarray] = field(repr=False)

    def weights_bytes(self) -> bytes:
        """The canonical safetensors bytes of the weights (the `init_weights` artifact)."""
        return encode_float32(self.weights)


# --------------------------------------------------------------------------------------------------
# Config parsing (pure: a dict in, a ModelSpec out, or a ConfigError/SpecError naming the field)
# --------------------------------------------------------------------------------------------------


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
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise SpecError(f"{name} config does not fit the model IR: {where}: {first.get('msg')}") from None
    _, problems, _ = model_layers(model)
    if problems:
        raise SpecError(f"{name} config does not fit the model IR: " + "; ".join(f"{p}: {m}" for p, m in problems[:3]))
    count = estimate_parameters(model)
    if count > MAX_PARAMETERS:
        raise SpecError(f"{name} model has {count} parameters, over the limit {MAX_PARAMETERS}")
    return name, model


# --------------------------------------------------------------------------------------------------
# Parameter names and shapes of the IR's layers (what engine/model.py builds; a test checks the two)
# --------------------------------------------------------------------------------------------------


def parameter_shapes(model: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Engine parameter name -> shape for the top-level layers that imports produce."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index, layer in enumerate(model.layers):
        at = f"layers.{index}"
        kind = layer.type
        if kind == "embedding":
            shapes[f"{at}.weight"] = (layer.num_embeddings, layer.embedding_dim)
        elif kind == "positional_embedding":
            shapes[f"{at}.weight"] = (layer.max_len, layer.embedding_dim)
        elif kind in ("layernorm", "rmsnorm"):
            shapes[f"{at}.weight"] = (layer.normalized_shape,)
            if kind == "layernorm":
                shapes[f"{at}.bias"] = (layer.normalized_shape,)
        elif kind == "lm_head":
            if not layer.tie_to_embedding:
                shapes[f"{at}.weight"] = (layer.vocab_size, layer.d_model)
            if layer.bias:
                shapes[f"{at}.bias"] = (layer.vocab_size,)
        elif kind == "decoder_block":
            d, q_out, kv_out = layer.d_model, layer.n_heads * layer.head_width, layer.kv_heads * layer.head_width
            for norm in ("attn_norm", "mlp_norm"):
                shapes[f"{at}.{norm}.weight"] = (d,)
                if layer.norm == "layernorm":
                    shapes[f"{at}.{norm}.bias"] = (d,)
            projections = {"q_proj": (q_out, d, layer.qkv_bias), "k_proj": (kv_out, d, layer.qkv_bias),
                           "v_proj": (kv_out, d, layer.qkv_bias), "o_proj": (d, q_out, layer.out_bias),
                           "up_proj": (layer.d_ff, d, layer.mlp_bias), "down_proj": (d, layer.d_ff, layer.mlp_bias)}  # fmt: skip
            if layer.mlp == "swiglu":
                projections["gate_proj"] = (layer.d_ff, d, layer.mlp_bias)
            for name, (rows, cols, bias) in projections.items():
                shapes[f"{at}.{name}.weight"] = (rows, cols)
                if bias:
                    shapes[f"{at}.{name}.bias"] = (rows,)
        else:
            raise SpecError(f"model.layers[{index}]: {kind} layers have no Hugging Face counterpart here")
    return shapes


# --------------------------------------------------------------------------------------------------
# Name maps: engine name <-> Hugging Face name (and the GPT-2 Conv1D transposes / fused q,k,v)
# --------------------------------------------------------------------------------------------------

_LLAMA_BLOCK = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "q_proj": "self_attn.q_proj",
                "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj", "o_proj": "self_attn.o_proj",
                "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj", "down_proj": "mlp.down_proj"}  # fmt: skip
_GPT2_BLOCK = {"attn_norm": "ln_1", "mlp_norm": "ln_2", "o_proj": "attn.c_proj", "up_proj": "mlp.c_fc",
               "down_proj": "mlp.c_proj"}  # fmt: skip


def _blocks(model: ModelSpec) -> list[int]:
    return [index for index, layer in enumerate(model.layers) if layer.type == "decoder_block"]


def _llama_to_engine(model: ModelSpec, hf: Mapping[str, np.ndarray], take: Any) -> dict[str, np.ndarray]:
    ours: dict[str, np.ndarray] = {}
    shapes = parameter_shapes(model)
    blocks = _blocks(model)
    ours["layers.0.weight"] = take("model.embed_tokens.weight")
    for number, index in enumerate(blocks):
        for mine, theirs in _LLAMA_BLOCK.items():
            for leaf in ("weight", "bias"):
                if f"layers.{index}.{mine}.{leaf}" in shapes:
                    ours[f"layers.{index}.{mine}.{leaf}"] = take(f"model.layers.{number}.{theirs}.{leaf}")
    norm = blocks[-1] + 1
    ours[f"layers.{norm}.weight"] = take("model.norm.weight")
    if f"layers.{norm + 1}.weight" in shapes:
        ours[f"layers.{norm + 1}.weight"] = take("lm_head.weight")
    return ours


def _gpt2_to_engine(model: ModelSpec, hf: Mapping[str, np.ndarray], take: Any) -> dict[str, np.ndarray]:
    ours: dict[str, np.ndarray] = {"layers.0.weight": take("transformer.wte.weight"),
                                   "layers.1.weight": take("transformer.wpe.weight")}  # fmt: skip
    blocks = _blocks(model)
    for number, index in enumerate(blocks):
        at, h = f"layers.{index}", f"transformer.h.{number}"
        for mine, theirs in _GPT2_BLOCK.items():
            weight = take(f"{h}.{theirs}.weight")
            # GPT-2's Conv1D stores [in, out]; nn.Linear (and the engine) store [out, in]
            ours[f"{at}.{mine}.weight"] = weight if mine.endswith("norm") else _transposed(weight)
            ours[f"{at}.{mine}.bias"] = take(f"{h}.{theirs}.bias")
        fused_weight, fused_bias = _transposed(take(f"{h}.attn.c_attn.weight")), take(f"{h}.attn.c_attn.bias")
        width = model.layers[index].d_model
        if fused_weight.shape[0] != 3 * width or fused_bias.shape != (3 * width,):
            raise ConfigError(f"{h}.attn.c_attn has shape {list(fused_weight.shape[::-1])}, the config implies [{width}, {3 * width}]")
        for part, name in enumerate(("q_proj", "k_proj", "v_proj")):
            ours[f"{at}.{name}.weight"] = np.ascontiguousarray(fused_weight[part * width : (part + 1) * width])
            ours[f"{at}.{name}.bias"] = np.ascontiguousarray(fused_bias[part * width : (part + 1) * width])
    norm = blocks[-1] + 1
    ours[f"layers.{norm}.weight"] = take("transformer.ln_f.weight")
    ours[f"layers.{norm}.bias"] = take("transformer.ln_f.bias")
    if f"layers.{norm + 1}.weight" in parameter_shapes(model):
        ours[f"layers.{norm + 1}.weight"] = take("lm_head.weight")
    return ours


def _transposed(array: np.ndarray) -> np.ndarray:
    if array.ndim != 2:
        raise ConfigError(f"a Conv1D weight must be 2-D, got shape {list(array.shape)}")
    return np.ascontiguousarray(array.T)


def _canonical_hf_names(architecture: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Prefix bare base-model names (`h.0.…`, `layers.0.…`, as the original GPT-2 upload has them)."""
    prefix = "transformer." if architecture == "GPT2LMHeadModel" else "model."
    return {(name if name.startswith(prefix) or name == "lm_head.weight" else prefix + name): array
            for name, array in tensors.items()}


def hf_to_engine(architecture: str, model: ModelSpec, hf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Engine-named float32 weights from Hugging Face-named tensors; every tensor must be used and
    every shape must be the one the config implies."""
    hf = _canonical_hf_names(architecture, hf)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in hf:
            raise ConfigError(f"checkpoint has no tensor {name}")
        used.add(name)
        return hf[name]

    convert = _gpt2_to_engine if architecture == "GPT2LMHeadModel" else _llama_to_engine
    ours = convert(model, hf, take)
    left = sorted(name for name in set(hf) - used if not name.endswith(_IGNORED_SUFFIXES))
    if "lm_head.weight" in left and any(layer.type == "lm_head" and layer.tie_to_embedding for layer in model.layers):
        # a tied head saved anyway must be the embedding itself
        embedding = ours["layers.0.weight"]
        if hf["lm_head.weight"].shape != embedding.shape or not np.array_equal(hf["lm_head.weight"], embedding):
            raise ConfigError("config.json ties the embeddings but lm_head.weight differs from the token embedding")
        left.remove("lm_head.weight")
    if left:
        raise ConfigError(f"checkpoint has tensors the {architecture} config does not explain: {', '.join(left[:5])}")
    expected = parameter_shapes(model)
    for name, shape in expected.items():
        if tuple(ours[name].shape) != shape:
            raise ConfigError(f"tensor for {name} has shape {list(ours[name].shape)}, the config implies {list(shape)}")
    return {name: np.ascontiguousarray(ours[name], dtype=np.float32) for name in expected}


def engine_to_hf(architecture: str, model: ModelSpec, ours: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hugging Face-named tensors (as `save_pretrained` writes them) from engine-named weights."""
    blocks = _blocks(model)
    shapes = parameter_shapes(model)
    hf: dict[str, np.ndarray] = {}
    norm = blocks[-1] + 1
    if architecture == "GPT2LMHeadModel":
        hf["transformer.wte.weight"], hf["transformer.wpe.weight"] = ours["layers.0.weight"], ours["layers.1.weight"]
        for number, index in enumerate(blocks):
            at, h = f"layers.{index}", f"transformer.h.{number}"
            for mine, theirs in _GPT2_BLOCK.items():
                weight = ours[f"{at}.{mine}.weight"]
                hf[f"{h}.{theirs}.weight"] = weight if mine.endswith("norm") else np.ascontiguousarray(weight.T)
                hf[f"{h}.{theirs}.bias"] = ours[f"{at}.{mine}.bias"]
            q, k, v = (ours[f"{at}.{name}.weight"] for name in ("q_proj", "k_proj", "v_proj"))
            hf[f"{h}.attn.c_attn.weight"] = np.ascontiguousarray(np.concatenate([q, k, v]).T)
            hf[f"{h}.attn.c_attn.bias"] = np.concatenate([ours[f"{at}.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")])
        hf["transformer.ln_f.weight"], hf["transformer.ln_f.bias"] = ours[f"layers.{norm}.weight"], ours[f"layers.{norm}.bias"]
    else:
        hf["model.embed_tokens.weight"] = ours["layers.0.weight"]
        for number, index in enumerate(blocks):
            for mine, theirs in _LLAMA_BLOCK.items():
                for leaf in ("weight", "bias"):
                    if f"layers.{index}.{mine}.{leaf}" in shapes:
                        hf[f"model.layers.{number}.{theirs}.{leaf}"] = ours[f"layers.{index}.{mine}.{leaf}"]
        hf["model.norm.weight"] = ours[f"layers.{norm}.weight"]
    if f"layers.{norm + 1}.weight" in shapes:
        hf["lm_head.weight"] = ours[f"layers.{norm + 1}.weight"]
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in hf.items()}


# --------------------------------------------------------------------------------------------------
# Reading checkpoints (safetensors only)
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path, limit: int, what: str) -> Any:
    try:
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(f"{what} {path} is larger than {limit} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if json_too_deep(raw, 32):
        raise ConfigError(f"{what} {path} is nested too deeply")
    try:
        return parse_untrusted_json(raw)
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The header (tensor entries, no metadata) and where the data starts."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ConfigError(f"{path.name}: too short to be safetensors")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or 8 + length > path.stat().st_size:
            raise ConfigError(f"{path.name}: safetensors header length {length} is out of bounds")
        raw = handle.read(length)
    if json_too_deep(raw, 16):
        raise ConfigError(f"{path.name}: safetensors header is nested too deeply")
    try:
        header = parse_untrusted_json(raw)
    except ValueError as exc:
        raise ConfigError(f"{path.name}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path.name}: safetensors header is not an object")
    header.pop("__metadata__", None)
    return header, 8 + length


def read_safetensors_float32(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of one safetensors file as float32 numpy arrays (F32, F16, BF16, F64 accepted).
    BF16 (which numpy lacks) is widened by hand from the header's offsets; the rest is read by
    `safetensors.numpy`."""
    from safetensors import safe_open

    header, data_start = _safetensors_header(path)
    tensors: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="numpy") as handle:
            for name, entry in header.items():
                dtype = entry.get("dtype") if isinstance(entry, dict) else None
                if dtype not in _DTYPE_BYTES:
                    raise ConfigError(f"{path.name}: tensor {str(name)[:100]} has dtype {str(dtype)[:20]}; supported: {', '.join(_DTYPE_BYTES)}")
                if dtype == "BF16":
                    tensors[name] = _read_bf16(path, data_start, entry)
                else:
                    tensors[name] = np.asarray(handle.get_tensor(name), dtype=np.float32)
    except ConfigError:
        raise
    except Exception as exc:  # safetensors' own error types for malformed files
        raise ConfigError(f"{path.name}: not a valid safetensors file ({exc})") from None
    return tensors


def _read_bf16(path: Path, data_start: int, entry: Mapping[str, Any]) -> np.ndarray:
    shape, (begin, end) = list(entry["shape"]), entry["data_offsets"]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if end - begin != 2 * count:
        raise ConfigError(f"{path.name}: a BF16 tensor's byte range does not match its shape {shape}")
    with path.open("rb") as handle:
        handle.seek(data_start + begin)
        raw = handle.read(end - begin)
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16  # bfloat16 = the top half of a float32
    return bits.view(np.float32).reshape(shape)


def _shard_files(directory: Path) -> list[Path]:
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        data = _read_json(index, MAX_INDEX_BYTES, "shard index")
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ConfigError(f"{index.name}: weight_map must map tensor names to shard file names")
        names = sorted(set(weight_map.values()))
        if len(names) > MAX_SHARDS:
            raise ConfigError(f"{index.name} names {len(names)} shards, over the limit {MAX_SHARDS}")
        shards = []
        for name in names:
            if "/" in name or "\\" in name or name in (".", "..") or not name.endswith(".safetensors"):
                raise ConfigError(f"{index.name}: shard {name[:100]!r} must be a .safetensors file inside {directory}")
            if not (directory / name).is_file():
                raise ConfigError(f"{index.name}: shard {name} is missing")
            shards.append(directory / name)
        return shards
    pickled = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt*"))
    if pickled:
        raise ConfigError(f"{directory} has only pickled PyTorch weights ({', '.join(pickled[:3])}); they are never "
                          "loaded (unpickling runs code): convert the checkpoint to safetensors first")
    raise ConfigError(f"{directory} has no model.safetensors or model.safetensors.index.json")


def _tensor_bytes(header: Mapping[str, Any]) -> int:
    total = 0
    for entry in header.values():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ConfigError("a safetensors header entry has no valid data_offsets")
        total += max(0, offsets[1] - offsets[0])
    return total


def read_hf_checkpoint(directory: Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint in `directory` (single file or shards) as float32, by HF name.
    With `max_bytes`, the shards' headers are summed first and a checkpoint holding more tensor
    bytes than that is refused before any tensor is read."""
    shards = _shard_files(directory)
    if max_bytes is not None:
        total = sum(_tensor_bytes(_safetensors_header(shard)[0]) for shard in shards)
        if total > max_bytes:
            raise ConfigError(f"checkpoint holds {total} bytes of tensors, more than its config explains ({max_bytes})")
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        for name, array in read_safetensors_float32(shard).items():
            if name in tensors:
                raise ConfigError(f"tensor {name[:100]} appears in more than one shard")
            tensors[name] = array
    return tensors


def import_hf(directory: str | Path, seq_len: int | None = None) -> ImportedModel:
    """Read the Hugging Face checkpoint in `directory`: its model section and engine-named weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{directory} has no config.json")
    architecture, model = parse_hf_config(_read_json(config_path, MAX_CONFIG_BYTES, "config"), seq_len)
    # float64 at worst, plus room for the buffers old transformers versions saved (GPT-2's masks)
    budget = 8 * estimate_parameters(model) + CHECKPOINT_SLACK_BYTES
    weights = hf_to_engine(architecture, model, read_hf_checkpoint(directory, budget))
    return ImportedModel(architecture=architecture, model=model, weights=weights)


# --------------------------------------------------------------------------------------------------
# Writing: canonical safetensors (torch-free), and the save_pretrained layout
# --------------------------------------------------------------------------------------------------


def encode_float32(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Canonical safetensors bytes (the encoding of engine/tensors_io.encode: sorted names, canonical
    JSON header padded with spaces to 8 bytes) of float32 arrays, without torch."""
    header: dict[str, Any] = {}
    buffers: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"data_offsets": [offset, offset + array.nbytes], "dtype": "F32", "shape": list(array.shape)}
        buffers.append(array.tobytes())
        offset += array.nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = canonical_json(header)
    raw += b" " * (-len(raw) % 8)
    return b"".join([struct.pack("<Q", len(raw)), raw, *buffers])


def _uniform_blocks(model: ModelSpec) -> Any:
    blocks = [model.layers[index] for index in _blocks(model)]
    if not blocks or any(block != blocks[0] for block in blocks):
        raise SpecError("export needs one or more identical decoder_block layers")
    return blocks[0]


def hf_architecture_of(model: ModelSpec) -> tuple[str, dict[str, Any]]:
    """`(architecture, config.json)` for a model section in the shape imports produce; SpecError when
    the model has no Hugging Face counterpart (then it cannot be exported)."""
    layers = model.layers
    kinds = [layer.type for layer in layers]
    count = kinds.count("decoder_block")
    gpt2_shape = ["embedding", "positional_embedding", *["decoder_block"] * count, "layernorm", "lm_head"]
    llama_shape = ["embedding", *["decoder_block"] * count, "rmsnorm", "lm_head"]
    if count == 0 or kinds not in (gpt2_shape, llama_shape):
        raise SpecError("export: the model is not in a shape with a Hugging Face counterpart (embedding, "
                        "[positional_embedding,] decoder_block…, layernorm|rmsnorm, lm_head)")
    block = _uniform_blocks(model)
    head, norm, vocab, d = layers[-1], layers[-2], layers[0].num_embeddings, block.d_model
    if kinds == gpt2_shape:
        if block.norm != "layernorm" or block.positions != "none" or block.mlp == "swiglu" \
                or not (block.qkv_bias and block.out_bias and block.mlp_bias) or block.kv_heads != block.n_heads \
                or block.head_width * block.n_heads != d or norm.eps != block.norm_eps or head.bias:
            raise SpecError("export: this GPT-2-shaped model has options GPT-2 lacks (GPT-2 blocks use layernorm, no "
                            "rotary, gelu/gelu_tanh, every bias, one epsilon, full heads)")
        return "GPT2LMHeadModel", {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab,
            "n_positions": layers[1].max_len, "n_embd": d, "n_layer": count, "n_head": block.n_heads,
            "n_inner": block.d_ff, "activation_function": "gelu_new" if block.mlp == "gelu_tanh" else "gelu",
            "layer_norm_epsilon": block.norm_eps, "tie_word_embeddings": head.tie_to_embedding,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "torch_dtype": "float32",
        }  # fmt: skip
    # the Llama shape
    if (block.norm, block.positions, block.mlp) != ("rmsnorm", "rotary", "swiglu") or norm.eps != block.norm_eps or head.bias:
        raise SpecError("export: a Llama-shaped model needs rmsnorm, rotary positions, swiglu and one epsilon")
    qwen2 = block.qkv_bias and not block.out_bias and not block.mlp_bias
    if not qwen2 and block.qkv_bias != block.out_bias:
        raise SpecError("export: q/k/v bias without output bias is Qwen2's layout, which also has no MLP bias")
    name = "Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"
    config = {
        "architectures": [name], "model_type": "qwen2" if qwen2 else "llama", "vocab_size": vocab,
        "hidden_size": d, "intermediate_size": block.d_ff, "num_hidden_layers": count,
        "num_attention_heads": block.n_heads, "num_key_value_heads": block.kv_heads, "head_dim": block.head_width,
        "hidden_act": "silu", "max_position_embeddings": model.input_shape[0], "rms_norm_eps": block.norm_eps,
        "rope_theta": block.rope_theta, "rope_scaling": None, "tie_word_embeddings": head.tie_to_embedding,
        "attention_dropout": 0.0, "torch_dtype": "float32",
    }  # fmt: skip
    if not qwen2:
        config.update(attention_bias=block.qkv_bias, mlp_bias=block.mlp_bias)
    return name, config


def export_hf(model: ModelSpec, weights: Mapping[str, np.ndarray], directory: str | Path) -> str:
    """Write `config.json` and `model.safetensors` (the `save_pretrained` layout) for engine-named
    `weights` of `model` into `directory`; returns the architecture written."""
    from safetensors.numpy import save_file

    architecture, config = hf_architecture_of(model)
    expected = parameter_shapes(model)
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise SpecError(f"weights do not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise SpecError(f"weights: {name} has shape {list(weights[name].shape)}, the model wants {list(shape)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(engine_to_hf(architecture, model, weights), str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return architecture


def read_engine_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Engine-named float32 weights from a weights file (or a checkpoint: its `param/…` tensors)."""
    tensors = read_safetensors_float32(Path(path))
    params = {name.removeprefix("param/"): array for name, array in tensors.items() if name.startswith("param/")}
    return params or tensors
