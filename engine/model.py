"""Build a torch model from a declarative `ModelSpec`, never running user code.

Each whitelisted layer type maps to one small module below. Sizes were already checked by
`protocol.spec` (shape inference, parameter limits) before this runs, so nothing oversized is
allocated. Parameters are initialised on CPU from a generator seeded by the spec, in a fixed order,
so the initial state (and `h_0`) follows from the spec alone, whatever device trains it later.
Dropout draws from an explicit generator owned by the trainer, never from torch's global RNG.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protocol.errors import EngineError
from protocol.spec import NATIVE_ONLY_LAYERS, ModelSpec, estimate_parameters, iter_layers, model_layers


class RandomSource:
    """What dropout layers draw from, set by the trainer every step: a torch generator (native), or
    for portable arithmetic the key of each dropout call of the step, in forward order."""

    def __init__(self) -> None:
        self.generator: torch.Generator | None = None
        self.dropout_key: Callable[[int], int] | None = None
        self.calls = 0

    def start_step(self, dropout_key: Callable[[int], int]) -> None:
        """Portable arithmetic: call number c of this step draws from counter stream `dropout_key(c)`."""
        self.dropout_key, self.calls = dropout_key, 0

    def next_key(self) -> int:
        if self.dropout_key is None:
            raise EngineError("portable dropout needs the trainer's step key (internal error)")
        key = self.dropout_key(self.calls)
        self.calls += 1
        return key


class SeededDropout(nn.Module):
    """Inverted dropout with the mask drawn from `source.generator` (identity in eval mode)."""

    def __init__(self, p: float, source: RandomSource, portable: bool = False):
        super().__init__()
        self.p = float(p)
        self.source = source
        self.portable = portable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.portable:  # docs/arithmetic.md, "Dropout": y = keep ? x·scale : +0
            mask, scale = self.portable_mask(x.shape, x)
            return torch.where(mask, x * scale, 0.0)
        generator = self.source.generator
        if generator is None:
            raise EngineError("dropout needs the trainer's generator (internal error)")
        keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


    def portable_mask(self, shape: tuple[int, ...], like: torch.Tensor) -> tuple[torch.Tensor | None, float]:
        """Portable arithmetic: this call's keep mask for a tensor of `shape` on `like`'s device and the
        kept values' scale, or (None, 1.0) when dropout is off (eval mode or p = 0: no key is drawn)."""
        if not self.training or self.p == 0.0:
            return None, 1.0
        from engine.portable import ops
        from engine.portable import random as prandom

        mask = ops.dropout_keep(tuple(shape), like.device, self.source.next_key(), self.p)
        return mask, float(prandom.keep_scale(self.p))


class Reshape(nn.Module):
    """Reshape the non-batch dimensions."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Flatten(nn.Module):
    """Flatten the non-batch dimensions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class Pool2d(nn.Module):
    """Max or average pooling with a fixed kernel and stride."""

    def __init__(self, mode: str, kernel: int, stride: int, portable: bool = False):
        super().__init__()
        self.mode, self.kernel, self.stride, self.portable = mode, kernel, stride, portable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:
            from engine.portable import ops

            return (ops.MaxPool if self.mode == "max" else ops.AvgPool).apply(x, self.kernel, self.stride)
        if self.mode == "max":
            return F.max_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(x, self.kernel, self.stride)


class PositionalEmbedding(nn.Module):
    """Adds a learned vector per position to a `[B, T, D]` input."""

    def __init__(self, max_len: int, dim: int, portable: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        self.portable = portable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:
            from engine.portable import ops

            return ops.Positional.apply(x, self.weight)
        return x + self.weight[: x.shape[1]]


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention written out (matmul, mask, softmax), no fused kernels, so its
    arithmetic is the same on every backend and deterministic mode always has a kernel for it."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, source: RandomSource, portable: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.portable = portable
        linear = _classes(portable)["linear"]
        self.qkv = linear(d_model, 3 * d_model)
        self.proj = linear(d_model, d_model)
        self.dropout = SeededDropout(dropout, source, portable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        head = width // self.n_heads
        q, k, v = self.qkv(x).split(width, dim=-1)
        q = q.reshape(batch, steps, self.n_heads, head).transpose(1, 2)
        k = k.reshape(batch, steps, self.n_heads, head).transpose(1, 2)
        v = v.reshape(batch, steps, self.n_heads, head).transpose(1, 2)
        if self.portable:
            return self._portable_heads(q, k, v, batch, steps, width, head)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head))
        future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(1)
        weights = self.dropout(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(batch, steps, width)
        return self.proj(out)

    def _portable_heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: int, steps: int,
                        width: int, head: int) -> torch.Tensor:  # fmt: skip
        """docs/arithmetic.md, "Attention": scale = 1/√head in binary32, −inf above the diagonal."""
        from engine.portable import ops

        scale = float(np.float32(1.0) / np.sqrt(np.float32(head)))
        keep, keep_scale = self.dropout.portable_mask(q.shape[:-1] + (steps,), q)
        out = ops.CausalAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), scale, keep, keep_scale)
        return self.proj(out.transpose(1, 2).reshape(batch, steps, width))


class TransformerBlock(nn.Module):
    """Pre-norm GPT block: attention and a GELU MLP, each inside a residual connection."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, source: RandomSource, portable: bool = False):
        super().__init__()
        classes = _classes(portable)
        self.ln1 = classes["layernorm"](d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, source, portable)
        self.ln2 = classes["layernorm"](d_model)
        self.fc1 = classes["linear"](d_model, d_ff)
        self.fc2 = classes["linear"](d_ff, d_model)
        self.dropout = SeededDropout(dropout, source, portable)
        self.gelu = Elementwise("gelu", portable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.dropout(self.fc2(self.gelu(self.fc1(self.ln2(x)))))


class RMSNorm(nn.Module):
    """`x / sqrt(mean(x²) + eps) · weight` over the last dimension (Llama's RMSNorm, float32)."""

    def __init__(self, dim: int, eps: float, portable: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = float(eps)
        self.portable = portable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:
            from engine.portable import ops

            return ops.RMSNorm.apply(x, self.weight, self.eps)
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotary_tables(steps: int, width: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `[steps, width]` of rotary positions 0..steps-1, computed as Hugging Face computes
    them (inverse frequencies `1 / theta^(2i/width)` in float32, each angle repeated for both halves)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, width, 2, dtype=torch.int64, device=device).float() / width))
    angles = torch.arange(steps, device=device).float()[:, None] * inv_freq[None, :]
    table = torch.cat((angles, angles), dim=-1)
    return table.cos(), table.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in the half-split layout (`rotate_half`): pairs (i, i + width/2)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


@functools.lru_cache(maxsize=16)
def _portable_rotary_tables(steps: int, width: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """portable/1's binary32 tables (host binary64, no libm): computed once per shape."""
    from engine.portable.rotary_tables import rotary_tables as portable_tables

    cos, sin = portable_tables(steps, width, theta)
    cos.setflags(write=False)
    sin.setflags(write=False)
    return cos, sin


class DecoderBlock(nn.Module):
    """Pre-norm decoder block (GPT-2 and the Llama family): causal grouped-query attention with
    optional rotary positions, then a GELU or SwiGLU MLP, each in a residual connection. Attention is
    written out (matmul, mask, softmax, matmul) like CausalSelfAttention: no fused kernels.

    Submodule names follow Hugging Face's Llama layer (q_proj, k_proj, v_proj, o_proj, gate_proj,
    up_proj, down_proj) so import and export are renames (protocol/hf_import.py)."""

    def __init__(self, layer: Any, source: RandomSource, portable: bool = False):
        super().__init__()
        d, width = layer.d_model, layer.head_width
        self.portable = portable
        classes = _classes(portable)
        linear = classes["linear"]
        self.n_heads, self.kv_heads, self.width = layer.n_heads, layer.kv_heads, width
        self.rotary = layer.positions == "rotary"
        self.theta = float(layer.rope_theta)
        self.mlp = layer.mlp
        layernorm = classes["layernorm"]
        norm = (lambda: layernorm(d, eps=layer.norm_eps)) if layer.norm == "layernorm" else (lambda: RMSNorm(d, layer.norm_eps, portable))
        self.attn_norm = norm()
        self.q_proj = linear(d, layer.n_heads * width, bias=layer.qkv_bias)
        self.k_proj = linear(d, layer.kv_heads * width, bias=layer.qkv_bias)
        self.v_proj = linear(d, layer.kv_heads * width, bias=layer.qkv_bias)
        self.o_proj = linear(layer.n_heads * width, d, bias=layer.out_bias)
        self.mlp_norm = norm()
        if layer.mlp == "swiglu":
            self.gate_proj = linear(d, layer.d_ff, bias=layer.mlp_bias)
        self.up_proj = linear(d, layer.d_ff, bias=layer.mlp_bias)
        self.down_proj = linear(layer.d_ff, d, bias=layer.mlp_bias)
        self.attn_dropout = SeededDropout(layer.dropout, source, portable)
        self.resid_dropout = SeededDropout(layer.dropout, source, portable)
        activation = {"swiglu": "silu", "gelu_tanh": "gelu_tanh", "gelu": "gelu"}[layer.mlp]
        self.activation = Elementwise(activation, portable) if portable else None  # (no parameters)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:
            return self._portable_attention(x)
        batch, steps, _ = x.shape
        q = self.q_proj(x).reshape(batch, steps, self.n_heads, self.width).transpose(1, 2)
        k = self.k_proj(x).reshape(batch, steps, self.kv_heads, self.width).transpose(1, 2)
        v = self.v_proj(x).reshape(batch, steps, self.kv_heads, self.width).transpose(1, 2)
        if self.rotary:
            cos, sin = rotary_tables(steps, self.width, self.theta, x.device)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if self.kv_heads != self.n_heads:  # each key/value head serves n_heads / kv_heads query heads
            group = self.n_heads // self.kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.width))
        future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(1)
        weights = self.attn_dropout(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(batch, steps, self.n_heads * self.width)
        return self.o_proj(out)

    def _portable_attention(self, x: torch.Tensor) -> torch.Tensor:
        """docs/arithmetic.md, section 5a: q, k and v as one linear over the concatenated weights (so the
        input's gradient is one fold, not three contributions), rotary on q and k, key/value heads
        shared by query-head groups, then section 5's attention core."""
        from engine.portable import ops

        batch, steps, _ = x.shape
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = torch.cat([p.weight for p in projections])
        bias = None if self.q_proj.bias is None else torch.cat([p.bias for p in projections])
        sizes = [self.n_heads * self.width, self.kv_heads * self.width, self.kv_heads * self.width]
        adapted = [(i, p) for i, p in enumerate(projections) if hasattr(p, "lora_A")]  # LoRA (docs/arithmetic.md 5b)
        if adapted:
            from engine.lora import portable_scale

            starts = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
            slices = tuple((starts[i], starts[i + 1]) for i, _ in adapted)
            tensors = [t for _, p in adapted for t in (p.lora_A, p.lora_B)]
            fused = ops.AdaptedLinear.apply(x, weight, bias, portable_scale(adapted[0][1].scale), slices, *tensors)
        else:
            fused = ops.Linear.apply(x, weight, bias)
        q, k, v = fused.split(sizes, dim=-1)
        q = q.reshape(batch, steps, self.n_heads, self.width).transpose(1, 2)
        k = k.reshape(batch, steps, self.kv_heads, self.width).transpose(1, 2)
        v = v.reshape(batch, steps, self.kv_heads, self.width).transpose(1, 2)
        if self.rotary:
            cos, sin = _portable_rotary_tables(steps, self.width, self.theta)
            q, k = ops.Rotary.apply(q, cos, sin), ops.Rotary.apply(k, cos, sin)
        group = self.n_heads // self.kv_heads
        k, v = ops.ShareHeads.apply(k, group), ops.ShareHeads.apply(v, group)
        scale = float(np.float32(1.0) / np.sqrt(np.float32(self.width)))
        keep, keep_scale = self.attn_dropout.portable_mask(q.shape[:-1] + (steps,), q)
        out = ops.CausalAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), scale, keep, keep_scale)
        return self.o_proj(out.transpose(1, 2).reshape(batch, steps, self.n_heads * self.width))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation is not None:  # portable: silu(gate) × up is one binary32 product
            if self.mlp == "swiglu":
                return self.down_proj(self.activation(self.gate_proj(x)) * self.up_proj(x))
            return self.down_proj(self.activation(self.up_proj(x)))
        if self.mlp == "swiglu":
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        approximate = "tanh" if self.mlp == "gelu_tanh" else "none"
        return self.down_proj(F.gelu(self.up_proj(x), approximate=approximate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.resid_dropout(self.attention(self.attn_norm(x)))
        return x + self.resid_dropout(self.feed_forward(self.mlp_norm(x)))


class LMHead(nn.Module):
    """Logits `x · Wᵀ (+ b)`. A tied head reads the token embedding's weight at each call through a
    reference that is not a registered submodule, so the shared tensor is one parameter, listed once
    (under the embedding's name) in `named_parameters`, checkpoints and weights."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool, tied: bool, portable: bool = False):
        super().__init__()
        self.tied = tied
        self.portable = portable
        self.weight = None if tied else nn.Parameter(torch.empty(vocab_size, d_model))
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None
        self._embedding: list[nn.Embedding] = []  # a plain list: not registered, not in state_dict

    def tie(self, embedding: nn.Embedding) -> None:
        self._embedding[:] = [embedding]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tied:
            if not self._embedding:
                raise EngineError("tied lm_head has no embedding bound (internal error)")
            weight = self._embedding[0].weight
        else:
            weight = self.weight
        if self.portable:  # a tied weight's two gradients (embedding, head) are added once by autograd
            from engine.portable import ops

            return ops.Linear.apply(x, weight, self.bias)
        return F.linear(x, weight, self.bias)


class Residual(nn.Module):
    """`x + f(x)`."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Elementwise(nn.Module):
    """ReLU, exact-erf GELU or tanh (portable arithmetic also: silu, gelu_tanh)."""

    def __init__(self, name: str, portable: bool = False):
        super().__init__()
        self.name = name
        self.portable = portable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:
            from engine.portable import ops

            return ops.Activation.apply(x, self.name)
        if self.name == "relu":
            return torch.relu(x)
        if self.name == "gelu":
            return F.gelu(x)
        return torch.tanh(x)


def _classes(portable: bool) -> dict[str, type[nn.Module]]:
    """torch's parameter-holding layers, or their portable subclasses (same parameters)."""
    if portable:
        from engine.portable import layers

        return {"linear": layers.PortableLinear, "conv2d": layers.PortableConv2d, "layernorm": layers.PortableLayerNorm,
                "embedding": layers.PortableEmbedding}  # fmt: skip
    return {"linear": nn.Linear, "conv2d": nn.Conv2d, "layernorm": nn.LayerNorm, "embedding": nn.Embedding}


def _build_layer(layer: Any, source: RandomSource, portable: bool) -> nn.Module:
    kind = layer.type
    classes = _classes(portable)
    if kind == "linear":
        return classes["linear"](layer.in_features, layer.out_features, bias=layer.bias)
    if kind == "conv2d":
        return classes["conv2d"](layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias)
    if kind in ("maxpool2d", "avgpool2d"):
        return Pool2d(kind[:3], layer.kernel_size, layer.stride or layer.kernel_size, portable)
    if kind in ("relu", "gelu", "tanh"):
        return Elementwise(kind, portable)
    if kind == "layernorm":
        return classes["layernorm"](layer.normalized_shape, eps=layer.eps)
    if kind == "dropout":
        return SeededDropout(layer.p, source, portable)
    if kind == "embedding":
        return classes["embedding"](layer.num_embeddings, layer.embedding_dim)
    if kind == "positional_embedding":
        return PositionalEmbedding(layer.max_len, layer.embedding_dim, portable)
    if kind == "causal_self_attention":
        return CausalSelfAttention(layer.d_model, layer.n_heads, layer.dropout, source, portable)
    if kind == "transformer_block":
        return TransformerBlock(layer.d_model, layer.n_heads, layer.d_ff, layer.dropout, source, portable)
    if kind == "rmsnorm":
        return RMSNorm(layer.normalized_shape, layer.eps, portable)
    if kind == "decoder_block":
        return DecoderBlock(layer, source, portable)
    if kind == "lm_head":
        return LMHead(layer.d_model, layer.vocab_size, layer.bias, layer.tie_to_embedding, portable)
    if kind == "flatten":
        return Flatten()
    if kind == "reshape":
        return Reshape(layer.shape)
    if kind == "residual":
        return Residual(nn.Sequential(*(_build_layer(inner, source, portable) for inner in layer.layers)))
    if kind == "sequential":
        return nn.Sequential(*(_build_layer(inner, source, portable) for inner in layer.layers))
    raise EngineError(f"unknown layer type {kind!r}")


class TaskModel(nn.Module):
    """The whole model: `layers` in order, plus the dropout random source."""

    def __init__(self, spec: ModelSpec, portable: bool = False):
        super().__init__()
        self.source = RandomSource()
        self.layers = nn.Sequential(*(_build_layer(layer, self.source, portable) for layer in spec.layers))
        heads = [module for module in self.modules() if isinstance(module, LMHead) and module.tied]
        if heads:  # the first embedding, depth-first (= module order), as protocol.spec checks
            embedding = next(module for module in self.modules() if isinstance(module, nn.Embedding))
            for head in heads:
                head.tie(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _initialise(model: nn.Module, generator: torch.Generator) -> None:
    """Deterministic init in module order: uniform(±1/sqrt(fan_in)) for linear/conv weights and
    biases, N(0, 0.02) for embeddings, ones/zeros for layer norms."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                for param in (module.weight, module.bias):
                    if param is not None:
                        param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)
            elif isinstance(module, (nn.Embedding, PositionalEmbedding)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, LMHead):
                if module.weight is not None:
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
                if module.bias is not None:
                    module.bias.fill_(0.0)


def build_model(spec: ModelSpec, init_seed: int, arithmetic: str = "native", *, initialise: bool = True) -> TaskModel:
    """A CPU model for `spec` in `arithmetic` ("native" or "portable/1"), initialised from `init_seed`.
    `initialise=False` skips drawing the values, for a caller that overwrites every parameter (a job that
    loads `init_weights`): portable/1 draws them one counter stream at a time, about 50 s for 124M
    parameters on a 2-core box. Raises EngineError on inconsistency."""
    _, problems, _ = model_layers(spec)
    if problems:
        raise EngineError("model description is inconsistent: " + "; ".join(f"{p}: {m}" for p, m in problems))
    portable = arithmetic != "native"
    if portable:  # the spec validator refuses these too; a direct call must not run them natively unnoticed
        native_only = sorted({layer.type for _, layer in iter_layers(spec.layers)} & NATIVE_ONLY_LAYERS)
        if native_only:
            raise EngineError(f"{', '.join(native_only)} not yet in {arithmetic}")
    with torch.device("cpu"):
        model = TaskModel(spec, portable)
    if initialise and portable:
        from engine.portable.layers import initialise as portable_initialise
        from engine.seeds import derive_seed

        portable_initialise(model, lambda name: derive_seed(init_seed, "param", name))
    elif initialise:
        generator = torch.Generator(device="cpu")
        generator.manual_seed(init_seed)
        _initialise(model, generator)
    count = sum(p.numel() for p in model.parameters())
    expected = estimate_parameters(spec)
    if count != expected:  # the spec's estimate is what workers filter on; it must be exact
        raise EngineError(f"model has {count} parameters but the spec estimate is {expected} (internal error)")
    return model
