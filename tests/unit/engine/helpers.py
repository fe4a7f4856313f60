"""Small specs and datasets for the engine tests (fast: a few steps on tiny models)."""

from __future__ import annotations

from typing import Any

from engine.presets import digits_cnn_spec, digits_spec, tiny_gpt_spec
from protocol.spec import TaskSpec, load_spec


def tiny_digits(**overrides: Any) -> TaskSpec:
    """MLP with dropout on digits: 12 steps in 4 segments of 3."""
    return digits_spec(**{"steps": 12, "segment_steps": 3, "batch_size": 16, "device": "cpu",
                          "schedule": {"name": "cosine", "warmup_steps": 1}, **overrides})


def tiny_cnn(**overrides: Any) -> TaskSpec:
    return digits_cnn_spec(**{"steps": 6, "segment_steps": 2, "batch_size": 8, "device": "cpu", **overrides})


def tiny_gpt(**overrides: Any) -> TaskSpec:
    return tiny_gpt_spec(**{"steps": 6, "segment_steps": 2, "batch_size": 4, "device": "cpu",
                            "schedule": {"name": "linear", "warmup_steps": 2}, **overrides})


def with_fields(spec: TaskSpec, **changes: Any) -> TaskSpec:
    data = spec.model_dump(mode="json")
    data.update(changes)
    return load_spec(data)


def examples(default: int) -> int:
    """Hypothesis example count: `default`, or 40x under TESSERA_HYPOTHESIS_PROFILE=thorough."""
    import os

    return default * 40 if os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough" else default
