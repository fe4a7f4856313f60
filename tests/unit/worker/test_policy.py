"""Selection policy: claim exactly when every rule passes; skip names the rule; defer when only capacity/stake lack."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.spec import estimate_parameters
from worker.policy import Machine, Offer, decide, run_device
from worker.runtime.config import WorkerConfig
from worker.testing_chain import tiny_spec

SPEC = tiny_spec()
PARAMS = estimate_parameters(SPEC)


@settings(deadline=None, max_examples=200)
@given(
    payment=st.integers(0, 100), min_payment=st.integers(0, 100),
    collateral=st.integers(0, 100), max_collateral=st.one_of(st.none(), st.integers(0, 100)),
    kinds=st.sampled_from([[], ["train"], ["infer"], ["train", "eval"]]),
    max_parameters=st.sampled_from([PARAMS - 1, PARAMS, PARAMS * 10]),
    timeout=st.integers(0, 200), margin=st.sampled_from([0.0, 10.0, 60.0]),
    running=st.integers(0, 3), concurrency=st.integers(1, 2), gpus=st.integers(0, 2),
    stake=st.integers(0, 100),
)
def test_decision_matches_the_rules(payment, min_payment, collateral, max_collateral, kinds, max_parameters, timeout,
                                    margin, running, concurrency, gpus, stake):
    config = WorkerConfig(min_payment=min_payment, max_collateral=max_collateral, allowed_kinds=kinds,
                          max_parameters=max_parameters, deadline_margin=margin, concurrency_per_gpu=concurrency)
    machine = Machine("cuda", gpus) if gpus else Machine("cpu", 0)
    decision = decide(config, Offer(1, payment, collateral, SPEC, timeout), machine, running=running,
                      available_stake=stake)
    fits = (payment >= min_payment and (max_collateral is None or collateral <= max_collateral)
            and (not kinds or "train" in kinds) and PARAMS <= max_parameters and timeout - margin > 0)
    capacity = concurrency * (gpus if gpus else 1)
    if not fits:
        assert decision.action == "skip" and decision.reason
    elif running >= capacity or stake < collateral:
        assert decision.action == "defer"
    else:
        assert decision.action == "claim"


def test_cuda_only_spec_is_skipped_on_cpu_and_runs_on_cuda():
    spec = tiny_spec().model_copy(update={"device": "cuda"})
    offer = Offer(1, 1, 1, spec, 100)
    config = WorkerConfig(deadline_margin=1)
    assert decide(config, offer, Machine("cpu"), running=0, available_stake=1).action == "skip"
    assert decide(config, offer, Machine("cuda", 1), running=0, available_stake=1).action == "claim"
    assert run_device(spec, Machine("cuda", 1)) == "cuda"
    assert run_device(tiny_spec(), Machine("cpu")) == "cpu"


def test_wall_time_longer_than_the_deadline_is_skipped():
    spec = tiny_spec().model_copy(update={"resources": tiny_spec().resources.model_copy(update={"max_wall_s": 500})})
    decision = decide(WorkerConfig(deadline_margin=10), Offer(1, 1, 1, spec, 120), Machine("cpu"), running=0,
                      available_stake=5)
    assert decision.action == "skip" and "wall time" in decision.reason


def test_skip_and_defer_reasons_quote_amounts_in_tokens():
    token = 10**18
    config = WorkerConfig(min_payment=token, max_collateral=50 * token, deadline_margin=1)
    cheap = decide(config, Offer(1, token // 2, token, SPEC, 100), Machine("cpu"), running=0, available_stake=0)
    assert cheap.reason == "payment 0.5 tokens below min_payment 1 tokens"
    heavy = decide(config, Offer(1, token, 1_000_000 * token, SPEC, 100), Machine("cpu"), running=0,
                   available_stake=0)
    assert heavy.reason == "collateral 1000000 tokens above max_collateral 50 tokens"
    short = decide(config, Offer(1, token, 2 * token, SPEC, 100), Machine("cpu"), running=0,
                   available_stake=token + 1)
    assert short.action == "defer"
    assert short.reason == "available stake 1.000000000000000001 tokens below collateral 2 tokens"
