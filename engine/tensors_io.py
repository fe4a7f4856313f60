"""Canonical safetensors: one byte encoding per set of tensors, so the sha256 of the bytes is a
stable name for the weights or the checkpoint.

The file is ordinary safetensors (any safetensors reader opens it), written with fixed choices:
- header = canonical JSON (keys sorted, no spaces), padded with spaces to a multiple of 8 bytes;
- tensors laid out in sorted-name order, back to back, little-endian, C-contiguous;
- `__metadata__` present only when given (string → string, as the format requires).

Reading never unpickles: the header is parsed here with bounds checks, the data goes through
`safetensors.torch.load`, and `decode_canonical` re-encodes and insists on identical bytes, so a
checkpoint has exactly one valid encoding.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from protocol.errors import ArtifactError
from protocol.spec import canonical_json, json_too_deep, parse_untrusted_json

if TYPE_CHECKING:  # torch stays a lazy import
    import torch

MAX_HEADER_BYTES = 16 * 1024 * 1024

_DTYPE_NAMES = {
    "float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}  # fmt: skip


def _dtype_tag(tensor: "torch.Tensor") -> str:
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in _DTYPE_NAMES:
        raise ArtifactError(f"tensor dtype {name} cannot be stored")
    return _DTYPE_NAMES[name]


_TAG_OF_DTYPE: dict = {}  # torch.dtype -> tag, filled on first use (keeps torch a lazy import)


def _tag_of(tensor: "torch.Tensor") -> str:
    tag = _TAG_OF_DTYPE.get(tensor.dtype)
    if tag is None:
        tag = _TAG_OF_DTYPE[tensor.dtype] = _dtype_tag(tensor)
    return tag


def _raw_buffer(tensor: "torch.Tensor"):
    """The bytes of a CPU, C-contiguous tensor as a buffer, without a copy. numpy has no bfloat16,
    so that one (alone) goes through a uint8 view; every buffer is read as raw memory by `join`."""
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.reshape(-1).view(torch.uint8).numpy()
    return tensor.numpy()


def encode(tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str] | None = None) -> bytes:
    """Canonical safetensors bytes of `tensors` (moved to CPU) with optional string metadata."""
    if sys.byteorder != "little":  # safetensors is little-endian; we copy raw memory
        raise ArtifactError("canonical tensors need a little-endian host")
    header: dict[str, object] = {}
    buffers = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        tag = _tag_of(tensor)
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"data_offsets": [offset, offset + nbytes], "dtype": tag, "shape": list(tensor.shape)}
        if nbytes:
            buffers.append(_raw_buffer(tensor))  # a view, no copy
        offset += nbytes
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ArtifactError("safetensors metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    raw = canonical_json(header)
    raw += b" " * (-len(raw) % 8)
    # bytes.join reads the arrays' buffers directly: each tensor is copied exactly once, into the
    # result (this runs at every segment boundary, so the copies are the commitment's cost)
    return b"".join([struct.pack("<Q", len(raw)), raw, *buffers])


def read_header(data: bytes, what: str = "safetensors") -> dict:
    """Parse and bounds-check the JSON header of safetensors bytes (no tensor is created)."""
    if len(data) < 8:
        raise ArtifactError(f"{what}: too short to be safetensors ({len(data)} bytes)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise ArtifactError(f"{what}: header length {length} does not fit the {len(data)}-byte file")
    if json_too_deep(data[8 : 8 + length], 16):
        raise ArtifactError(f"{what}: header JSON is nested too deeply")
    try:
        header = parse_untrusted_json(bytes(data[8 : 8 + length]))
    except ValueError as exc:
        raise ArtifactError(f"{what}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{what}: header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ArtifactError(f"{what}: __metadata__ must map strings to strings")
    return header


def decode(data: bytes, what: str = "safetensors") -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
    """Tensors and metadata from safetensors bytes, via safetensors only (never pickle)."""
    from safetensors.torch import load

    header = read_header(data, what)
    try:
        tensors = load(bytes(data))
    except Exception as exc:  # safetensors raises its own error type for every malformed file
        raise ArtifactError(f"{what}: not a valid safetensors file ({exc})") from None
    return tensors, dict(header.get("__metadata__", {}))


def decode_canonical(data: bytes, what: str = "checkpoint") -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
    """Like `decode`, and also insist that `data` is the canonical encoding of what it holds."""
    tensors, metadata = decode(data, what)
    if encode(tensors, metadata or None) != bytes(data):
        raise ArtifactError(f"{what}: bytes are not in the canonical encoding (docs/spec-format.md)")
    return tensors, metadata


def load_weights(data: bytes) -> dict[str, "torch.Tensor"]:
    """Weights from safetensors bytes (any valid safetensors file; metadata ignored)."""
    tensors, _ = decode(data, "weights")
    return tensors
