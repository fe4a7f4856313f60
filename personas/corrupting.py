"""The children of the `corrupt-op` worker persona: the engine's own entry points, with one kernel call wrong.

    python -m personas.corrupting job_runner  --spec SPEC … (worker.job_runner's arguments)
    python -m personas.corrupting referee_kit --spec SPEC … (engine.referee_kit's arguments)

Before handing over, it wraps the portable `linear` kernel so that, in optimizer step `corrupted_step(spec)`,
the first call's last positive output element has one mantissa bit flipped (`FLIPPED_BIT`). Every later
value of the run follows from that one wrong value, exactly as a buggy or lazy kernel would make it: the
worker commits the state roots of the run it really computed, and its dispute kit replays (and records) the
same wrong call, so its kit agrees with its commits and the game has to reach the element to catch it. Tests only:
production code never imports this package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FLIPPED_BIT = 1 << 20  # a high mantissa bit: the value moves by about 2^-3 of itself, every later state with it
KERNEL = "linear"
ENTRIES = {"job_runner": "worker.job_runner", "referee_kit": "engine.referee_kit"}


def corrupted_step(spec: Any) -> int:
    """The step it corrupts: the last step of segment j = max(1, N//2) (the segment `tamper-segment` alters),
    so for N ≥ 2 the agreed state h_j is not h_0 and the pinned step is not the segment's first."""
    from personas.tampering import tampered_index

    segment = min(tampered_index(spec.num_segments), spec.num_segments - 1)
    return spec.segment_bounds(segment)[1] - 1


def corrupted_element(out: np.ndarray) -> int:
    """The flat index it corrupts: the last positive element (a ReLU after the call would erase a change to
    a negative one; in a causal transformer the first elements are the first token's query, whose one-key
    softmax is 1 whatever it is), the last element when none is positive."""
    positive = np.flatnonzero(out.reshape(-1) > 0)
    return int(positive[-1]) if positive.size else out.size - 1


def install(step: int) -> Callable[[], None]:
    """Wrap the portable CPU and reference `linear` kernels and the training loop's batch fetch: the first
    `linear` call after the batch of step `step` is fetched returns a corrupted copy. Returns the undo."""
    from engine import training
    from engine.portable import cpu, reference

    pending = [False]
    fetch = training.Job._batch

    def batch(self: Any, at: int) -> Any:
        pending[0] = at == step
        return fetch(self, at)

    training.Job._batch = batch  # type: ignore[method-assign]
    kept = [(module, getattr(module, KERNEL)) for module in (cpu, reference)]

    for module in (cpu, reference):
        honest = getattr(module, KERNEL)

        def corrupt(*args: Any, _honest: Any = honest) -> Any:
            out = _honest(*args)
            if not pending[0]:
                return out
            pending[0] = False
            wrong = np.array(out, dtype=np.float32, copy=True)
            wrong.reshape(-1).view(np.uint32)[corrupted_element(wrong)] ^= np.uint32(FLIPPED_BIT)
            return wrong

        setattr(module, KERNEL, corrupt)

    def undo() -> None:
        training.Job._batch = fetch  # type: ignore[method-assign]
        for module, honest in kept:
            setattr(module, KERNEL, honest)

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ENTRIES or "--spec" not in args:
        print(f"usage: python -m personas.corrupting {{{','.join(ENTRIES)}}} --spec FILE …", file=sys.stderr)
        return 2
    from protocol.spec import load_spec

    spec = load_spec(Path(args[args.index("--spec") + 1]).read_bytes())
    install(corrupted_step(spec))
    return int(importlib.import_module(ENTRIES[args[0]]).main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
