"""Hugging Face checkpoints in and out (protocol/hf_import.py, docs/models.md).

Tiny random models are built with `transformers`' own config and model classes (offline; a test-only
dependency), saved with `save_pretrained`, imported, and run by the engine in native arithmetic. The
stated tolerance (docs/models.md): float32 logits within IMPORT_TOLERANCE of transformers' on import,
and an exported directory's logits within the same bound of the engine's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from engine.model import build_model  # noqa: E402
from engine.tensors_io import encode, load_weights  # noqa: E402
from protocol.errors import ConfigError, SpecError  # noqa: E402
from protocol.hf_import import encode_float32, export_hf, import_hf, parameter_shapes, read_hf_checkpoint  # noqa: E402
from protocol.spec import estimate_parameters, load_spec  # noqa: E402

IMPORT_TOLERANCE = 1e-5  # max |logit difference|, float32 (docs/models.md)
VOCAB, SEQ = 61, 12


def _llama_like(kind: str, **extra: Any) -> Any:
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    common.update(extra)
    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[kind]
    return model_class(config_class(**common))


MODELS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=16)),
    "gpt2-untied-gelu": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=16, tie_word_embeddings=False, activation_function="gelu")),
    "llama-gqa-untied": lambda: _llama_like("llama", rope_theta=500.0),
    "llama-tied-biased": lambda: _llama_like("llama", num_key_value_heads=4, tie_word_embeddings=True, attention_bias=True,
                                             mlp_bias=True, head_dim=16),
    "mistral": lambda: _llama_like("mistral", num_key_value_heads=1, sliding_window=None),
    "qwen2": lambda: _llama_like("qwen2", tie_word_embeddings=True),
}


def _save(name: str, directory: Path, **save: Any) -> Any:
    torch.manual_seed(sum(map(ord, name)))
    model = MODELS[name]().eval()
    model.save_pretrained(directory, **save)
    return model


def _engine(imported: Any, arithmetic: str = "native") -> torch.nn.Module:
    """The engine's model (native by default) loaded with the imported init weights through their artifact bytes."""
    model = build_model(imported.model, 0, arithmetic=arithmetic).eval()
    tensors = load_weights(imported.weights_bytes())
    assert set(tensors) == {name for name, _ in model.named_parameters()}
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(tensors[name])
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_imported_logits_match_transformers_and_export_loads_back(name: str, tmp_path: Path) -> None:
    reference = _save(name, tmp_path / "hf")
    imported = import_hf(tmp_path / "hf", seq_len=SEQ)
    assert imported.architecture == type(reference).__name__
    assert estimate_parameters(imported.model) == sum(p.numel() for p in reference.parameters())
    engine = _engine(imported)
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = engine(ids), reference(ids).logits
        assert (ours - theirs).abs().max().item() <= IMPORT_TOLERANCE
        weights = {n: p.detach().numpy() for n, p in engine.named_parameters()}
        export_hf(imported.model, weights, tmp_path / "out")
        back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
        assert (back(ids).logits - ours).abs().max().item() <= IMPORT_TOLERANCE
    again = import_hf(tmp_path / "out", seq_len=SEQ)  # the export is itself importable, to the same weights
    assert all(np.array_equal(again.weights[key], imported.weights[key]) for key in imported.weights)


def test_sharded_checkpoint_imports_to_the_same_weights(tmp_path: Path) -> None:
    _save("llama-gqa-untied", tmp_path / "one")
    _save("llama-gqa-untied", tmp_path / "shards", max_shard_size="20KB")
    assert (tmp_path / "shards" / "model.safetensors.index.json").is_file()
    one, shards = import_hf(tmp_path / "one", seq_len=SEQ), import_hf(tmp_path / "shards", seq_len=SEQ)
    assert one.weights_bytes() == shards.weights_bytes()


def test_bfloat16_checkpoint_is_widened_exactly(tmp_path: Path) -> None:
    reference = _save("qwen2", tmp_path / "f32")
    reference.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    wide = import_hf(tmp_path / "bf16", seq_len=SEQ)
    expected = reference.model.layers[0].self_attn.q_proj.weight.detach().float().numpy()
    assert np.array_equal(wide.weights["layers.1.q_proj.weight"], expected)


def test_numpy_encoding_is_the_engines_canonical_encoding() -> None:
    arrays = {"b.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.ones(5, dtype=np.float32)}
    assert encode_float32(arrays) == encode({k: torch.from_numpy(v) for k, v in arrays.items()})


def test_parameter_names_are_the_engines(tmp_path: Path) -> None:
    _save("gpt2", tmp_path / "hf")
    imported = import_hf(tmp_path / "hf", seq_len=SEQ)
    built = {name: tuple(p.shape) for name, p in build_model(imported.model, 0).named_parameters()}
    assert parameter_shapes(imported.model) == built
    assert "layers.5.weight" not in built  # the tied head owns no weight: the embedding's is shared


def test_tied_head_trains_one_shared_tensor(tmp_path: Path) -> None:
    _save("qwen2", tmp_path / "hf")
    engine = _engine(import_hf(tmp_path / "hf", seq_len=SEQ)).train()
    engine(torch.randint(0, VOCAB, (1, SEQ))).sum().backward()
    embedding = dict(engine.named_parameters())["layers.0.weight"]
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0  # gradients from lookup and head


def _config(tmp_path: Path, name: str) -> tuple[Path, dict[str, Any]]:
    _save(name, tmp_path / "hf")
    return tmp_path / "hf", json.loads((tmp_path / "hf" / "config.json").read_text())


@pytest.mark.parametrize(("name", "change", "message"), [
    ("llama-gqa-untied", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling 'linear'"),
    ("llama-gqa-untied", {"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ("llama-gqa-untied", {"architectures": ["LlamaForSequenceClassification"]}, "LlamaForSequenceClassification"),
    ("llama-gqa-untied", {"auto_map": {"AutoModelForCausalLM": "x.Model"}}, "auto_map"),
    ("llama-gqa-untied", {"model_type": "mistral"}, "model_type"),
    ("mistral", {"sliding_window": 8}, "sliding_window = 8"),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4}, "sliding_window"),
    ("gpt2", {"activation_function": "relu"}, "activation_function 'relu'"),
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ("gpt2", {"n_embd": 48}, "shape"),  # the tensors no longer fit the config
])  # fmt: skip
def test_unsupported_options_are_named(tmp_path: Path, name: str, change: dict[str, Any], message: str) -> None:
    directory, config = _config(tmp_path, name)
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises((ConfigError, SpecError), match=message.replace("(", r"\(")):
        import_hf(directory, seq_len=SEQ)


def test_pickle_only_directory_is_refused_without_opening_it(tmp_path: Path) -> None:
    directory, config = _config(tmp_path, "gpt2")
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin").write_bytes(b"not even read")
    with pytest.raises(ConfigError, match="pickled PyTorch weights .*pytorch_model.bin"):
        import_hf(directory)


def test_unexplained_and_escaping_tensors_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    directory, _ = _config(tmp_path, "llama-gqa-untied")
    tensors = load_file(str(directory / "model.safetensors"))
    save_file({**tensors, "model.layers.9.extra": np.zeros(2, np.float32)}, str(directory / "model.safetensors"))
    with pytest.raises(ConfigError, match="does not explain: model.layers.9.extra"):
        import_hf(directory, seq_len=SEQ)
    with pytest.raises(ConfigError, match="more than its config explains"):  # refused from the headers alone
        read_hf_checkpoint(directory, max_bytes=1_000)
    (directory / "model.safetensors").unlink()
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    with pytest.raises(ConfigError, match="must be a .safetensors file inside"):
        import_hf(directory, seq_len=SEQ)


PORTABLE_TOLERANCE = 1e-4  # portable/1's own exp, tanh, rotary tables: not libm's, so not within 1e-5


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa-untied", "qwen2"])
def test_imported_model_runs_in_portable_arithmetic_close_to_transformers(name: str, tmp_path: Path) -> None:
    reference = _save(name, tmp_path / "hf")
    imported = import_hf(tmp_path / "hf", seq_len=SEQ)
    spec = {"version": 1, "kind": "eval", "model": imported.model.model_dump(mode="json"),
            "dataset": {"hash": "0x" + "11" * 32}, "init_weights": {"hash": "0x" + "22" * 32}}  # fmt: skip
    assert load_spec({**spec, "arithmetic": "portable/1"}).arithmetic == "portable/1"
    engine = _engine(imported, arithmetic="portable/1")
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (engine(ids) - reference(ids).logits).abs().max().item() <= PORTABLE_TOLERANCE


def test_export_refuses_models_without_a_counterpart(tmp_path: Path) -> None:
    from protocol.spec import ModelSpec

    mlp = ModelSpec.model_validate({"input_shape": [4], "layers": [{"type": "linear", "in_features": 4, "out_features": 2}]})
    with pytest.raises(SpecError, match="no Hugging Face counterpart|not in a shape"):
        export_hf(mlp, {}, tmp_path / "out")


def test_cli_import_then_export(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from protocol.cli.main import cli

    _save("llama-gqa-untied", tmp_path / "hf")
    runner = CliRunner(mix_stderr=False)
    result = runner.invoke(cli, ["model", "import", str(tmp_path / "hf"), "--out", str(tmp_path / "frag.json"),
                                 "--store", str(tmp_path / "store"), "--seq-len", str(SEQ), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["architecture"] == "LlamaForCausalLM"
    weights = tmp_path / "store" / summary["init_weights"].removeprefix("0x")
    assert weights.is_file() and json.loads((tmp_path / "frag.json").read_text())["init_weights"]["hash"] == summary["init_weights"]
    result = runner.invoke(cli, ["model", "export", str(weights), "--spec", str(tmp_path / "frag.json"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    (tmp_path / "hf" / "model.safetensors").unlink()
    result = runner.invoke(cli, ["model", "import", str(tmp_path / "hf"), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_imported_model_finetunes_through_run_spec_from_its_init_weights_artifact(tmp_path: Path) -> None:
    from engine.api import run_spec
    from engine.datasets import builtin_dataset_ref
    from protocol.artifacts import LocalStore

    torch.manual_seed(5)
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "hf")
    imported = import_hf(tmp_path / "hf")  # default length: the model's context, 32 = tinytext's windows
    store = LocalStore(tmp_path / "store")
    spec = load_spec({
        "version": 1, "kind": "finetune", "model": imported.model.model_dump(mode="json"),
        "dataset": builtin_dataset_ref("tinytext").model_dump(), "init_weights": {"hash": store.put(imported.weights_bytes())},
        "optimizer": {"name": "adamw", "lr": 0.01}, "batch_size": 4, "steps": 2, "segment_steps": 1,
    })  # fmt: skip
    result = run_spec(spec, store)
    assert len(result.state_hashes) == 3
    trained = load_weights(store.get(result.output_hash))
    assert not torch.equal(trained["layers.1.q_proj.weight"], torch.from_numpy(imported.weights["layers.1.q_proj.weight"]))


def test_sdk_import_and_export_never_load_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    _save("gpt2", tmp_path / "hf")
    code = ("import sys; from protocol.hf_import import import_hf, export_hf; "
            f"found = import_hf({str(tmp_path / 'hf')!r}); export_hf(found.model, found.weights, {str(tmp_path / 'out')!r}); "
            "heavy = [m for m in ('torch', 'transformers', 'engine') if m in sys.modules]; assert not heavy, heavy")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
