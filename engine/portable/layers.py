"""torch's parameter-holding layers with portable forwards, and the portable initialisation.

The subclasses keep torch's parameter names and shapes, so a portable model's weights file, its
checkpoints and everything that reads them look exactly like a native model's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from engine.portable import ops
from engine.portable import random as prandom

EMBEDDING_STD = np.float32(0.02)


class PortableLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.Linear.apply(x, self.weight, self.bias)


class PortableConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.Conv2d.apply(x, self.weight, self.bias, int(self.stride[0]), int(self.padding[0]))


class PortableLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.LayerNorm.apply(x, self.weight, self.bias, float(self.eps))


class PortableEmbedding(nn.Embedding):
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ops.Embedding.apply(ids, self.weight)


@torch.no_grad()
def initialise(model: nn.Module, key_of: Callable[[str], int]) -> None:
    """docs/arithmetic.md, "Initialisation": each parameter from its own counter stream, keyed by its
    name (`key_of(name)`): linear and conv weights and biases U(±1/√fan_in), embeddings N(0, 0.02²)
    (Irwin-Hall), layer norms ones and zeros, RMSNorm weights ones, an untied LM head's weight as an
    embedding and its bias zeros."""
    from engine.model import LMHead, PositionalEmbedding, RMSNorm

    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            bound = prandom.fan_in_bound(module.weight[0].numel())
            for attr in ("weight", "bias"):
                param = getattr(module, attr)
                if param is not None:
                    values = prandom.uniform_symmetric(key_of(prefix + attr), param.numel(), bound)
                    param.copy_(torch.from_numpy(values).reshape(param.shape))
        elif isinstance(module, (nn.Embedding, PositionalEmbedding)):
            values = prandom.normal(key_of(prefix + "weight"), module.weight.numel(), EMBEDDING_STD)
            module.weight.copy_(torch.from_numpy(values).reshape(module.weight.shape))
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.fill_(0.0)
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, LMHead):  # an untied head's weight as an embedding's; a tied one has none
            if module.weight is not None:
                values = prandom.normal(key_of(prefix + "weight"), module.weight.numel(), EMBEDDING_STD)
                module.weight.copy_(torch.from_numpy(values).reshape(module.weight.shape))
            if module.bias is not None:
                module.bias.fill_(0.0)
