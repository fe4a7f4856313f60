"""A model that does not fit a built-in dataset is refused when its spec is loaded (audit F-12), by the
same rules the engine applies when a run starts: `protocol.builtin_data` against `parse_dataset`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import tensors_io
from engine.datasets import BUILTIN_DATASETS as SHIPPED, builtin_dataset_bytes, builtin_dataset_hash
from engine.training import parse_dataset
from protocol.builtin_data import BUILTIN_DATASETS, dataset_fit_problems
from protocol.errors import EngineError, SpecError
from protocol.spec import load_spec, output_shape

OTHER_HASH = "0x" + "ab" * 32  # a dataset the protocol knows nothing about: the spec loads, the engine judges


def test_facts_are_those_of_the_shipped_bytes() -> None:
    assert {facts.name for facts in BUILTIN_DATASETS.values()} == set(SHIPPED)
    for name in SHIPPED:
        facts = BUILTIN_DATASETS[builtin_dataset_hash(name)]
        assert facts.name == name
        tensors, _ = tensors_io.decode(builtin_dataset_bytes(name), name)
        assert set(facts.splits) == {key.split("_")[0] for key in tensors}
        for split, data in facts.splits.items():
            x, y = tensors[f"{split}_x"], tensors[f"{split}_y"]
            assert data.rows == x.shape[0] == y.shape[0]
            assert (data.x_dtype, data.x_shape) == (str(x.dtype).removeprefix("torch."), tuple(x.shape[1:]))
            assert (data.y_dtype, data.y_shape) == (str(y.dtype).removeprefix("torch."), tuple(y.shape[1:]))
            assert data.x_max == (None if x.is_floating_point() else int(x.max()))
            assert data.y_max == (None if y.is_floating_point() else int(y.max()))
            assert x.is_floating_point() or int(x.min()) >= 0
            assert y.is_floating_point() or int(y.min()) >= 0


def _digits_model(width: int, dtype: str, classes: int) -> dict:
    return {"input_shape": [width], "input_dtype": dtype, "layers": (
        [{"type": "embedding", "num_embeddings": 20, "embedding_dim": 4}, {"type": "flatten"},
         {"type": "linear", "in_features": 4 * width, "out_features": classes}] if dtype == "int64" else
        [{"type": "linear", "in_features": width, "out_features": classes}])}


def _text_model(length: int, vocab: int, classes: int) -> dict:
    return {"input_shape": [length], "input_dtype": "int64", "layers": [
        {"type": "embedding", "num_embeddings": vocab, "embedding_dim": 8},
        {"type": "linear", "in_features": 8, "out_features": classes}]}


def mostly(good, *bad):  # every field usually fits, so both verdicts are drawn often
    return st.sampled_from([good] * (2 * len(bad)) + list(bad))


@st.composite
def cases(draw):
    dataset = draw(st.sampled_from(sorted(SHIPPED)))
    if dataset == "digits":
        model = _digits_model(draw(mostly(64, 63, 65)), draw(mostly("float32", "int64")), draw(mostly(10, 9, 11)))
    else:
        model = _text_model(draw(mostly(32, 31)), draw(mostly(26, 25, 40)), draw(mostly(26, 25, 30)))
    return model, dataset


@settings(max_examples=80, deadline=None)
@given(case=cases(), loss=mostly("cross_entropy", "mse"), kind=st.sampled_from(["train", "eval"]),
       batch_size=mostly(16, 845, 846, 1_437, 1_438))
def test_the_spec_refuses_exactly_what_the_engine_would_refuse(case, loss, kind, batch_size) -> None:
    model, dataset = case
    base = {"version": 1, "kind": kind, "model": model, "loss": loss, "batch_size": batch_size}
    if kind == "train":
        base.update(optimizer={"name": "sgd", "lr": 0.1}, steps=2, segment_steps=1)
    else:
        base.update(init_weights={"hash": OTHER_HASH})
    unknown = load_spec({**base, "dataset": {"hash": OTHER_HASH}})
    try:
        parse_dataset(unknown, builtin_dataset_bytes(dataset))
        engine_refuses = False
    except EngineError:
        engine_refuses = True
    problems = dataset_fit_problems(unknown, BUILTIN_DATASETS[builtin_dataset_hash(dataset)],
                                    output_shape(unknown.model))
    assert bool(problems) == engine_refuses, problems
    builtin = {**base, "dataset": {"hash": builtin_dataset_hash(dataset), "uris": [f"builtin://{dataset}"]}}
    if engine_refuses:
        with pytest.raises(SpecError, match="dataset: "):
            load_spec(builtin)
    else:
        load_spec(builtin)


def test_the_worker_builds_checkpoint_0_for_every_input_the_spec_could_not_check() -> None:
    """Only a built-in *dataset* is checked with the spec: its hash named as initial weights is not."""
    from engine.datasets import builtin_dataset_ref
    from engine.presets import digits_spec
    from worker.worker import _inputs_unchecked

    constant = {"name": "constant"}
    assert not _inputs_unchecked(digits_spec(steps=2, segment_steps=1, schedule=constant))
    weights_named_digits = digits_spec(steps=2, segment_steps=1, schedule=constant, kind="finetune",
                                       init_weights=builtin_dataset_ref("digits").model_dump())
    assert _inputs_unchecked(weights_named_digits)
