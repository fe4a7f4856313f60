"""A portable training job's trace h_0 … h_N is its checkpoints' state roots (docs/referee.md, section 2),
bound to the job's step-record skeleton and each boundary's segment length: the run commits and stores
them, a replay reaches them, and the initial state, resume and the output work by them."""

from __future__ import annotations

import pytest

from engine.api import (
    checkpoint_name,
    checkpoint_naming,
    extract_output,
    initial_checkpoint,
    job_skeleton,
    replay_checkpoint_bytes,
    run_spec,
    step_state_roots,
)
from protocol.artifacts import LocalStore
from protocol.errors import HashMismatchError
from protocol.hashing import sha256_hex

from ..engine.helpers import tiny_digits

SPEC = tiny_digits(arithmetic="portable/1", steps=3, segment_steps=2)  # segments of 2 and 1 steps


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("roots"))
    return store, run_spec(SPEC, store)


def test_the_trace_is_the_state_roots_of_the_segment_boundaries(run) -> None:
    store, result = run
    hashes = result.state_hashes
    assert len(hashes) == SPEC.num_segments + 1 == 3
    for segment in range(SPEC.num_segments):
        roots = step_state_roots(SPEC, store, segment, hashes[segment], skeleton=job_skeleton(SPEC, store))
        assert (roots[0], roots[-1]) == (hashes[segment], hashes[segment + 1])
    for boundary, name in enumerate(hashes):
        data = store.get(name, naming=checkpoint_naming(SPEC, store, boundary))
        assert name != sha256_hex(data)
        with pytest.raises(HashMismatchError):
            store.get(name)  # a sha256 reader is refused: the name is not its sha256
    # each boundary's header binds its own segment length: h_1 read as the last boundary's does not verify
    with pytest.raises(HashMismatchError):
        store.get(hashes[1], naming=checkpoint_naming(SPEC, store, 2))
    assert checkpoint_name(SPEC, store, 0, initial_checkpoint(SPEC, store)) == hashes[0]
    root, length, per_epoch = job_skeleton(SPEC, store)
    assert result.metrics["step_record"] == {"skeleton_root": "0x" + root.hex(), "length": length,
                                             "per_epoch": per_epoch} and length > 0 and per_epoch > 0


def test_a_replay_reaches_the_next_root_and_a_tampered_segment_does_not(run) -> None:
    store, result = run
    hashes = result.state_hashes
    start = store.get(hashes[0], naming=checkpoint_naming(SPEC, store, 0))
    reached, reached_bytes = replay_checkpoint_bytes(SPEC, store, 0, start)
    assert reached == hashes[1] and checkpoint_name(SPEC, store, 1, reached_bytes) == reached
    tampered = start[:-1] + bytes([start[-1] ^ 1])  # one bit of the last tensor: still a canonical checkpoint
    assert replay_checkpoint_bytes(SPEC, store, 0, tampered)[0] != hashes[1]


def test_resume_and_output_work_by_roots(run, tmp_path) -> None:
    store, result = run
    resumed = run_spec(SPEC, store, resume_hashes=result.state_hashes[:2])
    assert resumed.metrics["resumed_from_boundary"] == 1
    assert (resumed.state_hashes, resumed.output_hash) == (result.state_hashes, result.output_hash)
    last = store.get(result.state_hashes[-1], naming=checkpoint_naming(SPEC, store, SPEC.num_segments))
    assert sha256_hex(extract_output(SPEC, store, last)) == result.output_hash
