"""The referee's element rules on chain (contracts/lib/element_rules.vy, through
contracts/ElementReferee.vy) equal protocol/referee_model.py's `check_element`: every vector of
tests/vectors/referee_elements.json whose kernel is built on chain, the same vectors with one proven bit
flipped, hypothesis-drawn operands of the elementwise rules, and the gas of the largest fold piece.
(bench/element_gas.py measures every rule's largest element, checked against the model too.)"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import referee_calls as rc
from protocol import referee_model as rm
from tests.unit.contracts.vyper_harness import deploy_element_referee
from tests.vectors.generate_referee import OUT, decode_arg, decode_value

VECTORS = json.loads(OUT.read_text())["vectors"]
ON_CHAIN = [v for v in VECTORS if v["kernel"] in rc.RULES]
IDS = [f"{i}-{v['kernel']}-{v['output']}-{v['piece']}" for i, v in enumerate(ON_CHAIN)]
GAS_TARGET = 1_000_000  # issue 15: the referee's final step


@pytest.fixture(scope="module")
def harness(w3):
    return deploy_element_referee(w3)


def _call(vector: dict) -> rm.Call:
    return rm.Call(vector["kernel"], tuple(decode_arg(a) for a in vector["args"]),
                   tuple(tuple(s) for s in vector["in_shapes"]), tuple(tuple(s) for s in vector["out_shapes"]))  # fmt: skip


def _proven(vector: dict) -> dict:
    return {(k, i): decode_value(v) for k, i, v in vector["proven"]}


def _on_chain(harness, call: rm.Call, output, e: int, proven: dict, piece: int | None) -> int:
    encoded = rc.encode(call, output, e, proven, piece)
    return int(harness.functions.element(encoded.rule, list(encoded.params), list(encoded.values)).call())


def _expected(vector: dict) -> int:
    return int(vector["expected"], 16) if isinstance(vector["expected"], str) else int(vector["expected"])


def test_the_vectors_cover_the_built_kernels() -> None:
    assert {v["kernel"] for v in VECTORS} <= rc.RULES  # every recorded kernel has an on-chain rule
    with pytest.raises(rc.NotOnChain):
        rc.encode(rm.Call("lora", (), ((1,),), ((1,),)), 0, 0, {})


def test_the_rule_codes_match_the_contract() -> None:
    """protocol/referee_calls.py's RULE table is element_rules.vy's RULE_* constants, name for name."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[3] / "contracts" / "lib" / "element_rules.vy").read_text()
    constants = {name.lower(): int(code) for name, code in re.findall(r"^RULE_(\w+): constant\(uint256\) = (\d+)$", source, re.M)}
    assert constants == rc.RULE


def test_the_clipping_rules_are_clip_referee_s_and_its_reverts_come_back(harness, w3) -> None:
    """ElementReferee forwards the two clipping rules to the ClipReferee fixed at its deployment: the same bits as
    asking ClipReferee, a malformed layout's revert reason unchanged, and no other rule reaches it (an unknown
    rule is refused by ElementReferee's own rules)."""
    clip = w3.eth.contract(address=harness.functions.CLIP().call(), abi=harness.abi)
    squared, max_norm = 0x4000000000000000, 0x3FF0000000000000  # Σ g² = 2, max_norm 1 (binary64)
    bits = harness.functions.element(rc.RULE["clip_scale"], [max_norm], [squared]).call()
    assert bits == clip.functions.element(rc.RULE["clip_scale"], [max_norm], [squared]).call() != 0
    with pytest.raises(Exception, match="element_rules: clip piece layout"):
        harness.functions.element(rc.RULE["clip_piece"], [], []).call()
    with pytest.raises(Exception, match="element_rules: not a clipping rule"):
        clip.functions.element(rc.RULE["relu"], [], [0]).call()
    with pytest.raises(Exception, match="element_rules: unknown rule"):
        harness.functions.element(99, [], []).call()


def test_the_values_are_the_dependencies_in_order() -> None:
    """What a party submits is exactly the proven values, in `dependencies` order; the exceptions: conv2d's
    padding positions enter a fold as +0 (never proven), and gather and batch_index read only what selects (the
    id, the cursor) and the value selected."""
    for vector in ON_CHAIN:
        call, proven = _call(vector), _proven(vector)
        output, e, piece = vector["output"], vector["element"], vector["piece"]
        values = rc.encode(call, output, e, proven, piece).values
        deps = [rc._word(proven[key]) for key in rm.dependencies(call, output, e, piece)]
        if vector["kernel"] == "gather":  # the id (the hint, checked against it), then the value it selects
            width = rm._gather_width(call)
            p, d = divmod(e, width)
            chosen = int(proven[(1, p)])
            assert values == (chosen, rc._word(proven[(0, chosen * width + d)]))
        elif vector["kernel"] == "batch_index":  # the cursor (the hints), then the orders element it selects
            epoch, position = proven[("epoch", 0)], proven[("position", 0)]
            assert values == (epoch, position, rc._word(proven[(1, epoch * call.in_shapes[1][1] + position + e)]))
        elif vector["kernel"].startswith("conv2d"):
            terms = rm.FOLDS[(call.kernel, output)](call, output, e).terms
            keys = [key for term in terms for key in term]
            assert [v for v, key in zip(values, keys) if key != rm.PADDING] == deps[: len(deps) - (len(values) - len(keys))]
            assert all(v == 0 for v, key in zip(values, keys) if key == rm.PADDING)
        else:
            assert list(values) == deps, vector["kernel"]


@pytest.mark.parametrize("vector", ON_CHAIN, ids=IDS)
def test_the_rule_reproduces_the_vector(harness, vector: dict) -> None:
    call, proven = _call(vector), _proven(vector)
    got = _on_chain(harness, call, vector["output"], vector["element"], proven, vector["piece"])
    assert got == _expected(vector)


def _flip(vector: dict) -> tuple[dict, bool]:
    """The proven values with one binary32 bit flipped (the value and the bit chosen by the vector's
    position, a mantissa or exponent bit); False when the vector proves no binary32 value."""
    proven = _proven(vector)
    floats = [key for key, value in proven.items() if isinstance(value, np.float32)]
    if not floats:
        return proven, False
    seed = zlib.crc32(json.dumps([vector["kernel"], vector["output"], vector["element"], vector["piece"]]).encode())
    key = floats[seed % len(floats)]
    bit = (seed >> 8) % 31
    proven[key] = np.array([int(proven[key].view(np.uint32)) ^ (1 << bit)], dtype=np.uint32).view(np.float32)[0]
    return proven, True


def test_a_flipped_input_bit_changes_the_result_as_the_model_says(harness) -> None:
    changed = 0
    for vector in ON_CHAIN:
        proven, flipped = _flip(vector)
        if not flipped:
            continue
        call = _call(vector)
        model = rm.check_element(call, vector["output"], vector["element"], proven, vector["piece"])
        got = _on_chain(harness, call, vector["output"], vector["element"], proven, vector["piece"])
        assert got == model or (model & 0x7FFFFFFF > 0x7F800000 and got & 0x7FFFFFFF > 0x7F800000), vector["kernel"]
        changed += model != _expected(vector)
    assert changed >= len(ON_CHAIN) // 2  # most flips reach the output (relu of a negative, a masked value: not)


F32_BITS = st.integers(0, 2**32 - 1)
ML = st.floats(-8.0, 8.0, width=32).map(lambda x: rm.F32(x))
ELEMENTWISE = ["relu", "gelu", "silu", "gelu_tanh", "tanh", "relu_backward", "gelu_backward", "silu_backward",
               "gelu_tanh_backward", "tanh_backward", "add", "mul", "scale", "mse_backward", "rotary", "rotary_backward",
               "adamw", "sgd"]  # fmt: skip


def _random_call(kernel: str, output: int, draw_f32, momentum: bool) -> tuple[rm.Call, int, dict]:
    """One element (e = 1 of a [2, 4] tensor) of `kernel` with every proven value drawn."""
    x2 = ((2, 4), (2, 4))
    if kernel in ("relu", "gelu", "silu", "gelu_tanh", "tanh"):
        call = rm.Call(kernel, (("input", 0),), ((2, 4),), ((2, 4),))
    elif kernel == "mse_backward":
        call = rm.Call(kernel, (("input", 0), ("input", 1), draw_f32()), x2, ((2, 4),))
    elif kernel in ("add", "mul"):
        call = rm.Call(kernel, (("input", 0), ("input", 1)), x2, ((2, 4),))
    elif kernel == "scale":
        call = rm.Call(kernel, (("input", 0), ("input", 1)), ((2, 4), (1,)), ((2, 4),))
    elif kernel.startswith("rotary"):
        call = rm.Call(kernel, (("input", 0), ("input", 1), ("input", 2)), ((1, 2, 4), (2, 4), (2, 4)), ((1, 2, 4),))
    elif kernel == "adamw":
        call = rm.Call(kernel, tuple(("input", k) for k in range(5)), ((2, 4),) * 4 + ((8,),), ((2, 4),) * 3)
    elif kernel == "sgd":
        inputs = 4 if momentum else 3
        call = rm.Call(kernel, (*(("input", k) for k in range(inputs)), output == 0),
                       ((2, 4),) * (inputs - 1) + ((3,),), ((2, 4),) * (2 if momentum else 1))  # fmt: skip
    else:
        call = rm.Call(kernel, (("input", 0), ("input", 1)), x2, ((2, 4),))
    e = 1
    return call, e, {key: draw_f32() for key in rm.dependencies(call, output, e)}


@settings(max_examples=40, database=None, deadline=None)
@given(data=st.data(), kernel=st.sampled_from(ELEMENTWISE), raw=st.booleans(), momentum=st.booleans())
def test_elementwise_rules_equal_the_model(harness, data, kernel: str, raw: bool, momentum: bool) -> None:
    """Any bits (raw) or ML-sized values, every output of the optimizers; NaN as a class."""
    outputs = {"adamw": 3, "sgd": 2 if momentum else 1}.get(kernel, 1)
    output = data.draw(st.integers(0, outputs - 1))

    def draw_f32():
        if raw:
            return np.array([data.draw(F32_BITS)], dtype=np.uint32).view(np.float32)[0]
        return data.draw(ML)

    call, e, proven = _random_call(kernel, output, draw_f32, momentum)
    model = rm.check_element(call, output, e, proven)
    got = _on_chain(harness, call, output, e, proven, None)
    assert got == model or (model & 0x7FFFFFFF > 0x7F800000 and got & 0x7FFFFFFF > 0x7F800000)


@settings(max_examples=15, database=None, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), step=st.integers(0, 2**32), number=st.integers(0, 300),
       element=st.integers(0, 2**20), p=st.one_of(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0**-25, 3 * 2.0**-25]),
                                                   st.floats(0.0, 1.0)))  # fmt: skip
def test_dropout_keep_equals_the_model(harness, seed: int, step: int, number: int, element: int, p: float) -> None:
    """The mask bit from the header's seed and step: sha256 of the labels, splitmix, the threshold
    round_half_even(p * 2**24) (halfway thresholds included)."""
    call = rm.Call("dropout_keep", (("input", 0), p, number), ((),), ((element + 1,),))
    proven = {("seed", 0): seed, ("step", 0): step}
    assert _on_chain(harness, call, 0, element, proven, None) == rm.check_element(call, 0, element, proven)


def test_a_256_term_fold_piece_meets_the_gas_target(harness, w3) -> None:
    """The largest fold piece the rules accept (256 products from a running value, as linear's pieces):
    the whole call, calldata included, is under the issue's 1,000,000 gas, and a 257th term is refused."""
    rng = np.random.default_rng(5)
    values = [int(v) for v in rng.standard_normal(513).astype(np.float32).view(np.uint32)]
    gas = harness.functions.element(rc.RULE["fold"], [2, 1, 0, 0], values).estimate_gas({"from": w3.eth.accounts[0]})
    assert 256 * 1_000 < gas < GAS_TARGET  # at least a fast add and mul per term: the fold ran
    with pytest.raises(Exception, match="fold piece too long"):
        harness.functions.element(rc.RULE["fold"], [2, 1, 0, 0], values + values[1:3]).call()


ROW_KERNELS = [("softmax", 0), ("softmax_backward", 0), ("cross_entropy", "nll"), ("cross_entropy_backward", 0),
               ("layer_norm", 0), ("layer_norm", 1), ("layer_norm", 2), ("rms_norm", 0), ("rms_norm", 1),
               ("rms_norm", 2), ("layer_norm_backward", 0), ("layer_norm_backward", 1), ("rms_norm_backward", 0),
               ("max_pool", 0), ("max_pool", 1), ("conv2d", 0), ("linear_backward", 1), ("linear", 0), ("matmul", 0),
               ("mse", 0), ("avg_pool", 0), ("avg_pool_backward", 0), ("max_pool_backward", 0),
               ("embedding_backward", 0), ("sum_rows", 0), ("fold_head_groups", 0), ("cross_entropy", 0),
               ("conv2d_backward", 0), ("conv2d_backward", 1), ("conv2d_backward", 2), ("conv2d_backward", "dcols")]  # fmt: skip
# the inputs holding integers (class ids, max-pool winners, token ids), and the range of their values
INTEGER_INPUTS = {"cross_entropy": (1, "width"), "cross_entropy_backward": (1, "width"), "max_pool_backward": (0, 4),
                  "embedding_backward": (0, 3)}  # fmt: skip


def _row_call(kernel: str, width: int) -> rm.Call:
    """A two-row call of `kernel` whose rows are `width` wide (conv2d and max_pool: 4x4 images, k = 3 or 2)."""
    inputs = tuple(("input", k) for k in range(4))
    rows = (2, width)
    if kernel in ("softmax",):
        return rm.Call(kernel, inputs[:1], (rows,), (rows,))
    if kernel == "softmax_backward":
        return rm.Call(kernel, inputs[:2], (rows, rows), (rows,))
    if kernel == "cross_entropy":
        return rm.Call(kernel, inputs[:2], (rows, (2,)), ((),))
    if kernel == "cross_entropy_backward":
        return rm.Call(kernel, (*inputs[:2], rm.F32(0.5)), (rows, (2,)), (rows,))
    if kernel == "layer_norm":
        return rm.Call(kernel, (*inputs[:3], 1e-5), (rows, (width,), (width,)), (rows, rows, (2,)))
    if kernel == "rms_norm":
        return rm.Call(kernel, (*inputs[:2], 1e-5), (rows, (width,)), (rows, rows, (2,)))
    if kernel in ("layer_norm_backward", "rms_norm_backward"):
        return rm.Call(kernel, inputs, (rows, (2,), (width,), rows), (rows, (width,), (width,)))
    if kernel == "max_pool":
        return rm.Call(kernel, (inputs[0], 2, 2), ((1, 1, 4, 4),), ((1, 1, 2, 2), (1, 1, 2, 2)))
    if kernel == "conv2d":
        return rm.Call(kernel, (*inputs[:3], 1, 1), ((1, 1, 4, 4), (2, 1, 3, 3), (2,)), ((1, 2, 4, 4),))
    if kernel == "linear":
        return rm.Call(kernel, inputs[:3], (rows, (3, width), (3,)), ((2, 3),))
    if kernel == "matmul":  # a batch of one broadcasts against two
        return rm.Call(kernel, inputs[:2], ((1, 2, width), (2, width, 3)), ((2, 2, 3),))
    if kernel == "mse":
        return rm.Call(kernel, inputs[:2], (rows, rows), ((),))
    if kernel == "avg_pool":
        return rm.Call(kernel, (inputs[0], 2, 2), ((1, 1, 4, 4),), ((1, 1, 2, 2),))
    if kernel in ("avg_pool_backward", "max_pool_backward"):
        dy = ((1, 1, 2, 2),) * (2 if kernel == "max_pool_backward" else 1)
        return rm.Call(kernel, ((1, 1, 4, 4), *inputs[: len(dy)], 2, 2), dy, ((1, 1, 4, 4),))
    if kernel == "embedding_backward":
        return rm.Call(kernel, (*inputs[:2], 3), ((width,), (width, 2)), ((3, 2),))
    if kernel == "sum_rows":
        return rm.Call(kernel, inputs[:1], ((width, 3),), ((3,),))
    if kernel == "fold_head_groups":
        return rm.Call(kernel, (inputs[0], 2), ((1, 4, 2, 2),), ((1, 2, 2, 2),))
    if kernel == "conv2d_backward":
        return rm.Call(kernel, (*inputs[:3], 1, 1), ((1, 1, 4, 4), (2, 1, 3, 3), (1, 2, 4, 4)),
                       ((1, 1, 4, 4), (2, 1, 3, 3), (2,)))  # fmt: skip
    return rm.Call(kernel, inputs[:3], (rows, (3, width), (2, 3)), (rows, (3, width), (3,)))


@settings(max_examples=50, database=None, deadline=None)
@given(data=st.data(), case=st.sampled_from(ROW_KERNELS), width=st.integers(1, 9), raw=st.booleans())
def test_row_and_fold_rules_equal_the_model(harness, data, case, width: int, raw: bool) -> None:
    """Rows (softmax, cross-entropy, the norms and their backwards), pooling windows and their backwards,
    and folds (linear, matmul with a broadcast batch, conv2d and its gradients with padding, mse, sums,
    means, head groups, embedding gradients) on drawn values: any bits, or values from a small set (ties
    for the first maximum, cancellations)."""
    kernel, output = case
    call = _row_call(kernel, width)
    size = rm._size(rm.INTERMEDIATES[(kernel, output)](call)) if isinstance(output, str) else rm._size(call.out_shapes[output])
    e = data.draw(st.integers(0, size - 1))
    values = st.integers(0, 2**32 - 1).map(lambda b: np.array([b], dtype=np.uint32).view(np.float32)[0]) if raw \
        else st.sampled_from([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0]).map(rm.F32)  # fmt: skip
    proven = {}
    integer_input, bound = INTEGER_INPUTS.get(kernel, (None, 0))
    for key in rm.dependencies(call, output, e):
        if key[0] == integer_input:
            proven[key] = np.int64(data.draw(st.integers(0, (width if bound == "width" else bound) - 1)))
        else:
            proven[key] = data.draw(values)
    model = rm.check_element(call, output, e, proven)
    got = _on_chain(harness, call, output, e, proven, None)
    assert got == model or (model & 0x7FFFFFFF > 0x7F800000 and got & 0x7FFFFFFF > 0x7F800000)
