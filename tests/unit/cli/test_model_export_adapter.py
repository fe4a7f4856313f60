"""`tessera model export-adapter`: a LoRA job's output (engine names) becomes a PEFT adapter directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from protocol.cli.main import cli
from protocol.peft_export import peft_names
from tests.unit.sdk.helpers import lm_spec


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_export_adapter_writes_the_peft_layout(tmp_path: Path) -> None:
    spec = lm_spec()  # LoRA rank 2 on q_proj and v_proj of one decoder block
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    rng = np.random.default_rng(3)
    names = peft_names(spec)
    adapter = {name: rng.standard_normal(shape).astype(np.float32) for name, (_, shape) in names.items()}
    save_file(adapter, str(tmp_path / "adapter.safetensors"))

    code, out, err = run("model", "export-adapter", str(tmp_path / "adapter.safetensors"), str(tmp_path / "peft"),
                         "--spec", str(spec_file), "--base-model", "./base", "--json")
    assert code == 0, err
    assert json.loads(out) == {"directory": str(tmp_path / "peft"), "tensors": 4, "r": 2, "lora_alpha": 4.0,
                               "target_modules": ["q_proj", "v_proj"]}
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (
        "LORA", 2, 4, "./base")
    written = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    assert set(written) == {peft for peft, _ in names.values()}
    for name, (peft, _) in names.items():
        np.testing.assert_array_equal(written[peft], adapter[name])
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in written

    full = tmp_path / "full.json"
    full.write_text(lm_spec(lora=False).model_dump_json())
    code, _, err = run("model", "export-adapter", str(tmp_path / "adapter.safetensors"), str(tmp_path / "x"),
                       "--spec", str(full))
    assert code == 2 and "has no lora block" in err and err.count("\n") == 1
    save_file({k: v for k, v in list(adapter.items())[1:]}, str(tmp_path / "short.safetensors"))
    code, _, err = run("model", "export-adapter", str(tmp_path / "short.safetensors"), str(tmp_path / "y"),
                       "--spec", str(spec_file))
    assert code == 2 and "adapter does not fit the spec: missing" in err
