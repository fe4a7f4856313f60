"""EventCursor on a real anvil: ordering, confirmations, bounded ranges, restart re-delivery, reorgs."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.worker import chainkit
from worker.runtime.cursor import EventCursor


def topic_of(entry) -> int:
    return int.from_bytes(bytes(entry["topics"][0]), "big")


def raw(entry):
    """Decoder for tests: (block number, topic as int)."""
    return (int(entry["blockNumber"]), topic_of(entry))


@pytest.fixture
def emitter(w3, funder):
    return chainkit.deploy(w3, funder, chainkit.EMITTER_RUNTIME)


def make_cursor(w3, path, emitter, **kw):
    start = kw.pop("start_block", w3.eth.block_number + 1)
    return EventCursor(w3, path, [emitter], decoder=raw, start_block=start, **kw)


def test_delivers_in_order_behind_confirmations_in_bounded_ranges(w3, funder, emitter, tmp_path):
    cursor = make_cursor(w3, tmp_path / "c.sqlite", emitter, confirmations=2, range_size=2)
    for topic in range(1, 6):
        chainkit.emit(w3, funder, emitter, topic)
    # The last two blocks are not confirmed yet.
    seen = [topic for _, topic in cursor.poll_all()]
    assert seen == [1, 2, 3]
    chainkit.mine(w3, 2)
    seen += [topic for _, topic in cursor.poll_all()]
    assert seen == [1, 2, 3, 4, 5]
    assert cursor.poll() == []


def test_range_size_bounds_each_call(w3, funder, emitter, tmp_path):
    cursor = make_cursor(w3, tmp_path / "c.sqlite", emitter, confirmations=0, range_size=1)
    for topic in (10, 11, 12):
        chainkit.emit(w3, funder, emitter, topic)
    batches = [cursor.poll() for _ in range(4)]
    assert [len(b) for b in batches][:3] == [1, 1, 1]  # one block per call
    assert batches[3] == []


def test_unacknowledged_batch_is_redelivered_after_restart(w3, funder, emitter, tmp_path):
    path = tmp_path / "c.sqlite"
    start = w3.eth.block_number + 1
    cursor = make_cursor(w3, path, emitter, confirmations=0, start_block=start)
    chainkit.emit(w3, funder, emitter, 21)
    first = cursor.poll()
    assert [t for _, t in first] == [21]
    cursor.close()  # crash before ack
    again = make_cursor(w3, path, emitter, confirmations=0, start_block=start)
    assert [t for _, t in again.poll()] == [21]
    again.ack()
    again.close()
    third = make_cursor(w3, path, emitter, confirmations=0, start_block=start)
    assert third.poll() == []


def test_reorg_rolls_back_and_redelivers_the_new_branch(w3, funder, emitter, tmp_path):
    cursor = make_cursor(w3, tmp_path / "c.sqlite", emitter, confirmations=0)
    chainkit.emit(w3, funder, emitter, 1)
    snap = chainkit.snapshot(w3)
    fork_block = w3.eth.block_number
    chainkit.emit(w3, funder, emitter, 2)  # will be orphaned
    chainkit.emit(w3, funder, emitter, 3)  # will be orphaned
    assert [t for _, t in cursor.poll_all()] == [1, 2, 3]
    chainkit.revert(w3, snap)
    chainkit.mine(w3, 1)                       # a different block at the old height
    chainkit.emit(w3, funder, emitter, 4)
    chainkit.emit(w3, funder, emitter, 5)
    after = [t for _, t in cursor.poll_all()]
    assert after == [4, 5]
    assert len(cursor.reorgs) == 1
    assert cursor.reorgs[0].fork_block == fork_block
    assert cursor.position == (w3.eth.block_number, "0x" + bytes(w3.eth.get_block("latest")["hash"]).hex())


def test_reorg_detected_across_restart(w3, funder, emitter, tmp_path):
    path = tmp_path / "c.sqlite"
    start = w3.eth.block_number + 1
    cursor = make_cursor(w3, path, emitter, confirmations=0, start_block=start)
    snap = chainkit.snapshot(w3)
    chainkit.emit(w3, funder, emitter, 7)
    assert [t for _, t in cursor.poll_all()] == [7]
    cursor.close()
    chainkit.revert(w3, snap)
    chainkit.emit(w3, funder, emitter, 8)
    restarted = make_cursor(w3, path, emitter, confirmations=0, start_block=start)
    assert [t for _, t in restarted.poll_all()] == [8]
    assert len(restarted.reorgs) == 1


EXAMPLES = 400 if os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough" else 40
ops = st.lists(
    st.one_of(
        st.tuples(st.just("emit"), st.integers(1, 2**32)),
        st.tuples(st.just("mine"), st.integers(1, 3)),
        st.tuples(st.just("reorg"), st.integers(1, 4)),
        st.tuples(st.just("poll"), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=ops, confirmations=st.integers(0, 2), range_size=st.integers(1, 5))
def test_property_delivers_exactly_the_canonical_logs(w3, funder, emitter, tmp_path_factory, ops, confirmations,
                                                      range_size):
    """Whatever the interleaving of logs, blocks, reorgs and polls, once caught up the events kept
    (delivered minus those rolled back) are exactly the canonical chain's logs, in order."""
    path = tmp_path_factory.mktemp("prop") / "c.sqlite"
    start = w3.eth.block_number + 1
    cursor = EventCursor(w3, path, [emitter], decoder=raw, start_block=start, confirmations=confirmations,
                         range_size=range_size)
    snaps: list[tuple[int, str]] = []
    delivered: list[tuple[int, int]] = []

    def absorb(events):
        delivered.extend(events)

    for op, arg in ops:
        if op == "emit":
            snaps.append((w3.eth.block_number, chainkit.snapshot(w3)))
            chainkit.emit(w3, funder, emitter, arg)
        elif op == "mine":
            chainkit.mine(w3, arg)
        elif op == "reorg" and snaps:
            height, snap = snaps[max(0, len(snaps) - arg)]
            snaps = snaps[: max(0, len(snaps) - arg)]
            chainkit.revert(w3, snap)
            chainkit.mine(w3, 1)
        else:
            before = len(cursor.reorgs)
            batch = cursor.poll()
            if len(cursor.reorgs) > before:
                fork = cursor.reorgs[-1].fork_block
                delivered[:] = [e for e in delivered if e[0] <= fork]
            absorb(batch)
    chainkit.mine(w3, confirmations)
    last = w3.eth.block_number - confirmations
    for _ in range(200):
        before_reorgs = len(cursor.reorgs)
        batch = cursor.poll()
        reorged = len(cursor.reorgs) > before_reorgs
        if reorged:
            fork = cursor.reorgs[-1].fork_block
            delivered[:] = [e for e in delivered if e[0] <= fork]
        absorb(batch)
        cursor.ack()
        # Caught up only when a poll found no reorg and the cursor stands on the confirmed head: after a
        # rollback the cursor may re-read to the same block number it stood on before.
        if not reorged and not batch and cursor.block >= last:
            break
    logs = w3.eth.get_logs({"fromBlock": start, "toBlock": last, "address": emitter}) if last >= start else []
    canonical = [raw(e) for e in sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))]
    assert delivered == canonical
    cursor.close()


def test_a_provider_capping_log_ranges_is_read_in_smaller_ranges(w3, anvil_chain, funder, emitter, tmp_path):
    from web3 import Web3

    from tests.support.rpc_counter import RpcCounter

    start = w3.eth.block_number + 1
    for topic in range(30, 42):
        chainkit.emit(w3, funder, emitter, topic)
    wording = "query exceeds max block range {limit}"
    with RpcCounter(anvil_chain.rpc_url, max_log_range=3, log_range_error=wording) as proxy:
        capped = Web3(Web3.HTTPProvider(proxy.url, request_kwargs={"timeout": 10}))
        cursor = make_cursor(capped, tmp_path / "c.sqlite", emitter, confirmations=0, range_size=2_000,
                             start_block=start)
        assert [topic for _, topic in cursor.poll_all()] == list(range(30, 42))
        assert cursor.range_size <= 3 and 1 <= proxy.refused <= 11  # log2(2000 / 3) halvings at most, once
        refused = proxy.refused
        chainkit.emit(w3, funder, emitter, 42)
        assert [topic for _, topic in cursor.poll_all()] == [42] and proxy.refused == refused


def test_other_log_errors_still_raise(w3, anvil_chain, funder, emitter, tmp_path):
    from web3 import Web3
    from web3.exceptions import Web3RPCError

    from tests.support.rpc_counter import RpcCounter

    start = w3.eth.block_number + 1
    for topic in (50, 51):
        chainkit.emit(w3, funder, emitter, topic)
    with RpcCounter(anvil_chain.rpc_url, max_log_range=1, log_range_error="internal error") as proxy:
        capped = Web3(Web3.HTTPProvider(proxy.url, request_kwargs={"timeout": 10}))
        cursor = make_cursor(capped, tmp_path / "c.sqlite", emitter, confirmations=0, start_block=start)
        with pytest.raises(Web3RPCError, match="internal error"):
            cursor.poll()
        assert proxy.refused == 1 and cursor.range_size == 2_000
