"""The checks a worker runs on an Open job before it claims, as pure torch-free functions.

One place for both sides: the worker daemon (`worker.policy.decide`, `worker.worker`) skips jobs with
these reasons, and a submitter's `tessera job show` runs the same checks against the shipped policy
(`SHIPPED_POLICY`, the `[worker]` section of examples/worker.toml) to say why a job is still Open.
Only the rules about the job itself live here; a worker's machine, stake and capacity stay in
`worker.policy`.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from protocol.errors import ArtifactError, HashMismatchError, SpecError

DEFAULT_SPEC_SCHEMES = ("https", "http", "file")
MAX_SPEC_BYTES = 1_000_000  # a worker's default max_spec_bytes


class JobPolicy(Protocol):
    """What the job rules read from a worker's configuration (`WorkerConfig` has all of it)."""

    min_payment: int
    max_collateral: int | None
    allowed_kinds: list[str]
    max_parameters: int
    memory_limit_mb: int
    deadline_margin: float
    max_job_seconds: float | None
    spec_uri_schemes: list[str]


class ScreeningPolicy(BaseModel):
    """The job-screening part of a worker's configuration; defaults are `WorkerConfig`'s."""

    model_config = ConfigDict(frozen=True)

    min_payment: int = Field(0, ge=0)
    max_collateral: int | None = Field(None, ge=0)
    allowed_kinds: list[str] = Field(default_factory=list)
    max_parameters: int = Field(5_000_000, ge=1)
    memory_limit_mb: int = Field(8_192, ge=256)
    deadline_margin: float = Field(30.0, ge=0)
    max_job_seconds: float | None = Field(None, gt=0)
    spec_uri_schemes: list[str] = Field(default_factory=lambda: list(DEFAULT_SPEC_SCHEMES))


# The [worker] section of examples/worker.toml, which operators start from (a test keeps them equal).
SHIPPED_POLICY = ScreeningPolicy(
    min_payment=10**18,
    max_collateral=50 * 10**18,
    allowed_kinds=["train", "finetune", "infer", "eval"],
    max_parameters=50_000_000,
    memory_limit_mb=16_384,
    deadline_margin=120.0,
    spec_uri_schemes=["https", "http"],
)


def uri_scheme(uri: str) -> str:
    """The lower-case scheme of a spec or store URI; a plain path is `file`. ArtifactError when malformed."""
    from protocol.artifacts import check_uri_text

    try:
        return urllib.parse.urlparse(check_uri_text(uri, "spec URI")).scheme.lower() or "file"
    except ValueError as exc:
        raise ArtifactError(f"spec URI is malformed: {exc}") from None


def scheme_problem(spec_uri: str, schemes: list[str] | tuple[str, ...]) -> str | None:
    """Why a worker accepting `schemes` refuses to fetch a spec from `spec_uri`, or None."""
    try:
        scheme = uri_scheme(spec_uri)
    except ArtifactError as exc:
        return str(exc)
    if scheme not in schemes:
        return f"spec URI scheme {scheme!r} not allowed (spec_uri_schemes = {list(schemes)})"
    return None


def fetch_spec(spec_uri: str, spec_hash: str, *, schemes: list[str] | tuple[str, ...] = DEFAULT_SPEC_SCHEMES,
               timeout: float = 10.0, max_bytes: int = MAX_SPEC_BYTES) -> Any:
    """Fetch the spec named `spec_hash` from `spec_uri` as a worker does: an allowed scheme, a size
    limit, a timeout, the bytes verified by hash, then validated and checked canonical.

    SpecError for a refused scheme or an invalid spec, HashMismatchError for wrong bytes, ArtifactError
    when it cannot be fetched. A local directory the URI names is never created."""
    from protocol.artifacts import open_store
    from protocol.spec import load_spec

    problem = scheme_problem(spec_uri, schemes)
    if problem is not None:
        raise SpecError(problem)
    data = open_store(spec_uri, timeout=timeout, max_bytes=max_bytes, create=False).get(spec_hash, max_bytes=max_bytes)
    spec = load_spec(bytes(data))
    if spec.spec_hash() != spec_hash.lower():
        raise HashMismatchError(f"spec bytes are not canonical: parsed spec hashes to {spec.spec_hash()}")
    return spec


# The memory rule: twice `estimate_memory_bytes` (a rough figure: measured on CPU for a 124 M-parameter GPT-2
# LoRA step it was 0.92-1.84 of the step's peak in native arithmetic and 0.53 in portable/1, measured while
# its linear layers still copied each weight transposed on every call) plus what the child's interpreter, torch and the loaded artifacts' raw bytes
# take before the first step.
MEMORY_SCREEN_FACTOR = 2
CHILD_BASELINE_BYTES = 1024**3


def screening_memory_bytes(spec: Any) -> int:
    """The memory a worker assumes `spec`'s child needs when it screens the job (see MEMORY_SCREEN_FACTOR)."""
    from protocol.spec import estimate_memory_bytes

    return MEMORY_SCREEN_FACTOR * estimate_memory_bytes(spec) + CHILD_BASELINE_BYTES


def _tokens(base_units: int) -> str:
    """`1500000000000000000` -> `1.5 tokens` (exact): skip reasons are read by people."""
    from protocol.amounts import format_tokens

    return f"{format_tokens(base_units)} tokens"


def term_problems(policy: JobPolicy, *, payment: int, collateral: int, spec: Any | None,
                  execution_timeout: int) -> list[str]:
    """Every rule of `policy` the job's terms break, in the order a worker checks them (rules that
    need the spec are left out when `spec` is None)."""
    from protocol.spec import estimate_parameters, lora_parameters

    problems: list[str] = []
    if payment < policy.min_payment:
        problems.append(f"payment {_tokens(payment)} below min_payment {_tokens(policy.min_payment)}")
    if policy.max_collateral is not None and collateral > policy.max_collateral:
        problems.append(f"collateral {_tokens(collateral)} above max_collateral {_tokens(policy.max_collateral)}")
    if spec is not None:
        if policy.allowed_kinds and spec.kind not in policy.allowed_kinds:
            problems.append(f"kind {spec.kind!r} not in allowed_kinds {policy.allowed_kinds}")
        params = estimate_parameters(spec) + lora_parameters(spec)  # LoRA: the worker holds base and adapters
        if params > policy.max_parameters:
            problems.append(f"model has {params} parameters, above max_parameters {policy.max_parameters}")
        # a child that dies at its memory limit never commits: the job would expire on our collateral
        needed_mb = -(-screening_memory_bytes(spec) // 1024**2)
        if needed_mb > policy.memory_limit_mb:
            problems.append(f"needs about {needed_mb} MiB (twice the spec's memory estimate plus 1 GiB), above "
                            f"memory_limit_mb {policy.memory_limit_mb}")
    budget = execution_timeout - policy.deadline_margin
    if budget <= 0:
        problems.append(f"execution timeout {execution_timeout}s leaves nothing after the "
                        f"{policy.deadline_margin}s deadline margin")
    elif policy.max_job_seconds is not None and budget < policy.max_job_seconds:
        problems.append(f"only {budget:.0f}s before the deadline margin, below max_job_seconds")
    if spec is not None and budget > 0 and spec.resources.max_wall_s is not None and spec.resources.max_wall_s > budget:
        problems.append(f"spec allows {spec.resources.max_wall_s}s of wall time, more than the "
                        f"{budget:.0f}s before the deadline margin")
    return problems


def segment_problems(spec: Any, segment_seconds: int) -> list[str]:
    """Why a worker will not run `spec` posted with `segment_seconds`: windows sized below the reference
    estimate, or a wall-time limit that stops the whole run before its end."""
    from protocol.spec import TRAINING_KINDS, estimate_segment_seconds

    problems: list[str] = []
    needed = estimate_segment_seconds(spec)
    if segment_seconds < needed:
        problems.append(f"declares {segment_seconds}s per segment, below the reference estimate {needed}s: its "
                        "windows could be too short to judge")
    run_limit = spec.resources.max_wall_s
    # training kinds only: for infer and eval the estimate is derived from max_wall_s itself
    if spec.kind in TRAINING_KINDS and run_limit is not None and run_limit < needed * spec.num_segments:
        # a run the spec's own wall-time limit stops cannot be committed: claiming it would only cost
        # the expiry compensation (audit F-12)
        problems.append(f"resources.max_wall_s = {run_limit:g}s is below the reference estimate of the whole "
                        f"run ({needed * spec.num_segments}s)")
    return problems


def open_job_problems(policy: JobPolicy, *, spec_uri: str, spec_hash: str, payment: int, collateral: int,
                      num_segments: int, segment_seconds: int, execution_timeout: int,
                      fetch_timeout: float = 10.0) -> list[str]:
    """Every reason a worker with `policy` would skip this Open job, as far as this machine can tell.

    The spec is fetched (any scheme, so the rest can still be checked when only the scheme is refused);
    a spec that cannot be fetched or is invalid is itself a reason."""
    problems: list[str] = []
    refused = scheme_problem(spec_uri, policy.spec_uri_schemes)
    if refused is not None:
        problems.append(refused)
    spec = None
    try:
        spec = fetch_spec(spec_uri, spec_hash, timeout=fetch_timeout)
    except (SpecError, HashMismatchError) as exc:
        problems.append(f"hostile or malformed spec: {exc}")
    except ArtifactError as exc:
        problems.append(f"spec not fetchable from here: {exc}")
    problems += term_problems(policy, payment=payment, collateral=collateral, spec=spec,
                              execution_timeout=execution_timeout)
    if spec is not None:
        if spec.num_segments != num_segments:
            problems.append(f"spec has {spec.num_segments} segments, job posted {num_segments}")
        problems += segment_problems(spec, segment_seconds)
    return problems


class OpenJobReport(BaseModel):
    """Why an Open job may still be waiting for a worker (`explain_open_job`)."""

    job_id: int
    posted_at: int  # chain time of the JobPosted block
    open_for_s: int  # chain time since then
    policy: str  # which policy the reasons are checked against
    skip_reasons: list[str]  # empty: the terms fit that policy


def explain_open_job(client: Any, job_id: int, view: Any = None, *, policy: JobPolicy = SHIPPED_POLICY,
                     policy_name: str = "the shipped configuration (examples/worker.toml)",
                     fetch_timeout: float = 10.0) -> OpenJobReport:
    """How long job `job_id` has been Open and every reason a worker with `policy` would skip it.

    `client` is a `protocol.client.TesseraClient` (read-only is enough); the spec is fetched with
    `fetch_timeout`. Workers publish no skip reasons on chain, so these are the job's terms checked
    against the policy most workers start from, not any one worker's verdict."""
    view = view if view is not None else client.job(job_id)
    job = view.job
    posted_at = int(client.w3.eth.get_block(view.posted_block)["timestamp"]) if view.posted_block else 0
    now = int(client.w3.eth.get_block("latest")["timestamp"])
    reasons = open_job_problems(
        policy, spec_uri=view.spec_uri, spec_hash=job.spec_hash, payment=job.payment, collateral=job.collateral,
        num_segments=job.num_segments, segment_seconds=job.segment_seconds,
        execution_timeout=client.param("JobEscrow", "execution_timeout"), fetch_timeout=fetch_timeout)
    return OpenJobReport(job_id=job_id, posted_at=posted_at, open_for_s=max(0, now - posted_at),
                         policy=policy_name, skip_reasons=reasons)
