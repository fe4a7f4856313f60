"""Recomputing what a job committed, for the verifier and the arbiter alike (level-1 disputes).

Both daemons judge the same three things, by the same code:

- **initial**: checkpoint 0 must be the spec's initial state (`engine.api.initial_checkpoint`);
- **segment i**: the replay of segment i from checkpoint h_i must reach h_{i+1} (or, outside the job's
  environment class, checkpoint h_i must at least be a valid checkpoint of that boundary);
- **output**: the output must be the one extracted from checkpoint N (`engine.api.extract_output`:
  pure data movement, the same bits on any machine).

The parent (this module, no torch) fetches the spec, stages the inputs and checkpoints into a local
cache (every byte hash-checked by the store), and runs the recomputation in a child process
(`python -m worker.judge_child`) with a wall-time budget and a memory limit, optionally in another
CPU kernel set (`ATEN_CPU_CAPABILITY`) so one machine can reproduce several environment classes. A
hostile job therefore costs at most its budget, once, and never the daemon's event loop. A portable
training job's checkpoints are named by state roots bound to its step record (docs/referee.md, section
2), which only a process with torch can record: the child stages those itself, verified by their roots.
"""

from __future__ import annotations

import enum
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.errors import ArtifactError, DisputeError, HashMismatchError, SpecError, StoreWriteError, TesseraError

HEX32_RE = re.compile(r"^0x[0-9a-f]{64}$")
ZERO_HASH = "0x" + "00" * 32
CHILD_START_S = 20.0  # interpreter + torch import + spec load, on a loaded 2-core machine
MAX_RESULT_BYTES = 1_000_000


class CheckKind(str, enum.Enum):
    INITIAL = "initial"
    SEGMENT = "segment"
    OUTPUT = "output"
    STEP = "step"  # level 2: one step of a refereed SEGMENT claim whose game escalated
    # screening only (a worker before it claims a portable training job): could a party load a dispute kit
    # of the job's steps? MATCH, recomputed KIT_FITS: yes; MISMATCH: no, the detail says why (never a finding)
    KIT = "kit"


KIT_FITS = "fits"  # what a KIT check expects and recomputes when a kit of the job's steps can be loaded


class Outcome(str, enum.Enum):
    """How one check ended. Every outcome but MATCH, VALID and ERROR is the worker's fault."""

    MATCH = "match"  # recomputed exactly what was committed
    VALID = "valid"  # checkpoint validated, computation not judged (another environment class)
    MISMATCH = "mismatch"  # recomputed something else (a diverging replay recomputes DIVERGED_HASH)
    CHECKPOINT_MISSING = "checkpoint_missing"  # not fetchable, or the bytes served do not hash to it
    CHECKPOINT_INVALID = "checkpoint_invalid"  # hashes right but is not that boundary's checkpoint of the spec
    INPUT_MISSING = "input_missing"  # a dataset, weights or inputs the job needs could not be fetched
    CLASS_MISMATCH = "class_mismatch"  # the job's class does not fit its spec's arithmetic: no honest commit exists
    ERROR = "error"  # the judge itself failed (budget, memory, crash): no finding either way

    @property
    def worker_wrong(self) -> bool:
        return self not in (Outcome.MATCH, Outcome.VALID, Outcome.ERROR)


class Check(BaseModel):
    """One recomputation. `boundary`: 0 (initial), i (segment i, from h_i), N (output, from h_N). A STEP
    check (level 2) is step `step` of segment i (counted from the segment's first step): `checkpoint` is the
    agreed state r_t's root, which the worker must serve, and `expected` the disputed r_{t+1}'s root."""

    model_config = ConfigDict(frozen=True)

    kind: CheckKind
    boundary: int = Field(ge=0)
    checkpoint: str | None = None  # the checkpoint it starts from (h_i or h_N); None for initial
    expected: str  # what was committed: h_0, h_{i+1}, or the output hash (STEP: r_{t+1})
    step: int | None = Field(default=None, ge=0)  # STEP only


class CheckResult(BaseModel):
    check: Check
    outcome: Outcome
    recomputed: str | None = None
    detail: str = ""

    @property
    def recomputed_or_zero(self) -> str:
        return self.recomputed or ZERO_HASH


# ---------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------

def plan_checks(state_hashes: Sequence[str], output_hash: str, segments: Sequence[int], *,
                initial: bool = True, output: bool = True) -> list[Check]:
    """The checks of a committed trace: initial (optional), each of `segments`, output (optional).

    A trace that says the run diverged always gets the segment it says divergence began in checked
    too: that one claim stands for every boundary after it."""
    from protocol.hashing import DIVERGED_HASH

    n = len(state_hashes) - 1
    if n < 1:
        raise DisputeError(f"a trace has at least h_0 and h_1, got {len(state_hashes)} hash(es)")
    checks = [Check(kind=CheckKind.INITIAL, boundary=0, expected=state_hashes[0])] if initial else []
    lowered = [h.lower() for h in state_hashes]
    segments = list(segments)
    if DIVERGED_HASH in lowered[1:]:
        segments.append(lowered.index(DIVERGED_HASH, 1) - 1)
    for segment in sorted(set(segments)):
        if not 0 <= segment < n:
            raise DisputeError(f"segment {segment} outside 0..{n - 1}")
        checks.append(Check(kind=CheckKind.SEGMENT, boundary=segment, checkpoint=state_hashes[segment],
                            expected=state_hashes[segment + 1]))
    if output:
        checks.append(Check(kind=CheckKind.OUTPUT, boundary=n, checkpoint=state_hashes[n], expected=output_hash))
    return checks


# ---------------------------------------------------------------------------------------------------
# Fetching (hash-checked by the stores)
# ---------------------------------------------------------------------------------------------------

def is_own_failure(exc: BaseException) -> bool:
    """True when `exc` is a failure of our side (the chain RPC, our disk, our memory): worth retrying
    later. Anything else a job's check raises was made by the job (its spec, its servers, its bytes)
    and is recorded once, never retried."""
    from worker.runtime.daemon import is_rpc_failure

    if isinstance(exc, StoreWriteError) or is_rpc_failure(exc):
        return True
    return isinstance(exc, (OSError, MemoryError)) and not isinstance(exc, ArtifactError)


def fetch_spec(spec_uri: str, spec_hash: str, *, max_bytes: int = 1_000_000, timeout: float = 30.0,
               fallback_uris: Sequence[str] = (), deadline: float | None = None) -> Any:
    """Fetch the job's spec by hash from `spec_uri` (a store URI, or a URL ending in the hash) and parse it.

    `fallback_uris` are tried next: the worker's store, where the worker keeps the spec it claimed (so a
    submitter that takes its spec down cannot make the job unjudgeable). The bytes must hash to the posted
    spec hash; `protocol.spec.load_spec` validates them.
    """
    from protocol.artifacts import open_store
    from protocol.spec import load_spec

    candidates = [spec_uri]
    tail = spec_uri.rstrip("/").rsplit("/", 1)
    if len(tail) == 2 and re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", tail[1]):
        candidates.append(tail[0])  # the URI names the artifact itself: its folder is the store
    candidates += [uri for uri in fallback_uris if uri and uri not in candidates]
    errors = []
    for uri in candidates:
        try:
            store = open_store(uri, timeout=timeout, max_bytes=max_bytes, deadline=deadline, create=False)
            return load_spec(store.get(spec_hash, max_bytes=max_bytes))
        except StoreWriteError:
            raise  # our disk, not the job's servers
        except (ArtifactError, HashMismatchError, SpecError, ValueError) as exc:
            errors.append(f"{uri}: {exc}")
    raise ArtifactError(f"spec {spec_hash} not fetchable from {spec_uri!r}: {'; '.join(errors)}")


SPEC_FETCH_ATTEMPTS = 3


def fetch_spec_within(spec_uri: str, spec_hash: str, *, deadline: float, max_bytes: int, timeout: float,
                      fallback_uris: Sequence[str] = ()) -> Any:
    """`fetch_spec`, tried up to SPEC_FETCH_ATTEMPTS times with pauses while `deadline` (monotonic)
    allows: a one-off network failure is nobody's fault, but the job's budget bounds the whole of it.
    Raises the last ArtifactError when no attempt got the spec."""
    for attempt in range(SPEC_FETCH_ATTEMPTS):
        try:
            return fetch_spec(spec_uri, spec_hash, max_bytes=max_bytes, timeout=timeout,
                              fallback_uris=fallback_uris, deadline=deadline)
        except StoreWriteError:
            raise
        except ArtifactError:
            pause = 2.0 * (attempt + 1)
            if attempt + 1 == SPEC_FETCH_ATTEMPTS or time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


class UnservedStore:
    """Stands for a worker's store whose URI names no usable store (control characters, a malformed
    host): it serves nothing, so every checkpoint is missing, which is the worker's fault."""

    writable = False

    def __init__(self, uri: str, why: str) -> None:
        self.uri, self.why = uri, why

    def get(self, hash_hex: str, max_bytes: int = 0, naming: Any = None) -> bytes:
        raise ArtifactError(f"the worker's store URI is unusable: {self.why}")

    def has(self, hash_hex: str) -> bool:
        return False

    def put(self, data: bytes, naming: Any = None) -> str:
        raise ArtifactError(f"the worker's store URI is unusable: {self.why}")


def open_worker_store(uri: str, *, timeout: float, max_bytes: int, deadline: float | None = None) -> Any:
    """The store a worker committed (`artifact_uri`); an unusable URI is a store that serves nothing."""
    from protocol.artifacts import open_store

    try:
        return open_store(uri, timeout=timeout, max_bytes=max_bytes, deadline=deadline, create=False)
    except StoreWriteError:
        raise
    except ArtifactError as exc:
        return UnservedStore(uri, str(exc))


def input_refs(spec: Any) -> list[Any]:
    """The artifacts a job reads besides its checkpoints: dataset, initial weights, a LoRA adapter, inputs."""
    return [ref for ref in (spec.dataset, spec.init_weights, getattr(spec, "adapter", None), spec.inputs) if ref is not None]


def input_limit(spec: Any, ref: Any) -> int:
    """The most bytes staging reads for input `ref` of `spec`: weights (init_weights, a LoRA adapter) are
    float32 tensors of a size the spec fixes, whatever `max_dataset_bytes` says (a limit the submitter sets up
    to 16 GiB); datasets and inputs are bounded by `max_dataset_bytes`."""
    from protocol.spec import CHECKPOINT_OVERHEAD_BYTES, estimate_parameters, lora_parameters

    if ref is spec.init_weights:
        return 4 * estimate_parameters(spec) + CHECKPOINT_OVERHEAD_BYTES
    if ref is getattr(spec, "adapter", None):
        return 4 * lora_parameters(spec) + CHECKPOINT_OVERHEAD_BYTES
    return int(spec.resources.max_dataset_bytes)


def stage_inputs(spec: Any, cache: Any, sources: Sequence[Any], *, timeout: float = 30.0,
                 deadline: float | None = None) -> list[str]:
    """Copy the spec's dataset / initial weights / inputs into `cache` (where the recomputation reads
    them); return what could not be found anywhere (`builtin://` references are left to the engine).

    Tries the spec's own URI hints first, then `sources` (e.g. the worker's store: a worker must serve
    every input it used); every copy is hash-checked by the store it comes from.
    """
    from protocol.artifacts import open_store

    missing: list[str] = []
    for ref in input_refs(spec):
        if cache.has(ref.hash) or any(uri.startswith("builtin://") for uri in ref.uris):
            continue
        limit = input_limit(spec, ref)
        stores: list[Any] = []
        for uri in ref.uris:
            try:
                stores.append(open_store(uri, timeout=timeout, max_bytes=limit, deadline=deadline, create=False))
            except (ArtifactError, ValueError):
                continue
        for store in [*stores, *sources]:
            try:
                cache.put(store.get(ref.hash, max_bytes=limit))
                break
            except StoreWriteError:
                raise  # our disk: not a missing input
            except (ArtifactError, HashMismatchError, ValueError):
                continue
        else:
            missing.append(ref.hash)
    return missing


def stage_checkpoint(cache: Any, source: Any, checkpoint: str, max_bytes: int, naming: Any = None) -> str | None:
    """Make checkpoint `checkpoint` available in `cache`, verified under `naming` (sha256 when None, a
    state root for a portable training job's); None when done, else why it is missing."""
    if cache.has(checkpoint):
        return None  # everything in the cache was verified under its naming when it was put
    try:
        if naming is None:
            cache.put(source.get(checkpoint, max_bytes=max_bytes))
        else:
            cache.put(source.get(checkpoint, max_bytes=max_bytes, naming=naming), naming=naming)
    except StoreWriteError:
        raise  # our disk: not a missing checkpoint
    except HashMismatchError as exc:
        return f"the bytes served do not hash to it: {exc}"
    except (ArtifactError, ValueError) as exc:
        return f"not fetchable: {exc}"
    return None


# ---------------------------------------------------------------------------------------------------
# Recomputing in a child process
# ---------------------------------------------------------------------------------------------------

class Environment(BaseModel):
    """An environment class this machine reproduces: its hash, its descriptor, and how to enter it."""

    env_class: str
    descriptor: dict[str, Any]
    device: Literal["cpu", "cuda"]
    cpu_capability: str | None = None  # ATEN_CPU_CAPABILITY for the child (None: the machine's own)

    def child_env(self) -> dict[str, str]:
        env = {"ATEN_CPU_CAPABILITY": self.cpu_capability.lower()} if self.cpu_capability else {}
        if self.device == "cuda":
            env["CUBLAS_WORKSPACE_CONFIG"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return env


def _child_environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})  # the daemon's own environment unless a class asks for another kernel set
    return env


def describe_environment(device: str = "cpu", cpu_capability: str | None = None, *,
                         timeout: float = 120.0) -> Environment:
    """The environment class a child process sees on `device` (with `cpu_capability`, if given). Raises
    EngineError when this CPU cannot run `cpu_capability`'s kernels."""
    if cpu_capability:
        from engine.determinism import require_cpu_capability

        require_cpu_capability(cpu_capability)
    extra = {"ATEN_CPU_CAPABILITY": cpu_capability.lower()} if cpu_capability else {}
    try:
        done = subprocess.run([sys.executable, "-m", "worker.judge_child", "--describe", "--device", device],
                              capture_output=True, text=True, timeout=timeout, env=_child_environment(extra),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TesseraError(f"describing the {device} environment took more than {timeout:g}s") from None
    if done.returncode != 0:
        raise TesseraError(f"cannot describe the {device} environment: {done.stderr.strip()[-500:]}")
    data = json.loads(done.stdout)
    return Environment(env_class=data["env_class"], descriptor=data["descriptor"], device=device,
                       cpu_capability=cpu_capability)


def portable_environments(device: str) -> list[Environment]:
    """The portable classes, entered on `device`: every machine reproduces them (their bits depend only on
    the arithmetic and engine versions), so no child process has to describe anything."""
    from engine.determinism import PORTABLE_ARITHMETICS, portable_env_class

    environments = []
    for arithmetic in PORTABLE_ARITHMETICS:
        descriptor, env_class = portable_env_class(arithmetic)
        environments.append(Environment(env_class=env_class, descriptor=descriptor, device=device))
    return environments


def reproducible_environments(device: str, cpu_capabilities: Sequence[str], *,
                              timeout: float = 120.0) -> list[Environment]:
    """The environment classes this machine reproduces: its own on `device`, each CPU kernel set, and the
    portable classes (on `device`). Raises EngineError, before starting any child, for a kernel set this CPU
    cannot run."""
    from engine.determinism import require_cpu_capability

    for capability in cpu_capabilities:
        require_cpu_capability(capability)
    environments = [describe_environment(device, timeout=timeout)]
    for capability in cpu_capabilities:
        extra = describe_environment("cpu", capability, timeout=timeout)
        if extra.env_class not in {e.env_class for e in environments}:
            environments.append(extra)
    return environments + portable_environments(device)


def class_problem(spec: Any, env_class: str) -> str | None:
    """Why the job's class `env_class` does not fit `spec` (engine.determinism.spec_class_problem), or None."""
    from engine.determinism import spec_class_problem

    return spec_class_problem(spec.arithmetic, env_class)


class ChildGroup:
    """The judge children one daemon runs, so its drain can stop them: a SIGTERM'd daemon then exits at
    once instead of waiting out the budgets of the recomputations on its threads."""

    def __init__(self) -> None:
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen | None:
        """Popen `argv`, or None once the group is stopping."""
        with self._lock:
            if self.stopping:
                return None
            child = subprocess.Popen(argv, **kwargs)
            self._children.add(child)
            return child

    def done(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._children.discard(child)

    def stop(self) -> None:
        """Kill every running child and start no more."""
        with self._lock:
            self.stopping = True
            for child in self._children:
                child.kill()


# ---------------------------------------------------------------------------------------------------
# Naming a portable training job's checkpoints (h_i: state roots bound to the job's step record)
# ---------------------------------------------------------------------------------------------------

_NAMINGS: dict[str, list[Any]] = {}  # spec hash -> the naming of each boundary 0 … N, once a child reported it
_NAMINGS_LOCK = threading.Lock()


def remember_namings(spec: Any, skeleton: tuple[bytes, int, int]) -> None:
    """Keep the naming of each checkpoint 0 … N of a portable training job whose step-record skeleton
    (S, L, per_epoch) a judge child reported, for `known_naming`."""
    from engine.api import checkpoint_naming

    namings = [checkpoint_naming(spec, None, boundary, skeleton) for boundary in range(spec.num_segments + 1)]
    with _NAMINGS_LOCK:
        _NAMINGS[spec.spec_hash().lower()] = namings


def known_naming(spec_hash: str, boundary: int) -> Any:
    """The naming checkpoint `boundary` of the spec `spec_hash` was staged under in this process (None:
    sha256, or a spec not judged here yet)."""
    with _NAMINGS_LOCK:
        namings = _NAMINGS.get(spec_hash.lower(), [])
    return namings[boundary] if 0 <= boundary < len(namings) else None


def run_checks(
    spec: Any, cache_dir: Path, checks: Sequence[Check], *, device: str, recompute: bool,
    env: Mapping[str, str] | None = None, budget_s: float = 600.0, memory_limit_mb: int = 8_192,
    python: str = sys.executable, children: ChildGroup | None = None, stage_from: Mapping[str, Any] | None = None,
) -> list[CheckResult]:
    """Run `checks` of `spec` in a child over the staged `cache_dir`; results in the order of `checks`.

    With `recompute` False (another environment class), segment checks only validate their
    checkpoint and initial checks are skipped (`VALID`); output extraction always runs. A child that
    exceeds `budget_s` or fails leaves every unfinished check `ERROR`. `stage_from` (a portable training
    job: `uri`, `timeout`, `max_bytes` of the worker's store): the child stages the checkpoints itself,
    verified by their state roots, which need the job's step-record skeleton (S, L) that only a process
    with torch can record; it reports (S, L) back (`known_naming`).
    """
    from worker.executor import child_limits

    if not checks:
        return []
    with tempfile.TemporaryDirectory(prefix="tessera-judge-") as tmp:
        task_path, out_path = Path(tmp) / "task.json", Path(tmp) / "out.json"
        task_path.write_text(json.dumps({
            "spec": spec.canonical_bytes().decode(), "cache": str(cache_dir), "device": device,
            "recompute": recompute, "checks": [c.model_dump(mode="json") for c in checks],
            "stage_from": None if stage_from is None else {**stage_from, "budget_s": budget_s},
            "skeleton_out": str(Path(tmp) / "skeleton.json"),
        }))
        started = time.monotonic()
        reason = _run_child([python, "-m", "worker.judge_child", "--task", str(task_path), "--out", str(out_path)],
                            env=_child_environment(env), budget_s=budget_s,
                            preexec_fn=child_limits(memory_limit_mb * 1024 * 1024, device),
                            children=children or ChildGroup())
        results: list[CheckResult] = []
        if out_path.is_file() and out_path.stat().st_size <= MAX_RESULT_BYTES:
            try:
                results = [CheckResult.model_validate(r) for r in json.loads(out_path.read_text())]
            except ValueError as exc:
                reason = reason or f"unreadable judge result: {exc}"
        _read_skeleton(spec, Path(tmp) / "skeleton.json")
        finished = {r.check: r for r in results}
        wall = time.monotonic() - started
        return [finished.get(c) or CheckResult(check=c, outcome=Outcome.ERROR,
                                               detail=reason or f"no result after {wall:.1f}s") for c in checks]


def _read_skeleton(spec: Any, path: Path) -> None:
    """Remember the namings of a portable job from the (S, L, per_epoch) its judge child wrote, if it wrote one."""
    try:
        data = json.loads(path.read_text()) if path.is_file() and path.stat().st_size < 1_000 else None
        if data is not None:
            remember_namings(spec, (bytes.fromhex(str(data["skeleton_root"]).removeprefix("0x")),
                                    int(data["record_length"]), int(data["per_epoch"])))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # evidence is then published by sha256 only; the ruling does not depend on it


def _run_child(argv: list[str], *, env: dict[str, str], budget_s: float, preexec_fn: Any,
               children: ChildGroup) -> str:
    """Run one judge child within `budget_s`; "" when it exited cleanly, else why not."""
    child = children.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           text=True, env=env, preexec_fn=preexec_fn)
    if child is None:
        return "not started: the daemon is stopping"
    try:
        _, stderr = child.communicate(timeout=budget_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return f"recomputation exceeded its budget of {budget_s:.0f}s"
    finally:
        children.done(child)
    if children.stopping:
        return "stopped: the daemon is stopping"
    return f"judge exited with {child.returncode}: {stderr.strip()[-300:]}" if child.returncode != 0 else ""


def judge(
    spec: Any, checks: Sequence[Check], *, cache: Any, worker_store: Any, environment: Environment | None,
    device: str, max_checkpoint_bytes: int, fetch_timeout: float, budget_s: float, memory_limit_mb: int = 8_192,
    children: ChildGroup | None = None,
    job_env_class: str | None = None,
) -> list[CheckResult]:
    """Stage what `checks` need from the worker's store (and the spec's hints), then recompute.

    `environment` is the class to recompute in (one this machine reproduces, equal to the job's), or
    None when this machine cannot reproduce the job's class: then only what every machine can judge
    is judged (checkpoint validity, the output extraction). Missing checkpoints and inputs are
    findings, not errors. A job whose class `job_env_class` does not fit its spec's arithmetic is the
    worker's fault on every check, before anything is fetched (docs/protocol.md, "Portable class").
    """
    from engine.api import uses_state_roots
    from protocol.hashing import DIVERGED_HASH
    from protocol.spec import max_checkpoint_bytes as spec_checkpoint_bound

    problem = class_problem(spec, job_env_class) if job_env_class is not None else None
    if problem is not None:
        detail = f"the job's class does not fit its spec ({problem}): no honest run commits in it"
        return [CheckResult(check=c, outcome=Outcome.CLASS_MISMATCH, detail=detail[:600]) for c in checks]

    # the budget covers the staging too: a slow server eats the job's own recomputation time, no one else's
    deadline = time.monotonic() + budget_s
    missing_inputs = stage_inputs(spec, cache, [worker_store], timeout=fetch_timeout, deadline=deadline)
    # no valid checkpoint of this spec is larger: a bigger blob is refused before it is downloaded, so a
    # worker cannot trickle gigabytes to spend the budget its recomputation needs
    checkpoint_limit = min(max_checkpoint_bytes, spec_checkpoint_bound(spec))
    results: dict[Check, CheckResult] = {}
    runnable: list[Check] = []
    # a portable training job's checkpoints are named by state roots bound to its step record, which only
    # the child (with torch) can record: it stages them itself (run_checks' `stage_from`)
    by_root = uses_state_roots(spec)
    for check in checks:
        if check.checkpoint is not None and check.checkpoint.lower() == DIVERGED_HASH:
            # after divergence nothing is computed: every later boundary and the output stay diverged
            same = check.expected.lower() == DIVERGED_HASH
            results[check] = CheckResult(check=check, outcome=Outcome.MATCH if same else Outcome.MISMATCH,
                                         recomputed=DIVERGED_HASH,
                                         detail="" if same else "a diverged run cannot reach a finite state")
            continue
        if check.checkpoint is not None and not by_root:
            why = stage_checkpoint(cache, worker_store, check.checkpoint, checkpoint_limit)
            if why is not None:
                results[check] = CheckResult(check=check, outcome=Outcome.CHECKPOINT_MISSING,
                                             detail=f"checkpoint {check.checkpoint}: {why}")
                continue
        if missing_inputs:  # every check builds the job, which reads all of them
            results[check] = CheckResult(check=check, outcome=Outcome.INPUT_MISSING,
                                         detail=f"inputs not fetchable from the spec or the worker: {missing_inputs}")
            continue
        runnable.append(check)
    recomputed = run_checks(spec, Path(cache.root), runnable, device=device, recompute=environment is not None,
                            env=environment.child_env() if environment else None,
                            budget_s=max(1.0, deadline - time.monotonic()),
                            memory_limit_mb=memory_limit_mb, children=children,
                            stage_from={"uri": worker_store.uri, "timeout": fetch_timeout,
                                        "max_bytes": checkpoint_limit} if by_root else None)
    results.update({r.check: r for r in recomputed})
    return [results[c] for c in checks]


def judge_committed(view: Any, checks: Sequence[Check], *, cache: Any, environment: Environment | None, config: Any,
                    finish_by: float, children: ChildGroup | None = None) -> list[CheckResult]:
    """Judge `checks` of the committed job in `view` (the verifier's checks, the arbiter's claim), every
    fetch and the child before `finish_by` (monotonic). The spec comes from its URI, else from the
    worker's store (a worker must keep the spec it claimed): served by neither, every check is
    INPUT_MISSING, the worker's fault. `config` holds the daemon's fetch and child limits. Only a failure
    of our own store raises (StoreWriteError)."""
    job = view.job
    try:
        spec = fetch_spec_within(view.spec_uri, job.spec_hash, deadline=finish_by, max_bytes=config.max_spec_bytes,
                                 timeout=config.fetch_timeout, fallback_uris=[view.artifact_uri])
    except StoreWriteError:
        raise
    except ArtifactError as exc:
        detail = f"spec not served by its URI nor by the worker's store: {exc}"[:600]
        return [CheckResult(check=c, outcome=Outcome.INPUT_MISSING, detail=detail) for c in checks]
    worker_store = open_worker_store(view.artifact_uri, timeout=config.fetch_timeout,
                                     max_bytes=config.max_checkpoint_bytes, deadline=finish_by)
    return judge(spec, checks, cache=cache, worker_store=worker_store, environment=environment,
                 device=environment.device if environment else config.device,
                 max_checkpoint_bytes=config.max_checkpoint_bytes, fetch_timeout=config.fetch_timeout,
                 budget_s=max(1.0, finish_by - time.monotonic()), memory_limit_mb=config.memory_limit_mb,
                 children=children, job_env_class=job.env_class)


def first_fault(results: Sequence[CheckResult]) -> CheckResult | None:
    """The finding to challenge: initial first, then the lowest segment, then the output."""
    order = {CheckKind.INITIAL: 0, CheckKind.SEGMENT: 1, CheckKind.STEP: 1, CheckKind.OUTPUT: 2}
    faults = sorted((r for r in results if r.outcome.worker_wrong), key=lambda r: (order[r.check.kind], r.check.boundary))
    return faults[0] if faults else None


def is_hash(value: str) -> bool:
    return isinstance(value, str) and bool(HEX32_RE.match(value.lower()))
