"""The referee's binary64 arithmetic for section 8's scalars (contracts/lib/float64.vy, through
contracts/test/Float64Harness.vy) against NumPy's IEEE binary64: edge classes crossed, hypothesis-seeded
batches (halfway cases, overflow and underflow boundaries, cancellations), and the clipping factor
against engine/portable/scalars.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable.scalars import clip_scale
from tests.unit.contracts.float_cases import THOROUGH
from tests.unit.contracts.vyper_harness import CALL_GAS, batch_call, deploy

U64, F64 = np.uint64, np.float64
BATCH = 1_024
OPS = {"add": (0, np.add), "sub": (1, np.subtract), "mul": (2, np.multiply), "div": (3, np.divide)}
BATCHES = 1_000 if THOROUGH else 3
_POSITIVE_EDGES = [
    0x0000000000000000, 0x0000000000000001, 0x0000000000000002, 0x0008000000000000, 0x000FFFFFFFFFFFFF,
    0x0010000000000000, 0x0010000000000001, 0x001FFFFFFFFFFFFF, 0x0020000000000000, 0x1FF0000000000000,
    0x3CA0000000000000, 0x3CB0000000000000, 0x3FE0000000000000, 0x3FEFFFFFFFFFFFFF, 0x3FF0000000000000,
    0x3FF0000000000001, 0x3FF8000000000000, 0x4000000000000000, 0x4330000000000000, 0x4340000000000000,
    0x5FF0000000000000, 0x7FD0000000000000, 0x7FE0000000000000, 0x7FEFFFFFFFFFFFFE, 0x7FEFFFFFFFFFFFFF,
    0x7FF0000000000000, 0x7FF0000000000001, 0x7FF8000000000000, 0x7FFFFFFFFFFFFFFF,
]
EDGES = np.array(_POSITIVE_EDGES + [x | (1 << 63) for x in _POSITIVE_EDGES], dtype=U64)


@pytest.fixture(scope="module")
def harness(w3):
    return deploy(w3, "contracts/test/Float64Harness.vy")


def same64(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got == want) | (np.isnan(got.view(F64)) & np.isnan(want.view(F64)))


def _run(harness, code: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([batch_call(harness, "binary", code, a[i : i + BATCH], b[i : i + BATCH])
                           for i in range(0, len(a), BATCH)])


def _check(harness, op: str, a: np.ndarray, b: np.ndarray) -> None:
    code, fn = OPS[op]
    got = _run(harness, code, a, b)
    with np.errstate(all="ignore"):
        want = fn(a.view(F64), b.view(F64)).view(U64)
    bad = np.flatnonzero(~same64(got, want))[:5]
    assert not len(bad), f"{op}: " + "; ".join(f"({int(a[i]):#018x}, {int(b[i]):#018x}) -> {int(got[i]):#018x}, "
                                               f"want {int(want[i]):#018x}" for i in bad)


def _operands(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(0, 5, size)
    sign = rng.integers(0, 2, size, dtype=U64) << U64(63)
    uniform = rng.integers(0, 2**64, size, dtype=U64)
    edge = EDGES[rng.integers(0, len(EDGES), size)]
    neighbour = edge + rng.integers(0, 3, size, dtype=U64)
    short = sign | (rng.integers(0, 2047, size, dtype=U64) << U64(52)) | (rng.integers(0, 2**20, size, dtype=U64) << U64(32))
    ordinary = (rng.standard_normal(size) * np.exp2(rng.integers(-30, 31, size))).view(U64)
    return np.stack([uniform, edge, neighbour, short, ordinary])[kind, np.arange(size)]


def operand_pairs64(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed operands, and pairs built to cancel, to align within 70 binades, or to put a product or a
    quotient at the overflow and underflow boundaries."""
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, size), _operands(rng, size)
    relation = rng.integers(0, 6, size)
    a_exp = ((a >> U64(52)) & U64(0x7FF)).astype(np.int64)
    with_exp = lambda e: (b & U64(0x800FFFFFFFFFFFFF)) | (np.clip(e, 0, 2046).astype(U64) << U64(52))  # noqa: E731
    cancel = ((a & U64(0x7FFFFFFFFFFFFFFF)) + rng.integers(0, 3, size, dtype=U64)) | (~a & U64(1 << 63))
    near = with_exp(a_exp + rng.integers(-70, 71, size))
    product = with_exp(np.where(rng.integers(0, 2, size) == 0, 3069, 1023 + rng.integers(-54, 4, size)) - a_exp
                       + rng.integers(-2, 3, size))
    quotient = with_exp(a_exp - np.where(rng.integers(0, 2, size) == 0, 1024, -rng.integers(1022, 1076, size))
                        + rng.integers(-2, 3, size))
    b = np.select([relation == 0, relation == 1, relation == 2, relation == 3], [cancel, near, product, quotient], b)
    return a.astype(U64), b.astype(U64)


@pytest.mark.parametrize("op", list(OPS))
def test_edge_classes_crossed(harness, op):
    a, b = np.meshgrid(EDGES, EDGES, indexing="ij")
    _check(harness, op, a.reshape(-1), b.reshape(-1))


@pytest.mark.parametrize("op", list(OPS))
def test_mixed_batches_equal_numpy(harness, op):
    @settings(max_examples=BATCHES, database=None)
    @given(seed=st.integers(0, 2**64 - 1))
    def batch(seed):
        _check(harness, op, *operand_pairs64(seed, BATCH))

    batch()


def test_sqrt_equals_numpy(harness):
    a, b = operand_pairs64(9, BATCH - len(EDGES))
    x = np.concatenate([EDGES, a & U64(0x7FFFFFFFFFFFFFFF), b]).astype(U64)[:BATCH * 2]
    got = _run(harness, 4, x, x)
    with np.errstate(all="ignore"):
        want = np.sqrt(x.view(F64)).view(U64)
    assert same64(got, want).all()


def test_comparisons_follow_ieee(harness):
    a, b = np.meshgrid(EDGES, EDGES, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    flags = np.concatenate([batch_call(harness, "compare", a[i : i + BATCH], b[i : i + BATCH]) for i in range(0, len(a), BATCH)])
    x, y = a.view(F64), b.view(F64)
    with np.errstate(invalid="ignore"):
        assert ((flags & 1) != 0).tolist() == (x < y).tolist()
        assert ((flags & 2) != 0).tolist() == (x <= y).tolist()
        assert ((flags & 4) != 0).tolist() == (x == y).tolist()
    assert ((flags & 8) != 0).tolist() == np.isnan(x).tolist()


def test_from_int_rounds_once(harness):
    values = [0, 1, -1, 2**53, 2**53 + 1, 2**53 + 3, -(2**54 + 2), 2**54 + 6, 2**63 - 1, 2**200 + 2**147,
              2**200 + 3 * 2**147, 2**200 + 2**147 + 1, 2**255 - 1, -(2**255 - 1)] + [int(v) << int(s) for v, s in zip(
              np.random.default_rng(4).integers(-(2**62), 2**62, 100), np.random.default_rng(5).integers(0, 150, 100))]
    got = harness.functions.from_int(values).call({"gas": CALL_GAS})
    want = [int(np.array(float(v)).view(U64)) for v in values]  # Python's int -> float rounds once, ties to even
    assert got == want


def test_clip_scale_equals_engine(harness):
    """binary32(min(1, max_norm / (√t + 1e-6))) as engine/portable/scalars.py computes it."""
    rng = np.random.default_rng(8)
    t = np.concatenate([[0.0, 1.0, 1e-12, 4.0, np.inf, 1e300], rng.lognormal(0, 6, 200) ** 2])
    max_norm = np.concatenate([[1.0, 1.0, 0.5, 2.0, 1.0, 1.0], rng.uniform(0.01, 10.0, 200)])
    got = batch_call(harness, "clip_scale", t.view(U64), max_norm.view(U64)).astype(np.uint32)
    want = np.array([clip_scale(float(x), float(m)) for x, m in zip(t, max_norm)], dtype=np.float32).view(np.uint32)
    assert (got == want).all()
    assert (got.view(np.float32) <= 1).all() and (got.view(np.float32) < 1).any()
