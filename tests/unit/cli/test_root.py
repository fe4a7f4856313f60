"""The root group: lazy loading, stand-ins for missing modules, one-line errors, the real entry point."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from protocol.cli.common import CliSettings, pass_settings
from protocol.cli.main import COMMANDS, LazyGroup, cli, load_command
from protocol.errors import DeploymentError, SpecError


@click.command()
@click.option("--kind", default="tessera")
def boom(kind: str) -> None:
    """A command that fails the way real commands fail."""
    if kind == "tessera":
        raise SpecError("spec field 'steps' must be positive")
    if kind == "deployment":
        raise DeploymentError("no deployment for chain 31337:\nrun `tessera deploy`")
    raise RuntimeError("something nobody planned for")


@click.command()
@pass_settings
def show_settings(settings: CliSettings) -> None:
    click.echo(settings.model_dump_json())


def _group() -> click.Group:
    @click.group(
        cls=LazyGroup,
        lazy_commands={
            "boom": ("tests.unit.cli.test_root:boom", "fails"),
            "settings": ("tests.unit.cli.test_root:show_settings", "prints settings"),
            "ghost": ("protocol.cli.no_such_module:ghost", "missing"),
            "noattr": ("tests.unit.cli.test_root:nothing_here", "no attribute"),
        },
    )
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def group(ctx: click.Context, debug: bool) -> None:
        ctx.obj = CliSettings(debug=debug)

    return group


def test_tessera_error_is_one_line_with_its_exit_code() -> None:
    result = CliRunner(mix_stderr=False).invoke(_group(), ["boom"])
    assert result.exit_code == SpecError.exit_code == 2
    assert result.stderr == "error: spec field 'steps' must be positive\n"
    assert "Traceback" not in result.output + result.stderr


def test_multiline_message_is_folded() -> None:
    result = CliRunner(mix_stderr=False).invoke(_group(), ["boom", "--kind", "deployment"])
    assert result.exit_code == 1
    assert result.stderr == "error: no deployment for chain 31337: run `tessera deploy`\n"


def test_unexpected_exception_is_one_line_too() -> None:
    result = CliRunner(mix_stderr=False).invoke(_group(), ["boom", "--kind", "other"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unexpected RuntimeError: something nobody planned for")
    assert result.stderr.count("\n") == 1


def test_debug_shows_the_exception() -> None:
    result = CliRunner(mix_stderr=False).invoke(_group(), ["--debug", "boom"])
    assert isinstance(result.exception, SpecError)


def test_missing_module_gives_a_clean_stand_in() -> None:
    result = CliRunner(mix_stderr=False).invoke(_group(), ["ghost", "run", "--anything", "x"])
    assert result.exit_code == 1
    assert "`tessera ghost` is not available: module protocol.cli.no_such_module" in result.stderr
    result = CliRunner(mix_stderr=False).invoke(_group(), ["noattr"])
    assert "defines no click command named 'nothing_here'" in result.stderr


def test_settings_reach_commands() -> None:
    result = CliRunner(mix_stderr=False).invoke(_group(), ["settings"])
    assert result.exit_code == 0
    assert CliSettings.model_validate_json(result.stdout) == CliSettings()


def test_global_options_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[CliSettings] = []

    @click.command("probe")
    @pass_settings
    def probe(settings: CliSettings) -> None:
        captured.append(settings)

    cli.add_command(probe)
    try:
        monkeypatch.setenv("TESSERA_NETWORK", "http://127.0.0.1:1")
        monkeypatch.setenv("TESSERA_ACCOUNT", "TEST::2")
        result = CliRunner().invoke(cli, ["--deployment", "d.json", "probe"])
        assert result.exit_code == 0, result.output
        assert captured[-1].network == "http://127.0.0.1:1"
        assert captured[-1].account == "TEST::2"
        assert str(captured[-1].deployment) == "d.json"
        result = CliRunner().invoke(cli, ["--network", "ethereum:sepolia:node", "--account", "alice", "probe"])
        assert (captured[-1].network, captured[-1].account) == ("ethereum:sepolia:node", "alice")
    finally:
        cli.commands.pop("probe", None)


def test_every_own_command_loads() -> None:
    own = [name for name, (target, _) in COMMANDS.items() if target.split(":")[0].split(".")[-1] in {
        "deploy_cmds", "stake_cmds", "faucet_cmds", "job_cmds", "model_cmds", "devnet_cmds"}]
    assert len(own) == 6
    for name in own:
        command = load_command(name, COMMANDS[name][0])
        assert "unavailable" not in (command.help or ""), (name, command.help)


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from protocol.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "heavy = [m for m in ('torch', 'ape', 'web3', 'engine', 'protocol.client') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "HEAVY []" in out
    for name in COMMANDS:
        assert name in out


def test_entry_point_subprocess() -> None:
    """The installed `tessera` script (or `python -m protocol.cli.main`) runs for real."""
    run = subprocess.run(
        [sys.executable, "-m", "protocol.cli.main", "--network", "http://127.0.0.1:1", "job", "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    for sub in ("submit", "show", "list", "wait", "cancel", "claim", "commit", "finalize", "expire", "challenge"):
        assert sub in run.stdout
