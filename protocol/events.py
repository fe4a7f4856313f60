"""Typed events of the five Tessera contracts, and folding job events back into the `Job` struct.

Every job event carries what is needed to rebuild the struct the escrow stores as one hashed word, so
a reader can follow a job from logs alone and then check its view against `JobEscrow.job_record`
(events are hints, state is truth). `decode_log` turns a raw log into a pydantic event (or None for a
log that is not ours); `fold_job` replays a job's events in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from functools import lru_cache
from typing import Any, ClassVar

from eth_abi import encode as abi_encode
from eth_hash.auto import keccak
from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, Field

from protocol.errors import ChainError

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_WORD = "0x" + "00" * 32
JOB_ABI_TYPES = [
    "address", "address", "uint256", "uint256", "bytes32", "uint256", "bytes32", "uint256",
    "uint256", "bytes32", "bytes32", "uint256",
]


class JobState(IntEnum):
    """On-chain job states (`JobEscrow.job_state`)."""

    NONE = 0
    OPEN = 1
    CLAIMED = 2
    COMMITTED = 3
    CHALLENGED = 4
    FINALIZED = 5
    CANCELLED = 6
    EXPIRED = 7
    REJECTED = 8
    VOIDED = 9

    @property
    def label(self) -> str:
        return self.name.capitalize()

    def __str__(self) -> str:
        # Printed as its name (`Committed`), not as the int IntEnum would show (`3`): `on_change`
        # callbacks and f-strings in user scripts print states.
        return self.label

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "bcdoxXneEfFgG%":  # a numeric format asks for the number
            return int.__format__(self, spec)
        return format(self.label, spec)

    @classmethod
    def parse(cls, value: "int | str | JobState") -> "JobState":
        """From an int, a name in any case (`committed`) or a JobState; `ValueError` otherwise."""
        if isinstance(value, JobState):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise ValueError(f"unknown job state {value!r}; known: {', '.join(s.label for s in cls)}") from None

    @property
    def terminal(self) -> bool:
        return self in (JobState.FINALIZED, JobState.CANCELLED, JobState.EXPIRED, JobState.REJECTED, JobState.VOIDED)


class DisputeStatus(IntEnum):
    """`Disputes.dispute_of(id).status`."""

    NONE = 0
    FILED = 1
    REVEALED = 2
    WORKER_WRONG = 3
    WORKER_RIGHT = 4
    VOIDED = 5
    CLOSED = 6
    UNREVEALED = 7

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def open(self) -> bool:
        """Filed or revealed: its bond is locked and its job cannot finalize."""
        return self in (DisputeStatus.FILED, DisputeStatus.REVEALED)


class ClaimKind(IntEnum):
    """What a revealed challenge claims (`Disputes.KIND_*`)."""

    SEGMENT = 1  # replaying segment i from h_i does not reach h_{i+1}
    UNAVAILABLE = 2  # checkpoint h_i could not be fetched or was wrong: ruled as SEGMENT i (OUTPUT at N),
    # but a losing one forfeits only a tenth of its bond (Disputes.UNAVAILABLE_FORFEIT_BPS)
    INITIAL = 3  # h_0 is not the spec's initial state
    OUTPUT = 4  # the output is not the one extracted from checkpoint N

    @property
    def label(self) -> str:
        return self.name.lower()


class SettleOutcome(IntEnum):
    """`JobSettled.outcome`: how a job's dispute round ended."""

    RESUME = 0
    REJECT = 1
    VOID = 2


def _hex32(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, HexBytes)):
        value = bytes(value)
        if len(value) != 32:
            raise ValueError(f"expected 32 bytes, got {len(value)}")
        return "0x" + value.hex()
    text = str(value).lower()
    if not text.startswith("0x") or len(text) != 66:
        raise ValueError(f"not a 32-byte hex word: {value!r}")
    int(text, 16)
    return text


def _address(value: Any) -> str:
    from web3 import Web3

    return Web3.to_checksum_address(value)


class Job(BaseModel):
    """The escrow's `Job` struct (architecture.md), in ABI order. Hashes are 0x hex strings."""

    model_config = ConfigDict(frozen=True)

    submitter: str = ZERO_ADDRESS
    worker: str = ZERO_ADDRESS
    payment: int = 0
    collateral: int = 0
    spec_hash: str = ZERO_WORD
    num_segments: int = 0
    env_class: str = ZERO_WORD
    segment_seconds: int = 0
    deadline: int = 0
    result_root: str = ZERO_WORD
    output_hash: str = ZERO_WORD
    challenge_end: int = 0

    def as_tuple(self) -> tuple:
        """The calldata tuple for contract calls that take `job: Job`."""
        return (
            _address(self.submitter), _address(self.worker), self.payment, self.collateral,
            bytes.fromhex(self.spec_hash[2:]), self.num_segments, bytes.fromhex(self.env_class[2:]),
            self.segment_seconds, self.deadline, bytes.fromhex(self.result_root[2:]),
            bytes.fromhex(self.output_hash[2:]), self.challenge_end,
        )

    @classmethod
    def from_tuple(cls, values: Iterable[Any]) -> "Job":
        """From an ABI-decoded tuple (as web3 returns it)."""
        v = list(values)
        return cls(
            submitter=_address(v[0]), worker=_address(v[1]), payment=int(v[2]), collateral=int(v[3]),
            spec_hash=_hex32(v[4]), num_segments=int(v[5]), env_class=_hex32(v[6]), segment_seconds=int(v[7]),
            deadline=int(v[8]), result_root=_hex32(v[9]), output_hash=_hex32(v[10]), challenge_end=int(v[11]),
        )

    def record(self, state: JobState | int) -> bytes:
        """The storage word the escrow keeps: keccak256(abi_encode(job)) with its lowest byte = state."""
        digest = keccak(abi_encode(JOB_ABI_TYPES, list(self.as_tuple())))
        return digest[:31] + bytes([int(state)])


# --------------------------------------------------------------------------------------------------
# Typed events
# --------------------------------------------------------------------------------------------------


class ChainEvent(BaseModel):
    """Common fields of every decoded log. `args` holds every decoded argument by its ABI name."""

    model_config = ConfigDict(frozen=True)

    event: ClassVar[str] = ""
    contract: str
    name: str
    address: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    args: dict[str, Any] = Field(default_factory=dict)

    @property
    def job_id(self) -> int | None:
        value = self.args.get("job_id")
        return int(value) if value is not None else None

    @property
    def position(self) -> tuple[int, int]:
        """Sort key: chain order."""
        return (self.block_number, self.log_index)


class JobPosted(ChainEvent):
    event: ClassVar[str] = "JobPosted"
    submitter: str
    payment: int
    collateral: int
    spec_hash: str
    num_segments: int
    env_class: str
    segment_seconds: int
    spec_uri: str


class JobCancelled(ChainEvent):
    event: ClassVar[str] = "JobCancelled"


class JobClaimed(ChainEvent):
    event: ClassVar[str] = "JobClaimed"
    worker: str
    deadline: int


class JobCommitted(ChainEvent):
    event: ClassVar[str] = "JobCommitted"
    worker: str
    result_root: str
    output_hash: str
    challenge_end: int
    artifact_uri: str
    state_hashes: list[str]


class JobFinalized(ChainEvent):
    event: ClassVar[str] = "JobFinalized"
    worker: str
    worker_payout: int
    fee: int


class JobExpired(ChainEvent):
    event: ClassVar[str] = "JobExpired"
    compensation: int


class JobChallenged(ChainEvent):
    event: ClassVar[str] = "JobChallenged"


class JobSettled(ChainEvent):
    event: ClassVar[str] = "JobSettled"
    outcome: int

    @property
    def worker_wrong(self) -> bool:
        return self.outcome == SettleOutcome.REJECT


class ChallengeFiled(ChainEvent):
    event: ClassVar[str] = "ChallengeFiled"
    dispute_id: int
    challenger: str
    commitment: str
    bond: int
    reveal_deadline: int


class ChallengeRevealed(ChainEvent):
    event: ClassVar[str] = "ChallengeRevealed"
    dispute_id: int
    challenger: str
    kind: int
    segment: int
    h_a: str
    h_b: str
    arbiter_deadline: int


class Verdict(ChainEvent):
    event: ClassVar[str] = "Verdict"
    dispute_id: int
    worker_wrong: bool
    recomputed_hash: str
    evidence_uri: str
    slashed: int
    rewarded: str
    challenger_reward: int
    submitter_compensation: int
    bond_forfeited: int


class DisputeClosed(ChainEvent):
    event: ClassVar[str] = "DisputeClosed"
    dispute_id: int
    status: int
    bond_forfeited: int


class RefereeGameOpened(ChainEvent):
    """`Disputes.reveal_refereed` opened RefereeGame game `game_id` for a refereed SEGMENT dispute."""

    event: ClassVar[str] = "RefereeGameOpened"
    dispute_id: int
    game_id: int


class RefereeGameEscalated(ChainEvent):
    """`Disputes.settle_refereed` found the game escalated: the arbiter may rule until `arbiter_deadline`."""

    event: ClassVar[str] = "RefereeGameEscalated"
    dispute_id: int
    game_id: int
    arbiter_deadline: int


# (RefereeGame's own GameOpened stays an OtherEvent: Bisection and TensorDescent log a GameOpened of
# other fields, and events are typed by name.)
class StageEntered(ChainEvent):
    """A RefereeGame entered `stage` (REFEREE_STAGES) with its next mover's clock at `deadline`."""

    event: ClassVar[str] = "StageEntered"
    game_id: int
    stage: int
    sub_game: int
    deadline: int


class Ruled(ChainEvent):
    """A RefereeGame decided: `defender_wrong` (the worker) at `stage`."""

    event: ClassVar[str] = "Ruled"
    game_id: int
    defender_wrong: bool
    stage: int


class EnvClassPublished(ChainEvent):
    event: ClassVar[str] = "EnvClassPublished"
    env_class: str
    descriptor_uri: str


class EnvClassRetired(ChainEvent):
    event: ClassVar[str] = "EnvClassRetired"
    env_class: str


class ModelRegistered(ChainEvent):
    event: ClassVar[str] = "ModelRegistered"
    model_hash: str
    attester: str
    attestation_id: int
    status: int
    spec_hash: str
    job_submitter: str
    job_worker: str
    metadata_uri: str
    license: str


class OtherEvent(ChainEvent):
    """Any other event of our contracts (ERC20 Transfer/Approval, staking events, wiring, …)."""


EVENT_TYPES: dict[str, type[ChainEvent]] = {
    cls.event: cls
    for cls in (
        JobPosted, JobCancelled, JobClaimed, JobCommitted, JobFinalized, JobExpired, JobChallenged,
        JobSettled, ChallengeFiled, ChallengeRevealed, Verdict, DisputeClosed, EnvClassPublished,
        EnvClassRetired, ModelRegistered, RefereeGameOpened, RefereeGameEscalated, StageEntered, Ruled,
    )
}
# The escrow's events drive a job's state; the disputes' events of a job are folded separately.
JOB_EVENTS = ("JobPosted", "JobCancelled", "JobClaimed", "JobCommitted", "JobFinalized", "JobExpired",
              "JobChallenged", "JobSettled")
DISPUTE_EVENTS = ("ChallengeFiled", "ChallengeRevealed", "Verdict", "DisputeClosed", "RefereeGameOpened",
                  "RefereeGameEscalated")
# RefereeGame.vy's STAGE_* values, by index (worker/referee_player.py plays them)
REFEREE_STAGES = ("none", "steps", "record", "ops", "entry", "output", "descent", "element", "proof", "decided",
                  "escalated", "reveal", "leaf", "link")


def _normalise(value: Any, abi_type: str) -> Any:
    if abi_type == "bytes32":
        return _hex32(value)
    if abi_type == "bytes32[]":
        return [_hex32(v) for v in value]
    if abi_type == "string":
        # Decoded as bytes (the same ABI encoding): a string field holds whatever its sender put there,
        # and invalid UTF-8 must not make a log (and every listing that meets it) undecodable.
        raw = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", errors="replace")
    if abi_type == "address":
        return _address(value)
    if abi_type.startswith("bytes"):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [v for v in value]
    return value


def _signature(entry: dict[str, Any]) -> str:
    def type_of(item: dict[str, Any]) -> str:
        if item["type"].startswith("tuple"):
            inner = ",".join(type_of(c) for c in item.get("components", []))
            return f"({inner}){item['type'][5:]}"
        return item["type"]

    return f"{entry['name']}({','.join(type_of(i) for i in entry.get('inputs', []))})"


@lru_cache(maxsize=1)
def _event_table() -> dict[bytes, list[tuple[str, dict[str, Any]]]]:
    """topic0 -> [(contract name, event ABI)] over all shipped contracts."""
    from protocol.abi import CONTRACT_NAMES, load_abi

    table: dict[bytes, list[tuple[str, dict[str, Any]]]] = {}
    for contract in CONTRACT_NAMES:
        for entry in load_abi(contract):
            if entry.get("type") == "event" and not entry.get("anonymous"):
                topic = keccak(_signature(entry).encode())
                table.setdefault(topic, []).append((contract, entry))
    return table


def topics_of_interest(names: Iterable[str] | None = None) -> list[str]:
    """topic0 (0x hex) of every Tessera event, or of just the events in `names`."""
    wanted = set(names) if names is not None else None
    return sorted(
        "0x" + topic.hex()
        for topic, entries in _event_table().items()
        if wanted is None or any(entry["name"] in wanted for _, entry in entries)
    )


def _contract_for_address(address: str, deployment: Any) -> str | None:
    for name, record in deployment.contracts.items():
        if record.address.lower() == address.lower():
            return name
    return None


def decode_log(log: Any, deployment: Any = None) -> ChainEvent | None:
    """Decode a raw log (web3 `LogReceipt` or dict) into its typed event, or None if it is not ours.

    With `deployment`, logs from other addresses are ignored and the contract name comes from the
    address; without it, the event signature alone decides. A log that matches a signature but does
    not decode raises `ChainError` (a contract/ABI mismatch worth knowing about).
    """
    from eth_abi import decode as abi_decode

    topics = [bytes(HexBytes(t)) for t in log.get("topics", [])]
    if not topics:
        return None
    address = _address(log["address"])
    candidates = _event_table().get(topics[0], [])
    if deployment is not None:
        contract = _contract_for_address(address, deployment)
        if contract is None:
            return None
        candidates = [c for c in candidates if c[0] == contract]
    if not candidates:
        return None
    contract, entry = candidates[0]
    inputs = entry.get("inputs", [])
    indexed = [i for i in inputs if i.get("indexed")]
    plain = [i for i in inputs if not i.get("indexed")]
    if len(topics) != 1 + len(indexed):
        return None  # same signature, different indexing: not this event
    try:
        values: dict[str, Any] = {}
        for item, topic in zip(indexed, topics[1:]):
            if item["type"] in ("string", "bytes") or item["type"].endswith("]") or item["type"].startswith("tuple"):
                values[item["name"]] = "0x" + topic.hex()  # only the hash of a dynamic value is logged
            else:
                (values[item["name"]],) = abi_decode([item["type"]], topic)
        types = ["bytes" if i["type"] == "string" else _signature({"name": "", "inputs": [i]})[1:-1] for i in plain]
        decoded = abi_decode(types, bytes(HexBytes(log["data"])))
        values.update({item["name"]: value for item, value in zip(plain, decoded)})
        args = {item["name"]: _normalise(values[item["name"]], item["type"]) for item in inputs}
    except Exception as exc:
        raise ChainError(f"log of {contract}.{entry['name']} at {address} does not decode: {exc}") from exc
    common = {
        "contract": contract,
        "name": entry["name"],
        "address": address,
        "block_number": int(log["blockNumber"]),
        "block_hash": "0x" + bytes(HexBytes(log["blockHash"])).hex(),
        "tx_hash": "0x" + bytes(HexBytes(log["transactionHash"])).hex(),
        "log_index": int(log["logIndex"]),
        "args": args,
    }
    cls = EVENT_TYPES.get(entry["name"], OtherEvent)
    fields = {k: v for k, v in args.items() if k in cls.model_fields and k not in common}
    try:
        return cls(**common, **fields)
    except ValueError as exc:
        raise ChainError(f"{contract}.{entry['name']} log at {address} lacks expected fields: {exc}") from exc


def decode_receipt(receipt: Any, deployment: Any = None) -> list[ChainEvent]:
    """Every Tessera event in a transaction receipt, in log order."""
    events = [decode_log(log, deployment) for log in receipt.get("logs", [])]
    return [event for event in events if event is not None]


# --------------------------------------------------------------------------------------------------
# Folding
# --------------------------------------------------------------------------------------------------


def fold_job_with_state(events: Iterable[ChainEvent], job_id: int | None = None) -> tuple[Job, JobState]:
    """Rebuild (Job, state) from a job's events (sorted into chain order here).

    Raises `ChainError` when the sequence is impossible for the state machine (e.g. a claim before a
    post), which means logs were lost or mixed between jobs.
    """
    relevant = sorted(
        (e for e in events if e.name in JOB_EVENTS and (job_id is None or e.job_id == job_id)),
        key=lambda e: e.position,
    )
    if not relevant:
        raise ChainError(f"no events for job {job_id}" if job_id is not None else "no job events to fold")
    ids = {e.job_id for e in relevant}
    if len(ids) != 1:
        raise ChainError(f"events of several jobs mixed together: {sorted(i for i in ids if i is not None)}")
    job: Job | None = None
    state = JobState.NONE

    def need(expected: tuple[JobState, ...], event: ChainEvent) -> None:
        if state not in expected:
            raise ChainError(
                f"job {event.job_id}: {event.name} at block {event.block_number} while {state.label}; "
                "events missing or out of order"
            )

    for event in relevant:
        if isinstance(event, JobPosted):
            need((JobState.NONE,), event)
            job = Job(
                submitter=event.submitter, payment=event.payment, collateral=event.collateral,
                spec_hash=event.spec_hash, num_segments=event.num_segments, env_class=event.env_class,
                segment_seconds=event.segment_seconds,
            )
            state = JobState.OPEN
        elif isinstance(event, JobCancelled):
            need((JobState.OPEN,), event)
            state = JobState.CANCELLED
        elif isinstance(event, JobClaimed):
            need((JobState.OPEN,), event)
            job = job.model_copy(update={"worker": event.worker, "deadline": event.deadline})
            state = JobState.CLAIMED
        elif isinstance(event, JobCommitted):
            need((JobState.CLAIMED,), event)
            job = job.model_copy(update={
                "result_root": event.result_root, "output_hash": event.output_hash,
                "challenge_end": event.challenge_end,
            })
            state = JobState.COMMITTED
        elif isinstance(event, JobExpired):
            need((JobState.CLAIMED,), event)
            state = JobState.EXPIRED
        elif isinstance(event, JobChallenged):
            need((JobState.COMMITTED,), event)
            state = JobState.CHALLENGED
        elif isinstance(event, JobSettled):
            need((JobState.CHALLENGED,), event)
            outcome = event.outcome
            state = (JobState.COMMITTED if outcome == SettleOutcome.RESUME
                     else JobState.REJECTED if outcome == SettleOutcome.REJECT else JobState.VOIDED)
        elif isinstance(event, JobFinalized):
            need((JobState.COMMITTED,), event)
            state = JobState.FINALIZED
    assert job is not None  # JobPosted must have come first, or need() raised
    return job, state


def fold_job(events: Iterable[ChainEvent], job_id: int | None = None) -> Job:
    """Rebuild the `Job` struct from a job's events (see `fold_job_with_state`)."""
    return fold_job_with_state(events, job_id)[0]
