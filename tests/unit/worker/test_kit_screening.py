"""A worker never claims a refereed job it could not defend: a portable training job whose step is too large
for a dispute kit (docs/disputes.md, "A step too large for a dispute kit") is skipped before the claim.

The daemon screens every refereed portable training job in one child that builds checkpoint 0 and records step 0
(`WorkerDaemon._build_initial_state`, checks INITIAL and KIT); the child's KIT verdict is played here by the
real child process on the tiny GPT (it fits) and by the child's own code in this process with the kit limit
lowered to a few kilobytes, as a model of a step past 8 GiB (it does not fit), then handed to the daemon's
screening step, which claims the one and skips the other with the reason.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from engine.presets import digits_spec, tiny_gpt_spec
from protocol.artifacts import LocalStore
from worker.judging import KIT_FITS, CheckKind, CheckResult, Outcome, portable_environments
from worker.policy import Machine
from worker.runtime.config import WorkerConfig
from worker.worker import WorkerDaemon

SMALL_KIT_LIMIT = 64 * 1024


@pytest.fixture
def daemon(tmp_path):
    worker = WorkerDaemon(WorkerConfig(data_dir=tmp_path / "data", store=str(tmp_path / "store")),
                          machine=Machine("cpu"))
    worker.store = LocalStore(tmp_path / "store")  # as `open` sets it, without a chain
    worker.open_db()
    worker.environments = {env.env_class: env for env in portable_environments("cpu")}  # as `on_start` adds them
    # the deployment refers the portable class to the referee (TesseraClient.is_refereed reads it from Disputes)
    worker.refereed = set(worker.environments)
    worker.client = SimpleNamespace(is_refereed=lambda job: job.env_class in worker.refereed)
    worker.claimed = []
    worker._claim = lambda job_id, view, spec: worker.claimed.append(job_id)
    yield worker
    worker._pool.shutdown(wait=True, cancel_futures=True)


def _view(spec, env_class: str) -> SimpleNamespace:
    return SimpleNamespace(job=SimpleNamespace(env_class=env_class, spec_hash=spec.spec_hash()))


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def test_a_refereed_portable_training_job_goes_through_the_kit_screen_and_others_do_not(daemon):
    """Every spec here reads a built-in dataset (checked with the spec, so a job needs no child for its inputs):
    only the portable training job of the refereed class is sent to the checkpoint-0 child, its checks then
    including KIT; a native job, and the same portable job where the deployment refers no class to the referee
    (level 1: an arbiter replays the segment, no kit is played), are claimed at once."""
    started = []
    daemon._screen = lambda job_id, phase, origins, fn, *args: started.append((job_id, phase, args))
    portable, native = tiny_gpt_spec(arithmetic="portable/1"), digits_spec(steps=2, segment_steps=1, schedule={"name": "constant"})
    env_class = next(iter(daemon.environments))
    for job_id, spec in ((1, portable), (2, native)):
        daemon._specs[job_id] = spec
        daemon._screened_inputs(job_id, _view(spec, env_class), None, _done([]))
    daemon.refereed.clear()
    daemon._specs[3] = portable
    daemon._screened_inputs(3, _view(portable, env_class), None, _done([]))
    assert [(job_id, phase, args[-1]) for job_id, phase, args in started] == [(1, "initial state", True)]
    assert daemon.claimed == [2, 3]


def test_the_kit_screen_of_the_tiny_gpt_fits_and_the_job_is_claimed(daemon):
    """The real child: checkpoint 0 built and step 0 recorded once, the kit (about 20 MB) within the limit."""
    spec = tiny_gpt_spec(arithmetic="portable/1")
    env_class, environment = next(iter(daemon.environments.items()))
    results = daemon._build_initial_state(spec, environment, True)
    assert [r.check.kind for r in results] == [CheckKind.INITIAL, CheckKind.KIT]
    initial, kit = results
    assert initial.recomputed is not None and kit.outcome is Outcome.MATCH and kit.recomputed == KIT_FITS, results
    daemon._screened_initial_state(7, _view(spec, env_class), _done(results))
    assert daemon.claimed == [7] and daemon._row(7) is None


def test_a_job_whose_step_kit_is_too_large_is_skipped_with_the_reason(daemon, tmp_path, monkeypatch):
    """The child's code with the limit lowered: its KIT check fails with the outputs file's size, and the daemon
    skips the job before claiming (no claim sent), saying why."""
    import engine.api as api
    from protocol import referee_kit as rk
    from worker import judge_child
    from worker.judging import ZERO_HASH, Check

    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", SMALL_KIT_LIMIT)
    monkeypatch.setattr(api, "_SKELETONS", {})  # recorded afresh under the lowered limit
    spec = tiny_gpt_spec(arithmetic="portable/1")
    task, out = tmp_path / "task.json", tmp_path / "out.json"
    checks = [Check(kind=CheckKind.INITIAL, boundary=0, expected=ZERO_HASH),
              Check(kind=CheckKind.KIT, boundary=0, expected=KIT_FITS)]
    task.write_text(json.dumps({"spec": spec.canonical_bytes().decode(), "cache": str(tmp_path / "cache"),
                                "device": "cpu", "recompute": True,
                                "checks": [c.model_dump(mode="json") for c in checks]}))
    assert judge_child._run(task, out) == 0
    initial, kit = [CheckResult.model_validate(r) for r in json.loads(out.read_text())]
    assert initial.recomputed is not None and kit.outcome is Outcome.MISMATCH, (initial, kit)
    assert f"over the limit of {SMALL_KIT_LIMIT:,}" in kit.detail and rk.OUTPUTS_FILE in kit.detail, kit.detail

    env_class = next(iter(daemon.environments))
    daemon._screened_initial_state(8, _view(spec, env_class), _done([initial, kit]))
    row = daemon._row(8)
    assert daemon.claimed == [] and row["state"] == "skipped", dict(row)
    assert row["reason"].startswith("refereed job we could not defend (mismatch): a dispute kit of its steps "
                                    "could not be loaded"), row["reason"]


def test_a_kit_screen_cut_by_the_budget_skips_the_job(daemon):
    """A KIT check that did not finish (the child ran past screening_budget_s after building checkpoint 0) is not
    a pass: the job is skipped, not claimed on an unknown kit size."""
    from worker.judging import ZERO_HASH, Check

    spec = tiny_gpt_spec(arithmetic="portable/1")
    initial = CheckResult(check=Check(kind=CheckKind.INITIAL, boundary=0, expected=ZERO_HASH),
                          outcome=Outcome.MISMATCH, recomputed="0x" + "11" * 32)
    cut = CheckResult(check=Check(kind=CheckKind.KIT, boundary=0, expected=KIT_FITS), outcome=Outcome.ERROR,
                      detail="recomputation exceeded its budget of 120s")
    daemon._screened_initial_state(9, _view(spec, next(iter(daemon.environments))), _done([initial, cut]))
    row = daemon._row(9)
    assert daemon.claimed == [] and row["state"] == "skipped" and "budget" in row["reason"], dict(row)
