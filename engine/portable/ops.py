"""tessera-portable/1 ops as torch autograd functions.

Each function computes its forward and backward with one backend module (`cpu`, or `reference` when
`TESSERA_PORTABLE_BACKEND=reference`; CUDA tensors use `cpu` through host copies until the Triton
kernels land), so torch
decides nothing about the bits: autograd only moves tensors, reshapes, and adds the two gradient
contributions of a value that feeds two ops (one rounded addition, commutative). Elementwise ops
written with plain torch here (residual adds, the attention scale, dropout's select and scale) are
single binary32 operations, correctly rounded by every torch kernel.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np
import torch

from protocol.errors import EngineError

BACKEND_ENV = "TESSERA_PORTABLE_BACKEND"
_BACKENDS: dict[str, ModuleType] = {}


def backend_name(device: torch.device) -> str:
    """Which implementation runs ops for tensors on `device`: "reference", "cpu" or "cuda"."""
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower()
    if chosen == "reference":
        return "reference"
    if chosen not in ("", "cpu", "cuda"):
        raise EngineError(f"{BACKEND_ENV} must be reference, cpu or cuda, not {chosen!r}")
    if device.type == "cuda" and chosen == "cuda":
        return "cuda"
    return "cpu"  # CUDA tensors too, through host copies, until the Triton kernels land (same bits)


def backend(device: torch.device) -> ModuleType:
    name = backend_name(device)
    if name not in _BACKENDS:
        if name == "reference":
            from engine.portable import reference as module
        elif name == "cuda":
            from engine.portable import cuda as module  # type: ignore[no-redef]
        else:
            from engine.portable import cpu as module  # type: ignore[no-redef]
        _BACKENDS[name] = module
    return _BACKENDS[name]


def host_array(t: torch.Tensor) -> np.ndarray:
    """A host float32/int64 array of `t` (shared memory on CPU)."""
    return t.detach().contiguous().cpu().numpy()


def _t(a: np.ndarray | np.float32, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.device)


def _impl(t: torch.Tensor) -> Any:
    return backend(t.device)


class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _t(_impl(x).linear(host_array(x), host_array(weight), None if bias is None else host_array(bias)), x)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        dx, dw, db = _impl(x).linear_backward(host_array(x), host_array(weight), host_array(dy))
        return _t(dx, x).reshape(x.shape), _t(dw, x), _t(db, x) if ctx.has_bias else None


class Matmul(torch.autograd.Function):
    """Batched a @ b over matching leading axes."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _t(_impl(a).matmul(host_array(a), host_array(b)), a)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        a, b = ctx.saved_tensors
        impl, d = _impl(a), host_array(dy)
        da = impl.matmul(d, np.ascontiguousarray(np.swapaxes(host_array(b), -1, -2)))
        db = impl.matmul(np.ascontiguousarray(np.swapaxes(host_array(a), -1, -2)), d)
        return _t(da, a), _t(db, a)


class Activation(torch.autograd.Function):
    """relu, tanh or gelu (tanh's backward uses its output, the others their input)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, name: str) -> torch.Tensor:
        impl = _impl(x)
        y = _t(getattr(impl, name)(host_array(x)), x)
        ctx.name = name
        ctx.save_for_backward(y if name == "tanh" else x)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (saved,) = ctx.saved_tensors
        return _t(getattr(_impl(saved), f"{ctx.name}_backward")(host_array(saved), host_array(dy)), saved), None


class Softmax(torch.autograd.Function):
    """Softmax over the last axis."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        y = _t(_impl(z).softmax(host_array(z)), z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        return (_t(_impl(y).softmax_backward(host_array(y), host_array(dy)), y),)


class LayerNorm(torch.autograd.Function):
    """Over the last axis."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        rows = host_array(x).reshape(-1, x.shape[-1])
        y, xhat, rstd = _impl(x).layer_norm(rows, host_array(weight), host_array(bias), eps)
        ctx.save_for_backward(_t(xhat, x), _t(rstd, x), weight)
        return _t(y, x).reshape(x.shape)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        xhat, rstd, weight = ctx.saved_tensors
        dx, dw, db = _impl(xhat).layer_norm_backward(host_array(xhat), host_array(rstd), host_array(weight), host_array(dy).reshape(xhat.shape))
        return _t(dx, xhat).reshape(dy.shape), _t(dw, xhat), _t(db, xhat), None


class Embedding(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.num_embeddings = weight.shape[0]
        return weight.detach()[ids]  # a gather: moves values only

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (ids,) = ctx.saved_tensors
        return None, _t(_impl(dy).embedding_backward(host_array(ids), host_array(dy), ctx.num_embeddings), dy)


class Positional(torch.autograd.Function):
    """x[b, t] + weight[t]; weight's gradient folds over the batch in order."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.weight_shape = weight.shape
        return x + weight.detach()[: x.shape[1]]

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        batch, steps = dy.shape[0], dy.shape[1]
        summed = _impl(dy).sum_rows(host_array(dy).reshape(batch, -1)).reshape(steps, *dy.shape[2:])
        dw = torch.zeros(ctx.weight_shape, dtype=dy.dtype, device=dy.device)
        dw[:steps] = _t(summed, dy)
        return dy, dw


class Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (bias is not None, stride, padding)
        return _t(_impl(x).conv2d(host_array(x), host_array(weight), None if bias is None else host_array(bias), stride, padding), x)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        has_bias, stride, padding = ctx.conf
        dx, dw, db = _impl(x).conv2d_backward(host_array(x), host_array(weight), host_array(dy), stride, padding)
        return _t(dx, x), _t(dw, x), _t(db, x) if has_bias else None, None, None


class MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        y, where = _impl(x).max_pool(host_array(x), kernel, stride)
        ctx.save_for_backward(torch.from_numpy(where))
        ctx.conf = (tuple(x.shape), kernel, stride)
        return _t(y, x)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (where,) = ctx.saved_tensors
        shape, kernel, stride = ctx.conf
        return _t(_impl(dy).max_pool_backward(shape, where.numpy(), host_array(dy), kernel, stride), dy), None, None


class AvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        ctx.conf = (tuple(x.shape), kernel, stride)
        return _t(_impl(x).avg_pool(host_array(x), kernel, stride), x)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        shape, kernel, stride = ctx.conf
        return _t(_impl(dy).avg_pool_backward(shape, host_array(dy), kernel, stride), dy), None, None


class Loss(torch.autograd.Function):
    """The mean loss `kind` ("cross_entropy": rows of logits [R, C] and class ids; "mse": any shape)."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        ctx.save_for_backward(out, y)
        ctx.kind = kind
        value = getattr(_impl(out), kind)(host_array(out), host_array(y))
        return torch.tensor(float(value), dtype=torch.float32, device=out.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        out, y = ctx.saved_tensors
        d = getattr(_impl(out), f"{ctx.kind}_backward")(host_array(out), host_array(y), np.float32(float(grad)))
        return _t(d, out), None, None


def loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The spec's mean loss under portable arithmetic."""
    if kind == "cross_entropy":
        return Loss.apply(out.reshape(-1, out.shape[-1]), y.reshape(-1), kind)
    return Loss.apply(out, y, kind)
