"""`tessera verifier run`, `tessera arbiter run` (the dispute daemons: worker/verifier.py, worker/arbiter.py)
and `tessera dispute …` (one dispute by hand: show, time out, close, credits).

Settings come from, lowest to highest: defaults < the TOML file's top level and its `[verifier]` /
`[arbiter]` table < `TESSERA_*` environment variables < flags (docs/operator-guide.md). The global
`--network`, `--account` and `--deployment` count as flags only when given explicitly, so a config
file's values are not overridden by a default. Keys come only from the encrypted ape keystore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protocol.cli.common import (
    explicit_global_flags,
    format_amount,
    json_option,
    make_client,
    pass_settings,
    print_fields,
    print_json,
    print_receipt,
)
from protocol.errors import ConfigError

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
    click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
                 help="Where recomputations run (this machine's own class; --cpu-capability adds others)."),
    click.option("--cpu-capability", "cpu_capabilities", multiple=True, type=click.Choice(["default", "avx2", "avx512"]),
                 help="Also reproduce the environment class of this CPU kernel set (repeatable)."),
    click.option("--log-format", type=click.Choice(["json", "text"]), default=None, help="Log line format."),
    click.option("--max-iterations", type=int, default=None, hidden=True, help="Stop after N loop iterations."),
]


def _common(func: Any) -> Any:
    for option in reversed(COMMON_OPTIONS):
        func = option(func)
    return func


def run_daemon(ctx: click.Context, daemon_cls: Any, config_cls: Any, section: str, flags: dict[str, Any],
               config_path: Path | None, max_iterations: int | None) -> None:
    """Load `config_cls` (defaults < TOML `[section]` < env < flags) and run `daemon_cls` on it."""
    from worker.runtime.config import load_config
    from worker.runtime.logs import setup_logging

    flags = {k: (list(v) if isinstance(v, tuple) else v) for k, v in flags.items() if v is not None and v != ()}
    config = load_config(config_cls, config_path, flags={**explicit_global_flags(ctx), **flags}, section=section)
    setup_logging(section, level=config.log_level, fmt=config.log_format)
    daemon = daemon_cls(config)
    code = daemon.run(max_iterations=max_iterations)
    ctx.exit(code)


@click.group("verifier")
def verifier() -> None:
    """The verifier daemon: recompute sampled parts of committed jobs, challenge wrong ones."""


@verifier.command("run")
@_common
@click.option("--verify-fraction", type=float, default=None, help="Share of committed jobs to check (0..1).")
@click.option("--segments-per-check", type=int, default=None, help="Segments replayed per checked job.")
@click.option("--watch-worker", "watch_workers", multiple=True, help="Always check this worker's jobs (repeatable).")
@click.option("--watch-job", "watch_jobs", type=int, multiple=True, help="Always check this job (repeatable).")
@click.pass_context
def verifier_run(ctx: click.Context, config_path: Path | None, max_iterations: int | None, watch_workers: tuple,
                 watch_jobs: tuple, **options: Any) -> None:
    """Run the verifier until SIGTERM/SIGINT (drains cleanly)."""
    from worker.verifier import VerifierConfig, VerifierDaemon

    flags = {**options, "watch_workers": watch_workers, "watch_jobs": watch_jobs}
    run_daemon(ctx, VerifierDaemon, VerifierConfig, "verifier", flags, config_path, max_iterations)


@click.group("arbiter")
def arbiter() -> None:
    """The arbiter daemon: publish the environment classes it reproduces, settle revealed disputes."""


@arbiter.command("run")
@_common
@click.pass_context
def arbiter_run(ctx: click.Context, config_path: Path | None, max_iterations: int | None, **options: Any) -> None:
    """Run the arbiter until SIGTERM/SIGINT (drains cleanly). The account must be the deployment's arbiter."""
    from worker.arbiter import ArbiterConfig, ArbiterDaemon

    run_daemon(ctx, ArbiterDaemon, ArbiterConfig, "arbiter", options, config_path, max_iterations)


# --------------------------------------------------------------------------------------------------
# One dispute by hand
# --------------------------------------------------------------------------------------------------


def dispute_json(view: Any) -> dict[str, Any]:
    """The stable `--json` shape of one dispute (docs/cli.md, "dispute")."""
    claim = view.claim
    return {
        "dispute_id": view.dispute_id, "job_id": view.job_id, "challenger": view.challenger,
        "status": view.status.label, "claim": claim.label if claim else None, "segment": view.segment,
        "h_a": view.h_a, "h_b": view.h_b, "filed_at": view.filed_at, "arbiter_deadline": view.deadline,
        "bond": str(view.bond),
    }


@click.group("dispute")
def dispute() -> None:
    """Inspect and move one dispute by hand (file and reveal: `tessera job challenge`)."""


@dispute.command("show")
@click.argument("dispute_id", type=click.IntRange(min=1))
@json_option
@pass_settings
def show(settings: Any, dispute_id: int, as_json: bool) -> None:
    """Show dispute DISPUTE_ID as the contract holds it."""
    client = make_client(settings)
    view = client.dispute(dispute_id)
    game = client.referee_game_view(dispute_id)
    if as_json:
        data = dispute_json(view)
        if game is not None:
            data["referee_game"] = {**game.model_dump(), "stage_name": game.stage_name}
        print_json(data)
    else:
        from protocol.timefmt import format_chain_time

        client_now = client.block_time()
        data = dispute_json(view)
        data["bond"] = format_amount(view.bond)
        data["filed_at"] = format_chain_time(view.filed_at, client_now)
        data["arbiter_deadline"] = (format_chain_time(view.deadline, client_now) if view.deadline or game is None
                                    else "none while its referee game runs")
        if game is not None:
            data["referee_game"] = game.label
        print_fields(view.label, data)


def _dispute_write(name: str, method: str, doc: str) -> None:
    @dispute.command(name=name, help=doc)
    @click.argument("dispute_id", type=click.IntRange(min=1))
    @json_option
    @pass_settings
    def command(settings: Any, dispute_id: int, as_json: bool) -> None:
        client = make_client(settings, need_account=True)
        receipt = getattr(client, method)(dispute_id)
        print_receipt(receipt, as_json, dispute_id=dispute_id, status=client.dispute(dispute_id).status.label)


_dispute_write("timeout", "dispute_timeout",
               "Time out a revealed dispute the arbiter left unanswered past its window (anyone): its bond is "
               "unlocked; the job is voided once no dispute of it is open.")
_dispute_write("close", "close_dispute", "Unlock the bond of a dispute whose job is already settled (anyone).")


@dispute.command("credits")
@click.argument("address", required=False)
@json_option
@pass_settings
def credits(settings: Any, address: str | None, as_json: bool) -> None:
    """Refunds, rewards and compensations waiting to be withdrawn (default: --account)."""
    if address is None and not settings.account:
        raise ConfigError("pass an ADDRESS or --account")
    client = make_client(settings)  # a read: --account gives only its address, no passphrase
    owed = client.owed(address or client.address)
    if as_json:
        print_json({name: str(amount) for name, amount in owed.items()})
    else:
        print_fields(f"credits of {address or client.address}", {k: format_amount(v) for k, v in owed.items()})


@dispute.command("withdraw")
@json_option
@pass_settings
def withdraw(settings: Any, as_json: bool) -> None:
    """Withdraw every credit of --account from the escrow and the disputes contract."""
    client = make_client(settings, need_account=True)
    for receipt in client.withdraw_owed():
        print_receipt(receipt, as_json)
