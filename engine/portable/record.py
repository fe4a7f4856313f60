"""Step computation records (levels 2-3, docs/referee.md): one optimizer step of a portable job as the
sequence of backend kernel calls it makes, each with its non-tensor arguments, references to its input
tensors and commitments to its outputs.

Recording is switched on by setting `engine.portable.ops.RECORDER` (`Recorder.active()`); `ops._run`
and `optim` then report every kernel call of the recording thread. Off, the hooks cost one global read
per call.

An input is referenced by what produced it, never by value: a state tensor (index in sorted-name
order of the agreed state), a batch input, the output of an earlier entry, the state header (per-step
scalars), or a constant table of the spec (its root). An input that the record cannot trace (made by a
torch operation outside the backend, or a non-contiguous view) is `UNRECORDED`: the record is then
incomplete (`StepRecord.complete` is False) and a referee cannot rule on the entries that read it.

Each entry splits into its SKELETON (kernel, arguments, input references, output dtypes and shapes: a
pure function of the spec, the same every step) and its OUTPUT roots. The skeleton root S is the tree
over the skeleton leaves and, at index L, the state map's leaf (which entry output, if any, becomes
each tensor of the next state); the prefix root P_j is the tree, of the same fixed width W (the next
power of two ≥ L + 1), over the entry leaves 0 … j with zero words beyond j.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from engine.portable import ops
from protocol import row_pieces, scalar_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import (  # the one copy of the domain bytes and the reference kinds  # noqa: F401
    BATCH, CONSTANT, ENTRY_LEAF, HEADER, MAP_LEAF, NONE, OUTPUT, RECORD_NODE, SKELETON_LEAF, STATE, UNCHANGED, UNRECORDED)
from protocol.referee_kit import MAX_LONG_SKELETON as MAX_SKELETON_BYTES
from protocol.tensor_commit import keccak

FOLD_KERNELS = frozenset(("matmul", "linear_backward", "sum_rows", "layer_norm_backward", "rms_norm_backward",
                          "linear"))  # fold_rules.FOLD_KERNELS that can run in pieces (fold_head_groups: one piece)  # fmt: skip
MAX_WHOLE_POOL = 3  # data_rules.vy MAX_POOL_WINDOW: a max_pool window of more rows is decided in pieces of 2 rows
ROW_KERNELS = frozenset(row_pieces.KERNELS)  # the kernels whose rows can be decided in pieces
ADAMW_SCALARS = ("decay", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "correction2", "eps", "step_size")
SGD_SCALARS = ("weight_decay", "momentum", "lr")


@dataclass(frozen=True)
class Ref:
    """Where an input comes from: `kind` and two indices (state: `a` = tensor index; batch: `a` = 0 for
    x, 1 for y; output: entry `a`, output `b`); `shape` is the shape the kernel reads it as (row-major
    order is the referenced tensor's: only contiguous views are traced); `root` only for constants."""

    kind: int
    a: int = 0
    b: int = 0
    dtype: int = 1
    shape: tuple[int, ...] = ()
    root: bytes = tc.ZERO

    def encode(self) -> bytes:
        return struct.pack(">BII", self.kind, self.a, self.b) + tc.shape_bytes(self.dtype, self.shape) + self.root


@dataclass
class Entry:
    """One kernel call. `args` are the non-tensor arguments in call order; a tensor argument's place
    holds ("input", k) with k its index in `inputs`."""

    index: int
    kernel: str
    args: tuple[Any, ...]
    inputs: tuple[Ref, ...]
    out_shapes: tuple[tuple[int, tuple[int, ...]], ...]  # (dtype code, shape) per output
    out_roots: tuple[bytes, ...]
    outputs: tuple[np.ndarray, ...] = field(repr=False, default=())  # the values (kept for checking)
    loose: dict[int, np.ndarray] = field(repr=False, default_factory=dict)  # values of untraced/constant inputs

    def skeleton_bytes(self) -> bytes:
        name = self.kernel.encode()
        parts = [struct.pack(">H", len(name)), name, struct.pack(">I", len(self.args))]
        parts += [encode_arg(a) for a in self.args]
        parts += [struct.pack(">I", len(self.inputs))] + [r.encode() for r in self.inputs]
        parts += [struct.pack(">I", len(self.out_shapes))] + [tc.shape_bytes(c, s) for c, s in self.out_shapes]
        return b"".join(parts)

    def skeleton_leaf(self) -> bytes:
        return keccak(SKELETON_LEAF + self.skeleton_bytes())

    def leaf(self) -> bytes:
        """`keccak(0x17 ‖ uint32 j ‖ skeleton leaf ‖ output roots)`."""
        return keccak(ENTRY_LEAF + struct.pack(">I", self.index) + self.skeleton_leaf() + b"".join(self.out_roots))


def with_running_values(entry: Entry, inputs: Sequence[np.ndarray]) -> Entry:
    """The entry with one more output when FoldRules checks one of its folds in pieces
    (`protocol.fold_rules.piecings`, a function of its shapes): the running values, binary32, flat: for
    each such output in order, the fold of each of its elements after piece 0, 1, …, pieces − 2 (row-major
    within a piece). They are the fold's own values in its own order (docs/arithmetic.md: s = s + term
    from +0), so no bit of the other outputs changes; `running_values` computes them."""
    from protocol import fold_rules
    from protocol.referee_kit import parse_skeleton

    pieced = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
    if not pieced:
        return entry
    arrays = [np.asarray(a).reshape(r.shape) for a, r in zip(inputs, entry.inputs, strict=True)]
    values = np.concatenate([running_values(entry.kernel, p.output, arrays, entry.out_shapes[p.output][1], p.length, p.pieces)
                             for p in pieced])  # fmt: skip
    return Entry(entry.index, entry.kernel, entry.args, entry.inputs, (*entry.out_shapes, (1, values.shape)),
                 (*entry.out_roots, tc.tensor_root(values)), (*entry.outputs, values), entry.loose)  # fmt: skip


def with_loss_running_values(entry: Entry, inputs: Sequence[np.ndarray]) -> Entry:
    """The entry with one more output when RowRules checks its loss fold in pieces
    (`protocol.fold_rules.loss_piecing`, a function of its shapes): cross-entropy's running sums of nll
    (its output 1) after each piece of MAX_FOLD rows but the last, or embedding_backward's running dW
    after each piece of positions but the last ([pieces − 1, V, D] row-major, flat). Both are the folds'
    own values in their own order (s = s + term from +0), so no bit of the other outputs changes."""
    from protocol import fold_rules
    from protocol.referee_kit import parse_skeleton

    piecing = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
    if piecing is None:
        return entry
    if entry.kernel == "cross_entropy":
        values = _running_sums(entry.outputs[1].reshape(-1), piecing.length, piecing.pieces)
    elif entry.kernel == "causal_lm":  # after each piece: the sum of nll, then the count (element 0 and 1)
        counted = (np.asarray(inputs[1]).reshape(-1) != ops.IGNORE_TARGET).astype(np.float32)
        sums = [_running_sums(v, piecing.length, piecing.pieces) for v in (entry.outputs[1].reshape(-1), counted)]
        values = np.ascontiguousarray(np.stack(sums, axis=1).reshape(-1), dtype=np.float32)
    else:
        values = _embedding_running_values(inputs[0], inputs[1], entry.out_shapes[0][1], piecing.length, piecing.pieces)
    return Entry(entry.index, entry.kernel, entry.args, entry.inputs, (*entry.out_shapes, (1, values.shape)),
                 (*entry.out_roots, tc.tensor_root(values)), (*entry.outputs, values), entry.loose)  # fmt: skip


def with_row_statistics(entry: Entry, inputs: Sequence[np.ndarray]) -> Entry:
    """The entry with one more output, its LAST, when its rows are decided in pieces
    (`protocol.row_pieces.row_piecing`, a function of its shapes): the running statistics of every row after
    each piece, binary32 [stats · R · P] stat-major (`row_statistics`). They are the kernel's own folds in its
    own order, so no bit of the other outputs changes; an entry that is not row-pieced is returned as is.
    (cross_entropy's: after RowRules' loss running sums, when its mean is pieced; the targets are not read.)"""
    piecing = row_pieces.row_piecing(entry.kernel, [r.shape for r in entry.inputs])
    if piecing is None:
        return entry
    arrays = [np.asarray(a, dtype=np.float32).reshape(r.shape) for a, r in zip(inputs, entry.inputs, strict=True)]
    with np.errstate(all="ignore"):  # −inf − −inf, ∞ · 0: IEEE results, as the kernel's own, without warnings
        values = row_statistics(entry.kernel, arrays, piecing)
    return Entry(entry.index, entry.kernel, entry.args, entry.inputs, (*entry.out_shapes, (1, values.shape)),
                 (*entry.out_roots, tc.tensor_root(values)), (*entry.outputs, values), entry.loose)  # fmt: skip


def row_statistics(kernel: str, inputs: Sequence[np.ndarray], piecing: row_pieces.RowPiecing) -> np.ndarray:
    """The running statistics of a row-pieced call (docs/referee.md, "Rows in pieces"), flat: statistic s of
    row r after pieces 0 … c at (s·R + r)·P + c. Each is engine/portable/reference.py's fold of that row
    (`_max_last`, `_fold_last`: binary32, one rounding an operation), vectorised over the rows, snapshotted
    after each piece: softmax M and S = Σ exp(z − M_final), and the same of the logits z for cross_entropy
    and its backward (their nll and dz read softmax's M and S); softmax_backward Σ y·dy; layer_norm S1 = Σ x
    and S2 = Σ c·c, c = x − S1_final / D; rms_norm Σ x·x; layer_norm_backward A = Σ dy·w and
    B = Σ (dy·w)·x̂; rms_norm_backward B."""
    from engine.portable import reference

    x = np.asarray(inputs[0], dtype=np.float32).reshape(piecing.rows, piecing.width)
    width = np.float32(piecing.width)
    if kernel in row_pieces.SOFTMAX_ROWS:
        maxima = _running_max(x, piecing)
        exps = reference.exp(x - maxima[:, -1:])
        return np.concatenate([maxima.reshape(-1), _running_fold(exps, piecing).reshape(-1)])
    if kernel == "softmax_backward":
        return _running_fold(x * inputs[1].reshape(x.shape), piecing).reshape(-1)
    if kernel == "layer_norm":
        sums = _running_fold(x, piecing)
        centred = x - (sums[:, -1:] / width)
        return np.concatenate([sums.reshape(-1), _running_fold(centred * centred, piecing).reshape(-1)])
    if kernel == "rms_norm":
        return _running_fold(x * x, piecing).reshape(-1)
    g = inputs[3].reshape(x.shape) * inputs[2].reshape(1, piecing.width)  # a norm backward: x̂, rstd, w, dy
    dots = _running_fold(g * x, piecing).reshape(-1)
    return np.concatenate([_running_fold(g, piecing).reshape(-1), dots]) if kernel == "layer_norm_backward" else dots


def _running_fold(terms: np.ndarray, piecing: row_pieces.RowPiecing) -> np.ndarray:
    """[R, P]: s = +0, then s = s + terms[:, j] for j = 0 … D − 1 (binary32), s after each piece's last column."""
    total = np.zeros(piecing.rows, dtype=np.float32)
    out = np.empty((piecing.rows, piecing.pieces), dtype=np.float32)
    for j in range(piecing.width):
        total = (total + terms[:, j]).astype(np.float32, copy=False)
        if (j + 1) % piecing.length == 0 or j + 1 == piecing.width:
            out[:, j // piecing.length] = total
    return out


def _running_max(z: np.ndarray, piecing: row_pieces.RowPiecing) -> np.ndarray:
    """[R, P]: m = z[:, 0], then m = z[:, j] where m < z[:, j] (the first maximum wins; NaN never replaces
    and is never replaced), m after each piece's last column."""
    best = z[:, 0].copy()
    out = np.empty((piecing.rows, piecing.pieces), dtype=np.float32)
    for j in range(piecing.width):
        best = np.where(best < z[:, j], z[:, j], best)
        if (j + 1) % piecing.length == 0 or j + 1 == piecing.width:
            out[:, j // piecing.length] = best
    return out


def _running_sums(terms: np.ndarray, length: int, pieces: int) -> np.ndarray:
    """The fold of `terms` from +0 in order (binary32, one rounding an addition) after each of the first
    pieces − 1 pieces of `length` terms."""
    # a ufunc's accumulate is sequential (each partial sum from the one before), one binary32 rounding a step
    sums = np.add.accumulate(np.asarray(terms, dtype=np.float32), dtype=np.float32)
    return np.ascontiguousarray(sums[length - 1 : (pieces - 1) * length : length], dtype=np.float32)


def _embedding_running_values(ids: np.ndarray, dy: np.ndarray, shape: tuple[int, ...], length: int,
                              pieces: int) -> np.ndarray:  # fmt: skip
    """dW[v, d] = fold over the positions p with ids[p] = v of dy[p, d], vectorised over d, after each of
    the first pieces − 1 pieces of `length` positions, flat."""
    width = int(shape[-1])
    rows = np.asarray(dy, dtype=np.float32).reshape(-1, width)
    total = np.zeros(shape, dtype=np.float32)
    out = []
    for p, token in enumerate(np.asarray(ids).reshape(-1)):
        total[int(token)] = (total[int(token)] + rows[p]).astype(np.float32, copy=False)
        if (p + 1) % length == 0 and len(out) < pieces - 1:
            out.append(total.reshape(-1).copy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _fold_terms(kernel: str, output: int, inputs: Sequence[np.ndarray], shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The terms of every element of a folded output at once, term t as an array of the output's shape,
    in the fold's order (protocol.referee_model: matmul over k, linear_backward dx over n and dW, db
    over the rows, sum_rows and the norms' columns over the rows)."""
    if kernel == "matmul":
        a, b = inputs
        for t in range(a.shape[-1]):
            yield np.broadcast_to(a[..., :, t : t + 1] * b[..., t : t + 1, :], shape)
        return
    if kernel == "linear":  # y[r, n] over k of x[r, k] · W[n, k] (the bias after the fold: not a running value's)
        w = inputs[1]
        x = inputs[0].reshape(-1, w.shape[1])
        for t in range(w.shape[1]):
            yield (x[:, t : t + 1] * w[None, :, t]).reshape(shape)
        return
    if kernel == "sum_rows":
        x = inputs[0].reshape(inputs[0].shape[0], -1)
        for row in x:
            yield row.reshape(shape)
        return
    if kernel == "linear_backward":
        w = inputs[1]
        n_width, k_width = w.shape
        x, dy = inputs[0].reshape(-1, k_width), inputs[2].reshape(-1, n_width)
        if output == 0:  # dx[r, k] over n of dy[r, n] · w[n, k]
            for n in range(n_width):
                yield (dy[:, n : n + 1] * w[n : n + 1, :]).reshape(shape)
        elif output == 1:  # dW[n, k] over r of dy[r, n] · x[r, k]
            for r in range(x.shape[0]):
                yield dy[r, :, None] * x[r, None, :]
        else:  # db[n] over r of dy[r, n]
            yield from dy
        return
    width = inputs[0].shape[-1]  # a norm's dw[j] over r of dy[r, j] · x̂[r, j], db[j] over r of dy[r, j]
    xhat, dy = inputs[0].reshape(-1, width), inputs[3].reshape(-1, width)
    for r in range(xhat.shape[0]):
        yield (dy[r] * xhat[r] if output == 1 else dy[r]).reshape(shape)


def running_values(kernel: str, output: int, inputs: Sequence[np.ndarray], shape: tuple[int, ...], length: int,
                   pieces: int) -> np.ndarray:  # fmt: skip
    """The running values of every element of a folded output after each of its first pieces − 1 pieces of
    `length` terms, flat ([pieces − 1, *shape] row-major), vectorised: binary32 products and sums, one
    rounding each, in the fold's order."""
    total = np.zeros(shape, dtype=np.float32)
    out = []
    for t, term in enumerate(_fold_terms(kernel, output, [np.asarray(a, dtype=np.float32) for a in inputs], shape)):
        total = (total + term.astype(np.float32, copy=False)).astype(np.float32, copy=False)
        if (t + 1) % length == 0 and len(out) < pieces - 1:
            out.append(total.reshape(-1).copy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def encode_arg(value: Any) -> bytes:
    """One 32-byte word per argument: a tag byte, then the value right-aligned. 0: None; 1: integer
    (two's complement, 31 bytes); 2: Python float (binary64 bits); 3: binary32 (its bits); 4: bool;
    5: a tuple (keccak of its words, first 31 bytes); 6: a tensor argument (the input index);
    7: a string (keccak, first 31 bytes)."""
    if value is None:
        return bytes(32)
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "input":
        return b"\x06" + int(value[1]).to_bytes(31, "big")
    if isinstance(value, (bool, np.bool_)):
        return b"\x04" + int(bool(value)).to_bytes(31, "big")
    if isinstance(value, (int, np.integer)):
        return b"\x01" + int(value).to_bytes(31, "big", signed=True)
    if isinstance(value, np.float32):
        return b"\x03" + value.tobytes()[::-1].rjust(31, b"\x00") if np.little_endian else b"\x03" + value.tobytes().rjust(31, b"\x00")
    if isinstance(value, float):
        return b"\x02" + struct.pack(">d", value).rjust(31, b"\x00")
    if isinstance(value, tuple):
        return b"\x05" + keccak(b"".join(encode_arg(v) for v in value))[:31]
    if isinstance(value, str):
        return b"\x07" + keccak(value.encode())[:31]
    raise TypeError(f"a kernel argument of type {type(value).__name__} has no record encoding")


def _key(array: np.ndarray) -> tuple[int, int, str] | None:
    """Identity of a C-contiguous host array's memory (None for any other layout)."""
    if not array.flags.c_contiguous:
        return None
    return (array.__array_interface__["data"][0], array.nbytes, array.dtype.str)


def _host(value: Any) -> np.ndarray:
    """The host array a backend call sees for a tensor argument (the same memory on CPU)."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        return (t if t.device.type == "cpu" else t.cpu()).numpy() if t.is_contiguous() else t.contiguous().cpu().numpy()
    return value


def _is_tensor(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


@dataclass
class StepRecord:
    """The record of one optimizer step: entries in execution order, and where each state tensor of the
    state after the step comes from (`final`: name → Ref)."""

    state_names: tuple[str, ...]
    entries: list[Entry]
    final: dict[str, Ref]
    state_values: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    batch_values: tuple[np.ndarray, ...] = field(repr=False, default=())
    header: dict[str, int] = field(default_factory=dict)  # the agreed state's seed, step and cursor (epoch, position)

    @property
    def complete(self) -> bool:
        return not any(r.kind == UNRECORDED for e in self.entries for r in e.inputs)

    @property
    def width(self) -> int:
        """W: the next power of two >= L + 1 (the L skeleton leaves and the state map's leaf), the width
        of S and of every prefix root P_j."""
        return tc.width_of(len(self.entries) + 1)

    def map_bytes(self) -> bytes:
        """The state map: per state tensor in sorted-name order, `uint32 entry ‖ uint8 output` of the
        entry output that becomes it in the next state, or `0xffffffff ‖ 0` for one the step leaves
        unchanged. A pure function of the spec, like the skeleton. ValueError for a state tensor the
        step makes any other way (untraced, or another state tensor): the link could not judge it."""
        parts = []
        for index, name in enumerate(self.state_names):
            ref = self.final[name]
            if ref.kind == STATE and ref.a == index:
                parts.append(struct.pack(">IB", UNCHANGED, 0))
            elif ref.kind == OUTPUT and 0 <= ref.a < len(self.entries) and 0 <= ref.b < 256:
                parts.append(struct.pack(">IB", ref.a, ref.b))
            else:
                raise ValueError(f"state tensor {name!r} of the next state is not an entry's output nor unchanged")
        return b"".join(parts)

    def map_leaf(self) -> bytes:
        """`keccak(0x19 ‖ map bytes)`: leaf L of S."""
        return keccak(MAP_LEAF + self.map_bytes())

    def skeleton_leaves(self) -> list[bytes]:
        """The L skeleton leaves, then the state map's leaf at index L."""
        return [e.skeleton_leaf() for e in self.entries] + [self.map_leaf()]

    def skeleton_root(self) -> bytes:
        """S: the tree over the skeleton leaves and the map leaf, width W, zero-padded."""
        return _root_fixed(self.skeleton_leaves(), self.width)

    def skeleton_proof(self, index: int) -> list[bytes]:
        """Siblings proving leaf `index` of S (an entry's skeleton leaf, or the map leaf at L)."""
        leaves = self.skeleton_leaves()
        return tc.tree_proof(leaves + [tc.ZERO] * (self.width - len(leaves)), index, RECORD_NODE)

    def prefix_roots(self) -> list[bytes]:
        """P_0 … P_{L−1}: P_j over the entry leaves 0 … j, zero words beyond, width W (one leaf updated
        per step up the tree: L·log W hashes)."""
        from protocol.referee_kit import prefix_roots

        return prefix_roots([entry.leaf() for entry in self.entries], self.width)

    def entry_proof(self, j: int, prefix: int | None = None) -> list[bytes]:
        """Siblings proving entry leaf j against P_prefix (default: P_j)."""
        last = j if prefix is None else prefix
        leaves = [e.leaf() for e in self.entries[: last + 1]] + [tc.ZERO] * (self.width - last - 1)
        return tc.tree_proof(leaves, j, RECORD_NODE) if self.width > 1 else []

    def input_value(self, entry: Entry, k: int) -> np.ndarray:
        """Input k of `entry` as the kernel read it."""
        if k in entry.loose:
            return entry.loose[k]
        found = self.value_of(entry.inputs[k])
        if found is None:
            raise ValueError(f"input {k} of entry {entry.index} has no tensor value")
        return found

    def value_of(self, ref: Ref) -> np.ndarray | None:
        """The values a reference points at (as the kernel read them), from this record."""
        if ref.kind == STATE:
            source = self.state_values[self.state_names[ref.a]]
        elif ref.kind == BATCH:
            source = self.batch_values[ref.a]
        elif ref.kind == OUTPUT:
            source = self.entries[ref.a].outputs[ref.b]
        else:
            return None
        size = int(np.prod(ref.shape, dtype=np.int64))
        return source.reshape(-1)[:size].reshape(ref.shape)  # a contiguous prefix view reads the first elements


def _root_fixed(leaves: Sequence[bytes], width: int) -> bytes:
    return tc.tree_root(list(leaves) + [tc.ZERO] * (width - len(leaves)), RECORD_NODE)


def verify_entry(prefix_root: bytes, width: int, entry_leaf: bytes, j: int, proof: Sequence[bytes]) -> bool:
    """True when `entry_leaf` is leaf j under the prefix root of a record of width `width`."""
    if not 0 <= j < width or len(proof) != width.bit_length() - 1:
        return False
    return tc.root_from_path(entry_leaf, j, proof, RECORD_NODE) == prefix_root


class Recorder:
    """Collects the entries of one step. `state` maps the sorted state names to the live tensors (the
    agreed state, before the step)."""

    def __init__(self, spec: Any, state: dict[str, torch.Tensor]):
        self.spec = spec
        self.names = tuple(sorted(state))
        self.entries: list[Entry] = []
        self._refs: dict[tuple[int, int, str], Ref] = {}
        self._by_address: dict[int, tuple[int, str, Ref]] = {}  # start address -> (bytes, dtype, ref)
        self._keep: list[Any] = []  # every traced array stays alive, so no address is reused mid-step
        self.state_values = {name: _host(state[name]).copy() for name in self.names}
        self.batch_values: tuple[np.ndarray, ...] = ()
        self._dataset: tuple[tuple[np.ndarray, bytes], ...] | None = None  # train_x, train_y, orders with roots
        self.cursor: dict[str, int] = {}  # the recorded step's data cursor (epoch, position)
        for index, name in enumerate(self.names):
            self._trace(_host(state[name]), Ref(STATE, index, dtype=1, shape=tuple(state[name].shape)))
        self._live = {name: state[name] for name in self.names}
        self.step: int | None = None  # the step being recorded (set by record_step; checks dropout keys)
        self.dropout_calls = 0
        self.paused = False  # True while the recorder itself computes (the torch side is not recorded)
        self.thread: int | None = None  # the recording thread, while active
        self._columns_of: dict[tuple[Any, ...], np.ndarray] = {}  # a conv2d input's colsT, for its backward

    def _trace(self, array: np.ndarray, ref: Ref) -> None:
        key = _key(array)
        if key is not None:
            self._refs[key] = ref
            self._by_address[key[0]] = (key[1], key[2], ref)
            self._keep.append(array)

    def dataset(self, train_x: np.ndarray, train_y: np.ndarray, orders: np.ndarray) -> None:
        """The job's dataset constants (`dataset_constants`): the batch entries read them, so their
        roots are in the skeleton and S binds them."""
        values = [np.ascontiguousarray(v) for v in (train_x, train_y, orders)]
        self._dataset = tuple((v, tc.tensor_root(v)) for v in values)

    def batch(self, cursor: dict[str, int], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's batch (called by the trainer's batch function with the step's data cursor), recorded
        as its first three entries: `batch_index` (the header's cursor and the `orders` constant in, the
        example ids idx[b] = orders[epoch, position + b] out), then `gather` of `train_x` and of `train_y`
        by idx. x and y are those gathers' outputs, so no entry reads an unproven batch. Without the
        dataset constants (`dataset`) the batch stays an unproven input (kind BATCH)."""
        values = [_host(t).copy() for t in (x, y)]
        self.batch_values = tuple(values)
        self.cursor = dict(cursor)
        if self._dataset is None:
            for index, t in enumerate((x, y)):
                host = _host(t)
                self._trace(host, Ref(BATCH, index, dtype=tc.dtype_code(host), shape=tuple(host.shape)))
            return x, y
        (train_x, x_root), (train_y, y_root), (orders, orders_root) = self._dataset
        size = values[0].shape[0]
        ids = np.ascontiguousarray(orders[cursor["epoch"], cursor["position"] : cursor["position"] + size], dtype=np.int64)
        orders_ref = Ref(CONSTANT, dtype=tc.dtype_code(orders), shape=tuple(orders.shape), root=orders_root)
        index = self.kernel_refs("batch_index", [Ref(HEADER), orders_ref], ids, (), loose={1: orders}).index
        ids_ref = Ref(OUTPUT, index, 0, tc.dtype_code(ids), tuple(ids.shape))
        for t, source, root in ((x, train_x, x_root), (y, train_y, y_root)):
            host = _host(t)
            selected = np.ascontiguousarray(source[ids])
            if selected.dtype != host.dtype or selected.shape != host.shape or selected.tobytes() != host.tobytes():  # bit for bit
                raise ValueError("the trainer's batch is not the dataset's rows at the cursor")
            source_ref = Ref(CONSTANT, dtype=tc.dtype_code(source), shape=tuple(source.shape), root=root)
            entry = self.kernel_refs("gather", [source_ref, ids_ref], host, (), loose={0: source})
            self._keep.append(host)
            self._trace(host, Ref(OUTPUT, entry.index, 0, tc.dtype_code(host), tuple(host.shape)))
        return x, y

    def ref(self, value: Any) -> Ref:
        """The reference of a tensor argument: traced by its memory (a contiguous view of a traced
        array, or a contiguous prefix of one, reads the same row-major values), a view of traced memory
        (through a `move` entry), a host table the spec fixes, or UNRECORDED."""
        host = _host(value)
        code, shape = tc.dtype_code(host), tuple(host.shape)
        traceable = not isinstance(value, torch.Tensor) or value.is_contiguous()
        key = _key(host) if traceable else None
        known = self._refs.get(key) if key is not None else None
        if known is not None:
            return Ref(known.kind, known.a, known.b, code, shape)
        if isinstance(value, torch.Tensor):
            viewed = self._view_ref(value, code)
            if viewed is not None:
                return viewed
        elif key is not None and key[0] in self._by_address:  # a prefix of a traced host array
            nbytes, dtype, base = self._by_address[key[0]]
            if dtype == key[2] and key[1] <= nbytes:
                return Ref(base.kind, base.a, base.b, code, shape)
        if isinstance(value, np.ndarray) or host.ndim == 0:  # a host table passed by the model (rotary
            return Ref(CONSTANT, dtype=code, shape=shape, root=tc.tensor_root(host))  # cos/sin), a 0-d constant
        return Ref(UNRECORDED, dtype=code, shape=shape)

    def _view_ref(self, t: torch.Tensor, code: int) -> Ref | None:
        """A torch view of traced memory: a contiguous prefix is the traced tensor read under a smaller
        shape; any other view becomes a `move` entry (sizes, strides, offset: exact) read instead."""
        if t.device.type != "cpu":
            return None
        found = self._by_address.get(t.untyped_storage().data_ptr())
        if found is None:
            return None
        nbytes, dtype, base = found
        item = t.element_size()
        if dtype != np.dtype(str(t.dtype).removeprefix("torch.")).str:
            return None
        sizes, strides, offset = tuple(t.shape), tuple(t.stride()), int(t.storage_offset())
        last = offset + sum((n - 1) * st for n, st in zip(sizes, strides) if n > 0)
        if (last + 1) * item > nbytes or any(st < 0 for st in strides):
            return None
        if t.is_contiguous() and offset == 0:
            return Ref(base.kind, base.a, base.b, code, sizes)
        values = t.detach().contiguous().numpy()
        entry = self.kernel_refs("move", [base], values, (sizes, strides, offset))
        return Ref(OUTPUT, entry.index, 0, code, sizes)

    def kernel_refs(self, name: str, refs: Sequence[Ref], value: np.ndarray, extra_args: tuple[Any, ...],
                    loose: dict[int, np.ndarray] | None = None) -> Entry:  # fmt: skip
        """An entry whose inputs are given as references (the moves and batch entries the recorder
        inserts itself); `loose` holds the values of its constant inputs."""
        index = len(self.entries)
        host = value.copy()
        encoded = tuple(("input", k) for k in range(len(refs))) + extra_args
        entry = Entry(index, name, encoded, tuple(refs), ((tc.dtype_code(host), tuple(host.shape)),),
                      (tc.tensor_root(host),), (host,), dict(loose or {}))  # fmt: skip
        self._trace(host, Ref(OUTPUT, index, 0, tc.dtype_code(host), tuple(host.shape)))
        self.entries.append(entry)
        return entry

    def alias(self, tensor: torch.Tensor, source: Any) -> None:
        """`tensor` holds exactly `source`'s values (a contiguous copy): it is traced as the same reference."""
        ref = self.ref(source)
        if ref.kind in (OUTPUT, STATE, BATCH):
            self._trace(_host(tensor), ref)

    def attention(self, impl: Any, xs: Any) -> tuple[Any, Any]:
        """Recording stand-ins for the backend and the array helpers of `ops.CausalAttention`, so each of
        the attention core's operations is an entry."""
        return _RecordedBackend(impl, self), _RecordedArrays(xs, impl, self)

    def kernel(self, name: str, args: Sequence[Any], result: Any, extra_args: tuple[Any, ...] = ()) -> Entry:
        """Record one call of backend kernel `name` with positional `args` and its `result` (conv2d and its
        backward as the calls they are made of: `_convolution`)."""
        if name in ("conv2d", "conv2d_backward"):
            return self._convolution(name, args, result)
        inputs: list[Ref] = []
        encoded: list[Any] = []
        for arg in args:
            if _is_tensor(arg):
                encoded.append(("input", len(inputs)))
                inputs.append(self.ref(arg))
            else:
                encoded.append(arg)
        outputs = result if isinstance(result, tuple) else (result,)
        hosts = [_host(o) if _is_tensor(o) else np.asarray(o, dtype=np.float32) for o in outputs]
        if name == "cross_entropy":  # output 1: the per-row losses the mean folds (issue 15, REF_SELF reads)
            hosts.append(_cross_entropy_rows(*(_host(a) for a in args[:2])))
        elif name == "causal_lm":  # (the loss, the count): the per-row losses go between them, as cross_entropy's
            hosts.insert(1, _causal_lm_rows(*(_host(a) for a in args[:2])))
        elif name == "max_pool_backward" and int(args[-2]) > int(args[-1]):  # overlapping windows: output 1
            hosts.append(_pool_running_values(args[0], _host(args[1]), _host(args[2]), int(args[-2]), int(args[-1]), hosts[0]))
        elif name == "col2im" and _col2im_pieces(int(args[2]), int(args[3])) > 1:  # over 4 covering rows: output 1
            hosts.append(_col2im_running_values(_host(args[0]), int(args[2]), int(args[3]), int(args[4]), hosts[0]))
        elif name == "max_pool" and int(args[-2]) > MAX_WHOLE_POOL:  # windows over 3 rows: outputs 2 and 3
            hosts += _pool_running_best(_host(args[0]), int(args[-2]), int(args[-1]), hosts[0], hosts[1])
        index = len(self.entries)
        tensor_args = [a for a in args if _is_tensor(a)]
        loose = {k: _host(tensor_args[k]).copy() for k, r in enumerate(inputs) if r.kind in (UNRECORDED, CONSTANT)}
        entry = Entry(index, name, tuple(encoded) + extra_args, tuple(inputs),
                      tuple((tc.dtype_code(h), tuple(h.shape)) for h in hosts),
                      tuple(tc.tensor_root(h) for h in hosts), tuple(h.copy() for h in hosts), loose)  # fmt: skip
        for number, host in enumerate(hosts):
            self._trace(host, Ref(OUTPUT, index, number, tc.dtype_code(host), tuple(host.shape)))
        if name in FOLD_KERNELS:
            entry = with_running_values(entry, [_host(t) for t in tensor_args])
        elif name in ("cross_entropy", "causal_lm", "embedding_backward"):
            entry = with_loss_running_values(entry, [_host(t) for t in tensor_args])
        if name in ROW_KERNELS:  # after FoldRules' running values: the statistics are always the last output
            entry = with_row_statistics(entry, [_host(t) for t in tensor_args])
        self.entries.append(entry)
        return entry

    def _convolution(self, name: str, args: Sequence[Any], result: Any) -> Entry:
        """conv2d and conv2d_backward recorded as the calls docs/arithmetic.md defines them by, so that every
        output element is one bounded rule (a whole conv2d element reads C·k rows of the image: more runs
        than a plan holds). Forward: `im2col` (x → cols [B, Q, L], moves only), `transpose` (→ colsT
        [B, L, Q]), `linear(colsT, W as [O, Q], bias)` (→ [B, L, O]: the same products, x·w = w·x exactly,
        folded over q in order, then + bias) and `transpose` (→ y [B, O, L]). Backward: `transpose` of dy
        (→ [B, L, O]), `linear_backward(colsT, W, dyT)` (dcolsT, dW and db: the folds over o and over
        (b, l) in conv2d_backward's order), `transpose` (→ dcols [B, Q, L]) and `col2im` (→ dx). The
        backward reads the forward's colsT. The calls' values must be the engine's bits (NaN as a class),
        and the engine's outputs are traced as these entries' outputs."""
        from engine.portable import cpu

        x, weight = args[0], args[1]
        stride, padding = int(args[-2]), int(args[-1])
        out_channels, kernel = int(weight.shape[0]), int(weight.shape[-1])
        w = weight.reshape(out_channels, -1)
        cols_t = self._columns(x, kernel, stride, padding)
        batch, positions, _ = cols_t.shape
        if name == "conv2d":
            bias = args[2]
            y_t = cpu.linear(cols_t, _host(w), None if bias is None else _host(bias))
            self.kernel("linear", [cols_t, w, bias], y_t)
            y = np.ascontiguousarray(np.swapaxes(y_t, 1, 2))
            last = self.kernel("transpose", [y_t], y)
            self._engine_output(result, last, 0, y)
            return last
        dy = args[2].reshape(batch, out_channels, positions)
        dy_t = np.ascontiguousarray(np.swapaxes(_host(dy), 1, 2))
        self.kernel("transpose", [dy], dy_t)
        grads = cpu.linear_backward(cols_t, _host(w), dy_t)
        folds = self.kernel("linear_backward", [cols_t, w, dy_t], grads)
        dcols_t = grads[0].reshape(cols_t.shape)
        dcols = np.ascontiguousarray(np.swapaxes(dcols_t, 1, 2))
        self.kernel("transpose", [dcols_t], dcols)
        image = tuple(int(n) for n in x.shape)
        dx = cpu.col2im(dcols, image, kernel, stride, padding)
        last = self.kernel("col2im", [dcols, image, kernel, stride, padding], dx)
        self._engine_output(result[0], last, 0, dx)
        self._engine_output(result[1], folds, 1, grads[1])
        self._engine_output(result[2], folds, 2, grads[2])
        return last

    def _columns(self, x: Any, kernel: int, stride: int, padding: int) -> np.ndarray:
        """colsT [B, L, Q] of a conv2d's input: the `im2col` and `transpose` entries, recorded once for the
        forward and read again by its backward (the same x: the same reference)."""
        from engine.portable import cpu

        ref = self.ref(x)
        key = (ref.kind, ref.a, ref.b, ref.shape, ref.root, kernel, stride, padding)  # (a constant: its root)
        found = self._columns_of.get(key) if ref.kind != UNRECORDED else None
        if found is not None:
            return found
        loose = {0: _host(x).copy()} if ref.kind in (UNRECORDED, CONSTANT) else None
        # ref(x) once (a view's move entry once); the entry holds and traces its own copy of cols
        cols = self.kernel_refs("im2col", [ref], cpu.im2col(_host(x), kernel, stride, padding), (kernel, stride, padding), loose).outputs[0]
        cols_t = np.ascontiguousarray(np.swapaxes(cols, 1, 2))
        self.kernel("transpose", [cols], cols_t)
        self._columns_of[key] = cols_t
        return cols_t

    def _engine_output(self, value: Any, entry: Entry, number: int, recorded: np.ndarray) -> None:
        """The engine's output `value` is output `number` of `entry` (which computed `recorded`): refused
        unless the bits agree (NaN as a class), then traced so later entries read it as that output."""
        from protocol.errors import EngineError

        host = _host(value)
        if not _same_bits(recorded, host):
            raise EngineError(f"the recorded {entry.kernel} (entry {entry.index}) differs from the engine's convolution")
        self._trace(host, Ref(OUTPUT, entry.index, number, tc.dtype_code(host), tuple(host.shape)))

    def scalars(self, kind: str, constants: dict[str, np.float32], lr: float, step_number: int) -> Ref:
        """A per-step scalar entry (`adamw_scalars` or `sgd_scalars`): its only input is the state
        header (the step), its arguments the spec's optimizer and schedule (constant every step).
        Refuses a learning rate that is not the spec schedule's at this step."""
        from engine.portable import scalars as pscalars

        spec = self.spec
        step = step_number - 1
        expected = spec.optimizer.lr * pscalars.lr_factor(spec.schedule, step, spec.steps)
        if lr != expected:
            raise ValueError(f"learning rate {lr!r} is not the schedule's {expected!r} at step {step}")
        names = ADAMW_SCALARS if kind == "adamw_scalars" else SGD_SCALARS
        values = np.array([constants[n] for n in names], dtype=np.float32)
        index = len(self.entries)
        config = scalar_rules.scalar_args(spec.optimizer, spec.schedule, spec.steps)
        entry = Entry(index, kind, config, (Ref(HEADER),), ((1, values.shape),), (tc.tensor_root(values),), (values,))
        self.entries.append(entry)
        return Ref(OUTPUT, index, 0, 1, values.shape)

    def update(self, kernel: str, inputs: Sequence[Any], scalars_ref: Ref, outputs: Sequence[torch.Tensor],
               extra_args: tuple[Any, ...] = ()) -> None:  # fmt: skip
        """An optimizer or clipping kernel (in place or not): `inputs` as they were read (their references
        resolve before the outputs are traced, so an updated tensor's memory then names this entry)."""
        refs = [self.ref(t) for t in inputs] + [scalars_ref]
        hosts = [_host(t) for t in outputs]
        index = len(self.entries)
        encoded = tuple(("input", k) for k in range(len(refs))) + extra_args
        loose = {k: _host(inputs[k]).copy() for k in range(len(inputs)) if refs[k].kind == UNRECORDED}
        entry = Entry(index, kernel, encoded, tuple(refs), tuple((tc.dtype_code(h), tuple(h.shape)) for h in hosts),
                      tuple(tc.tensor_root(h) for h in hosts), tuple(h.copy() for h in hosts), loose)  # fmt: skip
        for number, host in enumerate(hosts):
            self._trace(host, Ref(OUTPUT, index, number, tc.dtype_code(host), tuple(host.shape)))
        self.entries.append(entry)

    def clip(self, grads: Sequence[torch.Tensor], max_norm: float, scale: np.float32) -> list[torch.Tensor]:
        """Gradient clipping: one `clip_scale` entry (every gradient in; out the binary32 factor and the
        binary64 running Σ g² after each piece, `scalar_rules.clip_pieces`, so that the referee checks
        the fold piece by piece), then one `scale` entry per gradient (g × factor, computed here as
        optim would). Over CLIP_GROUP gradients, whose one entry would list more references than the
        rules read, the fold is `clip_sum` entries (`scalar_rules.clip_groups`: each group's partials,
        the fold's own running values, every group after the first reading the one before's) and one
        `clip_factor` (the last group's partials in, the factor out)."""
        factor = np.array([scale], dtype=np.float32)
        partials = scalar_rules.clip_partials([ops.host_array(g).reshape(-1) for g in grads])
        groups = scalar_rules.clip_groups(len(grads))
        if groups:
            # each gradient's pieces in the whole fold (none for an empty one: clip_pieces([0]) is [(0, 0, 0)])
            terms = scalar_rules.CLIP_PIECE_TERMS
            pieces = [-(-ops.host_array(g).size // terms) for g in grads]
            done, before = 0, []
            for group in groups:
                count = sum(pieces[k] for k in group)
                own = np.ascontiguousarray(partials[done : done + count])  # traced as this entry's, read by the next
                self.kernel("clip_sum", [*before, *(grads[k] for k in group)], own)
                before, done = [own], done + count
            entry = self.kernel("clip_factor", before, factor, extra_args=(float(max_norm),))
        else:
            entry = self.kernel("clip_scale", [*grads], (factor, partials), extra_args=(float(max_norm),))
        factor_ref = Ref(OUTPUT, entry.index, 0, 1, (1,))
        self.paused = True
        try:
            scaled = [g * float(scale) for g in grads]
        finally:
            self.paused = False
        for grad, out in zip(grads, scaled):
            self.update("scale", [grad], factor_ref, [out])
        return scaled

    def dropout_mask(self, mask: torch.Tensor, key: int, p: float) -> None:
        """Dropout call c of the step: its keep mask, a function of the header (seed, step) and c."""
        from engine.seeds import derive_seed

        call = self.dropout_calls
        self.dropout_calls += 1
        if self.step is not None and key != derive_seed(self.spec.seed, "dropout", self.step, call):
            raise ValueError(f"dropout call {call} of step {self.step} drew from an unexpected key")
        self.update("dropout_keep", [], Ref(HEADER), [mask], (float(p), call))

    def finish(self) -> StepRecord:
        final = {}
        for name in self.names:
            host = _host(self._live[name])
            ref = self._refs.get(_key(host)) if _key(host) else None
            final[name] = ref if ref is not None else Ref(UNRECORDED, shape=tuple(host.shape))
        header = {"seed": int(self.spec.seed), "step": -1 if self.step is None else self.step, **self.cursor}
        return StepRecord(self.names, self.entries, final, self.state_values, self.batch_values, header)

    def here(self) -> bool:
        """Whether the calling thread is the one recording (other threads' calls are not this step's)."""
        return threading.get_ident() == self.thread

    @contextlib.contextmanager
    def active(self) -> Iterator[Recorder]:
        if ops.RECORDER is not None:
            raise RuntimeError("a step is already being recorded")
        self.thread = threading.get_ident()
        ops.RECORDER = self
        try:
            with _TorchSide(self):
                yield self
        finally:
            ops.RECORDER = None


def _cross_entropy_rows(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cross-entropy's per-row losses nll[r] = log(s_r) − (z[r, t_r] − m_r): the very terms its mean folds
    (docs/arithmetic.md, section 6), recorded as the entry's output 1 so the mean is a fold over the
    entry's own output and each row a rule of its own (docs/referee.md, "Loss rules")."""
    from engine.portable import cpu

    return np.ascontiguousarray(cpu.cross_entropy_rows(z, target), dtype=np.float32)


def _same_bits(mine: Any, theirs: Any) -> bool:
    """Whether two binary32 arrays hold the same bits, NaN as a class (docs/arithmetic.md)."""
    a = np.asarray(mine, dtype=np.float32).reshape(-1)
    b = np.asarray(theirs, dtype=np.float32).reshape(-1)
    return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


def _pool_running_values(shape: Sequence[int], where: np.ndarray, dy: np.ndarray, kernel: int, stride: int,
                         dx: np.ndarray) -> np.ndarray:  # fmt: skip
    """max_pool_backward's running values over overlapping windows (k over s), its output 1 (docs/referee.md,
    "Data rules built"): slot t of element e, at t·|dx| + e, is dx[e] after its first t + 1 covering windows in
    the kernel's own order ((oh, ow) row-major: dx = +0, then dx[winner] + dy window by window), the final dx
    where it has fewer; R² − 1 slots, R = ceil(k / s), as [R² − 1, B, C, H, W] (each axis one a tensor can have
    whenever dx can). The fold's own values, so dx's bits are unchanged (checked)."""
    from protocol.errors import EngineError

    batch, channels, height, width = (int(n) for n in shape)
    oh_n, ow_n = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    rows = -(-kernel // stride)
    planes, size = batch * channels, height * width
    winners = np.asarray(where).reshape(planes, oh_n * ow_n)
    grads = np.asarray(dy, dtype=np.float32).reshape(planes, oh_n * ow_n)
    total = np.zeros((planes, size), dtype=np.float32)
    running = np.empty((rows * rows - 1, planes, size), dtype=np.float32)
    seen = np.zeros(size, dtype=np.int64)  # covering windows so far, by position (the same in every plane)
    for oh in range(oh_n):
        for ow in range(ow_n):
            window = oh * ow_n + ow
            for i in range(kernel):
                for j in range(kernel):
                    at = (oh * stride + i) * width + ow * stride + j
                    won = winners[:, window] == i * kernel + j
                    with np.errstate(all="ignore"):  # an overflow to ±inf is the kernel's own IEEE result
                        total[won, at] = (total[won, at] + grads[won, window]).astype(np.float32)
                    if seen[at] < running.shape[0]:
                        running[seen[at], :, at] = total[:, at]
                    seen[at] += 1
    for slot in range(running.shape[0]):  # past an element's windows: its final value
        running[slot][:, seen <= slot] = total[:, seen <= slot]
    if not _same_bits(total, dx):
        raise EngineError("max_pool_backward's running values do not end at the engine's dx")
    return running.reshape(rows * rows - 1, batch, channels, height, width)


def _col2im_pieces(kernel: int, stride: int) -> int:
    from protocol.data_rules import col2im_pieces

    return col2im_pieces(kernel, stride)[1]


def _col2im_running_values(dcols: np.ndarray, kernel: int, stride: int, padding: int, dx: np.ndarray) -> np.ndarray:
    """col2im's running values over more than 4 covering rows, its output 1 (docs/referee.md, "Data rules built";
    `protocol.data_rules.col2im_piece`): slot t of element e, at t·|dx| + e, is dx[e] after its first (t + 1)·G covering
    rows (+0, then + dcols at each covering (i, j), row-major: the kernel's own order), the final dx where it has
    fewer; P − 1 slots, as [P − 1, B, C, H, W]. The fold's own values, so dx's bits are unchanged (checked)."""
    from protocol.data_rules import col2im_pieces
    from protocol.errors import EngineError

    batch, channels, height, width = (int(n) for n in dx.shape)
    group, pieces = col2im_pieces(kernel, stride)
    oh_n, ow_n = (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1
    cols = np.asarray(dcols, dtype=np.float32).reshape(batch, channels, kernel, kernel, oh_n, ow_n)
    padded = np.zeros((batch, channels, height + 2 * padding, width + 2 * padding), dtype=np.float32)
    running = np.empty((pieces - 1, batch, channels, height + 2 * padding, width + 2 * padding), dtype=np.float32)
    # the covering columns of each padded column (the same in every row): an element no column covers has no rows
    columns = np.zeros(width + 2 * padding, dtype=bool)
    for j in range(kernel):
        columns[j : j + stride * (ow_n - 1) + 1 : stride] = True
    seen = np.zeros(height + 2 * padding, dtype=np.int64)  # covering rows so far, by padded row
    for i in range(kernel):
        for j in range(kernel):
            with np.errstate(all="ignore"):  # an overflow to ±inf is the kernel's own IEEE result
                window = padded[:, :, i : i + stride * (oh_n - 1) + 1 : stride, j : j + stride * (ow_n - 1) + 1 : stride]
                window += cols[:, :, i, j]
        covered = np.zeros(height + 2 * padding, dtype=bool)
        covered[i : i + stride * (oh_n - 1) + 1 : stride] = True
        seen[covered] += 1
        for row in np.flatnonzero(covered & (seen % group == 0) & (seen // group <= pieces - 1)):
            running[seen[row] // group - 1][:, :, row, columns] = padded[:, :, row, columns]
    for slot in range(pieces - 1):  # an element of at most (slot + 1)·G rows: its final value (+0 where none covers it)
        late = seen <= (slot + 1) * group
        running[slot][:, :, late, :] = padded[:, :, late, :]
        running[slot][:, :, :, ~columns] = 0
    inner = running[:, :, :, padding : padding + height, padding : padding + width]
    if not _same_bits(padded[:, :, padding : padding + height, padding : padding + width], dx):
        raise EngineError("col2im's running values do not end at the engine's dx")
    return np.ascontiguousarray(inner)


def _pool_running_best(x: np.ndarray, kernel: int, stride: int, y: np.ndarray, where: np.ndarray) -> list[np.ndarray]:
    """max_pool's running values over a window of more than MAX_WHOLE_POOL rows, its outputs 2 and 3 (docs/referee.md,
    "Data rules built"): the window is scanned in P = ceil(k / 2) pieces of 2 rows (the last may be 1), and slot t
    of window e, at t·|y| + e, is the scan's (best, place) after rows 0 … 2t + 1 in the kernel's own order (best =
    the first value, then v if v > best, row-major: the first maximum wins, a NaN first stays); P − 1 slots, as
    binary32 and int64 [P − 1, B, C, OH, OW]. The scan's own values, so y and the places are unchanged (checked)."""
    from protocol.errors import EngineError

    x = np.asarray(x, dtype=np.float32)
    batch, channels, oh_n, ow_n = (int(n) for n in np.shape(y))
    pieces = -(-kernel // 2)
    best = np.empty((pieces - 1, batch, channels, oh_n, ow_n), dtype=np.float32)
    place = np.empty(best.shape, dtype=np.int64)
    rows_at, cols_at = np.arange(oh_n) * stride, np.arange(ow_n) * stride
    running = x[:, :, rows_at[:, None], cols_at[None, :]].copy()
    at = np.zeros(running.shape, dtype=np.int64)
    for i in range(kernel):
        for j in range(kernel):
            v = x[:, :, rows_at[:, None] + i, cols_at[None, :] + j]
            won = v > running  # (NaN on either side: False, as the kernel's `v > best`)
            running[won], at[won] = v[won], i * kernel + j
        if i % 2 == 1 and i // 2 < pieces - 1:
            best[i // 2], place[i // 2] = running, at
    if not _same_bits(running, y) or not np.array_equal(at, np.asarray(where)):
        raise EngineError("max_pool's running values do not end at the engine's y and places")
    return [best, place]


def _causal_lm_rows(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The causal-LM loss's per-row terms over every row: cross-entropy's nll[r] where the row is counted, +0
    where its target is −1. Their fold from +0 in row order is the loss's fold over the counted rows (adding +0
    leaves a sum that is never −0 as it is), so the mean is a fold over the entry's own output, divided by
    its count (docs/referee.md, "The causal-LM loss")."""
    wanted = np.asarray(target).reshape(-1)
    counted = wanted != ops.IGNORE_TARGET
    rows = np.asarray(z, dtype=np.float32).reshape(wanted.shape[0], -1)
    nll = np.zeros(wanted.shape[0], dtype=np.float32)
    if counted.any():
        nll[counted] = _cross_entropy_rows(np.ascontiguousarray(rows[counted]), np.ascontiguousarray(wanted[counted])).reshape(-1)
    return nll


class _RecordedBackend:
    """A backend module whose calls are recorded (the attention core calls the backend directly)."""

    def __init__(self, impl: Any, recorder: Recorder):
        self._impl, self._recorder = impl, recorder

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._impl, name)
        if not callable(target):
            return target

        def call(*args: Any) -> Any:
            result = target(*args)
            if ops.RECORDER is self._recorder and self._recorder.here():
                self._recorder.kernel(name, args, result)
            return result

        return call


class _RecordedArrays:
    """`ops._ArrayOps` with its arithmetic and moves recorded: `t` (swap the last two axes), `mul`
    (× a binary32 factor), `fill_above_diagonal`; `array` and `tensor` only convert."""

    def __init__(self, xs: Any, impl: Any, recorder: Recorder):
        self._xs, self._impl, self._recorder = xs, impl, recorder

    def _record(self, name: str, args: Sequence[Any], result: Any) -> Any:
        if ops.RECORDER is self._recorder and self._recorder.here():
            self._recorder.kernel(name, args, result)
        return result

    def array(self, t: Any) -> Any:
        return self._xs.array(t)

    def tensor(self, a: Any, like: Any) -> Any:
        return self._xs.tensor(a, like)

    def t(self, a: Any) -> Any:
        return self._record("transpose", [a], self._xs.t(a))

    def mul(self, a: Any, factor: float) -> Any:
        return self._record("mul_scalar", [a, np.float32(factor)], self._xs.mul(a, factor))

    def fill_above_diagonal(self, impl: Any, a: Any, value: float) -> Any:
        return self._record("fill_above_diagonal", [a, float(value)], self._xs.fill_above_diagonal(self._impl, a, value))

    def scaled_keep(self, impl: Any, a: Any, keep: Any, factor: float) -> Any:
        result = self._xs.scaled_keep(self._impl, a, keep, factor)
        return self._record("scaled_keep", [a, keep, np.float32(factor)], result)


class _TorchSide(TorchDispatchMode):
    """The portable path's few torch operations that compute or move values outside the backend:
    additions (residual connections, the positional embedding, autograd's sums of two gradient
    contributions), products (SwiGLU's, dropout's scale) and dropout's select, the embedding gather, concatenation (the q, k, v gradients), copies of views, and
    the positional gradient's placement into zeros. Views themselves compute nothing."""

    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder = recorder
        self.busy = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.busy or self.recorder.paused or ops.RECORDER is not self.recorder:
            return out
        name = str(func)
        self.busy = True
        try:
            rec = self.recorder
            if name == "aten.add.Tensor" and not kwargs and all(isinstance(a, torch.Tensor) for a in args[:2]):
                rec.kernel("add", list(args[:2]), out)
            elif name == "aten.mul.Tensor" and not kwargs and isinstance(args[1], (int, float)):
                rec.kernel("mul_scalar", [args[0], np.float32(args[1])], out)  # dropout's scale
            elif name == "aten.mul.Tensor" and not kwargs and all(isinstance(a, torch.Tensor) for a in args[:2]):
                rec.kernel("mul", list(args[:2]), out)  # SwiGLU's product (and its backward)
            elif name == "aten.where.self":
                rec.kernel("where", list(args[:3]), out)  # dropout's select (and its backward)
            elif name == "aten.clone.default":
                rec.alias(out, args[0])
            elif name == "aten.cat.default":
                rec.kernel("cat", list(args[0]), out, (int(args[1]) if len(args) > 1 else 0,))
            elif name == "aten.index.Tensor" and len(args[1]) == 1:
                rec.kernel("gather", [args[0], args[1][0]], out)
            elif name == "aten.copy_.default":  # into a prefix of a fresh zeros tensor (Positional's backward)
                base = args[0]._base if args[0]._base is not None else args[0]
                rec.kernel("place", [args[1]], base)
        finally:
            self.busy = False
        return out


def dataset_constants(spec: Any, data: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The job's dataset constants the batch entries read: `train_x` and `train_y` as the trainer
    indexes them, and `orders`, int64 [E, n]: row e is `epoch_permutation(seed, e, n)` for every epoch
    e the job's steps touch (E = ceil(steps / per_epoch)). Functions of the spec and its dataset, so a
    verifier recomputes them (and S, which binds their roots) from h_0's spec."""
    from engine.training import batches_per_epoch, epoch_permutation

    count = int(data["train_x"].shape[0])
    per_epoch = batches_per_epoch(spec, data)
    epochs = -(-int(spec.steps) // per_epoch)
    orders = np.stack([epoch_permutation(spec.seed, e, count).astype(np.int64) for e in range(epochs)])
    return _host(data["train_x"]), _host(data["train_y"]), orders


def record_step(spec: Any, store: Any, step: int, state: bytes) -> tuple[StepRecord, bytes]:
    """Replay optimizer step `step` of a portable training job from the canonical state after `step`
    steps, on CPU, recording every kernel call; returns the record and the canonical state reached."""
    from engine.training import Job
    from protocol.errors import EngineError

    if spec.arithmetic == "native":
        raise EngineError("only portable jobs have step records")
    job = Job(spec, store, "cpu", fetch_init=False)
    job.restore_step(state, step)
    job.checkpoint(None)  # builds the job's name → live tensor map
    assert job._state_tensors is not None
    recorder = Recorder(spec, dict(job._state_tensors))
    recorder.step = step
    recorder.dataset(*dataset_constants(spec, job.data))
    fetch = job._batch
    job._batch = lambda s: recorder.batch(job._cursor(s), *fetch(s))  # type: ignore[method-assign]
    with recorder.active():
        job.train(step + 1)
    rec = recorder.finish()
    for entry in rec.entries:
        if len(entry.skeleton_bytes()) > MAX_SKELETON_BYTES:
            raise EngineError(f"step record entry {entry.index} ({entry.kernel}) has a skeleton of "
                              f"{len(entry.skeleton_bytes()):,} bytes; portable/1 records at most {MAX_SKELETON_BYTES:,} "
                              "(the referee game's limit: RefereeGame.reveal_long_entry)")  # fmt: skip
    return rec, job.state_bytes()


# --------------------------------------------------------------------------------------------------
# Elements: the record's side of protocol.referee_model
# --------------------------------------------------------------------------------------------------


def referee_call(entry: Entry) -> Any:
    """The entry as the referee sees it (kernel, arguments, input and output shapes)."""
    from protocol.referee_model import Call

    return Call(entry.kernel, entry.args, tuple(r.shape for r in entry.inputs), tuple(s for _, s in entry.out_shapes))


def proven_values(rec: StepRecord, entry: Entry, output: int, element: int, piece: int | None = None) -> dict[Any, Any]:
    """What an honest worker proves for one element: the values of `dependencies`, with the
    intermediates (cross-entropy's nll rows, conv2d's column gradients, running values of long folds)
    computed by the referee model's own rules from the entry's inputs."""
    from protocol import referee_model as rm

    call = referee_call(entry)
    flat = {k: rec.input_value(entry, k).reshape(-1) for k in range(len(entry.inputs)) if entry.inputs[k].kind != HEADER}
    values: dict[Any, Any] = {}
    partials: list[Any] | None = None
    for key in rm.dependencies(call, output, element, piece):
        source, index = key
        if (call.kernel, source) in rm.INTERMEDIATES:
            values[key] = _intermediate(rm, call, source, index, flat)
        elif source in ("pool_running", "col2im_running"):  # the running values of pieces over windows: output 1
            values[key] = entry.outputs[1].reshape(-1)[index]
        elif source in ("pool_best", "pool_place"):  # max_pool's running values over a wide window: outputs 2, 3
            values[key] = entry.outputs[2 if source == "pool_best" else 3].reshape(-1)[index]
        elif source == "stats":  # a row-pieced entry's statistics: its last output (protocol.row_pieces)
            values[key] = entry.outputs[-1].reshape(-1)[index]
        elif source in ("seed", "step", "epoch", "position"):
            values[key] = rec.header[source]
        elif source == "partial" and rm.has_running_values(call, output, element):  # committed by the record
            running = entry.outputs[rm.running_values_output(call)].reshape(-1)
            values[key] = running[rm.running_value_index(call, output, element, index)]
        elif source == "partial" and call.kernel == "clip_scale" and len(entry.outputs) > 1:  # its output 1
            values[key] = int(entry.outputs[1].reshape(-1).view(np.uint64)[index])
        elif source == "partial" and call.kernel == "clip_sum":  # its output 0
            values[key] = int(entry.outputs[0].reshape(-1).view(np.uint64)[index])
        elif source == "partial":
            if partials is None:
                partials = _partials(rm, call, output, element, flat)
            values[key] = partials[index]
        else:
            values[key] = flat[source][index]
    return values


def _partials(rm: Any, call: Any, output: int, element: int, flat: dict[int, np.ndarray]) -> list[Any]:
    if call.kernel in rm.CLIP_KERNELS:
        every = {(k, i): flat[k][i] for k in flat for i in range(flat[k].size)}
        return list(rm.clip_partial_sums(call, every))
    fold = rm.FOLDS[(call.kernel, output)](call, output, element)
    needed: dict[Any, Any] = {}
    for term in fold.terms:
        for key in term:
            if (call.kernel, key[0]) in rm.INTERMEDIATES:
                needed[key] = _intermediate(rm, call, key[0], key[1], flat)
            elif key != rm.PADDING:
                needed[key] = flat[key[0]][key[1]]
    return rm.partial_sums(call, output, element, needed)


def _intermediate(rm: Any, call: Any, name: str, index: int, flat: dict[int, np.ndarray]) -> np.float32:
    """Element `index` of the named intermediate, as the worker computes it (by the referee's rule)."""
    needed = {k: flat[k[0]][k[1]] for k in rm.dependencies(call, name, index)}
    return np.array([rm.check_element(call, name, index, needed)], dtype=np.uint32).view(np.float32)[0]


def check_scalars(spec: Any, entry: Entry, step: int) -> bool:
    """A per-step scalar entry recomputed from the spec and the agreed state's step (binary64, rounded
    once: docs/arithmetic.md, section 8)."""
    from engine.portable import scalars as pscalars

    lr = spec.optimizer.lr * pscalars.lr_factor(spec.schedule, step, spec.steps)
    constants = pscalars.optimizer_scalars(spec.optimizer, lr, step + 1)
    names = ADAMW_SCALARS if entry.kernel == "adamw_scalars" else SGD_SCALARS
    return np.array([constants[n] for n in names], dtype=np.float32).tobytes() == entry.outputs[0].tobytes()
