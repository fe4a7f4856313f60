"""A LoRA job's adapter in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`).

Torch-free (numpy + safetensors). The tensor names are PEFT's for a causal LM wrapped by
`PeftModelForCausalLM`: `base_model.model.<the transformers parameter path>.lora_A.weight` (and
`lora_B`), e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`; A is `[r, in]`,
B is `[out, r]`, the same layout as the engine's `layers.{i}.q_proj.lora_A` / `lora_B`, so export is
a rename. Only Llama-shaped bases (Llama, Mistral, Qwen2) are exported: GPT-2 fuses q/k/v into one
`c_attn` projection, so per-projection adapters have no PEFT counterpart there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import SpecError
from protocol.hf_import import hf_architecture_of
from protocol.hf_weights import block_indices
from protocol.spec import LORA_TARGETS, TaskSpec, lora_shapes

PEFT_PREFIX = "base_model.model.model.layers"
_LLAMA_PATHS = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
                "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
                "down_proj": "mlp.down_proj"}  # fmt: skip


def peft_names(spec: TaskSpec) -> dict[str, tuple[str, tuple[int, int]]]:
    """Engine adapter name → (PEFT name, shape) for every adapter tensor of LoRA spec `spec`."""
    if spec.lora is None:
        raise SpecError("PEFT export needs a spec with a lora block")
    architecture, _ = hf_architecture_of(spec.model)
    if architecture == "GPT2LMHeadModel":
        raise SpecError("PEFT export: GPT-2 fuses q/k/v into c_attn, so these adapters have no PEFT layout")
    names: dict[str, tuple[str, tuple[int, int]]] = {}
    for number, index in enumerate(block_indices(spec.model)):
        shapes = lora_shapes(spec.model.layers[index], spec.lora)
        for target in LORA_TARGETS:
            if target in shapes:
                rows, cols = shapes[target]
                peft = f"{PEFT_PREFIX}.{number}.{_LLAMA_PATHS[target]}"
                names[f"layers.{index}.{target}.lora_A"] = (f"{peft}.lora_A.weight", (spec.lora.rank, cols))
                names[f"layers.{index}.{target}.lora_B"] = (f"{peft}.lora_B.weight", (rows, spec.lora.rank))
    return names


def adapter_config(spec: TaskSpec, base_model_name_or_path: str = "") -> dict[str, Any]:
    """The `adapter_config.json` PEFT's `LoraConfig` reads for `spec`'s adapters (no dropout, no bias)."""
    assert spec.lora is not None
    alpha = spec.lora.alpha
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
        "r": spec.lora.rank, "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "target_modules": sorted(set(spec.lora.target_modules)), "lora_dropout": 0.0, "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "use_rslora": False,
        "use_dora": False, "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None,
        "rank_pattern": {}, "alpha_pattern": {}, "revision": None,
    }  # fmt: skip


def export_peft(spec: TaskSpec, adapter: Mapping[str, np.ndarray], directory: str | Path,
                base_model_name_or_path: str = "") -> list[str]:  # fmt: skip
    """Write `adapter` (engine-named float32 arrays, a LoRA job's output) into `directory` in the PEFT
    layout; returns the PEFT tensor names written. SpecError when the adapter does not fit `spec`."""
    from safetensors.numpy import save

    from protocol.hf_import import write_output_file

    names = peft_names(spec)
    if set(adapter) != set(names):
        missing, extra = sorted(set(names) - set(adapter)), sorted(set(adapter) - set(names))
        raise SpecError(f"adapter does not fit the spec: missing {missing[:5]}, unexpected {extra[:5]}")
    tensors: dict[str, np.ndarray] = {}
    for name, (peft, shape) in names.items():
        array = np.ascontiguousarray(adapter[name], dtype=np.float32)
        if tuple(array.shape) != shape:
            raise SpecError(f"adapter {name} has shape {list(array.shape)}, the spec wants {list(shape)}")
        tensors[peft] = array
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_output_file(directory / "adapter_model.safetensors", save(tensors, metadata={"format": "pt"}))
    config = adapter_config(spec, base_model_name_or_path)
    write_output_file(directory / "adapter_config.json", (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    return sorted(tensors)
