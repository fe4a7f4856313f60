"""Verifier decision logic: the committed trace, sampling, segment checks and challenge proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ArtifactError, DisputeError, HashMismatchError, TraceUnavailableError
from protocol.hashing import from_hex, to_hex
from protocol.merkle import merkle_root, root_from_proof
from worker import verifier as v

ADDRESS = "0x" + "ab" * 20


def hashes(n: int, label: str = "s") -> list[str]:
    return [to_hex(hashlib.sha256(f"{label}-{i}".encode()).digest()) for i in range(n)]


def manifest_for(state_hashes: list[str]) -> v.CommittedTrace:
    root = to_hex(merkle_root([from_hex(h) for h in state_hashes]))
    return v.CommittedTrace(result_root=root, state_hashes=state_hashes)


# --- the committed trace -------------------------------------------------------------------------

def test_committed_trace_validates_its_hashes():
    trace = manifest_for(hashes(5))
    assert trace.num_segments == 4 and trace.computed_root() == trace.result_root
    with pytest.raises(ValueError, match="state_hashes\\[1\\]"):
        v.CommittedTrace(result_root=trace.result_root, state_hashes=[hashes(1)[0], "0x12"])
    with pytest.raises(ValueError):
        v.CommittedTrace(result_root=trace.result_root, state_hashes=hashes(1))  # N >= 1


class _FakeClient:
    """Just enough of TesseraClient for load_committed_trace: the chain's answer is given."""

    def __init__(self, answer):
        self.answer = answer

    def committed_trace(self, job_id, view):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _View:
    def __init__(self, root, n):
        self.job = type("J", (), {"result_root": root, "num_segments": n})()


def test_load_committed_trace_maps_chain_answers():
    from protocol.errors import ChainError, CommittedTraceError

    honest = manifest_for(hashes(5))
    view = _View(honest.result_root, 4)
    assert v.load_committed_trace(_FakeClient(honest.state_hashes), 1, view) == honest
    with pytest.raises(TraceUnavailableError, match="through another contract"):
        v.load_committed_trace(_FakeClient(CommittedTraceError("committed through another contract")), 1, view)
    with pytest.raises(ChainError):  # an RPC failure is not a finding: it propagates for a retry
        v.load_committed_trace(_FakeClient(ChainError("timeout")), 1, view)
    with pytest.raises(TraceUnavailableError, match="has 4 segments, job 5"):
        v.load_committed_trace(_FakeClient(honest.state_hashes), 1, _View(honest.result_root, 5))


# --- sampling ------------------------------------------------------------------------------------

@given(fraction=st.floats(0, 1), seed=st.integers(0, 2**32), job_id=st.integers(1, 10**9))
def test_should_check_is_deterministic_and_respects_extremes(fraction, seed, job_id):
    policy = v.SamplingPolicy(verify_fraction=fraction, seed=seed)
    first = v.should_check(policy, job_id, ADDRESS)
    assert first == v.should_check(policy, job_id, ADDRESS)
    if fraction == 1.0:
        assert first[0]
    if fraction == 0.0:
        assert not first[0]


def test_watch_lists_are_always_checked():
    policy = v.SamplingPolicy(verify_fraction=0.0, watch_workers=[ADDRESS.upper().replace("0X", "0x")], watch_jobs=[7])
    assert v.should_check(policy, 3, ADDRESS) == (True, "worker on watch list")
    assert v.should_check(policy, 7, "0x" + "00" * 20) == (True, "job on watch list")
    assert v.should_check(policy, 3, "0x" + "00" * 20)[0] is False
    with pytest.raises(ValueError):
        v.SamplingPolicy(watch_workers=["not-an-address"])


def test_sampled_fraction_is_close_to_the_setting():
    policy = v.SamplingPolicy(verify_fraction=0.3, seed=11)
    share = sum(v.should_check(policy, job, ADDRESS)[0] for job in range(1, 4_001)) / 4_000
    assert abs(share - 0.3) < 0.03


@given(n=st.integers(1, 64), m=st.integers(1, 70), seed=st.integers(0, 1_000), job_id=st.integers(1, 10**6))
def test_choose_segments_distinct_in_range_and_seeded(n, m, seed, job_id):
    policy = v.SamplingPolicy(segments_per_check=min(m, 1_024), seed=seed)
    chosen = v.choose_segments(policy, job_id, n)
    assert chosen == sorted(set(chosen))
    assert len(chosen) == min(m, n)
    assert all(0 <= i < n for i in chosen)
    assert chosen == v.choose_segments(policy, job_id, n)


def test_choose_segments_covers_every_segment_over_many_jobs():
    policy = v.SamplingPolicy(segments_per_check=1, seed=3)
    seen = {v.choose_segments(policy, job, 6)[0] for job in range(1, 200)}
    assert seen == set(range(6))
    with pytest.raises(DisputeError):
        v.choose_segments(policy, 1, 0)


# --- checking a segment --------------------------------------------------------------------------

def test_check_segment_outcomes():
    trace = manifest_for(hashes(4))
    ok = lambda h: None  # noqa: E731

    def missing(h):
        raise ArtifactError(f"artifact {h} not found")

    def wrong(h):
        raise HashMismatchError("checkpoint hash mismatch")

    replay_ok = lambda i, h: trace.state_hashes[i + 1]  # noqa: E731
    replay_bad = lambda i, h: hashes(1, "bad")[0]  # noqa: E731
    assert v.check_segment(trace, 1, ok, replay_ok).status is v.CheckStatus.MATCH
    bad = v.check_segment(trace, 1, ok, replay_bad)
    assert bad.status is v.CheckStatus.MISMATCH and bad.replayed_next == hashes(1, "bad")[0]
    assert v.check_segment(trace, 2, missing, replay_ok).status is v.CheckStatus.CHECKPOINT_MISSING
    assert v.check_segment(trace, 0, wrong, replay_ok).status is v.CheckStatus.CHECKPOINT_WRONG
    with pytest.raises(DisputeError):
        v.check_segment(trace, 3, ok, replay_ok)  # N = 3: segments 0..2


def test_first_fault_picks_the_lowest_faulty_segment():
    trace = manifest_for(hashes(6))
    checks = [
        v.SegmentCheck(segment=4, status=v.CheckStatus.MISMATCH, committed_next=trace.state_hashes[5]),
        v.SegmentCheck(segment=0, status=v.CheckStatus.MATCH, committed_next=trace.state_hashes[1]),
        v.SegmentCheck(segment=2, status=v.CheckStatus.CHECKPOINT_MISSING, committed_next=trace.state_hashes[3]),
    ]
    assert v.first_fault(checks).segment == 2
    assert v.first_fault(checks[1:2]) is None


# --- challenge proofs ----------------------------------------------------------------------------

@given(n=st.integers(1, 40), data=st.data())
def test_build_challenge_proofs_verify_against_the_root(n, data):
    state = hashes(n + 1, f"t{n}")
    root = to_hex(merkle_root([from_hex(h) for h in state]))
    segment = data.draw(st.integers(0, n - 1))
    args = v.build_challenge(state, root, segment)
    assert (args.h_i, args.h_next) == (state[segment], state[segment + 1])
    assert root_from_proof(segment, from_hex(args.h_i), [from_hex(p) for p in args.proof_i]) == from_hex(root)
    assert root_from_proof(segment + 1, from_hex(args.h_next), [from_hex(p) for p in args.proof_next]) == from_hex(root)
    assert len(args.proof_i) == len(args.proof_next) == (n).bit_length()  # ceil(log2(N+1))


def test_build_challenge_refuses_bad_segment_and_wrong_root():
    state = hashes(5)
    root = to_hex(merkle_root([from_hex(h) for h in state]))
    with pytest.raises(DisputeError, match="outside"):
        v.build_challenge(state, root, 4)
    with pytest.raises(DisputeError, match="does not match the committed root"):
        v.build_challenge(state, hashes(1, "other-root")[0], 1)
