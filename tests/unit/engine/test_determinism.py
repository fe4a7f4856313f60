"""Same spec, same bits: repeated runs, replays of random segments, host thread settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import replay_segment, run_spec
from protocol.artifacts import LocalStore
from protocol.hashing import from_hex, to_hex
from protocol.merkle import merkle_root

from .helpers import examples, tiny_cnn, tiny_digits, tiny_gpt

SPECS = {"mlp": tiny_digits, "cnn": tiny_cnn, "gpt": tiny_gpt}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("store"))
    return store, {name: (make(), run_spec(make(), store)) for name, make in SPECS.items()}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_two_runs_same_root(runs, tmp_path, name) -> None:
    _, results = runs
    spec, first = results[name]
    second = run_spec(spec, LocalStore(tmp_path))  # a fresh store: nothing shared but the spec
    assert second.state_hashes == first.state_hashes
    assert second.result_root == first.result_root
    assert second.output_hash == first.output_hash
    assert second.fingerprint_hash == first.fingerprint_hash
    assert first.result_root == to_hex(merkle_root([from_hex(h) for h in first.state_hashes]))
    assert len(first.state_hashes) == spec.num_segments + 1
    assert len(set(first.state_hashes)) == len(first.state_hashes)  # training moved the state every segment


def test_seed_changes_everything(runs, tmp_path) -> None:
    _, results = runs
    spec, first = results["mlp"]
    other = run_spec(tiny_digits(seed=spec.seed + 1), LocalStore(tmp_path))
    assert other.state_hashes[0] != first.state_hashes[0]
    assert other.result_root != first.result_root


@settings(max_examples=examples(6), deadline=None)
@given(st.sampled_from(sorted(SPECS)), st.data())
def test_replay_of_random_segments_matches_trace(runs, name, data) -> None:
    store, results = runs
    spec, result = results[name]
    segment = data.draw(st.integers(0, spec.num_segments - 1), label="segment")
    reached = replay_segment(spec, store, segment, result.state_hashes[segment])
    assert reached == result.state_hashes[segment + 1]


RUN_IN_CHILD = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[2]))  # the host's own choice; the engine must override it
from engine.api import run_spec
from protocol.artifacts import LocalStore
from protocol.spec import load_spec
result = run_spec(load_spec(sys.argv[1]), LocalStore(sys.argv[3]))
print(json.dumps({"root": result.result_root, "threads": torch.get_num_threads(),
                  "fp": result.fingerprint["cpu_threads"]}))
"""


@pytest.mark.parametrize("pinned", [2])  # host 1 vs 2 threads; the spec pins 2
def test_cpu_hashes_do_not_depend_on_host_threads(tmp_path, pinned) -> None:
    spec = tiny_gpt(resources={"cpu_threads": pinned}, batch_size=8)
    path = tmp_path / "spec.json"
    path.write_bytes(spec.canonical_bytes())
    outputs = []
    for host_threads in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(host_threads), "MKL_NUM_THREADS": str(host_threads)}
        done = subprocess.run(
            [sys.executable, "-c", RUN_IN_CHILD, str(path), str(host_threads), str(tmp_path / f"s{host_threads}")],
            env=env, capture_output=True, text=True, timeout=240, check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0]["root"] == outputs[1]["root"]
    assert outputs[0]["threads"] == outputs[1]["threads"] == pinned
    assert outputs[0]["fp"] == pinned
