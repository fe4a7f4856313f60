"""The worker's extra compute to answer a level-2/3 dispute, as a fraction of the disputed segment's compute
(`python -m bench.dispute_compute`).

Setup: the `tiny_gpt_spec` preset (two blocks, d = 32, dropout 0.1, batch 16) in portable/1 on CPU, one
segment of `SEGMENT_STEPS` steps. Each figure is the median of `REPEATS` runs in this one process:

- `segment_s`: training the segment from checkpoint 0 (what the worker computed before committing).
- `step_roots_s`: `engine.api.step_state_roots`, the replay of the segment with the keccak state root of
  every step's state: what the worker needs to answer the step bisection (a worker that kept the roots
  from its own run would need none of it).
- `record_s`: `engine.api.record_step` of one step, its skeleton root S and every prefix root P_j: what it
  needs to answer the operation bisection, the entry reveal and the element proofs of the pinned step.

`dispute_extra_compute_fraction` = (step_roots_s + record_s) / segment_s. The challenger pays the same
to play its side.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any, Callable

SEGMENT_STEPS = 20  # the preset's own segment length
REPEATS = 3


def _median_seconds(run: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def measure() -> dict[str, dict]:
    from engine.api import checkpoint_naming, initial_checkpoint, record_step, replay_checkpoint_bytes, step_state_roots
    from engine.presets import tiny_gpt_spec
    from protocol.artifacts import LocalStore

    spec = tiny_gpt_spec(arithmetic="portable/1", steps=2 * SEGMENT_STEPS, segment_steps=SEGMENT_STEPS, device="cpu")
    with tempfile.TemporaryDirectory(prefix="tessera-dispute-compute-") as tmp:
        store = LocalStore(tmp)
        state = initial_checkpoint(spec, store)
        h_0 = store.put(state, naming=checkpoint_naming(spec, store, 0))  # h_0: its state root
        segment_s = _median_seconds(lambda: replay_checkpoint_bytes(spec, store, 0, state, device="cpu"))
        roots: list[str] = []
        step_roots_s = _median_seconds(lambda: roots.extend(step_state_roots(spec, store, 0, h_0, device="cpu")))

        def answer_one_step() -> None:
            record, _ = record_step(spec, store, 0, state)
            record.skeleton_root()
            record.prefix_roots()

        record_s = _median_seconds(answer_one_step)
        entries = len(record_step(spec, store, 0, state)[0].entries)
    how = (f"tiny GPT (2 blocks, d=32, batch 16, dropout 0.1), portable/1 on CPU, a segment of {SEGMENT_STEPS} "
           f"steps; medians of {REPEATS} runs in one process")
    fraction = (step_roots_s + record_s) / segment_s
    return {
        "dispute_extra_compute_fraction": {
            "value": round(fraction, 3), "unit": "x segment",
            "how": f"(step state roots + one step's record and prefix roots) / training the segment; {how}"},
        "dispute_step_roots_over_segment": {
            "value": round(step_roots_s / segment_s, 3), "unit": "x segment",
            "how": f"replaying the segment with a keccak state root per step / training it; {how}"},
        "dispute_record_over_segment": {
            "value": round(record_s / segment_s, 3), "unit": "x segment",
            "how": f"recording one step ({entries} kernel calls) with S and every P_j / training the segment; {how}"},
    }  # fmt: skip


if __name__ == "__main__":
    for key, figure in measure().items():
        print(f"{key}: {figure['value']} {figure['unit']} ({figure['how']})")
