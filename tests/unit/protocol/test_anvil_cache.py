"""anvil spills old block states to a cache folder it never cleans: ours must not outlive the chain.

Left to itself anvil writes them under ~/.foundry/anvil/tmp, and a full test run left gigabytes
there (enough, over a few runs, to fill the disk). `start_anvil` points each anvil at its own folder.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from protocol.devnet import start_anvil

# anvil keeps the newest few hundred block states in memory and persists older ones: 700 blocks with
# a transaction each are enough to make it spill (measured with anvil 1.7.1: first files near 550).
BLOCKS_TO_SPILL = 700


def _rpc(url: str, method: str, params: list) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


def _fill_blocks(url: str) -> None:
    accounts = _rpc(url, "eth_accounts", [])
    for _ in range(BLOCKS_TO_SPILL):
        _rpc(url, "eth_sendTransaction", [{"from": accounts[0], "to": accounts[1], "value": "0x1"}])


def _files_under(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own, so a state spilled to anvil's default folder would show up here."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_each_anvil_spills_into_a_folder_of_its_own_that_stop_removes(home: Path) -> None:
    anvil = start_anvil()
    cache = anvil.owned_cache
    try:
        assert cache is not None and cache.is_dir()
        _fill_blocks(anvil.rpc_url)
        assert _files_under(cache) > 0, "anvil persisted no old state: raise BLOCKS_TO_SPILL"
        # A state from before the spill is still served (from the cache folder).
        assert int(_rpc(anvil.rpc_url, "eth_getBalance", [_rpc(anvil.rpc_url, "eth_accounts", [])[1], "0x5"]), 16) > 0
    finally:
        anvil.stop()
    assert not cache.exists()
    assert not (home / ".foundry").exists(), "anvil wrote under ~/.foundry despite --cache-path"


def test_a_cache_folder_named_by_the_caller_is_left_to_the_caller(home: Path, tmp_path: Path) -> None:
    cache = tmp_path / "anvil-cache"
    with start_anvil(cache_path=cache) as anvil:
        assert anvil.owned_cache is None
        _fill_blocks(anvil.rpc_url)
    assert _files_under(cache) > 0
    assert not (home / ".foundry").exists()
