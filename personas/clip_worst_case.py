"""The dearest `prove_element` ScalarRules lets an honest defender make for clipping (a running value of the
binary64 Σ g²), played on anvil for tests and bench like `personas.row_worst_case`: a game of RefereeGame.vy
written into PROOF by storage and the defender's transaction measured.

`largest_clip_proof`: the last piece (CLIP_PIECE_TERMS gradient elements and the running value before it, an
own-output read) of a clip_scale whose skeleton is as long as the rules read (4,096 bytes: every gradient one
more reference to walk). `largest_clip_sum_proof`: the first piece of a later clip_sum group (the recorder's
form over more than CLIP_GROUP gradients) of CLIP_GROUP gradients of eight dims each, whose running value before
it is the previous group's last partial: a binary64 output of an earlier entry. Each gradient an output of an
earlier entry with MAX_OUTPUTS outputs under a record of 2**24 slots, read as a prefix of a source as large as a
kit holds (2**31 binary32). The values are drawn like a trained model's gradients; the words they do not decide
(siblings, other roots) are made up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eth_hash.auto import keccak

from engine.portable import record
from personas.fold_worst_case import SOURCE_DIMS, SOURCE_ELEMENTS, STAGE_PROOF, set_game
from personas.row_worst_case import MAX_OUTPUTS, RECORD_DEPTH, _path, _sparse_tree
from protocol import scalar_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import MAX_SKELETON, SCALAR_RULES, parse_skeleton, rules_of, self_input_proof

GRADIENT = 4_096  # elements of each gradient (a multiple of CLIP_PIECE_TERMS: every piece full)
WIDEST = (1,) * 7 + (GRADIENT,)  # a gradient of MAX_NDIM dims: the longest reference a skeleton holds


def clip_entry(gradients: int) -> record.Entry:
    """clip_scale over `gradients` gradients of GRADIENT elements, outputs of entries 4, 5, … ."""
    refs = tuple(record.Ref(record.OUTPUT, 4 + k, 0, 1, (GRADIENT,)) for k in range(gradients))
    pieces = len(scalar_rules.clip_pieces([GRADIENT] * gradients))
    return record.Entry(100, "clip_scale", (*(("input", k) for k in range(gradients)), 1.0), refs,
                        ((1, (1,)), (3, (pieces,))), (tc.ZERO,) * 2)  # fmt: skip


def clip_sum_entry(before: int) -> record.Entry:
    """A later clip_sum: the previous group's `before` partials (entry 3's output), then CLIP_GROUP gradients of
    the WIDEST shape, outputs of entries 4, 5, … ."""
    refs = (record.Ref(record.OUTPUT, 3, 0, 3, (before,)),
            *(record.Ref(record.OUTPUT, 4 + k, 0, 1, WIDEST) for k in range(scalar_rules.CLIP_GROUP)))  # fmt: skip
    pieces = len(scalar_rules.clip_pieces([GRADIENT] * scalar_rules.CLIP_GROUP))
    return record.Entry(100, "clip_sum", tuple(("input", k) for k in range(len(refs))), refs, ((3, (pieces,)),), (tc.ZERO,))


def longest_clip_entry() -> record.Entry:
    """The clip_scale with the most gradients whose skeleton the rules still read."""
    gradients = 1
    while len(clip_entry(gradients + 1).skeleton_bytes()) <= MAX_SKELETON:
        gradients += 1
    return clip_entry(gradients)


def _gradient_proof(parsed: Any, k: int, first: int, count: int, rng: np.random.Generator,
                    record_leaves: dict[int, bytes]) -> tuple[bytes, list[bytes], int, list[bytes], int]:  # fmt: skip
    """The read gradient k's part of its InputProof: one aligned run of a source of SOURCE_ELEMENTS under a
    made-up tree (key, roots, run start, run chunks, run path); its entry leaf is added to `record_leaves`."""
    depth = tc.depth_of(tc.chunk_count(1, [SOURCE_ELEMENTS]))
    data = (1e-3 * rng.standard_normal(count)).astype(np.float32).astype(">f4").tobytes()
    start = first // 8
    run = [data[32 * n : 32 * n + 32] for n in range(count // 8)]
    level = (count // 8).bit_length() - 1
    tree = _sparse_tree({start + n: tc.chunk_leaf(c) for n, c in enumerate(run)}, depth, tc.TENSOR_NODE, b"gradient")
    roots = [tc.root_of_data(1, list(SOURCE_DIMS), tree[-1][0])] + [keccak(b"root %d" % i) for i in range(1, MAX_OUTPUTS)]
    key, at = keccak(b"skeleton leaf"), parsed.inputs[k].a
    record_leaves[at] = keccak(b"\x17" + at.to_bytes(4, "big") + key + b"".join(roots))
    return key, roots, start, run, _path(tree, start >> level, level)


def _play(w3: Any, host: Any, game_id: int, entry: record.Entry, output: int, element: int, proofs: list[tuple],
          record_tree: list[dict[int, bytes]], out_roots: list[bytes]) -> int:  # fmt: skip
    """Write the game into PROOF at `element` of `output` (binary64, 4 a chunk), prove, and return the gas used."""
    skeleton = entry.skeleton_bytes()
    skeleton_leaf = keccak(b"\x16" + skeleton)
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": 2**RECORD_DEPTH - 1, "entry": entry.index,
                                 "previous_prefix": record_tree[-1][0], "skeleton_leaf": skeleton_leaf,
                                 "entry_leaf": keccak(b"\x17" + entry.index.to_bytes(4, "big") + skeleton_leaf + b"".join(out_roots)),
                                 "output": output, "output_size": entry.out_shapes[output][1][0], "chunk_index": element // 4,
                                 "chunk": keccak(b"claimed"), "element": element % 4, "rules": SCALAR_RULES,
                                 "wide_code": 3})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, [], []).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1 or not host.functions.ruling_of(game_id).call()[0]:
        raise RuntimeError(f"the largest {entry.kernel} piece was not decided")
    return int(receipt.gasUsed)


def largest_clip_proof(w3: Any, host: Any, game_id: int = 79, seed: int = 0) -> tuple[int, int]:
    """Play the dearest clip_scale piece (module docstring) at `game_id`: (gas used, gradients). Raises when the
    rules do not accept it, the transaction fails or the game is not decided."""
    entry = longest_clip_entry()
    parsed = parse_skeleton(entry.skeleton_bytes())
    if rules_of(parsed, 1) != SCALAR_RULES:
        raise ValueError("the longest clip_scale is not checkable")
    pieces = entry.out_shapes[1][1][0]
    element = pieces - 1
    (_, self_first, _), (k, first, count) = scalar_rules.scalar_reads(parsed, 1, element)
    rng = np.random.default_rng(seed)
    partials = np.cumsum(rng.random(pieces) * 1e-3).astype(np.float64)  # the running values, increasing
    out_roots = [tc.tensor_root(np.array([0.5], dtype=np.float32)), tc.tensor_root(partials)]
    leaves: dict[int, bytes] = {}
    key, roots, start, run, run_path = _gradient_proof(parsed, k, first, count, rng, leaves)
    record_tree = _sparse_tree(leaves, RECORD_DEPTH, b"\x18", b"record")
    proofs = [self_input_proof(out_roots, partials, self_first, 1),
              (key, roots, _path(record_tree, parsed.inputs[k].a, 0), list(SOURCE_DIMS), start, run, run_path)]
    return _play(w3, host, game_id, entry, 1, element, proofs, record_tree, out_roots), len(entry.inputs)


def largest_clip_sum_proof(w3: Any, host: Any, game_id: int = 78, seed: int = 0) -> int:
    """Play the dearest clip_sum piece (module docstring) at `game_id`: the gas used. Raises as
    `largest_clip_proof` does."""
    before = 64
    entry = clip_sum_entry(before)
    parsed = parse_skeleton(entry.skeleton_bytes())
    if len(entry.skeleton_bytes()) > MAX_SKELETON or rules_of(parsed, 0) != SCALAR_RULES:
        raise ValueError("the widest clip_sum is not checkable")
    (_, start_first, _), (k, first, count) = scalar_rules.scalar_reads(parsed, 0, 0)
    rng = np.random.default_rng(seed)
    previous = np.cumsum(rng.random(before) * 1e-3).astype(np.float64)  # the group before's running values
    partials = previous[-1] + np.cumsum(rng.random(entry.out_shapes[0][1][0]) * 1e-3)
    out_roots = [tc.tensor_root(partials)]
    previous_roots = [tc.tensor_root(previous)] + [keccak(b"previous root %d" % i) for i in range(1, MAX_OUTPUTS)]
    previous_key = keccak(b"previous skeleton leaf")
    leaves = {3: keccak(b"\x17" + (3).to_bytes(4, "big") + previous_key + b"".join(previous_roots))}
    key, roots, start, run, run_path = _gradient_proof(parsed, k, first, count, rng, leaves)
    record_tree = _sparse_tree(leaves, RECORD_DEPTH, b"\x18", b"record")
    previous_run = tc.prove_run(previous, start_first, 1)
    proofs = [(previous_key, previous_roots, _path(record_tree, 3, 0), [before], previous_run.first, list(previous_run.chunks),
               list(previous_run.path)),
              (key, roots, _path(record_tree, parsed.inputs[k].a, 0), list(SOURCE_DIMS), start, run, run_path)]  # fmt: skip
    return _play(w3, host, game_id, entry, 0, 0, proofs, record_tree, out_roots)
