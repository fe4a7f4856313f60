# pragma version ~=0.4.3
"""
@title JobEscrow
@notice The job state machine and the payment escrow of Tessera (protocol v2):
        Open -claim-> Claimed -commit-> Committed -(challenge window passes, no dispute open)->
        Finalized, with Cancelled (submitter, while Open), Expired (anyone, deadline missed),
        and Challenged / Rejected / Voided driven by the Disputes contract (any number of
        disputes in parallel; one worker-wrong ruling rejects the job, a judge that misses its
        window voids it: the neutral outcome).
@dev Gas: a job is one storage word, keccak256(abi_encode(job)) with its lowest byte replaced
     by the state. Callers pass the full Job struct as calldata and the contract checks it against
     the word; strings (spec_uri, artifact_uri) and the trace h_0 … h_N live only in events (the
     contract computes and stores the trace's root; the event keeps the leaves readable however
     the commit was sent, e.g. through a contract wallet). `job_count` and `fees_accrued` are
     counters offset by a non-zero sentinel, so the first job pays no zero -> non-zero SSTORE and
     costs what later ones do. Payment leaves the escrow exactly once: to the worker (minus the
     fee, which accrues to `fees_accrued` for the treasury to withdraw) on Finalized, back to the
     submitter on Cancelled (pushed), and on Expired, Rejected or Voided as a credit the submitter
     pulls with `withdraw` (so a recipient that cannot receive never blocks a ruling).
     Terms fixed at post: the environment class the results must reproduce in (one the arbiter
     has published) and the declared replay time of one segment, which sizes this job's windows.
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
    env_class: bytes32
    segment_seconds: uint256
    deadline: uint256
    result_root: bytes32
    output_hash: bytes32
    challenge_end: uint256


interface Staking:
    def token() -> address: view
    def escrow() -> address: view
    def disputes() -> address: view
    def lock(staker: address, amount: uint256): nonpayable
    def unlock(staker: address, amount: uint256): nonpayable
    def slash(staker: address, amount: uint256) -> uint256: nonpayable


interface DisputesParams:
    def escrow() -> address: view
    def staking() -> address: view
    def token() -> address: view
    def arbiter() -> address: view


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
STATE_VOIDED: constant(uint8) = 9

# How `settle` closes a dispute round (Disputes decides which).
OUTCOME_RESUME: constant(uint8) = 0  # every dispute lost or dropped: back to Committed
OUTCOME_REJECT: constant(uint8) = 1  # a judge found the worker wrong
OUTCOME_VOID: constant(uint8) = 2  # a judge missed its window: the neutral outcome

MAX_SEGMENTS: public(constant(uint256)) = 1_024
MAX_FEE_BPS: constant(uint256) = 1_000
BPS: constant(uint256) = 10_000
MAX_WINDOW: constant(uint256) = 30 * 86_400
# Expiry is never free for a worker that squats a claim (audit F-10): at least 5 % of the collateral.
MIN_EXPIRY_COMPENSATION_BPS: public(constant(uint256)) = 500
# A job's windows grow by this many declared segment replays (a verifier fetches and replays one
# segment, then files and reveals; an arbiter fetches, replays and rules).
REPLAY_FACTOR: public(constant(uint256)) = 3
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
max_segment_seconds: public(immutable(uint256))
expiry_compensation_bps: public(immutable(uint256))
deployer: public(immutable(address))

disputes: public(address)
# The Disputes contract's arbiter, copied at wiring: the one address that publishes environment classes.
arbiter: public(address)
# Environment classes a job may name at post: published by the arbiter as ones it reproduces.
env_class_open: public(HashMap[bytes32, bool])
# Tokens a submitter pulls with `withdraw` (refunds of Expired, Rejected and Voided jobs).
owed: public(HashMap[address, uint256])
# job_count() + COUNTER_BASE: the next job id is this value (ids start at 1).
_next_job_id: uint256
# fees_accrued() + COUNTER_BASE: the sentinel is accounting only, never tokens.
_fee_counter: uint256

_records: HashMap[uint256, uint256]

# ---------------------------------------------------------------- events

event Wired:
    disputes: address
    arbiter: address


event EnvClassPublished:
    env_class: indexed(bytes32)
    descriptor_uri: String[MAX_URI]


event EnvClassRetired:
    env_class: indexed(bytes32)


event JobPosted:
    job_id: indexed(uint256)
    submitter: indexed(address)
    payment: uint256
    collateral: uint256
    spec_hash: bytes32
    num_segments: uint256
    env_class: bytes32
    segment_seconds: uint256
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
    challenge_end: uint256
    artifact_uri: String[MAX_URI]
    state_hashes: DynArray[bytes32, merkle.MAX_LEAVES]


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
    outcome: uint8


event Withdrawn:
    account: indexed(address)
    amount: uint256


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
    max_segment_seconds_: uint256,
    expiry_compensation_bps_: uint256,
):
    """
    @notice Deploy with the immutable economic and timing parameters.
    @param token_ The payment ERC20 (the staking token too).
    @param staking_ The Staking contract (its token must be `token_`).
    @param treasury_ Receives the protocol fee (via `withdraw_fees`).
    @param fee_bps_ Protocol fee on the payment, in basis points, <= 1_000.
    @param execution_timeout_ Seconds a worker has from claim to commit, 1 .. 30 days.
    @param challenge_window_ Base seconds after commit during which a job can be challenged,
           1 .. 30 days; a job's window adds REPLAY_FACTOR times its declared segment seconds.
    @param max_segment_seconds_ Largest declared segment replay time a job may post, so that every
           window stays within 30 days.
    @param expiry_compensation_bps_ Share of the collateral paid to the submitter on expiry,
           MIN_EXPIRY_COMPENSATION_BPS .. 10_000.
    """
    assert token_.is_contract, "escrow: token has no code"
    assert staking_.is_contract, "escrow: staking has no code"
    assert staticcall Staking(staking_).token() == token_, "escrow: staking uses another token"
    assert treasury_ != empty(address), "escrow: zero treasury"
    assert fee_bps_ <= MAX_FEE_BPS, "escrow: fee too high"
    assert execution_timeout_ > 0 and execution_timeout_ <= MAX_WINDOW, "escrow: bad execution timeout"
    assert challenge_window_ > 0 and challenge_window_ <= MAX_WINDOW, "escrow: bad challenge window"
    assert max_segment_seconds_ > 0, "escrow: zero max segment seconds"
    assert challenge_window_ + REPLAY_FACTOR * max_segment_seconds_ <= MAX_WINDOW, "escrow: segment seconds too large for the windows"
    assert expiry_compensation_bps_ >= MIN_EXPIRY_COMPENSATION_BPS, "escrow: expiry compensation below the minimum"
    assert expiry_compensation_bps_ <= BPS, "escrow: compensation above 100%"
    token = token_
    staking = staking_
    treasury = treasury_
    fee_bps = fee_bps_
    execution_timeout = execution_timeout_
    challenge_window = challenge_window_
    max_segment_seconds = max_segment_seconds_
    expiry_compensation_bps = expiry_compensation_bps_
    deployer = msg.sender
    self._next_job_id = COUNTER_BASE
    self._fee_counter = COUNTER_BASE


# ================================================================ wiring


@external
def wire(disputes_: address):
    """
    @notice Name the Disputes contract, once. Deployer only (after `Staking.wire`).
    @dev The only privilege of the deployer; it cannot move funds. Every pair of contracts is
         cross-checked (audit F-16): the disputes contract points back at this escrow and shares
         its staking and token, and the staking contract was wired to exactly this escrow and this
         disputes contract, so a disputes contract that could settle but not slash is refused.
    @param disputes_ The Disputes contract.
    """
    assert msg.sender == deployer, "escrow: not deployer"
    assert self.disputes == empty(address), "escrow: already wired"
    assert disputes_.is_contract, "escrow: disputes has no code"
    assert staticcall DisputesParams(disputes_).escrow() == self, "escrow: disputes uses another escrow"
    assert staticcall DisputesParams(disputes_).staking() == staking, "escrow: disputes uses another staking"
    assert staticcall DisputesParams(disputes_).token() == token, "escrow: disputes uses another token"
    assert staticcall Staking(staking).escrow() == self, "escrow: staking wired to another escrow"
    assert staticcall Staking(staking).disputes() == disputes_, "escrow: staking wired to another disputes"
    arbiter_: address = staticcall DisputesParams(disputes_).arbiter()
    self.disputes = disputes_
    self.arbiter = arbiter_
    log Wired(disputes=disputes_, arbiter=arbiter_)


# ================================================================ environment classes (arbiter)


@external
def publish_env_class(env_class: bytes32, descriptor_uri: String[MAX_URI]):
    """
    @notice Open an environment class for new jobs: the arbiter declares that it reproduces it.
            Arbiter only.
    @dev A class is the sha256 of the canonical JSON descriptor of every bit-deciding field
         (docs/protocol.md, "Environment classes"); the descriptor is at `descriptor_uri`.
         Publishing moves no funds and changes no job already posted.
    @param env_class The class hash.
    @param descriptor_uri Where the descriptor JSON can be fetched (event only).
    """
    assert msg.sender == self.arbiter, "escrow: not arbiter"
    assert env_class != empty(bytes32), "escrow: empty environment class"
    assert not self.env_class_open[env_class], "escrow: environment class already open"
    self.env_class_open[env_class] = True
    log EnvClassPublished(env_class=env_class, descriptor_uri=descriptor_uri)


@external
def retire_env_class(env_class: bytes32):
    """
    @notice Close an environment class for new jobs. Arbiter only.
    @dev Jobs already posted in the class keep it as their term and are still judged in it.
    @param env_class The class hash.
    """
    assert msg.sender == self.arbiter, "escrow: not arbiter"
    assert self.env_class_open[env_class], "escrow: environment class not open"
    self.env_class_open[env_class] = False
    log EnvClassRetired(env_class=env_class)


# ================================================================ job lifecycle


@external
@nonreentrant
def post(
    payment: uint256,
    collateral: uint256,
    spec_hash: bytes32,
    num_segments: uint256,
    env_class: bytes32,
    segment_seconds: uint256,
    spec_uri: String[MAX_URI],
) -> uint256:
    """
    @notice Post a job and escrow its payment (pulls `payment`; approve first).
    @param payment What the worker earns on Finalized (before the fee), > 0.
    @param collateral Stake the worker must lock when claiming, > 0 and large enough that the
           expiry compensation is at least one token unit.
    @param spec_hash sha256 of the spec's canonical JSON.
    @param num_segments N, 1 .. MAX_SEGMENTS.
    @param env_class The environment class the results must reproduce in (an open one).
    @param segment_seconds Declared seconds to replay one segment in that class, 1 .. max_segment_seconds.
    @param spec_uri Where the spec can be fetched (event only).
    @return The new job id (ids start at 1).
    """
    assert payment > 0, "escrow: zero payment"
    assert collateral * expiry_compensation_bps >= BPS, "escrow: collateral too small"
    assert spec_hash != empty(bytes32), "escrow: empty spec hash"
    assert num_segments >= 1 and num_segments <= MAX_SEGMENTS, "escrow: bad segment count"
    assert self.env_class_open[env_class], "escrow: environment class not open"
    assert segment_seconds >= 1 and segment_seconds <= max_segment_seconds, "escrow: bad segment seconds"
    job_id: uint256 = self._next_job_id
    self._next_job_id = job_id + 1
    job: Job = Job(
        submitter=msg.sender,
        worker=empty(address),
        payment=payment,
        collateral=collateral,
        spec_hash=spec_hash,
        num_segments=num_segments,
        env_class=env_class,
        segment_seconds=segment_seconds,
        deadline=0,
        result_root=empty(bytes32),
        output_hash=empty(bytes32),
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
        env_class=env_class,
        segment_seconds=segment_seconds,
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
    env_class: bytes32,
    artifact_uri: String[MAX_URI],
):
    """
    @notice Commit the result of a Claimed job before its deadline; opens the challenge window
            (challenge_window + REPLAY_FACTOR · segment_seconds).
    @dev The trace itself is the argument: the contract computes the result root over
         (i, h_i) (the encoding of `protocol/merkle.py`) and stores only the root; the leaves are
         logged in `JobCommitted`, so any verifier can rebuild the proofs of a challenge without
         the worker's help, whether the worker called directly or through a contract. A zero h_i
         is refused: no checkpoint hashes to zero, and the referee game cannot open on a zero
         commitment, so a zero would keep a refereed SEGMENT claim from ever being played.
    @param job_id The job.
    @param job The job's current struct.
    @param state_hashes h_0 … h_N, exactly job.num_segments + 1 of them.
    @param output_hash sha256 of the output artifact, which must be extractable from checkpoint N.
    @param env_class The environment class the worker ran in: must be the job's.
    @param artifact_uri Store where every checkpoint and the output can be fetched by hash (event only).
    """
    assert self._load(job_id, job) == STATE_CLAIMED, "escrow: job not claimed"
    assert msg.sender == job.worker, "escrow: not worker"
    assert block.timestamp <= job.deadline, "escrow: deadline passed"
    assert len(state_hashes) == job.num_segments + 1, "escrow: trace length is not N + 1"
    assert output_hash != empty(bytes32), "escrow: empty output hash"
    assert env_class == job.env_class, "escrow: environment outside the job's class"
    # The root is streamed here over the argument (Vyper copies it into memory once, on entry),
    # one pending word per level: handing the array to an internal function would copy it a
    # second time, and a width-sized level buffer would be up to 2_048 words (docs/gas.md).
    frontier: bytes32[merkle.MAX_DEPTH + 1] = empty(bytes32[merkle.MAX_DEPTH + 1])
    for i: uint256 in range(len(state_hashes), bound=merkle.MAX_LEAVES):
        assert state_hashes[i] != empty(bytes32), "escrow: zero state hash"
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
    committed.challenge_end = block.timestamp + challenge_window + REPLAY_FACTOR * job.segment_seconds
    self._store(job_id, committed, STATE_COMMITTED)
    log JobCommitted(
        job_id=job_id,
        worker=msg.sender,
        result_root=result_root,
        output_hash=output_hash,
        challenge_end=committed.challenge_end,
        artifact_uri=artifact_uri,
        state_hashes=state_hashes,
    )


@external
@nonreentrant
def finalize(job_id: uint256, job: Job):
    """
    @notice Finalize a Committed job whose challenge window has passed: pay the worker
            (payment minus fee), accrue the fee, unlock the collateral. Anyone may call.
    @dev A job with any dispute open is Challenged, not Committed, so it cannot finalize.
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
    @notice Expire a Claimed job whose deadline has passed: credit the submitter its payment and
            expiry_compensation_bps of the collateral (slashed), unlock the rest. Anyone may call.
    @param job_id The job.
    @param job The job's current struct.
    """
    assert self._load(job_id, job) == STATE_CLAIMED, "escrow: job not claimed"
    assert block.timestamp > job.deadline, "escrow: deadline not passed"
    self._set_state(job_id, STATE_EXPIRED)
    compensation: uint256 = job.collateral * expiry_compensation_bps // BPS
    compensation = extcall Staking(staking).slash(job.worker, compensation)
    if compensation < job.collateral:
        extcall Staking(staking).unlock(job.worker, job.collateral - compensation)
    self.owed[job.submitter] += job.payment + compensation
    log JobExpired(job_id=job_id, compensation=compensation)


@external
@nonreentrant
def withdraw():
    """
    @notice Send the caller everything the escrow owes it (refunds of Expired, Rejected and
            Voided jobs). Anyone with a credit.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "escrow: nothing owed"
    self.owed[msg.sender] = 0
    safe_token._transfer(token, msg.sender, amount)
    log Withdrawn(account=msg.sender, amount=amount)


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
    @notice Move a Committed job inside its challenge window to Challenged (its first open
            dispute). Disputes only.
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
def settle(job_id: uint256, job: Job, outcome: uint8):
    """
    @notice End a Challenged job's dispute round. Disputes only.
            RESUME: every dispute lost or dropped, back to Committed (finalizable once its window
            has passed). REJECT: the worker was found wrong; Rejected, the payment credited to the
            submitter (the disputes contract slashes the collateral). VOID: a judge missed its
            window; Voided, the payment credited to the submitter and the collateral unlocked.
    @param job_id The job.
    @param job The job's current struct.
    @param outcome OUTCOME_RESUME, OUTCOME_REJECT or OUTCOME_VOID.
    """
    assert msg.sender == self.disputes, "escrow: not disputes"
    assert self._load(job_id, job) == STATE_CHALLENGED, "escrow: job not challenged"
    assert outcome <= OUTCOME_VOID, "escrow: bad outcome"
    if outcome == OUTCOME_RESUME:
        self._set_state(job_id, STATE_COMMITTED)
    elif outcome == OUTCOME_REJECT:
        self._set_state(job_id, STATE_REJECTED)
        self.owed[job.submitter] += job.payment
    else:
        self._set_state(job_id, STATE_VOIDED)
        self.owed[job.submitter] += job.payment
        extcall Staking(staking).unlock(job.worker, job.collateral)
    log JobSettled(job_id=job_id, outcome=outcome)


# ================================================================ views


@view
@external
def job_state(job_id: uint256) -> uint8:
    """
    @notice State of a job: 0 None, 1 Open, 2 Claimed, 3 Committed, 4 Challenged,
            5 Finalized, 6 Cancelled, 7 Expired, 8 Rejected, 9 Voided.
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
def challenge_window_of(segment_seconds: uint256) -> uint256:
    """
    @notice The challenge window of a job that declared `segment_seconds`.
    @param segment_seconds Declared replay seconds of one segment.
    @return challenge_window + REPLAY_FACTOR · segment_seconds.
    """
    return challenge_window + REPLAY_FACTOR * segment_seconds


@view
@external
def max_challenge_window() -> uint256:
    """
    @notice The longest challenge window any job can have (used by Staking's unbonding check).
    @return challenge_window + REPLAY_FACTOR · max_segment_seconds.
    """
    return challenge_window + REPLAY_FACTOR * max_segment_seconds


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
