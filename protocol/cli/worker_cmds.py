"""`tessera worker run`: the staked worker daemon (worker/worker.py).

Settings come from, lowest to highest: defaults < the TOML file's top level and its `[worker]` table
< `TESSERA_*` environment variables < flags (docs/operator-guide.md). The global `--network`,
`--account` and `--deployment` count as flags only when given explicitly. Keys come only from the
encrypted ape keystore; the passphrase from a prompt, `env:VAR` or `file:/path`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protocol.cli.common import explicit_global_flags


@click.group("worker")
def worker() -> None:
    """The worker daemon: claim jobs, run them on CPU/GPU, commit, finalize, collect."""


@worker.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML config file (common keys at the top level, worker keys in [worker]).")
@click.option("--store", default=None, help="Artifact store URI for checkpoints and outputs.")
@click.option("--public-store", default=None, help="Store URI others fetch from (default: --store).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for SQLite state (cursor, outbox, jobs) and run files.")
@click.option("--passphrase", default=None, help="Passphrase source: prompt | env:VAR | file:/path.")
@click.option("--confirmations", type=int, default=None, help="Blocks behind head before acting.")
@click.option("--poll-interval", type=float, default=None, help="Seconds between loop iterations.")
@click.option("--reconcile-interval", type=float, default=None, help="Seconds between state reconciliations.")
@click.option("--metrics-port", type=int, default=None, help="Port of /metrics and /healthz (0: off).")
@click.option("--fee-cap-gwei", type=float, default=None, help="Never pay more per gas than this.")
@click.option("--bump-timeout", type=float, default=None, help="Seconds before a stuck tx is fee-bumped.")
@click.option("--min-payment", type=int, default=None, help="Skip jobs paying less (base units).")
@click.option("--max-collateral", type=int, default=None, help="Skip jobs locking more collateral (base units).")
@click.option("--allowed-kind", "allowed_kinds", multiple=True, help="Task kind to accept (repeatable).")
@click.option("--max-parameters", type=int, default=None, help="Skip models with more parameters.")
@click.option("--device-class", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="What this machine runs on (auto: nvidia-smi decides).")
@click.option("--concurrency-per-gpu", type=int, default=None, help="Jobs at once per GPU.")
@click.option("--deadline-margin", type=float, default=None, help="Stop runs this many seconds before the deadline.")
@click.option("--memory-limit-mb", type=int, default=None, help="Memory limit of the training child.")
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None, help="Log line format.")
@click.option("--max-iterations", type=int, default=None, hidden=True, help="Stop after N loop iterations.")
@click.pass_context
def worker_run(ctx: click.Context, config_path: Path | None, max_iterations: int | None, allowed_kinds: tuple,
               **options: Any) -> None:
    """Run the worker until SIGTERM/SIGINT (drains: stops the training child, flushes state)."""
    from worker.worker import WorkerDaemon

    run_worker(ctx, WorkerDaemon, config_path, max_iterations, allowed_kinds, options)


def run_worker(ctx: click.Context, daemon_cls: Any, config_path: Path | None, max_iterations: int | None,
               allowed_kinds: tuple, options: dict[str, Any], **daemon_kwargs: Any) -> None:
    """Load the worker config (defaults < TOML < env < flags) and run `daemon_cls` on it."""
    from worker.runtime.config import WorkerConfig, load_config
    from worker.runtime.logs import setup_logging

    flags = {k: v for k, v in options.items() if v is not None}
    if allowed_kinds:
        flags["allowed_kinds"] = list(allowed_kinds)
    config = load_config(WorkerConfig, config_path, flags={**explicit_global_flags(ctx), **flags}, section="worker")
    setup_logging("worker", level=config.log_level, fmt=config.log_format)
    ctx.exit(daemon_cls(config, **daemon_kwargs).run(max_iterations=max_iterations))
