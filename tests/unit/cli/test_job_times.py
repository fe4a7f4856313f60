"""Times and amounts in human terms (rehearsal #4, #18, #19, #20): UTC plus relative chain time, a wait
that knows the challenge window, state names, exact token amounts, CLI words in SDK errors."""

from __future__ import annotations

import json
import re
import threading

import pytest

from protocol.client import TesseraClient, WaitTooShortError
from protocol.events import JobState
from protocol.hashing import sha256_hex
from protocol.timefmt import format_chain_time, iso_utc
from tests.unit.cli.conftest import tiny_spec
from tests.unit.sdk.helpers import make_trace

TOKEN = 10**18
UTC = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


@pytest.fixture
def committed(fresh_chain, funded, submitter, worker) -> tuple[TesseraClient, TesseraClient, int]:
    """(submitter client, worker client, job id) of a job Committed a moment ago (2 segments, 5 s each)."""
    sub = funded(submitter, tokens=1_000)
    wk = funded(worker, tokens=1_000, stake=100)
    job_id = int(sub.post(2 * TOKEN, TOKEN, sha256_hex(b"timed job"), 2, "https://specs.example/t",
                          segment_seconds=5).job_id)
    wk.claim(job_id)
    trace = make_trace(2)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "https://artifacts.example/")
    return sub, wk, job_id


def test_the_sdk_knows_when_a_job_can_be_finalized(committed, client_of) -> None:
    sub, wk, job_id = committed
    view = sub.job(job_id)
    now = sub.block_time()
    window = int(sub.escrow.functions.challenge_window_of(5).call())  # local: 20 s + 3 x 5 s
    assert view.finalizable_at == sub.finalizable_at(job_id) == view.job.challenge_end == now + window
    assert sub.seconds_to_finalizable(view, now) == window
    # The default wait covers the window on top of the usual 600 s; other targets keep 600 s.
    assert sub.wait_timeout(view, {JobState.FINALIZED}) == 600 + window
    assert sub.wait_timeout(view, {JobState.CANCELLED}) == 600
    assert sub.wait_timeout(view, {JobState.COMMITTED}, 3) == 3
    with pytest.raises(WaitTooShortError, match=rf"job {job_id} can be finalized from {UTC} \(in 35 s\), after "
                                                r"its challenge window; a 2s timeout ends before that: allow at "
                                                r"least 35s"):
        sub.wait_for_job(job_id, [JobState.FINALIZED], timeout=2)

    other = int(sub.post(2 * TOKEN, TOKEN, sha256_hex(b"open job"), 2, "https://specs.example/o",
                         segment_seconds=5).job_id)
    open_view = sub.job(other)
    assert open_view.finalizable_at is None
    assert sub.seconds_to_finalizable(open_view) == sub.param("JobEscrow", "execution_timeout") + window
    wk.claim(other)
    claimed = sub.job(other)
    now = sub.block_time()
    assert claimed.finalizable_at is None
    assert sub.seconds_to_finalizable(claimed, now) == claimed.job.deadline - now + window


def test_job_wait_until_finalized_says_when_and_waits_long_enough(committed, tessera, anvil, deployment,
                                                                   worker) -> None:
    sub, _, job_id = committed
    challenge_end = sub.job(job_id).job.challenge_end

    short = tessera("job", "wait", str(job_id), "--until", "finalized", "--timeout", "3", ok=False)
    assert short.exit_code == 2 and len(short.stderr.splitlines()) == 1, short.stderr
    assert re.fullmatch(rf"error: job {job_id} can be finalized from {UTC} \(in \d+ s\), after its challenge "
                        r"window; a 3s timeout ends before that: allow at least \d+s \(or leave the timeout out: "
                        r"it then covers the window\)\n", short.stderr), short.stderr

    def finalize_later() -> None:
        # Someone (here: the worker) finalizes once the window passed; chain time is moved, not waited.
        from protocol.chain import connect

        client = TesseraClient(connect(anvil.rpc_url), deployment, worker)
        client.w3.provider.make_request("evm_increaseTime", [challenge_end - client.block_time() + 1])
        client.w3.provider.make_request("evm_mine", [])
        client.finalize(job_id)

    timer = threading.Timer(1.0, finalize_later)
    timer.start()
    try:
        waited = tessera("job", "wait", str(job_id), "--until", "finalized", "--poll", "0.1")
    finally:
        timer.join()
    lines = waited.stderr.splitlines()
    assert re.fullmatch(rf"job {job_id}: start -> Committed; finalizable from {UTC} \(in \d+ s\) \(then the "
                        r"worker, or anyone with `tessera job finalize`, finalizes it\)", lines[0]), lines
    assert f"job {job_id}: Committed -> Finalized" in lines and lines[-1] == f"job {job_id} is Finalized"
    assert "file://" not in waited.stderr and ".py:" not in waited.stderr  # no log-style source links (#19)

    out = tessera("job", "wait", str(job_id), "--json", json_out=True)
    assert out["state"] == "Finalized" and [t["state"] for t in out["transitions"]] == ["Finalized"]
    assert out["finalizable_at"] is None  # no longer Committed when seen


def test_job_wait_json_reports_finalizable_at(committed, tessera) -> None:
    sub, _, job_id = committed
    end = sub.job(job_id).job.challenge_end
    out = tessera("job", "wait", str(job_id), "--until", "committed", "--json", json_out=True)
    assert (out["finalizable_at"], out["finalizable_at_utc"], out["challenge_end"]) == (end, iso_utc(end), end)


def test_job_states_print_as_names() -> None:
    seen = []
    seen.append(f"{None} -> {JobState(1)}")
    seen.append(f"{JobState.OPEN} -> {JobState.CLAIMED}")
    assert seen == ["None -> Open", "Open -> Claimed"]
    assert str(JobState.COMMITTED) == "Committed" and int(JobState.COMMITTED) == 3
    assert f"{JobState.COMMITTED:d}" == "3" and json.dumps({"s": JobState.COMMITTED}) == '{"s": 3}'


def test_list_stake_and_dispute_times_are_utc_and_relative(committed, tessera, funded, verifier) -> None:
    sub, wk, job_id = committed
    end = sub.job(job_id).job.challenge_end
    table = tessera("job", "list", "--limit", "1").stdout
    assert f"│ finalizable from {format_chain_time(end, sub.block_time())} │" in table, table

    requested = tessera("stake", "request-unstake", "10", account="TEST::2").stdout
    assert re.search(rf"^withdrawable_from: {UTC} \(in (20 min|19 min \d+ s)\)$", requested, re.M), requested
    shown = tessera("stake", "show", account="TEST::2").stdout
    release = wk.stake_info().unbonding_release_at
    when = re.escape(format_chain_time(release, sub.block_time()))
    assert re.search(rf"│ withdrawable from +│ {when} +│", shown), shown
    assert "in 20 min" in shown or "in 19 min" in shown  # local unbonding delay: 1200 s

    ver = funded(verifier, tokens=1_000, stake=20)
    dispute_id, _ = ver.challenge(job_id, "segment", 1)
    shown = tessera("dispute", "show", str(dispute_id)).stdout
    assert re.search(rf"│ filed_at +│ {UTC} \((now|\d+ s ago)\) +│", shown), shown
    assert re.search(rf"│ arbiter_deadline +│ {UTC} \(in \d+ s\) +│", shown), shown
    job_shown = tessera("job", "show", str(job_id)).stdout + tessera("job", "show", str(job_id)).stderr
    assert re.search(rf"│ challenge_end +│ {UTC} \((in|\d+ s ago)[^│]*│", job_shown), job_shown
    assert re.search(rf"arbiter deadline {UTC} \(in \d+ s\)", job_shown), job_shown


def test_amounts_and_hints_speak_cli(tessera, fresh_chain, tmp_path, deployment) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec(sha256_hex(b"d"), dataset_uris=["https://data.example/d"])))
    tessera("faucet", "100", account="TEST::1")
    store = str(tmp_path / "store")
    big = tessera("job", "submit", str(spec), "--payment", "1000000", "--collateral", "1", "--store", store,
                  account="TEST::1", ok=False)
    assert big.exit_code == 1 and "is below 1000000 tokens needed" in big.stderr and "e+" not in big.stderr
    unapproved = tessera("job", "submit", str(spec), "--payment", "5", "--collateral", "1", "--store", store,
                         "--no-approve", account="TEST::1", ok=False)
    assert unapproved.stderr.splitlines()[-1] == (
        f"error: post job: allowance 0 tokens for JobEscrow {deployment.escrow} is below 5 tokens; "
        "run without --no-approve to approve it first")
    mine = tessera("job", "list", "--mine", ok=False)
    assert mine.stderr == ("error: this needs an account and none is set: pass --account ALIAS (or TEST::<n>) "
                           "or set TESSERA_ACCOUNT\n")
