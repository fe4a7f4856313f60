"""Attacks on this session's referee changes (issue 15), each a move a cheating party could make, and the
defence that stops it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from protocol import tensor_commit as tc
from worker.referee_player import RefereePlayer

# RefereeGame's `wide_code` of a disputed output: 0 for binary32, else its dtype code (3: binary64)
BINARY32, BINARY64 = 0, 3


def _payload_nan(dtype: type, payload: int) -> np.floating:
    """A quiet NaN of `dtype` whose low mantissa bits are `payload` (the referee sees every NaN as one value)."""
    if dtype is np.float32:
        return np.array([0x7FC00000 | payload], dtype=np.uint32).view(np.float32)[0]
    return np.array([0x7FF8000000000000 | payload], dtype=np.uint64).view(np.float64)[0]


@pytest.mark.parametrize(("dtype", "wide_code"), [(np.float32, BINARY32), (np.float64, BINARY64)])
def test_a_nan_whose_payload_alone_differs_does_not_draw_the_challenger_off_a_wrong_element(dtype: type,
                                                                                          wide_code: int) -> None:
    """The defender's revealed chunk holds the honest NaN at element 0 with another payload (RefereeGame rules
    it the same value: NaN as a class) and a wrong value at element 1. Disputing element 0 loses; the honest
    challenger names element 1, the first element the referee would find different."""
    mine = np.array([_payload_nan(dtype, 1), 2.0, 3.0, 4.0], dtype=dtype)
    theirs = mine.copy()
    theirs[0] = _payload_nan(dtype, 2)
    theirs[1] = dtype(2.5)
    assert np.isnan(theirs[0]) and theirs[:1].tobytes() != mine[:1].tobytes()  # element 0: another payload
    player = SimpleNamespace(kit=SimpleNamespace(outputs={(5, 0): mine}))
    game = {"entry": 5, "output": 0, "chunk_index": 0, "chunk": tc.chunks_of(theirs)[0], "wide_code": wide_code,
            "output_size": mine.size}  # fmt: skip
    assert RefereePlayer.choose_element(player, game) == 1  # type: ignore[arg-type]
