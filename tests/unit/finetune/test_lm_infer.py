"""Language-model infer (continuation scoring, greedy generation) and eval through run_spec: outputs
defined independently, bound to the final checkpoint, and refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine import tensors_io
from engine.api import extract_output, run_spec
from engine.lm_infer import generate
from engine.model import build_model
from protocol.artifacts import LocalStore
from protocol.errors import EngineError, SpecError
from protocol.spec import ArtifactRef

from .lm_helpers import T, VOCAB, lm_dataset, lm_spec, padded_ids


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _weights(store: LocalStore, spec_model) -> tuple[ArtifactRef, torch.nn.Module]:
    model = build_model(spec_model, 3).eval()
    return ArtifactRef(hash=store.put(tensors_io.encode(dict(model.named_parameters())))), model


def _infer_spec(store: LocalStore, inputs: dict[str, torch.Tensor], lm_infer: dict, **overrides):
    base = lm_spec(lm_dataset(store, test=False))
    weights, model = _weights(store, base.model)
    spec = lm_spec(None, kind="infer", init_weights=weights.model_dump(), optimizer=None, steps=0,
                   segment_steps=1, inputs={"hash": store.put(tensors_io.encode(inputs))}, lm_infer=lm_infer,
                   loss="cross_entropy", batch_size=3, **overrides)  # fmt: skip
    return spec, model


def test_scores_are_sums_of_continuation_log_probs(store) -> None:
    ids, _ = padded_ids(5, seed=4)
    cont = torch.zeros_like(ids)
    cont[:, 3:6] = 1
    cont[0, 6:] = 1
    spec, model = _infer_spec(store, {"input_ids": ids, "continuation_mask": cont}, {"mode": "score"})
    result = run_spec(spec, store)
    scores = tensors_io.decode(store.get(result.output_hash), "out")[0]["y"]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids), dim=-1)
    for n in range(5):
        expected = sum(float(logp[n, t - 1, ids[n, t]]) for t in range(1, T) if cont[n, t])
        assert math.isclose(float(scores[n]), expected, rel_tol=1e-5, abs_tol=1e-5)
    # the output is a function of the final checkpoint (what a verifier re-derives)
    assert extract_output(spec, store, store.get(result.state_hashes[-1])) == store.get(result.output_hash)


def test_greedy_generation_matches_decoding_one_prefix_at_a_time(store) -> None:
    ids = torch.randint(0, VOCAB, (4, T), generator=torch.Generator().manual_seed(9))
    lengths = torch.tensor([1, 3, 5, 2])
    prompt = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).long()
    spec, model = _infer_spec(store, {"input_ids": ids, "attention_mask": prompt}, {"mode": "generate", "max_new_tokens": 3})
    result = run_spec(spec, store)
    tokens = tensors_io.decode(store.get(result.output_hash), "out")[0]["tokens"]
    assert tokens.dtype == torch.int64 and tokens.shape == (4, 3)
    with torch.no_grad():  # reference: run only the real prefix, no padding at all
        for n in range(4):
            prefix = ids[n, : lengths[n]].tolist()
            for _ in range(3):
                padded = torch.tensor([prefix + [0] * (T - len(prefix))])
                prefix.append(int(model(padded)[0, len(prefix) - 1].argmax()))
            assert tokens[n].tolist() == prefix[int(lengths[n]):]
        # what the padding holds never matters
        again = generate(model, torch.where(prompt == 1, ids, 7), prompt, 3)
    assert torch.equal(again, tokens)


@pytest.mark.parametrize("inputs, lm_infer, message", [
    ({"input_ids": torch.zeros(2, T, dtype=torch.int64), "continuation_mask": torch.ones(2, T, dtype=torch.int64)},
     {"mode": "score"}, "position 0"),
    ({"input_ids": torch.zeros(2, T, dtype=torch.int64), "attention_mask": torch.ones(2, T, dtype=torch.int64)},
     {"mode": "generate", "max_new_tokens": 2}, "leaves 0 positions"),
    ({"x": torch.zeros(2, T, dtype=torch.int64)}, {"mode": "score"}, "hold input_ids and continuation_mask"),
])  # fmt: skip
def test_bad_lm_inputs_are_refused(store, inputs, lm_infer, message) -> None:
    spec, _ = _infer_spec(store, inputs, lm_infer)
    with pytest.raises(EngineError, match=message):
        run_spec(spec, store)


def test_bad_lm_infer_specs_are_refused(store) -> None:
    inputs = {"input_ids": torch.zeros(2, T, dtype=torch.int64), "attention_mask": torch.ones(2, T, dtype=torch.int64)}
    with pytest.raises(SpecError, match="max_new_tokens"):
        _infer_spec(store, inputs, {"mode": "generate"})
    with pytest.raises(SpecError, match="room for a prompt"):
        _infer_spec(store, inputs, {"mode": "generate", "max_new_tokens": T})


def test_eval_of_a_language_model_reports_loss_perplexity_and_accuracy(store) -> None:
    dataset = lm_dataset(store)
    weights, _ = _weights(store, lm_spec(dataset).model)
    spec = lm_spec(dataset, kind="eval", init_weights=weights.model_dump(), optimizer=None, steps=0, segment_steps=1)
    metrics = json.loads(store.get(run_spec(spec, store).output_hash))
    assert set(metrics) == {"test_loss", "test_perplexity", "test_accuracy", "test_examples", "test_tokens"}
    assert math.isclose(metrics["test_perplexity"], math.exp(metrics["test_loss"]))
    assert abs(metrics["test_loss"] - math.log(VOCAB)) < 0.5  # an untrained model is near uniform
