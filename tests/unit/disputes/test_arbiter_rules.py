"""The arbiter's ruling rules: checkpoint, fingerprint, portability, replay."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import arbiter as a

FP = {"torch": "2.13.0", "device": {"type": "cpu", "name": "x86_64"}, "threads": 1, "deterministic": True,
      "hostname": "box-1"}
H = ["0x" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(3)]


def test_missing_or_wrong_checkpoint_loses_whatever_the_fingerprints():
    other = {**FP, "torch": "9.9"}
    for portable in (False, True):
        r = a.rule_before_replay(a.CheckpointState.MISSING, other, FP, portable=portable)
        assert r.decision is a.Decision.WORKER_WRONG and "unavailable" in r.reason
        r = a.rule_before_replay(a.CheckpointState.WRONG_HASH, FP, FP, portable=portable)
        assert r.worker_wrong and "does not hash" in r.reason
        assert r.recomputed_hash == a.ZERO_HASH


def test_unavailable_fingerprint_loses():
    r = a.rule_before_replay(a.CheckpointState.OK, None, FP, portable=False, fingerprint_detail="404")
    assert r.worker_wrong and "404" in r.reason


def test_fingerprint_mismatch_refuses_unless_portable_and_says_why():
    other = {**FP, "device": {"type": "cuda", "name": "NVIDIA H100"}}
    r = a.rule_before_replay(a.CheckpointState.OK, other, FP, portable=False)
    assert r.decision is a.Decision.REFUSE
    assert "device.type" in r.reason and "not portable" in r.reason
    assert a.rule_before_replay(a.CheckpointState.OK, other, FP, portable=True) is None


def test_non_determining_fields_are_ignored():
    assert a.rule_before_replay(a.CheckpointState.OK, {**FP, "hostname": "box-2"}, FP, portable=False) is None


def test_replay_decides():
    assert a.rule_after_replay(H[1].upper().replace("0X", "0x"), H[1]).decision is a.Decision.WORKER_RIGHT
    wrong = a.rule_after_replay(H[2], H[1])
    assert wrong.worker_wrong and wrong.recomputed_hash == H[2] and H[1] in wrong.reason


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_fingerprint_equal_to_itself_and_differences_symmetric(fp):
    assert a.fingerprint_differences(fp, fp) == []
    other = {**fp, "torch": "changed-version"}
    forward = a.fingerprint_differences(fp, other)
    backward = a.fingerprint_differences(other, fp)
    assert len(forward) == len(backward)
    assert (fp.get("torch") == "changed-version") == (forward == [])


def test_evidence_is_canonical_json():
    ev = a.Evidence(chain_id=31337, disputes="0x" + "11" * 20, job_id=3, segment=1, h_i=H[0], h_next=H[1],
                    challenger="0x" + "22" * 20, worker="0x" + "33" * 20, decision=a.Decision.WORKER_WRONG,
                    reason="r", recomputed_hash=H[2], checkpoint=a.CheckpointState.OK,
                    worker_fingerprint_hash=H[0], worker_fingerprint=FP, arbiter_fingerprint=FP)
    data = ev.canonical_bytes()
    assert b" " not in data.replace(b"NVIDIA H100", b"")
    assert a.Evidence.model_validate_json(data) == ev
    assert a.evidence_uri("file:///s", H[0]) == f"file:///s#evidence={H[0]}"


@pytest.mark.parametrize("state", list(a.CheckpointState))
def test_every_checkpoint_state_has_a_rule(state):
    r = a.rule_before_replay(state, FP, FP, portable=False)
    assert (r is None) == (state is a.CheckpointState.OK)
