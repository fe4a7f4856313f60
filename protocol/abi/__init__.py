"""Contract ABIs and bytecode shipped as package data, so the SDK works without ape or a compiler.

Each `protocol/abi/<Name>.json` is `{"abi": [...], "bytecode": "0x…", "runtime_bytecode": "0x…",
"compiler": "vyper 0.4.3"}`, generated from `ape compile` output by `python -m protocol.abi.export`
(`make abi`). A unit test recompiles and fails when these files drift from the contracts.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from protocol.errors import DeploymentError

ABI_DIR = Path(__file__).resolve().parent
CONTRACT_NAMES = ("DevToken", "Staking", "JobEscrow", "Disputes", "ModelRegistry",
                  "Bisection", "TensorDescent", "ClipReferee", "ElementReferee", "StateLink", "HostRules", "FoldRules", "RowRules",
                  "DataRules", "ScalarRules", "RowPieceRules", "RefereeGame")  # the last twelve: the referee stack


@lru_cache(maxsize=None)
def load_artifact(name: str) -> dict[str, Any]:
    """The shipped JSON of contract `name` (cached); `DeploymentError` when it is not shipped."""
    if name not in CONTRACT_NAMES:
        raise DeploymentError(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    path = ABI_DIR / f"{name}.json"
    if not path.is_file():
        raise DeploymentError(f"no ABI shipped for {name} ({path}); run `make abi` after `ape compile`")
    data = json.loads(path.read_text(encoding="utf8"))
    if not isinstance(data.get("abi"), list) or not str(data.get("bytecode", "")).startswith("0x"):
        raise DeploymentError(f"{path} is not an ABI artifact (needs 'abi' list and '0x' bytecode)")
    return data


def load_abi(name: str) -> list:
    """ABI (list of entries) of contract `name`."""
    return load_artifact(name)["abi"]


def load_bytecode(name: str) -> str:
    """Deployment (init) bytecode of contract `name`, `0x…`."""
    return load_artifact(name)["bytecode"]


def load_runtime_bytecode(name: str) -> str:
    """Runtime bytecode of contract `name` (`0x…`; immutables are appended after it on chain)."""
    return load_artifact(name).get("runtime_bytecode", "0x")


def compiler_version(name: str) -> str:
    """Compiler that produced the shipped bytecode, e.g. `vyper 0.4.3`."""
    return load_artifact(name).get("compiler", "unknown")
