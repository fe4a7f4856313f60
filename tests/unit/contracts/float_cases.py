"""Operand generators and the NumPy oracle for the referee-arithmetic tests (contracts/lib/float32.vy).

Operands are binary32 bit patterns (np.uint32). The generators lean on the classes where a soft-float
goes wrong: signed zeros, the smallest and largest subnormals, the smallest normal, the largest finite
value, infinities, NaNs (quiet and signalling, both signs), values one ulp either side of those, short
significands (whose sums and products land on exact halfway cases), exponents whose product sits at the
overflow or underflow boundary, and near-cancellations.
"""

from __future__ import annotations

import os

import numpy as np

F32 = np.float32
U32 = np.uint32

THOROUGH = os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough"

# Positive edge patterns; EDGES adds every negation.
_POSITIVE_EDGES = [
    0x00000000,  # +0
    0x00000001,  # smallest subnormal
    0x00000002,
    0x00000003,
    0x00400000,  # a mid subnormal (2**-127)
    0x007FFFFF,  # largest subnormal
    0x00800000,  # smallest normal
    0x00800001,
    0x00FFFFFF,
    0x01000000,
    0x0C000000,  # 2**-103: squares underflow
    0x1F800000,  # 2**-64
    0x33800000,  # 2**-24
    0x34000000,  # 2**-23: one ulp of 1
    0x3EFFFFFF,
    0x3F000000,  # 0.5
    0x3F7FFFFF,  # largest below 1
    0x3F800000,  # 1
    0x3F800001,  # 1 + ulp
    0x3FB504F3,  # √2 (log's reduction boundary)
    0x3FFFFFFF,
    0x40000000,  # 2
    0x4B000000,  # 2**23: rint's limit
    0x4B000001,
    0x4AFFFFFF,
    0x4B7FFFFF,  # 2**24 - 1
    0x4B800000,  # 2**24
    0x5F800000,  # 2**64
    0x7E800000,  # 2**126
    0x7F000000,  # 2**127
    0x7F7FFFFE,
    0x7F7FFFFF,  # largest finite
    0x7F800000,  # +inf
    0x7F800001,  # signalling NaN
    0x7FC00000,  # quiet NaN
    0x7FFFFFFF,  # NaN with every payload bit
    0x42B17218,  # exp's overflow threshold
    0x42CFF1B5,  # |exp's underflow threshold|
]
EDGES = np.array(_POSITIVE_EDGES + [x | 0x80000000 for x in _POSITIVE_EDGES], dtype=U32)


def same_bits(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Elementwise: the same binary32 value (equal bits, or both NaN: NaN is a class)."""
    got, want = np.asarray(got, dtype=U32), np.asarray(want, dtype=U32)
    return (got == want) | (np.isnan(got.view(F32)) & np.isnan(want.view(F32)))


def describe_mismatches(got: np.ndarray, want: np.ndarray, *operands: np.ndarray, limit: int = 5) -> str:
    """The first few differing positions with their operands, in hex."""
    bad = np.flatnonzero(~same_bits(got, want))[:limit]
    rows = []
    for i in bad:
        ops = ", ".join(f"{int(o[i]):#010x}" for o in operands)
        rows.append(f"[{i}] ({ops}) -> got {int(got[i]):#010x}, want {int(want[i]):#010x}")
    return "; ".join(rows)


def oracle_binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """NumPy's IEEE binary32 result of `op` (round to nearest even; NumPy never flushes subnormals)."""
    x, y = a.view(F32), b.view(F32)
    with np.errstate(all="ignore"):
        out = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](x, y)
    return out.astype(F32).view(U32)


def _single(rng: np.random.Generator, size: int) -> np.ndarray:
    """Operands of mixed classes: uniform patterns, edges, edge neighbours, short significands, ordinary
    magnitudes."""
    kind = rng.integers(0, 6, size)
    uniform = rng.integers(0, 2**32, size, dtype=np.uint64).astype(U32)
    edge = EDGES[rng.integers(0, len(EDGES), size)]
    step = rng.integers(-3, 4, size).astype(np.int64)
    neighbour = np.clip(edge.astype(np.int64) + step, 0, 2**32 - 1).astype(U32)
    exponent = rng.integers(0, 255, size, dtype=np.uint64).astype(U32)
    top = rng.integers(0, 2**11, size, dtype=np.uint64).astype(U32)
    short = (exponent << U32(23)) | (top << U32(12)) | (rng.integers(0, 2, size, dtype=np.uint64).astype(U32) << U32(31))
    ordinary = (rng.standard_normal(size) * np.exp2(rng.integers(-20, 21, size))).astype(F32).view(U32)
    subnormal = rng.integers(0, 2**23, size, dtype=np.uint64).astype(U32) | (
        rng.integers(0, 2, size, dtype=np.uint64).astype(U32) << U32(31))
    choices = np.stack([uniform, edge, neighbour, short, ordinary, subnormal])
    return choices[kind, np.arange(size)]


def operand_pairs(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` operand pairs from `seed`: independent mixed operands, plus pairs built to cancel, to align
    within a few exponents, or to put a product or quotient at the overflow and underflow boundaries."""
    rng = np.random.default_rng(seed)
    a, b = _single(rng, size), _single(rng, size)
    relation = rng.integers(0, 8, size)
    # near-cancellation: b = -(a + k ulp)
    k = rng.integers(-4, 5, size).astype(np.int64)
    cancel = np.clip((a & U32(0x7FFFFFFF)).astype(np.int64) + k, 0, 0x7F7FFFFF).astype(U32) | (~a & U32(0x80000000))
    # b within 45 binades of a (sums with guard, round and sticky bits all in play; 40 is where the
    # fast path of `_add` hands over to the sticky-bit path)
    shift = rng.integers(-45, 46, size).astype(np.int64)
    a_exp = ((a >> U32(23)) & U32(0xFF)).astype(np.int64)
    near_exp = np.clip(a_exp + shift, 0, 254).astype(U32)
    near = (b & U32(0x807FFFFF)) | (near_exp << U32(23))
    # product at the boundaries: exponent fields summing to about 127 + 254 (overflow) or 127 - 25 … 127
    # (a subnormal or zero product)
    target = np.where(rng.integers(0, 2, size) == 0, 381, 127 + rng.integers(-25, 4, size)) + rng.integers(-2, 3, size)
    boundary_exp = np.clip(target - a_exp, 0, 254).astype(U32)
    boundary = (b & U32(0x807FFFFF)) | (boundary_exp << U32(23))
    # quotient at the boundaries: ea - eb about 128 (overflow) or about -127 - 24 … -127 (subnormal)
    gap = np.where(rng.integers(0, 2, size) == 0, 128, -rng.integers(126, 152, size)) + rng.integers(-2, 3, size)
    quotient = (b & U32(0x807FFFFF)) | (np.clip(a_exp - gap, 0, 254).astype(U32) << U32(23))
    b = np.select([relation == 0, relation == 1, relation == 2, relation == 3], [cancel, near, boundary, quotient], b)
    return a.astype(U32), b.astype(U32)


def low_pairs(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` operand pairs for the soft-float's slower paths (`float32._add`'s and `_mul`'s code after their
    fast paths, which adversarial values reach on every operation): subnormals, normals of the lowest binades
    and of about 2**-63 (whose products are subnormal or zero), against each other and against ordinary
    values, and subtractions within one binade (cancellations that leave any number of bits)."""
    rng = np.random.default_rng(seed)

    def low(n: int) -> np.ndarray:
        exponent = np.select([rng.integers(0, 4, n) == k for k in range(3)],
                             [np.zeros(n, np.int64), rng.integers(1, 4, n), rng.integers(60, 68, n)],
                             rng.integers(90, 165, n)).astype(U32)
        sign = rng.integers(0, 2, n, dtype=np.uint64).astype(U32) << U32(31)
        return sign | (exponent << U32(23)) | rng.integers(0, 2**23, n, dtype=np.uint64).astype(U32)

    a, b = low(size), low(size)
    # b in a's binade or the next one down, of the other sign: a cancellation (d <= 1) as a sum
    a_exp = ((a >> U32(23)) & U32(0xFF)).astype(np.int64)
    near = np.clip(a_exp - rng.integers(0, 2, size), 0, 254).astype(U32) << U32(23)
    cancel = (~a & U32(0x80000000)) | near | rng.integers(0, 2**23, size, dtype=np.uint64).astype(U32)
    b = np.where(rng.integers(0, 3, size) == 0, cancel, b).astype(U32)
    return a, b


def edge_cross() -> tuple[np.ndarray, np.ndarray]:
    """Every edge class crossed with every other (both orders, both signs)."""
    a, b = np.meshgrid(EDGES, EDGES, indexing="ij")
    return a.reshape(-1).astype(U32), b.reshape(-1).astype(U32)
