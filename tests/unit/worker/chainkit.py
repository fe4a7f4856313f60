"""Test helpers for the worker runtime: tiny hand-assembled contracts and anvil RPC shortcuts.

The cursor and the outbox need no Tessera contract: a contract that logs its calldata as a topic
and one that always reverts with `Error(string)` exercise everything (logs, reorgs, reverts).
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode
from web3 import Web3

# runtime: LOG1(mem 0..0, topic = calldata[0:32]); STOP
EMITTER_RUNTIME = bytes.fromhex("600035" "6000" "6000" "a1" "00")


def _deploy_code(runtime: bytes) -> bytes:
    """Init code that returns `runtime` (which follows the 12-byte init code)."""
    assert len(runtime) < 256
    init = bytes.fromhex("60") + bytes([len(runtime)]) + bytes.fromhex("600c600039") + bytes.fromhex("60") + bytes(
        [len(runtime)]
    ) + bytes.fromhex("6000f3")
    assert len(init) == 12
    return init + runtime


def reverter_runtime(reason: str) -> bytes:
    """Runtime code that always reverts with `Error(reason)`."""
    payload = bytes.fromhex("08c379a0") + abi_encode(["string"], [reason])
    code = b""
    for offset in range(0, len(payload), 32):
        chunk = payload[offset : offset + 32].ljust(32, b"\0")
        code += b"\x7f" + chunk + b"\x60" + bytes([offset]) + b"\x52"  # PUSH32 chunk PUSH1 off MSTORE
    code += b"\x60" + bytes([len(payload)]) + b"\x60\x00\xfd"  # PUSH1 len PUSH1 0 REVERT
    return code


def deploy(w3: Web3, sender: str, runtime: bytes) -> str:
    """Deploy `runtime` from an unlocked anvil account; return the contract address."""
    tx_hash = w3.eth.send_transaction({"from": sender, "data": "0x" + _deploy_code(runtime).hex()})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 1
    return receipt["contractAddress"]


def emit(w3: Web3, sender: str, emitter: str, topic: int) -> Any:
    """Send a call to the emitter that logs `topic`; return the receipt."""
    data = "0x" + topic.to_bytes(32, "big").hex()
    tx_hash = w3.eth.send_transaction({"from": sender, "to": emitter, "data": data})
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine `blocks` empty blocks."""
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])


def snapshot(w3: Web3) -> str:
    return w3.provider.make_request("evm_snapshot", [])["result"]


def revert(w3: Web3, snap: str) -> None:
    assert w3.provider.make_request("evm_revert", [snap])["result"] is True


def set_automine(w3: Web3, on: bool) -> None:
    w3.provider.make_request("evm_setAutomine", [on])
