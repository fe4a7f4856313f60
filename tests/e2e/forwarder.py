"""A contract-wallet worker for the F-15 scenario: `contracts/test/Forwarder.vy`, deployed from ape's build."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parents[2] / ".build" / "__local__.json"


def _artifact() -> dict[str, Any]:
    contract = json.loads(MANIFEST.read_text())["contractTypes"]["Forwarder"]
    bytecode = contract["deploymentBytecode"]
    return {"abi": contract["abi"], "bytecode": bytecode.get("bytecode") if isinstance(bytecode, dict) else bytecode}


@dataclass
class ForwarderWallet:
    """A deployed Forwarder and its owner: every call it makes has the wallet, not the owner, as sender."""

    w3: Any
    contract: Any
    owner: Any

    @property
    def address(self) -> str:
        return self.contract.address

    @classmethod
    def deploy(cls, w3: Any, deployment: Any, owner: Any) -> "ForwarderWallet":
        from protocol.chain import send_transaction

        artifact = _artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = send_transaction(w3, owner, to=None, data=factory.constructor().data_in_transaction,
                                   description="deploy Forwarder")
        return cls(w3, w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"]), owner)

    def call(self, target: str, data: str) -> Any:
        """Make the wallet call `target` with `data` (reverts are decoded by send_transaction)."""
        from protocol.chain import send_transaction

        payload = self.contract.encode_abi("forward", args=[target, bytes.fromhex(data[2:])])
        return send_transaction(self.w3, self.owner, to=self.address, data=payload,
                                description=f"forward to {target}")
