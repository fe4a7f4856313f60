"""Child process of `worker.judging`: recompute a job's committed values, or describe this environment.

`python -m worker.judge_child --task FILE --out FILE` runs the checks in the task JSON (written by
`worker.judging.run_checks`) and writes one result per finished check, as JSON, after each check (so a
budget cut keeps what was done). `python -m worker.judge_child --describe --device cpu|cuda` prints the
environment class this process sees. For a portable training job (`stage_from` in the task) the child
stages each checkpoint from the worker's store itself, verified by its state root (which needs the job's
step-record skeleton, recorded here with torch), and writes (S, L) to `skeleton_out`. A KIT check (a
worker screening a portable training job) says whether a dispute kit of the job's steps can be loaded.
Never started by hand; never unpickles anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _describe(device: str) -> int:
    from engine.determinism import local_env_class

    descriptor, env_class = local_env_class(device)
    print(json.dumps({"env_class": env_class, "descriptor": descriptor}))
    return 0


def _run(task_path: Path, out_path: Path) -> int:
    from engine.api import (checkpoint_naming, dispute_kit_problem, extract_output, initial_checkpoint,
                            replay_checkpoint_bytes, validate_checkpoint)
    from protocol.artifacts import LocalStore, name_of
    from protocol.errors import ArtifactError, CheckpointError, DivergedError, EngineError, HashMismatchError
    from protocol.hashing import DIVERGED_HASH, sha256_hex
    from protocol.spec import load_spec
    from worker.judging import (KIT_FITS, Check, CheckKind, CheckResult, Outcome, open_worker_store,
                                stage_checkpoint)

    task = json.loads(task_path.read_text())
    spec = load_spec(task["spec"].encode())
    cache = LocalStore(task["cache"])
    device, recompute = task["device"], bool(task["recompute"])
    stage_from = task.get("stage_from")  # a portable job: its checkpoints are staged here, by state root
    source = None if stage_from is None else open_worker_store(
        stage_from["uri"], timeout=float(stage_from["timeout"]), max_bytes=int(stage_from["max_bytes"]),
        deadline=time.monotonic() + float(stage_from["budget_s"]))
    results: list[dict] = []

    def record(check: Check, outcome: Outcome, recomputed: str | None = None, detail: str = "") -> None:
        results.append(CheckResult(check=check, outcome=outcome, recomputed=recomputed, detail=detail[:500])
                       .model_dump(mode="json"))
        tmp = out_path.with_name(out_path.name + ".tmp")
        tmp.write_text(json.dumps(results))
        os.replace(tmp, out_path)

    for raw in task["checks"]:
        check = Check.model_validate(raw)
        try:
            if check.kind is CheckKind.INITIAL:
                if not recompute:
                    record(check, Outcome.VALID, detail="initial state not recomputed outside the job's class")
                    continue
                initial = initial_checkpoint(spec, cache, device=device)
                reached = name_of(initial, checkpoint_naming(spec, cache, 0))
            elif check.kind is CheckKind.KIT:
                problem = dispute_kit_problem(spec, cache)  # recorded with the skeleton an INITIAL check named
                if problem is not None:
                    record(check, Outcome.MISMATCH, "too large", f"a dispute kit of its steps could not be loaded: {problem}")
                    continue
                reached = KIT_FITS
            elif check.kind is CheckKind.STEP:
                if not recompute:
                    record(check, Outcome.VALID, detail="step not recomputed outside the job's class")
                    continue
                reached, why = _pinned_step(spec, cache, source, check, device, int((stage_from or {}).get("max_bytes", 0)))
                if why is not None:
                    record(check, Outcome.CHECKPOINT_MISSING, detail=f"agreed state {check.checkpoint}: {why}")
                    continue
            else:
                naming = checkpoint_naming(spec, cache, check.boundary)  # h_i: sha256, or a state root
                if source is not None:
                    why = stage_checkpoint(cache, source, check.checkpoint, int(stage_from["max_bytes"]), naming)
                    if why is not None:
                        record(check, Outcome.CHECKPOINT_MISSING, detail=f"checkpoint {check.checkpoint}: {why}")
                        continue
                data = cache.get(check.checkpoint, naming=naming)  # verified when staged, and again here
                if check.kind is CheckKind.OUTPUT:
                    reached = sha256_hex(extract_output(spec, cache, data, device=device))
                elif not recompute:
                    validate_checkpoint(spec, cache, check.boundary, data, device=device)
                    record(check, Outcome.VALID, detail="checkpoint valid; computation not judged outside the "
                                                        "job's class")
                    continue
                else:
                    try:
                        reached, _ = replay_checkpoint_bytes(spec, cache, check.boundary, data, device=device)
                    except DivergedError:
                        # the spec diverges here, deterministically: the honest trace says so from h_{i+1} on
                        reached = DIVERGED_HASH
        except CheckpointError as exc:
            record(check, Outcome.CHECKPOINT_INVALID, detail=str(exc))
            continue
        except HashMismatchError as exc:
            record(check, Outcome.INPUT_MISSING, detail=f"an input does not hash to its reference: {exc}")
            continue
        except ArtifactError as exc:
            record(check, Outcome.INPUT_MISSING, detail=str(exc))
            continue
        except EngineError as exc:
            record(check, Outcome.ERROR, detail=str(exc))
            continue
        outcome = Outcome.MATCH if reached == check.expected.lower() else Outcome.MISMATCH
        record(check, outcome, reached, "" if outcome is Outcome.MATCH else f"recomputed {reached}, committed {check.expected}")
    if not results:
        out_path.write_text("[]")
    if source is not None and task.get("skeleton_out"):
        _write_skeleton(spec, cache, Path(task["skeleton_out"]))
    return 0


def _pinned_step(spec: object, cache: object, source: object, check: object, device: str,
                 max_bytes: int) -> tuple[str, str | None]:
    """Level 2: the root of the state one step after the agreed r_t of an escalated referee game, r_t
    staged from the worker's store (the defender posted its root in the step bisection, so it must serve
    it, like a checkpoint) and verified by its root; (root reached, None), or ("", why r_t is missing)."""
    from engine.api import job_skeleton, replay_step_bytes, state_binding
    from protocol import tensor_commit as tc
    from protocol.hashing import to_hex
    from protocol.state_naming import StateRootNaming
    from worker.judging import stage_checkpoint

    skeleton = job_skeleton(spec, cache)
    step = spec.segment_bounds(check.boundary)[0] + int(check.step)  # type: ignore[attr-defined]
    naming = StateRootNaming(state_binding(spec, step, skeleton))
    if source is None:
        return "", "the job's states are not named by state roots"
    why = stage_checkpoint(cache, source, check.checkpoint, max_bytes, naming)  # type: ignore[attr-defined]
    if why is not None:
        return "", why
    data = cache.get(check.checkpoint, naming=naming)  # type: ignore[attr-defined]
    _, after = replay_step_bytes(spec, cache, step, data, device=device)
    return to_hex(tc.state_root(after, state_binding(spec, step + 1, skeleton))), None


def _write_skeleton(spec: object, cache: object, path: Path) -> None:
    """(S, L, per_epoch) of the portable job for the parent (it publishes evidence under the same names)."""
    from engine.api import job_skeleton
    from protocol.errors import TesseraError

    try:
        root, length, per_epoch = job_skeleton(spec, cache)  # recorded already when a check named a checkpoint
    except TesseraError:
        return
    path.write_text(json.dumps({"skeleton_root": "0x" + root.hex(), "record_length": length, "per_epoch": per_epoch}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.judge_child")
    parser.add_argument("--describe", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--task", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.describe:
        return _describe(args.device)
    if args.task is None or args.out is None:
        parser.error("--task and --out are required")
    return _run(args.task, args.out)


if __name__ == "__main__":
    sys.exit(main())
