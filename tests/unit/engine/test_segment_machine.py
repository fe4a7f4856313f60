"""The segment state machine: from any committed boundary, restoring and running on reproduces the
trace. Hypothesis drives a live job forward and jumps back to random stored checkpoints."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.api import run_spec
from engine.determinism import configure
from engine.training import Job
from protocol.artifacts import LocalStore

from .helpers import examples, tiny_gpt

SPEC = tiny_gpt(steps=8, segment_steps=2)  # dropout on, so the RNG streams are exercised
REFERENCE: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def reference_trace(tmp_path_factory):
    REFERENCE["trace"] = run_spec(SPEC, LocalStore(tmp_path_factory.mktemp("ref"))).state_hashes
    yield
    REFERENCE.clear()


class SegmentMachine(RuleBasedStateMachine):
    """State: a live Job at some boundary, and the checkpoints it has produced so far."""

    @initialize()
    def start(self) -> None:
        configure("cpu", SPEC.resources.cpu_threads)
        self.job = Job(SPEC, None, "cpu")
        self.boundary = 0
        self.saved = {0: self.job.checkpoint(0)}

    @precondition(lambda self: self.boundary < SPEC.num_segments)
    @rule()
    def advance(self) -> None:
        self.job.run_segment(self.boundary)
        self.boundary += 1
        self.saved[self.boundary] = self.job.checkpoint(self.boundary)

    @rule(data=st.data())
    def resume_elsewhere(self, data) -> None:
        """A fresh process (new Job) picks up any saved boundary, as a verifier would."""
        target = data.draw(st.sampled_from(sorted(b for b in self.saved if b < SPEC.num_segments)))
        job = Job(SPEC, None, "cpu")
        job.restore(self.saved[target], target)
        self.job, self.boundary = job, target

    @invariant()
    def matches_reference(self) -> None:
        for boundary, data in self.saved.items():
            assert "0x" + hashlib.sha256(data).hexdigest() == REFERENCE["trace"][boundary]


SegmentMachine.TestCase.settings = settings(max_examples=examples(6), stateful_step_count=8, deadline=None)
TestSegmentMachine = SegmentMachine.TestCase
