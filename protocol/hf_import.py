"""Hugging Face checkpoints in and out of the model IR, without torch and without running the checkpoint.

`import_hf(DIR)` reads a local `save_pretrained` layout (`config.json` plus `model.safetensors`, or a
sharded `model.safetensors.index.json`) of a GPT-2 or Llama-family (Llama, Mistral, Qwen2) causal LM,
and returns the `model` section of a task spec (`protocol.spec.ModelSpec`) with float32 weights under
the engine's parameter names. `export_hf` writes such weights back as a layout `transformers` loads
with `AutoModelForCausalLM.from_pretrained`. docs/models.md says what is supported and why.

The config is parsed as data (protocol/hf_config.py: `auto_map`, i.e. remote code, and every option the
IR lacks are refused by name); tensors are read with `safetensors` only and checked against the config
(protocol/hf_weights.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ConfigError, SpecError
from protocol.hf_config import DEFAULT_MAX_SEQ_LEN, SUPPORTED_ARCHITECTURES, parse_hf_config
from protocol.hf_weights import (
    block_indices,
    encode_float32,
    engine_to_hf,
    hf_to_engine,
    parameter_shapes,
    read_hf_checkpoint,
    read_json,
    read_safetensors_float32,
)
from protocol.spec import ModelSpec, estimate_parameters

__all__ = ["DEFAULT_MAX_SEQ_LEN", "SUPPORTED_ARCHITECTURES", "ImportedModel", "encode_float32", "export_hf",
           "hf_architecture_of", "import_hf", "parameter_shapes", "parse_hf_config", "read_engine_weights",
           "read_hf_checkpoint"]  # fmt: skip

MAX_CONFIG_BYTES = 1_048_576
CHECKPOINT_SLACK_BYTES = 256 * 1_048_576


@dataclass
class ImportedModel:
    """What `import_hf` read: the architecture, the model section, and float32 weights by engine name."""

    architecture: str
    model: ModelSpec
    weights: dict[str, np.ndarray] = field(repr=False)

    def weights_bytes(self) -> bytes:
        """The canonical safetensors bytes of the weights (the `init_weights` artifact)."""
        return encode_float32(self.weights)


def import_hf(directory: str | Path, seq_len: int | None = None) -> ImportedModel:
    """Read the Hugging Face checkpoint in `directory`: its model section and engine-named weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{directory} has no config.json")
    architecture, model = parse_hf_config(read_json(config_path, MAX_CONFIG_BYTES, "config"), seq_len)
    # float64 at worst, plus room for the buffers old transformers versions saved (GPT-2's masks)
    budget = 8 * estimate_parameters(model) + CHECKPOINT_SLACK_BYTES
    weights = hf_to_engine(architecture, model, read_hf_checkpoint(directory, budget))
    return ImportedModel(architecture=architecture, model=model, weights=weights)


def _uniform_blocks(model: ModelSpec) -> Any:
    blocks = [model.layers[index] for index in block_indices(model)]
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


def write_output_file(path: Path, data: bytes) -> None:
    """Write `data` as `path` through a temporary file renamed over it: a symlink planted under that name
    (in a directory someone else prepared) is replaced, never written through; readers never see half a file."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; an exported model is for other tools
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_hf(model: ModelSpec, weights: Mapping[str, np.ndarray], directory: str | Path) -> str:
    """Write `config.json` and `model.safetensors` (the `save_pretrained` layout) for engine-named
    `weights` of `model` into `directory`; returns the architecture written."""
    from safetensors.numpy import save

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
    write_output_file(directory / "model.safetensors", save(engine_to_hf(architecture, model, weights), metadata={"format": "pt"}))
    write_output_file(directory / "config.json", (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    return architecture


def read_engine_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Engine-named float32 weights from a weights file (or a checkpoint: its `param/…` tensors)."""
    tensors = read_safetensors_float32(Path(path))
    params = {name.removeprefix("param/"): array for name, array in tensors.items() if name.startswith("param/")}
    return params or tensors
