"""Build a torch model from a declarative `ModelSpec`, never running user code.

Each whitelisted layer type maps to one small module below. Sizes were already checked by
`protocol.spec` (shape inference, parameter limits) before this runs, so nothing oversized is
allocated. Parameters are initialised on CPU from a generator seeded by the spec, in a fixed order,
so the initial state (and `h_0`) follows from the spec alone, whatever device trains it later.
Dropout draws from an explicit generator owned by the trainer, never from torch's global RNG.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protocol.errors import EngineError
from protocol.spec import ModelSpec, estimate_parameters, model_layers


class RandomSource:
    """Holds the generator that dropout layers draw from; the trainer reseeds it every step."""

    def __init__(self) -> None:
        self.generator: torch.Generator | None = None


class SeededDropout(nn.Module):
    """Inverted dropout with the mask drawn from `source.generator` (identity in eval mode)."""

    def __init__(self, p: float, source: RandomSource):
        super().__init__()
        self.p = float(p)
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        generator = self.source.generator
        if generator is None:
            raise EngineError("dropout needs the trainer's generator (internal error)")
        keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


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

    def __init__(self, mode: str, kernel: int, stride: int):
        super().__init__()
        self.mode, self.kernel, self.stride = mode, kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            return F.max_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(x, self.kernel, self.stride)


class PositionalEmbedding(nn.Module):
    """Adds a learned vector per position to a `[B, T, D]` input."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention written out (matmul, mask, softmax), no fused kernels, so its
    arithmetic is the same on every backend and deterministic mode always has a kernel for it."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, source: RandomSource):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = SeededDropout(dropout, source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        head = width // self.n_heads
        q, k, v = self.qkv(x).split(width, dim=-1)
        q = q.reshape(batch, steps, self.n_heads, head).transpose(1, 2)
        k = k.reshape(batch, steps, self.n_heads, head).transpose(1, 2)
        v = v.reshape(batch, steps, self.n_heads, head).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head))
        future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(1)
        weights = self.dropout(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(batch, steps, width)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-norm GPT block: attention and a GELU MLP, each inside a residual connection."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, source: RandomSource):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, source)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = SeededDropout(dropout, source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class Residual(nn.Module):
    """`x + f(x)`."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Elementwise(nn.Module):
    """ReLU, exact-erf GELU or tanh."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "relu":
            return torch.relu(x)
        if self.name == "gelu":
            return F.gelu(x)
        return torch.tanh(x)


def _build_layer(layer: Any, source: RandomSource) -> nn.Module:
    kind = layer.type
    if kind == "linear":
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if kind == "conv2d":
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias)
    if kind in ("maxpool2d", "avgpool2d"):
        return Pool2d(kind[:3], layer.kernel_size, layer.stride or layer.kernel_size)
    if kind in ("relu", "gelu", "tanh"):
        return Elementwise(kind)
    if kind == "layernorm":
        return nn.LayerNorm(layer.normalized_shape, eps=layer.eps)
    if kind == "dropout":
        return SeededDropout(layer.p, source)
    if kind == "embedding":
        return nn.Embedding(layer.num_embeddings, layer.embedding_dim)
    if kind == "positional_embedding":
        return PositionalEmbedding(layer.max_len, layer.embedding_dim)
    if kind == "causal_self_attention":
        return CausalSelfAttention(layer.d_model, layer.n_heads, layer.dropout, source)
    if kind == "transformer_block":
        return TransformerBlock(layer.d_model, layer.n_heads, layer.d_ff, layer.dropout, source)
    if kind == "flatten":
        return Flatten()
    if kind == "reshape":
        return Reshape(layer.shape)
    if kind == "residual":
        return Residual(nn.Sequential(*(_build_layer(inner, source) for inner in layer.layers)))
    if kind == "sequential":
        return nn.Sequential(*(_build_layer(inner, source) for inner in layer.layers))
    raise EngineError(f"unknown layer type {kind!r}")


class TaskModel(nn.Module):
    """The whole model: `layers` in order, plus the dropout random source."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.source = RandomSource()
        self.layers = nn.Sequential(*(_build_layer(layer, self.source) for layer in spec.layers))

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


def build_model(spec: ModelSpec, init_seed: int) -> TaskModel:
    """A CPU model for `spec`, initialised from `init_seed`. Raises EngineError on inconsistency."""
    _, problems, _ = model_layers(spec)
    if problems:
        raise EngineError("model description is inconsistent: " + "; ".join(f"{p}: {m}" for p, m in problems))
    with torch.device("cpu"):
        model = TaskModel(spec)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(init_seed)
    _initialise(model, generator)
    count = sum(p.numel() for p in model.parameters())
    expected = estimate_parameters(spec)
    if count != expected:  # the spec's estimate is what workers filter on; it must be exact
        raise EngineError(f"model has {count} parameters but the spec estimate is {expected} (internal error)")
    return model
