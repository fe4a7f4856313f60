"""bench/element_gas.py's cases stay in step with the referee model (its piece lengths, its intermediates):
each case proves every value the model reads, so `make bench` can measure every one."""

from __future__ import annotations

from bench import element_gas
from protocol import referee_calls as rc
from protocol import referee_model as rm


def test_every_element_gas_case_proves_what_the_model_reads_and_checks() -> None:
    names = []
    for name, _, call, output, e, proven, piece in element_gas.cases():
        assert set(rm.dependencies(call, output, e, piece)) <= set(proven), name
        encoded = rc.encode(call, output, e, proven, piece)
        assert encoded.values and rm.check_element(call, output, e, proven, piece) >= 0
        names.append(name)
    assert {"fold_piece", "clip_piece", "clip_scale", "embedding_backward"} <= set(names)
