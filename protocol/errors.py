"""One exception hierarchy for the whole project.

Every error a user can cause or meet (bad input, chain trouble, a reverted transaction) is a
`TesseraError`; the CLI prints its message on one line and exits non-zero, without a traceback.
Subsystems add subclasses here, next to their siblings, so callers can catch by family.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base of every error Tessera raises on purpose. `exit_code` is what the CLI returns."""

    exit_code: int = 1


class SpecError(TesseraError):
    """A task spec or model description is malformed, unsafe or over its limits."""

    exit_code = 2


class HashMismatchError(TesseraError):
    """Bytes did not hash to the content hash they were fetched or declared under."""


class ArtifactError(TesseraError):
    """An artifact could not be stored or fetched (missing, too large, bad URI, transport failure)."""


class StoreWriteError(ArtifactError):
    """Our own store could not write an artifact (disk full, permissions): a failure of our side, never
    of the artifact or of whoever served it, so the daemons retry it instead of blaming a job."""


class EngineError(TesseraError):
    """Training, inference or replay failed (shape mismatch, NaN loss, missing CUDA, ...)."""


class ChainError(TesseraError):
    """The chain could not be reached or answered something unusable."""


class RpcUnreachableError(ChainError):
    """The RPC endpoint did not answer within its timeout."""


class EventsMismatchError(ChainError):
    """A job's events rebuild a record other than the one the escrow stores at the same block: the node's log
    index lagging its state (a moment, under load), or logs missed or reorged away."""


class NotFoundError(ChainError):
    """The chain holds no such record (an unregistered model); exit code 1, like any fact read from the chain."""


class TransactionUnconfirmedError(ChainError):
    """A signed transaction may be on the network, but its outcome is unknown (the RPC failed after signing,
    or no receipt came in time). It is kept in the transaction journal under `tx_hash`; running the same
    command again follows it instead of sending a second one."""

    def __init__(self, message: str, *, tx_hash: str, nonce: int, state: str, description: str = "",
                 journal: str | None = None):
        super().__init__(message)
        self.tx_hash = tx_hash
        self.nonce = nonce
        self.state = state  # "unknown": the send itself failed; "pending": the node has it, no receipt yet
        self.description = description
        self.journal = journal

    @property
    def json_detail(self) -> dict[str, object]:
        """What `--json` prints for this failure, next to `error`."""
        return {"tx_hash": self.tx_hash, "nonce": self.nonce, "state": self.state,
                "description": self.description, "journal": self.journal}


class JournalError(TesseraError):
    """The transaction journal cannot be read or written (unreadable entry, permissions)."""


class DeploymentError(ChainError):
    """No usable deployment for this chain, or a deployment file is inconsistent with the chain."""


class PreflightError(TesseraError):
    """A transaction would fail (balance, allowance, stake, state, deadline): caught before sending."""


class TransactionRevertedError(ChainError):
    """A transaction or call reverted; `reason` holds the decoded revert string when there is one."""

    def __init__(self, message: str, reason: str | None = None, tx_hash: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.tx_hash = tx_hash


class AccountError(TesseraError):
    """An account could not be loaded: unknown alias, wrong passphrase, unreadable keystore."""


class ConfigError(TesseraError):
    """A configuration file, environment override or flag is invalid."""

    exit_code = 2


class DisputeError(TesseraError):
    """A dispute cannot be raised or ruled as asked (bad segment, proof does not match the root, ...)."""


class TraceUnavailableError(DisputeError):
    """A job's committed trace cannot be used for a dispute (not on chain as expected, or not N + 1 hashes)."""


class CheckpointError(ArtifactError):
    """A checkpoint hashes to its name but is not a valid checkpoint for this spec and segment
    (bad encoding, wrong spec hash, step, tensor names or shapes): the committing worker's fault."""


class DivergedError(EngineError):
    """Training reached a NaN or infinite loss: the spec diverges from this state (deterministically)."""


class RunStoppedError(EngineError):
    """A run was stopped between steps because the caller's `should_stop()` returned true."""


class CommittedTraceError(ChainError):
    """The trace h_0 … h_N of a committed job cannot be read back from its commit transaction's calldata
    (not a direct call to the escrow, not decodable) or does not hash to the committed result root."""
