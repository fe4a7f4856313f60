"""The dearest `prove_element` the row rules let an honest defender make (HostRules' `layer_norm`,
`softmax` and `softmax_backward`; RowRules' `rms_norm` and the norm backwards' dx), played on anvil for
tests and bench like `personas.fold_worst_case`: a game of RefereeGame.vy written into PROOF by storage
and the defender's transaction measured.

The element: a row of the kernel's widest accepted width, placed where its reads open the most proof
words (a row that crosses a 256-element boundary is read in two runs, each its own proof); every input
an output of an earlier entry with MAX_OUTPUTS outputs under a record of 2**24 slots (the deepest
record path), each read a prefix of a source as large as a kit holds (2**31 binary32). The values read
are drawn like a trained model's (normal activations, weights near one, positive rstd, a softmax row's
probabilities); the words they do not decide (siblings, other roots) are made up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eth_hash.auto import keccak

from engine.portable import record
from personas.fold_worst_case import SOURCE_ELEMENTS, STAGE_PROOF, set_game
from protocol import tensor_commit as tc
from protocol.referee_kit import MAX_TENSOR_FILE_BYTES, game_reads, parse_skeleton, rules_of

# the row kernels and the outputs their caps cover (the backwards: dx only)
KERNELS = {"softmax": (0,), "softmax_backward": (0,), "layer_norm": (0, 1, 2), "rms_norm": (0, 1, 2),
           "rms_norm_backward": (0,), "layer_norm_backward": (0,)}  # fmt: skip
MAX_OUTPUTS = 4  # roots an entry leaf holds (commitments.vy MAX_OUTPUTS)
RECORD_DEPTH = 24  # a record of 2**24 slots (commitments.vy MAX_RECORD_DEPTH)
RUN_ELEMENTS = 256


def row_entry(kernel: str, width: int, rows: int) -> record.Entry:
    """The kernel's entry over `rows` rows of `width`, its inputs outputs of entries 4, 5, … ."""
    x, row = (rows, width), (rows,)
    if kernel == "layer_norm":
        args, shapes, outs = (("input", 0), ("input", 1), ("input", 2), 1e-5), (x, (width,), (width,)), (x, x, row)
    elif kernel == "rms_norm":
        args, shapes, outs = (("input", 0), ("input", 1), 1e-5), (x, (width,)), (x, x, row)
    elif kernel == "softmax":
        args, shapes, outs = (("input", 0),), (x,), (x,)
    elif kernel == "softmax_backward":
        args, shapes, outs = (("input", 0), ("input", 1)), (x, x), (x,)
    else:  # x̂, rstd, w, dy -> dx, dw (and db)
        args, shapes = tuple(("input", k) for k in range(4)), (x, row, (width,), x)
        outs = (x, (width,), (width,)) if kernel == "layer_norm_backward" else (x, (width,))
    refs = tuple(record.Ref(record.OUTPUT, 4 + k, 0, 1, s) for k, s in enumerate(shapes))
    return record.Entry(3, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))


def rows_of(kernel: str, width: int) -> int:
    """The most rows the rules accept at `width` (the backwards' rows across a 256-element boundary only
    where x̂ holds at most 256 elements), within a source of SOURCE_ELEMENTS."""
    if kernel.endswith("_backward") and kernel != "softmax_backward" and RUN_ELEMENTS % width:
        return RUN_ELEMENTS // width
    return SOURCE_ELEMENTS // width


def _proof_words(reads: list[tuple[int, int, int]], depth: int) -> int:
    """Chunks and path words the honest run proofs of `reads` carry (tensor_commit.prove_run's runs)."""
    words = 0
    for _, first, count in reads:
        a, b = first // 8, (first + count - 1) // 8
        level = 0
        while a >> level != b >> level:
            level += 1
        words += (1 << level) + depth - level + RECORD_DEPTH + MAX_OUTPUTS
    return words


def dearest_element(kernel: str, width: int, output: int) -> tuple[bytes, int]:
    """The skeleton at `width` and the element of `output` whose reads carry the most proof words (every
    row start modulo 256 tried; the last element of the row)."""
    rows = rows_of(kernel, width)
    skeleton = row_entry(kernel, width, rows).skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    depth = tc.depth_of(tc.chunk_count(1, [SOURCE_ELEMENTS]))
    best, best_words = 0, -1
    for row in range(min(rows, RUN_ELEMENTS)):
        element = row if kernel in ("layer_norm", "rms_norm") and output == 2 else row * width + width - 1
        words = _proof_words(game_reads(parsed, output, element), depth)
        if words > best_words:
            best, best_words = element, words
    return skeleton, best


def _sparse_tree(leaves: dict[int, bytes], depth: int, node: bytes, seed: bytes) -> list[dict[int, bytes]]:
    """Every node of a tree of `depth` levels above `leaves` (position -> leaf) that a path can need:
    the known subtrees, and a made-up word for each sibling with no known leaf below it."""
    levels = [dict(leaves)]
    for level in range(depth):
        nodes, parents = levels[-1], {}
        for p in sorted(nodes):
            nodes.setdefault(p ^ 1, keccak(seed + b" sibling %d %d" % (level, p ^ 1)))
        for p in sorted(nodes):
            if p % 2 == 0:
                parents[p // 2] = keccak(node + nodes[p] + nodes[p + 1])
        levels.append(parents)
    assert len(levels[-1]) == 1
    return levels


def _path(levels: list[dict[int, bytes]], position: int, level: int) -> list[bytes]:
    """The sibling words from the node at (level, position) up to the root."""
    return [levels[at][(position >> (at - level)) ^ 1] for at in range(level, len(levels) - 1)]


def _values(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n values of input k, drawn as a trained model's would be."""
    if kernel == "softmax_backward" and k == 0:  # y: probabilities of a row, 1 / width on average
        return (2 * rng.random(n) / width).astype(np.float32)
    if (kernel in ("layer_norm", "rms_norm") and k == 1) or (kernel.endswith("norm_backward") and k == 2):
        return (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)  # w
    if kernel.endswith("norm_backward") and k == 1:  # rstd
        return (0.5 + rng.random(n)).astype(np.float32)
    scale = 0.02 if (kernel.endswith("norm_backward") and k == 3) or kernel == "softmax_backward" else 1.0  # dy
    return (scale * rng.standard_normal(n)).astype(np.float32)


def largest_row_proof(w3: Any, host: Any, kernel: str, width: int, output: int, game_id: int = 78, seed: int = 0) -> int:
    """Play the dearest element of `output` of `kernel` at `width` (module docstring) at `game_id`: the
    gas used. Raises when the rules do not accept it, the transaction fails or the game is not decided."""
    skeleton, element = dearest_element(kernel, width, output)
    parsed = parse_skeleton(skeleton)
    rules = rules_of(parsed, output)
    if rules is None or 4 * SOURCE_ELEMENTS > MAX_TENSOR_FILE_BYTES:
        raise ValueError(f"{kernel} at width {width} is not checkable")
    reads = game_reads(parsed, output, element)
    depth = tc.depth_of(tc.chunk_count(1, [SOURCE_ELEMENTS]))
    rng = np.random.default_rng((seed, width, output))
    runs: list[tuple[int, int, int]] = []  # (input, first chunk, level) of each read's run
    chunks: dict[int, dict[int, bytes]] = {}
    for k, first, count in reads:
        a, b = first // 8, (first + count - 1) // 8
        level = 0
        while a >> level != b >> level:
            level += 1
        start = (a >> level) << level
        runs.append((k, start, level))
        positions = range(start, start + (1 << level))
        values = _values(kernel, k, 8 * len(positions), width, rng)
        data = values.astype(">f4").tobytes()
        for n, p in enumerate(positions):
            chunks.setdefault(k, {})[p] = data[32 * n : 32 * n + 32]
    inputs = sorted(chunks)
    trees = {k: _sparse_tree({p: tc.chunk_leaf(c) for p, c in chunks[k].items()}, depth, tc.TENSOR_NODE, b"input %d" % k)
             for k in inputs}  # fmt: skip
    # the producing entry's output 0 is the input; its other MAX_OUTPUTS - 1 roots are made up
    roots = {k: [tc.root_of_data(1, [SOURCE_ELEMENTS], trees[k][-1][0])] + [keccak(b"root %d %d" % (k, i)) for i in range(1, MAX_OUTPUTS)]
             for k in inputs}  # fmt: skip
    keys = {k: keccak(b"skeleton leaf %d" % k) for k in inputs}
    at = {k: parsed.inputs[k].a for k in inputs}
    leaves = {at[k]: keccak(b"\x17" + at[k].to_bytes(4, "big") + keys[k] + b"".join(roots[k])) for k in inputs}
    record_tree = _sparse_tree(leaves, RECORD_DEPTH, b"\x18", b"record")
    proofs = []
    for k, start, level in runs:
        run = [chunks[k][p] for p in range(start, start + (1 << level))]
        proofs.append((keys[k], roots[k], _path(record_tree, at[k], 0), [SOURCE_ELEMENTS], start, run,
                       _path(trees[k], start >> level, level)))  # fmt: skip
    size = int(np.prod(parsed.outputs[output][1]))
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": 2**RECORD_DEPTH - 1, "entry": 100,
                                 "previous_prefix": record_tree[-1][0], "skeleton_leaf": keccak(b"\x16" + skeleton),
                                 "output": output, "output_size": size, "chunk_index": element // 8,
                                 "chunk": keccak(b"claimed"), "element": element % 8, "rules": rules})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, [], []).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1 or not host.functions.ruling_of(game_id).call()[0]:
        raise RuntimeError(f"the largest {kernel} row element was not decided")
    return int(receipt.gasUsed)
