"""`TesseraClient`: every contract call of the protocol, with pre-flight checks said in words.

Reads return pydantic views. Every write has a builder (`build_<action>` → `TxRequest`, nothing sent;
the daemons' outbox persists and sends those) and a sending method that first checks what would make
the transaction fail (balance, allowance, stake, state, deadlines, caller role) and raises
`PreflightError` saying so, then sends with EIP-1559 fees and an estimated gas limit plus margin, waits
for the receipt with a timeout, and turns a revert that still happens into `TransactionRevertedError`
with the contract's reason. The client never imports torch or ape.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny
from web3 import Web3

from protocol.abi import load_abi
from protocol.amounts import format_tokens
from protocol.chain import (
    DEFAULT_RECEIPT_TIMEOUT,
    checked_receipt,
    connect,
    resume_transaction,
    send_transaction_once,
)
from protocol.deploy import Deployment
from protocol.errors import (
    ArtifactError,
    ChainError,
    CommittedTraceError,
    ConfigError,
    DisputeError,
    DivergedError,
    EventsMismatchError,
    PreflightError,
    RpcUnreachableError,
    TesseraError,
)
from protocol.events import (
    ZERO_ADDRESS,
    REFEREE_STAGES,
    ZERO_WORD,
    ChainEvent,
    ChallengeFiled,
    ClaimKind,
    DisputeStatus,
    Job,
    JobCommitted,
    JobPosted,
    JobState,
    decode_log,
    decode_receipt,
    fold_job_with_state,
)
from protocol.hashing import DIVERGED_HASH, to_hex
from protocol.logrange import is_range_refusal, log_range_setting
from protocol.timefmt import format_chain_time

MAX_URI = 256
MAX_SEGMENTS = 1_024
MAX_PARENTS = 8
MAX_ATTESTATIONS_READ = 32  # per model read: anyone may add one (one per account), so a reader bounds its calls
MAX_DATASETS = 8
# How errors tell the reader to fix things: SDK callers pass arguments, CLI users pass flags
# (`protocol.cli.common.CLI_HINTS`), so each audience reads its own words.
SDK_HINTS = {
    "approve": "approve first (or pass approve=True)",
    "account": "pass account=… (a LocalAccount or a keystore alias) to sign transactions",
}
WAIT_MARGIN_S = 600.0  # what `wait_for_job` allows beyond what the chain's windows require
EVENTS_MISMATCH_RETRIES = 3  # reads of a job whose logs lag its record before `job` raises EventsMismatchError
EVENTS_MISMATCH_PAUSE_S = 0.25
RELATIONS = {"finetune": 0, "adapter": 1, "merge": 2, "quantize": 3, "distill": 4, "other": 5}
RELATION_NAMES = {v: k for k, v in RELATIONS.items()}


# --------------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------------


class TxRequest(BaseModel):
    """An unsigned call: what to send where, and a human description (for logs and the outbox)."""

    model_config = ConfigDict(frozen=True)

    to: str
    data: str
    value: int = 0
    description: str


class TxReceipt(BaseModel):
    """Summary of a mined transaction and the Tessera events it emitted."""

    tx_hash: str
    gas_used: int
    block_number: int
    status: int
    events: list[SerializeAsAny[ChainEvent]] = Field(default_factory=list)
    description: str = ""
    # True when this is the receipt of a transaction an earlier, interrupted call sent (from the journal)
    resumed: bool = False

    @property
    def job_id(self) -> int | None:
        """The job this transaction touched (the new id for a post), when its events name one."""
        ids = [e.job_id for e in self.events if e.job_id is not None]
        return ids[0] if ids else None

    def event(self, name: str) -> ChainEvent:
        """The first event called `name`; `ChainError` when absent."""
        for event in self.events:
            if event.name == name:
                return event
        raise ChainError(f"{self.description or 'transaction'} {self.tx_hash} emitted no {name} event")


class StakeInfo(BaseModel):
    address: str
    staked: int
    available: int
    locked: int
    unbonding: int
    unbonding_release_at: int


class DisputeView(BaseModel):
    """One dispute (`Disputes.dispute_of`): filed with a sealed commitment, then revealed, then closed."""

    dispute_id: int
    job_id: int
    challenger: str
    commitment: str
    filed_at: int
    filed_block: int
    status: DisputeStatus
    kind: int  # 0 until revealed, then a ClaimKind
    segment: int
    h_a: str
    h_b: str
    deadline: int  # the arbiter's deadline, set at reveal
    bond: int

    @property
    def open(self) -> bool:
        """Filed or revealed and not yet closed: its bond is locked and the job cannot finalize."""
        return self.status.open

    @property
    def claim(self) -> ClaimKind | None:
        return ClaimKind(self.kind) if self.kind in tuple(ClaimKind) else None

    @property
    def label(self) -> str:
        claim = self.claim
        what = f"{claim.label} {self.segment}" if claim is not None else "sealed"
        return f"dispute {self.dispute_id} ({what}, {self.status.label})"


class RefereeGameView(BaseModel):
    """The RefereeGame game of a refereed SEGMENT dispute (`Disputes.game_of`, `RefereeGame.games`/`ruling_of`)."""

    dispute_id: int
    game_id: int
    stage: int  # RefereeGame.vy's STAGE_* (protocol.events.REFEREE_STAGES names them)
    deadline: int  # the current mover's clock in a host stage (a sub-game keeps its own)
    step: int  # the pinned step of the segment, once the step bisection pinned one
    state_root: str = ""  # r_t, the agreed state before the pinned step (0x-hex)
    next_root: str = ""  # r_{t+1}, the disputed state after it (0x-hex)
    decided: bool
    defender_wrong: bool
    escalated: bool

    @property
    def stage_name(self) -> str:
        return REFEREE_STAGES[self.stage] if 0 <= self.stage < len(REFEREE_STAGES) else f"stage {self.stage}"

    @property
    def label(self) -> str:
        if self.decided:
            return f"game {self.game_id}: decided, worker {'wrong' if self.defender_wrong else 'right'}"
        return f"game {self.game_id}: {self.stage_name}"


class EnvClassView(BaseModel):
    """An environment class the deployment's arbiter published (the descriptor is at `descriptor_uri`)."""

    env_class: str
    descriptor_uri: str
    open: bool
    block: int


class Parent(BaseModel):
    model_hash: str
    relation: int = Field(ge=0, le=5)

    @property
    def relation_name(self) -> str:
        return RELATION_NAMES.get(self.relation, str(self.relation))


STATUS_NAMES = {0: "None", 1: "Declared", 2: "JobVerified"}


class AttestationView(BaseModel):
    """One attestation of a model (`ModelRegistry.attestation`): never overwritten by anyone."""

    attestation_id: int
    model_hash: str
    attester: str
    status: int  # 1 Declared, 2 JobVerified
    job_id: int = 0
    job_submitter: str = ZERO_ADDRESS
    job_worker: str = ZERO_ADDRESS
    spec_hash: str = ZERO_WORD
    block: int = 0
    metadata_uri: str = ""
    license: str = ""
    parents: list[Parent] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))

    @property
    def self_dealt(self) -> bool:
        """A JobVerified attestation whose job's submitter and worker are one address."""
        return self.status == 2 and self.job_submitter.lower() == self.job_worker.lower()


class ModelView(BaseModel):
    """A model's provenance: every attestation, with the primary one's fields on top.

    The primary attestation is the first JobVerified one when there is any, else the first one; the
    registry itself ranks nobody, so readers should look at `attestations` (who vouches for what).
    `parents` and `datasets` are the primary attestation's: anyone may add a Declared attestation, so a
    merge would let a stranger graft a parent onto a verified model's lineage.
    """

    model_hash: str
    exists: bool
    status: int  # 0 none, 1 Declared only, 2 at least one JobVerified
    creator: str = ZERO_ADDRESS
    job_id: int = 0
    job_submitter: str = ZERO_ADDRESS
    job_worker: str = ZERO_ADDRESS
    spec_hash: str = ZERO_WORD
    metadata_uri: str = ""
    license: str = ""
    block: int = 0
    parents: list[Parent] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    attestations: list[AttestationView] = Field(default_factory=list)  # the first MAX_ATTESTATIONS_READ, and the primary
    attestation_count: int = 0  # how many the registry holds

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))


class JobView(BaseModel):
    """A job rebuilt from its events and checked against the escrow's stored record."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    job_id: int
    state: JobState
    job: Job
    spec_uri: str = ""
    artifact_uri: str = ""
    state_hashes: list[str] = Field(default_factory=list)
    posted_block: int = 0
    record: str = ZERO_WORD
    events: list[SerializeAsAny[ChainEvent]] = Field(default_factory=list, exclude=True)
    client: Any = Field(default=None, exclude=True, repr=False)

    @property
    def state_name(self) -> str:
        return self.state.label

    @property
    def finalizable_at(self) -> int | None:
        """Chain time from which `finalize` can succeed (the challenge window's end), for a Committed job;
        None in any other state (not committed yet, challenged: up to the arbiter, or settled)."""
        return self.job.challenge_end if self.state is JobState.COMMITTED else None

    def verify_against_chain(self) -> bool:
        """True when `job.record(state)` equals `JobEscrow.job_record(job_id)` now."""
        if self.client is None:
            raise ChainError("this JobView has no client to check against")
        onchain = bytes(self.client.escrow.functions.job_record(self.job_id).call())
        return onchain == self.job.record(self.state)


def _hex32(value: str | bytes, what: str = "hash") -> bytes:
    if isinstance(value, (bytes, bytearray, HexBytes)):
        if len(value) != 32:
            raise PreflightError(f"{what} must be 32 bytes, got {len(value)}")
        return bytes(value)
    text = str(value).lower()
    if not (text.startswith("0x") and len(text) == 66):
        raise PreflightError(f"{what} must be 0x + 64 hex digits, got {value!r}")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise PreflightError(f"{what} is not hex: {value!r}") from None


def _rpc_message(exc: Exception) -> str:
    """The node's own words from a web3 RPC error (its `message`), else the exception's text."""
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(exc)


def _fmt(amount: int, decimals: int = 18) -> str:
    """A token amount for messages, exact: `12.5 tokens`, `1000000 tokens` (never `1e+06`)."""
    return f"{format_tokens(amount, decimals)} tokens"


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


class TesseraClient:
    """The SDK entry point: reads, builders and checked writes over one deployment."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: Any = None,
        *,
        preflight: bool = True,
        receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT,
        max_fee_cap: int | None = None,
        log_range: int | None = None,
        hints: dict[str, str] | None = None,
        journal: Any = True,
    ) -> None:
        self.w3 = w3
        self.log_range = log_range_setting(log_range)
        self.hints = dict(hints or SDK_HINTS)
        # Where signed transactions wait for their receipt (protocol.tx_journal): True for the default
        # journal under TESSERA_STATE_DIR, a TxJournal, or None for none.
        self.journal = journal
        self.deployment = deployment
        self.account = account
        self.preflight = preflight
        self.receipt_timeout = receipt_timeout
        self.max_fee_cap = max_fee_cap
        self.token = w3.eth.contract(address=deployment.token, abi=load_abi("DevToken"))
        self.staking = w3.eth.contract(address=deployment.staking, abi=load_abi("Staking"))
        self.escrow = w3.eth.contract(address=deployment.escrow, abi=load_abi("JobEscrow"))
        self.disputes = w3.eth.contract(address=deployment.disputes, abi=load_abi("Disputes"))
        self.registry = w3.eth.contract(address=deployment.registry, abi=load_abi("ModelRegistry"))
        self._contracts = {
            "DevToken": self.token, "Staking": self.staking, "JobEscrow": self.escrow,
            "Disputes": self.disputes, "ModelRegistry": self.registry,
        }
        self._params: dict[str, int] = {}
        self._refereed_class: str | None = None  # Disputes.refereed_class, immutable

    @classmethod
    def connect(
        cls,
        network: str | Web3,
        account: Any = None,
        deployment: Deployment | str | Path | None = None,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> "TesseraClient":
        """Connect to `network` (RPC URL, ape choice or a connected `Web3`), load the deployment and the account.

        `timeout` bounds each RPC call (default `TESSERA_RPC_TIMEOUT`, else 15 s).

        `deployment` is a `Deployment`, a file path, or None for `deployments/<chain_id>.json` (the
        folder can be moved with `TESSERA_DEPLOYMENTS_DIR`). `account` is a LocalAccount or a name for
        `protocol.accounts.load_account` (alias or `TEST::<n>`).
        """
        w3 = network if isinstance(network, Web3) else connect(network, timeout=timeout)
        chain_id = int(w3.eth.chain_id)
        if deployment is None:
            deployment = Deployment.for_chain(chain_id)
        elif not isinstance(deployment, Deployment):
            deployment = Deployment.load(deployment)
        if deployment.chain_id != chain_id:
            raise ConfigError(f"deployment is for chain id {deployment.chain_id}, but the RPC serves chain {chain_id}")
        if isinstance(account, str):
            from protocol.accounts import load_account

            account = load_account(account, chain_id=chain_id)
        return cls(w3, deployment, account, **kwargs)

    def with_account(self, account: Any) -> "TesseraClient":
        """A client on the same connection and deployment that signs as `account`."""
        return TesseraClient(
            self.w3, self.deployment, account, preflight=self.preflight,
            receipt_timeout=self.receipt_timeout, max_fee_cap=self.max_fee_cap, log_range=self.log_range,
            hints=self.hints, journal=self.journal,
        )

    # ---------------------------------------------------------------------------------- basics

    @property
    def address(self) -> str:
        """The signing account's address; `ConfigError` when the client has no account."""
        if self.account is None:
            raise ConfigError(f"this needs an account and none is set: {self.hints['account']}")
        return self.account.address

    def _contract_name(self, address: str) -> str:
        """`JobEscrow 0x…` for a deployment contract, else the bare address (error messages name spenders)."""
        for name, contract in self._contracts.items():
            if str(contract.address).lower() == str(address).lower():
                return f"{name} {contract.address}"
        return str(address)

    def param(self, contract: str, name: str) -> int:
        """An immutable parameter (cached: immutables never change)."""
        key = f"{contract}.{name}"
        if key not in self._params:
            self._params[key] = getattr(self._contracts[contract].functions, name)().call()
        return self._params[key]

    def block_time(self) -> int:
        """The latest block's timestamp: "now" for showing chain times (`protocol.timefmt`)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def chain_time(self) -> int:
        """A lower bound for the next block's timestamp: latest block + 1 (chain time, not wall clock)."""
        latest = int(self.w3.eth.get_block("latest")["timestamp"])
        return latest + 1

    # ---------------------------------------------------------------------------------- reads

    def job_count(self) -> int:
        return int(self.escrow.functions.job_count().call())

    def job_state(self, job_id: int) -> JobState:
        return JobState(self.escrow.functions.job_state(job_id).call())

    def token_balance(self, address: str | None = None) -> int:
        return int(self.token.functions.balanceOf(Web3.to_checksum_address(address or self.address)).call())

    def allowance(self, owner: str | None = None, spender: str | None = None) -> int:
        owner = Web3.to_checksum_address(owner or self.address)
        spender = Web3.to_checksum_address(spender or self.deployment.escrow)
        return int(self.token.functions.allowance(owner, spender).call())

    def stake_info(self, address: str | None = None) -> StakeInfo:
        addr = Web3.to_checksum_address(address or self.address)
        f = self.staking.functions
        return StakeInfo(
            address=addr,
            staked=f.staked_of(addr).call(),
            available=f.available_of(addr).call(),
            locked=f.locked_of(addr).call(),
            unbonding=f.unbonding_of(addr).call(),
            unbonding_release_at=f.unbonding_release_at(addr).call(),
        )

    def dispute(self, dispute_id: int) -> DisputeView:
        """Dispute `dispute_id` as the contract stores it (state is truth)."""
        values = self.disputes.functions.dispute_of(int(dispute_id)).call()
        names = ("job_id", "challenger", "commitment", "filed_at", "filed_block", "status", "kind", "segment",
                 "h_a", "h_b", "deadline", "bond")
        data = dict(zip(names, values)) if isinstance(values, (list, tuple)) else dict(values)
        for key in ("commitment", "h_a", "h_b"):
            data[key] = "0x" + bytes(data[key]).hex()
        data["status"] = DisputeStatus(int(data["status"]))
        data["challenger"] = Web3.to_checksum_address(data["challenger"])
        return DisputeView(dispute_id=int(dispute_id), **data)

    def dispute_count(self) -> int:
        return int(self.disputes.functions.dispute_count().call())

    def open_disputes(self, job_id: int) -> int:
        """How many disputes of `job_id` are filed or revealed and not closed."""
        return int(self.disputes.functions.open_disputes(int(job_id)).call())

    def disputes_of_job(self, job_id: int, view: "JobView | None" = None) -> list[DisputeView]:
        """Every dispute ever filed on `job_id`, in filing order, each read from contract state."""
        events = view.events if view is not None else self.job_events(job_id)
        ids = sorted({e.dispute_id for e in events if isinstance(e, ChallengeFiled) and e.job_id == job_id})
        return [self.dispute(i) for i in ids]

    @property
    def referee_game(self) -> Any:
        """The deployment's RefereeGame contract (`DeploymentError` for a deployment without one)."""
        if "RefereeGame" not in self._contracts:
            game = self.w3.eth.contract(address=self.deployment.referee_game, abi=load_abi("RefereeGame"))
            self._contracts["RefereeGame"] = game
        return self._contracts["RefereeGame"]

    def refereed_class(self) -> str:
        """The env class whose SEGMENT claims the referee decides (0x00… for none). Immutable in Disputes: read
        once."""
        if self._refereed_class is None:
            self._refereed_class = "0x" + bytes(self.disputes.functions.refereed_class().call()).hex()
        return self._refereed_class

    def is_refereed(self, job: Job) -> bool:
        """Whether a SEGMENT claim on `job` is revealed with `reveal_refereed` (its class is the refereed one)."""
        refereed = self.refereed_class()
        return int(refereed, 16) != 0 and refereed.lower() == job.env_class.lower()

    def game_of(self, dispute_id: int) -> int:
        """The RefereeGame game id of a refereed dispute (0: none opened)."""
        return int(self.disputes.functions.game_of(int(dispute_id)).call())

    def referee_game_view(self, dispute_id: int) -> RefereeGameView | None:
        """The game of `dispute_id` as the referee stores it, or None when the dispute opened none (or the
        deployment predates the referee)."""
        if "RefereeGame" not in self.deployment.contracts:
            return None
        game_id = self.game_of(dispute_id)
        if game_id == 0:
            return None
        game = self.referee_game.functions.games(game_id).call()
        decided, wrong, escalated = self.referee_game.functions.ruling_of(game_id).call()
        return RefereeGameView(dispute_id=int(dispute_id), game_id=game_id, stage=int(game[2]), deadline=int(game[3]),
                               step=int(game[6]), state_root=to_hex(bytes(game[7])), next_root=to_hex(bytes(game[20])),
                               decided=bool(decided), defender_wrong=bool(wrong),
                               escalated=bool(escalated))

    def env_classes(self) -> list[EnvClassView]:
        """Environment classes the arbiter published, with whether each is still open for new jobs."""
        from protocol.events import topics_of_interest

        topic = topics_of_interest(["EnvClassPublished"])[0]
        seen: dict[str, EnvClassView] = {}
        for event in self.get_logs([self.deployment.escrow], [topic]):
            if event.name == "EnvClassPublished" and event.env_class not in seen:
                seen[event.env_class] = EnvClassView(env_class=event.env_class, descriptor_uri=event.descriptor_uri,
                                                     open=False, block=event.block_number)
        for key, item in seen.items():
            item.open = bool(self.escrow.functions.env_class_open(_hex32(key, "environment class")).call())
        return list(seen.values())

    def env_class_open(self, env_class: str) -> bool:
        return bool(self.escrow.functions.env_class_open(_hex32(env_class, "environment class")).call())

    def default_env_class(self, arithmetic: str = "native") -> str:
        """The open environment class a job in `arithmetic` goes to; `PreflightError` when there is none
        (or, for native, several: then the caller names one).

        A portable job's class is fixed by its arithmetic (engine.determinism.portable_env_class); a native
        job goes to the one open machine class, portable classes aside."""
        if arithmetic != "native":
            env_class = _portable_class(arithmetic)
            if not self.env_class_open(env_class):
                raise PreflightError(f"this deployment's arbiter has not opened the {arithmetic} class {env_class} "
                                     "(`tessera env list`)")
            return env_class
        portable = _portable_classes()
        open_classes = [c.env_class for c in self.env_classes() if c.open and c.env_class.lower() not in portable]
        if len(open_classes) == 1:
            return open_classes[0]
        if not open_classes:
            raise PreflightError("this deployment's arbiter has published no open environment class yet: "
                                 "no job can be posted until it does (`tessera env list`)")
        raise PreflightError(f"this deployment has {len(open_classes)} open environment classes; name one "
                             f"(env_class=…, or --env-class): {', '.join(open_classes)}")

    def owed(self, address: str | None = None) -> dict[str, int]:
        """Credits waiting to be pulled: escrow refunds and disputes' rewards / compensations / shares."""
        addr = Web3.to_checksum_address(address or self.address)
        return {"JobEscrow": int(self.escrow.functions.owed(addr).call()),
                "Disputes": int(self.disputes.functions.owed(addr).call())}

    def get_logs(
        self,
        addresses: Sequence[str],
        topics: list[Any],
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[ChainEvent]:
        """Decoded Tessera events in bounded block ranges (every range is one bounded RPC call).

        A provider that refuses a range (or its result size) gets the range halved and asked again; the
        smaller range is kept for this client's later calls, so a capped provider costs a few calls once."""
        start = self.deployment.start_block if from_block is None else from_block
        end = int(self.w3.eth.block_number) if to_block is None else to_block
        query = {"address": [Web3.to_checksum_address(a) for a in addresses], "topics": topics}
        events: list[ChainEvent] = []
        while start <= end:
            stop = min(end, start + self.log_range - 1)
            try:
                logs = self.w3.eth.get_logs({**query, "fromBlock": start, "toBlock": stop})
            except Exception as exc:  # web3 raises RPC errors as several types; the wording decides
                if isinstance(exc, RpcUnreachableError):
                    raise
                if stop <= start or not is_range_refusal(exc):
                    if isinstance(exc, TesseraError):
                        raise
                    raise ChainError(f"the RPC refused eth_getLogs over blocks {start}..{stop}: "
                                     f"{_rpc_message(exc)}") from exc
                self.log_range = max(1, (stop - start + 1) // 2)
                continue
            events += [event for event in (decode_log(log, self.deployment) for log in logs) if event is not None]
            start = stop + 1
        return sorted(events, key=lambda e: e.position)

    def job_events(self, job_id: int, to_block: int | None = None) -> list[ChainEvent]:
        """Every escrow and disputes event of `job_id` (job_id is the first indexed topic of each)."""
        topic = "0x" + int(job_id).to_bytes(32, "big").hex()
        return self.get_logs([self.deployment.escrow, self.deployment.disputes], [None, topic], to_block=to_block)

    def job(self, job_id: int, *, verify: bool = True) -> JobView:
        """The job rebuilt from its events; with `verify`, checked against the stored record."""
        if job_id < 1:
            raise PreflightError(f"job ids start at 1, got {job_id}")
        # Logs and the stored record are read at the same block, so a transaction mined in between
        # cannot make them disagree; a node may still answer for its newest block before its log index
        # holds that block's logs (anvil under load does), so a mismatch is read again before it is an error.
        attempts = 0
        while True:
            at = int(self.w3.eth.block_number)
            events = self.job_events(job_id, to_block=at)
            if not events:
                count = self.job_count()
                raise PreflightError(f"job {job_id} does not exist (job count is {count})")
            try:
                return self._view_of(job_id, events, at, verify=verify)
            except EventsMismatchError:
                attempts += 1
                if attempts > EVENTS_MISMATCH_RETRIES:
                    raise
                time.sleep(EVENTS_MISMATCH_PAUSE_S)

    def _view_of(self, job_id: int, events: list[ChainEvent], at: int, *, verify: bool = True) -> JobView:
        """A JobView from every event of `job_id` up to block `at`, checked against the record at `at`."""
        job, state = fold_job_with_state(events, job_id)
        record = bytes(self.escrow.functions.job_record(job_id).call(block_identifier=at))
        view = JobView(
            job_id=job_id, state=state, job=job, events=events, client=self,
            spec_uri=next((e.spec_uri for e in events if isinstance(e, JobPosted)), ""),
            artifact_uri=next((e.artifact_uri for e in events if isinstance(e, JobCommitted)), ""),
            state_hashes=next((list(e.state_hashes) for e in events if isinstance(e, JobCommitted)), []),
            posted_block=next((e.block_number for e in events if isinstance(e, JobPosted)), 0),
            record="0x" + record.hex(),
        )
        if verify and record != job.record(state):
            # Events are hints, state is truth: the stored state byte is authoritative.
            onchain_state = JobState(record[31])
            if job.record(onchain_state) == record:
                view = view.model_copy(update={"state": onchain_state})
            else:
                raise EventsMismatchError(
                    f"job {job_id}: events rebuild a job that does not match the escrow's record "
                    "(missed or reorged logs); retry, or check the RPC's log history"
                )
        return view

    def list_jobs(
        self,
        *,
        submitter: str | None = None,
        states: Iterable[JobState | int | str] = (),
        limit: int = 50,
    ) -> list[JobView]:
        """The newest `limit` jobs (optionally by submitter and in `states`), oldest of them first.

        One backward pass over the escrow's and disputes' logs, from the latest block down, stops as
        soon as `limit` matching jobs were posted inside the scanned blocks: every event of a job comes
        after its post, so those jobs are complete. Then one `job_record` read per listed job. The cost
        is bounded by the blocks scanned and `limit`, not by how many jobs the chain holds."""
        if limit < 1:
            raise ConfigError(f"limit must be at least 1, got {limit}")
        wanted = {JobState.parse(s) for s in states}
        who = Web3.to_checksum_address(submitter) if submitter else None
        at = int(self.w3.eth.block_number)
        first = self.deployment.start_block
        addresses = [self.deployment.escrow, self.deployment.disputes]
        by_job: dict[int, list[ChainEvent]] = {}
        matching: list[int] = []
        stop = at
        while stop >= first and len(matching) < limit:
            start = max(first, stop - self.log_range + 1)
            for event in self.get_logs(addresses, [], from_block=start, to_block=stop):
                if event.job_id is not None:
                    by_job.setdefault(event.job_id, []).append(event)
            matching = []
            for job_id in sorted(by_job, reverse=True):
                posted = next((e for e in by_job[job_id] if isinstance(e, JobPosted)), None)
                if posted is None or (who and posted.submitter.lower() != who.lower()):
                    continue
                if not wanted or fold_job_with_state(by_job[job_id], job_id)[1] in wanted:
                    matching.append(job_id)
            stop = start - 1
        views = [self._view_of(job_id, sorted(by_job[job_id], key=lambda e: e.position), at)
                 for job_id in sorted(matching[:limit])]
        return [view for view in views if not wanted or view.state in wanted]

    def jobs(self, *, from_block: int | None = None, submitter: str | None = None) -> list[int]:
        """Ids of posted jobs (optionally by submitter), oldest first."""
        from protocol.events import topics_of_interest

        topics: list[Any] = [topics_of_interest(["JobPosted"])[0]]
        if submitter:
            topics += [None, "0x" + "00" * 12 + Web3.to_checksum_address(submitter)[2:].lower()]
        events = self.get_logs([self.deployment.escrow], topics, from_block=from_block)
        return [e.job_id for e in events if e.name == "JobPosted"]

    def attestation(self, attestation_id: int) -> AttestationView:
        """One attestation by id, with its parents and datasets."""
        f = self.registry.functions
        values = f.attestation(int(attestation_id)).call()
        names = [o["name"] for o in _outputs_of(self.registry.abi, "attestation")]
        data = _to_dict(values, names)
        return AttestationView(
            attestation_id=int(attestation_id),
            model_hash=_as_hex(data.get("model_hash", ZERO_WORD)),
            attester=data.get("attester", ZERO_ADDRESS),
            status=int(data.get("status", 0)),
            job_id=int(data.get("job_id", 0)),
            job_submitter=data.get("job_submitter", ZERO_ADDRESS),
            job_worker=data.get("job_worker", ZERO_ADDRESS),
            spec_hash=_as_hex(data.get("spec_hash", ZERO_WORD)),
            block=int(data.get("block_number", 0) or 0),
            metadata_uri=data.get("metadata_uri", ""),
            license=data.get("license", ""),
            parents=[Parent(model_hash="0x" + bytes(p[0]).hex(), relation=int(p[1]))
                     for p in f.attestation_parents(int(attestation_id)).call()],
            datasets=["0x" + bytes(d).hex() for d in f.attestation_datasets(int(attestation_id)).call()],
        )

    def job_attestation(self, job_id: int) -> int:
        """The id of job `job_id`'s JobVerified attestation, or 0 when its output is not attested yet."""
        return int(self.registry.functions.attestation_of_job(int(job_id)).call())

    def model(self, model_hash: str, max_attestations: int = MAX_ATTESTATIONS_READ) -> ModelView:
        """The provenance of `model_hash` (exists=False when never registered): its first `max_attestations`
        (at most MAX_ATTESTATIONS_READ) attestations and the primary one. Anyone may add a Declared
        attestation, one per account, so a reader never reads them all: `attestation_count` says how many
        there are."""
        max_attestations = max(1, min(int(max_attestations), MAX_ATTESTATIONS_READ))
        key = _hex32(model_hash, "model hash")
        f = self.registry.functions
        count = int(f.attestations_of_count(key).call())
        if count == 0:
            return ModelView(model_hash="0x" + key.hex(), exists=False, status=0)
        status = int(f.status_of(key).call())
        attestations = [self.attestation(int(f.attestation_id_of(key, i).call()))
                        for i in range(min(count, max_attestations))]
        primary = next((a for a in attestations if a.status == 2), None)
        if primary is None and status == 2:  # the job's attestation came after a crowd of Declared ones
            primary = self._verified_attestation(key, first=len(attestations), count=count)
            attestations.append(primary)
        primary = primary or attestations[0]
        return ModelView(
            model_hash="0x" + key.hex(), exists=True, status=status, attestation_count=count,
            creator=primary.attester, job_id=primary.job_id, job_submitter=primary.job_submitter,
            job_worker=primary.job_worker, spec_hash=primary.spec_hash, metadata_uri=primary.metadata_uri,
            license=primary.license, block=primary.block, parents=list(primary.parents),
            datasets=list(primary.datasets),
            attestations=attestations,
        )

    def _verified_attestation(self, key: bytes, *, first: int, count: int) -> AttestationView:
        """The first JobVerified attestation of model `key` among its attestations `first`..`count - 1`: found
        from the ModelRegistered events (model_hash is indexed: a few bounded log queries) and read from state;
        events are hints, so without a usable one the ids are read from state one by one."""
        from protocol.events import topics_of_interest

        model = "0x" + key.hex()
        topic = topics_of_interest(["ModelRegistered"])[0]
        try:
            events = self.get_logs([self.deployment.registry], [topic, model])
        except ChainError:
            events = []
        for event in events:
            if getattr(event, "name", None) == "ModelRegistered" and event.status == 2:
                view = self.attestation(int(event.attestation_id))
                if view.status == 2 and view.model_hash == model:
                    return view
        f = self.registry.functions
        for index in range(first, count):
            view = self.attestation(int(f.attestation_id_of(key, index).call()))
            if view.status == 2:
                return view
        raise ChainError(f"model {model} is JobVerified but none of its {count} attestations is")

    def lineage(self, model_hash: str, max_depth: int = 16) -> Any:
        """The provenance tree of `model_hash` down to its roots (see `protocol.provenance`)."""
        from protocol.provenance import lineage

        class PrimaryOnly:  # a lineage node shows the primary attestation and the count: read no others
            model = staticmethod(lambda key: self.model(key, max_attestations=1))

        return lineage(PrimaryOnly(), model_hash, max_depth=max_depth)

    # ---------------------------------------------------------------------------------- builders

    def _request(self, contract: str, fn: str, args: list[Any], description: str) -> TxRequest:
        target = self._contracts[contract]
        data = target.encode_abi(fn, args=args)
        return TxRequest(to=target.address, data=data if isinstance(data, str) else "0x" + bytes(data).hex(),
                         value=0, description=description)

    def _job_struct(self, job_id: int, job: Job | None) -> Job:
        return job if job is not None else self.job(job_id).job

    def build_faucet(self, amount: int) -> TxRequest:
        return self._request("DevToken", "faucet", [int(amount)], f"faucet {_fmt(amount)}")

    def build_approve(self, spender: str, amount: int) -> TxRequest:
        return self._request("DevToken", "approve", [Web3.to_checksum_address(spender), int(amount)],
                             f"approve {spender} for {_fmt(amount)}")

    def build_stake(self, amount: int) -> TxRequest:
        return self._request("Staking", "stake", [int(amount)], f"stake {_fmt(amount)}")

    def build_request_unstake(self, amount: int) -> TxRequest:
        return self._request("Staking", "request_unstake", [int(amount)], f"request unstake of {_fmt(amount)}")

    def build_withdraw(self) -> TxRequest:
        return self._request("Staking", "withdraw", [], "withdraw unbonded stake")

    def build_post(self, payment: int, collateral: int, spec_hash: str, num_segments: int, env_class: str,
                   segment_seconds: int, spec_uri: str) -> TxRequest:
        return self._request(
            "JobEscrow", "post",
            [int(payment), int(collateral), _hex32(spec_hash, "spec hash"), int(num_segments),
             _hex32(env_class, "environment class"), int(segment_seconds), spec_uri],
            f"post job (spec {spec_hash}, {num_segments} segments, payment {_fmt(payment)})",
        )

    def build_publish_env_class(self, env_class: str, descriptor_uri: str) -> TxRequest:
        return self._request("JobEscrow", "publish_env_class", [_hex32(env_class, "environment class"), descriptor_uri],
                             f"publish environment class {env_class}")

    def build_retire_env_class(self, env_class: str) -> TxRequest:
        return self._request("JobEscrow", "retire_env_class", [_hex32(env_class, "environment class")],
                             f"retire environment class {env_class}")

    def build_withdraw_owed(self, contract: str) -> TxRequest:
        """`withdraw()` of the escrow (refunds) or of the disputes contract (rewards, compensations, shares)."""
        if contract not in ("JobEscrow", "Disputes"):
            raise ConfigError(f"credits live in JobEscrow or Disputes, not {contract}")
        return self._request(contract, "withdraw", [], f"withdraw what {contract} owes")

    def _job_call(self, fn: str, job_id: int, job: Job | None) -> TxRequest:
        """An escrow call whose only arguments are the job id and its current struct."""
        job = self._job_struct(job_id, job)
        return self._request("JobEscrow", fn, [job_id, job.as_tuple()], f"{fn} job {job_id}")

    def build_cancel(self, job_id: int, job: Job | None = None) -> TxRequest:
        return self._job_call("cancel", job_id, job)

    def build_claim(self, job_id: int, job: Job | None = None) -> TxRequest:
        return self._job_call("claim", job_id, job)

    def build_commit(
        self, job_id: int, state_hashes: Sequence[str | bytes], output_hash: str, artifact_uri: str,
        job: Job | None = None, *, env_class: str | None = None,
    ) -> TxRequest:
        """`JobEscrow.commit` with the whole trace h_0 … h_N; the escrow computes and stores its root.

        `env_class` defaults to the job's (the only one the escrow accepts)."""
        from protocol.merkle import merkle_root

        job = self._job_struct(job_id, job)
        leaves = _trace_words(state_hashes)
        root = "0x" + merkle_root(leaves).hex() if leaves else ZERO_WORD
        return self._request(
            "JobEscrow", "commit",
            [job_id, job.as_tuple(), leaves, _hex32(output_hash, "output hash"),
             _hex32(env_class or job.env_class, "environment class"), artifact_uri],
            f"commit job {job_id} ({len(leaves)} state hashes, root {root})",
        )

    def build_finalize(self, job_id: int, job: Job | None = None) -> TxRequest:
        return self._job_call("finalize", job_id, job)

    def build_expire(self, job_id: int, job: Job | None = None) -> TxRequest:
        return self._job_call("expire", job_id, job)

    def build_file_challenge(self, job_id: int, commitment: str | bytes, job: Job | None = None) -> TxRequest:
        """`Disputes.file_challenge`: the sealed first half of a challenge (see `challenge_commitment`)."""
        job = self._job_struct(job_id, job)
        return self._request("Disputes", "file_challenge", [job_id, job.as_tuple(), _hex32(commitment, "commitment")],
                             f"file a sealed challenge on job {job_id}")

    def build_reveal(
        self, dispute_id: int, job: Job, claim: ClaimKind | int, segment: int, salt: str | bytes,
        state_hashes: Sequence[str | bytes],
    ) -> TxRequest:
        """`Disputes.reveal` with the hashes and Merkle proofs that claim `claim` on `segment` pins."""
        args = reveal_arguments(job, state_hashes, ClaimKind(int(claim)), int(segment))
        return self._request(
            "Disputes", "reveal",
            [int(dispute_id), job.as_tuple(), int(claim), int(segment), _hex32(salt, "salt"), *args],
            f"reveal dispute {dispute_id}: {ClaimKind(int(claim)).label} {segment}",
        )

    def build_reveal_refereed(
        self, dispute_id: int, job: Job, segment: int, salt: str | bytes, state_hashes: Sequence[str | bytes],
        checkpoint: bytes, binding: Any,
    ) -> TxRequest:
        """`Disputes.reveal_refereed` of a SEGMENT claim: the proofs of h_segment and h_segment+1, and the
        agreed checkpoint's 156-byte header with its path under h_segment (`binding`: the
        protocol.tensor_commit.StateBinding its header carries). DisputeError when the checkpoint's state
        root is not the committed h_segment."""
        from protocol.tensor_commit import header_proof, state_root

        h_a, proof_a, h_b, proof_b = reveal_arguments(job, state_hashes, ClaimKind.SEGMENT, int(segment))
        try:
            root = state_root(checkpoint, binding)
        except TesseraError as exc:
            raise DisputeError(f"reveal dispute {dispute_id}: the agreed checkpoint does not read: {exc}") from None
        if root != h_a:
            raise DisputeError(f"reveal dispute {dispute_id}: the agreed checkpoint's state root 0x{root.hex()} is not "
                               f"the committed h_{segment} 0x{bytes(h_a).hex()}")
        header, path = header_proof(checkpoint, binding)
        return self._request(
            "Disputes", "reveal_refereed",
            [int(dispute_id), job.as_tuple(), int(segment), _hex32(salt, "salt"), h_a, proof_a, h_b, proof_b, header,
             path],
            f"reveal refereed dispute {dispute_id}: segment {segment}",
        )

    def build_settle_refereed(self, dispute_id: int, job: Job | None = None) -> TxRequest:
        """`Disputes.settle_refereed`: carry a decided (or escalated) game into its dispute (anyone)."""
        return self._dispute_call("settle_refereed", dispute_id, job, "settle the game of")

    def build_verdict(
        self, dispute_id: int, worker_wrong: bool, recomputed_hash: str, evidence_uri: str, job: Job | None = None,
    ) -> TxRequest:
        job = job if job is not None else self.job(self.dispute(dispute_id).job_id).job
        return self._request(
            "Disputes", "verdict",
            [int(dispute_id), job.as_tuple(), bool(worker_wrong), _hex32(recomputed_hash, "recomputed hash"),
             evidence_uri],
            f"verdict on dispute {dispute_id}: worker {'wrong' if worker_wrong else 'right'}",
        )

    def _dispute_call(self, fn: str, dispute_id: int, job: Job | None, what: str) -> TxRequest:
        job = job if job is not None else self.job(self.dispute(dispute_id).job_id).job
        return self._request("Disputes", fn, [int(dispute_id), job.as_tuple()], f"{what} dispute {dispute_id}")

    def build_dispute_timeout(self, dispute_id: int, job: Job | None = None) -> TxRequest:
        return self._dispute_call("timeout", dispute_id, job, "time out")

    def build_expire_reveal(self, dispute_id: int, job: Job | None = None) -> TxRequest:
        return self._dispute_call("expire_reveal", dispute_id, job, "expire the unrevealed")

    def build_close_dispute(self, dispute_id: int) -> TxRequest:
        return self._request("Disputes", "close", [int(dispute_id)], f"close dispute {dispute_id}")

    def build_register_model(
        self,
        model_hash: str,
        parents: Iterable[Parent | tuple[str, int | str]] = (),
        datasets: Iterable[str] = (),
        spec_hash: str = ZERO_WORD,
        job_id: int = 0,
        metadata_uri: str = "",
        license: str = "",
        job: Job | None = None,
    ) -> TxRequest:
        parent_list = [_parent(p) for p in parents]
        if job_id and job is None:
            job = self.job(job_id).job
        job = job or Job()
        return self._request(
            "ModelRegistry", "register",
            [_hex32(model_hash, "model hash"),
             [(_hex32(p.model_hash, "parent hash"), p.relation) for p in parent_list],
             [_hex32(d, "dataset hash") for d in datasets], _hex32(spec_hash, "spec hash"), int(job_id),
             job.as_tuple(), metadata_uri, license],
            f"register model {model_hash}",
        )

    # ---------------------------------------------------------------------------------- sending

    def send(self, request: TxRequest, *, gas: int | None = None, allow_duplicate: bool = False) -> TxReceipt:
        """Sign and send `request` as this client's account; wait; decode events; decode reverts.

        The signed transaction is journaled first (`protocol.tx_journal`): when an earlier call with the
        same request was cut off after signing, this follows that transaction (`resumed` is True on the
        receipt) instead of sending a second one, unless `allow_duplicate`."""
        if self.account is None:
            raise ConfigError(f"{request.description}: this client has no account to sign with")
        receipt, resumed = send_transaction_once(
            self.w3, self.account, to=request.to, data=request.data, value=request.value,
            description=request.description, receipt_timeout=self.receipt_timeout, gas=gas,
            max_fee_cap=self.max_fee_cap, journal=self.journal, allow_duplicate=allow_duplicate,
        )
        return self._receipt(receipt, request.description, resumed)

    def resume(self, request: TxRequest) -> TxReceipt | None:
        """The receipt of a journaled transaction for `request` left by an interrupted earlier call, after
        following it to the end; None when there is none. Checked writes ask this before their pre-flight
        checks, which a transaction that already landed would fail (the balance it spent, the state it moved)."""
        if self.account is None or not self.journal:
            return None
        receipt = resume_transaction(self.w3, self.account, to=request.to, data=request.data, value=request.value,
                                     receipt_timeout=self.receipt_timeout, journal=self.journal)
        if receipt is None:
            return None
        return self._receipt(checked_receipt(self.w3, receipt, request.description,
                                      {"from": self.address, "to": request.to, "data": request.data,
                                       "value": request.value}), request.description, True)

    def _receipt(self, receipt: Any, description: str, resumed: bool) -> TxReceipt:
        return TxReceipt(
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            gas_used=int(receipt["gasUsed"]),
            block_number=int(receipt["blockNumber"]),
            status=int(receipt["status"]),
            events=decode_receipt(receipt, self.deployment),
            description=description,
            resumed=resumed,
        )

    def _check(self, ok: bool, message: str) -> None:
        if self.preflight and not ok:
            raise PreflightError(message)

    def _ensure_allowance(self, spender: str, amount: int, approve: bool, purpose: str) -> None:
        current = self.allowance(self.address, spender)
        if current >= amount:
            return
        if not approve:
            self._check(False, f"{purpose}: allowance {_fmt(current)} for {self._contract_name(spender)} is below "
                               f"{_fmt(amount)}; {self.hints['approve']}")
            return
        self.send(self.build_approve(spender, amount))

    def _require_balance(self, amount: int, purpose: str) -> None:
        balance = self.token_balance(self.address)
        self._check(balance >= amount, f"{purpose}: token balance {_fmt(balance)} of {self.address} is below "
                                       f"{_fmt(amount)} needed")

    def _require_state(self, view: JobView, expected: JobState | tuple[JobState, ...], action: str) -> None:
        allowed = expected if isinstance(expected, tuple) else (expected,)
        self._check(view.state in allowed,
                    f"cannot {action} job {view.job_id}: it is {view.state.label}, must be "
                    f"{' or '.join(s.label for s in allowed)}")

    # ---------------------------------------------------------------------------------- writes

    def faucet(self, amount: int) -> TxReceipt:
        """Mint dev tokens to this account (DevToken only; capped per call)."""
        self._check(amount > 0, "faucet: amount must be positive")
        try:
            cap = self.param("DevToken", "FAUCET_CAP")
        except Exception:
            cap = None
        if cap is not None:
            self._check(amount <= cap, f"faucet: {_fmt(amount)} is above the per-call cap of {_fmt(cap)}")
        return self.send(self.build_faucet(amount))

    def approve(self, spender: str, amount: int) -> TxReceipt:
        return self.send(self.build_approve(spender, amount))

    def stake(self, amount: int, *, approve: bool = True) -> TxReceipt:
        """Stake `amount` (approving the staking contract first when needed and `approve`)."""
        self._check(amount > 0, "stake: amount must be positive")
        earlier = self.resume(self.build_stake(amount))  # a stake that landed would fail the balance check
        if earlier is not None:
            return earlier
        self._require_balance(amount, "stake")
        self._ensure_allowance(self.deployment.staking, amount, approve, "stake")
        return self.send(self.build_stake(amount))

    def request_unstake(self, amount: int) -> TxReceipt:
        self._check(amount > 0, "request unstake: amount must be positive")
        earlier = self.resume(self.build_request_unstake(amount))
        if earlier is not None:
            return earlier
        info = self.stake_info(self.address)
        self._check(info.available >= amount,
                    f"request unstake: available stake {_fmt(info.available)} is below {_fmt(amount)} "
                    f"(locked behind jobs: {_fmt(info.locked)}, already unbonding: {_fmt(info.unbonding)})")
        return self.send(self.build_request_unstake(amount))

    def withdraw(self) -> TxReceipt:
        earlier = self.resume(self.build_withdraw())
        if earlier is not None:
            return earlier
        info = self.stake_info(self.address)
        self._check(info.unbonding > 0, f"withdraw: nothing is unbonding for {self.address}")
        now = self.chain_time()
        self._check(now >= info.unbonding_release_at,
                    f"withdraw: stake still unbonding until {format_chain_time(info.unbonding_release_at, now)}")
        return self.send(self.build_withdraw())

    def post(self, payment: int, collateral: int, spec_hash: str, num_segments: int, spec_uri: str,
             *, env_class: str | None = None, segment_seconds: int = 1, approve: bool = True,
             allow_duplicate: bool = False) -> TxReceipt:
        """Post a job by hash (approving the escrow for `payment` first when needed).

        `env_class`: the environment class the results must reproduce in (default: the deployment's
        only open class). `segment_seconds`: declared seconds to replay one segment in that class; it
        sizes the job's challenge and arbiter windows, and workers decline jobs that declare too little.
        When an earlier identical post was cut off after signing (a dropped RPC), this returns that
        post's receipt (`resumed`) instead of posting a second job; `allow_duplicate` posts a new one
        even then. Identical posts made one after another, each seen through, are separate jobs.
        """
        env_class = env_class or self.default_env_class()
        if not allow_duplicate and 1 <= num_segments <= MAX_SEGMENTS and len(spec_uri.encode()) <= MAX_URI:
            earlier = self.resume(self.build_post(payment, collateral, spec_hash, num_segments, env_class,
                                                  segment_seconds, spec_uri))
            if earlier is not None:
                return earlier
        self._check(payment > 0, "post job: payment must be positive")
        bps = self.param("JobEscrow", "expiry_compensation_bps")
        self._check(collateral * bps >= 10_000,
                    f"post job: collateral {_fmt(collateral)} is too small: its expiry compensation "
                    f"({bps} bps) would round to zero, which would make squatting a claim free")
        self._check(1 <= num_segments <= MAX_SEGMENTS,
                    f"post job: num_segments must be 1..{MAX_SEGMENTS}, got {num_segments}")
        self._check(len(spec_uri.encode()) <= MAX_URI, f"post job: spec URI longer than {MAX_URI} bytes")
        self._check(_hex32(spec_hash, "spec hash") != bytes(32), "post job: spec hash is zero")
        self._check(self.env_class_open(env_class),
                    f"post job: environment class {env_class} is not open on this deployment (the arbiter has "
                    "not published it, or retired it): `tessera env list` shows the open ones")
        limit = self.param("JobEscrow", "max_segment_seconds")
        self._check(1 <= segment_seconds <= limit,
                    f"post job: segment_seconds must be 1..{limit} (this deployment's max_segment_seconds), "
                    f"got {segment_seconds}; split the job into more segments")
        self._require_balance(payment, "post job")
        self._ensure_allowance(self.deployment.escrow, payment, approve, "post job")
        return self.send(self.build_post(payment, collateral, spec_hash, num_segments, env_class, segment_seconds,
                                         spec_uri), allow_duplicate=allow_duplicate)

    def post_job(self, spec: Any, payment: int, collateral: int, spec_uri: str, *, env_class: str | None = None,
                 segment_seconds: int | None = None, approve: bool = True, allow_duplicate: bool = False) -> TxReceipt:
        """Approve (if needed) and post `spec` (a `protocol.spec.TaskSpec`); the receipt's `job_id` is the new id.

        `env_class` defaults to the class the spec's arithmetic names (`default_env_class`): a portable
        spec goes to the portable class of its arithmetic, which every machine reproduces. A class that
        does not fit the spec is refused (no worker could commit it: docs/protocol.md, "Portable class").
        `segment_seconds` defaults to `protocol.spec.estimate_segment_seconds(spec)`. A `spec_uri` that
        workers with the shipped configuration refuse (`file://`) off the local chain gives a
        `protocol.publishing.SpecUriWarning`; `protocol.publishing.publish_spec` makes a good one. A retry
        after a dropped RPC follows the earlier post instead of posting twice (see `post`; `allow_duplicate`)."""
        from engine.determinism import spec_class_problem  # torch-free; lazily, like the CLI's engine imports
        from protocol.spec import estimate_segment_seconds

        from protocol.publishing import LOCAL_CHAIN_ID, SpecUriWarning, spec_uri_warning

        refused = spec_uri_warning(spec_uri)
        if refused is not None and self.deployment.chain_id != LOCAL_CHAIN_ID:
            warnings.warn(refused, SpecUriWarning, stacklevel=2)  # a job no shipped worker takes stays Open
        env_class = env_class or self.default_env_class(spec.arithmetic)
        problem = spec_class_problem(spec.arithmetic, env_class)
        self._check(problem is None, f"post job: {problem}")
        seconds = segment_seconds if segment_seconds is not None else estimate_segment_seconds(spec)
        return self.post(payment, collateral, spec.spec_hash(), int(spec.num_segments), spec_uri,
                         env_class=env_class, segment_seconds=seconds, approve=approve,
                         allow_duplicate=allow_duplicate)

    def cancel(self, job_id: int) -> TxReceipt:
        view = self.job(job_id)
        self._require_state(view, JobState.OPEN, "cancel")
        self._check(view.job.submitter == self.address,
                    f"cannot cancel job {job_id}: only its submitter {view.job.submitter} may, not {self.address}")
        return self.send(self.build_cancel(job_id, view.job))

    def claim(self, job_id: int) -> TxReceipt:
        view = self.job(job_id)
        self._require_state(view, JobState.OPEN, "claim")
        info = self.stake_info(self.address)
        self._check(info.available >= view.job.collateral,
                    f"cannot claim job {job_id}: available stake {_fmt(info.available)} is below its collateral "
                    f"{_fmt(view.job.collateral)}; stake more first")
        return self.send(self.build_claim(job_id, view.job))

    def commit(
        self, job_id: int, state_hashes: Sequence[str | bytes], output_hash: str, artifact_uri: str,
        *, env_class: str | None = None,
    ) -> TxReceipt:
        """Commit the trace h_0 … h_N (N + 1 32-byte hashes), the output hash and the store URI.

        `env_class` is the environment the worker ran in; it must be the job's (the default)."""
        view = self.job(job_id)
        self._require_state(view, JobState.CLAIMED, "commit")
        self._check(view.job.worker == self.address,
                    f"cannot commit job {job_id}: it was claimed by {view.job.worker}, not {self.address}")
        now = self.chain_time()
        self._check(now <= view.job.deadline,
                    f"cannot commit job {job_id}: its deadline {format_chain_time(view.job.deadline, now)} has passed")
        leaves = _trace_words(state_hashes)
        self._check(len(leaves) == view.job.num_segments + 1,
                    f"commit: job {job_id} has {view.job.num_segments} segments, so its trace needs "
                    f"{view.job.num_segments + 1} state hashes (h_0 … h_N), got {len(leaves)}")
        self._check(_hex32(output_hash, "output hash") != bytes(32), "commit: output hash is zero")
        self._check(len(artifact_uri.encode()) <= MAX_URI, f"commit: artifact URI longer than {MAX_URI} bytes")
        if env_class is not None:
            self._check(env_class.lower() == view.job.env_class.lower(),
                        f"commit: job {job_id} must reproduce in environment class {view.job.env_class}, "
                        f"not {env_class}")
        return self.send(self.build_commit(job_id, leaves, output_hash, artifact_uri, view.job, env_class=env_class))

    def committed_trace(self, job_id: int, view: JobView | None = None) -> list[str]:
        """The trace h_0 … h_N a job committed (0x hex), read from its `JobCommitted` log.

        The escrow keeps only the root and logs the leaves, so the trace is readable however the worker
        sent its commit (directly, or through a contract wallet, a Safe, a multicall or an EIP-7702
        account). The Merkle root of the logged hashes must equal the committed root; otherwise
        `CommittedTraceError` (a ChainError: a bad RPC answer, never a worker's choice).
        """
        from protocol.merkle import merkle_root

        view = view or self.job(job_id)
        if not any(isinstance(e, JobCommitted) for e in view.events):
            raise PreflightError(f"job {job_id} has no committed trace: it is {view.state.label}")
        leaves = [_hex32(h, "state hash") for h in view.state_hashes]
        root = "0x" + merkle_root(leaves).hex() if leaves else ZERO_WORD
        if root != view.job.result_root.lower():
            raise CommittedTraceError(
                f"job {job_id}: the logged trace hashes to {root}, the job committed {view.job.result_root}")
        return ["0x" + h.hex() for h in leaves]

    def finalize(self, job_id: int) -> TxReceipt:
        view = self.job(job_id)
        self._require_state(view, JobState.COMMITTED, "finalize")
        now = self.chain_time()
        self._check(now >= view.job.challenge_end,
                    f"cannot finalize job {job_id} yet: its challenge window is open until "
                    f"{format_chain_time(view.job.challenge_end, now)}")
        return self.send(self.build_finalize(job_id, view.job))

    def expire(self, job_id: int) -> TxReceipt:
        view = self.job(job_id)
        self._require_state(view, JobState.CLAIMED, "expire")
        now = self.chain_time()
        self._check(now > view.job.deadline,
                    f"cannot expire job {job_id} yet: its deadline is {format_chain_time(view.job.deadline, now)}")
        return self.send(self.build_expire(job_id, view.job))

    def file_challenge(
        self, job_id: int, claim: ClaimKind | int | str, segment: int, *, salt: bytes | None = None,
    ) -> tuple[int, bytes, TxReceipt]:
        """File the sealed half of a challenge; returns (dispute_id, salt, receipt).

        Keep the salt: the reveal (`reveal_challenge`, a later block, within the reveal window) needs it.
        Locks `challenge_bond` of this account's available stake while the dispute is open."""
        kind = parse_claim(claim)
        view = self.job(job_id)
        self._require_state(view, (JobState.COMMITTED, JobState.CHALLENGED), "challenge")
        now = self.chain_time()
        self._check(now < view.job.challenge_end,
                    f"cannot challenge job {job_id}: its challenge window closed "
                    f"{format_chain_time(view.job.challenge_end, now)}")
        self._check(view.job.worker != self.address, f"cannot challenge job {job_id}: you are its worker")
        self._check(self.param_address("Disputes", "arbiter") != self.address,
                    f"cannot challenge job {job_id}: the arbiter cannot challenge")
        bond = self.param("Disputes", "challenge_bond")
        available = self.stake_info(self.address).available
        self._check(available >= bond, f"cannot challenge job {job_id}: available stake {_fmt(available)} is below "
                                       f"the challenge bond {_fmt(bond)}; stake more first")
        check_claim(kind, segment, view.job.num_segments)
        salt = salt if salt is not None else os.urandom(32)
        commitment = challenge_commitment(job_id, self.address, kind, segment, salt)
        receipt = self.send(self.build_file_challenge(job_id, commitment, view.job))
        return int(receipt.event("ChallengeFiled").dispute_id), salt, receipt

    def reveal_challenge(
        self, dispute_id: int, claim: ClaimKind | int | str, segment: int, salt: bytes | str,
    ) -> TxReceipt:
        """Reveal a filed challenge: the claim, and the Merkle proofs built from the committed trace."""
        kind = parse_claim(claim)
        dispute = self.dispute(dispute_id)
        self._check(dispute.status == DisputeStatus.FILED, f"cannot reveal {dispute.label}: it is not filed")
        self._check(dispute.challenger == self.address,
                    f"cannot reveal dispute {dispute_id}: only its challenger {dispute.challenger} may")
        window = self.param("Disputes", "reveal_window")
        now = self.chain_time()
        self._check(now <= dispute.filed_at + window,
                    f"cannot reveal dispute {dispute_id}: its reveal window closed "
                    f"{format_chain_time(dispute.filed_at + window, now)}")
        view = self.job(dispute.job_id)
        self._require_state(view, JobState.CHALLENGED, "reveal a challenge on")
        trace = self.committed_trace(dispute.job_id, view)
        return self.send(self.build_reveal(dispute_id, view.job, kind, segment, salt, trace))

    def reveal_refereed(
        self, dispute_id: int, segment: int, salt: bytes | str, checkpoint: bytes, binding: Any,
    ) -> TxReceipt:
        """Reveal a filed SEGMENT challenge on a job of the refereed class, opening its RefereeGame
        (`checkpoint`: the agreed h_segment's bytes; `binding`: what its header binds)."""
        dispute = self.dispute(dispute_id)
        self._check(dispute.status == DisputeStatus.FILED, f"cannot reveal {dispute.label}: it is not filed")
        self._check(dispute.challenger == self.address,
                    f"cannot reveal dispute {dispute_id}: only its challenger {dispute.challenger} may")
        view = self.job(dispute.job_id)
        self._require_state(view, JobState.CHALLENGED, "reveal a challenge on")
        self._check(self.is_refereed(view.job), f"cannot reveal dispute {dispute_id} as refereed: job "
                                                f"{dispute.job_id}'s class is not the deployment's refereed class")
        trace = self.committed_trace(dispute.job_id, view)
        return self.send(self.build_reveal_refereed(dispute_id, view.job, segment, salt, trace, checkpoint, binding))

    def settle_refereed(self, dispute_id: int) -> TxReceipt:
        """Apply the ruling of a decided game (Verdict) or open the arbiter's window of an escalated one."""
        dispute = self.dispute(dispute_id)
        game = self.referee_game_view(dispute_id)
        self._check(game is not None, f"cannot settle dispute {dispute_id}: it has no referee game")
        assert game is not None
        self._check(dispute.status == DisputeStatus.REVEALED and dispute.deadline == 0,
                    f"cannot settle {dispute.label}: its game was already carried over")
        self._check(game.decided or game.escalated,
                    f"cannot settle dispute {dispute_id}: {game.label} is still running")
        return self.send(self.build_settle_refereed(dispute_id, self.job(dispute.job_id).job))

    def challenge(self, job_id: int, claim: ClaimKind | int | str, segment: int) -> tuple[int, TxReceipt]:
        """File and reveal a challenge in one go; returns (dispute_id, the reveal's receipt).

        The reveal is sent only once the filing's receipt is in, so it always lands in a later block
        (and a copy of the reveal filed by someone else is filed after ours)."""
        dispute_id, salt, _filed = self.file_challenge(job_id, claim, segment)
        return dispute_id, self.reveal_challenge(dispute_id, claim, segment, salt)

    def verdict(self, dispute_id: int, worker_wrong: bool, recomputed_hash: str, evidence_uri: str) -> TxReceipt:
        dispute = self.dispute(dispute_id)
        self._check(dispute.status == DisputeStatus.REVEALED, f"cannot rule on {dispute.label}: it is not revealed")
        arbiter = self.param_address("Disputes", "arbiter")
        self._check(arbiter == self.address, f"cannot rule on dispute {dispute_id}: only the arbiter {arbiter} may, "
                                             f"not {self.address}")
        now = self.chain_time()
        self._check(now <= dispute.deadline,
                    f"cannot rule on dispute {dispute_id}: the arbiter window closed "
                    f"{format_chain_time(dispute.deadline, now)}")
        self._check(len(evidence_uri.encode()) <= MAX_URI, f"verdict: evidence URI longer than {MAX_URI} bytes")
        view = self.job(dispute.job_id)
        self._require_state(view, JobState.CHALLENGED, "rule on")
        return self.send(self.build_verdict(dispute_id, worker_wrong, recomputed_hash, evidence_uri, view.job))

    def dispute_timeout(self, dispute_id: int) -> TxReceipt:
        """Time out a revealed dispute the arbiter left unanswered past its window: its bond is unlocked,
        and the job is voided once none of its disputes is open (another may still reject it)."""
        dispute = self.dispute(dispute_id)
        self._check(dispute.status == DisputeStatus.REVEALED, f"cannot time out {dispute.label}: it is not revealed")
        now = self.chain_time()
        self._check(now > dispute.deadline,
                    f"cannot time out dispute {dispute_id} yet: the arbiter's window runs until "
                    f"{format_chain_time(dispute.deadline, now)}")
        return self.send(self.build_dispute_timeout(dispute_id, self.job(dispute.job_id).job))

    def close_dispute(self, dispute_id: int) -> TxReceipt:
        """Unlock the bond of a dispute whose job another dispute settled (Rejected or Voided)."""
        dispute = self.dispute(dispute_id)
        self._check(dispute.open, f"cannot close {dispute.label}: it is not open")
        state = self.job_state(dispute.job_id)
        self._check(state in (JobState.REJECTED, JobState.VOIDED),
                    f"cannot close dispute {dispute_id}: its job {dispute.job_id} is {state.label}, not settled")
        return self.send(self.build_close_dispute(dispute_id))

    def withdraw_owed(self) -> list[TxReceipt]:
        """Pull every credit this account has in the escrow and the disputes contract."""
        owed = self.owed(self.address)
        self._check(any(owed.values()), f"withdraw: nothing is owed to {self.address}")
        return [self.send(self.build_withdraw_owed(name)) for name, amount in owed.items() if amount]

    def register_model(
        self,
        model_hash: str,
        parents: Iterable[Parent | tuple[str, int | str]] = (),
        datasets: Iterable[str] = (),
        spec_hash: str = ZERO_WORD,
        job_id: int = 0,
        metadata_uri: str = "",
        license: str = "",
        card_store: Any = None,
    ) -> TxReceipt:
        """Attest to a model's provenance. Without `job_id`: a Declared attestation by this account (one
        per account and model). With `job_id`: that finalized job's JobVerified attestation (one per job,
        by its submitter). Nothing is ever overwritten; every parent must be registered before the model.
        With `card_store` (an artifact store or its URI), a model card (`protocol.model_card`) with these
        parents, datasets and license is put there once the checks pass, and its pinned URI becomes
        `metadata_uri` (which must then be empty)."""
        parent_list = [_parent(p) for p in parents]
        dataset_list = list(datasets)
        self._check(len(parent_list) <= MAX_PARENTS, f"register model: at most {MAX_PARENTS} parents")
        self._check(len(dataset_list) <= MAX_DATASETS, f"register model: at most {MAX_DATASETS} datasets")
        key = _hex32(model_hash, "model hash")
        self._check(key != bytes(32), "register model: model hash is zero")
        self._check("0x" + key.hex() != DIVERGED_HASH,
                    "register model: that hash marks a diverged run, which has no model to register")
        f = self.registry.functions
        if not job_id:
            self._check(int(f.declared_by(key, self.address).call()) == 0,
                        f"register model: {self.address} already declared {model_hash} (attestations are never "
                        "overwritten)")
        else:
            self._check(int(f.attestation_of_job(int(job_id)).call()) == 0,
                        f"register model: job {job_id}'s output is already attested")
        count = int(f.attestations_of_count(key).call())
        first = int(f.attestation_id_of(key, 0).call()) if count else None
        for parent in parent_list:
            parent_key = _hex32(parent.model_hash, "parent hash")
            self._check(parent_key != key, "register model: a model cannot be its own parent")
            self._check(int(f.attestations_of_count(parent_key).call()) > 0,
                        f"register model: parent {parent.model_hash} is not registered; register it first")
            if first is not None:
                self._check(int(f.attestation_id_of(parent_key, 0).call()) < first,
                            f"register model: parent {parent.model_hash} was registered after {model_hash}; "
                            "lineage must stay acyclic")
        self._check(len({p.model_hash.lower() for p in parent_list}) == len(parent_list),
                    "register model: the same parent is listed twice")
        job = None
        if job_id:
            view = self.job(job_id)
            job = view.job
            self._require_state(view, JobState.FINALIZED, "register a model from")
            self._check(job.output_hash == "0x" + key.hex(),
                        f"register model: job {job_id} committed output {job.output_hash}, not {model_hash}")
            self._check(job.spec_hash == "0x" + _hex32(spec_hash, "spec hash").hex(),
                        f"register model: job {job_id} ran spec {job.spec_hash}, not {spec_hash}")
            self._check(job.submitter == self.address,
                        f"register model: only job {job_id}'s submitter {job.submitter} may register its output")
        if card_store is not None:
            from protocol.model_card import build_model_card, write_model_card

            self._check(not metadata_uri, "register model: pass metadata_uri or card_store, not both")
            card = build_model_card("0x" + key.hex(), [(p.model_hash, p.relation_name) for p in parent_list],
                                    dataset_list, license=license, job_id=job_id, spec_hash=spec_hash)
            metadata_uri = write_model_card(card_store, card)
            self._check(len(metadata_uri.encode()) <= MAX_URI,
                        f"register model: the card's URI {metadata_uri} is longer than {MAX_URI} bytes; "
                        "use a store with a shorter URI")
        return self.send(self.build_register_model(model_hash, parent_list, dataset_list, spec_hash, job_id,
                                                   metadata_uri, license, job))

    def job_spec(self, job_id: int, spec: Any = None) -> Any:
        """The `TaskSpec` job `job_id` ran: `spec` (a TaskSpec, mapping, JSON text or path) checked against the
        posted spec hash, or, without one, fetched by that hash from the job's spec URI (hash-checked)."""
        return self._job_spec(self.job(job_id), spec)

    def _job_spec(self, view: JobView, spec: Any) -> Any:
        from protocol.screening import fetch_spec
        from protocol.spec import load_spec

        job_id = view.job_id
        if spec is None:
            if not view.spec_uri:
                raise PreflightError(f"job {job_id} posted no spec URI; pass its spec")
            return fetch_spec(view.spec_uri, view.job.spec_hash)  # size-limited, timed out, hash-checked
        loaded = load_spec(spec)
        self._check(loaded.spec_hash() == view.job.spec_hash.lower(),
                    f"job {job_id} ran spec {view.job.spec_hash}, not the given one ({loaded.spec_hash()})")
        return loaded

    def register_job_output(
        self,
        job_id: int,
        spec: Any = None,
        *,
        relation: str | None = None,
        parents: Iterable[tuple[str, str]] = (),
        datasets: Iterable[str] = (),
        metadata_uri: str = "",
        license: str = "",
        register_base: bool = False,
        card_store: Any = None,
    ) -> TxReceipt:
        """Register a Finalized job's output (JobVerified) with the lineage its spec implies.

        The model is the committed output hash; its parent is the spec's `init_weights` (the base model)
        with relation `adapter` for a LoRA finetune (the output is the adapter) or `finetune` for a full
        one; a `train` output has no base. The datasets are the spec's, then `datasets`. `relation`, when
        given, must agree with the spec; `parents` adds (hash, relation) pairs. The base must be registered first; with
        `register_base` this account declares it (a Declared attestation) when nobody has. `spec` is
        fetched by hash from the job's spec URI when not given (see `job_spec`). `card_store`: see
        `register_model` (the card then names the base model, the relation, the datasets, the license)."""
        from protocol.provenance import job_output_lineage

        view = self.job(job_id)
        self._require_state(view, JobState.FINALIZED, "register a model from")
        task = self._job_spec(view, spec)
        lineage = job_output_lineage(task, relation, list(parents))
        if register_base and lineage.base_model is not None and not self.model(lineage.base_model).exists:
            self.register_model(lineage.base_model, metadata_uri="", license="")
        if lineage.base_model is not None:
            self._check(self.model(lineage.base_model).exists,
                        f"register model: the base model {lineage.base_model} (the spec's init_weights) is not "
                        "registered; register it first (or pass register_base)")
        dataset_list = list(dict.fromkeys([*lineage.datasets, *(d.lower() for d in datasets)]))
        return self.register_model(view.job.output_hash, parents=lineage.parents, datasets=dataset_list,
                                   spec_hash=view.job.spec_hash, job_id=job_id, metadata_uri=metadata_uri,
                                   license=license, card_store=card_store)

    def param_address(self, contract: str, name: str) -> str:
        return Web3.to_checksum_address(self.param(contract, name))

    # ---------------------------------------------------------------------------------- waiting & results

    def finalizable_at(self, job_id: int) -> int | None:
        """Chain time from which job `job_id` can be finalized, when it is Committed (else None)."""
        return self.job(job_id).finalizable_at

    def seconds_to_finalizable(self, view: JobView, now: int | None = None) -> int | None:
        """Chain seconds from `now` (default: the latest block) until `view`'s job can be finalized at the
        latest if it goes well: Committed or Challenged, until its window ends; Claimed, until its deadline
        plus the window a commit opens; Open, the execution timeout plus that window (from a claim now).
        None for a settled job."""
        if view.state.terminal:
            return None
        now = self.block_time() if now is None else now
        if view.state in (JobState.COMMITTED, JobState.CHALLENGED):
            return max(0, view.job.challenge_end - now)
        window = int(self.escrow.functions.challenge_window_of(view.job.segment_seconds).call())
        if view.state is JobState.CLAIMED:
            return max(0, view.job.deadline - now) + window
        return int(self.param("JobEscrow", "execution_timeout")) + window

    def wait_for_job(
        self,
        job_id: int,
        until_states: Iterable[JobState | int | str] = (JobState.FINALIZED, JobState.CANCELLED,
                                                         JobState.EXPIRED, JobState.REJECTED, JobState.VOIDED),
        timeout: float | None = None,
        on_change: Callable[[JobState | None, JobState, JobView], None] | None = None,
        poll_interval: float = 0.5,
    ) -> JobView:
        """Poll until the job is in one of `until_states`; call `on_change(old, new, view)` on each change.

        `timeout` (seconds) defaults to 600, plus, when Finalized is wanted, the chain seconds until the job
        can be finalized (`seconds_to_finalizable`: the challenge window, 2 h on testnet parameters).
        Waiting only for Finalized with a `timeout` that ends before a Committed job's window does is
        refused at once (`WaitTooShortError`, naming the time). Raises `JobWaitTimeout` (a ChainError)
        naming the last state when `timeout` seconds pass.
        """
        wanted = {JobState.parse(s) for s in until_states}
        if timeout is None or wanted == {JobState.FINALIZED}:
            timeout = self.wait_timeout(self.job(job_id), wanted, timeout)
        deadline = time.monotonic() + timeout
        last: JobState | None = None
        while True:
            state = self.job_state(job_id)
            if state != last:
                view = self.job(job_id)
                if on_change is not None:
                    on_change(last, view.state, view)
                last = view.state
                if view.state in wanted:
                    return view
            if time.monotonic() >= deadline:
                raise JobWaitTimeout(
                    f"job {job_id} still {last.label if last else 'unknown'} after {timeout:g}s "
                    f"(waiting for {', '.join(sorted(s.label for s in wanted))})"
                )
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    def wait_timeout(self, view: JobView, wanted: set[JobState], timeout: float | None = None) -> float:
        """The timeout `wait_for_job` uses for `view`'s job (see there); `WaitTooShortError` when a given
        `timeout` cannot cover a Committed job's window and only Finalized is wanted."""
        if JobState.FINALIZED not in wanted or view.state in wanted:
            return WAIT_MARGIN_S if timeout is None else timeout
        now = self.block_time()
        needed = self.seconds_to_finalizable(view, now)
        if timeout is None:
            return WAIT_MARGIN_S + (needed or 0)
        if wanted == {JobState.FINALIZED} and view.state is JobState.COMMITTED and needed and timeout < needed:
            raise WaitTooShortError(
                f"job {view.job_id} can be finalized from {format_chain_time(view.job.challenge_end, now)}, "
                f"after its challenge window; a {timeout:g}s timeout ends before that: allow at least {needed}s "
                f"(or leave the timeout out: it then covers the window)"
            )
        return timeout

    def fetch_result(self, job_id: int, store: Any = None, *, max_bytes: int | None = None) -> bytes:
        """The job's output (final weights), with every hash checked against what was committed.

        `store` is an artifact store (or URI); default: the store named by the committed artifact URI.
        The output must hash to the committed output hash, which a dispute can bind to checkpoint N during
        the challenge window (the trace h_0 … h_N is on chain: `committed_trace`).
        """
        from protocol.artifacts import open_store

        view = self.job(job_id)
        if view.state not in (JobState.COMMITTED, JobState.CHALLENGED, JobState.FINALIZED):
            raise PreflightError(f"job {job_id} has no result to fetch: it is {view.state.label}")
        job = view.job
        if job.output_hash.lower() == DIVERGED_HASH:
            trace = self.committed_trace(job_id, view)
            began = next(i for i, h in enumerate(trace) if h.lower() == DIVERGED_HASH) - 1
            raise DivergedError(f"job {job_id}'s training diverged (a NaN or infinite loss) in segment {began}: "
                                   f"it has no output; checkpoint {began} ({trace[began]}) is the last finite state")
        if store is None:
            if not view.artifact_uri:
                raise ArtifactError(f"job {job_id} committed no artifact URI; pass a store")
            store = open_store(view.artifact_uri, create=False)
        elif isinstance(store, (str, Path)):
            store = open_store(str(store))
        kwargs = {"max_bytes": max_bytes} if max_bytes else {}
        return store.get(job.output_hash, **kwargs)


def parse_claim(value: "ClaimKind | int | str") -> ClaimKind:
    """A claim kind from its enum, number or name (`segment`, `unavailable`, `initial`, `output`)."""
    if isinstance(value, ClaimKind):
        return value
    if isinstance(value, int):
        try:
            return ClaimKind(value)
        except ValueError:
            raise PreflightError(f"unknown claim {value}; known: 1..4") from None
    try:
        return ClaimKind[str(value).strip().upper()]
    except KeyError:
        known = ", ".join(k.label for k in ClaimKind)
        raise PreflightError(f"unknown claim {value!r}; known: {known}") from None


def check_claim(kind: ClaimKind, segment: int, num_segments: int) -> None:
    """`PreflightError` unless `segment` is what claim `kind` may name on a job of `num_segments`."""
    if kind is ClaimKind.SEGMENT and not 0 <= segment < num_segments:
        raise PreflightError(f"a segment claim names a segment 0..{num_segments - 1}, got {segment}")
    if kind is ClaimKind.UNAVAILABLE and not 0 <= segment <= num_segments:
        raise PreflightError(f"an unavailable claim names a boundary 0..{num_segments}, got {segment}")
    if kind is ClaimKind.INITIAL and segment != 0:
        raise PreflightError(f"an initial claim is about boundary 0, got {segment}")
    if kind is ClaimKind.OUTPUT and segment != num_segments:
        raise PreflightError(f"an output claim is about boundary N = {num_segments}, got {segment}")


def challenge_commitment(job_id: int, challenger: str, kind: "ClaimKind | int", segment: int,
                         salt: bytes | str) -> bytes:
    """keccak256(abi_encode(job_id, challenger, kind, segment, salt)): what `file_challenge` seals."""
    from eth_abi import encode
    from eth_hash.auto import keccak

    return keccak(encode(["uint256", "address", "uint8", "uint256", "bytes32"],
                         [int(job_id), Web3.to_checksum_address(challenger), int(kind), int(segment),
                          _hex32(salt, "salt")]))


def reveal_arguments(job: Job, state_hashes: Sequence[str | bytes], kind: ClaimKind, segment: int) -> list[Any]:
    """(h_a, proof_a, h_b, proof_b) of `Disputes.reveal` for a claim on a job whose trace is `state_hashes`."""
    from protocol.merkle import merkle_proof

    leaves = _trace_words(state_hashes)
    check_claim(kind, segment, len(leaves) - 1)
    proof_a = merkle_proof(leaves, segment)
    if kind is ClaimKind.SEGMENT or (kind is ClaimKind.UNAVAILABLE and segment < len(leaves) - 1):
        return [leaves[segment], proof_a, leaves[segment + 1], merkle_proof(leaves, segment + 1)]
    if kind is ClaimKind.INITIAL:
        return [leaves[0], proof_a, bytes(32), []]
    return [leaves[segment], proof_a, _hex32(job.output_hash, "output hash"), []]


class JobWaitTimeout(ChainError):
    """`wait_for_job` gave up before the job reached a wanted state."""


class WaitTooShortError(ConfigError):
    """`wait_for_job` for Finalized was given a timeout that ends before the job's challenge window does."""


def proof_depth(num_segments: int) -> int:
    """Proof length for a job of N segments: ceil(log2(N + 1)) (N+1 leaves padded to a power of two)."""
    return max(0, math.ceil(math.log2(num_segments + 1)))


def _trace_words(state_hashes: Sequence[str | bytes]) -> list[bytes]:
    """A trace as 32-byte words, each checked (PreflightError naming the bad index)."""
    if isinstance(state_hashes, (str, bytes)):
        raise PreflightError("state hashes must be a list of 32-byte hashes, not one value")
    if len(state_hashes) > MAX_SEGMENTS + 1:
        raise PreflightError(f"a trace holds at most {MAX_SEGMENTS + 1} state hashes, got {len(state_hashes)}")
    return [_hex32(h, f"state hash h_{i}") for i, h in enumerate(state_hashes)]


def _parent(value: Parent | tuple[str, int | str] | dict[str, Any]) -> Parent:
    if isinstance(value, Parent):
        return value
    if isinstance(value, dict):
        return Parent.model_validate(value)
    model_hash, relation = value
    if isinstance(relation, str):
        if relation not in RELATIONS:
            raise PreflightError(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")
        relation = RELATIONS[relation]
    return Parent(model_hash=str(model_hash).lower(), relation=int(relation))


def _outputs_of(abi: list[dict[str, Any]], fn: str) -> list[dict[str, Any]]:
    for entry in abi:
        if entry.get("type") == "function" and entry.get("name") == fn:
            outputs = entry.get("outputs", [])
            if len(outputs) == 1 and outputs[0].get("type") == "tuple":
                return outputs[0].get("components", [])
            return outputs
    return []


def _to_dict(value: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)) and len(value) == len(names):
        return dict(zip(names, value))
    return {"value": value}


def _portable_class(arithmetic: str) -> str:
    """The portable environment class of `arithmetic` (engine.determinism, imported lazily: no torch)."""
    from engine.determinism import portable_env_class

    try:
        return portable_env_class(arithmetic)[1]
    except TesseraError as exc:
        raise PreflightError(f"post job: {exc}") from None


def _portable_classes() -> dict[str, str]:
    from engine.determinism import portable_env_classes

    return portable_env_classes()


def _as_hex(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


__all__ = [
    "TesseraClient", "TxRequest", "TxReceipt", "JobView", "StakeInfo", "DisputeView", "ModelView", "Parent",
    "AttestationView", "EnvClassView", "JobWaitTimeout", "WaitTooShortError", "Job", "JobState", "ClaimKind",
    "DisputeStatus",
    "proof_depth", "challenge_commitment", "reveal_arguments", "parse_claim", "RELATIONS", "TesseraError",
]

