"""The dearest `prove_element` of the folds FoldRules took on for the Llama-style decoder and wide layers
(contracts/lib/fold_rules.vy): `fold_head_groups` (one column of G heads) and `linear` where HostRules
cannot plan it (two rows zipped, then the bias; over K > 256 a piece from the running value before it),
played on anvil like `personas.fold_worst_case`: a game of RefereeGame.vy written into PROOF by storage and
the defender's transaction measured.

Every column read's input is an output of an earlier entry (4, 5, 6: leaves of one four-leaf subtree at the
bottom of a record of 2**24 slots, the deepest record path; each of MAX_OUTPUTS outputs) and a prefix of a
source as large as a kit holds (2**31 binary32: the most sibling words a read can take); a running value is a
REF_SELF run of one chunk of the entry's own running values. The words are made up: the tensor roots are what they build.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eth_hash.auto import keccak

from engine.portable import record
from personas.fold_worst_case import SOURCE_DIMS, STAGE_PROOF, other_roots, prove_fold_element, set_game, synthetic_column
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import parse_skeleton

RECORD_DEPTH = 24  # a record of 2**24 slots (RefereeGame's most)
FIRST_INPUT_ENTRY = 4  # the read inputs' entries: 4, 5, 6 (and 7), one subtree of four leaves


def linear_entry(rows: int, terms: int, width: int, bias: bool = True) -> record.Entry:
    """A linear (index 100) over x [rows, terms] and W [width, terms] (and b [width]), its inputs outputs of
    entries 4, 5 (and 6), with its running values as one more output when FoldRules cuts it in pieces."""
    shapes = [(rows, terms), (width, terms), *([(width,)] if bias else [])]
    refs = tuple(record.Ref(record.OUTPUT, FIRST_INPUT_ENTRY + k, 0, 1, s) for k, s in enumerate(shapes))
    args = (("input", 0), ("input", 1), ("input", 2) if bias else None)
    outs: tuple = ((1, (rows, width)),)
    probe = record.Entry(100, "linear", args, refs, outs, (tc.ZERO,))
    pieced = fold_rules.piecings(parse_skeleton(probe.skeleton_bytes()))
    if pieced:
        outs = (*outs, (1, (pieced[-1].offset + (pieced[-1].pieces - 1) * pieced[-1].size,)))
    return record.Entry(100, "linear", args, refs, outs, (tc.ZERO,) * len(outs))


def head_group_entry(batch: int, heads: int, group: int, inner: tuple[int, ...]) -> record.Entry:
    """A fold_head_groups (index 100) of x [batch, heads, *inner], an output of entry 4, by groups of G."""
    refs = (record.Ref(record.OUTPUT, FIRST_INPUT_ENTRY, 0, 1, (batch, heads, *inner)),)
    outs = ((1, (batch, heads // group, *inner)),)
    return record.Entry(100, "fold_head_groups", (("input", 0), group), refs, outs, (tc.ZERO,))


def fold_proof(w3: Any, host: Any, entry: record.Entry, output: int, element: int, game_id: int,
               scales: tuple[float, ...] | None = None, design: dict[int, np.ndarray] | None = None) -> tuple[int, int]:  # fmt: skip
    """Play FoldRules' plan of one element of `entry` (module docstring), written into PROOF by storage:
    (gas used, column words); the values keccak words or, with `scales`, each read's normal draws times its
    scale (`ADVERSE_SCALES`), or with `design` input k's values on the elements read (`cancelling_linear`).
    Raises when the transaction fails or the game is not decided."""
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    plan = fold_rules.fold_plan(parsed, output, element)
    reads = plan.reads[1:] if plan.from_partial else plan.reads
    source_dims = list(SOURCE_DIMS)
    depth = tc.depth_of(tc.chunk_count(1, source_dims))
    columns: list[bytes] = []
    keys, roots, leaves = {}, {}, {}
    for n, (k, first, count, stride) in enumerate(reads):
        words, data_root = synthetic_column(first, count, stride, depth, b"input %d" % k, scales[n] if scales else None,
                                            (design or {}).get(k))  # fmt: skip
        columns += words
        keys[k], roots[k] = keccak(b"skeleton leaf %d" % k), tc.root_of_data(1, source_dims, data_root)
        at = entry.inputs[k].a
        leaves[at] = keccak(b"\x17" + at.to_bytes(4, "big") + keys[k] + roots[k] + b"".join(other_roots(k)))
    bottom = [leaves.get(FIRST_INPUT_ENTRY + i, keccak(b"entry %d" % (FIRST_INPUT_ENTRY + i))) for i in range(4)]
    pairs = [keccak(b"\x18" + bottom[0] + bottom[1]), keccak(b"\x18" + bottom[2] + bottom[3])]
    upper = [keccak(b"record sibling %d" % level) for level in range(RECORD_DEPTH - 2)]
    prefix = tc.root_from_path(keccak(b"\x18" + pairs[0] + pairs[1]), 1, upper, b"\x18")
    running_roots: list[bytes] = [keccak(b"output %d" % o) for o in range(len(entry.out_shapes))]
    proofs = []
    if plan.from_partial:
        self_k, self_first, _, _ = plan.reads[0]
        base = self_k - fold_rules.SELF_READ
        running_dims = list(entry.out_shapes[base][1])
        words, running_data = synthetic_column(self_first, 1, 1, tc.depth_of(tc.chunk_count(1, running_dims)), b"running")
        running_roots[base] = tc.root_of_data(1, running_dims, running_data)
        proofs.append((tc.ZERO, running_roots, [], running_dims, self_first // 8, [words[0]], words[1:]))
    for k, *_ in reads:
        i = entry.inputs[k].a - FIRST_INPUT_ENTRY
        path = [bottom[i ^ 1], pairs[1 - i // 2], *upper]
        proofs.append((keys[k], [roots[k], *other_roots(k)], path, source_dims, 0, [], []))
    return prove_fold_element(w3, host, game_id, entry, output, element, skeleton, running_roots, prefix,
                              2**RECORD_DEPTH - 1, proofs, columns)


# The cases swept (docs/referee.md, "Decoder rules"): linears of K from 12 to 1,000 with and without their bias
# (one piece up to MAX_LINEAR_WHOLE_LOAD, pieces past it), over 9 rows so the rows start at every offset in a chunk,
# and x [2, 110] with W [1, 110], the whole linear of most terms FoldRules takes (x [2, 114] with W [1, 114] before
# MAX_LINEAR_WHOLE_LOAD: an attacker review, 2026-12-07);
# head groups of 128 to 256 heads whose column is 1 to 7 elements apart (a chunk, or nearly, a value: the
# dearest per unit of load, measured up to 908,000 gas at the cap).
LINEAR_CASES = [(9, terms, 3, bias) for terms in (12, 90, 100, 110, 120, 129, 150, 255, 257, 300, 383, 520, 1_000)
                for bias in (True, False)] + [(2, 110, 1, True)]  # fmt: skip
HEAD_GROUP_CASES = [(1, heads, heads, (inner,)) for heads in (128, 144, 160, 176, 192, 224, 256) for inner in range(1, 8)]
# The test's sample of the sweep (the bench, bench/game_gas.py, plays all of it): one piece at both ends, pieces
# (255: the dearest piece; 300: five pieces) and the dearest cases the whole sweep found (docs/referee.md).
SAMPLED_LINEAR_CASES = [(9, terms, 3, bias) for terms in (12, 110, 255, 300) for bias in (True, False)] + [(2, 110, 1, True)]
SAMPLED_HEAD_GROUP_CASES = [(1, heads, heads, (inner,)) for heads, inner in ((128, 1), (192, 3), (224, 5), (256, 7))]
# Adversarial values (docs/referee.md "Adversarial values"): x's read times 1e-40 (subnormal), W's and the bias's
# near 64, `fold_worst_case.ADVERSE_FOLD_SCALES[1]` with the bias: the dearest scaling a search over the sweep found.
ADVERSE_SCALES = (1e-40, 64.0, 64.0)


def cancelling_linear(entry: record.Entry, element: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Values built for a whole linear's element (an attacker review, 2026-12-07; no scaling finds them): x
    normal and W a subnormal near 2^-126 so every product x·W is `_mul`'s dearest (a normal times a subnormal,
    normal result), and every add onto the running sum, the bias's too, an exact cancellation (each term about
    -2 times the sum, near the smallest normal). {input: its values on the elements read} for `fold_proof`."""
    plan = fold_rules.fold_plan(parse_skeleton(entry.skeleton_bytes()), 0, element)
    if plan.from_partial:
        raise ValueError("a piece: cancelling_linear builds whole linears")
    from personas.row_worst_case import cancelling_target, largest_subnormal

    rng = np.random.default_rng((seed, element))
    terms, first = plan.reads[0][2], 1.1 * 2.0**-125
    x, w, total = np.zeros(terms, np.float32), np.zeros(terms, np.float32), np.float32(0)
    for i in range(terms):
        w[i] = largest_subnormal(rng)
        x[i] = np.float32(cancelling_target(total, first, rng) / float(w[i]))
        total = np.float32(total + np.float32(x[i] * w[i]))
    design = {plan.reads[0][0]: x, plan.reads[1][0]: w}
    if len(plan.reads) > 2:  # the bias
        design[plan.reads[2][0]] = np.array([cancelling_target(total, first, rng)], np.float32)
    return design


def _elements(size: int) -> list[int]:
    """The first eight elements (every offset in a chunk), the middle and the last."""
    return sorted({*range(8), size // 2, size - 1} & set(range(size)))


def _targets(entry: record.Entry) -> list[tuple[int, int]]:
    """(output, element) worth measuring: output elements at every offset in a chunk, and in pieces the
    running values past the first piece (each read from the one before)."""
    size = int(np.prod(entry.out_shapes[0][1], dtype=object))
    found = [(0, e) for e in _elements(size)]
    for piecing in fold_rules.piecings(parse_skeleton(entry.skeleton_bytes())):
        found += [(len(entry.out_shapes) - 1, piecing.offset + c * piecing.size + e)
                  for c in range(1, piecing.pieces - 1) for e in (0, 3, 7) if e < piecing.size]  # fmt: skip
    return found


def sweep(w3: Any, host: Any, linear_cases: list[tuple] | None = None, head_group_cases: list[tuple] | None = None,
          first_game_id: int = 300, scales: tuple[float, ...] | None = None,
          widest: bool = False) -> list[tuple[int, str, tuple, int, int]]:  # fmt: skip
    """Every case given (all of LINEAR_CASES and HEAD_GROUP_CASES by default) that FoldRules checks, at each
    of its targets: (gas, kernel, case, output, element), dearest first. `scales` as `fold_proof`'s; `widest`
    plays each entry with the longest skeleton the rules take (`personas.widest_skeleton.widest`)."""
    from personas.widest_skeleton import widest as widen

    entries = [(("linear", case), linear_entry(*case)) for case in (LINEAR_CASES if linear_cases is None else linear_cases)]
    entries += [(("fold_head_groups", case), head_group_entry(*case))
                for case in (HEAD_GROUP_CASES if head_group_cases is None else head_group_cases)]  # fmt: skip
    found, game_id = [], first_game_id
    for (kernel, case), entry in entries:
        if not fold_rules.fold_checkable(parse_skeleton(entry.skeleton_bytes()), 0):
            continue
        entry = widen(entry, 0) if widest else entry
        for output, element in _targets(entry):
            game_id += 1
            gas, _ = fold_proof(w3, host, entry, output, element, game_id, scales)
            found.append((gas, kernel, case, output, element))
    return sorted(found, reverse=True)


# ------------------------------------------------------------------ rotary: four single-element runs

ROTARY_STEPS, ROTARY_WIDTH = 2**15, 2**16  # tables [T, h] of 2**31 binary32: the deepest runs a kit holds


def _sparse_paths(positions: list[int], depth: int, seed: bytes) -> tuple[dict[int, bytes], dict[int, list[bytes]], bytes]:
    """Made-up chunks at `positions` of a tree of `depth` levels, every other node made up: (the chunks,
    each one's path of siblings bottom-up, the data root they build)."""
    chunks = {p: keccak(seed + b" chunk %d" % p) for p in positions}
    level_nodes = {p: tc.chunk_leaf(c) for p, c in chunks.items()}
    paths: dict[int, list[bytes]] = {p: [] for p in positions}
    at = {p: p for p in positions}
    for level in range(depth):
        for p in positions:
            sibling = at[p] ^ 1
            paths[p].append(level_nodes.get(sibling, keccak(seed + b" sibling %d %d" % (level, sibling))))
        parents: dict[int, bytes] = {}
        for node, value in level_nodes.items():
            sibling = level_nodes.get(node ^ 1, keccak(seed + b" sibling %d %d" % (level, node ^ 1)))
            left, right = (value, sibling) if node % 2 == 0 else (sibling, value)
            parents[node // 2] = keccak(tc.TENSOR_NODE + left + right)
        level_nodes = parents
        at = {p: a // 2 for p, a in at.items()}
    (root,) = level_nodes.values()
    return chunks, paths, root


def largest_rotary_proof(w3: Any, host: Any, game_id: int = 79, backward: bool = False) -> int:
    """Play the dearest rotary (or rotary_backward) element: x [1, 1, T, h] an output of entry 4 under a record
    of 2**24 slots, the tables [T, h] constants of 2**31 binary32, the element in the last row's second
    half so x and its partner are two runs of their own, each run one chunk under 28 path words; written
    into PROOF by storage. Returns the gas used."""
    from protocol import data_rules
    from protocol.referee_kit import DATA_RULES

    dims = (1, 1, ROTARY_STEPS, ROTARY_WIDTH)
    element = ROTARY_STEPS * ROTARY_WIDTH - 1
    depth = tc.depth_of(tc.chunk_count(1, list(dims)))
    kernel = "rotary_backward" if backward else "rotary"
    probe_refs = (record.Ref(record.OUTPUT, FIRST_INPUT_ENTRY, 0, 1, dims),
                  *(record.Ref(record.CONSTANT, 0, 0, 1, dims[2:], keccak(b"table %d" % k)) for k in (1, 2)))  # fmt: skip
    args = (("input", 0), ("input", 1), ("input", 2))
    probe = record.Entry(100, kernel, args, probe_refs, ((1, dims),), (tc.ZERO,))
    reads = data_rules.data_reads(parse_skeleton(probe.skeleton_bytes()), 0, element, ())
    x_positions = sorted({first // 8 for k, first, _ in reads if k == 0})
    x_chunks, x_paths, x_data = _sparse_paths(x_positions, depth, b"x")
    x_root = tc.root_of_data(1, list(dims), x_data)
    tables = {}
    for k in (1, 2):
        (position,) = {first // 8 for kk, first, _ in reads if kk == k}
        chunks, paths, data = _sparse_paths([position], depth, b"table %d" % k)
        tables[k] = (position, chunks[position], paths[position], tc.root_of_data(1, list(dims[2:]), data))
    refs = (probe_refs[0], *(record.Ref(record.CONSTANT, 0, 0, 1, dims[2:], tables[k][3]) for k in (1, 2)))
    skeleton = record.Entry(100, kernel, args, refs, ((1, dims),), (tc.ZERO,)).skeleton_bytes()
    key = keccak(b"skeleton leaf x")
    leaf = keccak(b"\x17" + FIRST_INPUT_ENTRY.to_bytes(4, "big") + key + x_root)
    upper = [keccak(b"record sibling %d" % level) for level in range(RECORD_DEPTH - 1)]
    prefix = tc.root_from_path(keccak(b"\x18" + leaf + keccak(b"entry 5")), FIRST_INPUT_ENTRY // 2, upper, b"\x18")
    path = [keccak(b"entry 5"), *upper]
    proofs = []
    for k, first, _ in reads:
        if k == 0:
            p = first // 8
            proofs.append((key, [x_root], path, list(dims), p, [x_chunks[p]], x_paths[p]))
        else:
            position, chunk, run_path, root = tables[k]
            proofs.append((tc.ZERO, [root], [], list(dims[2:]), position, [chunk], run_path))
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": 2**RECORD_DEPTH - 1, "entry": 100,
                                 "previous_prefix": prefix, "skeleton_leaf": keccak(b"\x16" + skeleton), "output": 0,
                                 "output_size": element + 1, "chunk_index": element // 8, "chunk": keccak(b"claimed"),
                                 "element": element % 8, "rules": DATA_RULES})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, [], []).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1 or not host.functions.ruling_of(game_id).call()[0]:
        raise RuntimeError(f"the largest {kernel} element was not decided")
    return int(receipt.gasUsed)
