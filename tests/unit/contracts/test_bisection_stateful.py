"""Hypothesis state machine over Bisection.vy: random games against a Python model.

Each example opens one game with a random length n and arity k between a defender and a challenger
that are each honest or not: the honest sequence c_0 … c_n; a defender that is honest, or whose
sequence first diverges at d and stays diverged, or diverges at d and agrees again at random later
indices (never at n); a challenger that answers honestly from the honest sequence or picks parts at
random. Rules interleave the two parties' moves, malformed and forged moves, moves from the wrong
party, waiting (often past a deadline) and `timeout` calls from anyone. The model predicts every
outcome (the move's effect, or its exact revert reason) and after every step the chain's game must
equal the model's. Checked throughout:
- an honest challenger against a defender that stays diverged from d pins exactly (d-1, c_{d-1}, c_d);
  against one that agrees again it pins a transition whose start is honest and whose end is not;
- an honest defender is only ever pinned at a transition it computed correctly;
- a party that misses its deadline loses (timeout succeeds exactly after the deadline, and names it);
- no move is accepted from the wrong party, out of turn, after the deadline or after the end;
- no game takes more than ceil(log_k(n)) rounds.

8 examples of up to 16 steps by default (several games each: a new one opens when one ends);
TESSERA_HYPOTHESIS_PROFILE=thorough runs 500 and shrinks a failure; TESSERA_BISECTION_EXAMPLES and
TESSERA_BISECTION_STEPS override.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest
from eth_hash.auto import keccak
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from protocol.bisection import challenger_part, defender_values, max_rounds, split_points
from tests.unit.contracts.bisection_driver import STATUS, BisectionDriver

THOROUGH = os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough"
EXAMPLES = int(os.environ.get("TESSERA_BISECTION_EXAMPLES", "500" if THOROUGH else "8"))
STEPS = int(os.environ.get("TESSERA_BISECTION_STEPS", "16"))
MOVE = 50
ZERO = b"\x00" * 32
RUNNING = (STATUS["defender"], STATUS["challenger"])
GAME_TAGS = itertools.count()
GAME_SHAPE = {
    # Hypothesis leans to the first option and the low end (it shrinks there): keep those interesting.
    "n": st.one_of(st.integers(9, 200), st.integers(1, 8)),
    "arity": st.integers(2, 9),
    "defender_kind": st.sampled_from(["diverged", "reagreeing", "honest"]),
    "challenger_honest": st.sampled_from([True, False]),
    "data": st.data(),
}
VARIATIONS = st.sampled_from([None, None, None, "count", "zero", "range", "values"])
INTRUDERS = st.sampled_from([None, None, None, None, "host", "outsider", "other party"])


def word(tag: bytes, i: int) -> bytes:
    return keccak(tag + i.to_bytes(8, "big"))


@dataclass
class GameModel:
    """What the contract should hold for the game under play."""

    game_id: int
    arity: int
    lo: int
    hi: int
    c_lo: bytes
    c_hi: bytes
    status: int
    round: int
    deadline: int
    posted: list[bytes] | None = None


class BisectionGame(RuleBasedStateMachine):
    b: BisectionDriver
    host: object
    defender: object
    challenger: object
    outsider: object

    @initialize(**GAME_SHAPE)
    def open_game(self, n: int, arity: int, defender_kind: str, challenger_honest: bool, data) -> None:
        self.start(n, arity, defender_kind, challenger_honest, data)

    @precondition(lambda self: self.m.status not in RUNNING)
    @rule(**GAME_SHAPE)
    def open_the_next_game(self, n: int, arity: int, defender_kind: str, challenger_honest: bool, data) -> None:
        """The game has ended: check that it stays ended, then play another one in the same run."""
        self.check_the_end()
        self.start(n, arity, defender_kind, challenger_honest, data)

    def start(self, n: int, arity: int, defender_kind: str, challenger_honest: bool, data) -> None:
        tag = next(GAME_TAGS).to_bytes(8, "big")  # distinct words in every game
        self.honest = [word(tag + b"honest", i) for i in range(n + 1)]
        self.defender_kind = defender_kind
        self.challenger_honest = challenger_honest
        self.divergence = None
        self.defender_seq = list(self.honest)
        if defender_kind != "honest":
            d = data.draw(st.integers(1, n), label="d")
            self.divergence = d
            lies = set(range(d, n + 1))
            if defender_kind == "reagreeing":
                lies = {d, n} | set(data.draw(st.lists(st.integers(d, n), max_size=n), label="more lies"))
            for i in lies:
                self.defender_seq[i] = word(tag + b"liar", i)
        self.n = n
        # Run ahead of the wall clock, which the in-process chain otherwise follows: then the next block's
        # timestamp is exactly what `now()` reads, and the model can predict every deadline to the second.
        self.b.set_time(self.now() + 3_600)
        game_id, receipt = self.b.open(self.host, self.defender, self.challenger, self.honest[0],
                                       self.defender_seq[n], n, arity, MOVE)
        now = self.b.timestamp_of(receipt)
        pinned = n == 1
        self.m = GameModel(game_id=game_id, arity=arity, lo=0, hi=n, c_lo=self.honest[0], c_hi=self.defender_seq[n],
                           status=STATUS["pinned"] if pinned else STATUS["defender"], round=1,
                           deadline=0 if pinned else now + MOVE)  # fmt: skip
        self.check_chain()

    # ---------------------------------------------------------------- helpers

    def now(self) -> int:
        """The timestamp of the next block (what the next move is judged by)."""
        return self.b.chain.pending_timestamp

    def expected_refusal(self, move: str, sender: object) -> str | None:
        """The contract's first check that fails for `move` from `sender` now (None when the turn is right)."""
        turn, party, name = {"post": (STATUS["defender"], self.defender, "defender"),
                             "choose": (STATUS["challenger"], self.challenger, "challenger")}[move]  # fmt: skip
        if self.m.status != turn:
            return f"bisection: not the {name}'s turn"
        if sender is not party:
            return f"bisection: not the {name}"
        if self.now() > self.m.deadline:
            return "bisection: move too late"
        return None

    def parts(self) -> int:
        return min(self.m.arity, self.m.hi - self.m.lo)

    # ---------------------------------------------------------------- moves

    @precondition(lambda self: self.m.status in RUNNING)
    @rule(variation=VARIATIONS, pick=st.integers(0, 31), intruder=INTRUDERS)
    def the_party_to_move_moves(self, variation: str | None, pick: int, intruder: str | None) -> None:
        """Whoever owes the move plays it (its honest or dishonest answer), sometimes malformed or forged,
        after an intruder sometimes tried it first."""
        if self.m.status == STATUS["challenger"]:
            self.intruder_tries(intruder, "choose")
            self.challenger_chooses(pick, variation if variation in ("range", "values") else None)
        else:
            self.intruder_tries(intruder, "post")
            self.defender_posts(variation if variation in ("count", "zero") else None)

    @precondition(lambda self: self.m.status in RUNNING and self.now() <= self.m.deadline)
    @rule(variation=VARIATIONS, pick=st.integers(0, 31), intruder=INTRUDERS)
    def the_party_to_move_moves_at_its_deadline(self, variation: str | None, pick: int, intruder: str | None) -> None:
        """The same move in the deadline's very second, which still counts."""
        self.b.set_time(self.m.deadline)
        self.the_party_to_move_moves(variation, pick, intruder)

    @precondition(lambda self: self.m.status in RUNNING)
    @rule(pick=st.integers(0, 31))
    def the_other_party_moves_out_of_turn(self, pick: int) -> None:
        if self.m.status == STATUS["defender"]:
            self.challenger_chooses(pick, None)
        else:
            self.defender_posts(None)

    def defender_posts(self, malformed: str | None) -> None:
        reason = self.expected_refusal("post", self.defender)
        if reason is None:
            values = defender_values(self.m.lo, self.m.hi, self.m.arity, self.defender_seq)
        else:
            values = [word(b"stale", 0)]
        if malformed == "count":
            values = values + [word(b"extra", 0)]
            reason = reason or "bisection: wrong number of values"
        elif malformed == "zero":
            values = values[:-1] + [ZERO]
            reason = reason or "bisection: zero commitment"
        if reason is not None:
            self.b.assert_refused(reason, self.defender, "post", self.m.game_id, values)
            return
        now = self.now()
        receipt = self.b.send(self.defender, "post", self.m.game_id, values)
        assert self.b.timestamp_of(receipt) == now
        event = self.b.event(receipt, "Posted")
        assert (event["round"], event["lo"], event["hi"], list(event["values"])) == (
            self.m.round, self.m.lo, self.m.hi, values)
        self.m.posted = values
        self.m.status = STATUS["challenger"]
        self.m.deadline = now + MOVE
        self.check_chain()

    def challenger_chooses(self, pick: int, forged: str | None) -> None:
        reason = self.expected_refusal("choose", self.challenger)
        values = self.m.posted if self.m.posted is not None else []
        if reason is None:
            if self.challenger_honest:
                part = challenger_part(self.m.lo, self.m.hi, self.m.arity, values, self.honest)
            else:
                part = pick % self.parts()
        else:
            part = pick
        if forged == "range":
            part = (self.parts() if reason is None else 0) + pick
            reason = reason or "bisection: part out of range"
        elif forged == "values":
            values = [word(b"forged", 0)] + values[1:]
            reason = reason or "bisection: values differ from the posted ones"
        if reason is not None:
            self.b.assert_refused(reason, self.challenger, "choose", self.m.game_id, part, values)
            return
        now = self.now()
        receipt = self.b.send(self.challenger, "choose", self.m.game_id, part, values)
        points = split_points(self.m.lo, self.m.hi, self.m.arity)
        ends = [self.m.c_lo, *values, self.m.c_hi]
        self.m.lo, self.m.hi = points[part], points[part + 1]
        self.m.c_lo, self.m.c_hi = ends[part], ends[part + 1]
        self.m.posted = None
        chosen = self.b.event(receipt, "Chosen")
        assert (chosen["part"], chosen["lo"], chosen["hi"], chosen["c_lo"], chosen["c_hi"]) == (
            part, self.m.lo, self.m.hi, self.m.c_lo, self.m.c_hi)
        if self.m.hi - self.m.lo == 1:
            self.m.status, self.m.deadline = STATUS["pinned"], 0
            pinned = self.b.event(receipt, "Pinned")
            assert (pinned["index"], pinned["c_lo"], pinned["c_hi"]) == (self.m.lo, self.m.c_lo, self.m.c_hi)
        else:
            self.m.status, self.m.deadline, self.m.round = STATUS["defender"], now + MOVE, self.m.round + 1
            assert self.b.events(receipt, "Pinned") == []
        self.check_chain()

    def intruder_tries(self, intruder: str | None, move: str) -> None:
        """Someone other than the party whose move it is sends `move`: always refused."""
        if intruder is None:
            return
        other = self.challenger if move == "post" else self.defender
        sender = {"host": self.host, "outsider": self.outsider, "other party": other}[intruder]
        reason = self.expected_refusal(move, sender)
        assert reason is not None
        args = (self.m.posted or [],) if move == "post" else (0, self.m.posted or [])
        self.b.assert_refused(reason, sender, move, self.m.game_id, *args)

    # ---------------------------------------------------------------- the clock

    @precondition(lambda self: self.m.status in RUNNING)
    @rule(wait=st.sampled_from([1, 5, MOVE // 2, 2 * MOVE, "to the deadline", "past the deadline"]))
    def clock(self, wait: int | str) -> None:
        """Let time pass: a little, a lot, or to the exact edge of the pending move's deadline."""
        if isinstance(wait, int):
            self.b.set_time(self.now() + wait)
        else:
            self.b.set_time(self.m.deadline + (wait == "past the deadline"))

    @precondition(lambda self: self.m.status in RUNNING)
    @rule(who=st.sampled_from(["outsider", "defender", "challenger"]))
    def call_timeout(self, who: str) -> None:
        sender = {"outsider": self.outsider, "defender": self.defender, "challenger": self.challenger}[who]
        if self.now() <= self.m.deadline:
            self.b.assert_refused("bisection: deadline not passed", sender, "timeout", self.m.game_id)
            return
        event = self.b.event(self.b.send(sender, "timeout", self.m.game_id), "TimedOut")
        defender_late = self.m.status == STATUS["defender"]
        self.m.status = STATUS["defender_timed_out"] if defender_late else STATUS["challenger_timed_out"]
        self.m.posted = None
        loser = self.defender if defender_late else self.challenger
        assert (event["status"], event["loser"]) == (self.m.status, loser.address)
        self.check_chain()

    # ---------------------------------------------------------------- invariants

    def check_chain(self) -> None:
        """The chain's game equals the model's: called after every accepted transaction (a refusal is an
        eth_call and the clock rules mine only empty blocks, so nothing else can change it)."""
        game = self.b.game(self.m.game_id)
        assert (game.lo, game.hi, game.c_lo, game.c_hi, game.status, game.round, game.deadline) == (
            self.m.lo, self.m.hi, self.m.c_lo, self.m.c_hi, self.m.status, self.m.round, self.m.deadline)
        assert (game.defender, game.challenger, game.host) == (
            self.defender.address, self.challenger.address, self.host.address)

    def check_the_end(self) -> None:
        """An ended game accepts no move and no timeout, and its outcome is the model's."""
        self.defender_posts(None)
        self.challenger_chooses(0, None)
        self.b.assert_refused("bisection: game not running", self.outsider, "timeout", self.m.game_id)
        assert self.b.outcome(self.m.game_id) == (self.m.status, self.m.lo, self.m.c_lo, self.m.c_hi)

    def teardown(self) -> None:
        if hasattr(self, "m") and self.m.status not in RUNNING:
            self.check_the_end()

    @invariant()
    def rounds_within_ceil_log(self) -> None:
        played = self.m.round if self.m.status == STATUS["pinned"] and self.n > 1 else self.m.round - 1
        assert played <= max_rounds(self.n, self.m.arity)

    @invariant()
    def the_interval_keeps_the_defenders_claims(self) -> None:
        """Both ends always carry the defender's own commitments (c_0 is agreed)."""
        assert (self.m.c_lo, self.m.c_hi) == (self.defender_seq[self.m.lo], self.defender_seq[self.m.hi])

    @invariant()
    def pinned_where_the_honest_party_says(self) -> None:
        if self.m.status != STATUS["pinned"]:
            return
        j = self.m.lo
        if self.defender_kind == "honest":
            assert (self.m.c_lo, self.m.c_hi) == (self.honest[j], self.honest[j + 1])
        elif self.challenger_honest and self.defender_kind == "diverged":
            assert (j, self.m.c_lo, self.m.c_hi) == (self.divergence - 1, self.honest[j], self.defender_seq[j + 1])
        elif self.challenger_honest:
            assert self.m.c_lo == self.honest[j] and self.m.c_hi != self.honest[j + 1]


@pytest.fixture(scope="module")
def driver(project, chain, accounts) -> BisectionDriver:
    contract = accounts[0].deploy(project.Bisection)
    contract.wire([accounts[0]], sender=accounts[0])
    return BisectionDriver(chain, contract)


def test_bisection_games_against_the_model(driver, accounts) -> None:
    BisectionGame.b = driver
    BisectionGame.host, BisectionGame.defender, BisectionGame.challenger, BisectionGame.outsider = (
        accounts[0], accounts[2], accounts[3], accounts[8])
    run_state_machine_as_test(
        BisectionGame,
        # Shrinking replays the chain hundreds of times (minutes): the thorough profile shrinks, CI
        # reports the failing run's steps as they are.
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                          suppress_health_check=list(HealthCheck),
                          phases=tuple(Phase) if THOROUGH else (Phase.explicit, Phase.reuse, Phase.generate)),
    )
