"""Hugging Face checkpoint tensors <-> engine parameters, torch-free.

Reading is `safetensors` only (pickled `.bin` files are refused, never opened), with bounded headers and
index files, shard names confined to the checkpoint directory, bfloat16 widened by hand (numpy has no
bfloat16). Names map by rename, plus GPT-2's Conv1D transposes and fused q/k/v; every shape must be the
one the model implies and no tensor may be left unexplained. `encode_float32` writes the engine's
canonical safetensors encoding (engine/tensors_io.py) without torch.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ConfigError, SpecError
from protocol.spec import ModelSpec, canonical_json, load_untrusted_json

MAX_INDEX_BYTES = 16 * 1_048_576
MAX_HEADER_BYTES = 16 * 1_048_576
MAX_SHARDS = 1_024
# Tensors a checkpoint may hold that are not weights (buffers older transformers versions saved).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
_DTYPE_BYTES = {"F32": 4, "F16": 2, "F64": 8, "BF16": 2}


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


def block_indices(model: ModelSpec) -> list[int]:
    """Positions of the decoder blocks in `model.layers`."""
    return [index for index, layer in enumerate(model.layers) if layer.type == "decoder_block"]


def _llama_to_engine(model: ModelSpec, hf: Mapping[str, np.ndarray], take: Any) -> dict[str, np.ndarray]:
    ours: dict[str, np.ndarray] = {}
    shapes = parameter_shapes(model)
    blocks = block_indices(model)
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
    blocks = block_indices(model)
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
    blocks = block_indices(model)
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


def read_json(path: Path, limit: int, what: str) -> Any:
    try:
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(f"{what} {path} is larger than {limit} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return load_untrusted_json(raw, f"{what} {path}", ConfigError, depth=32)


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
    header = load_untrusted_json(raw, f"{path.name}: safetensors header", ConfigError, depth=16)
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
        data = read_json(index, MAX_INDEX_BYTES, "shard index")
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
