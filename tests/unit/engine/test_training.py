"""Training, the other kinds, and every kind of bad input: typed errors, never a crash."""

from __future__ import annotations

import re
import time

import pytest
import torch
from hypothesis import given, settings

from engine import tensors_io
from engine.api import RunResult, replay_segment, run_spec, select_device
from engine.datasets import builtin_dataset_ref
from engine.model import build_model
from engine.presets import digits_spec
from engine.training import epoch_permutation
from protocol.artifacts import LocalStore
from protocol.errors import (
    ArtifactError, CheckpointError, EngineError, HashMismatchError, RunStoppedError, SpecError,
)  # fmt: skip
from protocol.hashing import sha256_hex
from protocol.spec import ModelSpec, estimate_parameters, load_spec, output_shape

from ..protocol.spec_strategies import valid_models
from .helpers import examples, tiny_digits, with_fields


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_digits_job_reaches_90_percent_held_out(store) -> None:
    spec = digits_spec(device="cpu")
    started = time.monotonic()
    result = run_spec(spec, store)
    assert result.metrics["test_accuracy"] >= 0.90, result.metrics
    assert result.metrics["test_examples"] == 360
    assert time.monotonic() - started < 60
    assert result.metrics["loss_curve"][-1] < result.metrics["loss_curve"][0]
    # every committed artifact is in the store under its hash
    for digest in [*result.state_hashes, result.output_hash, result.fingerprint_hash]:
        assert sha256_hex(store.get(digest)) == digest
    weights = tensors_io.load_weights(store.get(result.output_hash))
    assert set(weights) == {"layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"}


def test_on_segment_and_should_stop(store) -> None:
    spec = tiny_digits()
    seen: list[tuple[int, str]] = []
    result = run_spec(spec, store, on_segment=lambda i, h: seen.append((i, h)))
    assert seen == list(enumerate(result.state_hashes))
    calls = []

    def stop_after_five() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(RunStoppedError, match="before step 5"):
        run_spec(spec, store, should_stop=stop_after_five)


def diverging_spec(store):
    """Linear regression on targets 100x the inputs with SGD at lr 1: finite for three segments, then
    the loss overflows in segment 3 (of 6)."""
    x = torch.linspace(-1, 1, 64 * 32).reshape(32, 64)
    digest = store.put(tensors_io.encode({"train_x": x, "train_y": x[:, :2] * 100}))
    return load_spec({
        "version": 1, "kind": "train", "loss": "mse", "device": "cpu",
        "model": {"input_shape": [64], "layers": [{"type": "linear", "in_features": 64, "out_features": 2}]},
        "dataset": {"hash": digest}, "optimizer": {"name": "sgd", "lr": 1.0},
        "batch_size": 8, "steps": 24, "segment_steps": 4,
    })  # fmt: skip


def test_divergence_is_the_runs_result_and_replays_the_same(store) -> None:
    """F-12: a NaN or infinite loss is the spec's deterministic result, not a failure: the trace is finite up to
    the boundary where the diverging segment began and DIVERGED_HASH after it, the output is DIVERGED_HASH,
    a second run gives the same trace, and replaying the diverging segment from its checkpoint diverges
    again (so a verifier can check the claim), while the segment before it replays to its boundary."""
    from engine.api import replay_checkpoint_bytes
    from protocol.errors import DivergedError
    from protocol.hashing import DIVERGED_HASH

    spec = diverging_spec(store)
    run = run_spec(spec, store)
    began = run.metrics["diverged_in_segment"]
    assert 0 < began < spec.num_segments - 1
    assert run.state_hashes[: began + 1] == [h for h in run.state_hashes[: began + 1] if h != DIVERGED_HASH]
    assert run.state_hashes[began + 1 :] == [DIVERGED_HASH] * (spec.num_segments - began)
    assert run.output_hash == DIVERGED_HASH and re.search(r"loss is (nan|inf)", run.metrics["diverged"])
    assert run_spec(spec, store).state_hashes == run.state_hashes
    with pytest.raises(DivergedError):
        replay_checkpoint_bytes(spec, store, began, store.get(run.state_hashes[began]))
    reached, _ = replay_checkpoint_bytes(spec, store, began - 1, store.get(run.state_hashes[began - 1]))
    assert reached == run.state_hashes[began]


def test_oversized_model_rejected_before_allocation(store) -> None:
    huge = digits_spec(device="cpu").model_dump(mode="json")
    huge["model"] = {"input_shape": [64], "layers": [
        {"type": "linear", "in_features": 64, "out_features": 65_536},
        {"type": "linear", "in_features": 65_536, "out_features": 65_536}]}  # 4.3e9 parameters, 17 GB
    started = time.monotonic()
    with pytest.raises(SpecError, match="parameters"):
        run_spec(huge, store)
    assert time.monotonic() - started < 5


def test_missing_cuda_is_an_engine_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    with pytest.raises(EngineError, match="no CUDA device"):
        select_device("cuda")
    with pytest.raises(EngineError, match="requires device cpu"):
        select_device("cpu", "cuda")
    assert select_device("any") == "cpu"


def test_dataset_hash_mismatch_and_missing(store) -> None:
    wrong = with_fields(tiny_digits(), dataset={"hash": "0x" + "34" * 32, "uris": ["builtin://digits"]})
    with pytest.raises(HashMismatchError):
        run_spec(wrong, store)
    nowhere = with_fields(tiny_digits(), dataset={"hash": "0x" + "12" * 32})
    with pytest.raises(ArtifactError, match="could not be fetched"):
        run_spec(nowhere, store)


def test_dataset_shape_mismatch(store) -> None:
    # tinytext is int64 [N, 32]; the digits MLP wants float32 [N, 64]: refused with the spec, and by the
    # engine for the same tensors outside the built-in dataset
    with pytest.raises(SpecError, match="dataset: tinytext train_x is int64"):
        with_fields(tiny_digits(), dataset=builtin_dataset_ref("tinytext").model_dump())
    text_like = store.put(tensors_io.encode({"train_x": torch.zeros(40, 32, dtype=torch.int64),
                                             "train_y": torch.zeros(40, 32, dtype=torch.int64)}))
    spec = with_fields(tiny_digits(), dataset={"hash": text_like})
    with pytest.raises(EngineError, match="dtype|shape"):
        run_spec(spec, store)


def test_replay_with_bad_checkpoints(store) -> None:
    spec = tiny_digits()
    result = run_spec(spec, store)
    with pytest.raises(ArtifactError, match="not found"):
        replay_segment(spec, store, 1, "0x" + "34" * 32)
    # a checkpoint of another segment, named by its true hash
    with pytest.raises(CheckpointError, match="boundary 2, not 1"):
        replay_segment(spec, store, 1, result.state_hashes[2])
    # valid safetensors, correct hash, but not canonical / not a checkpoint
    good = store.get(result.state_hashes[1])
    tensors, metadata = tensors_io.decode(good)
    from safetensors.torch import save

    other = store.put(save(tensors, metadata))
    with pytest.raises(CheckpointError, match="canonical"):
        replay_segment(spec, store, 1, other)
    # tampered bytes stored under the honest hash
    store.path_of(result.state_hashes[1]).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(HashMismatchError):
        replay_segment(spec, store, 1, result.state_hashes[1])
    with pytest.raises(EngineError, match="outside"):
        replay_segment(spec, store, spec.num_segments, result.state_hashes[0])


def test_finetune_infer_eval_chain(store) -> None:
    base = run_spec(tiny_digits(), store)
    weights = {"hash": base.output_hash, "uris": [store.uri]}
    tuned_spec = with_fields(tiny_digits(), kind="finetune", init_weights=weights)
    tuned = run_spec(tuned_spec, store)
    assert tuned.state_hashes[0] != base.state_hashes[0]
    assert replay_segment(tuned_spec, store, 2, tuned.state_hashes[2]) == tuned.state_hashes[3]

    inputs = store.put(tensors_io.encode({"x": torch.rand(5, 64)}))
    infer_spec = with_fields(tiny_digits(), kind="infer", init_weights=weights, inputs={"hash": inputs},
                             dataset=None, optimizer=None, steps=0, schedule={"name": "constant"})
    infer = run_spec(infer_spec, store)
    assert infer.num_segments == 1 and len(infer.state_hashes) == 2
    outputs = tensors_io.load_weights(store.get(infer.output_hash))["y"]
    assert list(outputs.shape) == [5, 10]
    assert replay_segment(infer_spec, store, 0, infer.state_hashes[0]) == infer.state_hashes[1]

    eval_spec = with_fields(infer_spec, kind="eval", inputs=None, dataset=builtin_dataset_ref("digits").model_dump())
    evaluated = run_spec(eval_spec, store)
    assert 0.0 <= evaluated.metrics["test_accuracy"] <= 1.0
    assert run_spec(eval_spec, LocalStore(store.root / "again")).output_hash == evaluated.output_hash


def test_weights_that_do_not_fit_are_rejected(store) -> None:
    digest = store.put(tensors_io.encode({"layers.0.weight": torch.zeros(3, 3)}))
    spec = with_fields(tiny_digits(), kind="finetune", init_weights={"hash": digest})
    with pytest.raises(EngineError, match="do not fit the model"):
        run_spec(spec, store)


def test_epoch_permutation_is_a_permutation() -> None:
    order = epoch_permutation(7, 3, 1000)
    assert sorted(order.tolist()) == list(range(1000))
    assert order.tolist() != epoch_permutation(7, 4, 1000).tolist()
    assert order.tolist() == epoch_permutation(7, 3, 1000).tolist()


@settings(max_examples=examples(25), deadline=None)
@given(valid_models)
def test_generated_models_build_with_the_predicted_size(model_data) -> None:
    model_spec = ModelSpec.model_validate(model_data)
    model = build_model(model_spec, 0)
    assert sum(p.numel() for p in model.parameters()) == estimate_parameters(model_spec)
    if model_spec.input_dtype == "int64":
        x = torch.zeros(2, *model_spec.input_shape, dtype=torch.int64)
    else:
        x = torch.rand(2, *model_spec.input_shape)
    model.eval()
    with torch.no_grad():
        assert list(model(x).shape) == [2, *output_shape(model_spec)]


def test_run_result_is_json_ready(store) -> None:
    result = run_spec(tiny_digits(), store)
    again = RunResult.model_validate_json(result.model_dump_json())
    assert again == result


def test_wall_clock_limit(store) -> None:
    spec = with_fields(tiny_digits(), resources={"max_wall_s": 1e-6})
    with pytest.raises(EngineError, match="max_wall_s"):
        run_spec(spec, store)


def test_non_finite_checkpoint_is_the_workers_fault(store) -> None:
    spec = tiny_digits()
    result = run_spec(spec, store)
    tensors, metadata = tensors_io.decode(store.get(result.state_hashes[1]))
    tensors["param/layers.0.bias"][0] = float("nan")
    poisoned = store.put(tensors_io.encode(tensors, metadata))
    with pytest.raises(CheckpointError, match="NaN"):
        replay_segment(spec, store, 1, poisoned)


def test_long_loss_curves_are_thinned(store) -> None:
    result = run_spec(tiny_digits(steps=2_500, segment_steps=500, batch_size=4), store)
    assert len(result.metrics["loss_curve"]) <= 1_000 and result.metrics["loss_curve_every"] == 3


def test_device_selection_logic_with_cuda_present(monkeypatch) -> None:
    """The CUDA branch of device selection (this host has no GPU, so availability is simulated)."""
    import engine.determinism as determinism

    monkeypatch.setattr(determinism, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("any") == "cuda"
    assert select_device("cuda") == "cuda"
    assert select_device("any", "cpu") == "cpu"
    assert select_device("cuda", "cuda:1") == "cuda:1"
    with pytest.raises(EngineError, match="no CUDA device cuda:2"):
        select_device("cuda", "cuda:2")
    with pytest.raises(EngineError, match="unknown device"):
        select_device("any", "tpu")


def test_cuda_needs_the_cublas_workspace_setting(monkeypatch) -> None:
    from engine.determinism import configure

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with pytest.raises(EngineError, match="CUBLAS_WORKSPACE_CONFIG"):
        configure("cuda", 1)


def test_interrupted_run_resumes_to_the_same_trace(store, tmp_path) -> None:
    spec = tiny_digits()
    fresh = run_spec(spec, LocalStore(tmp_path / "fresh"))
    recorded: list[str] = []
    steps_seen = []

    def crash_in_segment_three() -> bool:
        steps_seen.append(1)
        return len(steps_seen) > 7  # steps 0..6 run: boundaries 0, 1, 2 are stored

    with pytest.raises(RunStoppedError):
        run_spec(spec, store, on_segment=lambda i, h: recorded.append(h), should_stop=crash_in_segment_three)
    assert recorded == fresh.state_hashes[:3]
    later: list[int] = []
    resumed = run_spec(spec, store, resume_hashes=recorded, on_segment=lambda i, h: later.append(i))
    assert resumed.state_hashes == fresh.state_hashes
    assert resumed.result_root == fresh.result_root and resumed.output_hash == fresh.output_hash
    assert later == [3, 4] and resumed.metrics["resumed_from_boundary"] == 2
    # a damaged latest checkpoint falls back to the one before it
    store.path_of(recorded[2]).write_bytes(b"garbage")
    assert run_spec(spec, store, resume_hashes=recorded).metrics["resumed_from_boundary"] == 1
    # someone else's trace is never trusted
    other = run_spec(tiny_digits(seed=99), LocalStore(tmp_path / "other"))
    restarted = run_spec(spec, store, resume_hashes=other.state_hashes[:2])
    assert "resumed_from_boundary" not in restarted.metrics and restarted.result_root == fresh.result_root
