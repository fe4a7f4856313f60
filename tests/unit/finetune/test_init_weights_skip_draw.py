"""A job that loads `init_weights` does not draw initial values first (they would all be overwritten; in
portable/1 the draw takes about 50 s at 124M parameters), and the skip changes no bit: the result
hashes equal those of a job that drew them first."""

from __future__ import annotations

import pytest

import engine.portable.layers
import engine.training
from engine import tensors_io
from engine.api import run_spec
from engine.model import build_model
from protocol.artifacts import LocalStore
from protocol.spec import ArtifactRef

from .lm_helpers import lm_dataset, lm_spec

LORA = {"rank": 2, "alpha": 4.0, "target_modules": ["q_proj", "v_proj"]}


def _spec(store: LocalStore, arithmetic: str, lora: bool):
    dataset = lm_dataset(store, test=False)
    base = ArtifactRef(hash=store.put(tensors_io.encode(dict(build_model(lm_spec(dataset).model, 11).named_parameters()))))
    return lm_spec(dataset, kind="finetune", init_weights=base.model_dump(), arithmetic=arithmetic,
                   **({"lora": LORA} if lora else {}))  # fmt: skip


@pytest.mark.parametrize(("arithmetic", "lora"), [("native", False), ("native", True), ("portable/1", True)])
def test_skipping_the_draw_changes_no_bit(tmp_path, monkeypatch, arithmetic: str, lora: bool) -> None:
    store = LocalStore(tmp_path / "store")
    spec = _spec(store, arithmetic, lora)
    skipped = run_spec(spec, store)
    monkeypatch.setattr(engine.training, "build_model",
                        lambda *args, **kwargs: build_model(*args, **{**kwargs, "initialise": True}))
    drawn = run_spec(spec, store)
    assert (skipped.state_hashes, skipped.output_hash) == (drawn.state_hashes, drawn.output_hash)


def test_a_portable_job_with_init_weights_never_draws(tmp_path, monkeypatch) -> None:
    store = LocalStore(tmp_path / "store")
    spec = _spec(store, "portable/1", True)

    def refuse(*_args, **_kwargs):
        raise AssertionError("portable initialise ran for a job that loads init_weights")

    monkeypatch.setattr(engine.portable.layers, "initialise", refuse)
    job = engine.training.Job(spec, store, "cpu")
    assert job.step == 0 and job.params  # built, base loaded, adapters added
