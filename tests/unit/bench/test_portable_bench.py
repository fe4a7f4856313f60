"""bench/portable.py times the same segments in both arithmetics, interleaved (the benchmark itself never
passes or fails: the figure's value is read from docs/performance.md, not asserted here)."""

from __future__ import annotations

from bench.portable import step_times


def test_step_times_interleave_both_arithmetics_on_the_same_preset() -> None:
    times = step_times("digits_spec", steps=2, repeats=2)
    assert set(times) == {"native", "portable/1"}
    assert all(len(runs) == 2 and all(t > 0 for t in runs) for runs in times.values())
