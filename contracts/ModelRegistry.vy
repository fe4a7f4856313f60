# pragma version ~=0.4.3
"""
@title ModelRegistry
@notice On-chain provenance, kept as attestations that are never overwritten. A model (sha256 of its
        weights' safetensors bytes) can have any number of attestations: at most one Declared
        (self-attested) attestation per attester, and at most one JobVerified attestation per job.
        JobVerified means "the committed output of that Finalized job", whose output is bound to
        its trace (a dispute can contest it during the challenge window); it records the job's
        submitter and worker, so a reader can judge self-dealing. Nobody's attestation outranks or
        replaces anybody else's.
@dev Every attestation names parents (with their relation) and datasets. A parent must have been
     registered before the child was first registered (its first attestation id is lower), so the
     lineage graph over model hashes is acyclic on chain and every walk of `parents_of` ends.
"""


struct Job:
    submitter: address
    worker: address
    payment: uint256
    collateral: uint256
    spec_hash: bytes32
    num_segments: uint256
    env_class: bytes32
    segment_seconds: uint256
    deadline: uint256
    result_root: bytes32
    output_hash: bytes32
    challenge_end: uint256


struct Parent:
    model_hash: bytes32
    relation: uint8


struct Attestation:
    model_hash: bytes32
    attester: address
    status: uint8
    job_id: uint256
    job_submitter: address
    job_worker: address
    spec_hash: bytes32
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

attestation_count: public(uint256)
_attestations: HashMap[uint256, Attestation]
_parents: HashMap[uint256, DynArray[Parent, MAX_PARENTS]]
_datasets: HashMap[uint256, DynArray[bytes32, MAX_DATASETS]]
# model hash -> how many attestations it has, and the id of each (index 0 is its first)
attestations_of_count: public(HashMap[bytes32, uint256])
_attestation_ids: HashMap[bytes32, HashMap[uint256, uint256]]
# model hash -> how many of its attestations are JobVerified
verified_count: public(HashMap[bytes32, uint256])
# (model hash, attester) -> its Declared attestation id; job id -> its JobVerified attestation id
declared_by: public(HashMap[bytes32, HashMap[address, uint256]])
attestation_of_job: public(HashMap[uint256, uint256])
model_count: public(uint256)

# ---------------------------------------------------------------- events

event ModelRegistered:
    model_hash: indexed(bytes32)
    attester: indexed(address)
    attestation_id: indexed(uint256)
    job_id: uint256
    status: uint8
    spec_hash: bytes32
    job_submitter: address
    job_worker: address
    metadata_uri: String[256]
    license: String[64]


@deploy
def __init__(escrow_: address):
    """
    @notice Deploy against the escrow whose Finalized jobs make attestations JobVerified.
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
) -> uint256:
    """
    @notice Attest to a model. `job_id = 0`: a Declared attestation by the caller (one per
            caller and model; `job` is ignored). `job_id > 0`: a JobVerified attestation of that
            job (one per job): the job must be Finalized, `job` its current struct, its output
            hash the model hash, its spec hash `spec_hash`, and the caller its submitter.
            Anyone may call; nothing is ever overwritten.
    @param model_hash sha256 of the weights' safetensors bytes.
    @param parents Up to 8 parents registered before this model, with their relation (0 .. 5), no duplicates.
    @param datasets Up to 8 dataset hashes.
    @param spec_hash The training spec's hash (may be zero for a Declared attestation).
    @param job_id The training job, or 0.
    @param job The job's struct when `job_id > 0`.
    @param metadata_uri Model card / manifest location.
    @param license License identifier (e.g. SPDX).
    @return The attestation id.
    """
    assert model_hash != empty(bytes32), "registry: empty model hash"
    status: uint8 = STATUS_DECLARED
    job_submitter: address = empty(address)
    job_worker: address = empty(address)
    if job_id != 0:
        assert staticcall Escrow(escrow).matches(job_id, job), "registry: job mismatch"
        assert staticcall Escrow(escrow).job_state(job_id) == JOB_FINALIZED, "registry: job not finalized"
        assert job.output_hash == model_hash, "registry: output hash differs"
        assert job.spec_hash == spec_hash, "registry: spec hash differs"
        assert msg.sender == job.submitter, "registry: not job submitter"
        assert self.attestation_of_job[job_id] == 0, "registry: job already attested"
        status = STATUS_JOB_VERIFIED
        job_submitter = job.submitter
        job_worker = job.worker
    else:
        assert self.declared_by[model_hash][msg.sender] == 0, "registry: already declared by this attester"
    attestation_id: uint256 = self.attestation_count + 1
    count: uint256 = self.attestations_of_count[model_hash]
    # the model's first attestation id orders it after every parent (acyclic lineage)
    first: uint256 = attestation_id
    if count > 0:
        first = self._attestation_ids[model_hash][0]
    for i: uint256 in range(len(parents), bound=MAX_PARENTS):
        parent: Parent = parents[i]
        assert parent.relation <= MAX_RELATION, "registry: bad relation"
        assert parent.model_hash != model_hash, "registry: model is its own parent"
        assert self.attestations_of_count[parent.model_hash] > 0, "registry: unknown parent"
        assert self._attestation_ids[parent.model_hash][0] < first, "registry: parent registered after the model"
        for j: uint256 in range(i, bound=MAX_PARENTS):
            assert parents[j].model_hash != parent.model_hash, "registry: duplicate parent"
    self.attestation_count = attestation_id
    self._attestations[attestation_id] = Attestation(
        model_hash=model_hash,
        attester=msg.sender,
        status=status,
        job_id=job_id,
        job_submitter=job_submitter,
        job_worker=job_worker,
        spec_hash=spec_hash,
        block_number=block.number,
        metadata_uri=metadata_uri,
        license=license,
    )
    self._parents[attestation_id] = parents
    self._datasets[attestation_id] = datasets
    self._attestation_ids[model_hash][count] = attestation_id
    self.attestations_of_count[model_hash] = count + 1
    if count == 0:
        self.model_count += 1
    if job_id != 0:
        self.attestation_of_job[job_id] = attestation_id
        self.verified_count[model_hash] += 1
    else:
        self.declared_by[model_hash][msg.sender] = attestation_id
    log ModelRegistered(
        model_hash=model_hash,
        attester=msg.sender,
        attestation_id=attestation_id,
        job_id=job_id,
        status=status,
        spec_hash=spec_hash,
        job_submitter=job_submitter,
        job_worker=job_worker,
        metadata_uri=metadata_uri,
        license=license,
    )
    return attestation_id


# ================================================================ views


@view
@external
def exists(model_hash: bytes32) -> bool:
    """
    @notice Whether `model_hash` has any attestation.
    @param model_hash The model.
    @return True when registered.
    """
    return self.attestations_of_count[model_hash] > 0


@view
@external
def status_of(model_hash: bytes32) -> uint8:
    """
    @notice 0 none, 1 only Declared attestations, 2 at least one JobVerified attestation.
    @param model_hash The model.
    @return The status.
    """
    if self.verified_count[model_hash] > 0:
        return STATUS_JOB_VERIFIED
    if self.attestations_of_count[model_hash] > 0:
        return STATUS_DECLARED
    return STATUS_NONE


@view
@external
def is_job_verified(model_hash: bytes32) -> bool:
    """
    @notice Whether the model is the committed output of at least one Finalized Tessera job.
    @param model_hash The model.
    @return True when it has a JobVerified attestation.
    """
    return self.verified_count[model_hash] > 0


@view
@external
def attestation_id_of(model_hash: bytes32, index: uint256) -> uint256:
    """
    @notice The id of the model's `index`-th attestation (0 = its first).
    @param model_hash The model.
    @param index 0 .. attestations_of_count(model_hash) - 1.
    @return The attestation id (0 when out of range).
    """
    return self._attestation_ids[model_hash][index]


@view
@external
def attestation(attestation_id: uint256) -> Attestation:
    """
    @notice One attestation (model, attester, status, job, its submitter and worker, spec, block,
            metadata URI, license).
    @param attestation_id The id.
    @return The attestation; all zero when unknown.
    """
    return self._attestations[attestation_id]


@view
@external
def attestation_parents(attestation_id: uint256) -> DynArray[Parent, MAX_PARENTS]:
    """
    @notice The parents one attestation names.
    @param attestation_id The id.
    @return Parents with relations.
    """
    return self._parents[attestation_id]


@view
@external
def attestation_datasets(attestation_id: uint256) -> DynArray[bytes32, MAX_DATASETS]:
    """
    @notice The datasets one attestation names.
    @param attestation_id The id.
    @return Dataset hashes.
    """
    return self._datasets[attestation_id]


@view
@external
def parents_of(model_hash: bytes32) -> DynArray[Parent, MAX_PARENTS]:
    """
    @notice The parents named by the model's first attestation (every parent of every
            attestation was registered before the model: `attestation_parents` has the rest).
    @param model_hash The model.
    @return Parents (empty for a root or unknown model).
    """
    return self._parents[self._attestation_ids[model_hash][0]]
