# pragma version ~=0.4.3
"""
@title CommitmentsHarness
@notice Test-only contract exposing the internal `commitments` module, so the proofs that
        `protocol/tensor_commit.py` and the step recorder make are checked against the exact Vyper
        code a referee would run.
@dev Never deployed outside tests and benchmarks. The batch entry points check many cases in one
     call (the tests' time budget).
"""

from ..lib import commitments

# Cases per batch call.
MAX_BATCH: constant(uint256) = 24


struct RunCase:
    root: bytes32
    code: uint256
    dims: DynArray[uint256, commitments.MAX_NDIM]
    first: uint256
    chunks: DynArray[bytes32, commitments.MAX_RUN]
    path: DynArray[bytes32, commitments.MAX_TENSOR_DEPTH]
    element: uint256


struct RecordCase:
    root: bytes32
    width: uint256
    index: uint256
    leaf: bytes32
    path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH]


@external
@pure
def tensor_root(code: uint256, dims: DynArray[uint256, commitments.MAX_NDIM], data_root: bytes32) -> bytes32:
    """
    @notice The tensor root of a data root under a dtype and shape.
    @param code The dtype code.
    @param dims The shape.
    @param data_root The chunk tree's root.
    @return The tensor root.
    """
    return commitments._tensor_root(code, dims, data_root)


@external
@pure
def chunk_leaf(chunk: bytes32) -> bytes32:
    """
    @notice A chunk's leaf.
    @param chunk The chunk.
    @return keccak256(0x10 ‖ chunk).
    """
    return commitments._chunk_leaf(chunk)


@external
@pure
def verify_run(
    root: bytes32,
    code: uint256,
    dims: DynArray[uint256, commitments.MAX_NDIM],
    first: uint256,
    chunks: DynArray[bytes32, commitments.MAX_RUN],
    path: DynArray[bytes32, commitments.MAX_TENSOR_DEPTH],
) -> bool:
    """
    @notice One run against a tensor root.
    @param root The tensor root.
    @param code The dtype code.
    @param dims The shape.
    @param first The run's first chunk.
    @param chunks The run's chunks.
    @param path Sibling words up to the data root.
    @return Whether the run is proven.
    """
    return commitments._verify_run(root, code, dims, first, chunks, path)


@external
@pure
def verify_runs(cases: DynArray[RunCase, MAX_BATCH]) -> (DynArray[bool, MAX_BATCH], DynArray[uint256, MAX_BATCH]):
    """
    @notice Many runs in one call, each with one element read from it.
    @dev The element is read only from a proven run (0 otherwise).
    @param cases The runs, each with the index of the element to read.
    @return Whether each run is proven, and the bits of each case's element.
    """
    proven: DynArray[bool, MAX_BATCH] = []
    bits: DynArray[uint256, MAX_BATCH] = []
    for case: RunCase in cases:
        ok: bool = commitments._verify_run(case.root, case.code, case.dims, case.first, case.chunks, case.path)
        proven.append(ok)
        if ok:
            bits.append(commitments._element_of_run(case.first, case.chunks, case.code, case.element))
        else:
            bits.append(0)
    return proven, bits


@external
@pure
def element_of_chunk(chunk: bytes32, code: uint256, k: uint256) -> uint256:
    """
    @notice Element k of a chunk.
    @param chunk The chunk.
    @param code The dtype code.
    @param k The element's place in the chunk.
    @return Its bits.
    """
    return commitments._element_of_chunk(chunk, code, k)


@external
@pure
def state_tensor_leaf(name_hash: bytes32, tensor_root: bytes32) -> bytes32:
    """
    @notice A state's tensor leaf.
    @param name_hash keccak256 of the name.
    @param tensor_root The tensor root.
    @return The leaf.
    """
    return commitments._state_tensor_leaf(name_hash, tensor_root)


@external
@pure
def header_leaf(header: Bytes[commitments.HEADER_BYTES]) -> bytes32:
    """
    @notice A state's header leaf.
    @param header The 156-byte header.
    @return The leaf.
    """
    return commitments._header_leaf(header)


@external
@pure
def decode_header(header: Bytes[commitments.HEADER_BYTES]) -> commitments.StateHeader:
    """
    @notice The header's fields.
    @param header The 156-byte header.
    @return The decoded fields.
    """
    return commitments._decode_header(header)


@external
@pure
def verify_state_leaf(
    root: bytes32,
    leaf_count: uint256,
    index: uint256,
    leaf: bytes32,
    path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
) -> bool:
    """
    @notice One leaf against a state root.
    @param root The state root.
    @param leaf_count Leaves before padding.
    @param index The leaf's position.
    @param leaf The leaf.
    @param path Sibling words.
    @return Whether the leaf is proven.
    """
    return commitments._verify_state_leaf(root, leaf_count, index, leaf, path)


@external
@pure
def verify_state_tensor(
    root: bytes32,
    leaf_count: uint256,
    index: uint256,
    name_hash: bytes32,
    tensor_root: bytes32,
    path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
) -> bool:
    """
    @notice A named tensor root against a state root (the leaf built on chain).
    @param root The state root.
    @param leaf_count Leaves before padding.
    @param index The leaf's position (1 + the tensor's sorted-name index).
    @param name_hash keccak256 of the name.
    @param tensor_root The tensor root.
    @param path Sibling words.
    @return Whether the tensor is proven.
    """
    return commitments._verify_state_leaf(
        root, leaf_count, index, commitments._state_tensor_leaf(name_hash, tensor_root), path
    )


@external
@pure
def open_header(
    root: bytes32,
    leaf_count: uint256,
    header: Bytes[commitments.HEADER_BYTES],
    path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
) -> commitments.StateHeader:
    """
    @notice The header of a state, proven at leaf 0 against its root, then decoded.
    @dev Reverts when the proof fails.
    @param root The state root.
    @param leaf_count Leaves before padding.
    @param header The 156-byte header.
    @param path Sibling words of leaf 0.
    @return The decoded fields.
    """
    assert commitments._verify_state_leaf(
        root, leaf_count, 0, commitments._header_leaf(header), path
    ), "CommitmentsHarness: header not proven"
    return commitments._decode_header(header)


@external
@pure
def entry_leaf(index: uint256, skeleton_leaf: bytes32, out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS]) -> bytes32:
    """
    @notice An entry leaf.
    @param index j.
    @param skeleton_leaf The skeleton leaf.
    @param out_roots The output roots.
    @return The leaf.
    """
    return commitments._entry_leaf(index, skeleton_leaf, out_roots)


@external
@pure
def skeleton_leaf(skeleton: Bytes[4_096]) -> bytes32:
    """
    @notice A skeleton leaf.
    @param skeleton The skeleton bytes.
    @return The leaf.
    """
    return commitments._skeleton_leaf(skeleton)


@external
@pure
def verify_record_leaves(cases: DynArray[RecordCase, MAX_BATCH]) -> DynArray[bool, MAX_BATCH]:
    """
    @notice Many record leaves (skeleton leaves against S, entry leaves against P_j) in one call.
    @param cases The leaves with their roots, widths, positions and paths.
    @return Whether each is proven.
    """
    proven: DynArray[bool, MAX_BATCH] = []
    for case: RecordCase in cases:
        proven.append(commitments._verify_record_leaf(case.root, case.width, case.index, case.leaf, case.path))
    return proven


@external
@pure
def verify_prefix_steps(
    previous: DynArray[bytes32, MAX_BATCH], cases: DynArray[RecordCase, MAX_BATCH]
) -> DynArray[bool, MAX_BATCH]:
    """
    @notice Many prefix steps P_{j-1} -> P_j in one call: case i's root is P_j, previous[i] is P_{j-1}.
    @param previous P_{j-1} per case.
    @param cases P_j, W, j, entry leaf j and its siblings per case.
    @return Whether each step is proven.
    """
    assert len(previous) == len(cases), "CommitmentsHarness: lengths differ"
    proven: DynArray[bool, MAX_BATCH] = []
    for i: uint256 in range(MAX_BATCH):
        if i >= len(cases):
            break
        case: RecordCase = cases[i]
        proven.append(
            commitments._verify_prefix_step(previous[i], case.root, case.width, case.index, case.leaf, case.path)
        )
    return proven


@external
@pure
def verify_record_leaf(
    root: bytes32, width: uint256, index: uint256, leaf: bytes32, path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH]
) -> bool:
    """
    @notice One record leaf (a skeleton leaf against S, an entry leaf against P_j).
    @param root S or P_j.
    @param width W.
    @param index The leaf's position.
    @param leaf The leaf.
    @param path Sibling words.
    @return Whether the leaf is proven.
    """
    return commitments._verify_record_leaf(root, width, index, leaf, path)


@external
@pure
def verify_entry(
    prefix_root: bytes32,
    width: uint256,
    index: uint256,
    skeleton_leaf: bytes32,
    out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS],
    path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
) -> bool:
    """
    @notice Entry j, given by its skeleton leaf and output roots, against a prefix root (the leaf
            built on chain).
    @param prefix_root P_j (or a later prefix).
    @param width W.
    @param index j.
    @param skeleton_leaf The entry's skeleton leaf.
    @param out_roots Its output roots.
    @param path Sibling words.
    @return Whether the entry is proven.
    """
    return commitments._verify_record_leaf(
        prefix_root, width, index, commitments._entry_leaf(index, skeleton_leaf, out_roots), path
    )


@external
@pure
def verify_prefix_step(
    previous: bytes32,
    following: bytes32,
    width: uint256,
    index: uint256,
    leaf: bytes32,
    path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
) -> bool:
    """
    @notice One prefix step P_{j-1} -> P_j.
    @param previous P_{j-1}.
    @param following P_j.
    @param width W.
    @param index j.
    @param leaf Entry leaf j.
    @param path Sibling words of slot j.
    @return Whether the step is proven.
    """
    return commitments._verify_prefix_step(previous, following, width, index, leaf, path)
