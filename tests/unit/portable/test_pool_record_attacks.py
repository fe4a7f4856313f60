"""An attacker's review of the recorder's max_pool_backward running values over overlapping windows (commit 60cae2c,
`record._pool_running_values`): they are the kernel's own fold for every element, over awkward gradients and ties,
for CPU and reference kernels alike; a backward whose dx is not that fold (winners outside their windows) is refused,
not recorded; and (a liveness limit, informational) the running values are one axis of (R² − 1)·|dx| elements, so
a dx that can be committed may have running values that cannot."""

from __future__ import annotations

import numpy as np
import pytest

from engine.portable import cpu, record
from engine.portable import reference as ref
from protocol import tensor_commit as tc
from protocol.errors import EngineError


def _covering(position: int, k: int, s: int, outputs: int) -> list[int]:
    return [o for o in range(outputs) if o * s <= position < o * s + k]


def _slow_running(shape, where, dy, k, s):  # noqa: ANN001, ANN202
    """Slot t of element e by definition: +0, then + dy of each of its first t + 1 covering windows (row-major) it won."""
    b_n, c_n, h_n, w_n = shape
    oh_n, ow_n = where.shape[2:]
    rows = -(-k // s)
    out = np.zeros((rows * rows - 1, b_n, c_n, h_n, w_n), dtype=np.float32)
    for b in range(b_n):
        for c in range(c_n):
            for h in range(h_n):
                for w in range(w_n):
                    total = np.float32(0.0)
                    windows = [(oh, ow) for oh in _covering(h, k, s, oh_n) for ow in _covering(w, k, s, ow_n)]
                    values = []
                    for oh, ow in windows:
                        if where[b, c, oh, ow] == (h - oh * s) * k + (w - ow * s):
                            with np.errstate(all="ignore"):
                                total = np.float32(total + dy[b, c, oh, ow])
                        values.append(total)
                    for t in range(out.shape[0]):
                        out[t, b, c, h, w] = values[t] if t < len(values) else total
    return out.reshape(-1)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = a.reshape(-1), b.reshape(-1)
    return bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("window", [(2, 1), (3, 1), (3, 2)], ids=lambda w: f"k{w[0]}-s{w[1]}")
@pytest.mark.parametrize("seed", range(4))
def test_running_values_are_the_kernels_fold(window: tuple[int, int], seed: int) -> None:
    k, s = window
    rng = np.random.default_rng(seed)
    shape = (2, 2, int(rng.integers(k, 8)), int(rng.integers(k, 8)))
    x = rng.integers(-1, 2, shape).astype(np.float32)  # ties
    _, where = cpu.max_pool(x, k, s)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, -3e38, 1e-45, -1e-45, 1.0, -1.0], dtype=np.float32)
    dy = rng.choice(specials, where.shape).astype(np.float32)
    dx = cpu.max_pool_backward(shape, where, dy, k, s)
    with np.errstate(all="ignore"):  # overflow to ±inf, inf − inf: the kernel's own IEEE results
        assert _same(dx, ref.max_pool_backward(shape, where, dy, k, s))
    running = record._pool_running_values(shape, where, dy, k, s, dx)
    assert _same(running, _slow_running(shape, where, dy, k, s))
    oh_n, ow_n = where.shape[2:]
    fewer = np.array([[len(_covering(h, k, s, oh_n)) * len(_covering(w, k, s, ow_n)) < (-(-k // s)) ** 2
                       for w in range(shape[3])] for h in range(shape[2])])  # fmt: skip
    last = running.reshape(-1)[-int(np.prod(shape)) :].reshape(shape)
    assert _same(last[..., fewer], dx[..., fewer])  # the last slot is dx wherever an element has under R² windows


def test_a_backward_that_is_not_the_fold_is_refused() -> None:
    """Winners outside their windows (a `where` no max_pool made): the kernel adds dy where no rule would, and the
    recorder refuses instead of recording running values that do not end at dx."""
    shape, k, s = (1, 1, 4, 4), 2, 1
    where = np.zeros((1, 1, 3, 3), dtype=np.int64)
    where[0, 0, 0, 0] = k * k  # past the window: the CPU kernel adds its dy to dx[0, 0, 2, 0], in no window of (0, 0)
    dy = np.ones((1, 1, 3, 3), dtype=np.float32)
    dx = cpu.max_pool_backward(shape, where, dy, k, s)
    with pytest.raises(EngineError):
        record._pool_running_values(shape, where, dy, k, s, dx)


def test_running_values_commit_whenever_dx_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the review (low, liveness): as one axis of (R² − 1)·|dx| elements the running values went over
    MAX_DIM once |dx| was over 2**29 (3×3 by 1), and the recorder could not commit the step; as [R² − 1, B, C, H,
    W] every axis is one dx has or at most 8."""
    monkeypatch.setattr(tc, "MAX_DIM", 1_000)  # MAX_DIM scaled down: dx [1, 1, 12, 12] commits, 8·144 values do not
    shape, k, s = (1, 1, 12, 12), 3, 1
    x = np.arange(144, dtype=np.float32).reshape(shape)
    _, where = cpu.max_pool(x, k, s)
    dy = np.ones(where.shape, dtype=np.float32)
    dx = cpu.max_pool_backward(shape, where, dy, k, s)
    tc.tensor_root(dx)
    tc.tensor_root(record._pool_running_values(shape, where, dy, k, s, dx))
