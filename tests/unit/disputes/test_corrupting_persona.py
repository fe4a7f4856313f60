"""The `corrupt-op` persona's children (personas/corrupting.py) compute exactly one kernel call wrong: the
first `linear` output of the step it names, in its last positive element, by one flipped mantissa bit. Its
record keeps the job's skeleton (so its state roots bind the same (S, L) as an honest run's) and diverges from the honest
record first at that call: the call a refereed game must bisect to and the element rule must catch."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from engine.api import record_step
from personas import corrupting, tampering
from protocol.spec import load_spec

from tests.unit.engine.helpers import tiny_digits
from tests.unit.portable.test_step_record import mlp


@given(steps=st.integers(1, 40), segment_steps=st.integers(1, 12))
def test_the_corrupted_step_is_the_last_of_the_segment_tamper_segment_alters(steps, segment_steps):
    spec = load_spec(tiny_digits(steps=steps, segment_steps=segment_steps))
    n = spec.num_segments
    step = corrupting.corrupted_step(spec)
    segment = step // segment_steps
    assert spec.segment_bounds(segment)[1] - 1 == step  # the segment's last step
    assert segment == min(tampering.tampered_index(n), n - 1)
    assert (segment >= 1) == (n >= 2)  # the agreed state is not h_0 whenever the job has two segments


def test_one_linear_element_is_wrong_and_everything_after_follows_from_it():
    from engine.api import initial_checkpoint

    spec = load_spec(mlp())
    state = initial_checkpoint(spec, None)
    honest, honest_next = record_step(spec, None, 0, state)
    undo = corrupting.install(0)
    try:
        wrong, wrong_next = record_step(spec, None, 0, state)
    finally:
        undo()
    again, again_next = record_step(spec, None, 0, state)  # the undo leaves the honest kernels
    assert again_next == honest_next and [e.out_roots for e in again.entries] == [e.out_roots for e in honest.entries]

    assert (wrong.skeleton_root(), len(wrong.entries)) == (honest.skeleton_root(), len(honest.entries))
    assert wrong_next != honest_next
    first = next(j for j, (a, b) in enumerate(zip(honest.entries, wrong.entries)) if a.out_roots != b.out_roots)
    assert first == [e.kernel for e in honest.entries].index("linear")
    good = np.ascontiguousarray(honest.entries[first].outputs[0]).reshape(-1).view(np.uint32)
    bad = np.ascontiguousarray(wrong.entries[first].outputs[0]).reshape(-1).view(np.uint32)
    element = corrupting.corrupted_element(honest.entries[first].outputs[0])
    assert np.flatnonzero(good != bad).tolist() == [element] and good[element] ^ bad[element] == corrupting.FLIPPED_BIT
    # its inputs are the honest ones: both parties agree on everything the call reads
    for k in range(len(honest.entries[first].inputs)):
        np.testing.assert_array_equal(honest.input_value(honest.entries[first], k),
                                      wrong.input_value(wrong.entries[first], k))


def test_a_step_it_does_not_name_is_honest():
    from engine.api import initial_checkpoint

    spec = load_spec(mlp())
    state = initial_checkpoint(spec, None)
    honest = record_step(spec, None, 0, state)[1]
    undo = corrupting.install(1)
    try:
        assert record_step(spec, None, 0, state)[1] == honest
    finally:
        undo()
