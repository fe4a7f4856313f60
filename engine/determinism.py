"""Device choice, determinism settings and the environment fingerprint.

Replay is a proof only if the same inputs give the same bits. This module sets everything that
changes the bits and that a process can control (deterministic kernels, cuBLAS workspace, TF32 off,
a fixed intra-op thread count) and records what it cannot control (torch/CUDA/cuDNN versions, device
class, CPU vector ISA) in the fingerprint. The fingerprint holds only fields that can change results,
no host names or serial numbers, so two machines that must agree have equal fingerprints and equal
fingerprint hashes.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

from engine.portable import ARITHMETIC_VERSION
from protocol.errors import EngineError
from protocol.hashing import sha256_hex
from protocol.spec import canonical_json

ENGINE_VERSION = "tessera-engine/1"
# A spec's portable `arithmetic` -> the arithmetic version whose bits it names. Every change to any op's
# bits is a new entry (portable/2, ...): an old job keeps replaying under its own version, in its own class.
PORTABLE_ARITHMETICS: dict[str, str] = {"portable/1": ARITHMETIC_VERSION}
CUBLAS_WORKSPACE = ":4096:8"

# cuBLAS reads this when the CUDA context is created, so set it as early as the engine is imported.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device."""
    import torch

    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # a broken driver must read as "no CUDA", not crash the caller
        return False


def select_device(spec_device: str, requested: str | None = None) -> str:
    """The torch device string to run on, from the spec's device class and an optional request.

    "cpu" specs run on CPU; "cuda" specs need CUDA (EngineError when missing); "any" takes the
    request, else CUDA when present, else CPU. A request that contradicts the spec is an EngineError.
    """
    if spec_device not in ("any", "cpu", "cuda"):
        raise EngineError(f"unknown device class {spec_device!r} (any, cpu or cuda)")
    if requested is not None:
        requested = requested.strip().lower()
        kind = requested.split(":", 1)[0]
        if kind not in ("cpu", "cuda"):
            raise EngineError(f"unknown device {requested!r} (cpu, cuda or cuda:N)")
        if spec_device != "any" and kind != spec_device:
            raise EngineError(f"the spec requires device {spec_device} but {requested} was requested")
        if kind == "cuda":
            _require_cuda(requested)
        return requested
    if spec_device == "cpu":
        return "cpu"
    if spec_device == "cuda":
        _require_cuda("cuda")
        return "cuda"
    return "cuda" if cuda_available() else "cpu"


def _require_cuda(device: str) -> None:
    if not cuda_available():
        raise EngineError(f"device {device} needs CUDA, but no CUDA device is available on this host")
    import torch

    if ":" in device:
        index = device.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise EngineError(f"no CUDA device {device} (this host has {torch.cuda.device_count()})")


def _set_deterministic_algorithms(torch: Any) -> None:
    """`torch.use_deterministic_algorithms(True)` without its import of torch._inductor (about 1.8 s in
    every child process): the public call only adds inductor's flag, which matters for torch.compile,
    and the engine never compiles. If inductor is loaded anyway, its flag is set too."""
    import sys

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private setter: the public call does the same, slower
        torch.use_deterministic_algorithms(True, warn_only=False)
        return
    setter(True, warn_only=False)
    if "torch._inductor.config" in sys.modules:
        sys.modules["torch._inductor.config"].deterministic = True


def configure(device: str, cpu_threads: int) -> None:
    """Put torch into deterministic mode for `device`, with exactly `cpu_threads` intra-op threads."""
    import torch

    if device.startswith("cuda") and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        raise EngineError(
            "CUBLAS_WORKSPACE_CONFIG must be :4096:8 or :16:8 before CUDA starts "
            f"(found {os.environ.get('CUBLAS_WORKSPACE_CONFIG')!r})"
        )
    _set_deterministic_algorithms(torch)
    torch.set_num_threads(int(cpu_threads))
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if device.startswith("cuda") and torch.device(device).index is not None:
        torch.cuda.set_device(torch.device(device).index)  # bare "cuda" means the current device


def environment_fingerprint(device: str, cpu_threads: int | None = None,
                            arithmetic: str = "native") -> dict[str, Any]:
    """What determines the bits a run produces on `device` (call after `configure`).

    A portable run also records its `arithmetic` (absent for native, so native fingerprints and their
    classes stay as they were): it is what puts the run in the portable class, whatever the machine."""
    import torch

    kind = device.split(":", 1)[0]
    fingerprint: dict[str, Any] = {} if arithmetic == "native" else {"arithmetic": arithmetic}
    fingerprint |= {
        "engine": ENGINE_VERSION,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "device_type": kind,
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cpu_threads": int(cpu_threads if cpu_threads is not None else torch.get_num_threads()),
        "cpu_capability": _cpu_capability(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    if kind == "cuda":
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        fingerprint.update(
            {
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "device_name": props.name,
                "device_capability": [props.major, props.minor],
                "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
                "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            }
        )
    else:
        fingerprint.update({"device_name": "cpu", "device_capability": None, "mkldnn": bool(torch.backends.mkldnn.is_available()),
                            "cpu_features": _cpu_features()})
    return fingerprint


@functools.cache
def _cpu_flags() -> tuple[str, ...] | None:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, ARM `Features`), sorted; None off Linux. Read
    once a process: a kernel-set check reads them for every capability it is asked about."""
    try:
        with open("/proc/cpuinfo", encoding="utf8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return tuple(sorted(set(line.split(":", 1)[1].split())))
    except OSError:
        pass
    return None


def _cpu_features() -> str:
    """A digest of the CPU's feature flags. MKL and oneDNN choose kernels by CPU generation, not only by
    ATen's capability level: two AVX512 Xeons of different generations give different matmul bits, so
    native classes must tell them apart (portable arithmetic, docs/protocol.md, removes the need)."""
    flags = _cpu_flags()
    if flags is not None:
        return sha256_hex(" ".join(flags).encode())[2:18]
    return "unknown:" + (platform.processor() or platform.machine())


# ATen's CPU kernel sets (ATEN_CPU_CAPABILITY), lowest first, with the x86 flags each one's kernels use.
# torch does not cap a request to what the CPU has: asking for avx512 on an AVX2-only CPU dispatches
# AVX-512 kernels and the process dies of SIGILL, so a request is checked against the flags first.
CPU_CAPABILITY_FLAGS: dict[str, frozenset[str]] = {
    "default": frozenset(),
    "avx2": frozenset({"avx2", "fma"}),
    "avx512": frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"}),
}


def host_cpu_capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run, lowest first ("default" always; only it when the
    flags cannot be read)."""
    flags = set(_cpu_flags() or ())
    return [name for name, needed in CPU_CAPABILITY_FLAGS.items() if needed <= flags]


def require_cpu_capability(capability: str) -> None:
    """Raise EngineError unless this CPU can run torch's `capability` kernels (a clear error instead of
    a child process killed by SIGILL)."""
    if capability.lower() not in CPU_CAPABILITY_FLAGS:
        raise EngineError(f"unknown CPU capability {capability!r}; known: {', '.join(CPU_CAPABILITY_FLAGS)}")
    if capability.lower() not in host_cpu_capabilities():
        missing = sorted(CPU_CAPABILITY_FLAGS[capability.lower()] - set(_cpu_flags() or ()))
        raise EngineError(f"this CPU cannot run torch's {capability.lower()} kernels (it lacks "
                          f"{', '.join(missing)}); it runs {', '.join(host_cpu_capabilities())}")


def _cpu_capability() -> str:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return "unknown"


def fingerprint_bytes(fingerprint: dict[str, Any]) -> bytes:
    """Canonical JSON of a fingerprint (what is stored and hashed)."""
    return canonical_json(fingerprint)


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """0x sha256 of the canonical fingerprint JSON (the `fingerprint` committed on chain)."""
    return sha256_hex(fingerprint_bytes(fingerprint))


# Fingerprint fields a spec decides (and the spec hash binds), so they are not part of the environment class.
SPEC_DECIDED_FIELDS = ("cpu_threads",)
ENV_CLASS_FORMAT = "tessera-env-class/1"


def env_class_descriptor(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The environment class of a fingerprint: every bit-deciding field the machine (not the spec) sets.

    Two machines whose descriptors are equal are meant to produce the same bits for every spec (native
    arithmetic can only approximate that: the descriptor names every input we know decides them); the class is the
    sha256 of the canonical JSON of this descriptor (docs/protocol.md, "Environment classes"). A portable
    run's class is the portable class of its arithmetic and engine: no machine field decides its bits,
    so a fingerprint naming any device (a CUDA H100 included) lies in it.
    """
    arithmetic = fingerprint.get("arithmetic", "native")
    if arithmetic != "native":
        return portable_env_class_descriptor(arithmetic, str(fingerprint.get("engine")))
    descriptor = {k: v for k, v in fingerprint.items() if k not in SPEC_DECIDED_FIELDS}
    descriptor["format"] = ENV_CLASS_FORMAT
    return descriptor


def env_class_hash(descriptor: dict[str, Any]) -> str:
    """0x sha256 of the canonical descriptor JSON: the `env_class` a job names on chain."""
    return sha256_hex(canonical_json(descriptor))


def portable_env_class_descriptor(arithmetic: str, engine: str = ENGINE_VERSION) -> dict[str, Any]:
    """The class of every job in portable `arithmetic` (a spec's value, e.g. "portable/1") run by `engine`.

    Only the arithmetic version and the engine version decide a portable job's bits (docs/arithmetic.md),
    so they are all the class holds: any CPU or GPU, ISA, thread count or torch release reproduces it.
    An unknown arithmetic is an EngineError (this engine cannot say which bits it names)."""
    if arithmetic not in PORTABLE_ARITHMETICS:
        raise EngineError(f"unknown portable arithmetic {arithmetic!r} (this engine knows "
                          f"{', '.join(PORTABLE_ARITHMETICS)})")
    return {"format": ENV_CLASS_FORMAT, "arithmetic": PORTABLE_ARITHMETICS[arithmetic], "engine": engine}


def portable_env_class(arithmetic: str) -> tuple[dict[str, Any], str]:
    """(descriptor, class hash) of this engine's portable class for `arithmetic`."""
    descriptor = portable_env_class_descriptor(arithmetic)
    return descriptor, env_class_hash(descriptor)


def portable_env_classes() -> dict[str, str]:
    """Class hash -> spec arithmetic, for every portable arithmetic this engine runs."""
    return {portable_env_class(arithmetic)[1]: arithmetic for arithmetic in PORTABLE_ARITHMETICS}


def is_portable_descriptor(descriptor: dict[str, Any]) -> bool:
    """Whether a class descriptor is a portable one (native descriptors never hold `arithmetic`)."""
    return "arithmetic" in descriptor


def spec_class_problem(arithmetic: str, env_class: str) -> str | None:
    """Why a job whose spec says `arithmetic` cannot be in class `env_class`, or None when it can.

    The rule (docs/protocol.md, "Portable class"): a portable spec's job names exactly the portable class
    of its arithmetic; a native spec's job names a machine class, never a portable one. A job that breaks
    it has no honest result: no run's fingerprint lies in its class."""
    portable = portable_env_classes()
    env_class = env_class.lower()
    if arithmetic == "native":
        if env_class in portable:
            return f"a native spec posted under the portable class of {portable[env_class]}"
        return None
    if arithmetic not in PORTABLE_ARITHMETICS:
        return f"unknown arithmetic {arithmetic!r}"
    wanted = portable_env_class(arithmetic)[1]
    if env_class != wanted:
        return f"a {arithmetic} spec must be posted under its portable class {wanted}, not {env_class}"
    return None


def local_env_class(device: str = "cpu") -> tuple[dict[str, Any], str]:
    """(descriptor, class hash) of this process's environment on `device` (configures determinism first)."""
    chosen = select_device("any", device)
    configure(chosen, 1)
    descriptor = env_class_descriptor(environment_fingerprint(chosen, 1))
    return descriptor, env_class_hash(descriptor)


def fingerprint_mismatches(committed: dict[str, Any], local: dict[str, Any]) -> list[str]:
    """Fields whose values differ: replays are only judged between matching fingerprints."""
    keys = sorted(set(committed) | set(local))
    return [f"{key}: {committed.get(key)!r} != {local.get(key)!r}" for key in keys if committed.get(key) != local.get(key)]
