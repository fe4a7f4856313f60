"""The dishonest personas change exactly what they say, and the production worker never imports them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personas import tampering
from protocol.artifacts import LocalStore
from protocol.errors import ConfigError
from protocol.hashing import sha256_hex


def honest_args(store: LocalStore, n: int) -> dict:
    hashes = [store.put(f"checkpoint {i} of {n}".encode()) for i in range(n + 1)]
    return {"state_hashes": hashes, "output_hash": store.put(b"weights"), "env_class": "0x" + "ee" * 32,
            "artifact_uri": store.uri}


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), name=st.sampled_from(tampering.BEHAVIOURS))
def test_each_persona_changes_what_it_says(tmp_path_factory, n, name):
    store = LocalStore(tmp_path_factory.mktemp("store"))
    args = honest_args(store, n)
    changed = tampering.apply(name, args, store, tmp_path_factory.mktemp("held"))
    honest, lied = args["state_hashes"], changed["state_hashes"]
    assert len(lied) == n + 1 and lied[0] == honest[0]  # h_0 is always the spec's (F-06 is tested elsewhere)
    if name in ("fake-trace", "foreign-environment"):
        assert all(a != b for a, b in zip(lied[1:], honest[1:])) and changed["output_hash"] != args["output_hash"]
        assert (changed["env_class"] != args["env_class"]) == (name == "foreign-environment")
    elif name == "tamper-segment":
        j = tampering.tampered_index(n)
        assert [i for i in range(n + 1) if lied[i] != honest[i]] == [j]
    elif name in ("withhold-checkpoint", "late-checkpoint"):
        assert lied == honest and not store.has(honest[tampering.withheld_index(n)])
    elif name == "wrong-output":
        assert lied == honest and changed["output_hash"] != args["output_hash"]


def test_a_late_checkpoint_comes_back(tmp_path):
    store = LocalStore(tmp_path / "store")
    args = honest_args(store, 4)
    held = tmp_path / "held"
    tampering.apply("late-checkpoint", args, store, held)
    missing = args["state_hashes"][tampering.withheld_index(4)]
    assert not store.has(missing)
    assert tampering.release_held(store, held) == 1
    assert store.has(missing) and sha256_hex(store.get(missing)) == missing


def test_unknown_behaviour_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown worker behaviour"):
        tampering.apply("lazy", honest_args(LocalStore(tmp_path), 2), LocalStore(tmp_path))


def test_production_code_never_imports_the_personas():
    code = ("import sys; import worker.worker, worker.verifier, worker.arbiter, protocol.cli.main; "
            "assert not [m for m in sys.modules if m.startswith('personas')]; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
