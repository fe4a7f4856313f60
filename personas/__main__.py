"""`python -m personas worker run --behaviour NAME …` / `python -m personas verifier run --buggy …`.

The same options as `tessera worker run` and `tessera verifier run` (the commands are reused), with
the persona's daemon class in place of the honest one. Tests and the demo only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from protocol.cli import dispute_cmds, worker_cmds
from protocol.cli.common import CliSettings


@click.group()
@click.option("--network", default=None)
@click.option("--account", default=None)
@click.option("--deployment", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def personas(ctx: click.Context, network: str | None, account: str | None, deployment: Path | None) -> None:
    """Dishonest daemons for tests."""
    ctx.obj = CliSettings(network=network or "http://127.0.0.1:8545", account=account, deployment=deployment)


@personas.group("worker")
def worker_group() -> None:
    """A worker that commits what its persona makes of an honest result."""


def _clone(command: click.Command, name: str, extra: list[click.Option], callback: Any) -> click.Command:
    return click.Command(name, params=[*command.params, *extra], callback=click.pass_context(callback),
                         help=command.help)


def _worker_run(ctx: click.Context, behaviour: str, claim_device: str | None, config_path: Path | None,
                max_iterations: int | None, allowed_kinds: tuple, **options: Any) -> None:
    from personas.worker import DishonestWorker

    worker_cmds.run_worker(ctx, DishonestWorker, config_path, max_iterations, allowed_kinds, options,
                           behaviour=behaviour, claim_device=claim_device)


worker_group.add_command(_clone(worker_cmds.worker_run, "run", [
    click.Option(["--behaviour"], required=True),
    click.Option(["--claim-device"], default=None, help="Describe each run's fingerprint as this device's (h100)."),
], _worker_run))


@personas.group("verifier")
def verifier_group() -> None:
    """A verifier that challenges what it found correct."""


def _verifier_run(ctx: click.Context, config_path: Path | None, max_iterations: int | None, watch_workers: tuple,
                  watch_jobs: tuple, **options: Any) -> None:
    from personas.verifier import BuggyVerifier
    from worker.verifier import VerifierConfig

    flags = {**options, "watch_workers": watch_workers, "watch_jobs": watch_jobs}
    dispute_cmds.run_daemon(ctx, BuggyVerifier, VerifierConfig, "verifier", flags, config_path, max_iterations)


verifier_group.add_command(_clone(dispute_cmds.verifier_run, "run", [], _verifier_run))


if __name__ == "__main__":
    sys.exit(personas(obj=None))
