"""Shared helpers for the contract tests: deployment, the Job struct as the escrow hashes it,
and a tiny job driver that keeps the struct in step with the chain."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from eth_abi import encode
from eth_hash.auto import keccak

from protocol.merkle import merkle_proof, merkle_root

E18 = 10**18
ZERO_ADDRESS = "0x" + "00" * 20
ZERO32 = b"\x00" * 32

# The local parameter set (seconds and basis points).
PARAMS = {
    "fee_bps": 250,
    "execution_timeout": 3_600,
    "challenge_window": 3_600,
    "arbiter_window": 3_600,
    "unbonding_delay": 4 * 3_600,
    "expiry_compensation_bps": 2_000,
    "challenge_bond": 10 * E18,
    "challenger_reward_bps": 5_000,
    "submitter_compensation_bps": 3_000,
}

JOB_TYPES = [
    "address", "address", "uint256", "uint256", "bytes32", "uint256",
    "uint256", "bytes32", "bytes32", "bytes32", "uint256",
]  # fmt: skip

STATES = {
    "None": 0, "Open": 1, "Claimed": 2, "Committed": 3, "Challenged": 4,
    "Finalized": 5, "Cancelled": 6, "Expired": 7, "Rejected": 8,
}  # fmt: skip


@dataclass(frozen=True)
class Job:
    """The escrow's Job struct, field order as in architecture.md."""

    submitter: str
    worker: str = ZERO_ADDRESS
    payment: int = 0
    collateral: int = 0
    spec_hash: bytes = ZERO32
    num_segments: int = 1
    deadline: int = 0
    result_root: bytes = ZERO32
    output_hash: bytes = ZERO32
    fingerprint: bytes = ZERO32
    challenge_end: int = 0

    def as_tuple(self) -> tuple:
        return (
            self.submitter, self.worker, self.payment, self.collateral, self.spec_hash,
            self.num_segments, self.deadline, self.result_root, self.output_hash,
            self.fingerprint, self.challenge_end,
        )  # fmt: skip

    def record(self, state: int) -> bytes:
        """The word the escrow stores: keccak256(abi_encode(job)), low byte = state."""
        digest = keccak(encode(JOB_TYPES, list(self.as_tuple())))
        return digest[:31] + bytes([state])

    def but(self, **changes: Any) -> "Job":
        return replace(self, **changes)


@dataclass
class Deployment:
    token: Any
    staking: Any
    escrow: Any
    disputes: Any
    registry: Any


def deploy_all(project, deployer, arbiter, treasury, token=None, params: dict | None = None) -> Deployment:
    """Deploy and wire the five contracts in the documented order."""
    p = {**PARAMS, **(params or {})}
    if token is None:
        token = deployer.deploy(project.DevToken, "Tessera Dev", "TDEV")
    staking = deployer.deploy(project.Staking, token, p["unbonding_delay"])
    escrow = deployer.deploy(
        project.JobEscrow, token, staking, treasury, p["fee_bps"], p["execution_timeout"],
        p["challenge_window"], p["expiry_compensation_bps"],
    )  # fmt: skip
    disputes = deployer.deploy(
        project.Disputes, escrow, staking, token, treasury, arbiter, p["arbiter_window"],
        p["challenge_bond"], p["challenger_reward_bps"], p["submitter_compensation_bps"],
    )  # fmt: skip
    registry = deployer.deploy(project.ModelRegistry, escrow)
    staking.wire(escrow, disputes, sender=deployer)
    escrow.wire(disputes, sender=deployer)
    return Deployment(token, staking, escrow, disputes, registry)


def state_hashes(n_segments: int, salt: int = 0) -> list[bytes]:
    """Deterministic stand-ins for h_0 … h_N."""
    return [keccak(b"state" + salt.to_bytes(4, "big") + i.to_bytes(4, "big")) for i in range(n_segments + 1)]


def one_event(receipt, event_type):
    """The single decoded log of `event_type` in `receipt` (fails when there is not exactly one)."""
    logs = list(receipt.decode_logs(event_type))
    assert len(logs) == 1, f"expected one {event_type.name}, got {len(logs)}"
    return logs[0]


class JobDriver:
    """Drives one job through the escrow, keeping the Python struct equal to the chain's."""

    def __init__(self, system: Deployment, chain):
        self.s = system
        self.chain = chain

    def post(self, submitter, payment=100 * E18, collateral=50 * E18, n=4, spec=b"\x11" * 32, uri="file:///spec"):
        receipt = self.s.escrow.post(payment, collateral, spec, n, uri, sender=submitter)
        job_id = one_event(receipt, self.s.escrow.JobPosted).job_id
        job = Job(submitter=submitter.address, payment=payment, collateral=collateral, spec_hash=spec, num_segments=n)
        return job_id, job, receipt

    def claim(self, job_id, job, worker):
        receipt = self.s.escrow.claim(job_id, job.as_tuple(), sender=worker)
        deadline = one_event(receipt, self.s.escrow.JobClaimed).deadline
        return job.but(worker=worker.address, deadline=deadline), receipt

    def commit(self, job_id, job, worker, hashes=None, output=b"\x22" * 32, fp=b"\x33" * 32, uri="file:///store"):
        hashes = hashes or state_hashes(job.num_segments)
        root = merkle_root(hashes)  # what the escrow must compute from the trace itself
        receipt = self.s.escrow.commit(job_id, job.as_tuple(), hashes, output, fp, uri, sender=worker)
        end = one_event(receipt, self.s.escrow.JobCommitted).challenge_end
        return job.but(result_root=root, output_hash=output, fingerprint=fp, challenge_end=end), receipt

    def challenge(self, job_id, job, verifier, hashes, segment):
        return self.s.disputes.challenge(
            job_id, job.as_tuple(), segment, hashes[segment], merkle_proof(hashes, segment),
            hashes[segment + 1], merkle_proof(hashes, segment + 1), sender=verifier,
        )  # fmt: skip

    def committed_job(self, submitter, worker, n=4, hashes=None, **post_kwargs):
        job_id, job, _ = self.post(submitter, n=n, **post_kwargs)
        job, _ = self.claim(job_id, job, worker)
        hashes = hashes or state_hashes(n)
        job, _ = self.commit(job_id, job, worker, hashes=hashes)
        return job_id, job, hashes

    def warp(self, seconds: int):
        self.chain.pending_timestamp += seconds
        self.chain.mine()
