"""The counter-based random numbers of tessera-portable/1 (docs/arithmetic.md, "Random numbers").

Pure 64-bit integer arithmetic (a keyed splitmix64 finaliser), so every platform, library version and
device gives the same bits; floats are made from 24-bit integers, which binary32 holds exactly.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MUL1 = np.uint64(0xBF58476D1CE4E5B9)
MUL2 = np.uint64(0x94D049BB133111EB)
TWO_POW_M24 = np.float32(2.0**-24)
IRWIN_HALL_TERMS = 12  # twelve uniforms: variance 1, a bounded (|z| < 6) normal approximation


def bits24(key: int, index: np.ndarray) -> np.ndarray:
    """24-bit integers `splitmix64(key + index * GOLDEN) >> 40` for uint64 `index` (wrapping mod 2^64)."""
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) * GOLDEN + np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * MUL1
        z = (z ^ (z >> np.uint64(27))) * MUL2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.int64)


def uniform(key: int, count: int) -> np.ndarray:
    """`count` float32 values in [0, 1): bits24 × 2^-24 (exact)."""
    return bits24(key, np.arange(count, dtype=np.uint64)).astype(np.float32) * TWO_POW_M24


def uniform_symmetric(key: int, count: int, bound: np.float32) -> np.ndarray:
    """Initialisation U(−bound, bound): `(u + u − 1) × bound`, where `u + u − 1` is exact."""
    u = uniform(key, count)
    return ((u + u) - np.float32(1.0)) * np.float32(bound)


def normal(key: int, count: int, std: np.float32) -> np.ndarray:
    """Initialisation N(0, std²), Irwin-Hall: (Σ of 12 bits24 − 6·2^24) as an exact integer, rounded once
    to binary32, × 2^-24 (exact), × std (rounded)."""
    index = np.arange(count * IRWIN_HALL_TERMS, dtype=np.uint64)
    total = bits24(key, index).reshape(count, IRWIN_HALL_TERMS).sum(axis=1) - 6 * 2**24  # exact in int64
    return (total.astype(np.float32) * TWO_POW_M24) * np.float32(std)


def keep_threshold(p: float) -> int:
    """Dropout keeps an element iff bits24 >= round_half_even(p × 2^24) (p × 2^24 is exact in binary64)."""
    return int(round(float(p) * 2.0**24))


def keep_scale(p: float) -> np.float32:
    """The inverted-dropout factor: binary64 1 / (1 − p), rounded once to binary32."""
    return np.float32(1.0 / (1.0 - float(p)))


def dropout_keep(key: int, count: int, p: float) -> np.ndarray:
    """Boolean keep mask of `count` elements (row-major order of the tensor)."""
    return bits24(key, np.arange(count, dtype=np.uint64)) >= keep_threshold(p)


def fan_in_bound(fan_in: int) -> np.float32:
    """1 / sqrt(fan_in) in binary32: sqrt of float32(fan_in), then one division."""
    return np.float32(np.float32(1.0) / np.sqrt(np.float32(fan_in)))
