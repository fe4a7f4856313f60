"""tessera-portable/1 ops as torch autograd functions.

Each function computes its forward and backward with one backend module, so torch decides nothing
about the bits: `cpu` (numba) for CPU tensors, `cuda` (Triton) for CUDA tensors, `reference` when
`TESSERA_PORTABLE_BACKEND=reference`. The NumPy backends take and return host arrays (a CUDA tensor
then travels through a host copy: `TESSERA_PORTABLE_BACKEND=cpu`); the Triton one takes and returns
device tensors. Autograd only moves tensors, reshapes, and adds the two gradient contributions of a
value that feeds two ops (one rounded addition, commutative). Elementwise ops written with plain torch
here (residual adds, the attention scale, dropout's select and scale) are single binary32 operations,
correctly rounded by every torch kernel.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import torch

from protocol.errors import EngineError

BACKEND_ENV = "TESSERA_PORTABLE_BACKEND"
_BACKENDS: dict[str, ModuleType] = {}
# an engine.portable.record.Recorder while a step is recorded (levels 2-3), else None; it records only the
# calls of the thread that recorded it (`here()`), so other jobs in the process are not mixed in
RECORDER: Any = None


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    """Whether triton can be imported (looked up once: backend_name runs for every op)."""
    return importlib.util.find_spec("triton") is not None


def backend_name(device: torch.device) -> str:
    """Which implementation runs ops for tensors on `device`: "reference", "cpu" or "cuda".

    CUDA tensors get the Triton kernels unless the variable says `cpu` (host copies, same bits) or
    triton is missing; `cuda` on CPU tensors is honoured only under TRITON_INTERPRET=1 (Triton's CPU
    interpreter: how the tests run the kernels without a GPU). While a step is recorded it is always the
    NumPy one: the recorder reads host arrays, and every backend gives the same bits."""
    if RECORDER is not None:
        return "cpu"
    # asked for every op: the answer is cached per (device type, the two variables' values)
    return _backend_name(device.type, os.environ.get(BACKEND_ENV, ""), os.environ.get("TRITON_INTERPRET"))


@functools.lru_cache(maxsize=64)
def _backend_name(device_type: str, variable: str, interpret: str | None) -> str:
    chosen = variable.strip().lower()
    if chosen == "reference":
        return "reference"
    if chosen not in ("", "cpu", "cuda"):
        raise EngineError(f"{BACKEND_ENV} must be reference, cpu or cuda, not {chosen!r}")
    if chosen == "cuda" and not _triton_available():
        raise EngineError(f"{BACKEND_ENV}=cuda needs the triton package")
    if device_type == "cuda" and (chosen == "cuda" or (chosen == "" and _triton_available())):
        return "cuda"
    if chosen == "cuda" and interpret == "1":
        return "cuda"
    return "cpu"


def backend(device: torch.device) -> ModuleType:
    name = backend_name(device)
    if name not in _BACKENDS:
        if name == "reference":
            from engine.portable import reference as module
        elif name == "cuda":
            from engine.portable import cuda as module  # type: ignore[no-redef]  # imports triton: only when used
        else:
            from engine.portable import cpu as module  # type: ignore[no-redef]
        _BACKENDS[name] = module
    return _BACKENDS[name]


def takes_tensors(impl: ModuleType) -> bool:
    """True for a backend whose functions take and return torch tensors (the Triton one)."""
    return bool(getattr(impl, "TAKES_TENSORS", False))


def host_array(t: torch.Tensor) -> np.ndarray:
    """A host float32/int64 array of `t` (shared memory on CPU)."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    return (t if t.device.type == "cpu" else t.cpu()).numpy()


def _t(a: np.ndarray | np.float32, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.device)


def _impl(t: torch.Tensor) -> Any:
    return backend(t.device)


def _as_tensors(value: Any, like: torch.Tensor) -> Any:
    """A NumPy backend's result as tensors on `like`'s device (scalars stay scalars)."""
    if isinstance(value, tuple):
        return tuple(_as_tensors(v, like) for v in value)
    if isinstance(value, np.ndarray):
        return _t(value, like)
    return value


def _run(like: torch.Tensor, name: str, *args: Any) -> Any:
    """Backend op `name` for `like`'s device: tensors in and out, converted at the boundary for the
    NumPy backends (one place, so no op forgets a direction)."""
    impl = _impl(like)
    if takes_tensors(impl):
        result = getattr(impl, name)(*args)
    else:
        host = [host_array(a) if isinstance(a, torch.Tensor) else a for a in args]
        result = _as_tensors(getattr(impl, name)(*host), like)
    if RECORDER is not None and RECORDER.here() and not RECORDER.paused:
        RECORDER.kernel(name, args, result)
    return result


SMALLEST_SUBNORMAL = np.float32(2.0**-149)


def require_ieee_subnormals() -> None:
    """Refuse to compute portable/1 in a thread that flushes subnormals to zero.

    FTZ/DAZ are per-thread CPU modes that a library may switch on (`torch.set_flush_denormal(True)`,
    some BLAS and fast-math builds); they change results the arithmetic defines (exp(−100) is a
    subnormal, not +0), so a job run under them would commit bits no judge reproduces. Checked in the
    thread that computes, before each portable run, through NumPy and the compiled kernels alike."""
    from engine.portable import cpu

    flushed = (SMALLEST_SUBNORMAL * np.float32(1.0) == 0
               or cpu.exp(np.array([-100.0], dtype=np.float32))[0] == 0)  # fmt: skip
    if flushed:
        raise EngineError("this thread flushes subnormal floats to zero (FTZ/DAZ, e.g. torch.set_flush_denormal(True)): "
                          "portable arithmetic needs IEEE subnormals, so the run is refused")


def dropout_keep(shape: tuple[int, ...], device: torch.device, key: int, p: float) -> torch.Tensor:
    """Dropout's keep mask for a tensor of `shape` (docs/arithmetic.md, "Dropout") on `device`: drawn
    by `engine.portable.random` for the reference backend, by its compiled twin otherwise (integer
    arithmetic only, so every backend draws the same mask)."""
    count = int(np.prod(shape, dtype=np.int64))
    if backend_name(device) == "reference":
        from engine.portable import random as prandom

        keep = prandom.dropout_keep(key, count, p)
    else:
        from engine.portable import cpu

        keep = cpu.dropout_keep(key, count, p)
    mask = torch.from_numpy(keep).reshape(shape).to(device)
    if RECORDER is not None and RECORDER.here():
        RECORDER.dropout_mask(mask, key, p)
    return mask


class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _run(x, "linear", x, weight, bias)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[1] and not ctx.needs_input_grad[2]:
            # a frozen weight (LoRA's base, a tied head): dx alone, linear backward's own matmul(dy, weight)
            dx = _run(x, "matmul", dy.reshape(-1, weight.shape[0]).contiguous(), weight)
            return dx.reshape(x.shape), None, None
        dx, dw, db = _run(x, "linear_backward", x, weight, dy)
        return dx.reshape(x.shape), dw, db if ctx.has_bias else None


class Matmul(torch.autograd.Function):
    """Batched a @ b over matching leading axes."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _run(a, "matmul", a, b)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        a, b = ctx.saved_tensors
        da = _run(a, "matmul", dy, b.transpose(-1, -2))
        db = _run(a, "matmul", a.transpose(-1, -2), dy)
        return da, db


class CausalAttention(torch.autograd.Function):
    """The attention core of docs/arithmetic.md ("causal self-attention"): for q, k, v of shape
    [batch, heads, steps, head], `scores = matmul(q, kᵀ) × scale`, −inf above the diagonal, softmax,
    dropout (`keep` mask and its scale, or none), `matmul(weights, v)`; backward as written there.

    One autograd node instead of six: the same operations in the same order as composing Matmul,
    Softmax and torch's elementwise ops (so the same bits; a test compares the two), with one host
    round trip instead of one per operation."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                keep: torch.Tensor | None, keep_scale: float) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(q, k, v)  # so autograd refuses a backward after q, k or v changed in place
        impl = _impl(q)
        xs = _ArrayOps.for_backend(impl)
        if RECORDER is not None and RECORDER.here():  # levels 2-3: each operation of the core is an entry
            impl, xs = RECORDER.attention(impl, xs)
        qa, ka, va = (xs.array(t) for t in (q, k, v))
        keep_a = None if keep is None else xs.array(keep)
        scores = xs.mul(impl.matmul(qa, xs.t(ka)), scale)
        probs = impl.softmax(xs.fill_above_diagonal(impl, scores, float("-inf")))
        weights = probs if keep_a is None else xs.scaled_keep(impl, probs, keep_a, keep_scale)
        out = impl.matmul(weights, va)
        ctx.saved = (impl, xs, qa, ka, va, probs, weights, keep_a, scale, keep_scale)
        return xs.tensor(out, q)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[Any, ...]:
        ctx.saved_tensors  # noqa: B018 - the version check (the host arrays below share their memory)
        impl, xs, qa, ka, va, probs, weights, keep_a, scale, keep_scale = ctx.saved
        d = xs.array(dout)
        dweights = impl.matmul(d, xs.t(va))
        dv = impl.matmul(xs.t(weights), d)
        # dropout's backward: (keep ? g : +0) × scale, which is keep ? g × scale : +0
        dprobs = dweights if keep_a is None else xs.scaled_keep(impl, dweights, keep_a, keep_scale)
        # the −inf entries were constants: their gradient is +0
        dscores = xs.mul(xs.fill_above_diagonal(impl, impl.softmax_backward(probs, dprobs), 0.0), scale)
        dq = impl.matmul(dscores, ka)
        dk = xs.t(impl.matmul(xs.t(qa), dscores))
        return xs.tensor(dq, dout), xs.tensor(dk, dout), xs.tensor(dv, dout), None, None, None


class _ArrayOps:
    """The few exact or single-rounding array operations CausalAttention needs, on the backend's own
    arrays: NumPy for the host backends, torch tensors for the Triton one."""

    def __init__(self, on_tensors: bool):
        self.on_tensors = on_tensors

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def _cached(on_tensors: bool) -> _ArrayOps:
        return _ArrayOps(on_tensors)

    @classmethod
    def for_backend(cls, impl: ModuleType) -> _ArrayOps:
        return cls._cached(takes_tensors(impl))

    def array(self, t: torch.Tensor) -> Any:
        return t.detach().contiguous() if self.on_tensors else host_array(t)

    def tensor(self, a: Any, like: torch.Tensor) -> torch.Tensor:
        return a if self.on_tensors else _t(a, like)

    def t(self, a: Any) -> Any:
        """The last two axes swapped, contiguous (moves values only)."""
        return a.transpose(-1, -2).contiguous() if self.on_tensors else np.ascontiguousarray(np.swapaxes(a, -1, -2))

    def fill_above_diagonal(self, impl: ModuleType, a: Any, value: float) -> Any:
        """`a` (…, steps, steps) with the entries above the diagonal set to `value` (exact)."""
        if self.on_tensors:
            steps = a.shape[-1]
            return a.masked_fill(torch.ones(steps, steps, dtype=torch.bool, device=a.device).triu(1), value)
        return impl.fill_above_diagonal(a, value)

    def scaled_keep(self, impl: ModuleType, a: Any, keep: Any, factor: float) -> Any:
        """`keep ? a × factor : +0`, one rounding per kept element."""
        if self.on_tensors:
            return torch.where(keep, a * factor, 0.0)
        return impl.scaled_keep(a, keep, factor)

    def mul(self, a: Any, factor: float) -> Any:
        """a × factor, one binary32 rounding per element (factor is a binary32 value)."""
        return a * factor if self.on_tensors else a * np.float32(factor)


class Activation(torch.autograd.Function):
    """relu, tanh or gelu (tanh's backward uses its output, the others their input)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, name: str) -> torch.Tensor:
        y = _run(x, name, x)
        ctx.name = name
        ctx.save_for_backward(y if name == "tanh" else x)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (saved,) = ctx.saved_tensors
        return _run(saved, f"{ctx.name}_backward", saved, dy), None


class Softmax(torch.autograd.Function):
    """Softmax over the last axis."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        y = _run(z, "softmax", z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        return (_run(y, "softmax_backward", y, dy),)


class LayerNorm(torch.autograd.Function):
    """Over the last axis."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        y, xhat, rstd = _run(x, "layer_norm", rows, weight, bias, eps)
        ctx.save_for_backward(xhat, rstd, weight)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        xhat, rstd, weight = ctx.saved_tensors
        dx, dw, db = _run(xhat, "layer_norm_backward", xhat, rstd, weight, dy.reshape(xhat.shape))
        return dx.reshape(dy.shape), dw, db, None


class Embedding(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.num_embeddings = weight.shape[0]
        return weight.detach()[ids]  # a gather: moves values only

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (ids,) = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:  # a frozen table (LoRA's base): nothing to fold
            return None, None
        return None, _run(dy, "embedding_backward", ids, dy, ctx.num_embeddings)


class Positional(torch.autograd.Function):
    """x[b, t] + weight[t]; weight's gradient folds over the batch in order."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.weight_shape = weight.shape
        return x + weight.detach()[: x.shape[1]]

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        batch, steps = dy.shape[0], dy.shape[1]
        summed = _run(dy, "sum_rows", dy.reshape(batch, -1)).reshape(steps, *dy.shape[2:])
        dw = torch.zeros(ctx.weight_shape, dtype=dy.dtype, device=dy.device)
        dw[:steps] = summed
        return dy, dw


class Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (bias is not None, stride, padding)
        return _run(x, "conv2d", x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        has_bias, stride, padding = ctx.conf
        dx, dw, db = _run(x, "conv2d_backward", x, weight, dy, stride, padding)
        return dx, dw, db if has_bias else None, None, None


class MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        y, where = _run(x, "max_pool", x, kernel, stride)
        ctx.save_for_backward(where)
        ctx.conf = (tuple(x.shape), kernel, stride)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        (where,) = ctx.saved_tensors
        shape, kernel, stride = ctx.conf
        return _run(dy, "max_pool_backward", shape, where, dy, kernel, stride), None, None


class AvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        ctx.conf = (tuple(x.shape), kernel, stride)
        return _run(x, "avg_pool", x, kernel, stride)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        shape, kernel, stride = ctx.conf
        return _run(dy, "avg_pool_backward", shape, dy, kernel, stride), None, None


class Loss(torch.autograd.Function):
    """The mean loss `kind` ("cross_entropy": rows of logits [R, C] and class ids; "mse": any shape)."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        ctx.save_for_backward(out, y)
        ctx.kind = kind
        value = _run(out, kind, out, y)
        if isinstance(value, torch.Tensor):  # the Triton backend's 0-d device tensor: no host round trip
            return value.reshape(())
        return torch.tensor(float(value), dtype=torch.float32, device=out.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        out, y = ctx.saved_tensors
        d = _run(out, f"{ctx.kind}_backward", out, y, np.float32(float(grad)))
        return d, None, None


def loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The spec's mean loss under portable arithmetic."""
    if kind == "causal_lm":
        return CausalLMLoss.apply(out, y)
    if kind == "cross_entropy":
        return Loss.apply(out.reshape(-1, out.shape[-1]), y.reshape(-1), kind)
    return Loss.apply(out, y, kind)


class RMSNorm(torch.autograd.Function):
    """Over the last axis (docs/arithmetic.md, section 5a)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, xhat, rstd = _run(x, "rms_norm", x.reshape(-1, x.shape[-1]), weight, eps)
        ctx.save_for_backward(xhat, rstd, weight)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        xhat, rstd, weight = ctx.saved_tensors
        dx, dw = _run(xhat, "rms_norm_backward", xhat, rstd, weight, dy.reshape(xhat.shape))
        return dx.reshape(dy.shape), dw, None


class Rotary(torch.autograd.Function):
    """Rotary positions on [batch, heads, steps, head] with binary32 tables [steps, head] (host arrays
    from `engine.portable.rotary_tables`); the backward is the rotation's transpose, as written."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: np.ndarray, sin: np.ndarray) -> torch.Tensor:
        ctx.tables = (cos, sin)
        return _run(x, "rotary", x.contiguous(), cos, sin)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        cos, sin = ctx.tables
        return _run(dy, "rotary_backward", dy.contiguous(), cos, sin), None, None


class ShareHeads(torch.autograd.Function):
    """Grouped-query attention's key/value sharing: [B, kv_heads, …] → [B, kv_heads·group, …], head q
    reading head ⌊q / group⌋ (a gather); the backward folds each group's gradients from +0 in head
    order (also for group 1, as written)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: int) -> torch.Tensor:
        ctx.group = group
        return x.detach().repeat_interleave(group, dim=1)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        return _run(dy, "fold_head_groups", dy.contiguous(), ctx.group), None


# --------------------------------------------------------------------------------------------------
# Language-model jobs (docs/arithmetic.md, sections 5b and 6): LoRA projections and the causal-LM loss
# --------------------------------------------------------------------------------------------------

IGNORE_TARGET = -1  # engine.lm_data.IGNORE: a row that does not count (its next token is padding, or none)


class AdaptedLinear(torch.autograd.Function):
    """A frozen projection `linear(x, weight, bias)` plus low-rank updates on slices of its outputs
    (docs/arithmetic.md, section 5b): for target i with output slice `slices[i]`, `h = linear(x, A_cat)`
    over the targets' stacked A (then split), `u_i = linear(h_i, B_i)`, `y[:, slice] = base + u_i × scale`.
    Backward: `dx = matmul(dy, weight) + matmul(dh_cat, A_cat)` (one addition of two folds), dA and dB as
    linear backward; the frozen weight and bias get no gradient. `adapters` is A_1, B_1, A_2, B_2, …"""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: float,
                slices: tuple[tuple[int, int], ...], *adapters: torch.Tensor) -> torch.Tensor:  # fmt: skip
        rows = x.detach().reshape(-1, x.shape[-1]).contiguous()
        a_list, b_list = list(adapters[0::2]), list(adapters[1::2])
        a_cat = torch.cat([a.detach() for a in a_list]).contiguous()
        base = _run(x, "linear", rows, weight.detach(), None if bias is None else bias.detach())
        h = _run(x, "linear", rows, a_cat, None)
        ranks = [a.shape[0] for a in a_list]
        hs = [part.contiguous() for part in h.split(ranks, dim=1)]
        out = base.clone()
        for (start, stop), h_i, b_i in zip(slices, hs, b_list):
            u = _run(x, "linear", h_i, b_i.detach(), None)
            out[:, start:stop] = base[:, start:stop] + u * scale  # one product, one addition (binary32)
        ctx.save_for_backward(x, weight, *adapters)  # autograd's in-place version check
        ctx.saved = (rows, weight.detach().contiguous(), a_cat, hs, [b.detach() for b in b_list], ranks, slices, scale)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        ctx.saved_tensors  # noqa: B018 - the version check
        rows, weight, a_cat, hs, b_list, ranks, slices, scale = ctx.saved
        d = dy.reshape(-1, weight.shape[0]).contiguous()
        dx_base = _run(rows, "matmul", d, weight)
        dhs, dbs = [], []
        for (start, stop), h_i, b_i in zip(slices, hs, b_list):
            du = (d[:, start:stop] * scale).contiguous()
            dh_i, db_i, _ = _run(rows, "linear_backward", h_i, b_i, du)
            dhs.append(dh_i)
            dbs.append(db_i)
        dx_lora, da_cat, _ = _run(rows, "linear_backward", rows, a_cat, torch.cat(dhs, dim=1).contiguous())
        dx = (dx_base + dx_lora).reshape(dy.shape[:-1] + (rows.shape[1],))
        grads: list[Any] = []
        for da_i, db_i in zip(da_cat.split(ranks, dim=0), dbs):
            grads += [da_i.contiguous(), db_i]
        return (dx, None, None, None, None, *grads)


class CausalLMLoss(torch.autograd.Function):
    """docs/arithmetic.md, section 6, "causal-LM loss": the counted rows (target ≠ −1), in row order,
    gathered (exact) and given to cross-entropy; uncounted rows get a +0 gradient.

    Recorded (levels 2-3) as one `causal_lm` entry (logits [R, C], targets [R] in; out the loss, the per-row
    nll with +0 where a row is not counted, and the count R_c as binary32 [1]) and one `causal_lm_backward`
    entry (the logits, the targets and that count in, the upstream gradient an argument; the gradient
    [R, C] out), not as the calls inside: how many rows are counted changes from batch to batch, and a step
    record's skeleton must be the same at every step (the state headers bind step 0's). docs/referee.md,
    "The causal-LM loss"."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows, wanted = logits.detach().reshape(-1, logits.shape[-1]), targets.reshape(-1)
        ctx.whole = (rows, wanted)
        with _recorded_as_one("causal_lm", (rows, wanted)) as done:
            loss = CausalLMLoss._forward(ctx, logits, rows, wanted)
            # R_c as binary32 (exact up to 2^24): the backward's recorded input is this very array
            ctx.count = np.array([ctx.saved[1].shape[0]], dtype=np.float32)
            return done((loss, ctx.count))[0]

    @staticmethod
    def _forward(ctx: Any, logits: torch.Tensor, rows: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        counted = (wanted != IGNORE_TARGET).nonzero().reshape(-1)
        if counted.numel() == 0:
            raise EngineError("a causal_lm batch has no counted position (every example needs a target)")
        picked, picked_targets = rows.index_select(0, counted).contiguous(), wanted.index_select(0, counted).contiguous()
        ctx.saved = (picked, picked_targets, counted, tuple(logits.shape))
        value = _run(logits, "cross_entropy", picked, picked_targets)
        if isinstance(value, torch.Tensor):
            return value.reshape(())
        return torch.tensor(float(value), dtype=torch.float32, device=logits.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        with _recorded_as_one("causal_lm_backward", (*ctx.whole, ctx.count, np.float32(float(grad)))) as done:
            d = done(CausalLMLoss._backward(ctx, grad))  # recorded as rows [R, C], as the logits it reads
        return d.reshape(ctx.saved[3]), None

    @staticmethod
    def _backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        picked, picked_targets, counted, shape = ctx.saved
        d_picked = _run(picked, "cross_entropy_backward", picked, picked_targets, np.float32(float(grad)))
        d = torch.zeros((int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]), dtype=torch.float32, device=picked.device)
        d.index_copy_(0, counted, d_picked)  # a copy: each counted row's gradient keeps its bits
        return d


@contextlib.contextmanager
def _recorded_as_one(name: str, args: tuple[Any, ...]) -> Iterator[Callable[..., Any]]:
    """While recording, run a composite operation unrecorded and record it as one entry `name` of `args`:
    the block passes its result through `done(result, output=None)` (`output`: the item of a tuple result
    that is the entry's output; None: the result is the entry's output, or a tuple of its outputs). Without
    a recorder, `done` returns the result unchanged."""
    recorder = RECORDER if RECORDER is not None and RECORDER.here() and not RECORDER.paused else None

    def done(result: Any, output: int | None = None) -> Any:
        if recorder is not None:
            recorder.paused = False
            value = result if output is None else result[output]
            recorder.kernel(name, args, value if isinstance(value, (torch.Tensor, tuple)) else torch.as_tensor(value))
        return result

    if recorder is not None:
        recorder.paused = True
    try:
        yield done
    finally:
        if recorder is not None:
            recorder.paused = False


def cross_entropy_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row nll (section 6, "cross-entropy rows") of logits [R, C], targets [R] in 0 … C − 1 (no autograd)."""
    return _run(logits, "cross_entropy_rows", logits.detach().contiguous(), targets.contiguous())
