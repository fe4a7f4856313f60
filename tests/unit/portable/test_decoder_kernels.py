"""tessera-portable/1, decoder-model layers (docs/arithmetic.md, section 5a): the numba kernels give the
reference's bits forward and backward (specials, subnormals, ±0), the reference computes what the
native layers compute (to float32 accuracy), and the rotary tables come from libm-free binary64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import cpu, reference
from engine.portable import rotary_tables as rt
from protocol.errors import EngineError

from ..engine.helpers import examples
from .test_kernels import same_bits, values


@settings(max_examples=examples(40), deadline=None)
@given(st.sampled_from(["silu", "gelu_tanh"]), st.data())
def test_activation_forward_and_backward_match_reference(name, data) -> None:
    n = data.draw(st.integers(1, 200))
    x, dy = data.draw(values(n)), data.draw(values(n))
    with np.errstate(all="ignore"):
        assert same_bits(getattr(cpu, name)(x), getattr(reference, name)(x))
        assert same_bits(getattr(cpu, f"{name}_backward")(x, dy), getattr(reference, f"{name}_backward")(x, dy))


def test_activations_follow_torch_and_keep_signs_of_zero() -> None:
    x = np.linspace(-30, 30, 2001, dtype=np.float32)
    t = torch.from_numpy(x).double().requires_grad_(True)
    for name, fn in (("silu", F.silu), ("gelu_tanh", lambda v: F.gelu(v, approximate="tanh"))):
        y = fn(t)
        (grad,) = torch.autograd.grad(y.sum(), t)
        assert np.allclose(getattr(reference, name)(x), y.detach().numpy(), rtol=2e-6, atol=2e-7), name
        got = getattr(reference, f"{name}_backward")(x, np.ones_like(x))
        assert np.allclose(got, grad.numpy(), rtol=2e-5, atol=2e-6), name
    zeros = np.array([0.0, -0.0], dtype=np.float32)
    assert same_bits(reference.silu(zeros), zeros) and same_bits(reference.gelu_tanh(zeros), zeros)
    big = np.array([-200.0, 200.0, np.inf], dtype=np.float32)  # σ underflows to +0; tanh saturates at 1
    with np.errstate(all="ignore"):
        assert same_bits(reference.silu(big[:2]), np.array([-0.0, 200.0], dtype=np.float32))
        assert same_bits(reference.gelu_tanh(big), np.array([-0.0, 200.0, np.inf], dtype=np.float32))


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 6), st.integers(1, 70), st.booleans(), st.data())
def test_rms_norm_matches_reference(rows, width, finite, data) -> None:
    x, dy = data.draw(values((rows, width), finite)), data.draw(values((rows, width), finite))
    w = data.draw(values(width, finite))
    with np.errstate(all="ignore"):
        slow = reference.rms_norm(x, w, 1e-6)
        assert all(same_bits(p, q) for p, q in zip(cpu.rms_norm(x, w, 1e-6), slow))
        back = zip(cpu.rms_norm_backward(slow[1], slow[2], w, dy), reference.rms_norm_backward(slow[1], slow[2], w, dy))
        assert all(same_bits(p, q) for p, q in back)


def test_rms_norm_is_llamas_rmsnorm() -> None:
    rng = np.random.default_rng(0)
    x, w, dy = rng.normal(size=(5, 48)).astype(np.float32), rng.normal(size=48).astype(np.float32), rng.normal(size=(5, 48)).astype(np.float32)
    tx, tw = torch.from_numpy(x).double().requires_grad_(True), torch.from_numpy(w).double().requires_grad_(True)
    ty = tw * (tx * torch.rsqrt(tx.pow(2).mean(-1, keepdim=True) + 1e-6))
    gx, gw = torch.autograd.grad(ty, (tx, tw), torch.from_numpy(dy).double())
    y, xhat, rstd = reference.rms_norm(x, w, 1e-6)
    dx, dw = reference.rms_norm_backward(xhat, rstd, w, dy)
    assert np.allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert np.allclose(dx, gx.numpy(), rtol=1e-4, atol=1e-5) and np.allclose(dw, gw.numpy(), rtol=1e-4, atol=1e-5)


@settings(max_examples=examples(50), deadline=None)
@given(st.floats(1.0001, 1e12), st.floats(-60.0, 0.0), st.floats(0.0, 1.5e6))
def test_host_functions_are_accurate_binary64(x, y, angle) -> None:
    assert abs(rt.ln(x) - math.log(x)) <= 4e-16 * abs(math.log(x))
    assert abs(rt.exp(y) - math.exp(y)) <= 4e-16 * math.exp(y)
    c, s = rt.cos_sin(angle)
    assert abs(c - math.cos(angle)) <= 1e-15 * max(1.0, angle / 1e4) and abs(s - math.sin(angle)) <= 1e-15 * max(1.0, angle / 1e4)


def test_rotary_tables_are_hugging_faces_tables() -> None:
    cos, sin = rt.rotary_tables(64, 16, 10_000.0)
    inv = 1.0 / (10_000.0 ** (np.arange(0, 16, 2) / 16))
    angles = np.arange(64, dtype=np.float32)[:, None] * inv.astype(np.float32)[None, :]
    want_cos, want_sin = np.cos(angles.astype(np.float64)), np.sin(angles.astype(np.float64))
    assert np.abs(cos[:, :8] - want_cos).max() < 1e-6 and np.abs(sin[:, :8] - want_sin).max() < 1e-6
    assert same_bits(cos[:, 8:], cos[:, :8]) and same_bits(sin[:, 8:], sin[:, :8])
    assert same_bits(cos[0], np.ones(16, np.float32)) and same_bits(sin[0], np.zeros(16, np.float32))
    with pytest.raises(EngineError, match="even head width"):
        rt.rotary_tables(4, 7, 10_000.0)
    with pytest.raises(EngineError, match="outside the portable range"):
        rt.cos_sin(2e6)


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.sampled_from([2, 4, 6, 16]), st.data())
def test_rotary_is_rotate_half_and_its_backward_is_the_adjoint(heads, steps, width, data) -> None:
    x = data.draw(values((heads, steps, width), finite=True).filter(lambda a: np.abs(a).max() < 1e15))
    dy = data.draw(values((heads, steps, width), finite=True).filter(lambda a: np.abs(a).max() < 1e15))
    cos, sin = rt.rotary_tables(steps, width, 500.0)
    y = reference.rotary(x, cos, sin)
    assert same_bits(cpu.rotary(x, cos, sin), y)
    half = width // 2
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    rotated = np.concatenate([-x64[..., half:], x64[..., :half]], axis=-1)
    # three roundings per output, bounded by the sizes of its two terms (not of y: they may cancel)
    terms = np.abs(x64 * cos) + np.abs(rotated * sin)
    assert (np.abs(y - (x64 * cos + rotated * sin)) <= 2.0**-22 * terms + 2.0**-147).all()
    dx = reference.rotary_backward(dy, cos, sin)
    assert same_bits(cpu.rotary_backward(dy, cos, sin), dx)
    # ⟨rotary(x), dy⟩ = ⟨x, rotary_backward(dy)⟩ up to the roundings of both sides
    lhs, rhs = np.vdot(y.astype(np.float64), dy64), np.vdot(x64, dx.astype(np.float64))
    partner = np.abs(np.concatenate([x64[..., half:], x64[..., :half]], axis=-1))
    scale = (np.abs(dy64) * (np.abs(x64) + partner)).sum()
    slack = 4 * 2.0**-149 * (np.abs(dy64).sum() + np.abs(x64).sum())  # subnormal roundings are absolute
    assert abs(lhs - rhs) <= 2.0**-20 * scale + slack


def test_fold_head_groups_is_repeat_interleaves_adjoint_in_order() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(size=(2, 6, 3, 4)).astype(np.float32)
    got = reference.fold_head_groups(d, 3)
    want = (np.float32(0) + d[:, 0::3] + d[:, 1::3] + d[:, 2::3]).astype(np.float32)
    assert got.shape == (2, 2, 3, 4) and same_bits(got, want)
    t = torch.zeros(2, 2, 3, 4, requires_grad=True)
    (g,) = torch.autograd.grad(t.repeat_interleave(3, dim=1), t, torch.from_numpy(d))
    assert np.allclose(got, g.numpy(), atol=1e-6)
    assert same_bits(reference.fold_head_groups(np.full((1, 1, 1), -0.0, np.float32), 1), np.zeros((1, 1, 1), np.float32))
