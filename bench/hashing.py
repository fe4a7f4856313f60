"""State-hashing throughput: canonical checkpoint encoding + sha256, against plain hashlib on the
same bytes (sha256, and blake2b as the fastest hash in the standard library; blake3 when installed).

The state path is what a worker pays at every boundary; the baseline is the hash alone, so the gap
is the cost of our canonical encoding.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

STATE_BYTES = 64 * 1024 * 1024
REPEATS = 3


def _best(func) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        begin = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - begin)
    return best


def measure() -> dict[str, dict[str, Any]]:
    """Figures: `hash_gbps` (our state path), `hash_gbps_baseline` (hashlib sha256), blake2b/blake3."""
    import torch

    from engine import tensors_io

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    count = STATE_BYTES // 4 // 8
    tensors = {f"param/layer{i}.weight": torch.rand(count, generator=generator) for i in range(8)}
    data = tensors_io.encode(tensors)
    gigabytes = len(data) / 1e9
    state_s = _best(lambda: hashlib.sha256(tensors_io.encode(tensors)).digest())
    sha_s = _best(lambda: hashlib.sha256(data).digest())
    blake2_s = _best(lambda: hashlib.blake2b(data).digest())
    size = f"{len(data) / 2**20:.0f} MiB of float32 state in 8 tensors, best of {REPEATS}, one thread"
    figures = {
        "hash_gbps": {"value": round(gigabytes / state_s, 3), "unit": "GB/s",
                      "how": f"canonical safetensors encoding + sha256 (the h_i path); {size}"},
        "hash_gbps_baseline": {"value": round(gigabytes / sha_s, 3), "unit": "GB/s",
                               "how": f"hashlib.sha256 alone on the same bytes; {size}"},
        "hash_gbps_blake2b": {"value": round(gigabytes / blake2_s, 3), "unit": "GB/s",
                              "how": f"hashlib.blake2b on the same bytes (reference); {size}"},
    }  # fmt: skip
    try:
        import blake3  # type: ignore[import-not-found]

        blake3_s = _best(lambda: blake3.blake3(data).digest())
        figures["hash_gbps_blake3"] = {"value": round(gigabytes / blake3_s, 3), "unit": "GB/s",
                                       "how": f"blake3 on the same bytes (reference); {size}"}
    except ImportError:
        pass
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
