"""Regenerate tests/vectors/referee_elements.json: `python tests/vectors/generate_referee.py`.

Level-3 referee vectors (docs/referee.md, "Elements"): one output element per kernel and output of
recorded portable steps (an MLP with clipping, a tiny GPT with dropout, a CNN with SGD, a Llama-style
decoder), with exactly the proven values `protocol.referee_model.dependencies` names and the bits the
engine computed; plus pieces of long folds. A referee in any language (the Vyper one) passes when it
recomputes every `expected` from `proven`.

Encoding: a binary32 value is its bit pattern as 8 hex digits ("3f800000"); integers (ids, mask bits,
max-pool positions, a header's seed and step, binary64 running sums as 64-bit patterns) are JSON
numbers. Arguments: {"input": k} is the entry's input k, {"f32": bits} a binary32, {"f64": bits} a
binary64 (16 hex digits), lists are tuples, null is None. A proven value is [source, index, value]:
source k is input k, a name is an intermediate ("nll", "dcols"), "partial" a fold's running value,
"seed"/"step" the state header's. `expected` is the output's bits (binary32 as hex, else a number).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "referee_elements.json"
FORMAT = "tessera-referee-vectors/1"


def encode_value(value: Any) -> Any:
    if isinstance(value, np.float32):
        return f"{int(np.array([value]).view(np.uint32)[0]):08x}"
    return int(value)


def decode_value(value: Any) -> Any:
    if isinstance(value, str):
        return np.array([int(value, 16)], dtype=np.uint32).view(np.float32)[0]
    return value


def encode_arg(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "input":
        return {"input": int(value[1])}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.float32):
        return {"f32": encode_value(value)}
    if isinstance(value, float):
        return {"f64": struct.pack(">d", value).hex()}
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, tuple):
        return [encode_arg(v) for v in value]
    raise TypeError(f"argument {value!r} has no vector encoding")


def decode_arg(value: Any) -> Any:
    if isinstance(value, dict):
        if "input" in value:
            return ("input", value["input"])
        if "f32" in value:
            return decode_value(value["f32"])
        return struct.unpack(">d", bytes.fromhex(value["f64"]))[0]
    if isinstance(value, list):
        return tuple(decode_arg(v) for v in value)
    return value


def _vector(call: Any, output: Any, element: int, proven: dict, piece: int | None, expected: int, binary32: bool) -> dict:
    return {
        "kernel": call.kernel, "args": [encode_arg(a) for a in call.args],
        "in_shapes": [list(s) for s in call.in_shapes], "out_shapes": [list(s) for s in call.out_shapes],
        "output": output, "element": element, "piece": piece,
        "proven": [[k[0], k[1], encode_value(v)] for k, v in proven.items()],
        "expected": f"{expected:08x}" if binary32 else expected,
    }  # fmt: skip


def build() -> dict[str, Any]:
    from engine.api import initial_checkpoint
    from engine.portable import record
    from protocol import referee_model as rm
    from tests.unit.engine.helpers import tiny_cnn
    from tests.unit.portable.test_step_record import gpt, llama, mlp

    vectors: list[dict[str, Any]] = []
    seen: set[tuple[str, Any]] = set()
    for spec in (mlp(grad_clip_norm=0.5), gpt(dropout=0.1), tiny_cnn(arithmetic="portable/1", batch_size=2), llama()):
        rec, _ = record.record_step(spec, None, 0, initial_checkpoint(spec, None))
        for entry in rec.entries:
            if entry.kernel.endswith("_scalars"):
                continue  # binary64, recomputed from the spec: not a binary32 referee step
            call = record.referee_call(entry)
            targets: list[Any] = list(range(len(entry.outputs)))
            targets += [name for (kernel, name) in rm.INTERMEDIATES if kernel == entry.kernel]
            for output in targets:
                # a gather once per source kind and dtype: the dataset's rows (binary32 features, int64 labels, both
                # constants) and the embedding's (a state tensor)
                kind = (entry.inputs[0].kind, entry.out_shapes[0][0]) if entry.kernel == "gather" else None
                if (entry.kernel, output, kind) in seen:
                    continue
                seen.add((entry.kernel, output, kind))
                size = entry.outputs[output].size if isinstance(output, int) else int(np.prod(rm.INTERMEDIATES[(entry.kernel, output)](call)))
                element = size // 2
                pieces: list[int | None] = [None]
                if entry.kernel == "clip_scale" and output == 0:
                    pieces = [0, None]  # a running value through `piece`, and the factor
                for piece in pieces:
                    proven = _proven(rec, entry, call, output, element, piece)
                    expected = rm.check_element(call, output, element, proven, piece)
                    binary32 = not (entry.kernel == "clip_scale" and (piece is not None or output == 1))
                    if isinstance(output, int):
                        recorded = entry.outputs[output].reshape(-1)[element : element + 1]
                        if piece is None:  # the engine's own bits (binary32, binary64 running sums, integers)
                            bits = recorded.view(np.uint32) if recorded.dtype == np.float32 else \
                                recorded.view(np.uint64) if recorded.dtype == np.float64 else recorded
                            assert expected == int(bits[0])
                        binary32 = binary32 and recorded.dtype == np.float32
                    vectors.append(_vector(call, output, element, proven, piece, expected, binary32))
    vectors += _long_fold_vectors(rm)
    return {"format": FORMAT, "arithmetic": "tessera-portable/1", "vectors": vectors}


def _proven(rec: Any, entry: Any, call: Any, output: Any, element: int, piece: int | None) -> dict:
    from engine.portable import record

    if isinstance(output, int):
        return record.proven_values(rec, entry, output, element, piece)
    flat = {k: rec.input_value(entry, k).reshape(-1) for k in range(len(entry.inputs))}
    from protocol import referee_model as rm

    return {k: flat[k[0]][k[1]] for k in rm.dependencies(call, output, element)}


def _long_fold_vectors(rm: Any) -> list[dict[str, Any]]:
    """A linear with K = 300: its two pieces and the final element from the last running value."""
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 300)).astype(np.float32), rng.standard_normal((3, 300)).astype(np.float32), \
        rng.standard_normal(3).astype(np.float32)  # fmt: skip
    call = rm.Call("linear", (("input", 0), ("input", 1), ("input", 2)), ((2, 300), (3, 300), (3,)), ((2, 3),))
    values = {**{(0, i): v for i, v in enumerate(x.reshape(-1))}, **{(1, i): v for i, v in enumerate(w.reshape(-1))},
              **{(2, i): v for i, v in enumerate(b)}}  # fmt: skip
    element = 4
    partials = rm.partial_sums(call, 0, element, values)
    out = []
    for piece in (0, 1, None):
        keys = rm.dependencies(call, 0, element, piece)
        proven = {k: (partials[k[1]] if k[0] == "partial" else values[k]) for k in keys}
        out.append(_vector(call, 0, element, proven, piece, rm.check_element(call, 0, element, proven, piece), True))
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")
