"""Tensor and state commitments for levels 2-3 (docs/referee.md): keccak256 Merkle trees the EVM can
open one element at a time.

A tensor's elements are serialised big-endian (binary32 as its 4-byte bit pattern, int64 as 8 bytes,
binary64 as 8 bytes, a bool as one byte 0 or 1), so element k of a 32-byte word is read on chain by a shift and a mask. The bytes
are cut into 32-byte chunks (8 binary32 values; the last chunk zero-padded); each chunk is a leaf
`keccak(0x10 ‖ chunk)`; the leaves are padded with zero words to a power-of-two width and combined by
`keccak(0x11 ‖ left ‖ right)` into the data root; the tensor root binds dtype and shape:
`keccak(0x12 ‖ dtype code ‖ ndim ‖ dims as uint32 BE ‖ data root)`. An aligned run of `2^m` chunks
(8·2^m binary32 values) is one subtree, so it is proven with its chunks and one path.

The state root of a checkpoint is a Merkle tree (nodes `keccak(0x15 ‖ l ‖ r)`, zero-padded) over a
header leaf (`keccak(0x14 ‖ binary header)`, layout in `StateHeader.encode`, 156 bytes) and one leaf per tensor in
sorted-name order, `keccak(0x13 ‖ keccak(name) ‖ tensor root)`.

NumPy only: no torch (the SDK, the CLI and the contracts' test vectors use this module).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sha3 import keccak_256

from protocol import keccak_batch
from protocol.errors import CheckpointError
from protocol.spec import canonical_json, json_too_deep, parse_untrusted_json

ZERO = bytes(32)


def keccak(data: bytes) -> bytes:
    """keccak256 of one message through safe-pysha3's C binding (about 0.55 us a call on the 2-core CI box,
    where eth_hash's dispatch costs 4 us); trees of BATCH_MIN leaves or more hash a whole level per call
    of protocol.keccak_batch instead (about 0.3 us a message)."""
    return keccak_256(data).digest()


BATCH_MIN = 64  # trees of fewer leaves hash one message at a time: the compiled loop's call costs more
CHUNK_BYTES = 32
CHUNK_LEAF, TENSOR_NODE, TENSOR_ROOT = b"\x10", b"\x11", b"\x12"
STATE_TENSOR_LEAF, STATE_HEADER_LEAF, STATE_NODE = b"\x13", b"\x14", b"\x15"

# dtype code -> (name, big-endian NumPy dtype, bytes per element)
DTYPE_CODES: dict[int, tuple[str, str, int]] = {
    1: ("float32", ">f4", 4), 2: ("int64", ">i8", 8), 3: ("float64", ">f8", 8), 4: ("bool", "|b1", 1),
}  # fmt: skip
_CODE_OF_NAME = {name: code for code, (name, _, _) in DTYPE_CODES.items()}
_SAFETENSORS_TAGS = {"F32": ("float32", "<f4", 4), "I64": ("int64", "<i8", 8), "F64": ("float64", "<f8", 8)}
MAX_NDIM = 8
MAX_DIM = 2**32 - 1
NULL_BOUNDARY = 2**64 - 1  # the header's boundary field for a state inside a segment
MAX_UINT32 = 2**32 - 1


# --------------------------------------------------------------------------------------------------
# Generic zero-padded binary trees
# --------------------------------------------------------------------------------------------------


def width_of(count: int) -> int:
    """The next power of two >= count (1 for count <= 1)."""
    width = 1
    while width < count:
        width *= 2
    return width


def depth_of(count: int) -> int:
    return width_of(count).bit_length() - 1


def _levels(leaves: Sequence[bytes], node: bytes) -> list[list[bytes]]:
    level = list(leaves) + [ZERO] * (width_of(len(leaves)) - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [keccak_256(node + level[j] + level[j + 1]).digest() for j in range(0, len(level), 2)]
        levels.append(level)
    return levels


def tree_root(leaves: Sequence[bytes], node: bytes) -> bytes:
    """Root of `leaves` padded with zero words to a power of two (ZERO for no leaves)."""
    if not leaves:
        return ZERO
    if len(leaves) >= BATCH_MIN and keccak_batch.NATIVE:
        padded = b"".join(leaves) + ZERO * (width_of(len(leaves)) - len(leaves))
        return _batch_root(np.frombuffer(padded, np.uint8).reshape(-1, 32), node)
    return _levels(leaves, node)[-1][0]


def _batch_root(leaves: np.ndarray, node: bytes) -> bytes:
    """Root over uint8[w, 32] leaves (w a power of two), a whole level per compiled call."""
    return keccak_batch.tree_levels(leaves, node)[-1][0].tobytes()


def tree_proof(leaves: Sequence[bytes], index: int, node: bytes, level: int = 0) -> list[bytes]:
    """Siblings, bottom-up, from the subtree at `level` holding leaf `index` (aligned) up to the root."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} outside 0..{len(leaves) - 1}")
    levels = _levels(leaves, node)
    position = index >> level
    proof = []
    for row in levels[level:-1]:
        proof.append(row[position ^ 1])
        position //= 2
    return proof


def root_from_path(subtree: bytes, position: int, proof: Sequence[bytes], node: bytes) -> bytes:
    """Walk up from `subtree` at `position` (its index among the subtrees of its level): bit j of the
    position says whether the running node is the right child at step j (merkle.vy's loop)."""
    current = subtree
    for sibling in proof:
        current = keccak(node + sibling + current) if position & 1 else keccak(node + current + sibling)
        position >>= 1
    if position != 0:
        raise ValueError("position has more bits than the proof has levels")
    return current


# --------------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------------


def dtype_code(array: np.ndarray) -> int:
    name = np.dtype(array.dtype).name
    if name not in _CODE_OF_NAME:
        raise ValueError(f"tensors of dtype {name} have no commitment (float32, int64, float64, bool only)")
    return _CODE_OF_NAME[name]


def element_bytes(array: np.ndarray) -> bytes:
    """The elements in row-major order, big-endian."""
    code = dtype_code(array)
    return np.ascontiguousarray(array, dtype=DTYPE_CODES[code][1]).tobytes()


def chunks_of(array: np.ndarray) -> list[bytes]:
    """The 32-byte chunks of a tensor's serialised elements (the last one zero-padded)."""
    data = element_bytes(array)
    data += bytes(-len(data) % CHUNK_BYTES)
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


def chunk_leaf(chunk: bytes) -> bytes:
    if len(chunk) != CHUNK_BYTES:
        raise ValueError(f"a chunk is {CHUNK_BYTES} bytes, not {len(chunk)}")
    return keccak(CHUNK_LEAF + chunk)


def shape_bytes(code: int, shape: Sequence[int]) -> bytes:
    """`dtype code ‖ ndim ‖ dims as uint32 BE`: the part of the root preimage before the data root."""
    if code not in DTYPE_CODES:
        raise ValueError(f"unknown dtype code {code}")
    if len(shape) > MAX_NDIM or any(not 0 <= int(d) <= MAX_DIM for d in shape):
        raise ValueError(f"shape {list(shape)} cannot be committed")
    return bytes([code, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)


def root_of_data(code: int, shape: Sequence[int], data_root: bytes) -> bytes:
    return keccak(TENSOR_ROOT + shape_bytes(code, shape) + data_root)


def data_root(array: np.ndarray) -> bytes:
    data = element_bytes(array)
    data += bytes(-len(data) % CHUNK_BYTES)
    count = len(data) // CHUNK_BYTES
    if count >= BATCH_MIN and keccak_batch.NATIVE:
        leaves = np.zeros((width_of(count), 32), np.uint8)  # the padding leaves are zero words, not hashed
        leaves[:count] = keccak_batch.prefixed_leaves(CHUNK_LEAF, data, CHUNK_BYTES)
        return _batch_root(leaves, TENSOR_NODE)
    return tree_root([keccak_256(CHUNK_LEAF + data[i : i + CHUNK_BYTES]).digest() for i in range(0, len(data), CHUNK_BYTES)],
                     TENSOR_NODE)  # fmt: skip


def tensor_root(array: np.ndarray) -> bytes:
    """The commitment to one tensor: dtype, shape and every element's bits."""
    return root_of_data(dtype_code(array), array.shape, data_root(array))


def elements_per_chunk(code: int) -> int:
    return CHUNK_BYTES // DTYPE_CODES[code][2]


def chunk_count(code: int, shape: Sequence[int]) -> int:
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    return -(-count // elements_per_chunk(code))


@dataclass(frozen=True)
class RunProof:
    """Chunks `first … first + len(chunks) − 1` of a tensor (an aligned power-of-two run, cut at the
    tensor's end) and the path from their subtree to the data root."""

    first: int
    chunks: tuple[bytes, ...]
    path: tuple[bytes, ...]


def prove_run(array: np.ndarray, first_element: int, count: int = 1) -> RunProof:
    """Proof of the elements `first_element … first_element + count − 1`: the smallest aligned run of
    2^m chunks holding them (one chunk for a single element)."""
    code = dtype_code(array)
    per = elements_per_chunk(code)
    total = int(array.size)
    if not (count >= 1 and 0 <= first_element and first_element + count <= total):
        raise ValueError(f"elements {first_element}..{first_element + count - 1} outside 0..{total - 1}")
    first_chunk, last_chunk = first_element // per, (first_element + count - 1) // per
    level = 0
    while (first_chunk >> level) != (last_chunk >> level):
        level += 1
    chunks = chunks_of(array)
    start = (first_chunk >> level) << level
    run = tuple(chunks[start : min(start + (1 << level), len(chunks))])
    path = tree_proof([chunk_leaf(c) for c in chunks], start, TENSOR_NODE, level)
    return RunProof(start, run, tuple(path))


def verify_run(root: bytes, code: int, shape: Sequence[int], proof: RunProof) -> bool:
    """True when `proof.chunks` are chunks `proof.first …` of the tensor committed by `root`, whose
    dtype code and shape are `code` and `shape`. The run must be aligned and its length a power of two
    (or cut short only by the tensor's end); its path must be exactly as long as the tree is deep above it."""
    try:
        count = chunk_count(code, shape)
        run = len(proof.chunks)
        if run == 0:
            return False
        level = depth_of(run)
        span = 1 << level
        full = min(span, count - proof.first) if proof.first < count else 0
        if proof.first % span or run != full:
            return False
        if len(proof.path) != depth_of(count) - level:
            return False
        leaves = [chunk_leaf(c) for c in proof.chunks] + [ZERO] * (span - run)
        subtree = _levels(leaves, TENSOR_NODE)[-1][0]
        found = root_from_path(subtree, proof.first >> level, proof.path, TENSOR_NODE)
        return root_of_data(code, shape, found) == root
    except ValueError:
        return False


def element_of_run(code: int, proof: RunProof, element: int) -> np.generic:
    """Element number `element` of the tensor (row-major), read from a verified run's chunks."""
    name, be, size = DTYPE_CODES[code]
    per = CHUNK_BYTES // size
    chunk = element // per - proof.first
    if not 0 <= chunk < len(proof.chunks):
        raise ValueError(f"element {element} is not in this run")
    offset = (element % per) * size
    return np.frombuffer(proof.chunks[chunk][offset : offset + size], dtype=be)[0].astype(name)


# --------------------------------------------------------------------------------------------------
# Checkpoint states
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateBinding:
    """What a state's header binds beyond its checkpoint JSON, from the spec (docs/referee.md,
    section 2): the job's step-record skeleton root S and length L (zero while unbound),
    `segment_steps`, the optimizer steps from this state to the next segment boundary (0 at the job's
    last state), so an agreed state's header fixes the length of the step bisection after it, and the
    job constants that make the next state's header a function of this one's (`next_header`): the
    job's total steps, its segment length, its batch size and `per_epoch`, the batches of one epoch
    (training examples // batch size; zero while unbound)."""

    skeleton_root: bytes = ZERO
    record_length: int = 0
    segment_steps: int = 0
    total_steps: int = 0
    per_epoch: int = 0
    segment_length: int = 0
    batch_size: int = 0

    def __post_init__(self) -> None:
        if len(self.skeleton_root) != 32:
            raise ValueError("the skeleton root is 32 bytes")
        for what, value, top in (("record length", self.record_length, MAX_UINT32),
                                 ("segment steps", self.segment_steps, MAX_UINT32),
                                 ("total steps", self.total_steps, NULL_BOUNDARY - 1),
                                 ("per_epoch", self.per_epoch, NULL_BOUNDARY - 1),
                                 ("segment length", self.segment_length, MAX_UINT32),
                                 ("batch size", self.batch_size, MAX_UINT32)):  # fmt: skip
            if not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"{what} {value} is not a uint{32 if top == MAX_UINT32 else 64}")


UNBOUND = StateBinding()  # a state whose job binds no step record and no segment length (yet)


@dataclass(frozen=True)
class StateHeader:
    """The bit-deciding fields of a checkpoint header, in the binary layout of `encode` (`decode`
    reads it back)."""

    spec_hash: bytes
    step: int
    boundary: int | None
    epoch: int
    position: int
    data_epoch: int
    dropout_counter: int
    seed: int
    skeleton_root: bytes = ZERO
    record_length: int = 0
    segment_steps: int = 0
    leaf_count: int = 0
    total_steps: int = 0
    per_epoch: int = 0
    segment_length: int = 0
    batch_size: int = 0

    def encode(self) -> bytes:
        """`spec_hash (32) ‖ step ‖ boundary (2^64−1 when inside a segment) ‖ cursor epoch ‖ cursor
        position ‖ rng data_epoch ‖ rng dropout_counter ‖ seed` (each uint64 BE) `‖ skeleton root S (32)
        ‖ record length L ‖ segment steps ‖ leaf count` (each uint32 BE) `‖ total steps ‖ per_epoch`
        (uint64 BE) `‖ segment length ‖ batch size` (uint32 BE): 156 bytes, fixed offsets."""
        words = (self.step, NULL_BOUNDARY if self.boundary is None else self.boundary, self.epoch, self.position,
                 self.data_epoch, self.dropout_counter, self.seed)  # fmt: skip
        if len(self.spec_hash) != 32 or len(self.skeleton_root) != 32:
            raise ValueError("spec hash and skeleton root are 32 bytes each")
        tail = (self.record_length, self.segment_steps, self.leaf_count)
        constants = (self.segment_length, self.batch_size)
        if not all(0 <= v <= MAX_UINT32 for v in (*tail, *constants)):
            raise ValueError("record length, segment steps, leaf count, segment length and batch size are uint32 each")
        return (self.spec_hash + b"".join(int(w).to_bytes(8, "big") for w in words) + self.skeleton_root
                + b"".join(int(v).to_bytes(4, "big") for v in tail)
                + b"".join(int(w).to_bytes(8, "big") for w in (self.total_steps, self.per_epoch))
                + b"".join(int(v).to_bytes(4, "big") for v in constants))  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> StateHeader:
        """The fields of a binary header (ValueError unless exactly HEADER_BYTES long)."""
        if len(data) != HEADER_BYTES:
            raise ValueError(f"a state header is {HEADER_BYTES} bytes, not {len(data)}")
        u64 = [int.from_bytes(data[o : o + 8], "big") for o in range(32, 88, 8)]
        u32 = [int.from_bytes(data[o : o + 4], "big") for o in (120, 124, 128, 148, 152)]
        return cls(spec_hash=data[:32], step=u64[0], boundary=None if u64[1] == NULL_BOUNDARY else u64[1],
                   epoch=u64[2], position=u64[3], data_epoch=u64[4], dropout_counter=u64[5], seed=u64[6],
                   skeleton_root=data[88:120], record_length=u32[0], segment_steps=u32[1], leaf_count=u32[2],
                   total_steps=int.from_bytes(data[132:140], "big"), per_epoch=int.from_bytes(data[140:148], "big"),
                   segment_length=u32[3], batch_size=u32[4])  # fmt: skip

    @property
    def constants_bound(self) -> bool:
        """Whether the job constants that `next_header` reads are bound (all non-zero)."""
        return min(self.total_steps, self.per_epoch, self.segment_length, self.batch_size) > 0


HEADER_BYTES = 156


def steps_to_next_boundary(step: int, segment_length: int, total_steps: int) -> int:
    """Optimizer steps from the state after `step` steps to the next segment boundary (a boundary
    state's: its segment's length; 0 at the job's last state)."""
    return min(segment_length - step % segment_length, total_steps - step)


def next_header(agreed: StateHeader) -> StateHeader:
    """The header of the state one optimizer step after `agreed` (docs/referee.md, section 2, "The
    next header"), a function of `agreed` alone; `lib/state_link.vy` `_next_header_holds` mirrors it.
    The step counts up; the state is at a boundary (its index ceil(step / segment length)) when
    `agreed` was one step before it; the data cursor and the RNG counters follow the engine's rules
    (epoch = step // per_epoch, position = (step % per_epoch) · batch size, data_epoch = epoch,
    dropout_counter = step); everything else is carried over. ValueError when the constants are
    unbound or `agreed` is the job's last state."""
    if not agreed.constants_bound:
        raise ValueError("the header binds no job constants")
    if agreed.step >= agreed.total_steps:
        raise ValueError(f"step {agreed.step} is the job's last state ({agreed.total_steps} steps)")
    step = agreed.step + 1
    at_boundary = step % agreed.segment_length == 0 or step == agreed.total_steps
    epoch = step // agreed.per_epoch
    return replace(agreed, step=step, boundary=-(-step // agreed.segment_length) if at_boundary else None,
                   epoch=epoch, position=(step % agreed.per_epoch) * agreed.batch_size, data_epoch=epoch,
                   dropout_counter=step,
                   segment_steps=steps_to_next_boundary(step, agreed.segment_length, agreed.total_steps))  # fmt: skip


def header_leaf(header: StateHeader) -> bytes:
    return header_leaf_of(header.encode())


def header_leaf_of(encoded: bytes) -> bytes:
    """The header leaf of a binary header: keccak(0x14 ‖ header)."""
    return keccak(STATE_HEADER_LEAF + encoded)


def state_tensor_leaf(name: str, root: bytes) -> bytes:
    return keccak(STATE_TENSOR_LEAF + keccak(name.encode()) + root)


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < NULL_BOUNDARY:
        raise CheckpointError(f"checkpoint header: {what} is not a uint64")
    return value


def _parse_header(meta: dict[str, str], binding: StateBinding, leaf_count: int) -> StateHeader:
    raw = meta.get("tessera")
    if raw is None or json_too_deep(raw, 8):
        raise CheckpointError("checkpoint has no tessera header")
    try:
        header = parse_untrusted_json(raw)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint header is not JSON ({exc})") from None
    try:
        spec_hash = bytes.fromhex(str(header["spec_hash"]).removeprefix("0x"))
        rng, cursor = header["rng"], header["cursor"]
        boundary = header["boundary"]
        state = StateHeader(
            spec_hash=spec_hash, step=_uint(header["step"], "step"),
            boundary=None if boundary is None else _uint(boundary, "boundary"),
            epoch=_uint(cursor["epoch"], "cursor epoch"), position=_uint(cursor["position"], "cursor position"),
            data_epoch=_uint(rng["data_epoch"], "data_epoch"), dropout_counter=_uint(rng["dropout_counter"], "dropout_counter"),
            seed=_uint(int(rng["seed"]), "seed"), skeleton_root=binding.skeleton_root,
            record_length=binding.record_length, segment_steps=binding.segment_steps, leaf_count=leaf_count,
            total_steps=binding.total_steps, per_epoch=binding.per_epoch, segment_length=binding.segment_length,
            batch_size=binding.batch_size,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint header lacks a bit-deciding field ({exc})") from None
    if len(spec_hash) != 32 or header.get("format") != "tessera-checkpoint/1":
        raise CheckpointError("checkpoint header: unknown format or spec hash")
    return state


def read_checkpoint(data: bytes) -> tuple[dict[str, np.ndarray], StateHeader, dict[str, str]]:
    """Tensors (NumPy, native byte order) and the parsed header of canonical checkpoint bytes, without
    torch. Refuses anything but the canonical encoding (docs/spec-format.md, "Canonical safetensors"):
    sorted names back to back from offset 0, the header canonical JSON padded with spaces to 8 bytes."""
    return _read(data, UNBOUND)


def read_canonical_safetensors(data: bytes, what: str, *, error: type[Exception] = CheckpointError,
                               bools: bool = False, max_header: int = 16 * 1024 * 1024) -> tuple[dict[str, np.ndarray], Any]:  # fmt: skip
    """The tensors and the `__metadata__` value of canonical safetensors bytes: names sorted, data back to
    back from offset 0, little-endian, the JSON header canonical and padded with spaces to a multiple of 8
    (the encoding every commitment reads). Anything else raises `error` naming `what`. F32, I64 and F64,
    and BOOL (bytes 0 and 1 only) when `bools`; the arrays are native-endian copies."""
    if len(data) < 8:
        raise error(f"{what}: too short")
    (length,) = struct.unpack("<Q", data[:8])
    if length > max_header or 8 + length > len(data) or json_too_deep(data[8 : 8 + length], 16):
        raise error(f"{what}: bad header length")
    raw_header = data[8 : 8 + length]
    try:
        header = parse_untrusted_json(raw_header)
    except ValueError as exc:
        raise error(f"{what}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise error(f"{what}: header is not an object")
    expected = canonical_json(header)
    if raw_header != expected + b" " * (-len(expected) % 8):
        raise error(f"{what}: header is not canonical")
    meta = header.pop("__metadata__", None)
    body = data[8 + length :]
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for name in sorted(header):
        entry = header[name]
        try:
            tag, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise error(f"{what}: tensor {name!r} has a malformed entry") from None
        if not all(type(v) is int for v in (*shape, begin, end)):
            raise error(f"{what}: tensor {name!r} has non-integer shape or offsets")
        known = tag in _SAFETENSORS_TAGS or (bools and tag == "BOOL")
        if not known or len(shape) > MAX_NDIM or any(d < 0 or d > MAX_DIM for d in shape):
            raise error(f"{what}: tensor {name!r} has dtype {tag} or shape {shape} outside the commitment")
        dtype_name, le, size = _SAFETENSORS_TAGS.get(tag, ("bool", "|b1", 1))
        nbytes = int(np.prod(shape, dtype=np.int64)) * size
        if begin != offset or end != offset + nbytes or end > len(body):
            raise error(f"{what}: tensor {name!r} is not stored canonically")
        raw = np.frombuffer(body[begin:end], dtype=np.uint8 if tag == "BOOL" else le)
        if tag == "BOOL" and not np.isin(raw, (0, 1)).all():
            raise error(f"{what}: tensor {name!r} holds bytes other than 0 and 1")
        tensors[name] = raw.astype(dtype_name).reshape(shape)
        offset = end
    if offset != len(body):
        raise error(f"{what}: trailing bytes after the tensors")
    return tensors, meta


def _read(data: bytes, binding: StateBinding) -> tuple[dict[str, np.ndarray], StateHeader, dict[str, str]]:
    tensors, meta = read_canonical_safetensors(data, "checkpoint")
    if not isinstance(meta, dict):
        raise CheckpointError("checkpoint: header is not canonical (no __metadata__ object)")
    if 1 + len(tensors) > MAX_UINT32:
        raise CheckpointError("checkpoint: too many tensors")
    return tensors, _parse_header(meta, binding, 1 + len(tensors)), meta


def state_leaves(tensors: dict[str, np.ndarray], header: StateHeader) -> list[bytes]:
    """Leaf 0 the header, then one leaf per tensor in sorted-name order."""
    return [header_leaf(header)] + [state_tensor_leaf(name, tensor_root(tensors[name])) for name in sorted(tensors)]


def state_root(checkpoint: bytes, binding: StateBinding = UNBOUND) -> bytes:
    """The level-2/3 commitment to a checkpoint's state: header and every tensor, element by element.
    `binding` is what the header binds from the spec (the step record's S and L, the steps to the next
    segment boundary; docs/referee.md), zero where not yet bound; the leaf count comes from the tensors."""
    tensors, header, _ = _read(checkpoint, binding)
    return tree_root(state_leaves(tensors, header), STATE_NODE)


def state_tensor_proof(checkpoint: bytes, name: str, binding: StateBinding = UNBOUND) -> tuple[int, bytes, list[bytes]]:
    """(leaf index, tensor root, path) proving tensor `name` of a checkpoint against its state root."""
    tensors, header, _ = _read(checkpoint, binding)
    names = sorted(tensors)
    if name not in tensors:
        raise ValueError(f"no tensor {name!r} in this checkpoint")
    index = 1 + names.index(name)
    return index, tensor_root(tensors[name]), tree_proof(state_leaves(tensors, header), index, STATE_NODE)


def bound_state_leaves(checkpoint: bytes, binding: StateBinding = UNBOUND) -> list[bytes]:
    """The state tree's leaves of a checkpoint whose header carries `binding` (what a defender reveals)."""
    tensors, header, _ = _read(checkpoint, binding)
    return state_leaves(tensors, header)


def header_proof(checkpoint: bytes, binding: StateBinding = UNBOUND) -> tuple[bytes, list[bytes]]:
    """(the 156-byte header, its path as leaf 0) of a checkpoint's state root: what opens a game."""
    tensors, header, _ = _read(checkpoint, binding)
    return header.encode(), tree_proof(state_leaves(tensors, header), 0, STATE_NODE)


def verify_state_leaf(root: bytes, leaf_count: int, index: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """True when `leaf` is leaf `index` of a state tree of `leaf_count` leaves (1 + tensors) under `root`."""
    if not 0 <= index < leaf_count or len(proof) != depth_of(leaf_count):
        return False
    try:
        return root_from_path(leaf, index, proof, STATE_NODE) == root
    except ValueError:
        return False
