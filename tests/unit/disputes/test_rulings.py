"""The arbiter's ruling table and the verifier's sampling and claims: total, deterministic, unpredictable."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.events import ClaimKind
from worker.arbiter import Decision, Evidence, check_of_claim, rule
from worker.judging import Check, CheckKind, CheckResult, Outcome, first_fault, plan_checks
from worker.verifier import SamplingPolicy, choose_segments, claim_for, load_secret, should_check

H = ["0x" + f"{i:064x}" for i in range(1, 10)]
ROOT = "0x" + "ab" * 32
checks = st.builds(Check, kind=st.sampled_from(CheckKind), boundary=st.integers(0, 8),
                   checkpoint=st.sampled_from([None, *H]), expected=st.sampled_from(H))


@given(check=checks, outcome=st.sampled_from(Outcome))
def test_every_outcome_has_exactly_one_ruling_and_none_refuses_for_the_worker(check, outcome):
    """The table is total; the only non-verdict is the arbiter's own failure, which voids (never pays)."""
    ruling = rule(CheckResult(check=check, outcome=outcome, recomputed=H[0] if outcome is Outcome.MATCH else None))
    expected = (Decision.WORKER_WRONG if outcome.worker_wrong else
                Decision.WORKER_RIGHT if outcome is Outcome.MATCH else Decision.CANNOT_JUDGE)
    assert ruling.decision is expected
    assert ruling.recomputed_hash.startswith("0x") and len(ruling.recomputed_hash) == 66


def test_worker_data_problems_lose_before_anything_is_compared():
    check = Check(kind=CheckKind.SEGMENT, boundary=1, checkpoint=H[1], expected=H[2])
    for outcome in (Outcome.CHECKPOINT_MISSING, Outcome.CHECKPOINT_INVALID, Outcome.INPUT_MISSING, Outcome.MISMATCH):
        assert rule(CheckResult(check=check, outcome=outcome, detail="x")).worker_wrong
    assert rule(CheckResult(check=check, outcome=Outcome.VALID)).decision is Decision.CANNOT_JUDGE


@pytest.mark.parametrize("kind, segment, expected", [
    (ClaimKind.SEGMENT, 2, (CheckKind.SEGMENT, 2, H[2], H[3])),
    (ClaimKind.UNAVAILABLE, 2, (CheckKind.SEGMENT, 2, H[2], H[3])),
    (ClaimKind.UNAVAILABLE, 4, (CheckKind.OUTPUT, 4, H[2], H[3])),
    (ClaimKind.OUTPUT, 4, (CheckKind.OUTPUT, 4, H[2], H[3])),
    (ClaimKind.INITIAL, 0, (CheckKind.INITIAL, 0, None, H[2])),
])
def test_each_claim_is_one_recomputation(kind, segment, expected):
    check = check_of_claim(int(kind), segment, H[2], H[3], 4)
    assert (check.kind, check.boundary, check.checkpoint, check.expected) == expected


def test_evidence_is_canonical_json():
    result = CheckResult(check=Check(kind=CheckKind.INITIAL, boundary=0, expected=H[0]), outcome=Outcome.MATCH)
    evidence = Evidence(chain_id=1, disputes="0x" + "11" * 20, dispute_id=3, job_id=2, claim="initial", segment=0,
                        h_a=H[0], h_b="0x" + "00" * 32, challenger="0x" + "22" * 20, worker="0x" + "33" * 20,
                        decision=Decision.WORKER_RIGHT, reason="ok", recomputed_hash=H[0], results=[result],
                        env_class=H[5])
    data = evidence.canonical_bytes()
    assert data == Evidence.model_validate_json(data).canonical_bytes() and b" " not in data


# ---------------------------------------------------------------- sampling (audit addendum)


@given(fraction=st.floats(0, 1), job_id=st.integers(1, 10**9), secret=st.binary(min_size=32, max_size=32))
def test_sampling_is_deterministic_per_secret_and_respects_extremes(fraction, job_id, secret):
    policy = SamplingPolicy(verify_fraction=fraction)
    first = should_check(policy, secret, job_id, "0x" + "aa" * 20, ROOT)
    assert first == should_check(policy, secret, job_id, "0x" + "aa" * 20, ROOT)
    if fraction == 0:
        assert not first[0]
    if fraction == 1:
        assert first[0]


def test_without_the_secret_the_choices_cannot_be_computed():
    """Two verifiers with different secrets (or a worker guessing with any secret) pick different jobs and
    segments; the draw also covers the committed root, so it is fixed only by the commit itself."""
    policy = SamplingPolicy(verify_fraction=0.5, segments_per_check=1)
    a, b = os.urandom(32), os.urandom(32)
    picks_a = [should_check(policy, a, j, "0x" + "aa" * 20, ROOT)[0] for j in range(1, 401)]
    picks_b = [should_check(policy, b, j, "0x" + "aa" * 20, ROOT)[0] for j in range(1, 401)]
    agreement = sum(x == y for x, y in zip(picks_a, picks_b)) / 400
    assert 0.35 < agreement < 0.65  # independent draws agree about half the time
    segments = {tuple(choose_segments(policy, a, j, root, 16)) for j in range(1, 5) for root in (ROOT, H[0], H[1])}
    assert len(segments) > 4
    assert 0.4 < sum(picks_a) / 400 < 0.6


def test_watch_lists_are_always_checked():
    policy = SamplingPolicy(verify_fraction=0.0, watch_workers=["0x" + "AB" * 20], watch_jobs=[7])
    assert should_check(policy, b"s" * 32, 7, "0x" + "00" * 20, ROOT)[0]
    assert should_check(policy, b"s" * 32, 8, "0x" + "ab" * 20, ROOT)[0]
    assert not should_check(policy, b"s" * 32, 8, "0x" + "cd" * 20, ROOT)[0]


@given(n=st.integers(1, 64), m=st.integers(1, 70), job_id=st.integers(1, 10**6))
def test_choose_segments_distinct_sorted_in_range(n, m, job_id):
    chosen = choose_segments(SamplingPolicy(segments_per_check=m), b"k" * 32, job_id, ROOT, n)
    assert chosen == sorted(set(chosen)) and len(chosen) == min(n, m) and all(0 <= i < n for i in chosen)


def test_the_secret_is_created_once_and_private(tmp_path):
    path = tmp_path / "verifier-secret"
    secret = load_secret(path)
    assert len(secret) == 32 and load_secret(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------- claims


@given(check=checks.filter(lambda c: c.kind not in (CheckKind.STEP, CheckKind.KIT)),
       outcome=st.sampled_from([o for o in Outcome if o.worker_wrong]))
def test_every_finding_maps_to_a_claim_the_contract_accepts(check, outcome):
    # (a STEP check is the arbiter's level 2 and a KIT check a worker's screening before it claims: neither is a
    # verifier's finding, and neither files a claim)
    claim, segment = claim_for(CheckResult(check=check, outcome=outcome))
    if outcome in (Outcome.CHECKPOINT_MISSING, Outcome.INPUT_MISSING):
        assert (claim, segment) == ("unavailable", check.boundary)  # never a bond lost to late serving
    elif check.kind is CheckKind.INITIAL:
        assert (claim, segment) == ("initial", 0)
    else:
        assert claim == check.kind.value and segment == check.boundary


def test_plan_and_first_fault():
    plan = plan_checks(H[:5], H[8], [3, 1])
    assert [(c.kind.value, c.boundary) for c in plan] == [("initial", 0), ("segment", 1), ("segment", 3), ("output", 4)]
    results = [CheckResult(check=c, outcome=o) for c, o in zip(plan, [Outcome.MATCH, Outcome.ERROR, Outcome.MISMATCH,
                                                                      Outcome.MISMATCH])]
    assert first_fault(results).check.boundary == 3
    with pytest.raises(Exception, match="outside"):
        plan_checks(H[:3], H[8], [2])
