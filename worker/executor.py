"""Run the engine in a child process: isolated from the event loop, killable, time- and memory-bounded.

The child is `python -m worker.job_runner` (our own code; the job only provides a validated spec).
It gets its own session (a Ctrl-C at the terminal reaches the daemon, which then stops the child
cleanly), `PR_SET_PDEATHSIG` so it dies with the daemon, a memory limit via `setrlimit`
(`RLIMIT_AS` on CPU; `RLIMIT_DATA` on CUDA, whose drivers reserve huge virtual ranges), and a fixed
thread count. The result comes back as JSON in a file, never pickled. A child still running at its
`stop_at` time (the job deadline minus the configured margin) gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("tessera.executor")

MAX_RESULT_BYTES = 16 * 1024 * 1024
PR_SET_PDEATHSIG = 1


@dataclass
class RunOutcome:
    """How a run ended: `result` (RunResult as a dict) or `error` with its kind."""

    job_id: int
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class RunHandle:
    """A child that is (or was) running one job."""

    job_id: int
    process: subprocess.Popen
    result_path: Path
    log_path: Path
    started_at: float
    stop_at: float | None
    device: str
    stopping_since: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid


def child_limits(memory_bytes: int, device: str) -> Any:
    """preexec_fn for the child: memory limit, die with the parent."""
    def apply() -> None:
        which = resource.RLIMIT_DATA if device.startswith("cuda") else resource.RLIMIT_AS
        resource.setrlimit(which, (memory_bytes, memory_bytes))
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:  # not Linux: the daemon still stops children on drain
            pass
    return apply


class Executor:
    """Starts, watches and stops job children. One result file per job id under `work_dir`."""

    def __init__(self, work_dir: Path, *, memory_limit_mb: int = 8_192, torch_threads: int = 1,
                 python: str = sys.executable, stop_grace: float = 10.0) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.memory_bytes = memory_limit_mb * 1024 * 1024
        self.torch_threads = torch_threads
        self.python = python
        self.stop_grace = stop_grace
        self.running: dict[int, RunHandle] = {}
        # the child's entry after the interpreter (a hook: a test persona runs its own wrapper of it)
        self.runner: tuple[str, ...] = ("-m", "worker.job_runner")

    def result_path(self, job_id: int) -> Path:
        return self.work_dir / f"job-{job_id}.result.json"

    def start(self, job_id: int, spec_bytes: bytes, store_uri: str, *, device: str = "cpu",
              stop_at: float | None = None, gpu_index: int | None = None) -> RunHandle:
        """Write the spec and start the child; a previous result file for this job is discarded."""
        if job_id in self.running:
            return self.running[job_id]
        spec_path = self.work_dir / f"job-{job_id}.spec.json"
        spec_path.write_bytes(spec_bytes)
        result_path = self.result_path(job_id)
        result_path.unlink(missing_ok=True)
        log_path = self.work_dir / f"job-{job_id}.log"
        env = dict(os.environ)
        threads = str(self.torch_threads)
        env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                    "PYTHONUNBUFFERED": "1"})
        if gpu_index is not None and device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
        cmd = [self.python, *self.runner, "--spec", str(spec_path), "--store", store_uri,
               "--out", str(result_path), "--device", device]
        if stop_at is not None:
            cmd += ["--stop-at", f"{stop_at:.3f}"]
        with open(log_path, "ab") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                       start_new_session=True, preexec_fn=child_limits(self.memory_bytes, device))
        handle = RunHandle(job_id=job_id, process=process, result_path=result_path, log_path=log_path,
                           started_at=time.time(), stop_at=stop_at, device=device)
        self.running[job_id] = handle
        log.info("job %s: run started (pid %s, device %s)", job_id, process.pid, device,
                 extra={"event": "run_start", "job_id": job_id, "pid": process.pid})
        return handle

    def read_result(self, job_id: int) -> RunOutcome | None:
        """The outcome written by a child for `job_id` (this life or a previous one), or None."""
        path = self.result_path(job_id)
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_RESULT_BYTES:
            return RunOutcome(job_id, error="result file too large", error_type="EngineError")
        try:
            payload = json.loads(path.read_text(encoding="utf8"))
        except (OSError, ValueError) as exc:
            return RunOutcome(job_id, error=f"unreadable result file: {exc}", error_type="EngineError")
        if isinstance(payload, dict) and isinstance(payload.get("result"), dict):
            return RunOutcome(job_id, result=payload["result"])
        if isinstance(payload, dict) and "error" in payload:
            return RunOutcome(job_id, error=str(payload["error"]), error_type=str(payload.get("type", "")))
        return RunOutcome(job_id, error="malformed result file", error_type="EngineError")

    def discard(self, job_id: int) -> None:
        """Forget the finished result of `job_id`, so the next `poll` waits for a new run instead of
        handing back the old one (a job run again because its trace no longer fits)."""
        if job_id not in self.running:
            self.result_path(job_id).unlink(missing_ok=True)

    def poll(self, job_id: int) -> RunOutcome | None:
        """None while the child runs; its outcome once it ended. Enforces `stop_at`."""
        handle = self.running.get(job_id)
        if handle is None:
            return self.read_result(job_id)
        code = handle.process.poll()
        if code is None:
            now = time.time()
            if handle.stop_at is not None and now >= handle.stop_at + 2.0 and handle.stopping_since is None:
                # The child checks stop_at itself between steps; this is for one that does not answer.
                log.warning("job %s: run past its stop time; stopping", job_id,
                            extra={"event": "run_overtime", "job_id": job_id})
                self._signal(handle, signal.SIGTERM)
                handle.stopping_since = now
            elif handle.stopping_since is not None and now - handle.stopping_since > self.stop_grace:
                self._signal(handle, signal.SIGKILL)
            return None
        del self.running[job_id]
        outcome = self.read_result(job_id)
        if outcome is None:
            reason = f"killed by signal {-code}" if code < 0 else f"exited with code {code} without a result"
            if code == -signal.SIGKILL or code == 137:
                reason += " (possibly the memory limit)"
            outcome = RunOutcome(job_id, error=reason, error_type="EngineError")
        log.info("job %s: run ended (%s)", job_id, "ok" if outcome.ok else outcome.error,
                 extra={"event": "run_end", "job_id": job_id, "ok": outcome.ok,
                        "seconds": round(time.time() - handle.started_at, 3)})
        return outcome

    def _signal(self, handle: RunHandle, sig: int) -> None:
        try:
            os.killpg(handle.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, job_id: int, grace: float | None = None) -> None:
        """Stop one child: SIGTERM, wait `grace`, then SIGKILL."""
        handle = self.running.pop(job_id, None)
        if handle is None:
            return
        self._signal(handle, signal.SIGTERM)
        try:
            handle.process.wait(timeout=self.stop_grace if grace is None else grace)
        except subprocess.TimeoutExpired:
            self._signal(handle, signal.SIGKILL)
            handle.process.wait(timeout=10)
        log.info("job %s: run stopped", job_id, extra={"event": "run_stopped", "job_id": job_id})

    def stop_all(self, grace: float | None = None) -> None:
        """Stop every child (drain)."""
        for job_id in list(self.running):
            self.stop(job_id, grace)
