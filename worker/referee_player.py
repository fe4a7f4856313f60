"""The production player of `contracts/RefereeGame.vy` (docs/referee.md, "On chain: the game"): one
party's next move in a game, read from chain state and answered from its dispute kit
(protocol/referee_kit.py). Torch-free: the kit is built in a child process (`python -m
engine.referee_kit`).

`RefereePlayer.next_move(game_id)` returns the one move this party owes now, or a move anyone may send
that wins for it (a sub-game's `timeout` or the host's once the other party's clock ran out, `advance`
once a sub-game ended), or None. Each move has a key, `referee:{host}:{game}:{stage}:{sub}:{round}:
{function}`, that names the chain state it answers: after a restart or a reorg the same state yields the
same key, so the durable outbox (worker/runtime/outbox.py) sends it at most once, and its still-needed
check (`register`) drops a queued move the chain has moved past. The honest challenger follows the first
difference from its own kit: the state roots, the prefix roots, the revealed entry's outputs, the descent's
children, the revealed chunk's elements and the revealed leaves of the next state. The values the other
party posted are read from the logs of the sub-games and the host (`Posted`, `StateRevealed`) and from the
calldata of the host's `reveal_entry`, each checked against the hash or leaf the contract stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eth_abi import encode as abi_encode

from protocol import bisection as bis
from protocol import referee_kit as rk
from protocol import tensor_commit as tc
from protocol import tensor_descent as td
from protocol.errors import DisputeError
from protocol.tensor_commit import keccak

# host stages (RefereeGame.vy STAGE_*)
NONE, STEPS, RECORD, OPS, ENTRY, OUTPUT, DESCENT, ELEMENT, PROOF, DECIDED, ESCALATED, REVEAL, LEAF, LINK = range(14)
STAGE_NAMES = ("none", "steps", "record", "ops", "entry", "output", "descent", "element", "proof", "decided", "escalated",
               "reveal", "leaf", "link")  # fmt: skip
GAME_FIELDS = ("defender", "challenger", "stage", "deadline", "leaf_count", "sub_game", "step", "state_root",
               "skeleton_root", "record_length", "entry", "previous_prefix", "entry_leaf", "skeleton_leaf", "output",
               "output_size", "chunk_index", "chunk", "element", "defender_wrong", "next_root", "link_leaf", "rules",
               "wide_code")  # fmt: skip
BISECTION_FIELDS = ("host", "defender", "challenger", "arity", "move_seconds", "lo", "hi", "c_lo", "c_hi", "status", "round",
                    "deadline", "values_hash")  # fmt: skip
DESCENT_FIELDS = ("host", "defender", "challenger", "tensor_root", "code", "dims", "byte_length", "chunk_count", "levels",
                  "move_seconds", "height", "position", "node", "status", "round", "deadline", "children_hash", "chunk")  # fmt: skip
# sub-game statuses (Bisection.vy and TensorDescent.vy)
DEFENDER_TO_MOVE, CHALLENGER_TO_MOVE, PINNED, DEFENDER_TIMED_OUT, CHALLENGER_TIMED_OUT, PADDING_WRONG = range(1, 7)
DEFENDER_OWES = frozenset({RECORD, ENTRY, PROOF, REVEAL, LINK})
CHALLENGER_OWES = frozenset({OUTPUT, ELEMENT, LEAF})
OUTBOX_KIND = "referee"
# how an outbox intent ends when the move was no longer needed (or its nonce went to another transaction)
UNNEEDED_ENDS = frozenset({"skipped", "cancelled", "dropped"})
# how it ends when the contract refused it (its simulation, or once mined); queued again once owed again,
# at most MAX_FAILED_RETRIES times per key and process
REFUSED_ENDS = frozenset({"failed", "reverted"})
MAX_FAILED_RETRIES = 3

Role = Literal["defender", "challenger"]


def _per_chunk(wide_code: int) -> int:
    """Elements per 32-byte chunk of the disputed output (RefereeGame's `wide_code`: 0 for binary32)."""
    return tc.elements_per_chunk(wide_code or 1)


# wide_code -> (magnitude mask, infinity's pattern) of the outputs RefereeGame compares with NaN as a class: binary32
# (wide_code 0) and binary64 (its dtype code, 3 in tensor_commit.DTYPE_CODES); a NaN's magnitude is above infinity's
_NAN_CLASS = {0: (0x7FFFFFFF, 0x7F800000), 3: (0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000)}


def _differs(mine: bytes, revealed: bytes, wide_code: int) -> bool:
    """Whether RefereeGame's PROOF finds two big-endian elements of the disputed output different: equal
    bits are the same, and so are two NaNs of a binary32 or binary64 output (NaN as a class)."""
    if mine == revealed:
        return False
    if wide_code not in _NAN_CLASS:
        return True
    magnitude, infinity = _NAN_CLASS[wide_code]
    return not all(int.from_bytes(v, "big") & magnitude > infinity for v in (mine, revealed))


def submit_owed(outbox: Any, key: str, kind: str, request: Any, refused: dict[str, int], *,
                job_id: int | None = None) -> Any:
    """Queue a transaction the chain state owes now under `key` (idempotent), and queue it again when the
    stored intent ended without effect: no longer needed (a reorg took away what made it owed, so the
    outbox skipped it or filled its nonce with a no-op: owed again now, it is needed), or refused by the
    contract under another chain state (at most MAX_FAILED_RETRIES times per key, counted in `refused`:
    a transaction the contract keeps refusing is a bug to report, not to send each tick)."""
    intent = outbox.submit(key, kind, request, job_id=job_id)
    if intent.state in UNNEEDED_ENDS:
        return outbox.retry(key, request)
    if intent.state in REFUSED_ENDS and refused.get(key, 0) < MAX_FAILED_RETRIES:
        refused[key] = refused.get(key, 0) + 1
        return outbox.retry(key, request)
    return intent


class KitIncompleteError(DisputeError):
    """The game pinned a step the kit holds no record of: build it (`engine.referee_kit --step`), then play on."""

    def __init__(self, step: int):
        super().__init__(f"the dispute kit needs the record of step {step} of the segment")
        self.step = step


@dataclass(frozen=True)
class Move:
    """One transaction: `function(*args)` on contract `contract` ("host", "bisection" or "descent")."""

    key: str
    contract: str
    function: str
    args: tuple[Any, ...]


class RefereePlayer:
    """One party (`role`) of RefereeGame games over one disputed segment, answering from `kit`.

    `contracts` maps "host", "bisection" and "descent" to web3 contracts; `from_block` bounds the log
    queries (the block the game was opened in, or earlier)."""

    def __init__(self, w3: Any, contracts: Mapping[str, Any], role: Role, kit: rk.DisputeKit, *, from_block: int = 0):
        if role not in ("defender", "challenger"):
            raise ValueError(f"role {role!r} is neither defender nor challenger")
        self.w3, self.contracts, self.role, self.kit, self.from_block = w3, contracts, role, kit, from_block
        self.host = contracts["host"]
        self._failed_retries: dict[str, int] = {}  # move key -> times queued again after the contract refused it

    # ---------------------------------------------------------------- reading the chain

    def game(self, game_id: int) -> dict[str, Any]:
        return dict(zip(GAME_FIELDS, self.host.functions.games(game_id).call(), strict=True))

    def ruling(self, game_id: int) -> tuple[bool, bool, bool]:
        """(decided, defender_wrong, escalated)."""
        decided, wrong, escalated = self.host.functions.ruling_of(game_id).call()
        return bool(decided), bool(wrong), bool(escalated)

    def _now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def _key(self, game_id: int, stage: int, sub: int, round_: int, function: str) -> str:
        return f"referee:{self.host.address.lower()}:{game_id}:{STAGE_NAMES[stage]}:{sub}:{round_}:{function}"

    def _logs(self, contract: str, event: str, game_id: int) -> list[Any]:
        found = getattr(self.contracts[contract].events, event).get_logs(from_block=self.from_block,
                                                                          argument_filters={"game_id": game_id})  # fmt: skip
        return sorted(found, key=lambda log: (log["blockNumber"], log["logIndex"]))

    # ---------------------------------------------------------------- the move

    def next_move(self, game_id: int) -> Move | None:
        """The move this party owes now in game `game_id`, or one anyone may send that wins for it, or None
        (the other party's turn with its clock running, or the game is over). KitIncompleteError when the
        game pinned a step whose record the kit lacks."""
        game = self.game(game_id)
        stage = game["stage"]
        if stage in (STEPS, OPS):
            return self._bisection(game_id, game)
        if stage == DESCENT:
            return self._descent(game_id, game)
        if stage in DEFENDER_OWES or stage in CHALLENGER_OWES:
            mine = (stage in DEFENDER_OWES) == (self.role == "defender")
            if not mine:
                if self._now() > game["deadline"]:
                    return Move(self._key(game_id, stage, 0, 0, "timeout"), "host", "timeout", (game_id,))
                return None
            if self.kit.step != game["step"]:
                raise KitIncompleteError(game["step"])
            return self._host_move(game_id, game, stage)
        return None  # NONE, DECIDED, ESCALATED

    def _host_move(self, game_id: int, game: dict[str, Any], stage: int) -> Move:
        kit, j = self.kit, game["entry"]
        args: tuple[Any, ...]
        if stage == RECORD:
            function, args = "post_record", (game_id, *kit.header_proof())
        elif stage == ENTRY:
            function, args = rk.reveal_function(kit.entries[j].skeleton), (game_id, *kit.reveal_entry_args(j))
        elif stage == PROOF:
            element = _per_chunk(game["wide_code"]) * game["chunk_index"] + game["element"]
            skeleton, hints = kit.entries[j].skeleton, list(kit.element_hints(j, game["output"], element))
            proofs, columns = kit.element_proof_args(j, game["output"], element)
            function, args = "prove_element", (game_id, skeleton, proofs, hints, columns)
        elif stage == REVEAL:
            function, args = "reveal_state", (game_id, kit.next_leaves)
        elif stage == LINK and game["link_leaf"] == 0:
            function, args = "prove_header_link", (game_id, kit.header_link_proof())
        elif stage == LINK:
            function, args = "prove_link", (game_id, kit.link_proof(game["link_leaf"]))
        elif stage == OUTPUT:
            skeleton, theirs = self._revealed_entry(game_id, game)
            output = self.choose_output(j, theirs)
            function, args = "dispute_output", (game_id, output, skeleton, theirs)
        elif stage == ELEMENT:
            function, args = "dispute_element", (game_id, self.choose_element(game))
        else:  # LEAF
            function, args = "dispute_leaf", (game_id, self.choose_leaf(self._revealed_leaves(game_id)))
        return Move(self._key(game_id, stage, 0, 0, function), "host", function, args)

    def _sub_ended(self, game_id: int, stage: int, sub: int, status: int) -> Move | None:
        """`advance` once a sub-game ended pinned (neutral) or in this party's favour."""
        lost = {DEFENDER_TIMED_OUT, PADDING_WRONG} if self.role == "defender" else {CHALLENGER_TIMED_OUT}
        if status in lost:
            return None  # the other party carries its win over
        return Move(self._key(game_id, stage, sub, 0, "advance"), "host", "advance", (game_id,))

    def _bisection(self, game_id: int, game: dict[str, Any]) -> Move | None:
        stage, sub = game["stage"], game["sub_game"]
        fields = dict(zip(BISECTION_FIELDS, self.contracts["bisection"].functions.games(sub).call(), strict=True))
        status, round_ = fields["status"], fields["round"]
        if status >= PINNED:
            return self._sub_ended(game_id, stage, sub, status)
        mover = "defender" if status == DEFENDER_TO_MOVE else "challenger"
        if mover != self.role:
            if self._now() > fields["deadline"]:
                return Move(self._key(game_id, stage, sub, round_, "timeout"), "bisection", "timeout", (sub,))
            return None
        if stage == OPS and self.kit.step != game["step"]:
            raise KitIncompleteError(game["step"])
        sequence = self.kit.state_roots if stage == STEPS else self.kit.ops()
        lo, hi, arity = fields["lo"], fields["hi"], fields["arity"]
        if self.role == "defender":
            return Move(self._key(game_id, stage, sub, round_, "post"), "bisection", "post",
                        (sub, bis.defender_values(lo, hi, arity, sequence)))  # fmt: skip
        values = self._posted(game_id, "bisection", sub, round_, "values", fields["values_hash"])
        part = self.choose_part(stage, lo, hi, arity, values, sequence)
        return Move(self._key(game_id, stage, sub, round_, "choose"), "bisection", "choose", (sub, part, values))

    def _descent(self, game_id: int, game: dict[str, Any]) -> Move | None:
        sub = game["sub_game"]
        fields = dict(zip(DESCENT_FIELDS, self.contracts["descent"].functions.games(sub).call(), strict=True))
        status, round_ = fields["status"], fields["round"]
        if status >= PINNED:
            return self._sub_ended(game_id, DESCENT, sub, status)
        mover = "defender" if status == DEFENDER_TO_MOVE else "challenger"
        if mover != self.role:
            if self._now() > fields["deadline"]:
                return Move(self._key(game_id, DESCENT, sub, round_, "timeout"), "descent", "timeout", (sub,))
            return None
        j, output = game["entry"], game["output"]
        height, position, per_move = fields["height"], fields["position"], fields["levels"]
        if self.role == "defender":
            if height == 0:
                chunk = tc.chunks_of(self.kit.outputs[(j, output)])[position]
                return Move(self._key(game_id, DESCENT, sub, round_, "reveal"), "descent", "reveal", (sub, chunk))
            children = td.descendants(self.kit.chunk_levels(j, output), height, position, per_move)
            return Move(self._key(game_id, DESCENT, sub, round_, "post"), "descent", "post", (sub, children))
        children = self._posted(game_id, "descent", sub, round_, "children", fields["children_hash"])
        child = self.choose_child(game, height, position, per_move, children)
        if child is None:
            return None  # the posted children are all this party's own: nothing to dispute under this node
        return Move(self._key(game_id, DESCENT, sub, round_, "choose"), "descent", "choose", (sub, child, children))

    def _posted(self, game_id: int, contract: str, sub: int, round_: int, field: str, stored_hash: bytes) -> list[bytes]:
        """The values or children the defender posted in this round (its `Posted` log, checked against
        the hash the sub-game stored)."""
        for log in reversed(self._logs(contract, "Posted", sub)):
            if log["args"]["round"] == round_:
                posted = [bytes(v) for v in log["args"][field]]
                if keccak(abi_encode(["bytes32[]"], [posted])) == bytes(stored_hash):
                    return posted
        raise DisputeError(f"no {contract} log of the defender's posted {field} in round {round_} of sub-game {sub}")

    def _revealed_entry(self, game_id: int, game: dict[str, Any]) -> tuple[bytes, list[bytes]]:
        """The skeleton and output roots the defender revealed for entry j (the calldata of the
        `reveal_entry` that entered OUTPUT), checked against the entry leaf the host stored."""
        for log in reversed(self._logs("host", "StageEntered", game_id)):
            if log["args"]["stage"] != OUTPUT:
                continue
            tx = self.w3.eth.get_transaction(log["transactionHash"])
            function, params = self.host.decode_function_input(tx["input"])
            if function.fn_name != "reveal_entry":
                continue
            skeleton, roots = bytes(params["skeleton"]), [bytes(r) for r in params["out_roots"]]
            if rk.entry_leaf(game["entry"], skeleton, roots) == bytes(game["entry_leaf"]):
                return skeleton, roots
        raise DisputeError(f"no reveal_entry of game {game_id} matches its entry leaf")

    def _revealed_leaves(self, game_id: int) -> list[bytes]:
        logs = self._logs("host", "StateRevealed", game_id)
        if not logs:
            raise DisputeError(f"no StateRevealed log of game {game_id}")
        return [bytes(v) for v in logs[-1]["args"]["leaves"]]

    # ---------------------------------------------------------------- the honest challenger's choices

    def choose_part(self, stage: int, lo: int, hi: int, arity: int, values: Sequence[bytes], sequence: Sequence[bytes]) -> int:
        """The first part whose end differs from this party's own sequence."""
        return bis.challenger_part(lo, hi, arity, values, sequence)

    def choose_output(self, j: int, theirs: Sequence[bytes]) -> int:
        """The output of entry j to dispute: a revealed zero root first, then the first output whose
        revealed root differs from this party's (one whose rule reads no other differing output of the
        entry: `rk.output_to_dispute`), one left out or one added (RefereeGame rules a reveal whose roots
        are not the skeleton's outputs against the defender)."""
        mine = self.kit.entries[j].out_roots
        zero = next((o for o, root in enumerate(theirs) if root == bytes(32)), None)
        if zero is not None:
            return zero
        differs = rk.output_to_dispute(self.kit.entries[j].parsed, mine, theirs)
        return differs if differs is not None else min(len(mine), len(theirs))

    def choose_child(self, game: dict[str, Any], height: int, position: int, per_move: int, children: Sequence[bytes]) -> int | None:
        return td.honest_choice(self.kit.chunk_levels(game["entry"], game["output"]), height, position, per_move, children)

    def choose_element(self, game: dict[str, Any]) -> int:
        """The first element of the revealed chunk, inside the output, that differs from this party's as
        RefereeGame compares them (`_differs`: a NaN whose payload alone differs is the same value, so
        naming it would lose even when a later element of the chunk is wrong)."""
        index, per = game["chunk_index"], _per_chunk(game["wide_code"])
        mine = tc.chunks_of(self.kit.outputs[(game["entry"], game["output"])])[index]
        revealed = bytes(game["chunk"])
        size = 32 // per  # bytes an element (binary32 4, bool 1)
        for k in range(per):
            here = slice(size * k, size * k + size)
            if per * index + k < game["output_size"] and _differs(mine[here], revealed[here], game["wide_code"]):
                return k
        return 0

    def choose_leaf(self, revealed: Sequence[bytes]) -> int:
        """The first revealed leaf of r_{t+1} that differs from this party's."""
        mine = self.kit.next_leaves
        if len(revealed) != len(mine):
            return 0  # the header leaf: it fixes the leaf count
        return next((i for i, (a, b) in enumerate(zip(mine, revealed, strict=True)) if a != b), 0)

    # ---------------------------------------------------------------- sending through the outbox

    def request(self, move: Move) -> dict[str, Any]:
        """The transaction request of a move (to, data, description) for the outbox."""
        contract = self.contracts[move.contract]
        data = getattr(contract.functions, move.function)(*move.args)._encode_transaction_data()
        return {"to": contract.address, "data": data, "value": 0, "description": move.key}

    def register(self, outbox: Any) -> None:
        """Teach the outbox when a queued or resent referee move is still needed: when this party's
        next move in that game is still the one its key names (after a restart or a reorg too)."""
        outbox.register_check(OUTBOX_KIND, self.still_needed)

    def still_needed(self, intent: Any) -> bool:
        parts = intent.key.split(":")
        if len(parts) != 7 or parts[0] != "referee" or parts[1] != self.host.address.lower():
            return True  # another player's move: not this one's to judge
        try:
            move = self.next_move(int(parts[2]))
        except KitIncompleteError:
            return False
        return move is not None and move.key == intent.key

    def play(self, outbox: Any, game_id: int) -> Move | None:
        """Queue this party's next move in `game_id` in the outbox (idempotent by key) and return it; a
        move whose earlier intent ended without effect (a reorg made it needless, or made the contract
        refuse it) is queued again now that it is owed again (`submit_owed`)."""
        move = self.next_move(game_id)
        if move is not None:
            submit_owed(outbox, move.key, OUTBOX_KIND, self.request(move), self._failed_retries)
        return move
