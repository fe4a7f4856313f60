"""Compile a test-only Vyper harness with the pinned compiler and deploy it on the session anvil.

The referee-arithmetic tests call pure functions in large batches; anvil (revm) runs those eth_calls
far faster than ape's in-process EVM, so these harnesses are deployed with web3 on the root conftest's
anvil instead of through ape's `project` fixture.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
CALL_GAS = 30_000_000  # anvil's block gas limit: the most one batch may use


CACHE = ROOT / ".build" / "harnesses"  # compiled test harnesses, keyed by their sources (git-ignored)


def _source_key(relative_path: str) -> str:
    """sha256 over the compiler version, the harness and every library module it may import."""
    import vyper

    digest = hashlib.sha256(vyper.__version__.encode())
    for path in [relative_path, *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "contracts" / "lib").glob("*.vy")))]:
        digest.update(path.encode() + b"\0" + (ROOT / path).read_bytes() + b"\0")
    return digest.hexdigest()[:20]


@functools.cache
def compiled(relative_path: str) -> tuple[list[dict[str, Any]], str]:
    """(abi, deployment bytecode) of the contract at `relative_path` (from the repository root), compiled
    with the pinned Vyper and cached under .build/harnesses by the hash of its sources. (ape's own build
    is not used: `ape compile` does not recompile a contract when only a module it imports changed.)"""
    cached = CACHE / f"{Path(relative_path).stem}-{_source_key(relative_path)}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
        return data["abi"], data["bytecode"]
    result = subprocess.run([sys.executable, "-m", "vyper", "-f", "abi,bytecode", relative_path], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    abi_line, bytecode = result.stdout.strip().splitlines()
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps({"abi": json.loads(abi_line), "bytecode": bytecode.strip()}))
    partial.replace(cached)
    return json.loads(abi_line), bytecode.strip()


def deploy(w3: Any, relative_path: str) -> Any:
    """Deploy the contract at `relative_path` from anvil's last unlocked account (no persona's nonce moves);
    returns the web3 contract."""
    abi, bytecode = compiled(relative_path)
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": w3.eth.accounts[-1]}))
    assert receipt.status == 1, f"deploying {relative_path} failed"
    return w3.eth.contract(address=receipt.contractAddress, abi=abi)


def _selector(contract: Any, name: str) -> bytes:
    from eth_hash.auto import keccak

    entry = next(item for item in contract.abi if item.get("type") == "function" and item["name"] == name)
    signature = f"{name}({','.join(arg['type'] for arg in entry['inputs'])})"
    return keccak(signature.encode())[:4]


def _words(values: np.ndarray) -> bytes:
    """Non-negative integers below 2**64 as 32-byte big-endian ABI words."""
    out = np.zeros((len(values), 32), dtype=np.uint8)
    out[:, 24:] = np.asarray(values, dtype=np.uint64).astype(">u8").view(np.uint8).reshape(-1, 8)
    return out.tobytes()


def batch_call(contract: Any, name: str, *args: int | np.ndarray) -> np.ndarray:
    """eth_call `name(args)` with ABI encoding and decoding done in NumPy (web3's per-element path is ~100x
    slower at a thousand elements). An int is a static word; an array a dynamic array of unsigned words
    below 2**64. The function must return one dynamic array of unsigned words below 2**64."""
    head, tail = [], []
    offset = 32 * len(args)
    for arg in args:
        if isinstance(arg, np.ndarray):
            head.append(_words(np.array([offset])))
            encoded = _words(np.array([len(arg)])) + _words(arg)
            tail.append(encoded)
            offset += len(encoded)
        else:
            head.append(_words(np.array([arg])))
    data = _selector(contract, name) + b"".join(head) + b"".join(tail)
    raw = contract.w3.eth.call({"to": contract.address, "data": "0x" + data.hex(), "gas": CALL_GAS})
    words = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(-1, 32)
    length = int.from_bytes(words[1].tobytes(), "big")
    return words[2 : 2 + length, 24:].copy().view(">u8").reshape(-1).astype(np.uint64)
