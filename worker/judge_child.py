"""Child process of `worker.judging`: recompute a job's committed values, or describe this environment.

`python -m worker.judge_child --task FILE --out FILE` runs the checks in the task JSON (written by
`worker.judging.run_checks`) and writes one result per finished check, as JSON, after each check (so a
budget cut keeps what was done). `python -m worker.judge_child --describe --device cpu|cuda` prints the
environment class this process sees; `--skeleton --task FILE --out FILE` writes a portable training
job's step-record skeleton (S, L), which names its checkpoints (state roots). Never started by hand;
never unpickles anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _describe(device: str) -> int:
    from engine.determinism import local_env_class

    descriptor, env_class = local_env_class(device)
    print(json.dumps({"env_class": env_class, "descriptor": descriptor}))
    return 0


def _skeleton(task_path: Path, out_path: Path) -> int:
    """Write the job's step-record skeleton (S, L) as JSON: what names its checkpoints (state roots)."""
    from engine.api import job_skeleton
    from protocol.artifacts import LocalStore
    from protocol.spec import load_spec

    task = json.loads(task_path.read_text())
    root, length = job_skeleton(load_spec(task["spec"].encode()), LocalStore(task["cache"]))
    out_path.write_text(json.dumps({"skeleton_root": "0x" + root.hex(), "record_length": length}))
    return 0


def _run(task_path: Path, out_path: Path) -> int:
    from engine.api import (checkpoint_naming, extract_output, initial_checkpoint, replay_checkpoint_bytes,
                            validate_checkpoint)
    from protocol.artifacts import LocalStore, name_of
    from protocol.errors import ArtifactError, CheckpointError, DivergedError, EngineError, HashMismatchError
    from protocol.hashing import DIVERGED_HASH, sha256_hex
    from protocol.spec import load_spec
    from worker.judging import Check, CheckKind, CheckResult, Outcome

    task = json.loads(task_path.read_text())
    spec = load_spec(task["spec"].encode())
    cache = LocalStore(task["cache"])
    device, recompute = task["device"], bool(task["recompute"])
    skeleton = task.get("skeleton")  # (S, L) the parent named the staged checkpoints with, if portable
    skeleton = (bytes.fromhex(skeleton[0][2:]), int(skeleton[1])) if skeleton else None
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
                reached = name_of(initial, checkpoint_naming(spec, cache, 0, skeleton))
            else:
                # staged by the parent under the same naming (h_i: sha256, or a portable job's state root)
                data = cache.get(check.checkpoint, naming=checkpoint_naming(spec, cache, check.boundary, skeleton))
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
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.judge_child")
    parser.add_argument("--describe", action="store_true")
    parser.add_argument("--skeleton", action="store_true", help="write the job's step-record skeleton (S, L)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--task", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.describe:
        return _describe(args.device)
    if args.task is None or args.out is None:
        parser.error("--task and --out are required")
    return _skeleton(args.task, args.out) if args.skeleton else _run(args.task, args.out)


if __name__ == "__main__":
    sys.exit(main())
