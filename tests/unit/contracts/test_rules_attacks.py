"""An adversarial review of RefereeGame's rules (issue 15): several rules contracts asked in order, bool,
constant and header reads, RowRules, and the next state's header proven at the link. Each test asserts
the SAFE behaviour, so a test that fails shows a hole. Holes it found, each closed, with its test:

- A defender that reveals entry j with fewer (or more) output roots than its skeleton has cannot hide a
  wrong output behind the ones it left out: `dispute_output` rules such a reveal against the defender,
  and the production challenger names the first output left out.
- A defender that reveals an output root of zero words cannot make the challenger's `dispute_output`
  revert (TensorDescent refuses a zero root): naming it rules the defender wrong.
- A trace holding the zero word as a state hash cannot keep a refereed SEGMENT claim from opening its
  game: JobEscrow.commit refuses it.
- An honest defender pinned at an entry whose skeleton is longer than the 4,096 bytes the rules read
  (clip_scale over 50 or more gradients) reveals it with `reveal_long_entry`, and the game escalates.
Checked and sound:
- RowRules never reverts on a degenerate skeleton of its own kernels (a revert in `output_of` would make
  `dispute_output` revert, so an honest challenger could neither dispute nor escalate).
- The header link's rule at the edges of a job: step 0, a total that is a multiple of the segment
  length, one batch an epoch, a segment of one step."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_hash.auto import keccak

from engine.portable import record
from personas.referee_game import ENTRY, OUTPUT, Match, Side
from protocol import tensor_commit as tc
from protocol.referee_kit import reveal_function
from tests.unit.contracts.test_referee_game import ADAMW, ARITY, LEVELS, MOVE, RELU, _travel, chain, contracts, step  # noqa: F401

from ..portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)


def _try(match: Match, who: str, name: str, *args: Any) -> bool:
    """Send a move; False when it reverts (the party then has no such move)."""
    try:
        match.send(who, "host", name, *args)
    except Exception:  # noqa: BLE001 (a revert surfaces as web3's error or Match's RuntimeError)
        return False
    return True


def test_a_defender_that_drops_an_entry_s_outputs_loses(chain, contracts, step) -> None:  # noqa: F811
    """AdamW (entry 11 of the MLP step) has three outputs: p', m' and v'. A defender whose record holds
    that entry with p' alone (the true p'; m' and v' left out, so the state it reaches may hold any m and
    v) differs first at that entry: the honest challenger agrees to P_{j-1} and disputes P_j. Whatever it
    then does, the defender must not win: the game must refuse the short reveal (the defender then loses
    on its clock) or let the challenger dispute an output the defender left out."""
    rec = step["rec"]
    entry = rec.entries[ADAMW]
    assert entry.kernel == "adamw" and len(entry.out_roots) == 3
    cut = dataclasses.replace(entry, out_roots=entry.out_roots[:1], outputs=entry.outputs[:1])
    lying = dataclasses.replace(rec, entries=[*rec.entries[:ADAMW], cut, *rec.entries[ADAMW + 1 :]])
    truth = Side(step["roots"], rec, step["next_leaves"])
    defender = Side([step["roots"][0], keccak(b"wrong state 1"), keccak(b"wrong state 2")], lying, step["next_leaves"])
    match = Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=True,
                  target=ADAMW, target_element=0, output=1)  # fmt: skip
    match.play(ENTRY, "defender")
    assert match.game()["entry"] == ADAMW  # the first difference: the short entry
    skeleton = cut.skeleton_bytes()
    revealed = _try(match, "defender", "reveal_entry", match.game_id, skeleton, lying.skeleton_proof(ADAMW),
                    list(cut.out_roots), lying.entry_proof(ADAMW))  # fmt: skip
    if revealed:
        assert match.stage() == OUTPUT
        # the honest challenger names m', which the defender left out
        _try(match, "challenger", "dispute_output", match.game_id, 1, skeleton, list(cut.out_roots))
    if match.ruling()[0] is False and match.stage() in (ENTRY, OUTPUT):
        _travel(chain, MOVE + 1)
        match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling() == (True, True, False)


def test_a_defender_that_reveals_a_zero_output_root_loses(chain, contracts, step) -> None:  # noqa: F811
    """The ReLU (entry 1, one output) committed with the zero word as its output root: the honest challenger
    agrees to P_0, disputes P_1, and names output 0. The defender must lose (the zero word commits no tensor)."""
    rec = step["rec"]
    entry = rec.entries[RELU]
    assert entry.kernel == "relu" and len(entry.out_roots) == 1
    zero = dataclasses.replace(entry, out_roots=(tc.ZERO,))
    lying = dataclasses.replace(rec, entries=[*rec.entries[:RELU], zero, *rec.entries[RELU + 1 :]])
    truth = Side(step["roots"], rec, step["next_leaves"])
    defender = Side([step["roots"][0], keccak(b"wrong state 1"), keccak(b"wrong state 2")], lying, step["next_leaves"])
    match = Match(chain, contracts, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=True,
                  target=RELU, target_element=0)  # fmt: skip
    match.play(OUTPUT, "challenger")
    assert match.game()["entry"] == RELU and match.stage() == OUTPUT
    if not _try(match, "challenger", "dispute_output", match.game_id, 0, zero.skeleton_bytes(), [tc.ZERO]):
        _travel(chain, MOVE + 1)
        match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling()[1] is True or match.ruling() == (False, False, True)  # the defender loses, or the arbiter judges


def test_the_player_names_an_output_the_defender_left_out() -> None:
    """worker.referee_player's honest challenger, shown entry j with p' alone where its own kit has p', m'
    and v', names m' (output 1, the first one left out; with the contract fix above, the move that wins)."""
    from types import SimpleNamespace

    from worker.referee_player import RefereePlayer

    roots = [keccak(b"p'"), keccak(b"m'"), keccak(b"v'")]
    entry = SimpleNamespace(out_roots=roots, parsed=SimpleNamespace(kernel="adamw"))
    player = SimpleNamespace(kit=SimpleNamespace(entries={ADAMW: entry}))
    assert RefereePlayer.choose_output(player, ADAMW, roots[:1]) == 1  # type: ignore[arg-type]


# ------------------------------------------------------------------ RowRules on degenerate skeletons


@pytest.fixture(scope="module")
def row_rules(w3: Any) -> Any:
    from tests.unit.contracts.test_referee_game import _deploy

    return _deploy(w3, "contracts/RowRules.vy")


def _entry(kernel: str, args: tuple, refs: tuple, outs: tuple) -> record.Entry:
    return record.Entry(7, kernel, args, refs, outs, (tc.ZERO,) * len(outs))


X = record.Ref(record.OUTPUT, 0, 0, 1, (4, 8))
MASK = record.Ref(record.OUTPUT, 1, 0, 4, (4, 8))
HEADER = record.Ref(record.HEADER)
INPUTS = tuple(("input", k) for k in range(6))
# kernels RowRules names, with inputs, arguments or shapes its index maps do not cover
DEGENERATE = {
    "dropout_keep without inputs": _entry("dropout_keep", (0.1, 3), (), ((4, (8,)),)),
    "dropout_keep with two inputs": _entry("dropout_keep", (*INPUTS[:2], 0.1, 3), (HEADER, HEADER), ((4, (8,)),)),
    "dropout_keep with p NaN": _entry("dropout_keep", (INPUTS[0], float("nan"), 3), (HEADER,), ((4, (8,)),)),
    "dropout_keep with p -0.0": _entry("dropout_keep", (INPUTS[0], -0.0, 3), (HEADER,), ((4, (8,)),)),
    "dropout_keep with a negative number": _entry("dropout_keep", (INPUTS[0], 0.1, -1), (HEADER,), ((4, (8,)),)),
    "dropout_keep of an empty mask": _entry("dropout_keep", (INPUTS[0], 0.1, 3), (HEADER,), ((4, (0, 8)),)),
    "dropout_keep without arguments": _entry("dropout_keep", (), (HEADER,), ((4, (8,)),)),
    "rms_norm without inputs": _entry("rms_norm", (1e-5,), (), ((1, (4, 8)), (1, (4, 8)), (1, (4,)))),
    "rms_norm of a 0-d x": _entry("rms_norm", (*INPUTS[:2], 1e-5), (record.Ref(record.OUTPUT), record.Ref(record.STATE)),
                                  ((1, ()), (1, ()), (1, ()))),  # fmt: skip
    "rms_norm of rows of 257": _entry("rms_norm", (*INPUTS[:2], 1e-5), (record.Ref(record.OUTPUT, 0, 0, 1, (2, 257)),
                                      record.Ref(record.STATE, 0, 0, 1, (257,))), ((1, (2, 257)), (1, (2, 257)), (1, (2,)))),
    "rms_norm with one output": _entry("rms_norm", (*INPUTS[:2], 1e-5), (X, record.Ref(record.STATE, 0, 0, 1, (8,))),
                                       ((1, (4, 8)),)),  # fmt: skip
    "layer_norm_backward with one input": _entry("layer_norm_backward", INPUTS[:1], (X,), ((1, (4, 8)),)),
    "rms_norm_backward of an empty x": _entry("rms_norm_backward", INPUTS[:4], (record.Ref(record.OUTPUT, 0, 0, 1, (0, 8)),) * 4,
                                              ((1, (0, 8)), (1, (8,)))),  # fmt: skip
    "where with one input": _entry("where", INPUTS[:1], (MASK,), ((1, (4, 8)),)),
    "where with six inputs": _entry("where", INPUTS[:6], (MASK, X, X, X, X, X), ((1, (4, 8)),)),
    "where reading the header": _entry("where", INPUTS[:3], (MASK, HEADER, X), ((1, (4, 8)),)),
    "where of an empty output": _entry("where", INPUTS[:3], (MASK, X, X), ((1, (0, 8)),)),
    "scaled_keep without its factor": _entry("scaled_keep", INPUTS[:2], (X, MASK), ((1, (4, 8)),)),
    "scaled_keep with more operand axes than its output": _entry("scaled_keep", (*INPUTS[:2], 2.0),
                                                                 (record.Ref(record.OUTPUT, 0, 0, 1, (2, 4, 8)), MASK), ((1, (4, 8)),)),
}


def test_no_rules_contract_reverts_on_a_degenerate_row_skeleton(contracts, row_rules) -> None:
    """`dispute_output` asks HostRules, then RowRules; a revert in either would make the challenger's move
    impossible (it could neither dispute nor escalate, and would lose on its clock). On skeletons of the
    row kernels with missing or extra inputs, missing arguments, empty shapes, rows over 256 or p outside
    [0, 1], both answer (the output count, not checkable) and RowRules' `plan` refuses with its reason."""
    for what, entry in DEGENERATE.items():
        skeleton = entry.skeleton_bytes()
        for output in range(len(entry.out_shapes) + 1):
            for rules in (contracts["rules"], row_rules):
                count, checkable, _, _ = rules.functions.output_of(skeleton, output).call()
                assert count == len(entry.out_shapes) and not checkable, (what, output)
        with pytest.raises(Exception, match="row_rules: not a checkable element"):
            row_rules.functions.plan(skeleton, 0, 0, []).call()


# ------------------------------------------------------------------ the header link at a job's edges


def _headers(total: int, length: int, per_epoch: int, batch: int) -> list[tc.StateHeader]:
    """Every header of a job as the engine writes them (engine.training: boundary_of_step, _cursor, the
    RNG counters; engine.api.steps_to_boundary), derived here from those rules, not from next_header."""
    headers = []
    for k in range(total + 1):
        boundary = -(-total // length) if k == total else (k // length if k % length == 0 else None)
        headers.append(tc.StateHeader(
            spec_hash=b"\x01" * 32, step=k, boundary=boundary, epoch=k // per_epoch, position=(k % per_epoch) * batch,
            data_epoch=k // per_epoch, dropout_counter=k, seed=7, skeleton_root=b"\x02" * 32, record_length=9,
            segment_steps=min(length - k % length, total - k), leaf_count=5, total_steps=total, per_epoch=per_epoch,
            segment_length=length, batch_size=batch))  # fmt: skip
    return headers


# (total steps, segment length, per_epoch, batch size): a total that is a multiple of the segment length,
# segments of one step, one batch an epoch, a segment longer than the job, the widest fields
EDGES = [(6, 3, 2, 4), (5, 1, 1, 3), (4, 8, 3, 2), (3, 3, 1, 1), (2, 2**32 - 1, 2**40, 2**32 - 1)]


@pytest.mark.parametrize(("total", "length", "per_epoch", "batch"), EDGES, ids=[str(e) for e in EDGES])
def test_the_header_link_accepts_every_honest_next_header_at_a_job_s_edges(contracts, total: int, length: int,
                                                                           per_epoch: int, batch: int) -> None:  # fmt: skip
    """From step 0 to the last state, StateLink proves each honest next header (and next_header is it); the
    last state has none."""
    link = contracts["link"].functions
    headers = _headers(total, length, per_epoch, batch)
    for agreed, after in zip(headers, headers[1:], strict=False):
        assert tc.next_header(agreed) == after
        assert link.next_header_holds(agreed.encode(), after.encode()).call()
    assert headers[-1].segment_steps == 0
    with pytest.raises(Exception, match="state_link: the agreed state is the last"):
        link.next_header_holds(headers[-1].encode(), headers[-1].encode()).call()


# ------------------------------------------------------------------ an entry longer than the game takes


def _clip_scale(index: int, tensors: int) -> record.Entry:
    """A `clip_scale` entry as the recorder writes it under grad_clip_norm (every gradient an input, the
    binary32 factor out; its skeleton 66 + 79 to 83 bytes a gradient): a 4-block tiny GPT (d_model 8) has 54 parameter tensors, and its recorded
    clip_scale skeleton is 4,404 bytes (measured once with engine.api.record_first_steps)."""
    grads = tuple(record.Ref(record.OUTPUT, 0, 0, 1, (8, 8) if k % 2 else (8,)) for k in range(tensors))
    return record.Entry(index, "clip_scale", (*INPUTS[:1], *(("input", k) for k in range(1, tensors)), 1.0), grads,
                        ((1, (1,)),), (keccak(b"the clip factor"),))  # fmt: skip


def test_an_honest_defender_pinned_at_a_long_entry_does_not_lose(chain, contracts, step) -> None:  # noqa: F811
    """The MLP step's record with entry 1 replaced by a clip_scale of 54 gradients (S bound accordingly).
    A lying challenger steers the operation bisection to that entry; the honest defender must be able to
    answer (reveal it, or the game escalate), never lose on its clock. (The same record with 40 gradients,
    a skeleton under 4,096 bytes, is revealed: the length alone decides.)"""
    short = _pinned_at(chain, contracts, step, _clip_scale(1, 40))
    assert short.stage() == OUTPUT
    match = _pinned_at(chain, contracts, step, _clip_scale(1, 54))
    if match.stage() == ENTRY:  # not revealed
        _travel(chain, MOVE + 1)
        match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling() != (True, True, False)


def _pinned_at(chain: Any, contracts: dict[str, Any], step: dict[str, Any], entry: record.Entry, reveal: bool = True) -> Match:
    """A game over the MLP step's record with entry 1 replaced by `entry` (S bound accordingly), an honest
    defender and a lying challenger steering to entry 1; the defender's reveal tried (unless `reveal` is
    False: the game waits at ENTRY)."""
    rec = dataclasses.replace(step["rec"], entries=[step["rec"].entries[0], entry, *step["rec"].entries[2:]])
    binding = dataclasses.replace(step["binding"], skeleton_root=rec.skeleton_root())
    before = tc.bound_state_leaves(step["before"], binding)
    after = tc.bound_state_leaves(step["states"][1], dataclasses.replace(binding, segment_steps=1))
    side = Side([tc.tree_root(before, tc.STATE_NODE), tc.tree_root(after, tc.STATE_NODE), keccak(b"state 2")], rec, after)
    match = Match(chain, contracts, ARITY, LEVELS, step["before"], binding, side, side, honest_challenger=False,
                  target=1, target_element=0)  # fmt: skip
    match.play(ENTRY, "defender")
    assert match.game()["entry"] == 1
    if reveal:
        _try(match, "defender", reveal_function(entry.skeleton_bytes()), match.game_id, entry.skeleton_bytes(),
             rec.skeleton_proof(1), list(entry.out_roots), rec.entry_proof(1))  # fmt: skip
    return match


def test_a_short_entry_cannot_be_revealed_as_long_to_escalate(chain, contracts, step) -> None:  # noqa: F811
    """`reveal_long_entry` escalates, so a defender must not use it to take a checkable entry to the arbiter:
    a skeleton within the 4,096 bytes the rules read is refused there and must go through `reveal_entry`."""
    entry = _clip_scale(1, 40)
    match = _pinned_at(chain, contracts, step, entry, reveal=False)
    rec = match.defender.rec
    args = (match.game_id, entry.skeleton_bytes(), rec.skeleton_proof(1), list(entry.out_roots), rec.entry_proof(1))
    with pytest.raises(Exception, match="referee: not a long skeleton"):
        match.host.functions.reveal_long_entry(*args).call({"from": match.d})
    assert _try(match, "defender", "reveal_entry", *args) and match.stage() == OUTPUT


def test_a_clip_scale_of_54_gradients_is_longer_than_the_game_takes() -> None:
    """The premise of the test above, without a game: 40 gradients fit RefereeGame's 4,096 bytes, 54 do not."""
    assert len(_clip_scale(1, 40).skeleton_bytes()) <= 4_096 < len(_clip_scale(1, 54).skeleton_bytes())


# ------------------------------------------------------------------ a trace that no game can open


def test_a_zero_state_hash_in_the_trace_cannot_block_a_refereed_claim(chain, refereed_stack, step) -> None:  # noqa: F811
    """A worker commits the trace [h_0, 0x00…0] on a job of the refereed class. Either the commit is refused,
    or the verifier's SEGMENT claim on segment 0 opens its RefereeGame (which the worker then cannot win:
    no state tree has the zero word as its root)."""
    from tests.unit.contracts.test_refereed_disputes import VERIFIER, _disputed_job

    try:
        disputed = _disputed_job(chain, refereed_stack, [step["roots"][0], tc.ZERO])
    except AssertionError:  # a refused commit (its receipt's status is 0)
        return
    header, path = tc.header_proof(step["before"], step["binding"])
    reveal = disputed.disputes.functions.reveal_refereed(*disputed.reveal_args(), header, path)
    receipt = chain.eth.wait_for_transaction_receipt(reveal.transact({"from": chain.eth.accounts[VERIFIER], "gas": 8_000_000}))
    assert receipt.status == 1 and disputed.disputes.functions.game_of(disputed.dispute_id).call() != 0


@pytest.fixture(scope="module")
def refereed_stack(w3: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tests/unit/contracts/test_refereed_disputes.py's whole stack (PORTABLE refereed), deployed here."""
    from tests.unit.contracts import test_refereed_disputes as refereed

    return refereed.stack.__wrapped__(w3, refereed.refereed_deployment.__wrapped__(w3, tmp_path_factory))
