"""protocol.spec: validation with field paths, canonical bytes, hashing, size estimates."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import SpecError
from protocol.spec import (
    MAX_SEGMENTS, TaskSpec, canonical_json, estimate_activation_elements, estimate_parameters, load_spec,
    output_shape, spec_json_schema,
)  # fmt: skip

from .spec_strategies import HASH, examples, json_values, valid_specs

BASE = {
    "version": 1, "kind": "train",
    "model": {"input_shape": [64], "layers": [
        {"type": "linear", "in_features": 64, "out_features": 32}, {"type": "relu"},
        {"type": "linear", "in_features": 32, "out_features": 10}]},
    "dataset": {"hash": HASH}, "optimizer": {"name": "adamw", "lr": 0.003},
    "steps": 100, "segment_steps": 30, "batch_size": 16,
}  # fmt: skip


def spec_with(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def test_valid_spec_and_segments() -> None:
    spec = load_spec(BASE)
    assert spec.num_segments == 4  # 30 + 30 + 30 + 10
    assert spec.segment_bounds(3) == (90, 100)
    assert estimate_parameters(spec) == 64 * 32 + 32 + 32 * 10 + 10
    assert output_shape(spec.model) == [10]
    with pytest.raises(SpecError):
        spec.segment_bounds(4)


def test_canonical_bytes_are_sorted_compact_and_stable() -> None:
    spec = load_spec(BASE)
    raw = spec.canonical_bytes()
    assert b" " not in raw and b"\n" not in raw
    assert raw == canonical_json(json.loads(raw))
    assert load_spec(raw) == spec and load_spec(raw).canonical_bytes() == raw
    reordered = json.dumps(dict(reversed(list(BASE.items()))), indent=3)
    assert load_spec(reordered).spec_hash() == spec.spec_hash()
    assert spec.spec_hash().startswith("0x") and len(spec.spec_hash()) == 66
    assert load_spec(spec_with(seed=1)).spec_hash() != spec.spec_hash()


def test_the_arithmetic_is_bound_by_the_hash_and_native_keeps_old_hashes() -> None:
    native = load_spec(BASE)
    assert b"arithmetic" not in native.canonical_bytes()  # specs written before the field hash as before
    assert load_spec(spec_with(arithmetic="native")).spec_hash() == native.spec_hash()
    portable = load_spec(spec_with(arithmetic="portable/1"))
    assert b'"arithmetic":"portable/1"' in portable.canonical_bytes()
    assert portable.spec_hash() != native.spec_hash()  # a commit for one cannot pass as the other's
    assert load_spec(portable.canonical_bytes()) == portable
    with pytest.raises(SpecError):
        load_spec(spec_with(arithmetic="portable/0"))


def test_every_problem_is_listed_with_its_path() -> None:
    bad = spec_with(batch_size=0, colour="red")
    bad["model"]["layers"][2]["in_features"] = 31
    bad["optimizer"]["lr"] = "fast"
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    message = str(info.value)
    assert "batch_size: " in message and "colour: Extra inputs" in message and "optimizer.adamw.lr" in message


def test_shape_mismatch_names_the_field() -> None:
    bad = copy.deepcopy(BASE)
    bad["model"]["layers"][2]["in_features"] = 31
    with pytest.raises(SpecError, match=r"model\.layers\[2\]\.in_features: is 31 but .* 32"):
        load_spec(bad)


def test_unknown_layer_is_rejected() -> None:
    bad = copy.deepcopy(BASE)
    bad["model"]["layers"].insert(1, {"type": "python_lambda", "code": "import os"})
    with pytest.raises(SpecError, match=r"model\.layers\[1\].*python_lambda"):
        load_spec(bad)


def test_oversized_model_rejected_by_limit_before_allocation() -> None:
    big = copy.deepcopy(BASE)
    big["model"] = {"input_shape": [65_536], "layers": [
        {"type": "linear", "in_features": 65_536, "out_features": 65_536}]}
    with pytest.raises(SpecError, match="parameters"):
        load_spec(big)  # 4.3e9 parameters: refused here, nothing allocated anywhere
    small_limit = spec_with(resources={"max_parameters": 100})
    with pytest.raises(SpecError, match="max_parameters = 100"):
        load_spec(small_limit)


def test_kind_requirements() -> None:
    with pytest.raises(SpecError, match="init_weights: required for kind finetune"):
        load_spec(spec_with(kind="finetune"))
    with pytest.raises(SpecError, match="inputs: required for kind infer"):
        load_spec(spec_with(kind="infer", steps=0, optimizer=None, dataset=None, init_weights={"hash": HASH}))
    infer = load_spec(spec_with(kind="infer", steps=0, optimizer=None, dataset=None,
                                init_weights={"hash": HASH}, inputs={"hash": HASH}))
    assert infer.num_segments == 1
    with pytest.raises(SpecError, match="optimizer: required"):
        load_spec(spec_with(optimizer=None))


def test_too_many_segments() -> None:
    with pytest.raises(SpecError, match=f"over the limit {MAX_SEGMENTS}"):
        load_spec(spec_with(steps=MAX_SEGMENTS + 1, segment_steps=1))
    assert load_spec(spec_with(steps=MAX_SEGMENTS, segment_steps=1)).num_segments == MAX_SEGMENTS


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{", b"\xff\xfe", b"null", "{\"version\": 2}", b"[" * 100_000])
def test_garbage_bytes_give_spec_error(raw) -> None:
    with pytest.raises(SpecError):
        load_spec(raw)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "nope.json")
    path = tmp_path / "spec.json"
    path.write_bytes(load_spec(BASE).canonical_bytes())
    assert load_spec(str(path)).spec_hash() == load_spec(BASE).spec_hash()


def test_schema_is_json_and_names_layers() -> None:
    schema = spec_json_schema()
    text = json.dumps(schema)
    for name in ("transformer_block", "conv2d", "segment_steps", "cpu_threads"):
        assert name in text


def test_bools_are_not_numbers() -> None:
    with pytest.raises(SpecError, match="batch_size"):
        load_spec(spec_with(batch_size=True))


def test_estimates_for_gpt() -> None:
    model = {"input_shape": [8], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": 20, "embedding_dim": 16},
        {"type": "positional_embedding", "max_len": 8, "embedding_dim": 16},
        {"type": "transformer_block", "d_model": 16, "n_heads": 4, "d_ff": 32},
        {"type": "linear", "in_features": 16, "out_features": 20}]}  # fmt: skip
    spec = load_spec(spec_with(model=model))
    d, f = 16, 32
    assert estimate_parameters(spec) == 20 * d + 8 * d + (4 * d * d + 4 * d + 4 * d + 2 * d * f + f + d) + d * 20 + 20
    assert output_shape(spec.model) == [8, 20]
    assert estimate_activation_elements(spec) > 0
    bad = copy.deepcopy(model)
    bad["layers"][2]["n_heads"] = 3
    with pytest.raises(SpecError, match=r"n_heads: 3 does not divide"):
        load_spec(spec_with(model=bad))


def test_deep_nesting_rejected() -> None:
    layer: dict = {"type": "relu"}
    for _ in range(12):
        layer = {"type": "sequential", "layers": [layer]}
    with pytest.raises(SpecError, match="nesting deeper"):
        load_spec(spec_with(model={"input_shape": [4], "layers": [layer, {"type": "linear", "in_features": 4, "out_features": 2}]}))


# ---- properties -------------------------------------------------------------------------------


@settings(max_examples=examples(50), deadline=None)
@given(valid_specs())
def test_generated_valid_specs_load_and_round_trip(data: dict) -> None:
    spec = load_spec(data)
    assert load_spec(spec.canonical_bytes()).canonical_bytes() == spec.canonical_bytes()
    assert estimate_parameters(spec) >= 0
    assert 1 <= spec.num_segments <= MAX_SEGMENTS


@settings(max_examples=examples(50), deadline=None)
@given(json_values)
def test_arbitrary_json_never_crashes(value) -> None:
    try:
        load_spec(value if isinstance(value, dict) else json.dumps(value, allow_nan=True).encode())
    except SpecError:
        pass


@settings(max_examples=examples(50), deadline=None)
@given(valid_specs(), st.lists(st.tuples(st.integers(0, 10_000), json_values), min_size=1, max_size=3))
def test_mutated_specs_are_valid_or_spec_error(data: dict, mutations) -> None:
    for where, value in mutations:
        target, key = _pick_slot(data, where)
        target[key] = value
    try:
        spec = load_spec(data)
    except SpecError as exc:
        assert str(exc)
    else:
        assert isinstance(spec, TaskSpec)
        assert load_spec(spec.canonical_bytes()) == spec


def _pick_slot(data: dict, where: int):
    """A (container, key) somewhere inside the nested spec, picked by `where`."""
    slots = []

    def visit(node):
        if isinstance(node, dict):
            for key, child in node.items():
                slots.append((node, key))
                visit(child)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                slots.append((node, index))
                visit(child)

    visit(data)
    return slots[where % len(slots)]


def test_protocol_spec_imports_without_torch() -> None:
    import subprocess

    code = "import sys, protocol.spec, protocol.artifacts, engine.datasets, engine.presets; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_memory_estimate_counts_optimizer_slots() -> None:
    from protocol.spec import estimate_memory_bytes

    adam = load_spec(BASE)
    sgd = load_spec(spec_with(optimizer={"name": "sgd", "lr": 0.1}))
    params = estimate_parameters(adam)
    assert estimate_memory_bytes(adam) - estimate_memory_bytes(sgd) == 2 * 4 * params
    assert estimate_memory_bytes(sgd) >= 4 * 2 * params


def _wide_mlp(width: int, arithmetic: str = "native") -> TaskSpec:
    return load_spec(spec_with(arithmetic=arithmetic, model={"input_shape": [64], "layers": [
        {"type": "linear", "in_features": 64, "out_features": width}, {"type": "relu"},
        {"type": "linear", "in_features": width, "out_features": 10}]}))  # fmt: skip


@given(width=st.integers(1, 65_536))
@settings(max_examples=40, deadline=None)
def test_segment_estimate_covers_fetching_both_checkpoints_at_the_slowest_tolerated_rate(width: int) -> None:
    # a worker may serve a checkpoint at just over the rate a judge's fetch tolerates; the segment's
    # windows (sized from the declared seconds) must leave room for fetching both of its checkpoints
    from protocol.spec import (
        CHECKPOINT_OVERHEAD_BYTES, REPLAY_OVERHEAD_S, estimate_segment_seconds, max_checkpoint_bytes,
    )  # fmt: skip

    spec = _wide_mlp(width)
    tensor_bytes = max_checkpoint_bytes(spec) - CHECKPOINT_OVERHEAD_BYTES
    assert estimate_segment_seconds(spec) - REPLAY_OVERHEAD_S >= 2 * tensor_bytes / 1024**2


@given(width=st.integers(1, 65_536))
@settings(max_examples=40, deadline=None)
def test_portable_segment_estimate_allows_for_the_portable_slowdown(width: int) -> None:
    from protocol.spec import PORTABLE_SLOWDOWN, REFERENCE_FLOPS, estimate_segment_seconds

    native, portable = _wide_mlp(width), _wide_mlp(width, "portable/1")
    compute = 2 * native.segment_steps * (6 * estimate_parameters(native) * native.batch_size
                                          + 10 * estimate_activation_elements(native)) / REFERENCE_FLOPS
    assert estimate_segment_seconds(portable) >= estimate_segment_seconds(native)
    assert estimate_segment_seconds(portable) - estimate_segment_seconds(native) >= (PORTABLE_SLOWDOWN - 1) * compute - 1


def test_the_estimate_assumes_the_rate_fetches_enforce() -> None:
    from protocol.artifacts import MIN_RATE_BYTES_PER_S
    from protocol.spec import CHECKPOINT_FETCH_BYTES_PER_S

    assert CHECKPOINT_FETCH_BYTES_PER_S == MIN_RATE_BYTES_PER_S
