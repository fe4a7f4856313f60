# pragma version ~=0.4.3
"""
@title Disputes
@notice Level-1 disputes, protocol v2: any number of challenges per job, filed in parallel during
        its challenge window, each with commit-reveal so a copied challenge cannot take the reward.
        1. file_challenge: the challenger names the job and a commitment
           keccak256(abi_encode(job_id, challenger, kind, segment, salt)); `challenge_bond` of its
           available stake is locked while the dispute is open. The job turns Challenged and
           cannot finalize while any dispute is open.
        2. reveal (a later block, within `reveal_window`): the claim and its Merkle proofs against
           the committed root. Claims: SEGMENT (replay of segment i does not reach h_{i+1}),
           INITIAL (h_0 is not the spec's initial state), OUTPUT (the output is not the one
           extracted from checkpoint N) and UNAVAILABLE (checkpoint h_i could not be fetched, or
           its bytes were wrong: ruled as SEGMENT i, or as OUTPUT for i = N; a losing UNAVAILABLE
           claim forfeits only UNAVAILABLE_FORFEIT_BPS (10 %) of its bond, to the treasury: never
           free to file, and a worker that serves a checkpoint selectively costs an honest verifier
           a tenth of a bond and gains nothing).
        3. verdict by the arbiter (fixed at deploy) within its window. Worker wrong: the job is
           Rejected, the collateral slashed and split (reward to the earliest-filed revealed
           challenger of that claim, compensation to the submitter, the rest to the treasury).
           Worker right: the job continues; the bond goes to the treasury (a tenth of it for an
           UNAVAILABLE claim), never to the worker, so self-challenging costs the bond.
        The arbiter silent past a dispute's window: `timeout` unlocks that bond and marks the job;
        the other disputes still run (any of them can still reject the job), and once the last
        one closes without a worker-wrong ruling the job is voided (payment back to the
        submitter, collateral unlocked): a judge that misses a window never pays the party that
        may have caused the delay, and one missed window never lets a wrong result escape the
        disputes still open. A filing never revealed: its bond goes to the treasury (unlocked
        when the job was settled, Rejected or Voided, before its reveal window ended: nothing was
        left to reveal against). Once a job is Rejected or Voided, every other dispute is closed
        with its bond unlocked, except a filing whose reveal window had ended unrevealed before.
        Rewards, compensations and the treasury's share are credits pulled with `withdraw`, so no
        recipient can make a ruling revert.
        Refereed class (`refereed_class`, with a `referee`): a SEGMENT claim on a job of that class
        is revealed with `reveal_refereed`, which opens a RefereeGame (defender the worker,
        challenger the dispute's challenger, h_a agreed, h_b disputed); `settle_refereed` applies
        a decided game's ruling exactly as `verdict` would, or opens the arbiter's window when the
        game escalated (the arbiter judges only what the game has no on-chain rule for).
@dev The arbiter can only rule on a revealed dispute within its window; it can never move more
     than the disputed job's collateral and the disputed bond. It cannot file a challenge itself
     (a puppet of it still can: docs/disputes.md states that trust).
"""

from ethereum.ercs import IERC20
from .lib import safe_token
from .lib import merkle
from .lib import commitments


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


struct Dispute:
    job_id: uint256
    challenger: address
    commitment: bytes32
    filed_at: uint256
    filed_block: uint256
    status: uint8
    kind: uint8
    segment: uint256
    h_a: bytes32
    h_b: bytes32
    deadline: uint256
    bond: uint256


interface Escrow:
    def staking() -> address: view
    def token() -> address: view
    def max_segment_seconds() -> uint256: view
    def matches(job_id: uint256, job: Job) -> bool: view
    def job_state(job_id: uint256) -> uint8: view
    def mark_challenged(job_id: uint256, job: Job): nonpayable
    def settle(job_id: uint256, job: Job, outcome: uint8): nonpayable


interface RefereeGame:
    def open_game(
        defender: address,
        challenger: address,
        agreed_root: bytes32,
        disputed_root: bytes32,
        header: Bytes[commitments.HEADER_BYTES],
        header_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
    ) -> uint256: nonpayable
    def ruling_of(game_id: uint256) -> (bool, bool, bool): view
    def max_game_seconds() -> uint256: view


interface Staking:
    def available_of(staker: address) -> uint256: view
    def lock(staker: address, amount: uint256): nonpayable
    def unlock(staker: address, amount: uint256): nonpayable
    def slash(staker: address, amount: uint256) -> uint256: nonpayable


# ---------------------------------------------------------------- constants

BPS: constant(uint256) = 10_000
MAX_WINDOW: constant(uint256) = 30 * 86_400
MAX_URI: constant(uint256) = 256
REPLAY_FACTOR: constant(uint256) = 3  # as JobEscrow.REPLAY_FACTOR

JOB_COMMITTED: constant(uint8) = 3
JOB_CHALLENGED: constant(uint8) = 4
JOB_REJECTED: constant(uint8) = 8
JOB_VOIDED: constant(uint8) = 9

OUTCOME_RESUME: constant(uint8) = 0
OUTCOME_REJECT: constant(uint8) = 1
OUTCOME_VOID: constant(uint8) = 2

# Claims a reveal can make.
KIND_SEGMENT: public(constant(uint8)) = 1
KIND_UNAVAILABLE: public(constant(uint8)) = 2
KIND_INITIAL: public(constant(uint8)) = 3
KIND_OUTPUT: public(constant(uint8)) = 4

# Share of a losing UNAVAILABLE claim's bond that goes to the treasury (the rest is unlocked).
UNAVAILABLE_FORFEIT_BPS: public(constant(uint256)) = 1_000

# Dispute status.
STATUS_FILED: public(constant(uint8)) = 1
STATUS_REVEALED: public(constant(uint8)) = 2
STATUS_WORKER_WRONG: public(constant(uint8)) = 3
STATUS_WORKER_RIGHT: public(constant(uint8)) = 4
STATUS_VOIDED: public(constant(uint8)) = 5
STATUS_CLOSED: public(constant(uint8)) = 6
STATUS_UNREVEALED: public(constant(uint8)) = 7

# ---------------------------------------------------------------- storage

escrow: public(immutable(address))
staking: public(immutable(address))
token: public(immutable(address))
treasury: public(immutable(address))
arbiter: public(immutable(address))
arbiter_window: public(immutable(uint256))
reveal_window: public(immutable(uint256))
challenge_bond: public(immutable(uint256))
challenger_reward_bps: public(immutable(uint256))
submitter_compensation_bps: public(immutable(uint256))
_max_segment_seconds: immutable(uint256)
# The RefereeGame deciding refereed SEGMENT claims (empty: none), and the env class it referees
# (zero: none).
referee: public(immutable(address))
refereed_class: public(immutable(bytes32))

dispute_count: public(uint256)
dispute_of: public(HashMap[uint256, Dispute])
# Disputes of a job that are filed or revealed and not yet closed.
open_disputes: public(HashMap[uint256, uint256])
# keccak256(abi_encode(job_id, claim, segment)) -> the earliest-filed revealed dispute making that claim.
leader_of: public(HashMap[bytes32, uint256])
# Jobs with a dispute the arbiter left past its window: voided, not resumed, once no dispute is open.
timed_out: public(HashMap[uint256, bool])
# When a job was Rejected or Voided here: a filing whose reveal window ended before it forfeits its bond.
settled_at: public(HashMap[uint256, uint256])
# Dispute id -> the RefereeGame it opened (0: not refereed). Its `deadline` stays 0 until the game
# escalates; then it is the arbiter's deadline, as for any revealed dispute.
game_of: public(HashMap[uint256, uint256])
# Tokens pulled with `withdraw`: rewards, compensations and the treasury's shares.
owed: public(HashMap[address, uint256])

# ---------------------------------------------------------------- events
# Every dispute event has the job id as its first indexed topic, as the escrow's job events do, so one
# log filter on (escrow, disputes) and topic 1 = job id finds a job's whole history.

event ChallengeFiled:
    job_id: indexed(uint256)
    dispute_id: indexed(uint256)
    challenger: indexed(address)
    commitment: bytes32
    bond: uint256
    reveal_deadline: uint256


event ChallengeRevealed:
    job_id: indexed(uint256)
    dispute_id: indexed(uint256)
    challenger: indexed(address)
    kind: uint8
    segment: uint256
    h_a: bytes32
    h_b: bytes32
    arbiter_deadline: uint256


event Verdict:
    job_id: indexed(uint256)
    dispute_id: indexed(uint256)
    worker_wrong: bool
    recomputed_hash: bytes32
    evidence_uri: String[MAX_URI]
    slashed: uint256
    rewarded: address
    challenger_reward: uint256
    submitter_compensation: uint256
    bond_forfeited: uint256


event RefereeGameOpened:
    job_id: indexed(uint256)
    dispute_id: indexed(uint256)
    game_id: indexed(uint256)


event RefereeGameEscalated:
    job_id: indexed(uint256)
    dispute_id: indexed(uint256)
    game_id: indexed(uint256)
    arbiter_deadline: uint256


event DisputeClosed:
    job_id: indexed(uint256)
    dispute_id: indexed(uint256)
    status: uint8
    bond_forfeited: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


@deploy
def __init__(
    escrow_: address,
    staking_: address,
    token_: address,
    treasury_: address,
    arbiter_: address,
    arbiter_window_: uint256,
    reveal_window_: uint256,
    challenge_bond_: uint256,
    challenger_reward_bps_: uint256,
    submitter_compensation_bps_: uint256,
    referee_: address,
    refereed_class_: bytes32,
):
    """
    @notice Deploy with the arbiter, the referee and the immutable dispute parameters.
    @param escrow_ The JobEscrow (must use `staking_` and `token_`).
    @param staking_ The Staking contract.
    @param token_ The stake / payment token.
    @param treasury_ Receives forfeited bonds and the part of a slash that is neither reward nor
           compensation (as a credit).
    @param arbiter_ The address that rules disputes (a key or a multisig).
    @param arbiter_window_ Base seconds the arbiter has to rule after a reveal, 1 .. 30 days; a
           job's window adds REPLAY_FACTOR times its declared segment seconds.
    @param reveal_window_ Seconds a challenger has to reveal after filing, 1 .. 1 day.
    @param challenge_bond_ Stake a challenger locks per dispute, > 0.
    @param challenger_reward_bps_ Share of a slash credited to the rewarded challenger.
    @param submitter_compensation_bps_ Share of a slash credited to the submitter; the two sum to <= 10_000.
    @param referee_ The RefereeGame that decides refereed SEGMENT claims (it must then name this
           contract its host in its one `wire` call), or empty: no class is refereed.
    @param refereed_class_ The env class whose SEGMENT claims the referee decides (zero: none;
           non-zero needs a referee).
    """
    assert escrow_.is_contract, "disputes: escrow has no code"
    assert staticcall Escrow(escrow_).staking() == staking_, "disputes: escrow uses another staking"
    assert staticcall Escrow(escrow_).token() == token_, "disputes: escrow uses another token"
    assert treasury_ != empty(address), "disputes: zero treasury"
    assert arbiter_ != empty(address), "disputes: zero arbiter"
    assert arbiter_window_ > 0 and arbiter_window_ <= MAX_WINDOW, "disputes: bad arbiter window"
    assert reveal_window_ > 0 and reveal_window_ <= 86_400, "disputes: bad reveal window"
    assert challenge_bond_ > 0, "disputes: zero challenge bond"
    assert challenger_reward_bps_ + submitter_compensation_bps_ <= BPS, "disputes: shares above 100%"
    assert refereed_class_ == empty(bytes32) or referee_.is_contract, "disputes: refereed class without a referee"
    max_seconds: uint256 = staticcall Escrow(escrow_).max_segment_seconds()
    assert arbiter_window_ + REPLAY_FACTOR * max_seconds <= MAX_WINDOW, "disputes: segment seconds too large for the windows"
    escrow = escrow_
    staking = staking_
    token = token_
    treasury = treasury_
    arbiter = arbiter_
    arbiter_window = arbiter_window_
    reveal_window = reveal_window_
    challenge_bond = challenge_bond_
    challenger_reward_bps = challenger_reward_bps_
    submitter_compensation_bps = submitter_compensation_bps_
    _max_segment_seconds = max_seconds
    referee = referee_
    refereed_class = refereed_class_


# ================================================================ challengers


@external
@nonreentrant
def file_challenge(job_id: uint256, job: Job, commitment: bytes32) -> uint256:
    """
    @notice File a sealed challenge on a Committed (or already Challenged) job inside its
            challenge window; locks `challenge_bond` of the caller's available stake.
    @dev Any number of disputes can be filed on one job by anyone but its worker and the arbiter;
         none blocks another. The commitment binds the caller, so a copy filed by someone else
         can never be revealed.
    @param job_id The job.
    @param job The job's current struct.
    @param commitment keccak256(abi_encode(job_id, msg.sender, kind, segment, salt)).
    @return The new dispute id (ids start at 1, in filing order).
    """
    assert staticcall Escrow(escrow).matches(job_id, job), "disputes: job mismatch"
    state: uint8 = staticcall Escrow(escrow).job_state(job_id)
    assert state == JOB_COMMITTED or state == JOB_CHALLENGED, "disputes: job not committed"
    assert block.timestamp < job.challenge_end, "disputes: challenge window closed"
    assert msg.sender != job.worker, "disputes: worker cannot challenge"
    assert msg.sender != arbiter, "disputes: arbiter cannot challenge"
    assert commitment != empty(bytes32), "disputes: empty commitment"
    assert staticcall Staking(staking).available_of(msg.sender) >= challenge_bond, "disputes: available stake below the bond"
    dispute_id: uint256 = self.dispute_count + 1
    self.dispute_count = dispute_id
    self.dispute_of[dispute_id] = Dispute(
        job_id=job_id,
        challenger=msg.sender,
        commitment=commitment,
        filed_at=block.timestamp,
        filed_block=block.number,
        status=STATUS_FILED,
        kind=0,
        segment=0,
        h_a=empty(bytes32),
        h_b=empty(bytes32),
        deadline=0,
        bond=challenge_bond,
    )
    self.open_disputes[job_id] += 1
    extcall Staking(staking).lock(msg.sender, challenge_bond)
    if state == JOB_COMMITTED:
        extcall Escrow(escrow).mark_challenged(job_id, job)
    log ChallengeFiled(
        job_id=job_id,
        dispute_id=dispute_id,
        challenger=msg.sender,
        commitment=commitment,
        bond=challenge_bond,
        reveal_deadline=block.timestamp + reveal_window,
    )
    return dispute_id


@external
@nonreentrant
def reveal(
    dispute_id: uint256,
    job: Job,
    kind: uint8,
    segment: uint256,
    salt: bytes32,
    h_a: bytes32,
    proof_a: DynArray[bytes32, merkle.MAX_DEPTH],
    h_b: bytes32,
    proof_b: DynArray[bytes32, merkle.MAX_DEPTH],
):
    """
    @notice Reveal a filed challenge: its claim and the committed hashes it pins. Its challenger
            only, in a block after the filing and within `reveal_window` of it. A SEGMENT claim on
            a job of `refereed_class` is refused: it is revealed with `reveal_refereed`.
    @dev SEGMENT, UNAVAILABLE below N: h_a = h_segment (leaf `segment` < N), h_b = h_{segment+1}.
         INITIAL: segment 0, h_a = h_0, h_b zero, no second proof.
         OUTPUT, UNAVAILABLE at N: segment N, h_a = h_N, h_b = the job's output hash, no second proof.
         Proofs have exactly ceil(log2(N + 1)) siblings.
    @param dispute_id The filed dispute.
    @param job The job's current struct.
    @param kind KIND_SEGMENT, KIND_UNAVAILABLE, KIND_INITIAL or KIND_OUTPUT.
    @param segment The segment (or boundary) the claim is about.
    @param salt The commitment's salt.
    @param h_a The first pinned hash (see above).
    @param proof_a Its proof.
    @param h_b The second pinned hash (see above).
    @param proof_b Its proof (empty for INITIAL and OUTPUT).
    """
    assert not self._is_refereed(job, kind), "disputes: refereed claim: use reveal_refereed"
    self._reveal(dispute_id, job, kind, segment, salt, h_a, proof_a, h_b, proof_b, self._arbiter_deadline(job.segment_seconds))


@external
@nonreentrant
def reveal_refereed(
    dispute_id: uint256,
    job: Job,
    segment: uint256,
    salt: bytes32,
    h_a: bytes32,
    proof_a: DynArray[bytes32, merkle.MAX_DEPTH],
    h_b: bytes32,
    proof_b: DynArray[bytes32, merkle.MAX_DEPTH],
    header: Bytes[commitments.HEADER_BYTES],
    header_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
) -> uint256:
    """
    @notice Reveal a filed SEGMENT claim on a job of the refereed class and open its RefereeGame:
            the worker defends h_b = h_{segment+1} (the disputed state root) from the agreed
            h_a = h_segment. Its challenger only, under the same checks as `reveal`.
    @dev The dispute has no arbiter deadline (0) until `settle_refereed` finds the game escalated.
         The game id is written after the referee's `open_game` returns it (the lock is held).
    @param dispute_id The filed dispute (its commitment names KIND_SEGMENT).
    @param job The job's current struct.
    @param segment The disputed segment i < N.
    @param salt The commitment's salt.
    @param h_a h_i, the agreed state root.
    @param proof_a Its proof.
    @param h_b h_{i+1}, the disputed state root.
    @param proof_b Its proof.
    @param header The agreed state's header (leaf 0 of h_a: the game reads n and the leaf count).
    @param header_path Its path under h_a.
    @return The RefereeGame's game id.
    """
    assert self._is_refereed(job, KIND_SEGMENT), "disputes: not a refereed claim"
    self._reveal(dispute_id, job, KIND_SEGMENT, segment, salt, h_a, proof_a, h_b, proof_b, 0)
    game_id: uint256 = extcall RefereeGame(referee).open_game(job.worker, msg.sender, h_a, h_b, header, header_path)
    self.game_of[dispute_id] = game_id
    log RefereeGameOpened(job_id=self.dispute_of[dispute_id].job_id, dispute_id=dispute_id, game_id=game_id)
    return game_id


# ================================================================ arbiter


@external
@nonreentrant
def verdict(
    dispute_id: uint256,
    job: Job,
    worker_wrong: bool,
    recomputed_hash: bytes32,
    evidence_uri: String[MAX_URI],
):
    """
    @notice Rule on a revealed dispute. Arbiter only, within the dispute's window; a refereed
            dispute only once its game escalated (`settle_refereed` opened the window).
    @dev Worker wrong: the escrow rejects the job and credits the payment to the submitter; the
         job's collateral (never more) is slashed here and credited: the reward to the
         earliest-filed revealed challenger of the same claim, compensation to the submitter, the
         rest to the treasury; this dispute's bond is unlocked. Worker right: this bond goes to
         the treasury (UNAVAILABLE_FORFEIT_BPS of it for an UNAVAILABLE claim, the rest
         unlocked); once no other dispute is open the job returns to Committed, or is voided if
         one of its disputes timed out.
    @param dispute_id The dispute.
    @param job The job's current struct.
    @param worker_wrong True when the recomputation contradicts the worker's commitment.
    @param recomputed_hash What the arbiter's recomputation produced (zero when none was needed).
    @param evidence_uri Where the arbiter's evidence lives (event only).
    """
    assert msg.sender == arbiter, "disputes: not arbiter"
    dispute: Dispute = self.dispute_of[dispute_id]
    assert dispute.status == STATUS_REVEALED, "disputes: not a revealed dispute"
    assert dispute.deadline != 0 or self.game_of[dispute_id] == 0, "disputes: referee game not escalated"
    assert block.timestamp <= dispute.deadline, "disputes: arbiter window closed"
    assert staticcall Escrow(escrow).matches(dispute.job_id, job), "disputes: job mismatch"
    assert staticcall Escrow(escrow).job_state(dispute.job_id) == JOB_CHALLENGED, "disputes: job already settled"
    self._verdict(dispute_id, dispute, job, worker_wrong, recomputed_hash, evidence_uri)


# ================================================================ anyone


@external
@nonreentrant
def settle_refereed(dispute_id: uint256, job: Job):
    """
    @notice Carry a refereed dispute's game into the dispute. Decided: its ruling settles the
            dispute exactly as the arbiter's `verdict` would (defender wrong: the job is Rejected,
            the collateral slashed, reward and compensation credited; defender right: the bond
            goes to the treasury). Escalated (a kernel or the header without an on-chain rule):
            the arbiter's window opens now, for `verdict`, or `timeout` once it passes. Anyone may
            call.
    @param dispute_id A revealed refereed dispute whose game has not been carried over yet.
    @param job The job's current struct.
    """
    dispute: Dispute = self.dispute_of[dispute_id]
    game_id: uint256 = self.game_of[dispute_id]
    assert game_id != 0, "disputes: not a refereed dispute"
    assert dispute.status == STATUS_REVEALED, "disputes: not a revealed dispute"
    assert dispute.deadline == 0, "disputes: referee game already escalated"
    assert staticcall Escrow(escrow).matches(dispute.job_id, job), "disputes: job mismatch"
    assert staticcall Escrow(escrow).job_state(dispute.job_id) == JOB_CHALLENGED, "disputes: job already settled"
    decided: bool = False
    defender_wrong: bool = False
    escalated: bool = False
    decided, defender_wrong, escalated = staticcall RefereeGame(referee).ruling_of(game_id)
    if decided:
        self._verdict(dispute_id, dispute, job, defender_wrong, empty(bytes32), "")
        return
    assert escalated, "disputes: referee game still running"
    deadline: uint256 = self._arbiter_deadline(job.segment_seconds)
    self.dispute_of[dispute_id].deadline = deadline
    log RefereeGameEscalated(job_id=dispute.job_id, dispute_id=dispute_id, game_id=game_id, arbiter_deadline=deadline)


@external
@nonreentrant
def timeout(dispute_id: uint256, job: Job):
    """
    @notice The arbiter left a revealed dispute unanswered past its window: unlock its bond and
            mark the job. Once no dispute of the job is open (now, or when the last one closes)
            a job still Challenged is voided (the neutral outcome: payment credited back to the
            submitter, collateral unlocked, nobody rewarded); until then the other disputes can
            still reject it. Anyone may call. A refereed dispute only once its game escalated
            and the arbiter's window that opened then has passed.
    @param dispute_id The dispute.
    @param job The job's current struct.
    """
    dispute: Dispute = self.dispute_of[dispute_id]
    assert dispute.status == STATUS_REVEALED, "disputes: not a revealed dispute"
    assert dispute.deadline != 0 or self.game_of[dispute_id] == 0, "disputes: referee game not escalated"
    assert block.timestamp > dispute.deadline, "disputes: arbiter window open"
    assert staticcall Escrow(escrow).matches(dispute.job_id, job), "disputes: job mismatch"
    self.dispute_of[dispute_id].status = STATUS_VOIDED
    self.open_disputes[dispute.job_id] -= 1
    self.timed_out[dispute.job_id] = True
    extcall Staking(staking).unlock(dispute.challenger, dispute.bond)
    self._settle_when_last(dispute.job_id, job)
    log DisputeClosed(job_id=dispute.job_id, dispute_id=dispute_id, status=STATUS_VOIDED, bond_forfeited=0)


@external
@nonreentrant
def expire_reveal(dispute_id: uint256, job: Job):
    """
    @notice A filed challenge was not revealed within `reveal_window`: its bond goes to the
            treasury (or is unlocked when the job was Rejected or Voided before that window
            ended: nothing was left to reveal against); once no other dispute is open the job
            returns to Committed, or is voided if one of its disputes timed out. Anyone may call.
    @param dispute_id The dispute.
    @param job The job's current struct.
    """
    dispute: Dispute = self.dispute_of[dispute_id]
    assert dispute.status == STATUS_FILED, "disputes: not a filed dispute"
    assert block.timestamp > dispute.filed_at + reveal_window, "disputes: reveal window open"
    assert staticcall Escrow(escrow).matches(dispute.job_id, job), "disputes: job mismatch"
    self.open_disputes[dispute.job_id] -= 1
    if self._settled_in_time(dispute):
        self.dispute_of[dispute_id].status = STATUS_CLOSED
        extcall Staking(staking).unlock(dispute.challenger, dispute.bond)
        log DisputeClosed(job_id=dispute.job_id, dispute_id=dispute_id, status=STATUS_CLOSED, bond_forfeited=0)
        return
    self.dispute_of[dispute_id].status = STATUS_UNREVEALED
    forfeited: uint256 = extcall Staking(staking).slash(dispute.challenger, dispute.bond)
    self.owed[treasury] += forfeited
    self._settle_when_last(dispute.job_id, job)
    log DisputeClosed(job_id=dispute.job_id, dispute_id=dispute_id, status=STATUS_UNREVEALED, bond_forfeited=forfeited)


@external
@nonreentrant
def close(dispute_id: uint256):
    """
    @notice Close a filed or revealed dispute whose job another dispute already settled (Rejected
            or Voided): its bond is unlocked, except for a filing whose reveal window had already
            ended unrevealed when the job settled (that one goes to the treasury, as with
            `expire_reveal`). Anyone may call.
    @param dispute_id The dispute.
    """
    dispute: Dispute = self.dispute_of[dispute_id]
    assert dispute.status == STATUS_FILED or dispute.status == STATUS_REVEALED, "disputes: dispute not open"
    state: uint8 = staticcall Escrow(escrow).job_state(dispute.job_id)
    assert state == JOB_REJECTED or state == JOB_VOIDED, "disputes: job not settled"
    self.open_disputes[dispute.job_id] -= 1
    if dispute.status == STATUS_FILED and not self._settled_in_time(dispute):
        self.dispute_of[dispute_id].status = STATUS_UNREVEALED
        forfeited: uint256 = extcall Staking(staking).slash(dispute.challenger, dispute.bond)
        self.owed[treasury] += forfeited
        log DisputeClosed(job_id=dispute.job_id, dispute_id=dispute_id, status=STATUS_UNREVEALED, bond_forfeited=forfeited)
        return
    self.dispute_of[dispute_id].status = STATUS_CLOSED
    extcall Staking(staking).unlock(dispute.challenger, dispute.bond)
    log DisputeClosed(job_id=dispute.job_id, dispute_id=dispute_id, status=STATUS_CLOSED, bond_forfeited=0)


@external
@nonreentrant
def withdraw():
    """
    @notice Send the caller its credits (rewards, compensations, the treasury's shares). Anyone
            with a credit.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "disputes: nothing owed"
    self.owed[msg.sender] = 0
    safe_token._transfer(token, msg.sender, amount)
    log Withdrawn(account=msg.sender, amount=amount)


# ================================================================ views


@view
@external
def commitment_of(job_id: uint256, challenger: address, kind: uint8, segment: uint256, salt: bytes32) -> bytes32:
    """
    @notice The commitment a challenger files for a claim (compute it locally; never send the
            salt anywhere before the reveal).
    @param job_id The job.
    @param challenger The challenger's address.
    @param kind The claim.
    @param segment Its segment or boundary.
    @param salt A fresh random 32-byte value.
    @return keccak256(abi_encode(job_id, challenger, kind, segment, salt)).
    """
    return keccak256(abi_encode(job_id, challenger, kind, segment, salt))


@view
@external
def arbiter_window_of(segment_seconds: uint256) -> uint256:
    """
    @notice The arbiter's window after a reveal on a job that declared `segment_seconds`.
    @param segment_seconds Declared replay seconds of one segment.
    @return arbiter_window + REPLAY_FACTOR · segment_seconds.
    """
    return arbiter_window + REPLAY_FACTOR * segment_seconds


@view
@external
def is_refereed(job: Job, kind: uint8) -> bool:
    """
    @notice Whether a claim of `kind` on `job` is decided by the referee game (`reveal_refereed`)
            rather than by the arbiter (`reveal`).
    @param job The job.
    @param kind The claim.
    @return True for a SEGMENT claim on a job of the refereed class.
    """
    return self._is_refereed(job, kind)


@view
@external
def max_dispute_time() -> uint256:
    """
    @notice The longest a dispute filed at the end of a challenge window can stay open
            (reveal window + the longest referee game, when a class is refereed + the longest
            arbiter window), for Staking's unbonding check.
    @return reveal_window + arbiter_window + REPLAY_FACTOR · max_segment_seconds, plus the
            referee's max_game_seconds() when a class is refereed.
    """
    game: uint256 = 0
    if refereed_class != empty(bytes32):
        game = staticcall RefereeGame(referee).max_game_seconds()
    return reveal_window + game + arbiter_window + REPLAY_FACTOR * _max_segment_seconds


# ================================================================ internal


@internal
@view
def _settled_in_time(dispute: Dispute) -> bool:
    """
    @notice Whether the dispute's job was Rejected or Voided before the filing's reveal window
            ended (then an unrevealed filing had nothing left to reveal against).
    @param dispute The dispute.
    @return True when settled, and settled no later than filed_at + reveal_window.
    """
    settled: uint256 = self.settled_at[dispute.job_id]
    return settled != 0 and settled <= dispute.filed_at + reveal_window


@internal
def _settle_when_last(job_id: uint256, job: Job):
    """
    @notice Once a Challenged job has no open dispute left: resume it, or void it when one of its
            disputes timed out.
    @param job_id The job.
    @param job The job's current struct.
    """
    if self.open_disputes[job_id] != 0:
        return
    if staticcall Escrow(escrow).job_state(job_id) != JOB_CHALLENGED:
        return
    if self.timed_out[job_id]:
        self.settled_at[job_id] = block.timestamp
        extcall Escrow(escrow).settle(job_id, job, OUTCOME_VOID)
    else:
        extcall Escrow(escrow).settle(job_id, job, OUTCOME_RESUME)


@internal
@pure
def _claim_key(job_id: uint256, kind: uint8, segment: uint256, num_segments: uint256) -> bytes32:
    """
    @notice The key under which disputes making the same claim compete for the reward: an
            UNAVAILABLE claim is the SEGMENT claim on the same segment (the OUTPUT claim at N).
    @param job_id The job.
    @param kind The claim.
    @param segment Its segment or boundary.
    @param num_segments The job's N.
    @return keccak256(abi_encode(job_id, claim, segment)).
    """
    claim: uint8 = kind
    if kind == KIND_UNAVAILABLE:
        claim = KIND_SEGMENT
        if segment == num_segments:
            claim = KIND_OUTPUT
    return keccak256(abi_encode(job_id, claim, segment))


@internal
def _reveal(
    dispute_id: uint256,
    job: Job,
    kind: uint8,
    segment: uint256,
    salt: bytes32,
    h_a: bytes32,
    proof_a: DynArray[bytes32, merkle.MAX_DEPTH],
    h_b: bytes32,
    proof_b: DynArray[bytes32, merkle.MAX_DEPTH],
    deadline: uint256,
):
    """
    @notice The checks and effects of a reveal (`reveal` and `reveal_refereed`): the caller must
            be the challenger, the claim must open the commitment and its proofs the job's root.
    @param dispute_id The filed dispute.
    @param job The job's current struct.
    @param kind The claim.
    @param segment Its segment or boundary.
    @param salt The commitment's salt.
    @param h_a The first pinned hash.
    @param proof_a Its proof.
    @param h_b The second pinned hash.
    @param proof_b Its proof.
    @param deadline The arbiter's deadline (0: a refereed claim, none until its game escalates).
    """
    dispute: Dispute = self.dispute_of[dispute_id]
    assert dispute.status == STATUS_FILED, "disputes: not a filed dispute"
    assert msg.sender == dispute.challenger, "disputes: not the challenger"
    assert block.number > dispute.filed_block, "disputes: reveal in a later block"
    assert block.timestamp <= dispute.filed_at + reveal_window, "disputes: reveal window closed"
    assert staticcall Escrow(escrow).matches(dispute.job_id, job), "disputes: job mismatch"
    assert staticcall Escrow(escrow).job_state(dispute.job_id) == JOB_CHALLENGED, "disputes: job already settled"
    opened: bytes32 = keccak256(abi_encode(dispute.job_id, msg.sender, kind, segment, salt))
    assert opened == dispute.commitment, "disputes: reveal does not match the commitment"
    num_leaves: uint256 = job.num_segments + 1
    depth: uint256 = merkle._depth(num_leaves)
    assert len(proof_a) == depth, "disputes: bad proof length"
    if kind == KIND_SEGMENT or (kind == KIND_UNAVAILABLE and segment < job.num_segments):
        assert segment < job.num_segments, "disputes: segment out of range"
        assert len(proof_b) == depth, "disputes: bad proof length"
        assert merkle._verify(job.result_root, num_leaves, segment + 1, h_b, proof_b), "disputes: bad proof for h_b"
    elif kind == KIND_INITIAL:
        assert segment == 0, "disputes: initial claim is about boundary 0"
        assert h_b == empty(bytes32) and len(proof_b) == 0, "disputes: initial claim pins one hash"
    elif kind == KIND_OUTPUT or kind == KIND_UNAVAILABLE:
        assert segment == job.num_segments, "disputes: output claim is about boundary N"
        assert h_b == job.output_hash and len(proof_b) == 0, "disputes: output claim pins the output hash"
    else:
        raise "disputes: unknown claim"
    assert merkle._verify(job.result_root, num_leaves, segment, h_a, proof_a), "disputes: bad proof for h_a"
    self.dispute_of[dispute_id].status = STATUS_REVEALED
    self.dispute_of[dispute_id].kind = kind
    self.dispute_of[dispute_id].segment = segment
    self.dispute_of[dispute_id].h_a = h_a
    self.dispute_of[dispute_id].h_b = h_b
    self.dispute_of[dispute_id].deadline = deadline
    key: bytes32 = self._claim_key(dispute.job_id, kind, segment, job.num_segments)
    leader: uint256 = self.leader_of[key]
    if leader == 0 or dispute_id < leader:
        self.leader_of[key] = dispute_id
    log ChallengeRevealed(
        job_id=dispute.job_id,
        dispute_id=dispute_id,
        challenger=msg.sender,
        kind=kind,
        segment=segment,
        h_a=h_a,
        h_b=h_b,
        arbiter_deadline=deadline,
    )


@internal
def _verdict(
    dispute_id: uint256,
    dispute: Dispute,
    job: Job,
    worker_wrong: bool,
    recomputed_hash: bytes32,
    evidence_uri: String[MAX_URI],
):
    """
    @notice The effects of a ruling on a revealed dispute of a Challenged job, whoever ruled (the
            arbiter's `verdict`, a referee game's ruling through `settle_refereed`): see `verdict`.
    @param dispute_id The dispute.
    @param dispute Its stored struct.
    @param job The job's current struct (checked by the caller).
    @param worker_wrong Whether the worker's commitment was found wrong.
    @param recomputed_hash The arbiter's recomputation (zero for a referee ruling).
    @param evidence_uri The arbiter's evidence ("" for a referee ruling).
    """
    self.open_disputes[dispute.job_id] -= 1
    slashed: uint256 = 0
    reward: uint256 = 0
    compensation: uint256 = 0
    forfeited: uint256 = 0
    rewarded: address = empty(address)
    if worker_wrong:
        self.dispute_of[dispute_id].status = STATUS_WORKER_WRONG
        leader: uint256 = self.leader_of[self._claim_key(dispute.job_id, dispute.kind, dispute.segment, job.num_segments)]
        if self.dispute_of[leader].status == STATUS_WORKER_RIGHT:
            # the earliest claim lost its own referee game (a puppet that files first and stops moving):
            # the reward goes to the challenger whose game proved the claim
            leader = dispute_id
        rewarded = self.dispute_of[leader].challenger
        self.settled_at[dispute.job_id] = block.timestamp
        extcall Escrow(escrow).settle(dispute.job_id, job, OUTCOME_REJECT)
        slashed = extcall Staking(staking).slash(job.worker, job.collateral)
        reward = slashed * challenger_reward_bps // BPS
        compensation = slashed * submitter_compensation_bps // BPS
        self.owed[rewarded] += reward
        self.owed[job.submitter] += compensation
        self.owed[treasury] += slashed - reward - compensation
        extcall Staking(staking).unlock(dispute.challenger, dispute.bond)
    else:
        self.dispute_of[dispute_id].status = STATUS_WORKER_RIGHT
        if dispute.kind == KIND_UNAVAILABLE:
            part: uint256 = dispute.bond * UNAVAILABLE_FORFEIT_BPS // BPS
            forfeited = extcall Staking(staking).slash(dispute.challenger, part)
            extcall Staking(staking).unlock(dispute.challenger, dispute.bond - part)
        else:
            forfeited = extcall Staking(staking).slash(dispute.challenger, dispute.bond)
        self.owed[treasury] += forfeited
        self._settle_when_last(dispute.job_id, job)
    log Verdict(
        job_id=dispute.job_id,
        dispute_id=dispute_id,
        worker_wrong=worker_wrong,
        recomputed_hash=recomputed_hash,
        evidence_uri=evidence_uri,
        slashed=slashed,
        rewarded=rewarded,
        challenger_reward=reward,
        submitter_compensation=compensation,
        bond_forfeited=forfeited,
    )


@internal
@view
def _arbiter_deadline(segment_seconds: uint256) -> uint256:
    """
    @notice The arbiter's deadline for a dispute whose window opens now.
    @param segment_seconds The job's declared segment seconds.
    @return block.timestamp + arbiter_window + REPLAY_FACTOR · segment_seconds.
    """
    return block.timestamp + arbiter_window + REPLAY_FACTOR * segment_seconds


@internal
@view
def _is_refereed(job: Job, kind: uint8) -> bool:
    """
    @notice Whether the referee decides this claim: a SEGMENT claim on a job of the refereed class.
    @param job The job.
    @param kind The claim.
    @return True when refereed.
    """
    return kind == KIND_SEGMENT and refereed_class != empty(bytes32) and job.env_class == refereed_class
