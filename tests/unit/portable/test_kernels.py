"""tessera-portable/1: the numba CPU kernels give the reference's bits, op by op, forward and backward,
over random shapes and values (subnormals, ±0, ±inf, NaN, long reductions); the elementary
functions stay within the accuracy docs/arithmetic.md states."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.portable import cpu, reference

from ..engine.helpers import examples

SPECIAL = [float(np.float32(v)) for v in (0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1.4e-45, 3.4e38, -3.4e38, 88.72, -103.9)]


def same_bits(a, b) -> bool:
    """Equal binary32 bit patterns, NaN matching any NaN (payloads are not part of the arithmetic)."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    keep = ~np.isnan(a)
    return bool(np.array_equal(a[keep].view(np.int32), b[keep].view(np.int32)))


def values(shape, finite: bool = False):
    elements = st.one_of(st.floats(width=32, allow_nan=not finite, allow_infinity=not finite),
                         st.sampled_from([v for v in SPECIAL if not finite or math.isfinite(v)]),
                         st.floats(-6, 6, width=32))  # fmt: skip
    return hnp.arrays(np.float32, shape, elements=elements)


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(["exp", "log", "tanh", "gelu", "relu", "phi_cdf"]), st.data())
def test_elementwise_forward_matches_reference(name, data) -> None:
    x = data.draw(values(st.integers(1, 300)))
    assert same_bits(getattr(cpu, name)(x), getattr(reference, name)(x))


@settings(max_examples=examples(40), deadline=None)
@given(st.sampled_from(["relu_backward", "tanh_backward", "gelu_backward"]), st.data())
def test_elementwise_backward_matches_reference(name, data) -> None:
    n = data.draw(st.integers(1, 200))
    x, dy = data.draw(values(n)), data.draw(values(n))
    with np.errstate(all="ignore"):
        assert same_bits(getattr(cpu, name)(x, dy), getattr(reference, name)(x, dy))


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 3), st.integers(1, 21), st.sampled_from([1, 2, 7, 64, 1_500]),
       st.one_of(st.integers(1, 9), st.sampled_from([16, 33])), st.data())
def test_matmul_and_linear_match_reference(batch, rows, depth, cols, data) -> None:
    # rows cover the kernel's blocks of four and their remainder; narrow outputs (cols < 16 and
    # fewer than rows) take the transposed fold, wide ones the direct one; linear with cols 16 and 33
    # takes the kernel that reads the weight as stored (full panels, a leftover column, leftover rows)
    finite = data.draw(st.booleans())
    a = data.draw(values((batch, rows, depth), finite))
    b = data.draw(values((batch, depth, cols), finite))
    with np.errstate(all="ignore"):
        assert same_bits(cpu.matmul(a, b), reference.matmul(a, b))
        w, bias, dy = b[0].T.copy(), data.draw(values(cols, finite)), data.draw(values((rows, cols), finite))
        assert same_bits(cpu.linear(a[0], w, bias), reference.linear(a[0], w, bias))
        for got, want in zip(cpu.linear_backward(a[0], w, dy), reference.linear_backward(a[0], w, dy)):
            assert same_bits(got, want)


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.data())
def test_row_ops_match_reference(rows, width, data) -> None:
    z = data.draw(values((rows, width), finite=True))
    dy = data.draw(values((rows, width), finite=True))
    target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, width - 1)))
    w, b = data.draw(values(width, finite=True)), data.draw(values(width, finite=True))
    with np.errstate(all="ignore"):
        assert same_bits(cpu.softmax(z), reference.softmax(z))
        y = reference.softmax(z)
        assert same_bits(cpu.softmax_backward(y, dy), reference.softmax_backward(y, dy))
        assert same_bits(cpu.cross_entropy(z, target), reference.cross_entropy(z, target))
        assert same_bits(cpu.cross_entropy_backward(z, target, 1.0), reference.cross_entropy_backward(z, target, 1.0))
        assert same_bits(cpu.mse(z, dy), reference.mse(z, dy))
        assert same_bits(cpu.mse_backward(z, dy, 1.0), reference.mse_backward(z, dy, 1.0))
        fast, slow = cpu.layer_norm(z, w, b, 1e-5), reference.layer_norm(z, w, b, 1e-5)
        assert all(same_bits(p, q) for p, q in zip(fast, slow))
        assert all(same_bits(p, q) for p, q in zip(cpu.layer_norm_backward(slow[1], slow[2], w, dy),
                                                    reference.layer_norm_backward(slow[1], slow[2], w, dy)))  # fmt: skip


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(3, 8), st.integers(3, 8), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.data())  # fmt: skip
def test_conv_and_pool_match_reference(batch, channels, height, width, out_channels, kernel, stride, padding, data) -> None:
    x = data.draw(values((batch, channels, height, width), finite=True))
    w = data.draw(values((out_channels, channels, kernel, kernel), finite=True))
    bias = data.draw(values(out_channels, finite=True))
    with np.errstate(all="ignore"):
        y = reference.conv2d(x, w, bias, stride, padding)
        assert same_bits(cpu.conv2d(x, w, bias, stride, padding), y)
        dy = data.draw(values(y.shape, finite=True))
        for got, want in zip(cpu.conv2d_backward(x, w, dy, stride, padding), reference.conv2d_backward(x, w, dy, stride, padding)):
            assert same_bits(got, want)
        k = min(kernel + 1, height, width)
        (ry, rw), (cy, cw) = reference.max_pool(x, k, stride), cpu.max_pool(x, k, stride)
        assert same_bits(cy, ry) and np.array_equal(cw, rw)
        g = data.draw(values(ry.shape, finite=True))
        assert same_bits(cpu.max_pool_backward(x.shape, cw, g, k, stride), reference.max_pool_backward(x.shape, rw, g, k, stride))
        assert same_bits(cpu.avg_pool(x, k, stride), reference.avg_pool(x, k, stride))
        assert same_bits(cpu.avg_pool_backward(x.shape, g, k, stride), reference.avg_pool_backward(x.shape, g, k, stride))


@settings(max_examples=examples(30), deadline=None)
@given(st.integers(1, 50), st.integers(2, 12), st.data())
def test_embedding_optimizers_and_norm_match_reference(count, vocab, data) -> None:
    ids = data.draw(hnp.arrays(np.int64, count, elements=st.integers(0, vocab - 1)))
    dy = data.draw(values((count, 3), finite=True))
    assert same_bits(cpu.embedding_backward(ids, dy, vocab), reference.embedding_backward(ids, dy, vocab))
    p, g = data.draw(values(count, finite=True)), data.draw(values(count, finite=True))
    m, v = data.draw(values(count, finite=True)), np.abs(data.draw(values(count, finite=True)))
    adam = {"decay": np.float32(0.999), "beta1": np.float32(0.9), "one_minus_beta1": np.float32(0.1), "beta2": np.float32(0.999),
            "one_minus_beta2": np.float32(0.001), "correction2": np.float32(0.02), "eps": np.float32(1e-8), "step_size": np.float32(0.01)}  # fmt: skip
    with np.errstate(all="ignore"):
        fast, slow = [a.copy() for a in (p, m, v)], [a.copy() for a in (p, m, v)]
        cpu.adamw(fast[0], g, fast[1], fast[2], adam)
        reference.adamw(slow[0], g, slow[1], slow[2], adam)
        assert all(same_bits(a, b) for a, b in zip(fast, slow))
        sgd = {"weight_decay": np.float32(0.01), "momentum": np.float32(0.9), "lr": np.float32(0.05)}
        nesterov = data.draw(st.booleans())
        fast, slow = [p.copy(), m.copy()], [p.copy(), m.copy()]
        cpu.sgd(fast[0], g, fast[1], sgd, nesterov)
        reference.sgd(slow[0], g, slow[1], sgd, nesterov)
        assert all(same_bits(a, b) for a, b in zip(fast, slow))
    assert cpu.squared_norm([g, dy]) == reference.squared_norm([g, dy])


@pytest.mark.parametrize("name, bound", [("exp", 2.0), ("log", 2.0)])
def test_exp_and_log_are_within_two_ulp(name, bound) -> None:
    rng = np.random.default_rng(7)
    x = (rng.uniform(-80, 80, 20_000) if name == "exp" else np.exp(rng.uniform(-80, 80, 20_000))).astype(np.float32)
    got = getattr(reference, name)(x).astype(np.float64)
    exact = getattr(np, name)(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - exact) / ulp) <= bound


def test_tanh_and_gelu_errors_are_small() -> None:
    x = np.linspace(-12, 12, 20_001, dtype=np.float32)
    assert np.max(np.abs(reference.tanh(x) - np.tanh(x.astype(np.float64)))) < 2e-7
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.max(np.abs(reference.gelu(x) - exact) / np.maximum(1.0, np.abs(exact))) < 1e-6


def _splitmix_bits24(key: int, index: int) -> int:
    """docs/arithmetic.md, "Random numbers", in Python integers (an implementation independent of NumPy's)."""
    mask = 2**64 - 1
    z = (index * 0x9E3779B97F4A7C15 + key) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) >> 40


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 3_000), st.floats(0.0, 1.0, exclude_max=True))
def test_dropout_masks_agree_across_implementations(key, count, p) -> None:
    from engine.portable import random as prandom

    want = prandom.dropout_keep(key, count, p)
    assert np.array_equal(cpu.dropout_keep(key, count, p), want)
    threshold = prandom.keep_threshold(p)
    for index in range(0, count, max(1, count // 17)):
        assert want[index] == (_splitmix_bits24(key, index) >= threshold)


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 3), st.integers(1, 12), st.data())
def test_attention_steps_match_reference(batch, steps, data) -> None:
    x = data.draw(values((batch, steps, steps)))
    keep = data.draw(hnp.arrays(np.bool_, (batch, steps, steps)))
    scale = data.draw(st.floats(0.125, 8, width=32))
    fill = data.draw(st.sampled_from([float("-inf"), 0.0]))
    with np.errstate(all="ignore"):
        assert same_bits(cpu.fill_above_diagonal(x.copy(), fill), reference.fill_above_diagonal(x, fill))
        assert same_bits(cpu.scaled_keep(x, keep, scale), reference.scaled_keep(x, keep, scale))


def _composed_attention(ops, q, k, v, scale, keep, keep_scale):
    """The attention core as separate ops (how the model computed it before CausalAttention)."""
    import torch

    steps = q.shape[-2]
    scores = ops.Matmul.apply(q, k.transpose(-2, -1).contiguous()) * scale
    probs = ops.Softmax.apply(scores.masked_fill(torch.ones(steps, steps, dtype=torch.bool).triu(1), float("-inf")))
    weights = probs if keep is None else torch.where(keep, probs * keep_scale, 0.0)
    return ops.Matmul.apply(weights, v)


@settings(max_examples=examples(30), deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 5), st.booleans(),
       st.sampled_from(["cpu", "reference"]), st.data())
def test_fused_attention_equals_the_composed_ops(batch, heads, steps, head, dropout, backend, data) -> None:
    """CausalAttention is one autograd node for what was six: forward and every gradient keep their bits."""
    import torch

    from engine.portable import ops

    shape = (batch, heads, steps, head)
    finite = data.draw(st.booleans())  # ±inf and NaN too: the two paths must agree on them as well
    arrays = [data.draw(values(shape, finite=finite)) for _ in range(4)]
    keep = torch.from_numpy(data.draw(hnp.arrays(np.bool_, (batch, heads, steps, steps)))) if dropout else None
    scale, keep_scale = float(np.float32(1) / np.sqrt(np.float32(head))), float(np.float32(1 / 0.9))
    results = []
    with pytest.MonkeyPatch.context() as patch, np.errstate(all="ignore"):
        patch.setenv(ops.BACKEND_ENV, backend)
        for fused in (True, False):
            q, k, v = (torch.from_numpy(a.copy()).requires_grad_() for a in arrays[:3])
            if fused:
                out = ops.CausalAttention.apply(q, k, v, scale, keep, keep_scale)
            else:
                out = _composed_attention(ops, q, k, v, scale, keep, keep_scale)
            out.backward(torch.from_numpy(arrays[3]))
            results.append([t.detach().numpy() for t in (out, q.grad, k.grad, v.grad)])
    for got, want in zip(*results):
        assert same_bits(got, want)


@pytest.mark.parametrize("batches", [(1, 1), (2, 2), (1, 3), (3, 1)])
def test_matmul_tile_edges_and_degenerate_shapes_match_reference(batches) -> None:
    """Every rows/cols/depth around the 4 × 16 register tile, none included (0 rows, columns or depth),
    with signed zeros, subnormals, infinities and NaN; a batch of one broadcasts, also when depth is 0."""
    rng = np.random.default_rng(12)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 3.4e38], dtype=np.float32)
    with np.errstate(all="ignore"):
        for rows in (0, 1, 3, 4, 5, 8, 9):
            for cols in (0, 1, 15, 16, 17, 31, 32, 33):
                for depth in (0, 1, 2, 19):
                    a = rng.standard_normal((batches[0], rows, depth)).astype(np.float32)
                    b = rng.standard_normal((batches[1], depth, cols)).astype(np.float32)
                    for x in (a, b):
                        hit = rng.random(x.shape) < 0.2
                        x[hit] = rng.choice(special, size=int(hit.sum()))
                    assert same_bits(cpu.matmul(a, b), reference.matmul(a, b)), (rows, cols, depth)


def test_kernels_refuse_shapes_they_would_address_past() -> None:
    """The compiled loops trust their shapes (raw pointers, no bounds checks): the wrappers check them."""
    from protocol.errors import EngineError

    with pytest.raises(EngineError):
        cpu.matmul(np.ones((4, 64), np.float32), np.ones((1, 16), np.float32))
    with pytest.raises(EngineError):
        cpu.fill_above_diagonal(np.zeros((1, 5, 2), np.float32), 1.0)
    x, keep = np.arange(64, dtype=np.float32), np.ones(1, np.bool_)
    assert same_bits(cpu.scaled_keep(x, keep, 2.0), reference.scaled_keep(x, keep, 2.0))
    scalar = np.array(np.float32(0.5))
    assert same_bits(cpu.exp(scalar), reference.exp(scalar))


def test_a_thread_that_flushes_subnormals_refuses_portable_runs() -> None:
    """FTZ/DAZ would turn exp(-100) into +0: a portable job must not run (and commit) under them."""
    import torch

    from engine.portable.ops import require_ieee_subnormals
    from protocol.errors import EngineError

    require_ieee_subnormals()  # IEEE mode: fine
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode to switch on")
    try:
        with pytest.raises(EngineError, match="flushes subnormal floats to zero"):
            require_ieee_subnormals()
    finally:
        torch.set_flush_denormal(False)
    require_ieee_subnormals()


def test_fused_attention_checks_its_inputs_were_not_changed_in_place() -> None:
    import torch

    from engine.portable import ops

    q, k, v = (torch.randn(1, 1, 3, 2, requires_grad=True) for _ in range(3))
    inner = q * 1.0  # a non-leaf view of q's values that can be changed in place
    out = ops.CausalAttention.apply(inner, k, v, 0.5, None, 1.0)
    out.backward(torch.ones_like(out), retain_graph=True)
    out.backward(torch.ones_like(out), retain_graph=True)  # a retained graph can be walked again
    with torch.no_grad():
        inner.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward(torch.ones_like(out))


@settings(max_examples=examples(20), deadline=None)
@given(st.integers(0, 6), st.integers(1, 40), st.data())
def test_cross_entropy_rows_match_reference_and_fold_to_the_loss(rows, width, data) -> None:
    """Language-model rows (docs/arithmetic.md, section 6): numba == reference incl. specials, and
    on finite logits the loss is exactly their fold divided by float(R) (the causal-LM loss relies on it)."""
    z = data.draw(values((rows, width)))
    target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, width - 1)))
    with np.errstate(all="ignore"):
        slow = reference.cross_entropy_rows(z, target)
        assert slow.shape == (rows,) and same_bits(cpu.cross_entropy_rows(z, target), slow)
        finite = np.nan_to_num(z, nan=0.0, posinf=3.0, neginf=-3.0)
        if rows:
            total = np.float32(0.0)
            for value in reference.cross_entropy_rows(finite, target):
                total = np.float32(total + value)
            assert same_bits(np.float32(total / np.float32(rows)), reference.cross_entropy(finite, target))
