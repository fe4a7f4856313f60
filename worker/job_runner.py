"""Child process entry point: run one job's spec with the engine and write the result as JSON.

`python -m worker.job_runner --spec FILE --store URI --out FILE [--device cpu|cuda] [--stop-at UNIX]`

Started by `worker.executor.Executor`, never by hand. The parent wrote the spec bytes after
checking them against the on-chain spec hash; this process trains, puts every checkpoint, the
output and the fingerprint into the store, and writes `engine.api.RunResult` as JSON to `--out`
(atomically: temp file + rename). Errors are written as `{"error": ..., "type": ...}` with exit
code 3, so the parent never has to unpickle anything. Progress goes to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf8") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the spec, write the result file; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m worker.job_runner")
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default=None)
    parser.add_argument("--stop-at", type=float, default=None, help="unix time at which to give up")
    args = parser.parse_args(argv)

    from protocol.errors import TesseraError

    try:
        from engine.api import run_spec
        from protocol.artifacts import open_store

        spec_bytes = args.spec.read_bytes()
        store = open_store(args.store)

        def on_segment(index: int, state_hash: str) -> None:
            print(json.dumps({"segment": index, "hash": state_hash, "t": time.time()}), flush=True)

        def should_stop() -> bool:
            return args.stop_at is not None and time.time() >= args.stop_at

        result = run_spec(spec_bytes, store, device=args.device, on_segment=on_segment, should_stop=should_stop)
    except TesseraError as exc:
        _write_json(args.out, {"error": str(exc), "type": type(exc).__name__})
        return 3
    except MemoryError:
        _write_json(args.out, {"error": "out of memory (the worker's memory limit)", "type": "MemoryError"})
        return 3
    _write_json(args.out, {"result": result.model_dump(mode="json")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
