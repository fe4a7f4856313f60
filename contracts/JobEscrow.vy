# pragma version ~=0.4.3
"""
@title JobEscrow
@notice The job state machine and the payment escrow of Tessera:
        Open -claim-> Claimed -commit-> Committed -(challenge window passes)-> Finalized,
        with Cancelled (submitter, while Open), Expired (anyone, deadline missed),
        Challenged and Rejected (driven by the Disputes contract).
@dev Gas: a job is one storage word, keccak256(abi_encode(job)) with its lowest byte replaced
     by the state. Callers pass the full Job struct as calldata and the contract checks it against
     the word; strings (spec_uri, artifact_uri) live only in events and the trace h_0 … h_N only
     in the commit calldata (the contract computes and stores its root). `job_count` and
     `fees_accrued` are counters offset by a non-zero sentinel, so the first job pays no
     zero -> non-zero SSTORE and costs what later ones do. Payment leaves the escrow exactly
     once: to the worker (minus the fee, which accrues to `fees_accrued` for the treasury to
     withdraw) on Finalized, back to the submitter on Cancelled, Expired or Rejected.
"""

from ethereum.ercs import IERC20
from .lib import merkle
from .lib import safe_token


struct Job:
    submitter: address
    worker: address
    payment: uint256
    collateral: uint256
    spec_hash: bytes32
    num_segments: uint256
    deadline: uint256
    result_root: bytes32
    output_hash: bytes32
    fingerprint: bytes32
    challenge_end: uint256


interface Staking:
    def token() -> address: view
    def lock(staker: address, amount: uint256): nonpayable
    def unlock(staker: address, amount: uint256): nonpayable
    def slash(staker: address, amount: uint256) -> uint256: nonpayable


interface DisputesParams:
    def escrow() -> address: view
    def staking() -> address: view
    def token() -> address: view


# ---------------------------------------------------------------- constants

STATE_NONE: constant(uint8) = 0
STATE_OPEN: constant(uint8) = 1
STATE_CLAIMED: constant(uint8) = 2
STATE_COMMITTED: constant(uint8) = 3
STATE_CHALLENGED: constant(uint8) = 4
STATE_FINALIZED: constant(uint8) = 5
STATE_CANCELLED: constant(uint8) = 6
STATE_EXPIRED: constant(uint8) = 7
STATE_REJECTED: constant(uint8) = 8

MAX_SEGMENTS: public(constant(uint256)) = 1_024
MAX_FEE_BPS: constant(uint256) = 1_000
BPS: constant(uint256) = 10_000
MAX_WINDOW: constant(uint256) = 30 * 86_400
STATE_MASK: constant(uint256) = 255
MAX_URI: constant(uint256) = 256
# Counters start at this sentinel so the first job never pays a zero -> non-zero SSTORE (20_000 gas).
COUNTER_BASE: constant(uint256) = 1

# ---------------------------------------------------------------- storage

token: public(immutable(address))
staking: public(immutable(address))
treasury: public(immutable(address))
fee_bps: public(immutable(uint256))
execution_timeout: public(immutable(uint256))
challenge_window: public(immutable(uint256))
expiry_compensation_bps: public(immutable(uint256))
deployer: public(immutable(address))

disputes: public(address)
# job_count() + COUNTER_BASE: the next job id is this value (ids start at 1).
_next_job_id: uint256
# fees_accrued() + COUNTER_BASE: the sentinel is accounting only, never tokens.
_fee_counter: uint256

_records: HashMap[uint256, uint256]

# ---------------------------------------------------------------- events

event Wired:
    disputes: address


event JobPosted:
    job_id: indexed(uint256)
    submitter: indexed(address)
    payment: uint256
    collateral: uint256
    spec_hash: bytes32
    num_segments: uint256
    spec_uri: String[MAX_URI]


event JobCancelled:
    job_id: indexed(uint256)


event JobClaimed:
    job_id: indexed(uint256)
    worker: indexed(address)
    deadline: uint256


event JobCommitted:
    job_id: indexed(uint256)
    worker: indexed(address)
    result_root: bytes32
    output_hash: bytes32
    fingerprint: bytes32
    challenge_end: uint256
    artifact_uri: String[MAX_URI]


event JobFinalized:
    job_id: indexed(uint256)
    worker: indexed(address)
    worker_payout: uint256
    fee: uint256


event JobExpired:
    job_id: indexed(uint256)
    compensation: uint256


event JobChallenged:
    job_id: indexed(uint256)


event JobSettled:
    job_id: indexed(uint256)
    worker_wrong: bool


event FeesWithdrawn:
    treasury: indexed(address)
    amount: uint256


@deploy
def __init__(
    token_: address,
    staking_: address,
    treasury_: address,
    fee_bps_: uint256,
    execution_timeout_: uint256,
    challenge_window_: uint256,
    expiry_compensation_bps_: uint256,
):
    """
    @notice Deploy with the immutable economic and timing parameters.
    @param token_ The payment ERC20 (the staking token too).
    @param staking_ The Staking contract (its token must be `token_`).
    @param treasury_ Receives the protocol fee (via `withdraw_fees`).
    @param fee_bps_ Protocol fee on the payment, in basis points, <= 1_000.
    @param execution_timeout_ Seconds a worker has from claim to commit, 1 .. 30 days.
    @param challenge_window_ Seconds after commit during which a job can be challenged, 1 .. 30 days.
    @param expiry_compensation_bps_ Share of the collateral paid to the submitter on expiry, <= 10_000.
    """
    assert token_.is_contract, "escrow: token has no code"
    assert staking_.is_contract, "escrow: staking has no code"
    assert staticcall Staking(staking_).token() == token_, "escrow: staking uses another token"
    assert treasury_ != empty(address), "escrow: zero treasury"
    assert fee_bps_ <= MAX_FEE_BPS, "escrow: fee too high"
    assert execution_timeout_ > 0 and execution_timeout_ <= MAX_WINDOW, "escrow: bad execution timeout"
    assert challenge_window_ > 0 and challenge_window_ <= MAX_WINDOW, "escrow: bad challenge window"
    assert expiry_compensation_bps_ <= BPS, "escrow: compensation above 100%"
    token = token_
    staking = staking_
    treasury = treasury_
    fee_bps = fee_bps_
    execution_timeout = execution_timeout_
    challenge_window = challenge_window_
    expiry_compensation_bps = expiry_compensation_bps_
    deployer = msg.sender
    self._next_job_id = COUNTER_BASE
    self._fee_counter = COUNTER_BASE


# ================================================================ wiring


@external
def wire(disputes_: address):
    """
    @notice Name the Disputes contract, once. Deployer only.
    @dev The only privileged call; it cannot move funds. The disputes contract must point back at
         this escrow and share its staking and token.
    @param disputes_ The Disputes contract.
    """
    assert msg.sender == deployer, "escrow: not deployer"
    assert self.disputes == empty(address), "escrow: already wired"
    assert disputes_.is_contract, "escrow: disputes has no code"
    assert staticcall DisputesParams(disputes_).escrow() == self, "escrow: disputes uses another escrow"
    assert staticcall DisputesParams(disputes_).staking() == staking, "escrow: disputes uses another staking"
    assert staticcall DisputesParams(disputes_).token() == token, "escrow: disputes uses another token"
    self.disputes = disputes_
    log Wired(disputes=disputes_)


# ================================================================ job lifecycle


@external
@nonreentrant
def post(
    payment: uint256,
    collateral: uint256,
    spec_hash: bytes32,
    num_segments: uint256,
    spec_uri: String[MAX_URI],
) -> uint256:
    """
    @notice Post a job and escrow its payment (pulls `payment`; approve first).
    @param payment What the worker earns on Finalized (before the fee), > 0.
    @param collateral Stake the worker must lock when claiming, > 0.
    @param spec_hash sha256 of the spec's canonical JSON.
    @param num_segments N, 1 .. MAX_SEGMENTS.
    @param spec_uri Where the spec can be fetched (event only).
    @return The new job id (ids start at 1).
    """
    assert payment > 0, "escrow: zero payment"
    assert collateral > 0, "escrow: zero collateral"
    assert spec_hash != empty(bytes32), "escrow: empty spec hash"
    assert num_segments >= 1 and num_segments <= MAX_SEGMENTS, "escrow: bad segment count"
    job_id: uint256 = self._next_job_id
    self._next_job_id = job_id + 1
    job: Job = Job(
        submitter=msg.sender,
        worker=empty(address),
        payment=payment,
        collateral=collateral,
        spec_hash=spec_hash,
        num_segments=num_segments,
        deadline=0,
        result_root=empty(bytes32),
        output_hash=empty(bytes32),
        fingerprint=empty(bytes32),
        challenge_end=0,
    )
    self._store(job_id, job, STATE_OPEN)
    safe_token._pull(token, msg.sender, payment)
    log JobPosted(
        job_id=job_id,
        submitter=msg.sender,
        payment=payment,
        collateral=collateral,
        spec_hash=spec_hash,
        num_segments=num_segments,
        spec_uri=spec_uri,
    )
    return job_id


@external
@nonreentrant
def cancel(job_id: uint256, job: Job):
    """
    @notice Cancel an Open job and refund its payment. Submitter only.
    @param job_id The job.
    @param job The job's current struct.
    """
    assert self._load(job_id, job) == STATE_OPEN, "escrow: job not open"
    assert msg.sender == job.submitter, "escrow: not submitter"
    self._set_state(job_id, STATE_CANCELLED)
    safe_token._transfer(token, job.submitter, job.payment)
    log JobCancelled(job_id=job_id)


@external
@nonreentrant
def claim(job_id: uint256, job: Job):
    """
    @notice Claim an Open job: the caller becomes its worker and `collateral` of its available
            stake is locked; the deadline is now + execution_timeout.
    @param job_id The job.
    @param job The job's current struct.
    """
    assert self._load(job_id, job) == STATE_OPEN, "escrow: job not open"
    claimed: Job = job
    claimed.worker = msg.sender
    claimed.deadline = block.timestamp + execution_timeout
    self._store(job_id, claimed, STATE_CLAIMED)
    extcall Staking(staking).lock(msg.sender, job.collateral)
    log JobClaimed(job_id=job_id, worker=msg.sender, deadline=claimed.deadline)


@external
@nonreentrant
def commit(
    job_id: uint256,
    job: Job,
    state_hashes: DynArray[bytes32, merkle.MAX_LEAVES],
    output_hash: bytes32,
    fingerprint: bytes32,
    artifact_uri: String[MAX_URI],
):
    """
    @notice Commit the result of a Claimed job before its deadline; opens the challenge window.
    @dev The trace itself is the argument: the contract computes the result root over
         (i, h_i) (the encoding of `protocol/merkle.py`) and stores only the root. The hashes stay in this
         transaction's calldata, which every node keeps, so any verifier can rebuild the proofs
         of a challenge without the worker's help (trace availability). A zero h_i is accepted:
         leaves are domain-hashed, so it cannot be confused with padding, and no checkpoint
         hashes to zero, so such a trace is simply challengeable.
    @param job_id The job.
    @param job The job's current struct.
    @param state_hashes h_0 … h_N, exactly job.num_segments + 1 of them.
    @param output_hash sha256 of the final weights (safetensors bytes).
    @param fingerprint sha256 of the environment fingerprint JSON.
    @param artifact_uri Store where every checkpoint and the output can be fetched by hash (event only).
    """
    assert self._load(job_id, job) == STATE_CLAIMED, "escrow: job not claimed"
    assert msg.sender == job.worker, "escrow: not worker"
    assert block.timestamp <= job.deadline, "escrow: deadline passed"
    assert len(state_hashes) == job.num_segments + 1, "escrow: trace length is not N + 1"
    assert output_hash != empty(bytes32), "escrow: empty output hash"
    # The root is streamed here over the argument (Vyper copies it into memory once, on entry),
    # one pending word per level: handing the array to an internal function would copy it a
    # second time, and a width-sized level buffer would be up to 2_048 words (docs/gas.md).
    frontier: bytes32[merkle.MAX_DEPTH + 1] = empty(bytes32[merkle.MAX_DEPTH + 1])
    for i: uint256 in range(len(state_hashes), bound=merkle.MAX_LEAVES):
        # merkle._leaf and merkle._node, inlined: an internal call per hash costs more than the hash.
        node: bytes32 = keccak256(concat(b"\x00", convert(i, bytes32), state_hashes[i]))
        level: uint256 = 0
        position: uint256 = i
        for _: uint256 in range(merkle.MAX_DEPTH):
            if position & 1 == 0:
                break
            node = keccak256(concat(b"\x01", frontier[level], node))
            level += 1
            position >>= 1
        frontier[level] = node
    result_root: bytes32 = merkle._fold(frontier, len(state_hashes))
    committed: Job = job
    committed.result_root = result_root
    committed.output_hash = output_hash
    committed.fingerprint = fingerprint
    committed.challenge_end = block.timestamp + challenge_window
    self._store(job_id, committed, STATE_COMMITTED)
    log JobCommitted(
        job_id=job_id,
        worker=msg.sender,
        result_root=result_root,
        output_hash=output_hash,
        fingerprint=fingerprint,
        challenge_end=committed.challenge_end,
        artifact_uri=artifact_uri,
    )


@external
@nonreentrant
def finalize(job_id: uint256, job: Job):
    """
    @notice Finalize a Committed job whose challenge window has passed: pay the worker
            (payment minus fee), accrue the fee, unlock the collateral. Anyone may call.
    @param job_id The job.
    @param job The job's current struct.
    """
    assert self._load(job_id, job) == STATE_COMMITTED, "escrow: job not committed"
    assert block.timestamp >= job.challenge_end, "escrow: challenge window open"
    fee: uint256 = job.payment * fee_bps // BPS
    payout: uint256 = job.payment - fee
    self._set_state(job_id, STATE_FINALIZED)
    if fee > 0:
        self._fee_counter += fee
    extcall Staking(staking).unlock(job.worker, job.collateral)
    safe_token._transfer(token, job.worker, payout)
    log JobFinalized(job_id=job_id, worker=job.worker, worker_payout=payout, fee=fee)


@external
@nonreentrant
def expire(job_id: uint256, job: Job):
    """
    @notice Expire a Claimed job whose deadline has passed: refund the payment, slash
            expiry_compensation_bps of the collateral to the submitter, unlock the rest.
            Anyone may call.
    @param job_id The job.
    @param job The job's current struct.
    """
    assert self._load(job_id, job) == STATE_CLAIMED, "escrow: job not claimed"
    assert block.timestamp > job.deadline, "escrow: deadline not passed"
    self._set_state(job_id, STATE_EXPIRED)
    compensation: uint256 = job.collateral * expiry_compensation_bps // BPS
    if compensation > 0:
        compensation = extcall Staking(staking).slash(job.worker, compensation)
    if compensation < job.collateral:
        extcall Staking(staking).unlock(job.worker, job.collateral - compensation)
    safe_token._transfer(token, job.submitter, job.payment + compensation)
    log JobExpired(job_id=job_id, compensation=compensation)


@external
@nonreentrant
def withdraw_fees():
    """
    @notice Send the accrued protocol fees to the treasury. Treasury only.
    @dev Fees accrue in a counter instead of a transfer per job, which keeps finalize cheap.
    """
    assert msg.sender == treasury, "escrow: not treasury"
    amount: uint256 = self._fee_counter - COUNTER_BASE
    assert amount > 0, "escrow: no fees"
    self._fee_counter = COUNTER_BASE
    safe_token._transfer(token, treasury, amount)
    log FeesWithdrawn(treasury=treasury, amount=amount)


# ================================================================ disputes only


@external
@nonreentrant
def mark_challenged(job_id: uint256, job: Job):
    """
    @notice Move a Committed job inside its challenge window to Challenged. Disputes only.
    @param job_id The job.
    @param job The job's current struct.
    """
    assert msg.sender == self.disputes, "escrow: not disputes"
    assert self._load(job_id, job) == STATE_COMMITTED, "escrow: job not committed"
    assert block.timestamp < job.challenge_end, "escrow: challenge window closed"
    self._set_state(job_id, STATE_CHALLENGED)
    log JobChallenged(job_id=job_id)


@external
@nonreentrant
def settle(job_id: uint256, job: Job, worker_wrong: bool):
    """
    @notice Close a dispute. Worker wrong: job Rejected and payment refunded to the submitter
            (the disputes contract slashes the collateral itself). Otherwise: back to Committed.
            Disputes only.
    @param job_id The job.
    @param job The job's current struct.
    @param worker_wrong The arbiter's ruling (false also for a timed-out dispute).
    """
    assert msg.sender == self.disputes, "escrow: not disputes"
    assert self._load(job_id, job) == STATE_CHALLENGED, "escrow: job not challenged"
    if worker_wrong:
        self._set_state(job_id, STATE_REJECTED)
        safe_token._transfer(token, job.submitter, job.payment)
    else:
        self._set_state(job_id, STATE_COMMITTED)
    log JobSettled(job_id=job_id, worker_wrong=worker_wrong)


# ================================================================ views


@view
@external
def job_state(job_id: uint256) -> uint8:
    """
    @notice State of a job: 0 None, 1 Open, 2 Claimed, 3 Committed, 4 Challenged,
            5 Finalized, 6 Cancelled, 7 Expired, 8 Rejected.
    @param job_id The job.
    @return The state.
    """
    return convert(self._records[job_id] & STATE_MASK, uint8)


@view
@external
def job_count() -> uint256:
    """
    @notice Number of jobs ever posted (the highest job id).
    @return The count.
    """
    return self._next_job_id - COUNTER_BASE


@view
@external
def fees_accrued() -> uint256:
    """
    @notice Protocol fees owed to the treasury, not yet withdrawn.
    @return The amount in token units.
    """
    return self._fee_counter - COUNTER_BASE


@view
@external
def job_record(job_id: uint256) -> bytes32:
    """
    @notice The stored word: keccak256(abi_encode(job)) with its lowest byte replaced by the state.
    @param job_id The job.
    @return The record (zero for an unknown job).
    """
    return convert(self._records[job_id], bytes32)


@view
@external
def job_hash(job: Job) -> bytes32:
    """
    @notice keccak256(abi_encode(job)), the full hash the record is derived from.
    @param job A job struct.
    @return The hash.
    """
    return keccak256(abi_encode(job))


@view
@external
def matches(job_id: uint256, job: Job) -> bool:
    """
    @notice Whether `job` is the current struct of `job_id`.
    @param job_id The job.
    @param job The struct to check.
    @return True when the record exists and its hash bits equal the struct's hash.
    """
    record: uint256 = self._records[job_id]
    return record != 0 and (record ^ self._hash(job)) >> 8 == 0


# ================================================================ internal


@internal
@pure
def _hash(job: Job) -> uint256:
    """
    @notice keccak256 of the ABI encoding of the struct, as a number.
    @param job The struct.
    @return The hash.
    """
    return convert(keccak256(abi_encode(job)), uint256)


@internal
def _store(job_id: uint256, job: Job, state: uint8):
    """
    @notice Write the record word for `job` in `state`.
    @param job_id The job.
    @param job The new struct.
    @param state The new state.
    """
    self._records[job_id] = (self._hash(job) & ~STATE_MASK) | convert(state, uint256)


@internal
def _set_state(job_id: uint256, state: uint8):
    """
    @notice Change only the state byte of a record (the struct is unchanged).
    @param job_id The job.
    @param state The new state.
    """
    self._records[job_id] = (self._records[job_id] & ~STATE_MASK) | convert(state, uint256)


@view
@internal
def _load(job_id: uint256, job: Job) -> uint8:
    """
    @notice Check `job` against the stored record and return the job's state.
    @param job_id The job.
    @param job The struct the caller claims is current.
    @return The state.
    """
    record: uint256 = self._records[job_id]
    assert record != 0, "escrow: unknown job"
    assert (record ^ self._hash(job)) >> 8 == 0, "escrow: job mismatch"
    return convert(record & STATE_MASK, uint8)
