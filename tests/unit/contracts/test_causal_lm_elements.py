"""The element rules of the causal-LM loss on chain (contracts/lib/element_rules.vy, through
contracts/ElementReferee.vy) equal a test-local oracle of docs/arithmetic.md section 6 ("causal-LM
loss") as docs/referee.md "The causal-LM loss" cuts it: the count of counted rows (a fold of 1 for each int64
target that is not -1), the mean over a proven count (a fold's epilogue dividing by its last value), nll and dz of
a row that is not counted (+0, whatever its logits), and dz of a counted row divided by the proven count. Operands
are hypothesis-drawn from every edge class (tests/unit/contracts/test_row_piece_elements.py's)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import referee_model as rm
from tests.unit.contracts.test_row_piece_elements import CE_BACKWARD, NLL, RULE_ROW_FINAL, b, cross_entropy_oracle, f, operand, same
from tests.unit.engine.helpers import examples

RULE_FOLD = 0
COUNT, SUM = 0, 1  # the fold's arities read here: a count of targets, a sum of values
EPILOGUE_NONE, EPILOGUE_DIV_LAST = 0, 3
CAUSAL_BACKWARD = 8  # RULE_ROW_FINAL's mode
IGNORE = 2**64 - 1  # the int64 target -1 as the 64-bit pattern RefereeGame proves


def _element(harness, rule: int, params: list[int], values: list[int]) -> int:
    return int(harness.functions.element(rule, params, values).call())


@pytest.fixture(scope="module")
def harness(w3):
    from tests.unit.contracts.vyper_harness import deploy_element_referee

    return deploy_element_referee(w3)


def target() -> st.SearchStrategy[int]:
    """An int64 target as RefereeGame proves it: -1 (not counted), a class id, or any other 64-bit pattern."""
    return st.one_of(st.just(IGNORE), st.integers(0, 60_000), st.integers(0, IGNORE))


@settings(max_examples=examples(60), database=None, deadline=None)
@given(targets=st.lists(target(), min_size=1, max_size=40), partial=st.none() | st.integers(0, 300).map(np.float32))
def test_the_count_is_one_for_every_target_that_is_not_minus_one(harness, targets: list[int], partial) -> None:
    """arity 0: s = partial or +0, then s + 1 for a target other than -1, s + (+0) for -1 (which leaves s as it is:
    s is never -0); any other 64-bit pattern counts, as any class id does."""
    laid = ([b(partial)] if partial is not None else []) + targets
    got = _element(harness, RULE_FOLD, [COUNT, int(partial is not None), EPILOGUE_NONE, 0], laid)
    want = (partial if partial is not None else np.float32(0)) + np.float32(sum(t != IGNORE for t in targets))
    assert got == b(np.float32(want))


@settings(max_examples=examples(60), database=None, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), from_partial=st.booleans(), kind=st.sampled_from(["raw", "small"]))
def test_the_mean_divides_by_the_proven_count(harness, data, n: int, from_partial: bool, kind: str) -> None:
    """EPILOGUE_DIV_LAST: the fold of the terms (from the running sum before the piece), then / the last value, as
    binary32 (docs/arithmetic.md: fold over the counted rows, / float(R_c))."""
    terms = data.draw(st.lists(operand(kind), min_size=n, max_size=n))
    partial = data.draw(operand(kind)) if from_partial else None
    count = data.draw(st.one_of(operand(kind), st.integers(1, 5_000).map(lambda c: b(np.float32(c)))))
    s = f(partial) if partial is not None else rm.ZERO
    for t in terms:
        s = rm.add(s, f(t))
    laid = ([partial] if partial is not None else []) + terms + [count]
    got = _element(harness, RULE_FOLD, [SUM, int(from_partial), EPILOGUE_DIV_LAST, 0], laid)
    assert same(got, b(rm.div(s, f(count))))


def test_a_count_piece_without_its_divisor_or_with_an_unknown_epilogue_is_refused(harness) -> None:
    with pytest.raises(Exception, match="element_rules: fold layout"):
        _element(harness, RULE_FOLD, [SUM, 1, EPILOGUE_DIV_LAST, 0], [b(np.float32(1))])  # the partial, no divisor
    with pytest.raises(Exception, match="element_rules: fold layout"):
        _element(harness, RULE_FOLD, [SUM, 0, 4, 0], [1, 2])
    with pytest.raises(Exception, match="element_rules: fold layout"):
        _element(harness, RULE_FOLD, [4, 0, EPILOGUE_NONE, 0], [1, 2])


@settings(max_examples=examples(60), database=None, deadline=None)
@given(data=st.data(), width=st.integers(1, 60_000), kind=st.sampled_from(["raw", "small"]))
def test_a_row_that_is_not_counted_is_plus_zero(harness, data, width: int, kind: str) -> None:
    """Target -1: nll (hinted -1, the target read -1) and dz (plain or causal) are +0 whatever z, M, S, the grad
    and the count; nll hinted -1 over a counted target, or hinted a class over -1, is refused (the hint must be the
    target read)."""
    laid = data.draw(st.lists(operand(kind), min_size=3, max_size=3))
    grad, count = data.draw(operand(kind)), data.draw(operand(kind))
    column = data.draw(st.integers(0, width - 1))
    assert _element(harness, RULE_ROW_FINAL, [NLL, IGNORE, width, 0], [*laid, IGNORE]) == 0
    assert _element(harness, RULE_ROW_FINAL, [CE_BACKWARD, column, width, grad], [*laid, IGNORE]) == 0
    assert _element(harness, RULE_ROW_FINAL, [CAUSAL_BACKWARD, column, width, grad], [*laid, IGNORE, count]) == 0
    with pytest.raises(Exception, match="element_rules: row layout"):
        _element(harness, RULE_ROW_FINAL, [NLL, IGNORE, width, 0], [*laid, column])
    with pytest.raises(Exception, match="element_rules: row layout"):
        _element(harness, RULE_ROW_FINAL, [NLL, column, width, 0], [*laid, IGNORE])


@settings(max_examples=examples(60), database=None, deadline=None)
@given(data=st.data(), width=st.integers(1, 60_000), kind=st.sampled_from(["raw", "small"]))
def test_a_counted_rows_gradient_divides_by_the_proven_count(harness, data, width: int, kind: str) -> None:
    """FINAL_CAUSAL_BACKWARD [j, D, grad] over [z[r, j], M, S, t[r], N]: cross-entropy's dz with the binary32 N for
    float(R) (docs/arithmetic.md: R = R_c), its own column or another."""
    column = data.draw(st.integers(0, width - 1))
    laid = data.draw(st.lists(operand(kind), min_size=3, max_size=3))
    t = column if data.draw(st.booleans()) else data.draw(st.integers(0, width - 1))
    grad = data.draw(operand(kind))
    count = data.draw(st.one_of(operand(kind), st.integers(1, 5_000).map(lambda c: b(np.float32(c)))))
    got = _element(harness, RULE_ROW_FINAL, [CAUSAL_BACKWARD, column, width, grad], [*laid, t, count])
    p = rm.div(rm.exp(rm.sub(f(laid[0]), f(laid[1]))), f(laid[2]))
    if column == t:
        p = rm.sub(p, rm.ONE)
    assert same(got, b(rm.mul(rm.div(p, f(count)), f(grad))))
    if f(count) == np.float32(3):  # the oracle of plain cross-entropy's dz with R = 3 agrees
        assert same(got, cross_entropy_oracle(CE_BACKWARD, column, 3, grad, [*laid, t]))


def test_a_causal_gradient_without_its_count_is_refused(harness) -> None:
    with pytest.raises(Exception, match="element_rules: row layout"):
        _element(harness, RULE_ROW_FINAL, [CAUSAL_BACKWARD, 0, 4, b(np.float32(1))], [1, 2, 3, 0])
    with pytest.raises(Exception, match="element_rules: row layout"):
        _element(harness, RULE_ROW_FINAL, [CAUSAL_BACKWARD, 0, 4, b(np.float32(1))], [1, 2, 3, 0, 5, 6])
