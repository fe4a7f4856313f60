"""Small helpers for the SDK tests: a fake committed trace, a posted job, a finished LoRA job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.artifacts import open_store
from protocol.spec import TaskSpec, load_spec

from protocol.hashing import sha256_hex
from protocol.merkle import merkle_root

TOKEN = 10**18


@dataclass
class Trace:
    state_hashes: list[str]
    result_root: str
    output: bytes
    output_hash: str
    fingerprint: bytes
    fingerprint_hash: str


def make_trace(num_segments: int, seed: int = 0) -> Trace:
    """A made-up but self-consistent trace h_0..h_N with an output and a fingerprint."""
    states = [sha256_hex(f"state {seed} {i}".encode()) for i in range(num_segments + 1)]
    root = "0x" + merkle_root([bytes.fromhex(h[2:]) for h in states]).hex()
    output = f"weights of run {seed}".encode() * 10
    fingerprint = json.dumps({"device": "cpu", "seed": seed}, sort_keys=True, separators=(",", ":")).encode()
    return Trace(states, root, output, sha256_hex(output), fingerprint, sha256_hex(fingerprint))


def spec_hash_for(label: str) -> str:
    return sha256_hex(label.encode())


BASE = "0x" + "ba" * 32
DATASET = "0x" + "da" * 32


def tiny_llama() -> dict[str, Any]:
    return {"input_shape": [8], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": 24, "embedding_dim": 16},
        {"type": "decoder_block", "d_model": 16, "n_heads": 4, "n_kv_heads": 2, "d_ff": 24},
        {"type": "rmsnorm", "normalized_shape": 16, "eps": 1e-5},
        {"type": "lm_head", "d_model": 16, "vocab_size": 24, "tie_to_embedding": False}]}  # fmt: skip


def lm_spec(kind: str = "finetune", lora: bool = True, base: str = BASE) -> TaskSpec:
    data: dict[str, Any] = {
        "version": 1, "kind": kind, "model": tiny_llama(), "dataset": {"hash": DATASET}, "loss": "causal_lm",
        "optimizer": {"name": "adamw", "lr": 0.01}, "batch_size": 4, "steps": 4, "segment_steps": 2, "device": "cpu"}
    if kind != "train":
        data["init_weights"] = {"hash": base}
    if lora:
        data["lora"] = {"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}
    return load_spec(data)


def finished_job(sub: Any, wk: Any, spec: TaskSpec, store_dir: Path, time_travel: Any, seed: int = 0) -> tuple[int, str]:
    """Post `spec` (stored by hash in a local store, its URI posted), commit a trace, finalize it."""
    store = open_store(str(store_dir))
    assert store.put(spec.canonical_bytes()) == spec.spec_hash()
    trace = make_trace(spec.num_segments, seed=seed)
    job_id = sub.post(4 * TOKEN, 2 * TOKEN, spec.spec_hash(), spec.num_segments, store.uri, segment_seconds=5).job_id
    wk.claim(job_id)
    wk.commit(job_id, trace.state_hashes, trace.output_hash, "file:///s")
    time_travel(40)
    wk.finalize(job_id)
    return job_id, trace.output_hash
