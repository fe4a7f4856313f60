"""The parties of `contracts/RefereeGame.vy` over a recorded portable step, as test and bench code plays
them on anvil: the host (the Disputes contract's stand-in: an account wired as RefereeGame's host, which
opens the game with the agreed state's header), a defender (its state roots, its step record and the
leaves of its next state: honest, with a corrupted entry, or with an honest record and a wrong next
state) and a challenger that is honest (it follows the first difference from its own record and state)
or lying (it steers to a chosen entry and element, or to the link and a chosen leaf). Every move is a
transaction; `gas` sums each party's gasUsed.

Not a daemon: the moves are chosen from full knowledge of both sides, to drive the contract's stages.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from eth_hash.auto import keccak

from engine.portable import record
from protocol import bisection as bis
from protocol import data_rules
from protocol import fold_rules, row_pieces, scalar_rules
from protocol import tensor_commit as tc
from protocol import tensor_descent as td
from protocol.deploy import RULE_SETS
from protocol.referee_kit import (DATA_RULES, FOLD_RULES, ROW_PIECE_RULES, SCALAR_RULES, SELF_READ, column_read,
                                  entry_hints, game_reads, header_input_proof, parse_skeleton, reveal_function,
                                  rules_of, self_input_proof, strided_reads)
from worker.referee_player import GAME_FIELDS

HOST_ACCOUNT = 4  # the test or bench account wired as RefereeGame's host (the Disputes contract's stand-in)

# host stages (RefereeGame.vy STAGE_*)
STEPS, RECORD, OPS, ENTRY, OUTPUT, DESCENT, ELEMENT, PROOF, DECIDED, ESCALATED, REVEAL, LEAF, LINK = range(1, 14)


ZERO_ADDRESS = "0x" + "00" * 20  # an empty slot of RefereeGame's rules contracts


def deploy_referee_stack(w3: Any, deploy: Callable[..., Any], rules: Sequence[str | None], arity: int, levels: int,
                         move_seconds: int) -> dict[str, Any]:  # fmt: skip
    """Deploy Bisection, TensorDescent, ClipReferee, ElementReferee over it, StateLink, the named rules contracts (a None slot, and
    every slot after the names, stays empty) and a RefereeGame over them with `deploy(w3, path, *args)`; wire both games to it and it to
    HOST_ACCOUNT (the Disputes contract's stand-in). Returns the contracts by role ("rules" is slot 0)."""
    owner = w3.eth.accounts[-1]
    made = {name: deploy(w3, f"contracts/{contract}.vy") for name, contract in (
        ("bisection", "Bisection"), ("descent", "TensorDescent"), ("clip", "ClipReferee"), ("link", "StateLink"))}
    made["referee"] = deploy(w3, "contracts/ElementReferee.vy", made["clip"].address)
    slots = [deploy(w3, f"contracts/{name}.vy") if name else None for name in rules]
    made["host"] = deploy(w3, "contracts/RefereeGame.vy", made["bisection"].address, made["descent"].address,
                          made["referee"].address, made["link"].address,
                          [slot.address if slot else ZERO_ADDRESS for slot in slots]
                          + [ZERO_ADDRESS] * (RULE_SETS - len(slots)), arity, levels, move_seconds)  # fmt: skip
    for game in (made["bisection"], made["descent"]):
        w3.eth.wait_for_transaction_receipt(game.functions.wire([made["host"].address]).transact({"from": owner}))
    w3.eth.wait_for_transaction_receipt(made["host"].functions.wire(w3.eth.accounts[HOST_ACCOUNT]).transact({"from": owner}))
    roles = ("rules", "fold_rules", "row_rules", "data_rules", "scalar_rules", "row_piece_rules")
    made.update({name: slot for name, slot in zip(roles, slots, strict=False) if slot})
    return made


@dataclasses.dataclass
class Side:
    """One party's view of the segment: its state roots, its record of the pinned step `step`, and the
    leaves of its state after that step (r_{step+1}, what it reveals at the link)."""

    state_roots: list[bytes]
    rec: record.StepRecord
    next_leaves: list[bytes]
    step: int = 0
    next_header: bytes = b""  # r_{step+1}'s header when it is not the one the agreed header advances to

    @property
    def ops(self) -> list[bytes]:
        """c_0 … c_{L+1} of the operation bisection: P_{-1} (the empty tree), P_0 … P_{L-1}, r_{t+1}."""
        empty = tc.tree_root([tc.ZERO] * self.rec.width, record.RECORD_NODE)
        return [empty, *self.rec.prefix_roots(), self.state_roots[self.step + 1]]


def wrong_next_state(side: Side, tensor: int) -> Side:
    """The side with an honest record but one tensor root of its next state wrong (leaf 1 + `tensor`), so
    its r_{t+1} and every later state root differ."""
    leaves = list(side.next_leaves)
    name = side.rec.state_names[tensor]
    leaves[1 + tensor] = tc.state_tensor_leaf(name, keccak(b"a wrong root of " + name.encode()))
    later = [keccak(b"wrong state %d" % i) for i in range(side.step + 2, len(side.state_roots))]
    roots = [*side.state_roots[: side.step + 1], tc.tree_root(leaves, tc.STATE_NODE), *later]
    return dataclasses.replace(side, state_roots=roots, next_leaves=leaves)


def wrong_next_header(side: Side, agreed: bytes, **fields: Any) -> Side:
    """The side with an honest record but its next state's header (leaf 0) one step after the binary
    header `agreed` with `fields` changed, so its r_{t+1} and every later state root differ."""
    header = dataclasses.replace(tc.next_header(tc.StateHeader.decode(agreed)), **fields).encode()
    leaves = [tc.header_leaf_of(header), *side.next_leaves[1:]]
    later = [keccak(b"wrong state %d" % i) for i in range(side.step + 2, len(side.state_roots))]
    roots = [*side.state_roots[: side.step + 1], tc.tree_root(leaves, tc.STATE_NODE), *later]
    return dataclasses.replace(side, state_roots=roots, next_leaves=leaves, next_header=header)


def corrupt(rec: record.StepRecord, j: int, element: int, output: int = 0) -> record.StepRecord:
    """The record with one bit of element `element` of entry j's output `output` flipped (all else the same;
    a bool element negated; an 8-byte element's bit 3 of 64)."""
    entry = rec.entries[j]
    wrong = entry.outputs[output].copy()
    if wrong.dtype == np.bool_:
        wrong.reshape(-1)[element] ^= True
    else:
        wide = wrong.itemsize == 8  # int64 or binary64: flip a bit of the element's own 64 bits
        wrong.reshape(-1).view(np.uint64 if wide else np.uint32)[element] ^= np.uint64(8) if wide else np.uint32(8)
    outputs, roots = list(entry.outputs), list(entry.out_roots)
    outputs[output], roots[output] = wrong, tc.tensor_root(wrong)
    bad = dataclasses.replace(entry, outputs=tuple(outputs), out_roots=tuple(roots))
    return dataclasses.replace(rec, entries=[*rec.entries[:j], bad, *rec.entries[j + 1 :]])


@dataclasses.dataclass
class Match:
    """A game on chain between a defender's Side and a challenger that is honest (its own Side) or
    lying (it steers to entry `target`, chunk `target_chunk`)."""

    w3: Any
    contracts: dict[str, Any]  # bisection, descent, host (web3 contracts)
    arity: int
    levels: int
    before: bytes  # the agreed checkpoint (state 0)
    binding: tc.StateBinding  # what its header binds: S, L and the steps to the next boundary
    defender: Side
    truth: Side
    honest_challenger: bool
    target: int  # the entry the lying challenger steers to (L: the link)
    target_element: int  # at an entry: the element it disputes; at the link: the leaf of r_{t+1}
    output: int = 0  # the output of the target entry the challenger disputes

    def __post_init__(self) -> None:
        self.host = self.contracts["host"]
        self.d, self.c = self.w3.eth.accounts[2], self.w3.eth.accounts[3]
        self.game_id = 0
        self.gas = {"host": 0, "defender": 0, "challenger": 0, "anyone": 0}
        self.move_seconds: list[float] = []  # per transaction sent (the host's opening included): send to receipt

    def send(self, who: str, contract: str, name: str, *args: Any) -> None:
        accounts = {"defender": self.d, "challenger": self.c, "host": self.w3.eth.accounts[HOST_ACCOUNT]}
        sender = accounts.get(who, self.w3.eth.accounts[5])
        begin = time.perf_counter()
        tx = getattr(self.contracts[contract].functions, name)(*args).transact({"from": sender, "gas": 8_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        self.move_seconds.append(time.perf_counter() - begin)
        if receipt.status != 1:
            raise RuntimeError(f"{name} reverted")
        self.gas[who] += int(receipt.gasUsed)

    def game(self) -> dict[str, Any]:
        return dict(zip(GAME_FIELDS, self.host.functions.games(self.game_id).call(), strict=True))

    def stage(self) -> int:
        return self.game()["stage"]

    def ruling(self) -> tuple[bool, bool, bool]:
        """(decided, defender_wrong, escalated)."""
        return tuple(self.host.functions.ruling_of(self.game_id).call())

    # ---------------------------------------------------------------- the moves, stage by stage

    def open(self) -> None:
        """The host (the Disputes contract's stand-in) opens the game with the agreed state's header."""
        roots = self.defender.state_roots
        header, path = tc.header_proof(self.before, self.binding)
        self.send("host", "host", "open_game", self.d, self.c, roots[0], roots[-1], header, path)
        self.game_id = self.host.functions.game_count().call()

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
            values = bis.defender_values(lo, hi, self.arity, mine)
            self.send("defender", "bisection", "post", sub, values)
            if stop_at == "challenger":
                return False
            if self.honest_challenger:
                part = bis.challenger_part(lo, hi, self.arity, values, theirs)
            else:
                points = bis.split_points(lo, hi, self.arity)
                part = next(i for i in range(len(points) - 1) if points[i] <= steer < points[i + 1])
            self.send("challenger", "bisection", "choose", sub, part, values)

    def post_record(self) -> None:
        header, path = tc.header_proof(self.before, self.binding)
        self.send("defender", "host", "post_record", self.game_id, header, path)

    def reveal_entry(self) -> None:
        rec, j = self.defender.rec, self.game()["entry"]
        entry = rec.entries[j]
        self.send("defender", "host", reveal_function(entry.skeleton_bytes()), self.game_id, entry.skeleton_bytes(),
                  rec.skeleton_proof(j), list(entry.out_roots), rec.entry_proof(j))  # fmt: skip

    # ---------------------------------------------------------------- the link (P_{L-1} agreed, r_{t+1} disputed)

    def reveal_state(self) -> None:
        self.send("defender", "host", "reveal_state", self.game_id, self.defender.next_leaves)

    def dispute_leaf(self) -> None:
        """The honest challenger names the first revealed leaf that differs from its own; the lying one its target."""
        revealed = self.defender.next_leaves
        if self.honest_challenger:
            leaf = next(i for i, (mine, theirs) in enumerate(zip(self.truth.next_leaves, revealed, strict=True)) if mine != theirs)
        else:
            leaf = self.target_element
        self.send("challenger", "host", "dispute_leaf", self.game_id, leaf)

    def link_proof(self, leaf: int | None = None) -> tuple:
        """The defender's `LinkProof` for leaf 1 + a of its r_{t+1}: the map under S, the tensor under r_t,
        the mapped entry under P_{L-1} and the leaf under its r_{t+1}."""
        rec = self.defender.rec
        leaf = self.game()["link_leaf"] if leaf is None else leaf
        name = rec.state_names[leaf - 1]
        _, old_root, old_path = tc.state_tensor_proof(self.before, name, self.binding)
        new_path = tc.tree_proof(self.defender.next_leaves, leaf, tc.STATE_NODE)
        ref = rec.final[name]
        if ref.kind == record.OUTPUT:
            entry = rec.entries[ref.a]
            produced = (entry.skeleton_leaf(), list(entry.out_roots), rec.entry_proof(ref.a, len(rec.entries) - 1))
        else:
            produced = (tc.ZERO, [], [])
        length = len(rec.entries)
        return (rec.map_bytes(), rec.skeleton_proof(length), keccak(name.encode()), old_root, old_path, new_path, *produced)

    def header_link_proof(self) -> tuple:
        """The defender's `HeaderLinkProof`: the agreed header under r_t, its r_{t+1}'s header (the one the
        agreed header advances to, unless its Side says another) under its r_{t+1}."""
        agreed, agreed_path = tc.header_proof(self.before, self.binding)
        following = self.defender.next_header or tc.next_header(tc.StateHeader.decode(agreed)).encode()
        return agreed, agreed_path, following, tc.tree_proof(self.defender.next_leaves, 0, tc.STATE_NODE)

    def prove_link(self) -> None:
        if self.game()["link_leaf"] == 0:  # the header leaf
            self.send("defender", "host", "prove_header_link", self.game_id, self.header_link_proof())
        else:
            self.send("defender", "host", "prove_link", self.game_id, self.link_proof())

    def dispute_output(self) -> None:
        entry = self.defender.rec.entries[self.game()["entry"]]
        self.send("challenger", "host", "dispute_output", self.game_id, self.output, entry.skeleton_bytes(), list(entry.out_roots))

    def descend(self, stop_at: str | None) -> bool:
        """Play the descent over output 0 of the pinned entry to the revealed chunk."""
        descent = self.contracts["descent"]
        sub, j = self.game()["sub_game"], self.game()["entry"]
        chunks = tc.chunks_of(self.defender.rec.entries[j].outputs[self.output])
        levels = td.tree_levels([tc.chunk_leaf(c) for c in chunks])
        true_levels = td.tree_levels([tc.chunk_leaf(c) for c in tc.chunks_of(self.truth.rec.entries[j].outputs[self.output])])
        target = self.target_element // self.per_chunk()
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
            children = td.descendants(levels, height, position, self.levels)
            self.send("defender", "descent", "post", sub, children)
            if stop_at == "challenger":
                return False
            steps = td.steps_at(height, self.levels)
            if self.honest_challenger:
                child = td.honest_choice(true_levels, height, position, self.levels, children)
            else:
                child = (target >> (height - steps)) - (position << steps)
            self.send("challenger", "descent", "choose", sub, child, children)

    def per_chunk(self) -> int:
        """Elements a chunk of the disputed output (binary32 8, int64 and binary64 4, bool 32)."""
        value = self.defender.rec.entries[self.target].outputs[self.output]
        return tc.elements_per_chunk(tc.dtype_code(value))

    def dispute_element(self) -> None:
        self.send("challenger", "host", "dispute_element", self.game_id, self.target_element % self.per_chunk())

    def hints(self, entry: record.Entry, output: int, e: int) -> list[int]:
        """`prove_element`'s hints for element e: a move's strides, for an output DataRules decides the
        place its read depends on (`data_rules.data_hints`: the agreed header's cursor; ids[p]), for a scalar
        entry the agreed header's step (`scalar_rules.scalar_hints`), for a row-pieced nll[r] the target t[r]."""
        parsed = parse_skeleton(entry.skeleton_bytes())
        slot = rules_of(parsed, output)
        if slot == SCALAR_RULES and entry.kernel in scalar_rules.SCALAR_KERNELS:  # the agreed header's step
            return list(scalar_rules.scalar_hints(tc.StateHeader.decode(tc.header_proof(self.before, self.binding)[0]).step))
        if slot == ROW_PIECE_RULES and entry.kernel in row_pieces.NLL_ROWS and output == 1:  # a row-pieced nll: t[r]
            return [row_pieces.nll_hint(self.defender.rec.input_value(entry, 1).reshape(-1)[e])]
        if slot != DATA_RULES:
            return list(entry_hints(entry.kernel, entry.args))
        header = tc.StateHeader.decode(tc.header_proof(self.before, self.binding)[0])
        ids = None if entry.kernel != "gather" else self.defender.rec.input_value(entry, 1)
        return list(data_rules.data_hints(parsed, e, (header.epoch, header.position), ids))

    def element_proofs(self) -> list[tuple]:
        """The defender's `InputProof`s for the disputed element (`protocol.referee_kit.game_reads`: the
        reads of HostRules or RowRules); a constant input is proven from the value the entry holds."""
        rec, game = self.defender.rec, self.game()
        j = game["entry"]
        entry = rec.entries[j]
        e = tc.elements_per_chunk(tc.dtype_code(entry.outputs[game["output"]])) * game["chunk_index"] + game["element"]
        reads = game_reads(parse_skeleton(entry.skeleton_bytes()), game["output"], e, self.hints(entry, game["output"], e))
        return [self.read_proof(j, k, first, count) for k, first, count in reads]

    def read_proof(self, j: int, k: int, first: int, count: int) -> tuple:
        """The `InputProof` of a run of input k of entry j (k >= SELF_READ: of its own output k − SELF_READ)."""
        entry = self.defender.rec.entries[j]
        if k >= SELF_READ:
            return self_input_proof(entry.out_roots, entry.outputs[k - SELF_READ], first, count)
        if entry.inputs[k].kind == record.CONSTANT:
            return self.constant_proof(entry.inputs[k].root, entry.loose[k], first, count)
        if entry.inputs[k].kind == record.HEADER:
            return header_input_proof(*tc.header_proof(self.before, self.binding))
        return self.input_proof(j, entry.inputs[k], first, count)

    @staticmethod
    def constant_proof(root: bytes, value: np.ndarray, first: int, count: int) -> tuple:
        """An `InputProof` of a constant: the root its skeleton carries (nothing to prove it under), then the run."""
        run = tc.prove_run(value, first, count)
        return (tc.ZERO, [root], [], list(value.shape), run.first, list(run.chunks), list(run.path))

    def element_proof_args(self) -> tuple[list[tuple], list[bytes]]:
        """The defender's `InputProof`s and column words for the disputed element: the host rules' runs, or
        for an output the fold rules decide each read's source with an empty run and its column proof."""
        rec, game = self.defender.rec, self.game()
        j, e, output = game["entry"], self.per_chunk() * game["chunk_index"] + game["element"], game["output"]
        entry = rec.entries[j]
        parsed = parse_skeleton(entry.skeleton_bytes())
        strided = strided_reads(parsed, output, e, self.hints(entry, output, e))
        if strided is not None:  # runs, but embedding_backward's column of dy and col2im's columns
            proofs, columns = [], []
            for k, first, count, stride in strided:
                if column_read(parsed, count, stride):
                    key, roots, path, array = self.input_source(j, entry.inputs[k])
                    proofs.append((key, roots, list(path), list(array.shape), 0, [], []))
                    columns += fold_rules.column_proof(array, first, count, stride)
                else:
                    proofs.append(self.read_proof(j, k, first, count))
            return proofs, columns
        if rules_of(parsed, output) != FOLD_RULES:
            return self.element_proofs(), []
        proofs, columns = [], []
        for k, first, count, stride in fold_rules.fold_reads(parsed, output, e):
            if k >= SELF_READ:  # a piece's running value: a run of the entry's own running values
                proofs.append(self_input_proof(entry.out_roots, entry.outputs[k - SELF_READ], first, count))
                continue
            key, roots, path, array = self.input_source(j, entry.inputs[k])
            proofs.append((key, roots, list(path), list(array.shape), 0, [], []))
            columns += fold_rules.column_proof(array, first, count, stride)
        return proofs, columns

    def prove_element(self) -> None:
        game = self.game()
        entry = self.defender.rec.entries[game["entry"]]
        hints = self.hints(entry, game["output"], self.per_chunk() * game["chunk_index"] + game["element"])
        proofs, columns = self.element_proof_args()
        self.send("defender", "host", "prove_element", self.game_id, entry.skeleton_bytes(), proofs, hints, columns)

    def input_proof(self, j: int, ref: record.Ref, first: int, count: int, prefix: int | None = None) -> tuple:
        """One `InputProof`: the source tensor under the agreed state or P_{prefix} (default P_{j-1}), then the run."""
        key, roots, path, array = self.input_source(j, ref, prefix)
        run = tc.prove_run(array, first, count)
        return (key, roots, list(path), list(array.shape), run.first, list(run.chunks), list(run.path))

    def input_source(self, j: int, ref: record.Ref, prefix: int | None = None) -> tuple[bytes, list[bytes], list[bytes], Any]:
        """(leaf key, roots, path, values) of an input of entry j under the agreed state or P_{prefix}."""
        rec = self.defender.rec
        if ref.kind == record.OUTPUT:
            source = rec.entries[ref.a]
            array = source.outputs[ref.b]
            key, roots, path = source.skeleton_leaf(), list(source.out_roots), rec.entry_proof(ref.a, j - 1 if prefix is None else prefix)
        else:
            assert ref.kind == record.STATE
            name = rec.state_names[ref.a]
            array = rec.state_values[name]
            _, root, path = tc.state_tensor_proof(self.before, name, self.binding)
            key, roots = keccak(name.encode()), [root]
        return key, roots, list(path), array

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
        if self.target == len(self.defender.rec.entries):
            for stage, move in ((REVEAL, self.reveal_state), (LEAF, self.dispute_leaf), (LINK, self.prove_link)):
                if stop == stage or self.stage() != stage:
                    return
                move()
            return
        for stage, move in ((ENTRY, self.reveal_entry), (OUTPUT, self.dispute_output)):
            if stop == stage:
                return
            move()
        if not self.descend(who if stop == DESCENT else None):
            return
        assert self.game()["chunk_index"] == self.target_element // self.per_chunk()
        for stage, move in ((ELEMENT, self.dispute_element), (PROOF, self.prove_element)):
            if stop == stage:
                return
            move()


# -------------------------------------------------------------------- parties for the production player's tests


def side_kit(side: Side, before: bytes, binding: tc.StateBinding, segment: int = 0) -> Any:
    """The dispute kit (protocol.referee_kit.DisputeKit) a `Side` plays from, pinned at its step: how a
    defender with a corrupted record or a wrong next state plays through worker.referee_player."""
    from engine.referee_kit import kit_from_record

    return kit_from_record(segment, 0, side.state_roots, side.step, side.rec, before, binding, side.next_leaves)


def steered_challenger(w3: Any, contracts: dict[str, Any], kit: Any, target: int, target_element: int, output: int = 0) -> Any:
    """A lying challenger for worker.referee_player: it plays from an honest kit but steers every choice
    to entry `target` (L: the link), output `output` and element (or, at the link, leaf) `target_element`."""
    from worker.referee_player import RefereePlayer

    per = tc.elements_per_chunk(tc.dtype_code(kit.outputs[(target, output)])) if (target, output) in kit.outputs else 8

    class SteeredChallenger(RefereePlayer):
        def choose_part(self, stage: int, lo: int, hi: int, arity: int, values: Any, sequence: Any) -> int:
            steer = 0 if stage == 1 else target  # STEPS: step 0; OPS: the index of the target
            points = bis.split_points(lo, hi, arity)
            return next(i for i in range(len(points) - 1) if points[i] <= steer < points[i + 1])

        def choose_output(self, j: int, theirs: Any) -> int:
            return output

        def choose_child(self, game: dict[str, Any], height: int, position: int, per_move: int, children: Any) -> int:
            steps = td.steps_at(height, per_move)
            return ((target_element // per) >> (height - steps)) - (position << steps)

        def choose_element(self, game: dict[str, Any]) -> int:
            return target_element % per

        def choose_leaf(self, revealed: Any) -> int:
            return target_element

    return SteeredChallenger(w3, contracts, "challenger", kit)
