"""The engine's public API: run a spec in committed segments, replay one segment.

Workers call `run_spec`, verifiers and the arbiter call `replay_segment`; both go through the same
`Job` code, on a device chosen explicitly and configured for determinism first. Everything a
verifier needs is put into the artifact store: checkpoint i under h_i, the output under the output
hash, the fingerprint JSON under the fingerprint hash (and the dataset, weights and inputs when they
came from elsewhere). torch is imported only when one of these functions runs.

h_i is `sha256(checkpoint_i)` for native jobs and, for portable training jobs (`uses_state_roots`), the
keccak state root of checkpoint i bound to the job's step-record skeleton and the boundary's segment
length (docs/referee.md, section 2; `checkpoint_naming` gives boundary i's naming).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict

from protocol.artifacts import ArtifactStore, Naming, name_of, normalize_hash
from protocol.errors import DivergedError, EngineError, TesseraError
from protocol.hashing import DIVERGED_HASH, from_hex, sha256_hex, to_hex
from protocol.merkle import merkle_root
from protocol.spec import TaskSpec, load_spec

from engine.determinism import (  # noqa: F401 (re-exported API)
    configure,
    environment_fingerprint,
    fingerprint_bytes,
    fingerprint_hash,
    fingerprint_mismatches,
    select_device,
)
from engine.tensors_io import load_weights  # noqa: F401 (re-exported API)

SpecLike = TaskSpec | Mapping[str, Any] | bytes | str | Path
# (S, L, per_epoch) of a portable training job (`job_skeleton`): what its state headers bind beyond the
# spec and the checkpoint; an (S, L) pair binds per_epoch as 0 (unbound)
JobSkeleton = tuple[bytes, int, int]
MAX_CHECKPOINT_BYTES = 8 * 1024**3
MAX_CURVE_POINTS = 1_000  # long runs report every n-th loss, so results stay small


class RunResult(BaseModel):
    """What a run commits to and reports. Hashes are 0x hex; `state_hashes` is h_0 … h_N (sha256, or
    state roots for a portable training job: `uses_state_roots`)."""

    model_config = ConfigDict(frozen=True)

    spec_hash: str
    result_root: str
    output_hash: str
    state_hashes: list[str]
    fingerprint: dict[str, Any]
    fingerprint_hash: str
    metrics: dict[str, Any]
    num_segments: int
    wall_s: float
    device: str
    store_uri: str


def _prepare(spec: SpecLike, device: str | None) -> tuple[TaskSpec, str]:
    task = load_spec(spec)
    # In portable arithmetic the device does not decide the bits: the spec's device is where its worker
    # runs it, and a judge replays it on whatever device it has (docs/protocol.md, "Portable class").
    chosen = select_device(task.device if task.arithmetic == "native" else "any", device)
    configure(chosen, task.resources.cpu_threads)
    return task, chosen


def _wrap_torch_errors(error: BaseException) -> TesseraError:
    """torch raises RuntimeError for shape problems, missing deterministic kernels, OOM: make them typed."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return EngineError(f"torch failed: {message}")


class _Committer:
    """Stores checkpoints on one background thread while the next segment trains.

    `commit(i, encode)` encodes checkpoint i on the caller's thread (the bytes are the snapshot:
    training may change the tensors as soon as it returns) and hands the bytes to the thread, which
    hashes and stores them (`store.put`: sha256 and file writes release the GIL). At most one
    checkpoint is waiting to be stored, so memory holds no more checkpoint bytes than before. Results
    are reported in boundary order on the caller's thread, through `on_segment(i, h_i)` once
    checkpoint i is in the store: between training steps (`report_done`), before the next commit,
    and at `finish`. `commit_s` is the time the caller spent encoding or waiting for the thread
    (what the commitment adds to the run), `background_s` the thread's time storing.
    """

    def __init__(self, store: ArtifactStore, on_segment: Callable[[int, str], None] | None,
                 namings: Sequence[Naming | None] = ()):
        self.store = store
        self.on_segment = on_segment
        self.namings = list(namings)  # checkpoint i's naming (state roots); sha256 where absent or None
        self.state_hashes: list[str] = []
        self.commit_s = 0.0
        self.background_s = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-commit")
        self._pending: tuple[int, Future[tuple[str, float]]] | None = None

    def _put(self, index: int, data: bytes) -> tuple[str, float]:
        begin = time.perf_counter()
        naming = self.namings[index] if index < len(self.namings) else None
        digest = self.store.put(data) if naming is None else self.store.put(data, naming=naming)
        return digest, time.perf_counter() - begin

    def commit(self, index: int, encode: Callable[[int], bytes]) -> None:
        """Encode checkpoint `index` now and store it in the background."""
        begin = time.perf_counter()
        self._wait()  # one checkpoint in flight at a time, and reports stay in order
        data = encode(index)
        self._pending = (index, self._pool.submit(self._put, index, data))
        self.commit_s += time.perf_counter() - begin

    def report_done(self) -> None:
        """Report the checkpoint in flight if it is stored already (never blocks)."""
        if self._pending is not None and self._pending[1].done():
            self._wait()

    def finish(self) -> None:
        """Wait until every checkpoint is stored and reported (re-raises a failed put)."""
        begin = time.perf_counter()
        self._wait()
        self.commit_s += time.perf_counter() - begin

    def close(self) -> None:
        """Stop the thread, after the checkpoint in flight; on an error path its result is dropped
        unreported when it failed (the run's own error is the one raised)."""
        if self._pending is not None:
            try:
                self._wait()
            except Exception:
                self._pending = None
        self._pool.shutdown(wait=True)

    def _wait(self) -> None:
        if self._pending is None:
            return
        index, future = self._pending
        self._pending = None
        digest, seconds = future.result()
        self.background_s += seconds
        self.state_hashes.append(digest)
        if self.on_segment is not None:
            self.on_segment(index, digest)


def run_spec(
    spec: SpecLike,
    store: ArtifactStore,
    *,
    device: str | None = None,
    on_segment: Callable[[int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_hashes: Sequence[str] | None = None,
) -> RunResult:
    """Run `spec` to the end: N segments with a checkpoint at every boundary, stored by hash.

    `on_segment(i, h_i)` is called at each boundary i = 0 … N after checkpoint i is in the store,
    in order and on the calling thread; checkpoints are hashed and stored on a background thread
    while the next segment trains, so the call comes at the first step after the store is done.
    `should_stop()` is polled between steps and raises RunStoppedError when it returns true.
    The run returns only after every checkpoint is stored and reported.

    `resume_hashes` (training kinds): the `h_0 … h_b` an earlier, interrupted run of the same spec
    reported through `on_segment`. The run restarts from the latest of them whose checkpoint is in
    `store` and valid, and reaches exactly the trace a fresh run would; `on_segment` is called only
    for the boundaries computed now. Unusable hashes are skipped, never trusted.
    """
    from engine.training import Job

    started = time.monotonic()
    namings = checkpoint_namings(spec, store)  # before _prepare: the skeleton's recording runs on CPU
    task, chosen = _prepare(spec, device)
    deadline = started + task.resources.max_wall_s if task.resources.max_wall_s else None
    try:
        job = Job(task, store, chosen)
        committer = _Committer(store, on_segment, namings)
        try:
            resumed = _resume(job, task, store, resume_hashes, namings) if resume_hashes else None
            if resumed is None:
                committer.commit(0, job.checkpoint)
                first_segment = 0
            else:
                committer.state_hashes.extend(resumed)
                first_segment = len(resumed) - 1

            def poll() -> bool:  # between steps: report finished commits, then ask the caller
                committer.report_done()
                return should_stop is not None and should_stop()

            losses: list[float] = []
            compute_s = 0.0
            diverged: tuple[int, str] | None = None
            for segment in range(first_segment, task.num_segments):
                begin = time.perf_counter()
                try:
                    losses += job.run_segment(segment, should_stop=poll, deadline=deadline)
                except DivergedError as exc:
                    # the spec's honest result: every later boundary and the output are DIVERGED_HASH
                    diverged = (segment, str(exc))
                    break
                finally:
                    compute_s += time.perf_counter() - begin
                committer.commit(segment + 1, job.checkpoint)
            if diverged is None:
                output = job.output_bytes()  # encoded while the last checkpoint is being stored
                test_metrics = job.evaluate("test") if job.training and "test_x" in job.data else {}
            committer.finish()
        finally:
            committer.close()
        state_hashes = committer.state_hashes
        if diverged is None:
            output_hash = store.put(output)
        else:
            test_metrics = {"diverged_in_segment": diverged[0], "diverged": diverged[1]}
            for index in range(len(state_hashes), task.num_segments + 1):
                state_hashes.append(DIVERGED_HASH)
                if on_segment is not None:
                    on_segment(index, DIVERGED_HASH)
            output_hash = DIVERGED_HASH
        metrics: dict[str, Any] = {}
        if job.training:
            stride = max(1, -(-len(losses) // MAX_CURVE_POINTS))
            metrics["loss_curve"] = losses[::stride]
            metrics["loss_curve_every"] = stride
            if losses:
                metrics["final_loss"] = losses[-1]
            if resumed is not None:
                metrics["resumed_from_boundary"] = first_segment
            metrics.update(test_metrics)
        elif job.metrics is not None:
            metrics.update(job.metrics)
        else:
            metrics["outputs_shape"] = list(job.outputs.shape) if job.outputs is not None else []
        if namings and namings[0] is not None:  # h_i are state roots: the (S, L) they bind, for the worker
            skeleton_root, record_length, per_epoch = job_skeleton(task, store)
            metrics["step_record"] = {"skeleton_root": to_hex(skeleton_root), "length": record_length,
                                      "per_epoch": per_epoch}
        metrics["compute_s"] = compute_s
        metrics["commit_s"] = committer.commit_s
        metrics["commit_background_s"] = committer.background_s
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc
    fingerprint = environment_fingerprint(chosen, task.resources.cpu_threads, task.arithmetic)
    fp_hash = store.put(fingerprint_bytes(fingerprint))
    root = to_hex(merkle_root([from_hex(h) for h in state_hashes]))
    return RunResult(
        spec_hash=task.spec_hash(),
        result_root=root,
        output_hash=output_hash,
        state_hashes=state_hashes,
        fingerprint=fingerprint,
        fingerprint_hash=fp_hash,
        metrics=metrics,
        num_segments=task.num_segments,
        wall_s=time.monotonic() - started,
        device=chosen,
        store_uri=store.uri,
    )


def _resume(job: Any, task: TaskSpec, store: ArtifactStore, hashes: Sequence[str],
            namings: Sequence[Naming | None]) -> list[str] | None:
    """Restore `job` from the latest usable boundary in `hashes` (each checkpoint fetched by its name
    under `namings`); return `h_0 … h_j`, or None."""
    if task.kind not in ("train", "finetune") or len(hashes) > task.num_segments + 1:
        return None
    try:
        clean = [normalize_hash(h) for h in hashes]
    except TesseraError:
        return None
    if name_of(job.checkpoint(0), namings[0]) != clean[0]:
        return None  # not this spec's trace (h_0 follows from the spec alone)
    for index in range(len(clean) - 1, 0, -1):
        if not all(store.has(h) for h in clean[:index]):
            continue  # a verifier must be able to fetch every earlier checkpoint too
        try:
            job.restore(_get_checkpoint(store, clean[index], namings[index]), index)
        except TesseraError:
            continue  # missing, damaged or not this job's checkpoint: try an earlier one
        return clean[: index + 1]
    return None


def replay_checkpoint_bytes(
    spec: SpecLike, store: ArtifactStore | None, segment: int, checkpoint: bytes, *, device: str | None = None
) -> tuple[str, bytes]:
    """Replay segment `segment` from the given checkpoint bytes; return (h reached, its bytes): the
    name of checkpoint `segment + 1` (sha256, or its state root: `checkpoint_naming`).

    `store` supplies the dataset / inputs (hints in the spec are tried too). Raises CheckpointError
    when the bytes are not exactly checkpoint `segment` of this spec.
    """
    from engine.training import Job

    task = load_spec(spec)
    if not 0 <= segment < task.num_segments:
        raise EngineError(f"segment {segment} outside 0..{task.num_segments - 1}")
    naming = checkpoint_naming(task, store, segment + 1)  # before _prepare: recording runs on CPU
    task, chosen = _prepare(task, device)
    try:
        job = Job(task, store, chosen, fetch_init=False)
        job.restore(checkpoint, segment)
        job.run_segment(segment)
        reached = job.checkpoint(segment + 1)
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc
    return name_of(reached, naming), reached


def initial_checkpoint(spec: SpecLike, store: ArtifactStore | None, *, device: str | None = None) -> bytes:
    """Checkpoint 0 as the spec defines it: the seeded initialisation, or `init_weights` (fetched from
    `store` or the spec's hints, hash-checked). Its name (`checkpoint_name(spec, store, 0, …)`) is the
    only valid h_0 of a job of this spec."""
    from engine.training import Job

    task, chosen = _prepare(spec, device)
    try:
        return Job(task, store, chosen).checkpoint(0)
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc


def validate_checkpoint(
    spec: SpecLike, store: ArtifactStore | None, boundary: int, checkpoint: bytes, *, device: str | None = None
) -> None:
    """CheckpointError unless `checkpoint` is exactly checkpoint `boundary` of this spec (format, spec
    hash, step, cursor, RNG header, tensor names, dtypes, shapes, finiteness). Computes nothing: any
    environment can check it."""
    from engine.training import Job

    task, chosen = _prepare(spec, device)
    if not 0 <= boundary <= task.num_segments:
        raise EngineError(f"boundary {boundary} outside 0..{task.num_segments}")
    try:
        Job(task, store, chosen, fetch_init=False).restore(checkpoint, boundary)
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc


def extract_output(spec: SpecLike, store: ArtifactStore | None, checkpoint: bytes, *, device: str | None = None) -> bytes:
    """The job's output artifact as a function of its last checkpoint N: the parameters as canonical
    safetensors (train, finetune), the outputs `y` (infer) or the metrics JSON (eval). The committed
    output hash must be the sha256 of these bytes. Raises CheckpointError for an invalid checkpoint N."""
    from engine.training import Job

    task, chosen = _prepare(spec, device)
    try:
        job = Job(task, store, chosen, fetch_init=False)
        job.restore(checkpoint, task.num_segments)
        return job.output_bytes()
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc


def replay_segment(
    spec: SpecLike, store: ArtifactStore, segment: int, checkpoint_hash: str, *, device: str | None = None
) -> str:
    """Fetch checkpoint `checkpoint_hash` (= h_segment) from `store`, verify it, run segment
    `segment`, and return the 0x hash of the state reached (h_{segment+1} when the worker was honest).

    For a replay of a native spec to be a proof, run it on the device class of the committed fingerprint
    (`device=fingerprint["device_type"]`); a portable spec replays to the same bits on any device. Raises ArtifactError / HashMismatchError when the
    checkpoint cannot be fetched or does not hash to its name, CheckpointError when it is not a
    valid checkpoint for this spec and segment.
    """
    data = _get_checkpoint(store, checkpoint_hash, checkpoint_naming(spec, store, segment))
    reached, _ = replay_checkpoint_bytes(spec, store, segment, data, device=device)
    return reached


# --------------------------------------------------------------------------------------------------
# Level-2 groundwork: states inside a segment, one optimizer step at a time
# --------------------------------------------------------------------------------------------------


def step_hashes(
    spec: SpecLike, store: ArtifactStore, segment: int, checkpoint_hash: str, *,
    device: str | None = None, put_states: bool = False,
) -> list[str]:  # fmt: skip
    """Hashes of the state after every optimizer step of `segment`, replayed from checkpoint
    `checkpoint_hash` = h_segment: `[h_segment, s_(start+1), …, h_(segment+1)]` (k + 1 entries).

    Two parties that disagree on h_(segment+1) can bisect this list to the first step they disagree
    on; `replay_step_bytes` then recomputes that one step. Inside a segment a state is encoded like a
    checkpoint with `"boundary": null`. With `put_states`, every state is put into `store` too (a
    worker answering a bisection publishes them).
    """
    hashes = [normalize_hash(checkpoint_hash)]
    for state in _step_states(spec, store, segment, checkpoint_hash, device):
        hashes.append(store.put(state) if put_states else sha256_hex(state))
    return hashes


def step_state_roots(
    spec: SpecLike, store: ArtifactStore, segment: int, checkpoint_hash: str, *, device: str | None = None,
    skeleton: JobSkeleton | tuple[bytes, int] | None = None,
) -> list[str]:  # fmt: skip
    """Like `step_hashes`, the keccak state roots (protocol.tensor_commit.state_root, docs/referee.md)
    of h_segment and of the state after every step of `segment`: the commitments levels 2-3 open
    element by element. Each header binds its steps to the next segment boundary and, when given, the
    job's step-record skeleton (S, L)."""
    from protocol.tensor_commit import state_root

    task = load_spec(spec)
    start = _segment_start(task, segment)
    first = _get_checkpoint(store, checkpoint_hash, checkpoint_naming(task, store, segment))
    roots = [to_hex(state_root(first, state_binding(task, start, skeleton)))]
    for offset, state in enumerate(_step_states(spec, store, segment, checkpoint_hash, device), start=1):
        roots.append(to_hex(state_root(state, state_binding(task, start + offset, skeleton))))
    return roots


def steps_to_boundary(spec: SpecLike, step: int) -> int:
    """Optimizer steps from the state after `step` steps to the next segment boundary (a boundary
    state's is its segment's length; 0 at the job's last state)."""
    task = load_spec(spec)
    if task.kind not in ("train", "finetune") or not 0 <= step <= task.steps:
        raise EngineError(f"step {step} is not a state of this job (0..{task.steps}, training kinds)")
    return min(task.segment_steps - step % task.segment_steps, task.steps - step)


def state_binding(spec: SpecLike, step: int, skeleton: JobSkeleton | tuple[bytes, int] | None = None) -> Any:
    """What the header of the state after `step` steps binds (protocol.tensor_commit.StateBinding): the
    steps to the next segment boundary, the spec's job constants (total steps, segment length, batch
    size), and from `skeleton` (`job_skeleton`) the job's step-record skeleton (S, L) and per_epoch, the
    batches of one epoch (zero when not given: the next header is then not provable on chain)."""
    from protocol.tensor_commit import StateBinding

    task = load_spec(spec)
    root, length, per_epoch = (*skeleton, 0)[:3] if skeleton is not None else (bytes(32), 0, 0)
    return StateBinding(root, length, steps_to_boundary(task, step), total_steps=task.steps, per_epoch=per_epoch,
                        segment_length=task.segment_steps, batch_size=task.batch_size)  # fmt: skip


def job_per_epoch(spec: SpecLike, store: ArtifactStore | None) -> int:
    """Batches of one epoch of a training job (training examples // batch size, engine.training's
    data cursor), read from its dataset (fetched from `store` or the spec's hints, hash-checked)."""
    from engine.datasets import fetch_artifact
    from engine.training import batches_per_epoch, parse_dataset

    task, _ = _prepare(spec, "cpu")
    if task.kind not in ("train", "finetune") or task.dataset is None:
        raise EngineError(f"only training kinds have epochs, not {task.kind}")
    raw = fetch_artifact(task.dataset, store, task.resources.max_dataset_bytes, "dataset")
    return batches_per_epoch(task, parse_dataset(task, raw))


def _segment_start(task: TaskSpec, segment: int) -> int:
    """The first step of `segment` of a training job (EngineError for another kind or segment)."""
    if task.kind not in ("train", "finetune"):
        raise EngineError(f"step states exist only for training kinds, not {task.kind}")
    if not 0 <= segment < task.num_segments:
        raise EngineError(f"segment {segment} outside 0..{task.num_segments - 1}")
    return task.segment_bounds(segment)[0]


def _step_states(spec: SpecLike, store: ArtifactStore, segment: int, checkpoint_hash: str, device: str | None) -> Iterator[bytes]:
    """The canonical states after each step of `segment`, replayed from checkpoint `checkpoint_hash`
    (one at a time: a segment's states need not fit in memory together)."""
    from engine.training import Job

    task, chosen = _prepare(spec, device)
    _segment_start(task, segment)
    try:
        job = Job(task, store, chosen, fetch_init=False)
        job.restore(_get_checkpoint(store, checkpoint_hash, checkpoint_naming(task, store, segment)), segment)
        end = task.segment_bounds(segment)[1]
        while job.step < end:
            job.train(job.step + 1)
            yield job.state_bytes()
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc


def replay_step_bytes(
    spec: SpecLike, store: ArtifactStore | None, step: int, state: bytes, *, device: str | None = None
) -> tuple[str, bytes]:
    """Run exactly one optimizer step from the canonical state after `step` steps; return the hash
    and bytes of the state after `step + 1` (what an arbiter recomputes at level 2)."""
    from engine.training import Job

    task, chosen = _prepare(spec, device)
    if task.kind not in ("train", "finetune") or not 0 <= step < task.steps:
        raise EngineError(f"step {step} is not a step of this job (0..{max(task.steps - 1, 0)}, training kinds)")
    try:
        job = Job(task, store, chosen, fetch_init=False)
        job.restore_step(state, step)
        job.train(step + 1)
        reached = job.state_bytes()
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc
    return sha256_hex(reached), reached


def record_step(spec: SpecLike, store: ArtifactStore | None, step: int, state: bytes) -> Any:
    """The step computation record (engine.portable.record.StepRecord) of optimizer step `step` of a
    portable training job, replayed on CPU from the canonical state after `step` steps, and the state
    bytes it reaches (docs/referee.md)."""
    from engine.portable.record import record_step as record

    task, _ = _prepare(spec, "cpu")
    if task.kind not in ("train", "finetune") or not 0 <= step < task.steps:
        raise EngineError(f"step {step} is not a step of this job (0..{max(task.steps - 1, 0)}, training kinds)")
    try:
        return record(task, store, step, state)
    except TesseraError:
        raise
    except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
        raise _wrap_torch_errors(exc) from exc


def record_first_steps(spec: SpecLike, store: ArtifactStore | None, count: int) -> tuple[list[bytes], list[Any], list[Any]]:
    """The states 0 … `count` of a portable training job from its checkpoint 0, the step records of
    steps 0 … `count` − 1 between them, and each state's header binding (the skeleton (S, L) of step
    0's record, its steps to the next segment boundary): what both parties of a level-2 game hold for
    those steps."""
    states, records = [initial_checkpoint(spec, store)], []
    for step in range(count):
        rec, reached = record_step(spec, store, step, states[-1])
        records.append(rec)
        states.append(reached)
    skeleton = (records[0].skeleton_root(), len(records[0].entries), job_per_epoch(spec, store)) if records else None
    return states, records, [state_binding(spec, step, skeleton) for step in range(count + 1)]


def uncovered_calls(spec: SpecLike, store: ArtifactStore | None) -> list[tuple[int, str, int]]:
    """Where a refereed game over this portable training job can escalate to the arbiter: (entry, kernel,
    output) of every output of its step record that no rules contract decides (`protocol.referee_kit.rules_of`;
    a skeleton longer than the rules read is revealed with `reveal_long_entry` and escalates too), and
    (L, "link", leaves) when its states have more leaves than the link takes, and (L, "kit", bytes) when a
    step's dispute kit would be larger than a party can load (`referee_kit.kit_overflow`: then no party can
    play a move over the step, and the honest one loses on its clock). The record's skeleton is the same at
    every step, so step 0's answers for the job. Empty: either party's every move has an on-chain rule, so no
    SEGMENT game of the job can be steered to the arbiter (docs/disputes.md)."""
    from protocol import referee_kit as rk
    from protocol import tensor_commit as tc

    start = initial_checkpoint(spec, store, device="cpu")  # recorded on CPU wherever this runs, as `job_skeleton`
    rec, _ = record_step(spec, store, 0, start)
    found: list[tuple[int, str, int]] = []
    for entry in rec.entries:
        skeleton = entry.skeleton_bytes()
        parsed = rk.parse_skeleton(skeleton)
        for output in range(len(parsed.outputs)):
            if len(skeleton) > rk.MAX_SKELETON or rk.rules_of(parsed, output) is None:
                found.append((entry.index, entry.kernel, output))
    leaves = 1 + len(tc.read_checkpoint(start)[0])
    if leaves > rk.MAX_LINK_LEAVES:
        found.append((len(rec.entries), "link", leaves))
    outputs_bytes, problem = _kit_size(rec, len(start))
    if problem is not None:
        found.append((len(rec.entries), "kit", outputs_bytes + len(start)))
    return found


def _kit_size(rec: Any, state_bytes: int) -> tuple[int, str | None]:
    """The bytes of a dispute kit's outputs file for step record `rec` (every output, constant and batch
    value of the step), and why a kit of it with a state of `state_bytes` could not be loaded (or None)."""
    from engine.referee_kit import record_tensors
    from protocol import referee_kit as rk

    tensors = rk.kit_tensors(*record_tensors(rec), tuple(rec.batch_values))
    return rk.tensor_file_bytes(tensors)[1], rk.kit_overflow(tensors, state_bytes)


# --------------------------------------------------------------------------------------------------
# h_i of portable training jobs: state roots bound to the job's step record (docs/referee.md, section 2)
# --------------------------------------------------------------------------------------------------

# spec hash -> (S, L, per_epoch) and why no party could load a kit of its steps (None: one can), both from
# one recording of step 0: recording a step costs a step or more
_SKELETONS: dict[str, tuple[JobSkeleton, str | None]] = {}
_SKELETONS_LOCK = threading.Lock()


def uses_state_roots(spec: SpecLike) -> bool:
    """Whether h_i of this spec's jobs is a state root (portable training kinds) rather than a sha256."""
    task = load_spec(spec)
    return task.arithmetic != "native" and task.kind in ("train", "finetune")


def job_skeleton(spec: SpecLike, store: ArtifactStore | None) -> JobSkeleton:
    """(S, L, per_epoch) of a portable training job: the skeleton root and length of its step record, a
    function of the spec, found by recording step 0 from the spec's own checkpoint 0 (on CPU), and the
    batches of one epoch of its dataset (`job_per_epoch`). Cached per spec hash in this process."""
    return _step_zero(spec, store)[0]


def dispute_kit_problem(spec: SpecLike, store: ArtifactStore | None) -> str | None:
    """Why no party could load a dispute kit of this portable training job's steps (its outputs file or
    state over what `referee_kit.load_kit` reads: `referee_kit.kit_overflow`), or None. Every step has the
    same skeleton, hence the same tensor shapes and sizes, so step 0 answers for the job; recorded once with
    `job_skeleton`. A worker screens a refereed job with it before claiming (worker.worker): a party whose
    kit cannot be written loses the game on its clock, honest or not."""
    return _step_zero(spec, store)[1]


def _step_zero(spec: SpecLike, store: ArtifactStore | None) -> tuple[JobSkeleton, str | None]:
    task = load_spec(spec)
    key = task.spec_hash()
    with _SKELETONS_LOCK:
        cached = _SKELETONS.get(key)
    if cached is None:
        start = initial_checkpoint(task, store, device="cpu")
        record, _ = record_step(task, store, 0, start)
        cached = ((record.skeleton_root(), len(record.entries), job_per_epoch(task, store)),
                  _kit_size(record, len(start))[1])
        with _SKELETONS_LOCK:
            _SKELETONS[key] = cached
    return cached


def checkpoint_naming(spec: SpecLike, store: ArtifactStore | None, boundary: int,
                      skeleton: JobSkeleton | None = None) -> Naming | None:
    """How checkpoint `boundary` of this spec's jobs is named: None (sha256) for native jobs and
    non-training kinds, else its state root with the job's (S, L, per_epoch) and the boundary's segment
    steps (protocol.state_naming.StateRootNaming). `store` supplies what recording step 0 reads; with
    `skeleton` (already known, e.g. from `job_skeleton` in another process) nothing is recorded and
    torch is not imported."""
    from protocol.state_naming import StateRootNaming

    task = load_spec(spec)
    if not uses_state_roots(task):
        return None
    if not 0 <= boundary <= task.num_segments:
        raise EngineError(f"boundary {boundary} outside 0..{task.num_segments}")
    step = task.steps if boundary == task.num_segments else task.segment_bounds(boundary)[0]
    return StateRootNaming(state_binding(task, step, skeleton or job_skeleton(task, store)))


def checkpoint_namings(spec: SpecLike, store: ArtifactStore | None) -> list[Naming | None]:
    """`checkpoint_naming` of every boundary 0 … N (the job's skeleton is recorded once)."""
    task = load_spec(spec)
    return [checkpoint_naming(task, store, boundary) for boundary in range(task.num_segments + 1)]


def checkpoint_name(spec: SpecLike, store: ArtifactStore | None, boundary: int, data: bytes) -> str:
    """h_boundary of checkpoint bytes `data`: their sha256 or their state root (`checkpoint_naming`)."""
    return name_of(data, checkpoint_naming(spec, store, boundary))


def _get_checkpoint(store: ArtifactStore, name: str, naming: Naming | None) -> bytes:
    """Checkpoint `name` from `store`, verified under `naming` (sha256 when None: any store, even one
    that knows no namings, serves native checkpoints as before)."""
    if naming is None:
        return store.get(name, max_bytes=MAX_CHECKPOINT_BYTES)
    return store.get(name, max_bytes=MAX_CHECKPOINT_BYTES, naming=naming)
