"""Dishonest personas: each commits a trace the verifier's checks catch; honest traces pass."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from protocol.artifacts import LocalStore
from protocol.errors import ConfigError
from protocol.hashing import from_hex, to_hex
from protocol.merkle import merkle_root
from worker import behaviours, verifier


class FakeRun(BaseModel):
    """The RunResult fields the personas and the worker's commit use (engine.api.RunResult has them)."""

    spec_hash: str
    result_root: str
    output_hash: str
    fingerprint_hash: str
    state_hashes: list[str]


def honest_run(store: LocalStore, n: int) -> FakeRun:
    """An 'honest run': n+1 real checkpoints put in the store, so h_i is the hash of stored bytes."""
    hashes = [store.put(f"checkpoint {i} of {n}".encode()) for i in range(n + 1)]
    return FakeRun(
        spec_hash=to_hex(hashlib.sha256(b"spec").digest()),
        result_root=to_hex(merkle_root([from_hex(h) for h in hashes])),
        output_hash=store.put(b"weights"),
        fingerprint_hash=store.put(b'{"device":"cpu"}'),
        state_hashes=hashes,
    )


def check_all(store: LocalStore, honest: list[str], committed: verifier.CommittedTrace) -> list[verifier.SegmentCheck]:
    """Check every segment the way the verifier does; the 'replay' is the honest computation."""
    def fetch(h):
        store.get(h)

    def replay(i, h):
        return honest[honest.index(h) + 1]

    return [verifier.check_segment(committed, i, fetch, replay) for i in range(committed.num_segments)]


def committed_manifest(run: FakeRun) -> verifier.CommittedTrace:
    """What the verifier reads back from chain: the worker commits run.state_hashes, the escrow the root."""
    return verifier.CommittedTrace(result_root=to_hex(merkle_root([from_hex(h) for h in run.state_hashes])),
                                   state_hashes=run.state_hashes)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), name=st.sampled_from(behaviours.BEHAVIOURS))
def test_each_persona_is_caught_and_honest_passes(tmp_path_factory, n, name):
    store = LocalStore(tmp_path_factory.mktemp("store"))
    run = honest_run(store, n)
    honest = list(run.state_hashes)
    assert all(c.status is verifier.CheckStatus.MATCH for c in check_all(store, honest, committed_manifest(run)))

    root, output, fingerprint = behaviours.apply(name, run, store)
    assert (root, output, fingerprint) == (run.result_root, run.output_hash, run.fingerprint_hash)
    manifest = committed_manifest(run)  # the worker commits run_result's trace after apply
    assert manifest.computed_root() == root
    checks = check_all(store, honest, manifest)
    faulty = [c.segment for c in checks if c.status.worker_wrong]
    if name == "fake-trace":
        assert faulty == list(range(n))
        assert root != to_hex(merkle_root([from_hex(h) for h in honest]))
    elif name == "tamper-segment":
        j = behaviours.tampered_index(n)
        assert faulty == [s for s in (j - 1, j) if s < n]
        assert [i for i, (a, b) in enumerate(zip(honest, run.state_hashes)) if a != b] == [j]
    else:
        j = behaviours.withheld_index(n)
        assert run.state_hashes == honest
        assert faulty == [j]
        assert checks[j].status is verifier.CheckStatus.CHECKPOINT_MISSING
    # The first fault always yields a challenge whose proofs hold against the committed root.
    fault = verifier.first_fault(checks)
    args = verifier.build_challenge(run.state_hashes, root, fault.segment)
    assert args.h_i == run.state_hashes[fault.segment]


def test_unknown_behaviour_is_a_config_error(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(ConfigError, match="unknown worker behaviour"):
        behaviours.apply("lazy", honest_run(store, 2), store)
    assert behaviours.skips_training("fake-trace") and not behaviours.skips_training("tamper-segment")


def test_honest_worker_path_does_not_import_behaviours():
    import subprocess
    import sys

    code = ("import sys, worker.verifier, worker.arbiter; "
            "assert 'worker.behaviours' not in sys.modules; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
