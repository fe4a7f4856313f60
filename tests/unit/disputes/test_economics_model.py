"""The cheating-economics model (bench/economics.py): closed form, its properties, and the Monte Carlo."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/ is not installed; `pytest` alone works too
from bench import economics as econ  # noqa: E402

TOKEN = econ.TOKEN


def terms_st(**fixed):
    """Hypothesis strategy for valid `Terms` (amounts in whole tokens to keep floats well conditioned)."""
    return st.builds(
        econ.Terms,
        payment=st.integers(1, 10_000).map(lambda t: t * TOKEN),
        collateral=st.integers(0, 50_000).map(lambda t: t * TOKEN),
        compute_cost=st.integers(0, 10_000).map(lambda t: t * TOKEN),
        fee_bps=st.integers(0, 1_000),
        num_segments=st.integers(1, 64),
        verify_rate=fixed.get("verify_rate", st.floats(0, 1)),
        segments_per_check=st.integers(1, 8),
    )


strategies_st = st.sampled_from(econ.STRATEGIES) | st.builds(
    econ.Strategy,
    name=st.just("random"),
    bad_segments=st.none() | st.integers(0, 64),
    cost_fraction=st.none() | st.floats(0, 1),
    scammer=st.booleans(),
)


@given(n=st.integers(1, 200), data=st.data())
def test_catch_probability_is_a_probability_and_monotonic(n, data):
    bad = data.draw(st.integers(0, n))
    m = data.draw(st.integers(1, n))
    q = econ.catch_probability(n, bad, m)
    assert 0.0 <= q <= 1.0
    if bad < n:
        assert econ.catch_probability(n, bad + 1, m) >= q - 1e-12
    if m < n:
        assert econ.catch_probability(n, bad, m + 1) >= q - 1e-12
    assert econ.catch_probability(n, 0, m) == 0.0
    assert econ.catch_probability(n, n, m) == 1.0


def test_catch_probability_known_values():
    assert econ.catch_probability(4, 1, 1) == pytest.approx(0.25)
    # one bad of 10, draw 3 distinct: 1 - C(9,3)/C(10,3) = 1 - 84/120
    assert econ.catch_probability(10, 1, 3) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        econ.catch_probability(4, 5, 1)


@given(terms=terms_st(), strategy=strategies_st, r1=st.floats(0, 1), r2=st.floats(0, 1))
def test_cheating_gain_never_rises_with_verification_rate(terms, strategy, r1, r2):
    low, high = sorted((r1, r2))
    a = econ.cheating_gain(econ.Terms(**{**terms.__dict__, "verify_rate": low}), strategy)
    b = econ.cheating_gain(econ.Terms(**{**terms.__dict__, "verify_rate": high}), strategy)
    assert b <= a + 1e-6 * TOKEN


@given(terms=terms_st(), strategy=strategies_st, extra=st.integers(1, 10_000))
def test_cheating_gain_never_rises_with_collateral(terms, strategy, extra):
    more = econ.Terms(**{**terms.__dict__, "collateral": terms.collateral + extra * TOKEN})
    assert econ.cheating_gain(more, strategy) <= econ.cheating_gain(terms, strategy) + 1e-6 * TOKEN


@given(terms=terms_st(), strategy=strategies_st)
def test_min_verify_rate_is_the_break_even_point(terms, strategy):
    r_min = econ.min_verify_rate(terms, strategy)
    assume(0 < r_min < 0.99 and not math.isinf(r_min))
    at = lambda r: econ.cheating_gain(econ.Terms(**{**terms.__dict__, "verify_rate": r}), strategy)  # noqa: E731
    scale = terms.payment + terms.collateral
    assert abs(at(r_min)) <= 1e-9 * scale
    assert at(min(1.0, r_min + 0.01)) < 0
    assert at(max(0.0, r_min - 0.01)) > 0


@given(terms=terms_st(), strategy=strategies_st)
def test_min_verify_rate_zero_means_cheating_never_pays(terms, strategy):
    if econ.min_verify_rate(terms, strategy) == 0.0:
        for r in (0.0, 0.5, 1.0):
            assert econ.cheating_gain(econ.Terms(**{**terms.__dict__, "verify_rate": r}), strategy) <= 1e-6 * TOKEN


@given(collateral=st.integers(0, 10**30), reward=st.integers(0, 10_000), data=st.data())
def test_slash_split_adds_up_to_the_collateral(collateral, reward, data):
    compensation = data.draw(st.integers(0, 10_000 - reward))
    terms = econ.Terms(payment=1, collateral=collateral, compute_cost=0, fee_bps=0, num_segments=1,
                       verify_rate=1.0, challenger_reward_bps=reward, submitter_compensation_bps=compensation)
    split = econ.slash_split(terms)
    assert sum(split.values()) == collateral
    assert min(split.values()) >= 0


@pytest.mark.parametrize("strategy", econ.STRATEGIES, ids=lambda s: s.name)
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_monte_carlo_agrees_with_closed_form(strategy, rate):
    terms = econ.Terms(payment=100 * TOKEN, collateral=150 * TOKEN, compute_cost=40 * TOKEN, fee_bps=100,
                       num_segments=6, verify_rate=rate, segments_per_check=2)
    exact = econ.cheat_ev(terms, strategy)
    simulated = econ.monte_carlo_cheat_ev(terms, strategy, jobs=200_000, seed=7)
    # Standard error of the mean is below (P' + K)/sqrt(jobs) ~ 0.56 TST; allow 4 of them.
    assert abs(simulated - exact) < 4 * (terms.net_payment + terms.effective_collateral) / math.sqrt(200_000)


def test_fake_trace_without_checks_pays_and_with_full_checks_loses_the_collateral_less_self_capture():
    base = dict(payment=100 * TOKEN, collateral=200 * TOKEN, compute_cost=50 * TOKEN, fee_bps=100, num_segments=4)
    scam = econ.STRATEGIES[0]
    assert econ.cheat_ev(econ.Terms(**base, verify_rate=0.0), scam) == pytest.approx(99 * TOKEN)
    # caught every time, with its puppet taking the 50 % reward: it still loses K·(1 − 0.5) = 100
    assert econ.cheat_ev(econ.Terms(**base, verify_rate=1.0, challenger_reward_bps=5_000), scam) == pytest.approx(
        -100 * TOKEN)
    assert econ.cheat_ev(econ.Terms(**base, verify_rate=1.0, challenger_reward_bps=0), scam) == pytest.approx(
        -200 * TOKEN)
    # r_min = P' / (P' + K') for a scammer caught by any check, K' = K·(1 − ρ)
    assert econ.min_verify_rate(econ.Terms(**base, verify_rate=0.5, challenger_reward_bps=3_000), scam) == \
        pytest.approx(99 / (99 + 140))


def test_self_capture_never_helps_deterrence():
    """A larger challenger reward lets a caught worker keep more of its slash: r_min can only rise."""
    base = dict(payment=100 * TOKEN, collateral=200 * TOKEN, compute_cost=50 * TOKEN, fee_bps=100, num_segments=8,
                verify_rate=0.5)
    for strategy in econ.STRATEGIES:
        rates = [econ.min_verify_rate(econ.Terms(**base, challenger_reward_bps=r), strategy) for r in (0, 3_000, 7_000)]
        assert rates == sorted(rates), strategy.name


@pytest.mark.parametrize("bad_kwargs", [
    {"payment": 0}, {"collateral": -1}, {"fee_bps": 10_001}, {"num_segments": 0},
    {"verify_rate": 1.5}, {"segments_per_check": 0},
])
def test_terms_reject_bad_input(bad_kwargs):
    kwargs = dict(payment=1, collateral=1, compute_cost=0, fee_bps=0, num_segments=1, verify_rate=0.5)
    with pytest.raises(ValueError):
        econ.Terms(**{**kwargs, **bad_kwargs})


@pytest.mark.parametrize("name", ["local", "testnet"])
def test_default_parameter_sets_sit_on_the_safe_side(name):
    terms = econ.terms_for(name)
    for strategy in econ.STRATEGIES:
        assert terms.verify_rate > econ.min_verify_rate(terms, strategy), strategy.name
        assert econ.cheating_gain(terms, strategy) < 0, strategy.name


def test_measure_returns_figures():
    figures = econ.measure()
    for key in ("econ_min_verify_rate_local", "econ_min_verify_rate_testnet", "econ_default_verify_rate_testnet"):
        figure = figures[key]
        assert set(figure) >= {"value", "unit", "how"}
        assert isinstance(figure["value"], (int, float))
    assert figures["econ_default_verify_rate_testnet"]["value"] > figures["econ_min_verify_rate_testnet"]["value"]


def test_reference_sampling_is_the_verifier_default():
    from worker.verifier import VerifierConfig

    defaults = VerifierConfig()
    for name in ("local", "testnet"):
        terms = econ.terms_for(name)
        assert terms.verify_rate == defaults.verify_fraction
        assert terms.segments_per_check == defaults.segments_per_check
