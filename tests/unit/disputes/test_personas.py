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
    elif name in ("honest", tampering.CORRUPT_OP):  # corrupt-op's lie is in its run, not in its commit
        assert changed == args


def test_a_claimed_h100_fingerprint_keeps_the_portable_class_and_leaves_a_native_one():
    """--claim-device h100 rewrites only machine fields: a portable run stays in its class, a native run
    would land in another (so that persona could only commit portable jobs)."""
    from engine.determinism import env_class_descriptor, env_class_hash, portable_env_class
    from personas.fingerprints import describe_as

    cpu = {"engine": "tessera-engine/1", "torch": "2.5.1", "machine": "x86_64", "device_type": "cpu",
           "deterministic_algorithms": True, "cpu_threads": 1, "cpu_capability": "AVX2",
           "float32_matmul_precision": "highest", "device_name": "cpu", "device_capability": None,
           "mkldnn": True, "cpu_features": "0123456789abcdef"}
    gpu = describe_as({**cpu, "arithmetic": "portable/1"}, "h100")
    assert gpu["device_type"] == "cuda" and "H100" in gpu["device_name"] and "cpu_features" not in gpu
    assert env_class_hash(env_class_descriptor(gpu)) == portable_env_class("portable/1")[1]
    assert env_class_hash(env_class_descriptor(describe_as(cpu, "h100"))) != env_class_hash(env_class_descriptor(cpu))


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
