"""`tessera verifier run` and `tessera arbiter run`: the dispute daemons (worker/verifier.py, worker/arbiter.py).

Settings come from, lowest to highest: defaults < the TOML file's top level and its `[verifier]` /
`[arbiter]` table < `TESSERA_*` environment variables < flags (docs/operator-guide.md). The global
`--network`, `--account` and `--deployment` count as flags only when given explicitly, so a config
file's values are not overridden by a default. Keys come only from the encrypted ape keystore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protocol.cli.common import explicit_global_flags

COMMON_OPTIONS = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="TOML config file (common keys at the top level, daemon keys in its table)."),
    click.option("--store", default=None, help="Artifact store URI this daemon writes to (evidence, cache)."),
    click.option("--public-store", default=None, help="Store URI others fetch from (default: --store)."),
    click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Folder for SQLite state (cursor, outbox, jobs) and the checkpoint cache."),
    click.option("--confirmations", type=int, default=None, help="Blocks behind head before an event is read."),
    click.option("--poll-interval", type=float, default=None, help="Seconds between loop iterations."),
    click.option("--metrics-port", type=int, default=None, help="Port of /metrics and /healthz (0: off)."),
    click.option("--passphrase", default=None, help="Passphrase source: prompt | env:VAR | file:/path."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                 help="Where replays run (auto: the worker's device class)."),
    click.option("--log-format", type=click.Choice(["json", "text"]), default=None, help="Log line format."),
    click.option("--max-iterations", type=int, default=None, hidden=True, help="Stop after N loop iterations."),
]


def _common(func: Any) -> Any:
    for option in reversed(COMMON_OPTIONS):
        func = option(func)
    return func


def _run(ctx: click.Context, daemon_cls: Any, config_cls: Any, section: str, flags: dict[str, Any],
         config_path: Path | None, max_iterations: int | None) -> None:
    from worker.runtime.config import load_config
    from worker.runtime.logs import setup_logging

    config = load_config(config_cls, config_path, flags={**explicit_global_flags(ctx), **flags}, section=section)
    setup_logging(section, level=config.log_level, fmt=config.log_format)
    daemon = daemon_cls(config)
    code = daemon.run(max_iterations=max_iterations)
    ctx.exit(code)


@click.group("verifier")
def verifier() -> None:
    """The verifier daemon: re-run sampled segments of committed jobs, challenge wrong ones."""


@verifier.command("run")
@_common
@click.option("--verify-fraction", type=float, default=None, help="Share of committed jobs to check (0..1).")
@click.option("--segments-per-check", type=int, default=None, help="Segments replayed per checked job.")
@click.option("--watch-worker", "watch_workers", multiple=True, help="Always check this worker's jobs (repeatable).")
@click.option("--watch-job", "watch_jobs", type=int, multiple=True, help="Always check this job (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed of the per-job sampling.")
@click.option("--behaviour", type=click.Choice(["honest", "buggy"]), default=None,
              help="Test persona: 'buggy' challenges jobs it found correct.")
@click.pass_context
def verifier_run(ctx: click.Context, config_path: Path | None, max_iterations: int | None, watch_workers: tuple,
                 watch_jobs: tuple, **options: Any) -> None:
    """Run the verifier until SIGTERM/SIGINT (drains cleanly)."""
    from worker.verifier import VerifierConfig, VerifierDaemon

    flags = {k: v for k, v in options.items() if v is not None}
    if watch_workers:
        flags["watch_workers"] = list(watch_workers)
    if watch_jobs:
        flags["watch_jobs"] = list(watch_jobs)
    _run(ctx, VerifierDaemon, VerifierConfig, "verifier", flags, config_path, max_iterations)


@click.group("arbiter")
def arbiter() -> None:
    """The arbiter daemon: settle disputes by replaying the disputed segment."""


@arbiter.command("run")
@_common
@click.pass_context
def arbiter_run(ctx: click.Context, config_path: Path | None, max_iterations: int | None, **options: Any) -> None:
    """Run the arbiter until SIGTERM/SIGINT (drains cleanly). The account must be the deployment's arbiter."""
    from worker.arbiter import ArbiterConfig, ArbiterDaemon

    flags = {k: v for k, v in options.items() if v is not None}
    _run(ctx, ArbiterDaemon, ArbiterConfig, "arbiter", flags, config_path, max_iterations)
