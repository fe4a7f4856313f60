"""Outbox on a real anvil: write-ahead, idempotent keys, nonce ownership, simulation, fee bumps, restarts."""

from __future__ import annotations

import pytest

from tests.unit.worker import chainkit
from worker.runtime.outbox import Outbox, OutboxError, decode_revert

GWEI = 10**9


class Clock:
    """A hand-driven clock for bump timeouts."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emitter(w3, funder):
    return chainkit.deploy(w3, funder, chainkit.EMITTER_RUNTIME)


@pytest.fixture
def reverter(w3, funder):
    return chainkit.deploy(w3, funder, chainkit.reverter_runtime("escrow: job not open"))


def make_outbox(w3, account, path, clock, **kw):
    kw.setdefault("fee_cap_wei", 100 * GWEI)
    kw.setdefault("bump_timeout", 30.0)
    return Outbox(w3, account, path, clock=clock, **kw)


def call(emitter: str, topic: int) -> dict:
    return {"to": emitter, "data": "0x" + topic.to_bytes(32, "big").hex(), "value": 0, "description": f"emit {topic}"}


def run_until_done(outbox, rounds=10):
    for _ in range(rounds):
        outbox.process()
        if outbox.pending_count() == 0:
            return


def test_sends_once_per_key_with_consecutive_nonces(w3, fresh_account, emitter, tmp_path, clock):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    first = outbox.submit("claim:1", "claim", call(emitter, 1), job_id=1)
    again = outbox.submit("claim:1", "claim", call(emitter, 99), job_id=1)
    assert again.id == first.id and again.data == first.data  # idempotent: the stored intent wins
    outbox.submit("claim:2", "claim", call(emitter, 2), job_id=2)
    run_until_done(outbox)
    one, two = outbox.get("claim:1"), outbox.get("claim:2")
    assert (one.state, two.state) == ("confirmed", "confirmed")
    assert (one.nonce, two.nonce) == (0, 1)
    assert outbox.next_nonce == 2
    assert w3.eth.get_transaction_count(fresh_account.address) == 2
    with pytest.raises(OutboxError):
        outbox.submit("claim:1", "commit", call(emitter, 1))


def test_only_a_new_intent_tells_its_owner_to_send_without_waiting(w3, fresh_account, emitter, tmp_path, clock):
    """A daemon submits its keys idempotently, some every tick: only a key stored for the first time may
    wake the loop, or a queued intent that cannot go yet would turn the loop into a busy one."""
    told = []
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock, on_queued=lambda: told.append(1))
    outbox.submit("claim:1", "claim", call(emitter, 1), job_id=1)
    assert len(told) == 1
    outbox.submit("claim:1", "claim", call(emitter, 1), job_id=1)
    assert len(told) == 1
    run_until_done(outbox)
    outbox.submit("claim:1", "claim", call(emitter, 1), job_id=1)
    assert len(told) == 1 and outbox.get("claim:1").state == "confirmed"
    outbox.submit("claim:2", "claim", call(emitter, 2), job_id=2)
    assert len(told) == 2


def test_simulated_revert_fails_with_reason_and_spends_no_nonce(w3, fresh_account, reverter, emitter, tmp_path, clock):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    outbox.submit("claim:5", "claim", {"to": reverter, "data": "0x01"}, job_id=5)
    changed = outbox.process()
    assert [(i.key, i.state, i.reason) for i in changed] == [("claim:5", "failed", "escrow: job not open")]
    assert w3.eth.get_transaction_count(fresh_account.address) == 0
    outbox.submit("claim:6", "claim", call(emitter, 6))
    run_until_done(outbox)
    assert outbox.get("claim:6").nonce == 0  # no gap left by the failed intent


def test_not_needed_before_sending_is_skipped(w3, fresh_account, emitter, tmp_path, clock):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    outbox.register_check("claim", lambda intent: False)
    outbox.submit("claim:1", "claim", call(emitter, 1))
    outbox.process()
    assert outbox.get("claim:1").state == "skipped"
    assert w3.eth.get_transaction_count(fresh_account.address) == 0


def test_crash_before_broadcast_resends_the_same_bytes_once(w3, fresh_account, emitter, tmp_path, clock, monkeypatch):
    path = tmp_path / "o.sqlite"
    outbox = make_outbox(w3, fresh_account, path, clock)
    outbox.submit("commit:3", "commit", call(emitter, 3), job_id=3)

    class Crash(BaseException):
        pass

    def crash(*_a, **_k):
        raise Crash()

    monkeypatch.setattr(outbox, "_broadcast", crash)
    with pytest.raises(Crash):
        outbox.process()
    stored = outbox.attempts("commit:3")
    assert len(stored) == 1 and stored[0]["broadcast"] == 0
    outbox.close()
    checks = []
    restarted = make_outbox(w3, fresh_account, path, clock)
    restarted.register_check("commit", lambda intent: checks.append(intent.key) or True)
    restarted.recover()
    run_until_done(restarted)
    done = restarted.get("commit:3")
    assert checks and checks[0] == "commit:3"  # chain state was asked before the resend
    assert done.state == "confirmed" and done.tx_hash == stored[0]["tx_hash"]
    assert w3.eth.get_transaction_count(fresh_account.address) == 1


def test_restart_when_no_longer_needed_fills_the_nonce_with_a_noop(w3, fresh_account, emitter, tmp_path, clock,
                                                                    monkeypatch):
    path = tmp_path / "o.sqlite"
    outbox = make_outbox(w3, fresh_account, path, clock)
    outbox.submit("claim:4", "claim", call(emitter, 4))
    monkeypatch.setattr(outbox, "_broadcast", lambda *a: False)  # signed and stored, never reached the node
    outbox.process()
    outbox.close()
    restarted = make_outbox(w3, fresh_account, path, clock)
    restarted.register_check("claim", lambda intent: intent.key != "claim:4")  # e.g. someone else claimed job 4
    restarted.recover()
    run_until_done(restarted)
    intent = restarted.get("claim:4")
    assert intent.state == "cancelled"
    attempts = restarted.attempts("claim:4")
    assert attempts[-1]["noop"] == 1
    tx = w3.eth.get_transaction(intent.tx_hash)
    assert tx["to"] == fresh_account.address and tx["value"] == 0  # the no-op, not the claim
    assert w3.eth.get_transaction_count(fresh_account.address) == 1  # nonce used, no gap
    restarted.submit("claim:5", "claim", call(emitter, 5))
    run_until_done(restarted)
    assert restarted.get("claim:5").nonce == 1


def test_stuck_transaction_is_replaced_with_a_fee_bump_under_the_cap(w3, fresh_account, emitter, tmp_path, clock):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock, fee_cap_wei=50 * GWEI)
    chainkit.set_automine(w3, False)
    try:
        outbox.submit("finalize:9", "finalize", call(emitter, 9))
        outbox.process()
        first = outbox.attempts("finalize:9")
        assert len(first) == 1
        outbox.process()
        assert len(outbox.attempts("finalize:9")) == 1  # not yet timed out
        clock.now += 31
        outbox.process()
        attempts = outbox.attempts("finalize:9")
        assert len(attempts) == 2
        assert attempts[1]["nonce"] == attempts[0]["nonce"]
        assert int(attempts[1]["max_fee"]) >= int(attempts[0]["max_fee"]) * 11 // 10
        assert int(attempts[1]["priority_fee"]) >= int(attempts[0]["priority_fee"]) * 11 // 10
        chainkit.mine(w3, 1)
    finally:
        chainkit.set_automine(w3, True)
    run_until_done(outbox)
    done = outbox.get("finalize:9")
    assert done.state == "confirmed" and done.tx_hash == attempts[1]["tx_hash"]
    assert w3.eth.get_transaction_count(fresh_account.address) == 1
    assert outbox.stats["bumped"] == 1


def test_fee_cap_stops_the_bump(w3, fresh_account, emitter, tmp_path, clock):
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    cap = 2 * base + GWEI  # exactly the first max fee: no room for a bump
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock, fee_cap_wei=cap)
    chainkit.set_automine(w3, False)
    try:
        outbox.submit("commit:1", "commit", call(emitter, 1))
        outbox.process()
        clock.now += 31
        outbox.process()
        assert len(outbox.attempts("commit:1")) == 1
        assert outbox.stats["stuck_at_cap"] == 1
        assert all(int(a["max_fee"]) <= cap for a in outbox.attempts("commit:1"))
        chainkit.mine(w3, 1)
    finally:
        chainkit.set_automine(w3, True)
    run_until_done(outbox)
    assert outbox.get("commit:1").state == "confirmed"


def test_foreign_transaction_on_the_key_is_adopted(w3, fresh_account, emitter, tmp_path, clock):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    outbox.submit("a", "claim", call(emitter, 1))
    run_until_done(outbox)
    # Someone uses the same key outside the outbox.
    signed = fresh_account.sign_transaction({"type": 2, "chainId": w3.eth.chain_id, "nonce": 1, "to": emitter,
                                             "data": "0x", "value": 0, "gas": 50_000, "maxFeePerGas": 10 * GWEI,
                                             "maxPriorityFeePerGas": GWEI})
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=10)
    outbox.submit("b", "claim", call(emitter, 2))
    run_until_done(outbox)
    assert outbox.get("b").nonce == 2 and outbox.get("b").state == "confirmed"


def test_a_retried_intent_is_judged_by_its_new_send_not_by_its_old_no_op(w3, fresh_account, emitter, tmp_path, clock,
                                                                           monkeypatch):
    """An intent whose nonce went to a no-op (no longer needed) and that is needed again (a referee move
    after a reorg) is retried: its new transaction, at a new nonce, decides its state; the old life's
    mined no-op must not mark it cancelled again."""
    path = tmp_path / "o.sqlite"
    outbox = make_outbox(w3, fresh_account, path, clock)
    outbox.submit("referee:1", "referee", call(emitter, 6))
    monkeypatch.setattr(outbox, "_broadcast", lambda *a: False)
    outbox.process()
    outbox.close()
    needed = {"referee:1": False}
    restarted = make_outbox(w3, fresh_account, path, clock)
    restarted.register_check("referee", lambda intent: needed[intent.key])
    restarted.recover()
    run_until_done(restarted)
    assert restarted.get("referee:1").state == "cancelled"
    needed["referee:1"] = True
    assert restarted.retry("referee:1").state == "queued"
    run_until_done(restarted)
    intent = restarted.get("referee:1")
    assert (intent.state, intent.nonce) == ("confirmed", 1)
    assert w3.eth.get_transaction(intent.tx_hash)["to"] == emitter  # the move itself, at the next nonce
    assert w3.eth.get_transaction_count(fresh_account.address) == 2


def test_mined_revert_is_recorded_with_its_reason(w3, fresh_account, reverter, tmp_path, clock, monkeypatch):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    # Pretend the simulation passed (a race: another worker claimed in between).
    monkeypatch.setattr(outbox, "_simulate", lambda intent: (60_000, None))
    outbox.submit("claim:8", "claim", {"to": reverter, "data": "0x"})
    run_until_done(outbox)
    intent = outbox.get("claim:8")
    assert intent.state == "reverted" and intent.reason == "escrow: job not open"
    assert w3.eth.get_transaction_count(fresh_account.address) == 1


def test_decode_revert_forms():
    from eth_abi import encode

    assert decode_revert("0x08c379a0" + encode(["string"], ["staking: no"]).hex()) == "staking: no"
    assert decode_revert("0x4e487b71" + (0x11).to_bytes(32, "big").hex()) == "panic 0x11"
    assert decode_revert("0xdeadbeef") is None
    assert decode_revert(None) is None


def test_reorged_out_confirmed_intent_is_reopened_and_resent(w3, fresh_account, emitter, tmp_path, clock):
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    snap = chainkit.snapshot(w3)
    outbox.submit("commit:2", "commit", call(emitter, 2))
    run_until_done(outbox)
    first = outbox.get("commit:2")
    assert first.state == "confirmed"
    chainkit.revert(w3, snap)  # the block with our transaction is gone
    assert w3.eth.get_transaction_count(fresh_account.address) == 0
    run_until_done(outbox)
    again = outbox.get("commit:2")
    assert again.state == "confirmed" and again.tx_hash == first.tx_hash  # the same bytes, mined again
    assert w3.eth.get_transaction_count(fresh_account.address) == 1


def test_a_sent_transaction_the_node_forgot_is_sent_again_at_once(w3, fresh_account, emitter, tmp_path, clock):
    """A reorg replaces the block holding our transaction before we saw its receipt (anvil_reorg drops its
    transactions): the node no longer knows it, so it is re-checked and sent again without waiting out the
    bump timeout, with the same bytes."""
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    outbox.submit("verdict:4", "verdict", call(emitter, 4))
    outbox.process()  # sent (and mined by automine); no receipt seen yet
    assert outbox.get("verdict:4").state == "sent"
    (sent,) = outbox.attempts("verdict:4")
    assert "error" not in w3.provider.make_request("anvil_reorg", [1, []])
    assert w3.eth.get_transaction_count(fresh_account.address) == 0
    outbox.process()
    assert outbox.get("verdict:4").state == "sent"  # a moment's grace: nothing resent yet
    clock.now += 6  # far below the 30 s bump timeout
    run_until_done(outbox)
    done = outbox.get("verdict:4")
    assert done.state == "confirmed" and done.tx_hash == sent["tx_hash"]
    assert outbox.stats["bumped"] == 0 and w3.eth.get_transaction_count(fresh_account.address) == 1


def test_a_reorg_during_a_round_is_not_mistaken_for_a_foreign_transaction(w3, fresh_account, emitter, tmp_path,
                                                                           clock, monkeypatch):
    """The round reads the account's nonce, then looks for receipts; a reorg in between takes our mined
    transaction away. Its nonce, counted before the reorg, must not make it "used by a foreign
    transaction" (dropped for good, its nonce a gap that blocks every later transaction)."""
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    outbox.submit("commit:3", "commit", call(emitter, 3))
    outbox.process()  # sent, mined by automine; its receipt is looked for next round
    (sent,) = outbox.attempts("commit:3")
    lookup = outbox._receipt

    def reorg_first(tx_hash):
        if w3.eth.get_transaction_count(fresh_account.address) == 1:
            assert "error" not in w3.provider.make_request("anvil_reorg", [1, []])
        return lookup(tx_hash)

    monkeypatch.setattr(outbox, "_receipt", reorg_first)
    outbox.process()
    assert outbox.get("commit:3").state == "sent"  # not dropped
    monkeypatch.setattr(outbox, "_receipt", lookup)
    clock.now += 6
    run_until_done(outbox)
    done = outbox.get("commit:3")
    assert done.state == "confirmed" and done.tx_hash == sent["tx_hash"]
    assert w3.eth.get_transaction_count(fresh_account.address) == 1


def test_a_node_that_never_shows_pending_transactions_still_gets_fee_bumps(w3, fresh_account, emitter, tmp_path,
                                                                            clock, monkeypatch):
    """Behind a load balancer or an L2 replica, `eth_getTransactionByHash` may never find a pending
    transaction: every 5 s it looks forgotten and is sent again. Those resends must not restart the bump
    timer, or a transaction stuck under a rising base fee would never be bumped."""
    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    monkeypatch.setattr(outbox, "_known", lambda tx_hash: False)  # the node never shows it
    chainkit.set_automine(w3, False)
    try:
        outbox.submit("commit:7", "commit", call(emitter, 7))
        outbox.process()
        for _ in range(7):  # 42 s in 6 s steps: past the 30 s bump timeout, a resend at every step
            clock.now += 6
            outbox.process()
        assert outbox.stats["rebroadcast"] >= 4  # the forgotten transaction was sent again meanwhile
        assert outbox.stats["bumped"] == 1  # and bumped once its timeout ran out, counted from the first send
        attempts = outbox.attempts("commit:7")
        assert len(attempts) == 2 and int(attempts[1]["max_fee"]) > int(attempts[0]["max_fee"])
        chainkit.mine(w3, 1)
    finally:
        chainkit.set_automine(w3, True)
    run_until_done(outbox)
    done = outbox.get("commit:7")
    assert done.state == "confirmed" and done.tx_hash == attempts[1]["tx_hash"]
    assert w3.eth.get_transaction_count(fresh_account.address) == 1


# ---------------------------------------------------------------------------------------------------
# Property: whatever the interleaving of submits, crashes, stuck blocks, timeouts and changing
# "still needed" answers, no key is ever executed twice, no nonce is left as a gap, nothing is lost.
# ---------------------------------------------------------------------------------------------------

import os  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = 40 if os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough" else 6
steps = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 4)),
        st.tuples(st.just("process"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
        st.tuples(st.just("automine"), st.booleans()),
        st.tuples(st.just("mine"), st.just(0)),
        st.tuples(st.just("timeout"), st.just(0)),
        st.tuples(st.just("unneeded"), st.integers(0, 4)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=steps)
def test_property_never_twice_never_lost_no_gap(w3, funder, emitter, tmp_path_factory, ops):
    from eth_account import Account

    account = Account.create()
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10**18}), timeout=10)
    path = tmp_path_factory.mktemp("prop") / "o.sqlite"
    clock = Clock()
    unneeded: set[str] = set()

    def open_outbox():
        box = make_outbox(w3, account, path, clock)
        box.register_check("claim", lambda intent: intent.key not in unneeded)
        return box

    outbox = open_outbox()
    submitted: set[str] = set()
    try:
        for op, arg in ops:
            if op == "submit":
                outbox.submit(f"claim:{arg}", "claim", call(emitter, 1_000 + arg), job_id=arg)
                submitted.add(f"claim:{arg}")
            elif op == "process":
                outbox.process()
            elif op == "restart":
                outbox.close()
                outbox = open_outbox()
                outbox.recover()
            elif op == "automine":
                chainkit.set_automine(w3, arg)
            elif op == "mine":
                chainkit.mine(w3, 1)
            elif op == "timeout":
                clock.now += 31
            elif op == "unneeded":
                unneeded.add(f"claim:{arg}")
    finally:
        chainkit.set_automine(w3, True)
    for _ in range(12):
        outbox.process()
        clock.now += 31
        if outbox.pending_count() == 0:
            break
    assert outbox.pending_count() == 0
    latest = w3.eth.get_transaction_count(account.address, "latest")
    assert w3.eth.get_transaction_count(account.address, "pending") == latest  # nothing stuck, no gap
    # Count, on chain, the successful calls per key (the calldata names the key).
    executed: dict[int, int] = {}
    for intent in outbox.intents():
        for attempt in outbox.attempts(intent.key):
            try:
                receipt = w3.eth.get_transaction_receipt(attempt["tx_hash"])
            except Exception:
                continue
            if receipt["status"] == 1 and not attempt["noop"]:
                executed[intent.job_id] = executed.get(intent.job_id, 0) + 1
    assert all(count == 1 for count in executed.values()), executed
    for key in submitted:
        intent = outbox.get(key)
        # Nothing forgotten: every intent either ran exactly once or was deliberately not sent.
        if intent.state == "confirmed":
            assert executed.get(intent.job_id) == 1
        else:
            assert intent.state in ("skipped", "cancelled") and key in unneeded, (key, intent.state)
            assert intent.job_id not in executed
    outbox.close()


def test_submit_owed_queues_again_what_ended_needless_and_a_refused_one_a_few_times(w3, fresh_account, emitter,
                                                                                   reverter, tmp_path, clock):
    """worker.referee_player.submit_owed (referee moves and settles): an intent skipped as no longer needed
    is queued again when the caller owes it again; one the contract refused is queued again at most
    MAX_FAILED_RETRIES times, then left failed."""
    from worker.referee_player import MAX_FAILED_RETRIES, submit_owed

    outbox = make_outbox(w3, fresh_account, tmp_path / "o.sqlite", clock)
    needed = {"settle_refereed:1": False}
    outbox.register_check("settle_refereed", lambda intent: needed[intent.key])
    refused: dict[str, int] = {}
    submit_owed(outbox, "settle_refereed:1", "settle_refereed", call(emitter, 1), refused)
    run_until_done(outbox)
    assert outbox.get("settle_refereed:1").state == "skipped"
    needed["settle_refereed:1"] = True
    assert submit_owed(outbox, "settle_refereed:1", "settle_refereed", call(emitter, 1), refused).state == "queued"
    run_until_done(outbox)
    assert outbox.get("settle_refereed:1").state == "confirmed"
    assert submit_owed(outbox, "settle_refereed:1", "settle_refereed", call(emitter, 1), refused).state == "confirmed"

    bad = {"to": reverter, "data": "0x", "value": 0, "description": "a refused move"}
    states = []
    for _ in range(MAX_FAILED_RETRIES + 3):
        states.append(submit_owed(outbox, "referee:x", "referee", bad, refused).state)
        run_until_done(outbox)
    assert states == ["queued"] * (MAX_FAILED_RETRIES + 1) + ["failed"] * 2 and refused == {"referee:x": MAX_FAILED_RETRIES}
    assert outbox.get("referee:x").reason == "escrow: job not open"
