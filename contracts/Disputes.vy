# pragma version ~=0.4.3
"""
@title Disputes
@notice Level-1 disputes: during a job's challenge window any staker may challenge it with a
        bond, naming segment i and proving h_i and h_{i+1} against the committed result root.
        The arbiter (fixed at deploy) replays segment i and rules within `arbiter_window`.
        Worker wrong: the job is Rejected, the payment refunded, the collateral slashed and split
        (challenger reward, submitter compensation, the rest to the treasury) and the bond returned.
        Challenger wrong: the bond goes to the worker. Arbiter silent: bond returned.
        In both of the last two cases the job goes back to Committed.
@dev The arbiter can only rule on an open dispute within its window; it can never move more
     than the disputed job's collateral, the disputed job's payment and the challenger's bond.
"""

from ethereum.ercs import IERC20
from .lib import safe_token
from .lib import merkle


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


struct Dispute:
    challenger: address
    bond: uint256
    segment: uint256
    h_i: bytes32
    h_next: bytes32
    deadline: uint256
    open: bool


interface Escrow:
    def staking() -> address: view
    def token() -> address: view
    def matches(job_id: uint256, job: Job) -> bool: view
    def job_state(job_id: uint256) -> uint8: view
    def mark_challenged(job_id: uint256, job: Job): nonpayable
    def settle(job_id: uint256, job: Job, worker_wrong: bool): nonpayable


interface Staking:
    def staked_of(staker: address) -> uint256: view
    def slash(staker: address, amount: uint256) -> uint256: nonpayable


# ---------------------------------------------------------------- constants

BPS: constant(uint256) = 10_000
JOB_COMMITTED: constant(uint8) = 3
MAX_WINDOW: constant(uint256) = 30 * 86_400
MAX_URI: constant(uint256) = 256

# ---------------------------------------------------------------- storage

escrow: public(immutable(address))
staking: public(immutable(address))
token: public(immutable(address))
treasury: public(immutable(address))
arbiter: public(immutable(address))
arbiter_window: public(immutable(uint256))
challenge_bond: public(immutable(uint256))
challenger_reward_bps: public(immutable(uint256))
submitter_compensation_bps: public(immutable(uint256))

dispute_of: public(HashMap[uint256, Dispute])

# ---------------------------------------------------------------- events

event Challenged:
    job_id: indexed(uint256)
    challenger: indexed(address)
    segment: uint256
    h_i: bytes32
    h_next: bytes32
    bond: uint256
    arbiter_deadline: uint256


event Verdict:
    job_id: indexed(uint256)
    worker_wrong: bool
    recomputed_hash: bytes32
    evidence_uri: String[MAX_URI]
    slashed: uint256
    challenger_reward: uint256
    submitter_compensation: uint256


event DisputeTimedOut:
    job_id: indexed(uint256)


@deploy
def __init__(
    escrow_: address,
    staking_: address,
    token_: address,
    treasury_: address,
    arbiter_: address,
    arbiter_window_: uint256,
    challenge_bond_: uint256,
    challenger_reward_bps_: uint256,
    submitter_compensation_bps_: uint256,
):
    """
    @notice Deploy with the arbiter and the immutable dispute parameters.
    @param escrow_ The JobEscrow (must use `staking_` and `token_`).
    @param staking_ The Staking contract.
    @param token_ The bond / stake / payment token.
    @param treasury_ Receives the part of a slash that is neither reward nor compensation.
    @param arbiter_ The address that rules disputes (a key or a multisig).
    @param arbiter_window_ Seconds the arbiter has to rule, 1 .. 30 days.
    @param challenge_bond_ Bond a challenger posts, > 0.
    @param challenger_reward_bps_ Share of a slash paid to a right challenger.
    @param submitter_compensation_bps_ Share of a slash paid to the submitter; the two sum to <= 10_000.
    """
    assert escrow_.is_contract, "disputes: escrow has no code"
    assert staticcall Escrow(escrow_).staking() == staking_, "disputes: escrow uses another staking"
    assert staticcall Escrow(escrow_).token() == token_, "disputes: escrow uses another token"
    assert treasury_ != empty(address), "disputes: zero treasury"
    assert arbiter_ != empty(address), "disputes: zero arbiter"
    assert arbiter_window_ > 0 and arbiter_window_ <= MAX_WINDOW, "disputes: bad arbiter window"
    assert challenge_bond_ > 0, "disputes: zero challenge bond"
    assert challenger_reward_bps_ + submitter_compensation_bps_ <= BPS, "disputes: shares above 100%"
    escrow = escrow_
    staking = staking_
    token = token_
    treasury = treasury_
    arbiter = arbiter_
    arbiter_window = arbiter_window_
    challenge_bond = challenge_bond_
    challenger_reward_bps = challenger_reward_bps_
    submitter_compensation_bps = submitter_compensation_bps_


# ================================================================ challenger


@external
@nonreentrant
def challenge(
    job_id: uint256,
    job: Job,
    segment: uint256,
    h_i: bytes32,
    proof_i: DynArray[bytes32, merkle.MAX_DEPTH],
    h_next: bytes32,
    proof_next: DynArray[bytes32, merkle.MAX_DEPTH],
):
    """
    @notice Challenge segment `segment` of a Committed job inside its challenge window.
            Pulls `challenge_bond` (approve first). The caller must have stake.
    @dev Both proofs must have exactly ceil(log2(N + 1)) siblings and verify against
         `job.result_root`; the escrow checks the struct and the window in `mark_challenged`.
    @param job_id The job.
    @param job The job's current struct.
    @param segment Index i of the disputed segment, 0 <= i < N.
    @param h_i The committed state hash before the segment.
    @param proof_i Proof of h_i at leaf i.
    @param h_next The committed state hash after the segment.
    @param proof_next Proof of h_next at leaf i + 1.
    """
    assert staticcall Escrow(escrow).matches(job_id, job), "disputes: job mismatch"
    assert staticcall Escrow(escrow).job_state(job_id) == JOB_COMMITTED, "disputes: job not committed"
    assert not self.dispute_of[job_id].open, "disputes: dispute already open"
    assert msg.sender != job.worker, "disputes: worker cannot challenge"
    assert staticcall Staking(staking).staked_of(msg.sender) > 0, "disputes: challenger not staked"
    assert segment < job.num_segments, "disputes: segment out of range"
    num_leaves: uint256 = job.num_segments + 1
    depth: uint256 = merkle._depth(num_leaves)
    assert len(proof_i) == depth and len(proof_next) == depth, "disputes: bad proof length"
    assert merkle._verify(job.result_root, num_leaves, segment, h_i, proof_i), "disputes: bad proof for h_i"
    assert merkle._verify(job.result_root, num_leaves, segment + 1, h_next, proof_next), "disputes: bad proof for h_next"
    deadline: uint256 = block.timestamp + arbiter_window
    self.dispute_of[job_id] = Dispute(
        challenger=msg.sender,
        bond=challenge_bond,
        segment=segment,
        h_i=h_i,
        h_next=h_next,
        deadline=deadline,
        open=True,
    )
    extcall Escrow(escrow).mark_challenged(job_id, job)
    safe_token._pull(token, msg.sender, challenge_bond)
    log Challenged(
        job_id=job_id,
        challenger=msg.sender,
        segment=segment,
        h_i=h_i,
        h_next=h_next,
        bond=challenge_bond,
        arbiter_deadline=deadline,
    )


# ================================================================ arbiter


@external
@nonreentrant
def verdict(
    job_id: uint256,
    job: Job,
    worker_wrong: bool,
    recomputed_hash: bytes32,
    evidence_uri: String[MAX_URI],
):
    """
    @notice Rule on the open dispute of `job_id`. Arbiter only, within the arbiter window.
    @dev Worker wrong: the escrow rejects the job and refunds the payment; the job's collateral
         (never more) is slashed here and split; the bond goes back to the challenger.
         Worker right: the bond goes to the worker and the job returns to Committed.
    @param job_id The job.
    @param job The job's current struct.
    @param worker_wrong True when the replay of the segment did not give h_next.
    @param recomputed_hash What the arbiter's replay produced.
    @param evidence_uri Where the arbiter's replay evidence lives (event only).
    """
    assert msg.sender == arbiter, "disputes: not arbiter"
    dispute: Dispute = self.dispute_of[job_id]
    assert dispute.open, "disputes: no open dispute"
    assert block.timestamp <= dispute.deadline, "disputes: arbiter window closed"
    self.dispute_of[job_id].open = False
    extcall Escrow(escrow).settle(job_id, job, worker_wrong)
    slashed: uint256 = 0
    reward: uint256 = 0
    compensation: uint256 = 0
    if worker_wrong:
        slashed = extcall Staking(staking).slash(job.worker, job.collateral)
        reward = slashed * challenger_reward_bps // BPS
        compensation = slashed * submitter_compensation_bps // BPS
        rest: uint256 = slashed - reward - compensation
        safe_token._transfer(token, dispute.challenger, dispute.bond + reward)
        if compensation > 0:
            safe_token._transfer(token, job.submitter, compensation)
        if rest > 0:
            safe_token._transfer(token, treasury, rest)
    else:
        safe_token._transfer(token, job.worker, dispute.bond)
    log Verdict(
        job_id=job_id,
        worker_wrong=worker_wrong,
        recomputed_hash=recomputed_hash,
        evidence_uri=evidence_uri,
        slashed=slashed,
        challenger_reward=reward,
        submitter_compensation=compensation,
    )


# ================================================================ anyone


@external
@nonreentrant
def timeout(job_id: uint256, job: Job):
    """
    @notice Void a dispute the arbiter left unanswered past its window: the bond goes back to
            the challenger and the job back to Committed. Anyone may call.
    @param job_id The job.
    @param job The job's current struct.
    """
    dispute: Dispute = self.dispute_of[job_id]
    assert dispute.open, "disputes: no open dispute"
    assert block.timestamp > dispute.deadline, "disputes: arbiter window open"
    self.dispute_of[job_id].open = False
    extcall Escrow(escrow).settle(job_id, job, False)
    safe_token._transfer(token, dispute.challenger, dispute.bond)
    log DisputeTimedOut(job_id=job_id)
