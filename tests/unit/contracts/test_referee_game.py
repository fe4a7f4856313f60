"""RefereeGame.vy, the level-2/3 host, played to a ruling on anvil over a real recorded portable MLP step
(tests/unit/portable/test_step_record.py's `mlp`): the step bisection over per-step state roots, the
agreed header's (S, L), the operation bisection over the prefix roots, entry j revealed against S and
P_{j-1} -> P_j, the descent over its output to one chunk, and the element recomputed from inputs proven
against the agreed state and P_{j-1} (contracts Bisection.vy, TensorDescent.vy and ElementReferee.vy).

- An honest defender against a challenger that disputes a correct ReLU or linear entry wins; a defender
  whose record has one output element of that entry wrong loses to the honest challenger (the bisections
  and the descent follow the first difference down to the wrong element).
- At every stage the party that owes the move and lets its clock run out loses: in the sub-games
  through their own `timeout` and `advance`, at the host's stages through `timeout`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak

from engine.portable import record
from protocol import bisection as bis
from protocol import tensor_commit as tc
from protocol import tensor_descent as td
from tests.unit.contracts.vyper_harness import compiled

from ..portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)

MOVE = 100
ARITY = 4
LEVELS = 2
RELU, LINEAR = 1, 2  # entries of the MLP step: linear, relu, linear, cross_entropy, …
# host stages
STEPS, RECORD, OPS, ENTRY, OUTPUT, DESCENT, ELEMENT, PROOF, DECIDED, ESCALATED = range(1, 11)
GAME_FIELDS = ("defender", "challenger", "stage", "deadline", "leaf_count", "sub_game", "step", "state_root",
               "skeleton_root", "record_length", "entry", "previous_prefix", "entry_leaf", "skeleton_leaf", "output", "output_size",
               "chunk_index", "chunk", "element", "defender_wrong")  # fmt: skip


def _deploy(w3: Any, path: str, *args: Any) -> Any:
    abi, bytecode = compiled(path)
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": w3.eth.accounts[-1]}))
    assert receipt.status == 1, f"deploying {path} failed"
    return w3.eth.contract(address=receipt.contractAddress, abi=abi)


@pytest.fixture(scope="module")
def contracts(w3: Any) -> dict[str, Any]:
    owner = w3.eth.accounts[-1]
    bisection = _deploy(w3, "contracts/Bisection.vy")
    descent = _deploy(w3, "contracts/TensorDescent.vy")
    referee = _deploy(w3, "contracts/ElementReferee.vy")
    host = _deploy(w3, "contracts/RefereeGame.vy", bisection.address, descent.address, referee.address, ARITY, LEVELS,
                   MOVE)  # fmt: skip
    for game in (bisection, descent):
        w3.eth.wait_for_transaction_receipt(game.functions.wire([host.address]).transact({"from": owner}))
    return {"bisection": bisection, "descent": descent, "host": host}


@pytest.fixture
def chain(w3: Any, contracts: dict[str, Any]) -> Any:
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield w3
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True


@dataclasses.dataclass
class Side:
    """One party's view of the segment: its state roots, its record of the pinned step, its prefix roots."""

    state_roots: list[bytes]
    rec: record.StepRecord

    @property
    def ops(self) -> list[bytes]:
        """c_0 … c_L of the operation bisection: P_{-1} (the empty tree), then P_0 … P_{L-1}."""
        empty = tc.tree_root([tc.ZERO] * self.rec.width, record.RECORD_NODE)
        return [empty, *self.rec.prefix_roots()]


def _corrupt(rec: record.StepRecord, j: int, element: int) -> record.StepRecord:
    """The record with one bit of output 0's element `element` of entry j flipped (all else the same)."""
    entry = rec.entries[j]
    wrong = entry.outputs[0].copy()
    wrong.reshape(-1).view(np.uint32)[element] ^= 1 << 3
    bad = dataclasses.replace(entry, outputs=(wrong, *entry.outputs[1:]), out_roots=(tc.tensor_root(wrong), *entry.out_roots[1:]))
    return dataclasses.replace(rec, entries=[*rec.entries[:j], bad, *rec.entries[j + 1 :]])


@dataclasses.dataclass
class Match:
    """A game on chain between a defender's Side and a challenger that is honest (its own Side) or
    lying (it steers to entry `target`, chunk `target_chunk`)."""

    w3: Any
    contracts: dict[str, Any]
    before: bytes  # the agreed checkpoint (state 0)
    skeleton: tuple[bytes, int]
    defender: Side
    truth: Side
    honest_challenger: bool
    target: int
    target_element: int

    def __post_init__(self) -> None:
        self.host = self.contracts["host"]
        self.d, self.c = self.w3.eth.accounts[2], self.w3.eth.accounts[3]
        self.game_id = 0

    def send(self, who: str, contract: str, name: str, *args: Any) -> None:
        sender = self.d if who == "defender" else self.c if who == "challenger" else self.w3.eth.accounts[5]
        tx = getattr(self.contracts[contract].functions, name)(*args).transact({"from": sender, "gas": 8_000_000})
        assert self.w3.eth.wait_for_transaction_receipt(tx, timeout=30).status == 1, f"{name} reverted"

    def game(self) -> dict[str, Any]:
        return dict(zip(GAME_FIELDS, self.host.functions.games(self.game_id).call(), strict=True))

    def stage(self) -> int:
        return self.game()["stage"]

    def ruling(self) -> tuple[bool, bool]:
        return tuple(self.host.functions.ruling_of(self.game_id).call())

    # ---------------------------------------------------------------- the moves, stage by stage

    def open(self) -> None:
        roots = self.defender.state_roots
        self.send("challenger", "host", "open_game", self.d, roots[0], roots[-1], len(roots) - 1, self._leaf_count())
        self.game_id = self.host.functions.game_count().call()

    def _leaf_count(self) -> int:
        tensors, _, _ = tc.read_checkpoint(self.before)
        return 1 + len(tensors)

    def bisect(self, mine: list[bytes], theirs: list[bytes], steer: int, stop_at: str | None) -> bool:
        """Play the running bisection to the pin; the lying challenger picks the part holding `steer`.
        Returns False when a party stopped moving at `stop_at` ("defender" or "challenger")."""
        bisection = self.contracts["bisection"]
        sub = self.game()["sub_game"]
        while True:
            fields = bisection.functions.games(sub).call()
            lo, hi, status = fields[5], fields[6], fields[9]
            if status == 3:
                self.send("anyone", "host", "advance", self.game_id)
                return True
            if stop_at == "defender":
                return False
            values = bis.defender_values(lo, hi, ARITY, mine)
            self.send("defender", "bisection", "post", sub, values)
            if stop_at == "challenger":
                return False
            if self.honest_challenger:
                part = bis.challenger_part(lo, hi, ARITY, values, theirs)
            else:
                points = bis.split_points(lo, hi, ARITY)
                part = next(i for i in range(len(points) - 1) if points[i] <= steer < points[i + 1])
            self.send("challenger", "bisection", "choose", sub, part, values)

    def post_record(self) -> None:
        tensors, header, _ = tc.read_checkpoint(self.before)
        header = dataclasses.replace(header, skeleton_root=self.skeleton[0], record_length=self.skeleton[1])
        path = tc.tree_proof(tc.state_leaves(tensors, header), 0, tc.STATE_NODE)
        self.send("defender", "host", "post_record", self.game_id, header.encode(), path, self.defender.ops[-1])

    def reveal_entry(self) -> None:
        rec, j = self.defender.rec, self.game()["entry"]
        entry = rec.entries[j]
        leaves = [e.skeleton_leaf() for e in rec.entries] + [tc.ZERO] * (rec.width - len(rec.entries))
        self.send("defender", "host", "reveal_entry", self.game_id, entry.skeleton_bytes(),
                  tc.tree_proof(leaves, j, record.RECORD_NODE), list(entry.out_roots), rec.entry_proof(j))  # fmt: skip

    def dispute_output(self) -> None:
        entry = self.defender.rec.entries[self.game()["entry"]]
        self.send("challenger", "host", "dispute_output", self.game_id, 0, entry.skeleton_bytes(), list(entry.out_roots))

    def descend(self, stop_at: str | None) -> bool:
        """Play the descent over output 0 of the pinned entry to the revealed chunk."""
        descent = self.contracts["descent"]
        sub, j = self.game()["sub_game"], self.game()["entry"]
        chunks = tc.chunks_of(self.defender.rec.entries[j].outputs[0])
        levels = td.tree_levels([tc.chunk_leaf(c) for c in chunks])
        true_levels = td.tree_levels([tc.chunk_leaf(c) for c in tc.chunks_of(self.truth.rec.entries[j].outputs[0])])
        target = self.target_element // 8
        while True:
            fields = descent.functions.games(sub).call()
            height, position, status = fields[10], fields[11], fields[13]
            if status == 3:
                self.send("anyone", "host", "advance", self.game_id)
                return True
            if stop_at == "defender":
                return False
            if height == 0:
                self.send("defender", "descent", "reveal", sub, chunks[position])
                continue
            children = td.descendants(levels, height, position, LEVELS)
            self.send("defender", "descent", "post", sub, children)
            if stop_at == "challenger":
                return False
            steps = td.steps_at(height, LEVELS)
            if self.honest_challenger:
                child = td.honest_choice(true_levels, height, position, LEVELS, children)
            else:
                child = (target >> (height - steps)) - (position << steps)
            self.send("challenger", "descent", "choose", sub, child, children)

    def dispute_element(self) -> None:
        self.send("challenger", "host", "dispute_element", self.game_id, self.target_element % 8)

    def prove_element(self) -> None:
        rec, game = self.defender.rec, self.game()
        j, e = game["entry"], 8 * game["chunk_index"] + game["element"]
        entry = rec.entries[j]
        if entry.kernel == "linear":
            k_terms = entry.inputs[1].shape[1]
            width = entry.out_shapes[0][1][-1]
            row, column = divmod(e, width)
            reads = [(row * k_terms, k_terms), (column * k_terms, k_terms), (column, 1)][: len(entry.inputs)]
        else:
            reads = [(e, 1)] * len(entry.inputs)
        proofs = [self._input_proof(j, entry.inputs[k], first, count) for k, (first, count) in enumerate(reads)]
        self.send("defender", "host", "prove_element", self.game_id, entry.skeleton_bytes(), proofs)

    def _input_proof(self, j: int, ref: record.Ref, first: int, count: int) -> tuple:
        rec = self.defender.rec
        if ref.kind == record.OUTPUT:
            source = rec.entries[ref.a]
            array = source.outputs[ref.b]
            key, roots, path = source.skeleton_leaf(), list(source.out_roots), rec.entry_proof(ref.a, j - 1)
        else:
            assert ref.kind == record.STATE
            name = rec.state_names[ref.a]
            array = rec.state_values[name]
            _, root, path = tc.state_tensor_proof(self.before, name, self.skeleton)
            key, roots = keccak(name.encode()), [root]
        run = tc.prove_run(array, first, count)
        return (key, roots, list(path), list(array.shape), run.first, list(run.chunks), list(run.path))

    def play(self, stop: int | None = None, who: str | None = None) -> None:
        """Play the whole game, or up to stage `stop` where `who` stops moving."""
        self.open()
        if not self.bisect(self.defender.state_roots, self.truth.state_roots, 0, who if stop == STEPS else None):
            return
        if stop == RECORD:
            return
        self.post_record()
        if not self.bisect(self.defender.ops, self.truth.ops, self.target, who if stop == OPS else None):
            return
        assert self.game()["entry"] == self.target
        for stage, move in ((ENTRY, self.reveal_entry), (OUTPUT, self.dispute_output)):
            if stop == stage:
                return
            move()
        if not self.descend(who if stop == DESCENT else None):
            return
        assert self.game()["chunk_index"] == self.target_element // 8
        for stage, move in ((ELEMENT, self.dispute_element), (PROOF, self.prove_element)):
            if stop == stage:
                return
            move()


@pytest.fixture(scope="module")
def step(mlp_steps) -> dict[str, Any]:  # noqa: F811
    _, states, records = mlp_steps
    rec = records[0]
    skeleton = (rec.skeleton_root(), len(rec.entries))
    roots = [tc.state_root(s, skeleton) for s in states]
    return {"before": states[0], "skeleton": skeleton, "roots": roots, "rec": rec}


def _match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], wrong: bool, target: int) -> Match:
    rec = step["rec"]
    truth = Side(step["roots"], rec)
    element = rec.entries[target].outputs[0].size - 3  # in the last chunk, not its first element
    if wrong:  # the defender's step output differs from the truth (here: any other root), and so does its record
        defender = Side([step["roots"][0], keccak(b"wrong state 1"), keccak(b"wrong state 2")], _corrupt(rec, target, element))
    else:
        defender = truth
    return Match(chain, contracts, step["before"], step["skeleton"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element)  # fmt: skip


@pytest.mark.parametrize("target", [RELU, LINEAR], ids=["relu", "linear"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_the_game_rules_against_exactly_the_wrong_party(chain, contracts, step, wrong: bool, target: int) -> None:
    rec = step["rec"]
    assert [rec.entries[RELU].kernel, rec.entries[LINEAR].kernel] == ["relu", "linear"]
    assert step["roots"][0] != step["roots"][1]
    match = _match(chain, contracts, step, wrong, target)
    match.play()
    game = match.game()
    assert game["stage"] == DECIDED and game["step"] == 0 and game["entry"] == target
    assert game["skeleton_root"] == step["skeleton"][0] and game["record_length"] == step["skeleton"][1]
    assert match.ruling() == (True, wrong)


# (stage where the party stops, who stops, does the defender lose)
STALLS = [(STEPS, "defender", True), (STEPS, "challenger", False), (RECORD, "defender", True),
          (OPS, "defender", True), (OPS, "challenger", False), (ENTRY, "defender", True), (OUTPUT, "challenger", False),
          (DESCENT, "defender", True), (DESCENT, "challenger", False), (ELEMENT, "challenger", False),
          (PROOF, "defender", True)]  # fmt: skip


@pytest.mark.parametrize(("stop", "who", "defender_loses"), STALLS, ids=[f"{s}-{w}" for s, w, _ in STALLS])
def test_the_party_that_misses_its_move_loses(chain, contracts, step, stop: int, who: str, defender_loses: bool) -> None:
    match = _match(chain, contracts, step, wrong=True, target=RELU)
    match.play(stop, who)
    assert match.stage() == stop and match.ruling() == (False, False)
    if stop in (STEPS, OPS, DESCENT):  # a sub-game: its own timeout, then the host carries it over
        with pytest.raises(Exception, match="sub-game still running"):
            match.host.functions.advance(match.game_id).call()
        _travel(chain, MOVE + 1)
        sub = match.game()["sub_game"]
        match.send("anyone", "bisection" if stop != DESCENT else "descent", "timeout", sub)
        match.send("anyone", "host", "advance", match.game_id)
    else:
        with pytest.raises(Exception, match="deadline not passed"):
            match.host.functions.timeout(match.game_id).call()
        _travel(chain, MOVE + 1)
        match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling() == (True, defender_loses)


def _travel(w3: Any, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def test_moves_out_of_turn_or_with_forged_proofs_are_refused(chain, contracts, step) -> None:
    match = _match(chain, contracts, step, wrong=True, target=RELU)
    match.play(ENTRY, "defender")
    rec, j = match.defender.rec, match.game()["entry"]
    entry = rec.entries[j]
    leaves = [e.skeleton_leaf() for e in rec.entries] + [tc.ZERO] * (rec.width - len(rec.entries))
    skeleton_path = tc.tree_proof(leaves, j, record.RECORD_NODE)
    reveal: Callable[..., Any] = match.host.functions.reveal_entry
    args = (match.game_id, entry.skeleton_bytes(), skeleton_path, list(entry.out_roots), rec.entry_proof(j))
    with pytest.raises(Exception, match="not the defender"):
        reveal(*args).call({"from": match.c})
    other = rec.entries[j + 1]
    with pytest.raises(Exception, match="skeleton not under S"):
        reveal(match.game_id, other.skeleton_bytes(), *args[2:]).call({"from": match.d})
    with pytest.raises(Exception, match="entry does not fill slot j"):
        reveal(match.game_id, entry.skeleton_bytes(), skeleton_path, list(match.truth.rec.entries[j].out_roots),
               rec.entry_proof(j)).call({"from": match.d})  # fmt: skip
    reveal(*args).call({"from": match.d})


def test_an_entry_the_host_cannot_check_escalates(chain, contracts, step) -> None:
    """Entry 0 is the first linear, which reads the batch: no host proof of batch inputs yet, so the game
    leaves the ruling to level 2 (the arbiter) instead of letting an honest defender time out."""
    match = _match(chain, contracts, step, wrong=False, target=0)
    match.play(DESCENT, "defender")
    assert match.stage() == ESCALATED and match.ruling() == (False, False)
    with pytest.raises(Exception, match="no host move due"):
        match.host.functions.timeout(match.game_id).call()
