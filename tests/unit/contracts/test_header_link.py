"""The next state's header at the link (docs/referee.md, "On chain: the game", LINK): with P_{L-1} agreed
and r_{t+1} disputed, a challenger that names the header leaf (0) no longer sends the game to the
arbiter. The defender reveals r_t's header (leaf 0 under the agreed r_t) and r_{t+1}'s (leaf 0 under
r_{t+1}), and StateLink checks that the second is what one optimizer step makes of the first
(`protocol.tensor_commit.next_header`, mirrored by `lib/state_link.vy` `_next_header_holds`).

- An honest defender whose header leaf a lying challenger disputes wins.
- A defender whose r_{t+1} header is wrong in one field class (step, cursor, dropout counter, segment
  steps, the boundary at the segment's last step) is pinned at the link by the honest challenger, cannot
  prove the header and loses on its clock.
- The production player (worker/referee_player.py) sends `prove_header_link` as the defender and
  names the header leaf as the honest challenger.
- The advance rule against the engine's real headers over a whole run (epoch wraps, segment boundaries,
  a shorter last segment), Python and Vyper alike, and any one changed field refused by both."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personas.referee_game import LINK, Match, Side, side_kit, steered_challenger, wrong_next_header
from protocol import referee_kit as rk
from protocol import tensor_commit as tc
from tests.unit.contracts.test_referee_game import (ARITY, LEVELS, MOVE, WHOLE_GAME_TARGET, _link_match, _travel,  # noqa: F401
                                                    chain, contracts, step)  # fmt: skip

from tests.unit.disputes.test_referee_player import Party, _drive, _open, kit_dir  # noqa: F401 (a fixture)
from worker.referee_player import RefereePlayer

from ..engine.helpers import examples, tiny_digits
from ..portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def last_step(step: dict[str, Any], mlp_steps) -> dict[str, Any]:  # noqa: F811
    """The MLP's step 1, the last of its first segment (segments of 2): r_1 agreed, r_2 the boundary."""
    from engine.api import state_binding

    spec, states, records = mlp_steps
    bindings = [state_binding(spec, i, step["skeleton"]) for i in (1, 2)]
    roots = [tc.state_root(s, b) for s, b in zip(states[1:], bindings, strict=True)]
    return {"before": states[1], "binding": bindings[0], "roots": roots, "rec": records[1],
            "next_leaves": tc.bound_state_leaves(states[2], bindings[1])}  # fmt: skip


def _agreed_header(side: dict[str, Any]) -> bytes:
    return tc.header_proof(side["before"], side["binding"])[0]


def test_an_honest_defender_whose_header_is_disputed_wins(chain, contracts, step) -> None:
    """A challenger that agrees to every prefix root and disputes the header leaf loses: the defender
    proves r_{t+1}'s header from r_t's, and the game is ruled without the arbiter."""
    match = _link_match(chain, contracts, step, wrong=False, leaf=0)
    match.play()
    game = match.game()
    assert game["link_leaf"] == 0 and match.ruling() == (True, False, False)
    assert sum(match.gas.values()) < WHOLE_GAME_TARGET


# one field class of the next header at a time: (the side, fields changed, what StateLink names)
WRONG_FIELDS = [
    ("step", {"step": 2, "dropout_counter": 2}, "next step"),
    ("cursor", {"position": 1}, "next cursor"),
    ("dropout counter", {"dropout_counter": 7}, "next rng"),
    ("segment steps", {"segment_steps": 2}, "next segment steps"),
    ("kept field", {"seed": 12345}, "next header not carried over"),
]


@pytest.mark.parametrize(("what", "fields", "message"), WRONG_FIELDS, ids=[w[0] for w in WRONG_FIELDS])
def test_a_defender_with_a_wrong_next_header_loses_at_the_link(chain, contracts, step, what: str, fields: dict[str, int],
                                                               message: str) -> None:  # fmt: skip
    _wrong_header_loses(chain, contracts, step, fields, message)


def test_a_wrong_boundary_at_the_segment_s_last_step_loses(chain, contracts, last_step) -> None:
    """Step 1 of a segment of 2: r_2 is boundary 1. A defender whose r_2 says it is inside a segment (and
    one that names boundary 2) loses; its own header says that it is the boundary."""
    agreed = tc.StateHeader.decode(_agreed_header(last_step))
    assert agreed.segment_steps == 1 and tc.next_header(agreed).boundary == 1
    _wrong_header_loses(chain, contracts, last_step, {"boundary": None}, "next boundary")
    _wrong_header_loses(chain, contracts, last_step, {"boundary": 2}, "next boundary")
    honest = Side([*last_step["roots"]], last_step["rec"], last_step["next_leaves"])
    match = Match(chain, contracts, ARITY, LEVELS, last_step["before"], last_step["binding"], honest, honest,
                  honest_challenger=False, target=len(last_step["rec"].entries), target_element=0)  # fmt: skip
    match.play()
    assert match.ruling() == (True, False, False)


def _wrong_header_loses(chain: Any, contracts: dict[str, Any], side: dict[str, Any], fields: dict[str, Any], message: str) -> None:
    truth = Side(list(side["roots"]), side["rec"], side["next_leaves"])
    defender = wrong_next_header(truth, _agreed_header(side), **fields)
    match = Match(chain, contracts, ARITY, LEVELS, side["before"], side["binding"], defender, truth, honest_challenger=True,
                  target=len(side["rec"].entries), target_element=0)  # fmt: skip
    match.play(LINK, "defender")
    game = match.game()
    assert game["stage"] == LINK and game["link_leaf"] == 0 and game["entry"] == len(side["rec"].entries)
    with pytest.raises(Exception, match=f"state_link: {message}"):
        match.host.functions.prove_header_link(match.game_id, match.header_link_proof()).call({"from": match.d})
    _travel(chain, MOVE + 1)
    match.send("anyone", "host", "timeout", match.game_id)
    assert match.ruling() == (True, True, False)


def test_forged_header_link_proofs_are_refused(chain, contracts, step) -> None:
    """A header not under the agreed r_t or not under r_{t+1}, a tensor leaf's proof for the header, a
    header proof for a tensor leaf and a proof from the challenger are refused."""
    match = _link_match(chain, contracts, step, wrong=False, leaf=0)
    match.play(LINK, "defender")
    prove = match.host.functions.prove_header_link
    agreed, agreed_path, following, next_path = honest = match.header_link_proof()
    def other_seed(header: bytes) -> bytes:
        fields = tc.StateHeader.decode(header)
        return dataclasses.replace(fields, seed=fields.seed ^ 1).encode()

    cases = [((other_seed(agreed), agreed_path, following, next_path), "header not in the agreed state"),
             ((agreed, agreed_path, other_seed(following), next_path), "header not in the next state"),
             ((agreed, agreed_path, following, agreed_path), "header not in the next state")]  # fmt: skip
    for proof, message in cases:
        with pytest.raises(Exception, match=message):
            prove(match.game_id, proof).call({"from": match.d})
    with pytest.raises(Exception, match="not the defender"):
        prove(match.game_id, honest).call({"from": match.c})
    with pytest.raises(Exception, match="state_link: not a tensor leaf"):
        match.host.functions.prove_link(match.game_id, match.link_proof(leaf=1)).call({"from": match.d})
    prove(match.game_id, honest).call({"from": match.d})  # the honest proof passes
    tensor = _link_match(chain, contracts, step, wrong=False, leaf=1)
    tensor.play(LINK, "defender")
    with pytest.raises(Exception, match="state_link: not the header leaf"):
        tensor.host.functions.prove_header_link(tensor.game_id, honest).call({"from": tensor.d})


# ------------------------------------------------------------------ the production player


def test_the_player_proves_its_header_when_a_challenger_disputes_it(chain, contracts, step, kit_dir, tmp_path) -> None:
    kit = rk.load_kit(kit_dir)
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", kit), tmp_path / "d.db")
    challenger = Party(chain, steered_challenger(chain, contracts, kit, len(step["rec"].entries), 0), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, kit.state_roots)
    assert _drive([defender, challenger], game_id) == []
    assert defender.player.game(game_id)["link_leaf"] == 0 and defender.player.ruling(game_id) == (True, False, False)
    assert [i.key.split(":")[-1] for i in defender.outbox.intents()][-1] == "prove_header_link"


def test_the_player_names_a_wrong_header_and_wins_on_the_clock(chain, contracts, step, kit_dir, tmp_path) -> None:
    """A defender whose r_1 says cursor position 1 is pinned at the link; the honest challenger names leaf
    0; the defender's kit has no header proof to give (its r_{t+1} is not the advanced header)."""
    truth = Side(step["roots"], step["rec"], step["next_leaves"])
    side = wrong_next_header(truth, _agreed_header(step), position=1)
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", side_kit(side, step["before"], step["binding"])),
                     tmp_path / "d.db")  # fmt: skip
    challenger = Party(chain, RefereePlayer(chain, contracts, "challenger", rk.load_kit(kit_dir)), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, side.state_roots)
    assert _drive([defender, challenger], game_id, until=LINK) == []
    assert challenger.player.game(game_id)["link_leaf"] == 0
    with pytest.raises(rk.KitError, match="not the one the agreed header advances to"):
        defender.player.next_move(game_id)
    assert challenger.player.next_move(game_id) is None  # the defender's clock still runs
    _travel(chain, MOVE + 1)
    assert challenger.move(game_id).key.endswith(":timeout")
    assert challenger.player.ruling(game_id) == (True, True, False)


@pytest.mark.parametrize(("constants", "message"), [(None, "lacks or mistypes"), ([1, 2, 3], "four job constants"),
                                                    ([1, 2, 2**32, 4], "segment length"), ([1, 2, 3, 4], "not the state r_t")])
def test_a_kit_keeps_the_job_constants_its_roots_bind(kit_dir, tmp_path: Path, constants: Any, message: str) -> None:  # noqa: F811
    """The kit's constants are part of r_t's binding: missing, malformed or other ones are refused."""
    assert rk.load_kit(kit_dir).job_constants[1] > 0  # per_epoch bound
    copy = tmp_path / "kit"
    copy.mkdir()
    for name in (rk.KIT_JSON, rk.STATE_FILE, rk.OUTPUTS_FILE):
        (copy / name).write_bytes((kit_dir / name).read_bytes())
    meta = json.loads((copy / rk.KIT_JSON).read_text())
    if constants is None:
        del meta["job_constants"]
    else:
        meta["job_constants"] = constants
    (copy / rk.KIT_JSON).write_text(json.dumps(meta))
    with pytest.raises(rk.KitError, match=message):
        rk.load_kit(copy)


# ------------------------------------------------------------------ the advance rule over a whole run


HEADERS = st.builds(
    tc.StateHeader, spec_hash=st.binary(min_size=32, max_size=32), step=st.integers(0, 2**64 - 2),
    boundary=st.none() | st.integers(0, 2**64 - 2), epoch=st.integers(0, 2**64 - 2), position=st.integers(0, 2**64 - 2),
    data_epoch=st.integers(0, 2**64 - 2), dropout_counter=st.integers(0, 2**64 - 2), seed=st.integers(0, 2**64 - 2),
    skeleton_root=st.binary(min_size=32, max_size=32), record_length=st.integers(0, 2**32 - 1),
    segment_steps=st.integers(0, 2**32 - 1), leaf_count=st.integers(0, 2**32 - 1), total_steps=st.integers(0, 2**64 - 2),
    per_epoch=st.integers(0, 2**64 - 2), segment_length=st.integers(0, 2**32 - 1), batch_size=st.integers(0, 2**32 - 1))


@settings(max_examples=examples(60), deadline=None)
@given(header=HEADERS, cut=st.integers(1, 8))
def test_a_binary_header_reads_back_field_for_field(header: tc.StateHeader, cut: int) -> None:
    encoded = header.encode()
    assert len(encoded) == tc.HEADER_BYTES and tc.StateHeader.decode(encoded) == header
    for wrong in (encoded[:-cut], encoded + bytes(cut)):
        with pytest.raises(ValueError, match="a state header is 156 bytes"):
            tc.StateHeader.decode(wrong)


@pytest.fixture(scope="module")
def run_headers() -> list[tc.StateHeader]:
    """The header of every state of a whole native run (the header rules do not depend on the
    arithmetic): 8 steps in segments of 3 (the last of 2), 2 batches an epoch, so the cursor wraps inside
    segments, at a boundary and at the last state."""
    from engine.api import job_per_epoch, state_binding
    from engine.training import Job

    spec = tiny_digits(steps=8, segment_steps=3, batch_size=512)
    per_epoch = job_per_epoch(spec, None)
    assert per_epoch == 2
    job = Job(spec, None, "cpu")
    states = [job.state_bytes()]
    while job.step < spec.steps:
        job.train(job.step + 1)
        states.append(job.state_bytes())
    skeleton = (b"\x5a" * 32, 9, per_epoch)
    return [tc.StateHeader.decode(tc.header_proof(s, state_binding(spec, k, skeleton))[0]) for k, s in enumerate(states)]


def test_the_run_s_headers_wrap_epochs_and_cross_boundaries(run_headers) -> None:
    """The run covers what the rule must get right: wraps, boundaries, the shorter last segment."""
    assert [h.boundary for h in run_headers] == [0, None, None, 1, None, None, 2, None, 3]
    assert [h.epoch for h in run_headers] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert [h.position for h in run_headers] == [0, 512] * 4 + [0]
    assert [h.dropout_counter for h in run_headers] == list(range(9))
    assert [h.segment_steps for h in run_headers] == [3, 2, 1, 3, 2, 1, 2, 1, 0]
    with pytest.raises(ValueError, match="last state"):
        tc.next_header(run_headers[-1])


def test_no_next_header_after_the_last_state_or_without_constants(contracts, run_headers) -> None:
    """Both sides refuse to advance the job's last state, or a header whose constants are unbound."""
    link = contracts["link"].functions
    last, first = run_headers[-1], run_headers[0]
    unbound = dataclasses.replace(first, per_epoch=0)
    with pytest.raises(Exception, match="state_link: the agreed state is the last"):
        link.next_header_holds(last.encode(), dataclasses.replace(last, step=last.step + 1).encode()).call()
    with pytest.raises(ValueError, match="binds no job constants"):
        tc.next_header(unbound)
    with pytest.raises(Exception, match="state_link: job constants unbound"):
        link.next_header_holds(unbound.encode(), dataclasses.replace(run_headers[1], per_epoch=0).encode()).call()


FIELDS = [f.name for f in dataclasses.fields(tc.StateHeader)]


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_advance_rule_is_the_engine_s_in_python_and_vyper(contracts, run_headers, data: Any) -> None:
    """next_header(h_t) is the engine's h_{t+1} at every step, and StateLink agrees; a next header with
    one field changed is refused by both."""
    link = contracts["link"].functions
    t = data.draw(st.integers(0, len(run_headers) - 2), label="step")
    agreed, after = run_headers[t], run_headers[t + 1]
    assert tc.next_header(agreed) == after
    assert link.next_header_holds(agreed.encode(), after.encode()).call()
    field = data.draw(st.sampled_from(FIELDS), label="field")
    value = getattr(after, field)
    if isinstance(value, bytes):
        changed: Any = bytes([value[0] ^ 1]) + value[1:]
    elif value is None:
        changed = data.draw(st.integers(0, 2**32), label="boundary")
    else:
        top = 2**32 - 1 if field in ("record_length", "segment_steps", "leaf_count", "segment_length", "batch_size") else 2**64 - 2
        changed = data.draw(st.integers(0, top).filter(lambda v: v != value), label="value")
    wrong = dataclasses.replace(after, **{field: changed})
    assert wrong.encode() != after.encode() and tc.next_header(agreed) != wrong
    with pytest.raises(Exception, match="state_link: "):
        link.next_header_holds(agreed.encode(), wrong.encode()).call()
