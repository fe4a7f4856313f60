"""Task specs: what a job asks a worker to compute, in a form that hashes the same everywhere.

A `TaskSpec` is a versioned pydantic model. Its canonical bytes (JSON, sorted keys, no spaces,
UTF-8, every default written out) are what the submitter stores and what `spec_hash` covers, so two
parties that agree on the hash agree on every field. The model is described declaratively with layers
from a fixed whitelist; shapes and sizes are checked here, in plain Python, before anything is
allocated, so a worker can reject an oversized job (`estimate_parameters`) without importing torch.

The format is documented in docs/spec-format.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.errors import SpecError
from protocol.hashing import sha256_hex

# --------------------------------------------------------------------------------------------------
# Hard limits: no spec may exceed these, whatever its `resources` say.
# --------------------------------------------------------------------------------------------------
MAX_SEGMENTS = 1_024  # the contracts' bound on N
MAX_PARAMETERS = 200_000_000
MAX_DIM = 65_536  # any single width, channel count, vocabulary or sequence length
MAX_LAYERS = 256  # total layer count, nested ones included
MAX_DEPTH = 8  # nesting of residual / sequential blocks
MAX_INPUT_ELEMENTS = 16_777_216  # one example
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_LM_COUNTED = 2**24  # rows a portable causal_lm training batch may count: R_c exact in binary32
MAX_URI_LENGTH = 2_048
MAX_SPEC_BYTES = 1_048_576
MAX_JSON_DEPTH = 64

HASH_PATTERN = r"^0x[0-9a-f]{64}$"


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes of a JSON-ready value: sorted keys, no spaces, UTF-8, no NaN/inf.

    Used for specs, fingerprints and checkpoint headers, so the same value always has one encoding.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class _Strict(BaseModel):
    """Base for spec parts: unknown fields are errors (typos must not pass silently), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]

# --------------------------------------------------------------------------------------------------
# Layers (the whitelist). Shapes below exclude the batch dimension.
# --------------------------------------------------------------------------------------------------


class Linear(_Strict):
    """Affine map on the last dimension: `[..., in_features] -> [..., out_features]`."""

    type: Literal["linear"]
    in_features: Dim
    out_features: Dim
    bias: bool = True


class Conv2d(_Strict):
    """2-D convolution: `[in_channels, H, W] -> [out_channels, H', W']`."""

    type: Literal["conv2d"]
    in_channels: Dim
    out_channels: Dim
    kernel_size: Annotated[int, Field(ge=1, le=31)]
    stride: Annotated[int, Field(ge=1, le=31)] = 1
    padding: Annotated[int, Field(ge=0, le=31)] = 0
    bias: bool = True


class MaxPool2d(_Strict):
    """Max pooling over `[C, H, W]`; `stride` defaults to `kernel_size`."""

    type: Literal["maxpool2d"]
    kernel_size: Annotated[int, Field(ge=1, le=31)]
    stride: Annotated[int, Field(ge=1, le=31)] | None = None


class AvgPool2d(_Strict):
    """Average pooling over `[C, H, W]`; `stride` defaults to `kernel_size`."""

    type: Literal["avgpool2d"]
    kernel_size: Annotated[int, Field(ge=1, le=31)]
    stride: Annotated[int, Field(ge=1, le=31)] | None = None


class ReLU(_Strict):
    """Elementwise max(x, 0)."""

    type: Literal["relu"]


class GELU(_Strict):
    """Elementwise GELU (exact erf form, so there is one definition)."""

    type: Literal["gelu"]


class Tanh(_Strict):
    """Elementwise tanh."""

    type: Literal["tanh"]


class LayerNorm(_Strict):
    """Layer normalisation over the last dimension, with learned scale and shift."""

    type: Literal["layernorm"]
    normalized_shape: Dim
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-5


class Dropout(_Strict):
    """Dropout drawn from the engine's seeded generator (never the global RNG)."""

    type: Literal["dropout"]
    p: Annotated[float, Field(ge=0, lt=1)]


class Embedding(_Strict):
    """Token lookup: int64 `[T] -> [T, embedding_dim]`."""

    type: Literal["embedding"]
    num_embeddings: Dim
    embedding_dim: Dim


class PositionalEmbedding(_Strict):
    """Adds a learned position vector: `[T, D] -> [T, D]` with `T <= max_len`."""

    type: Literal["positional_embedding"]
    max_len: Dim
    embedding_dim: Dim


class CausalSelfAttention(_Strict):
    """Multi-head causal self-attention on `[T, d_model]` (explicit math, no fused kernels)."""

    type: Literal["causal_self_attention"]
    d_model: Dim
    n_heads: Annotated[int, Field(ge=1, le=256)]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class TransformerBlock(_Strict):
    """Pre-norm GPT block: `x + attn(ln(x))`, then `x + mlp(ln(x))` with a GELU MLP of width d_ff."""

    type: Literal["transformer_block"]
    d_model: Dim
    n_heads: Annotated[int, Field(ge=1, le=256)]
    d_ff: Dim
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class RMSNorm(_Strict):
    """Root-mean-square normalisation over the last dimension with a learned scale (no shift):
    `x / sqrt(mean(x²) + eps) · weight` (Llama's RMSNorm)."""

    type: Literal["rmsnorm"]
    normalized_shape: Dim
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-6


HeadCount = Annotated[int, Field(ge=1, le=256)]


class DecoderBlock(_Strict):
    """Pre-norm decoder-only transformer block on `[T, d_model]`, general enough for GPT-2 and the
    Llama family (Llama, Mistral, Qwen2): `x + o(attn(norm(x)))`, then `x + mlp(norm(x))`.

    Attention is causal, with `n_heads` query heads of width `head_dim` (default d_model / n_heads)
    sharing `n_kv_heads` key/value heads (grouped-query attention; default n_heads). `positions`:
    "rotary" rotates queries and keys by position with base `rope_theta` in the half-split layout of
    Hugging Face's `rotate_half` (pairs (i, i + head_dim/2), not interleaved pairs); "none" adds no
    position information (GPT-2 adds learned positions once, with a `positional_embedding` layer).
    `mlp`: "gelu" (exact erf) or "gelu_tanh" (GPT-2's gelu_new) on `up`, then `down`; "swiglu":
    `down(silu(gate(x)) · up(x))`. Bias flags: `qkv_bias` (q/k/v projections; Qwen2), `out_bias`
    (output projection), `mlp_bias` (every MLP projection). Documented in docs/spec-format.md.
    """

    type: Literal["decoder_block"]
    d_model: Dim
    n_heads: HeadCount
    n_kv_heads: HeadCount | None = None
    head_dim: Annotated[int, Field(ge=1, le=1024)] | None = None
    d_ff: Dim
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    norm_eps: Annotated[float, Field(gt=0, le=1)] = 1e-5
    mlp: Literal["gelu", "gelu_tanh", "swiglu"] = "swiglu"
    positions: Literal["none", "rotary"] = "rotary"
    rope_theta: Annotated[float, Field(gt=1, le=1e12)] = 10_000.0
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_width(self) -> int:
        return self.head_dim or self.d_model // self.n_heads


class LMHead(_Strict):
    """Language-model head: `[T, d_model] -> [T, vocab_size]` logits. With `tie_to_embedding` its
    weight is the model's first `embedding` layer's (weight tying: no parameter of its own, and that
    embedding must be `[vocab_size, d_model]`); otherwise a `[vocab_size, d_model]` weight of its own."""

    type: Literal["lm_head"]
    d_model: Dim
    vocab_size: Dim
    bias: bool = False
    tie_to_embedding: bool = False


class Flatten(_Strict):
    """Flattens every non-batch dimension into one."""

    type: Literal["flatten"]


class Reshape(_Strict):
    """Reshapes the non-batch dimensions to `shape` (same element count)."""

    type: Literal["reshape"]
    shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]


class Residual(_Strict):
    """`x + f(x)` where `f` is the inner layer list; `f` must keep the shape."""

    type: Literal["residual"]
    layers: Annotated[list["Layer"], Field(min_length=1, max_length=MAX_LAYERS)]


class Sequential(_Strict):
    """The inner layers applied in order (a named group)."""

    type: Literal["sequential"]
    layers: Annotated[list["Layer"], Field(min_length=1, max_length=MAX_LAYERS)]


Layer = Annotated[
    Union[
        Linear,
        Conv2d,
        MaxPool2d,
        AvgPool2d,
        ReLU,
        GELU,
        Tanh,
        LayerNorm,
        Dropout,
        Embedding,
        PositionalEmbedding,
        CausalSelfAttention,
        TransformerBlock,
        RMSNorm,
        DecoderBlock,
        LMHead,
        Flatten,
        Reshape,
        Residual,
        Sequential,
    ],
    Field(discriminator="type"),
]
Residual.model_rebuild()
Sequential.model_rebuild()

LAYER_TYPES: tuple[str, ...] = (
    "linear", "conv2d", "maxpool2d", "avgpool2d", "relu", "gelu", "tanh", "layernorm", "dropout",
    "embedding", "positional_embedding", "causal_self_attention", "transformer_block", "flatten",
    "reshape", "residual", "sequential", "rmsnorm", "decoder_block", "lm_head",
)  # fmt: skip

# Layers the portable arithmetic (portable/1) has no kernels for yet: a spec asking for portable/1
# with one of these is refused at validation, naming the layer, instead of failing inside a job.
# Empty since issue 13 step 2 (rmsnorm, decoder_block and lm_head: docs/arithmetic.md, section 5a).
NATIVE_ONLY_LAYERS: frozenset[str] = frozenset()


class ModelSpec(_Strict):
    """A model: the shape and dtype of one input example, and the layers applied to it."""

    input_shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]
    input_dtype: Literal["float32", "int64"] = "float32"
    layers: Annotated[list[Layer], Field(min_length=1, max_length=MAX_LAYERS)]


# --------------------------------------------------------------------------------------------------
# References, optimisation, resources
# --------------------------------------------------------------------------------------------------


class ArtifactRef(_Strict):
    """Content reference: the 0x sha256 of the exact bytes, plus optional hints where to fetch them.

    A hint is a store URI (`file://`, a path, `http(s)://` base where `<base>/<64 hex>` is the
    artifact) or `builtin://<name>` for datasets shipped with the engine. Hints are untrusted: the
    bytes are always checked against `hash`.
    """

    hash: Annotated[str, Field(pattern=HASH_PATTERN)]
    uris: Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_URI_LENGTH)]], Field(max_length=8)] = []


class SGD(_Strict):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    name: Literal["sgd"]
    lr: Annotated[float, Field(gt=0, le=10)]
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0


class AdamW(_Strict):
    """Adam with decoupled weight decay (Loshchilov & Hutter), bias-corrected."""

    name: Literal["adamw"]
    lr: Annotated[float, Field(gt=0, le=10)]
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.01


Optimizer = Annotated[Union[SGD, AdamW], Field(discriminator="name")]


class Schedule(_Strict):
    """Learning-rate schedule: linear warm-up, then constant, cosine or linear decay to `final_ratio`."""

    name: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 0
    final_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0

    def lr_factor(self, step: int, total_steps: int, cos: Callable[[float], float] = math.cos) -> float:
        """Multiplier of the base learning rate for optimizer step `step` (0-based). Portable arithmetic
        passes its own `cos` (libm's is not the same function everywhere)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        span = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.name == "cosine":
            shape = 0.5 * (1.0 + cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.final_ratio + (1.0 - self.final_ratio) * shape


class Resources(_Strict):
    """Limits the job must fit in, and the CPU thread count every party must use.

    `cpu_threads` is part of the spec (not the host) because CPU reductions depend on how the work
    is split between threads; pinning it makes hashes independent of the machine's core count.
    """

    max_parameters: Annotated[int, Field(ge=1, le=MAX_PARAMETERS)] = 50_000_000
    max_activation_elements: Annotated[int, Field(ge=1, le=10_000_000_000)] = 1_000_000_000
    max_dataset_bytes: Annotated[int, Field(ge=1, le=16 * 1024**3)] = 512 * 1024**2
    max_wall_s: Annotated[float, Field(gt=0, le=7 * 86_400)] | None = None
    cpu_threads: Annotated[int, Field(ge=1, le=64)] = 1


TRAINING_KINDS = ("train", "finetune")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LMInfer(_Strict):
    """What an `infer` job computes with a language model (int64 ids [T] → logits [T, V]).

    "score": inputs `input_ids` [N, T] and `continuation_mask` [N, T] (0/1, 0 at position 0); the
    output of row n is Σ over t with mask 1 of log p(input_ids[n, t] | input_ids[n, < t]).
    "generate": inputs `input_ids` [N, T] and `attention_mask` [N, T] (the prompt, trailing padding);
    `max_new_tokens` tokens are appended greedily (argmax, lowest id on ties) after each prompt,
    which must leave room for them within T. Exact rules: docs/spec-format.md.
    """

    mode: Literal["score", "generate"]
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None


def infer_output_shape(spec: "TaskSpec") -> list[int]:
    """Shape of one row of an infer job's outputs `out/y` (float32)."""
    if spec.lm_infer is None:
        return output_shape(spec.model)
    return [] if spec.lm_infer.mode == "score" else [spec.lm_infer.max_new_tokens or 0]


class LoRA(_Strict):
    """Low-rank adapters on the named projections of every `decoder_block` (a `finetune` option).

    Each target projection `y = W x (+ b)` becomes `y = W x (+ b) + (alpha / rank) · B (A x)` with
    `A` `[rank, in]` drawn from the spec's seed and `B` `[out, rank]` zero, so the adapted model starts
    as the base. Only `A` and `B` are trained, checkpointed and output; the base weights are the
    spec's `init_weights`, bound by their hash. Names as PEFT's `LoraConfig.target_modules`.
    """

    rank: Annotated[int, Field(ge=1, le=1024)]
    alpha: Annotated[float, Field(gt=0, le=1e6)]
    target_modules: Annotated[list[Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]],
                              Field(min_length=1, max_length=len(LORA_TARGETS))]  # fmt: skip

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def lora_shapes(block: "DecoderBlock", lora: LoRA) -> dict[str, tuple[int, int]]:
    """`(out, in)` of each adapted projection of `block` (targets the block lacks are left out)."""
    d, q, kv = block.d_model, block.n_heads * block.head_width, block.kv_heads * block.head_width
    shapes = {"q_proj": (q, d), "k_proj": (kv, d), "v_proj": (kv, d), "o_proj": (d, q),
              "up_proj": (block.d_ff, d), "down_proj": (d, block.d_ff)}  # fmt: skip
    if block.mlp == "swiglu":
        shapes["gate_proj"] = (block.d_ff, d)
    return {name: shapes[name] for name in LORA_TARGETS if name in lora.target_modules and name in shapes}


def lora_parameters(spec: "TaskSpec") -> int:
    """Exact number of adapter parameters of a LoRA spec (0 without one): rank · (in + out) per target."""
    if spec.lora is None:
        return 0
    return sum(spec.lora.rank * (rows + cols) for _, layer in iter_layers(spec.model.layers)
               if layer.type == "decoder_block" for rows, cols in lora_shapes(layer, spec.lora).values())


class TaskSpec(_Strict):
    """A job: what to compute, on what data, with which model, in how many committed segments."""

    version: Literal[1]
    kind: Literal["train", "finetune", "infer", "eval"]
    name: Annotated[str, Field(max_length=200)] = ""
    model: ModelSpec
    dataset: ArtifactRef | None = None
    init_weights: ArtifactRef | None = None
    inputs: ArtifactRef | None = None
    # The tokenizer that made the dataset's token ids: pinned by hash for provenance, never fetched or run.
    tokenizer: ArtifactRef | None = None
    lora: LoRA | None = None
    # eval/infer of a base plus a LoRA adapter: the adapter tensors (a LoRA finetune's output) for `lora`
    # on the frozen `init_weights`; both are bound by hash.
    adapter: ArtifactRef | None = None
    lm_infer: LMInfer | None = None
    loss: Literal["cross_entropy", "mse", "causal_lm"] = "cross_entropy"
    optimizer: Optimizer | None = None
    schedule: Schedule = Schedule()
    grad_clip_norm: Annotated[float, Field(gt=0, le=1e6)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 32
    steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 0
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    segment_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 1
    device: Literal["any", "cpu", "cuda"] = "any"
    arithmetic: Literal["native", "portable/1"] = "native"
    resources: Resources = Resources()

    @model_validator(mode="after")
    def _check_semantics(self) -> "TaskSpec":
        problems = semantic_problems(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))
        return self

    @property
    def num_segments(self) -> int:
        """N: `ceil(steps / segment_steps)` for training kinds, 1 for infer and eval."""
        if self.kind in TRAINING_KINDS:
            return -(-self.steps // self.segment_steps)
        return 1

    def segment_bounds(self, segment: int) -> tuple[int, int]:
        """Optimizer steps `[start, end)` run by `segment` (the last one may be shorter)."""
        if not 0 <= segment < self.num_segments:
            raise SpecError(f"segment {segment} outside 0..{self.num_segments - 1}")
        if self.kind not in TRAINING_KINDS:
            return (0, 0)
        start = segment * self.segment_steps
        return (start, min(self.steps, start + self.segment_steps))

    def canonical_bytes(self) -> bytes:
        """The spec's one byte encoding: canonical JSON of every field, defaults included, except
        `arithmetic` when it is "native", and `tokenizer`, `lora`, `adapter` and `lm_infer` when null (so specs
        written before those fields existed keep their hash)."""
        data = self.model_dump(mode="json")
        if data["arithmetic"] == "native":
            del data["arithmetic"]
        for optional in ("tokenizer", "lora", "adapter", "lm_infer"):
            if data[optional] is None:
                del data[optional]
        return canonical_json(data)

    def spec_hash(self) -> str:
        """0x sha256 of `canonical_bytes()`: the `spec_hash` posted on chain."""
        return sha256_hex(self.canonical_bytes())


# --------------------------------------------------------------------------------------------------
# Shape inference and size estimates (plain Python; nothing is allocated)
# --------------------------------------------------------------------------------------------------


class LayerInfo(BaseModel):
    """What shape inference learned about one layer (shapes exclude the batch dimension)."""

    path: str
    type: str
    input_shape: list[int]
    output_shape: list[int]
    parameters: int
    activation_elements: int


def _prod(values: list[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result


def _pool_out(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _walk(
    layers: list[Any], shape: list[int], dtype: str, path: str, depth: int,
    infos: list[LayerInfo], problems: list[tuple[str, str]],
) -> tuple[list[int], str] | None:  # fmt: skip
    """Infer shapes layer by layer; append problems; return (shape, dtype) or None when lost."""
    if depth > MAX_DEPTH:
        problems.append((path, f"nesting deeper than {MAX_DEPTH}"))
        return None
    for index, layer in enumerate(layers):
        here = f"{path}[{index}]"
        if len(infos) >= MAX_LAYERS:
            problems.append((here, f"more than {MAX_LAYERS} layers in total"))
            return None
        result = _infer_one(layer, shape, dtype, here, depth, infos, problems)
        if result is None:
            return None
        shape, dtype = result
    return shape, dtype


def _infer_one(
    layer: Any, shape: list[int], dtype: str, here: str, depth: int,
    infos: list[LayerInfo], problems: list[tuple[str, str]],
) -> tuple[list[int], str] | None:  # fmt: skip
    kind = layer.type
    params = 0
    out = list(shape)

    def fail(field: str, message: str) -> None:
        problems.append((f"{here}.{field}" if field else here, message))

    def need_float() -> bool:
        if dtype != "float32":
            fail("type", f"{kind} needs float input, got {dtype} (put an embedding first)")
            return False
        return True

    if kind == "linear":
        if not need_float():
            return None
        if shape[-1] != layer.in_features:
            fail("in_features", f"is {layer.in_features} but the input's last dimension is {shape[-1]} (shape {shape})")
            return None
        out = shape[:-1] + [layer.out_features]
        params = layer.in_features * layer.out_features + (layer.out_features if layer.bias else 0)
    elif kind == "conv2d":
        if not need_float():
            return None
        if len(shape) != 3:
            fail("type", f"conv2d needs a [C, H, W] input, got shape {shape}")
            return None
        if shape[0] != layer.in_channels:
            fail("in_channels", f"is {layer.in_channels} but the input has {shape[0]} channels (shape {shape})")
            return None
        h = _pool_out(shape[1], layer.kernel_size, layer.stride, layer.padding)
        w = _pool_out(shape[2], layer.kernel_size, layer.stride, layer.padding)
        if h < 1 or w < 1:
            fail("kernel_size", f"{layer.kernel_size} does not fit the input {shape} with padding {layer.padding}")
            return None
        out = [layer.out_channels, h, w]
        params = layer.out_channels * layer.in_channels * layer.kernel_size**2 + (layer.out_channels if layer.bias else 0)
    elif kind in ("maxpool2d", "avgpool2d"):
        if not need_float():
            return None
        if len(shape) != 3:
            fail("type", f"{kind} needs a [C, H, W] input, got shape {shape}")
            return None
        stride = layer.stride or layer.kernel_size
        h = _pool_out(shape[1], layer.kernel_size, stride)
        w = _pool_out(shape[2], layer.kernel_size, stride)
        if h < 1 or w < 1:
            fail("kernel_size", f"{layer.kernel_size} is larger than the input {shape}")
            return None
        out = [shape[0], h, w]
    elif kind in ("relu", "gelu", "tanh", "dropout"):
        if not need_float():
            return None
    elif kind == "layernorm":
        if not need_float():
            return None
        if shape[-1] != layer.normalized_shape:
            fail("normalized_shape", f"is {layer.normalized_shape} but the input's last dimension is {shape[-1]}")
            return None
        params = 2 * layer.normalized_shape
    elif kind == "embedding":
        if dtype != "int64":
            fail("type", "embedding needs int64 token input (model.input_dtype = int64)")
            return None
        out = shape + [layer.embedding_dim]
        dtype = "float32"
        params = layer.num_embeddings * layer.embedding_dim
    elif kind == "positional_embedding":
        if not need_float():
            return None
        if len(shape) != 2 or shape[1] != layer.embedding_dim:
            fail("embedding_dim", f"needs a [T, {layer.embedding_dim}] input, got shape {shape}")
            return None
        if shape[0] > layer.max_len:
            fail("max_len", f"is {layer.max_len} but the sequence length is {shape[0]}")
            return None
        params = layer.max_len * layer.embedding_dim
    elif kind in ("causal_self_attention", "transformer_block"):
        if not need_float():
            return None
        if len(shape) != 2 or shape[1] != layer.d_model:
            fail("d_model", f"needs a [T, {layer.d_model}] input, got shape {shape}")
            return None
        if layer.d_model % layer.n_heads:
            fail("n_heads", f"{layer.n_heads} does not divide d_model {layer.d_model}")
            return None
        d = layer.d_model
        params = 4 * d * d + 4 * d  # qkv projection and output projection, with biases
        if kind == "transformer_block":
            params += 4 * d + 2 * d * layer.d_ff + layer.d_ff + d  # two layernorms and the MLP
    elif kind == "rmsnorm":
        if not need_float():
            return None
        if shape[-1] != layer.normalized_shape:
            fail("normalized_shape", f"is {layer.normalized_shape} but the input's last dimension is {shape[-1]}")
            return None
        params = layer.normalized_shape
    elif kind == "decoder_block":
        if not need_float():
            return None
        if len(shape) != 2 or shape[1] != layer.d_model:
            fail("d_model", f"needs a [T, {layer.d_model}] input, got shape {shape}")
            return None
        if layer.head_dim is None and layer.d_model % layer.n_heads:
            fail("n_heads", f"{layer.n_heads} does not divide d_model {layer.d_model} (or give head_dim)")
            return None
        if layer.n_heads % layer.kv_heads:
            fail("n_kv_heads", f"{layer.kv_heads} does not divide n_heads {layer.n_heads}")
            return None
        if layer.positions == "rotary" and layer.head_width % 2:
            fail("head_dim", f"rotary positions need an even head width, got {layer.head_width}")
            return None
        params = decoder_block_parameters(layer)
    elif kind == "lm_head":
        if not need_float():
            return None
        if len(shape) != 2 or shape[1] != layer.d_model:
            fail("d_model", f"needs a [T, {layer.d_model}] input, got shape {shape}")
            return None
        out = [shape[0], layer.vocab_size]
        params = (0 if layer.tie_to_embedding else layer.vocab_size * layer.d_model) + (layer.vocab_size if layer.bias else 0)
    elif kind == "flatten":
        out = [_prod(shape)]
    elif kind == "reshape":
        if _prod(layer.shape) != _prod(shape):
            fail("shape", f"{layer.shape} holds {_prod(layer.shape)} elements but the input {shape} holds {_prod(shape)}")
            return None
        out = list(layer.shape)
    elif kind in ("residual", "sequential"):
        start = len(infos)
        inner = _walk(layer.layers, shape, dtype, f"{here}.layers", depth + 1, infos, problems)
        if inner is None:
            return None
        inner_shape, inner_dtype = inner
        params = sum(info.parameters for info in infos[start:])
        if kind == "residual" and (inner_shape != shape or inner_dtype != dtype):
            fail("layers", f"residual branch changes the shape {shape} ({dtype}) to {inner_shape} ({inner_dtype})")
            return None
        out, dtype = inner_shape, inner_dtype
        # nested layers already carry their own parameters; the group itself adds none
        infos.append(LayerInfo(path=here, type=kind, input_shape=shape, output_shape=out, parameters=0,
                               activation_elements=_prod(out) if kind == "residual" else 0))
        return out, dtype
    else:  # unreachable: pydantic only lets whitelisted types through
        fail("type", f"unknown layer type {kind!r}")
        return None

    activations = _prod(out)
    if kind in ("causal_self_attention", "transformer_block"):
        t = shape[0]
        activations = 4 * _prod(shape) + layer.n_heads * t * t + (layer.d_ff * t if kind == "transformer_block" else 0)
    if kind == "decoder_block":
        activations = decoder_block_activations(layer, shape[0])
    if any(dim > MAX_DIM for dim in out):
        fail("", f"output shape {out} has a dimension over {MAX_DIM}")
        return None
    infos.append(LayerInfo(path=here, type=kind, input_shape=list(shape), output_shape=out,
                           parameters=params, activation_elements=activations))
    return out, dtype


def decoder_block_parameters(block: DecoderBlock) -> int:
    """Exact parameter count of a `decoder_block` (what the engine builds; checked there)."""
    d, f, width = block.d_model, block.d_ff, block.head_width
    q_out, kv_out = block.n_heads * width, block.kv_heads * width
    norms = 2 * (2 * d if block.norm == "layernorm" else d)
    attention = d * q_out + 2 * d * kv_out + q_out * d
    if block.qkv_bias:
        attention += q_out + 2 * kv_out
    if block.out_bias:
        attention += d
    projections_in = 2 if block.mlp == "swiglu" else 1  # gate and up, or up alone
    mlp = projections_in * d * f + f * d
    if block.mlp_bias:
        mlp += projections_in * f + d
    return norms + attention + mlp


def decoder_block_activations(block: DecoderBlock, steps: int) -> int:
    """Activation elements one example holds in a `decoder_block` of `steps` positions (forward values
    kept for backward): the two norm outputs, q/k/v, the attention output and both residual sums, the
    scores and their softmax per head, and the MLP's hidden values (three for SwiGLU: gate, up, product)."""
    d, width = block.d_model, block.head_width
    per_position = 4 * d + (2 * block.n_heads + 2 * block.kv_heads) * width
    mlp_hidden = (3 if block.mlp == "swiglu" else 2) * block.d_ff
    return steps * (per_position + mlp_hidden) + 2 * block.n_heads * steps * steps


def iter_layers(layers: list[Any], path: str = "model.layers") -> Any:
    """Every layer of `layers` depth-first (containers before their contents), as `(field path, layer)`."""
    for index, layer in enumerate(layers):
        here = f"{path}[{index}]"
        yield here, layer
        if layer.type in ("sequential", "residual"):
            yield from iter_layers(layer.layers, f"{here}.layers")


def _tying_problems(model: ModelSpec) -> list[tuple[str, str]]:
    """A tied `lm_head` shares the weight of the model's first `embedding` layer (depth-first, the
    order engine/model.py binds in), which must come before it and be `[vocab_size, d_model]`."""
    problems: list[tuple[str, str]] = []
    seen_embedding: Any | None = None
    for path, layer in iter_layers(model.layers):
        if layer.type == "embedding" and seen_embedding is None:
            seen_embedding = layer
        if layer.type != "lm_head" or not layer.tie_to_embedding:
            continue
        if seen_embedding is None:
            problems.append((f"{path}.tie_to_embedding", "needs an embedding layer before the head"))
        elif (seen_embedding.num_embeddings, seen_embedding.embedding_dim) != (layer.vocab_size, layer.d_model):
            problems.append((f"{path}.tie_to_embedding", f"the first embedding is [{seen_embedding.num_embeddings}, "
                             f"{seen_embedding.embedding_dim}] but the head needs [{layer.vocab_size}, {layer.d_model}]"))
    return problems


def first_leaf(layers: list[Any]) -> Any:
    """The first layer that is not a container: the one that receives the model's input."""
    first = layers[0]
    while first.type in ("sequential", "residual"):
        first = first.layers[0]
    return first


def model_layers(model: ModelSpec) -> tuple[list[LayerInfo], list[tuple[str, str]], tuple[list[int], str] | None]:
    """Shape inference over `model`: per-layer info, problems `(field path, message)`, final (shape, dtype)."""
    infos: list[LayerInfo] = []
    problems: list[tuple[str, str]] = []
    if _prod(model.input_shape) > MAX_INPUT_ELEMENTS:
        problems.append(("model.input_shape", f"{model.input_shape} has more than {MAX_INPUT_ELEMENTS} elements"))
        return infos, problems, None
    final = _walk(model.layers, list(model.input_shape), model.input_dtype, "model.layers", 1, infos, problems)
    if final is not None:
        problems += _tying_problems(model)
        if problems:
            final = None
    return infos, problems, final


def estimate_parameters(spec: TaskSpec | ModelSpec) -> int:
    """Number of trainable parameters the model will have (exact, computed without torch)."""
    model = spec.model if isinstance(spec, TaskSpec) else spec
    infos, _, _ = model_layers(model)
    return sum(info.parameters for info in infos)


# A deliberately slow reference for declared replay times: one CPU thread at 1 GFLOP/s, plus the fixed
# cost of a replay (interpreter and torch start, spec and checkpoint load). Declaring too little makes
# the job's windows too short to judge, and workers decline it (worker.policy); too much only widens them.
REFERENCE_FLOPS = 1e9
REPLAY_OVERHEAD_S = 5
NON_TRAINING_SEGMENT_S = 60
# Portable arithmetic replays every op through its own kernels: bench/portable.py measures up to 1.5
# times native on CPU (the MLP); the estimate takes 3, a margin for judges slower than the bench box and
# for the CUDA kernels' cost, not yet measured on a GPU.
PORTABLE_SLOWDOWN = 3
# A judge fetches a segment's two checkpoints from the worker's store, which may serve them at the
# slowest rate a fetch tolerates (protocol.artifacts.MIN_RATE_BYTES_PER_S, repeated here so the spec
# module stays free of I/O imports; a test keeps the two equal).
CHECKPOINT_FETCH_BYTES_PER_S = 1024**2


def estimate_segment_seconds(spec: TaskSpec) -> int:
    """Seconds one segment of `spec` may take to replay on the reference machine (an upper estimate).

    Training kinds: `segment_steps` × (6 × parameters × batch + 10 × activation elements) FLOPs at
    REFERENCE_FLOPS, doubled (and multiplied by PORTABLE_SLOWDOWN for portable arithmetic), plus the
    time to fetch the segment's two checkpoints at CHECKPOINT_FETCH_BYTES_PER_S (their tensors; the
    fixed header allowance is part of REPLAY_OVERHEAD_S), plus REPLAY_OVERHEAD_S. Infer and eval (one
    segment over inputs whose size the spec does not say): `resources.max_wall_s` when set, else
    NON_TRAINING_SEGMENT_S.
    """
    if spec.kind not in TRAINING_KINDS:
        return int(math.ceil(spec.resources.max_wall_s or NON_TRAINING_SEGMENT_S)) + REPLAY_OVERHEAD_S
    per_step = 6 * estimate_parameters(spec) * spec.batch_size + 10 * estimate_activation_elements(spec)
    steps = min(spec.segment_steps, max(spec.steps, 1))
    compute = 2 * steps * per_step / REFERENCE_FLOPS
    if spec.arithmetic != "native":
        compute *= PORTABLE_SLOWDOWN
    fetch = 2 * (max_checkpoint_bytes(spec) - CHECKPOINT_OVERHEAD_BYTES) / CHECKPOINT_FETCH_BYTES_PER_S
    return int(math.ceil(compute + fetch)) + REPLAY_OVERHEAD_S


def estimate_activation_elements(spec: TaskSpec) -> int:
    """Rough count of activation elements held for one batch (forward), for memory screening."""
    infos, _, _ = model_layers(spec.model)
    per_example = _prod(spec.model.input_shape) + sum(info.activation_elements for info in infos)
    return per_example * spec.batch_size


def estimate_memory_bytes(spec: TaskSpec) -> int:
    """Rough device memory a job needs (float32): parameters, gradients and optimizer slots for
    training kinds, plus twice the activations of one batch (forward values kept for backward).
    A screening figure for workers choosing jobs, not a promise. With LoRA, gradients and optimizer
    slots are those of the adapters only; base and adapters are held once."""
    params = estimate_parameters(spec)
    trained = lora_parameters(spec) if spec.lora is not None else params  # LoRA: the base is only read
    copies = 1 + _optimizer_slots(spec) if spec.kind in TRAINING_KINDS and spec.optimizer is not None else 0
    activation_copies = 2 if spec.kind in TRAINING_KINDS else 1
    weights = params + (lora_parameters(spec) if spec.lora is not None else 0)
    return 4 * (weights + trained * copies + estimate_activation_elements(spec) * activation_copies)


CHECKPOINT_OVERHEAD_BYTES = 1_048_576  # safetensors header (names, shapes, offsets) and the metadata JSON


def _optimizer_slots(spec: TaskSpec) -> int:
    if spec.kind not in TRAINING_KINDS or spec.optimizer is None:
        return 0
    return 2 if spec.optimizer.name == "adamw" else (1 if spec.optimizer.momentum > 0 else 0)


def max_checkpoint_bytes(spec: TaskSpec) -> int:
    """An upper bound on the size of any valid checkpoint of `spec`: float32 parameters and optimizer
    slots, the outputs of an infer job (as many rows as `max_dataset_bytes` of inputs can hold), and a
    fixed allowance for the header. A judge never downloads more for a checkpoint, so a worker cannot
    spend a dispute's budget on serving a huge blob slowly (it would not be a checkpoint anyway)."""
    checkpointed = lora_parameters(spec) if spec.lora is not None else estimate_parameters(spec)
    tensors = 4 * checkpointed * (1 + _optimizer_slots(spec))  # LoRA: the adapters only (the base is init_weights)
    if spec.kind == "infer":
        item = 4 if spec.model.input_dtype == "float32" else 8
        rows = spec.resources.max_dataset_bytes // (item * _prod(spec.model.input_shape))
        tensors += 4 * rows * _prod(infer_output_shape(spec))
    return tensors + CHECKPOINT_OVERHEAD_BYTES


def output_shape(model: ModelSpec) -> list[int]:
    """Shape of one example's model output (raises SpecError when the model is inconsistent)."""
    _, problems, final = model_layers(model)
    if problems or final is None:
        raise SpecError("; ".join(f"{p}: {m}" for p, m in problems) or "model has no output")
    return final[0]


def _causal_lm_problems(spec: TaskSpec, final: tuple[list[int], str] | None) -> list[tuple[str, str]]:
    """A causal_lm spec reads token ids [T] and gives next-token logits [T, vocab] (native and portable/1)."""
    problems: list[tuple[str, str]] = []
    model = spec.model
    if model.input_dtype != "int64" or len(model.input_shape) != 1:
        problems.append(("loss", "causal_lm needs a model over int64 token ids of input_shape [T]"))
    elif final is not None and (len(final[0]) != 2 or final[0][0] != model.input_shape[0]):
        problems.append(("loss", f"causal_lm needs logits [T, vocab] per example, the model gives {final[0]}"))
    elif spec.arithmetic != "native" and spec.kind in TRAINING_KINDS:
        # the referee proves the count R_c as a binary32 fold of ones (docs/referee.md, "The causal-LM loss"), which
        # stops at 2^24 where float(R_c) does not: a batch counts at most B·(T − 1) rows (its last positions never)
        counted = spec.batch_size * (model.input_shape[0] - 1)
        if counted > MAX_LM_COUNTED:
            problems.append(("batch_size", f"a portable causal_lm batch counts up to {counted} rows, over "
                                           f"{MAX_LM_COUNTED} (the count must be exact in binary32)"))
    return problems


def _lm_infer_problems(spec: TaskSpec, final: tuple[list[int], str] | None) -> list[tuple[str, str]]:
    assert spec.lm_infer is not None
    problems: list[tuple[str, str]] = []
    model = spec.model
    if spec.kind != "infer":
        problems.append(("lm_infer", f"only for kind infer, not {spec.kind}"))
    if model.input_dtype != "int64" or len(model.input_shape) != 1 or (
            final is not None and (len(final[0]) != 2 or final[0][0] != model.input_shape[0])):
        problems.append(("lm_infer", "needs a language model: int64 ids [T] in, logits [T, vocab] out"))
    generate = spec.lm_infer.mode == "generate"
    if generate != (spec.lm_infer.max_new_tokens is not None):
        problems.append(("lm_infer.max_new_tokens", "required for mode generate, and only for it"))
    elif generate and len(model.input_shape) == 1 and spec.lm_infer.max_new_tokens >= model.input_shape[0]:
        problems.append(("lm_infer.max_new_tokens", f"must leave room for a prompt within T = {model.input_shape[0]}"))
    return problems


def _lora_problems(spec: TaskSpec) -> list[tuple[str, str]]:
    assert spec.lora is not None
    problems: list[tuple[str, str]] = []
    if spec.kind == "train":
        problems.append(("lora", "only for kind finetune (adapters on frozen init_weights), or eval and infer "
                                 "with an adapter, not train"))  # fmt: skip
    if spec.kind in ("eval", "infer") and spec.adapter is None:
        problems.append(("adapter", f"required with lora for kind {spec.kind} (the adapter's tensors)"))
    if len(set(spec.lora.target_modules)) != len(spec.lora.target_modules):
        problems.append(("lora.target_modules", "names a projection twice"))
    blocks = [layer for _, layer in iter_layers(spec.model.layers) if layer.type == "decoder_block"]
    if not blocks:
        problems.append(("lora", "the model has no decoder_block to adapt"))
    for name in spec.lora.target_modules:
        if blocks and not any(name in lora_shapes(block, spec.lora) for block in blocks):
            problems.append(("lora.target_modules", f"no decoder_block has {name} (gate_proj needs mlp swiglu)"))
    return problems


def semantic_problems(spec: TaskSpec) -> list[tuple[str, str]]:
    """Every cross-field problem of a structurally valid spec, as `(field path, message)`."""
    problems: list[tuple[str, str]] = []
    infos, shape_problems, final = model_layers(spec.model)
    problems += shape_problems
    if not shape_problems:
        params = sum(info.parameters for info in infos) + (lora_parameters(spec) if spec.lora is not None else 0)
        if params > spec.resources.max_parameters:
            problems.append(("model", f"has {params} parameters, over resources.max_parameters = {spec.resources.max_parameters}"))
        activations = estimate_activation_elements(spec)
        if activations > spec.resources.max_activation_elements:
            problems.append(("batch_size", f"needs about {activations} activation elements per batch, over "
                             f"resources.max_activation_elements = {spec.resources.max_activation_elements}"))
        if final is not None and final[1] != "float32":
            problems.append(("model.layers", "the model must end in a float output (add layers after the input)"))
        from protocol.builtin_data import BUILTIN_DATASETS, dataset_fit_problems

        facts = BUILTIN_DATASETS.get(spec.dataset.hash) if spec.dataset is not None else None
        if facts is not None and final is not None and spec.kind != "infer":
            # a model that does not fit a shipped dataset could only fail once claimed (audit F-12)
            problems += [("dataset", problem) for problem in dataset_fit_problems(spec, facts, final[0])]
    if spec.loss == "causal_lm":
        problems += _causal_lm_problems(spec, final)
    if spec.lora is not None:
        problems += _lora_problems(spec)
    if spec.lm_infer is not None:
        problems += _lm_infer_problems(spec, final)
    if spec.adapter is not None and (spec.lora is None or spec.kind not in ("eval", "infer")):
        problems.append(("adapter", f"only for kind eval or infer with lora (the adapter's shape), not {spec.kind}"
                                    f"{'' if spec.lora is not None else ' without lora'}"))  # fmt: skip
    if spec.arithmetic != "native":
        problems += [(path, f"{layer.type} is not yet in {spec.arithmetic} (use arithmetic native)")
                     for path, layer in iter_layers(spec.model.layers) if layer.type in NATIVE_ONLY_LAYERS]
    training = spec.kind in TRAINING_KINDS
    if spec.kind in ("train", "finetune", "eval") and spec.dataset is None:
        problems.append(("dataset", f"required for kind {spec.kind}"))
    if spec.kind in ("finetune", "infer", "eval") and spec.init_weights is None:
        problems.append(("init_weights", f"required for kind {spec.kind}"))
    if spec.kind == "train" and spec.init_weights is not None:
        problems.append(("init_weights", "not allowed for kind train (use kind finetune)"))
    if spec.kind == "infer" and spec.inputs is None:
        problems.append(("inputs", "required for kind infer"))
    if spec.kind != "infer" and spec.inputs is not None:
        problems.append(("inputs", f"only used by kind infer, not {spec.kind}"))
    if spec.kind == "infer" and spec.dataset is not None:
        problems.append(("dataset", "not used by kind infer (give inputs)"))
    if training:
        if spec.optimizer is None:
            problems.append(("optimizer", f"required for kind {spec.kind}"))
        if spec.steps < 1:
            problems.append(("steps", f"must be at least 1 for kind {spec.kind}"))
        elif spec.num_segments > MAX_SEGMENTS:
            problems.append(("segment_steps", f"{spec.steps} steps in segments of {spec.segment_steps} make "
                             f"{spec.num_segments} segments, over the limit {MAX_SEGMENTS}"))
        if spec.schedule.warmup_steps > spec.steps:
            problems.append(("schedule.warmup_steps", f"{spec.schedule.warmup_steps} is more than steps = {spec.steps}"))
    else:
        if spec.optimizer is not None:
            problems.append(("optimizer", f"not used by kind {spec.kind}"))
        if spec.steps != 0:
            problems.append(("steps", f"must be 0 for kind {spec.kind}"))
    return problems


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "spec"


def first_error(error: ValidationError, whole: str = "document") -> str:
    """`where: message` of a validation error's first problem, for one-line errors about untrusted
    documents (model sections, HF configs, model cards, manifests)."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or whole
    return f"{where}: {first.get('msg')}"


def _format_errors(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        message = str(item.get("msg", "invalid"))
        if message.startswith("Value error, "):
            # our semantic validator: the message already carries its own field paths
            lines.extend(part for part in message[len("Value error, "):].split("; ") if part)
            continue
        if item.get("type") == "union_tag_invalid":
            context = item.get("ctx", {})
            message = f"unknown {str(context.get('discriminator', 'type')).strip(chr(39))} {context.get('tag')!r} (allowed: {context.get('expected_tags')})"
        lines.append(f"{_format_location(tuple(item.get('loc', ())))}: {message}")
    return lines


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


MAX_INT_DIGITS = 80  # far above any integer a spec or a header holds (2**256 has 78 digits)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {twice[:100]!r} appears twice in one object (parsers disagree on which counts)")
    return document


def parse_untrusted_json(raw: bytes | str) -> Any:
    """`json.loads` for bytes from outside: UTF-8 (json.loads would also guess UTF-16 and
    UTF-32, which other tools and `json_too_deep`'s byte scan do not read), every key once per object,
    integers of at most MAX_INT_DIGITS digits (Python's own int-string limit would raise past the parser
    otherwise), no NaN / Infinity. Every problem is a `ValueError` (JSONDecodeError, UnicodeDecodeError and
    RecursionError included) for the caller to turn into its own error; check `json_too_deep` first."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        try:
            raw = data.decode("utf-8-sig")  # a UTF-8 byte order mark is ignored, as RFC 8259 allows
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 JSON: {exc}") from None
    try:
        return json.loads(raw, parse_int=_bounded_int, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def load_untrusted_json(raw: bytes | str, what: str, error: type[Exception] = SpecError,
                        depth: int = MAX_JSON_DEPTH) -> Any:
    """`raw` parsed by `parse_untrusted_json` after the `json_too_deep` check; any problem is one
    `error` naming `what` ("spec /tmp/x.json", "config.json …"): the one way outside JSON is read."""
    if json_too_deep(raw, depth):
        raise error(f"{what} is nested deeper than {depth} levels")
    try:
        return parse_untrusted_json(raw)
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None


def json_too_deep(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests deeper than `limit` (strings skipped).

    Checked before parsing anything from outside: a document nested a million levels deep can
    exhaust the C stack of the JSON parser when the host raised Python's recursion limit (some test
    and framework plugins do), which would crash the process instead of raising.
    """
    data = raw.encode("utf-8", errors="replace") if isinstance(raw, str) else bytes(raw)
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for char in brackets:
        depth += 1 if char in (0x5B, 0x7B) else -1
        if depth > limit:
            return True
    return False


def load_spec(source: TaskSpec | Mapping[str, Any] | bytes | bytearray | str | Path) -> TaskSpec:
    """Parse and validate a spec from a dict, JSON bytes/text, or a file path.

    Raises `SpecError` whose message lists every problem, one per line, each with its field path.
    A `str` is read as a path unless it starts with `{` (JSON text).
    """
    if isinstance(source, TaskSpec):
        return source
    data: Any
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
            path = Path(source)
            try:
                if path.stat().st_size > MAX_SPEC_BYTES:
                    raise SpecError(f"spec file {path} is larger than {MAX_SPEC_BYTES} bytes")
                raw: bytes | str = path.read_bytes()
            except OSError as exc:
                raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}") from None
        elif isinstance(source, (bytes, bytearray, str)):
            raw = bytes(source) if not isinstance(source, str) else source
        else:
            raise SpecError(f"cannot load a spec from a {type(source).__name__}")
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecError(f"spec is larger than {MAX_SPEC_BYTES} bytes")
        data = load_untrusted_json(raw, "spec")
    if not isinstance(data, dict):
        raise SpecError(f"spec: must be a JSON object, got {type(data).__name__}")
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        lines = _format_errors(exc)
        # cross-field checks only run on a structurally valid spec; the model's shapes can still be
        # checked on their own, so the user sees those problems in the same pass
        if isinstance(data.get("model"), dict) and not any(line.startswith("model") for line in lines):
            try:
                _, problems, _ = model_layers(ModelSpec.model_validate(data["model"]))
                lines += [f"{path}: {message}" for path, message in problems]
            except (ValidationError, RecursionError):
                pass
        count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
        raise SpecError(f"invalid task spec ({count}): " + "; ".join(lines)) from None
    except RecursionError:
        raise SpecError("spec is nested too deeply") from None


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of `TaskSpec` (what `tessera spec schema` prints)."""
    return TaskSpec.model_json_schema()
