"""Fingerprints a worker persona can claim for its run: the machine fields of another device.

A portable job's class holds no machine field, so a run on this CPU described as an H100's is still in the
job's class: the e2e test shows the real CPU verifier and arbiter judge such a commit by its bits alone.
Tests only; production code never imports this package.
"""

from __future__ import annotations

from typing import Any

from protocol.errors import ConfigError

# What engine.determinism.environment_fingerprint records on an H100 (device fields; CPU-only ones dropped).
DEVICES: dict[str, dict[str, Any]] = {
    "h100": {
        "device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "device_capability": [9, 0],
        "cuda": "12.4", "cudnn": 90100, "cudnn_deterministic": True, "cudnn_benchmark": False,
        "tf32_matmul": False, "tf32_cudnn": False, "cublas_workspace_config": ":4096:8",
    },
}
CPU_ONLY_FIELDS = ("mkldnn", "cpu_features")


def check_device(name: str | None) -> None:
    if name is not None and name not in DEVICES:
        raise ConfigError(f"unknown device to claim {name!r}: expected one of {', '.join(DEVICES)}")


def describe_as(fingerprint: dict[str, Any], device: str) -> dict[str, Any]:
    """`fingerprint` with its machine fields replaced by `device`'s (the arithmetic and engine kept)."""
    check_device(device)
    changed = {k: v for k, v in fingerprint.items() if k not in CPU_ONLY_FIELDS}
    changed.update(DEVICES[device])
    return changed
