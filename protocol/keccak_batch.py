"""keccak256 of many short messages at once, and whole Merkle levels, compiled with numba.

A tensor root hashes every 32-byte chunk of the tensor and every node above the chunks (docs/referee.md,
section 1): a tiny-GPT step record hashes some 840,000 messages. One call into a C binding per message
spends more time in the interpreter than in the permutation; here a whole level of a tree is one
compiled loop. Messages are at most 135 bytes (one block of keccak256's 136-byte rate), which covers
the chunk leaves (33 bytes) and the nodes (65 bytes). `protocol.tensor_commit` calls this for large
trees and hashes small ones one message at a time; the property tests check both give the same bits.

numba is imported on first use (it is heavy), and the compiled code is cached beside this module.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

RATE_BYTES = 136  # keccak256: 1600 − 2·256 bits of capacity
# the lanes are read as native 64-bit words, so the batch path runs on little-endian hosts (x86-64, arm64)
NATIVE = sys.byteorder == "little"

_ROUND_CONSTANTS = np.array([
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
], dtype=np.uint64)  # fmt: skip

_compiled: dict[str, Any] = {}


def _rotl(v: Any, n: int) -> Any:
    return (v << np.uint64(n)) | (v >> np.uint64(64 - n))


rotl = _rotl  # replaced by its numba dispatcher in `_kernels` before `_permute_rows` is compiled


def _permute_rows(lanes: np.ndarray, out: np.ndarray) -> None:  # uint64[n, 17] padded blocks -> uint64[n, 4]
    # keccak-f[1600] with the 25 lanes in locals a<x><y> (lane x + 5y): numba keeps them in registers
    for i in range(lanes.shape[0]):
        a00 = lanes[i, 0]
        a10 = lanes[i, 1]
        a20 = lanes[i, 2]
        a30 = lanes[i, 3]
        a40 = lanes[i, 4]
        a01 = lanes[i, 5]
        a11 = lanes[i, 6]
        a21 = lanes[i, 7]
        a31 = lanes[i, 8]
        a41 = lanes[i, 9]
        a02 = lanes[i, 10]
        a12 = lanes[i, 11]
        a22 = lanes[i, 12]
        a32 = lanes[i, 13]
        a42 = lanes[i, 14]
        a03 = lanes[i, 15]
        a13 = lanes[i, 16]
        a23 = np.uint64(0)
        a33 = np.uint64(0)
        a43 = np.uint64(0)
        a04 = np.uint64(0)
        a14 = np.uint64(0)
        a24 = np.uint64(0)
        a34 = np.uint64(0)
        a44 = np.uint64(0)
        for rnd in range(24):
            c0 = a00 ^ a01 ^ a02 ^ a03 ^ a04
            c1 = a10 ^ a11 ^ a12 ^ a13 ^ a14
            c2 = a20 ^ a21 ^ a22 ^ a23 ^ a24
            c3 = a30 ^ a31 ^ a32 ^ a33 ^ a34
            c4 = a40 ^ a41 ^ a42 ^ a43 ^ a44
            d0 = c4 ^ rotl(c1, 1)
            d1 = c0 ^ rotl(c2, 1)
            d2 = c1 ^ rotl(c3, 1)
            d3 = c2 ^ rotl(c4, 1)
            d4 = c3 ^ rotl(c0, 1)
            b00 = a00 ^ d0
            b13 = rotl(a01 ^ d0, 36)
            b21 = rotl(a02 ^ d0, 3)
            b34 = rotl(a03 ^ d0, 41)
            b42 = rotl(a04 ^ d0, 18)
            b02 = rotl(a10 ^ d1, 1)
            b10 = rotl(a11 ^ d1, 44)
            b23 = rotl(a12 ^ d1, 10)
            b31 = rotl(a13 ^ d1, 45)
            b44 = rotl(a14 ^ d1, 2)
            b04 = rotl(a20 ^ d2, 62)
            b12 = rotl(a21 ^ d2, 6)
            b20 = rotl(a22 ^ d2, 43)
            b33 = rotl(a23 ^ d2, 15)
            b41 = rotl(a24 ^ d2, 61)
            b01 = rotl(a30 ^ d3, 28)
            b14 = rotl(a31 ^ d3, 55)
            b22 = rotl(a32 ^ d3, 25)
            b30 = rotl(a33 ^ d3, 21)
            b43 = rotl(a34 ^ d3, 56)
            b03 = rotl(a40 ^ d4, 27)
            b11 = rotl(a41 ^ d4, 20)
            b24 = rotl(a42 ^ d4, 39)
            b32 = rotl(a43 ^ d4, 8)
            b40 = rotl(a44 ^ d4, 14)
            a00 = b00 ^ (~b10 & b20)
            a10 = b10 ^ (~b20 & b30)
            a20 = b20 ^ (~b30 & b40)
            a30 = b30 ^ (~b40 & b00)
            a40 = b40 ^ (~b00 & b10)
            a01 = b01 ^ (~b11 & b21)
            a11 = b11 ^ (~b21 & b31)
            a21 = b21 ^ (~b31 & b41)
            a31 = b31 ^ (~b41 & b01)
            a41 = b41 ^ (~b01 & b11)
            a02 = b02 ^ (~b12 & b22)
            a12 = b12 ^ (~b22 & b32)
            a22 = b22 ^ (~b32 & b42)
            a32 = b32 ^ (~b42 & b02)
            a42 = b42 ^ (~b02 & b12)
            a03 = b03 ^ (~b13 & b23)
            a13 = b13 ^ (~b23 & b33)
            a23 = b23 ^ (~b33 & b43)
            a33 = b33 ^ (~b43 & b03)
            a43 = b43 ^ (~b03 & b13)
            a04 = b04 ^ (~b14 & b24)
            a14 = b14 ^ (~b24 & b34)
            a24 = b24 ^ (~b34 & b44)
            a34 = b34 ^ (~b44 & b04)
            a44 = b44 ^ (~b04 & b14)
            a00 ^= _ROUND_CONSTANTS[rnd]
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = a00, a10, a20, a30


def _kernels() -> dict[str, Any]:
    """Compile (or load from numba's cache) the permutation, once per process. `_permute_rows` is a
    module-level function: numba's cache key of a closure holds its cells (a dispatcher differs in
    every process), so a closure was compiled again by every process (about 1 s) and never loaded."""
    global rotl
    if _compiled:
        return _compiled
    from numba import njit

    rotl = njit(inline="always")(_rotl)
    _compiled.update(permute_rows=njit(cache=True, nogil=True)(_permute_rows))
    return _compiled


def hash_rows(messages: np.ndarray) -> np.ndarray:
    """keccak256 of each row of `messages` (uint8[n, m], m <= 135): uint8[n, 32]."""
    messages = np.asarray(messages, dtype=np.uint8)
    if messages.ndim != 2 or messages.shape[1] >= RATE_BYTES:
        raise ValueError(f"messages must be rows of at most {RATE_BYTES - 1} bytes, not shape {messages.shape}")
    n, m = messages.shape
    blocks = np.zeros((n, RATE_BYTES), np.uint8)  # one padded block a message: m bytes, 0x01, zeros, 0x80
    blocks[:, :m] = messages
    blocks[:, m] ^= 0x01  # keccak's padding (not SHA-3's 0x06)
    blocks[:, RATE_BYTES - 1] ^= 0x80
    out = np.empty((n, 4), "<u8")
    if n:
        _kernels()["permute_rows"](blocks.view("<u8"), out)  # lanes are little-endian words
    return out.view(np.uint8).reshape(n, 32)


def prefixed_leaves(domain: bytes, data: bytes, size: int) -> np.ndarray:
    """keccak256(domain ‖ piece) of each `size`-byte piece of `data` (its length a multiple of size)."""
    pieces = np.frombuffer(data, np.uint8).reshape(-1, size)
    messages = np.empty((pieces.shape[0], len(domain) + size), np.uint8)
    messages[:, : len(domain)] = np.frombuffer(domain, np.uint8)
    messages[:, len(domain) :] = pieces
    return hash_rows(messages)


def tree_levels(leaves: np.ndarray, node: bytes) -> list[np.ndarray]:
    """Every level of the tree over `leaves` (uint8[w, 32], w a power of two), bottom-up, each node
    keccak256(node ‖ left ‖ right)."""
    levels = [leaves]
    while levels[-1].shape[0] > 1:
        pairs = levels[-1].reshape(-1, 64)
        levels.append(prefixed_leaves(node, pairs.tobytes(), 64))
    return levels
