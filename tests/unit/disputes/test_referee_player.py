"""worker/referee_player.py plays RefereeGame.vy from a dispute kit (protocol/referee_kit.py) through the
durable outbox, on anvil, over the recorded portable MLP step of tests/unit/contracts/test_referee_game.py:
the game is driven by asking each side in turn for its next move until the ruling.

- The player as honest defender, its kit built by engine/referee_kit.py's builder, beats a challenger
  that steers to a correct entry; as honest challenger it beats a defender whose record has one output
  element wrong, and one whose next state has one tensor root wrong (the link, won on the clock).
- A move reorged out is owed again under the same key and rebroadcast with the same bytes; restarted
  mid-game (a fresh player on the kit reloaded from disk, a fresh outbox on the same journal) it
  re-derives the same move key (no second intent) and plays on to the same ruling.
- A kit without the pinned step's record asks for that step (KitIncompleteError).
- A kit whose files are cut, altered or too large is refused with a clear error."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from personas.referee_game import HOST_ACCOUNT, Side, corrupt, side_kit, steered_challenger, wrong_next_state
from protocol import referee_kit as rk
from protocol import tensor_commit as tc
from protocol import devnet
from tests.unit.contracts.helpers import reverted
from tests.unit.contracts.test_referee_game import MOVE, contracts, step  # noqa: F401 (fixtures)
from worker.referee_player import DESCENT, LINK, OUTBOX_KIND, KitIncompleteError, RefereePlayer
from worker.runtime.outbox import Outbox

from tests.unit.engine.helpers import examples
from tests.unit.portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)

RELU, LINEAR = 4, 5  # entries of the MLP step (after batch_index and the gathers of x and y, the first linear)


@pytest.fixture
def chain(w3: Any, contracts: dict[str, Any]) -> Any:  # noqa: F811
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory: pytest.TempPathFactory, mlp_steps, step) -> Path:  # noqa: F811
    """The honest kit of segment 0 (steps 0 and 1), built by the child's builder in two phases."""
    from engine.referee_kit import build_kit
    from protocol.artifacts import LocalStore

    spec, states, _ = mlp_steps
    directory = tmp_path_factory.mktemp("kit")
    store = LocalStore(directory / "store")
    roots_only = build_kit(spec, store, 0, states[0], directory / "kit", skeleton=step["skeleton"])
    assert roots_only.state_roots == step["roots"] and not roots_only.recorded
    assert not rk.load_kit(directory / "kit").recorded
    build_kit(spec, store, 0, states[0], directory / "kit", step=0)  # the roots are reused from disk
    return directory / "kit"


def _outbox(w3: Any, index: int, path: Path) -> Outbox:
    return Outbox(w3, Account.from_key(devnet.test_account_keys(index + 1)[index]), path, fee_cap_wei=100 * 10**9)


class Party:
    """A player with its own outbox (its account: 2 the defender, 3 the challenger)."""

    def __init__(self, w3: Any, player: RefereePlayer, path: Path):
        self.player, self.path = player, path
        self.outbox = _outbox(w3, 2 if player.role == "defender" else 3, path)
        player.register(self.outbox)

    def move(self, game_id: int) -> Any:
        """Queue and send this party's next move; the intent once it ended (None: no move owed)."""
        move = self.player.play(self.outbox, game_id)
        if move is None:
            return None
        for _ in range(40):  # a loaded box can take a few rounds (the outbox re-checks a receipt it misses)
            self.outbox.process()
            intent = self.outbox.get(move.key)
            if intent.done:
                return intent
            time.sleep(0.05)
        raise AssertionError(f"{move.key} did not end")


def _open(w3: Any, contracts: dict[str, Any], step: dict[str, Any], claimed: list[bytes]) -> int:  # noqa: F811
    host = contracts["host"]
    header, path = tc.header_proof(step["before"], step["binding"])
    accounts = w3.eth.accounts
    tx = host.functions.open_game(accounts[2], accounts[3], claimed[0], claimed[-1], header, path).transact(
        {"from": accounts[HOST_ACCOUNT]})  # fmt: skip
    assert w3.eth.wait_for_transaction_receipt(tx).status == 1
    return host.functions.game_count().call()


def _drive(parties: list[Party], game_id: int, until: int | None = None, rounds: int = 80) -> list[Any]:
    """Ask each side in turn for its next move until neither has one (the ruling, or the other side's
    clock running), or until the game reaches stage `until`; returns the intents that ended without
    effect (a move the contract refused)."""
    failed = []
    for _ in range(rounds):
        if until is not None and parties[0].player.game(game_id)["stage"] == until:
            return failed
        moved = False
        for party in parties:
            intent = party.move(game_id)
            if intent is not None:
                moved = moved or intent.succeeded
                if not intent.succeeded:
                    failed.append(intent)
        if not moved:
            return failed
    raise AssertionError("the game did not end")


def _travel(w3: Any, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def test_the_honest_defender_beats_a_steered_challenger(chain, contracts, step, kit_dir, tmp_path) -> None:  # noqa: F811
    kit = rk.load_kit(kit_dir)
    element = step["rec"].entries[RELU].outputs[0].size - 3
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", kit), tmp_path / "d.db")
    challenger = Party(chain, steered_challenger(chain, contracts, kit, RELU, element), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, kit.state_roots)
    assert _drive([defender, challenger], game_id) == []
    game = defender.player.game(game_id)
    assert (game["entry"], game["chunk_index"] * 8 + game["element"]) == (RELU, element)
    assert defender.player.ruling(game_id) == (True, False, False)
    keys = [i.key for i in defender.outbox.intents()]
    assert len(keys) == len(set(keys)) and all(k.startswith(f"referee:{contracts['host'].address.lower()}:{game_id}:") for k in keys)


def _wrong_defender(step: dict[str, Any], target: int) -> Side:  # noqa: F811
    rec = step["rec"]
    element = rec.entries[target].outputs[0].size - 3
    return Side([step["roots"][0], keccak(b"wrong state 1"), keccak(b"wrong state 2")], corrupt(rec, target, element),
                step["next_leaves"])  # fmt: skip


def test_the_honest_challenger_beats_a_corrupted_record(chain, contracts, step, kit_dir, tmp_path) -> None:  # noqa: F811
    side = _wrong_defender(step, LINEAR)
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", side_kit(side, step["before"], step["binding"])),
                     tmp_path / "d.db")  # fmt: skip
    challenger = Party(chain, RefereePlayer(chain, contracts, "challenger", rk.load_kit(kit_dir)), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, side.state_roots)
    assert _drive([defender, challenger], game_id) == []
    game = challenger.player.game(game_id)
    assert game["entry"] == LINEAR and game["chunk_index"] * 8 + game["element"] == step["rec"].entries[LINEAR].outputs[0].size - 3
    assert challenger.player.ruling(game_id) == (True, True, False)


def test_the_honest_challenger_wins_at_the_link_on_the_clock(chain, contracts, step, kit_dir, tmp_path) -> None:  # noqa: F811
    truth = Side(step["roots"], step["rec"], step["next_leaves"])
    side = wrong_next_state(truth, tensor=1)
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", side_kit(side, step["before"], step["binding"])),
                     tmp_path / "d.db")  # fmt: skip
    challenger = Party(chain, RefereePlayer(chain, contracts, "challenger", rk.load_kit(kit_dir)), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, side.state_roots)
    refused = _drive([defender, challenger], game_id)
    game = challenger.player.game(game_id)
    assert game["stage"] == LINK and game["link_leaf"] == 2  # leaf 1 + tensor 1
    assert [i.key.split(":")[-1] for i in refused] == ["prove_link"] and refused[0].state == "failed"
    assert challenger.player.next_move(game_id) is None  # the defender's clock still runs
    _travel(chain, MOVE + 1)
    assert challenger.move(game_id).key.endswith(":timeout")
    assert challenger.player.ruling(game_id) == (True, True, False)


def _wrong_relu_game_in_descent(chain: Any, contracts: dict[str, Any], step: dict[str, Any], kit_dir: Path,  # noqa: F811
                                tmp_path: Path) -> tuple[Party, Party, int]:
    """A defender with one ReLU output element wrong against the honest challenger, played to the descent
    (the reorg tests start there): (defender, challenger, game id)."""
    side = _wrong_defender(step, RELU)
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", side_kit(side, step["before"], step["binding"])),
                     tmp_path / "d.db")  # fmt: skip
    challenger = Party(chain, RefereePlayer(chain, contracts, "challenger", rk.load_kit(kit_dir)), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, side.state_roots)
    _drive([defender, challenger], game_id, until=DESCENT)
    return defender, challenger, game_id


def test_a_move_reorged_out_and_a_restart_mid_game_change_nothing(chain, contracts, step, kit_dir, tmp_path) -> None:  # noqa: F811
    """In the descent: the defender's confirmed move is dropped by a reorg (the chain reverted to before
    it), so it owes the same move under the same key and its outbox rebroadcasts the same transaction;
    then the challenger's answer is journaled and its process "crashes": a fresh player on the kit
    reloaded from disk, with a fresh outbox on the same journal, owes the same key (no second intent),
    sends it, and the game reaches the same ruling."""
    defender, challenger, game_id = _wrong_relu_game_in_descent(chain, contracts, step, kit_dir, tmp_path)
    before = chain.provider.make_request("evm_snapshot", [])["result"]
    posted = defender.move(game_id)
    assert posted.state == "confirmed" and defender.player.next_move(game_id) is None
    assert not defender.player.still_needed(posted)  # what the outbox asks before any resend
    assert chain.provider.make_request("evm_revert", [before])["result"] is True  # the reorg
    assert defender.player.next_move(game_id).key == posted.key and defender.player.still_needed(posted)
    _process_until(defender.outbox, posted.key, "confirmed")
    attempts = defender.outbox.attempts(posted.key)
    assert defender.outbox.get(posted.key).state == "confirmed" and len({a["tx_hash"] for a in attempts}) == 1
    assert defender.player.next_move(game_id) is None  # the post is on chain again: the challenger's turn

    queued = challenger.player.play(challenger.outbox, game_id)  # journaled, then the process "crashes"
    assert queued is not None and challenger.outbox.get(queued.key).state == "queued"
    count = len(challenger.outbox.intents())
    challenger.outbox.close()
    restarted = Party(chain, RefereePlayer(chain, contracts, "challenger", rk.load_kit(kit_dir)), tmp_path / "c.db")
    assert restarted.player.play(restarted.outbox, game_id) == queued  # the same move, the same key: no second intent
    restarted.outbox.recover()
    _process_until(restarted.outbox, queued.key, "mined", "confirmed")
    assert len(restarted.outbox.intents()) == count and restarted.outbox.get(queued.key).succeeded
    assert _drive([defender, restarted], game_id) == []
    assert restarted.player.ruling(game_id) == (True, True, False)


def test_a_move_cancelled_by_a_deeper_reorg_is_sent_again_once_owed_again(chain, contracts, step, kit_dir,  # noqa: F811
                                                                            tmp_path) -> None:
    """In the descent, a reorg takes away the defender's move and the challenger's answer to it: the
    challenger's outbox finds its answer no longer needed and fills its nonce with a no-op; once the
    defender's move lands again the same answer is owed under the same key, and the player queues it
    again (end to end, a worker lost its game on the clock before this: its cancelled move was never
    sent again)."""
    defender, challenger, game_id = _wrong_relu_game_in_descent(chain, contracts, step, kit_dir, tmp_path)
    assert challenger.player.next_move(game_id) is None  # the defender's turn
    before = chain.provider.make_request("evm_snapshot", [])["result"]
    posted = defender.move(game_id)
    answer = challenger.move(game_id)
    assert posted.state == answer.state == "confirmed"
    assert chain.provider.make_request("evm_revert", [before])["result"] is True  # the reorg takes both
    _process_until(challenger.outbox, answer.key, "cancelled")  # its nonce went to a no-op
    _process_until(defender.outbox, posted.key, "confirmed")  # the lost move, sent again
    again = challenger.move(game_id)
    assert again.key == answer.key and again.state == "confirmed"
    assert _drive([defender, challenger], game_id) == []
    assert defender.player.ruling(game_id) == (True, True, False)


def test_a_move_refused_while_a_reorg_took_its_cause_away_is_sent_again_once_owed_again(
        chain, contracts, step, kit_dir, tmp_path) -> None:  # noqa: F811
    """The challenger reads the defender's move and queues its answer; a reorg takes the defender's move away
    before the answer is simulated, so the simulation reverts ("not the challenger's turn") and the intent
    fails. Once the defender's move lands again the answer is owed again and queued again (the e2e saw a
    worker lose on its clock this way)."""
    defender, challenger, game_id = _wrong_relu_game_in_descent(chain, contracts, step, kit_dir, tmp_path)
    before = chain.provider.make_request("evm_snapshot", [])["result"]
    posted = defender.move(game_id)
    queued = challenger.player.play(challenger.outbox, game_id)  # read, journaled, not yet sent
    assert posted.state == "confirmed" and challenger.outbox.get(queued.key).state == "queued"
    assert chain.provider.make_request("evm_revert", [before])["result"] is True  # the reorg
    # its still-needed read raced the reorg (it saw the old head), the simulation did not
    challenger.outbox.register_check(OUTBOX_KIND, lambda intent: True)
    challenger.outbox.process()
    assert challenger.outbox.get(queued.key).state == "failed"  # simulated against the reorged chain
    challenger.player.register(challenger.outbox)
    _process_until(defender.outbox, posted.key, "confirmed")
    again = challenger.move(game_id)
    assert again.key == queued.key and again.state == "confirmed"
    assert _drive([defender, challenger], game_id) == []
    assert defender.player.ruling(game_id) == (True, True, False)


def test_a_kit_without_the_pinned_step_asks_for_it(chain, contracts, step, kit_dir, tmp_path) -> None:  # noqa: F811
    """The step bisection needs only the roots; the pinned step's record is asked for by its number."""
    claimed = _wrong_defender(step, RELU).state_roots  # the first step differs: step 0 is pinned
    roots_only = rk.DisputeKit(0, 0, claimed, *step["skeleton"][:2])
    defender = Party(chain, RefereePlayer(chain, contracts, "defender", roots_only), tmp_path / "d.db")
    challenger = Party(chain, RefereePlayer(chain, contracts, "challenger", rk.load_kit(kit_dir)), tmp_path / "c.db")
    game_id = _open(chain, contracts, step, claimed)
    with pytest.raises(KitIncompleteError) as raised:
        _drive([defender, challenger], game_id)
    assert raised.value.step == 0


def test_a_twin_duty_copies_the_pinned_step_s_record_and_builds_only_another_step(kit_dir, tmp_path) -> None:
    """worker.referee_duty: a second challenge of the same segment (spec, checkpoint, skeleton) whose game
    pins the step a twin's kit holds copies that record, no child; a step no twin holds starts its child."""
    import logging
    import shutil
    from types import SimpleNamespace

    from worker.referee_duty import RefereeDuties

    daemon = SimpleNamespace(log=logging.getLogger("test.twins"), stopping=False, client=None)
    duties = RefereeDuties(daemon, "defender", tmp_path / "referee", tmp_path / "store")
    duties.kit_builder = ("-c", "import time; time.sleep(30)")
    skeleton = (b"\x5a" * 32, 7, 9)
    first, second = (duties.add(n, 1, 0, b'{"spec": 1}', b"h_0", skeleton, 0) for n in (1, 2))
    shutil.copytree(kit_dir, first.kit_dir)
    roots = duties._kit(second, None)  # phase 1 from the twin's recorded kit: its roots alone
    assert roots is not None and roots.state_roots == rk.load_kit(kit_dir).state_roots and not roots.recorded
    duties._build(second, 0)
    copied = rk.load_kit(second.kit_dir)
    assert copied.step == 0 and copied.entry_leaves() == rk.load_kit(kit_dir).entry_leaves() and not duties._children
    duties._build(second, 1)  # no twin holds step 1: its own child
    try:
        assert set(duties._children) == {2} and duties._children[2][1] == 1
    finally:
        duties.stop()


def _process_until(outbox: Outbox, key: str, *states: str, rounds: int = 3, timeout: float = 30.0) -> None:
    """Run `rounds` rounds of the outbox (its stored state is the old one until a round sees the reorg),
    then more until the intent is in one of `states`. After a reorg a resend takes a round to re-check and
    a round to land, and on a loaded machine a round's still-needed read can come back undecided, so a
    fixed number of rounds is not always enough; a wrong end state still fails here."""
    deadline = time.monotonic() + timeout
    for _ in range(rounds):
        outbox.process()
    while outbox.get(key).state not in states:
        assert time.monotonic() < deadline, f"{key} stayed {outbox.get(key).state}, not {' or '.join(states)}"
        time.sleep(0.02)
        outbox.process()


def _corrupt_outputs(directory: Path) -> None:
    path = directory / rk.OUTPUTS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last value's lowest bit
    path.write_bytes(bytes(data))


def _cut_json(directory: Path) -> None:
    path = directory / rk.KIT_JSON
    path.write_bytes(path.read_bytes()[:-10])


def _other_state_root(directory: Path) -> None:
    meta = json.loads((directory / rk.KIT_JSON).read_text())
    meta["state_roots"][0] = "0x" + "11" * 32
    (directory / rk.KIT_JSON).write_text(json.dumps(meta))


def _missing_state(directory: Path) -> None:
    (directory / rk.STATE_FILE).unlink()


def _padded_header(directory: Path) -> None:
    path = directory / rk.OUTPUTS_FILE
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    path.write_bytes((length + 8).to_bytes(8, "little") + data[8 : 8 + length] + b" " * 8 + data[8 + length :])


def _stray_hints(directory: Path) -> None:
    meta = json.loads((directory / rk.KIT_JSON).read_text())
    meta["record"]["entries"][0]["hints"] = [1]  # entry 0 is batch_index: no hashed argument to reveal
    (directory / rk.KIT_JSON).write_text(json.dumps(meta))


BREAKS = [(_corrupt_outputs, "not its committed root"), (_cut_json, "not JSON"), (_other_state_root, "not the state r_t"),
          (_missing_state, "state.safetensors is missing"), (_padded_header, "not canonical"),
          (_stray_hints, "only a move's strides")]  # fmt: skip


@pytest.mark.parametrize(("damage", "message"), BREAKS, ids=[b.__name__.strip("_") for b, _ in BREAKS])
def test_a_malformed_kit_is_refused_with_a_clear_error(kit_dir, tmp_path, damage, message: str) -> None:
    copy = tmp_path / "kit"
    copy.mkdir()
    for name in (rk.KIT_JSON, rk.STATE_FILE, rk.OUTPUTS_FILE):
        (copy / name).write_bytes((kit_dir / name).read_bytes())
    rk.load_kit(copy)
    damage(copy)
    with pytest.raises(rk.KitError, match=message):
        rk.load_kit(copy)


def test_a_kit_file_over_its_limit_is_refused(kit_dir, monkeypatch) -> None:
    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", 1_000)
    with pytest.raises(rk.KitError, match="over the limit"):
        rk.load_kit(kit_dir)


ARRAYS = st.sampled_from([np.float32, np.int64, np.float64, np.bool_]).flatmap(
    lambda dtype: st.lists(st.integers(0, 3), max_size=3).flatmap(
        lambda shape: st.binary(min_size=int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize,
                                max_size=int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize).map(
            lambda raw: (np.frombuffer(raw, np.uint8).astype(bool) if dtype is np.bool_ else np.frombuffer(raw, dtype)).reshape(shape))))  # fmt: skip


@settings(max_examples=examples(30), deadline=None)
@given(st.dictionaries(st.text("abc.0123", min_size=1, max_size=6), ARRAYS, max_size=4))
def test_canonical_tensors_round_trip_bit_for_bit_and_refuse_a_cut(tensors: dict[str, np.ndarray]) -> None:
    data = rk.encode_tensors(tensors)
    back = rk.decode_tensors(data, "t")
    assert sorted(back) == sorted(tensors)
    for name, array in tensors.items():
        assert back[name].shape == array.shape and tc.tensor_root(back[name]) == tc.tensor_root(array)
    if len(data) > 8 + int.from_bytes(data[:8], "little"):  # some tensor bytes: cutting one is refused
        with pytest.raises(rk.KitError):
            rk.decode_tensors(data[:-1], "t")


@settings(max_examples=examples(30), deadline=None)
@given(st.data())
def test_every_skeleton_parses_and_every_cut_or_extension_is_refused(step, data) -> None:  # noqa: F811
    rec = step["rec"]
    entry = data.draw(st.sampled_from(rec.entries))
    raw = entry.skeleton_bytes()
    parsed = rk.parse_skeleton(raw)
    assert parsed.kernel == entry.kernel and [(r.kind, r.a, r.b, r.shape) for r in parsed.inputs] == [
        (r.kind, r.a, r.b, r.shape) for r in entry.inputs] and parsed.outputs == entry.out_shapes  # fmt: skip
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ValueError):
        rk.parse_skeleton(raw[:cut])
    with pytest.raises(ValueError):
        rk.parse_skeleton(raw + data.draw(st.binary(min_size=1, max_size=4)))
