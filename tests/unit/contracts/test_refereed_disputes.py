"""Disputes.vy hands SEGMENT claims on jobs of the refereed class to RefereeGame.vy, on anvil, with the whole
stack deployed by `protocol.deploy.deploy_all` (the referee class set, as a deploy parameter) and the game
played over the recorded MLP step of tests/unit/contracts/test_referee_game.py: the job's result root commits
the state roots s_0, s_1 of a real portable run (one segment of two steps), so the game's agreed state is h_0.

- A worker whose step record has one wrong element is slashed through the game (reward to the challenger,
  compensation to the submitter); an honest worker wrongly challenged keeps its job, the bond goes to the
  treasury. Both settle through `settle_refereed`, by anyone, with the arbiter's `Verdict` effects.
- A game that escalates (an entry the referee has no rule for) opens the arbiter's window: the arbiter can
  rule then and not before, and its silence past that window voids the job as for any dispute.
- `reveal` refuses a refereed SEGMENT claim; other claims and other classes stay with the arbiter."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from eth_account import Account
from eth_hash.auto import keccak
from web3.logs import DISCARD

from personas.referee_game import DESCENT, ESCALATED, STEPS, Match, Side, corrupt
from protocol import tensor_commit as tc
from protocol.abi import load_abi
from protocol.deploy import PARAMS_DIR, deploy_all
from protocol.devnet import test_account_keys
from protocol.merkle import merkle_proof, merkle_root
from protocol.referee_kit import parse_skeleton, rules_of
from tests.unit.contracts.helpers import KIND, STATES, STATUS, Job, commitment_of, reverted

from ..portable.test_step_record import mlp_steps, wide_pool_cnn  # noqa: F401 (mlp_steps: a fixture)
from .test_referee_game import step, step_of  # noqa: F401 (step: a fixture: the recorded MLP step, its bindings and roots)

MOVE = 100
ARITY = 4
LEVELS = 2
RELU = 4  # entry 4 of the MLP step: the ReLU after the first linear (after the batch entries and the linear)
PORTABLE = keccak(b"the refereed portable class")
OTHER = keccak(b"an arbiter-only class")
PAYMENT, COLLATERAL = 100 * 10**18, 40 * 10**18
SEGMENT_SECONDS = 60
SALT = b"\x5a" * 32
SUBMITTER, WORKER, VERIFIER, ARBITER, TREASURY, HONEST = 1, 2, 3, 4, 5, 7  # test accounts (anvil's unlocked ones)


@pytest.fixture(scope="module")
def refereed_deployment(w3: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The twelve contracts with PORTABLE refereed (protocol.deploy.Deployment)."""
    params = json.loads((PARAMS_DIR / "local.json").read_text())
    params.update(reveal_window=600, unbonding_delay=40_000, refereed_class="0x" + PORTABLE.hex(),
                  referee_arity=ARITY, referee_levels=LEVELS, referee_move_seconds=MOVE)  # fmt: skip
    deployer = Account.from_key(test_account_keys(1)[0])
    return deploy_all(w3, deployer, params, out_dir=tmp_path_factory.mktemp("refereed"))


@pytest.fixture(scope="module")
def stack(w3: Any, refereed_deployment: Any) -> dict[str, Any]:
    """The twelve contracts with PORTABLE refereed; both classes open; tokens, stakes and allowances set."""
    deployment = refereed_deployment
    c = {name: w3.eth.contract(address=record.address, abi=load_abi(name))
         for name, record in deployment.contracts.items()}  # fmt: skip
    accounts = w3.eth.accounts
    for env_class in (PORTABLE, OTHER):
        _send(w3, c["JobEscrow"].functions.publish_env_class(env_class, "file:///class.json"), accounts[ARBITER])
    for who in (SUBMITTER, WORKER, VERIFIER):
        _send(w3, c["DevToken"].functions.faucet(1_000 * 10**18), accounts[who])
        for spender in ("Staking", "JobEscrow", "Disputes"):
            _send(w3, c["DevToken"].functions.approve(c[spender].address, 2**256 - 1), accounts[who])
    for who in (WORKER, VERIFIER):
        _send(w3, c["Staking"].functions.stake(500 * 10**18), accounts[who])
    return c


@pytest.fixture
def chain(w3: Any, stack: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


def _send(w3: Any, call: Any, sender: str) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "gas": 8_000_000}), timeout=30)
    assert receipt.status == 1
    return receipt


def _events(contract: Any, name: str, receipt: Any) -> list[Any]:
    """The decoded `name` logs of `contract` in `receipt` (other contracts' logs skipped)."""
    return list(getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD))


def _travel(w3: Any, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


@dataclasses.dataclass
class DisputedJob:
    """A committed job with trace [h_0, h_1] and one SEGMENT challenge filed on segment 0 by the verifier."""

    w3: Any
    c: dict[str, Any]
    job_id: int
    job: Job
    hashes: list[bytes]
    dispute_id: int
    salt: bytes = SALT

    @property
    def escrow(self) -> Any:
        return self.c["JobEscrow"]

    @property
    def disputes(self) -> Any:
        return self.c["Disputes"]

    def state(self) -> int:
        return self.escrow.functions.job_state(self.job_id).call()

    def owed(self, who: int) -> int:
        return self.disputes.functions.owed(self.w3.eth.accounts[who]).call()

    def reveal_args(self) -> tuple:
        return (self.dispute_id, self.job.as_tuple(), 0, self.salt, self.hashes[0], merkle_proof(self.hashes, 0),
                self.hashes[1], merkle_proof(self.hashes, 1))  # fmt: skip


def _disputed_job(w3: Any, c: dict[str, Any], hashes: list[bytes], env_class: bytes = PORTABLE) -> DisputedJob:
    accounts = w3.eth.accounts
    escrow = c["JobEscrow"]
    receipt = _send(w3, escrow.functions.post(PAYMENT, COLLATERAL, b"\x11" * 32, 1, env_class, SEGMENT_SECONDS,
                                              "file:///spec"), accounts[SUBMITTER])  # fmt: skip
    job_id = _events(escrow, "JobPosted", receipt)[0].args.job_id
    job = Job(submitter=accounts[SUBMITTER], payment=PAYMENT, collateral=COLLATERAL, spec_hash=b"\x11" * 32,
              num_segments=1, env_class=env_class, segment_seconds=SEGMENT_SECONDS)  # fmt: skip
    receipt = _send(w3, escrow.functions.claim(job_id, job.as_tuple()), accounts[WORKER])
    job = job.but(worker=accounts[WORKER], deadline=_events(escrow, "JobClaimed", receipt)[0].args.deadline)
    commit = escrow.functions.commit(job_id, job.as_tuple(), hashes, b"\x22" * 32, env_class, "file:///store")
    receipt = _send(w3, commit, accounts[WORKER])
    end = _events(escrow, "JobCommitted", receipt)[0].args.challenge_end
    job = job.but(result_root=merkle_root(hashes), output_hash=b"\x22" * 32, challenge_end=end)
    commitment = commitment_of(job_id, accounts[VERIFIER], KIND["segment"], 0, SALT)
    receipt = _send(w3, c["Disputes"].functions.file_challenge(job_id, job.as_tuple(), commitment), accounts[VERIFIER])
    dispute_id = _events(c["Disputes"], "ChallengeFiled", receipt)[0].args.dispute_id
    w3.provider.make_request("evm_mine", [])  # the reveal goes in a later block
    return DisputedJob(w3, c, job_id, job, hashes, dispute_id)


@dataclasses.dataclass
class RefereedMatch(Match):
    """The referee-game personas, with the game opened by the challenger's `reveal_refereed`."""

    disputed: DisputedJob | None = None

    def open(self) -> None:
        assert self.disputed is not None
        header, path = tc.header_proof(self.before, self.binding)
        self.send("challenger", "disputes", "reveal_refereed", *self.disputed.reveal_args(), header, path)
        self.game_id = self.disputed.disputes.functions.game_of(self.disputed.dispute_id).call()


def _match(chain: Any, c: dict[str, Any], step: dict[str, Any], wrong: bool, target: int) -> RefereedMatch:
    """A game over the step where the worker's record has one element of entry `target` wrong (`wrong`, the
    challenger honest), or an honest worker and a challenger that lies about that element."""
    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    element = rec.entries[target].outputs[0].size - 3
    if wrong:
        wrong_roots = [step["roots"][0], keccak(b"wrong state 1"), keccak(b"wrong state 2")]
        defender = Side(wrong_roots, corrupt(rec, target, element), step["next_leaves"])
    else:
        defender = truth
    # the committed trace: h_0 agreed (the true s_0), h_1 the worker's state after the segment's two steps
    disputed = _disputed_job(chain, c, [defender.state_roots[0], defender.state_roots[-1]])
    contracts = {"bisection": c["Bisection"], "descent": c["TensorDescent"], "host": c["RefereeGame"],
                 "link": c["StateLink"], "disputes": c["Disputes"]}  # fmt: skip
    return RefereedMatch(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth,
                         honest_challenger=wrong, target=target, target_element=element, disputed=disputed)  # fmt: skip


def _settle(match: RefereedMatch) -> Any:
    d = match.disputed
    anyone = match.w3.eth.accounts[6]
    return _send(match.w3, d.disputes.functions.settle_refereed(d.dispute_id, d.job.as_tuple()), anyone)


@pytest.mark.parametrize("wrong", [True, False], ids=["corrupted-worker", "honest-worker"])
def test_the_game_settles_the_dispute_as_a_verdict_would(chain, stack, step, wrong: bool) -> None:
    match = _match(chain, stack, step, wrong, RELU)
    d = match.disputed
    match.play()
    opened = d.disputes.events.RefereeGameOpened().get_logs(from_block=0)
    assert [(e.args.dispute_id, e.args.game_id) for e in opened] == [(d.dispute_id, match.game_id)]
    assert match.ruling() == (True, wrong, False)
    assert d.disputes.functions.dispute_of(d.dispute_id).call()[10] == 0  # no arbiter deadline: never escalated
    bond = d.disputes.functions.challenge_bond().call()
    verdict = _events(d.disputes, "Verdict", _settle(match))
    assert len(verdict) == 1 and verdict[0].args.worker_wrong is wrong and verdict[0].args.evidence_uri == ""
    status = d.disputes.functions.dispute_of(d.dispute_id).call()[5]
    stake = stack["Staking"].functions
    if wrong:
        reward, compensation = COLLATERAL * 3_000 // 10_000, COLLATERAL * 3_000 // 10_000  # local.json's shares
        assert d.state() == STATES["Rejected"] and status == STATUS["worker_wrong"]
        assert (verdict[0].args.slashed, verdict[0].args.rewarded) == (COLLATERAL, chain.eth.accounts[VERIFIER])
        assert (d.owed(VERIFIER), d.owed(SUBMITTER), d.owed(TREASURY)) == (reward, compensation,
                                                                        COLLATERAL - reward - compensation)  # fmt: skip
        assert stake.locked_of(chain.eth.accounts[VERIFIER]).call() == 0  # the bond came back
    else:
        assert d.state() == STATES["Committed"] and status == STATUS["worker_right"]
        assert verdict[0].args.bond_forfeited == bond and d.owed(TREASURY) == bond and d.owed(VERIFIER) == 0
        assert stake.locked_of(chain.eth.accounts[WORKER]).call() == COLLATERAL  # the job goes on, collateral kept
    with pytest.raises(Exception, match="disputes: not a revealed dispute"):
        d.disputes.functions.settle_refereed(d.dispute_id, d.job.as_tuple()).call()


def test_a_first_claim_that_loses_its_own_game_is_not_rewarded(chain, stack, step) -> None:
    """The attack: a cheating worker's puppet files the right SEGMENT claim first (it is the earliest, so the
    reward's leader), opens its game and stops moving, so its own game rules for the worker; an honest second
    challenger's game then proves the claim. The reward goes to the challenger whose game proved it, not to
    the puppet (whose bond the treasury keeps)."""
    from web3 import Web3

    puppet, honest = chain.eth.accounts[VERIFIER], chain.eth.accounts[HONEST]
    thrown = _match(chain, stack, step, wrong=True, target=RELU)  # the verifier's filing, first, plays the puppet
    d = thrown.disputed
    for call in (stack["DevToken"].functions.faucet(100 * 10**18),
                 stack["DevToken"].functions.approve(stack["Staking"].address, 2**256 - 1),
                 stack["Staking"].functions.stake(100 * 10**18)):
        _send(chain, call, honest)
    salt = b"\x77" * 32
    receipt = _send(chain, d.disputes.functions.file_challenge(
        d.job_id, d.job.as_tuple(), commitment_of(d.job_id, honest, KIND["segment"], 0, salt)), honest)
    second = dataclasses.replace(d, dispute_id=_events(d.disputes, "ChallengeFiled", receipt)[0].args.dispute_id,
                                 salt=salt)
    chain.provider.make_request("evm_mine", [])
    thrown.play(STEPS, "challenger")  # the puppet's game: it never chooses
    _travel(chain, MOVE + 1)
    thrown.send("anyone", "bisection", "timeout", thrown.game()["sub_game"])
    thrown.send("anyone", "host", "advance", thrown.game_id)
    assert thrown.ruling() == (True, False, False)
    assert _events(d.disputes, "Verdict", _settle(thrown))[0].args.worker_wrong is False
    proved = dataclasses.replace(thrown, disputed=second)
    proved.c = Web3.to_checksum_address(honest)
    proved.play()
    assert proved.ruling() == (True, True, False)
    verdict = _events(d.disputes, "Verdict", _settle(proved))[0].args
    assert verdict.worker_wrong and (verdict.rewarded, verdict.slashed) == (honest, COLLATERAL)
    assert d.owed(HONEST) == COLLATERAL * 3_000 // 10_000 and d.owed(VERIFIER) == 0 and d.state() == STATES["Rejected"]
    assert stack["Staking"].functions.locked_of(puppet).call() == 0  # the puppet's bond went to the treasury


@pytest.fixture(scope="module")
def cnn_step() -> dict[str, Any]:
    """Steps 0 and 1 of the digits CNN pooling 4×4 windows by 1: its `max_pool_backward` (windows overlapping over 4
    rows) is a call no rules contract decides (`engine.api.uncovered_calls`); "undecided" its entry."""
    from engine.api import record_first_steps

    spec = wide_pool_cnn()
    states, records, _ = record_first_steps(spec, None, 2)
    made = step_of(spec, states, records)
    made["undecided"] = next(e.index for e in made["rec"].entries if e.kernel == "max_pool_backward")
    assert rules_of(parse_skeleton(made["rec"].entries[made["undecided"]].skeleton_bytes()), 0) is None
    return made


def test_an_escalated_game_goes_to_the_arbiter_and_only_then(chain, stack, cnn_step) -> None:
    """Max pooling's backward over 4×4 windows by 1 has no on-chain rule: the game escalates. Before that the
    arbiter cannot rule and nobody can time the dispute out; after `settle_refereed` the arbiter's window is
    open: it can rule, and its silence past the window voids the job."""
    match = _match(chain, stack, cnn_step, wrong=False, target=cnn_step["undecided"])
    d, accounts = match.disputed, chain.eth.accounts
    match.play(DESCENT, "defender")  # the output to descend has no rule: the game escalates instead
    assert match.stage() == ESCALATED and match.ruling() == (False, False, True)
    verdict = d.disputes.functions.verdict(d.dispute_id, d.job.as_tuple(), True, b"\x00" * 32, "file:///evidence")
    timeout = d.disputes.functions.timeout(d.dispute_id, d.job.as_tuple())
    for refused in (verdict, timeout):
        with pytest.raises(Exception, match="disputes: referee game not escalated"):
            refused.call({"from": accounts[ARBITER]})
    receipt = _settle(match)
    escalated = _events(d.disputes, "RefereeGameEscalated", receipt)
    window = d.disputes.functions.arbiter_window_of(SEGMENT_SECONDS).call()
    now = chain.eth.get_block(receipt.blockNumber).timestamp
    assert [(e.args.dispute_id, e.args.game_id, e.args.arbiter_deadline) for e in escalated] == [
        (d.dispute_id, match.game_id, now + window)]
    assert d.state() == STATES["Challenged"]
    with pytest.raises(Exception, match="already escalated"):
        d.disputes.functions.settle_refereed(d.dispute_id, d.job.as_tuple()).call()
    with pytest.raises(Exception, match="disputes: arbiter window open"):
        timeout.call()

    snapshot = chain.provider.make_request("evm_snapshot", [])["result"]
    ruled = _events(d.disputes, "Verdict", _send(chain, verdict, accounts[ARBITER]))
    assert ruled[0].args.worker_wrong and ruled[0].args.evidence_uri == "file:///evidence"
    assert d.state() == STATES["Rejected"] and d.owed(VERIFIER) == COLLATERAL * 3_000 // 10_000
    assert chain.provider.make_request("evm_revert", [snapshot])["result"] is True

    _travel(chain, window + 1)  # the arbiter stays silent
    with pytest.raises(Exception, match="disputes: arbiter window closed"):
        verdict.call({"from": accounts[ARBITER]})
    closed = _events(d.disputes, "DisputeClosed", _send(chain, timeout, accounts[6]))
    assert closed[0].args.status == STATUS["voided"] and d.state() == STATES["Voided"]


def test_reveal_refuses_a_refereed_claim_and_the_rest_stays_with_the_arbiter(chain, stack, step) -> None:
    accounts = chain.eth.accounts
    disputes = stack["Disputes"]
    d = _disputed_job(chain, stack, step["roots"][:1] + step["roots"][-1:])
    reveal = disputes.functions.reveal(d.dispute_id, d.job.as_tuple(), KIND["segment"], *d.reveal_args()[2:])
    with pytest.raises(Exception, match="disputes: refereed claim: use reveal_refereed"):
        reveal.call({"from": accounts[VERIFIER]})
    with pytest.raises(Exception, match="disputes: not a refereed dispute"):  # no game before the reveal
        disputes.functions.settle_refereed(d.dispute_id, d.job.as_tuple()).call()
    header, path = tc.header_proof(step["before"], step["binding"])
    _send(chain, disputes.functions.reveal_refereed(*d.reveal_args(), header, path), accounts[VERIFIER])
    with pytest.raises(Exception, match="disputes: referee game still running"):
        disputes.functions.settle_refereed(d.dispute_id, d.job.as_tuple()).call()
    assert disputes.functions.is_refereed(d.job.as_tuple(), KIND["segment"]).call()
    assert not disputes.functions.is_refereed(d.job.as_tuple(), KIND["output"]).call()
    # another class: `reveal` as before, and no game can be opened for it
    other = _disputed_job(chain, stack, [keccak(b"h0"), keccak(b"h1")], env_class=OTHER)
    with pytest.raises(Exception, match="disputes: not a refereed claim"):
        disputes.functions.reveal_refereed(*other.reveal_args(), header, path).call({"from": accounts[VERIFIER]})
    receipt = _send(chain, disputes.functions.reveal(other.dispute_id, other.job.as_tuple(), KIND["segment"],
                                                     *other.reveal_args()[2:]), accounts[VERIFIER])  # fmt: skip
    revealed = _events(disputes, "ChallengeRevealed", receipt)[0].args
    assert revealed.arbiter_deadline > 0 and disputes.functions.game_of(other.dispute_id).call() == 0
    with pytest.raises(Exception, match="disputes: not a refereed dispute"):
        disputes.functions.settle_refereed(other.dispute_id, other.job.as_tuple()).call()
    # a dispute can also last the referee's longest game: Staking's unbonding check counts it
    game = stack["RefereeGame"].functions.max_game_seconds().call()
    assert disputes.functions.max_dispute_time().call() == 600 + game + 30 + 3 * 60  # local.json + the test's reveal


def test_the_sdk_reveals_reads_and_settles_a_refereed_dispute(chain, stack, refereed_deployment, step) -> None:
    """protocol.client: `reveal_refereed` builds the header and its path from the agreed checkpoint (a
    checkpoint whose state root is not h_i is refused before sending), the receipt's RefereeGameOpened and
    the game view name the game; `settle_refereed` refuses a running game, then carries the defender's
    lost clock into the dispute (Verdict, job Rejected)."""
    from protocol.client import TesseraClient
    from protocol.errors import DisputeError, PreflightError

    d = _disputed_job(chain, stack, [step["roots"][0], keccak(b"a wrong h_1")])
    verifier = Account.from_key(test_account_keys(VERIFIER + 1)[VERIFIER])
    client = TesseraClient(chain, refereed_deployment, verifier, journal=None)
    assert client.is_refereed(client.job(d.job_id).job) and client.referee_game_view(d.dispute_id) is None
    other = dataclasses.replace(step["binding"], segment_steps=step["binding"].segment_steps + 1)
    with pytest.raises(DisputeError, match="is not the committed h_0"):
        client.reveal_refereed(d.dispute_id, 0, SALT, step["before"], other)
    receipt = client.reveal_refereed(d.dispute_id, 0, SALT, step["before"], step["binding"])
    opened = receipt.event("RefereeGameOpened")
    game = client.referee_game_view(d.dispute_id)
    assert game is not None and opened.dispute_id == d.dispute_id and opened.game_id == game.game_id > 0
    assert (game.stage_name, game.decided, game.escalated) == ("steps", False, False)
    with pytest.raises(PreflightError, match="still running"):
        client.settle_refereed(d.dispute_id)
    _travel(chain, MOVE + 1)  # the defender never posts its first midpoints
    sub = stack["RefereeGame"].functions.games(game.game_id).call()[5]
    _send(chain, stack["Bisection"].functions.timeout(sub), chain.eth.accounts[6])
    _send(chain, stack["RefereeGame"].functions.advance(game.game_id), chain.eth.accounts[6])
    game = client.referee_game_view(d.dispute_id)
    assert game is not None and game.decided and game.defender_wrong and "worker wrong" in game.label
    verdict = client.settle_refereed(d.dispute_id).event("Verdict")
    assert verdict.worker_wrong and verdict.slashed == COLLATERAL and d.state() == STATES["Rejected"]
