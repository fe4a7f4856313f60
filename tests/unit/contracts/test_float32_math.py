"""The referee's elementary functions and activations (contracts/lib/float32_math.vy, through
contracts/test/Float32MathHarness.vy) equal engine/portable/reference.py bit for bit (NaN as a class):
edge classes, the thresholds of each algorithm and its branches, and hypothesis-seeded batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import reference
from tests.unit.contracts.float_cases import EDGES, F32, THOROUGH, U32, describe_mismatches, operand_pairs, same_bits
from tests.unit.contracts.vyper_harness import batch_call, deploy

CHUNK = 128  # the costliest function (gelu backward, two exps) stays well inside one call's gas
FUNCTIONS = {"exp": (0, reference.exp), "log": (1, reference.log), "tanh": (2, reference.tanh),
             "phi": (3, reference.phi_cdf), "gelu": (4, reference.gelu), "relu": (5, reference.relu),
             "sigmoid": (6, reference.sigmoid), "silu": (7, reference.silu), "gelu_tanh": (8, reference.gelu_tanh)}
BACKWARDS = {"relu": (0, reference.relu_backward), "tanh": (1, reference.tanh_backward),
             "gelu": (2, reference.gelu_backward), "silu": (3, reference.silu_backward),
             "gelu_tanh": (4, reference.gelu_tanh_backward)}
# each function's interesting range: its thresholds and branch boundaries, as (low, high) for uniform draws
RANGES = {"exp": (-110.0, 95.0), "log": (0.0, 4.0), "tanh": (-12.0, 12.0), "phi": (-16.0, 16.0),
          "gelu": (-16.0, 16.0), "relu": (-2.0, 2.0), "sigmoid": (-110.0, 110.0), "silu": (-20.0, 20.0),
          "gelu_tanh": (-12.0, 12.0)}
THRESHOLDS = {"exp": [88.72283935546875, -103.97208404541016, 0.0], "log": [1.0, 1.4142135381698608, 2.0**-126],
              "tanh": [0.2, 9.0, -0.2, -9.0], "phi": [0.0], "gelu": [0.0], "relu": [0.0],
              "sigmoid": [88.72283935546875, 103.97208404541016], "silu": [0.0], "gelu_tanh": [0.0]}
BATCHES = 100 if THOROUGH else 1


@pytest.fixture(scope="module")
def harness(w3):
    return deploy(w3, "contracts/test/Float32MathHarness.vy")


def _call(harness, name: str, code: int, *arrays: np.ndarray) -> np.ndarray:
    out = [batch_call(harness, name, code, *(a[i : i + CHUNK] for a in arrays)) for i in range(0, len(arrays[0]), CHUNK)]
    return np.concatenate(out).astype(U32)


def _arguments(fn: str, seed: int, size: int) -> np.ndarray:
    """Edges, one-ulp neighbours of the thresholds, uniform draws over the function's range, and mixed patterns."""
    rng = np.random.default_rng(seed)
    low, high = RANGES[fn]
    thresholds = np.array(THRESHOLDS[fn], dtype=F32).view(U32).astype(np.int64)
    near = (thresholds[:, None] + np.arange(-2, 3)[None, :]).reshape(-1)
    near = np.concatenate([near, near | 0x80000000]).clip(0, 2**32 - 1).astype(U32)
    uniform = rng.uniform(low, high, size).astype(F32).view(U32)
    mixed, _ = operand_pairs(seed, size // 2)
    return np.concatenate([EDGES, near, uniform, mixed]).astype(U32)


@pytest.mark.parametrize("fn", list(FUNCTIONS))
def test_function_equals_reference(harness, fn):
    code, oracle = FUNCTIONS[fn]

    @settings(max_examples=BATCHES, database=None)
    @given(seed=st.integers(0, 2**64 - 1))
    def batch(seed):
        x = _arguments(fn, seed, 256)
        got = _call(harness, "unary", code, x)
        with np.errstate(all="ignore"):
            want = oracle(x.view(F32)).astype(F32).view(U32)
        assert same_bits(got, want).all(), f"{fn}: " + describe_mismatches(got, want, x)

    batch()


@pytest.mark.parametrize("fn", list(BACKWARDS))
def test_backward_equals_reference(harness, fn):
    code, oracle = BACKWARDS[fn]

    @settings(max_examples=BATCHES, database=None)
    @given(seed=st.integers(0, 2**64 - 1))
    def batch(seed):
        x = _arguments(fn if fn in RANGES else "gelu", seed, 192)
        if fn == "tanh":  # the backward takes the forward output
            with np.errstate(all="ignore"):
                x = np.concatenate([x, reference.tanh(x.view(F32)).view(U32)]).astype(U32)
        dy = np.random.default_rng(seed ^ 1).standard_normal(len(x)).astype(F32).view(U32)
        dy[: len(EDGES)] = EDGES[::-1]
        got = _call(harness, "backward", code, x, dy)
        with np.errstate(all="ignore"):
            want = oracle(x.view(F32), dy.view(F32)).astype(F32).view(U32)
        assert same_bits(got, want).all(), f"{fn} backward: " + describe_mismatches(got, want, x, dy)

    batch()


def test_special_values(harness):
    """Section 2's special cases, bit for bit: exp(NaN) is NaN, exp(−inf) = +0, exp(+inf) = +inf; log(±0) = −inf,
    log(−1) is NaN, log(+inf) = +inf; tanh(±inf) = ±1, tanh(NaN) is NaN; Φ(−inf) = +0, Φ(+inf) = 1."""
    x = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, -1.0], dtype=F32).view(U32)
    exp, log, tanh, phi = (_call(harness, "unary", FUNCTIONS[name][0], x).view(F32) for name in ("exp", "log", "tanh", "phi"))
    assert np.isnan(exp[0]) and exp[1] == 0 and not np.signbit(exp[1]) and exp[2] == np.inf and exp[3] == 1
    assert np.isnan(log[0]) and log[3] == -np.inf and log[4] == -np.inf and np.isnan(log[5]) and log[2] == np.inf
    assert np.isnan(tanh[0]) and tanh[1] == -1 and tanh[2] == 1
    assert phi[1] == 0 and phi[2] == 1
