"""Shared helpers for the contract tests: deployment, the Job struct as the escrow hashes it,
and a tiny job driver that keeps the struct in step with the chain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from eth_abi import encode
from eth_hash.auto import keccak

from protocol.merkle import merkle_proof, merkle_root

E18 = 10**18
ZERO_ADDRESS = "0x" + "00" * 20
ZERO32 = b"\x00" * 32

# The parameter set of the contract tests (seconds and basis points).
PARAMS = {
    "fee_bps": 250,
    "execution_timeout": 3_600,
    "challenge_window": 3_600,
    "max_segment_seconds": 600,
    "arbiter_window": 3_600,
    "reveal_window": 600,
    "unbonding_delay": 6 * 3_600,
    "expiry_compensation_bps": 2_000,
    "challenge_bond": 10 * E18,
    "challenger_reward_bps": 5_000,
    "submitter_compensation_bps": 3_000,
}
REPLAY_FACTOR = 3
ENV_CLASS = keccak(b"the arbiter's environment class")
SEGMENT_SECONDS = 10

JOB_TYPES = [
    "address", "address", "uint256", "uint256", "bytes32", "uint256", "bytes32", "uint256",
    "uint256", "bytes32", "bytes32", "uint256",
]  # fmt: skip

STATES = {
    "None": 0, "Open": 1, "Claimed": 2, "Committed": 3, "Challenged": 4,
    "Finalized": 5, "Cancelled": 6, "Expired": 7, "Rejected": 8, "Voided": 9,
}  # fmt: skip

# Disputes: claims and statuses (Disputes.vy constants).
KIND = {"segment": 1, "unavailable": 2, "initial": 3, "output": 4}
STATUS = {"filed": 1, "revealed": 2, "worker_wrong": 3, "worker_right": 4, "voided": 5, "closed": 6,
          "unrevealed": 7}


@dataclass(frozen=True)
class Job:
    """The escrow's Job struct, field order as in architecture.md."""

    submitter: str
    worker: str = ZERO_ADDRESS
    payment: int = 0
    collateral: int = 0
    spec_hash: bytes = ZERO32
    num_segments: int = 1
    env_class: bytes = ENV_CLASS
    segment_seconds: int = SEGMENT_SECONDS
    deadline: int = 0
    result_root: bytes = ZERO32
    output_hash: bytes = ZERO32
    challenge_end: int = 0

    def as_tuple(self) -> tuple:
        return (
            self.submitter, self.worker, self.payment, self.collateral, self.spec_hash,
            self.num_segments, self.env_class, self.segment_seconds, self.deadline, self.result_root,
            self.output_hash, self.challenge_end,
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


def deploy_all(project, deployer, arbiter, treasury, token=None, params: dict | None = None,
               env_classes=(ENV_CLASS,), referee: str = ZERO_ADDRESS, refereed_class: bytes = ZERO32) -> Deployment:
    """Deploy and wire the five contracts in the documented order; the arbiter opens `env_classes`
    (no class refereed unless `referee` and `refereed_class` say so)."""
    p = {**PARAMS, **(params or {})}
    if token is None:
        token = deployer.deploy(project.DevToken, "Tessera Dev", "TDEV")
    staking = deployer.deploy(project.Staking, token, p["unbonding_delay"])
    escrow = deployer.deploy(
        project.JobEscrow, token, staking, treasury, p["fee_bps"], p["execution_timeout"],
        p["challenge_window"], p["max_segment_seconds"], p["expiry_compensation_bps"],
    )  # fmt: skip
    disputes = deployer.deploy(
        project.Disputes, escrow, staking, token, treasury, arbiter, p["arbiter_window"], p["reveal_window"],
        p["challenge_bond"], p["challenger_reward_bps"], p["submitter_compensation_bps"], referee, refereed_class,
    )  # fmt: skip
    registry = deployer.deploy(project.ModelRegistry, escrow)
    staking.wire(escrow, disputes, sender=deployer)
    escrow.wire(disputes, sender=deployer)
    for env_class in env_classes:
        escrow.publish_env_class(env_class, "file:///env-class.json", sender=arbiter)
    return Deployment(token, staking, escrow, disputes, registry)


def commitment_of(job_id: int, challenger: str, kind: int, segment: int, salt: bytes) -> bytes:
    """keccak256(abi_encode(job_id, challenger, kind, segment, salt)), as Disputes.file_challenge expects."""
    return keccak(encode(["uint256", "address", "uint8", "uint256", "bytes32"], [job_id, challenger, kind, segment, salt]))


def claim_key(job_id: int, kind: str, segment: int, num_segments: int = 4) -> bytes:
    """The key disputes making one claim compete under for the reward (UNAVAILABLE counts as SEGMENT,
    or as OUTPUT at boundary N)."""
    claim = KIND[kind]
    if kind == "unavailable":
        claim = KIND["output"] if segment == num_segments else KIND["segment"]
    return keccak(encode(["uint256", "uint8", "uint256"], [job_id, claim, segment]))


def reveal_args(job: "Job", hashes: list[bytes], kind: str, segment: int) -> tuple:
    """(h_a, h_b, proof_a, proof_b) of a reveal for `kind` on `segment` of a job with trace `hashes`."""
    if kind == "segment" or (kind == "unavailable" and segment < len(hashes) - 1):
        return hashes[segment], hashes[segment + 1], merkle_proof(hashes, segment), merkle_proof(hashes, segment + 1)
    if kind == "initial":
        return hashes[0], ZERO32, merkle_proof(hashes, 0), []
    return hashes[segment], job.output_hash, merkle_proof(hashes, segment), []


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

    def post(self, submitter, payment=100 * E18, collateral=50 * E18, n=4, spec=b"\x11" * 32, uri="file:///spec",
             env_class=ENV_CLASS, segment_seconds=SEGMENT_SECONDS):
        receipt = self.s.escrow.post(payment, collateral, spec, n, env_class, segment_seconds, uri, sender=submitter)
        job_id = one_event(receipt, self.s.escrow.JobPosted).job_id
        job = Job(submitter=submitter.address, payment=payment, collateral=collateral, spec_hash=spec, num_segments=n,
                  env_class=env_class, segment_seconds=segment_seconds)
        return job_id, job, receipt

    def claim(self, job_id, job, worker):
        receipt = self.s.escrow.claim(job_id, job.as_tuple(), sender=worker)
        deadline = one_event(receipt, self.s.escrow.JobClaimed).deadline
        return job.but(worker=worker.address, deadline=deadline), receipt

    def commit(self, job_id, job, worker, hashes=None, output=b"\x22" * 32, env_class=None, uri="file:///store"):
        hashes = hashes or state_hashes(job.num_segments)
        root = merkle_root(hashes)  # what the escrow must compute from the trace itself
        env_class = job.env_class if env_class is None else env_class
        receipt = self.s.escrow.commit(job_id, job.as_tuple(), hashes, output, env_class, uri, sender=worker)
        end = one_event(receipt, self.s.escrow.JobCommitted).challenge_end
        return job.but(result_root=root, output_hash=output, challenge_end=end), receipt

    # ---- disputes (commit-reveal) ----

    def file(self, job_id, job, challenger, kind="segment", segment=0, salt=b"\x5a" * 32):
        """File a sealed challenge; returns (dispute_id, receipt)."""
        commitment = commitment_of(job_id, challenger.address, KIND[kind], segment, salt)
        receipt = self.s.disputes.file_challenge(job_id, job.as_tuple(), commitment, sender=challenger)
        return one_event(receipt, self.s.disputes.ChallengeFiled).dispute_id, receipt

    def reveal(self, dispute_id, job, challenger, hashes, kind="segment", segment=0, salt=b"\x5a" * 32):
        """Reveal a filed challenge with the proofs its claim needs (mines a block first when needed)."""
        a, b, pa, pb = reveal_args(job, hashes, kind, segment)
        return self.s.disputes.reveal(dispute_id, job.as_tuple(), KIND[kind], segment, salt, a, pa, b, pb,
                                      sender=challenger)

    def challenge(self, job_id, job, challenger, hashes, segment, kind="segment", salt=b"\x5a" * 32):
        """File, mine a block, reveal: one whole challenge. Returns (dispute_id, reveal receipt)."""
        dispute_id, _ = self.file(job_id, job, challenger, kind, segment, salt)
        self.chain.mine()
        return dispute_id, self.reveal(dispute_id, job, challenger, hashes, kind, segment, salt)

    def committed_job(self, submitter, worker, n=4, hashes=None, **post_kwargs):
        job_id, job, _ = self.post(submitter, n=n, **post_kwargs)
        job, _ = self.claim(job_id, job, worker)
        hashes = hashes or state_hashes(n)
        job, _ = self.commit(job_id, job, worker, hashes=hashes)
        return job_id, job, hashes

    def warp(self, seconds: int):
        self.chain.pending_timestamp += seconds
        self.chain.mine()

    def warp_to(self, timestamp: int):
        """Move the next block's timestamp to at least `timestamp`."""
        self.chain.pending_timestamp = max(self.chain.pending_timestamp, timestamp)
        self.chain.mine()


@contextlib.contextmanager
def reverted(w3: Any) -> Iterator[Any]:
    """The chain as it is now, put back afterwards (anvil `evm_snapshot`, then `evm_revert`): a module's
    `chain` fixture wraps each test in it, after the module's contracts are deployed."""
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield w3
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True


def drawn_plans(rules: Any, entry: Any, mirror_checkable: Any, data: Any, outputs: Any = None,
                hints: Any = None) -> Iterator[tuple[Any, int, int, list[Any]]]:  # fmt: skip
    """The mirror-agreement walk of the rules contracts' hypothesis tests, on one drawn entry: for each
    output (every one, or `outputs`) assert that the contract's `output_of` calls it checkable exactly when
    `mirror_checkable(parsed, output)` does; for a checkable one draw an element and yield (parsed skeleton,
    output, element, the reads the contract plans for it, with `hints(data, entry)` if given)."""
    import numpy as np
    from hypothesis import strategies as st

    from protocol.referee_kit import parse_skeleton

    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    for output in range(len(entry.out_shapes)) if outputs is None else outputs:
        checkable = rules.output_of(skeleton, output).call()[1]
        assert checkable == mirror_checkable(parsed, output), (entry.kernel, output)
        if not checkable:
            continue
        element = data.draw(st.integers(0, int(np.prod(entry.out_shapes[output][1])) - 1))
        planned_hints = [] if hints is None else hints(data, entry)
        yield parsed, output, element, rules.plan(skeleton, output, element, planned_hints).call()[2]


def first_step(spec: Any) -> dict[str, Any]:
    """Step 0 of a portable job in segments of one step, as the referee games play it: the state before it, its
    binding, the state roots, its record and the leaves of the state after it."""
    from engine.api import record_first_steps
    from protocol import tensor_commit as tc

    from ..engine.helpers import with_fields

    states, records, bindings = record_first_steps(with_fields(spec, segment_steps=1), None, 1)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    return {"before": states[0], "binding": bindings[0], "roots": roots, "rec": records[0],
            "next_leaves": tc.bound_state_leaves(states[1], bindings[1])}  # fmt: skip



def step_kit(step: dict[str, Any], directory: Any, start_step: int = 0) -> Any:
    """The honest party's dispute kit of a `first_step`-shaped step (its segment starting at `start_step`),
    written to `directory` and read back, as a daemon keeps it."""
    from engine.referee_kit import kit_from_record
    from protocol import referee_kit as rk

    kit = kit_from_record(0, start_step, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(directory / "kit", kit))


def play_element_game(chain: Any, stack: dict[str, Any], step: dict[str, Any], kit: Any, entry: Any, output: int,
                      element: int, wrong: bool, rules: int) -> tuple[int, int]:  # fmt: skip
    """A game over `step` pinned at element `element` of `output` of `entry`, against a defender one bit wrong there
    (`wrong`: the honest challenger catches it) or honest (a lying challenger steers there): it reaches PROOF in
    the rules contract `rules`, the defender proves (the honest one with its kit's arguments, which must be the
    personas'), and the game is decided for the honest party. (prove_element's gas, the whole game's gas.)"""
    from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt

    from .test_referee_game import ARITY, LEVELS

    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    defender = truth
    if wrong:
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
        defender = Side([step["roots"][0], *later], corrupt(rec, entry.index, element, output), step["next_leaves"])
    match = Match(chain, stack, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                  target=entry.index, target_element=element, output=output)  # fmt: skip
    match.play(PROOF, "defender")
    game = match.game()
    assert (game["entry"], game["output"], game["rules"]) == (entry.index, output, rules)
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        proofs, columns = kit.element_proof_args(entry.index, output, element)
        hints = list(kit.element_hints(entry.index, output, element))
        assert (proofs, columns) == tuple(match.element_proof_args()) and hints == match.hints(entry, output, element)
        match.send("defender", "host", "prove_element", match.game_id, kit.entries[entry.index].skeleton, proofs, hints, columns)
    assert match.game()["stage"] == DECIDED and match.ruling() == (True, wrong, False)
    return match.gas["defender"] - before, sum(match.gas.values())


def changed(entry: Any, **fields: Any) -> Any:
    """A recorded entry with some fields replaced (new output shapes get zero roots): a malformed entry to test."""
    import dataclasses

    from protocol import tensor_commit as tc

    if "out_shapes" in fields:
        fields["out_roots"] = (tc.ZERO,) * len(fields["out_shapes"])
    return dataclasses.replace(entry, **fields)


def changed_input(entry: Any, k: int, **fields: Any) -> Any:
    """A recorded entry whose input reference k has some fields replaced (kind, dtype, shape)."""
    import dataclasses

    return changed(entry, inputs=tuple(dataclasses.replace(r, **fields) if i == k else r for i, r in enumerate(entry.inputs)))
