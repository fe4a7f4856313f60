"""Event decoding and folding: on-chain logs fold to exactly the escrow's record; properties of both."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ChainError
from protocol.events import (
    Job,
    JobChallenged,
    JobClaimed,
    JobCommitted,
    JobExpired,
    JobFinalized,
    JobPosted,
    JobCancelled,
    JobSettled,
    JobState,
    decode_log,
    fold_job,
    fold_job_with_state,
    topics_of_interest,
)

from .helpers import TOKEN, make_trace, spec_hash_for

ADDR_A = "0x" + "aa" * 20
ADDR_B = "0x" + "bB" * 20


def test_topics_cover_every_job_event() -> None:
    topics = set(topics_of_interest())
    for name in ("JobPosted", "JobClaimed", "JobCommitted", "JobFinalized", "ChallengeFiled", "ChallengeRevealed",
                 "Verdict", "DisputeClosed", "EnvClassPublished", "ModelRegistered"):
        assert set(topics_of_interest([name])) <= topics and topics_of_interest([name])


def test_chain_logs_fold_to_the_stored_record(fresh_chain, funded, submitter, worker, verifier, arbiter, client_of,
                                              w3, deployment, time_travel) -> None:
    sub = funded(submitter)
    wk = funded(worker, stake=50)
    ver = funded(verifier, stake=10)
    arb = client_of(arbiter)
    trace = make_trace(4)
    job_id = sub.post(3 * TOKEN, 2 * TOKEN, spec_hash_for("fold"), 4, "file:///fold", segment_seconds=5).job_id

    def check(expected: JobState) -> None:
        raw = w3.eth.get_logs({"address": [deployment.escrow, deployment.disputes], "fromBlock": deployment.start_block,
                               "toBlock": "latest"})
        events = [e for e in (decode_log(log, deployment) for log in raw) if e is not None]
        job, state = fold_job_with_state(events, job_id)
        assert state == expected
        record = bytes(sub.escrow.functions.job_record(job_id).call())
        assert job.record(state) == record
        assert sub.escrow.functions.matches(job_id, job.as_tuple()).call()
        assert "0x" + bytes(sub.escrow.functions.job_hash(job.as_tuple()).call()).hex() == "0x" + keccak(
            encode(["(address,address,uint256,uint256,bytes32,uint256,bytes32,uint256,uint256,bytes32,bytes32,uint256)"],
                   [job.as_tuple()])).hex()

    check(JobState.OPEN)
    wk.claim(job_id)
    check(JobState.CLAIMED)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")
    check(JobState.COMMITTED)
    assert wk.job(job_id).state_hashes == trace.state_hashes  # the trace is in the JobCommitted log
    dispute_id, _ = ver.challenge(job_id, "segment", 2)
    check(JobState.CHALLENGED)
    arb.verdict(dispute_id, False, trace.state_hashes[3], "file:///evidence")
    check(JobState.COMMITTED)
    time_travel(40)
    receipt = wk.finalize(job_id)
    check(JobState.FINALIZED)
    assert [e.name for e in receipt.events if e.contract == "JobEscrow"] == ["JobFinalized"]
    assert receipt.event("JobFinalized").job_id == job_id


def test_logs_of_other_addresses_are_ignored(deployment) -> None:
    topic = bytes.fromhex(topics_of_interest(["JobCancelled"])[0][2:])
    log = {"address": ADDR_A, "topics": [topic, (1).to_bytes(32, "big")], "data": b"", "blockNumber": 1,
           "blockHash": b"\x01" * 32, "transactionHash": b"\x02" * 32, "logIndex": 0}
    assert decode_log(log, deployment) is None
    event = decode_log(log)  # without a deployment the signature alone decides
    assert isinstance(event, JobCancelled) and event.job_id == 1


@given(
    job_id=st.integers(1, 2**64), payment=st.integers(0, 2**256 - 1), collateral=st.integers(0, 2**256 - 1),
    spec=st.binary(min_size=32, max_size=32), segments=st.integers(1, 1024), uri=st.text(max_size=80),
    submitter=st.binary(min_size=20, max_size=20), env=st.binary(min_size=32, max_size=32),
    seconds=st.integers(1, 2**32),
)
def test_job_posted_log_round_trip(job_id, payment, collateral, spec, segments, uri, submitter, env, seconds) -> None:
    topic0 = bytes.fromhex(topics_of_interest(["JobPosted"])[0][2:])
    log = {
        "address": ADDR_A,
        "topics": [topic0, job_id.to_bytes(32, "big"), bytes(12) + submitter],
        "data": encode(["uint256", "uint256", "bytes32", "uint256", "bytes32", "uint256", "string"],
                       [payment, collateral, spec, segments, env, seconds, uri]),
        "blockNumber": 9, "blockHash": b"\x03" * 32, "transactionHash": b"\x04" * 32, "logIndex": 2,
    }
    event = decode_log(log)
    assert isinstance(event, JobPosted)
    assert (event.job_id, event.payment, event.collateral, event.num_segments, event.spec_uri) == (
        job_id, payment, collateral, segments, uri)
    assert (event.env_class, event.segment_seconds) == ("0x" + env.hex(), seconds)
    assert event.spec_hash == "0x" + spec.hex() and event.submitter.lower() == "0x" + submitter.hex()


@given(raw=st.binary(max_size=120))
def test_a_string_field_holding_any_bytes_still_decodes(raw) -> None:
    """Issue 17: a spec URI that is not UTF-8 must not make its JobPosted (and every listing) undecodable."""
    topic0 = bytes.fromhex(topics_of_interest(["JobPosted"])[0][2:])
    log = {
        "address": ADDR_A, "topics": [topic0, (7).to_bytes(32, "big"), bytes(32)],
        "data": encode(["uint256", "uint256", "bytes32", "uint256", "bytes32", "uint256", "bytes"],
                       [1, 1, b"\x01" * 32, 1, b"\x02" * 32, 1, raw]),
        "blockNumber": 9, "blockHash": b"\x03" * 32, "transactionHash": b"\x04" * 32, "logIndex": 0,
    }
    event = decode_log(log)
    assert isinstance(event, JobPosted) and event.job_id == 7
    assert event.spec_uri == raw.decode("utf-8", errors="replace")


@given(topics=st.lists(st.binary(min_size=32, max_size=32), max_size=4), data=st.binary(max_size=300))
def test_garbage_logs_never_crash(topics, data) -> None:
    log = {"address": ADDR_A, "topics": topics, "data": data, "blockNumber": 1, "blockHash": b"\x00" * 32,
           "transactionHash": b"\x00" * 32, "logIndex": 0}
    try:
        result = decode_log(log)
    except ChainError:
        return
    assert result is None or result.name


@given(st.sampled_from(topics_of_interest()), st.binary(max_size=200))
def test_known_topic_with_bad_data_is_a_chain_error_or_none(topic, data) -> None:
    log = {"address": ADDR_A, "topics": [bytes.fromhex(topic[2:])], "data": data, "blockNumber": 1,
           "blockHash": b"\x00" * 32, "transactionHash": b"\x00" * 32, "logIndex": 0}
    try:
        decode_log(log)
    except ChainError:
        pass


# ------------------------------------------------------------------ folding as a state machine

COMMON = {"contract": "JobEscrow", "address": ADDR_A, "block_hash": "0x" + "00" * 32, "tx_hash": "0x" + "00" * 32}
WORD = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())

# From each state, the moves that exist: (event builder, next state).
PATHS = {
    JobState.OPEN: ["cancel", "claim"],
    JobState.CLAIMED: ["commit", "expire"],
    JobState.COMMITTED: ["challenge", "finalize"],
    JobState.CHALLENGED: ["settle_wrong", "settle_right", "settle_void"],
}


@st.composite
def job_histories(draw):
    job_id = draw(st.integers(1, 10**6))
    n = 0

    def ev(cls, **fields):
        nonlocal n
        n += 1
        return cls(**COMMON, name=cls.event, block_number=n, log_index=0, args={"job_id": job_id}, **fields)

    posted = ev(JobPosted, submitter=ADDR_B, payment=draw(st.integers(1, 10**30)),
                collateral=draw(st.integers(1, 10**30)), spec_hash=draw(WORD), num_segments=draw(st.integers(1, 1024)),
                env_class=draw(WORD), segment_seconds=draw(st.integers(1, 10**6)), spec_uri="file:///s")
    events, state = [posted], JobState.OPEN
    expected = Job(submitter=ADDR_B, payment=posted.payment, collateral=posted.collateral,
                   spec_hash=posted.spec_hash, num_segments=posted.num_segments, env_class=posted.env_class,
                   segment_seconds=posted.segment_seconds)
    while state in PATHS and draw(st.booleans() if len(events) < 12 else st.just(False)) is not False:
        move = draw(st.sampled_from(PATHS[state]))
        if move == "cancel":
            events.append(ev(JobCancelled)); state = JobState.CANCELLED
        elif move == "claim":
            deadline = draw(st.integers(1, 2**40))
            events.append(ev(JobClaimed, worker=ADDR_A, deadline=deadline)); state = JobState.CLAIMED
            expected = expected.model_copy(update={"worker": ADDR_A, "deadline": deadline})
        elif move == "commit":
            root, out, end = draw(WORD), draw(WORD), draw(st.integers(1, 2**40))
            events.append(ev(JobCommitted, worker=ADDR_A, result_root=root, output_hash=out, challenge_end=end,
                             artifact_uri="file:///a", state_hashes=[draw(WORD)]))
            state = JobState.COMMITTED
            expected = expected.model_copy(update={"result_root": root, "output_hash": out, "challenge_end": end})
        elif move == "expire":
            events.append(ev(JobExpired, compensation=0)); state = JobState.EXPIRED
        elif move == "challenge":
            events.append(ev(JobChallenged)); state = JobState.CHALLENGED
        elif move == "finalize":
            events.append(ev(JobFinalized, worker=ADDR_A, worker_payout=0, fee=0)); state = JobState.FINALIZED
        elif move == "settle_wrong":
            events.append(ev(JobSettled, outcome=1)); state = JobState.REJECTED
        elif move == "settle_right":
            events.append(ev(JobSettled, outcome=0)); state = JobState.COMMITTED
        elif move == "settle_void":
            events.append(ev(JobSettled, outcome=2)); state = JobState.VOIDED
    return job_id, events, state, expected


@given(job_histories(), st.randoms())
def test_fold_rebuilds_struct_and_state_in_any_input_order(history, rnd) -> None:
    job_id, events, state, expected = history
    shuffled = list(events)
    rnd.shuffle(shuffled)
    job, folded_state = fold_job_with_state(shuffled, job_id)
    assert folded_state == state
    assert job == expected
    assert fold_job(events) == expected
    assert job.record(state)[-1] == int(state)


@given(job_histories())
def test_fold_rejects_histories_with_a_lost_first_event(history) -> None:
    job_id, events, _, _ = history
    if len(events) < 2:
        with pytest.raises(ChainError, match="no events|no job events"):
            fold_job_with_state(events[1:], job_id)
    else:
        with pytest.raises(ChainError, match="events missing or out of order"):
            fold_job_with_state(events[1:], job_id)


def test_fold_rejects_mixed_jobs() -> None:
    a = JobCancelled(**COMMON, name="JobCancelled", block_number=1, log_index=0, args={"job_id": 1})
    b = JobCancelled(**COMMON, name="JobCancelled", block_number=2, log_index=0, args={"job_id": 2})
    with pytest.raises(ChainError, match="several jobs"):
        fold_job_with_state([a, b])


@pytest.mark.parametrize("text,state", [("committed", JobState.COMMITTED), ("Open", JobState.OPEN), (5, JobState.FINALIZED)])
def test_state_parser(text, state) -> None:
    assert JobState.parse(text) == state
    with pytest.raises(ValueError, match="unknown job state 'bogus'"):
        JobState.parse("bogus")


# ------------------------------------------------------------------ structured fuzzing of every event (issue 17)

def _value_strategy(abi_type: str):
    """Extremes for each ABI type; string fields get any bytes (control characters, invalid UTF-8)."""
    hostile_bytes = st.one_of(st.binary(max_size=80), st.sampled_from([b"\xff\xfe", b"a\x00b", b"\r\n", b"\xed\xa0\x80"]))
    if abi_type.startswith("uint"):
        bits = int(abi_type[4:] or 256)
        return st.one_of(st.integers(0, 2**bits - 1), st.just(2**bits - 1), st.just(0))
    if abi_type.startswith("int"):
        bits = int(abi_type[3:] or 256)
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return {
        "address": st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
        "bool": st.booleans(),
        "bytes32": st.binary(min_size=32, max_size=32),
        "bytes32[]": st.lists(st.binary(min_size=32, max_size=32), max_size=5),
        "address[]": st.lists(st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()), max_size=5),
        "string": hostile_bytes,
        "bytes": hostile_bytes,
    }[abi_type]


def _all_events():
    from protocol.events import _event_table

    return [(topic, contract, entry) for topic, entries in _event_table().items() for contract, entry in entries]


@pytest.mark.parametrize("topic,contract,entry", _all_events(), ids=lambda x: x["name"] if isinstance(x, dict) else "")
@given(data=st.data())
def test_every_event_decodes_any_values_in_its_fields(topic, contract, entry, data) -> None:
    """Every Tessera event, every field at its extremes (uint256 max, any bytes in strings): it decodes,
    and a string field reads as its bytes decoded with replacement characters."""
    inputs = entry.get("inputs", [])
    if any(i["type"].startswith("tuple") for i in inputs):
        return
    values = {i["name"]: data.draw(_value_strategy(i["type"]), label=i["name"]) for i in inputs}
    wire = lambda t: "bytes" if t == "string" else t  # noqa: E731 - a string's encoding is a bytes' encoding
    topics = [topic]
    for item in (i for i in inputs if i.get("indexed")):
        value = values[item["name"]]
        topics.append(encode([wire(item["type"])], [value]) if item["type"] not in ("string", "bytes")
                      else keccak(value))
    plain = [i for i in inputs if not i.get("indexed")]
    log = {"address": ADDR_A, "topics": topics,
           "data": encode([wire(i["type"]) for i in plain], [values[i["name"]] for i in plain]),
           "blockNumber": 1, "blockHash": b"\x00" * 32, "transactionHash": b"\x00" * 32, "logIndex": 0}
    event = decode_log(log)
    assert event is not None and event.name == entry["name"]
    for item in plain:
        if item["type"] == "string":
            assert event.args[item["name"]] == values[item["name"]].decode("utf-8", errors="replace")
