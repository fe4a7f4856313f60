"""RowPieceRules.vy (contracts/lib/row_piece_rules.vy), the sixth of RefereeGame's rules contracts: rows wider than
their caps (and a norm backward's rows across a 256-element boundary) decided in pieces (docs/referee.md, "Rows in
pieces"). On hand-built skeletons of each of the six kernels over small wide rows: `output_of` says checkable exactly
for the final outputs and the statistics, and `plan` (rule, parameters, reads) is what this file writes down from the
spec; on real values (engine/portable/reference.py's kernels, the statistics chained piece by piece with the element
rule's oracle of test_row_piece_elements.py) each planned element, read as its plan says and ruled by ElementReferee's
rules, is the reference's bit for bit. Entries whose rows are not in pieces, and wrong dtypes, shapes, argument and
output counts, are not checkable here and never make a rules contract revert; FoldRules still decides a row-pieced
backward's dw and db (the statistics, last, left out), as its Python mirror does."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from engine.portable import record
from engine.portable import reference as ref
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import parse_skeleton

from .test_referee_game import _deploy
from .test_row_piece_elements import b, piece_oracle
from .vyper_harness import deploy_element_referee

SELF_READ, REF_SELF, STATE = 1_000, 7, 1
RULE_ROW_PIECE, RULE_ROW_FINAL = 40, 41
MAX, EXP_SUM, SUM, SQ_DEV, SQUARE, DOT, DOT3 = range(7)
KERNELS = ("softmax", "softmax_backward", "layer_norm", "rms_norm", "layer_norm_backward", "rms_norm_backward")
LENGTH = {"softmax": 16, "softmax_backward": 64, "layer_norm": 64, "rms_norm": 128, "layer_norm_backward": 32,
          "rms_norm_backward": 32}  # fmt: skip
STATS = {"softmax": 2, "softmax_backward": 1, "layer_norm": 2, "rms_norm": 1, "layer_norm_backward": 2, "rms_norm_backward": 1}
OWN = {"softmax": 1, "softmax_backward": 1, "layer_norm": 3, "rms_norm": 3, "layer_norm_backward": 3, "rms_norm_backward": 2}
# each statistic's mode and blocks (inputs; "w" the backwards' w, columns of the piece)
MODES = {"softmax": ((MAX, (0,)), (EXP_SUM, (0,))), "softmax_backward": ((DOT, (0, 1)),),
         "layer_norm": ((SUM, (0,)), (SQ_DEV, (0,))), "rms_norm": ((SQUARE, (0,)),),
         "layer_norm_backward": ((DOT, (3, "w")), (DOT3, (3, "w", 0))), "rms_norm_backward": ((DOT3, (3, "w", 0)),)}  # fmt: skip
EPS64, EPS32 = 1e-5, np.float32(1e-6)
# the wide cases: (kernel, x's shape, eps); each has a row piece across a 256-element boundary (two runs)
CASES = [("softmax", (8, 35), None), ("softmax_backward", (2, 131), None), ("layer_norm", (3, 115), EPS64),
         ("rms_norm", (2, 237), EPS32), ("layer_norm_backward", (4, 68), None),
         ("rms_norm_backward", (7, 40), None)]  # the last: 40 wide, under its cap, rows across 256  # fmt: skip


@pytest.fixture(scope="module")
def rules(w3: Any) -> dict[str, Any]:
    """The four rules contracts that could be asked of a row kernel, and the element rules."""
    made = {name: _deploy(w3, f"contracts/{name}.vy").functions for name in ("HostRules", "FoldRules", "RowRules", "RowPieceRules")}
    made["element"] = deploy_element_referee(w3).functions
    return made


def _in_shapes(kernel: str, x: tuple[int, ...]) -> list[tuple[int, ...]]:
    d, rows = x[-1], int(np.prod(x)) // x[-1]
    return {"softmax": [x], "softmax_backward": [x, x], "layer_norm": [x, (d,), (d,)], "rms_norm": [x, (d,)],
            "layer_norm_backward": [x, (rows,), (d,), x], "rms_norm_backward": [x, (rows,), (d,), x]}[kernel]  # fmt: skip


def _pieces(kernel: str, x: tuple[int, ...]) -> int:
    return -(-x[-1] // LENGTH[kernel])


def _entry(kernel: str, x: tuple[int, ...], eps: Any = None, running: int = 0) -> record.Entry:
    """A skeleton of `kernel` over x: its inputs state tensors named in order, its own outputs, `running` FoldRules
    running values (a backward's), then the statistics."""
    d, rows = x[-1], int(np.prod(x)) // x[-1]
    shapes = _in_shapes(kernel, x)
    args: tuple[Any, ...] = tuple(("input", k) for k in range(len(shapes)))
    if kernel in ("layer_norm", "rms_norm"):
        args += (EPS64 if eps is None else eps,)
    outs = {"softmax": [x], "softmax_backward": [x], "layer_norm": [x, x, (rows,)], "rms_norm": [x, x, (rows,)],
            "layer_norm_backward": [x, (d,), (d,)], "rms_norm_backward": [x, (d,)]}[kernel]  # fmt: skip
    outs += [(running,)] * bool(running) + [(STATS[kernel] * rows * _pieces(kernel, x),)]
    refs = tuple(record.Ref(STATE, k, 0, 1, s) for k, s in enumerate(shapes))
    return record.Entry(9, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))


def _row_runs(k: int, first: int, count: int) -> list[tuple[int, int, int]]:
    boundary = (first // 256 + 1) * 256
    return [(k, first, count)] if first + count <= boundary else [(k, first, boundary - first), (k, boundary, first + count - boundary)]


def expected_plan(kernel: str, x: tuple[int, ...], outputs: int, output: int, element: int) -> tuple[int, list[int], list[tuple[int, int, int]]]:
    """(rule, params, reads (k, first, count)) of one element, written from the spec."""
    d, rows, pieces, length = x[-1], int(np.prod(x)) // x[-1], _pieces(kernel, x), LENGTH[kernel]
    stats_out = outputs - 1

    def final(s: int, r: int) -> tuple[int, int, int]:
        return SELF_READ + stats_out, (s * rows + r) * pieces + pieces - 1, 1

    if output == stats_out:
        s, rest = divmod(element, rows * pieces)
        r, c = divmod(rest, pieces)
        n = min(length, d - c * length)
        mode, blocks = MODES[kernel][s]
        reads = [final(0, r)] if mode in (EXP_SUM, SQ_DEV) else []
        reads += [(SELF_READ + stats_out, element - 1, 1)] if c > 0 else []
        for k in blocks:
            reads += [(2, c * length, n)] if k == "w" else _row_runs(k, r * d + c * length, n)
        return RULE_ROW_PIECE, [mode, int(c > 0), d], reads
    mode = KERNELS.index(kernel)
    eps = 0
    if kernel in ("layer_norm", "rms_norm"):
        word = EPS64 if kernel == "layer_norm" else EPS32
        eps = b(np.float32(word))
    if output == 2 and kernel in ("layer_norm", "rms_norm"):
        return RULE_ROW_FINAL, [mode, 2, d, eps], [final(STATS[kernel] - 1, element)]
    r, j = divmod(element, d)
    finals = [final(s, r) for s in range(STATS[kernel])]
    if kernel in ("layer_norm_backward", "rms_norm_backward"):
        reads = [(0, element, 1), (1, r, 1), (2, j, 1), (3, element, 1), *finals]
    elif kernel == "softmax_backward":
        reads = [(0, element, 1), (1, element, 1), *finals]
    else:
        reads = [(0, element, 1), *finals]
        if output == 0 and kernel == "layer_norm":
            reads += [(1, j, 1), (2, j, 1)]
        elif output == 0 and kernel == "rms_norm":
            reads += [(1, j, 1)]
    return RULE_ROW_FINAL, [mode, output, d, eps], reads


def _planned(rules: dict[str, Any], entry: record.Entry, output: int, element: int) -> tuple[int, list[int], list[tuple[int, int, int]]]:
    rule, params, reads, zipped = rules["RowPieceRules"].plan(entry.skeleton_bytes(), output, element, []).call()
    assert not zipped and all(r[9] == 1 for r in reads)
    for k, kind, _, b_, dtype, ndim, dims, _, _, _ in reads:
        if k >= SELF_READ:  # the entry's own statistics: REF_SELF, output k - SELF_READ, binary32, flat
            assert (kind, b_, dtype, tuple(dims[:ndim])) == (REF_SELF, k - SELF_READ, 1, entry.out_shapes[k - SELF_READ][1])
        else:
            assert (kind, dtype, tuple(dims[:ndim])) == (STATE, 1, entry.inputs[k].shape)
    return rule, list(params), [(r[0], r[7], r[8]) for r in reads]


def _elements(size: int, d: int) -> list[int]:
    """First, second, middle, last, and the row starts and ends around them."""
    return sorted({0, 1, size // 2, size - 1, d - 1, d, min(size - 1, 2 * d)} & set(range(size)))


def _values(kernel: str, x: tuple[int, ...], eps: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inputs and the reference's outputs (binary32) of one case, on values drawn from a fixed seed."""
    rng = np.random.default_rng(sum(x) + KERNELS.index(kernel))
    shapes = _in_shapes(kernel, x)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if kernel == "softmax_backward":
        inputs[0] = ref.softmax(inputs[0])
    if kernel.endswith("_backward") and kernel != "softmax_backward":
        inputs[1] = np.abs(inputs[1]) + np.float32(0.5)  # rstd
    extra = (float(eps),) if kernel in ("layer_norm", "rms_norm") else ()
    outs = getattr(ref, kernel)(*inputs, *extra)
    return inputs, [np.asarray(o, dtype=np.float32) for o in (outs if isinstance(outs, tuple) else (outs,))]


def _statistics(kernel: str, x: tuple[int, ...], inputs: list[np.ndarray]) -> list[int]:
    """The statistics output, statistic s of row r after piece c at (s·R + r)·P + c, chained piece by piece with
    the element rule's oracle (its own final statistics read where the mode reads one)."""
    d, rows, pieces, length = x[-1], int(np.prod(x)) // x[-1], _pieces(kernel, x), LENGTH[kernel]
    flat = [np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32) for a in inputs]
    out = [0] * (STATS[kernel] * rows * pieces)
    for s, (mode, blocks) in enumerate(MODES[kernel]):
        for r in range(rows):
            for c in range(pieces):
                n = min(length, d - c * length)
                segments = [[int(v) for v in (flat[2][c * length : c * length + n] if k == "w"
                                              else flat[k][r * d + c * length : r * d + c * length + n])] for k in blocks]  # fmt: skip
                stat = out[r * pieces + pieces - 1] if mode in (EXP_SUM, SQ_DEV) else None
                partial = out[(s * rows + r) * pieces + c - 1] if c else None
                out[(s * rows + r) * pieces + c] = piece_oracle(mode, partial, d, stat, segments)
    return out


def _bits(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


@pytest.mark.parametrize(("kernel", "x", "eps"), CASES, ids=[c[0] for c in CASES])
def test_a_wide_row_is_planned_as_the_spec_says_and_ruled_as_the_reference(rules, kernel: str, x: tuple[int, ...], eps: Any) -> None:
    """Every statistic and the first, middle, last and row-edge elements of each final output: `output_of` says
    checkable (HostRules and RowRules not, never reverting), the plan is the spec's, and the element rule over the
    values the plan reads (the inputs, the statistics chained piece by piece) gives the reference's bits; the
    statistics after the last piece are the reference's whole-row folds (its maximum, Σ, Σ of squares …)."""
    entry = _entry(kernel, x, eps)
    skeleton, count = entry.skeleton_bytes(), len(entry.out_shapes)
    inputs, outs = _values(kernel, x, eps)
    stats = _statistics(kernel, x, inputs)
    sources = [_bits(a) for a in inputs]
    finals = {"softmax": [0], "softmax_backward": [0], "layer_norm": [0, 1, 2], "rms_norm": [0, 1, 2],
              "layer_norm_backward": [0], "rms_norm_backward": [0]}[kernel]  # fmt: skip
    for output in range(count):
        checkable = rules["RowPieceRules"].output_of(skeleton, output).call()
        assert tuple(checkable[:1]) + (tuple(checkable[3]),) == (count, entry.out_shapes[output][1])
        assert checkable[1] == (output in finals or output == count - 1), (kernel, output)
        for other in ("HostRules", "RowRules"):
            assert not rules[other].output_of(skeleton, output).call()[1]
        if not checkable[1]:
            continue
        size = int(np.prod(entry.out_shapes[output][1]))
        wanted = stats if output == count - 1 else _bits(outs[output])
        for element in (range(size) if output == count - 1 else _elements(size, x[-1])):
            planned = _planned(rules, entry, output, element)
            assert planned == expected_plan(kernel, x, count, output, element), (kernel, output, element)
            rule, params, reads = planned
            values = [v for k, first, n in reads for v in (stats if k >= SELF_READ else sources[k])[first : first + n]]
            got = int(rules["element"].element(rule, params, values).call())
            assert got == wanted[element], (kernel, output, element)
    # the chained statistics end at the reference's whole-row statistics
    d = x[-1]
    z = inputs[0].reshape(-1, d)
    last = [stats[(s * z.shape[0] + r) * _pieces(kernel, x) + _pieces(kernel, x) - 1] for s in range(STATS[kernel]) for r in range(z.shape[0])]
    fold = ref._fold_last
    if kernel == "softmax":
        m = ref._max_last(z)
        whole = [m, fold(ref.exp(z - m[:, None]))]
    elif kernel == "softmax_backward":
        whole = [fold(z * inputs[1].reshape(-1, d))]
    elif kernel == "layer_norm":
        c = z - (fold(z) / np.float32(d))[:, None]
        whole = [fold(z), fold(c * c)]
    elif kernel == "rms_norm":
        whole = [fold(z * z)]
    else:
        g = inputs[3].reshape(-1, d) * inputs[2]
        whole = [fold(g), fold(g * z)] if kernel == "layer_norm_backward" else [fold(g * z)]
    assert last == [v for w in whole for v in _bits(w)]


def _malformed(kernel: str, x: tuple[int, ...]) -> list[tuple[str, record.Entry]]:
    """Skeletons these rules must not check (each a change of a good one)."""
    good = _entry(kernel, x)
    outs, refs = list(good.out_shapes), list(good.inputs)

    def with_outs(new: list[tuple[int, tuple[int, ...]]]) -> record.Entry:
        return dataclasses.replace(good, out_shapes=tuple(new), out_roots=(tc.ZERO,) * len(new))

    def with_ref(k: int, **change: Any) -> record.Entry:
        return dataclasses.replace(good, inputs=tuple(dataclasses.replace(r, **change) if i == k else r for i, r in enumerate(refs)))

    stats = outs[-1][1][0]
    cases = [("no statistics", with_outs(outs[:-1])), ("statistics one short", with_outs([*outs[:-1], (1, (stats - 1,))])),
             ("statistics int64", with_outs([*outs[:-1], (2, (stats,))])), ("statistics 2-d", with_outs([*outs[:-1], (1, (1, stats))])),
             ("an output more", with_outs([*outs, (1, (1,))])), ("x int64", with_ref(0, dtype=2)), ("x from the batch", with_ref(0, kind=2)),
             ("a constant x", with_ref(0, kind=5)), ("an argument more", dataclasses.replace(good, args=(*good.args, 3))),
             ("an argument less", dataclasses.replace(good, args=good.args[:-1])),
             ("y of another shape", with_outs([(1, (x[-1], x[0])), *outs[1:]]))]  # fmt: skip
    if kernel != "softmax":
        cases.append(("an operand of another shape", with_ref(1, shape=(1,))))
    if kernel in ("layer_norm", "rms_norm"):
        cases.append(("eps an integer", dataclasses.replace(good, args=(*good.args[:-1], 1))))
        cases.append(("rstd one short", with_outs([*outs[:2], (1, (outs[2][1][0] - 1,)), outs[3]])))
    return cases


def test_other_entries_are_not_checkable_and_never_revert(rules) -> None:
    """Rows within the caps (softmax 34, a layer_norm_backward 32 wide, an rms_norm_backward of 80 elements) with
    or without statistics, every malformed variant of each wide case, and an output past the last: not checkable
    by RowPieceRules (its plan reverts), and no rules contract reverts on them."""
    narrow = [_entry("softmax", (3, 34)), _entry("layer_norm_backward", (5, 32)), _entry("rms_norm_backward", (2, 40))]
    narrow += [dataclasses.replace(e, out_shapes=e.out_shapes[:-1], out_roots=e.out_roots[:-1]) for e in narrow]
    entries = [("narrow", e) for e in narrow] + [c for kernel, x, _ in CASES for c in _malformed(kernel, x)]
    for why, entry in entries:
        skeleton = entry.skeleton_bytes()
        for output in range(len(entry.out_shapes) + 1):
            for name in ("HostRules", "FoldRules", "RowRules", "RowPieceRules"):
                rules[name].output_of(skeleton, output).call()  # never a revert
            assert not rules["RowPieceRules"].output_of(skeleton, output).call()[1], (why, entry.kernel, output)
        with pytest.raises(Exception, match="row_piece_rules: not a checkable element"):
            rules["RowPieceRules"].plan(skeleton, 0, 0, []).call()
    wide = _entry("softmax", (8, 35))
    assert rules["RowPieceRules"].output_of(wide.skeleton_bytes(), 2).call() == [2, False, 0, []]
    with pytest.raises(Exception, match="row_piece_rules: not a checkable element"):
        rules["RowPieceRules"].plan(wide.skeleton_bytes(), 1, 2 * 8 * 3, []).call()  # past the last statistic
    backward = _entry("layer_norm_backward", (4, 68))
    for output in (1, 2):  # dw, db: FoldRules'
        assert not rules["RowPieceRules"].output_of(backward.skeleton_bytes(), output).call()[1]


@pytest.mark.parametrize(("kernel", "x"), [("layer_norm_backward", (4, 68)), ("rms_norm_backward", (7, 40)),
                                           ("layer_norm_backward", (300, 68)), ("rms_norm_backward", (300, 100))])  # fmt: skip
def test_fold_rules_still_decide_a_row_pieced_backward_s_columns(rules, kernel: str, x: tuple[int, ...]) -> None:
    """A row-pieced norm backward, with FoldRules' running values (over 256 rows) or without: FoldRules checks dw and
    db (and the running values) exactly as its mirror does, never the statistics or dx; RowPieceRules checks dx and
    the statistics, whose plans are the spec's (first, a middle and the last element)."""
    plain = _entry(kernel, x)
    parsed = parse_skeleton(dataclasses.replace(plain, out_shapes=plain.out_shapes[:-1], out_roots=plain.out_roots[:-1]).skeleton_bytes())
    pieced = fold_rules.piecings(parsed)
    running = pieced[-1].offset + (pieced[-1].pieces - 1) * pieced[-1].size if pieced else 0
    assert bool(running) == (x[0] > 256)
    entry = _entry(kernel, x, running=running)
    skeleton, count = entry.skeleton_bytes(), len(entry.out_shapes)
    folded = {1, 2} if kernel == "layer_norm_backward" else {1}
    for output in range(count):
        by_folds = rules["FoldRules"].output_of(skeleton, output).call()[1]
        assert by_folds == fold_rules.fold_checkable(parse_skeleton(skeleton), output)
        assert by_folds == (output in folded or (bool(running) and output == count - 2)), output
        assert rules["RowPieceRules"].output_of(skeleton, output).call()[1] == (output in (0, count - 1))
    for output in (0, count - 1):
        size = int(np.prod(entry.out_shapes[output][1]))
        for element in sorted({0, size // 2, size - 1}):
            assert _planned(rules, entry, output, element) == expected_plan(kernel, x, count, output, element)
