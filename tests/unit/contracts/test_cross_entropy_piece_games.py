"""An honest defender's prove_element of a row-pieced cross-entropy element whose targets are a constant (RowPieceRules
accepts constant targets, as RowRules' whole rows do): the proof of the constant read is the kit's (roots = [the
constant's root], no path, the run), and the element is decided. An adversarial review found it could not be (the
plan's read carried no root), now fixed. Control: the same harness over RowRules' whole rows (C = 32)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak

import personas.row_worst_case as rw
from engine.portable import record
from personas.fold_worst_case import MAX_OUTPUTS, SOURCE_ELEMENTS, STAGE_PROOF, set_game
from protocol import tensor_commit as tc
from protocol.referee_kit import ROW_RULES, SELF_READ, game_reads, parse_skeleton, row_strided_reads, rules_of

from .test_row_piece_attacks import chain, stack  # noqa: F401


def _entry(kernel: str, width: int, rows: int, targets: np.ndarray) -> record.Entry:
    entry = rw.row_entry(kernel, width, rows) if width <= 32 else rw.row_piece_entry(kernel, width, rows)
    t = record.Ref(record.CONSTANT, 0, 0, 2, (rows,), root=tc.tensor_root(targets))
    return dataclasses.replace(entry, inputs=(entry.inputs[0], t))


def _prove(w3: Any, host: Any, entry: record.Entry, targets: np.ndarray, output: int, element: int, hints: tuple[int, ...],
           game_id: int) -> Any:  # fmt: skip
    """rw.loss_proof, the targets proven as the constant they are."""
    rng = np.random.default_rng(game_id)
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    rules = rules_of(parsed, output)
    assert rules is not None
    if rules == ROW_RULES:
        reads = row_strided_reads(parsed, output, element)
    else:
        reads = [(k, first, count, 1) for k, first, count in game_reads(parsed, output, element, hints)]
    own = [keccak(b"own output %d" % i) for i in range(len(entry.out_shapes))]
    chunks: dict[int, dict[int, bytes]] = {}
    placed = []
    for k, first, count, stride in reads:
        assert stride == 1
        if k == 1:
            placed.append(None)
            continue
        per = 8
        a, b = first // per, (first + count - 1) // per
        level = 0
        while a >> level != b >> level:
            level += 1
        positions = list(range((a >> level) << level, ((a >> level) << level) + (1 << level)))
        placed.append(((a >> level) << level, level))
        data = rw._chunk_bytes((1.0 + rng.random(per * len(positions))).astype(np.float32))
        chunks.setdefault(k, {}).update(dict(zip(positions, data, strict=True)))
    dims = {k: list(parsed.outputs[k - SELF_READ][1]) if k >= SELF_READ else [SOURCE_ELEMENTS] for k in chunks}
    depth = {k: tc.depth_of(tc.chunk_count(1, dims[k])) for k in chunks}
    trees = {k: rw._sparse_tree({p: tc.chunk_leaf(c) for p, c in chunks[k].items()}, depth[k], tc.TENSOR_NODE, b"input %d" % k)
             for k in chunks}  # fmt: skip
    for k in (k for k in chunks if k >= SELF_READ):
        own[k - SELF_READ] = tc.root_of_data(1, dims[k], trees[k][-1][0])
    chunks_in = [k for k in chunks if k < SELF_READ]
    roots = {k: [tc.root_of_data(1, dims[k], trees[k][-1][0])] + [keccak(b"root %d %d" % (k, i)) for i in range(1, MAX_OUTPUTS)]
             for k in chunks_in}  # fmt: skip
    keys = {k: keccak(b"skeleton leaf %d" % k) for k in chunks_in}
    at = {k: parsed.inputs[k].a for k in chunks_in}
    leaves = {at[k]: keccak(b"\x17" + at[k].to_bytes(4, "big") + keys[k] + b"".join(roots[k])) for k in chunks_in}
    record_tree = rw._sparse_tree(leaves or {0: keccak(b"no input")}, rw.RECORD_DEPTH, b"\x18", b"record")
    proofs = []
    for (k, first, count, _), run_at in zip(reads, placed, strict=True):
        if k == 1:  # the constant targets, as the kit proves a constant
            run = tc.prove_run(targets, first, count)
            proofs.append((tc.ZERO, [entry.inputs[1].root], [], list(targets.shape), run.first, list(run.chunks), list(run.path)))
            continue
        start, level = run_at
        run = [chunks[k][p] for p in range(start, start + (1 << level))]
        if k >= SELF_READ:
            proofs.append((tc.ZERO, own, [], dims[k], start, run, rw._path(trees[k], start >> level, level)))
        else:
            proofs.append((keys[k], roots[k], rw._path(record_tree, at[k], 0), dims[k], start, run,
                           rw._path(trees[k], start >> level, level)))  # fmt: skip
    skeleton_leaf = keccak(b"\x16" + skeleton)
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": 2**rw.RECORD_DEPTH - 1, "entry": 100,
                                 "previous_prefix": record_tree[-1][0], "skeleton_leaf": skeleton_leaf,
                                 "entry_leaf": keccak(b"\x17" + (100).to_bytes(4, "big") + skeleton_leaf + b"".join(own)),
                                 "output": output, "output_size": int(np.prod(parsed.outputs[output][1])),
                                 "chunk_index": element // 8, "chunk": keccak(b"claimed"), "element": element % 8,
                                 "rules": rules})  # fmt: skip
    return host.functions.prove_element(game_id, skeleton, proofs, list(hints), []).call({"from": defender, "gas": 8_000_000})


@pytest.mark.parametrize(("kernel", "width", "output"), [("cross_entropy", 40, 1), ("cross_entropy_backward", 40, 0),
                                                          ("cross_entropy", 32, 1), ("cross_entropy_backward", 32, 0)])
def test_constant_targets_element_is_provable(chain, stack, kernel, width, output) -> None:  # noqa: F811
    rows = 3
    targets = np.array([width - 1, 0, 5], dtype=np.int64)
    entry = _entry(kernel, width, rows, targets)
    element = 0 if kernel == "cross_entropy" else width - 1
    hints = (int(targets[0]),) if kernel == "cross_entropy" and width > 32 else ()
    try:
        _prove(chain, stack["host"], entry, targets, output, element, hints, 700 + width + output)
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"{kernel} C={width}: the honest defender cannot prove the element: {error}")
