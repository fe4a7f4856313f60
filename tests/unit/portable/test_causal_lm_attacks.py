"""Attacks on the causal-LM loss's refereeing (docs/referee.md, "The causal-LM loss") that the spec must close."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from protocol.errors import SpecError
from protocol.spec import MAX_LM_COUNTED, load_spec


def _spec(positions: int, batch: int, **overrides: Any) -> Any:
    """A cheap causal LM (no attention, so the activation limit allows 2^16 examples of a thousand positions)."""
    layers = [{"type": "embedding", "num_embeddings": 4, "embedding_dim": 4}, {"type": "rmsnorm", "normalized_shape": 4},
              {"type": "lm_head", "d_model": 4, "vocab_size": 4, "tie_to_embedding": False}]  # fmt: skip
    return load_spec({"version": 1, "kind": "train", "model": {"input_shape": [positions], "input_dtype": "int64", "layers": layers},
                      "dataset": {"hash": "0x" + "11" * 32}, "loss": "causal_lm", "optimizer": {"name": "adamw", "lr": 0.01},
                      "batch_size": batch, "steps": 4, "segment_steps": 2, "device": "cpu", "arithmetic": "portable/1",
                      "resources": {"max_activation_elements": 10_000_000_000}, **overrides})  # fmt: skip


def test_a_portable_lm_batch_that_could_count_more_rows_than_binary32_holds_is_refused() -> None:
    """The referee proves R_c as a binary32 fold of ones (RowRules' count, arity 0), which stops at 2^24 (2^24 + 1
    rounds back to 2^24), while the engine records float(R_c) (2^24 + 2 is a binary32): past 2^24 counted rows an
    honest worker's count, and the mean and dz over it, could not be proven, so a challenger would win against it.
    A batch of B examples of T positions counts at most B·(T − 1) rows (the last position never counts)."""
    ones = np.float32(2**24)
    for _ in range(4):
        ones = np.float32(ones + np.float32(1))
    assert ones == np.float32(2**24) != np.float32(2**24 + 4)  # the fold of ones stops; float(R_c) does not
    assert _spec(257, 65_536).batch_size * 256 == MAX_LM_COUNTED  # exactly 2^24 counted rows at most: exact
    with pytest.raises(SpecError, match="count must be exact in binary32"):
        _spec(1024, 65_536)
    with pytest.raises(SpecError, match="count must be exact in binary32"):
        _spec(258, 65_536)
    assert _spec(1024, 65_536, arithmetic="native").batch_size == 65_536  # no referee, no binary32 count
