"""TensorDescent.vy, the element-narrowing game, against the Python model of protocol/tensor_descent.py.

Defenders: honest (its tensor is the true output), one whose elements differ in a few bits ("bits"),
one with non-zero bytes past the tensor's end in its last chunk ("tail"), one with a non-zero
padding leaf ("padding"). Checked:
- an honest challenger always ends the game against a dishonest defender either PINNED at a chunk
  whose bytes differ from the true output's, or with the defender wrong about padding; an honest
  defender is never found wrong about padding (full games, `test_an_honest_challenger_...`);
- a hypothesis state machine interleaves both parties' moves (honest, forged, malformed), moves by
  the wrong party or out of turn, waiting past deadlines and `timeout` calls by anyone; the model
  predicts every effect or exact revert reason, and the chain's game equals the model's after every
  step; the party that misses its move loses.
Moves go through web3 on ape's chain (no ape call overhead); refusals are eth_calls on the pending
block (the next block's timestamp, nothing mined)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from protocol import tensor_commit as tc
from protocol import tensor_descent as td

from ..engine.helpers import examples

MOVE = 100
GAS = 2_000_000
NONE, DEFENDER, CHALLENGER, PINNED, DEFENDER_TIMED_OUT, CHALLENGER_TIMED_OUT, PADDING_WRONG = range(7)
RUNNING = (DEFENDER, CHALLENGER)
GAME_FIELDS = ("host", "defender", "challenger", "tensor_root", "code", "dims", "byte_length", "chunk_count", "levels",
               "move_seconds", "height", "position", "node", "status", "round", "deadline", "children_hash", "chunk")  # fmt: skip


class Descent:
    """The deployed contract through web3 on ape's chain."""

    def __init__(self, chain: Any, contract: Any):
        self.chain = chain
        self.w3 = chain.provider.web3
        abi = [entry.model_dump(mode="json", by_alias=True) for entry in contract.contract_type.abi]
        self.fn = self.w3.eth.contract(address=contract.address, abi=abi).functions

    def send(self, sender: Any, name: str, *args: Any) -> int:
        """Send a move; returns its block's timestamp (a revert fails the test)."""
        tx = getattr(self.fn, name)(*args).transact({"from": sender.address, "gas": GAS})
        receipt = self.w3.eth.get_transaction_receipt(tx)
        assert receipt.status == 1, f"{name}{args!r} reverted"
        return int(self.w3.eth.get_block(receipt.blockNumber).timestamp)

    def refusal(self, sender: Any, name: str, *args: Any) -> str | None:
        """The revert reason of a move in the next block, or None when it would pass."""
        try:
            getattr(self.fn, name)(*args).call({"from": sender.address, "gas": GAS}, block_identifier="pending")
        except TransactionFailed as exc:
            return str(exc.args[0]).removeprefix("execution reverted: ")
        return None

    def game(self, game_id: int) -> dict[str, Any]:
        return dict(zip(GAME_FIELDS, self.fn.games(game_id).call(), strict=True))

    def now(self) -> int:
        """The timestamp the next block will have."""
        return int(self.chain.pending_timestamp)

    def wait_until(self, timestamp: int) -> None:
        if timestamp > self.chain.pending_timestamp:
            self.chain.pending_timestamp = timestamp


@pytest.fixture(scope="module")
def descent(chain, project, deployer) -> Descent:
    contract = deployer.deploy(project.TensorDescent)
    contract.wire([deployer.address], sender=deployer)
    return Descent(chain, contract)


def _flip(word: bytes, bit: int) -> bytes:
    out = bytearray(word)
    out[bit // 8] ^= 1 << (7 - bit % 8)
    return bytes(out)


@dataclass
class Claim:
    """A defender's output: its chunks (the last possibly with bytes past the end) and its tree."""

    array: np.ndarray
    kind: str
    chunks: list[bytes]
    levels: list[list[bytes]]
    true_chunks: list[bytes]
    true_levels: list[list[bytes]]
    root: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.root = tc.root_of_data(tc.dtype_code(self.array), self.array.shape, self.levels[-1][0])

    @property
    def code(self) -> int:
        return tc.dtype_code(self.array)

    @property
    def byte_length(self) -> int:
        return self.array.size * tc.DTYPE_CODES[self.code][2]

    def tail_dirty(self, position: int) -> bool:
        used = self.byte_length - 32 * position
        return used < 32 and any(self.chunks[position][used:])


@st.composite
def claims(draw) -> Claim:
    """A random output tensor and a defender's claim about it (honest or wrong in one of three ways)."""
    dtype = np.dtype(draw(st.sampled_from(["float32", "float32", "int64", "bool"])))
    size = draw(st.integers(1, 200))
    raw = draw(st.binary(min_size=size * dtype.itemsize, max_size=size * dtype.itemsize))
    array = (np.frombuffer(raw, dtype=np.uint8) & 1).astype(np.bool_) if dtype == np.bool_ else np.frombuffer(raw, dtype=dtype).copy()
    true_chunks = tc.chunks_of(array)
    count, used = len(true_chunks), len(tc.element_bytes(array)) - 32 * (len(true_chunks) - 1)
    kinds = ["honest", "bits", "bits"] + (["tail"] if used < 32 else []) + (["padding"] if count & (count - 1) else [])
    kind = draw(st.sampled_from(kinds))
    chunks = list(true_chunks)
    leaves = [tc.chunk_leaf(c) for c in chunks]
    if kind == "bits":  # a few element bits differ (never the bytes past the end)
        for bit in draw(st.sets(st.integers(0, 8 * len(tc.element_bytes(array)) - 1), min_size=1, max_size=3)):
            chunks[bit // 256] = _flip(chunks[bit // 256], bit % 256)
    elif kind == "tail":
        chunks[-1] = _flip(chunks[-1], 8 * used + draw(st.integers(0, 8 * (32 - used) - 1)))
    leaves = [tc.chunk_leaf(c) for c in chunks] + [tc.ZERO] * (tc.width_of(count) - count)
    if kind == "padding":
        leaves[draw(st.integers(count, len(leaves) - 1))] = b"\x01" * 32
    true_levels = td.tree_levels([tc.chunk_leaf(c) for c in true_chunks])
    return Claim(array, kind, chunks, td.tree_levels(leaves), true_chunks, true_levels)


def _open(descent: Descent, host: Any, defender: Any, challenger: Any, claim: Claim, levels: int) -> tuple[int, int]:
    game_id = descent.fn.game_count().call() + 1
    at = descent.send(host, "open_game", defender.address, challenger.address, claim.root, claim.code,
                      list(claim.array.shape), levels, MOVE)  # fmt: skip
    return game_id, at


@settings(max_examples=examples(5), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claim=claims(), levels=st.integers(1, 3))
def test_an_honest_challenger_reaches_a_chunk_whose_bits_differ(descent, deployer, worker, verifier, claim, levels) -> None:
    true_root = tc.root_of_data(claim.code, claim.array.shape, claim.true_levels[-1][0])
    if claim.root == true_root:  # an honest defender: nothing to dispute
        assert claim.kind == "honest"
        return
    game_id, _ = _open(descent, deployer, worker, verifier, claim, levels)
    height, position = len(claim.levels) - 1, 0
    while True:
        if height == 0:
            descent.send(worker, "reveal", game_id, claim.chunks[position])
            break
        posted = td.descendants(claim.levels, height, position, levels)
        descent.send(worker, "post", game_id, posted)
        child = td.honest_choice(claim.true_levels, height, position, levels, posted)
        assert child is not None  # the posted nodes fold to a node that differs from the true one
        descent.send(verifier, "choose", game_id, child, posted)
        steps = td.steps_at(height, levels)
        height, position = height - steps, (position << steps) | child
        if descent.game(game_id)["status"] != DEFENDER:
            break
    assert claim.kind != "honest"
    game = descent.game(game_id)
    if claim.kind == "bits":
        assert game["status"] == PINNED and game["position"] == position
        assert bytes(game["chunk"]) == claim.chunks[position] != claim.true_chunks[position]
    else:  # a non-zero padding leaf or bytes past the end: the defender is wrong about padding
        assert game["status"] == PADDING_WRONG


def test_only_a_host_opens_and_the_hosts_are_fixed_once(chain, project, deployer, worker, verifier) -> None:
    d = Descent(chain, deployer.deploy(project.TensorDescent))
    good = {"defender": worker.address, "challenger": verifier.address, "root": b"\x01" * 32, "code": 1,
            "dims": [3, 5], "levels": 2, "move": MOVE}  # fmt: skip

    def refusal(sender: Any, **changes: Any) -> str | None:
        return d.refusal(sender, "open_game", *{**good, **changes}.values())

    assert refusal(deployer) == "descent: not a host"
    assert d.refusal(worker, "wire", [worker.address]) == "descent: not deployer"
    d.send(deployer, "wire", [deployer.address])
    assert d.refusal(deployer, "wire", [worker.address]) == "descent: already wired"
    assert refusal(worker) == "descent: not a host"
    for changes, reason in [({"challenger": worker.address}, "descent: defender is the challenger"),
                            ({"root": bytes(32)}, "descent: zero root"), ({"dims": [3, 0]}, "descent: empty tensor"),
                            ({"levels": 0}, "descent: bad levels"), ({"levels": 6}, "descent: bad levels"),
                            ({"move": 0}, "descent: bad move window"), ({"code": 9}, "commitments: unknown dtype"),
                            ({"dims": [2**32]}, "commitments: dimension too large")]:  # fmt: skip
        assert refusal(deployer, **changes) == reason, changes
    assert refusal(deployer) is None


def test_an_all_padding_subtree_above_the_leaves_is_its_hashed_root_not_zero(descent, deployer, worker, verifier) -> None:
    """5 chunks in a tree of width 8: the node over chunks 6 and 7 is keccak(0x11 ‖ 0 ‖ 0), which a
    challenger cannot dispute; a defender that puts the zero word there is wrong about padding."""
    from eth_hash.auto import keccak

    array = np.zeros(33, dtype=np.float32)
    true = td.tree_levels([tc.chunk_leaf(c) for c in tc.chunks_of(array)])
    assert true[1][3] == td.padding_node(1) != tc.ZERO
    game_id = descent.fn.game_count().call() + 1
    descent.send(deployer, "open_game", worker.address, verifier.address, tc.tensor_root(array), 1, [33], 2, MOVE)
    descent.send(worker, "post", game_id, true[1])
    assert descent.refusal(verifier, "choose", game_id, 3, true[1]) == "descent: padding is agreed"
    assert descent.refusal(verifier, "choose", game_id, 2, true[1]) is None  # chunk 4 is real
    zeroed = true[1][:3] + [tc.ZERO]
    upper = [keccak(tc.TENSOR_NODE + zeroed[0] + zeroed[1]), keccak(tc.TENSOR_NODE + zeroed[2] + zeroed[3])]
    root = tc.root_of_data(1, [33], keccak(tc.TENSOR_NODE + upper[0] + upper[1]))
    game_id += 1
    descent.send(deployer, "open_game", worker.address, verifier.address, root, 1, [33], 2, MOVE)
    descent.send(worker, "post", game_id, zeroed)
    descent.send(verifier, "choose", game_id, 3, zeroed)
    assert descent.game(game_id)["status"] == PADDING_WRONG


def test_the_widest_tensor_descends_to_its_last_chunk(descent, deployer, worker, verifier) -> None:
    """2**40 chunks (2**43 binary32 values, the most a game takes): every packed field at its widest
    (height 40, position 2**40 - 1, byte length 2**45, the longest move window). The true tensor is all
    zeros, so each level of its tree is one repeated node; the claim differs in the last chunk only."""
    from eth_hash.auto import keccak

    height, dims, levels = 40, [2**31, 2**12], 5
    zero_chunk, last_chunk = bytes(32), bytes(31) + b"\x01"
    same, right = [tc.chunk_leaf(zero_chunk)], [tc.chunk_leaf(last_chunk)]  # the all-zero subtree; the claim's rightmost
    for _ in range(height):
        same.append(keccak(tc.TENSOR_NODE + same[-1] + same[-1]))
        right.append(keccak(tc.TENSOR_NODE + same[-2] + right[-1]))
    root = tc.root_of_data(1, dims, right[-1])
    game_id = descent.fn.game_count().call() + 1
    descent.send(deployer, "open_game", worker.address, verifier.address, root, 1, dims, levels, 30 * 86_400)
    assert descent.refusal(deployer, "open_game", worker.address, verifier.address, root, 1, [2**31, 2**12 + 1],
                           levels, MOVE) == "commitments: tree too large"  # fmt: skip
    while height:
        height -= levels
        posted = [same[height]] * (2**levels - 1) + [right[height]]
        descent.send(worker, "post", game_id, posted)
        descent.send(verifier, "choose", game_id, 2**levels - 1, posted)
    descent.send(worker, "reveal", game_id, last_chunk)
    game = descent.game(game_id)
    assert (game["status"], game["height"], game["position"], game["round"]) == (PINNED, 0, 2**40 - 1, 9)
    assert (game["byte_length"], game["chunk_count"], game["dims"], game["move_seconds"]) == (2**45, 2**40, dims, 30 * 86_400)
    assert bytes(game["chunk"]) == last_chunk and bytes(game["node"]) == right[0]


@dataclass
class Model:
    """What the contract should hold for the game under play."""

    game_id: int
    status: int
    height: int
    position: int
    node: bytes
    round: int
    deadline: int
    posted: list[bytes] | None = None
    chunk: bytes = tc.ZERO


class DescentMachine(RuleBasedStateMachine):
    d: Descent
    host: Any
    defender: Any
    challenger: Any
    outsider: Any

    @initialize(claim=claims(), levels=st.integers(1, 3), honest=st.booleans())
    def open(self, claim: Claim, levels: int, honest: bool) -> None:
        self.claim, self.levels, self.honest = claim, levels, honest
        game_id, at = _open(self.d, self.host, self.defender, self.challenger, claim, levels)
        self.m = Model(game_id, DEFENDER, len(claim.levels) - 1, 0, tc.ZERO, 1, at + MOVE)

    def _late(self) -> bool:
        return self.d.now() > self.m.deadline

    def _turn_reason(self, whose: int, who: Any, sender: Any) -> str | None:
        """The reason a move by `sender` is refused before its own checks (None when it may go on)."""
        party = "defender" if whose == DEFENDER else "challenger"
        if self.m.status != whose:
            return f"descent: not the {party}'s turn"
        if sender.address != who.address:
            return f"descent: not the {party}"
        if self._late():
            return "descent: move too late"
        return None

    def _expect(self, reason: str | None, sender: Any, name: str, *args: Any) -> bool:
        """Check the refusal reason; when the move is expected to pass, send it. True when sent."""
        assert self.d.refusal(sender, name, *args) == reason, (name, args)
        if reason is None:
            self.at = self.d.send(sender, name, *args)
            return True
        return False

    @rule(variation=st.sampled_from([None, None, None, "flip", "count", "other move", "intruder"]), bit=st.integers(0, 255))
    def defender_moves(self, variation: str | None, bit: int) -> None:
        m, claim = self.m, self.claim
        sender = self.outsider if variation == "intruder" else self.defender
        reason = self._turn_reason(DEFENDER, self.defender, sender)
        at_leaf = m.height == 0
        if (variation == "other move") != at_leaf:  # a reveal at a leaf, or the wrong move where a post is due
            chunk = claim.chunks[m.position] if at_leaf else claim.true_chunks[0]
            if variation == "flip":
                chunk = _flip(chunk, bit)
            if reason is None and not at_leaf:
                reason = "descent: not at a leaf"
            elif reason is None and variation == "flip":
                reason = "descent: chunk is not the leaf"
            if self._expect(reason, sender, "reveal", m.game_id, chunk):
                m.chunk, m.deadline = chunk, 0
                m.status = PADDING_WRONG if claim.tail_dirty(m.position) else PINNED
            return
        posted = td.descendants(claim.levels, m.height, m.position, self.levels) if m.height else [claim.levels[0][0]] * 2
        if variation == "flip":
            posted[bit % len(posted)] = _flip(posted[bit % len(posted)], bit)
        elif variation == "count":
            posted = posted[:-1]
        if reason is None and at_leaf:
            reason = "descent: reveal the chunk"
        elif reason is None and variation == "count":
            reason = "descent: wrong number of children"
        elif reason is None and variation == "flip":
            reason = "descent: children do not fold to the node"
        if self._expect(reason, sender, "post", m.game_id, posted):
            m.posted, m.status, m.deadline = posted, CHALLENGER, self.at + MOVE

    @rule(variation=st.sampled_from([None, None, None, "values", "range", "intruder"]), pick=st.integers(0, 31))
    def challenger_moves(self, variation: str | None, pick: int) -> None:
        m, claim = self.m, self.claim
        sender = self.outsider if variation == "intruder" else self.challenger
        reason = self._turn_reason(CHALLENGER, self.challenger, sender)
        posted = m.posted or [claim.levels[0][0]] * 2
        child = pick % len(posted)
        if self.honest and m.posted is not None:
            honest = td.honest_choice(claim.true_levels, m.height, m.position, self.levels, posted)
            child = child if honest is None else honest
        sent = list(posted)
        if variation == "values":
            sent[0] = _flip(sent[0], pick)
            reason = reason or "descent: children differ from the posted ones"
        elif variation == "range":
            child = len(posted)
            reason = reason or "descent: child out of range"
        steps = td.steps_at(m.height, self.levels)
        height, position = m.height - steps, (m.position << steps) | child
        padding = position << height >= len(claim.true_chunks)
        if reason is None and padding and posted[child] == td.padding_node(height):
            reason = "descent: padding is agreed"
        if self._expect(reason, sender, "choose", m.game_id, child, sent):
            m.height, m.position, m.node, m.posted = height, position, posted[child], None
            if padding:
                m.status, m.deadline = PADDING_WRONG, 0
            else:
                m.status, m.round, m.deadline = DEFENDER, m.round + 1, self.at + MOVE

    @rule(offset=st.sampled_from([0, 1, MOVE // 2]))
    def wait(self, offset: int) -> None:
        """Let time pass up to the deadline (offset 0: exactly at it, still in time) or past it."""
        if self.m.status in RUNNING:
            self.d.wait_until(self.m.deadline + offset)

    @rule()
    def timeout(self) -> None:
        m = self.m
        reason = None
        if m.status not in RUNNING:
            reason = "descent: game not running"
        elif not self._late():
            reason = "descent: deadline not passed"
        if self._expect(reason, self.outsider, "timeout", m.game_id):
            m.status = DEFENDER_TIMED_OUT if m.status == DEFENDER else CHALLENGER_TIMED_OUT
            m.posted = None

    @invariant()
    def chain_equals_model(self) -> None:
        if not hasattr(self, "m"):
            return
        game, m = self.d.game(self.m.game_id), self.m
        assert (game["status"], game["height"], game["position"], game["round"], bytes(game["chunk"])) == (
            m.status, m.height, m.position, m.round, m.chunk)  # fmt: skip
        assert bytes(game["node"]) == m.node
        if m.status in RUNNING:
            assert game["deadline"] == m.deadline

    @invariant()
    def honest_parties_never_lose_on_the_merits(self) -> None:
        if not hasattr(self, "m"):
            return
        if self.claim.kind == "honest":
            assert self.m.status != PADDING_WRONG
        if self.m.status == PINNED and self.honest and self.claim.kind != "honest":
            assert self.m.chunk != self.claim.true_chunks[self.m.position]


def test_descent_state_machine(descent, deployer, worker, verifier, accounts) -> None:
    DescentMachine.d, DescentMachine.host, DescentMachine.defender = descent, deployer, worker
    DescentMachine.challenger, DescentMachine.outsider = verifier, accounts[6]
    run_state_machine_as_test(DescentMachine, settings=settings(
        max_examples=examples(4), stateful_step_count=12, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))  # fmt: skip
