"""Bisection.vy, the level-2 game: attacks first (a defender that stalls the interval, a challenger
out of range, replayed moves, a forged host, moves after a timeout or the end), then the clock's
exact edges and whole games read back from decoded events. The random games are in
test_bisection_stateful.py."""

from __future__ import annotations

import ape
import pytest
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from protocol.bisection import challenger_part, defender_values, max_rounds, split_points

MOVE = 100
STATUS = {"defender": 1, "challenger": 2, "pinned": 3, "defender_timed_out": 4, "challenger_timed_out": 5}


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
def bisection(project, host):
    contract = host.deploy(project.Bisection)
    contract.wire([host], sender=host)
    return contract


def open_game(bisection, host, defender, challenger, seq, arity, n=None):
    n = len(seq) - 1 if n is None else n
    receipt = bisection.open_game(defender, challenger, seq[0], seq[-1], n, arity, MOVE, sender=host)
    return next(iter(receipt.decode_logs(bisection.GameOpened))).game_id, receipt


def play(bisection, game_id, defender, challenger, defender_seq, challenger_seq, arity):
    """Play a game to its end with both parties answering from their own sequences; returns the rounds."""
    rounds = 0
    while bisection.games(game_id).status == STATUS["defender"]:
        game = bisection.games(game_id)
        values = defender_values(game.lo, game.hi, arity, defender_seq)
        bisection.post(game_id, values, sender=defender)
        part = challenger_part(game.lo, game.hi, arity, values, challenger_seq)
        bisection.choose(game_id, part, values, sender=challenger)
        rounds += 1
    return rounds


# ---------------------------------------------------------------- the split formula


@given(lo=st.integers(0, 2**64), length=st.integers(2, 2**64), arity=st.integers(2, 32))
def test_split_points_strictly_increase_and_every_part_shrinks(lo: int, length: int, arity: int) -> None:
    points = split_points(lo, lo + length, arity)
    assert points[0] == lo and points[-1] == lo + length
    assert len(points) == min(arity, length) + 1
    assert all(a < b for a, b in zip(points, points[1:]))
    assert max(b - a for a, b in zip(points, points[1:])) <= -(-length // min(arity, length)) < length


@given(n=st.integers(1, 10**6), arity=st.integers(2, 32))
def test_max_rounds_is_ceil_log(n: int, arity: int) -> None:
    rounds = max_rounds(n, arity)
    assert arity**rounds >= n and (rounds == 0 or arity ** (rounds - 1) < n)


def test_split_points_on_chain_match_the_model(bisection, host, defender, challenger) -> None:
    for n, arity in ((2, 2), (10, 3), (7, 16), (4_096, 16), (65, 4), (2**64, 32)):
        # two stand-in commitments: only the points matter here
        game_id, _ = open_game(bisection, host, defender, challenger, [word("a", 0), word("b", 1)], arity, n=n)
        assert list(bisection.split_points(game_id)) == split_points(0, n, arity)


# ---------------------------------------------------------------- attacks


def test_defender_cannot_post_a_split_that_keeps_the_interval(bisection, host, defender, challenger) -> None:
    """The points are the contract's, not the defender's: it can only fill exactly parts - 1 of them, with
    non-zero words, so every round shrinks the interval."""
    seq = sequence(10)
    game_id, _ = open_game(bisection, host, defender, challenger, seq, 4)
    for count in (0, 2, 4, 5):  # parts - 1 = 3
        with ape.reverts("bisection: wrong number of values"):
            bisection.post(game_id, [seq[1]] * count, sender=defender)
    with ape.reverts("bisection: zero commitment"):
        bisection.post(game_id, [seq[2], b"\x00" * 32, seq[7]], sender=defender)
    points = list(bisection.split_points(game_id))
    assert points == [0, 2, 5, 7, 10]  # whichever part the challenger picks is shorter than the interval
    values = defender_values(0, 10, 4, seq)
    bisection.post(game_id, values, sender=defender)
    bisection.choose(game_id, 3, values, sender=challenger)
    game = bisection.games(game_id)
    assert (game.lo, game.hi) == (7, 10) and game.c_lo == seq[7] and game.c_hi == seq[10]


def test_challenger_part_out_of_range_is_refused(bisection, host, defender, challenger) -> None:
    seq = sequence(9)
    game_id, _ = open_game(bisection, host, defender, challenger, seq, 3)
    values = defender_values(0, 9, 3, seq)
    bisection.post(game_id, values, sender=defender)
    for part in (3, 4, 2**256 - 1):
        with ape.reverts("bisection: part out of range"):
            bisection.choose(game_id, part, values, sender=challenger)
    bisection.choose(game_id, 2, values, sender=challenger)
    assert bisection.games(game_id).lo == 6


def test_challenger_cannot_substitute_values(bisection, host, defender, challenger) -> None:
    """The challenger must take the ends of its part from what the defender posted."""
    seq = sequence(8)
    game_id, _ = open_game(bisection, host, defender, challenger, seq, 2)
    values = defender_values(0, 8, 2, seq)
    bisection.post(game_id, values, sender=defender)
    with ape.reverts("bisection: values differ from the posted ones"):
        bisection.choose(game_id, 1, [word("forged", 4)], sender=challenger)
    with ape.reverts("bisection: values differ from the posted ones"):
        bisection.choose(game_id, 0, [], sender=challenger)


def test_replayed_moves_are_refused(bisection, host, defender, challenger) -> None:
    seq = sequence(16)
    game_id, _ = open_game(bisection, host, defender, challenger, seq, 2)
    first = defender_values(0, 16, 2, seq)
    bisection.post(game_id, first, sender=defender)
    with ape.reverts("bisection: not the defender's turn"):
        bisection.post(game_id, first, sender=defender)
    bisection.choose(game_id, 0, first, sender=challenger)
    with ape.reverts("bisection: not the challenger's turn"):
        bisection.choose(game_id, 0, first, sender=challenger)
    second = defender_values(0, 8, 2, seq)
    bisection.post(game_id, second, sender=defender)
    # the first round's values (and its choice) replayed in the second round
    with ape.reverts("bisection: values differ from the posted ones"):
        bisection.choose(game_id, 0, first, sender=challenger)
    bisection.choose(game_id, 1, second, sender=challenger)
    assert (bisection.games(game_id).lo, bisection.games(game_id).hi) == (4, 8)


def test_only_a_wired_host_opens_games_and_the_host_is_the_caller(project, bisection, host, defender, challenger,
                                                                  outsider) -> None:
    seq = sequence(4)
    with ape.reverts("bisection: not a host"):
        bisection.open_game(defender, challenger, seq[0], seq[4], 4, 2, MOVE, sender=outsider)
    with ape.reverts("bisection: not a host"):
        bisection.open_game(defender, challenger, seq[0], seq[4], 4, 2, MOVE, sender=defender)
    game_id, receipt = open_game(bisection, host, defender, challenger, seq, 2)
    assert bisection.games(game_id).host == host.address
    assert next(iter(receipt.decode_logs(bisection.GameOpened))).host == host.address
    with ape.reverts("bisection: already wired"):
        bisection.wire([outsider], sender=host)
    fresh = host.deploy(project.Bisection)
    with ape.reverts("bisection: not deployer"):
        fresh.wire([outsider], sender=outsider)
    with ape.reverts("bisection: not a host"):  # nobody before wiring
        fresh.open_game(defender, challenger, seq[0], seq[4], 4, 2, MOVE, sender=host)
    with ape.reverts("bisection: zero host"):
        fresh.wire([host, "0x" + "00" * 20], sender=host)
    with ape.reverts("bisection: no host"):
        fresh.wire([], sender=host)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"c_0": b"\x00" * 32}, "bisection: zero commitment"),
        ({"c_n": b"\x00" * 32}, "bisection: zero commitment"),
        ({"n": 0}, "bisection: bad length"),
        ({"n": 2**64 + 1}, "bisection: bad length"),
        ({"arity": 1}, "bisection: bad arity"),
        ({"arity": 33}, "bisection: bad arity"),
        ({"move_seconds": 0}, "bisection: bad move window"),
        ({"move_seconds": 30 * 86_400 + 1}, "bisection: bad move window"),
        ({"challenger": "defender"}, "bisection: defender is the challenger"),
        ({"defender": "0x" + "00" * 20}, "bisection: zero party"),
    ],
)
def test_open_game_bounds(bisection, host, defender, challenger, args, reason) -> None:
    call = {"defender": defender.address, "challenger": challenger.address, "c_0": word("x", 0),
            "c_n": word("x", 1), "n": 8, "arity": 2, "move_seconds": MOVE, **args}  # fmt: skip
    if call["challenger"] == "defender":
        call["challenger"] = defender.address
    with ape.reverts(reason):
        bisection.open_game(*call.values(), sender=host)


def test_moves_from_the_wrong_party_are_refused(bisection, host, defender, challenger, outsider) -> None:
    seq = sequence(6)
    game_id, _ = open_game(bisection, host, defender, challenger, seq, 2)
    values = defender_values(0, 6, 2, seq)
    for who in (challenger, outsider, host):
        with ape.reverts("bisection: not the defender"):
            bisection.post(game_id, values, sender=who)
    with ape.reverts("bisection: not the challenger's turn"):
        bisection.choose(game_id, 0, values, sender=challenger)
    bisection.post(game_id, values, sender=defender)
    for who in (defender, outsider, host):
        with ape.reverts("bisection: not the challenger"):
            bisection.choose(game_id, 0, values, sender=who)
    with ape.reverts("bisection: not the defender's turn"):
        bisection.post(game_id, values, sender=defender)


def test_moves_after_a_timeout_are_refused(bisection, host, defender, challenger, chain) -> None:
    seq = sequence(8)
    game_id, _ = open_game(bisection, host, defender, challenger, seq, 2)
    values = defender_values(0, 8, 2, seq)
    receipt = bisection.post(game_id, values, sender=defender)
    deadline = next(iter(receipt.decode_logs(bisection.Posted))).deadline
    chain.pending_timestamp = deadline + 1
    receipt = bisection.timeout(game_id, sender=defender)  # anyone, even the winner
    event = next(iter(receipt.decode_logs(bisection.TimedOut)))
    assert (event.status, event.loser) == (STATUS["challenger_timed_out"], challenger.address)
    assert bisection.outcome_of(game_id) == (STATUS["challenger_timed_out"], 0, seq[0], seq[8])
    with ape.reverts("bisection: not the challenger's turn"):
        bisection.choose(game_id, 0, values, sender=challenger)
    with ape.reverts("bisection: not the defender's turn"):
        bisection.post(game_id, values, sender=defender)
    with ape.reverts("bisection: game not running"):
        bisection.timeout(game_id, sender=challenger)


def test_the_clock_edges(bisection, host, defender, challenger, outsider, chain) -> None:
    """A move at its deadline counts; timeout only after it; a late move is refused and the late party loses."""
    seq = sequence(8)
    game_id, receipt = open_game(bisection, host, defender, challenger, seq, 2)
    assert bisection.games(game_id).deadline == chain.blocks[receipt.block_number].timestamp + MOVE
    values = defender_values(0, 8, 2, seq)
    receipt = bisection.post(game_id, values, sender=defender)
    deadline = next(iter(receipt.decode_logs(bisection.Posted))).deadline
    assert deadline == chain.blocks[receipt.block_number].timestamp + MOVE
    chain.pending_timestamp = deadline
    receipt = bisection.choose(game_id, 0, values, sender=challenger)  # at the deadline: in time
    assert chain.blocks[receipt.block_number].timestamp == deadline
    deadline = next(iter(receipt.decode_logs(bisection.Chosen))).deadline
    assert deadline == bisection.games(game_id).deadline
    chain.pending_timestamp = deadline
    with ape.reverts("bisection: deadline not passed"):
        bisection.timeout(game_id, sender=outsider)
    chain.pending_timestamp = max(chain.pending_timestamp, deadline + 1)
    with ape.reverts("bisection: move too late"):
        bisection.post(game_id, defender_values(0, 4, 2, seq), sender=defender)
    receipt = bisection.timeout(game_id, sender=outsider)
    event = next(iter(receipt.decode_logs(bisection.TimedOut)))
    assert (event.status, event.loser) == (STATUS["defender_timed_out"], defender.address)
    assert bisection.outcome_of(game_id) == (STATUS["defender_timed_out"], 0, seq[0], seq[4])


def test_a_one_step_game_is_pinned_at_open_and_takes_no_move(bisection, host, defender, challenger, chain) -> None:
    seq = sequence(1)
    game_id, receipt = open_game(bisection, host, defender, challenger, seq, 2)
    pinned = next(iter(receipt.decode_logs(bisection.Pinned)))
    assert (pinned.index, pinned.c_lo, pinned.c_hi) == (0, seq[0], seq[1])
    assert bisection.outcome_of(game_id) == (STATUS["pinned"], 0, seq[0], seq[1])
    assert list(bisection.split_points(game_id)) == []
    with ape.reverts("bisection: not the defender's turn"):
        bisection.post(game_id, [], sender=defender)
    chain.pending_timestamp += 10 * MOVE
    with ape.reverts("bisection: game not running"):
        bisection.timeout(game_id, sender=challenger)


# ---------------------------------------------------------------- whole games


@pytest.mark.parametrize(("n", "arity", "d"), [(10, 3, 4), (64, 2, 64), (64, 4, 1), (100, 16, 37), (7, 32, 7)])
def test_honest_challenger_pins_the_first_divergence(bisection, host, defender, challenger, n, arity, d) -> None:
    honest = sequence(n)
    liar = diverged(honest, d)
    game_id, _ = open_game(bisection, host, defender, challenger, liar, arity)
    rounds = play(bisection, game_id, defender, challenger, liar, honest, arity)
    assert rounds <= max_rounds(n, arity)
    assert bisection.outcome_of(game_id) == (STATUS["pinned"], d - 1, honest[d - 1], liar[d])


def test_every_move_is_an_event_and_the_worst_case_takes_ceil_log_rounds(bisection, host, defender,
                                                                         challenger) -> None:
    """n = 27, k = 3 with the divergence at the last step: exactly 3 rounds, each Posted and Chosen decoded."""
    honest = sequence(27)
    liar = diverged(honest, 27)
    game_id, _ = open_game(bisection, host, defender, challenger, liar, 3)
    lo, hi = 0, 27
    for round_ in (1, 2, 3):
        values = defender_values(lo, hi, 3, liar)
        posted = next(iter(bisection.post(game_id, values, sender=defender).decode_logs(bisection.Posted)))
        assert (posted.game_id, posted.round, posted.lo, posted.hi) == (game_id, round_, lo, hi)
        assert list(posted.values) == values
        receipt = bisection.choose(game_id, 2, values, sender=challenger)
        chosen = next(iter(receipt.decode_logs(bisection.Chosen)))
        lo, hi = split_points(lo, hi, 3)[2:4]
        assert (chosen.round, chosen.part, chosen.lo, chosen.hi) == (round_, 2, lo, hi)
        assert chosen.c_hi == liar[27]
    assert round_ == max_rounds(27, 3)
    pinned = next(iter(receipt.decode_logs(bisection.Pinned)))
    assert (pinned.game_id, pinned.index, pinned.c_lo, pinned.c_hi) == (game_id, 26, honest[26], liar[27])
    assert chosen.deadline == 0
