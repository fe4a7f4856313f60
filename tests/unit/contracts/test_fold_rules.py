"""FoldRules.vy (contracts/lib/fold_rules.vy), RefereeGame's second rules contract, and the column proofs
prove_element takes for its reads, on anvil over the recorded tiny-GPT and MLP steps of
tests/unit/portable/test_step_record.py:

- FoldRules says an output is checkable exactly when `protocol.fold_rules.fold_checkable` does, and its
  plans (reads with their strides, rule, parameters, the values in the order prove_element hands them
  to the rule) are the mirror's and `referee_calls.encode`'s from the referee model;
- a game pinned at a matmul, a linear_backward (dx, dW, db), the sum_rows and a layer_norm_backward (dw,
  db) entry rules against exactly the wrong party, the element decided on chain (no escalation);
- forged column proofs (a wrong chunk, a missing or an extra word, another column, a run where a column
  proof is due) are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portable import record
from personas.referee_game import DECIDED, HOST_ACCOUNT, PROOF, Match, Side, corrupt
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import FOLD_RULES, MAX_TENSOR_FILE_BYTES, parse_skeleton, rules_of

from ..engine.helpers import examples
from ..portable.test_step_record import mlp_steps  # noqa: F401 (a fixture)
from .test_referee_game import ARITY, LEVELS, MOVE, ZERO_ADDRESS, _deploy, _plan_values, gpt_step  # noqa: F401

FOLD_DECIDED = {"gpt": {("matmul", 0), ("linear_backward", 0), ("linear_backward", 1), ("linear_backward", 2),
                        ("sum_rows", 0), ("layer_norm_backward", 1), ("layer_norm_backward", 2)},
                "mlp": {("linear_backward", 0), ("linear_backward", 1), ("linear_backward", 2)}}  # fmt: skip


@pytest.fixture(scope="module")
def fold_contracts(w3: Any) -> dict[str, Any]:
    """The game with HostRules and FoldRules in its first two RULES slots."""
    owner = w3.eth.accounts[-1]
    bisection = _deploy(w3, "contracts/Bisection.vy")
    descent = _deploy(w3, "contracts/TensorDescent.vy")
    referee = _deploy(w3, "contracts/ElementReferee.vy")
    link = _deploy(w3, "contracts/StateLink.vy")
    rules = _deploy(w3, "contracts/HostRules.vy")
    folds = _deploy(w3, "contracts/FoldRules.vy")
    host = _deploy(w3, "contracts/RefereeGame.vy", bisection.address, descent.address, referee.address, link.address,
                   [rules.address, folds.address, ZERO_ADDRESS], ARITY, LEVELS, MOVE)  # fmt: skip
    for game in (bisection, descent):
        w3.eth.wait_for_transaction_receipt(game.functions.wire([host.address]).transact({"from": owner}))
    w3.eth.wait_for_transaction_receipt(host.functions.wire(w3.eth.accounts[HOST_ACCOUNT]).transact({"from": owner}))
    return {"bisection": bisection, "descent": descent, "host": host, "link": link, "rules": rules, "folds": folds}


@pytest.fixture
def chain(w3: Any, fold_contracts: dict[str, Any]) -> Any:
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield w3
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True


def _assert_fold_plans_match(folds: Any, rec: record.StepRecord, entry: record.Entry, output: int) -> None:
    from protocol import referee_calls

    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    size = entry.outputs[output].size
    for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
        rule, params, reads, zipped = folds.plan(skeleton, output, element, []).call()
        assert [(r[0], r[7], r[8], r[9]) for r in reads] == fold_rules.fold_reads(parsed, output, element)
        for k, kind, a, b, dtype, ndim, read_dims, *_ in reads:
            ref = parsed.inputs[k]
            assert (kind, a, b, dtype, tuple(read_dims[:ndim])) == (ref.kind, ref.a, ref.b, ref.dtype, ref.shape)
        proven = record.proven_values(rec, entry, output, element)
        expected = referee_calls.encode(record.referee_call(entry), output, element, proven)
        assert (rule, tuple(params)) == (expected.rule, expected.params), (entry.kernel, output, element)
        assert _plan_values(rec, entry, reads, zipped) == expected.values, (entry.kernel, output, element)


@pytest.mark.parametrize("which", ["mlp", "gpt"])
def test_the_fold_rules_mirror_the_python_and_the_referee_model(fold_contracts, mlp_steps, gpt_step, which: str) -> None:  # noqa: F811
    """On every entry of a recorded MLP and tiny-GPT step: FoldRules says an output is checkable exactly
    when `fold_rules.fold_checkable` does; for the first, second, middle and last element of each
    checkable output (one entry of each kernel, arguments and input shapes) its reads are the mirror's
    and its rule, parameters and values are `referee_calls.encode`'s. The MLP's first linear_backward
    reads the batch (not provable on chain): not checkable."""
    folds = fold_contracts["folds"].functions
    rec = mlp_steps[2][0] if which == "mlp" else gpt_step["rec"]
    decided, planned = set(), set()
    for entry in rec.entries:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        alike = (entry.kernel, repr(entry.args), tuple((r.kind, r.shape) for r in entry.inputs), entry.out_shapes)
        if alike in planned:
            continue
        planned.add(alike)
        for output, (code, shape) in enumerate(entry.out_shapes):
            count, checkable, out_code, dims = folds.output_of(skeleton, output).call()
            assert (count, out_code, tuple(dims)) == (len(entry.out_shapes), code, tuple(shape))
            assert checkable == fold_rules.fold_checkable(parsed, output), (entry.index, entry.kernel, output)
            if checkable:
                decided.add((entry.kernel, output))
                _assert_fold_plans_match(folds, rec, entry, output)
    assert decided == FOLD_DECIDED[which]
    if which == "gpt":  # of the dW, only those of a 16 × 16 w (the attention's output projection) fit MAX_COLUMN_LOAD
        dws = [(e.inputs[1].shape, fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), 1))
               for e in rec.entries if e.kernel == "linear_backward"]  # fmt: skip
        assert set(dws) == {((16, 16), True), ((16, 32), False), ((32, 16), False), ((48, 16), False)}
    matmul = next(e for e in rec.entries if e.kernel in ("matmul", "linear_backward"))
    with pytest.raises(Exception, match="fold_rules: not a checkable element"):
        folds.plan(matmul.skeleton_bytes(), 0, matmul.outputs[0].size, []).call()


def test_the_column_bound_holds_for_every_first_element() -> None:
    """`column_words` (the contract's bound, from the shapes alone) is at least the words of the column
    proof of every read of that stride and count, wherever it starts, and over-counts by at most two words
    a tree level (here)."""
    rng = np.random.default_rng(5)
    for size, stride, count in ((4096, 32, 32), (3072, 48, 64), (1024, 16, 64), (1024, 1, 32), (1000, 7, 100), (40, 3, 9)):
        array = rng.standard_normal(size).astype(np.float32)
        bound = fold_rules.column_words(tc.chunk_count(1, (size,)), stride, count)
        words = [len(fold_rules.column_proof(array, first, count, stride))
                 for first in range(0, size - (count - 1) * stride, max(1, (size - (count - 1) * stride) // 40))]  # fmt: skip
        depth = tc.depth_of(tc.chunk_count(1, (size,)))
        assert max(words) <= bound <= max(words) + 2 * depth, (size, stride, count, bound, max(words))


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 600), st.integers(1, 70), st.integers(1, 40), st.data())
def test_the_column_bound_holds_for_any_read(size: int, stride: int, count: int, data) -> None:
    """Property: for any tensor size, stride, count and first element, the column proof's words are at most
    the bound."""
    if (count - 1) * stride >= size:
        count = (size - 1) // stride + 1
    first = data.draw(st.integers(0, size - 1 - (count - 1) * stride))
    array = np.arange(size, dtype=np.float32)
    assert len(fold_rules.column_proof(array, first, count, stride)) <= fold_rules.column_words(tc.chunk_count(1, (size,)), stride, count)


def _gpt_match(chain: Any, contracts: dict[str, Any], gpt_step: dict[str, Any], kernel: str, output: int, wrong: bool,  # noqa: F811
               at: int = -3) -> Match:  # fmt: skip
    rec = gpt_step["rec"]
    # the first entry of the kernel whose output FoldRules decides (the GPT's first two dW read loads over
    # MAX_COLUMN_LOAD: they escalate)
    target = next(e.index for e in rec.entries if e.kernel == kernel and fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), output))
    element = at % rec.entries[target].outputs[output].size
    truth = Side(gpt_step["roots"], rec, gpt_step["next_leaves"])
    later = [keccak(b"wrong state %d" % i) for i in range(1, len(gpt_step["roots"]))]
    defender = Side([gpt_step["roots"][0], *later], corrupt(rec, target, element, output), gpt_step["next_leaves"]) if wrong else truth
    return Match(chain, contracts, ARITY, LEVELS, gpt_step["before"], gpt_step["binding"], defender, truth,
                 honest_challenger=wrong, target=target, target_element=element, output=output)  # fmt: skip


GAMES = [("matmul", 0, False), ("matmul", 0, True), ("linear_backward", 0, False), ("linear_backward", 1, True),
         ("linear_backward", 2, True), ("sum_rows", 0, False), ("layer_norm_backward", 1, True),
         ("layer_norm_backward", 2, False)]  # fmt: skip


@pytest.mark.parametrize(("kernel", "output", "wrong"), GAMES, ids=[f"{k}-{o}-{'wrong' if w else 'honest'}" for k, o, w in GAMES])
def test_a_fold_entry_is_ruled_on_chain(chain, fold_contracts, gpt_step, kernel: str, output: int, wrong: bool) -> None:  # noqa: F811
    """The first entry of each fold kernel of the GPT step, the output named: a one-bit-wrong element is
    caught by the honest challenger, and a right one upheld against a lying challenger, decided on chain
    by FoldRules' plan and the column proofs (not escalated)."""
    match = _gpt_match(chain, fold_contracts, gpt_step, kernel, output, wrong)
    assert rules_of(parse_skeleton(match.defender.rec.entries[match.target].skeleton_bytes()), output) == FOLD_RULES
    match.play()
    game = match.game()
    assert game["stage"] == DECIDED and game["entry"] == match.target and game["rules"] == FOLD_RULES
    assert match.ruling() == (True, wrong, False)


def test_forged_column_proofs_are_refused(chain, fold_contracts, gpt_step) -> None:  # noqa: F811
    """At PROOF for a linear_backward dW element (a column of dy zipped with a column of x): a flipped
    chunk, a missing word, an extra word, another column's proof, and a run proof where the plan reads a
    column are refused; the honest proof passes."""
    match = _gpt_match(chain, fold_contracts, gpt_step, "linear_backward", 1, wrong=False)
    match.play(PROOF, "defender")
    entry = match.defender.rec.entries[match.target]
    skeleton = entry.skeleton_bytes()
    prove = match.host.functions.prove_element
    proofs, columns = match.element_proof_args()
    assert all(not p[5] for p in proofs) and len(columns) > 0
    parsed = parse_skeleton(skeleton)
    element = match.target_element
    (_, dy_first, rows, n_width), (_, x_first, _, k_width) = fold_rules.fold_reads(parsed, 1, element)
    dy, x = (match.defender.rec.input_value(entry, k).reshape(-1) for k in (2, 0))
    other = fold_rules.column_proof(dy, (dy_first + 1) % n_width, rows, n_width) + fold_rules.column_proof(x, x_first, rows, k_width)
    flipped = list(columns)
    flipped[0] = bytes([flipped[0][0] ^ 0x40]) + flipped[0][1:]
    for words, reason in ((flipped, "column not proven"), (other, "column not proven"), ([*columns, tc.ZERO], "column words left over")):
        with pytest.raises(Exception, match=reason):
            prove(match.game_id, skeleton, proofs, [], words).call({"from": match.d})
    with pytest.raises(Exception):  # a word short: the last read runs out of words
        prove(match.game_id, skeleton, proofs, [], columns[:-1]).call({"from": match.d})
    run = match.input_proof(match.target, entry.inputs[2], dy_first, 1)  # a run: the plan's stride is refused there
    with pytest.raises(Exception, match="strided reads not built"):
        prove(match.game_id, skeleton, [run, proofs[1]], [], columns[len(fold_rules.column_proof(dy, dy_first, rows, n_width)) :]).call({"from": match.d})
    with pytest.raises(Exception, match="a column proof has no run"):
        prove(match.game_id, skeleton, [(*proofs[0][:4], 1, [], []), proofs[1]], [], columns).call({"from": match.d})
    prove(match.game_id, skeleton, proofs, [], columns).call({"from": match.d})


# ------------------------------------------------------------------ the largest element accepted: its gas

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the referee's final step for the largest element it accepts
GAME_FIELDS = ("defender", "challenger", "stage", "deadline", "leaf_count", "sub_game", "step", "state_root",
               "skeleton_root", "record_length", "entry", "previous_prefix", "entry_leaf", "skeleton_leaf", "output",
               "output_size", "chunk_index", "chunk", "element", "defender_wrong", "next_root", "link_leaf", "rules")  # fmt: skip
GAMES_SLOT = 2  # RefereeGame's storage: host, game_count, games (vyper -f layout)


def _synthetic_column(first: int, count: int, stride: int, depth: int, seed: bytes) -> tuple[list[bytes], bytes]:
    """A column proof of made-up words for a read at a tree of `depth` (RefereeGame._column_values' walk:
    the distinct chunks, then a sibling for each node whose sibling is not known, level by level) and
    the data root it builds."""
    positions = sorted({(first + i * stride) // 8 for i in range(count)})
    chunks = [keccak(seed + b" chunk %d" % p) for p in positions]
    nodes = {p: tc.chunk_leaf(c) for p, c in zip(positions, chunks, strict=True)}
    siblings = []
    for level in range(depth):
        parents = {}
        for p in sorted(nodes):
            if p // 2 in parents:
                continue
            sibling = nodes.get(p ^ 1)
            if sibling is None:
                sibling = keccak(seed + b" sibling %d %d" % (level, p))
                siblings.append(sibling)
            left, right = (nodes[p], sibling) if p % 2 == 0 else (sibling, nodes[p])
            parents[p // 2] = keccak(tc.TENSOR_NODE + left + right)
        nodes = parents
    assert len(nodes) == 1
    return chunks + siblings, nodes[0]


def _set_game(w3: Any, host: Any, game_id: int, fields: dict[str, Any]) -> None:
    """Write a game's fields into RefereeGame's storage (games[game_id]: keccak256(slot ‖ key), then one
    slot a field in declaration order)."""
    base = int.from_bytes(keccak(GAMES_SLOT.to_bytes(32, "big") + game_id.to_bytes(32, "big")), "big")
    for name, value in fields.items():
        word = value if isinstance(value, bytes) else (int(value, 16) if isinstance(value, str) else int(value)).to_bytes(32, "big")
        slot = hex(base + GAME_FIELDS.index(name))
        w3.provider.make_request("anvil_setStorageAt", [host.address, slot, "0x" + word.hex()])


@pytest.mark.parametrize("kernel", ["matmul", "layer_norm_backward"])
def test_the_largest_fold_element_accepted_costs_under_a_million_gas(chain, fold_contracts, kernel: str) -> None:
    """The dearest prove_element FoldRules lets an honest defender make (about 1,340 gas a value read and
    1,160 a column word, over about 390,000 for the rest): a matmul element of a [1, 169] and b [169, 1],
    or a layer_norm_backward dw element over 169 rows of width 1 (its skeleton is larger: four inputs),
    338 values and 66 words (a load of 404, MAX_COLUMN_LOAD), both inputs outputs of earlier entries
    under a record of 2**24 slots (the deepest record path), each read a prefix of a source as large as
    a kit holds (2**31 binary32: 23 sibling words more a read). A game is written into PROOF by storage
    (anvil_setStorageAt) and the defender's transaction measured: under 1,000,000 gas (docs/gas.md)."""
    from engine.portable.record import Entry, Ref

    w3, host = chain, fold_contracts["host"]
    if kernel == "matmul":
        shapes, outputs, output = ((1, 169), (169, 1)), ((1, (1, 1)),), 0
    else:  # x̂, rstd, w, dy: dw[0] = fold over 169 rows of dy[r, 0] · x̂[r, 0]
        shapes, outputs, output = ((169, 1), (169,), (1,), (169, 1)), ((1, (169, 1)), (1, (1,)), (1, (1,))), 1
    at = (4, 5) if kernel == "matmul" else (4, 6, 7, 5)  # the entries the inputs come from: the two read are siblings
    refs = tuple(Ref(record.OUTPUT, at[k], 0, 1, s) for k, s in enumerate(shapes))
    entry = Entry(3, kernel, tuple(("input", k) for k in range(len(shapes))), refs, outputs, (tc.ZERO,) * len(outputs))
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    reads = fold_rules.fold_reads(parsed, output, 0)
    assert fold_contracts["folds"].functions.output_of(skeleton, output).call()[1]
    assert fold_rules.column_load(parsed, reads) == fold_rules.MAX_COLUMN_LOAD
    # the largest source an honest defender holds (a kit's tensor file is at most 8 GiB: 2**31 binary32)
    source_dims = [2**31]
    depth = tc.depth_of(tc.chunk_count(1, source_dims))
    assert depth == 28 and 4 * 2**31 <= MAX_TENSOR_FILE_BYTES
    columns, leaves, keys, roots = [], [], [], []
    for i, (k, first, count, stride) in enumerate(reads):
        words, data_root = _synthetic_column(first, count, stride, depth, b"input %d" % k)
        columns += words
        key, root = keccak(b"skeleton leaf %d" % k), tc.root_of_data(1, source_dims, data_root)
        keys.append(key)
        roots.append(root)
        leaves.append(keccak(b"\x17" + at[k].to_bytes(4, "big") + key + root))  # entry at[k]'s leaf: one output
    # the two entries read (4 and 5) are siblings at the bottom of a record of 2**24 slots, other siblings above
    upper = [keccak(b"record sibling %d" % level) for level in range(23)]
    pair = (leaves[0], leaves[1]) if at[reads[0][0]] == 4 else (leaves[1], leaves[0])
    prefix = tc.root_from_path(keccak(b"\x18" + pair[0] + pair[1]), 2, upper, b"\x18")
    proofs = [(keys[i], [roots[i]], [leaves[1 - i], *upper], source_dims, 0, [], []) for i in range(2)]
    game_id, defender = 77, w3.eth.accounts[2]
    _set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": PROOF,
                                  "deadline": 2**40, "record_length": 2**24 - 1, "entry": 100, "previous_prefix": prefix,
                                  "skeleton_leaf": keccak(b"\x16" + skeleton), "output": output, "output_size": 1,
                                  "chunk_index": 0, "chunk": keccak(b"claimed"), "element": 0, "rules": FOLD_RULES})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, [], columns).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt.status == 1 and host.functions.ruling_of(game_id).call()[0]
    print(f"prove_element, the largest fold element accepted ({len(columns)} column words): {receipt.gasUsed} gas")
    assert receipt.gasUsed <= PROVE_ELEMENT_TARGET


def test_the_player_proves_a_fold_element_from_its_kit(chain, fold_contracts, gpt_step, tmp_path) -> None:  # noqa: F811
    """worker.referee_player as honest defender, from the dispute kit of the GPT step (its column proofs
    from `DisputeKit.element_proof_args`), beats a challenger that steers to a dW element of the
    linear_backward FoldRules decides; the game is decided on chain, not escalated."""
    from personas.referee_game import side_kit, steered_challenger
    from tests.unit.disputes.test_referee_player import Party, _drive, _open
    from worker.referee_player import RefereePlayer

    rec = gpt_step["rec"]
    target = next(e.index for e in rec.entries if e.kernel == "linear_backward" and fold_rules.fold_checkable(parse_skeleton(e.skeleton_bytes()), 1))
    element = rec.entries[target].outputs[1].size - 3
    kit = side_kit(Side(gpt_step["roots"], rec, gpt_step["next_leaves"]), gpt_step["before"], gpt_step["binding"])
    defender = Party(chain, RefereePlayer(chain, fold_contracts, "defender", kit), tmp_path / "d.db")
    challenger = Party(chain, steered_challenger(chain, fold_contracts, kit, target, element, output=1), tmp_path / "c.db")
    game_id = _open(chain, fold_contracts, gpt_step, kit.state_roots)
    assert _drive([defender, challenger], game_id) == []
    game = defender.player.game(game_id)
    assert (game["entry"], game["output"], game["rules"], game["chunk_index"] * 8 + game["element"]) == (target, 1, FOLD_RULES, element)
    assert defender.player.ruling(game_id) == (True, False, False)
