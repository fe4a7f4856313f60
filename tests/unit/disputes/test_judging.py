"""The shared judging module on real runs: every outcome of every check, environment classes, budgets.

A tiny digits job (4 segments) is run once per module; each test judges a copy of its artifacts in a
fresh cache, the way a verifier or the arbiter meets a worker's store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from protocol.artifacts import LocalStore
from protocol.hashing import sha256_hex
from tests.support.cpu import highest
from worker.judging import (
    CheckKind,
    Outcome,
    describe_environment,
    first_fault,
    judge,
    plan_checks,
    portable_environments,
    reproducible_environments,
)


def tiny_spec(seed: int = 1):
    from engine.presets import digits_spec

    return digits_spec(steps=8, segment_steps=2, batch_size=16, seed=seed, schedule={"name": "constant"})


@pytest.fixture(scope="module")
def environment():
    return describe_environment("cpu")


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """An honest run in this process's own environment: (spec, worker store, RunResult)."""
    from engine.api import run_spec

    store = LocalStore(tmp_path_factory.mktemp("worker-store"))
    spec = tiny_spec()
    return spec, store, run_spec(spec, store, device="cpu")


def _judge(spec, store, checks, environment, tmp_path, budget=120.0):
    return judge(spec, checks, cache=LocalStore(tmp_path / "cache"), worker_store=store, environment=environment,
                 device="cpu", max_checkpoint_bytes=10**8, fetch_timeout=5.0, budget_s=budget)


def test_an_honest_trace_matches_every_check(honest, environment, tmp_path):
    spec, store, run = honest
    results = _judge(spec, store, plan_checks(run.state_hashes, run.output_hash, range(4)), environment, tmp_path)
    assert [(r.check.kind, r.outcome) for r in results] == [
        (CheckKind.INITIAL, Outcome.MATCH), *[(CheckKind.SEGMENT, Outcome.MATCH)] * 4, (CheckKind.OUTPUT, Outcome.MATCH)]
    assert results[2].recomputed == run.state_hashes[2]
    assert first_fault(results) is None


def test_each_kind_of_lie_has_its_outcome(honest, environment, tmp_path):
    spec, store, run = honest
    hashes = list(run.state_hashes)
    lies = list(hashes)
    lies[0] = sha256_hex(b"substituted initial weights")  # F-06: not the spec's h_0 (and not fetchable)
    lies[3] = sha256_hex(b"a made-up state")  # segment 2 replays to the real h_3; h_3 itself is missing
    results = _judge(spec, store, plan_checks(lies, sha256_hex(b"another model"), [1, 2, 3]), environment, tmp_path)
    outcomes = {(r.check.kind.value, r.check.boundary): r.outcome for r in results}
    assert outcomes == {
        ("initial", 0): Outcome.MISMATCH,
        ("segment", 1): Outcome.MATCH,
        ("segment", 2): Outcome.MISMATCH,
        ("segment", 3): Outcome.CHECKPOINT_MISSING,
        ("output", 4): Outcome.MISMATCH,  # F-07: the output is not the one extracted from h_N
    }
    assert first_fault(results).check.kind is CheckKind.INITIAL


def test_wrong_bytes_and_invalid_checkpoints(honest, environment, tmp_path):
    spec, store, run = honest
    served = LocalStore(tmp_path / "served")
    for digest in run.state_hashes:
        served.put(store.get(digest))
    served.path_of(run.state_hashes[1]).write_bytes(b"not the checkpoint")  # bytes that do not hash to h_1
    # a real checkpoint of another boundary, committed as h_2: it hashes right but is not boundary 2
    swapped = list(run.state_hashes)
    swapped[2] = run.state_hashes[3]
    results = _judge(spec, served, plan_checks(swapped, run.output_hash, [1, 2], initial=False, output=False),
                     environment, tmp_path)
    assert [r.outcome for r in results] == [Outcome.CHECKPOINT_MISSING, Outcome.CHECKPOINT_INVALID]
    assert "do not hash" in results[0].detail and "boundary 3, not 2" in results[1].detail


def test_a_blob_larger_than_any_checkpoint_of_the_spec_is_never_downloaded(honest, environment, tmp_path):
    """A worker that commits the hash of a huge blob and serves it slowly would spend the dispute's budget
    on the download and leave the recomputation none (ERROR: cannot judge). The spec bounds a checkpoint's
    size, so the blob is refused before a byte is read: the worker did not make the checkpoint available."""
    from protocol.spec import max_checkpoint_bytes

    spec, store, run = honest
    served = LocalStore(tmp_path / "served")
    for digest in run.state_hashes:
        served.put(store.get(digest))
    blob = served.put(b"\0" * (max_checkpoint_bytes(spec) + 1))
    lie = [*run.state_hashes]
    lie[2] = blob
    results = _judge(spec, served, plan_checks(lie, run.output_hash, [2], initial=False, output=False),
                     environment, tmp_path)
    assert [r.outcome for r in results] == [Outcome.CHECKPOINT_MISSING]
    assert "over the limit" in results[0].detail


def test_a_draining_daemon_stops_its_judge_children_at_once(tmp_path):
    """SIGTERM must not wait out a recomputation's budget: drain stops the daemon's children, and a
    stopped group starts no more (a check on a thread after the drain is recorded, not run)."""
    import threading
    import time

    from worker.judging import Check, ChildGroup, run_checks

    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 120\n")  # stands in for a recomputation that takes its whole budget
    slow.chmod(0o755)
    check = Check(kind=CheckKind.INITIAL, boundary=0, expected="0x" + "00" * 32)
    group, results = ChildGroup(), []
    thread = threading.Thread(target=lambda: results.extend(run_checks(
        tiny_spec(), tmp_path, [check], device="cpu", recompute=True, budget_s=120, python=str(slow),
        children=group)))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    group.stop()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert [r.outcome for r in results] == [Outcome.ERROR] and "stopping" in results[0].detail
    later = run_checks(tiny_spec(), tmp_path, [check], device="cpu", recompute=True, python=str(slow), children=group)
    assert later[0].outcome is Outcome.ERROR and "not started" in later[0].detail


def test_outside_the_jobs_class_checkpoints_are_validated_and_outputs_extracted(honest, tmp_path):
    """A verifier in another environment judges nothing it cannot reproduce, but still catches invalid
    checkpoints and wrong outputs (audit F-03: a foreign fingerprint is no escape from validation)."""
    spec, store, run = honest
    lies = list(run.state_hashes)
    lies[3] = run.state_hashes[1]  # valid checkpoint bytes, wrong boundary
    results = _judge(spec, store, plan_checks(lies, sha256_hex(b"x"), [0, 3], initial=False), None, tmp_path)
    assert [r.outcome for r in results] == [Outcome.VALID, Outcome.CHECKPOINT_INVALID, Outcome.MISMATCH]
    assert not Outcome.VALID.worker_wrong


def test_missing_inputs_are_findings(honest, environment, tmp_path):
    from engine.presets import digits_spec

    spec, store, run = honest
    missing = digits_spec(steps=8, segment_steps=2, batch_size=16, seed=1, schedule={"name": "constant"},
                          dataset={"hash": "0x" + "ab" * 32, "uris": []})
    results = _judge(missing, store, plan_checks(run.state_hashes, run.output_hash, [0]), environment, tmp_path)
    assert {r.outcome for r in results} == {Outcome.INPUT_MISSING}


def test_a_budget_cut_is_an_error_never_a_finding(honest, environment, tmp_path, monkeypatch):
    """A recomputation that runs out of budget is no finding either way (here a child that would take
    two minutes stands in for one that is too slow, so the cut happens however fast the machine)."""
    from functools import partial

    from worker import judging

    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 120\n")
    slow.chmod(0o755)
    monkeypatch.setattr(judging, "run_checks", partial(judging.run_checks, python=str(slow)))
    spec, store, run = honest
    results = _judge(spec, store, plan_checks(run.state_hashes, run.output_hash, [0]), environment, tmp_path,
                     budget=0.05)
    assert {r.outcome for r in results} == {Outcome.ERROR}
    assert all("budget" in r.detail for r in results)
    assert first_fault(results) is None


def test_each_cpu_kernel_set_is_its_own_class_and_the_arbiter_reproduces_it(tmp_path):
    """torch's CPU kernels give other bits under other ATEN_CPU_CAPABILITY values, so each is a class of its
    own; one machine reproduces a worker's run exactly by judging in that class's kernel set."""
    if highest() == "default":
        pytest.skip("this CPU runs only torch's default kernels: there is no second kernel set")
    environments = reproducible_environments("cpu", ["default", highest()])
    classes = {e.env_class: e for e in environments}
    assert portable_environments("cpu")[0].env_class in classes  # every machine reproduces the portable class
    default, wide = describe_environment("cpu", "default"), describe_environment("cpu", highest())
    assert default.env_class != wide.env_class and {default.env_class, wide.env_class} <= set(classes)
    store = LocalStore(tmp_path / "worker")
    code = ("import sys, json; from engine.api import run_spec; from engine.presets import digits_spec; "
            "from protocol.artifacts import LocalStore; "
            "r = run_spec(digits_spec(steps=8, segment_steps=2, batch_size=16, seed=1, schedule={'name': 'constant'}),"
            f" LocalStore({str(store.root)!r}), device='cpu'); print(json.dumps(r.state_hashes))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "ATEN_CPU_CAPABILITY": highest()})
    import json

    hashes = json.loads(done.stdout.strip().splitlines()[-1])
    spec = tiny_spec()
    checks = plan_checks(hashes, "0x" + "00" * 32, [1], initial=False, output=False)
    same = _judge(spec, store, checks, wide, tmp_path / "a")
    other = _judge(spec, store, checks, default, tmp_path / "b")
    assert same[0].outcome is Outcome.MATCH
    assert other[0].outcome is Outcome.MISMATCH  # why the class is the job's term, not the judge's choice
    shutil.rmtree(tmp_path / "a", ignore_errors=True)


def test_a_diverged_run_is_judged_by_the_segment_it_began_in(environment, tmp_path):
    """An honest diverged trace matches every check, and the planner always adds the segment divergence
    began in. Claiming divergence one segment early (to skip the work) is caught at that segment, and a
    made-up finite state after it is a checkpoint nobody can serve."""
    import torch

    from engine import tensors_io
    from engine.api import run_spec
    from protocol.hashing import DIVERGED_HASH
    from protocol.spec import load_spec

    store = LocalStore(tmp_path / "worker-store")
    x = torch.linspace(-1, 1, 64 * 32).reshape(32, 64)
    digest = store.put(tensors_io.encode({"train_x": x, "train_y": x[:, :2] * 100}))
    spec = load_spec({
        "version": 1, "kind": "train", "loss": "mse", "device": "cpu",
        "model": {"input_shape": [64], "layers": [{"type": "linear", "in_features": 64, "out_features": 2}]},
        "dataset": {"hash": digest}, "optimizer": {"name": "sgd", "lr": 1.0},
        "batch_size": 8, "steps": 24, "segment_steps": 4,
    })  # fmt: skip
    run = run_spec(spec, store, device="cpu")
    began = run.metrics["diverged_in_segment"]
    honest = plan_checks(run.state_hashes, run.output_hash, [0], initial=False)
    assert [(c.kind, c.boundary) for c in honest] == [(CheckKind.SEGMENT, 0), (CheckKind.SEGMENT, began),
                                                        (CheckKind.OUTPUT, spec.num_segments)]
    early = list(run.state_hashes)
    early[began] = DIVERGED_HASH  # "it diverged one segment earlier": that segment's work skipped
    hidden = list(run.state_hashes)
    hidden[began + 1] = sha256_hex(b"a finite state that was never reached")
    checks = [*honest, *plan_checks(early, DIVERGED_HASH, [], initial=False, output=False),
              *plan_checks(hidden, DIVERGED_HASH, [], initial=False, output=False)]
    results = _judge(spec, store, checks, environment, tmp_path)
    assert [r.outcome for r in results[:3]] == [Outcome.MATCH] * 3
    assert results[1].recomputed == DIVERGED_HASH
    assert results[3].check.boundary == began - 1 and results[3].outcome is Outcome.MISMATCH
    # the planner checks the segment after the made-up state: its checkpoint cannot even be served
    assert results[4].check.boundary == began + 1 and results[4].outcome is Outcome.CHECKPOINT_MISSING


def test_a_portable_job_is_judged_in_the_portable_class_and_a_misfit_class_is_the_workers_fault(honest, tmp_path):
    """A portable job's class is entered on any device without describing the machine; an honest portable
    trace matches every check there. A job whose class does not fit its spec's arithmetic (a native spec
    under the portable class, a portable spec under a machine class) is worker-wrong on every check."""
    from engine.api import run_spec
    from engine.determinism import portable_env_class
    from worker.arbiter import Decision, rule
    from worker.verifier import claim_for

    _, portable = portable_env_class("portable/1")
    [environment] = portable_environments("cpu")
    assert (environment.env_class, environment.device, environment.child_env()) == (portable, "cpu", {})
    store = LocalStore(tmp_path / "worker-store")
    from engine.presets import digits_spec

    spec = digits_spec(steps=4, segment_steps=2, batch_size=16, seed=1, schedule={"name": "constant"},
                       arithmetic="portable/1")
    run = run_spec(spec, store, device="cpu")
    # h_i is a state root here: the tamper-segment persona commits the root of a checkpoint 1 it really
    # stores (one weight bit flipped); a worker serving other canonical bytes under a root serves nothing
    from engine.api import checkpoint_naming
    from personas import tampering
    from worker.judging import Check

    args = {"state_hashes": run.state_hashes, "output_hash": run.output_hash}
    record = run.metrics["step_record"]  # what the worker's run reports: the persona needs no recording of its own
    skeleton = (bytes.fromhex(record["skeleton_root"][2:]), record["length"], record["per_epoch"])
    lied = tampering.apply("tamper-segment", args, store, spec=spec, skeleton=skeleton)["state_hashes"]
    assert [i for i, (a, b) in enumerate(zip(lied, run.state_hashes)) if a != b] == [1]
    assert store.get(lied[1], naming=checkpoint_naming(spec, store, 1)) != store.get(run.state_hashes[1], naming=
                                                                                      checkpoint_naming(spec, store, 1))
    store.path_of(lied[1]).write_bytes(store.path_of(run.state_hashes[1]).read_bytes())
    checks = plan_checks(run.state_hashes, run.output_hash, range(2)) + [
        Check(kind=CheckKind.SEGMENT, boundary=0, checkpoint=lied[0], expected=lied[1]),
        Check(kind=CheckKind.SEGMENT, boundary=1, checkpoint=lied[1], expected=run.state_hashes[2])]
    results = judge(spec, checks, cache=LocalStore(tmp_path / "cache"), worker_store=store, environment=environment,
                    device="cpu", max_checkpoint_bytes=10**8, fetch_timeout=5.0, budget_s=120.0,
                    job_env_class=portable)
    assert [r.outcome for r in results] == [Outcome.MATCH] * 4 + [Outcome.MISMATCH, Outcome.CHECKPOINT_MISSING]
    assert results[4].recomputed == run.state_hashes[1]

    native_spec, native_store, native_run = honest
    machine = describe_environment("cpu").env_class
    for misfit, misfit_store, misfit_run, job_class in ((native_spec, native_store, native_run, portable),
                                                        (spec, store, run, machine)):
        misfit_checks = plan_checks(misfit_run.state_hashes, misfit_run.output_hash, [0])
        found = judge(misfit, misfit_checks, cache=LocalStore(tmp_path / "c2"), worker_store=misfit_store,
                      environment=environment, device="cpu", max_checkpoint_bytes=10**8, fetch_timeout=5.0,
                      budget_s=120.0, job_env_class=job_class)
        assert {r.outcome for r in found} == {Outcome.CLASS_MISMATCH}
        fault = first_fault(found)
        assert claim_for(fault) == ("initial", 0)
        assert rule(found[1]).decision is Decision.WORKER_WRONG  # whichever claim the arbiter is asked


def test_level_two_replays_the_pinned_step_from_the_agreed_state_the_worker_serves(tmp_path):
    """An escalated referee game pinned step t of a segment (r_t agreed, r_{t+1} disputed): the arbiter's STEP
    check stages r_t from the worker's store by its root and replays that one step. The honest r_{t+1} matches;
    another r_{t+1} is a mismatch that names the honest root; an r_t the worker does not serve (or serves under
    another root) is the worker's fault, as a missing checkpoint is."""
    from engine.api import job_skeleton, record_first_steps, run_spec, state_binding
    from engine.determinism import portable_env_class
    from engine.presets import digits_spec
    from protocol import tensor_commit as tc
    from protocol.hashing import to_hex
    from protocol.state_naming import StateRootNaming
    from worker.arbiter import Decision, check_key, rule
    from worker.judging import Check

    spec = digits_spec(steps=4, segment_steps=2, batch_size=16, seed=1, schedule={"name": "constant"},
                       arithmetic="portable/1")
    store = LocalStore(tmp_path / "worker-store")
    run = run_spec(spec, store, device="cpu")
    skeleton = job_skeleton(spec, store)
    states, _, _ = record_first_steps(spec, None, 4)  # the states after 0 … 4 steps
    roots = [to_hex(tc.state_root(states[t], state_binding(spec, t, skeleton))) for t in range(5)]
    assert roots[2] == run.state_hashes[1] and roots[4] == run.state_hashes[2]  # boundaries are the h_i
    store.put(states[3], naming=StateRootNaming(state_binding(spec, 3, skeleton)))  # the defender serves r_3
    step = {"kind": CheckKind.STEP, "boundary": 1, "step": 1}  # segment 1's second step: 3 -> 4
    checks = [Check(**step, checkpoint=roots[3], expected=roots[4]),
              Check(**step, checkpoint=roots[3], expected=roots[2]),
              Check(**step, checkpoint=roots[1], expected=roots[2])]  # r_1 is nowhere in the worker's store
    [environment] = portable_environments("cpu")
    results = judge(spec, checks, cache=LocalStore(tmp_path / "cache"), worker_store=store, environment=environment,
                    device="cpu", max_checkpoint_bytes=10**8, fetch_timeout=5.0, budget_s=120.0,
                    job_env_class=portable_env_class("portable/1")[1])
    assert [r.outcome for r in results] == [Outcome.MATCH, Outcome.MISMATCH, Outcome.CHECKPOINT_MISSING]
    assert results[1].recomputed == roots[4]
    assert [rule(r).decision for r in results] == [Decision.WORKER_RIGHT] + [Decision.WORKER_WRONG] * 2
    # two games pinned at different steps of the same segment are different recomputations
    assert check_key(7, checks[0]) != check_key(7, checks[0].model_copy(update={"step": 0}))
