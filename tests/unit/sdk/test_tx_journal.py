"""A write survives a dropped RPC: the SDK journals the signed transaction before sending and a retry follows
it instead of sending a second one (rehearsal finding #1). Real anvil behind a fault-injecting proxy."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from protocol.chain import connect, journal_scope, send_transaction
from protocol.client import TesseraClient
from protocol.errors import ChainError, JournalError, TransactionUnconfirmedError
from protocol.tx_journal import JournalEntry, JournalScope, TxJournal, intent_key
from tests.support.rpc_proxy import RpcProxy

TOKEN = 10**18
PAYMENT = 10 * TOKEN
COLLATERAL = 5 * TOKEN


@pytest.fixture
def spec():
    from engine.presets import digits_spec

    return digits_spec(steps=12, segment_steps=6)


@pytest.fixture
def proxy(anvil):
    with RpcProxy(anvil.rpc_url) as running:
        yield running


def _client(url: str, deployment, account, journal: TxJournal) -> TesseraClient:
    return TesseraClient(connect(url, timeout=10.0), deployment, account, journal=journal)


def _job_posted_events(w3, deployment, from_block: int) -> int:
    from protocol.abi import load_abi

    escrow = w3.eth.contract(address=deployment.escrow, abi=load_abi("JobEscrow"))
    return len(escrow.events.JobPosted().get_logs(from_block=from_block))


def test_post_job_retried_after_a_dropped_send_posts_one_job(
    w3, deployment, fresh_chain, funded, submitter, proxy, spec, tmp_path: Path
) -> None:
    funded(submitter)
    journal = TxJournal(tmp_path / "journal")
    client = _client(proxy.url, deployment, submitter, journal)
    client.approve(deployment.escrow, 10 * PAYMENT)  # so the dropped send is the post itself
    start = w3.eth.block_number + 1
    jobs_before = client.job_count()

    proxy.mode = "drop_after_send"
    with pytest.raises(TransactionUnconfirmedError) as dropped:
        client.post_job(spec, PAYMENT, COLLATERAL, "https://example.org/specs")
    error = dropped.value
    assert error.tx_hash.startswith("0x") and error.tx_hash in str(error)
    assert "may have been broadcast" in str(error) and "not be sent twice" in str(error)
    assert error.state == "unknown" and error.journal and Path(error.journal).is_file()
    assert proxy.dropped == [proxy.sends]

    proxy.mode = "forward"
    receipt = client.post_job(spec, PAYMENT, COLLATERAL, "https://example.org/specs")
    assert receipt.resumed and receipt.tx_hash == error.tx_hash
    assert receipt.job_id == jobs_before + 1
    assert client.job_count() == jobs_before + 1
    assert _job_posted_events(w3, deployment, start) == 1
    assert journal.entries(journal_scope(w3, submitter.address)) == []

    # Seen through, an identical post is a new job; so is a retry that asks for one (allow_duplicate).
    again = client.post_job(spec, PAYMENT, COLLATERAL, "https://example.org/specs")
    assert not again.resumed and again.job_id == jobs_before + 2
    proxy.mode = "drop_after_send"
    with pytest.raises(TransactionUnconfirmedError):
        client.post_job(spec, PAYMENT, COLLATERAL, "https://example.org/specs")
    proxy.mode = "forward"
    fresh = client.post_job(spec, PAYMENT, COLLATERAL, "https://example.org/specs", allow_duplicate=True)
    assert not fresh.resumed and client.job_count() == jobs_before + 4


def test_a_send_the_node_never_got_is_sent_again_with_the_same_bytes(
    w3, deployment, fresh_chain, funded, submitter, proxy, tmp_path: Path
) -> None:
    client = funded(submitter)
    client = _client(proxy.url, deployment, submitter, TxJournal(tmp_path / "journal"))
    balance = client.token_balance()
    nonce = w3.eth.get_transaction_count(submitter.address)
    proxy.mode, proxy.forward_dropped = "drop_after_send", False
    with pytest.raises(TransactionUnconfirmedError) as lost:
        client.faucet(7 * TOKEN)
    assert w3.eth.get_transaction_count(submitter.address) == nonce  # it never reached the node

    proxy.mode = "forward"
    receipt = client.faucet(7 * TOKEN)
    assert receipt.resumed and receipt.tx_hash == lost.value.tx_hash  # the very same signed transaction
    assert client.token_balance() == balance + 7 * TOKEN
    assert w3.eth.get_transaction_count(submitter.address) == nonce + 1


def test_an_entry_whose_nonce_another_transaction_used_is_cleared(
    w3, deployment, fresh_chain, funded, submitter, proxy, tmp_path: Path
) -> None:
    funded(submitter)
    journal = TxJournal(tmp_path / "journal")
    client = _client(proxy.url, deployment, submitter, journal)
    balance = client.token_balance()
    proxy.mode, proxy.forward_dropped = "drop_after_send", False
    with pytest.raises(TransactionUnconfirmedError) as lost:
        client.faucet(3 * TOKEN)
    proxy.mode = "forward"
    client.faucet(4 * TOKEN)  # another intent takes the nonce the lost one had
    scope = journal_scope(w3, submitter.address)
    assert [e.tx_hash for e in journal.entries(scope)] == [lost.value.tx_hash]

    receipt = client.faucet(3 * TOKEN)
    assert not receipt.resumed and receipt.tx_hash != lost.value.tx_hash
    assert client.token_balance() == balance + 7 * TOKEN
    assert journal.entries(scope) == []


def test_a_receipt_timeout_names_the_hash_and_the_retry_waits_for_it(
    w3, deployment, fresh_chain, funded, submitter, tmp_path: Path
) -> None:
    client = funded(submitter)
    journal = TxJournal(tmp_path / "journal")
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        with pytest.raises(TransactionUnconfirmedError) as pending:
            send_transaction(w3, submitter, to=deployment.token, data=client.build_faucet(TOKEN).data,
                             description="faucet", receipt_timeout=1.0, journal=journal)
        assert pending.value.state == "pending" and "no receipt within 1s" in str(pending.value)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    w3.provider.make_request("evm_mine", [])
    receipt = send_transaction(w3, submitter, to=deployment.token, data=client.build_faucet(TOKEN).data,
                               description="faucet", journal=journal)
    assert receipt["transactionHash"].to_0x_hex() == pending.value.tx_hash


def test_an_rpc_that_hangs_while_waiting_for_the_receipt_leaves_a_pending_entry(
    w3, deployment, fresh_chain, funded, submitter, proxy, tmp_path: Path
) -> None:
    funded(submitter)
    # reads get a second try, so a slow shared machine does not turn a read into the failure under test
    client = TesseraClient(connect(proxy.url, timeout=1.0, retries=1), deployment, submitter,
                           journal=TxJournal(tmp_path / "journal"))
    balance = client.token_balance()
    proxy.mode, proxy.hang_methods = "hang", {"eth_getTransactionReceipt"}
    with pytest.raises(TransactionUnconfirmedError) as hung:
        client.faucet(2 * TOKEN)
    assert hung.value.state == "pending" and "it is pending" in str(hung.value)
    proxy.mode = "forward"
    receipt = client.faucet(2 * TOKEN)
    assert receipt.resumed and receipt.tx_hash == hung.value.tx_hash
    assert client.token_balance() == balance + 2 * TOKEN


def test_a_transaction_the_node_refuses_leaves_no_entry(w3, deployment, fresh_chain, submitter, tmp_path: Path) -> None:
    journal = TxJournal(tmp_path / "journal")
    with pytest.raises(ChainError, match="node refused the transaction") as refused:
        send_transaction(w3, submitter, to=submitter.address, value=1, description="self-transfer",
                         max_fee_cap=1, journal=journal)  # below the base fee: refused at once
    assert not isinstance(refused.value, TransactionUnconfirmedError)
    assert journal.entries(journal_scope(w3, submitter.address)) == []


def test_entries_are_private_atomic_and_expire(w3, submitter, tmp_path: Path) -> None:
    now = [1_000_000.0]
    journal = TxJournal(tmp_path / "state" / "journal", max_age=3600, clock=lambda: now[0])
    scope = journal_scope(w3, submitter.address)
    entry = JournalEntry(key=intent_key(scope.chain_id, scope.sender, None, "0x01", 0), description="x",
                         chain_id=scope.chain_id, genesis=scope.genesis, sender=scope.sender, to=None, data="0x01",
                         value=0, nonce=4, tx_hash="0x" + "ab" * 32, raw="0x02", created_at=now[0])
    path = journal.record(entry)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.root.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    stored = json.loads(path.read_text())
    assert {"tx_hash", "raw", "nonce", "chain_id", "sender", "description"} <= set(stored)
    assert journal.find(scope, entry.key) == entry
    other_chain = scope.model_copy(update={"genesis": "0x" + "cd" * 32})
    assert journal.find(other_chain, entry.key) is None  # a restarted devnet is another chain

    now[0] += 3601
    assert journal.find(scope, entry.key) is None and not path.exists()

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.raises(JournalError, match="unreadable transaction journal entry"):
        journal.find(scope, entry.key)


_address = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(chain=st.integers(1, 2**40), sender=_address, to=st.none() | _address,
       data=st.binary(max_size=64), value=st.integers(0, 2**256 - 1))
def test_intent_key_is_the_call_and_nothing_else(chain, sender, to, data, value) -> None:
    key = intent_key(chain, sender, to, "0x" + data.hex(), value)
    # the same call written differently is the same intent
    assert key == intent_key(chain, sender.upper().replace("0X", "0x"), to and to.upper().replace("0X", "0x"),
                             data, value)
    # any difference is another intent
    assert key != intent_key(chain + 1, sender, to, data, value)
    assert key != intent_key(chain, sender, to, data + b"\x00", value)
    assert key != intent_key(chain, sender, to, data, value + 1)
    assert key != intent_key(chain, sender, None if to else sender, data, value)


@given(nonce=st.integers(0, 2**64), created=st.floats(0, 2e9), description=st.text(max_size=80))
def test_entries_round_trip(tmp_path_factory, nonce, created, description) -> None:
    journal = TxJournal(tmp_path_factory.mktemp("j"), max_age=float("inf"))
    scope = JournalScope(chain_id=5, genesis="0x" + "11" * 32, sender=Account.create().address)
    entry = JournalEntry(key="k" * 64, description=description, chain_id=5, genesis=scope.genesis,
                         sender=scope.sender, to=None, data="0x", value=0, nonce=nonce, tx_hash="0x" + "00" * 32,
                         raw="0x", created_at=created)
    journal.record(entry)
    assert journal.find(scope, entry.key) == entry
    journal.clear(entry)
    assert journal.find(scope, entry.key) is None


def test_a_stake_retried_after_a_dropped_send_stakes_once(
    w3, deployment, fresh_chain, funded, worker, proxy, tmp_path: Path
) -> None:
    funded(worker, tokens=100)
    client = _client(proxy.url, deployment, worker, TxJournal(tmp_path / "journal"))
    client.approve(deployment.staking, 100 * TOKEN)
    proxy.mode = "drop_after_send"
    with pytest.raises(TransactionUnconfirmedError):
        client.stake(100 * TOKEN)  # all of the balance: a second stake would fail its balance check
    proxy.mode = "forward"
    receipt = client.stake(100 * TOKEN)
    assert receipt.resumed and client.stake_info().staked == 100 * TOKEN and client.token_balance() == 0


def test_the_proxy_can_hang_a_method_until_the_client_times_out(anvil) -> None:
    import time

    from protocol.errors import RpcUnreachableError

    with RpcProxy(anvil.rpc_url, mode="hang", hang_methods={"eth_blockNumber"}) as proxy:
        w3 = connect(proxy.url, timeout=1.0, retries=0)  # eth_chainId still answers
        started = time.monotonic()
        with pytest.raises(RpcUnreachableError, match="eth_blockNumber"):
            w3.eth.block_number
        assert time.monotonic() - started < 10  # the client's timeout, not the proxy's 120 s hang
        proxy.mode = "forward"
        assert w3.eth.block_number >= 0 and proxy.calls["eth_blockNumber"] == 2
