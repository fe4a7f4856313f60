"""The staked worker daemon: select, claim, run, commit, finalize, collect; never twice, never lost.

Per job, a row in `worker_jobs` (SQLite) records how far we got; the outbox records every
transaction intent under a fixed key (`claim:<id>`, `commit:<id>`, `finalize:<id>`), so a restart
at any point resumes instead of repeating. Every decision reads the job's state from the escrow
(`job_state`, truth); events only tell us to look sooner. Local states:

    candidate -> skipped (policy or hostile spec; terminal) | deferred (look again later) | claiming
    claiming  -> running (claim confirmed, chain says we are the worker) | lost (someone else; terminal)
    running   -> ran (result on disk) | failed (run failed; terminal, the job will expire)
    ran       -> committing (commit args stored, intent queued) -> committed (chain: Committed)
              -> running (after a reorg: the trace no longer fits the job or our store; see `_unfit`)
    lost      -> claiming | committing (a later reorg made the job ours again on chain: resumed)
    committed -> finalizing -> finalized (paid; terminal) | challenged -> committed | rejected
    any       -> expired | cancelled (chain says so; terminal)

Artifacts (checkpoints, output, fingerprint, and every input the job read) stay in our store:
nothing here deletes them, so a dispute can always be answered. Specs are fetched by hash with a size
limit, validated by `protocol.spec.load_spec`; a bad one is skipped with the reason, never run.

Before a claim (protocol v2): the job's environment class must be one this machine reproduces (the
class is the job's term, so a result from another machine could not survive a dispute), its declared
segment seconds must not be below the reference estimate (or its windows could be too short to
judge), and every input (dataset, initial weights, inputs) is fetched and hash-checked into our own
store, so a submitter that withholds an input after the claim cannot make us miss the deadline.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from protocol.errors import ArtifactError, HashMismatchError, SpecError, TesseraError
from protocol.events import JobState
from worker.executor import Executor, RunOutcome
from worker.judging import ChildGroup
from worker.policy import Machine, Offer, decide, detect_machine, run_device
from worker.runtime.config import WorkerConfig
from worker.runtime.daemon import Daemon
from worker.runtime.db import connect
from worker.runtime.outbox import Intent

TERMINAL = frozenset({"skipped", "lost", "failed", "finalized", "rejected", "expired", "cancelled", "ignored",
                      "voided"})
ACTIVE = frozenset({"claiming", "running", "ran", "committing", "committed", "finalizing", "challenged"})
MAX_FETCH_ATTEMPTS = 3
MAX_COMMIT_REBUILDS = 8  # commits sent again after reorgs, per job (each reorg that moves a claim costs one)
MAX_JOB_FAILURES = 3
MAX_SCREENS_PER_ORIGIN = 2  # screening phases at once fetching from one server (or building in children)
SCREENING_THREADS = 16  # the phases wait on networks and children, not on our CPU


class WorkerDaemon(Daemon):
    """Runs jobs for one staked account. See the module docstring for the state machine."""

    name = "worker"
    event_names = ["JobPosted", "JobClaimed", "JobCommitted", "JobFinalized", "JobExpired", "JobCancelled",
                   "JobChallenged", "JobSettled", "DisputeTimedOut", "RefereeGameOpened"]

    def __init__(self, config: WorkerConfig, *, machine: Machine | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config: WorkerConfig = config
        self.machine = machine or detect_machine(config.device_class)
        self.client: Any = None
        self.db: Any = None
        self.store: Any = None
        self.executor = Executor(config.db_path("runs"), memory_limit_mb=config.memory_limit_mb,
                                 torch_threads=config.torch_threads)
        self._dirty: set[int] = set()
        self._views: dict[int, Any] = {}
        self._execution_timeout: int | None = None
        # Screening of Open jobs (spec fetch, input staging) runs here, off the daemon's loop.
        # A server (or the children building checkpoint 0) gets at most MAX_SCREENS_PER_ORIGIN phases at
        # once; more wait without a thread, so any number of slow-loris posts cannot fill the pool.
        self._pool = ThreadPoolExecutor(max_workers=SCREENING_THREADS, thread_name_prefix="tessera-screen")
        self.children = ChildGroup()  # the checkpoint-0 builds of screening (stopped on drain)
        self._screens: dict[int, tuple[str, float, Future]] = {}
        self._screen_origins: dict[int, frozenset[str]] = {}
        self._queued_screens: dict[int, tuple[str, frozenset[str], Any, tuple[Any, ...]]] = {}
        self._abandoned: list[tuple[frozenset[str], Future]] = []  # phases past their budget, still running
        self._specs: dict[int, Any] = {}
        self.environments: dict[str, Any] = {}  # env class -> worker.judging.Environment
        # lost jobs not worth a look until the next reorg: no claim of ours was signed, or the job settled
        self._lost_quiet: set[int] = set()
        self.referee: Any = None  # worker.referee_duty.RefereeDuties: the refereed disputes we defend
        self._defend_scan: set[int] = set()  # jobs whose disputes may have opened a referee game we do not play yet

    # ------------------------------------------------------------------ wiring

    def open(self) -> None:
        super().open()
        from protocol.artifacts import open_store
        from protocol.client import TesseraClient

        if self.account is None:
            raise TesseraError("the worker needs an account: set `account` (an ape keystore alias)")
        self.client = TesseraClient(self.w3, self.deployment, self.account)
        self.store = open_store(self.config.store)
        self.open_db()

    def open_db(self) -> None:
        """The job table and meta keys (apart from `open`, so tests can drive the state machine on fakes)."""
        self.db = connect(self.config.db_path("worker.sqlite"))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS worker_jobs (job_id INTEGER PRIMARY KEY, state TEXT NOT NULL, reason TEXT,"
            " spec_hash TEXT, attempts INTEGER NOT NULL DEFAULT 0, claimed_at REAL, deadline INTEGER,"
            " run_started_at REAL, result TEXT, commit_args TEXT, updated_at REAL NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS worker_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def on_start(self) -> None:
        assert self.outbox is not None
        self.outbox.register_check("claim", self._claim_still_needed)
        self.outbox.register_check("commit", self._commit_still_needed)
        self.outbox.register_check("finalize", self._finalize_still_needed)
        self.outbox.register_check("expire_reveal", self._expire_reveal_still_needed)
        store_root = getattr(self.store, "root", None)
        if store_root is not None:  # the kit child reads our checkpoints' inputs from a local store
            from worker.referee_duty import RefereeDuties

            self.referee = RefereeDuties(self, "defender", self.config.db_path("referee"), Path(store_root))
            self.referee.register(self.outbox)
            # a game opened while we were down: look at every challenged job of ours once
            self._defend_scan.update(int(r["job_id"]) for r in self.db.execute(
                "SELECT job_id FROM worker_jobs WHERE state='challenged'").fetchall())
        self._execution_timeout = self.client.param("JobEscrow", "execution_timeout")
        from worker.judging import describe_environment, portable_environments

        devices = ["cpu"] + (["cuda"] if self.machine.kind == "cuda" else [])
        # portable classes run on our best device: any device gives their bits (docs/arithmetic.md)
        for env in [*(describe_environment(device) for device in devices), *portable_environments(devices[-1])]:
            self.environments[env.env_class] = env
            self.log.info("this machine reproduces environment class %s (%s)", env.env_class, env.device,
                          extra={"event": "env_class", "env_class": env.env_class})
        self.log.info("worker %s on %s (%s GPU(s)), capacity %s", self.address, self.machine.kind, self.machine.gpus,
                      self.machine.capacity(self.config.concurrency_per_gpu), extra={"event": "worker_start"})
        # jobs at risk survive a restart: a failed job whose claim is still ours on chain is reported again
        for row in self.db.execute("SELECT job_id, reason FROM worker_jobs WHERE state='failed'").fetchall():
            view = self.client.job(int(row["job_id"]))
            if view.state == JobState.CLAIMED and self._is_me(view.job.worker):
                self._report_at_risk(int(row["job_id"]), row["reason"] or "failed")

    # ------------------------------------------------------------------ local state

    def _row(self, job_id: int) -> Any:
        return self.db.execute("SELECT * FROM worker_jobs WHERE job_id=?", (job_id,)).fetchone()

    def _set(self, job_id: int, state: str, reason: str | None = None, **fields: Any) -> None:
        previous = self._row(job_id)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO worker_jobs(job_id, state, updated_at) VALUES (?,?,?)",
                            (job_id, state, time.time()))
            sets = ", ".join(f"{k}=?" for k in fields)
            self.db.execute(
                f"UPDATE worker_jobs SET state=?, reason=?, updated_at=?{', ' + sets if sets else ''} WHERE job_id=?",
                (state, reason, time.time(), *fields.values(), job_id))
        if previous is None or previous["state"] != state:
            level = self.log.warning if state in ("failed", "rejected", "expired") else self.log.info
            level("job %s: %s%s", job_id, state, f" ({reason})" if reason else "",
                  extra={"event": "job_state", "job_id": job_id, "state": state, "reason": reason})
            if state == "failed" and previous is not None and previous["state"] not in ("deferred", "claiming"):
                self._report_at_risk(job_id, reason or "failed")
            elif job_id in self.health.jobs_at_risk and state in TERMINAL:
                self._clear_at_risk(job_id)

    def _report_at_risk(self, job_id: int, reason: str) -> None:
        """A job we claimed (our collateral is locked) that we can no longer finish, e.g. a reorg moved
        its deadline under a run: said loudly at once, in the log, the metric and /healthz, so an operator
        can act long before the expiry slash."""
        self.health.jobs_at_risk[job_id] = reason[:300]
        self.metrics.jobs_at_risk.labels(self.name).set(len(self.health.jobs_at_risk))
        self.log.error("job %s cannot be finished; its collateral is at risk of the expiry slash: %s", job_id, reason,
                       extra={"event": "job_at_risk", "job_id": job_id, "reason": reason})

    def _clear_at_risk(self, job_id: int) -> None:
        self.health.jobs_at_risk.pop(job_id, None)
        self.metrics.jobs_at_risk.labels(self.name).set(len(self.health.jobs_at_risk))

    def job_counts(self) -> dict[str, int]:
        if self.db is None:
            return {}
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM worker_jobs GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    def _meta(self, key: str, default: str = "0") -> str:
        row = self.db.execute("SELECT value FROM worker_meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO worker_meta(key, value) VALUES (?,?)", (key, value))

    def _running_count(self) -> int:
        row = self.db.execute("SELECT COUNT(*) AS n FROM worker_jobs WHERE state IN ('claiming','running')").fetchone()
        return int(row["n"])

    # ------------------------------------------------------------------ chain views

    def _view(self, job_id: int, state: JobState) -> Any:
        """The job rebuilt from events, cached while its on-chain state stays the same."""
        cached = self._views.get(job_id)
        if cached is not None and cached.state == state:
            return cached
        view = self.client.job(job_id)
        self._views[job_id] = view
        return view

    def _is_me(self, address: str) -> bool:
        return address.lower() == self.address.lower()

    # ------------------------------------------------------------------ outbox checks (chain state decides)

    def _claim_still_needed(self, intent: Intent) -> bool:
        """Open, and still the job our claim was built for: a reorg can put another job under the id
        (posts reordered), and sending the old bytes would only revert."""
        if self.client.job_state(intent.job_id) != JobState.OPEN:
            return False
        return self.client.build_claim(intent.job_id, self.client.job(intent.job_id).job).data == intent.data

    def _commit_still_needed(self, intent: Intent) -> bool:
        """Still Claimed by us, in time, and built against the job's current struct: a reorg that moved
        the claim (a new deadline) makes the old bytes revert, so they are dropped and `_settle`
        rebuilds the commit against the struct on chain now."""
        job_id = intent.job_id
        state = self.client.job_state(job_id)
        if state != JobState.CLAIMED:
            return False
        view = self.client.job(job_id)
        self._views[job_id] = view
        if not self._is_me(view.job.worker) or self.client.chain_time() > view.job.deadline:
            return False
        request = self._commit_request(job_id, view)
        return request is not None and request.data == intent.data

    def _commit_request(self, job_id: int, view: Any) -> Any:
        """The commit of our stored arguments against the job's struct `view.job` (None before a result)."""
        row = self._row(job_id)
        if row is None or not row["commit_args"]:
            return None
        args = json.loads(row["commit_args"])
        return self.client.build_commit(job_id, args["state_hashes"], args["output_hash"], args["artifact_uri"],
                                        job=view.job, env_class=args.get("env_class"))

    def _expire_reveal_still_needed(self, intent: Intent) -> bool:
        from protocol.events import DisputeStatus

        return self.client.dispute(int(intent.key.split(":", 1)[1])).status == DisputeStatus.FILED

    def _expire_stale_filings(self, job_id: int) -> None:
        """A filing nobody revealed in time keeps our job from finalizing: expire it (its bond is forfeited)."""
        from protocol.events import DisputeStatus

        window = self.client.param("Disputes", "reveal_window")
        now = self.client.chain_time()
        for dispute in self.client.disputes_of_job(job_id):
            key = f"expire_reveal:{dispute.dispute_id}"
            if dispute.status == DisputeStatus.FILED and now > dispute.filed_at + window and self.outbox.get(key) is None:
                view = self._view(job_id, JobState.CHALLENGED)
                self.outbox.submit(key, "expire_reveal", self.client.build_expire_reveal(dispute.dispute_id, view.job),
                                   job_id=job_id)

    def _finalize_still_needed(self, intent: Intent) -> bool:
        job_id = intent.job_id
        state = self.client.job_state(job_id)
        if state != JobState.COMMITTED:
            return False
        return self.client.chain_time() >= self._view(job_id, state).job.challenge_end

    # ------------------------------------------------------------------ daemon hooks

    def reconcile(self) -> None:
        """Find new jobs by id (not by events: a missed log cannot hide a job) and recheck all active ones."""
        count = self.client.job_count()
        seen = int(self._meta("scanned_up_to"))
        for job_id in range(seen + 1, count + 1):
            if self._row(job_id) is None:
                self._dirty.add(job_id)
        # Only past jobs that have a row: a job still being screened lives in memory, and a kill then
        # must not leave it behind the mark (it is looked at again after the restart).
        while seen < count and self._row(seen + 1) is not None:
            seen += 1
        self._set_meta("scanned_up_to", str(seen))
        for row in self.db.execute("SELECT job_id FROM worker_jobs WHERE state NOT IN (%s)" %
                                   ",".join("?" * len(TERMINAL)), tuple(TERMINAL)).fetchall():
            self._dirty.add(int(row["job_id"]))
        for job_id in list(self.health.jobs_at_risk):
            if self.client.job_state(job_id) != JobState.CLAIMED:  # expired, or taken away: nothing left to do
                self._clear_at_risk(job_id)
        self._watch_lost()
        info = self.client.stake_info(self.address)
        self.metrics.stake_available.labels(self.name).set(info.available)
        self.metrics.stake_locked.labels(self.name).set(info.locked)
        self.metrics.sample_gpus()

    def _watch_lost(self) -> None:
        """A job lost to a rival is ours again when a later branch holds our own signed claim (and not the
        rival's), however that came about: our collateral is then locked on it. So every lost job we signed
        a claim for is looked at while its job is live on chain; settled ones wait for the next reorg."""
        for row in self.db.execute("SELECT job_id FROM worker_jobs WHERE state='lost'").fetchall():
            job_id = int(row["job_id"])
            if job_id in self._lost_quiet:
                continue
            if not self.outbox.attempts(f"claim:{job_id}"):  # never signed a claim: no branch can hold one
                self._lost_quiet.add(job_id)
                continue
            state = self.client.job_state(job_id)
            if state.terminal:
                self._lost_quiet.add(job_id)
            elif state in (JobState.CLAIMED, JobState.COMMITTED, JobState.CHALLENGED):
                self._dirty.add(job_id)

    def on_reorg(self, reorg: Any) -> None:
        """Views folded from events of orphaned blocks are void: drop them and look at every job again
        (lost ones too: the reconcile this forces asks whether the new branch gave one back)."""
        self._views.clear()
        self._lost_quiet.clear()
        if self.referee is not None:
            self.referee.on_reorg()
        for row in self.db.execute("SELECT job_id FROM worker_jobs").fetchall():
            if self._row(row["job_id"])["state"] not in TERMINAL:
                self._dirty.add(int(row["job_id"]))

    def handle_event(self, event: Any) -> None:
        job_id = event.job_id
        if job_id is None:
            return
        if event.name == "RefereeGameOpened":
            self._defend_scan.add(job_id)
        row = self._row(job_id)
        if row is None or row["state"] not in TERMINAL:
            self._dirty.add(job_id)
        elif row["state"] == "lost" and event.name == "JobClaimed" and self._is_me(event.worker):
            self._dirty.add(job_id)  # our claim on the canonical branch after all: the job may be ours again

    def on_intent(self, intent: Intent) -> None:
        if intent.job_id is not None:
            self._dirty.add(intent.job_id)

    def tick(self) -> None:
        # Active jobs every tick (cheap state reads); new candidates as found.
        for row in self.db.execute("SELECT job_id FROM worker_jobs WHERE state IN (%s)" %
                                   ",".join("?" * len(ACTIVE)), tuple(ACTIVE)).fetchall():
            self._dirty.add(int(row["job_id"]))
        self._dirty.update(self._screens)  # screening jobs are looked at until their phase is done
        self._dirty.update(self._queued_screens)
        for job_id in sorted(self._dirty):
            if self.stopping:
                break
            self._dirty.discard(job_id)
            try:
                failures = self.isolated(f"job {job_id}", self.advance, job_id)
            except Exception:
                self._dirty.add(job_id)  # an RPC failure: try again next tick
                raise
            if failures:
                self._dirty.add(job_id)
                row = self._row(job_id)
                if failures >= MAX_JOB_FAILURES and (row is None or row["state"] == "deferred"):
                    # never claimed: give up on it (its reason says why) instead of retrying for ever
                    self._dirty.discard(job_id)
                    self._set(job_id, "skipped", f"could not be handled after {failures} attempts")
        if self.referee is not None:
            for job_id in sorted(self._defend_scan):
                if not self.stopping and self.isolated(f"defend job {job_id}", self._defend, job_id) == 0:
                    self._defend_scan.discard(job_id)
            self.referee.tick()  # our refereed disputes: kits built in children, moves through the outbox

    def drain(self) -> None:
        """Stop training children cleanly; their jobs resume (re-run) after a restart."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.children.stop()
        if self.referee is not None:
            self.referee.stop()
        self.executor.stop_all()
        for row in self.db.execute("SELECT job_id FROM worker_jobs WHERE state='running'").fetchall():
            self.log.info("job %s: run interrupted by shutdown; will re-run on restart", row["job_id"],
                          extra={"event": "run_interrupted", "job_id": row["job_id"]})

    def close(self) -> None:
        super().close()
        if self.db is not None:
            self.db.close()
            self.db = None

    # ------------------------------------------------------------------ refereed disputes (defender)

    def _defend(self, job_id: int) -> None:
        """Write a referee duty for every dispute of our job `job_id` that opened a game we do not play yet:
        the agreed checkpoint from our store (named by its state root under the job's step-record
        skeleton, which our run reported), the spec we kept at claim time."""
        from protocol.events import RefereeGameOpened
        from protocol.spec import load_spec
        from protocol.state_naming import StateRootNaming
        from worker.referee_duty import agreed_binding, load_spec_bytes

        view = self.client.job(job_id)
        if not self._is_me(view.job.worker):
            return
        for event in view.events:
            if not isinstance(event, RefereeGameOpened) or self.referee.has(event.dispute_id):
                continue
            row = self._row(job_id)
            result = json.loads(row["result"]) if row is not None and row["result"] else {}
            record = (result.get("metrics") or {}).get("step_record")
            if record is None or "per_epoch" not in record:
                raise TesseraError(f"job {job_id}: our run reported no step-record skeleton to defend a referee game")
            skeleton = (bytes.fromhex(str(record["skeleton_root"]).removeprefix("0x")), int(record["length"]),
                        int(record["per_epoch"]))
            segment = self.client.dispute(event.dispute_id).segment
            spec_bytes = load_spec_bytes(self.store, view.job.spec_hash)
            binding = agreed_binding(load_spec(spec_bytes), segment, skeleton)
            checkpoint = self.store.get(view.state_hashes[segment], max_bytes=2**34, naming=StateRootNaming(binding))
            self.referee.add(event.dispute_id, job_id, segment, spec_bytes, checkpoint, skeleton, event.block_number)

    # ------------------------------------------------------------------ the per-job state machine

    def advance(self, job_id: int) -> None:
        """Move one job forward as far as chain state allows (idempotent)."""
        row = self._row(job_id)
        local = row["state"] if row else None
        if local in TERMINAL and local != "lost":
            return
        chain = self.client.job_state(job_id)
        if local == "lost":
            return self._resume_if_ours(job_id, chain)
        if chain == JobState.NONE:
            return
        if chain == JobState.CANCELLED:
            self._stop_run(job_id)
            return self._set(job_id, "cancelled" if local else "ignored", "cancelled by the submitter")
        if self.outbox.get(f"claim:{job_id}") is None and local in (None, "deferred"):
            return self._consider(job_id, chain, row)
        if local in (None, "deferred", "claiming"):
            return self._after_claim(job_id, chain)
        if chain == JobState.EXPIRED:
            self._stop_run(job_id)
            return self._set(job_id, "expired", "deadline passed before a commit")
        if local == "running":
            return self._running(job_id, chain, row)
        if local == "ran":
            return self._commit(job_id, chain, row)
        if local in ("committing", "committed", "finalizing", "challenged"):
            return self._settle(job_id, chain, local)

    def _consider(self, job_id: int, chain: JobState, row: Any) -> None:
        """Screen an Open job without blocking the loop: the spec fetch and the input staging run on the
        screening threads; each visit either starts a phase, waits for it (within the screening
        budget), or acts on its result. A malformed, slow or hostile job costs its budget once."""
        if chain != JobState.OPEN:
            self._end_screen(job_id)
            return self._set(job_id, "ignored", f"not open ({chain.label}) when first seen")
        view = self._view(job_id, chain)
        screen = self._screens.get(job_id)
        if screen is None:
            phase, origins, fn, args = self._queued_screens.get(job_id) or (
                "spec", frozenset({_origin(view.spec_uri)}), self._fetch_spec, (view.spec_uri, view.job.spec_hash))
            return self._screen(job_id, phase, origins, fn, *args)
        phase, started, future = screen
        if not future.done():
            if time.monotonic() - started > self.config.screening_budget_s:
                # its thread may hang on until its own timeouts: it still counts against its origins
                self._abandoned.append((self._screen_origins.get(job_id, frozenset()), future))
                self._end_screen(job_id)
                self._set(job_id, "skipped", f"screening ({phase}) took longer than its budget of "
                                             f"{self.config.screening_budget_s:g}s", spec_hash=view.job.spec_hash)
            return
        self._end_screen(job_id)
        if phase == "spec":
            return self._screened_spec(job_id, view, row, future)
        if phase == "inputs":
            return self._screened_inputs(job_id, view, row, future)
        return self._screened_initial_state(job_id, view, future)

    def _screened_spec(self, job_id: int, view: Any, row: Any, future: Any) -> None:
        try:
            spec = future.result()
        except (SpecError, HashMismatchError) as exc:
            return self._set(job_id, "skipped", f"hostile or malformed spec: {exc}", spec_hash=view.job.spec_hash)
        except ArtifactError as exc:
            attempts = (row["attempts"] if row else 0) + 1
            if attempts >= MAX_FETCH_ATTEMPTS:
                return self._set(job_id, "skipped", f"spec not fetchable: {exc}", attempts=attempts)
            return self._set(job_id, "deferred", f"spec fetch failed ({attempts}/{MAX_FETCH_ATTEMPTS}): {exc}",
                             attempts=attempts)
        except Exception as exc:  # noqa: BLE001 - whatever a hostile spec does, it is this job's problem only
            return self._set(job_id, "skipped", f"spec could not be screened: {type(exc).__name__}: {exc}"[:500])
        if spec.num_segments != view.job.num_segments:
            return self._set(job_id, "skipped", f"spec has {spec.num_segments} segments, job posted "
                                                f"{view.job.num_segments}")
        environment = self.environments.get(view.job.env_class.lower())
        if environment is None:
            return self._set(job_id, "skipped", f"environment class {view.job.env_class} is not this machine's "
                                                f"({', '.join(self.environments) or 'none'})", spec_hash=view.job.spec_hash)
        from worker.judging import class_problem

        problem = class_problem(spec, view.job.env_class)
        if problem is not None:  # no run of ours would lie in the job's class: the commit could only fail
            return self._set(job_id, "skipped", f"the job's class does not fit its spec: {problem}",
                             spec_hash=view.job.spec_hash)
        if spec.device != "any" and spec.device != environment.device:
            return self._set(job_id, "skipped", f"spec needs device {spec.device}, the job's class is "
                                                f"{environment.device}", spec_hash=view.job.spec_hash)
        from protocol.screening import segment_problems

        problems = segment_problems(spec, view.job.segment_seconds)
        if problems:
            return self._set(job_id, "skipped", problems[0], spec_hash=view.job.spec_hash)
        offer = Offer(job_id, view.job.payment, view.job.collateral, spec, int(self._execution_timeout or 0))
        available = self.client.stake_info(self.address).available
        decision = decide(self.config, offer, self.machine, running=self._running_count(), available_stake=available)
        if decision.action == "skip":
            return self._set(job_id, "skipped", decision.reason, spec_hash=view.job.spec_hash)
        if decision.action == "defer":
            if row is None or row["reason"] != decision.reason:
                self._set(job_id, "deferred", decision.reason)
            return
        from worker.judging import stage_inputs

        self._specs[job_id] = spec
        self._screen(job_id, "inputs", _input_origins(spec), partial(stage_inputs, timeout=self.config.rpc_timeout),
                     spec, self.store, [])

    def _screened_inputs(self, job_id: int, view: Any, row: Any, future: Any) -> None:
        try:
            missing = future.result()
        except Exception as exc:  # noqa: BLE001 - as for the spec: this job's problem only
            missing = [f"{type(exc).__name__}: {exc}"[:300]]
        if missing:
            attempts = (row["attempts"] if row else 0) + 1
            state = "skipped" if attempts >= MAX_FETCH_ATTEMPTS else "deferred"
            return self._set(job_id, state, f"inputs not fetchable before the claim ({attempts}/"
                                            f"{MAX_FETCH_ATTEMPTS}): {missing}", attempts=attempts)
        spec = self._specs.get(job_id)
        refereed = spec is not None and self._refereed(spec, view.job)
        if spec is not None and (_inputs_unchecked(spec) or refereed):
            # Inputs that hash right can still not fit the model (weights of other shapes, a dataset of
            # other dtypes): only building checkpoint 0 shows it, and after a claim that failure would
            # cost us the expiry compensation (audit F-12). Built-in datasets were checked with the spec.
            # A refereed job whose step is too large for a dispute kit would lose us any game a challenger
            # opens (no kit, no move): only recording a step shows its size.
            environment = self.environments[view.job.env_class.lower()]
            return self._screen(job_id, "initial state", frozenset({"children"}), self._build_initial_state,
                                spec, environment, refereed)
        self._claim(job_id, view, spec)

    def _screen(self, job_id: int, phase: str, origins: frozenset[str], fn: Any, *args: Any) -> None:
        """Start screening phase `phase` of `job_id` on a screening thread, or queue it (looked at every
        tick) while MAX_SCREENS_PER_ORIGIN running phases already use one of `origins`."""
        self._abandoned = [(used, future) for used, future in self._abandoned if not future.done()]
        running = [(self._screen_origins.get(j, frozenset()), future) for j, (_, _, future) in self._screens.items()]
        busy = [o for used, future in running + self._abandoned if not future.done() for o in used]
        if any(busy.count(origin) >= MAX_SCREENS_PER_ORIGIN for origin in origins):
            self._queued_screens[job_id] = (phase, origins, fn, args)
            return
        self._queued_screens.pop(job_id, None)
        self._screen_origins[job_id] = origins
        future = self._pool.submit(fn, *args)
        self._screens[job_id] = (phase, time.monotonic(), future)
        future.add_done_callback(lambda _done: self.wake())  # its next phase (or the claim) starts at once

    def _end_screen(self, job_id: int) -> None:
        for table in (self._screens, self._screen_origins, self._queued_screens):
            table.pop(job_id, None)

    def _build_initial_state(self, spec: Any, environment: Any, refereed: bool) -> list[Any]:
        """Checkpoint 0 of `spec` built in a budgeted child over the staged inputs (`worker.judging`), and for a
        refereed job whether a dispute kit of its steps can be loaded (the same child records step 0 once)."""
        from worker.judging import KIT_FITS, ZERO_HASH, Check, CheckKind, run_checks

        checks = [Check(kind=CheckKind.INITIAL, boundary=0, expected=ZERO_HASH)]
        if refereed:
            checks.append(Check(kind=CheckKind.KIT, boundary=0, expected=KIT_FITS))
        return run_checks(spec, Path(self.store.root), checks, device=environment.device, recompute=True,
                          env=environment.child_env(), budget_s=self.config.screening_budget_s,
                          memory_limit_mb=self.config.memory_limit_mb, children=self.children)

    def _refereed(self, spec: Any, job: Any) -> bool:
        """Whether a challenger of `job` opens a refereed game (its class is the deployment's refereed one and its
        h_i are state roots), which we would play from dispute kits of its steps."""
        from engine.api import uses_state_roots

        return uses_state_roots(spec) and self.client.is_refereed(job)

    def _screened_initial_state(self, job_id: int, view: Any, future: Any) -> None:
        from worker.judging import Outcome

        try:
            initial, *kit = future.result()
        except Exception as exc:  # noqa: BLE001 - as for the spec: this job's problem only
            return self._set(job_id, "skipped", f"initial state not buildable: {type(exc).__name__}: {exc}"[:500],
                             spec_hash=view.job.spec_hash)
        if initial.recomputed is None:  # the inputs do not fit the model, or building them exceeded the budget
            return self._set(job_id, "skipped", f"infeasible inputs, checkpoint 0 cannot be built "
                                                f"({initial.outcome.value}): {initial.detail}"[:500],
                             spec_hash=view.job.spec_hash)
        if kit and kit[0].outcome is not Outcome.MATCH:  # MISMATCH: too large; ERROR: not sized within the budget
            return self._set(job_id, "skipped", f"refereed job we could not defend ({kit[0].outcome.value}): "
                                                f"{kit[0].detail}"[:500], spec_hash=view.job.spec_hash)
        self._claim(job_id, view, self._specs.get(job_id))

    def _claim(self, job_id: int, view: Any, spec: Any) -> None:
        # Keep the spec beside our checkpoints: the arbiter falls back to our store when the submitter's
        # URI stops serving it, and a spec nobody serves is ruled against us.
        if spec is not None:
            self.store.put(spec.canonical_bytes())  # its content hash is the job's spec hash (checked at fetch)
        self._set_meta(f"terms:{job_id}", _terms(view.job))  # what was screened: a reorg may change the job
        self.outbox.submit(f"claim:{job_id}", "claim", self.client.build_claim(job_id, view.job), job_id=job_id)
        self._set(job_id, "claiming", None, spec_hash=view.job.spec_hash)

    def _fetch_spec(self, spec_uri: str, spec_hash: str) -> Any:
        """Fetch the spec by hash (size-limited, verified) from an allowed URI scheme and validate it."""
        from protocol.screening import fetch_spec

        return fetch_spec(spec_uri, spec_hash, schemes=self.config.spec_uri_schemes, timeout=self.config.rpc_timeout,
                          max_bytes=self.config.max_spec_bytes)

    def _after_claim(self, job_id: int, chain: JobState) -> None:
        intent = self.outbox.get(f"claim:{job_id}")
        if chain == JobState.OPEN:
            if intent is not None and intent.done and not intent.succeeded:
                return self._set(job_id, "lost", f"claim {intent.state}: {intent.reason}")
            if self._row(job_id) is None or self._row(job_id)["state"] != "claiming":
                self._set(job_id, "claiming")
            return  # claim on its way (or reorged out and being re-sent)
        # Fresh from the chain (never a cached view): is it ours, and is the claim deep enough?
        view = self.client.job(job_id)
        self._views[job_id] = view
        if not self._is_me(view.job.worker):
            return self._set(job_id, "lost", f"claimed by {view.job.worker}")
        claimed = [e for e in view.events if e.name == "JobClaimed"]
        depth_needed = self.config.confirmations if self.config.run_confirmations is None else \
            self.config.run_confirmations
        if not claimed or self.w3.eth.block_number - claimed[-1].block_number + 1 < max(depth_needed, 1):
            return  # spend compute only once the claim is deep enough not to be reorged out
        if intent is not None and not intent.succeeded and not intent.done:
            return
        row = self._row(job_id)
        if row is not None and row["result"] and row["commit_args"]:
            # claimed again after a reorg took our claim and commit away: the trace is deterministic and
            # already computed, so commit it again against the new struct instead of running again
            unfit = self._unfit(view, row)
            if unfit is not None:
                return self._rerun(job_id, view, unfit)
            self._set(job_id, "ran", "claimed again after a reorg; committing the trace we have",
                      deadline=view.job.deadline)
            return self._commit(job_id, chain, self._row(job_id))
        self._set(job_id, "running", None, claimed_at=time.time(), deadline=view.job.deadline)
        self._running(job_id, chain, self._row(job_id))

    def _resume_if_ours(self, job_id: int, chain: JobState) -> None:
        """A lost job that chain state shows as ours again (a reorg mined our signed claim after all):
        our collateral is locked on it, so it is finished like any other, from where the chain stands."""
        if chain not in (JobState.CLAIMED, JobState.COMMITTED, JobState.CHALLENGED):
            return
        view = self.client.job(job_id)
        self._views[job_id] = view
        if not self._is_me(view.job.worker):
            return
        self.log.warning("job %s: %s by us again after it was lost to a reorg; resuming it", job_id, chain.label,
                         extra={"event": "job_resumed", "job_id": job_id})
        if chain == JobState.CLAIMED:
            self._set(job_id, "claiming", "ours again after a reorg; resuming")
            return self._after_claim(job_id, chain)
        self._set(job_id, "committing", "our commit is on chain again after a reorg")
        self._settle(job_id, chain, "committing")

    def _unfit(self, view: Any, row: Any) -> str | None:
        """Why the trace we computed cannot be committed as is to the job on chain now (None: it can).

        Two things a reorg or time can change under a computed trace: the job under this id (posts
        reordered on the new branch: another spec, so the trace is of another job), and our store (a
        checkpoint or the output pruned or lost since the run: a commit we could not serve in a dispute
        loses it). Either way the job is run again: compute is cheaper than the slash."""
        from protocol.hashing import DIVERGED_HASH

        if not row["result"]:
            return None  # nothing computed yet: nothing to judge
        result = json.loads(row["result"])
        if str(result.get("spec_hash", "")).lower() != view.job.spec_hash.lower():
            return f"the job's spec is now {view.job.spec_hash}; the trace is of {result.get('spec_hash')}"
        needed = [*result.get("state_hashes", []), result.get("output_hash", "")]
        missing = [h for h in needed if h != DIVERGED_HASH and not self.store.has(h)]
        if missing:
            return f"{len(missing)} artifact(s) of the trace are no longer in our store (first {missing[0]})"
        return None

    def _rerun(self, job_id: int, view: Any, reason: str) -> None:
        """Run the (ours, Claimed) job again instead of committing a trace that does not fit (`_unfit`)."""
        self.log.warning("job %s: running it again: %s", job_id, reason,
                         extra={"event": "trace_rerun", "job_id": job_id, "reason": reason})
        self.executor.discard(job_id)  # else the old result comes straight back from disk
        spec = self._specs.get(job_id)
        if spec is not None and spec.spec_hash() != view.job.spec_hash.lower():
            del self._specs[job_id]
        self._set(job_id, "running", f"run again: {reason}", deadline=view.job.deadline, result=None,
                  commit_args=None, spec_hash=view.job.spec_hash)
        self._running(job_id, JobState.CLAIMED, self._row(job_id))

    def _running(self, job_id: int, chain: JobState, row: Any) -> None:
        if chain == JobState.OPEN:
            # The claim was reorged out under us: stop working on a job that is not ours.
            self._stop_run(job_id)
            return self._set(job_id, "claiming", "claim reorged out; waiting for it again")
        if chain != JobState.CLAIMED:
            self._stop_run(job_id)
            return self._set(job_id, "lost", f"job is {chain.label} while we were running it")
        outcome = self.executor.poll(job_id)
        if outcome is None and job_id not in self.executor.running:
            self._start_run(job_id, chain, row)
            return
        if outcome is None:
            return
        self._finish_run(job_id, outcome)

    def _start_run(self, job_id: int, chain: JobState, row: Any) -> None:
        view = self._view(job_id, chain)
        spec = self._specs.get(job_id)
        if spec is None or spec.spec_hash() != view.job.spec_hash.lower():  # never run a spec the job lacks
            spec = self._fetch_spec(view.spec_uri, view.job.spec_hash)
        now_chain = self.client.chain_time()
        budget = view.job.deadline - now_chain - self.config.deadline_margin
        if budget <= 0:
            return self._set(job_id, "failed", "no time left before the deadline margin to run")
        slot = self._running_slot(job_id)
        environment = self.environments.get(view.job.env_class.lower())
        device = environment.device if environment is not None else run_device(spec, self.machine)
        self.executor.start(job_id, spec.canonical_bytes(), self.config.store, device=device,
                            stop_at=time.time() + budget, gpu_index=slot if self.machine.kind == "cuda" else None)
        with self.db:
            self.db.execute("UPDATE worker_jobs SET run_started_at=? WHERE job_id=?", (time.time(), job_id))

    def _running_slot(self, job_id: int) -> int:
        busy = len(self.executor.running)
        return busy // self.config.concurrency_per_gpu if self.machine.gpus else 0

    def _finish_run(self, job_id: int, outcome: RunOutcome) -> None:
        if not outcome.ok:
            return self._set(job_id, "failed", f"run failed: {outcome.error}")
        self._set(job_id, "ran", None, result=json.dumps(outcome.result))
        self._commit(job_id, self.client.job_state(job_id), self._row(job_id))

    def _stop_run(self, job_id: int) -> None:
        if job_id in self.executor.running:
            self.executor.stop(job_id)

    def _commit(self, job_id: int, chain: JobState, row: Any) -> None:
        if chain != JobState.CLAIMED:
            return self._settle(job_id, chain, "committing")
        view = self._view(job_id, chain)
        args = json.loads(row["commit_args"]) if row["commit_args"] else None
        if args is None or "state_hashes" not in args:  # none yet, or stored by a version that committed roots
            args = self._commit_args(job_id, json.loads(row["result"]))
            # Stored before the intent: a restart commits exactly these values (personas are random).
            with self.db:
                self.db.execute("UPDATE worker_jobs SET commit_args=? WHERE job_id=?", (json.dumps(args), job_id))
        request = self.client.build_commit(job_id, args["state_hashes"], args["output_hash"], args["artifact_uri"],
                                           job=view.job, env_class=args.get("env_class"))
        intent = self.outbox.submit(self._commit_key(job_id), "commit", request, job_id=job_id)
        if intent.done and not intent.succeeded and intent.data != request.data:
            self._new_commit(job_id, request)  # an old commit, reorged away: one against the new struct
        self._set(job_id, "committing")

    def _commit_key(self, job_id: int) -> str:
        """The outbox key of the job's current commit: `commit:<id>`, then `commit:<id>:<n>` for each
        commit rebuilt against a changed struct (the old intents keep their attempts, so a no-op that
        filled an old nonce is still followed through later reorgs)."""
        generation = int(self._meta(f"commit_generation:{job_id}"))
        return f"commit:{job_id}" if generation == 0 else f"commit:{job_id}:{generation}"

    def _new_commit(self, job_id: int, request: Any) -> None:
        generation = int(self._meta(f"commit_generation:{job_id}")) + 1
        self._set_meta(f"commit_generation:{job_id}", str(generation))
        self.outbox.submit(self._commit_key(job_id), "commit", request, job_id=job_id)

    def _commit_args(self, job_id: int, result: dict[str, Any]) -> dict[str, Any]:
        """Trace h_0 … h_N, output hash, environment class and store URI to commit.

        The trace goes on chain (the escrow computes the root and logs the leaves), so nothing but the
        checkpoints, the output and the inputs needs publishing in our store. The environment class is
        the one the run's fingerprint belongs to (the policy only claimed jobs in our classes).
        """
        from engine.api import RunResult
        from engine.determinism import env_class_descriptor, env_class_hash

        run_result = RunResult.model_validate(self.transform_result(job_id, result))
        return self.transform_commit(job_id, {
            "state_hashes": list(run_result.state_hashes), "output_hash": run_result.output_hash,
            "env_class": env_class_hash(env_class_descriptor(run_result.fingerprint)),
            "artifact_uri": self.config.artifact_uri,
        })

    def transform_result(self, job_id: int, result: dict[str, Any]) -> dict[str, Any]:
        """The run's result as this worker reports it (a hook: a test persona describes its run as another
        machine's; the production worker reports exactly what its run recorded)."""
        return result

    def transform_commit(self, job_id: int, args: dict[str, Any]) -> dict[str, Any]:
        """What to commit, given the honest result (a hook: the dishonest test personas in `personas/`
        override it; the production worker commits exactly what it computed)."""
        return args

    def _settle(self, job_id: int, chain: JobState, local: str) -> None:
        if chain == JobState.CLAIMED:
            intent = self.outbox.get(self._commit_key(job_id))
            if intent is not None and intent.done and not intent.succeeded:
                view = self.client.job(job_id)
                self._views[job_id] = view
                if not self._is_me(view.job.worker):  # a rival's claim won on the new branch
                    return self._set(job_id, "lost", f"claimed by {view.job.worker} after a reorg")
                request = self._commit_request(job_id, view)
                in_time = self.client.chain_time() <= view.job.deadline - self.config.deadline_margin / 2
                # A commit cancelled or dropped because a reorg made it unneeded for a while (the claim gone,
                # then claimed again, possibly with the very same struct), or one built against a struct that
                # changed since, is sent again; one that reverted or failed with the struct unchanged is not.
                reorged = intent.state in ("cancelled", "dropped")
                rebuilds = int(self._meta(f"commit_generation:{job_id}"))
                if (in_time and request is not None and rebuilds < MAX_COMMIT_REBUILDS
                        and (reorged or request.data != intent.data)):
                    unfit = self._unfit(view, self._row(job_id))
                    if unfit is not None:
                        return self._rerun(job_id, view, unfit)
                    self._new_commit(job_id, request)
                    self.log.warning("job %s: commit rebuilt against the job's current struct (deadline %s)",
                                     job_id, view.job.deadline, extra={"event": "commit_rebuilt", "job_id": job_id})
                    return self._set(job_id, "committing", "commit rebuilt after the job changed on chain")
                self._set(job_id, "failed", f"commit {intent.state}: {intent.reason}")
            return
        if chain == JobState.OPEN:
            # a reorg took our claim (and commit) away: claim again; the claim intent is re-sent by the
            # outbox, or queued again here when it ended without effect
            current = self.client.job(job_id).job
            # rows from before terms were kept know only the spec
            screened = self._meta(f"terms:{job_id}", "") or json.dumps({"spec_hash": self._row(job_id)["spec_hash"]})
            if not _same_terms(json.loads(screened), current):
                # posts reordered on the new branch: another job under this id (another spec, payment,
                # collateral or class), one we never screened
                return self._set(job_id, "lost", f"the job under this id is now another ({_terms(current)}; we "
                                                 f"screened {screened}); not claimed unscreened")
            claim = self.outbox.get(f"claim:{job_id}")
            if claim is not None and claim.done and not claim.succeeded:
                self.outbox.retry(f"claim:{job_id}", self.client.build_claim(job_id, current))
            self.log.warning("job %s: our claim was reorganised away; claiming it again", job_id,
                             extra={"event": "reclaim", "job_id": job_id})
            return self._set(job_id, "claiming", "claim reorged out; claiming again")
        if chain == JobState.EXPIRED:
            return self._set(job_id, "expired", "deadline passed before the commit landed")
        if chain == JobState.REJECTED:
            return self._set(job_id, "rejected", "a ruling (the arbiter's or a referee game's) went against our result")
        if chain == JobState.CHALLENGED:
            if local != "challenged":
                self._set(job_id, "challenged", "a dispute is open; artifacts kept for its ruling")
            self._expire_stale_filings(job_id)
            return
        if chain == JobState.VOIDED:
            return self._set(job_id, "voided", "the arbiter missed a dispute's window: no pay, collateral back")
        if chain == JobState.FINALIZED:
            view = self._view(job_id, chain)
            if not self._is_me(view.job.worker):
                return self._set(job_id, "lost", f"finalized for {view.job.worker}")
            row = self._row(job_id)
            if row["claimed_at"]:
                self.metrics.job_duration.labels(self.name).observe(max(0.0, time.time() - float(row["claimed_at"])))
            return self._set(job_id, "finalized", "paid")
        if chain != JobState.COMMITTED:
            return
        if local in ("committing", "challenged"):
            self._set(job_id, "committed")
        view = self._view(job_id, chain)
        if self.client.chain_time() < view.job.challenge_end:
            return
        key = f"finalize:{job_id}"
        intent = self.outbox.get(key)
        if intent is None:
            self.outbox.submit(key, "finalize", self.client.build_finalize(job_id, view.job), job_id=job_id)
        elif intent.done and not intent.succeeded:
            # A finalize that failed (e.g. simulated a moment too early) is simply tried again.
            self.outbox.retry(key, self.client.build_finalize(job_id, view.job))
        self._set(job_id, "finalizing")


def _inputs_unchecked(spec: Any) -> bool:
    """Whether `spec` reads an input that its own validation could not check against the model (any but a
    built-in dataset, whose facts `protocol.builtin_data` holds)."""
    from protocol.builtin_data import BUILTIN_DATASETS
    from worker.judging import input_refs

    builtin = spec.dataset is not None and spec.dataset.hash.lower() in BUILTIN_DATASETS  # checked with the spec
    return any(ref is not spec.dataset or not builtin for ref in input_refs(spec))


def _origin(uri: str) -> str:
    """Who serves `uri`, for the per-origin screening limit: an HTTP(S) server, else this machine."""
    try:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme.lower() in ("http", "https"):
            return f"{parsed.scheme.lower()}://{parsed.netloc.lower()}"
    except ValueError:  # a malformed URI fails fast in the fetch; it still counts against one origin
        return "malformed"
    return "local"


def _input_origins(spec: Any) -> frozenset[str]:
    from worker.judging import input_refs

    return frozenset(_origin(uri) for ref in input_refs(spec) for uri in ref.uris if not uri.startswith("builtin://"))


def _terms(job: Any) -> str:
    """A job's terms as screened before a claim: everything the poster set (not the claim's fields)."""
    return json.dumps({"submitter": job.submitter.lower(), "payment": job.payment, "collateral": job.collateral,
                       "spec_hash": job.spec_hash.lower(), "num_segments": job.num_segments,
                       "env_class": job.env_class.lower(), "segment_seconds": job.segment_seconds}, sort_keys=True)


def _same_terms(screened: dict[str, Any], job: Any) -> bool:
    """Whether `job` still has every term we screened (a None spec: nothing was screened yet)."""
    now = json.loads(_terms(job))
    return all(value is None or str(value).lower() == str(now[key]).lower() for key, value in screened.items())
