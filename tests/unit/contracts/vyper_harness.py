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
APE_BUILD = ROOT / ".build" / "__local__.json"  # `make compile`'s output
# the sources `make compile` last compiled in full (its own stamp: ape alone may leave a contract compiled against
# an older library module, which `make compile` rebuilds: Makefile, LIB_STAMP)
APE_SOURCES = ROOT / ".build" / ".compiled-sources"


def _source_key(relative_path: str) -> str:
    """sha256 over the compiler version, the harness and every library module it may import."""
    import vyper

    digest = hashlib.sha256(vyper.__version__.encode())
    for path in [relative_path, *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "contracts" / "lib").glob("*.vy")))]:
        digest.update(path.encode() + b"\0" + (ROOT / path).read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def all_sources_key() -> str:
    """sha256 over the compiler version and every contract source (contracts/**/*.vy, by path)."""
    import vyper

    digest = hashlib.sha256(vyper.__version__.encode())
    for path in sorted((ROOT / "contracts").rglob("*.vy")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stamp_ape_build() -> None:
    """Record that `make compile` has just compiled every contract from the sources in the checkout (the
    Makefile calls this after `ape compile`, and after its full rebuild when a library module changed)."""
    APE_SOURCES.write_text(all_sources_key())


def _from_ape_build(relative_path: str) -> tuple[list[dict[str, Any]], str] | None:
    """(abi, deployment bytecode) from `make compile`'s output, where it compiled exactly the sources in the
    checkout now (its stamp and the manifest's sources both agree) and holds this contract; else None."""
    if not APE_SOURCES.is_file() or not APE_BUILD.is_file() or APE_SOURCES.read_text().strip() != all_sources_key():
        return None
    manifest = json.loads(APE_BUILD.read_text())
    sources = {name: source.get("content") for name, source in (manifest.get("sources") or {}).items()}
    on_disk = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "contracts").rglob("*.vy")}
    found = (manifest.get("contractTypes") or {}).get(Path(relative_path).stem) or {}
    if sources != on_disk or found.get("sourceId") != relative_path:
        return None
    bytecode = (found.get("deploymentBytecode") or {}).get("bytecode")
    return (found["abi"], bytecode) if bytecode else None


@functools.cache
def compiled(relative_path: str) -> tuple[list[dict[str, Any]], str]:
    """(abi, deployment bytecode) of the contract at `relative_path` (from the repository root), with the
    pinned Vyper: `make compile`'s, where it compiled exactly the current sources (`_from_ape_build`: ape's
    build alone is not trusted, as `ape compile` does not recompile a contract when only a module it imports
    changed), else compiled here and cached under .build/harnesses by the hash of its sources. Shipped and
    deployed bytecode is `make compile`'s (protocol/abi), so the tests run what is deployed; the compiler
    alone gives the same code (tests/unit/sdk/test_abi.py)."""
    cached = CACHE / f"{Path(relative_path).stem}-{_source_key(relative_path)}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
        return data["abi"], data["bytecode"]
    built = _from_ape_build(relative_path)
    if built is not None:
        abi, bytecode = built
    else:
        result = subprocess.run([sys.executable, "-m", "vyper", "-f", "abi,bytecode", relative_path], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        abi_line, bytecode = result.stdout.strip().splitlines()
        abi, bytecode = json.loads(abi_line), bytecode.strip()
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps({"abi": abi, "bytecode": bytecode}))
    partial.replace(cached)
    return abi, bytecode


def deploy(w3: Any, relative_path: str, *args: Any) -> Any:
    """Deploy the contract at `relative_path` with constructor arguments `args` from anvil's last unlocked
    account (no persona's nonce moves); returns the web3 contract."""
    abi, bytecode = compiled(relative_path)
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": w3.eth.accounts[-1]}))
    assert receipt.status == 1, f"deploying {relative_path} failed"
    return w3.eth.contract(address=receipt.contractAddress, abi=abi)


def deploy_element_referee(w3: Any) -> Any:
    """ElementReferee.vy over a ClipReferee.vy of its own: every element rule, as RefereeGame calls them."""
    return deploy(w3, "contracts/ElementReferee.vy", deploy(w3, "contracts/ClipReferee.vy").address)


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


if __name__ == "__main__":  # `python -m tests.unit.contracts.vyper_harness stamp` (the Makefile's compile)
    if sys.argv[1:] != ["stamp"]:
        raise SystemExit("usage: python -m tests.unit.contracts.vyper_harness stamp")
    stamp_ape_build()
