"""Daemon settings: a TOML file, then `TESSERA_*` environment overrides, then CLI flags.

Precedence (lowest to highest): model defaults < TOML file < environment < CLI flags. The TOML file
holds common keys at the top level and per-daemon keys in a table named after the daemon
(`[worker]`, `[verifier]`, `[arbiter]`); the table overrides the top level. Environment variables are
`TESSERA_<FIELD>` in upper case (`TESSERA_CONFIRMATIONS=3`, `TESSERA_ALLOWED_KINDS=mlp,cnn`), except
the passphrase source: `TESSERA_PASSPHRASE_SOURCE` (`TESSERA_PASSPHRASE` holds a passphrase itself and
is read only by `protocol.accounts` when the source is `prompt`).

Keys never live here: `account` names an ape keystore alias (or `TEST::<n>` on a local chain) and
`passphrase` says where the passphrase comes from (`prompt`, `env:VAR`, `file:/path`). A config that
tries to carry a private key or a literal passphrase is refused with a `ConfigError`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.errors import ConfigError

ENV_PREFIX = "TESSERA_"
# Keys that would put secret material into a config file or the environment of the daemon.
FORBIDDEN_KEYS = frozenset({"private_key", "privatekey", "key", "secret", "mnemonic", "seed", "passphrase_value"})
PASSPHRASE_SOURCE_RE = re.compile(r"^(prompt|env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")
GWEI = 10**9
# `TESSERA_PASSPHRASE` is the passphrase itself for `protocol.accounts` (with `passphrase = "prompt"`),
# so the passphrase *source* setting is overridden by `TESSERA_PASSPHRASE_SOURCE` instead.
ENV_NAMES = {"passphrase": "TESSERA_PASSPHRASE_SOURCE"}

Config = TypeVar("Config", bound="DaemonConfig")


class DaemonConfig(BaseModel):
    """What every Tessera daemon needs: where the chain is, who we are, where state lives, how to behave on chain."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    network: str = Field("http://127.0.0.1:8545", description="RPC URL (http/https/ws) of the chain")
    account: str | None = Field(None, description="ape keystore alias, or TEST::<n> on a local chain")
    passphrase: str = Field("prompt", description="passphrase source: prompt | env:VAR | file:/path")
    deployment: Path | None = Field(None, description="deployment JSON; default deployments/<chain_id>.json")
    store: str = Field("file://./tessera-store", description="artifact store URI this daemon writes to")
    public_store: str | None = Field(None, description="store URI others fetch from (defaults to `store`)")
    data_dir: Path = Field(Path("./tessera-data"), description="SQLite state (cursor, outbox, jobs)")
    confirmations: int = Field(2, ge=0, le=1_000, description="blocks behind head before an event is read")
    poll_interval: float = Field(2.0, gt=0, le=3_600, description="seconds between loop iterations")
    log_range: int = Field(2_000, ge=1, le=100_000, description="max blocks per eth_getLogs call")
    start_block: int = Field(0, ge=0, description="first block the cursor reads on a fresh data dir")
    reconcile_interval: float = Field(30.0, gt=0, description="seconds between full state reconciliations")
    rpc_timeout: float = Field(10.0, gt=0, le=300, description="seconds per RPC request")
    metrics_host: str = Field("127.0.0.1", description="bind address of /metrics and /healthz")
    metrics_port: int = Field(0, ge=0, le=65_535, description="0 disables the metrics server")
    stale_after: float = Field(120.0, gt=0, description="cursor older than this many seconds is unhealthy")
    fee_cap_gwei: float = Field(200.0, gt=0, description="never pay more than this max fee per gas")
    priority_fee_gwei: float = Field(1.0, ge=0, description="starting priority fee (tip)")
    bump_timeout: float = Field(60.0, gt=0, description="seconds before a stuck tx is replaced with a fee bump")
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("passphrase")
    @classmethod
    def _passphrase_is_a_source(cls, value: str) -> str:
        if not PASSPHRASE_SOURCE_RE.match(value):
            raise ValueError("must be a source, not a secret: 'prompt', 'env:VAR' or 'file:/path'")
        return value

    @field_validator("network")
    @classmethod
    def _network_is_url(cls, value: str) -> str:
        # An RPC URL, or a network name that `protocol.chain` resolves (e.g. `local`).
        if not (re.match(r"^(https?|wss?)://[^\s]+$", value) or re.match(r"^[a-z0-9][a-z0-9_:.-]{0,63}$", value)):
            raise ValueError(f"not an RPC URL (http://, https://, ws://, wss://) or network name: {value!r}")
        return value

    @property
    def fee_cap_wei(self) -> int:
        """The fee cap in wei per gas."""
        return int(self.fee_cap_gwei * GWEI)

    @property
    def priority_fee_wei(self) -> int:
        """The starting tip in wei per gas."""
        return int(self.priority_fee_gwei * GWEI)

    @property
    def artifact_uri(self) -> str:
        """The store URI committed on chain: where others fetch our checkpoints and outputs."""
        return self.public_store or self.store

    def db_path(self, name: str) -> Path:
        """Path of the SQLite file `name` inside the data dir (created on demand)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir / name


class WorkerConfig(DaemonConfig):
    """The worker's job selection policy and execution limits on top of the common settings."""

    min_payment: int = Field(0, ge=0, description="skip jobs that pay less (token base units)")
    max_collateral: int | None = Field(None, ge=0, description="skip jobs that lock more collateral")
    allowed_kinds: list[str] = Field(default_factory=list, description="task kinds we run; empty = all")
    max_parameters: int = Field(5_000_000, ge=1, description="skip models with more parameters")
    device_class: Literal["auto", "cpu", "cuda"] = Field("auto", description="what this machine runs on")
    concurrency_per_gpu: int = Field(1, ge=1, le=64, description="jobs at once per GPU (CPU counts as one)")
    run_confirmations: int | None = Field(None, ge=0, le=1_000,
                                          description="blocks a claim must be deep before its run starts "
                                                      "(default: confirmations)")
    deadline_margin: float = Field(30.0, ge=0, description="stop the run this many seconds before the deadline")
    max_job_seconds: float | None = Field(None, gt=0, description="skip jobs whose deadline leaves less than this")
    memory_limit_mb: int = Field(8_192, ge=256, description="address-space limit of the training child")
    torch_threads: int = Field(1, ge=1, le=256, description="CPU threads of the training child")
    max_spec_bytes: int = Field(1_000_000, ge=1_024, description="largest spec we download")
    spec_uri_schemes: list[str] = Field(default_factory=lambda: ["https", "http", "file"],
                                        description="URI schemes we fetch specs from (drop file on shared hosts)")
    screening_budget_s: float = Field(120.0, gt=0, le=3_600,
                                      description="most seconds one Open job's screening (spec fetch, inputs) may take")

    @model_validator(mode="after")
    def _kinds_are_names(self) -> "WorkerConfig":
        for kind in self.allowed_kinds:
            if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", kind):
                raise ValueError(f"allowed_kinds entry is not a task kind name: {kind!r}")
        return self


def parse_env_value(raw: str, annotation: Any) -> Any:
    """Turn one environment string into something pydantic can validate for a field.

    Lists accept JSON (`["a","b"]`) or comma-separated text (`a,b`); optional fields accept an empty
    string or `none` for None; everything else is handed to pydantic's lax parsing as is.
    """
    text = raw.strip()
    origin = getattr(annotation, "__origin__", None)
    args = getattr(annotation, "__args__", ())
    if type(None) in args and text.lower() in ("", "none", "null"):
        return None
    if origin is list or annotation is list:
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"not a JSON list: {raw!r} ({exc.msg})") from None
            if not isinstance(value, list):
                raise ConfigError(f"not a JSON list: {raw!r}")
            return value
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def env_overrides(cls: type[DaemonConfig], environ: Mapping[str, str]) -> dict[str, Any]:
    """The `TESSERA_<FIELD>` variables of `environ` that name a field of `cls`, parsed per field."""
    found: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        key = ENV_NAMES.get(name, ENV_PREFIX + name.upper())
        if key in environ:
            found[name] = parse_env_value(environ[key], field.annotation)
    return found


def read_toml(path: Path, section: str) -> dict[str, Any]:
    """Top-level keys of the TOML file merged with its `[section]` table (the table wins)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    merged = {k: v for k, v in data.items() if not isinstance(v, dict)}
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    merged.update(table)
    return merged


def _refuse_secrets(values: Mapping[str, Any], origin: str) -> None:
    for key in values:
        if key.lower() in FORBIDDEN_KEYS:
            raise ConfigError(
                f"{origin}: '{key}' would hold secret material; keys live only in the encrypted ape keystore "
                "(set `account` to its alias and `passphrase` to prompt | env:VAR | file:/path)"
            )


def load_config(
    cls: type[Config],
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    section: str | None = None,
) -> Config:
    """Build a `cls` from defaults < TOML `path` < `TESSERA_*` in `environ` < non-None `flags`.

    `section` is the TOML table for this daemon (default: `worker` for WorkerConfig, else `daemon`).
    Raises `ConfigError` naming the offending key and where it came from.
    """
    section = section or ("worker" if issubclass(cls, WorkerConfig) else "daemon")
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((f"config file {path}", read_toml(Path(path), section)))
    layers.append(("environment", env_overrides(cls, environ)))
    layers.append(("command line", {k: v for k, v in (flags or {}).items() if v is not None}))
    for origin, layer in layers:
        _refuse_secrets(layer, origin)
        unknown = sorted(set(layer) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
        values.update(layer)
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
