"""The element rules of rows in pieces on chain (contracts/lib/element_rules.vy RULE_ROW_PIECE and RULE_ROW_FINAL,
through contracts/ElementReferee.vy) equal a test-local oracle of the formulas of docs/referee.md "Rows in
pieces", written here from protocol/referee_model.py's binary32 primitives (add, sub, mul, div, sqrt, exp; the first
maximum with NaN never less), on hypothesis-drawn operands of every edge class: ±0, denormals, ±inf, NaNs, and a
small set of values for ties and cancellations. (The production model is protocol/referee_model.py's; the two are
cross-checked when both are in.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import referee_model as rm
from tests.unit.contracts.vyper_harness import deploy_element_referee
from tests.unit.engine.helpers import examples

RULE_ROW_PIECE, RULE_ROW_FINAL = 40, 41
MAX, EXP_SUM, SUM, SQ_DEV, SQUARE, DOT, DOT3 = range(7)  # the ROW_PIECE modes
SOFTMAX, SOFTMAX_BACKWARD, LAYER_NORM, RMS_NORM, LAYER_NORM_BACKWARD, RMS_NORM_BACKWARD, NLL, CE_BACKWARD = range(8)  # ROW_FINAL
STAT_READ = {EXP_SUM, SQ_DEV}  # the modes that read a final statistic
BLOCKS = {DOT: 2, DOT3: 3}  # the modes of more than one block
EDGES = (0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00400000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
         0x7F800001, 0x7F7FFFFF, 0x00800000, 0x3F800000, 0xBF800000)  # ±0, denormals, ±inf, NaNs, the extremes  # fmt: skip
SMALL = tuple(int(np.array([v], dtype=np.float32).view(np.uint32)[0]) for v in (-2.0, -0.5, 0.0, 0.25, 1.0, 3.0))


@pytest.fixture(scope="module")
def harness(w3):
    return deploy_element_referee(w3)


def f(bits: int) -> np.float32:
    return rm._bits(bits)


def b(x: np.float32) -> int:
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


def lt(a: np.float32, c: np.float32) -> bool:
    """float32._lt: ordered and less (a NaN is never less, nor is anything less than one; -0 is not less than +0)."""
    return bool(a < c)


def from_int(n: int) -> np.float32:
    return np.float32(n)  # round to nearest even, as float32._from_int


def piece_oracle(mode: int, partial: int | None, width: int, stat: int | None, blocks: list[list[int]]) -> int:
    """RULE_ROW_PIECE: the running statistic after one piece (docs/referee.md "Rows in pieces")."""
    terms = [[f(v) for v in block] for block in blocks]
    if mode == MAX:
        m = f(partial) if partial is not None else terms[0][0]
        for t in terms[0][0 if partial is not None else 1:]:
            if lt(m, t):
                m = t
        return b(m)
    s = f(partial) if partial is not None else rm.ZERO
    mean = rm.div(f(stat), from_int(width)) if mode == SQ_DEV else None
    for i in range(len(terms[0])):
        t = terms[0][i]
        if mode == EXP_SUM:
            s = rm.add(s, rm.exp(rm.sub(t, f(stat))))
        elif mode == SUM:
            s = rm.add(s, t)
        elif mode == SQ_DEV:
            c = rm.sub(t, mean)
            s = rm.add(s, rm.mul(c, c))
        elif mode == SQUARE:
            s = rm.add(s, rm.mul(t, t))
        elif mode == DOT:
            s = rm.add(s, rm.mul(t, terms[1][i]))
        else:
            s = rm.add(s, rm.mul(rm.mul(t, terms[1][i]), terms[2][i]))
    return b(s)


def final_oracle(mode: int, output: int, width: int, eps: int, values: list[int]) -> int:
    """RULE_ROW_FINAL: an output element from its row's final statistics."""
    v = [f(x) for x in values]
    d = from_int(width)
    if mode == SOFTMAX:
        z, m, s = v
        return b(rm.div(rm.exp(rm.sub(z, m)), s))
    if mode == SOFTMAX_BACKWARD:
        y, dy, dd = v
        return b(rm.mul(y, rm.sub(dy, dd)))
    if mode in (LAYER_NORM_BACKWARD, RMS_NORM_BACKWARD):
        xhat, rho, w, dy = v[:4]
        g = rm.mul(dy, w)
        if mode == LAYER_NORM_BACKWARD:
            g = rm.sub(g, rm.div(v[4], d))
        return b(rm.mul(rm.sub(g, rm.mul(xhat, rm.div(v[-1], d))), rho))
    layer = mode == LAYER_NORM
    if output == 2:
        var = v[0]
    else:
        var = v[2] if layer else v[1]
    rho = rm.div(rm.ONE, rm.sqrt(rm.add(rm.div(var, d), f(eps))))
    if output == 2:
        return b(rho)
    c = rm.sub(v[0], rm.div(v[1], d)) if layer else v[0]
    xhat = rm.mul(c, rho)
    if output == 1:
        return b(xhat)
    at = 2 if layer else 1
    y = rm.mul(xhat, v[at + 1])
    return b(rm.add(y, v[at + 2]) if layer else y)


FINAL_COUNTS = {(SOFTMAX, 0): 3, (SOFTMAX_BACKWARD, 0): 3, (LAYER_NORM, 0): 5, (LAYER_NORM, 1): 3, (LAYER_NORM, 2): 1,
                (RMS_NORM, 0): 3, (RMS_NORM, 1): 2, (RMS_NORM, 2): 1, (LAYER_NORM_BACKWARD, 0): 6,
                (RMS_NORM_BACKWARD, 0): 5}  # fmt: skip


def same(got: int, want: int) -> bool:
    """Equal bits, or both NaN (the game compares a NaN as a class, float32._same)."""
    return got == want or (got & 0x7FFFFFFF > 0x7F800000 and want & 0x7FFFFFFF > 0x7F800000)


def operand(kind: str) -> st.SearchStrategy[int]:
    """Any bits, the edge classes, or small values (ties for the maximum, cancellations in the sums)."""
    if kind == "raw":
        return st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(EDGES))
    return st.sampled_from(SMALL + (0x80000000,))


def _element(harness, rule: int, params: list[int], values: list[int]) -> int:
    return int(harness.functions.element(rule, params, values).call())


@settings(max_examples=examples(60), database=None, deadline=None)
@given(data=st.data(), mode=st.integers(0, 6), from_partial=st.booleans(), n=st.integers(1, 9),
       width=st.integers(1, 5_000), kind=st.sampled_from(["raw", "small"]))  # fmt: skip
def test_a_row_piece_equals_the_oracle(harness, data, mode: int, from_partial: bool, n: int, width: int, kind: str) -> None:
    values = operand(kind)
    stat = data.draw(values) if mode in STAT_READ else None
    partial = data.draw(values) if from_partial else None
    blocks = [data.draw(st.lists(values, min_size=n, max_size=n)) for _ in range(BLOCKS.get(mode, 1))]
    laid = ([stat] if stat is not None else []) + ([partial] if partial is not None else []) + sum(blocks, [])
    got = _element(harness, RULE_ROW_PIECE, [mode, int(from_partial), width], laid)
    assert same(got, piece_oracle(mode, partial, width, stat, blocks))


@settings(max_examples=examples(60), database=None, deadline=None)
@given(data=st.data(), case=st.sampled_from(sorted(FINAL_COUNTS)), width=st.integers(1, 5_000),
       kind=st.sampled_from(["raw", "small"]), eps=st.sampled_from([0x3727C5AC, 0x3089705F, 0, 0x80000000]))  # fmt: skip
def test_a_row_final_equals_the_oracle(harness, data, case, width: int, kind: str, eps: int) -> None:
    mode, output = case
    values = data.draw(st.lists(operand(kind), min_size=FINAL_COUNTS[case], max_size=FINAL_COUNTS[case]))
    eps = eps if mode in (LAYER_NORM, RMS_NORM) else 0
    got = _element(harness, RULE_ROW_FINAL, [mode, output, width, eps], values)
    assert same(got, final_oracle(mode, output, width, eps, values))


def cross_entropy_oracle(mode: int, column: int, count: int, grad: int, values: list[int]) -> int:
    """RULE_ROW_FINAL's cross-entropy modes: nll = log(S) − (z[r, t] − M); dz = ((exp(z − M) / S − [j = t]) / R) · grad
    (engine/portable/reference.py's `cross_entropy_rows` and `cross_entropy_backward`, one rounding an op)."""
    z, m, s = (f(x) for x in values[:3])
    if mode == NLL:
        return b(rm.sub(rm.log(s), rm.sub(z, m)))
    p = rm.div(rm.exp(rm.sub(z, m)), s)
    if column == values[3]:
        p = rm.sub(p, rm.ONE)
    return b(rm.mul(rm.div(p, from_int(count)), f(grad)))


@settings(max_examples=examples(60), database=None, deadline=None)
@given(data=st.data(), mode=st.sampled_from([NLL, CE_BACKWARD]), width=st.integers(33, 60_000),
       rows=st.integers(1, 5_000), kind=st.sampled_from(["raw", "small"]))  # fmt: skip
def test_a_cross_entropy_final_equals_the_oracle(harness, data, mode: int, width: int, rows: int, kind: str) -> None:
    """nll[r] from the row's final M and S and z at the hinted target (which must be the target read); dz[r, j] from
    M, S, z[r, j] and the target, its own column or another."""
    column = data.draw(st.integers(0, width - 1))
    laid = data.draw(st.lists(operand(kind), min_size=3, max_size=3))
    target = column if mode == NLL or data.draw(st.booleans()) else data.draw(st.integers(0, width - 1))
    grad = 0 if mode == NLL else data.draw(operand(kind))
    params = [mode, column, width if mode == NLL else rows, grad]
    got = _element(harness, RULE_ROW_FINAL, params, [*laid, target])
    assert same(got, cross_entropy_oracle(mode, column, rows, grad, [*laid, target]))


def test_the_longest_piece_and_the_first_maximum(harness) -> None:
    """A piece of 256 terms is checked, one of 257 refused; the maximum keeps the first of equal terms (-0 before
    +0) and skips a NaN; a piece from a NaN partial maximum stays NaN (nothing is greater than it)."""
    ones = [SMALL[4]] * 256
    assert _element(harness, RULE_ROW_PIECE, [SUM, 0, 256], ones) == b(np.float32(256.0))
    with pytest.raises(Exception, match="element_rules: row layout"):
        _element(harness, RULE_ROW_PIECE, [SUM, 0, 257], ones + [SMALL[4]])
    assert _element(harness, RULE_ROW_PIECE, [MAX, 0, 3], [0x80000000, 0x00000000, 0x7FC00000]) == 0x80000000
    assert _element(harness, RULE_ROW_PIECE, [MAX, 1, 3], [0x7FC00000, SMALL[5], SMALL[4]]) == 0x7FC00000
    assert _element(harness, RULE_ROW_PIECE, [MAX, 0, 3], [0x7FC00000, SMALL[5], SMALL[4]]) == 0x7FC00000


@pytest.mark.parametrize("rule,params,values", [
    (RULE_ROW_PIECE, [SUM, 0], [1]),  # a parameter missing
    (RULE_ROW_PIECE, [SUM, 0, 4, 0], [1]),  # one too many
    (RULE_ROW_PIECE, [7, 0, 4], [1]),  # no such mode
    (RULE_ROW_PIECE, [SUM, 2, 4], [1, 2]),  # from_partial not 0 or 1
    (RULE_ROW_PIECE, [SUM, 1, 4], [1]),  # the running value and no term
    (RULE_ROW_PIECE, [EXP_SUM, 0, 4], [1]),  # the statistic and no term
    (RULE_ROW_PIECE, [DOT, 0, 4], [1, 2, 3]),  # blocks of unequal length
    (RULE_ROW_PIECE, [DOT3, 1, 4], [1, 2, 3]),
    (RULE_ROW_FINAL, [SOFTMAX, 0, 4], [1, 2, 3]),  # eps missing
    (RULE_ROW_FINAL, [9, 0, 4, 0], [1, 2, 3, 4]),  # no such mode
    (RULE_ROW_FINAL, [NLL, 2, 4, 0], [1, 2, 3, 3]),  # the target read is not the hinted one
    (RULE_ROW_FINAL, [NLL, 2, 4, 0], [1, 2, 3]),  # the target missing
    (RULE_ROW_FINAL, [CE_BACKWARD, 2, 4, 0], [1, 2, 3, 2, 5]),  # one value too many
    (RULE_ROW_FINAL, [SOFTMAX, 1, 4, 0], [1, 2, 3]),  # softmax has one output
    (RULE_ROW_FINAL, [LAYER_NORM_BACKWARD, 1, 4, 0], [1, 2, 3, 4, 5, 6]),  # a backward's dx only
    (RULE_ROW_FINAL, [LAYER_NORM, 3, 4, 0], [1]),  # layer norm has three
    (RULE_ROW_FINAL, [RMS_NORM, 3, 4, 0], []),
    (RULE_ROW_FINAL, [LAYER_NORM, 0, 4, 0], [1, 2, 3]),  # y reads five values
    (RULE_ROW_FINAL, [RMS_NORM_BACKWARD, 0, 4, 0], [1, 2, 3, 4, 5, 6]),  # dx reads five
])  # fmt: skip
def test_a_malformed_call_is_refused(harness, rule: int, params: list[int], values: list[int]) -> None:
    """Any other layout reverts: "element_rules: row layout", or at the index of a parameter that is missing (the
    one assert of both rules keeps ElementReferee under EIP-170)."""
    with pytest.raises(Exception):  # noqa: B017 (a missing parameter reverts without a reason)
        _element(harness, rule, params, values)
    if len(params) == (3 if rule == RULE_ROW_PIECE else 4) and params[0] <= 9 and params[1] <= 2:
        with pytest.raises(Exception, match="element_rules: row layout"):
            _element(harness, rule, params, values)
