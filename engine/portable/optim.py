"""Portable optimizer steps and gradient clipping over torch tensors (docs/arithmetic.md, "Optimizers").

The per-element work runs in the backend of the parameters' device; the per-step constants come from
`scalars` (binary64, rounded once to binary32).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.portable import ops, scalars


def _host(t: torch.Tensor) -> np.ndarray:
    """A writable float32 host array: the tensor's own memory on CPU, a copy otherwise."""
    return t.detach().numpy() if t.device.type == "cpu" and t.is_contiguous() else t.detach().contiguous().cpu().numpy()


def _write_back(t: torch.Tensor, a: np.ndarray) -> None:
    if not (t.device.type == "cpu" and t.is_contiguous()):
        t.copy_(torch.from_numpy(a))


@torch.no_grad()
def step(config: Any, params: list[torch.Tensor], grads: list[torch.Tensor], slots: dict[str, list[torch.Tensor]],
         lr: float, step_number: int) -> None:  # fmt: skip
    """One AdamW or SGD update of every parameter, in place; `step_number` counts from 1."""
    if not params:
        return
    constants = scalars.optimizer_scalars(config, lr, step_number)
    impl = ops.backend(params[0].device)
    recorder = ops.RECORDER if ops.RECORDER is not None and ops.RECORDER.here() else None
    constants_ref = None if recorder is None else recorder.scalars(f"{config.name}_scalars", constants, lr, step_number)
    if ops.takes_tensors(impl):  # the Triton backend updates device tensors in place
        _step_tensors(impl, config, params, grads, slots, constants)
        return
    for index, param in enumerate(params):
        p, g = _host(param), ops.host_array(grads[index])
        if config.name == "adamw":
            m, v = _host(slots["exp_avg"][index]), _host(slots["exp_avg_sq"][index])
            impl.adamw(p, g, m, v, constants)
            _write_back(slots["exp_avg"][index], m)
            _write_back(slots["exp_avg_sq"][index], v)
            if recorder is not None:
                moments = (slots["exp_avg"][index], slots["exp_avg_sq"][index])
                recorder.update("adamw", (param, grads[index], *moments), constants_ref, (param, *moments))
        else:
            buffer = slots["momentum"][index] if "momentum" in slots else None
            b = _host(buffer) if buffer is not None else None
            impl.sgd(p, g, b, constants, bool(config.nesterov))
            if buffer is not None and b is not None:
                _write_back(buffer, b)
            if recorder is not None:
                read = (param, grads[index]) if buffer is None else (param, grads[index], buffer)
                recorder.update("sgd", read, constants_ref, read[:1] + read[2:], (bool(config.nesterov),))
        _write_back(param, p)


def _step_tensors(impl: Any, config: Any, params: list[torch.Tensor], grads: list[torch.Tensor],
                  slots: dict[str, list[torch.Tensor]], constants: dict[str, np.float32]) -> None:  # fmt: skip
    for index, param in enumerate(params):
        if config.name == "adamw":
            impl.adamw(param.detach(), grads[index], slots["exp_avg"][index], slots["exp_avg_sq"][index], constants)
        else:
            buffer = slots["momentum"][index] if "momentum" in slots else None
            impl.sgd(param.detach(), grads[index], buffer, constants, bool(config.nesterov))


@torch.no_grad()
def clip(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """Scale by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖² folded in binary64 in parameter order."""
    if not grads:
        return grads
    impl = ops.backend(grads[0].device)
    norms_of = grads if ops.takes_tensors(impl) else [ops.host_array(g) for g in grads]
    scale = scalars.clip_scale(impl.squared_norm(norms_of), max_norm)
    if ops.RECORDER is not None and ops.RECORDER.here():  # levels 2-3: the recorder scales and records it
        return ops.RECORDER.clip(grads, max_norm, scale)
    return [g * float(scale) for g in grads]
