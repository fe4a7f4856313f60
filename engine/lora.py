"""Low-rank adapters (LoRA, Hu et al. 2021) on the projections of decoder blocks (`finetune` + `lora`).

`apply_lora` swaps each target `nn.Linear` of every DecoderBlock for a LoRALinear that keeps the
same weight and bias parameters (so their names, and the base's hash, are unchanged) and adds
`lora_A` [rank, in] and `lora_B` [out, rank]. The base is frozen; the adapters are the job's
trainable, checkpointed and output parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protocol.spec import LORA_TARGETS, LoRA
from engine.model import DecoderBlock

ADAPTER_SUFFIXES = (".lora_A", ".lora_B")


class LoRALinear(nn.Linear):
    """`W x (+ b) + scale · B (A x)`: the base projection plus its low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, scale: float, portable: bool = False):
        nn.Module.__init__(self)
        self.portable = portable
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias  # the same Parameter objects: names and values kept
        self.scale = scale
        self.lora_A = nn.Parameter(torch.zeros(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.portable:  # docs/arithmetic.md, section 5b: one node, the frozen base gets no gradient
            from engine.portable import ops

            return ops.AdaptedLinear.apply(x, self.weight, self.bias, portable_scale(self.scale),
                                           ((0, self.out_features),), self.lora_A, self.lora_B)  # fmt: skip
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale


def portable_scale(scale: float) -> float:
    """binary32(alpha / rank): the binary64 quotient rounded once (docs/arithmetic.md, section 5b)."""
    return float(np.float32(scale))


@torch.no_grad()
def apply_lora(model: nn.Module, lora: LoRA, init_seed: int, portable: bool = False) -> dict[str, nn.Parameter]:
    """Add adapters to `model` in place, freeze everything else, and return the adapters by name.

    A is uniform(±1/sqrt(in)) (PEFT's default, kaiming-uniform with a = sqrt(5)) drawn in module
    order from `init_seed`; B is zero, so the adapted model computes exactly what the base does.
    Portable arithmetic draws A from counter streams keyed by the adapter's parameter name instead
    (docs/arithmetic.md, section 7), so no generator of any torch release decides its bits.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    generator = torch.Generator(device="cpu").manual_seed(init_seed)
    blocks = [module for module in model.modules() if isinstance(module, DecoderBlock)]
    for block in blocks:
        for name in lora_shapes_of(block, lora):
            adapted = LoRALinear(getattr(block, name), lora.rank, lora.scale, portable)
            bound = 1.0 / math.sqrt(adapted.in_features)
            adapted.lora_A.copy_(((torch.rand(adapted.lora_A.shape, generator=generator) * 2 - 1) * bound)
                                 .to(adapted.lora_A.device))  # fmt: skip
            setattr(block, name, adapted)
    adapters = adapter_parameters(model)
    if portable:
        from engine.portable import random as prandom
        from engine.seeds import derive_seed

        for param_name, param in adapters.items():
            if param_name.endswith(".lora_A"):
                key = derive_seed(init_seed, "param", param_name)
                values = prandom.uniform_symmetric(key, param.numel(), prandom.fan_in_bound(param.shape[1]))
                param.copy_(torch.from_numpy(values).reshape(param.shape).to(param.device))
    return adapters


def lora_shapes_of(block: DecoderBlock, lora: LoRA) -> list[str]:
    """The target projections `block` has (gate_proj only with SwiGLU), in the fixed order of
    protocol.spec.LORA_TARGETS (q, k, v, o, gate, up, down): the order A is drawn in."""
    return [name for name in LORA_TARGETS if name in lora.target_modules and hasattr(block, name)]


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter parameters of `model` by name, in module order."""
    return {name: param for name, param in model.named_parameters() if name.endswith(ADAPTER_SUFFIXES)}
