"""tessera-portable/1: the Triton kernels (engine/portable/cuda.py) give the reference's bits, op by op.

Without a GPU (CI) the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1) on CPU tensors:
that checks each kernel's operation sequence, order of folds and constants. What the interpreter
cannot show (NumPy rounds every operation itself) is how the GPU compiler lowers them, so a source
check below holds the kernels to the lowering rules (no fused multiply-add, correctly rounded
division and square root, no tensor-core dot); on a machine with CUDA the same tests run the
compiled kernels on the device, and bench/gpu_check.py compares whole jobs there.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.portable import reference

from ..engine.helpers import examples
from .test_kernels import same_bits, values

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Triton reads the interpreter flag when @triton.jit decorates a function (its own helpers such as
# tl.zeros included, at `import triton`) and again inside every call.
_TRITON_WAS_IMPORTED = "triton" in sys.modules
_INTERPRET_BEFORE = os.environ.get("TRITON_INTERPRET")
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="triton is not installed: the CUDA kernels cannot be checked (pip install -r requirements.txt)")
if DEVICE == "cpu" and _TRITON_WAS_IMPORTED and _INTERPRET_BEFORE != "1":
    pytest.skip("triton was imported before this module could select its CPU interpreter and there is no GPU: "
                "run with TRITON_INTERPRET=1", allow_module_level=True)  # fmt: skip
from engine.portable import cuda  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _interpreter_for_this_module():  # type: ignore[no-untyped-def]
    """Keep the interpreter flag while these tests run, and give the process its old value after."""
    if DEVICE == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    yield
    if _INTERPRET_BEFORE is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _INTERPRET_BEFORE


def dev(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE)


def host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def all_same(got: tuple[torch.Tensor, ...], want: tuple[np.ndarray, ...]) -> bool:
    return len(got) == len(want) and all(same_bits(host(g), w) for g, w in zip(got, want))


@settings(max_examples=examples(12), deadline=None)
@given(st.sampled_from(["exp", "log", "tanh", "gelu", "relu", "phi_cdf"]), st.data())
def test_elementwise_forward_matches_reference(name, data) -> None:
    x = data.draw(values(st.integers(1, 600)))  # more than one program of 256
    with np.errstate(all="ignore"):
        assert same_bits(host(getattr(cuda, name)(dev(x))), getattr(reference, name)(x))


@settings(max_examples=examples(8), deadline=None)
@given(st.sampled_from(["relu_backward", "tanh_backward", "gelu_backward"]), st.data())
def test_elementwise_backward_matches_reference(name, data) -> None:
    n = data.draw(st.integers(1, 300))
    x, dy = data.draw(values(n)), data.draw(values(n))
    with np.errstate(all="ignore"):
        assert same_bits(host(getattr(cuda, name)(dev(x), dev(dy))), getattr(reference, name)(x, dy))


@settings(max_examples=examples(10), deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.sampled_from([1, 2, 7, 64, 300]), st.integers(1, 40), st.data())
def test_matmul_and_linear_match_reference(batch, rows, depth, cols, data) -> None:
    """Shapes cross the 32 × 32 tile; depth up to 300 checks the fold order over K."""
    finite = data.draw(st.booleans())
    a = data.draw(values((batch, rows, depth), finite))
    b = data.draw(values((data.draw(st.sampled_from([1, batch])), depth, cols), finite))  # a batch of one broadcasts
    with np.errstate(all="ignore"):
        assert same_bits(host(cuda.matmul(dev(a), dev(b))), reference.matmul(a, b))
        w, bias, dy = b[0].T.copy(), data.draw(values(cols, finite)), data.draw(values((rows, cols), finite))
        assert same_bits(host(cuda.linear(dev(a[0]), dev(w), dev(bias))), reference.linear(a[0], w, bias))
        assert same_bits(host(cuda.linear(dev(a[0]), dev(w), None)), reference.linear(a[0], w, None))
        assert all_same(cuda.linear_backward(dev(a[0]), dev(w), dev(dy)), reference.linear_backward(a[0], w, dy))


@settings(max_examples=examples(10), deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_row_ops_match_reference(rows, width, data) -> None:
    """Rows cross the 32-row program; every row folds its columns in order."""
    z = data.draw(values((rows, width), finite=True))
    dy = data.draw(values((rows, width), finite=True))
    target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, width - 1)))
    w, b = data.draw(values(width, finite=True)), data.draw(values(width, finite=True))
    grad = np.float32(data.draw(st.sampled_from([1.0, 0.5, -3.0])))
    with np.errstate(all="ignore"):
        assert same_bits(host(cuda.softmax(dev(z))), reference.softmax(z))
        y = reference.softmax(z)
        assert same_bits(host(cuda.softmax_backward(dev(y), dev(dy))), reference.softmax_backward(y, dy))
        assert same_bits(host(cuda.cross_entropy(dev(z), dev(target))), reference.cross_entropy(z, target))
        assert same_bits(host(cuda.cross_entropy_backward(dev(z), dev(target), grad)), reference.cross_entropy_backward(z, target, grad))
        assert same_bits(host(cuda.mse(dev(z), dev(dy))), reference.mse(z, dy))
        assert same_bits(host(cuda.mse_backward(dev(z), dev(dy), grad)), reference.mse_backward(z, dy, grad))
        assert same_bits(host(cuda.sum_rows(dev(z))), reference.sum_rows(z))
        slow = reference.layer_norm(z, w, b, 1e-5)
        assert all_same(cuda.layer_norm(dev(z), dev(w), dev(b), 1e-5), slow)
        assert all_same(cuda.layer_norm_backward(dev(slow[1]), dev(slow[2]), dev(w), dev(dy)),
                        reference.layer_norm_backward(slow[1], slow[2], w, dy))  # fmt: skip


@settings(max_examples=examples(8), deadline=None)
@given(st.sampled_from(["silu", "gelu_tanh"]), st.integers(1, 300), st.data())
def test_decoder_activations_match_reference(name, n, data) -> None:
    x, dy = data.draw(values(n)), data.draw(values(n))
    with np.errstate(all="ignore"):
        assert same_bits(host(getattr(cuda, name)(dev(x))), getattr(reference, name)(x))
        assert same_bits(host(getattr(cuda, f"{name}_backward")(dev(x), dev(dy))), getattr(reference, f"{name}_backward")(x, dy))


@settings(max_examples=examples(6), deadline=None)
@given(st.integers(1, 40), st.integers(1, 24), st.sampled_from([2, 6]), st.integers(1, 3), st.data())
def test_decoder_row_and_rotary_ops_match_reference(rows, width, head, group, data) -> None:
    """RMSNorm rows cross the 32-row program; rotary over [B, heads, T, h] crosses the 256-element block."""
    from engine.portable.rotary_tables import rotary_tables

    finite = data.draw(st.booleans())
    x, dy, w = data.draw(values((rows, width), finite)), data.draw(values((rows, width), finite)), data.draw(values(width, finite))
    with np.errstate(all="ignore"):
        slow = reference.rms_norm(x, w, 1e-6)
        assert all_same(cuda.rms_norm(dev(x), dev(w), 1e-6), slow)
        assert all_same(cuda.rms_norm_backward(dev(slow[1]), dev(slow[2]), dev(w), dev(dy)),
                        reference.rms_norm_backward(slow[1], slow[2], w, dy))  # fmt: skip
        steps = data.draw(st.integers(1, 12))
        q = data.draw(values((2, 2 * group, steps, head), finite=True))
        cos, sin = rotary_tables(steps, head, 10_000.0)
        assert same_bits(host(cuda.rotary(dev(q), cos, sin)), reference.rotary(q, cos, sin))
        assert same_bits(host(cuda.rotary_backward(dev(q), cos, sin)), reference.rotary_backward(q, cos, sin))
        assert same_bits(host(cuda.fold_head_groups(dev(q), group)), reference.fold_head_groups(q, group))


@settings(max_examples=examples(8), deadline=None)
@given(st.integers(1, 600), st.data())
def test_optimizers_match_reference(count, data) -> None:
    p, g = data.draw(values(count, finite=True)), data.draw(values(count, finite=True))
    m, v = data.draw(values(count, finite=True)), np.abs(data.draw(values(count, finite=True)))
    adam = {"decay": np.float32(0.999), "beta1": np.float32(0.9), "one_minus_beta1": np.float32(0.1), "beta2": np.float32(0.999),
            "one_minus_beta2": np.float32(0.001), "correction2": np.float32(0.02), "eps": np.float32(1e-8), "step_size": np.float32(0.01)}  # fmt: skip
    with np.errstate(all="ignore"):
        fast, slow = [dev(a.copy()) for a in (p, m, v)], [a.copy() for a in (p, m, v)]
        cuda.adamw(fast[0], dev(g), fast[1], fast[2], adam)
        reference.adamw(slow[0], g, slow[1], slow[2], adam)
        assert all_same(tuple(fast), tuple(slow))
        decay = np.float32(data.draw(st.sampled_from([0.0, 0.01])))
        sgd = {"weight_decay": decay, "momentum": np.float32(0.9), "lr": np.float32(0.05)}
        nesterov, with_momentum = data.draw(st.booleans()), data.draw(st.booleans())
        fast_p, fast_m, slow_p, slow_m = dev(p.copy()), dev(m.copy()), p.copy(), m.copy()
        cuda.sgd(fast_p, dev(g), fast_m if with_momentum else None, sgd, nesterov)
        reference.sgd(slow_p, g, slow_m if with_momentum else None, sgd, nesterov)
        assert all_same((fast_p, fast_m), (slow_p, slow_m))


@settings(max_examples=examples(8), deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(3, 8), st.integers(3, 8), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.data())  # fmt: skip
def test_conv_and_pool_match_reference(batch, channels, height, width, out_channels, kernel, stride, padding, data) -> None:
    """im2col + the matmul kernel, col2im's (i, j) fold, and pooling with overlapping windows and ties."""
    x = data.draw(values((batch, channels, height, width), finite=True))
    w = data.draw(values((out_channels, channels, kernel, kernel), finite=True))
    bias = data.draw(values(out_channels, finite=True))
    with np.errstate(all="ignore"):
        y = reference.conv2d(x, w, bias, stride, padding)
        assert same_bits(host(cuda.conv2d(dev(x), dev(w), dev(bias), stride, padding)), y)
        dy = data.draw(values(y.shape, finite=True))
        assert all_same(cuda.conv2d_backward(dev(x), dev(w), dev(dy), stride, padding), reference.conv2d_backward(x, w, dy, stride, padding))
        k = min(kernel + 1, height, width)
        (ry, rw), (cy, cw) = reference.max_pool(x, k, stride), cuda.max_pool(dev(x), k, stride)
        assert same_bits(host(cy), ry) and np.array_equal(host(cw), rw)
        g = data.draw(values(ry.shape, finite=True))
        assert same_bits(host(cuda.max_pool_backward(x.shape, cw, dev(g), k, stride)), reference.max_pool_backward(x.shape, rw, g, k, stride))
        assert same_bits(host(cuda.avg_pool(dev(x), k, stride)), reference.avg_pool(x, k, stride))
        assert same_bits(host(cuda.avg_pool_backward(x.shape, dev(g), k, stride)), reference.avg_pool_backward(x.shape, g, k, stride))


@settings(max_examples=examples(6), deadline=None)
@given(st.integers(1, 50), st.integers(2, 12), st.data())
def test_embedding_backward_and_norm_match_reference(count, vocab, data) -> None:
    """Embedding backward folds each row's positions in order; the binary64 norm runs on host copies."""
    ids = data.draw(hnp.arrays(np.int64, count, elements=st.integers(0, vocab - 1)))
    dy = data.draw(values((count, 3), finite=True))
    with np.errstate(all="ignore"):
        assert same_bits(host(cuda.embedding_backward(dev(ids), dev(dy), vocab)), reference.embedding_backward(ids, dy, vocab))
    assert cuda.squared_norm([dev(dy), dev(ids.astype(np.float32))]) == reference.squared_norm([dy, ids.astype(np.float32)])


def test_autograd_through_ops_matches_the_cpu_backend(monkeypatch) -> None:
    """ops.py hands device tensors to the Triton backend: a small transformer-like graph gives the cpu
    backend's loss and gradients bit for bit."""
    from engine.portable import ops

    def run(backend: str, device: str) -> list[np.ndarray]:
        monkeypatch.setenv(ops.BACKEND_ENV, backend)
        gen = torch.Generator().manual_seed(5)
        x = torch.randn(6, 8, generator=gen).to(device).requires_grad_()
        w1, w2 = (torch.randn(s, generator=gen).to(device).requires_grad_() for s in ((16, 8), (5, 16)))
        ln_w, ln_b = torch.ones(16, device=device, requires_grad=True), torch.zeros(16, device=device, requires_grad=True)
        h = ops.Activation.apply(ops.Linear.apply(x, w1, None), "gelu")
        h = ops.LayerNorm.apply(h, ln_w, ln_b, 1e-5)
        attn = ops.Softmax.apply(ops.Matmul.apply(h, h.transpose(0, 1).contiguous()))
        h = ops.Activation.apply(ops.Matmul.apply(attn, h), "tanh")
        logits = ops.Linear.apply(h, w2, None)
        loss = ops.loss("cross_entropy", logits, torch.tensor([0, 1, 2, 3, 4, 0], device=device))
        loss.backward()
        return [host(t.detach()) for t in (loss, x.grad, w1.grad, w2.grad, ln_w.grad, ln_b.grad)]

    want = run("cpu", "cpu")
    got = run("cuda", DEVICE)
    assert ops.takes_tensors(ops.backend(torch.device(DEVICE)))
    assert all(same_bits(g, w) for g, w in zip(got, want))


def test_decoder_models_on_the_triton_backend_match_the_cpu_backend(monkeypatch) -> None:
    """Tiny Llama-style and GPT-2-style models (rotary, GQA, SwiGLU, RMSNorm, tied head; GELU-tanh,
    layer norm, untied head), one training step: the Triton backend gives the numba backend's bits."""
    from engine.portable import ops

    from .test_decoder_models import MODELS, train_hashes

    monkeypatch.setenv(ops.BACKEND_ENV, "cpu")
    want = {name: train_hashes(model, 1) for name, model in MODELS.items()}
    monkeypatch.setenv(ops.BACKEND_ENV, "cuda")
    assert ops.takes_tensors(ops.backend(torch.device(DEVICE)))
    assert {name: train_hashes(model, 1, DEVICE) for name, model in MODELS.items()} == want


def test_fused_attention_on_device_tensors_matches_the_cpu_backend(monkeypatch) -> None:
    """CausalAttention's tensor path (masked_fill, where, × on the device around the Triton matmul
    and softmax) gives the cpu backend's output and gradients, with and without a dropout mask."""
    from engine.portable import ops

    gen = torch.Generator().manual_seed(9)
    q, k, v, dout = (torch.randn(2, 2, 7, 4, generator=gen) for _ in range(4))
    keep = torch.rand(2, 2, 7, 7, generator=gen) > 0.2
    scale, keep_scale = float(np.float32(0.5)), float(np.float32(1 / 0.8))

    def run(backend: str, device: str, mask: torch.Tensor | None) -> list[np.ndarray]:
        monkeypatch.setenv(ops.BACKEND_ENV, backend)
        leaves = [t.to(device).requires_grad_() for t in (q, k, v)]
        out = ops.CausalAttention.apply(*leaves, scale, None if mask is None else mask.to(device), keep_scale)
        out.backward(dout.to(device))
        return [host(t.detach()) for t in (out, *(leaf.grad for leaf in leaves))]

    for mask in (None, keep):
        want = run("cpu", "cpu", mask)
        got = run("cuda", DEVICE, mask)
        assert all(same_bits(g, w) for g, w in zip(got, want))


# --------------------------------------------------------------------------------------------------
# Lowering rules the interpreter cannot show
# --------------------------------------------------------------------------------------------------

FORBIDDEN_CALLS = {"dot", "sqrt", "exp", "exp2", "log", "log2", "fma", "fdiv", "rsqrt", "sum", "cumsum", "reduce", "max", "min",
                   "maximum", "minimum", "sigmoid", "softmax", "erf", "tanh"}  # fmt: skip


def _jit_functions() -> list[ast.FunctionDef]:
    tree = ast.parse(inspect.getsource(cuda))
    return [node for node in tree.body if isinstance(node, ast.FunctionDef)
            and any("triton.jit" in ast.unparse(d) for d in node.decorator_list)]  # fmt: skip


def test_kernels_use_only_correctly_rounded_operations() -> None:
    """No `/` (approximate on the GPU: tl.div_rn instead), no tl.sqrt (tl.sqrt_rn), no hardware
    transcendental, no tl.dot (tensor cores, unspecified order) and no tree reduction inside a kernel."""
    functions = _jit_functions()
    assert len(functions) > 10
    for fn in functions:
        for node in ast.walk(fn):
            assert not (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Pow))), f"{fn.name}: {ast.unparse(node)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in FORBIDDEN_CALLS, f"{fn.name}: {ast.unparse(node)}"


def test_every_launch_forbids_fused_multiply_add() -> None:
    """Kernels are launched only through `_launch`, which passes enable_fp_fusion=False."""
    tree = ast.parse(inspect.getsource(cuda))
    direct = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Subscript)]
    assert direct == ["kernel[grid](*args, enable_fp_fusion=False, **meta)"]
    launched = {ast.unparse(n.args[0]) for n in ast.walk(tree)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                and n.func.id in ("_launch", "_rows", "_norm_rows", "_norm_rows_backward")}  # fmt: skip
    launched.discard("kernel")  # the helpers pass their argument on to _launch
    kernels = {fn.name for fn in _jit_functions() if fn.name.endswith("_kernel")}
    assert launched == kernels


def test_backend_choice(monkeypatch) -> None:
    from engine.portable import ops

    monkeypatch.delenv(ops.BACKEND_ENV, raising=False)
    assert ops.backend_name(torch.device("cpu")) == "cpu"
    assert ops.backend_name(torch.device("cuda")) == "cuda"  # triton is installed here
    monkeypatch.setenv(ops.BACKEND_ENV, "cpu")
    assert ops.backend_name(torch.device("cuda")) == "cpu"  # host copies, same bits
    monkeypatch.setenv(ops.BACKEND_ENV, "cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert ops.backend_name(torch.device("cpu")) == "cpu"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert ops.backend_name(torch.device("cpu")) == "cuda"


WHOLE_JOBS = r"""
import json, sys, tempfile
from engine.api import run_spec
from engine.presets import digits_cnn_spec, digits_spec
from protocol.artifacts import LocalStore
out = {}
for name, make in {"mlp": digits_spec, "cnn": digits_cnn_spec}.items():
    spec = make(steps=2, segment_steps=1, batch_size=16, device="cpu", arithmetic="portable/1",
                schedule={"name": "constant"})
    with tempfile.TemporaryDirectory() as root:
        result = run_spec(spec, LocalStore(root), device="cpu")
    out[name] = [result.state_hashes, result.output_hash]
print("RESULT " + json.dumps(out))
"""


def test_whole_jobs_on_the_triton_backend_match_the_cpu_backend() -> None:
    """Short MLP and CNN jobs (2 steps of a segment each, batches of 16: the interpreter is slow) with every op the Triton kernels cover give the numba path's
    h_0 … h_N and output (tiny-GPT is too slow for the interpreter: bench/gpu_check.py on a GPU)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]

    def run(env: dict[str, str]) -> dict:
        full = {**os.environ, **env, "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, "-c", WHOLE_JOBS], env=full, cwd=root, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])

    triton_runs = run({"TRITON_INTERPRET": "1", "TESSERA_PORTABLE_BACKEND": "cuda"})
    assert triton_runs == run({"TRITON_INTERPRET": "0", "TESSERA_PORTABLE_BACKEND": "cpu"})


@settings(max_examples=examples(6), deadline=None)
@given(st.integers(0, 40), st.integers(1, 12), st.data())
def test_cross_entropy_rows_match_reference(rows, width, data) -> None:
    """The language-model rows (section 6) across the 32-row program, specials included."""
    z = data.draw(values((rows, width)))
    target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, width - 1)))
    with np.errstate(all="ignore"):
        assert same_bits(host(cuda.cross_entropy_rows(dev(z), dev(target))), reference.cross_entropy_rows(z, target))


def test_lora_projection_and_causal_lm_loss_on_device_tensors_match_the_cpu_backend(monkeypatch) -> None:
    """Section 5b's adapted projection (two targets on one fused base) and section 6's causal-LM loss
    (uncounted rows, +0 gradient) on the Triton backend give the numba backend's bits, values and gradients."""
    from engine.portable import ops

    gen = torch.Generator().manual_seed(11)
    x, w, b = torch.randn(2, 5, 6, generator=gen), torch.randn(7, 6, generator=gen), torch.randn(7, generator=gen)
    adapters = [torch.randn(s, generator=gen) for s in ((2, 6), (3, 2), (2, 6), (2, 2))]
    targets = torch.tensor([[3, 1, -1, 6, -1], [0, 2, 2, -1, -1]])

    def run(backend: str, device: str) -> list[np.ndarray]:
        monkeypatch.setenv(ops.BACKEND_ENV, backend)
        leaves = [t.to(device).requires_grad_() for t in (x, *adapters)]
        y = ops.AdaptedLinear.apply(leaves[0], w.to(device), b.to(device), float(np.float32(1.5)), ((0, 3), (5, 7)), *leaves[1:])
        loss = ops.loss("causal_lm", y, targets.to(device))  # y as logits over 7 ids
        loss.backward()
        return [host(t.detach()) for t in (loss, *(leaf.grad for leaf in leaves))]

    want = run("cpu", "cpu")
    got = run("cuda", DEVICE)
    assert all(same_bits(g, w) for g, w in zip(got, want))
