"""RefereeGame.vy, the level-2/3 host, played to a ruling on anvil over a real recorded portable MLP step
(tests/unit/portable/test_step_record.py's `mlp`): the step bisection over per-step state roots, the
agreed header's (S, L), the operation bisection over the prefix roots, entry j revealed against S and
P_{j-1} -> P_j, the descent over its output to one chunk, and the element recomputed from inputs proven
against the agreed state and P_{j-1} (contracts Bisection.vy, TensorDescent.vy, HostRules.vy and ElementReferee.vy).

- An honest defender against a challenger that disputes a correct ReLU or linear entry wins; a defender
  whose record has one output element of that entry wrong loses to the honest challenger (the bisections
  and the descent follow the first difference down to the wrong element).
- At every stage the party that owes the move and lets its clock run out loses: in the sub-games
  through their own `timeout` and `advance`, at the host's stages through `timeout`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import (DECIDED, DESCENT, ELEMENT, ENTRY, ESCALATED, HOST_ACCOUNT, LEAF, LINK, OPS, OUTPUT, PROOF,
                                   RECORD, REVEAL, STEPS, ZERO_ADDRESS, Match, Side, corrupt, wrong_next_state)  # fmt: skip
from protocol import tensor_commit as tc
from protocol.deploy import RULE_SETS
from tests.unit.contracts.helpers import reverted
from tests.unit.contracts.vyper_harness import compiled

from ..engine.helpers import examples
from ..portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)

MOVE = 100
ARITY = 4
LEVELS = 2
RELU, LINEAR, RELU_BACKWARD, ADAMW = 4, 5, 9, 14  # entries of the MLP step: batch_index, gather x, gather y, linear, relu, …
CROSS_ENTROPY = 6  # HostRules does not decide it (RowRules does: tests/unit/contracts/test_loss_rules.py)
WHOLE_GAME_TARGET = 5_000_000  # issue 15: a whole segment dispute


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
    referee = _deploy(w3, "contracts/ElementReferee.vy", _deploy(w3, "contracts/ClipReferee.vy").address)
    link = _deploy(w3, "contracts/StateLink.vy")
    rules = _deploy(w3, "contracts/HostRules.vy")
    host = _deploy(w3, "contracts/RefereeGame.vy", bisection.address, descent.address, referee.address, link.address,
                   [rules.address] + [ZERO_ADDRESS] * (RULE_SETS - 1), ARITY, LEVELS, MOVE)  # fmt: skip
    for game in (bisection, descent):
        w3.eth.wait_for_transaction_receipt(game.functions.wire([host.address]).transact({"from": owner}))
    with pytest.raises(Exception, match="referee: not deployer"):
        host.functions.wire(w3.eth.accounts[HOST_ACCOUNT]).call({"from": w3.eth.accounts[HOST_ACCOUNT]})
    w3.eth.wait_for_transaction_receipt(host.functions.wire(w3.eth.accounts[HOST_ACCOUNT]).transact({"from": owner}))
    with pytest.raises(Exception, match="referee: already wired"):
        host.functions.wire(owner).call({"from": owner})
    return {"bisection": bisection, "descent": descent, "host": host, "link": link, "rules": rules}


@pytest.fixture
def chain(w3: Any, contracts: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def step(mlp_steps) -> dict[str, Any]:  # noqa: F811
    return step_of(*mlp_steps)


def step_of(spec: Any, states: list[bytes], records: list[Any]) -> dict[str, Any]:
    """What a game over step 0 needs: the state before it and its binding, the roots of every state
    recorded, the record, the leaves of the state after it."""
    from engine.api import job_per_epoch, state_binding

    rec = records[0]
    skeleton = (rec.skeleton_root(), len(rec.entries), job_per_epoch(spec, None))
    bindings = [state_binding(spec, i, skeleton) for i in range(len(states))]
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    next_leaves = tc.bound_state_leaves(states[1], bindings[1])
    return {"before": states[0], "binding": bindings[0], "skeleton": skeleton, "roots": roots, "rec": rec,
            "next_leaves": next_leaves, "states": states}  # fmt: skip


def _match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], wrong: bool, target: int, output: int = 0) -> Match:
    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    element = rec.entries[target].outputs[output].size - 3  # in the last chunk, not its first element
    if wrong:  # the defender's step output differs from the truth (here: any other root), and so does its record
        defender = Side([step["roots"][0], keccak(b"wrong state 1"), keccak(b"wrong state 2")],
                        corrupt(rec, target, element, output), step["next_leaves"])  # fmt: skip
    else:
        defender = truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element, output=output)  # fmt: skip


# (entry, output): ReLU, the second linear, ReLU's backward, AdamW's update of the second W (p' and v')
TARGETS = [(RELU, 0), (LINEAR, 0), (RELU_BACKWARD, 0), (ADAMW, 0), (ADAMW, 2)]


@pytest.mark.parametrize(("target", "output"), TARGETS, ids=["relu", "linear", "relu_backward", "adamw-p", "adamw-v"])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_the_game_rules_against_exactly_the_wrong_party(chain, contracts, step, wrong: bool, target: int, output: int) -> None:
    rec = step["rec"]
    kernels = [rec.entries[t].kernel for t in (RELU, LINEAR, RELU_BACKWARD, ADAMW)]
    assert kernels == ["relu", "linear", "relu_backward", "adamw"]
    assert step["roots"][0] != step["roots"][1]
    match = _match(chain, contracts, step, wrong, target, output)
    match.play()
    game = match.game()
    assert game["stage"] == DECIDED and game["step"] == 0 and game["entry"] == target
    assert game["skeleton_root"] == step["skeleton"][0] and game["record_length"] == step["skeleton"][1]
    assert match.ruling() == (True, wrong, False)
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET  # every move of both parties, the proofs included


# (stage where the party stops, who stops, does the defender lose)
STALLS = [(STEPS, "defender", True), (STEPS, "challenger", False), (RECORD, "defender", True),
          (OPS, "defender", True), (OPS, "challenger", False), (ENTRY, "defender", True), (OUTPUT, "challenger", False),
          (DESCENT, "defender", True), (DESCENT, "challenger", False), (ELEMENT, "challenger", False),
          (PROOF, "defender", True)]  # fmt: skip


@pytest.mark.parametrize(("stop", "who", "defender_loses"), STALLS, ids=[f"{s}-{w}" for s, w, _ in STALLS])
def test_the_party_that_misses_its_move_loses(chain, contracts, step, stop: int, who: str, defender_loses: bool) -> None:
    match = _match(chain, contracts, step, wrong=True, target=RELU)
    match.play(stop, who)
    assert match.stage() == stop and match.ruling() == (False, False, False)
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
    assert match.ruling() == (True, defender_loses, False)


def _travel(w3: Any, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def test_moves_out_of_turn_or_with_forged_proofs_are_refused(chain, contracts, step) -> None:
    match = _match(chain, contracts, step, wrong=True, target=RELU)
    match.play(ENTRY, "defender")
    rec, j = match.defender.rec, match.game()["entry"]
    entry = rec.entries[j]
    skeleton_path = rec.skeleton_proof(j)
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
    """The cross-entropy entry has no rule in any rules contract yet, so the game leaves the ruling to
    level 2 (the arbiter) instead of letting an honest defender time out."""
    match = _match(chain, contracts, step, wrong=False, target=CROSS_ENTROPY)
    match.play(DESCENT, "defender")
    assert match.stage() == ESCALATED and match.ruling() == (False, False, True)
    with pytest.raises(Exception, match="no host move due"):
        match.host.functions.timeout(match.game_id).call()


def recorded_step(spec: Any, states: int = 3) -> dict[str, Any]:
    """The first `states` states of `spec`'s job and its first step's record: what a Match plays over."""
    from engine.api import record_first_steps

    states_, records, bindings = record_first_steps(spec, None, states)
    roots = [tc.state_root(s, b) for s, b in zip(states_, bindings, strict=True)]
    return {"before": states_[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states_[1], bindings[1])}  # fmt: skip


@pytest.fixture(scope="module")
def gpt_step() -> dict[str, Any]:
    """The three states and step records of a one-block portable GPT's segment (test_step_record's `gpt`)."""
    from ..portable.test_step_record import gpt

    return recorded_step(gpt())


# The tiny-GPT entries the host decides beyond the MLP's kernels: (kernel, element of its first entry, what it shows)
GPT_TARGETS = [
    ("linear", -3, "x of shape [batch, time, K]: its rows are the leading axes"),
    ("add", -3, "the positional embedding [T, D] broadcast over the batch"),
    ("mul_scalar", -3, "the attention scores' binary32 scale"),
    ("fill_above_diagonal", 1, "above the diagonal: the binary64 -inf rounded, nothing proven"),
    ("transpose", -3, "the last two axes swapped"),
    ("cat", -3, "the last of the q, k, v gradients"),
    ("place", -3, "the positional gradient placed into zeros"),
    ("scale", -3, "a gradient times the clipping factor"),
    ("move", -3, "one head of the q, k, v projection: a strided view, its strides revealed as hints"),
    ("softmax", -3, "a row of 32 attention scores"),
    ("layer_norm", -3, "y: the row of x, then w[j] and b[j]"),
]


@pytest.mark.parametrize(("kernel", "at", "why"), GPT_TARGETS, ids=[t[0] for t in GPT_TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_gpt_entry_is_ruled(chain, contracts, gpt_step, wrong: bool, kernel: str, at: int, why: str) -> None:
    """The first entry of each kernel of a one-block portable GPT step that the host rules decide (a
    linear over leading batch axes, and the elementwise kernels and moves): a corrupted output element
    is caught and a right one upheld, the element chosen as `at` says (negative: from the end)."""
    rec = gpt_step["rec"]
    target = next(e.index for e in rec.entries if e.kernel == kernel and (kernel != "linear" or e.inputs[0].kind == record.OUTPUT))
    if kernel == "linear":
        assert len(rec.entries[target].inputs[0].shape) == 3 and len(rec.entries[target].out_shapes[0][1]) == 3
    if kernel == "add":
        assert [len(r.shape) for r in rec.entries[target].inputs] == [3, 2]
    truth = Side(gpt_step["roots"], rec, gpt_step["next_leaves"])
    element = at % rec.entries[target].outputs[0].size
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(gpt_step["roots"]))]
    defender = Side([gpt_step["roots"][0], *later], corrupt(rec, target, element), gpt_step["next_leaves"]) if wrong else truth
    match = Match(chain, contracts, ARITY, LEVELS, gpt_step["before"], gpt_step["binding"], defender, truth,
                  honest_challenger=wrong, target=target, target_element=element)  # fmt: skip
    match.play()
    assert match.game()["entry"] == target and match.ruling() == (True, wrong, False)


def test_forged_input_proofs_are_refused(chain, contracts, step) -> None:
    """At PROOF for the second linear (x from the ReLU's output, W and b from the agreed state): an input
    proven against P_j instead of P_{j-1}, another row of W, a flipped value, a missing input, another
    skeleton, or the challenger proving, are refused; the honest proofs pass."""
    match = _match(chain, contracts, step, wrong=False, target=LINEAR)
    match.play(PROOF, "defender")
    rec, j = match.defender.rec, LINEAR
    entry = rec.entries[j]
    prove = match.host.functions.prove_element
    honest = match.element_proofs()
    x_ref, w_ref = entry.inputs[0], entry.inputs[1]
    first_x, first_w = honest[0][4] * 8, honest[1][4] * 8
    k_terms = w_ref.shape[1]
    late = match.input_proof(j, x_ref, first_x, k_terms, prefix=j)  # against P_j: entry j's slot is filled there
    other_row = match.input_proof(j, w_ref, (first_w + k_terms) % (w_ref.shape[0] * k_terms), k_terms)
    flipped = list(honest[1])
    chunks = list(flipped[5])
    chunks[0] = bytes([chunks[0][0] ^ 0x40]) + chunks[0][1:]
    flipped[5] = chunks
    cases = [([late, *honest[1:]], "output input not proven"), ([honest[0], other_row, honest[2]], "not the rows read"),
             ([honest[0], tuple(flipped), honest[2]], "run not proven")]  # fmt: skip
    for proofs, reason in cases:
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, entry.skeleton_bytes(), proofs, []).call({"from": match.d})
    with pytest.raises(Exception, match="wrong number of inputs"):
        prove(match.game_id, entry.skeleton_bytes(), honest[:2], []).call({"from": match.d})
    with pytest.raises(Exception, match="not the revealed entry's skeleton"):
        prove(match.game_id, rec.entries[j - 1].skeleton_bytes(), honest, []).call({"from": match.d})
    with pytest.raises(Exception, match="not the defender"):
        prove(match.game_id, entry.skeleton_bytes(), honest, []).call({"from": match.c})
    prove(match.game_id, entry.skeleton_bytes(), honest, []).call({"from": match.d})


@settings(max_examples=examples(3), deadline=None)
@given(st.sampled_from(TARGETS), st.booleans(), st.data())
def test_any_element_of_a_checked_output_is_ruled_right(chain, contracts, step, target, wrong: bool, data) -> None:
    """Any element (not only the last chunk's): the wrong defender's flipped element, or the element a lying
    challenger disputes in an honest defender's output, is ruled right; each example on a fresh snapshot."""
    entry, output = target
    size = step["rec"].entries[entry].outputs[output].size
    element = data.draw(st.integers(0, size - 1))
    snapshot = chain.provider.make_request("evm_snapshot", [])["result"]
    try:
        match = _match(chain, contracts, step, wrong, entry, output)
        if wrong:
            match.defender.rec = corrupt(step["rec"], entry, element, output)
        match.target_element = element
        match.play()
        assert match.ruling() == (True, wrong, False)
    finally:
        assert chain.provider.make_request("evm_revert", [snapshot])["result"] is True


def test_only_the_host_opens_a_game_from_a_header_under_the_agreed_root(chain, contracts, step) -> None:
    """The step count n and the leaf count come from the agreed state's header, proven as its leaf 0: a
    header under another root, a caller other than the wired host, or a state with no steps to its next
    boundary (the job's last) are refused; the honest opening bisects over the header's n steps."""
    match = _match(chain, contracts, step, wrong=True, target=RELU)
    host = contracts["host"]
    roots = match.defender.state_roots
    header, path = tc.header_proof(step["before"], step["binding"])
    args = (match.d, match.c, roots[0], roots[-1])
    sender = {"from": chain.eth.accounts[HOST_ACCOUNT]}
    with pytest.raises(Exception, match="referee: not the host"):
        host.functions.open_game(*args, header, path).call({"from": match.c})
    with pytest.raises(Exception, match="header not under the agreed root"):
        host.functions.open_game(match.d, match.c, roots[1], roots[-1], header, path).call(sender)
    moved = tc.header_proof(step["before"], dataclasses.replace(step["binding"], segment_steps=3))[0]
    with pytest.raises(Exception, match="header not under the agreed root"):  # a header the agreed root does not hold
        host.functions.open_game(*args, moved, path).call(sender)
    last = dataclasses.replace(step["binding"], segment_steps=0)
    last_root = tc.state_root(step["before"], last)
    with pytest.raises(Exception, match="referee: no steps to the next boundary"):
        host.functions.open_game(match.d, match.c, last_root, roots[-1], *tc.header_proof(step["before"], last)).call(sender)
    match.open()
    bisection = contracts["bisection"].functions.games(match.game()["sub_game"]).call()
    assert (bisection[5], bisection[6]) == (0, step["binding"].segment_steps) == (0, 2)  # lo, hi: n from the header
    assert match.game()["leaf_count"] == 1 + len(step["rec"].state_names)


def _worst_rounds(length: int, arity: int) -> int:
    """Rounds of a Bisection when the challenger always picks the longest part (protocol.bisection's cuts)."""
    from protocol import bisection as bis

    rounds, lo, hi = 0, 0, length
    while hi - lo > 1:
        points = bis.split_points(lo, hi, arity)
        lo, hi = max(zip(points, points[1:]), key=lambda p: p[1] - p[0])
        rounds += 1
    return rounds


def test_max_game_seconds_bounds_every_clocked_move(contracts) -> None:
    """Every move of the longest game (2**32 - 1 steps, a record of 2**24 entries and the link, a descent
    over 2**40 chunks at LEVELS a move) on its clock, plus the second each `timeout` waits."""
    descent_moves = 2 * -(-40 // LEVELS) + 1
    moves = 2 * _worst_rounds(2**32 - 1, ARITY) + 1 + 2 * _worst_rounds(2**24 + 1, ARITY) + 4 + descent_moves
    assert contracts["host"].functions.max_game_seconds().call() == moves * (MOVE + 1)


# ------------------------------------------------------------------ the link: P_{L-1} agreed, r_{t+1} disputed

WRONG_TENSOR = 5  # the tensor whose root the wrong-next-state defender gets wrong


def _link_match(chain: Any, contracts: dict[str, Any], step: dict[str, Any], wrong: bool, leaf: int = 1 + WRONG_TENSOR) -> Match:
    """An honest record; the defender's r_{t+1} has tensor WRONG_TENSOR's root wrong (against the honest
    challenger), or is honest (against a challenger that steers the operation bisection to the link and
    disputes leaf `leaf`)."""
    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    defender = wrong_next_state(truth, WRONG_TENSOR) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=len(rec.entries), target_element=leaf)  # fmt: skip


def test_an_honest_record_with_a_wrong_next_state_loses_through_the_link(chain, contracts, step) -> None:
    """Every prefix root agrees, so the operation bisection pins index L (P_{L-1} agreed, r_{t+1} disputed);
    the challenger names the wrong tensor's leaf among the revealed ones; the defender cannot link it."""
    match = _link_match(chain, contracts, step, wrong=True)
    match.play(LINK, "defender")
    game, length = match.game(), len(step["rec"].entries)
    assert game["entry"] == length and game["next_root"] == match.defender.state_roots[1] != step["roots"][1]
    assert game["stage"] == LINK and game["link_leaf"] == 1 + WRONG_TENSOR
    with pytest.raises(Exception, match="state_link: leaf not the linked tensor"):
        match.host.functions.prove_link(match.game_id, match.link_proof()).call({"from": match.d})
    _travel(chain, MOVE + 1)
    match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling() == (True, True, False)


@pytest.mark.parametrize("leaf", [1, 1 + WRONG_TENSOR, -1], ids=["first", "middle", "last"])
def test_an_honest_defender_wrongly_challenged_at_the_link_wins(chain, contracts, step, leaf: int) -> None:
    leaf = len(step["rec"].state_names) if leaf == -1 else leaf
    match = _link_match(chain, contracts, step, wrong=False, leaf=leaf)
    match.play()
    assert match.game()["link_leaf"] == leaf and match.ruling() == (True, False, False)
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


@pytest.mark.parametrize(("stop", "who", "defender_loses"), [(REVEAL, "defender", True), (LEAF, "challenger", False),
                                                            (LINK, "defender", True)], ids=["reveal", "leaf", "link"])  # fmt: skip
def test_the_party_that_misses_a_link_move_loses(chain, contracts, step, stop: int, who: str, defender_loses: bool) -> None:
    match = _link_match(chain, contracts, step, wrong=False)
    match.play(stop, who)
    assert match.stage() == stop and match.ruling() == (False, False, False)
    with pytest.raises(Exception, match="deadline not passed"):
        match.host.functions.timeout(match.game_id).call()
    _travel(chain, MOVE + 1)
    match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling() == (True, defender_loses, False)


def test_forged_link_proofs_and_reveals_are_refused(chain, contracts, step) -> None:
    """Leaves that do not build r_{t+1}, another tensor's name, another entry's output, a map leaf not under
    S (a flipped byte) or a leaf path of r_t are refused; the honest proof passes."""
    match = _link_match(chain, contracts, step, wrong=False)
    match.play(REVEAL, "defender")
    leaves = list(step["next_leaves"])
    with pytest.raises(Exception, match="leaves do not build the state"):
        match.host.functions.reveal_state(match.game_id, leaves[:1] + leaves[2:3] + leaves[2:]).call({"from": match.d})
    with pytest.raises(Exception, match="not every leaf"):
        match.host.functions.reveal_state(match.game_id, leaves[:-1]).call({"from": match.d})
    match.reveal_state()
    with pytest.raises(Exception, match="no such leaf"):
        match.host.functions.dispute_leaf(match.game_id, len(leaves)).call({"from": match.c})
    match.dispute_leaf()
    prove = match.host.functions.prove_link
    honest = match.link_proof()
    rec = step["rec"]
    made_by = {name: ref.a for name, ref in rec.final.items()}
    own = made_by[rec.state_names[WRONG_TENSOR]]
    b = next(b for b, name in enumerate(rec.state_names) if made_by[name] != own)
    other = match.link_proof(leaf=1 + b)  # a tensor another entry makes: its proof, at this leaf
    flipped_map = bytes([honest[0][0] ^ 1]) + honest[0][1:]
    cases = [((*honest[:2], other[2], *honest[3:]), "tensor not in the agreed state"),
             ((*honest[:6], *other[6:]), "entry not under the last prefix"),
             ((flipped_map, *honest[1:]), "map not under S"),
             ((*honest[:5], honest[4], *honest[6:]), "leaf not the linked tensor")]  # fmt: skip
    for proof, reason in cases:
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, proof).call({"from": match.d})
    with pytest.raises(Exception, match="not the defender"):
        prove(match.game_id, honest).call({"from": match.c})
    prove(match.game_id, honest).call({"from": match.d})


def test_an_unchanged_tensor_links_to_its_old_root(chain, contracts, step) -> None:
    """A record whose state map leaves tensor a unchanged (S bound accordingly): leaf 1 + a of r_{t+1} holding
    r_t's root is proven without an entry; a next state holding anything else there cannot be linked."""
    a, rec = WRONG_TENSOR, step["rec"]
    name = rec.state_names[a]
    kept = dataclasses.replace(rec, final={**rec.final, name: record.Ref(record.STATE, a)})
    binding = dataclasses.replace(step["binding"], skeleton_root=kept.skeleton_root())
    before = tc.bound_state_leaves(step["before"], binding)
    after = tc.bound_state_leaves(step["states"][1], dataclasses.replace(binding, segment_steps=1))
    assert before[1 + a] != after[1 + a]
    for next_leaves, kept_root in (([*after[: 1 + a], before[1 + a], *after[2 + a :]], True), (after, False)):
        roots = [tc.tree_root(before, tc.STATE_NODE), tc.tree_root(next_leaves, tc.STATE_NODE), keccak(b"state 2")]
        side = Side(roots, kept, next_leaves)
        match = Match(chain, contracts, ARITY, LEVELS, step["before"], binding, side, side, honest_challenger=False,
                      target=len(rec.entries), target_element=1 + a)  # fmt: skip
        match.play(LINK, "defender")
        proof = match.link_proof()
        assert proof[6:] == (tc.ZERO, [], [])  # no entry: the map says unchanged
        if kept_root:
            match.prove_link()
            assert match.ruling() == (True, False, False)
        else:
            with pytest.raises(Exception, match="leaf not the linked tensor"):
                match.host.functions.prove_link(match.game_id, proof).call({"from": match.d})


@settings(max_examples=examples(6), deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_state_link_builds_the_state_tree_of_any_leaves(contracts, leaves: list[bytes]) -> None:
    """StateLink's root of revealed leaves is protocol.tensor_commit's state tree (zero-word padding)."""
    assert contracts["link"].functions.state_root(leaves).call() == tc.tree_root(leaves, tc.STATE_NODE)


# ------------------------------------------------------------------ the host rules (HostRules.vy) and their mirror

HOST_DECIDED = {"mlp": {"relu", "linear", "relu_backward", "adamw"},
                "gpt": {"linear", "gelu", "gelu_backward", "adamw", "add", "mul_scalar", "scale", "fill_above_diagonal",
                        "transpose", "place", "cat", "move", "softmax", "softmax_backward", "layer_norm"}}


def one_entry_of_each_kind(rec: record.StepRecord) -> Iterator[record.Entry]:
    """One entry of each kind (kernel, arguments, the kinds, dtypes and shapes of its inputs, its
    outputs): entries alike but for which entry or state tensor their inputs come from are decided
    alike, as the rules contracts read a and b only to copy them into the reads."""
    seen: set[tuple] = set()
    for entry in rec.entries:
        kind = (entry.kernel, repr(entry.args), tuple((r.kind, r.dtype, r.shape) for r in entry.inputs), entry.out_shapes)
        if kind not in seen:
            seen.add(kind)
            yield entry


def checkable_output(rules: Any, entry: record.Entry, output: int) -> bool:
    """A rules contract's `output_of` for one output of a recorded entry: the entry's output count, that
    output's dtype and shape (asserted), and whether the contract checks it."""
    count, checkable, out_code, dims = rules.output_of(entry.skeleton_bytes(), output).call()
    code, shape = entry.out_shapes[output]
    assert (count, out_code, tuple(dims)) == (len(entry.out_shapes), code, tuple(shape))
    return checkable


def assert_plan_is_the_model_s(rec: record.StepRecord, entry: record.Entry, parsed: Any, output: int, element: int,
                                plan: Any) -> None:  # fmt: skip
    """A rules contract's plan (rule, params, reads, zipped) for one element of a recorded entry: each read
    names the skeleton's reference it reads (a constant's by its root), and the rule, its parameters and the values read, laid out as
    prove_element lays them out, are `referee_calls.encode`'s from the referee model."""
    from protocol import referee_calls

    rule, params, reads, zipped = plan
    for k, kind, a, b, dtype, ndim, read_dims, *_ in reads:
        ref = parsed.inputs[k]
        named = int.from_bytes(ref.root, "big") if ref.kind == record.CONSTANT else ref.a  # a constant's read names its root
        assert (kind, a, b, dtype, tuple(read_dims[:ndim])) == (ref.kind, named, ref.b, ref.dtype, ref.shape)
    proven = record.proven_values(rec, entry, output, element)
    expected = referee_calls.encode(record.referee_call(entry), output, element, proven)
    assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.kernel, output, element)
    assert _plan_values(rec, entry, reads, zipped) == expected.values, (entry.kernel, output, element)


def _plan_values(rec: record.StepRecord, entry: record.Entry, reads: list, zipped: bool) -> tuple[int, ...]:
    """The values prove_element hands to the rule for a plan: each read's elements of its input (binary32
    bits; `count` of them from `first`, `stride` apart), the first two zipped term by term when the plan
    says so, the others one after another."""
    runs = [rec.input_value(entry, k).reshape(-1)[first : first + count * stride : stride].view(np.uint32).tolist()
            for k, *_, first, count, stride in reads]  # fmt: skip
    head = [v for pair in zip(runs[0], runs[1], strict=True) for v in pair] if zipped else []
    return tuple(head + [v for run in runs[2 if zipped else 0 :] for v in run])


def _assert_plans_match(rules: Any, rec: record.StepRecord, entry: record.Entry, output: int) -> None:
    """HostRules' plans of the first, second, middle and last element of a checkable output against the
    Python mirror (reads) and the referee model (rule, parameters, values in order)."""
    from protocol.referee_kit import element_reads, entry_hints, host_checkable, parse_skeleton

    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    hints = entry_hints(entry.kernel, entry.args)
    assert rules.output_of(skeleton, output).call()[1] and host_checkable(parsed, output)
    size = entry.outputs[output].size
    for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
        plan = rules.plan(skeleton, output, element, list(hints)).call()
        assert [(r[0], r[7], r[8]) for r in plan[2]] == element_reads(parsed, output, element, hints)
        assert all(r[9] == 1 for r in plan[2])  # HostRules reads runs
        assert_plan_is_the_model_s(rec, entry, parsed, output, element, plan)


@pytest.mark.parametrize("which", ["mlp", "gpt"])
def test_the_host_rules_mirror_the_python_and_the_referee_model(contracts, step, gpt_step, which: str) -> None:
    """On every entry of a recorded MLP step and a tiny-GPT step: HostRules says an output is checkable
    exactly when `referee_kit.host_checkable` does, with the skeleton's output count and shape; for the
    first, second, middle and last element of each checkable output (of one entry of each kernel,
    arguments and input shapes) its reads (input, reference, run) are
    `referee_kit.element_reads`', and its rule, parameters and the values read, assembled as
    prove_element assembles them, are what `referee_calls.encode` gives from the referee model (also for
    `mul`, which this GPT does not record: its broadcast add's entry under that name)."""
    from protocol.referee_kit import host_checkable, parse_skeleton

    rules = contracts["rules"].functions
    rec = step["rec"] if which == "mlp" else gpt_step["rec"]
    decided = set()
    for entry in one_entry_of_each_kind(rec):
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in range(len(entry.out_shapes)):
            checkable = checkable_output(rules, entry, output)
            assert checkable == host_checkable(parsed, output), (entry.index, entry.kernel, output)
            if checkable:
                decided.add(entry.kernel)
                _assert_plans_match(rules, rec, entry, output)
    assert decided == HOST_DECIDED[which]
    if which == "gpt":  # mul (SwiGLU's; no kernel of this GPT): the broadcast add's operands multiplied
        add = next(e for e in rec.entries if e.kernel == "add" and e.inputs[0].shape != e.inputs[1].shape)
        _assert_plans_match(rules, rec, dataclasses.replace(add, kernel="mul"), 0)
    undecided = next(e for e in rec.entries if e.kernel == "cross_entropy")
    with pytest.raises(Exception, match="host_rules: not a checkable element"):
        rules.plan(undecided.skeleton_bytes(), 0, 0, []).call()
    with pytest.raises(Exception, match="host_rules: not a checkable element"):
        linear = next(e for e in rec.entries if e.kernel == "linear" and host_checkable(parse_skeleton(e.skeleton_bytes()), 0))
        rules.plan(linear.skeleton_bytes(), 0, linear.outputs[0].size, []).call()
    if which == "gpt":  # a move's strides must be the ones its skeleton hashes
        move = next(e for e in rec.entries if e.kernel == "move")
        strides = list(move.args[2])
        swapped = [strides[1], strides[0], *strides[2:]]
        for wrong in (swapped, strides[:-1], [*strides[:-1], strides[-1] + 2**247]):
            with pytest.raises(Exception, match="host_rules: not the move's strides, or outside its source"):
                rules.plan(move.skeleton_bytes(), 0, 0, wrong).call()


def test_a_row_across_a_run_boundary_is_read_in_two_runs(contracts) -> None:
    """A softmax_backward row of 48 starting at element 240 crosses the 256-element boundary an aligned run
    of 32 chunks cannot: HostRules reads each row in two runs (240-255, 256-287), as `element_reads` does,
    and the values laid out in that order are the referee model's; a softmax row one wider than
    MAX_SOFTMAX_ROW escalates."""
    from protocol import referee_calls
    from protocol import referee_model as rm
    from protocol.referee_kit import MAX_SOFTMAX_ROW, element_reads, host_checkable, parse_skeleton

    rules = contracts["rules"].functions
    shape = (6, 48)
    y, dy = (np.random.default_rng(seed).standard_normal(shape).astype(np.float32) for seed in (1, 2))
    refs = tuple(record.Ref(record.OUTPUT, k, 0, 1, shape) for k in range(2))
    entry = record.Entry(9, "softmax_backward", (("input", 0), ("input", 1)), refs, ((1, shape),), (tc.ZERO,))
    skeleton = entry.skeleton_bytes()
    element = 5 * 48 + 7
    rule, params, reads, _ = rules.plan(skeleton, 0, element, []).call()
    assert [(r[0], r[7], r[8]) for r in reads] == [(0, 240, 16), (0, 256, 32), (1, 240, 16), (1, 256, 32)]
    assert [(r[0], r[7], r[8]) for r in reads] == element_reads(parse_skeleton(skeleton), 0, element)
    flat = (y.reshape(-1).view(np.uint32), dy.reshape(-1).view(np.uint32))
    values = tuple(int(v) for k, *_, first, count, _stride in reads for v in flat[k][first : first + count])
    proven = {key: (y, dy)[key[0]].reshape(-1)[key[1]] for key in rm.dependencies(record.referee_call(entry), 0, element)}
    expected = referee_calls.encode(record.referee_call(entry), 0, element, proven)
    assert (rule, tuple(params), values) == (expected.rule, expected.params, expected.values)
    wide = (2, MAX_SOFTMAX_ROW + 1)
    wide = record.Entry(9, "softmax", (("input", 0),), (record.Ref(record.OUTPUT, 0, 0, 1, wide),), ((1, wide),), (tc.ZERO,))
    assert not rules.output_of(wide.skeleton_bytes(), 0).call()[1] and not host_checkable(parse_skeleton(wide.skeleton_bytes()), 0)


def test_a_kit_carries_the_moves_strides(gpt_step, tmp_path) -> None:
    """A dispute kit of the GPT step written and read back keeps each move's strides (its hints), checked
    against the skeleton's hash: the player's proofs of a move element are the persona's, and a kit whose
    move hints are not the strides is refused."""
    import json

    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    rec = gpt_step["rec"]
    kit = kit_from_record(0, 0, gpt_step["roots"], 0, rec, gpt_step["before"], gpt_step["binding"], gpt_step["next_leaves"])
    loaded = rk.load_kit(rk.write_kit(tmp_path / "kit", kit))
    moves = [e for e in rec.entries if e.kernel == "move"]
    assert moves and all(loaded.entries[e.index].hints == tuple(e.args[2]) for e in moves)
    assert all(not e.hints for e in loaded.entries if e.parsed.kernel != "move")
    move = moves[1]  # offset 16: the k projection's first head
    element = move.outputs[0].size - 3
    proofs = loaded.element_proofs(move.index, 0, element)
    (k, first, count), = rk.element_reads(loaded.entries[move.index].parsed, 0, element, loaded.entries[move.index].hints)
    source = rec.input_value(move, 0).reshape(-1)
    assert count == 1 and source[first] == move.outputs[0].reshape(-1)[element]
    assert proofs[0][4] == first // 8  # the one chunk holding the source element
    meta = json.loads((tmp_path / "kit" / rk.KIT_JSON).read_text())
    meta["record"]["entries"][move.index]["hints"] = list(reversed(move.args[2]))
    (tmp_path / "kit" / rk.KIT_JSON).write_text(json.dumps(meta))
    with pytest.raises(rk.KitError, match="not its move's strides"):
        rk.load_kit(tmp_path / "kit")


def test_a_plan_reading_a_run_longer_than_max_fold_is_refused(chain, contracts) -> None:
    """prove_element takes at most MAX_FOLD (256) values of a run: a rules contract that planned a longer run
    (contracts/test/OverlongRules.vy, a run of bools: 32 a chunk, so a proof of MAX_RUN chunks holds 1,024; no real
    rules contract plans one) must make the move fail, not have its first 256 values decided on. A run of 256
    passes that check and is refused only for its proof (here made up)."""
    from personas.fold_worst_case import STAGE_PROOF, set_game

    parts = {k: contracts[k].address for k in ("bisection", "descent", "link")}
    referee = _deploy(chain, "contracts/ElementReferee.vy", _deploy(chain, "contracts/ClipReferee.vy").address)
    overlong = _deploy(chain, "contracts/test/OverlongRules.vy")
    host = _deploy(chain, "contracts/RefereeGame.vy", parts["bisection"], parts["descent"], referee.address, parts["link"],
                   [overlong.address] + [ZERO_ADDRESS] * (RULE_SETS - 1), ARITY, LEVELS, MOVE)  # fmt: skip
    skeleton, defender = b"any skeleton", chain.eth.accounts[2]
    made_up = (keccak(b"leaf"), [keccak(b"root")], [keccak(b"path")] * 3, [1_024], 0, [b"\x3f" * 32] * 32, [keccak(b"run")] * 5)
    for element, reason in ((0, "referee: (?!run longer)"), (1, "referee: run longer than MAX_FOLD")):
        set_game(chain, host, 5 + element, {"defender": defender, "challenger": chain.eth.accounts[3], "stage": STAGE_PROOF,
                                            "deadline": 2**40, "skeleton_leaf": keccak(b"\x16" + skeleton), "output_size": 1_024,
                                            "chunk_index": 0, "element": element, "rules": 0})  # fmt: skip
        with pytest.raises(Exception, match=reason):
            host.functions.prove_element(5 + element, skeleton, [made_up], [], []).call({"from": defender})
