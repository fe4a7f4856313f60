"""The arguments of the on-chain element rules (contracts/lib/element_rules.vy) for one element check of
`protocol.referee_model`: the rule code, its integer parameters (from the entry's skeleton: arguments,
shapes, the element's position) and the proven values in the order the rule reads them (the order
`dependencies` lists them; a fold in term order, conv2d's padding as +0).

`encode(call, output, e, proven, piece)` is what a party submits (and what the calling contract
derives from the agreed skeleton); `RULES` lists the kernels built on chain. NumPy only, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol import referee_model as rm
from protocol.scalar_rules import scalar_bits

RULE = {name: code for code, name in enumerate((
    "fold", "relu", "relu_backward", "gelu", "gelu_backward", "silu", "silu_backward", "gelu_tanh",
    "gelu_tanh_backward", "tanh", "tanh_backward", "add", "mul", "mul_scalar", "scale", "copy",
    "fill_above_diagonal", "where", "scaled_keep", "softmax", "softmax_backward", "cross_entropy_nll",
    "cross_entropy_backward", "layer_norm", "rms_norm", "layer_norm_backward", "rms_norm_backward", "adamw",
    "sgd", "rotary", "max_pool", "max_pool_backward", "avg_pool_backward", "embedding_backward",
    "mse_backward", "clip_piece", "clip_scale", "dropout_keep", "select", "step_scalar", "row_piece",
    "row_final"))}  # fmt: skip
assert (RULE["row_piece"], RULE["row_final"]) == (rm.RULE_ROW_PIECE, rm.RULE_ROW_FINAL)  # one numbering, two names
EPILOGUE_NONE, EPILOGUE_ADD, EPILOGUE_DIV = 0, 1, 2
ACTIVATIONS = {"relu", "relu_backward", "gelu", "gelu_backward", "silu", "silu_backward", "gelu_tanh",
               "gelu_tanh_backward", "tanh", "tanh_backward"}  # fmt: skip
COPIES = {"transpose", "move", "cat", "place", "im2col"}  # im2col: +0 (no value) outside the image
# kernel -> the epilogue of its fold (the bias input's position in args, or the mean's divisor)
FOLD_KERNELS = {"matmul", "linear", "linear_backward", "sum_rows", "cross_entropy", "mse", "conv2d",
                "conv2d_backward", "col2im", "avg_pool", "rms_norm_backward", "fold_head_groups", "layer_norm_backward"}  # fmt: skip
ROW_KERNELS = {"softmax", "softmax_backward", "cross_entropy", "cross_entropy_backward", "layer_norm", "rms_norm",
               "layer_norm_backward", "rms_norm_backward"}  # fmt: skip
SIMPLE = {"add", "mul", "mul_scalar", "scale", "fill_above_diagonal", "where", "scaled_keep", "adamw", "sgd", "rotary",
          "rotary_backward", "max_pool", "max_pool_backward", "avg_pool_backward", "embedding_backward", "mse_backward",
          "clip_scale", "clip_sum", "clip_factor", "gather", "dropout_keep", "batch_index", "adamw_scalars", "sgd_scalars"}  # fmt: skip
# every kernel with at least one output (or intermediate) built on chain
RULES = frozenset(ACTIVATIONS | COPIES | FOLD_KERNELS | ROW_KERNELS | SIMPLE)


class NotOnChain(rm.ElementError):
    """The element's kernel (or this output of it) has no on-chain rule yet."""


@dataclass(frozen=True)
class OnChainElement:
    """The three arguments of `element_rules._element`."""

    rule: int
    params: tuple[int, ...]
    values: tuple[int, ...]


def f32_bits(value: Any) -> int:
    """A binary32 operand (np.float32, or a Python float rounded to nearest) as its bit pattern."""
    return int(np.array([np.float32(value)]).view(np.uint32)[0])


def _word(value: Any) -> int:
    """A proven value as the rule reads it: a binary32's pattern, an integer (id, mask bit) as itself."""
    if isinstance(value, np.float32):
        return f32_bits(value)
    if isinstance(value, np.float64):  # a binary64 input (a clip_sum's start)
        return int(np.array([value], dtype=np.float64).view(np.uint64)[0])
    return int(value)


def _fold(call: rm.Call, output: Any, e: int, proven: Mapping[rm.Key, Any], piece: int | None) -> OnChainElement:
    recorded = rm.recorded_fold(call, output, e)
    if recorded is not None:  # FoldRules' pieces: the running values are an output of the entry
        fold, piece = recorded
    else:
        fold = rm.FOLDS[(call.kernel, output)](call, output, e)
    pieces = fold.pieces()
    arity = 3 if fold.terms and fold.terms[0][0] == "sqdiff" else max((len(t) for t in fold.terms), default=1)
    epilogue, divisor, tail = _epilogue(call, output, e) if recorded is None or piece is None else (EPILOGUE_NONE, 0, ())
    if recorded is not None and pieces > 1 and piece is None:  # the final value: the last piece, the epilogue
        from_partial, terms, piece = 1, fold.piece_terms(pieces - 1), pieces - 1
    elif pieces > 1 and piece is None:  # the final value from the last running value
        from_partial, terms = 1, ()
    elif pieces > 1:  # a running value: no epilogue
        assert piece is not None
        from_partial, terms = int(piece > 0), fold.piece_terms(piece)
        epilogue, divisor, tail = EPILOGUE_NONE, 0, ()
    else:
        from_partial, terms = 0, fold.terms
    values: list[int] = [_word(proven[("partial", (piece if piece is not None else pieces) - 1)])] if from_partial else []
    for term in terms:
        keys = term[1:] if term[0] == "sqdiff" else term
        values += [0 if key == rm.PADDING else _word(proven[key]) for key in keys]
    values += [_word(proven[key]) for key in tail]
    return OnChainElement(RULE["fold"], (arity, from_partial, epilogue, divisor), tuple(values))


def _epilogue(call: rm.Call, output: Any, e: int) -> tuple[int, int, tuple[rm.Key, ...]]:
    """(epilogue, divisor, the added value's key) of a fold's final value."""
    kernel = call.kernel
    if kernel in ("linear", "conv2d") and call.arg_input(2) is not None:
        bias = call.arg_input(2)
        n = e % int(call.in_shapes[1][0]) if kernel == "linear" else rm._unravel(e, call.out_shapes[0])[1]
        return EPILOGUE_ADD, 0, ((bias, n),)
    if kernel == "cross_entropy" and output == 0:
        return EPILOGUE_DIV, int(call.in_shapes[0][0]), ()
    if kernel == "mse":
        return EPILOGUE_DIV, rm._size(call.in_shapes[0]), ()
    if kernel == "avg_pool":
        return EPILOGUE_DIV, int(call.args[1]) ** 2, ()
    return EPILOGUE_NONE, 0, ()


def encode(call: rm.Call, output: Any, e: int, proven: Mapping[rm.Key, Any], piece: int | None = None,
           hints: Sequence[int] = ()) -> OnChainElement:  # fmt: skip
    """The on-chain rule, parameters and values of `check_element(call, output, e, proven, piece)`; with
    `hints` (a row-pieced nll element's target) the row rule's, which reads the hinted logit."""
    kernel = call.kernel
    if kernel not in RULES:
        raise NotOnChain(f"no on-chain rule for kernel {kernel!r}")
    row_keys = rm.row_piece_keys(call, output, e, piece, hints)
    if row_keys is not None:  # a row in pieces: the values in the rule's order (protocol.row_pieces)
        rule, params = rm.row_piece_rule(call, output, e, hints)
        return OnChainElement(rule, params, tuple(_word(proven[key]) for key in row_keys))
    if kernel == "col2im" and len(call.out_shapes) == 2:  # in pieces: a fold from the running value before it
        before, keys = rm.col2im_piece(call, output, e)
        start = [] if before is None else [_word(proven[("col2im_running", before)])]
        return OnChainElement(RULE["fold"], (1, len(start), EPILOGUE_NONE, 0), tuple(start + [_word(proven[key]) for key in keys]))
    if (kernel, output) in rm.FOLDS or rm.recorded_fold(call, output, e) is not None:
        return _fold(call, output, e, proven, piece)
    deps = rm.dependencies(call, output, e, piece)
    values = tuple(_word(proven[key]) for key in deps)
    if kernel in ACTIVATIONS:
        return OnChainElement(RULE[kernel], (), values)
    if kernel in COPIES:
        return OnChainElement(RULE["copy"], (), values)
    if kernel == "gather":  # the id selects the one value read (a bounded read: the row's element); the id is the
        width = rm._gather_width(call)  # hint, checked against its proven value
        p, d = divmod(e, width)
        chosen = int(proven[(1, p)])
        return OnChainElement(RULE["select"], (chosen,), (chosen, _word(proven[(0, chosen * width + d)])))
    if kernel == "batch_index":  # the header's cursor (the hints) selects the one orders element read
        epoch, position = int(proven[("epoch", 0)]), int(proven[("position", 0)])
        selected = (1, epoch * int(call.in_shapes[1][1]) + position + e)
        return OnChainElement(RULE["select"], (epoch, position), (epoch, position, _word(proven[selected])))
    if kernel in ("add", "mul"):
        return OnChainElement(RULE[kernel], (), values if len(values) == 2 else values * 2)
    if kernel == "mul_scalar":
        return OnChainElement(RULE[kernel], (f32_bits(call.args[1]),), values)
    if kernel == "scaled_keep":
        return OnChainElement(RULE[kernel], (f32_bits(call.args[2]),), values)
    if kernel in ("scale", "where"):
        return OnChainElement(RULE[kernel], (), values)
    if kernel == "fill_above_diagonal":
        index = rm._unravel(e, call.out_shapes[0])
        return OnChainElement(RULE[kernel], (index[-2], index[-1], f32_bits(call.args[1])), values)
    width = int(call.in_shapes[0][-1]) if call.in_shapes and call.in_shapes[0] else 1
    if kernel in ("softmax", "softmax_backward"):
        return OnChainElement(RULE[kernel], (e % width,), values)
    if kernel == "cross_entropy":  # the intermediate nll[r]
        return OnChainElement(RULE["cross_entropy_nll"], (), values)
    if kernel == "cross_entropy_backward":
        return OnChainElement(RULE[kernel], (e % width, int(call.in_shapes[0][0]), f32_bits(call.args[2])), values)
    if kernel in ("layer_norm", "rms_norm"):
        j = e % width if output < 2 else 0
        eps = call.args[3] if kernel == "layer_norm" else call.args[2]
        return OnChainElement(RULE[kernel], (int(output), j, f32_bits(eps)), values)
    if kernel in ("layer_norm_backward", "rms_norm_backward"):  # output 0 (the others are folds)
        return OnChainElement(RULE[kernel], (e % width,), values)
    if kernel == "adamw":
        return OnChainElement(RULE[kernel], (int(output),), values)
    if kernel == "sgd":
        return OnChainElement(RULE[kernel], (int(output), int(len(call.in_shapes) == 4), int(bool(call.args[-1]))), values)
    if kernel in ("rotary", "rotary_backward"):
        steps_width = int(call.in_shapes[1][1])
        first_half = e % steps_width < steps_width // 2
        return OnChainElement(RULE["rotary"], (int(first_half), int(kernel == "rotary_backward")), values)
    if kernel == "max_pool":  # [output]; a piece of a wide window [output % 2] or [output % 2, 2t·k − 2] (its rows' base)
        before, _, first, rows = rm.max_pool_piece(call, output, e)
        if rows == int(call.args[1]):  # the whole window
            return OnChainElement(RULE[kernel], (int(output),), values)
        return OnChainElement(RULE[kernel], (int(output) % 2,) + (() if before is None else (first * int(call.args[1]) - 2,)), values)
    if kernel == "max_pool_backward" and len(call.out_shapes) == 2:  # overlapping windows, one a piece
        window = rm.pool_overlap_piece(call, output, e)[1]
        if window is None and output == 1:  # a slot past the element's windows: the one before it (or +0)
            return OnChainElement(RULE["copy"], (), values)
        return OnChainElement(RULE[kernel], () if window is None else (window[1],), values)
    if kernel in ("max_pool_backward", "avg_pool_backward"):
        shape = call.args[0]
        b, c, h, w = rm._unravel(e, shape)
        windows = rm._pool_windows(call, shape, h, w)
        if kernel == "max_pool_backward":
            return OnChainElement(RULE[kernel], tuple(q for _, _, q in windows), values)
        return OnChainElement(RULE[kernel], (int(call.args[-2]) ** 2,), values)
    if kernel == "embedding_backward":  # (v) from +0, (v, 1) a piece from the running value before it (values[0])
        piece, folded, _, _ = rm.embedding_piece(call, output, e)
        return OnChainElement(RULE[kernel], (folded // int(call.in_shapes[1][-1]),) + ((1,) if piece else ()), values)
    if kernel == "mse_backward":
        return OnChainElement(RULE[kernel], (rm._size(call.in_shapes[0]), f32_bits(call.args[2])), values)
    if kernel in rm.CLIP_KERNELS:
        if output == (0 if kernel == "clip_sum" else 1) and kernel != "clip_factor":  # partials: element e is piece e's
            piece = e
        if piece is not None:
            return OnChainElement(RULE["clip_piece"], (int(piece > 0 or rm._clip_started(call)),), values)
        max_norm = float(call.args[-1])
        return OnChainElement(RULE["clip_scale"], (int(np.array([max_norm]).view(np.uint64)[0]),), values)
    if kernel == "dropout_keep":  # args (..., p, number); the values are the header's seed and step
        p_bits = int(np.array([float(call.args[-2])]).view(np.uint64)[0])
        return OnChainElement(RULE[kernel], (p_bits, int(call.args[-1]), e), values)
    if kernel in ("adamw_scalars", "sgd_scalars"):  # the values are the header's seed and step
        step = int(values[1])
        return OnChainElement(RULE["step_scalar"], (scalar_bits(kernel, call.args, step, e), step), values)
    raise NotOnChain(f"no on-chain rule for kernel {kernel!r} output {output!r}")
