"""The referee's binary32 soft-float (contracts/lib/float32.vy, through contracts/test/Float32Harness.vy)
against NumPy's IEEE binary32: every edge class crossed with every other, and hypothesis-seeded batches
of mixed operands (halfway cases, overflow and underflow boundaries, cancellations). A batch is one
eth_call of up to 1 024 operations on anvil. TESSERA_HYPOTHESIS_PROFILE=thorough runs about a million
pairs per operation instead of a few thousand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractLogicError

from tests.unit.contracts.float_cases import (
    EDGES,
    F32,
    THOROUGH,
    U32,
    describe_mismatches,
    edge_cross,
    low_pairs,
    oracle_binary,
    operand_pairs,
    same_bits,
)
from tests.unit.contracts.vyper_harness import CALL_GAS, batch_call, deploy

BATCH = 1_024
OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3}
UNARY = {"sqrt": 0, "rint": 1, "neg": 2, "abs": 3}
BATCHES = 1_000 if THOROUGH else 4  # hypothesis examples per operation, BATCH pairs each (about a million thorough)
SEEDS = st.integers(0, 2**64 - 1)


@pytest.fixture(scope="module")
def harness(w3):
    return deploy(w3, "contracts/test/Float32Harness.vy")


def _chunks(*arrays: np.ndarray):
    for start in range(0, len(arrays[0]), BATCH):
        yield [array[start : start + BATCH] for array in arrays]


def run_binary(harness, op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = []
    for x, y in _chunks(a, b):
        out.append(batch_call(harness, "binary", OPS[op], x, y))
    return np.concatenate(out).astype(U32)


def run_unary(harness, op: str, x: np.ndarray) -> np.ndarray:
    out = []
    for (chunk,) in _chunks(x):
        out.append(batch_call(harness, "unary", UNARY[op], chunk))
    return np.concatenate(out).astype(U32)


def check_binary(harness, op: str, a: np.ndarray, b: np.ndarray) -> None:
    got, want = run_binary(harness, op, a, b), oracle_binary(op, a, b)
    assert same_bits(got, want).all(), f"{op}: " + describe_mismatches(got, want, a, b)


# ------------------------------------------------------------------------------------------------
# + − × ÷
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(OPS))
def test_every_edge_class_crossed_with_every_other(harness, op):
    a, b = edge_cross()
    check_binary(harness, op, a, b)


def check_drawn_batches(harness, op: str, pairs) -> None:
    """BATCHES hypothesis-seeded batches of `pairs(seed, BATCH)` through `op`, against NumPy."""
    @settings(max_examples=BATCHES, database=None)
    @given(seed=SEEDS)
    def batch(seed):
        a, b = pairs(seed, BATCH)
        check_binary(harness, op, a, b)

    batch()


@pytest.mark.parametrize("op", list(OPS))
def test_mixed_batches_equal_numpy(harness, op):
    check_drawn_batches(harness, op, operand_pairs)


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_the_slower_paths_equal_numpy(harness, op):
    """Subnormal and lowest-binade operands and cancellations: the paths after the fast ones, which take no
    `_round_pack` (docs/referee.md "Adversarial values")."""
    check_drawn_batches(harness, op, low_pairs)


@settings(max_examples=12 if not THOROUGH else 1_000, database=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(EDGES.tolist()) | st.integers(0, 2**32 - 1),
                                st.sampled_from(EDGES.tolist()) | st.integers(0, 2**32 - 1)), min_size=1, max_size=16))
def test_drawn_pairs_every_operation(harness, pairs):
    """Small drawn lists (hypothesis shrinks a failure to one pair) through all four operations."""
    a = np.array([p[0] for p in pairs], dtype=U32)
    b = np.array([p[1] for p in pairs], dtype=U32)
    for op in OPS:
        check_binary(harness, op, a, b)


def test_the_de_bruijn_table_gives_the_leading_bit_of_every_significand() -> None:
    """float32.vy's `_top_bit` (its constants read from the source, its steps done in NumPy): floor(log2(x)) for
    every 0 < x < 2**24 (each significand and difference it is asked about) and for sampled x below 2**32."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[3] / "contracts" / "lib" / "float32.vy").read_text()
    constant = {name: int(value.replace("_", "")) for name, value in
                re.findall(r"^(DE_BRUIJN_32|TOP_BIT_TABLE): constant\(uint256\) = ([\d_]+)$", source, re.M)}  # fmt: skip
    x = np.concatenate([np.arange(1, 2**24, dtype=np.uint64),
                        np.random.default_rng(3).integers(2**24, 2**32, 2**20, dtype=np.uint64)])  # fmt: skip
    v = x.copy()
    for shift in (1, 2, 4, 8, 16):
        v |= v >> np.uint64(shift)
    index = ((v * np.uint64(constant["DE_BRUIJN_32"])) >> np.uint64(27)) & np.uint64(31)  # (mod 2**64: bits 27-31 kept)
    table = np.array([(constant["TOP_BIT_TABLE"] >> (5 * i)) & 31 for i in range(32)], dtype=np.uint64)
    assert np.array_equal(table[index], np.floor(np.log2(x.astype(np.float64))).astype(np.uint64))


def test_halfway_sums_round_to_even(harness):
    """1 + k·2**-24 for odd k lies exactly between two binary32 values: the even one wins."""
    one = np.full(8, 0x3F800000, dtype=U32)
    halves = (np.arange(1, 17, 2, dtype=np.float64) * 2.0**-24).astype(F32).view(U32)
    got = run_binary(harness, "add", one, halves)
    want = oracle_binary("add", one, halves)
    assert (got == want).all()
    assert (got & 1 == 0).all()  # every result is the even neighbour


def test_signed_zero_rules(harness):
    """+0 + −0 = +0, −0 + −0 = −0, x − x = +0, −0 × +1 = −0, 1 / −inf = −0."""
    a = np.array([0x00000000, 0x80000000, 0x3F800000, 0x80000000, 0x3F800000], dtype=U32)
    b = np.array([0x80000000, 0x80000000, 0x3F800000, 0x3F800000, 0xFF800000], dtype=U32)
    assert run_binary(harness, "add", a[:2], b[:2]).tolist() == [0x00000000, 0x80000000]
    assert run_binary(harness, "sub", a[2:3], b[2:3]).tolist() == [0x00000000]
    assert run_binary(harness, "mul", a[3:4], b[3:4]).tolist() == [0x80000000]
    assert run_binary(harness, "div", a[4:], b[4:]).tolist() == [0x80000000]


def test_invalid_operations_are_nan(harness):
    """inf − inf, 0 × inf, 0 / 0, inf / inf and √−1 are NaN (NaN is a class, but it must be one)."""
    a = np.array([0x7F800000, 0x00000000, 0x00000000, 0xFF800000], dtype=U32)
    b = np.array([0x7F800000, 0xFF800000, 0x80000000, 0x7F800000], dtype=U32)
    for op, x, y in (("sub", a[0:1], b[0:1]), ("mul", a[1:2], b[1:2]), ("div", a[2:3], b[2:3]), ("div", a[3:], b[3:])):
        assert np.isnan(run_binary(harness, op, x, y).view(F32)).all(), op
    assert np.isnan(run_unary(harness, "sqrt", np.array([0xBF800000], dtype=U32)).view(F32)).all()


# ------------------------------------------------------------------------------------------------
# √, rint, neg, abs
# ------------------------------------------------------------------------------------------------


def _unary_oracle(op: str, x: np.ndarray) -> np.ndarray:
    v = x.view(F32)
    with np.errstate(all="ignore"):
        if op == "sqrt":
            return np.sqrt(v).astype(F32).view(U32)
        if op == "rint":
            return np.rint(v).astype(F32).view(U32)
    return {"neg": x ^ U32(0x80000000), "abs": x & U32(0x7FFFFFFF)}[op]


@pytest.mark.parametrize("op", list(UNARY))
def test_unary_edges_and_batches(harness, op):
    @settings(max_examples=BATCHES, database=None)
    @given(seed=SEEDS)
    def batch(seed):
        a, b = operand_pairs(seed, BATCH // 2)
        x = np.concatenate([EDGES, a, b]).astype(U32)
        got, want = run_unary(harness, op, x), _unary_oracle(op, x)
        if op in ("neg", "abs"):
            assert (got == want).all(), describe_mismatches(got, want, x)  # exact bits, NaN included
        assert same_bits(got, want).all(), f"{op}: " + describe_mismatches(got, want, x)

    batch()


def test_rint_halves_go_to_even(harness):
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.5, 4194304.5, -0.25, 8388607.5], dtype=F32).view(U32)
    got = run_unary(harness, "rint", x).view(F32)
    assert got.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 4.0, 4194304.0, -0.0, 8388608.0]
    assert np.signbit(got).tolist() == np.signbit(np.rint(x.view(F32))).tolist()


# ------------------------------------------------------------------------------------------------
# Comparisons
# ------------------------------------------------------------------------------------------------


def test_comparisons_follow_ieee(harness):
    a, b = edge_cross()
    ra, rb = operand_pairs(7, BATCH)
    a, b = np.concatenate([a, ra, a[:200]]), np.concatenate([b, rb, a[:200]])  # a[:200] twice: equal pairs
    flags = np.concatenate([batch_call(harness, "compare", x, y) for x, y in _chunks(a, b)])
    x, y = a.view(F32), b.view(F32)
    with np.errstate(invalid="ignore"):
        assert ((flags & 1) != 0).tolist() == (x < y).tolist()
        assert ((flags & 2) != 0).tolist() == (x <= y).tolist()
        assert ((flags & 4) != 0).tolist() == (x == y).tolist()
    assert ((flags & 8) != 0).tolist() == (((a == b) | (np.isnan(x) & np.isnan(y)))).tolist()
    assert ((flags & 16) != 0).tolist() == np.isnan(x).tolist()


# ------------------------------------------------------------------------------------------------
# Conversions and scaling
# ------------------------------------------------------------------------------------------------


def test_from_int_rounds_once(harness):
    rng = np.random.default_rng(3)
    specials = [0, 1, -1, 2**24, 2**24 + 1, 2**24 + 3, 2**25 + 2, 2**25 + 6, -(2**24 + 1), 2**31 - 1, -(2**31),
                2**127 - 1, 2**128 - 2**103, 2**128 - 2**104, 2**128 - 2**104 - 1, 2**128, 2**200, -(2**255 - 1)]
    randoms = [int(v) << int(s) for v, s in zip(rng.integers(-(2**40), 2**40, 200), rng.integers(0, 100, 200))]
    values = specials + randoms
    got = np.array(harness.functions.from_int(values).call({"gas": CALL_GAS}), dtype=U32)
    # NumPy agrees where int -> binary64 is exact; beyond 2**53 it would round twice, so the oracle is
    # the integer rounding of `_nearest_f32`
    small = np.array([abs(v) < 2**53 for v in values])
    want = np.array([float(v) for v, keep in zip(values, small) if keep], dtype=F32).view(U32)
    exact = np.array([_nearest_f32(v) for v in values], dtype=U32)
    assert (got == exact).all(), describe_mismatches(got, exact, np.array([v & 0xFFFFFFFF for v in values]))
    assert (got[small] == want).all()


def _nearest_f32(v: int) -> int:
    """The binary32 nearest to integer v (ties to even), by integer arithmetic."""
    if v == 0:
        return 0
    sign = 0x80000000 if v < 0 else 0
    m = abs(v)
    shift = m.bit_length() - 24  # value = q · 2**shift with q in [2**23, 2**24) before rounding
    if shift <= 0:
        q = m << -shift
    else:
        q, rest = m >> shift, m & ((1 << shift) - 1)
        if rest > 1 << (shift - 1) or (rest == 1 << (shift - 1) and q & 1):
            q += 1
        if q == 1 << 24:
            q, shift = q >> 1, shift + 1
    exponent = 23 + shift + 127
    if exponent >= 255:
        return sign | 0x7F800000
    return sign | (exponent << 23) | (q & 0x7FFFFF)


def test_to_int_truncates(harness):
    x = np.array([0.0, -0.0, 0.5, -0.99, 1.0, -1.0, 2.5, -150.75, 8388607.5, 2.0**40, -(2.0**62), 1e-40],
                 dtype=F32).view(U32)
    got = harness.functions.to_int(x.tolist()).call({"gas": CALL_GAS})
    assert got == [int(np.trunc(v)) for v in x.view(F32).astype(np.float64)]
    with pytest.raises(ContractLogicError, match="float32: not finite"):
        harness.functions.to_int([0x7F800000]).call()


def test_binary64_round_trip(harness):
    """binary32 -> binary64 is exact (NumPy's astype); binary64 -> binary32 rounds once, ties to even."""
    a, b = operand_pairs(11, BATCH // 2)
    x = np.concatenate([EDGES, a]).astype(U32)
    widened = batch_call(harness, "to_f64", x)
    with np.errstate(invalid="ignore"):  # signalling NaNs among the edges
        want = x.view(F32).astype(np.float64).view(np.uint64)
    assert same_bits_64(widened, want).all()
    rng = np.random.default_rng(12)
    d = np.concatenate([
        rng.integers(0, 2**64, 300, dtype=np.uint64),
        want,
        # binary64 values exactly halfway between binary32 neighbours, and one binary64 ulp either side
        want | np.uint64(1 << 28),
        (want | np.uint64(1 << 28)) + np.uint64(1),
        (want | np.uint64(1 << 28)) - np.uint64(1),
        np.array([0x47EFFFFFE0000000, 0x47EFFFFFF0000000, 0x36A0000000000000, 0x3690000000000000,
                  0x3690000000000001, 0x3680000000000000, 0x0000000000000001, 0x8000000000000001], dtype=np.uint64),
    ])
    got = np.concatenate([batch_call(harness, "from_f64", chunk) for (chunk,) in _chunks(d)]).astype(U32)
    with np.errstate(all="ignore"):
        narrow = d.view(np.float64).astype(F32).view(U32)
    assert same_bits(got, narrow).all(), describe_mismatches(got, narrow, d)


def same_bits_64(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got == want) | (np.isnan(got.view(np.float64)) & np.isnan(want.view(np.float64)))


def test_scalbn_rounds_into_subnormals(harness):
    """x · 2**n with one rounding: the binary64 product is exact, so NumPy's cast of it is the oracle."""
    a, _ = operand_pairs(5, BATCH - len(EDGES))
    x = np.concatenate([EDGES, a]).astype(U32)
    rng = np.random.default_rng(6)
    n = rng.integers(-300, 301, len(x))
    n[: len(EDGES)] = -149
    n[len(EDGES) : len(EDGES) + 100] = rng.integers(-160, -120, 100)
    got = np.array(harness.functions.scalbn(x.tolist(), n.tolist()).call({"gas": CALL_GAS}), dtype=U32)
    with np.errstate(all="ignore"):
        want = (x.view(F32).astype(np.float64) * np.exp2(n.astype(np.float64))).astype(F32).view(U32)
    assert same_bits(got, want).all(), describe_mismatches(got, want, x, n.astype(np.int64) & 0xFFFFFFFF)
    big = harness.functions.scalbn([0x3F800000, 0x3F800000], [10**30, -(10**30)]).call()
    assert big == [0x7F800000, 0x00000000]


# ------------------------------------------------------------------------------------------------
# The fold
# ------------------------------------------------------------------------------------------------


def _fold(a: np.ndarray, b: np.ndarray) -> int:
    total = F32(0.0)
    with np.errstate(all="ignore"):
        for x, y in zip(a.view(F32), b.view(F32)):
            total = F32(total + F32(x * y))
    return int(np.array(total, dtype=F32).view(U32))


@settings(max_examples=4 if not THOROUGH else 200, database=None)
@given(seed=SEEDS, length=st.sampled_from([0, 1, 2, 17, 256]), spread=st.sampled_from([0, 10, 40]))
def test_dot_is_the_ordered_fold(harness, seed, length, spread):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(length) * np.exp2(rng.integers(-spread, spread + 1, length))).astype(F32).view(U32)
    b = (rng.standard_normal(length) * np.exp2(rng.integers(-spread, spread + 1, length))).astype(F32).view(U32)
    got = harness.functions.dot(a.tolist(), b.tolist()).call({"gas": CALL_GAS})
    want = _fold(a, b)
    assert same_bits(np.array([got]), np.array([want])).all(), (hex(got), hex(want))


def test_dot_of_edge_values_and_order(harness):
    """Specials and signed zeros through the fold; reversing the terms changes the bits (order is kept)."""
    a = np.array([0x80000000, 0x4B800000, 0x3F800000, 0x3F800000], dtype=U32)  # −0, 2**24, 1, 1
    b = np.array([0x3F800000, 0x3F800000, 0x3F800000, 0x3F800000], dtype=U32)
    for x, y in ((a, b), (a[::-1].copy(), b[::-1].copy()), (a[:1], b[:1]), (EDGES, EDGES[::-1].copy())):
        assert same_bits(np.array([harness.functions.dot(x.tolist(), y.tolist()).call()]),
                         np.array([_fold(x, y)])).all()
    assert harness.functions.dot(a[:1].tolist(), b[:1].tolist()).call() == 0x00000000  # +0 + (−0) = +0
    assert _fold(a, b) == 0x4B800000 and _fold(a[::-1].copy(), b[::-1].copy()) == 0x4B800001  # 2**24 vs 2**24 + 2
    with pytest.raises(ContractLogicError, match="float32: dot lengths differ"):
        harness.functions.dot([0], [0, 0]).call()


def _pack(bits: np.ndarray, filler: int = 0) -> list[int]:
    """Eight binary32 patterns per word, value k at bits 224 − 32·(k mod 8) (big-endian lanes); unused
    lanes of the last word hold `filler`."""
    padded = np.concatenate([bits, np.full(-len(bits) % 8, filler, dtype=U32)]).astype(">u4")
    return [int.from_bytes(padded[i : i + 8].tobytes(), "big") for i in range(0, len(padded), 8)]


@settings(max_examples=4 if not THOROUGH else 200, database=None)
@given(seed=SEEDS, length=st.sampled_from([0, 1, 7, 8, 9, 100, 256]))
def test_dot_words_is_the_same_fold(harness, seed, length):
    """The packed fold equals the ordered fold of the unpacked values; lanes past n are ignored."""
    a, b = operand_pairs(seed, length)
    got = harness.functions.dot_words(_pack(a, 0x7F800000), _pack(b, 0x7FC00000), length).call({"gas": CALL_GAS})
    assert same_bits(np.array([got]), np.array([_fold(a, b)])).all()
    if length:
        with pytest.raises(ContractLogicError, match="float32: dot words too short"):
            harness.functions.dot_words(_pack(a), _pack(b)[:-1], length).call()



def test_the_built_dearest_folds_are_the_ordered_fold(harness):
    """The values the gas personas build to take the soft-float's dearest paths (every product a normal times a
    subnormal with a normal result, every add onto the running sum an exact cancellation that flips its sign:
    `decoder_worst_case.cancelling_linear` with its bias, `row_worst_case.cancelling_embedding`'s dy column,
    `cancelling_row`'s softmax_backward row) fold bit for bit as NumPy's binary32 does: those paths are right too."""
    from personas import decoder_worst_case as dw
    from personas import row_worst_case as rw

    linear = dw.cancelling_linear(dw.linear_entry(2, 110, 1), 1)
    column = rw.cancelling_embedding(160, 1, 0)[2][1]
    row = rw.cancelling_row("softmax_backward", 104)
    subnormal = lambda v: bool(np.all((v.view(U32) & 0x7F800000) == 0))  # noqa: E731
    assert subnormal(linear[1]) and subnormal(row[1]) and not subnormal(column)
    for a, b in ((linear[0], linear[1]), (column, np.ones_like(column)), (row[0], row[1])):
        bits_a, bits_b = a.astype(F32).view(U32), b.astype(F32).view(U32)
        sums, total = [0.0], F32(0)  # the running sum flips sign at every term: each add an exact cancellation
        for x, y in zip(a, b):
            total = F32(total + F32(x * y))
            sums.append(float(total))
        assert np.all(np.sign(sums[2:]) == -np.sign(sums[1:-1]))
        got = harness.functions.dot(bits_a.tolist(), bits_b.tolist()).call({"gas": CALL_GAS})
        assert got == _fold(bits_a, bits_b), (hex(got), hex(_fold(bits_a, bits_b)))
    fold = _fold(linear[0].view(U32), linear[1].view(U32))
    with_bias = harness.functions.binary(OPS["add"], [fold], [int(linear[2].view(U32)[0])]).call()[0]
    assert with_bias == int(np.array(F32(np.uint32(fold).view(F32) + linear[2][0])).view(U32))
