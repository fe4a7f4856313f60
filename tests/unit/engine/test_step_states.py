"""Level-2 groundwork: per-step states inside a segment bisect to one recomputable step."""

from __future__ import annotations

import pytest

from engine.api import replay_step_bytes, run_spec, step_hashes
from protocol.artifacts import LocalStore
from protocol.errors import CheckpointError, EngineError

from .helpers import tiny_gpt


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("steps"))
    spec = tiny_gpt(steps=7, segment_steps=3)  # segments of 3, 3 and 1 steps; dropout on
    return spec, store, run_spec(spec, store)


def test_step_states_join_the_committed_boundaries(traced) -> None:
    spec, store, result = traced
    for segment in range(spec.num_segments):
        hashes = step_hashes(spec, store, segment, result.state_hashes[segment], put_states=True)
        start, end = spec.segment_bounds(segment)
        assert len(hashes) == end - start + 1
        assert hashes[0] == result.state_hashes[segment] and hashes[-1] == result.state_hashes[segment + 1]
        assert len(set(hashes)) == len(hashes)
        for offset in range(len(hashes) - 1):  # every single step is recomputable on its own
            reached, _ = replay_step_bytes(spec, store, start + offset, store.get(hashes[offset]))
            assert reached == hashes[offset + 1]


def test_step_state_labels_are_checked(traced) -> None:
    spec, store, result = traced
    hashes = step_hashes(spec, store, 0, result.state_hashes[0], put_states=True)
    with pytest.raises(CheckpointError, match="expected step 2"):
        replay_step_bytes(spec, store, 2, store.get(hashes[1]))  # the state after step 1, claimed as step 2
    with pytest.raises(CheckpointError, match="boundary None, not 0"):
        replay_step_bytes(spec, store, 0, store.get(hashes[1]))
    with pytest.raises(EngineError, match="not a step"):
        replay_step_bytes(spec, store, spec.steps, store.get(result.state_hashes[-1]))
