"""The dearest `prove_element` FoldRules (contracts/lib/fold_rules.vy) lets an honest defender make, played
on anvil for tests and bench: a game of RefereeGame.vy written into PROOF by storage (`anvil_setStorageAt`:
the descent to it is gas the other benches measure) and the defender's transaction measured.

The element: one fold of 123 terms whose two reads are contiguous columns of 123 binary32 (246 values
and 46 column words: a load of 292 and a weight of 3 · 292 + 246 = 1,122, MAX_WHOLE_WEIGHT: the contiguous mix,
where values outnumber words), as a `matmul` of a [1, 123] and b [123, 1] or a `layer_norm_backward` dw over 123 rows of
width 1 (its skeleton is larger: four inputs); both inputs outputs of earlier entries under a record of
2**24 slots (the deepest record path) and each of an entry of MAX_OUTPUTS outputs, each read a prefix of a source as large as a kit holds (2**31
binary32: 23 sibling words more a read). The tensor roots are what the words build; the values are keccak words
or, with `scales`, normal draws scaled into the soft-float's slower paths (`ADVERSE_FOLD_SCALES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eth_hash.auto import keccak

from engine.portable import record
from protocol import fold_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import FOLD_RULES, MAX_TENSOR_FILE_BYTES, parse_skeleton
from worker.referee_player import GAME_FIELDS

KERNELS = ("matmul", "layer_norm_backward")
# Values for the two reads of the dearest fold (docs/referee.md "Adversarial values"): ordinary ones, then
# subnormal times large values (the soft-float's dearest product, the dearest measured), products of about
# 2^-128 (subnormal, summed) and values near the smallest normal.
ADVERSE_FOLD_SCALES = ((1.0, 1.0), (1e-40, 64.0), (2.0**-64, 2.0**-64), (1e-38, 1.0))
GAMES_SLOT = 2  # RefereeGame's storage: host, game_count, games (vyper -f layout)
STAGE_PROOF = 8
TERMS = 123
MAX_OUTPUTS = 5  # roots an entry leaf holds (commitments.vy MAX_OUTPUTS)
SOURCE_ELEMENTS = 2**31  # the largest source an honest defender holds (a kit's tensor file is at most 8 GiB)
# That source's committed shape: MAX_NDIM axes, as an honest record may shape the entry output it is. Every proof
# carries and hashes its source's dims: about 4,600 gas a proof more than one axis (an attacker review, 2026-12-07).
SOURCE_DIMS = (2, 2, 2, 2, 2, 2, 2**12, 2**13)
INT64_SOURCE_DIMS = (2, 2, 2, 2, 2, 2, 2**12, 2**12)  # an int64 source of the same bytes (2**30 elements)


def synthetic_column(first: int, count: int, stride: int, depth: int, seed: bytes, scale: float | None = None,
                     values: np.ndarray | None = None) -> tuple[list[bytes], bytes]:  # fmt: skip
    """A column proof of made-up words for a read at a tree of `depth` (RefereeGame's walk: the distinct
    chunks, then a sibling for each node whose sibling is not known, level by level) and the data root
    it builds. The chunks are keccak words, or with `scale` normal draws times `scale` (adversarial values,
    `ADVERSE_FOLD_SCALES`), or with `values` those on the elements read (in order) among normal draws."""
    positions = sorted({(first + i * stride) // 8 for i in range(count)})
    if values is not None:
        rng = np.random.default_rng(int.from_bytes(keccak(seed)[:8], "big"))
        data = {p: (rng.standard_normal(8) * 0.5).astype(np.float32) for p in positions}
        for i, value in enumerate(np.asarray(values, np.float32)[:count]):
            data[(first + i * stride) // 8][(first + i * stride) % 8] = value
        chunks = [data[p].astype(">f4").tobytes() for p in positions]
    elif scale is None:
        chunks = [keccak(seed + b" chunk %d" % p) for p in positions]
    else:
        rng = np.random.default_rng(int.from_bytes(keccak(seed)[:8], "big"))
        chunks = [(rng.standard_normal(8) * scale).astype(">f4").tobytes() for _ in positions]
    return column_of(positions, chunks, depth, seed)


def column_of(positions: list[int], chunks: list[bytes], depth: int, seed: bytes) -> tuple[list[bytes], bytes]:
    """The column proof of `chunks` at `positions` (sorted) of a tree of `depth`, the siblings made up from
    `seed` (`synthetic_column`), and the data root it builds."""
    siblings = {slot: keccak(seed + b" sibling %d %d" % slot) for slot in sibling_slots(positions, depth)}
    nodes = {p: tc.chunk_leaf(c) for p, c in zip(positions, chunks, strict=True)}
    for level in range(depth):
        parents: dict[int, bytes] = {}
        for p in sorted(nodes):
            if p // 2 in parents:
                continue
            sibling = nodes[p ^ 1] if p ^ 1 in nodes else siblings[(level, p)]
            left, right = (nodes[p], sibling) if p % 2 == 0 else (sibling, nodes[p])
            parents[p // 2] = keccak(tc.TENSOR_NODE + left + right)
        nodes = parents
    assert len(nodes) == 1
    return chunks + list(siblings.values()), nodes[0]


def sibling_slots(positions: list[int], depth: int) -> list[tuple[int, int]]:
    """(level, position) of every node whose sibling a column proof over the chunks at `positions` of a tree of
    `depth` carries, in the proof's order (level by level, left to right): those whose sibling it does not
    build from the chunks below."""
    nodes, slots = sorted(set(positions)), []
    for level in range(depth):
        known, parents = set(nodes), []
        for p in nodes:
            if parents and parents[-1] == p // 2:
                continue
            if p ^ 1 not in known:
                slots.append((level, p))
            parents.append(p // 2)
        nodes = parents
    return slots


def other_roots(k: int) -> list[bytes]:
    """The made-up output roots after the one read of input `k`'s producing entry: every input comes from an
    entry of MAX_OUTPUTS outputs (a row-pieced norm backward has five), whose leaf costs the proof most."""
    return [keccak(b"input %d other root %d" % (k, i)) for i in range(1, MAX_OUTPUTS)]


def set_game(w3: Any, host: Any, game_id: int, fields: dict[str, Any]) -> None:
    """Write a game's fields into RefereeGame's storage (games[game_id] at keccak256(slot ‖ key), then
    one slot a field in declaration order)."""
    base = int.from_bytes(keccak(GAMES_SLOT.to_bytes(32, "big") + game_id.to_bytes(32, "big")), "big")
    for name, value in fields.items():
        word = value if isinstance(value, bytes) else (int(value, 16) if isinstance(value, str) else int(value)).to_bytes(32, "big")
        w3.provider.make_request("anvil_setStorageAt", [host.address, hex(base + GAME_FIELDS.index(name)), "0x" + word.hex()])


def largest_fold_proof(w3: Any, host: Any, kernel: str, game_id: int = 77,
                       scales: tuple[float, ...] | None = None) -> tuple[int, int]:  # fmt: skip
    """Play the dearest fold element of `kernel` (module docstring) at `game_id`, the values keccak words or,
    with `scales`, each read's normal draws times its scale: (gas used, column words). Raises when the
    transaction fails or the game is not decided."""
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
    if fold_rules.whole_weight(parsed, reads) != fold_rules.MAX_WHOLE_WEIGHT or 4 * SOURCE_ELEMENTS > MAX_TENSOR_FILE_BYTES:
        raise AssertionError("the worst case is no longer the largest load accepted")
    source_dims = list(SOURCE_DIMS)
    depth = tc.depth_of(tc.chunk_count(1, source_dims))
    columns, leaves, keys, roots = [], [], [], []
    for n, (k, first, count, stride) in enumerate(reads):
        words, data_root = synthetic_column(first, count, stride, depth, b"input %d" % k, scales[n] if scales else None)
        columns += words
        key, root = keccak(b"skeleton leaf %d" % k), tc.root_of_data(1, source_dims, data_root)
        keys.append(key)
        roots.append(root)
        leaves.append(keccak(b"\x17" + at[k].to_bytes(4, "big") + key + root + b"".join(other_roots(k))))
    # entries 4 and 5 are siblings at the bottom of a record of 2**24 slots, other siblings above
    upper = [keccak(b"record sibling %d" % level) for level in range(23)]
    pair = (leaves[0], leaves[1]) if at[reads[0][0]] == 4 else (leaves[1], leaves[0])
    prefix = tc.root_from_path(keccak(b"\x18" + pair[0] + pair[1]), 2, upper, b"\x18")
    proofs = [(keys[i], [roots[i], *other_roots(reads[i][0])], [leaves[1 - i], *upper], source_dims, 0, [], [])
              for i in range(2)]  # fmt: skip
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


# ------------------------------------------------------------------ a fold in pieces: its dearest piece

# The persona's dearest piece (docs/gas.md; the top of `calibration_geometries` until FoldRules weighed a piece
# length once, now 944,034 against the sweep's 948,502; every geometry at its longest column proof,
# `dearest_start`): a linear_backward over x and dy [64, 4,095] and W [4,095, 4,095] at rank 8, dx[r, j] folding
# dy's row r with W's column j (4,095 apart: every value its own chunk) in pieces of 8 (MAX_PIECE_WEIGHT), the
# running value at PIECE_ELEMENT of the entry's running values.
PIECE_ROWS, PIECE_WIDTH = 64, 4_095
PIECE_FOLDED, PIECE_ELEMENT = 0, 2_096_639
LEAD = (1,) * 6  # leading axes of one: x and dy at rank 8, the longest skeleton the rules take
# (kernel, input shapes, output shapes, the folded output) of `piece_sweep`: GPT-like and wide dW, dx and db, norm
# columns and matmuls, and the pieces an attacker review found over 1,000,000 gas under the old load cap (280)
PIECE_SHAPES = [
    *[("linear_backward", ((r, k), (n, k), (r, n)), ((r, k), (n, k), (n,)), o)
      for r, k, n in ((2**10, 2**10, 2**10), (300, 2**12, 2**12), (2**12, 2**9, 2**9), (2**16, 3, 3), (4096, 64, 64),
                      (257, 1, 1), (2**14, 2**8, 2**8), (512, 16, 48), (300, 2, 2), (2**21, 2, 2), (16_448, 255, 255),
                      (63, 257, 1024), (54, 300, 255), (64, 4095, 4095), (81, 200, 200))
      for o in (0, 1, 2)],
    # (norm rows of at most 64 that divide 256: another row's dx is decided in pieces too, and the row statistics
    # are one more output, "Rows in pieces")
    *[("layer_norm_backward", ((r, w), (r,), (w,), (r, w)), ((r, w), (w,), (w,)), o)
      for r, w in ((2**23, 2), (2**20, 8), (2**24, 64), (2**22, 4), (2**19, 16)) for o in (1, 2)],
    *[("matmul", ((m, t), (t, n)), ((m, n),), 0) for m, t, n in ((2, 2**20, 2), (2**10, 2**10, 2**10), (1, 2**22, 2), (2, 300, 3))],
]  # fmt: skip
_READS = {("linear_backward", 0): (2, 1), ("linear_backward", 1): (2, 0), ("linear_backward", 2): (2,),
          ("layer_norm_backward", 1): (3, 0), ("layer_norm_backward", 2): (3,), ("matmul", 0): (0, 1)}  # fmt: skip


def pieced_entry(kernel: str, shapes: tuple, outputs: tuple, folded: int) -> record.Entry:
    """A fold entry (index 100) with its running values as one more output when FoldRules cuts it in
    pieces; the inputs `folded`'s pieces read come from entries 4 and 5 (siblings in the record), the
    others from 6 on."""
    reads, spare = _READS[(kernel, folded)], iter(range(6, 10))
    at = [4 + reads.index(k) if k in reads else next(spare) for k in range(len(shapes))]
    refs = tuple(record.Ref(record.OUTPUT, a, 0, 1, s) for a, s in zip(at, shapes, strict=True))
    args = tuple(("input", k) for k in range(len(shapes)))
    outs = tuple((1, s) for s in outputs)
    pieced = fold_rules.piecings(parse_skeleton(record.Entry(100, kernel, args, refs, outs, (tc.ZERO,) * len(outs)).skeleton_bytes()))
    if pieced:
        outs = (*outs, (1, (pieced[-1].offset + (pieced[-1].pieces - 1) * pieced[-1].size,)))
    return record.Entry(100, kernel, args, refs, outs, (tc.ZERO,) * len(outs))


def linear_backward_entry(rows: int, k: int, n: int, folded: int, lead: tuple[int, ...] = LEAD) -> record.Entry:
    """`pieced_entry` of a linear_backward over x [rows, k], W [n, k] and dy [rows, n], x and dy (and db) with
    `lead`'s leading axes of one."""
    ones = (1,) * (len(lead) + 1)
    return pieced_entry("linear_backward", ((*lead, rows, k), (n, k), (*lead, rows, n)),
                        ((*lead, rows, k), (n, k), (*ones, n)), folded)  # fmt: skip


def piece_entry() -> tuple[record.Entry, int, int]:
    """The entry of the dearest piece measured (`PIECE_ROWS`): (the entry, its running values' output, the
    running value disputed, which reads the one before it by REF_SELF)."""
    return linear_backward_entry(PIECE_ROWS, PIECE_WIDTH, PIECE_WIDTH, PIECE_FOLDED), 3, PIECE_ELEMENT


def proof_words(first: int, count: int, stride: int, depth: int) -> int:
    """The words of `synthetic_column`'s proof (the distinct chunks and the siblings not known), counted."""
    chunks = sorted({(first + i * stride) // 8 for i in range(count)})
    return len(chunks) + len(sibling_slots(chunks, depth))


def dearest_start(entry: record.Entry, folded: int, scan: int = 40) -> tuple[int, int, int]:
    """(words, output, element): of the pieces of `entry`'s `folded` output past the first (the first `scan` and
    the last eight, at four elements each), the one whose column proofs in a source of SOURCE_DIMS take the most
    words: a running value, or a final element for the last piece; for an output still whole in a pieced entry,
    the element of the most words of the first `scan` and last eight."""
    parsed = parse_skeleton(entry.skeleton_bytes())
    piecing = next((p for p in fold_rules.piecings(parsed) if p.output == folded), None)
    base = fold_rules.BASE_OUTPUTS[entry.kernel]
    depth = tc.depth_of(tc.chunk_count(1, list(SOURCE_DIMS)))
    if piecing is None:
        size = int(np.prod(entry.out_shapes[folded][1], dtype=object))
        starts = [(folded, e) for e in sorted({*range(min(size, scan)), *range(max(0, size - 8), size)})]
    else:
        size = piecing.size
        pieces = range(1, piecing.pieces) if piecing.pieces <= scan + 8 else [*range(1, scan), *range(piecing.pieces - 8, piecing.pieces)]
        starts = [(folded, f) if p == piecing.pieces - 1 else (base, piecing.offset + p * size + f)
                  for p in pieces for f in sorted({f for f in (0, 7, size // 2 + 3, size - 1) if f < size})]  # fmt: skip
    best = (-1, 0, 0)
    for output, element in starts:
        plan = fold_rules.fold_plan(parsed, output, element)
        words = sum(proof_words(first, count, stride, depth) for k, first, count, stride in plan.reads
                    if k < fold_rules.SELF_READ)  # fmt: skip
        best = max(best, (words, output, element))
    return best


def calibration_geometries() -> list[tuple[str, tuple, tuple, int]]:
    """The geometries MAX_PIECE_WEIGHT was calibrated on (docs/referee.md "Fold pieces"): linear_backward (dx, dW
    and db), layer_norm_backward (dw and db) and matmul at rank 8 over inputs of 2^14 to 2^28 elements and widths
    around every power of two from 8 to 4,096 (every alignment to the tensor tree), each case `pieced_entry`'s."""
    found = []
    for total in (2**14, 2**18, 2**22, 2**25, 2**28):
        for k in (3, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256, 257, 300, 511, 512,
                  513, 1000, 1023, 1024, 4095):  # fmt: skip
            r = total // k
            if r < 2:
                continue
            for n in sorted({k, 8, 255, 256, 1024}):
                shapes = ((*LEAD, r, k), (n, k), (*LEAD, r, n))
                found += [("linear_backward", shapes, ((*LEAD, r, k), (n, k), (1,) * 7 + (n,)), o) for o in (0, 1, 2)]
            norm = ((*LEAD, r, k), (*LEAD, r, 1), (1,) * 7 + (k,), (*LEAD, r, k))
            found += [("layer_norm_backward", norm, ((*LEAD, r, k), (1,) * 7 + (k,), (1,) * 7 + (k,)), o) for o in (1, 2)]
            found.append(("matmul", ((*LEAD, 2, r), (*LEAD, r, k)), ((*LEAD, 2, k),), 0))
    return found


def piece_sweep(w3: Any, host: Any, cases: list | None = None, scales: tuple[float, ...] | None = ADVERSE_FOLD_SCALES[1],
                first_game_id: int = 200) -> list[tuple[int, int, str, tuple, int]]:  # fmt: skip
    """Every case of `cases` (`PIECE_SHAPES` by default; `calibration_geometries` for the calibration) whose entry
    FoldRules cuts in pieces (the folded output in pieces, or whole in that entry), played at its `dearest_start`
    by `piece_proof` (`scales` as `largest_fold_proof`'s; a case that reads an input larger than SOURCE_ELEMENTS,
    which no kit holds, is left out): (gas, words, kernel, shapes, folded output), dearest first."""
    from protocol import row_pieces

    found, game_id = [], first_game_id
    for kernel, shapes, outputs, folded in PIECE_SHAPES if cases is None else cases:
        if row_pieces.row_piecing(kernel, shapes) is not None:
            continue  # rows in pieces: the entry's last output is RowPieceRules' statistics, which it does not build
        try:
            entry = pieced_entry(kernel, shapes, outputs, folded)
            parsed = parse_skeleton(entry.skeleton_bytes())
        except ValueError:
            continue  # running values over what a shape commits
        if not fold_rules.piecings(parsed):
            continue  # (an entry in one piece is `largest_fold_proof`'s)
        _, output, element = dearest_start(entry, folded)
        if any(int(np.prod(shapes[k], dtype=object)) > SOURCE_ELEMENTS for k, *_ in
               fold_rules.fold_reads(parsed, output, element) if k < fold_rules.SELF_READ):  # fmt: skip
            continue  # a read input no kit holds (RefereeGame: "input larger than its source")
        game_id += 1
        gas, words = piece_proof(w3, host, entry, output, element, game_id, scales)
        found.append((gas, words, kernel, shapes, folded))
    return sorted(found, reverse=True)


def largest_piece_proof(w3: Any, host: Any, game_id: int = 78, scales: tuple[float, ...] | None = None) -> tuple[int, int]:
    """Play the dearest piece of a fold in pieces (`piece_entry`, `piece_proof`; `scales` as `largest_fold_proof`'s).
    Returns (gas used, column words)."""
    entry, output, element = piece_entry()
    return piece_proof(w3, host, entry, output, element, game_id, scales)


def piece_proof(w3: Any, host: Any, entry: record.Entry, output: int, element: int, game_id: int = 78,
                scales: tuple[float, ...] | None = None) -> tuple[int, int]:  # fmt: skip
    """Play one element of an entry with a fold in pieces (of its running values, of a pieced output past its
    first piece, or of an output still whole in it), written into PROOF by storage: its column reads as in
    `largest_fold_proof` (each input an earlier entry's output, a prefix of a 2**31-element source, under the
    deepest record path) and for a piece the running value before it, a REF_SELF run of one chunk of the entry's
    own running values (made-up words: the running values' root is what they build, and the entry leaf binds
    it). The entry's inputs must come from entries 4 and 5 (the two read), 6 and 7. Returns (gas used, column
    words)."""
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    plan = fold_rules.fold_plan(parsed, output, element)
    base = fold_rules.BASE_OUTPUTS[entry.kernel]
    running_dims = list(entry.out_shapes[base][1])
    columns_read = plan.reads[1:] if plan.from_partial else plan.reads
    self_first = plan.reads[0][1] if plan.from_partial else 0
    words, running_data = synthetic_column(self_first, 1, 1, tc.depth_of(tc.chunk_count(1, running_dims)), b"running")
    roots = [keccak(b"output %d" % o) for o in range(base)] + [tc.root_of_data(1, running_dims, running_data)]
    source_dims = list(SOURCE_DIMS)
    depth = tc.depth_of(tc.chunk_count(1, source_dims))
    at = {k: ref.a for k, ref in enumerate(entry.inputs)}
    columns, leaves, proofs_of = [], {}, {}
    for n, (k, first, count, stride) in enumerate(columns_read):
        column, data_root = synthetic_column(first, count, stride, depth, b"input %d" % k, scales[n] if scales else None)
        columns += column
        key, root = keccak(b"skeleton leaf %d" % k), tc.root_of_data(1, source_dims, data_root)
        leaves[k] = keccak(b"\x17" + at[k].to_bytes(4, "big") + key + root + b"".join(other_roots(k)))
        proofs_of[k] = (key, root)
    read_inputs = [k for k, *_ in columns_read]
    others = {4: 5, 5: 4}
    upper = [keccak(b"record sibling %d" % level) for level in range(23)]
    placed = {at[k]: leaves[k] for k in read_inputs}
    pair = [placed.get(4, keccak(b"entry 4")), placed.get(5, keccak(b"entry 5"))]
    prefix = tc.root_from_path(keccak(b"\x18" + pair[0] + pair[1]), 2, upper, b"\x18")
    proofs = [(tc.ZERO, roots, [], running_dims, self_first // 8, [words[0]], words[1:])] if plan.from_partial else []
    proofs += [(proofs_of[k][0], [proofs_of[k][1], *other_roots(k)], [pair[others[at[k]] - 4], *upper], source_dims, 0, [], [])
               for k in read_inputs]  # fmt: skip
    return prove_fold_element(w3, host, game_id, entry, output, element, skeleton, roots, prefix, 2**24 - 1,
                              proofs, columns)


def prove_fold_element(w3: Any, host: Any, game_id: int, entry: record.Entry, output: int, element: int,
                       skeleton: bytes, out_roots: list[bytes], prefix: bytes, record_length: int, proofs: list[Any],
                       columns: list[bytes]) -> tuple[int, int]:  # fmt: skip
    """Put game `game_id` at PROOF on FoldRules' element `element` of `entry`'s output (the entry revealed
    with `out_roots` under `prefix`), prove it with `proofs` and `columns` as the defender, and return
    (prove_element's gas, the column words sent). Raises when the element is not decided."""
    skeleton_leaf = keccak(b"\x16" + skeleton)
    entry_leaf = keccak(b"\x17" + entry.index.to_bytes(4, "big") + skeleton_leaf + b"".join(out_roots))
    size = int(np.prod(entry.out_shapes[output][1], dtype=object))
    defender = w3.eth.accounts[2]
    set_game(w3, host, game_id, {"defender": defender, "challenger": w3.eth.accounts[3], "stage": STAGE_PROOF,
                                 "deadline": 2**40, "record_length": record_length, "entry": entry.index,
                                 "previous_prefix": prefix, "entry_leaf": entry_leaf, "skeleton_leaf": skeleton_leaf,
                                 "output": output, "output_size": size, "chunk_index": element // 8,
                                 "chunk": keccak(b"claimed"), "element": element % 8, "rules": FOLD_RULES})  # fmt: skip
    tx = host.functions.prove_element(game_id, skeleton, proofs, [], columns).transact({"from": defender, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1 or not host.functions.ruling_of(game_id).call()[0]:
        raise RuntimeError(f"the {entry.kernel} element was not decided")
    return int(receipt.gasUsed), len(columns)
