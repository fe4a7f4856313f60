"""A dispute kit: what one party of a `contracts/RefereeGame.vy` game needs to answer every move, read
back from disk without torch (docs/referee.md, "On chain: the game").

`engine/referee_kit.py` (torch, run in a child process) computes it once per disputed segment: first the
per-step state roots of the segment (c_0 … c_n of the step bisection), then, once the step bisection has
pinned step t, the step record of that step, the agreed state r_t's canonical bytes and the leaves of
r_{t+1}. It writes a directory:

- `kit.json`: the format tag, segment, first step, state roots, the record's skeleton root S and length
  L; once pinned, the step t, the state names, each entry's skeleton bytes, output roots and hints (a
  move's strides: `entry_hints`), the state
  map and the leaves of r_{t+1} (hex);
- `state.safetensors`: r_t's checkpoint bytes as they are (canonical; `protocol.tensor_commit` opens them);
- `outputs.safetensors`: every entry's outputs (`e000012.o0`), the constants its skeletons carry only the
  root of (`e000024.c2`: input 2 of entry 24) and the batch (`batch.0`, `batch.1`), in the
  canonical safetensors encoding (sorted names back to back, canonical JSON header padded with spaces).

`load_kit` refuses files over their size limit, non-canonical tensors, and a kit whose parts do not hash
to its own roots (S, each entry's output roots, r_t and r_{t+1}): a party never plays from a kit that
would make it post something it cannot prove. The answers (`DisputeKit.ops`, `reveal_entry_args`,
`link_proof`, `element_proofs`, …) are those the personas' parties compute from an in-memory record.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol import data_rules, fold_rules, row_pieces, scalar_rules
from protocol import tensor_commit as tc
from protocol.referee_model import _unravel  # the one row-major index of a flat element
from protocol.errors import ArtifactError
from protocol.spec import canonical_json, json_too_deep, parse_untrusted_json
from protocol.tensor_commit import keccak

KIT_FORMAT = "tessera-referee-kit/1"
KIT_JSON, STATE_FILE, OUTPUTS_FILE = "kit.json", "state.safetensors", "outputs.safetensors"
MAX_KIT_JSON_BYTES = 64 * 1024 * 1024
MAX_TENSOR_FILE_BYTES = 8 * 1024**3
MAX_HEADER_BYTES = 16 * 1024 * 1024

SKELETON_LEAF, ENTRY_LEAF, RECORD_NODE, MAP_LEAF = b"\x16", b"\x17", b"\x18", b"\x19"
UNCHANGED = 0xFFFFFFFF
# reference kinds (docs/referee.md, section 3)
NONE, STATE, BATCH, OUTPUT, HEADER, CONSTANT, UNRECORDED = range(7)
SELF = 7  # RefereeGame's REF_SELF: a read of an output of the pinned entry itself (not a skeleton reference)
SELF_READ = 1_000  # a read's input index k >= SELF_READ reads output k - SELF_READ of the entry itself

# safetensors dtype tag -> (NumPy little-endian dtype, dtype code of the tensor commitment)
_TAGS = {"F32": ("<f4", 1), "I64": ("<i8", 2), "F64": ("<f8", 3), "BOOL": ("|b1", 4)}
_TAG_OF_CODE = {code: tag for tag, (_, code) in _TAGS.items()}


class KitError(ArtifactError):
    """A dispute kit that is missing, too large, malformed or inconsistent with its own roots."""


# --------------------------------------------------------------------------------------------------
# Canonical safetensors (NumPy only)
# --------------------------------------------------------------------------------------------------


def _layout(tensors: Mapping[str, np.ndarray]) -> tuple[bytes, list[tuple[np.ndarray, str]], int]:
    """`encode_tensors`' header (padded), each tensor with the dtype it is written in, and the data's bytes."""
    header: dict[str, Any] = {"__metadata__": {}}
    parts, offset = [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])  # (ascontiguousarray would make a 0-d array 1-d)
        tag = _TAG_OF_CODE[tc.dtype_code(array)]
        size = array.size * np.dtype(_TAGS[tag][0]).itemsize
        header[name] = {"dtype": tag, "shape": list(array.shape), "data_offsets": [offset, offset + size]}
        parts.append((array, _TAGS[tag][0]))
        offset += size
    raw = canonical_json(header)
    return raw + b" " * (-len(raw) % 8), parts, offset


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> bytes:
    """Canonical safetensors bytes: names sorted, data back to back from offset 0, little-endian, the
    JSON header canonical with an empty `__metadata__`, padded with spaces to a multiple of 8."""
    raw, parts, _ = _layout(tensors)
    return struct.pack("<Q", len(raw)) + raw + b"".join(array.astype(dtype, copy=False).tobytes() for array, dtype in parts)


def tensor_file_bytes(tensors: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(header bytes, file bytes) of `encode_tensors(tensors)`, without building its data."""
    raw, _, data = _layout(tensors)
    return len(raw), 8 + len(raw) + data


def kit_overflow(tensors: Mapping[str, np.ndarray], state_bytes: int) -> str | None:
    """Why a kit of these OUTPUTS_FILE tensors and a state of `state_bytes` could not be read back (`load_kit`
    reads at most MAX_TENSOR_FILE_BYTES a file and MAX_HEADER_BYTES of header), or None. A party whose own kit
    is over cannot move in a refereed game and loses on its clock: `engine.api.uncovered_calls` asks this."""
    header, size = tensor_file_bytes(tensors)
    if header > MAX_HEADER_BYTES:
        return f"{OUTPUTS_FILE}'s header would be {header:,} bytes, over the limit of {MAX_HEADER_BYTES:,}"
    if size > MAX_TENSOR_FILE_BYTES:
        return f"{OUTPUTS_FILE} would be {size:,} bytes, over the limit of {MAX_TENSOR_FILE_BYTES:,}"
    if state_bytes > MAX_TENSOR_FILE_BYTES:
        return f"{STATE_FILE} would be {state_bytes:,} bytes, over the limit of {MAX_TENSOR_FILE_BYTES:,}"
    return None


def decode_tensors(data: bytes, what: str) -> dict[str, np.ndarray]:
    """The tensors of canonical safetensors bytes with empty metadata (KitError for anything else)."""
    tensors, meta = tc.read_canonical_safetensors(data, what, error=KitError, bools=True, max_header=MAX_HEADER_BYTES)
    if meta != {}:
        raise KitError(f"{what}: header is not an object with empty metadata")
    return tensors


# --------------------------------------------------------------------------------------------------
# Skeletons and the record trees (the torch-free side of engine/portable/record.py)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputRef:
    """One reference of a skeleton: kind, a, b, the dtype code and shape the kernel reads, a constant's root."""

    kind: int
    a: int
    b: int
    dtype: int
    shape: tuple[int, ...]
    root: bytes


@dataclass(frozen=True)
class Skeleton:
    """A parsed skeleton (docs/referee.md, "Byte layouts")."""

    kernel: str
    args: tuple[bytes, ...]  # one 32-byte word each
    inputs: tuple[InputRef, ...]
    outputs: tuple[tuple[int, tuple[int, ...]], ...]  # (dtype code, shape)


def _shape_at(data: bytes, at: int) -> tuple[int, tuple[int, ...], int]:
    code, ndim = data[at], data[at + 1]
    if ndim > tc.MAX_NDIM:
        raise ValueError(f"{ndim} dims")
    dims = struct.unpack(f">{ndim}I", data[at + 2 : at + 2 + 4 * ndim])
    return code, tuple(dims), at + 2 + 4 * ndim


def parse_skeleton(data: bytes) -> Skeleton:
    """The skeleton bytes read back (ValueError when they are cut, long or malformed)."""
    try:
        (length,) = struct.unpack(">H", data[:2])
        at = 2 + length
        kernel = data[2:at].decode()
        (count,) = struct.unpack(">I", data[at : at + 4])
        at += 4
        args = tuple(data[at + 32 * i : at + 32 * i + 32] for i in range(count))
        at += 32 * count
        (count,) = struct.unpack(">I", data[at : at + 4])
        at += 4
        inputs = []
        for _ in range(count):
            kind, a, b = struct.unpack(">BII", data[at : at + 9])
            code, dims, at = _shape_at(data, at + 9)
            inputs.append(InputRef(kind, a, b, code, dims, data[at : at + 32]))
            at += 32
        (count,) = struct.unpack(">I", data[at : at + 4])
        at += 4
        outputs = []
        for _ in range(count):
            code, dims, at = _shape_at(data, at)
            outputs.append((code, dims))
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"skeleton is cut or malformed ({exc})") from None
    if at != len(data) or any(len(arg) != 32 for arg in args) or any(len(r.root) != 32 for r in inputs):
        raise ValueError("skeleton is cut or has trailing bytes")
    return Skeleton(kernel, args, tuple(inputs), tuple(outputs))


def skeleton_leaf(skeleton: bytes) -> bytes:
    return keccak(SKELETON_LEAF + skeleton)


def entry_leaf(index: int, skeleton: bytes, out_roots: Sequence[bytes]) -> bytes:
    """`keccak(0x17 ‖ uint32 j ‖ skeleton leaf ‖ output roots)`."""
    return keccak(ENTRY_LEAF + struct.pack(">I", index) + skeleton_leaf(skeleton) + b"".join(out_roots))


def empty_record_root(width: int) -> bytes:
    """P_{-1}: the record tree of width W with every slot the zero word."""
    return tc.tree_root([tc.ZERO] * width, RECORD_NODE)


def prefix_roots(entry_leaves: Sequence[bytes], width: int) -> list[bytes]:
    """P_0 … P_{L−1}: P_j over entry leaves 0 … j, zero words beyond, width W (one path updated a step)."""
    depth = width.bit_length() - 1
    zeros = [tc.ZERO]
    for _ in range(depth):
        zeros.append(keccak(RECORD_NODE + zeros[-1] + zeros[-1]))
    levels = [[zeros[d]] * (width >> d) for d in range(depth + 1)]
    roots = []
    for position, leaf in enumerate(entry_leaves):
        levels[0][position] = leaf
        for d in range(depth):
            position //= 2
            levels[d + 1][position] = keccak(RECORD_NODE + levels[d][2 * position] + levels[d][2 * position + 1])
        roots.append(levels[depth][0])
    return roots


def record_proof(leaves: Sequence[bytes], index: int, width: int) -> list[bytes]:
    """Siblings proving leaf `index` of a record tree (S, or P_j over the first leaves) of width W."""
    return tc.tree_proof(list(leaves) + [tc.ZERO] * (width - len(leaves)), index, RECORD_NODE) if width > 1 else []


# The host rules (contracts/lib/host_rules.vy): the kernels the game decides on chain, and what they read.
ACTIVATIONS = ("relu", "relu_backward", "gelu", "gelu_backward", "silu", "silu_backward", "gelu_tanh",
               "gelu_tanh_backward", "tanh", "tanh_backward")  # fmt: skip
HOST_KERNELS = (*ACTIVATIONS, "linear", "adamw", "add", "mul", "mul_scalar", "scale", "fill_above_diagonal", "transpose",
                "place", "cat", "move", "softmax", "softmax_backward", "layer_norm")  # fmt: skip
FLOAT32 = 1
MAX_HOST_INPUTS, MAX_HOST_ARGS, MAX_FOLD = 5, 8, 256
# The widest rows HostRules and RowRules plan (host_rules.vy, row_rules.vy): the dearest honest prove_element
# of a wider row comes near 1,000,000 gas or over it, with values drawn like a trained model's or the adversarial
# ones (personas/row_worst_case.py ADVERSE_SCALES), so it is decided in pieces instead (RowPieceRules,
# protocol.row_pieces).
MAX_SOFTMAX_ROW, MAX_SOFTMAX_BACKWARD_ROW, MAX_LAYER_NORM_ROW = 34, 128, 104
MAX_RMS_NORM_ROW, MAX_RMS_NORM_BACKWARD_ROW, MAX_LAYER_NORM_BACKWARD_ROW = 196, 52, 52
ROW_CAPS = {"softmax": MAX_SOFTMAX_ROW, "softmax_backward": MAX_SOFTMAX_BACKWARD_ROW, "layer_norm": MAX_LAYER_NORM_ROW,
            "rms_norm": MAX_RMS_NORM_ROW, "rms_norm_backward": MAX_RMS_NORM_BACKWARD_ROW,
            "layer_norm_backward": MAX_LAYER_NORM_BACKWARD_ROW}  # fmt: skip
RUN_ELEMENTS = 256  # binary32 values of the widest aligned run one proof opens (32 chunks)
# Rows whose width does not divide RUN_ELEMENTS straddle the tensor tree; with values that make every product a
# subnormal-operand multiply and every add onto a running sum an exact cancellation they cost more a term than
# any scaling searched, so such rows of softmax_backward and the norm backwards are whole only up to these widths
# (host_rules.vy; docs/referee.md "Row caps").
MAX_SOFTMAX_BACKWARD_SPLIT_ROW, MAX_NORM_BACKWARD_SPLIT_ROW = 104, 52


def whole_row(kernel: str, width: int, size: int) -> bool:
    """Whether a row kernel's rows of `width` (its first input of `size` elements) are decided whole: within the
    kernel's cap (ROW_CAPS) and, where the width does not divide RUN_ELEMENTS, softmax_backward's within
    MAX_SOFTMAX_BACKWARD_SPLIT_ROW and a norm backward's only where x̂ holds at most RUN_ELEMENTS (one run) and
    within MAX_NORM_BACKWARD_SPLIT_ROW; the others' rows are then read in two runs where they cross a boundary."""
    if not 1 <= width <= ROW_CAPS[kernel]:
        return False
    if RUN_ELEMENTS % width == 0:
        return True
    if kernel == "softmax_backward":
        return width <= MAX_SOFTMAX_BACKWARD_SPLIT_ROW
    if kernel in ("layer_norm_backward", "rms_norm_backward"):
        return size <= RUN_ELEMENTS and width <= MAX_NORM_BACKWARD_SPLIT_ROW
    return True
# RefereeGame's skeleton limits: the rules contracts read skeletons of at most MAX_SKELETON bytes; a longer
# one (up to MAX_LONG_SKELETON, the longest a record holds) is revealed with `reveal_long_entry` and escalates
MAX_SKELETON, MAX_LONG_SKELETON = 4_096, 65_536
MAX_LINK_LEAVES = 2_048  # the state leaves `reveal_state` takes (lib/state_link.vy MAX_LINK_LEAVES)


def reveal_function(skeleton: bytes) -> str:
    """RefereeGame's function that reveals an entry of this skeleton (`reveal_entry`, or
    `reveal_long_entry` past MAX_SKELETON bytes)."""
    return "reveal_long_entry" if len(skeleton) > MAX_SKELETON else "reveal_entry"
TAG_INT, TAG_FLOAT64, TAG_FLOAT32, TAG_TUPLE, TAG_INPUT = 1, 2, 3, 5, 6
INT_SIGN = 1 << 247


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=object)) if shape else 1


def _input_word(k: int) -> bytes:
    return bytes([TAG_INPUT]) + k.to_bytes(31, "big")


def _names_inputs(skeleton: Skeleton, count: int) -> bool:
    """Exactly `count` inputs, the first `count` arguments naming inputs 0 … count − 1 in order."""
    return len(skeleton.inputs) == count and list(skeleton.args[:count]) == [_input_word(k) for k in range(count)]


def tuple_word(values: Sequence[int]) -> bytes:
    """The argument word of a tuple of integers (engine.portable.record.encode_arg): tag 5, then the first
    31 bytes of keccak over each integer's word (tag 1, 31 bytes two's complement)."""
    return bytes([TAG_TUPLE]) + keccak(b"".join(bytes([TAG_INT]) + int(v).to_bytes(31, "big", signed=True) for v in values))[:31]


def entry_hints(kernel: str, args: Sequence[Any]) -> tuple[int, ...]:
    """What `prove_element` must reveal of an entry's arguments that its skeleton holds only hashed: a
    move's strides (args: source, sizes, strides, offset); nothing for other kernels."""
    return tuple(int(s) for s in args[2]) if kernel == "move" else ()


def _move_checkable(skeleton: Skeleton, shape: tuple[int, ...]) -> bool:
    """move(source, sizes, strides, offset): the sizes the output's shape, the strides a tuple, the
    offset a non-negative integer."""
    args = skeleton.args
    if not _names_inputs(skeleton, 1) or len(args) != 4:
        return False
    offset = int.from_bytes(args[3], "big")
    return (args[1] == tuple_word(shape) and args[2][0] == TAG_TUPLE and args[3][0] == TAG_INT
            and not offset & INT_SIGN)  # fmt: skip


def _cat_axis(skeleton: Skeleton, ndim: int) -> int:
    return int.from_bytes(skeleton.args[-1][1:], "big", signed=True) % ndim


def _shape_checkable(skeleton: Skeleton, output: int) -> bool:
    kernel, inputs, outputs = skeleton.kernel, skeleton.inputs, skeleton.outputs
    shape = outputs[output][1]
    size, ndim = _size(shape), len(shape)
    if kernel == "adamw":
        return (len(inputs) == 5 and len(outputs) == 3 and all(_size(r.shape) == size for r in inputs[:4])
                and _size(inputs[4].shape) == 8)  # fmt: skip
    if kernel == "layer_norm":
        return _layer_norm_checkable(skeleton)
    if len(outputs) != 1:
        return False
    if kernel in ACTIVATIONS:
        count = 2 if ACTIVATIONS.index(kernel) % 2 else 1
        return len(inputs) == count and all(_size(r.shape) == size for r in inputs)
    if kernel == "linear":
        return _linear_checkable(skeleton, shape)
    if kernel in ("add", "mul"):  # broadcast: right-aligned, every axis equal or of size 1
        return _names_inputs(skeleton, 2) and all(
            len(r.shape) <= ndim and all(n in (1, m) for n, m in zip(r.shape, shape[ndim - len(r.shape) :])) for r in inputs)
    if kernel == "scale":
        return _names_inputs(skeleton, 2) and _size(inputs[0].shape) == size and _size(inputs[1].shape) == 1
    if kernel == "cat":
        return _cat_checkable(skeleton, shape)
    if kernel == "move":
        return _move_checkable(skeleton, shape)
    if kernel in ("softmax", "softmax_backward"):  # operands of the output's shape, rows of its last axis
        operands = 1 if kernel == "softmax" else 2
        return (_names_inputs(skeleton, operands) and len(skeleton.args) == operands and ndim > 0
                and all(r.shape == tuple(shape) for r in inputs) and whole_row(kernel, shape[-1], size))  # fmt: skip
    if not _names_inputs(skeleton, 1):
        return False
    source = inputs[0].shape
    if kernel == "place":
        return _size(source) <= size
    if _size(source) != size:
        return False
    tag = skeleton.args[1][0] if len(skeleton.args) > 1 else 0
    if kernel == "mul_scalar":
        return tag == TAG_FLOAT32
    if kernel == "fill_above_diagonal":
        return ndim >= 2 and tag in (TAG_FLOAT64, TAG_FLOAT32)
    # transpose: the source's last two axes swapped
    return ndim >= 2 and tuple(source) == (*shape[:-2], shape[-1], shape[-2])


def _linear_checkable(skeleton: Skeleton, shape: tuple[int, ...]) -> bool:
    """x [..., K], y [..., N] with the same rows, W [N, K], K a power of two 8 … 256, the bias (if any)
    named by argument 2."""
    inputs = skeleton.inputs
    if len(inputs) < 2 or len(shape) < 2:
        return False
    x, w = inputs[0], inputs[1]
    if len(x.shape) != len(shape) or len(w.shape) != 2:
        return False
    terms = w.shape[1]
    if not 8 <= terms <= MAX_FOLD or terms & (terms - 1) or x.shape[-1] != terms or w.shape[0] != shape[-1]:
        return False
    if _size(x.shape) // terms != _size(shape) // w.shape[0]:
        return False
    if len(inputs) == 2:
        return True
    arg = skeleton.args[2] if len(skeleton.args) > 2 else bytes(32)
    return len(inputs) == 3 and arg == _input_word(2) and inputs[2].shape == (shape[-1],)


def _layer_norm_checkable(skeleton: Skeleton) -> bool:
    """layer_norm(x, w, b, eps): x of rows of W (1 … MAX_LAYER_NORM_ROW), w and b [W], eps binary64 or binary32;
    outputs y and x̂ of x's shape, rstd one value a row (all binary32)."""
    inputs, outputs = skeleton.inputs, skeleton.outputs
    if not _names_inputs(skeleton, 3) or len(skeleton.args) != 4 or len(outputs) != 3:
        return False
    x = inputs[0].shape
    if skeleton.args[3][0] not in (TAG_FLOAT64, TAG_FLOAT32) or not x or not 0 < x[-1] <= MAX_LAYER_NORM_ROW:
        return False
    width = x[-1]
    if any(r.shape != (width,) for r in inputs[1:]) or any(code != FLOAT32 for code, _ in outputs):
        return False
    return outputs[0][1] == x and outputs[1][1] == x and _size(outputs[2][1]) == _size(x) // width


def _row_reads(k: int, first: int, count: int) -> list[tuple[int, int, int]]:
    """A row of input k as one run, or two where it crosses a RUN_ELEMENTS boundary."""
    boundary = (first // RUN_ELEMENTS + 1) * RUN_ELEMENTS
    if first + count <= boundary:
        return [(k, first, count)]
    return [(k, first, boundary - first), (k, boundary, first + count - boundary)]


def _cat_checkable(skeleton: Skeleton, shape: tuple[int, ...]) -> bool:
    inputs, ndim = skeleton.inputs, len(shape)
    count = len(inputs)
    if count == 0 or ndim == 0 or len(skeleton.args) != count + 1 or len(skeleton.args) > MAX_HOST_ARGS:
        return False
    if not _names_inputs(skeleton, count) or skeleton.args[count][0] != TAG_INT:
        return False
    axis = _cat_axis(skeleton, ndim)
    if any(len(r.shape) != ndim or any(n != m for i, (n, m) in enumerate(zip(r.shape, shape)) if i != axis) for r in inputs):
        return False
    return sum(r.shape[axis] for r in inputs) == shape[axis]


def host_checkable(skeleton: Skeleton, output: int) -> bool:
    """Whether RefereeGame's host rules (HostRules.vy, `_checkable`) decide every element of `output`;
    when they do not, disputing it escalates the game to the arbiter."""
    if skeleton.kernel not in HOST_KERNELS or output >= len(skeleton.outputs):
        return False
    code, shape = skeleton.outputs[output]
    if code != FLOAT32 or len(skeleton.inputs) > MAX_HOST_INPUTS:
        return False
    if any(ref.kind not in (STATE, OUTPUT) or ref.dtype != FLOAT32 for ref in skeleton.inputs):
        return False
    return _size(shape) != 0 and _shape_checkable(skeleton, output)


# The row and selection rules (contracts/lib/row_rules.vy, deployed as RowRules.vy): kernels HostRules has
# no room for, and the selections that read a bool mask or a constant.
ROW_KERNELS = ("rms_norm", "rms_norm_backward", "layer_norm_backward", "scaled_keep", "where", "dropout_keep",
               "cross_entropy", "cross_entropy_backward", "embedding_backward", "causal_lm")  # fmt: skip
LOSS_KERNELS = ("cross_entropy", "cross_entropy_backward", "embedding_backward", "causal_lm")  # `_loss_checkable`'s
BOOL = 4
INT64 = 2
# the loss rules (row_rules.vy, "Loss rules" of docs/referee.md): cross-entropy's rows pay one exp a logit
# (as softmax's do), embedding_backward's reads are bounded by their load (as FoldRules' MAX_COLUMN_LOAD)
# (rows of C dividing 256 never cross a run boundary: C up to MAX_CROSS_ENTROPY_ROW; any C up to the split cap)
MAX_CROSS_ENTROPY_ROW, MAX_CROSS_ENTROPY_SPLIT_ROW = 32, 29
MAX_EMBEDDING_LOAD = fold_rules.MAX_EMBEDDING_LOAD  # row_rules.MAX_EMBEDDING_LOAD (one mirror: the piecing reads it too)
ROW_CAPS.update({"cross_entropy": MAX_CROSS_ENTROPY_ROW, "cross_entropy_backward": MAX_CROSS_ENTROPY_ROW})
INT64_RUN = 128  # int64 values of the widest aligned run one proof opens (32 chunks of 4)
ONE_F64 = 0x3FF0000000000000  # 1.0 in binary64: a p in [0, 1] is a pattern at most this


def cross_entropy_row_within(width: int) -> bool:
    """Whether RowRules decides a cross-entropy row of `width` logits whole (`_loss_checkable`): at most
    MAX_CROSS_ENTROPY_SPLIT_ROW, or at most MAX_CROSS_ENTROPY_ROW where it divides 256 (one run). Wider
    rows are decided in pieces (`row_pieces.row_piecing`)."""
    return width <= MAX_CROSS_ENTROPY_SPLIT_ROW or (width <= MAX_CROSS_ENTROPY_ROW and RUN_ELEMENTS % width == 0)


def _row_statistics(skeleton: Skeleton) -> int:
    """1 when a cross-entropy (or causal-LM loss) entry is row-pieced (`row_pieces.row_piecing`, its shapes
    alone) and its last output is the statistics, binary32 [2·R·P]; else 0: the outputs RowRules' count check
    allows after the kernel's own (and the loss running values)."""
    piecing = row_pieces.row_piecing(skeleton.kernel, [r.shape for r in skeleton.inputs])
    if piecing is None or not skeleton.outputs:
        return 0
    return int(tuple(skeleton.outputs[-1]) == (FLOAT32, (piecing.size,)))


def _dropout_checkable(skeleton: Skeleton) -> bool:
    """dropout_keep(header, p, number): the state header its one input, p a binary64 in [0, 1], the
    call's number a non-negative integer, one non-empty bool output."""
    args, outputs = skeleton.args, skeleton.outputs
    return (_names_inputs(skeleton, 1) and len(args) == 3 and skeleton.inputs[0].kind == HEADER and len(outputs) == 1
            and outputs[0][0] == BOOL and _size(outputs[0][1]) != 0 and args[1][0] == TAG_FLOAT64
            and int.from_bytes(args[1][-8:], "big") <= ONE_F64 and args[2][0] == TAG_INT
            and not int.from_bytes(args[2], "big") & INT_SIGN)  # fmt: skip


def _broadcasts(shape: Sequence[int], out: Sequence[int]) -> bool:
    """Right-aligned, every axis equal or of size 1."""
    return len(shape) <= len(out) and all(n in (1, m) for n, m in zip(shape, out[len(out) - len(shape) :]))


def _norm_checkable(skeleton: Skeleton, output: int) -> bool:
    """rms_norm(x, w, eps): rows of W (1 … MAX_RMS_NORM_ROW), w [W], eps binary64 or binary32, outputs y, x̂ of x's
    shape and rstd one a row. A backward (x̂, rstd, w, dy) output 0 (dx): x̂, dy, dx of one shape whose
    rows are whole (`whole_row`: W divides 256, or x̂ has at most 256 elements and W is at most
    MAX_NORM_BACKWARD_SPLIT_ROW), rstd one a
    row, w [W], and the kernel's output count (one more when FoldRules checks dw and db in pieces: their
    running values)."""
    inputs, outputs, args = skeleton.inputs, skeleton.outputs, skeleton.args
    x = inputs[0].shape
    if not x or not 0 < x[-1] <= ROW_CAPS[skeleton.kernel]:
        return False
    width, rows = x[-1], _size(x) // x[-1]
    if skeleton.kernel == "rms_norm":
        return (_names_inputs(skeleton, 2) and len(args) == 3 and args[2][0] in (TAG_FLOAT64, TAG_FLOAT32)
                and len(outputs) == 3 and inputs[1].shape == (width,) and outputs[0][1] == x and outputs[1][1] == x
                and _size(outputs[2][1]) == rows)  # fmt: skip
    return (output == 0 and _names_inputs(skeleton, 4) and len(args) == 4
            and len(outputs) - (3 if skeleton.kernel == "layer_norm_backward" else 2) in (0, 1)  # (+ dw/db's running values)
            and whole_row(skeleton.kernel, width, _size(x)) and _size(inputs[1].shape) == rows
            and inputs[2].shape == (width,) and inputs[3].shape == x and outputs[0][1] == x)  # fmt: skip


def _provable(ref: Any, dtype: int, constant_ok: bool) -> bool:
    """A state tensor or an earlier output (or, where `constant_ok`, a constant) of `dtype`."""
    return ref.kind in ((STATE, OUTPUT, CONSTANT) if constant_ok else (STATE, OUTPUT)) and ref.dtype == dtype


def _embedding_load(skeleton: Skeleton) -> int:
    """embedding_backward's reads: dy's column proof words and values, the ids' chunks and values."""
    positions, dy = _size(skeleton.inputs[0].shape), skeleton.inputs[1].shape
    return fold_rules.embedding_load(tc.chunk_count(FLOAT32, dy), dy[-1], positions)


def _running_values_fit(skeleton: Skeleton, piecing: fold_rules.Piecing) -> bool:
    """A loss entry in pieces: exactly one more output, binary32, the running values of its pieces but the
    last ((pieces − 1) · size of them, `fold_rules.loss_piecing`), then a row-pieced cross-entropy's
    statistics (`_row_statistics`)."""
    outputs, base = skeleton.outputs, fold_rules.LOSS_BASE_OUTPUTS[skeleton.kernel]
    extra = 1 + (_row_statistics(skeleton) if skeleton.kernel in row_pieces.NLL_ROWS else 0)
    return len(outputs) == base + extra and outputs[base] == (FLOAT32, ((piecing.pieces - 1) * piecing.size,))


def _loss_checkable(skeleton: Skeleton, output: int) -> bool:
    """cross_entropy(z, t): z [R, C] binary32, t [R] int64, outputs the mean (one value) and nll [R]; the
    mean reads only nll (the entry's own output 1), in pieces of MAX_FOLD rows where R is over MAX_FOLD
    (then a third output, the running sums after each piece but the last, each checkable too:
    `fold_rules.loss_piecing`), nll[r] z's row r and t[r] (C at most MAX_CROSS_ENTROPY_SPLIT_ROW, or at
    most MAX_CROSS_ENTROPY_ROW where C divides 256: no row across a run boundary).
    cross_entropy_backward(z, t, grad): grad binary64 or binary32, one output of z's shape.
    embedding_backward(ids, dy, V): ids int64 of P positions, dy binary32 [..., D] of P rows, output
    [V, D]: one piece (P at most MAX_FOLD, a load at most MAX_EMBEDDING_LOAD) or, with one more output
    (the running dW after each piece but the last, each checkable too), in pieces of a load at most
    fold_rules.MAX_PIECE_LOAD. Targets and ids may be constants (a batch input is not provable: not
    checkable); z and dy state tensors or earlier outputs. A row-pieced cross_entropy (C beyond the caps:
    `row_pieces.row_piecing`) has one more output, its statistics, last: the mean and its running sums are
    still checkable, nll (and the backward's dz) are not (RowPieceRules decides them), nor the statistics.
    causal_lm(z, t): the cross-entropy of the rows whose target is not −1 (docs/arithmetic.md section 6), its
    rows always pieced (so its statistics are always last): outputs the mean, nll [R] (+0 where not counted),
    the count (one binary32 value) and, R over MAX_FOLD, their running values (sum and count after each
    piece); the mean, the count and the running values are checkable here (the count reads t, int64)."""
    kernel, inputs, outputs, args = skeleton.kernel, skeleton.inputs, skeleton.outputs, skeleton.args
    if not _names_inputs(skeleton, 2):
        return False
    piecing = fold_rules.loss_piecing(skeleton)
    if piecing is not None and not _running_values_fit(skeleton, piecing):
        return False
    if kernel == "embedding_backward":
        ids, dy, out = inputs[0], inputs[1], outputs[0][1]
        positions, width = _size(ids.shape), (dy.shape[-1] if dy.shape else 0)
        shapes = (width != 0 and 0 < positions and len(out) == 2 and out[1] == width
                  and _provable(ids, INT64, True) and _provable(dy, FLOAT32, False) and len(args) == 3
                  and _size(dy.shape) == positions * width)  # fmt: skip
        if piecing is not None:  # a piece's load is bounded by its length (`fold_rules.loss_piecing`)
            return shapes
        return shapes and len(outputs) == 1 and positions <= MAX_FOLD and _embedding_load(skeleton) <= MAX_EMBEDDING_LOAD
    z = inputs[0].shape
    if len(z) != 2 or 0 in z or inputs[1].shape != (z[0],):
        return False
    rows, width = z
    if kernel in row_pieces.NLL_ROWS:
        statistics = _row_statistics(skeleton)
        own = fold_rules.LOSS_BASE_OUTPUTS[kernel] + (piecing is not None)  # the mean, nll (the count; running values)
        if len(args) != 2 or len(outputs) != own + statistics or outputs[1][1] != (rows,) or output >= own:
            return False
        if kernel == "causal_lm" and (not statistics or output == 1 or outputs[2][0] != FLOAT32 or _size(outputs[2][1]) != 1
                                      or not _provable(inputs[1], INT64, True)):  # fmt: skip
            return False
        if output != 1:  # the mean or a running sum reads only nll and the running sums (REF_SELF), not z or t
            return _size(outputs[0][1]) == 1 and outputs[1][0] == FLOAT32
    elif len(args) != 3 or len(outputs) != 1 or outputs[0][1] != z or args[2][0] not in (TAG_FLOAT64, TAG_FLOAT32):
        return False
    return cross_entropy_row_within(width) and _provable(inputs[0], FLOAT32, False) and _provable(inputs[1], INT64, True)


def row_checkable(skeleton: Skeleton, output: int) -> bool:
    """Whether RowRules.vy (`row_rules._checkable`) decides every element of `output`: a row kernel, a
    non-empty binary32 output, inputs that are state tensors or earlier outputs (a selection's also
    constants) of the dtypes the rule reads (where's first and scaled_keep's second a bool mask, the
    others binary32), the shapes and arguments its index map assumes."""
    kernel = skeleton.kernel
    if kernel not in ROW_KERNELS or output >= len(skeleton.outputs) or len(skeleton.inputs) > MAX_HOST_INPUTS:
        return False
    if kernel == "dropout_keep":
        return _dropout_checkable(skeleton)
    code, shape = skeleton.outputs[output]
    if code != FLOAT32 or _size(shape) == 0:
        return False
    if kernel in LOSS_KERNELS:
        return _loss_checkable(skeleton, output)
    selection = kernel in ("where", "scaled_keep")
    mask = {"where": 0, "scaled_keep": 1}.get(kernel)
    for k, ref in enumerate(skeleton.inputs):
        if ref.kind not in ((STATE, OUTPUT, CONSTANT) if selection else (STATE, OUTPUT)):
            return False
        if ref.dtype != (BOOL if k == mask else FLOAT32):
            return False
    if not selection:
        return _norm_checkable(skeleton, output)
    args = skeleton.args
    if not _names_inputs(skeleton, 3 if kernel == "where" else 2) or len(skeleton.outputs) != 1 or len(args) != 3:
        return False
    if not all(_broadcasts(r.shape, shape) for r in skeleton.inputs):
        return False
    return kernel == "where" or args[2][0] in (TAG_FLOAT64, TAG_FLOAT32)


def row_reads(skeleton: Skeleton, output: int, element: int) -> list[tuple[int, int, int]]:
    """(input k, first element, count) of each run RowRules reads for output element `element`
    (`row_rules._plan`): where and scaled_keep each operand at its broadcast source (a constant's
    proof is its run under the root the skeleton carries); rms_norm the row of x (and for y, w[j];
    rstd's element r is row r), a row as one run or two across a 256-element boundary; a backward's dx
    the row of x̂, rstd[r], all of w, the row of dy; dropout_keep the header's seed and step (0, 0, 2);
    the loss kernels as `_loss_reads`. ValueError for an output these rules do not decide."""
    if not row_checkable(skeleton, output):
        raise ValueError(f"the row rules do not decide output {output} of a {skeleton.kernel!r} entry")
    return [(k, first, count) for k, first, count, _ in row_strided_reads(skeleton, output, element)]


def row_strided_reads(skeleton: Skeleton, output: int, element: int) -> list[tuple[int, int, int, int]]:
    """`row_reads` with each read's stride (RowRules' `Read.stride`): 1 for a run; embedding_backward's
    column of dy is every D-th element (proven by a column proof, `fold_rules.column_proof`)."""
    if not row_checkable(skeleton, output):
        raise ValueError(f"the row rules do not decide output {output} of a {skeleton.kernel!r} entry")
    kernel = skeleton.kernel
    if kernel in LOSS_KERNELS:
        return _loss_reads(skeleton, output, element)
    return [(k, first, count, 1) for k, first, count in _run_reads(skeleton, output, element)]


def _loss_reads(skeleton: Skeleton, output: int, element: int) -> list[tuple[int, int, int, int]]:
    """cross_entropy's mean: nll (the entry's own output 1, SELF_READ + 1) from 0, R values, or in pieces
    (`_loss_piece_reads`, as its running sums); nll[r] and the backward's [r, j]: z's row r (one run, or
    two across a 256-element boundary), then t[r]; embedding_backward's dW[v, d] and running values
    (`_loss_piece_reads`): the ids read (runs of at most INT64_RUN), then dy's column d (stride D)."""
    inputs = skeleton.inputs
    piecing = fold_rules.loss_piecing(skeleton)
    if (piecing is not None and output != 1) or skeleton.kernel in ("embedding_backward", "causal_lm"):
        return _loss_piece_reads(skeleton, piecing, output, element)
    rows, width = inputs[0].shape
    if skeleton.kernel == "cross_entropy" and output == 0:
        return [(SELF_READ + 1, 0, rows, 1)]
    row = element if skeleton.kernel == "cross_entropy" else element // width  # nll[r] is row r
    return [(k, first, count, 1) for k, first, count in _row_reads(0, row * width, width)] + [(1, row, 1, 1)]


def _loss_piece_reads(skeleton: Skeleton, piecing: fold_rules.Piecing | None, output: int,
                      element: int) -> list[tuple[int, int, int, int]]:  # fmt: skip
    """A loss fold's reads, whole (`piecing` None: embedding_backward in one piece) or one piece: a final
    element (output 0) is its last piece, running value c·size + e (the running values' output) is piece c
    of element e. A piece c > 0 first reads the running value before it, (c − 1)·size + e (REF_SELF: an
    earlier element of the same output, or another output), then its terms: the mean's nll rows; dW's ids
    of its positions (runs of at most INT64_RUN) and dy's column d at those positions (stride D); the causal
    loss's mean (element 0) its nll rows then the count (output 2), its count (element 1) the targets of its
    rows (runs of at most INT64_RUN)."""
    base = fold_rules.LOSS_BASE_OUTPUTS[skeleton.kernel]
    causal = skeleton.kernel == "causal_lm"
    terms = skeleton.inputs[0].shape[0] if causal else _size(skeleton.inputs[0].shape)
    piece, e, start, count = 0, (1 if causal and output == 2 else element), 0, terms
    reads: list[tuple[int, int, int, int]] = []
    if piecing is not None:
        piece, e = (piecing.pieces - 1, e) if output < base else divmod(element, piecing.size)
        start = piece * piecing.length
        count = min(piecing.length, piecing.terms - start)
        if piece:
            reads.append((SELF_READ + base, (piece - 1) * piecing.size + e, 1, 1))
    if skeleton.kernel == "cross_entropy":
        return [*reads, (SELF_READ + 1, start, count, 1)]
    if causal and e == 1:
        return [*reads, *[(1, first, min(INT64_RUN, start + count - first), 1) for first in range(start, start + count, INT64_RUN)]]
    if causal:
        return [*reads, (SELF_READ + 1, start, count, 1)] + ([(SELF_READ + 2, 0, 1, 1)] if output == 0 else [])
    width = skeleton.inputs[1].shape[-1]
    ids = [(0, first, min(INT64_RUN, start + count - first), 1) for first in range(start, start + count, INT64_RUN)]
    return [*reads, *ids, (1, start * width + e % width, count, width)]


def _run_reads(skeleton: Skeleton, output: int, element: int) -> list[tuple[int, int, int]]:
    """The runs of the norms and the selections (`row_reads`)."""
    kernel, inputs = skeleton.kernel, skeleton.inputs
    if kernel == "dropout_keep":  # the header's seed and step (the proof: r_t's header under r_t)
        return [(0, 0, 2)]
    if kernel in ("where", "scaled_keep"):
        index = _unravel(element, skeleton.outputs[0][1])
        return [(k, _ravel([0 if n == 1 else i for i, n in zip(index[len(index) - len(r.shape) :], r.shape)], r.shape), 1)
                for k, r in enumerate(inputs)]  # fmt: skip
    width = inputs[0].shape[-1]
    row, column = divmod(element, width)
    if kernel == "rms_norm":
        if output == 2:
            row, column = element, 0
        return _row_reads(0, row * width, width) + ([(1, column, 1)] if output == 0 else [])
    return [(0, row * width, width), (1, row, 1), (2, 0, width), (3, row * width, width)]


# output o of a kernel -> the outputs of the same entry its rule reads (REF_SELF): the honest challenger disputes
# those first where they differ too (a rule checks o only against the entry's own, possibly wrong, values)
OWN_OUTPUT_READS: dict[str, dict[int, tuple[int, ...]]] = {"cross_entropy": {0: (1,)}, "causal_lm": {0: (1, 2)},
                                                           "clip_scale": {0: (1,)}, "max_pool_backward": {0: (1,)},
                                                           "col2im": {0: (1,)}, "max_pool": {0: (2,), 1: (2, 3), 3: (2,)}}  # fmt: skip
# (max_pool over a wide window: a piece's best reads the slot before's best and place, but only the best decides it)
# the same for a loss fold in pieces (`fold_rules.loss_piecing`): the mean reads nll and the running sums, a
# running sum nll (and earlier running sums: its own output); dW reads its running values
PIECED_OWN_OUTPUT_READS: dict[str, dict[int, tuple[int, ...]]] = {"cross_entropy": {0: (1, 2), 2: (1,)},
                                                                  "causal_lm": {0: (1, 2, 3), 2: (3,), 3: (1,)},
                                                                  "embedding_backward": {0: (1,)}}  # fmt: skip


def output_to_dispute(skeleton: Skeleton, mine: Sequence[bytes], theirs: Sequence[bytes]) -> int | None:
    """The first output whose root differs from this party's and whose rule reads no other differing output
    of the entry (REF_SELF reads: `OWN_OUTPUT_READS`, and a fold in pieces, whose every output reads the
    running values, its last output: `fold_rules.running_values_output`; a row in pieces, whose final
    outputs read its statistics, its last output: `row_pieces.statistics_output`): cross-entropy's nll before
    its mean, a fold's running values before its outputs, a row's statistics before its outputs, when both
    differ. None when every output agrees."""
    differs = [o for o, (a, b) in enumerate(zip(mine, theirs)) if a != b]
    reads = dict(OWN_OUTPUT_READS.get(skeleton.kernel, {}))
    running = fold_rules.running_values_output(skeleton)
    if running is not None and skeleton.kernel in PIECED_OWN_OUTPUT_READS:
        reads = dict(PIECED_OWN_OUTPUT_READS[skeleton.kernel])
    elif running is not None:
        reads.update({o: (running,) for o in range(running)})
    statistics = row_pieces.statistics_output(skeleton)
    if statistics is not None:
        reads.update({o: (*reads.get(o, ()), statistics) for o in row_pieces.FINAL_OUTPUTS[skeleton.kernel]})
    return next((o for o in differs if not set(reads.get(o, ())) & set(differs)), None)


def self_input_proof(out_roots: Sequence[bytes], value: np.ndarray, first: int, count: int) -> tuple:
    """The `InputProof` of a read of the pinned entry's own output `value` (REF_SELF): the entry's output
    roots, which its revealed entry leaf binds, no path, then the run."""
    run = tc.prove_run(value, first, count)
    return (tc.ZERO, list(out_roots), [], list(value.shape), run.first, list(run.chunks), list(run.path))


def header_input_proof(header: bytes, path: Sequence[bytes]) -> tuple:
    """The `InputProof` of a HEADER input (dropout_keep's seed and step): r_t's 156-byte header in
    `chunks` as five zero-padded words, its path as leaf 0 under r_t in `path`."""
    padded = header + bytes(160 - len(header))
    return (tc.ZERO, [], list(path), [], 0, [padded[32 * i : 32 * i + 32] for i in range(5)], [])


def game_reads(skeleton: Skeleton, output: int, element: int, hints: Sequence[int] = ()) -> list[tuple[int, int, int]]:
    """The runs read by whichever rules contract RefereeGame picks for the output (`rules_of`), when that is
    HostRules, RowRules, DataRules, ScalarRules or RowPieceRules: `element_reads`, `row_reads`,
    `data_rules.data_reads` at the hinted place, `scalar_rules.scalar_reads` or `row_pieces.row_piece_reads`
    (FoldRules' column reads: `fold_rules.fold_reads`); the hints, where the rules read them: a move's
    strides, DataRules' place, a row-pieced nll's target."""
    slot = rules_of(skeleton, output)
    if slot == ROW_RULES:
        return row_reads(skeleton, output, element)
    if slot == DATA_RULES:
        return data_rules.data_reads(skeleton, output, element, hints)
    if slot == SCALAR_RULES:
        return scalar_rules.scalar_reads(skeleton, output, element)
    if slot == ROW_PIECE_RULES:
        return row_pieces.row_piece_reads(skeleton, output, element, hints)
    return element_reads(skeleton, output, element, hints)


def strided_reads(skeleton: Skeleton, output: int, element: int, hints: Sequence[int] = ()) -> list[tuple[int, int, int, int]] | None:
    """`game_reads` with each read's stride where the rules RefereeGame picks may plan a strided read (RowRules:
    embedding_backward's column of dy; DataRules: col2im's columns), None for the other slots. `column_read` says
    which the honest defender proves by a column proof (`fold_rules.column_proof`); any other by its run."""
    slot = rules_of(skeleton, output)
    if slot == ROW_RULES:
        return row_strided_reads(skeleton, output, element)
    if slot == DATA_RULES:
        return data_rules.data_strided_reads(skeleton, output, element, hints)
    return None


def column_read(skeleton: Skeleton, count: int, stride: int) -> bool:
    """Whether the honest defender proves a read of `strided_reads` by a column proof: a stride above 1, or a
    col2im column of more than one element (its stride s·L − 1 is 1 where s·L = 2: two adjacent elements of
    dcols, which may straddle a 256-element boundary no aligned run of MAX_RUN chunks holds; RefereeGame
    takes a column proof of any stride)."""
    return stride > 1 or (count > 1 and skeleton.kernel == "col2im")


# RefereeGame's RULES slots (protocol.deploy.RULES_CONTRACTS); ROW_PIECE_RULES: RowPieceRules.vy, rows in pieces
HOST_RULES, FOLD_RULES, ROW_RULES, DATA_RULES, SCALAR_RULES, ROW_PIECE_RULES = range(6)


def rules_of(skeleton: Skeleton, output: int) -> int | None:
    """The RULES slot RefereeGame's `dispute_output` picks for an output (the first rules contract that
    checks it), None when none does (the game escalates)."""
    if host_checkable(skeleton, output):
        return HOST_RULES
    if fold_rules.fold_checkable(skeleton, output):
        return FOLD_RULES
    if row_checkable(skeleton, output):
        return ROW_RULES
    if data_rules.data_checkable(skeleton, output):
        return DATA_RULES
    if scalar_rules.scalar_checkable(skeleton, output):
        return SCALAR_RULES
    if row_pieces.row_piece_checkable(skeleton, output):  # asked last: only rows no other rules contract takes
        return ROW_PIECE_RULES
    return None


def _ravel(index: Sequence[int], shape: Sequence[int]) -> int:
    flat = 0
    for i, n in zip(index, shape, strict=True):
        flat = flat * n + i
    return flat


def element_reads(skeleton: Skeleton, output: int, element: int, hints: Sequence[int] = ()) -> list[tuple[int, int, int]]:
    """(input k, first element, count) of each run the host rule reads for output element `element`, in
    the order `prove_element` takes their proofs (HostRules.vy, `_plan`): linear reads row r of x, row n
    of W and b[n] (x's leading axes are rows); AdamW's p' reads p, g, m, v at the element and the eight
    scalars, m' g, m and scalars 1-2, v' g, v and scalars 3-4; add and mul each operand at its broadcast
    source; scale x at the element and the factor; mul_scalar, an activation or place (inside its
    source) each input at the element's own index; fill_above_diagonal x there on or below the diagonal,
    nothing above it; transpose the swapped index; cat the input the element falls in; move the source
    element offset + Σ index_i · stride_i, the strides given as `hints` (`entry_hints`); softmax the
    element's row, its backward the rows of y and dy; layer_norm the row of x (and for y, w[j] and b[j];
    rstd's element r is row r) — a row as one run, or two where it crosses a 256-element boundary (a
    proof opens an aligned run of at most 32 chunks). ValueError for
    an output the host rules do not decide, or strides that are not the move's."""
    if not host_checkable(skeleton, output):
        raise ValueError(f"the host rules do not decide output {output} of a {skeleton.kernel!r} entry")
    kernel, inputs = skeleton.kernel, skeleton.inputs
    shape = skeleton.outputs[output][1]
    if kernel == "linear":
        k_terms = inputs[1].shape[1]
        row, column = divmod(element, shape[-1])
        return [(0, row * k_terms, k_terms), (1, column * k_terms, k_terms), (2, column, 1)][: len(inputs)]
    if kernel == "adamw":
        if output == 0:
            return [(k, element, 1) for k in range(4)] + [(4, 0, 8)]
        return [(1, element, 1), (1 + output, element, 1), (4, 2 * output - 1, 2)]
    if kernel in ("softmax", "softmax_backward"):
        start = element - element % shape[-1]
        return [read for k in range(len(inputs)) for read in _row_reads(k, start, shape[-1])]
    if kernel == "layer_norm":
        width = inputs[0].shape[-1]
        row, column = divmod(element, width) if output < 2 else (element, 0)
        return _row_reads(0, row * width, width) + ([(1, column, 1), (2, column, 1)] if output == 0 else [])
    index = _unravel(element, shape)
    if kernel in ("add", "mul"):
        return [(k, _ravel([0 if n == 1 else i for i, n in zip(index[len(index) - len(r.shape) :], r.shape)], r.shape), 1)
                for k, r in enumerate(inputs)]  # fmt: skip
    if kernel == "scale":
        return [(0, element, 1), (1, 0, 1)]
    if kernel == "fill_above_diagonal":
        return [] if index[-1] > index[-2] else [(0, element, 1)]
    if kernel == "transpose":
        return [(0, _ravel([*index[:-2], index[-1], index[-2]], inputs[0].shape), 1)]
    if kernel == "place":
        return [(0, element, 1)] if element < _size(inputs[0].shape) else []
    if kernel == "move":
        if len(hints) != len(shape) or any(not 0 <= h < INT_SIGN for h in hints) or tuple_word(hints) != skeleton.args[2]:
            raise ValueError("the hints are not the move's strides")
        source = int.from_bytes(skeleton.args[3][1:], "big") + sum(i * h for i, h in zip(index, hints))
        if source >= _size(inputs[0].shape):
            raise ValueError("the move reads outside its source")
        return [(0, source, 1)]
    if kernel == "cat":
        axis = _cat_axis(skeleton, len(shape))
        for k, ref in enumerate(inputs):
            if index[axis] < ref.shape[axis]:
                return [(k, _ravel(index, ref.shape), 1)]
            index[axis] -= ref.shape[axis]
    return [(k, element, 1) for k in range(len(inputs))]


# --------------------------------------------------------------------------------------------------
# The kit
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KitEntry:
    index: int
    skeleton: bytes
    out_roots: tuple[bytes, ...]
    parsed: Skeleton
    hints: tuple[int, ...] = ()  # what prove_element reveals of its hashed arguments (`entry_hints`)

    @property
    def leaf(self) -> bytes:
        return entry_leaf(self.index, self.skeleton, self.out_roots)


@dataclass
class DisputeKit:
    """One party's answers for one disputed segment (see the module docstring)."""

    segment: int
    start_step: int  # the job's step count at c_0
    state_roots: list[bytes]  # c_0 … c_n of the step bisection
    skeleton_root: bytes
    record_length: int
    step: int | None = None  # t, the pinned step (relative to the segment), once recorded
    state: bytes = b""  # r_t's canonical checkpoint bytes
    segment_steps: int = 0  # r_t's steps to the boundary (its header binding)
    # the job constants every state header binds: total steps, per_epoch, segment length, batch size
    job_constants: tuple[int, int, int, int] = (0, 0, 0, 0)
    state_names: tuple[str, ...] = ()
    entries: list[KitEntry] = field(default_factory=list)
    map_bytes: bytes = b""
    next_leaves: list[bytes] = field(default_factory=list)
    outputs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    batch: tuple[np.ndarray, ...] = field(default=(), repr=False)
    # (entry, input) -> the value of a constant input (its skeleton holds the root)
    constants: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    _state_values: dict[str, np.ndarray] | None = field(default=None, repr=False)

    # ---------------------------------------------------------------- what the record trees give

    @property
    def recorded(self) -> bool:
        return self.step is not None

    @property
    def binding(self) -> tc.StateBinding:
        total, per_epoch, length, batch = self.job_constants
        return tc.StateBinding(self.skeleton_root, self.record_length, self.segment_steps, total_steps=total,
                               per_epoch=per_epoch, segment_length=length, batch_size=batch)  # fmt: skip

    @property
    def width(self) -> int:
        return tc.width_of(len(self.entries) + 1)

    def skeleton_leaves(self) -> list[bytes]:
        return [skeleton_leaf(e.skeleton) for e in self.entries] + [keccak(MAP_LEAF + self.map_bytes)]

    def entry_leaves(self) -> list[bytes]:
        return [e.leaf for e in self.entries]

    def ops(self) -> list[bytes]:
        """c_0 … c_{L+1} of the operation bisection: P_{-1}, P_0 … P_{L-1}, r_{t+1}."""
        self._need_record()
        assert self.step is not None
        return [empty_record_root(self.width), *prefix_roots(self.entry_leaves(), self.width), self.state_roots[self.step + 1]]

    def state_values(self) -> dict[str, np.ndarray]:
        if self._state_values is None:
            self._state_values, _, _ = tc.read_checkpoint(self.state)
        return self._state_values

    def state_map(self) -> list[tuple[int, int]]:
        """Per state tensor: (entry, output) of the entry output that becomes it, entry UNCHANGED else."""
        return [struct.unpack(">IB", self.map_bytes[5 * i : 5 * i + 5]) for i in range(len(self.map_bytes) // 5)]

    def _need_record(self) -> None:
        if self.step is None:
            raise KitError("the kit holds no step record yet (the step bisection has not pinned a step)")

    # ---------------------------------------------------------------- the defender's proofs

    def header_proof(self) -> tuple[bytes, list[bytes]]:
        """r_t's 156-byte header and its path as leaf 0 (post_record)."""
        self._need_record()
        return tc.header_proof(self.state, self.binding)

    def reveal_entry_args(self, j: int) -> tuple[bytes, list[bytes], list[bytes], list[bytes]]:
        """(skeleton, its path under S, output roots, the entry leaf's path under P_j)."""
        self._need_record()
        entry = self.entries[j]
        return (entry.skeleton, record_proof(self.skeleton_leaves(), j, self.width), list(entry.out_roots),
                record_proof(self.entry_leaves()[: j + 1], j, self.width))  # fmt: skip

    def chunk_levels(self, j: int, output: int) -> list[list[bytes]]:
        from protocol import tensor_descent as td

        return td.tree_levels([tc.chunk_leaf(c) for c in tc.chunks_of(self.outputs[(j, output)])])

    def input_proof(self, j: int, ref: InputRef, first: int, count: int) -> tuple:
        """One `InputProof` for entry j: the source tensor under r_t or P_{j-1}, then the run."""
        key, roots, path, array = self._input_source(j, ref)
        run = tc.prove_run(array, first, count)
        return (key, roots, path, list(array.shape), run.first, list(run.chunks), list(run.path))

    def _input_source(self, j: int, ref: InputRef) -> tuple[bytes, list[bytes], list[bytes], np.ndarray]:
        """(leaf key, roots, path, values) of an input of entry j: a state tensor under r_t or an
        earlier entry's output under P_{j-1}."""
        if ref.kind == OUTPUT:
            source = self.entries[ref.a]
            array = self.outputs[(ref.a, ref.b)]
            key, roots = skeleton_leaf(source.skeleton), list(source.out_roots)
            path = record_proof(self.entry_leaves()[:j], ref.a, self.width)
        elif ref.kind == STATE:
            name = self.state_names[ref.a]
            array = self.state_values()[name]
            _, root, path = tc.state_tensor_proof(self.state, name, self.binding)
            key, roots = keccak(name.encode()), [root]
        else:
            raise KitError(f"entry {j} reads an input of kind {ref.kind}, which the host cannot prove")
        return key, roots, list(path), array

    def element_proof_args(self, j: int, output: int, element: int) -> tuple[list[tuple], list[bytes]]:
        """`prove_element`'s proofs and column words for output element `element` of entry j: the host
        rules' runs (no column words; RowRules' and DataRules' with a column proof for a strided read), or, for
        an output the fold rules decide (FoldRules.vy), each read's source with an empty run and its column
        proof (`protocol.fold_rules.column_proof`)."""
        self._need_record()
        entry = self.entries[j]
        strided = strided_reads(entry.parsed, output, element, self.element_hints(j, output, element))
        if strided is not None:  # runs, but embedding_backward's column of dy and col2im's columns
            proofs, columns = [], []
            for k, first, count, stride in strided:
                if column_read(entry.parsed, count, stride):
                    key, roots, path, array = self._input_source(j, entry.parsed.inputs[k])
                    proofs.append((key, roots, path, list(array.shape), 0, [], []))
                    columns += fold_rules.column_proof(array, first, count, stride)
                else:
                    proofs.append(self._read_proof(j, k, first, count))
            return proofs, columns
        if rules_of(entry.parsed, output) != FOLD_RULES:
            return self.element_proofs(j, output, element), []
        proofs, columns = [], []
        for k, first, count, stride in fold_rules.fold_reads(entry.parsed, output, element):
            if k >= SELF_READ:  # a piece's running value: a run of the entry's own running values
                proofs.append(self.self_proof(j, k - SELF_READ, first, count))
                continue
            key, roots, path, array = self._input_source(j, entry.parsed.inputs[k])
            proofs.append((key, roots, path, list(array.shape), 0, [], []))
            columns += fold_rules.column_proof(array, first, count, stride)
        return proofs, columns

    def element_proofs(self, j: int, output: int, element: int) -> list[tuple]:
        """The `InputProof`s for output element `element` of entry j (prove_element)."""
        self._need_record()
        entry = self.entries[j]
        reads = game_reads(entry.parsed, output, element, self.element_hints(j, output, element))
        return [self._read_proof(j, k, first, count) for k, first, count in reads]

    def _read_proof(self, j: int, k: int, first: int, count: int) -> tuple:
        """The `InputProof` of a run of input k of entry j (k >= SELF_READ: of its own output k − SELF_READ)."""
        if k >= SELF_READ:
            return self.self_proof(j, k - SELF_READ, first, count)
        kind = self.entries[j].parsed.inputs[k].kind
        if kind == CONSTANT:
            return self.constant_proof(j, k, first, count)
        if kind == HEADER:
            return header_input_proof(*self.header_proof())
        return self.input_proof(j, self.entries[j].parsed.inputs[k], first, count)

    def element_hints(self, j: int, output: int, element: int) -> tuple[int, ...]:
        """`prove_element`'s hints for output element `element` of entry j: a move's strides, for an output
        DataRules decides the place its read depends on (`data_rules.data_hints`: r_t's cursor for
        batch_index, ids[p] for gather), for a scalar entry r_t's step (`scalar_rules.scalar_hints`), for a
        row-pieced cross_entropy's nll[r] the target t[r] (`row_pieces.nll_target`: the logit it reads)."""
        self._need_record()
        entry = self.entries[j]
        slot = rules_of(entry.parsed, output)
        if slot == SCALAR_RULES and entry.parsed.kernel in scalar_rules.SCALAR_KERNELS:  # r_t's step
            return scalar_rules.scalar_hints(tc.StateHeader.decode(self.header_proof()[0]).step)
        if slot == ROW_PIECE_RULES and entry.parsed.kernel in row_pieces.NLL_ROWS and output == 1:
            return (row_pieces.nll_hint(self._input_value(j, 1).reshape(-1)[element]),)
        if slot != DATA_RULES:
            return entry.hints
        header = tc.StateHeader.decode(self.header_proof()[0])
        ids = None if entry.parsed.kernel != "gather" else self._input_source(j, entry.parsed.inputs[1])[3]
        return data_rules.data_hints(entry.parsed, element, (header.epoch, header.position), ids)

    def _input_value(self, j: int, k: int) -> np.ndarray:
        """The value of input k of entry j as the kit holds it: a constant's, or a state tensor's or an
        earlier output's (`_input_source`)."""
        if self.entries[j].parsed.inputs[k].kind == CONSTANT:
            value = self.constants.get((j, k))
            if value is None:
                raise KitError(f"dispute kit: entry {j}'s constant input {k} is not in the kit")
            return value
        return self._input_source(j, self.entries[j].parsed.inputs[k])[3]

    def self_proof(self, j: int, output: int, first: int, count: int) -> tuple:
        """The `InputProof` of a read of entry j's own output `output` (REF_SELF): every output root of the
        entry (RefereeGame checks them against the revealed entry leaf), no path, then the run."""
        return self_input_proof(self.entries[j].out_roots, self.outputs[(j, output)], first, count)

    def constant_proof(self, j: int, k: int, first: int, count: int) -> tuple:
        """The `InputProof` of constant input k of entry j: its root as the skeleton carries it (RefereeGame
        checks it against the plan's), nothing to prove it under, then the run."""
        value = self.constants.get((j, k))
        if value is None:
            raise KitError(f"dispute kit: entry {j}'s constant input {k} is not in the kit")
        run = tc.prove_run(value, first, count)
        return (tc.ZERO, [self.entries[j].parsed.inputs[k].root], [], list(value.shape), run.first, list(run.chunks),
                list(run.path))  # fmt: skip

    def link_proof(self, leaf: int) -> tuple:
        """The `LinkProof` for leaf 1 + a of r_{t+1}: the map under S, tensor a under r_t, the mapped
        entry under P_{L-1} (empty when unchanged), the leaf under r_{t+1}."""
        self._need_record()
        a = leaf - 1
        name = self.state_names[a]
        _, old_root, old_path = tc.state_tensor_proof(self.state, name, self.binding)
        new_path = tc.tree_proof(self.next_leaves, leaf, tc.STATE_NODE)
        entry_index, _ = self.state_map()[a]
        length = len(self.entries)
        if entry_index == UNCHANGED:
            produced: tuple = (tc.ZERO, [], [])
        else:
            source = self.entries[entry_index]
            produced = (skeleton_leaf(source.skeleton), list(source.out_roots),
                        record_proof(self.entry_leaves(), entry_index, self.width))  # fmt: skip
        return (self.map_bytes, record_proof(self.skeleton_leaves(), length, self.width), keccak(name.encode()), old_root,
                old_path, new_path, *produced)  # fmt: skip

    def header_link_proof(self) -> tuple:
        """The `HeaderLinkProof` for the header leaf (0) of r_{t+1}: r_t's header and its path under r_t,
        then r_{t+1}'s header (`tc.next_header` of r_t's) and its path under r_{t+1}. KitError when this
        kit's r_{t+1} does not carry that header (its party could not prove it)."""
        agreed, agreed_path = self.header_proof()
        try:
            following = tc.next_header(tc.StateHeader.decode(agreed)).encode()
        except ValueError as exc:
            raise KitError(f"dispute kit: no next header ({exc})") from None
        if tc.header_leaf_of(following) != self.next_leaves[0]:
            raise KitError("dispute kit: r_{t+1}'s header is not the one the agreed header advances to")
        return agreed, agreed_path, following, tc.tree_proof(self.next_leaves, 0, tc.STATE_NODE)


# --------------------------------------------------------------------------------------------------
# Writing and loading
# --------------------------------------------------------------------------------------------------


def _hex(values: Sequence[bytes]) -> list[str]:
    return ["0x" + v.hex() for v in values]


def kit_tensors(outputs: Mapping[tuple[int, int], np.ndarray], constants: Mapping[tuple[int, int], np.ndarray],
                batch: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors of a kit's OUTPUTS_FILE by name: every output of the step's record, its constants, the batch."""
    tensors = {f"e{j:07d}.o{o}": v for (j, o), v in outputs.items()}
    tensors.update({f"e{j:07d}.c{k}": v for (j, k), v in constants.items()})
    tensors.update({f"batch.{i}": v for i, v in enumerate(batch)})
    return tensors


def write_kit(directory: Path | str, kit: DisputeKit) -> Path:
    """Write `kit` to `directory` (created), the tensor files first and kit.json last (atomically), so a
    crash leaves no kit.json that names files not yet written."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"format": KIT_FORMAT, "segment": kit.segment, "start_step": kit.start_step,
                            "state_roots": _hex(kit.state_roots), "skeleton_root": "0x" + kit.skeleton_root.hex(),
                            "record_length": kit.record_length, "job_constants": list(kit.job_constants), "record": None}  # fmt: skip
    if kit.step is not None:
        tensors = kit_tensors(kit.outputs, kit.constants, kit.batch)
        overflow = kit_overflow(tensors, len(kit.state))
        if overflow is not None:  # refused before writing: such a kit could not be loaded to play a move
            raise KitError(f"dispute kit: {overflow}; this step cannot be played in a refereed game")
        _write_atomic(path / OUTPUTS_FILE, encode_tensors(tensors))
        _write_atomic(path / STATE_FILE, kit.state)
        meta["record"] = {"step": kit.step, "segment_steps": kit.segment_steps, "state_names": list(kit.state_names),
                          "entries": [{"skeleton": "0x" + e.skeleton.hex(), "out_roots": _hex(e.out_roots),
                                       "hints": list(e.hints)} for e in kit.entries],
                          "map": "0x" + kit.map_bytes.hex(), "next_leaves": _hex(kit.next_leaves)}  # fmt: skip
    data = canonical_json(meta)
    if len(data) > MAX_KIT_JSON_BYTES:  # the tensor files, if any, are written but no kit.json names them
        raise KitError(f"dispute kit: {KIT_JSON} would be {len(data):,} bytes, over the limit of {MAX_KIT_JSON_BYTES:,}")
    _write_atomic(path / KIT_JSON, data)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _read_limited(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise KitError(f"dispute kit: {path.name} is missing in {path.parent}") from None
    if size > limit:
        raise KitError(f"dispute kit: {path.name} is {size} bytes, over the limit of {limit}")
    return path.read_bytes()


def _word(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise KitError(f"dispute kit: {what} is not a 32-byte hex word")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise KitError(f"dispute kit: {what} is not a 32-byte hex word") from None


def _bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise KitError(f"dispute kit: {what} is not hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise KitError(f"dispute kit: {what} is not hex") from None


def _int(value: Any, what: str, low: int = 0, high: int = tc.MAX_UINT32) -> int:
    if type(value) is not int or not low <= value <= high:
        raise KitError(f"dispute kit: {what} is not an integer in {low}..{high}")
    return value


def _job_constants(value: Any) -> tuple[int, int, int, int]:
    """The kit's job constants (total steps, per_epoch: uint64; segment length, batch size: uint32)."""
    if not isinstance(value, list) or len(value) != 4:
        raise KitError("dispute kit: job_constants are not the four job constants")
    total, per_epoch = (_int(v, "a job constant", high=tc.NULL_BOUNDARY - 1) for v in value[:2])
    return total, per_epoch, _int(value[2], "the segment length"), _int(value[3], "the batch size")


def load_kit(directory: Path | str) -> DisputeKit:
    """Read a kit back and check that its parts hash to its roots (KitError otherwise)."""
    path = Path(directory)
    raw = _read_limited(path / KIT_JSON, MAX_KIT_JSON_BYTES)
    if json_too_deep(raw, 16):
        raise KitError("dispute kit: kit.json nests too deep")
    try:
        meta = parse_untrusted_json(raw)
    except ValueError as exc:
        raise KitError(f"dispute kit: kit.json is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != KIT_FORMAT:
        raise KitError(f"dispute kit: kit.json is not a {KIT_FORMAT} kit")
    try:
        roots = meta["state_roots"]
        if not isinstance(roots, list) or len(roots) < 2:
            raise KitError("dispute kit: state_roots must list at least c_0 and c_n")
        kit = DisputeKit(segment=_int(meta["segment"], "segment"), start_step=_int(meta["start_step"], "start_step", high=2**63),
                         state_roots=[_word(r, "a state root") for r in roots],
                         skeleton_root=_word(meta["skeleton_root"], "skeleton_root"),
                         record_length=_int(meta["record_length"], "record_length", 1, 2**24),
                         job_constants=_job_constants(meta["job_constants"]))  # fmt: skip
        record = meta["record"]
        if record is not None:
            _load_record(path, kit, record)
    except (KeyError, TypeError) as exc:
        raise KitError(f"dispute kit: kit.json lacks or mistypes a field ({exc})") from None
    return kit


def _load_record(path: Path, kit: DisputeKit, record: Any) -> None:
    if not isinstance(record, dict):
        raise KitError("dispute kit: record is not an object")
    step = _int(record["step"], "step", 0, len(kit.state_roots) - 2)
    names = record["state_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or names != sorted(set(names)):
        raise KitError("dispute kit: state_names are not sorted distinct names")
    entries = []
    for j, item in enumerate(record["entries"]):
        skeleton = _bytes(item["skeleton"], f"entry {j}'s skeleton")
        try:
            parsed = parse_skeleton(skeleton)
        except ValueError as exc:
            raise KitError(f"dispute kit: entry {j}: {exc}") from None
        out_roots = tuple(_word(r, f"entry {j}'s output root") for r in item["out_roots"])
        if len(out_roots) != len(parsed.outputs):
            raise KitError(f"dispute kit: entry {j} has {len(out_roots)} output roots for {len(parsed.outputs)} outputs")
        hints = item.get("hints", [])
        if not isinstance(hints, list) or len(hints) > tc.MAX_NDIM:
            raise KitError(f"dispute kit: entry {j}'s hints are not a list of at most {tc.MAX_NDIM} integers")
        hints = tuple(_int(h, f"entry {j}'s hint", high=INT_SIGN - 1) for h in hints)
        if parsed.kernel == "move" and (len(parsed.args) != 4 or tuple_word(hints) != parsed.args[2]):
            raise KitError(f"dispute kit: entry {j}'s hints are not its move's strides")
        if parsed.kernel != "move" and hints:
            raise KitError(f"dispute kit: entry {j} ({parsed.kernel}) has hints, which only a move's strides are")
        entries.append(KitEntry(j, skeleton, out_roots, parsed, hints))
    kit.step, kit.state_names, kit.entries = step, tuple(names), entries
    kit.segment_steps = _int(record["segment_steps"], "segment_steps")
    kit.map_bytes = _bytes(record["map"], "the state map")
    kit.next_leaves = [_word(v, "a leaf of r_{t+1}") for v in record["next_leaves"]]
    if len(kit.map_bytes) != 5 * len(names) or len(kit.next_leaves) != 1 + len(names):
        raise KitError("dispute kit: the state map or the next state's leaves do not match the state names")
    if len(entries) != kit.record_length or tc.tree_root(kit.skeleton_leaves() + [tc.ZERO] * (kit.width - len(entries) - 1),
                                                         RECORD_NODE) != kit.skeleton_root:  # fmt: skip
        raise KitError("dispute kit: the entries' skeletons and the state map do not build the skeleton root S")
    tensors = decode_tensors(_read_limited(path / OUTPUTS_FILE, MAX_TENSOR_FILE_BYTES), OUTPUTS_FILE)
    for entry in entries:
        for o, (code, shape) in enumerate(entry.parsed.outputs):
            value = tensors.pop(f"e{entry.index:07d}.o{o}", None)
            if value is None or tc.tensor_root(value) != entry.out_roots[o]:
                raise KitError(f"dispute kit: output {o} of entry {entry.index} is missing or not its committed root")
            kit.outputs[(entry.index, o)] = value
        for k, ref in enumerate(entry.parsed.inputs):
            value = tensors.pop(f"e{entry.index:07d}.c{k}", None)
            if value is not None and (ref.kind != CONSTANT or tc.tensor_root(value) != ref.root):
                raise KitError(f"dispute kit: constant {k} of entry {entry.index} is not the root its skeleton carries")
            if value is not None:
                kit.constants[(entry.index, k)] = value
    batch = [tensors.pop(f"batch.{i}") for i in range(2) if f"batch.{i}" in tensors]
    if tensors:
        raise KitError(f"dispute kit: {OUTPUTS_FILE} holds unknown tensors {sorted(tensors)[:3]}")
    kit.batch = tuple(batch)
    kit.state = _read_limited(path / STATE_FILE, MAX_TENSOR_FILE_BYTES)
    try:
        state_ok = tc.state_root(kit.state, kit.binding) == kit.state_roots[step]
        state_names = sorted(tc.read_checkpoint(kit.state)[0])
    except (ArtifactError, ValueError) as exc:
        raise KitError(f"dispute kit: {STATE_FILE} is not a canonical checkpoint ({exc})") from None
    if not state_ok or state_names != names:
        raise KitError(f"dispute kit: {STATE_FILE} is not the state r_t of the kit's roots")
    if tc.tree_root(kit.next_leaves, tc.STATE_NODE) != kit.state_roots[step + 1]:
        raise KitError("dispute kit: the next state's leaves do not build r_{t+1}")
