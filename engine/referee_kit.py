"""Build a dispute kit (protocol/referee_kit.py) for one disputed segment of a portable training job.

Torch runs here, so a torch-free daemon runs this module in a child process:

    python -m engine.referee_kit --spec SPEC.json --store DIR --segment I --checkpoint FILE --out DIR [--step T]

Without `--step` it writes the per-step state roots of the segment (what the step bisection needs);
with `--step T` (T relative to the segment, once the step bisection pinned it) it adds the record of
that step, the agreed state r_T and the leaves of r_{T+1}, reusing the roots already in `--out`.
Never unpickles anything: the kit is JSON and canonical safetensors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol import referee_kit as rk
from protocol import tensor_commit as tc


def job_constants(binding: tc.StateBinding) -> tuple[int, int, int, int]:
    """The job constants a kit keeps (`rk.DisputeKit.job_constants`) from a state's binding."""
    return binding.total_steps, binding.per_epoch, binding.segment_length, binding.batch_size


def record_tensors(rec: Any) -> tuple[dict[tuple[int, int], Any], dict[tuple[int, int], Any]]:
    """The tensors a kit keeps of a step record: every entry's outputs and its constant inputs, by (entry, index)."""
    outputs = {(e.index, o): value for e in rec.entries for o, value in enumerate(e.outputs)}
    constants = {(e.index, k): e.loose[k] for e in rec.entries for k, r in enumerate(e.inputs) if r.kind == rk.CONSTANT}
    return outputs, constants


def kit_from_record(segment: int, start_step: int, state_roots: Sequence[bytes], step: int, rec: Any, state: bytes,
                    binding: tc.StateBinding, next_leaves: Sequence[bytes]) -> rk.DisputeKit:  # fmt: skip
    """The kit of a party that holds `rec` (engine.portable.record.StepRecord) for step `step` of the
    segment, r_step's bytes `state` under `binding`, and the leaves of r_{step+1}."""
    entries = [rk.KitEntry(e.index, e.skeleton_bytes(), tuple(e.out_roots), rk.parse_skeleton(e.skeleton_bytes()),
                           rk.entry_hints(e.kernel, e.args)) for e in rec.entries]  # fmt: skip
    outputs, constants = record_tensors(rec)
    return rk.DisputeKit(segment=segment, start_step=start_step, state_roots=list(state_roots),
                         skeleton_root=binding.skeleton_root, record_length=binding.record_length, step=step, state=state,
                         segment_steps=binding.segment_steps, state_names=tuple(rec.state_names), entries=entries,
                         job_constants=job_constants(binding),
                         map_bytes=rec.map_bytes(), next_leaves=list(next_leaves), outputs=outputs,
                         batch=tuple(rec.batch_values), constants=constants)  # fmt: skip


def build_kit(spec: Any, store: Any, segment: int, checkpoint: bytes, directory: Path | str, step: int | None = None,
              skeleton: tuple[bytes, int, int] | None = None) -> rk.DisputeKit:  # fmt: skip
    """Compute and write the kit of `segment` from its agreed checkpoint bytes (h_segment): the state
    roots (reused from `directory` when a kit of this segment is there), then, with `step`, the record
    of that step. `skeleton` (S, L, per_epoch: engine.api.job_skeleton) is recorded from the segment's
    first step when not given."""
    from engine.api import checkpoint_naming, job_per_epoch, record_step, replay_step_bytes, state_binding, step_state_roots
    from protocol.errors import EngineError
    from protocol.spec import load_spec
    from protocol.state_naming import StateRootNaming

    task = load_spec(spec)
    start = task.segment_bounds(segment)[0]
    previous = None
    if (Path(directory) / rk.KIT_JSON).exists():
        previous = rk.load_kit(directory)
        if previous.segment != segment or previous.start_step != start:
            raise rk.KitError(f"dispute kit: {directory} holds segment {previous.segment}, not {segment}")
    if previous is not None:
        skeleton = (previous.skeleton_root, previous.record_length, previous.job_constants[1])
        roots = previous.state_roots
    else:
        if skeleton is None:
            first, _ = record_step(task, store, start, checkpoint)
            skeleton = (first.skeleton_root(), len(first.entries), job_per_epoch(task, store))
        # the replay reads h_segment from the store by its name: its state root for a job whose h_i are
        # state roots (bound to this skeleton), else its sha256
        name = store.put(checkpoint, naming=checkpoint_naming(task, store, segment, skeleton))
        roots = [bytes.fromhex(r.removeprefix("0x"))
                 for r in step_state_roots(task, store, segment, name, skeleton=skeleton)]
    if step is None:
        kit = rk.DisputeKit(segment=segment, start_step=start, state_roots=roots, skeleton_root=skeleton[0],
                            record_length=skeleton[1], job_constants=job_constants(state_binding(task, start, skeleton)))  # fmt: skip
        rk.write_kit(directory, kit)
        return kit
    if not 0 <= step < len(roots) - 1:
        raise EngineError(f"step {step} is not a step of segment {segment} (0..{len(roots) - 2})")
    state = checkpoint
    for offset in range(step):
        _, state = replay_step_bytes(task, store, start + offset, state, device="cpu")
    rec, reached = record_step(task, store, start + step, state)
    if (rec.skeleton_root(), len(rec.entries)) != tuple(skeleton[:2]):
        raise EngineError("the recorded step's skeleton differs from the job's (S, L)")
    binding = state_binding(task, start + step, skeleton)
    next_leaves = tc.bound_state_leaves(reached, state_binding(task, start + step + 1, skeleton))
    kit = kit_from_record(segment, start, roots, step, rec, state, binding, next_leaves)
    if tc.state_root(state, binding) != roots[step] or tc.tree_root(next_leaves, tc.STATE_NODE) != roots[step + 1]:
        raise EngineError("the replayed states differ from the segment's state roots (a nondeterministic replay?)")
    # r_t into the store the kit was built from (the worker's serves it): should the game escalate, the
    # arbiter replays this one step from it (level 2)
    store.put(state, naming=StateRootNaming(binding))
    rk.write_kit(directory, kit)
    return kit


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.referee_kit", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--segment", required=True, type=_count)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--step", type=_count, default=None)
    args = parser.parse_args(argv)
    from protocol.artifacts import LocalStore
    from protocol.errors import TesseraError

    try:
        build_kit(args.spec.read_bytes(), LocalStore(args.store), args.segment, args.checkpoint.read_bytes(), args.out, args.step)
    except TesseraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
