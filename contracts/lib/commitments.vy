# pragma version ~=0.4.3
"""
@title commitments
@notice The on-chain side of the level-2/3 commitments of docs/referee.md, byte for byte as
        `protocol/tensor_commit.py` and `engine/portable/record.py`: tensor roots and aligned runs
        of chunks, the element bits inside a chunk, state roots (tensor leaves and the header leaf,
        with the header decoded), and the step record's trees (skeleton leaves against S, entry
        leaves against a prefix root P_j, and the step P_{j-1} -> P_j that fills slot j).
@dev Every tree is keccak256 with a domain byte, zero-word padding to a power of two, and the walk
     of `merkle.vy`: bit j of the position says whether the running node is the right child.
     Domain bytes: 0x10 chunk leaf, 0x11 tensor data node, 0x12 tensor root, 0x13 state tensor leaf,
     0x14 state header leaf, 0x15 state node, 0x16 record skeleton leaf, 0x17 record entry leaf,
     0x18 record node. Every verifier demands a path of exactly the tree's depth above the proven
     subtree, so a proof can never be replayed at another level or position.
"""

# At most 8 dimensions, each a uint32 (the root preimage holds them as 4 bytes each).
MAX_NDIM: constant(uint256) = 8
MAX_DIM: constant(uint256) = 4_294_967_295
# A tensor has at most 2**MAX_TENSOR_DEPTH chunks (2**43 binary32 values).
MAX_TENSOR_DEPTH: constant(uint256) = 40
# An aligned run is at most 2**MAX_RUN_LEVEL chunks: 32 chunks = 256 binary32 values, one piece of
# a long fold (docs/referee.md, "Long reductions").
MAX_RUN_LEVEL: constant(uint256) = 5
MAX_RUN: constant(uint256) = 32
# A state has at most 2**MAX_STATE_DEPTH leaves (header + tensors).
MAX_STATE_DEPTH: constant(uint256) = 16
# A step record has at most 2**MAX_RECORD_DEPTH entries.
MAX_RECORD_DEPTH: constant(uint256) = 24
# Outputs of one kernel call (layer norm, linear_backward and AdamW have three; a row-pieced
# layer_norm_backward five: dx, dw, db, their running values, its row statistics).
MAX_OUTPUTS: constant(uint256) = 5
# The binary state header: 156 bytes at fixed offsets.
HEADER_BYTES: constant(uint256) = 156

# dtype codes: 1 binary32, 2 int64, 3 binary64, 4 bool (one byte).
DTYPE_FLOAT32: constant(uint256) = 1
DTYPE_INT64: constant(uint256) = 2
DTYPE_FLOAT64: constant(uint256) = 3
DTYPE_BOOL: constant(uint256) = 4


struct StateHeader:
    spec_hash: bytes32
    step: uint64
    boundary: uint64
    epoch: uint64
    position: uint64
    data_epoch: uint64
    dropout_counter: uint64
    seed: uint64
    skeleton_root: bytes32
    record_length: uint32
    segment_steps: uint32
    leaf_count: uint32
    total_steps: uint64
    per_epoch: uint64
    segment_length: uint32
    batch_size: uint32


# --------------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------------


@internal
@pure
def _element_size(code: uint256) -> uint256:
    """
    @notice Bytes per element of a dtype code.
    @dev Reverts on an unknown code.
    @param code 1 binary32, 2 int64, 3 binary64, 4 bool.
    @return 4, 8, 8 or 1.
    """
    if code == DTYPE_FLOAT32:
        return 4
    if code == DTYPE_INT64 or code == DTYPE_FLOAT64:
        return 8
    assert code == DTYPE_BOOL, "commitments: unknown dtype"
    return 1


@internal
@pure
def _chunk_leaf(chunk: bytes32) -> bytes32:
    """
    @notice A chunk's leaf: keccak256(0x10 ‖ chunk).
    @param chunk 32 bytes of big-endian elements.
    @return The leaf.
    """
    return keccak256(concat(b"\x10", chunk))


@internal
@pure
def _tensor_node(left: bytes32, right: bytes32) -> bytes32:
    """
    @notice A data-tree node: keccak256(0x11 ‖ left ‖ right).
    @param left Left child.
    @param right Right child.
    @return The node.
    """
    return keccak256(concat(b"\x11", left, right))


@internal
@pure
def _element_count(dims: DynArray[uint256, MAX_NDIM]) -> uint256:
    """
    @notice Number of elements of a shape (1 for a 0-d tensor).
    @dev Reverts on a dimension above MAX_DIM (it could not be committed); the product of eight
         uint32 values fits a uint256.
    @param dims The shape.
    @return The product of the dimensions.
    """
    count: uint256 = 1
    for dim: uint256 in dims:
        assert dim <= MAX_DIM, "commitments: dimension too large"
        count *= dim
    return count


@internal
@pure
def _chunk_count(code: uint256, dims: DynArray[uint256, MAX_NDIM]) -> uint256:
    """
    @notice Number of 32-byte chunks of a tensor's serialised elements.
    @param code The dtype code.
    @param dims The shape.
    @return ceil(elements * size / 32).
    """
    return (self._element_count(dims) * self._element_size(code) + 31) // 32


@internal
@pure
def _depth(count: uint256) -> uint256:
    """
    @notice ceil(log2(count)): the depth of a zero-padded tree of `count` leaves (0 for 0 or 1).
    @dev Reverts above 2**MAX_TENSOR_DEPTH leaves.
    @param count Leaf count before padding.
    @return The depth.
    """
    assert count <= 1 << MAX_TENSOR_DEPTH, "commitments: tree too large"
    depth: uint256 = 0
    for _: uint256 in range(MAX_TENSOR_DEPTH):
        if 1 << depth >= count:
            break
        depth += 1
    return depth


@internal
@pure
def _pack_dims(dims: DynArray[uint256, MAX_NDIM]) -> uint256:
    """
    @notice A shape's dimensions in one word: dimension i as a uint32 at bits 224 - 32 i, so the word's
            big-endian bytes begin with exactly the dims part of the root preimage.
    @dev Reverts on a dimension above MAX_DIM.
    @param dims The shape (at most 8 dimensions).
    @return The packed word.
    """
    packed: uint256 = 0
    for i: uint256 in range(MAX_NDIM):
        if i >= len(dims):
            break
        assert dims[i] <= MAX_DIM, "commitments: dimension too large"
        packed |= dims[i] << (32 * (7 - i))
    return packed


@internal
@pure
def _unpack_dims(packed: uint256, ndim: uint256) -> DynArray[uint256, MAX_NDIM]:
    """
    @notice The dimensions of a word made by `_pack_dims`.
    @param packed The packed word.
    @param ndim How many dimensions it holds.
    @return The shape.
    """
    dims: DynArray[uint256, MAX_NDIM] = []
    for i: uint256 in range(MAX_NDIM):
        if i >= ndim:
            break
        dims.append((packed >> (32 * (7 - i))) & MAX_DIM)
    return dims


@internal
@pure
def _tensor_root_packed(code: uint256, ndim: uint256, packed: uint256, data_root: bytes32) -> bytes32:
    """
    @notice The tensor root of a shape given packed (`_pack_dims`).
    @dev The preimage takes only the first 4 * ndim bytes of the packed word, so the layout is exactly
         the variable-length one. Reverts on an unknown dtype code or more than 8 dimensions.
    @param code The dtype code.
    @param ndim The number of dimensions.
    @param packed The dimensions, packed.
    @param data_root The root of the chunk tree.
    @return The tensor root.
    """
    self._element_size(code)
    assert ndim <= MAX_NDIM, "commitments: too many dimensions"
    shape: Bytes[34] = slice(
        concat(convert(convert(code, uint8), bytes1), convert(convert(ndim, uint8), bytes1), convert(packed, bytes32)),
        0,
        2 + 4 * ndim,
    )
    return keccak256(concat(b"\x12", shape, data_root))


@internal
@pure
def _tensor_root(code: uint256, dims: DynArray[uint256, MAX_NDIM], data_root: bytes32) -> bytes32:
    """
    @notice The tensor root: keccak256(0x12 ‖ dtype code ‖ ndim ‖ dims (uint32 BE each) ‖ data root).
    @param code The dtype code.
    @param dims The shape (at most 8 dimensions, each a uint32).
    @param data_root The root of the chunk tree.
    @return The tensor root.
    """
    return self._tensor_root_packed(code, len(dims), self._pack_dims(dims), data_root)


@internal
@pure
def _run_subtree(chunks: DynArray[bytes32, MAX_RUN], level: uint256) -> bytes32:
    """
    @notice The root of the subtree of 2**level chunk leaves holding `chunks` first, zero words after.
    @param chunks The run's chunks (1 ... 2**level of them).
    @param level log2 of the run's span.
    @return The subtree root.
    """
    nodes: bytes32[MAX_RUN] = empty(bytes32[MAX_RUN])
    for i: uint256 in range(MAX_RUN):
        if i >= len(chunks):
            break
        nodes[i] = self._chunk_leaf(chunks[i])
    width: uint256 = 1 << level
    for _: uint256 in range(MAX_RUN_LEVEL):
        if width == 1:
            break
        width >>= 1
        for i: uint256 in range(MAX_RUN // 2):
            if i >= width:
                break
            nodes[i] = self._tensor_node(nodes[2 * i], nodes[2 * i + 1])
    return nodes[0]


@internal
@pure
def _walk(node: bytes32, position: uint256, path: DynArray[bytes32, MAX_TENSOR_DEPTH], domain: bytes1) -> bytes32:
    """
    @notice Walk up from `node` at `position` with the sibling words of `path`, bottom-up.
    @param node The starting subtree root.
    @param position Its index among the subtrees of its level.
    @param path Sibling words, bottom-up.
    @param domain The node domain byte of the tree (0x11, 0x15 or 0x18).
    @return The root reached.
    """
    current: bytes32 = node
    index: uint256 = position
    for sibling: bytes32 in path:
        if index & 1 == 1:
            current = keccak256(concat(domain, sibling, current))
        else:
            current = keccak256(concat(domain, current, sibling))
        index >>= 1
    return current


@internal
@pure
def _verify_run(
    root: bytes32,
    code: uint256,
    dims: DynArray[uint256, MAX_NDIM],
    first: uint256,
    chunks: DynArray[bytes32, MAX_RUN],
    path: DynArray[bytes32, MAX_TENSOR_DEPTH],
) -> bool:
    """
    @notice True when `chunks` are chunks first, first + 1, ... of the tensor committed by `root`,
            whose dtype code and shape are `code` and `dims`.
    @dev The run must be aligned (first a multiple of its span 2**m, the span the next power of two
         of its length), full unless cut by the tensor's end, and the path exactly as long as the
         tree is deep above it. An unknown dtype or a shape too large reverts.
    @param root The tensor root.
    @param code The dtype code.
    @param dims The shape.
    @param first The index of the run's first chunk.
    @param chunks The run's chunks.
    @param path Sibling words from the run's subtree up to the data root.
    @return Whether the run is proven.
    """
    count: uint256 = self._chunk_count(code, dims)
    run: uint256 = len(chunks)
    if run == 0 or first >= count:
        return False
    level: uint256 = self._depth(run)
    span: uint256 = 1 << level
    if first % span != 0 or run != min(span, count - first):
        return False
    if len(path) + level != self._depth(count):
        return False
    data_root: bytes32 = self._walk(self._run_subtree(chunks, level), first >> level, path, 0x11)
    return self._tensor_root(code, dims, data_root) == root


@internal
@pure
def _element_of_chunk(chunk: bytes32, code: uint256, k: uint256) -> uint256:
    """
    @notice The bits of element k of a chunk (big-endian elements: binary32 k < 8, int64 and
            binary64 k < 4, bool k < 32), right-aligned.
    @param chunk The chunk.
    @param code The dtype code.
    @param k The element's place in the chunk.
    @return Its bit pattern (binary32: 32 bits, int64/binary64: 64 bits, bool: 8 bits).
    """
    size: uint256 = self._element_size(code)
    assert k < 32 // size, "commitments: element outside the chunk"
    bits: uint256 = 8 * size
    return (convert(chunk, uint256) >> (256 - bits * (k + 1))) & ((1 << bits) - 1)


@internal
@pure
def _element_of_run(first: uint256, chunks: DynArray[bytes32, MAX_RUN], code: uint256, element: uint256) -> uint256:
    """
    @notice Element `element` (row-major index in the whole tensor) read from a verified run.
    @param first The run's first chunk.
    @param chunks The run's chunks.
    @param code The dtype code.
    @param element The element's index in the tensor.
    @return Its bits, right-aligned.
    """
    per: uint256 = 32 // self._element_size(code)
    chunk: uint256 = element // per
    assert chunk >= first and chunk - first < len(chunks), "commitments: element not in the run"
    return self._element_of_chunk(chunks[chunk - first], code, element % per)


# --------------------------------------------------------------------------------------------------
# State roots
# --------------------------------------------------------------------------------------------------


@internal
@pure
def _state_tensor_leaf(name_hash: bytes32, tensor_root: bytes32) -> bytes32:
    """
    @notice A state's tensor leaf: keccak256(0x13 ‖ keccak256(utf-8 name) ‖ tensor root).
    @param name_hash keccak256 of the tensor's name.
    @param tensor_root Its tensor root.
    @return The leaf.
    """
    return keccak256(concat(b"\x13", name_hash, tensor_root))


@internal
@pure
def _header_leaf(header: Bytes[HEADER_BYTES]) -> bytes32:
    """
    @notice The state's header leaf: keccak256(0x14 ‖ header), the header exactly 156 bytes.
    @param header The binary header.
    @return The leaf.
    """
    assert len(header) == HEADER_BYTES, "commitments: header is 156 bytes"
    return keccak256(concat(b"\x14", header))


@internal
@pure
def _decode_header(header: Bytes[HEADER_BYTES]) -> StateHeader:
    """
    @notice The header's fields at their fixed offsets (docs/referee.md, section 2).
    @dev Offsets: 0 spec hash, 32 step, 40 boundary, 48 cursor epoch, 56 cursor position,
         64 data_epoch, 72 dropout_counter, 80 seed (uint64 BE each), 88 S, 120 L, 124 segment steps,
         128 leaf count (uint32 BE each), 132 total steps, 140 per_epoch (uint64 BE each), 148 segment
         length, 152 batch size (uint32 BE each). A field of b bytes at offset o is the low b bytes of
         the word that ends at o + b.
    @param header The binary header (exactly 156 bytes).
    @return The decoded fields.
    """
    assert len(header) == HEADER_BYTES, "commitments: header is 156 bytes"
    words: uint64[7] = empty(uint64[7])
    for i: uint256 in range(7):
        words[i] = convert(convert(extract32(header, 32 + 8 * i), uint256) >> 192, uint64)
    return StateHeader(
        spec_hash=extract32(header, 0),
        step=words[0],
        boundary=words[1],
        epoch=words[2],
        position=words[3],
        data_epoch=words[4],
        dropout_counter=words[5],
        seed=words[6],
        skeleton_root=extract32(header, 88),
        record_length=convert(convert(extract32(header, 92), uint256) % (1 << 32), uint32),
        segment_steps=convert(convert(extract32(header, 96), uint256) % (1 << 32), uint32),
        leaf_count=convert(convert(extract32(header, 100), uint256) % (1 << 32), uint32),
        total_steps=convert(convert(extract32(header, 108), uint256) % (1 << 64), uint64),
        per_epoch=convert(convert(extract32(header, 116), uint256) % (1 << 64), uint64),
        segment_length=convert(convert(extract32(header, 120), uint256) % (1 << 32), uint32),
        batch_size=convert(convert(extract32(header, 124), uint256) % (1 << 32), uint32),
    )


@internal
@pure
def _verify_state_leaf(
    root: bytes32, leaf_count: uint256, index: uint256, leaf: bytes32, path: DynArray[bytes32, MAX_STATE_DEPTH]
) -> bool:
    """
    @notice True when `leaf` is leaf `index` of a state tree of `leaf_count` leaves under `root`.
    @dev leaf_count is 1 + the number of tensors (fixed by the spec); index 0 is the header leaf,
         1 + t the tensor t in sorted-name order.
    @param root The state root.
    @param leaf_count Leaves before padding.
    @param index The leaf's position.
    @param leaf The leaf.
    @param path Sibling words, bottom-up.
    @return Whether the leaf is proven.
    """
    if leaf_count == 0 or leaf_count > 1 << MAX_STATE_DEPTH or index >= leaf_count:
        return False
    if len(path) != self._depth(leaf_count):
        return False
    return self._walk(leaf, index, path, 0x15) == root


# --------------------------------------------------------------------------------------------------
# Step records
# --------------------------------------------------------------------------------------------------


@internal
@pure
def _entry_leaf(index: uint256, skeleton_leaf: bytes32, out_roots: DynArray[bytes32, MAX_OUTPUTS]) -> bytes32:
    """
    @notice An entry leaf: keccak256(0x17 ‖ uint32 j ‖ skeleton leaf ‖ output roots).
    @dev The roots are laid out in a fixed buffer of MAX_OUTPUTS words and the preimage cut after the
         last one, so the layout is exactly the variable-length one (no committed leaf depends on the cap).
    @param index j, the entry's place in the record.
    @param skeleton_leaf The entry's skeleton leaf.
    @param out_roots The tensor roots of its outputs (1 ... MAX_OUTPUTS).
    @return The leaf.
    """
    assert index < 1 << 32, "commitments: entry index too large"
    roots: bytes32[MAX_OUTPUTS] = empty(bytes32[MAX_OUTPUTS])
    for i: uint256 in range(MAX_OUTPUTS):
        if i >= len(out_roots):
            break
        roots[i] = out_roots[i]
    preimage: Bytes[197] = concat(
        b"\x17", convert(convert(index, uint32), bytes4), skeleton_leaf, roots[0], roots[1], roots[2], roots[3], roots[4]
    )
    return keccak256(slice(preimage, 0, 37 + 32 * len(out_roots)))


@internal
@pure
def _skeleton_leaf(skeleton: Bytes[4_096]) -> bytes32:
    """
    @notice A skeleton leaf: keccak256(0x16 ‖ skeleton bytes).
    @param skeleton The entry's skeleton bytes (name, arguments, references, output shapes).
    @return The leaf.
    """
    return keccak256(concat(b"\x16", skeleton))


@internal
@pure
def _record_width_depth(width: uint256) -> uint256:
    """
    @notice log2 of a record's width W, which must be a power of two within bounds.
    @param width W, the next power of two >= L.
    @return log2(W).
    """
    assert width != 0 and width & (width - 1) == 0 and width <= 1 << MAX_RECORD_DEPTH, "commitments: bad record width"
    depth: uint256 = 0
    for _: uint256 in range(MAX_RECORD_DEPTH):
        if 1 << depth == width:
            break
        depth += 1
    return depth


@internal
@pure
def _verify_record_leaf(
    root: bytes32, width: uint256, index: uint256, leaf: bytes32, path: DynArray[bytes32, MAX_RECORD_DEPTH]
) -> bool:
    """
    @notice True when `leaf` is leaf `index` of a record tree (S or a prefix root P_j) of width W.
    @dev For S the leaf is a skeleton leaf; for P_j an entry leaf at index <= j (the tree has a fixed
         width, so an entry proven against P_j is provable against every later prefix).
    @param root S or P_j.
    @param width W.
    @param index The leaf's position.
    @param leaf The leaf.
    @param path Sibling words, bottom-up (exactly log2(W) of them).
    @return Whether the leaf is proven.
    """
    if index >= width or len(path) != self._record_width_depth(width):
        return False
    return self._walk(leaf, index, path, 0x18) == root


@internal
@pure
def _verify_prefix_step(
    previous: bytes32,
    following: bytes32,
    width: uint256,
    index: uint256,
    leaf: bytes32,
    path: DynArray[bytes32, MAX_RECORD_DEPTH],
) -> bool:
    """
    @notice True when P_j (`following`) is P_{j-1} (`previous`) with slot j filled by `leaf`: the
            same siblings lead from the zero word at j to `previous` and from `leaf` at j to
            `following`.
    @dev For j = 0, `previous` is the all-padding tree of width W. A zero leaf is refused: it would
         make the two roots equal and prove nothing.
    @param previous P_{j-1}.
    @param following P_j.
    @param width W.
    @param index j.
    @param leaf Entry leaf j.
    @param path Sibling words of slot j, bottom-up.
    @return Whether the step is proven.
    """
    if leaf == empty(bytes32) or index >= width or len(path) != self._record_width_depth(width):
        return False
    if self._walk(empty(bytes32), index, path, 0x18) != previous:
        return False
    return self._walk(leaf, index, path, 0x18) == following
