"""The referee model (protocol/referee_model.py): one output element of a recorded kernel call is
recomputed bit for bit from exactly the input elements its dependency function names."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import initial_checkpoint
from engine.portable import record
from engine.portable import reference as ref
from protocol import referee_model as rm

from ..engine.helpers import examples, tiny_cnn
from .test_step_record import gpt, llama, mlp


def _bits(value) -> int:
    return int(np.asarray(value, dtype=np.float32).reshape(-1).view(np.uint32)[0])


def _check(rec: record.StepRecord, entry: record.Entry, output: int, element: int) -> None:
    call = record.referee_call(entry)
    proven = record.proven_values(rec, entry, output, element)
    deps = rm.dependencies(call, output, element)
    assert set(proven) == set(deps)
    bits, read = rm._check(call, output, element, proven, None)
    recorded = entry.outputs[output].reshape(-1)[element : element + 1]
    exact = recorded.dtype != np.float32  # a mask's 0 or 1, a max-pool winner's index
    expected = int(recorded.view(np.uint64)[0]) if recorded.dtype == np.float64 else int(recorded[0]) if exact else _bits(recorded)
    assert bits == expected, (entry.kernel, output, element)
    if entry.kernel in ("embedding_backward", "relu_backward", "gather", "batch_index", "where", "scaled_keep",
                        "max_pool_backward"):  # fmt: skip
        assert read <= set(deps)  # the ids (or the cursor) choose the rows read; a mask or the sign of x, one operand
    else:
        assert read == set(deps)  # the dependency function is exact
    assert bits != expected ^ (1 << (element % (1 if recorded.dtype == np.bool_ else 32)))  # one flipped bit is caught


def _checkable(rec: record.StepRecord) -> list[tuple[record.Entry, int]]:
    return [(e, o) for e in rec.entries if e.kernel not in ("adamw_scalars", "sgd_scalars") for o in range(len(e.outputs))]


@pytest.fixture(scope="module")
def mlp_record() -> record.StepRecord:
    spec = mlp(grad_clip_norm=0.5)
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    return spec, rec


@pytest.fixture(scope="module")
def gpt_record() -> record.StepRecord:
    spec = gpt(dropout=0.1)
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    return spec, rec


def test_every_output_of_an_mlp_step_has_its_first_and_last_element_checked(mlp_record) -> None:
    spec, rec = mlp_record
    kernels = {e.kernel for e in rec.entries}
    assert {"linear", "relu", "cross_entropy", "cross_entropy_backward", "linear_backward", "relu_backward",
            "clip_scale", "scale", "adamw"} <= kernels  # fmt: skip
    for entry, output in _checkable(rec):
        size = entry.outputs[output].size
        for element in {0, size - 1}:
            _check(rec, entry, output, element)
    scalars = next(e for e in rec.entries if e.kernel == "adamw_scalars")
    assert record.check_scalars(spec, scalars, 0) and not record.check_scalars(spec, scalars, 1)


@settings(max_examples=examples(30), deadline=None)
@given(st.data())
def test_random_elements_of_an_mlp_step(mlp_record, data) -> None:
    _, rec = mlp_record
    entry, output = data.draw(st.sampled_from(_checkable(rec)))
    _check(rec, entry, output, data.draw(st.integers(0, entry.outputs[output].size - 1)))


@settings(max_examples=examples(20), deadline=None)
@given(st.data())
def test_random_elements_of_a_tiny_gpt_step(gpt_record, data) -> None:
    """layer norm (and its backward), GELU, sum_rows, the embedding's backward and the rest, also where
    the record cannot trace an input yet (its values are kept with the entry)."""
    _, rec = gpt_record
    entry, output = data.draw(st.sampled_from(_checkable(rec)))
    _check(rec, entry, output, data.draw(st.integers(0, entry.outputs[output].size - 1)))


def test_the_gpt_kernels_all_have_element_rules(gpt_record) -> None:
    _, rec = gpt_record
    for entry, output in _checkable(rec):
        _check(rec, entry, output, entry.outputs[output].size // 2)


def test_the_llama_style_kernels_all_have_element_rules() -> None:
    """RMSNorm and its backward, rotary and its backward, SiLU, SwiGLU's product, the GQA fold, dropout."""
    spec = llama()
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    for entry, output in _checkable(rec):
        size = entry.outputs[output].size
        for element in {0, size // 3, size - 1}:
            _check(rec, entry, output, element)


def test_a_cnn_step_is_complete_and_its_kernels_all_have_element_rules() -> None:
    """conv2d as im2col, linear and transposes, its backward as linear_backward and col2im (padding included:
    every element of both is checked), max pooling and its backward, SGD with Nesterov momentum."""
    spec = tiny_cnn(arithmetic="portable/1", batch_size=2)
    rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
    assert rec.complete
    kernels = [e.kernel for e in rec.entries]
    assert {"im2col", "col2im", "max_pool", "max_pool_backward", "sgd"} <= set(kernels)
    assert not {"conv2d", "conv2d_backward"} & set(kernels)
    assert kernels.count("im2col") == 1  # the backward reads the forward's columns
    for entry, output in _checkable(rec):
        size = entry.outputs[output].size
        elements = range(size) if entry.kernel in ("im2col", "col2im") else {0, size // 3, size - 1}
        for element in elements:
            _check(rec, entry, output, element)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(1, 3),
       st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_elements_match_the_reference(batch, channels, height, width, kernel, stride, padding, seed) -> None:
    """Every element of im2col (a copy, or +0 outside the image) and of col2im (the fold over the covering
    (i, j), +0 where none covers: stride above k) is the reference's bits, from exactly its dependencies."""
    if height + 2 * padding < kernel or width + 2 * padding < kernel:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, height, width)).astype(np.float32)
    cols = ref.im2col(x, kernel, stride, padding)
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    dx = ref.col2im(dcols, x.shape, kernel, stride, padding)
    forward = rm.Call("im2col", (("input", 0), kernel, stride, padding), (x.shape,), (cols.shape,))
    backward = rm.Call("col2im", (("input", 0), x.shape, kernel, stride, padding), (dcols.shape,), (dx.shape,))
    for call, inputs, out in ((forward, x, cols), (backward, dcols, dx)):
        for element in range(out.size):
            deps = rm.dependencies(call, 0, element)
            proven = {key: inputs.reshape(-1)[key[1]] for key in deps}
            bits, read = rm._check(call, 0, element, proven, None)
            assert bits == _bits(out.reshape(-1)[element]) and read <= set(deps)  # (dy read only where it won)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([(2, 1), (3, 1), (3, 2)]), st.integers(1, 2), st.integers(1, 2), st.integers(3, 9), st.integers(3, 9),
       st.integers(0, 2**32 - 1))
def test_overlapping_max_pool_backward_is_checked_in_pieces(window, batch, channels, height, width, seed) -> None:
    """Over overlapping windows (k over s) the recorder adds the running values (`record._pool_running_values`:
    slot t of an element its fold after its first t + 1 covering windows, row-major, the final dx past them)
    and they end at the engine's dx; every element of dx and of the running values is its bits by the referee
    model's piece rule from exactly its dependencies, which are the Python mirror's reads (`data_rules`), ties
    and signed zeros included."""
    from engine.portable import cpu
    from protocol import data_rules

    kernel, stride = window
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (batch, channels, height, width)).astype(np.float32)  # ties: the first maximum wins
    y, where = cpu.max_pool(x, kernel, stride)
    dy = rng.choice(np.array([-0.0, 0.0, 1.5, -2.25, 1e-40, 3e38], dtype=np.float32), y.shape)
    dx = cpu.max_pool_backward(x.shape, where, dy, kernel, stride)
    running = record._pool_running_values(x.shape, where, dy, kernel, stride, dx)
    call = rm.Call("max_pool_backward", (x.shape, ("input", 0), ("input", 1), kernel, stride), (where.shape, dy.shape),
                   (dx.shape, running.shape))  # fmt: skip
    geometry = (kernel, stride, x.shape, y.shape)
    for output, out in ((0, dx), (1, running)):
        for element in range(out.size):
            deps = rm.dependencies(call, output, element)
            proven = {key: (running.reshape(-1)[key[1]] if key[0] == "pool_running" else (where, dy)[key[0]].reshape(-1)[key[1]])
                      for key in deps}  # fmt: skip
            bits, read = rm._check(call, output, element, proven, None)
            assert bits == _bits(out.reshape(-1)[element]) and read <= set(deps)  # (dy read only where it won)
            reads = data_rules.overlap_piece(*geometry, output, element)
            assert [k for k, _ in deps] == (["pool_running"] if reads[0] is not None else []) + ([0, 1] if reads[1] else [])


def test_average_pooling_elements_match_the_reference() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    y = ref.avg_pool(x, 2, 2)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ref.avg_pool_backward(x.shape, dy, 2, 2)
    forward = rm.Call("avg_pool", (("input", 0), 2, 2), (x.shape,), (y.shape,))
    backward = rm.Call("avg_pool_backward", (x.shape, ("input", 0), 2, 2), (dy.shape,), (dx.shape,))
    for call, inputs, out in ((forward, x, y), (backward, dy, dx)):
        for element in range(out.size):
            proven = {key: inputs.reshape(-1)[key[1]] for key in rm.dependencies(call, 0, element)}
            assert rm.check_element(call, 0, element, proven) == _bits(out.reshape(-1)[element])


def test_clipping_s_binary64_fold_is_checked_piece_by_piece(gpt_record) -> None:
    _, rec = gpt_record
    entry = next(e for e in rec.entries if e.kernel == "clip_scale")
    call = record.referee_call(entry)
    every = {k: rec.input_value(entry, k).reshape(-1) for k in range(len(entry.inputs))}
    partials = rm.clip_partial_sums(call, {(k, i): v[i] for k, v in every.items() for i in range(v.size)})
    assert len(partials) > 10  # thousands of gradient elements, pieces of at most 64 within one gradient
    assert partials == entry.outputs[1].view(np.uint64).tolist()  # the recorded running sums (output 1)
    for piece in range(len(partials)):  # a piece reads one run of one gradient (and the previous running value)
        assert len({k for k, _ in rm.dependencies(call, 1, piece) if k != "partial"}) == 1
    for piece in (0, 5, len(partials) - 1):
        keys = rm.dependencies(call, 0, 0, piece)
        proven = {k: (partials[k[1]] if k[0] == "partial" else every[k[0]][k[1]]) for k in keys}
        assert rm.check_element(call, 0, 0, proven, piece) == partials[piece]
        wrong = dict(proven)
        if piece:
            wrong[("partial", piece - 1)] ^= 1 << 40  # one bit of the running value (a low one may round away)
            assert rm.check_element(call, 0, 0, wrong, piece) != partials[piece]
    final = rm.check_element(call, 0, 0, {("partial", len(partials) - 1): partials[-1]})
    assert final == _bits(entry.outputs[0])


@settings(max_examples=examples(6), deadline=None)
@given(st.integers(257, 700), st.integers(1, 3), st.data())
def test_long_folds_are_cut_into_pieces_whose_running_values_are_the_fold_s(k_width: int, rows: int, data) -> None:
    """A linear with K > 256: piece c starts from the running value after piece c − 1; the final element
    is the last running value plus the bias; the kernel's own bits come out."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((rows, k_width)).astype(np.float32)
    w = rng.standard_normal((3, k_width)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    y = ref.linear(x, w, b)
    call = rm.Call("linear", (("input", 0), ("input", 1), ("input", 2)), ((rows, k_width), (3, k_width), (3,)), ((rows, 3),))
    values = {**{(0, i): v for i, v in enumerate(x.reshape(-1))}, **{(1, i): v for i, v in enumerate(w.reshape(-1))},
              **{(2, i): v for i, v in enumerate(b)}}  # fmt: skip
    element = data.draw(st.integers(0, rows * 3 - 1))
    partials = rm.partial_sums(call, 0, element, values)
    assert len(partials) == -(-k_width // rm.MAX_FOLD)
    for piece in range(len(partials)):
        keys = rm.dependencies(call, 0, element, piece)
        assert sum(1 for key in keys if key[0] == 0) <= rm.MAX_FOLD
        proven = {key: (partials[key[1]] if key[0] == "partial" else values[key]) for key in keys}
        assert rm.check_element(call, 0, element, proven, piece) == _bits(partials[piece])
    final = {key: (partials[key[1]] if key[0] == "partial" else values[key]) for key in rm.dependencies(call, 0, element)}
    assert rm.check_element(call, 0, element, final) == _bits(y.reshape(-1)[element])


def test_mse_and_its_backward_match_the_reference_in_pieces() -> None:
    rng = np.random.default_rng(8)
    out, y = (rng.standard_normal((30, 10)).astype(np.float32) for _ in range(2))  # 300 terms: two pieces
    call = rm.Call("mse", (("input", 0), ("input", 1)), ((30, 10), (30, 10)), ((),))
    values = {**{(0, i): v for i, v in enumerate(out.reshape(-1))}, **{(1, i): v for i, v in enumerate(y.reshape(-1))}}
    partials = rm.partial_sums(call, 0, 0, values)
    assert len(partials) == 2
    for piece in range(2):
        proven = {k: (partials[k[1]] if k[0] == "partial" else values[k]) for k in rm.dependencies(call, 0, 0, piece)}
        assert rm.check_element(call, 0, 0, proven, piece) == _bits(partials[piece])
    assert rm.check_element(call, 0, 0, {("partial", 1): partials[1]}) == _bits(ref.mse(out, y))
    grad = np.float32(0.75)
    backward = rm.Call("mse_backward", (("input", 0), ("input", 1), grad), ((30, 10), (30, 10)), ((30, 10),))
    expected = ref.mse_backward(out, y, grad).reshape(-1)
    for element in (0, 123, 299):
        proven = {k: values[k] for k in rm.dependencies(backward, 0, element)}
        assert rm.check_element(backward, 0, element, proven) == _bits(expected[element])


def test_a_long_cross_entropy_mean_goes_through_row_losses_and_pieces() -> None:
    rng = np.random.default_rng(5)
    rows, classes = 300, 3
    z = rng.standard_normal((rows, classes)).astype(np.float32)
    t = rng.integers(0, classes, rows).astype(np.int64)
    call = rm.Call("cross_entropy", (("input", 0), ("input", 1)), ((rows, classes), (rows,)), ((),))
    values = {**{(0, i): v for i, v in enumerate(z.reshape(-1))}, **{(1, i): v for i, v in enumerate(t)}}
    nll = {("nll", r): np.array([rm.check_element(call, "nll", r, {k: values[k] for k in rm.dependencies(call, "nll", r)})],
                                dtype=np.uint32).view(np.float32)[0] for r in range(rows)}  # fmt: skip
    partials = rm.partial_sums(call, 0, 0, nll)
    assert len(partials) == 2
    final = rm.check_element(call, 0, 0, {("partial", 1): partials[1]})
    assert final == _bits(ref.cross_entropy(z, t))


def test_unproven_values_and_bad_indices_are_refused() -> None:
    call = rm.Call("relu", (("input", 0),), ((4,),), ((4,),))
    with pytest.raises(rm.ElementError, match="not proven"):
        rm.check_element(call, 0, 1, {(0, 0): np.float32(1.0)})
    with pytest.raises(rm.ElementError):
        rm.check_element(call, 0, 4, {(0, 4): np.float32(1.0)})
    with pytest.raises(rm.ElementError, match="no element rule"):
        rm.check_element(rm.Call("lstm", (), ((1,),), ((1,),)), 0, 0, {})


UNARY = {"relu": ref.relu, "gelu": ref.gelu, "silu": ref.silu, "gelu_tanh": ref.gelu_tanh, "tanh": ref.tanh}
BINARY = {"relu_backward": ref.relu_backward, "gelu_backward": ref.gelu_backward, "silu_backward": ref.silu_backward,
          "gelu_tanh_backward": ref.gelu_tanh_backward, "tanh_backward": ref.tanh_backward}  # fmt: skip


def _same(bits: int, expected: np.ndarray) -> bool:
    """Equal bits, or both NaN (a NaN's sign and payload are not part of the arithmetic)."""
    got = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    return bool(np.isnan(got) and np.isnan(expected[0])) or bits == _bits(expected)


binary32 = st.integers(0, 2**32 - 1).map(lambda b: np.array([b], dtype=np.uint32).view(np.float32))
edges = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-38, 0.2, -0.2, 9.0, -9.0, 88.7, -104.0, 3e38, np.inf, -np.inf])


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(sorted(UNARY) + sorted(BINARY)), st.one_of(binary32, edges.map(lambda v: np.array([v], np.float32))),
       binary32)  # fmt: skip
def test_elementwise_rules_match_the_reference_on_any_bits(kernel: str, x: np.ndarray, dy: np.ndarray) -> None:
    """The scalar rules (exp, log-free Φ, tanh, σ written one operation at a time) against the
    reference's whole-array kernels, on any binary32 bits: subnormals, ±0, ±inf and NaN included."""
    if kernel in UNARY:
        call = rm.Call(kernel, (("input", 0),), ((1,),), ((1,),))
        with np.errstate(all="ignore"):
            expected = UNARY[kernel](x)
        assert _same(rm.check_element(call, 0, 0, {(0, 0): x[0]}), expected)
    else:
        call = rm.Call(kernel, (("input", 0), ("input", 1)), ((1,), (1,)), ((1,),))
        with np.errstate(all="ignore"):
            expected = BINARY[kernel](x, dy)
        assert _same(rm.check_element(call, 0, 0, {(0, 0): x[0], (1, 0): dy[0]}), expected)
