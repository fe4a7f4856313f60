"""Checkpoints named by their state root: h_i of a portable training job (docs/referee.md, section 2).

The level-2/3 referee opens elements of an agreed state through its keccak state root, so a portable
training job's checkpoint i is committed, stored and fetched under `state_root(checkpoint_i, binding_i)`
rather than its sha256. `StateRootNaming(binding)` is the `protocol.artifacts.Naming` of one boundary:
a store recomputes the root from the bytes it reads, so wrong bytes, a non-canonical encoding, or a
header bound to another step record (S, L) or segment length are a HashMismatchError like any wrong
artifact. NumPy only: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.hashing import to_hex
from protocol.tensor_commit import StateBinding, state_root


@dataclass(frozen=True)
class StateRootNaming:
    """Names a checkpoint by its state root under `binding` (the job's S and L, the boundary's
    segment steps: `engine.api.checkpoint_naming` gives a job's)."""

    binding: StateBinding

    def name_of(self, data: bytes) -> str:
        """The 0x state root; CheckpointError for bytes that are not a canonical checkpoint."""
        return to_hex(state_root(data, self.binding))
