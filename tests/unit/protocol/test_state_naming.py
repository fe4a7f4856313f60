"""Checkpoints named by their state root (protocol.state_naming): a store keeps and serves a portable
checkpoint under its state root and refuses, by that name, any bytes whose recomputed root differs."""

from __future__ import annotations

import pytest

from protocol.artifacts import LocalStore, serve_store
from protocol.errors import HashMismatchError
from protocol.hashing import sha256_hex, to_hex
from protocol.state_naming import StateRootNaming
from protocol.tensor_commit import StateBinding, state_root

BOUND = StateRootNaming(StateBinding(b"\x5a" * 32, 41, 3))


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    from engine.api import initial_checkpoint

    from ..engine.helpers import tiny_digits

    return initial_checkpoint(tiny_digits(arithmetic="portable/1"), None)


def test_a_checkpoint_is_stored_and_fetched_by_its_state_root(tmp_path, checkpoint: bytes) -> None:
    store = LocalStore(tmp_path)
    name = store.put(checkpoint, naming=BOUND)
    assert name == to_hex(state_root(checkpoint, BOUND.binding)) != sha256_hex(checkpoint)
    assert store.has(name) and store.get(name, naming=BOUND) == checkpoint
    assert store.put(checkpoint, naming=BOUND) == name  # idempotent
    with pytest.raises(HashMismatchError):
        store.get(name)  # read as a sha256 name: not this artifact's name


@pytest.mark.parametrize("damage", ["flipped data bit", "trailing bytes", "another skeleton", "another segment"])
def test_bytes_that_do_not_carry_the_root_are_refused_by_name(tmp_path, checkpoint: bytes, damage: str) -> None:
    store = LocalStore(tmp_path)
    name = store.put(checkpoint, naming=BOUND)
    naming = BOUND
    if damage == "flipped data bit":  # still canonical: another root
        store.path_of(name).write_bytes(checkpoint[:-1] + bytes([checkpoint[-1] ^ 1]))
    elif damage == "trailing bytes":  # not canonical: no root at all
        store.path_of(name).write_bytes(checkpoint + bytes(4))
    elif damage == "another skeleton":  # the same bytes, read for a job whose step record is another
        naming = StateRootNaming(StateBinding(b"\x5b" * 32, 41, 3))
    else:  # the same bytes as another boundary's (another segment length in its header)
        naming = StateRootNaming(StateBinding(b"\x5a" * 32, 41, 2))
    with pytest.raises(HashMismatchError):
        store.get(name, naming=naming)


def test_an_http_store_checks_the_root_too(tmp_path, checkpoint: bytes) -> None:
    local = LocalStore(tmp_path)
    name = local.put(checkpoint, naming=BOUND)
    forged = local.put(checkpoint + bytes(8))  # under its sha256: a name the server serves too
    with serve_store(tmp_path) as server:
        from protocol.artifacts import HttpStore

        http = HttpStore(server.url)
        assert http.get(name, naming=BOUND) == checkpoint
        local.path_of(name).write_bytes(local.get(forged))
        with pytest.raises(HashMismatchError):
            http.get(name, naming=BOUND)
