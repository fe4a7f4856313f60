"""Token-id datasets with attention masks and the causal_lm loss: validation, the loss's definition,
masked positions not counting, and a short training run through run_spec."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import tensors_io
from engine.api import run_spec
from engine.lm_data import IGNORE, causal_lm_loss, next_token_targets
from engine.model import build_model
from engine.training import Job
from protocol.artifacts import LocalStore
from protocol.errors import EngineError, SpecError
from protocol.spec import ArtifactRef, load_spec

from ..engine.helpers import examples, tiny_gpt
from .lm_helpers import T, VOCAB, lm_dataset, lm_spec, padded_ids, tiny_llama_model


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_targets_are_the_next_real_token() -> None:
    ids = torch.tensor([[5, 6, 7, 0], [1, 2, 3, 4]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert next_token_targets(ids, mask).tolist() == [[6, 7, IGNORE, IGNORE], [2, 3, 4, IGNORE]]
    assert next_token_targets(ids, None).tolist() == [[6, 7, 0, IGNORE], [2, 3, 4, IGNORE]]


def test_loss_is_the_token_weighted_mean_over_counted_positions() -> None:
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, 2, IGNORE, IGNORE], [3, 4, 5, IGNORE]])
    logp = torch.log_softmax(logits, dim=-1)
    by_hand = -(logp[0, 0, 1] + logp[0, 1, 2] + logp[1, 0, 3] + logp[1, 1, 4] + logp[1, 2, 5]) / 5
    assert math.isclose(float(causal_lm_loss(logits, targets)), float(by_hand), rel_tol=1e-6)


_MODEL = build_model(load_spec({"version": 1, "kind": "infer", "model": tiny_llama_model(),
                                "init_weights": {"hash": "0x" + "0" * 64}, "inputs": {"hash": "0x" + "1" * 64}}).model, 7)  # fmt: skip


@settings(max_examples=examples(15), deadline=None)
@given(seed=st.integers(0, 2**31), fill=st.integers(0, VOCAB - 1))
def test_padding_ids_do_not_change_the_loss(seed: int, fill: int) -> None:
    ids, mask = padded_ids(3, seed)
    repadded = torch.where(mask == 1, ids, fill)
    targets = next_token_targets(ids, mask)
    assert torch.equal(targets, next_token_targets(repadded, mask))
    with torch.no_grad():
        assert torch.equal(causal_lm_loss(_MODEL(ids), targets), causal_lm_loss(_MODEL(repadded), targets))


def _bad_dataset(store: LocalStore, **tensors: torch.Tensor) -> ArtifactRef:
    return ArtifactRef(hash=store.put(tensors_io.encode(tensors)))


@pytest.mark.parametrize("tensors, message", [
    ({"train_input_ids": torch.full((4, T), VOCAB)}, "token ids outside"),
    ({"train_input_ids": torch.zeros(4, T, dtype=torch.int32)}, "must be int64"),
    ({"train_input_ids": torch.zeros(4, T + 1, dtype=torch.int64)}, "must be int64"),
    ({"train_input_ids": torch.zeros(4, T, dtype=torch.int64), "train_attention_mask": torch.full((4, T), 2)}, "only 0 and 1"),
    ({"train_input_ids": torch.zeros(4, T, dtype=torch.int64),
      "train_attention_mask": torch.tensor([[0] + [1] * (T - 1)] * 4)}, "padding must be trailing"),
    ({"train_input_ids": torch.zeros(4, T, dtype=torch.int64),
      "train_attention_mask": torch.tensor([[1] + [0] * (T - 1)] * 4)}, "at least 2 real tokens"),
    ({"train_x": torch.zeros(4, T, dtype=torch.int64), "train_y": torch.zeros(4, T, dtype=torch.int64)}, "causal_lm dataset holds"),
])  # fmt: skip
def test_bad_datasets_are_refused_with_a_clear_error(store, tensors, message) -> None:
    spec = lm_spec(_bad_dataset(store, **tensors))
    with pytest.raises(EngineError, match=message):
        Job(spec, store, "cpu")


def test_specs_that_cannot_be_causal_lm_are_refused(store) -> None:
    with pytest.raises(SpecError, match="causal_lm"):  # a built-in dataset of x/y pairs
        load_spec(tiny_gpt(loss="causal_lm").model_dump(mode="json"))
    assert lm_spec(lm_dataset(store), arithmetic="portable/1").arithmetic == "portable/1"  # since step 3


def test_training_lowers_the_loss_and_eval_reports_perplexity(store) -> None:
    spec = lm_spec(lm_dataset(store), steps=6, segment_steps=3)
    result = run_spec(spec, store)
    curve = result.metrics["loss_curve"]
    assert len(curve) == 6 and curve[-1] < curve[0]
    assert math.isclose(result.metrics["test_perplexity"], math.exp(result.metrics["test_loss"]), rel_tol=1e-9)
    assert 0 <= result.metrics["test_accuracy"] <= 1 and result.metrics["test_tokens"] > 0


def test_a_tokenizer_is_pinned_by_hash_and_absent_from_older_specs_bytes(store) -> None:
    dataset = lm_dataset(store)
    plain = lm_spec(dataset)
    assert b"tokenizer" not in plain.canonical_bytes()  # older specs keep their hash
    pinned = lm_spec(dataset, tokenizer={"hash": "0x" + "ab" * 32})
    assert pinned.spec_hash() != plain.spec_hash()
    assert run_spec(pinned, store).output_hash  # never fetched: the store does not hold it


_TRAILING = st.integers(0, T).map(lambda length: [1] * length + [0] * (T - length))
_ANY_ROW = st.lists(st.integers(0, 1), min_size=T, max_size=T)


@settings(max_examples=examples(25), deadline=None)
@given(rows=st.lists(st.one_of(_TRAILING, _TRAILING, _ANY_ROW), min_size=1, max_size=4), data=st.data())
def test_the_parser_accepts_exactly_trailing_padding_and_shifts_by_one(rows, data) -> None:
    from engine.lm_data import parse_lm_dataset

    mask = torch.tensor(rows)
    ids = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=T, max_size=T),
                                          min_size=len(rows), max_size=len(rows))))  # fmt: skip
    spec = lm_spec(ArtifactRef(hash="0x" + "0" * 64), batch_size=1)
    valid = all(row == sorted(row, reverse=True) and sum(row) >= 2 for row in rows)
    if not valid:
        with pytest.raises(EngineError):
            parse_lm_dataset(spec, {"train_input_ids": ids, "train_attention_mask": mask})
        return
    parsed = parse_lm_dataset(spec, {"train_input_ids": ids, "train_attention_mask": mask})
    for n, row in enumerate(rows):
        expected = [int(ids[n, t + 1]) if row[t + 1] else IGNORE for t in range(T - 1)] + [IGNORE]
        assert parsed["train_y"][n].tolist() == expected
    assert torch.equal(parsed["train_x"], ids)
