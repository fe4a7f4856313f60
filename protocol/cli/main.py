"""`tessera`: the root command group.

The group is lazy: each subcommand is named by a `"module:attr"` string and imported only when it
runs, so `tessera --help` answers in a blink and never imports torch, ape or web3. Commands written
by other parts of the project (engine, worker, disputes) plug in the same way; when their module is
not installed yet the command says so in one line instead of failing at start-up.

Every `TesseraError` ends the command with `error: <message>` on stderr and the error's exit code;
`--debug` shows the traceback instead. `--network`, `--account` and `--rpc-timeout` are accepted
after any subcommand too (`tessera job list --network …`), where ape users type them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from protocol.cli.common import DEFAULT_NETWORK, CliSettings, one_line, settings_of
from protocol.errors import TesseraError
from protocol.redaction import redact

# name -> (import target, one-line help shown by `tessera --help` without importing anything)
COMMANDS: dict[str, tuple[str, str]] = {
    "deploy": ("protocol.cli.deploy_cmds:deploy", "Deploy every contract and write deployments/<chain_id>.json."),
    "stake": ("protocol.cli.stake_cmds:stake", "Stake, request unstake, withdraw, show stake."),
    "faucet": ("protocol.cli.faucet_cmds:faucet", "Mint dev tokens from the DevToken faucet."),
    "job": ("protocol.cli.job_cmds:job", "Submit, inspect and drive jobs through their states."),
    "model": ("protocol.cli.model_cmds:model", "Register models, show their provenance, import/export Hugging Face checkpoints."),
    "devnet": ("protocol.cli.devnet_cmds:devnet", "Run a local anvil chain in the background."),
    "spec": ("protocol.cli.engine_cmds:spec", "Task specs: JSON schema and validation."),
    "run": ("protocol.cli.engine_cmds:run", "Run a task spec locally (no chain)."),
    "replay": ("protocol.cli.engine_cmds:replay", "Replay one segment from its checkpoint."),
    "worker": ("protocol.cli.worker_cmds:worker", "The worker daemon: claim, run and commit jobs."),
    "verifier": ("protocol.cli.dispute_cmds:verifier", "The verifier daemon: re-run segments, challenge."),
    "arbiter": ("protocol.cli.dispute_cmds:arbiter", "The arbiter daemon: settle disputes."),
    "dispute": ("protocol.cli.dispute_cmds:dispute", "Show, time out or close one dispute; withdraw credits."),
    "env": ("protocol.cli.env_cmds:env", "Environment classes: this machine's, the deployment's, publish."),
    "store": ("protocol.cli.store_cmds:store", "Serve an artifact store directory read-only over HTTP."),
}


def _unavailable(name: str, reason: str) -> click.Command:
    """A stand-in command that explains why `name` cannot run here, whatever arguments it gets."""

    @click.command(
        name=name,
        help=f"(unavailable: {reason})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
        add_help_option=False,
    )
    @click.pass_context
    def stand_in(ctx: click.Context) -> None:
        raise TesseraError(f"`tessera {name}` is not available: {reason}")

    return stand_in


# Root options that every subcommand accepts too: (param name, flag, click type, help).
TRAILING_GLOBALS: tuple[tuple[str, str, Any, str], ...] = (
    ("network", "--network", None, "Same as `tessera --network` (ape network choice or RPC URL)."),
    ("account", "--account", None, "Same as `tessera --account` (ape keystore alias or TEST::<n>)."),
    ("rpc_timeout", "--rpc-timeout", click.FloatRange(min=0, min_open=True),
     "Same as `tessera --rpc-timeout` (seconds per RPC call, retries included)."),
)


def _set_trailing_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the subcommand overrides the root's value for this command."""
    if value is None or param.name is None:
        return
    ctx.obj = settings_of(ctx).model_copy(update={param.name: value})


def accept_trailing_globals(command: click.Command) -> click.Command:
    """Give `command` (and, for a group, every subcommand) the trailing global options it lacks."""
    for name, flag, kind, text in TRAILING_GLOBALS:
        if any(p.name == name or flag in getattr(p, "opts", ()) for p in command.params):
            continue
        command.params.append(
            click.Option([flag, name], type=kind, default=None, expose_value=False, callback=_set_trailing_global,
                         help=text)
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_trailing_globals(sub)
    return command


def load_command(name: str, target: str) -> click.Command:
    """Import `"module:attr"` and return the click command, or a stand-in that says what is missing."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if module_name == missing or module_name.startswith(missing + "."):
            return _unavailable(name, f"module {module_name} is not part of this installation yet")
        return _unavailable(name, f"it needs the Python package {missing!r}, which is not installed")
    # Tolerate the usual spellings so other parts can name their click object naturally.
    for candidate in (attr, f"{attr}_cmd", f"{attr}_group", f"{attr}_command"):
        command = getattr(module, candidate, None)
        if isinstance(command, click.Command):
            return command
    return _unavailable(name, f"{module_name} defines no click command named {attr!r}")


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use, with one-line error handling."""

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy_commands:
            return accept_trailing_globals(command) if command is not None else None
        command = accept_trailing_globals(load_command(cmd_name, self.lazy_commands[cmd_name][0]))
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the registry, so listing commands imports none of them.
        rows = [(name, self.lazy_commands[name][1]) for name in sorted(self.lazy_commands)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """click's `main`, but a usage error is one line too: `error: <what> (see `<command> --help`)`
        with exit code 2, instead of click's usage block, hint and `Error:` line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"error: {one_line(exc.format_message())}{_help_hint(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        # Without standalone mode click returns the exit code of a `ctx.exit(code)`; commands return None.
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except TesseraError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: {redact(one_line(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
            if _debug(ctx):
                raise
            click.echo(
                f"error: unexpected {type(exc).__name__}: {redact(one_line(exc))} (run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _help_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        return f" (see `{ctx.command_path} --help`)"
    return ""


def _debug(ctx: click.Context) -> bool:
    settings = ctx.find_object(CliSettings)
    return bool(settings and settings.debug)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "--network",
    envvar="TESSERA_NETWORK",
    default=DEFAULT_NETWORK,
    show_default=True,
    help="ape network choice (ethereum:local:foundry, ethereum:sepolia:node, ...) or an RPC URL. Env: TESSERA_NETWORK.",
)
@click.option(
    "--account",
    envvar="TESSERA_ACCOUNT",
    default=None,
    help="ape keystore alias, or TEST::<n> for the local test mnemonic. Passphrase: prompt or TESSERA_PASSPHRASE. "
    "Env: TESSERA_ACCOUNT.",
)
@click.option(
    "--rpc-timeout",
    envvar="TESSERA_RPC_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds each RPC call may take, retries included, before a clear timeout error (default 15). "
    "Env: TESSERA_RPC_TIMEOUT.",
)
@click.option(
    "--deployment",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Deployment file. Default: deployments/<chain_id>.json.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--no-preflight",
    is_flag=True,
    help="Send transactions even when the pre-flight checks say they will fail (shows the contract's revert reason).",
)
@click.version_option(package_name="tessera", prog_name="tessera")
@click.pass_context
def cli(
    ctx: click.Context,
    network: str,
    account: str | None,
    rpc_timeout: float | None,
    deployment: Any,
    debug: bool,
    no_preflight: bool,
) -> None:
    """Tessera: verifiable ML compute on EVM chains.

    Stake, post and drive jobs, register models and read their lineage, run the daemons.
    """
    ctx.obj = CliSettings(
        network=network, account=account or None, rpc_timeout=rpc_timeout, deployment=deployment, debug=debug,
        preflight=not no_preflight,
    )


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`tessera = protocol.cli.main:main`)."""
    cli.main(args=argv, prog_name="tessera")


if __name__ == "__main__":
    main(sys.argv[1:])
