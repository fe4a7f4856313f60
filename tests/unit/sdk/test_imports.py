"""The SDK must stay light: no torch and no ape at import time (nor the torch-free referee kit reader and player)."""

from __future__ import annotations

import subprocess
import sys


def test_sdk_imports_without_torch_or_ape() -> None:
    code = (
        "import sys, protocol.chain, protocol.accounts, protocol.abi, protocol.deploy, protocol.events, "
        "protocol.client, protocol.provenance, protocol.screening, protocol.publishing, protocol.store_server, "
        "protocol.referee_kit, worker.referee_player; "
        "heavy = [m for m in ('torch', 'ape', 'engine') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
