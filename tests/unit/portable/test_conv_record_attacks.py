"""Attack: the recorder's cache of a convolution's columns (`Recorder._columns`) was keyed by x's reference without
a constant's root, so two convolutions over different host tables (CONSTANT references: kind, a, b and shape
alike) with the same window shared the first one's columns: the second conv's linear read the first's x, and
the recorder refused the engine's own convolution (EngineError) where it should record it."""

from __future__ import annotations

import numpy as np

from engine.portable import cpu, record

from .test_step_record import mlp


def test_two_convolutions_over_different_constants_are_recorded() -> None:
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((2, 1, 3, 3), dtype=np.float32), rng.standard_normal(2, dtype=np.float32)
    first, second = (rng.standard_normal((1, 1, 5, 5), dtype=np.float32) for _ in range(2))
    recorder = record.Recorder(mlp(), {})
    for x in (first, second):
        recorder.kernel("conv2d", [x, weight, bias, 1, 1], cpu.conv2d(x, weight, bias, 1, 1))
    im2cols = [e for e in recorder.entries if e.kernel == "im2col"]
    assert len(im2cols) == 2 and im2cols[0].inputs[0].root != im2cols[1].inputs[0].root
