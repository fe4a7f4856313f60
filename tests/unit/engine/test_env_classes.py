"""Environment classes: native classes describe the machine (unchanged), a portable job's class holds only
its arithmetic and engine versions, so a fingerprint naming any device lies in it (docs/protocol.md)."""

from __future__ import annotations

import pytest

from engine import determinism
from engine.determinism import (
    ENGINE_VERSION,
    ENV_CLASS_FORMAT,
    env_class_descriptor,
    env_class_hash,
    portable_env_class,
    spec_class_problem,
)
from protocol.artifacts import LocalStore
from protocol.errors import EngineError

from .helpers import tiny_digits

# a native CPU fingerprint as the engine writes it; its class hash was computed before portable classes existed
NATIVE_CPU = {"engine": "tessera-engine/1", "torch": "2.5.1", "machine": "x86_64", "device_type": "cpu",
              "deterministic_algorithms": True, "cpu_threads": 1, "cpu_capability": "AVX2",
              "float32_matmul_precision": "highest", "device_name": "cpu", "device_capability": None,
              "mkldnn": True, "cpu_features": "0123456789abcdef"}
NATIVE_CPU_CLASS = "0x26069a6a65319423621ccc0e500712307c9bb2e619ce7bc980446fce1c4ad08f"
H100 = {"engine": "tessera-engine/1", "torch": "2.6.0", "machine": "x86_64", "device_type": "cuda",
        "deterministic_algorithms": True, "cpu_threads": 4, "cpu_capability": "AVX512",
        "float32_matmul_precision": "highest", "cuda": "12.4", "cudnn": 90100,
        "device_name": "NVIDIA H100 80GB HBM3", "device_capability": [9, 0], "cudnn_deterministic": True,
        "cudnn_benchmark": False, "tf32_matmul": False, "tf32_cudnn": False,
        "cublas_workspace_config": ":4096:8"}


def test_native_classes_are_unchanged() -> None:
    descriptor = env_class_descriptor(NATIVE_CPU)
    assert "arithmetic" not in descriptor
    assert env_class_hash(descriptor) == NATIVE_CPU_CLASS


def test_portable_class_holds_only_arithmetic_and_engine() -> None:
    descriptor, env_class = portable_env_class("portable/1")
    assert descriptor == {"format": ENV_CLASS_FORMAT, "arithmetic": "tessera-portable/1", "engine": ENGINE_VERSION}
    assert env_class == env_class_hash(descriptor)


def test_any_machine_fingerprint_of_a_portable_run_lies_in_the_portable_class() -> None:
    _, portable = portable_env_class("portable/1")
    cpu = {**NATIVE_CPU, "arithmetic": "portable/1", "cpu_threads": 3, "cpu_capability": "DEFAULT"}
    gpu = {**H100, "arithmetic": "portable/1", "torch": "2.9.0"}
    assert env_class_hash(env_class_descriptor(cpu)) == portable
    assert env_class_hash(env_class_descriptor(gpu)) == portable
    assert env_class_hash(env_class_descriptor(H100)) != portable  # the same GPU in native arithmetic: its own class


def test_arithmetic_and_engine_versions_are_part_of_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    _, v1 = portable_env_class("portable/1")
    monkeypatch.setitem(determinism.PORTABLE_ARITHMETICS, "portable/2", "tessera-portable/2")
    _, v2 = portable_env_class("portable/2")
    assert v2 != v1
    other_engine = env_class_hash(env_class_descriptor({**H100, "arithmetic": "portable/1",
                                                        "engine": "tessera-engine/2"}))
    assert other_engine not in (v1, v2)
    with pytest.raises(EngineError, match="unknown portable arithmetic"):
        portable_env_class("portable/9")


def test_spec_and_class_must_fit() -> None:
    _, portable = portable_env_class("portable/1")
    assert spec_class_problem("portable/1", portable) is None
    assert spec_class_problem("portable/1", portable.upper().replace("0X", "0x")) is None
    assert spec_class_problem("native", NATIVE_CPU_CLASS) is None
    assert "native spec posted under the portable class" in spec_class_problem("native", portable)
    assert "must be posted under its portable class" in spec_class_problem("portable/1", NATIVE_CPU_CLASS)


def test_a_portable_run_names_its_arithmetic_and_replays_on_any_device(tmp_path) -> None:
    from engine.api import checkpoint_naming, replay_checkpoint_bytes, run_spec

    store = LocalStore(tmp_path)
    native = run_spec(tiny_digits(steps=2, segment_steps=1), store)
    assert "arithmetic" not in native.fingerprint
    # a portable spec for a CUDA worker: the device does not decide its bits, so a CPU judge replays it
    spec = tiny_digits(steps=2, segment_steps=1, arithmetic="portable/1", device="cuda")
    result = run_spec(spec, store, device="cpu")
    assert result.fingerprint["arithmetic"] == "portable/1"
    assert env_class_hash(env_class_descriptor(result.fingerprint)) == portable_env_class("portable/1")[1]
    checkpoint = store.get(result.state_hashes[1], naming=checkpoint_naming(spec, store, 1))  # h_i: a state root
    reached, _ = replay_checkpoint_bytes(spec, store, 1, checkpoint, device="cpu")
    assert reached == result.state_hashes[2]


AVX512_FLAGS = ["avx", "avx2", "fma", "sse4_2", "avx512f", "avx512bw", "avx512vl", "avx512dq"]


@pytest.mark.parametrize(("flags", "runs"), [
    (AVX512_FLAGS, ["default", "avx2", "avx512"]),
    ([f for f in AVX512_FLAGS if f != "avx512bw"], ["default", "avx2"]),  # an AVX-512 subset torch does not use
    (["avx", "avx2", "sse4_2"], ["default"]),  # AVX2 without FMA
    (None, ["default"]),  # no /proc/cpuinfo: only the kernels every CPU runs
])
def test_the_kernel_sets_a_cpu_runs_follow_its_flags(monkeypatch, flags, runs) -> None:
    monkeypatch.setattr(determinism, "_cpu_flags", lambda: flags)
    assert determinism.host_cpu_capabilities() == runs
    for capability in determinism.CPU_CAPABILITY_FLAGS:
        if capability in runs:
            determinism.require_cpu_capability(capability.upper())
        else:
            with pytest.raises(EngineError, match=f"cannot run torch's {capability} kernels"):
                determinism.require_cpu_capability(capability)


def test_a_kernel_set_the_cpu_lacks_is_refused_before_any_child_dies_of_sigill(monkeypatch) -> None:
    """torch 2.13 does not cap ATEN_CPU_CAPABILITY to the CPU: a child asked for AVX-512 kernels on an AVX2
    CPU is killed by SIGILL. A daemon configured with such a kernel set stops at start with the reason."""
    from worker import judging

    monkeypatch.setattr(determinism, "_cpu_flags", lambda: ["avx2", "fma"])
    started = []
    monkeypatch.setattr(judging.subprocess, "run", lambda *a, **k: started.append(a))
    with pytest.raises(EngineError, match="lacks avx512bw, avx512dq, avx512f, avx512vl"):
        judging.reproducible_environments("cpu", ["avx512"])
    with pytest.raises(EngineError, match="unknown CPU capability 'sse'"):
        judging.describe_environment("cpu", "sse")
    assert started == []
