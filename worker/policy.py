"""Which open jobs this worker takes: a pure decision over the job, its spec and this machine.

`decide()` answers claim, skip (never again: the job does not fit this worker) or defer (not now:
at capacity, or not enough available stake yet). Kept free of I/O so it is property-tested. The rules
about the job's own terms live in `protocol.screening`, which a submitter's `job show` runs too.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

from protocol.amounts import format_tokens
from protocol.screening import term_problems
from protocol.spec import TaskSpec
from worker.runtime.config import WorkerConfig

Action = Literal["claim", "skip", "defer"]


@dataclass(frozen=True)
class Machine:
    """What this host offers: the device kind and how many GPUs."""

    kind: Literal["cpu", "cuda"]
    gpus: int = 0

    def capacity(self, concurrency_per_gpu: int) -> int:
        """Jobs that may run at once (the CPU counts as one device)."""
        return concurrency_per_gpu * (self.gpus if self.kind == "cuda" and self.gpus > 0 else 1)


@dataclass(frozen=True)
class Offer:
    """An open job as the policy sees it."""

    job_id: int
    payment: int
    collateral: int
    spec: TaskSpec
    execution_timeout: int


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def detect_machine(device_class: str = "auto", timeout: float = 5.0) -> Machine:
    """`cpu`/`cuda` as configured; `auto` asks `nvidia-smi` (no torch in the daemon) and falls back to CPU."""
    if device_class == "cpu":
        return Machine("cpu", 0)
    gpus = 0
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=timeout, check=True).stdout
            gpus = len([line for line in out.splitlines() if line.strip()])
        except (subprocess.SubprocessError, OSError):
            gpus = 0
    if device_class == "cuda":
        return Machine("cuda", max(gpus, 1))
    return Machine("cuda", gpus) if gpus else Machine("cpu", 0)


def run_device(spec: TaskSpec, machine: Machine) -> str:
    """The device the child runs on: the spec's choice when it names one, else the machine's best."""
    if spec.device == "cpu":
        return "cpu"
    return "cuda" if machine.kind == "cuda" else "cpu"


def decide(config: WorkerConfig, offer: Offer, machine: Machine, *, running: int, available_stake: int) -> Decision:
    """Claim, skip or defer `offer`. Skips name the rule that failed; defers say what to wait for."""
    problems = term_problems(config, payment=offer.payment, collateral=offer.collateral, spec=offer.spec,
                             execution_timeout=offer.execution_timeout)
    if problems:
        return Decision("skip", problems[0])
    if offer.spec.device == "cuda" and machine.kind != "cuda":
        return Decision("skip", "spec needs a CUDA device; this machine has none")
    if running >= machine.capacity(config.concurrency_per_gpu):
        return Decision("defer", f"at capacity ({running} running)")
    if available_stake < offer.collateral:
        return Decision("defer", f"available stake {_tokens(available_stake)} below collateral {_tokens(offer.collateral)}")
    return Decision("claim", "fits the policy")


def _tokens(base_units: int) -> str:
    """Amounts in skip reasons as operators configured them: tokens, not base units."""
    return f"{format_tokens(base_units)} tokens"
