"""Bisection.vy, the level-2 game: attacks first (a defender that stalls the interval, a challenger
out of range, replayed moves, a forged host, moves after a timeout or the end), then the clock's
exact edges and whole games read back from decoded events. The random games are in
test_bisection_stateful.py. Moves go through `BisectionDriver` (web3 on ape's chain) to keep the
test budget."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from protocol.bisection import challenger_part, defender_values, max_rounds, split_points
from tests.unit.contracts.bisection_driver import STATUS, BisectionDriver

MOVE = 100
ZERO = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20


def word(tag: str, i: int) -> bytes:
    return keccak(tag.encode() + i.to_bytes(8, "big"))


def sequence(n: int, tag: str = "honest") -> list[bytes]:
    return [word(tag, i) for i in range(n + 1)]


def diverged(honest: list[bytes], d: int) -> list[bytes]:
    """A defender's sequence equal to `honest` before index d and different at every index from d on."""
    return honest[:d] + [word("liar", i) for i in range(d, len(honest))]


@pytest.fixture(scope="module")
def host(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def defender(accounts):
    return accounts[2]


@pytest.fixture(scope="module")
def challenger(accounts):
    return accounts[3]


@pytest.fixture(scope="module")
def outsider(accounts):
    return accounts[8]


@pytest.fixture(scope="module")
def b(project, chain, host) -> BisectionDriver:
    contract = host.deploy(project.Bisection)
    contract.wire([host], sender=host)
    return BisectionDriver(chain, contract)


def open_game(b, host, defender, challenger, seq, arity, n=None):
    n = len(seq) - 1 if n is None else n
    return b.open(host, defender, challenger, seq[0], seq[-1], n, arity, MOVE)


def play(b, game_id, defender, challenger, defender_seq, challenger_seq, arity):
    """Play a game to its end with both parties answering from their own sequences; returns the rounds."""
    rounds = 0
    while (game := b.game(game_id)).status == STATUS["defender"]:
        values = defender_values(game.lo, game.hi, arity, defender_seq)
        b.send(defender, "post", game_id, values)
        part = challenger_part(game.lo, game.hi, arity, values, challenger_seq)
        b.send(challenger, "choose", game_id, part, values)
        rounds += 1
    return rounds


# ---------------------------------------------------------------- the split formula


@given(lo=st.integers(0, 2**64), length=st.integers(2, 2**64), arity=st.integers(2, 32))
def test_split_points_strictly_increase_and_every_part_shrinks(lo: int, length: int, arity: int) -> None:
    points = split_points(lo, lo + length, arity)
    parts = min(arity, length)
    assert points[0] == lo and points[-1] == lo + length and len(points) == parts + 1
    assert all(a < b for a, b in zip(points, points[1:]))
    assert max(b - a for a, b in zip(points, points[1:])) <= -(-length // parts) < length


@given(n=st.integers(1, 10**6), arity=st.integers(2, 32))
def test_max_rounds_is_ceil_log(n: int, arity: int) -> None:
    rounds = max_rounds(n, arity)
    assert arity**rounds >= n and (rounds == 0 or arity ** (rounds - 1) < n)


def test_the_model_refuses_shapes_the_contract_refuses() -> None:
    for lo, hi, arity in ((0, 1, 2), (5, 5, 2), (0, 8, 1)):
        with pytest.raises(ValueError):
            split_points(lo, hi, arity)
    for n, arity in ((0, 2), (8, 1)):
        with pytest.raises(ValueError):
            max_rounds(n, arity)
    assert max_rounds(1, 2) == 0


def test_split_points_on_chain_match_the_model(b, host, defender, challenger) -> None:
    for n, arity in ((2, 2), (10, 3), (7, 16), (4_096, 16), (65, 4), (2**64, 32)):
        # two stand-in commitments: only the points matter here
        game_id, _ = open_game(b, host, defender, challenger, [word("a", 0), word("b", 1)], arity, n=n)
        assert b.split_points(game_id) == split_points(0, n, arity)
    # the widest game fills every packed field to its edge: one round, the last part, read back whole
    points = split_points(0, 2**64, 32)
    values = [word("wide", p) for p in points[1:-1]]
    b.send(defender, "post", game_id, values)
    receipt = b.send(challenger, "choose", game_id, 31, values)
    game = b.game(game_id)
    assert (game.lo, game.hi, game.c_lo, game.c_hi) == (points[31], 2**64, values[-1], word("b", 1))
    assert (game.arity, game.move_seconds, game.status, game.round) == (32, MOVE, STATUS["defender"], 2)
    assert game.deadline == b.timestamp_of(receipt) + MOVE and game.host == host.address
    assert b.split_points(game_id) == split_points(points[31], 2**64, 32)


# ---------------------------------------------------------------- attacks


def test_defender_cannot_post_a_split_that_keeps_the_interval(b, host, defender, challenger) -> None:
    """The points are the contract's, not the defender's: it can only fill exactly parts - 1 of them, with
    non-zero words, so every round shrinks the interval."""
    seq = sequence(10)
    game_id, _ = open_game(b, host, defender, challenger, seq, 4)
    for count in (0, 2, 4, 5):  # parts - 1 = 3
        b.assert_refused("bisection: wrong number of values", defender, "post", game_id, [seq[1]] * count)
    b.assert_refused("bisection: zero commitment", defender, "post", game_id, [seq[2], ZERO, seq[7]])
    assert b.split_points(game_id) == [0, 2, 5, 7, 10]  # every part is shorter than the interval
    values = defender_values(0, 10, 4, seq)
    b.send(defender, "post", game_id, values)
    b.send(challenger, "choose", game_id, 3, values)
    game = b.game(game_id)
    assert (game.lo, game.hi, game.c_lo, game.c_hi) == (7, 10, seq[7], seq[10])


def test_challenger_part_out_of_range_or_values_substituted_is_refused(b, host, defender, challenger) -> None:
    seq = sequence(9)
    game_id, _ = open_game(b, host, defender, challenger, seq, 3)
    values = defender_values(0, 9, 3, seq)
    b.send(defender, "post", game_id, values)
    for part in (3, 4, 2**256 - 1):
        b.assert_refused("bisection: part out of range", challenger, "choose", game_id, part, values)
    # the ends of the chosen part come from what the defender posted, never from the challenger
    for forged in ([values[0], word("forged", 6)], values[:1], values + [seq[8]], []):
        b.assert_refused("bisection: values differ from the posted ones", challenger, "choose", game_id, 1, forged)
    b.send(challenger, "choose", game_id, 2, values)
    game = b.game(game_id)
    assert (game.lo, game.hi, game.c_lo, game.c_hi) == (6, 9, seq[6], seq[9])


def test_replayed_moves_are_refused(b, host, defender, challenger) -> None:
    seq = sequence(16)
    game_id, _ = open_game(b, host, defender, challenger, seq, 2)
    first = defender_values(0, 16, 2, seq)
    b.send(defender, "post", game_id, first)
    b.assert_refused("bisection: not the defender's turn", defender, "post", game_id, first)
    b.send(challenger, "choose", game_id, 0, first)
    b.assert_refused("bisection: not the challenger's turn", challenger, "choose", game_id, 0, first)
    second = defender_values(0, 8, 2, seq)
    b.send(defender, "post", game_id, second)
    # the first round's values (and its choice) replayed in the second round
    b.assert_refused("bisection: values differ from the posted ones", challenger, "choose", game_id, 0, first)
    b.send(challenger, "choose", game_id, 1, second)
    assert (b.game(game_id).lo, b.game(game_id).hi) == (4, 8)
    # a move of this game sent to another game (a fresh one, same parties and shape) is that game's move
    other, _ = open_game(b, host, defender, challenger, seq, 2)
    b.assert_refused("bisection: not the challenger's turn", challenger, "choose", other, 1, second)
    b.assert_refused("bisection: not the challenger's turn", challenger, "choose", 999, 0, [])


def test_only_a_wired_host_opens_games_and_the_host_is_the_caller(project, chain, b, host, defender, challenger,
                                                                  outsider) -> None:
    seq = sequence(4)
    args = (defender.address, challenger.address, seq[0], seq[4], 4, 2, MOVE)
    for who in (outsider, defender, challenger):
        b.assert_refused("bisection: not a host", who, "open_game", *args)
    game_id, receipt = open_game(b, host, defender, challenger, seq, 2)
    assert b.game(game_id).host == host.address == b.event(receipt, "GameOpened")["host"]
    b.assert_refused("bisection: already wired", host, "wire", [outsider.address])
    fresh = BisectionDriver(chain, host.deploy(project.Bisection))
    b.assert_refused("bisection: not deployer", outsider, "wire", [outsider.address])
    fresh.assert_refused("bisection: not a host", host, "open_game", *args)  # nobody before wiring
    fresh.assert_refused("bisection: zero host", host, "wire", [host.address, ZERO_ADDRESS])
    fresh.assert_refused("bisection: no host", host, "wire", [])
    assert fresh.event(fresh.send(host, "wire", [outsider.address]), "Wired")["hosts"] == [outsider.address]
    fresh.assert_refused("bisection: not a host", host, "open_game", *args)
    assert fresh.refusal(outsider, "open_game", *args) is None


def test_open_game_bounds(b, host, defender, challenger) -> None:
    good = {"defender": defender.address, "challenger": challenger.address, "c_0": word("x", 0),
            "c_n": word("x", 1), "n": 8, "arity": 2, "move_seconds": MOVE}  # fmt: skip
    assert b.refusal(host, "open_game", *good.values()) is None
    for change, reason in (
        ({"c_0": ZERO}, "bisection: zero commitment"),
        ({"c_n": ZERO}, "bisection: zero commitment"),
        ({"n": 0}, "bisection: bad length"),
        ({"n": 2**64 + 1}, "bisection: bad length"),
        ({"arity": 1}, "bisection: bad arity"),
        ({"arity": 33}, "bisection: bad arity"),
        ({"move_seconds": 0}, "bisection: bad move window"),
        ({"move_seconds": 30 * 86_400 + 1}, "bisection: bad move window"),
        ({"challenger": defender.address}, "bisection: defender is the challenger"),
        ({"defender": ZERO_ADDRESS}, "bisection: zero party"),
    ):
        b.assert_refused(reason, host, "open_game", *{**good, **change}.values())
    for edge in ({"n": 2**64}, {"arity": 32}, {"move_seconds": 30 * 86_400}):
        assert b.refusal(host, "open_game", *{**good, **edge}.values()) is None


def test_moves_from_the_wrong_party_are_refused(b, host, defender, challenger, outsider) -> None:
    seq = sequence(6)
    game_id, _ = open_game(b, host, defender, challenger, seq, 2)
    values = defender_values(0, 6, 2, seq)
    for who in (challenger, outsider, host):
        b.assert_refused("bisection: not the defender", who, "post", game_id, values)
    b.assert_refused("bisection: not the challenger's turn", challenger, "choose", game_id, 0, values)
    b.send(defender, "post", game_id, values)
    for who in (defender, outsider, host):
        b.assert_refused("bisection: not the challenger", who, "choose", game_id, 0, values)
    b.assert_refused("bisection: not the defender's turn", defender, "post", game_id, values)


def test_moves_after_a_timeout_are_refused(b, host, defender, challenger) -> None:
    seq = sequence(8)
    game_id, _ = open_game(b, host, defender, challenger, seq, 2)
    values = defender_values(0, 8, 2, seq)
    deadline = b.event(b.send(defender, "post", game_id, values), "Posted")["deadline"]
    b.set_time(deadline + 1)
    event = b.event(b.send(defender, "timeout", game_id), "TimedOut")  # anyone, even the winner
    assert (event["status"], event["loser"]) == (STATUS["challenger_timed_out"], challenger.address)
    assert b.outcome(game_id) == (STATUS["challenger_timed_out"], 0, seq[0], seq[8])
    b.assert_refused("bisection: not the challenger's turn", challenger, "choose", game_id, 0, values)
    b.assert_refused("bisection: not the defender's turn", defender, "post", game_id, values)
    b.assert_refused("bisection: game not running", challenger, "timeout", game_id)


def test_the_clock_edges(b, host, defender, challenger, outsider) -> None:
    """A move at its deadline counts; timeout only after it; a late move is refused and the late party loses."""
    seq = sequence(8)
    game_id, receipt = open_game(b, host, defender, challenger, seq, 2)
    assert b.game(game_id).deadline == b.timestamp_of(receipt) + MOVE
    b.set_time(b.game(game_id).deadline)
    b.assert_refused("bisection: deadline not passed", outsider, "timeout", game_id)
    values = defender_values(0, 8, 2, seq)
    receipt = b.send(defender, "post", game_id, values)  # at the deadline: in time
    deadline = b.event(receipt, "Posted")["deadline"]
    assert b.timestamp_of(receipt) + MOVE == deadline == b.game(game_id).deadline
    b.set_time(deadline + 1)
    b.assert_refused("bisection: move too late", challenger, "choose", game_id, 0, values)
    event = b.event(b.send(outsider, "timeout", game_id), "TimedOut")
    assert (event["status"], event["loser"]) == (STATUS["challenger_timed_out"], challenger.address)


def test_a_one_step_game_is_pinned_at_open_and_takes_no_move(b, host, defender, challenger) -> None:
    seq = sequence(1)
    game_id, receipt = open_game(b, host, defender, challenger, seq, 2)
    pinned = b.event(receipt, "Pinned")
    assert (pinned["index"], pinned["c_lo"], pinned["c_hi"]) == (0, seq[0], seq[1])
    assert b.outcome(game_id) == (STATUS["pinned"], 0, seq[0], seq[1])
    assert b.split_points(game_id) == []
    b.assert_refused("bisection: not the defender's turn", defender, "post", game_id, [])
    b.set_time(b.timestamp_of(receipt) + 10 * MOVE)
    b.assert_refused("bisection: game not running", challenger, "timeout", game_id)


# ---------------------------------------------------------------- whole games


@pytest.mark.parametrize(("n", "arity", "d"), [(10, 3, 4), (64, 4, 1), (100, 16, 37)])
def test_honest_challenger_pins_the_first_divergence(b, host, defender, challenger, n, arity, d) -> None:
    honest = sequence(n)
    liar = diverged(honest, d)
    game_id, _ = open_game(b, host, defender, challenger, liar, arity)
    assert play(b, game_id, defender, challenger, liar, honest, arity) <= max_rounds(n, arity)
    assert b.outcome(game_id) == (STATUS["pinned"], d - 1, honest[d - 1], liar[d])
    b.assert_refused("bisection: not the defender's turn", defender, "post", game_id, [])
    b.assert_refused("bisection: not the challenger's turn", challenger, "choose", game_id, 0, [])
    b.set_time(b.game(game_id).deadline + 10 * MOVE)
    b.assert_refused("bisection: game not running", challenger, "timeout", game_id)


def test_every_move_is_an_event_and_the_worst_case_takes_ceil_log_rounds(b, host, defender, challenger) -> None:
    """n = 27, k = 3 with the divergence at the last step: exactly 3 rounds, each Posted and Chosen decoded."""
    honest = sequence(27)
    liar = diverged(honest, 27)
    game_id, _ = open_game(b, host, defender, challenger, liar, 3)
    lo, hi = 0, 27
    for round_ in range(1, max_rounds(27, 3) + 1):
        values = defender_values(lo, hi, 3, liar)
        posted = b.event(b.send(defender, "post", game_id, values), "Posted")
        assert (posted["game_id"], posted["round"], posted["lo"], posted["hi"]) == (game_id, round_, lo, hi)
        assert list(posted["values"]) == values
        receipt = b.send(challenger, "choose", game_id, 2, values)
        chosen = b.event(receipt, "Chosen")
        lo, hi = split_points(lo, hi, 3)[2:4]
        assert (chosen["round"], chosen["part"], chosen["lo"], chosen["hi"]) == (round_, 2, lo, hi)
        assert (chosen["c_lo"], chosen["c_hi"]) == (liar[lo], liar[27])
    assert (round_, chosen["deadline"]) == (3, 0)
    pinned = b.event(receipt, "Pinned")
    assert (pinned["game_id"], pinned["index"], pinned["c_lo"], pinned["c_hi"]) == (game_id, 26, honest[26], liar[27])
