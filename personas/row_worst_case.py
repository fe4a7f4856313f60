"""The dearest `prove_element` the row rules let an honest defender make (HostRules' `layer_norm`,
`softmax` and `softmax_backward`; RowRules' `rms_norm`, the norm backwards' dx and, in
`largest_loss_proof`, the loss rules: cross-entropy's mean and rows, its backward, embedding_backward),
played on anvil for tests and bench like `personas.fold_worst_case`: a game of RefereeGame.vy written into
PROOF by storage and the defender's transaction measured.

The element: a row of the kernel's widest accepted width, placed where its reads open the most proof
words (a row that crosses a 256-element boundary is read in two runs, each its own proof); every input
an output of an earlier entry with MAX_OUTPUTS outputs under a record of 2**24 slots (the deepest
record path), each read a prefix of a source as large as a kit holds (2**31 binary32). The values read
are drawn like a trained model's (normal activations, weights near one, positive rstd, a softmax row's
probabilities), or those values scaled input by input into the ranges where the binary32 soft-float takes its
slower paths (`ADVERSE_SCALES`); the words they do not decide (siblings, other roots) are made up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eth_hash.auto import keccak

from engine.portable import record
from personas.fold_worst_case import INT64_SOURCE_DIMS, MAX_OUTPUTS, SOURCE_DIMS, SOURCE_ELEMENTS, STAGE_PROOF, set_game
from protocol import row_pieces
from protocol import tensor_commit as tc
from protocol.referee_kit import MAX_TENSOR_FILE_BYTES, game_reads, parse_skeleton, rules_of

# Adversarial values (docs/referee.md "Adversarial values"): per kernel, factors for its inputs' drawn values
# (input k times scale[k]) that make its dearest element dearest: the worst of a search over 1, 1e-38, 1e-41 and
# 2^-56 … 2^-70 for each input at the caps (subnormal operands and products, sums of subnormals, exact
# cancellations), and every input times 1e-41 (subnormal); and rms_norm's x times 2^-65 with w times 2^40 (squares
# subnormal, a random search of an attacker review, 2026-12-07).
ADVERSE_SCALES: dict[str, tuple[dict[int, float], ...]] = {
    "softmax": ({0: 1e-41},),
    "softmax_backward": ({0: 1e-38, 1: 1.0}, {0: 1e-41, 1: 1e-41}),
    "layer_norm": ({0: 2.0**-64, 1: 2.0**-64, 2: 2.0**-64}, {0: 2.0**-64, 1: 1.0, 2: 2.0**-56}, {0: 1e-41, 1: 1e-41, 2: 1e-41}),
    "rms_norm": ({0: 2.0**-64, 1: 2.0**-64}, {0: 2.0**-64, 1: 1.0}, {0: 1e-41, 1: 1e-41}, {0: 2.0**-65, 1: 2.0**40}),
    "rms_norm_backward": ({0: 1.0, 1: 1.0, 2: 2.0**-64, 3: 2.0**-58}, {0: 1e-41, 1: 1e-41, 2: 1e-41, 3: 1e-41}),
    "layer_norm_backward": ({0: 2.0**-66, 1: 2.0**-70, 2: 2.0**-56, 3: 1.0}, {0: 1e-41, 1: 1e-41, 2: 1e-41, 3: 1e-41}),
    "cross_entropy": ({0: 1e-41},),
    "cross_entropy_backward": ({0: 1e-41},),
    "embedding_backward": ({1: 1e-38},),
}  # fmt: skip



def largest_subnormal(rng: np.random.Generator) -> np.float32:
    """One of the largest subnormals, negative (no zero byte in its word): the operand of `_mul`'s dearest path."""
    return -np.uint32(0x007FFFFF - int(rng.integers(0, 1 << 12))).view(np.float32)


def cancelling_target(total: np.float32, first: float, rng: np.random.Generator) -> float:
    """The next term of a built fold: `first` onto a zero sum, else about -2 times the sum, so adding it is an
    exact cancellation that flips the sum's sign (`_pack_exact`)."""
    return first if total == 0 else -2.0 * float(total) * (1 + 2.0**-10 * rng.random())


def cancelling_row(kernel: str, width: int, seed: int = 0) -> dict[int, np.ndarray]:
    """A row built so that every operation of softmax_backward's or a norm backward's dx rule takes a dear path of
    the soft-float (an attacker review, 2026-12-07; no scaling of random draws finds it): each product a normal
    times a subnormal near 2^-126 with a normal result (`_mul`'s subnormal-operand path), each add onto a running
    sum an exact cancellation (the new term about -2 times the sum, so the sum flips sign: `_pack_exact`). For
    softmax_backward y and dy, the dot product Σ y·dy; for a norm backward x̂, rstd (1e-41), w and dy, with
    g = dy·w onto a = Σ g and g·x̂ onto b = Σ g·x̂; for layer_norm x (about 2^-61, each x - mean exact), w and b;
    for rms_norm x of one binade near 2^-64 with random signs (every square a subnormal product of normals, the
    review's dearest rms_norm rows: 983,444 gas at 199) and w as drawn. Returns {input: its values along the row}
    for `largest_row_proof`'s `design`."""
    rng = np.random.default_rng((seed, width))
    f32 = np.float32

    if kernel == "softmax_backward":
        y, dy, dot = np.zeros(width, f32), np.zeros(width, f32), f32(0)
        for i in range(width):
            dy[i] = largest_subnormal(rng)
            y[i] = f32(cancelling_target(dot, 1.6, rng) / float(dy[i]))
            dot = f32(dot + f32(y[i] * dy[i]))
        return {0: y, 1: dy}
    if kernel == "layer_norm":
        # x in one binade with its mean (every x - mean an exact cancellation), the first deviation's square normal
        # and every other a subnormal product of normals added onto a normal running variance; w and b tiny
        deviations = 2.0 ** -rng.uniform(65, 70, width) * rng.choice([-1, 1], width)
        deviations[0] = 0.7 * 2.0**-61
        return {0: (1.5 * 2.0**-61 + deviations).astype(f32), 1: np.full(width, 2.0**-70, f32),
                2: np.full(width, -3 * 2.0**-127, f32)}  # fmt: skip
    if kernel == "rms_norm":
        u = np.where(rng.random(width) < 0.5, 0.4 * rng.random(width), 0.6 + 0.4 * rng.random(width))
        x = (1 + u) * 2.0**-64 * rng.choice([-1, 1], width)
        return {0: x.astype(f32), 1: (1 + 0.1 * rng.standard_normal(width)).astype(f32)}
    if kernel not in ("layer_norm_backward", "rms_norm_backward"):
        raise ValueError(f"no cancelling row for {kernel}")
    xhat, w, dy = np.zeros(width, f32), np.zeros(width, f32), np.zeros(width, f32)
    a = b = f32(0)
    for i in range(width):
        w[i] = largest_subnormal(rng)
        dy[i] = f32(cancelling_target(a, 1.6, rng) / float(w[i]))
        g = f32(dy[i] * w[i])
        a = f32(a + g)
        xhat[i] = f32(cancelling_target(b, -1.1 * 2.0**-126, rng) / float(g))
        b = f32(b + f32(g * xhat[i]))
    return {0: xhat, 1: np.array([1e-41], f32), 2: w, 3: dy}


# the row kernels and the outputs their caps cover (the backwards: dx only)
KERNELS = {"softmax": (0,), "softmax_backward": (0,), "layer_norm": (0, 1, 2), "rms_norm": (0, 1, 2),
           "rms_norm_backward": (0,), "layer_norm_backward": (0,)}  # fmt: skip
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
    elif kernel in ("cross_entropy", "cross_entropy_backward"):  # z, int64 targets (and grad) -> the mean, nll or dz
        backward = kernel == "cross_entropy_backward"
        args = (("input", 0), ("input", 1), *((1.0,) if backward else ()))
        refs = (record.Ref(record.OUTPUT, 4, 0, 1, x), record.Ref(record.OUTPUT, 5, 0, 2, row))
        outs = (x,) if backward else ((), row)
        return record.Entry(3, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))
    elif kernel in ("causal_lm", "causal_lm_backward"):  # z, int64 targets (the backward: the count, grad)
        backward = kernel == "causal_lm_backward"
        refs = (record.Ref(record.OUTPUT, 4, 0, 1, x), record.Ref(record.OUTPUT, 5, 0, 2, row))
        args = (("input", 0), ("input", 1))
        if backward:
            refs += (record.Ref(record.OUTPUT, 6, 0, 1, (1,)),)
            args += (("input", 2), 1.0)
        outs = (x,) if backward else ((), row, (1,))  # dz; the mean, nll and the count
        return record.Entry(3, kernel, args, refs, tuple((1, s) for s in outs), (tc.ZERO,) * len(outs))
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
    if kernel == "max_pool_backward" and k == 0:  # the winners' places in their windows
        return rng.integers(0, 4, n).astype(np.int64)
    scale = 0.02 if (kernel.endswith("norm_backward") and k == 3) or kernel == "softmax_backward" else 1.0  # dy
    return (scale * rng.standard_normal(n)).astype(np.float32)


def largest_row_proof(w3: Any, host: Any, kernel: str, width: int, output: int, game_id: int = 78, seed: int = 0,
                      scale: float | dict[int, float] = 1.0, design: dict[int, np.ndarray] | None = None) -> int:  # fmt: skip
    """Play the dearest element of `output` of `kernel` at `width` (module docstring) at `game_id`, the inputs'
    values times `scale` (`loss_proof`), the elements read of each input k of `design` (`cancelling_row`) its
    values in the order read: the gas used. Raises when the rules do not accept it, the transaction fails or the
    game is not decided."""
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
    placed = dict.fromkeys(design or {}, 0)  # the designed values of each input placed so far
    for k, first, count in reads:
        a, b = first // 8, (first + count - 1) // 8
        level = 0
        while a >> level != b >> level:
            level += 1
        start = (a >> level) << level
        runs.append((k, start, level))
        positions = range(start, start + (1 << level))
        values = _scaled(_values, scale)(kernel, k, 8 * len(positions), width, rng)
        if k in placed:
            values[first - 8 * start : first - 8 * start + count] = design[k][placed[k] : placed[k] + count]
            placed[k] += count
        data = values.astype(">f4").tobytes()
        for n, p in enumerate(positions):
            chunks.setdefault(k, {})[p] = data[32 * n : 32 * n + 32]
    inputs = sorted(chunks)
    trees = {k: _sparse_tree({p: tc.chunk_leaf(c) for p, c in chunks[k].items()}, depth, tc.TENSOR_NODE, b"input %d" % k)
             for k in inputs}  # fmt: skip
    # the producing entry's output 0 is the input; its other MAX_OUTPUTS - 1 roots are made up
    roots = {k: [tc.root_of_data(1, list(SOURCE_DIMS), trees[k][-1][0])] + [keccak(b"root %d %d" % (k, i)) for i in range(1, MAX_OUTPUTS)]
             for k in inputs}  # fmt: skip
    keys = {k: keccak(b"skeleton leaf %d" % k) for k in inputs}
    at = {k: parsed.inputs[k].a for k in inputs}
    leaves = {at[k]: keccak(b"\x17" + at[k].to_bytes(4, "big") + keys[k] + b"".join(roots[k])) for k in inputs}
    record_tree = _sparse_tree(leaves, RECORD_DEPTH, b"\x18", b"record")
    proofs = []
    for k, start, level in runs:
        run = [chunks[k][p] for p in range(start, start + (1 << level))]
        proofs.append((keys[k], roots[k], _path(record_tree, at[k], 0), list(SOURCE_DIMS), start, run,
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



# ---------------------------------------------------------------------------------------------------------
# The loss rules (RowRules): cross-entropy's mean, its rows' losses and backward, embedding_backward
# ---------------------------------------------------------------------------------------------------------

LOSS_KERNELS = {"cross_entropy": (0, 1), "cross_entropy_backward": (0,), "embedding_backward": (0,)}
INT64_SOURCE = 2**30  # int64 elements of the largest source a kit holds (8 GiB)


def loss_entry(kernel: str, width: int, rows: int, vocab: int = 8) -> record.Entry:
    """cross_entropy(z [rows, width], t [rows]) or its backward, inputs outputs of entries 4 and 5; or
    embedding_backward(ids [rows], dy [rows, width], V = `vocab`). A loss fold RowRules checks in pieces
    (`fold_rules.loss_piecing`) has its running values as one more output, as the recorder adds them."""
    if kernel == "embedding_backward":
        refs = (record.Ref(record.OUTPUT, 4, 0, 2, (rows,)), record.Ref(record.OUTPUT, 5, 0, 1, (rows, width)))
        entry = record.Entry(3, kernel, (("input", 0), ("input", 1), vocab), refs, ((1, (vocab, width)),), (tc.ZERO,))
        return _with_running_values_shape(entry)
    refs = (record.Ref(record.OUTPUT, 4, 0, 1, (rows, width)), record.Ref(record.OUTPUT, 5, 0, 2, (rows,)))
    if kernel == "cross_entropy":
        entry = record.Entry(3, kernel, (("input", 0), ("input", 1)), refs, ((1, ()), (1, (rows,))), (tc.ZERO,) * 2)
        return _with_running_values_shape(entry)
    return record.Entry(3, kernel, (("input", 0), ("input", 1), np.float32(1.0)), refs, ((1, (rows, width)),), (tc.ZERO,))


def _with_running_values_shape(entry: record.Entry) -> record.Entry:
    """The entry with the running values' output the recorder gives it when its fold is in pieces (only its
    shape and a made-up root: the games here prove made-up values under the roots they build)."""
    import dataclasses

    from protocol import fold_rules

    piecing = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
    if piecing is None:
        return entry
    shape = ((piecing.pieces - 1) * piecing.size,)
    return dataclasses.replace(entry, out_shapes=(*entry.out_shapes, (1, shape)), out_roots=(*entry.out_roots, tc.ZERO))


def dearest_loss_piece(kernel: str, output: int, width: int = 1, piece: int | None = None) -> tuple[record.Entry, int]:
    """A loss fold in pieces over the largest inputs a kit holds, and an element decided by one piece past
    the first: cross-entropy's mean (output 0: its last piece and the division) or running sum (output 2)
    over R = 2**30 rows of z [R, 2] (nll and the running sums under the entry's own roots); the causal-LM
    loss's mean (output 0: the last piece of nll, divided by the count), count (output 2: the last piece of
    targets) or running values (output 3: `width` 1 a running sum, 2 a running count) over the same rows
    (its statistics last, as recorded); embedding_backward's dW[0, width − 1] (output 0) or its running
    value (output 1) over dy [P, width] of 2**31 elements (P = 2**31 / width positions, every id 0: each
    position adds). `piece` (a running value's) defaults to the middle one."""
    from protocol import fold_rules

    if kernel == "causal_lm":
        entry = row_piece_entry(kernel, 2, INT64_SOURCE)
        causal = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
        assert causal is not None
        return entry, (0 if output < 3 else (causal.pieces // 2 if piece is None else piece) * causal.size + width - 1)
    rows = INT64_SOURCE if kernel == "cross_entropy" else SOURCE_ELEMENTS // width
    entry = loss_entry(kernel, 2 if kernel == "cross_entropy" else width, rows)
    piecing = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
    if piecing is None:
        raise ValueError(f"{kernel} over {rows} is one piece")
    e = 0 if kernel == "cross_entropy" else width - 1
    if output == 0:
        return entry, e
    return entry, (piecing.pieces // 2 if piece is None else piece) * piecing.size + e


def embedding_piece_sweep(widths: tuple[int, ...] = (1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 1_024)) -> list[tuple[int, int, int]]:
    """(width, piece length, load) of embedding_backward's pieces over dy [2**31 / width, width] for each
    width, dearest load first: the load (`fold_rules.embedding_load`) bounds a piece's proof words and
    values, so the heaviest pieces are the ones to measure."""
    from protocol import fold_rules

    found = []
    for width in widths:
        piecing = fold_rules.loss_piecing(parse_skeleton(loss_entry("embedding_backward", width, SOURCE_ELEMENTS // width).skeleton_bytes()))
        assert piecing is not None
        load = fold_rules.embedding_load(tc.chunk_count(1, [SOURCE_ELEMENTS]), width, piecing.length)
        found.append((width, piecing.length, load))
    return sorted(found, key=lambda f: -f[2])


def dearest_loss_element(kernel: str, size: int, output: int, width: int = 1) -> tuple[record.Entry, int]:
    """The entry and the element whose reads open the most proof words: cross-entropy's rows of `size`
    logits (as many rows as the sources hold), its mean over `size` rows; embedding_backward over `size`
    positions of dy rows of `width` (dW[0, width − 1])."""
    from protocol.referee_kit import row_checkable, row_strided_reads

    if kernel == "embedding_backward":
        return loss_entry(kernel, width, size), width - 1
    if output == 0 and kernel == "cross_entropy":
        return loss_entry(kernel, 2, size), 0
    rows = min(SOURCE_ELEMENTS // size, INT64_SOURCE)
    entry = loss_entry(kernel, size, rows)
    parsed = parse_skeleton(entry.skeleton_bytes())
    if not row_checkable(parsed, output):  # (wider than the rules accept: no reads to weigh)
        return entry, 0
    depth = tc.depth_of(tc.chunk_count(1, [SOURCE_ELEMENTS]))
    best, best_words = 0, -1
    for row in range(min(rows, RUN_ELEMENTS)):
        element = row if kernel == "cross_entropy" else row * size + size - 1
        words = _proof_words([(k, first, count) for k, first, count, _ in row_strided_reads(parsed, output, element)], depth)
        if words > best_words:
            best, best_words = element, words
    return entry, best


def _loss_values(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n values of input k drawn as a trained model's: logits, targets in 0 … width − 1, ids all 0 (every
    position adds: the dearest dW[0, d]), dy small; of the entry's own outputs (k >= SELF_READ) nll near
    ln 3 and running values (a sum's size does not change the fold's cost much)."""
    if k >= 1_000:  # protocol.referee_kit.SELF_READ: nll, or the running values
        return (np.log(3.0) + 0.3 * rng.standard_normal(n)).astype(np.float32)
    if kernel == "causal_lm_backward" and k == 2:  # the count of counted rows
        return rng.integers(1, 2**20, n).astype(np.float32)
    if kernel == "embedding_backward":
        return np.zeros(n, dtype=np.int64) if k == 0 else (0.02 * rng.standard_normal(n)).astype(np.float32)
    return rng.integers(0, width, n).astype(np.int64) if k == 1 else (2 * rng.standard_normal(n)).astype(np.float32)


def _chunk_bytes(values: np.ndarray) -> list[bytes]:
    """32-byte chunks of values, big-endian (8 binary32 or 4 int64 a chunk)."""
    data = values.astype(">i8" if values.dtype == np.int64 else ">f4").tobytes()
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def _column_words(levels: list[dict[int, bytes]], positions: list[int], chunks: dict[int, bytes]) -> list[bytes]:
    """A column proof (RefereeGame's walk: the distinct chunks ascending, then the sibling of each known
    node whose sibling is not known, level by level) of the chunks at `positions` of a sparse tree."""
    words = [chunks[p] for p in positions]
    for level in levels[:-1]:
        known = set(positions)
        words += [level[p ^ 1] for p in positions if p ^ 1 not in known]
        positions = sorted({p // 2 for p in positions})
    return words


def largest_loss_proof(w3: Any, host: Any, kernel: str, size: int, output: int, game_id: int = 79, seed: int = 0,
                       width: int = 1, scale: float | dict[int, float] = 1.0) -> int:  # fmt: skip
    """Play the dearest element of a loss kernel's `output` (`dearest_loss_element`) like
    `largest_row_proof`: every input an output of an earlier entry under a record of 2**24 slots, a prefix
    of a source as large as a kit holds (2**31 binary32, 2**30 int64); the mean reads nll, the entry's
    own output, under the output roots its revealed entry leaf binds; `scale` as `loss_proof`'s. The gas used;
    raises when the rules do not accept it or the game is not decided."""
    entry, element = dearest_loss_element(kernel, size, output, width)
    return loss_proof(w3, host, entry, output, element, game_id, np.random.default_rng((seed, size, output, width)),
                      scale=scale)


# embedding_backward's dearest whole dW element with built values (an attacker review, 2026-12-07): dW's row
# v = 0x01010101 (four non-zero bytes in each id's calldata word: a zero byte costs 4 gas, a non-zero one 16)
EMBEDDING_ROW = 0x01010101
# the int64 every unread id of the runs holds (the source's tail past the P read: no zero byte)
EMBEDDING_UNREAD_ID = int(np.uint64(0xFEFEFEFEFEFEFEFE).view(np.int64))


def cancelling_embedding(positions: int, width: int, d: int, seed: int = 0) -> tuple[record.Entry, int, dict, dict]:
    """embedding_backward over `positions` ids and dy [positions, width], V = 2**31 // width (dW as large as a kit
    holds), the element dW[EMBEDDING_ROW, d]: every id read EMBEDDING_ROW (so every position adds), every other id
    the runs carry EMBEDDING_UNREAD_ID, and dy's column d built so that every add onto the running sum is an exact
    cancellation (each term about -2 times the sum). (entry, element, design, unread) for `loss_proof`."""
    rng = np.random.default_rng((seed, positions, width))
    column, total = np.zeros(positions, np.float32), np.float32(0)
    for i in range(positions):
        column[i] = np.float32(cancelling_target(total, 1.5, rng))
        total = np.float32(total + column[i])
    entry = loss_entry("embedding_backward", width, positions, vocab=2**31 // width)
    design = {0: np.full(positions, EMBEDDING_ROW, np.int64), 1: column}
    return entry, EMBEDDING_ROW * width + d, design, {0: np.int64(EMBEDDING_UNREAD_ID)}


def largest_loss_piece_proof(w3: Any, host: Any, kernel: str, output: int, width: int = 1, game_id: int = 79,
                             seed: int = 0, piece: int | None = None) -> int:  # fmt: skip
    """Play a piece of a loss fold in pieces (`dearest_loss_piece`) like `largest_loss_proof`: its inputs
    prefixes of the largest sources under the deepest record path, the running value before it and the
    nll rows it reads runs of the entry's own outputs (as large as the shapes say) under the roots its
    revealed entry leaf binds. The gas used."""
    entry, element = dearest_loss_piece(kernel, output, width, piece)
    return loss_proof(w3, host, entry, output, element, game_id, np.random.default_rng((seed, output, width)))


def loss_proof(w3: Any, host: Any, entry: record.Entry, output: int, element: int, game_id: int,
               rng: np.random.Generator, hints: tuple[int, ...] = (), scale: float | dict[int, float] = 1.0,
               design: dict[int, np.ndarray] | None = None, unread: dict[int, Any] | None = None) -> int:  # fmt: skip
    """One loss element's prove_element, written into PROOF by storage (`largest_loss_proof`); `hints` a
    row-pieced nll's target (`nll_hints`: every target read is then that class); `scale` multiplies the inputs'
    binary32 values (about 1e-38: near the smallest normal, where a fold's adds cost the most); `design` gives
    input k's values on the elements the plan reads, in the plan's order (`cancelling_embedding`), and `unread`
    the value input k holds at every other element its proofs carry. The gas used; raises when the rules do
    not accept it or the game is not decided."""
    from protocol.referee_kit import SELF_READ, column_read, strided_reads

    kernel = entry.kernel
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    rules = rules_of(parsed, output)
    if rules is None:
        raise ValueError(f"{kernel} output {output} is not checkable")
    size = int(parsed.inputs[0].shape[-1]) if kernel != "embedding_backward" else 1
    reads = strided_reads(parsed, output, element, hints)  # RowRules' and DataRules' columns
    if reads is None:  # (RowPieceRules: runs only)
        reads = [(k, first, count, 1) for k, first, count in game_reads(parsed, output, element, hints)]
    # (the causal-LM loss's values are drawn as the cross-entropies')
    values_of = _loss_values if kernel in LOSS_KERNELS or kernel in row_pieces.CAUSAL else _piece_values
    values_of = _scaled(values_of, scale)
    if hints:
        values_of = _hinted_targets(values_of, hints[0])
    own = [keccak(b"own output %d" % i) for i in range(len(entry.out_shapes))]  # made up where not read
    proofs: list[tuple] = []
    columns: list[bytes] = []
    placed: list[tuple[int, Any, Any]] = []  # (input, run start and level or None for a column, words)
    chunks: dict[int, dict[int, bytes]] = {}
    for k, first, count, stride in reads:
        code = parsed.outputs[k - SELF_READ][0] if k >= SELF_READ else parsed.inputs[k].dtype
        per = 32 // (8 if code == 2 else 4)
        positions = sorted({(first + i * stride) // per for i in range(count)})
        if k >= SELF_READ or not column_read(parsed, count, stride):  # as the honest kit proves it
            a, b = positions[0], positions[-1]
            level = 0
            while a >> level != b >> level:
                level += 1
            positions = list(range((a >> level) << level, ((a >> level) << level) + (1 << level)))
            placed.append((k, ((a >> level) << level, level), None))
        else:
            placed.append((k, None, None))
        if k >= SELF_READ and code == 2:  # an int64 output of the entry's own (max_pool's running place)
            data = _chunk_bytes(rng.integers(0, size * size, per * len(positions)).astype(np.int64))
        else:
            values = values_of(kernel, k, per * len(positions), size, rng)
            if unread and k in unread:
                values = np.full_like(values, unread[k])
            data = _chunk_bytes(values)
        chunks.setdefault(k, {}).update(dict(zip(positions, data, strict=True)))
    for k, values in (design or {}).items():  # placed last: a later run's chunks may cover an earlier run's
        elements = [first + i * stride for kk, first, count, stride in reads if kk == k for i in range(count)]
        wide = parsed.inputs[k].dtype == 2  # int64: 4 a chunk, 8 bytes each; binary32: 8 of 4
        nbytes = 8 if wide else 4
        for e, value in zip(elements, values, strict=True):
            p, at = e // (32 // nbytes), e % (32 // nbytes) * nbytes
            word = np.array([value], np.int64 if wide else np.float32).astype(">i8" if wide else ">f4").tobytes()
            chunks[k][p] = chunks[k][p][:at] + word + chunks[k][p][at + nbytes :]
    # the entry's own outputs read (nll, the running values): runs under sparse trees of their whole shapes
    dims = {k: list(parsed.outputs[k - SELF_READ][1]) if k >= SELF_READ else list(SOURCE_DIMS) if parsed.inputs[k].dtype == 1
            else list(INT64_SOURCE_DIMS) for k in chunks}  # fmt: skip
    codes = {k: parsed.outputs[k - SELF_READ][0] if k >= SELF_READ else parsed.inputs[k].dtype for k in chunks}
    depth = {k: tc.depth_of(tc.chunk_count(codes[k], dims[k])) for k in chunks}
    trees = {k: _sparse_tree({p: tc.chunk_leaf(c) for p, c in chunks[k].items()}, depth[k], tc.TENSOR_NODE, b"input %d" % k)
             for k in chunks}  # fmt: skip
    for k in (k for k in chunks if k >= SELF_READ):
        own[k - SELF_READ] = tc.root_of_data(codes[k], dims[k], trees[k][-1][0])
    chunks_in = [k for k in chunks if k < SELF_READ]
    roots = {k: [tc.root_of_data(codes[k], dims[k], trees[k][-1][0])]
             + [keccak(b"root %d %d" % (k, i)) for i in range(1, MAX_OUTPUTS)] for k in chunks_in}  # fmt: skip
    keys = {k: keccak(b"skeleton leaf %d" % k) for k in chunks_in}
    at = {k: parsed.inputs[k].a for k in chunks_in}
    leaves = {at[k]: keccak(b"\x17" + at[k].to_bytes(4, "big") + keys[k] + b"".join(roots[k])) for k in chunks_in}
    record_tree = _sparse_tree(leaves or {0: keccak(b"no input")}, RECORD_DEPTH, b"\x18", b"record")
    for (k, first, count, stride), (_, run_at, extra) in zip(reads, placed, strict=True):
        if k >= SELF_READ:
            start, level = run_at
            run = [chunks[k][p] for p in range(start, start + (1 << level))]
            proofs.append((tc.ZERO, own, [], dims[k], start, run, _path(trees[k], start >> level, level)))
        elif run_at is None:  # a column proof: its words, the root they build is the tensor's
            columns += _column_words(trees[k], sorted({(first + i * stride) // 8 for i in range(count)}), chunks[k])
            proofs.append((keys[k], roots[k], _path(record_tree, at[k], 0), dims[k], 0, [], []))
        else:
            start, level = run_at
            run = [chunks[k][p] for p in range(start, start + (1 << level))]
            proofs.append((keys[k], roots[k], _path(record_tree, at[k], 0), dims[k], start, run,
                           _path(trees[k], start >> level, level)))  # fmt: skip
    skeleton_leaf = keccak(b"\x16" + skeleton)
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": 2**RECORD_DEPTH - 1, "entry": 100,
                                 "previous_prefix": record_tree[-1][0], "skeleton_leaf": skeleton_leaf,
                                 "entry_leaf": keccak(b"\x17" + (100).to_bytes(4, "big") + skeleton_leaf + b"".join(own)),
                                 "output": output, "output_size": int(np.prod(parsed.outputs[output][1])),
                                 "chunk_index": element // 8, "chunk": keccak(b"claimed"), "element": element % 8,
                                 "rules": rules})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, list(hints), columns).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1 or not host.functions.ruling_of(game_id).call()[0]:
        raise RuntimeError(f"the {kernel} element was not decided")
    return int(receipt.gasUsed)


def _hinted_targets(values_of: Any, target: int) -> Any:
    """`values_of` with every target (input 1 of a cross-entropy) the hinted class."""

    def values(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, target, dtype=np.int64) if k == 1 else values_of(kernel, k, n, width, rng)

    return values



# ---------------------------------------------------------------------------------------------------------
# Rows in pieces (RowPieceRules): the running statistics of a row wider than its cap, and the outputs
# ---------------------------------------------------------------------------------------------------------


def row_piece_entry(kernel: str, width: int, rows: int) -> record.Entry:
    """`row_entry` as the recorder shapes a row-pieced one: a norm backward's running values of dw and db when
    FoldRules checks them in pieces, then the statistics (`protocol.row_pieces.row_piecing`; only their shapes
    and made-up roots: the games here prove made-up values under the roots they build)."""
    import dataclasses

    from protocol import fold_rules, row_pieces

    entry = row_entry(kernel, width, rows)
    piecing = row_pieces.row_piecing(kernel, [r.shape for r in entry.inputs])
    if piecing is None:
        raise ValueError(f"{kernel} over rows of {width} is not row-pieced")
    shapes = list(entry.out_shapes)
    if kernel in row_pieces.NLL_ROWS:  # the mean's running values over more than MAX_FOLD rows (RowRules' pieces)
        loss = fold_rules.loss_piecing(parse_skeleton(entry.skeleton_bytes()))
        if loss is not None:
            shapes.append((1, ((loss.pieces - 1) * loss.size,)))
    if kernel in fold_rules.FOLD_KERNELS:
        pieced = fold_rules.piecings(parse_skeleton(entry.skeleton_bytes()))
        if pieced:
            last = pieced[-1]
            shapes.append((1, (last.offset + (last.pieces - 1) * last.size,)))
    shapes.append((1, (piecing.size,)))
    return dataclasses.replace(entry, out_shapes=tuple(shapes), out_roots=(tc.ZERO,) * len(shapes))


def dearest_row_piece(kernel: str, width: int, output: int | None = None) -> tuple[record.Entry, int, int]:
    """The row-pieced entry over as many rows of `width` as a source of SOURCE_ELEMENTS holds, and the element
    of `output` (None: the statistics, the entry's last) whose reads open the most proof words: of each
    statistic, every full piece past the first of rows starting anywhere modulo 256 (a row segment across a
    256-element boundary is two runs); of a final output, the last element of each such row. (entry, output,
    element)."""
    from protocol import row_pieces

    entry = row_piece_entry(kernel, width, SOURCE_ELEMENTS // width)
    parsed = parse_skeleton(entry.skeleton_bytes())
    piecing = row_pieces.row_piecing(kernel, [r.shape for r in entry.inputs])
    assert piecing is not None
    stats = len(entry.out_shapes) - 1
    depth = tc.depth_of(tc.chunk_count(1, [SOURCE_ELEMENTS]))
    rows = range(min(piecing.rows, RUN_ELEMENTS))
    if output is None:
        full = [c for c in range(1, piecing.pieces) if len(piecing.columns(c)) == piecing.length] or [piecing.pieces - 1]
        candidates = [piecing.index(s, r, c) for s in range(piecing.stats) for r in rows for c in full]
        output = stats
    elif (kernel in ("layer_norm", "rms_norm") and output == 2) or kernel in row_pieces.NLL_ROWS:
        candidates = list(rows)  # rstd[r], nll[r]: a value a row
    else:
        candidates = [r * width + width - 1 for r in rows]
    hints = nll_hints(kernel, output, width)
    best = max(candidates, key=lambda e: _proof_words(game_reads(parsed, output, e, hints), depth))
    return entry, output, best


def nll_hints(kernel: str, output: int, width: int) -> tuple[int, ...]:
    """prove_element's hints for a row-pieced nll element: its row's target, which the persona makes the last
    class (z[r, D − 1], the read whose run opens last in the row); none for any other element."""
    return (width - 1,) if kernel in ("cross_entropy", "causal_lm") and output == 1 else ()


def largest_row_piece_proof(w3: Any, host: Any, kernel: str, width: int, output: int | None = None,
                            game_id: int = 80, seed: int = 0) -> int:  # fmt: skip
    """Play the dearest element of a row-pieced kernel's `output` (None: its statistics) at `width`
    (`dearest_row_piece`) like `largest_loss_proof`: inputs prefixes of the largest sources under the deepest
    record path, the statistics read runs of the entry's own output under the roots its revealed entry leaf
    binds. The gas used; raises when the rules do not accept it or the game is not decided."""
    entry, output, element = dearest_row_piece(kernel, width, output)
    return loss_proof(w3, host, entry, output, element, game_id, np.random.default_rng((seed, width, output)),
                      nll_hints(kernel, output, width))


def _scaled(values_of: Any, scale: float | dict[int, float]) -> Any:
    """`values_of` with the inputs' values (not the entry's own outputs, k >= SELF_READ) times `scale`, or
    input k's times `scale[k]` (1 where it names none)."""

    def scaled(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        values = values_of(kernel, k, n, width, rng)
        factor = scale.get(k, 1.0) if isinstance(scale, dict) else scale
        if k >= 1_000 or factor == 1.0 or values.dtype != np.float32:  # (integer inputs: ids, targets, places)
            return values
        return (values * np.float32(factor)).astype(np.float32)

    return scaled


def _piece_values(kernel: str, k: int, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n values of input k of a row kernel (`_values`), or of its statistics (k >= SELF_READ): a running
    maximum, sum or dot product of a row, positive and of the row's size (a sum's size barely moves a fold's
    cost)."""
    if k >= 1_000:
        return (1.0 + rng.random(n) * min(width, 64)).astype(np.float32)
    return _values(kernel, k, n, width, rng)
