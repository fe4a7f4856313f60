"""The dearest `prove_element` FoldRules (contracts/lib/fold_rules.vy) lets an honest defender make, played
on anvil for tests and bench: a game of RefereeGame.vy written into PROOF by storage (`anvil_setStorageAt`:
the descent to it is gas the other benches measure) and the defender's transaction measured.

The element: one fold of 169 terms whose two reads are contiguous columns of 169 binary32 (338 values
and 66 column words: a load of 404, MAX_COLUMN_LOAD, in the mix that costs most), as a `matmul` of a [1, 169] and b [169, 1] or a `layer_norm_backward` dw over 169 rows of
width 1 (its skeleton is larger: four inputs); both inputs outputs of earlier entries under a record of
2**24 slots (the deepest record path), each read a prefix of a source as large as a kit holds (2**31
binary32: 23 sibling words more a read). The words are made up: the tensor roots are what they build.
"""

from __future__ import annotations

from typing import Any

from eth_hash.auto import keccak

from engine.portable import record
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import FOLD_RULES, MAX_TENSOR_FILE_BYTES, parse_skeleton
from worker.referee_player import GAME_FIELDS

KERNELS = ("matmul", "layer_norm_backward")
GAMES_SLOT = 2  # RefereeGame's storage: host, game_count, games (vyper -f layout)
STAGE_PROOF = 8
TERMS = 169
SOURCE_ELEMENTS = 2**31  # the largest source an honest defender holds (a kit's tensor file is at most 8 GiB)


def synthetic_column(first: int, count: int, stride: int, depth: int, seed: bytes) -> tuple[list[bytes], bytes]:
    """A column proof of made-up words for a read at a tree of `depth` (RefereeGame's walk: the distinct
    chunks, then a sibling for each node whose sibling is not known, level by level) and the data root
    it builds."""
    positions = sorted({(first + i * stride) // 8 for i in range(count)})
    chunks = [keccak(seed + b" chunk %d" % p) for p in positions]
    nodes = {p: tc.chunk_leaf(c) for p, c in zip(positions, chunks, strict=True)}
    siblings = []
    for level in range(depth):
        parents: dict[int, bytes] = {}
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


def set_game(w3: Any, host: Any, game_id: int, fields: dict[str, Any]) -> None:
    """Write a game's fields into RefereeGame's storage (games[game_id] at keccak256(slot ‖ key), then
    one slot a field in declaration order)."""
    base = int.from_bytes(keccak(GAMES_SLOT.to_bytes(32, "big") + game_id.to_bytes(32, "big")), "big")
    for name, value in fields.items():
        word = value if isinstance(value, bytes) else (int(value, 16) if isinstance(value, str) else int(value)).to_bytes(32, "big")
        w3.provider.make_request("anvil_setStorageAt", [host.address, hex(base + GAME_FIELDS.index(name)), "0x" + word.hex()])


def largest_fold_proof(w3: Any, host: Any, kernel: str, game_id: int = 77) -> tuple[int, int]:
    """Play the dearest fold element of `kernel` (module docstring) at `game_id`: (gas used, column words).
    Raises when the transaction fails or the game is not decided."""
    if kernel == "matmul":
        shapes, outputs, output = ((1, TERMS), (TERMS, 1)), ((1, (1, 1)),), 0
        at = (4, 5)  # the entries the inputs come from: the two read are siblings of the record tree
    else:  # x̂, rstd, w, dy: dw[0] = fold over the rows of dy[r, 0] · x̂[r, 0]
        shapes, outputs, output = ((TERMS, 1), (TERMS,), (1,), (TERMS, 1)), ((1, (TERMS, 1)), (1, (1,)), (1, (1,))), 1
        at = (4, 6, 7, 5)
    refs = tuple(record.Ref(record.OUTPUT, at[k], 0, 1, s) for k, s in enumerate(shapes))
    entry = record.Entry(3, kernel, tuple(("input", k) for k in range(len(shapes))), refs, outputs, (tc.ZERO,) * len(outputs))
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    reads = fold_rules.fold_reads(parsed, output, 0)
    if fold_rules.column_load(parsed, reads) != fold_rules.MAX_COLUMN_LOAD or 4 * SOURCE_ELEMENTS > MAX_TENSOR_FILE_BYTES:
        raise AssertionError("the worst case is no longer the largest load accepted")
    source_dims = [SOURCE_ELEMENTS]
    depth = tc.depth_of(tc.chunk_count(1, source_dims))
    columns, leaves, keys, roots = [], [], [], []
    for k, first, count, stride in reads:
        words, data_root = synthetic_column(first, count, stride, depth, b"input %d" % k)
        columns += words
        key, root = keccak(b"skeleton leaf %d" % k), tc.root_of_data(1, source_dims, data_root)
        keys.append(key)
        roots.append(root)
        leaves.append(keccak(b"\x17" + at[k].to_bytes(4, "big") + key + root))  # entry at[k]'s leaf: one output
    # entries 4 and 5 are siblings at the bottom of a record of 2**24 slots, other siblings above
    upper = [keccak(b"record sibling %d" % level) for level in range(23)]
    pair = (leaves[0], leaves[1]) if at[reads[0][0]] == 4 else (leaves[1], leaves[0])
    prefix = tc.root_from_path(keccak(b"\x18" + pair[0] + pair[1]), 2, upper, b"\x18")
    proofs = [(keys[i], [roots[i]], [leaves[1 - i], *upper], source_dims, 0, [], []) for i in range(2)]
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": 2**24 - 1, "entry": 100, "previous_prefix": prefix,
                                 "skeleton_leaf": keccak(b"\x16" + skeleton), "output": output, "output_size": 1,
                                 "chunk_index": 0, "chunk": keccak(b"claimed"), "element": 0, "rules": FOLD_RULES})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, [], columns).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1 or not host.functions.ruling_of(game_id).call()[0]:
        raise RuntimeError(f"the largest {kernel} fold element was not decided")
    return int(receipt.gasUsed), len(columns)
