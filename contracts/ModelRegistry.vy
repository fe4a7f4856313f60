# pragma version ~=0.4.3
"""
@title ModelRegistry
@notice On-chain provenance: one record per model hash (sha256 of the weights' safetensors
        bytes) with its parents and their relation, dataset hashes, spec hash, job id, creator,
        metadata URI, license and block. Status JobVerified only when the named job is Finalized
        in the escrow and its committed output hash is the model hash; otherwise Declared.
@dev Records are never overwritten, with one exception that only adds truth: a Declared record may
     be replaced once by a JobVerified registration from the job's submitter (otherwise anyone who
     saw a committed output hash could squat it with a self-attested record). Parents must be
     registered first, so lineage is a DAG whose walk always ends.
"""


struct Job:
    submitter: address
    worker: address
    payment: uint256
    collateral: uint256
    spec_hash: bytes32
    num_segments: uint256
    deadline: uint256
    result_root: bytes32
    output_hash: bytes32
    fingerprint: bytes32
    challenge_end: uint256


struct Parent:
    model_hash: bytes32
    relation: uint8


struct Record:
    creator: address
    job_id: uint256
    spec_hash: bytes32
    status: uint8
    block_number: uint256
    metadata_uri: String[256]
    license: String[64]


interface Escrow:
    def matches(job_id: uint256, job: Job) -> bool: view
    def job_state(job_id: uint256) -> uint8: view


# ---------------------------------------------------------------- constants

MAX_PARENTS: constant(uint256) = 8
MAX_DATASETS: constant(uint256) = 8
MAX_RELATION: constant(uint8) = 5  # 0 finetune, 1 adapter, 2 merge, 3 quantize, 4 distill, 5 other
STATUS_NONE: constant(uint8) = 0
STATUS_DECLARED: constant(uint8) = 1
STATUS_JOB_VERIFIED: constant(uint8) = 2
JOB_FINALIZED: constant(uint8) = 5

# ---------------------------------------------------------------- storage

escrow: public(immutable(address))

_records: HashMap[bytes32, Record]
_parents: HashMap[bytes32, DynArray[Parent, MAX_PARENTS]]
_datasets: HashMap[bytes32, DynArray[bytes32, MAX_DATASETS]]
model_count: public(uint256)

# ---------------------------------------------------------------- events

event ModelRegistered:
    model_hash: indexed(bytes32)
    creator: indexed(address)
    job_id: uint256
    status: uint8
    spec_hash: bytes32
    metadata_uri: String[256]
    license: String[64]


@deploy
def __init__(escrow_: address):
    """
    @notice Deploy against the escrow whose Finalized jobs make records JobVerified.
    @param escrow_ The JobEscrow.
    """
    assert escrow_.is_contract, "registry: escrow has no code"
    escrow = escrow_


@external
@nonreentrant
def register(
    model_hash: bytes32,
    parents: DynArray[Parent, MAX_PARENTS],
    datasets: DynArray[bytes32, MAX_DATASETS],
    spec_hash: bytes32,
    job_id: uint256,
    job: Job,
    metadata_uri: String[256],
    license: String[64],
):
    """
    @notice Register a model. `job_id = 0`: a Declared (self-attested) record; `job` is ignored.
            `job_id > 0`: the job must be Finalized, `job` its current struct, its output hash the
            model hash, its spec hash `spec_hash`, and the caller its submitter; the record is
            JobVerified.
    @param model_hash sha256 of the weights' safetensors bytes.
    @param parents Up to 8 registered parents with their relation (0 .. 5), no duplicates.
    @param datasets Up to 8 dataset hashes.
    @param spec_hash The training spec's hash (may be zero for a Declared record).
    @param job_id The training job, or 0.
    @param job The job's struct when `job_id > 0`.
    @param metadata_uri Model card / manifest location.
    @param license License identifier (e.g. SPDX).
    """
    assert model_hash != empty(bytes32), "registry: empty model hash"
    existing: uint8 = self._records[model_hash].status
    status: uint8 = STATUS_DECLARED
    if job_id != 0:
        assert staticcall Escrow(escrow).matches(job_id, job), "registry: job mismatch"
        assert staticcall Escrow(escrow).job_state(job_id) == JOB_FINALIZED, "registry: job not finalized"
        assert job.output_hash == model_hash, "registry: output hash differs"
        assert job.spec_hash == spec_hash, "registry: spec hash differs"
        assert msg.sender == job.submitter, "registry: not job submitter"
        status = STATUS_JOB_VERIFIED
    # a record is final, except that a Declared one may be superseded by chain-proven provenance
    assert existing == STATUS_NONE or (existing == STATUS_DECLARED and status == STATUS_JOB_VERIFIED), "registry: already registered"
    for i: uint256 in range(len(parents), bound=MAX_PARENTS):
        parent: Parent = parents[i]
        assert parent.relation <= MAX_RELATION, "registry: bad relation"
        assert parent.model_hash != model_hash, "registry: model is its own parent"
        assert self._records[parent.model_hash].status != STATUS_NONE, "registry: unknown parent"
        for j: uint256 in range(i, bound=MAX_PARENTS):
            assert parents[j].model_hash != parent.model_hash, "registry: duplicate parent"
    self._records[model_hash] = Record(
        creator=msg.sender,
        job_id=job_id,
        spec_hash=spec_hash,
        status=status,
        block_number=block.number,
        metadata_uri=metadata_uri,
        license=license,
    )
    self._parents[model_hash] = parents
    self._datasets[model_hash] = datasets
    if existing == STATUS_NONE:
        self.model_count += 1
    log ModelRegistered(
        model_hash=model_hash,
        creator=msg.sender,
        job_id=job_id,
        status=status,
        spec_hash=spec_hash,
        metadata_uri=metadata_uri,
        license=license,
    )


# ================================================================ views


@view
@external
def exists(model_hash: bytes32) -> bool:
    """
    @notice Whether `model_hash` has a record.
    @param model_hash The model.
    @return True when registered.
    """
    return self._records[model_hash].status != STATUS_NONE


@view
@external
def record_of(model_hash: bytes32) -> Record:
    """
    @notice The record (creator, job_id, spec_hash, status, block_number, metadata_uri, license).
    @param model_hash The model.
    @return The record; all zero when unknown.
    """
    return self._records[model_hash]


@view
@external
def parents_of(model_hash: bytes32) -> DynArray[Parent, MAX_PARENTS]:
    """
    @notice The model's parents with their relations.
    @param model_hash The model.
    @return Parents (empty for a root or unknown model).
    """
    return self._parents[model_hash]


@view
@external
def datasets_of(model_hash: bytes32) -> DynArray[bytes32, MAX_DATASETS]:
    """
    @notice The dataset hashes the model was trained on.
    @param model_hash The model.
    @return Dataset hashes.
    """
    return self._datasets[model_hash]


@view
@external
def is_job_verified(model_hash: bytes32) -> bool:
    """
    @notice Whether the model came out of a Finalized Tessera job (for other contracts).
    @param model_hash The model.
    @return True for JobVerified records.
    """
    return self._records[model_hash].status == STATUS_JOB_VERIFIED


@view
@external
def status_of(model_hash: bytes32) -> uint8:
    """
    @notice 0 none, 1 Declared, 2 JobVerified.
    @param model_hash The model.
    @return The status.
    """
    return self._records[model_hash].status
