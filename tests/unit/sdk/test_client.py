"""TesseraClient on anvil: the lifecycle, every pre-flight error message, decoded reverts, waits, results."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from eth_account import Account

from protocol.artifacts import LocalStore
from protocol.client import JobWaitTimeout, TesseraClient
from protocol.errors import (
    CommittedTraceError,
    ConfigError,
    EventsMismatchError,
    HashMismatchError,
    PreflightError,
    TransactionRevertedError,
)
from protocol.events import JobState

from .helpers import TOKEN, make_trace, spec_hash_for

N = 3
UTC = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"  # protocol.timefmt.utc_text
PAYMENT = 10 * TOKEN
COLLATERAL = 5 * TOKEN
SEGMENT_SECONDS = 5


@pytest.fixture
def parties(fresh_chain, funded, submitter, worker, worker2, verifier, arbiter, client_of):
    """Funded submitter, staked worker/worker2/verifier, arbiter — on a chain reverted after the test."""
    return {
        "submitter": funded(submitter, tokens=1_000),
        "worker": funded(worker, tokens=1_000, stake=100),
        "worker2": funded(worker2, tokens=1_000, stake=100),
        "verifier": funded(verifier, tokens=1_000, stake=10),
        "arbiter": client_of(arbiter),
    }


def post(client: TesseraClient, label: str = "job", n: int = N) -> int:
    receipt = client.post(PAYMENT, COLLATERAL, spec_hash_for(label), n, f"file:///specs/{label}",
                          segment_seconds=SEGMENT_SECONDS)
    assert receipt.job_id is not None
    return receipt.job_id


def test_lifecycle_moves_funds(parties, time_travel) -> None:
    sub, wk = parties["submitter"], parties["worker"]
    fee_bps = sub.param("JobEscrow", "fee_bps")
    start_sub, start_wk = sub.token_balance(), wk.token_balance()
    job_id = post(sub)
    assert sub.job(job_id).state == JobState.OPEN
    assert wk.claim(job_id).event("JobClaimed").worker == wk.address
    assert wk.stake_info().locked == COLLATERAL
    trace = make_trace(N)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///store")
    time_travel(40)
    receipt = wk.finalize(job_id)
    finalized = receipt.event("JobFinalized")
    assert finalized.worker_payout == PAYMENT - PAYMENT * fee_bps // 10_000
    assert sub.token_balance() == start_sub - PAYMENT
    assert wk.token_balance() == start_wk + finalized.worker_payout
    assert wk.stake_info().locked == 0
    view = sub.job(job_id)
    assert view.state == JobState.FINALIZED and view.verify_against_chain()
    assert job_id in sub.jobs(submitter=sub.address)


def test_preflight_balance_and_allowance(parties, client_of) -> None:
    # A brand-new key: the session chain is shared, so a named persona may hold tokens from other tests.
    poor = client_of(Account.create())
    with pytest.raises(PreflightError, match=r"post job: token balance 0 tokens .* is below 10 tokens"):
        poor.post(PAYMENT, COLLATERAL, spec_hash_for("x"), N, "file:///x")
    sub = parties["submitter"]
    with pytest.raises(PreflightError, match=f"post job: allowance 0 tokens for JobEscrow {sub.deployment.escrow} is "
                                             r"below 10 tokens; approve first \(or pass approve=True\)"):
        sub.post(PAYMENT, COLLATERAL, spec_hash_for("x"), N, "file:///x", approve=False)
    with pytest.raises(PreflightError, match="num_segments must be 1..1024"):
        sub.post(PAYMENT, COLLATERAL, spec_hash_for("x"), 0, "file:///x")
    with pytest.raises(PreflightError, match="spec URI longer than 256"):
        sub.post(PAYMENT, COLLATERAL, spec_hash_for("x"), N, "x" * 300)
    with pytest.raises(PreflightError, match="faucet: .* above the per-call cap"):
        sub.faucet(10**7 * TOKEN)
    with pytest.raises(PreflightError, match="collateral .* is too small: its expiry compensation"):
        sub.post(PAYMENT, 4, spec_hash_for("x"), N, "file:///x")
    with pytest.raises(PreflightError, match="environment class 0x6{64} is not open on this deployment"):
        sub.post(PAYMENT, COLLATERAL, spec_hash_for("x"), N, "file:///x", env_class="0x" + "66" * 32)
    with pytest.raises(PreflightError, match="segment_seconds must be 1..60"):
        sub.post(PAYMENT, COLLATERAL, spec_hash_for("x"), N, "file:///x", segment_seconds=61)


def test_preflight_stake(parties, client_of, submitter2, time_travel) -> None:
    sub, wk = parties["submitter"], parties["worker"]
    job_id = post(sub)
    unstaked = client_of(submitter2)
    with pytest.raises(PreflightError, match=r"cannot claim job \d+: available stake 0 tokens .* below its collateral"):
        unstaked.claim(job_id)
    with pytest.raises(PreflightError, match="request unstake: available stake .* is below"):
        wk.request_unstake(1_000 * TOKEN)
    with pytest.raises(PreflightError, match="withdraw: nothing is unbonding"):
        wk.withdraw()
    wk.request_unstake(10 * TOKEN)
    with pytest.raises(PreflightError, match=f"withdraw: stake still unbonding until {UTC} \\(in \\d+ min"):
        wk.withdraw()
    time_travel(sub.param("Staking", "unbonding_delay") + 1)
    before = wk.token_balance()
    wk.withdraw()
    assert wk.token_balance() == before + 10 * TOKEN


def test_preflight_roles_and_states(parties) -> None:
    sub, wk, wk2 = parties["submitter"], parties["worker"], parties["worker2"]
    job_id = post(sub)
    with pytest.raises(PreflightError, match=f"cannot cancel job {job_id}: only its submitter"):
        wk.cancel(job_id)
    with pytest.raises(PreflightError, match=f"cannot commit job {job_id}: it is Open, must be Claimed"):
        wk.commit(job_id, ["0x" + "11" * 32] * (N + 1), "0x" + "22" * 32, "file:///s")
    wk.claim(job_id)
    with pytest.raises(PreflightError, match="it is Claimed, must be Open"):
        sub.cancel(job_id)
    with pytest.raises(PreflightError, match=f"cannot commit job {job_id}: it was claimed by {wk.address}"):
        wk2.commit(job_id, ["0x" + "11" * 32] * (N + 1), "0x" + "22" * 32, "file:///s")
    with pytest.raises(PreflightError,
                       match=f"cannot expire job {job_id} yet: its deadline is {UTC} \\(in \\d+ (min|s)"):
        wk2.expire(job_id)
    with pytest.raises(PreflightError, match=f"its trace needs {N + 1} state hashes \\(h_0 … h_N\\), got {N}"):
        wk.commit(job_id, ["0x" + "11" * 32] * N, "0x" + "22" * 32, "file:///s")
    with pytest.raises(PreflightError, match="state hash h_2 must be 0x \\+ 64 hex digits"):
        wk.commit(job_id, ["0x" + "11" * 32] * 2 + ["0x1234"], "0x" + "22" * 32, "file:///s")
    with pytest.raises(PreflightError, match="not one value"):
        wk.commit(job_id, "0x" + "11" * 32, "0x" + "22" * 32, "file:///s")
    with pytest.raises(PreflightError, match="output hash is zero"):
        wk.commit(job_id, ["0x" + "11" * 32] * (N + 1), "0x" + "00" * 32, "file:///s")


def test_preflight_deadlines(parties, time_travel) -> None:
    sub, wk = parties["submitter"], parties["worker"]
    job_id = post(sub)
    wk.claim(job_id)
    trace = make_trace(N)
    time_travel(sub.param("JobEscrow", "execution_timeout") + 5)
    with pytest.raises(PreflightError,
                       match=f"cannot commit job {job_id}: its deadline {UTC} \\(\\d+ s ago\\) has passed"):
        wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")
    receipt = sub.expire(job_id)
    assert receipt.event("JobExpired").compensation == COLLATERAL * sub.param("JobEscrow", "expiry_compensation_bps") // 10_000
    assert sub.job(job_id).state == JobState.EXPIRED

    job2 = post(sub, "second")
    wk.claim(job2)
    wk.commit(job2, trace.state_hashes, trace.output_hash, "file:///s")
    with pytest.raises(PreflightError,
                       match=f"cannot finalize job {job2} yet: its challenge window is open until {UTC} \\(in "):
        wk.finalize(job2)


def test_parallel_challenges_verdicts_and_void(parties, time_travel, client_of, worker2) -> None:
    sub, wk, ver, arb = parties["submitter"], parties["worker"], parties["verifier"], parties["arbiter"]
    other = parties["worker2"]  # a second, unrelated challenger
    trace = make_trace(N)
    job_id = post(sub)
    wk.claim(job_id)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")
    with pytest.raises(PreflightError, match=f"cannot challenge job {job_id}: you are its worker"):
        wk.challenge(job_id, "segment", 1)
    with pytest.raises(PreflightError, match="a segment claim names a segment 0..2, got 3"):
        ver.challenge(job_id, "segment", 3)
    with pytest.raises(PreflightError, match="an output claim is about boundary N = 3, got 1"):
        ver.challenge(job_id, "output", 1)
    with pytest.raises(PreflightError, match="unknown claim 'lazy'"):
        ver.challenge(job_id, "lazy", 1)
    with pytest.raises(PreflightError, match="the arbiter cannot challenge"):
        arb.challenge(job_id, "segment", 0)
    first, receipt = ver.challenge(job_id, "segment", 1)
    revealed = receipt.event("ChallengeRevealed")
    assert (revealed.dispute_id, revealed.segment, revealed.h_b) == (first, 1, trace.state_hashes[2])
    # another challenge on the same job is not blocked by the first one
    second, _ = other.challenge(job_id, "initial", 0)
    assert {d.dispute_id for d in sub.disputes_of_job(job_id)} == {first, second}
    assert sub.open_disputes(job_id) == 2 and ver.job(job_id).state == JobState.CHALLENGED
    with pytest.raises(PreflightError, match=f"cannot rule on dispute {first}: only the arbiter"):
        ver.verdict(first, True, "0x" + "77" * 32, "file:///evidence")
    with pytest.raises(PreflightError, match=f"the arbiter's window runs until {UTC} \\(in "):
        sub.dispute_timeout(first)
    with pytest.raises(PreflightError, match=f"cannot close dispute {second}: its job {job_id} is Challenged"):
        sub.close_dispute(second)
    arb.verdict(second, False, trace.state_hashes[0], "file:///e")  # h_0 was right: the bond is lost
    assert sub.job(job_id).state == JobState.CHALLENGED  # the first dispute still holds the job
    verdict = arb.verdict(first, True, "0x" + "77" * 32, "file:///evidence").event("Verdict")
    assert verdict.worker_wrong and verdict.slashed == COLLATERAL and verdict.rewarded == ver.address
    view = sub.job(job_id)
    assert view.state == JobState.REJECTED and view.verify_against_chain()
    reward = COLLATERAL * sub.param("Disputes", "challenger_reward_bps") // 10_000
    assert ver.owed() == {"JobEscrow": 0, "Disputes": reward}
    assert sub.owed()["JobEscrow"] == PAYMENT
    before = ver.token_balance()
    ver.withdraw_owed()
    assert ver.token_balance() == before + reward
    with pytest.raises(PreflightError, match="withdraw: nothing is owed"):
        ver.withdraw_owed()

    # A second job: the arbiter stays silent; anyone voids it after the window (the neutral outcome).
    job2 = post(sub, "silent arbiter")
    wk.claim(job2)
    wk.commit(job2, trace.state_hashes, trace.output_hash, "file:///s")
    silent, _ = ver.challenge(job2, "unavailable", 0)
    time_travel(sub.param("Disputes", "arbiter_window") + 3 * SEGMENT_SECONDS + 2)
    with pytest.raises(PreflightError, match="the arbiter window closed"):
        arb.verdict(silent, False, "0x" + "77" * 32, "file:///e")
    sub.dispute_timeout(silent)
    assert sub.job(job2).state == JobState.VOIDED
    assert wk.stake_info().locked == 0


def test_racing_claims_decode_the_revert(parties) -> None:
    sub, wk, wk2 = parties["submitter"], parties["worker"], parties["worker2"]
    job_id = post(sub)
    view = sub.job(job_id)
    # Both workers pass pre-flight against the same view; the second one loses the race on chain.
    first = wk.build_claim(job_id, view.job)
    second = wk2.build_claim(job_id, view.job)
    wk.send(first)
    with pytest.raises(TransactionRevertedError, match="escrow: job mismatch") as caught:
        wk2.send(second)
    assert caught.value.reason == "escrow: job mismatch"
    # Forced past estimation (explicit gas): the mined transaction fails and its reason is replayed.
    with pytest.raises(TransactionRevertedError, match=r"reverted in tx 0x[0-9a-f]{64}: escrow: job mismatch") as mined:
        wk2.send(second, gas=300_000)
    assert mined.value.tx_hash and mined.value.reason == "escrow: job mismatch"


def test_preflight_off_lets_the_contract_speak(parties, client_of, submitter) -> None:
    sub = parties["submitter"]
    job_id = post(sub)
    raw = client_of(parties["worker"].account, preflight=False)
    with pytest.raises(TransactionRevertedError, match="escrow: not submitter"):
        raw.cancel(job_id)


def test_wait_for_job_reports_changes(parties, w3, time_travel) -> None:
    sub, wk = parties["submitter"], parties["worker"]
    job_id = post(sub)
    seen: list[tuple] = []
    with pytest.raises(JobWaitTimeout, match=f"job {job_id} still Open after 0.3s"):
        sub.wait_for_job(job_id, ["Claimed"], timeout=0.3, poll_interval=0.05)

    def work() -> None:
        wk.claim(job_id)
        trace = make_trace(N)
        wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")

    thread = threading.Thread(target=work)
    thread.start()
    view = sub.wait_for_job(job_id, [JobState.COMMITTED], timeout=60, poll_interval=0.05,
                            on_change=lambda old, new, v: seen.append((old, new)))
    thread.join()
    assert view.state == JobState.COMMITTED
    assert seen[0] == (None, JobState.OPEN) and seen[-1][1] == JobState.COMMITTED


def test_a_job_whose_logs_lag_its_record_is_read_again(parties, monkeypatch) -> None:
    """A node may answer for its newest block before its log index holds that block's logs (anvil under load):
    `job` reads such a job again instead of failing; logs that stay short of the record are an
    EventsMismatchError after EVENTS_MISMATCH_RETRIES more reads."""
    from protocol import client as client_module

    sub, wk = parties["submitter"], parties["worker"]
    job_id = post(sub)
    wk.claim(job_id)
    real = sub.job_events
    lagging = {"reads": 0, "short": 1}

    def job_events(job: int, to_block: int | None = None) -> list:
        lagging["reads"] += 1
        events = real(job, to_block=to_block)
        return events[:-1] if lagging["reads"] <= lagging["short"] else events  # the claim's log not yet indexed

    monkeypatch.setattr(client_module, "EVENTS_MISMATCH_PAUSE_S", 0.0)
    monkeypatch.setattr(sub, "job_events", job_events)
    assert sub.job(job_id).state == JobState.CLAIMED and lagging["reads"] == 2
    lagging.update(reads=0, short=client_module.EVENTS_MISMATCH_RETRIES + 1)
    with pytest.raises(EventsMismatchError, match=f"job {job_id}: events rebuild a job that does not match"):
        sub.job(job_id)
    assert lagging["reads"] == client_module.EVENTS_MISMATCH_RETRIES + 1


def test_fetch_result_checks_every_hash(parties, tmp_path: Path) -> None:
    sub, wk = parties["submitter"], parties["worker"]
    store = LocalStore(tmp_path / "store")
    trace = make_trace(N, seed=7)
    store.put(trace.output)
    store.put(trace.fingerprint)
    job_id = post(sub, "fetch")
    with pytest.raises(PreflightError, match="has no result to fetch: it is Open"):
        sub.fetch_result(job_id)
    with pytest.raises(PreflightError, match="has no committed trace: it is Open"):
        sub.committed_trace(job_id)
    wk.claim(job_id)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, store.uri)
    assert sub.fetch_result(job_id) == trace.output
    assert sub.job(job_id).artifact_uri == store.uri
    # Tampered output bytes on disk are caught by the store's hash check.
    store.path_of(trace.output_hash).write_bytes(b"tampered")
    with pytest.raises(HashMismatchError):
        sub.fetch_result(job_id)


def test_a_diverged_job_says_where_it_diverged_and_registers_no_model(parties, tmp_path: Path) -> None:
    from protocol.errors import DivergedError
    from protocol.hashing import DIVERGED_HASH

    sub, wk = parties["submitter"], parties["worker"]
    trace = make_trace(N, seed=8)
    states = trace.state_hashes[:2] + [DIVERGED_HASH] * (N - 1)  # diverged in segment 1
    job_id = post(sub, "diverged")
    wk.claim(job_id)
    wk.commit(job_id, states, DIVERGED_HASH, LocalStore(tmp_path / "store").uri)
    with pytest.raises(DivergedError, match=f"job {job_id}'s training diverged .* in segment 1: it has no output"):
        sub.fetch_result(job_id)
    with pytest.raises(PreflightError, match="marks a diverged run"):
        sub.register_model(DIVERGED_HASH, spec_hash=spec_hash_for("diverged"), job_id=job_id)


def test_committed_trace_is_read_back_from_the_log(parties) -> None:
    """The escrow keeps only the root and logs the leaves; anyone rebuilds h_0 … h_N without the worker."""
    sub, wk = parties["submitter"], parties["worker"]
    trace = make_trace(N, seed=11)
    job_id = post(sub, "calldata")
    wk.claim(job_id)
    receipt = wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///nowhere")
    assert receipt.event("JobCommitted").result_root == trace.result_root  # computed on chain
    assert sub.job(job_id).job.result_root == trace.result_root
    assert sub.committed_trace(job_id) == trace.state_hashes  # a reader without the worker's store


def test_committed_trace_rejects_a_log_that_is_not_the_committed_root(parties, monkeypatch) -> None:
    sub, wk = parties["submitter"], parties["worker"]
    trace = make_trace(N, seed=12)
    job_id = post(sub, "not-this")
    wk.claim(job_id)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")
    view = sub.job(job_id)
    lying = view.model_copy(update={"state_hashes": list(reversed(view.state_hashes))})  # a bad RPC answer
    with pytest.raises(CommittedTraceError, match="the logged trace hashes to"):
        sub.committed_trace(job_id, lying)


def test_client_without_account(client_of, deployment) -> None:
    reader = client_of(None)
    assert reader.job_count() >= 0
    with pytest.raises(ConfigError, match="no account"):
        reader.faucet(TOKEN)


def test_connect_uses_deployment_dir(anvil, deployment, monkeypatch) -> None:
    monkeypatch.setenv("TESSERA_DEPLOYMENTS_DIR", str(Path(deployment.path).parent))
    client = TesseraClient.connect(anvil.rpc_url, account="TEST::1")
    assert client.deployment.escrow == deployment.escrow
    assert client.address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    monkeypatch.setenv("TESSERA_DEPLOYMENTS_DIR", "/nonexistent")
    from protocol.errors import DeploymentError

    with pytest.raises(DeploymentError, match="no deployment for chain id 31337: expected /nonexistent/31337.json"):
        TesseraClient.connect(anvil.rpc_url)


def test_connect_finds_the_shipped_record_from_any_directory(anvil, deployment, monkeypatch, tmp_path) -> None:
    """Rehearsal #7: an operator or submitter running from another directory uses the record committed
    with the installation, and an error says how to point at the deployer's record (not to deploy)."""
    import shutil

    from protocol import deploy
    from protocol.errors import DeploymentError

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(deployment.path, shipped / "31337.json")
    monkeypatch.delenv("TESSERA_DEPLOYMENTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no deployments/ here
    monkeypatch.setattr(deploy, "SHIPPED_DEPLOYMENTS_DIR", shipped)
    assert TesseraClient.connect(anvil.rpc_url).deployment.escrow == deployment.escrow
    monkeypatch.setattr(deploy, "SHIPPED_DEPLOYMENTS_DIR", tmp_path / "none")
    with pytest.raises(DeploymentError, match="pass --deployment FILE or set TESSERA_DEPLOYMENTS_DIR"):
        TesseraClient.connect(anvil.rpc_url)


def test_a_portable_spec_is_posted_in_its_portable_class(parties) -> None:
    """post_job picks the class from the spec's arithmetic; a native job's default ignores portable
    classes; a class that cannot fit the spec is refused before anything is sent."""
    from engine.determinism import portable_env_class
    from engine.presets import digits_spec

    sub, arbiter = parties["submitter"], parties["arbiter"]
    native_class = sub.default_env_class()
    _, portable = portable_env_class("portable/1")
    spec = digits_spec(steps=12, segment_steps=6, arithmetic="portable/1")
    native_spec = digits_spec(steps=12, segment_steps=6)
    with pytest.raises(PreflightError, match="has not opened the portable/1 class"):
        sub.post_job(spec, PAYMENT, COLLATERAL, "file:///specs/p")
    arbiter.send(arbiter.build_publish_env_class(portable, "file:///portable"))
    assert sub.default_env_class() == native_class  # two open classes, one of them portable
    job_id = sub.post_job(spec, PAYMENT, COLLATERAL, "file:///specs/p").job_id
    assert sub.job(job_id).job.env_class.lower() == portable
    job_id = sub.post_job(native_spec, PAYMENT, COLLATERAL, "file:///specs/n").job_id
    assert sub.job(job_id).job.env_class.lower() == native_class.lower()
    with pytest.raises(PreflightError, match="native spec posted under the portable class"):
        sub.post_job(native_spec, PAYMENT, COLLATERAL, "file:///specs/n", env_class=portable)
    with pytest.raises(PreflightError, match="must be posted under its portable class"):
        sub.post_job(spec, PAYMENT, COLLATERAL, "file:///specs/p", env_class=native_class)
