"""Config precedence (defaults < TOML < env < flags), the env parser, and refusal of secrets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError
from worker.runtime.config import DaemonConfig, WorkerConfig, load_config, parse_env_value

maybe_int = st.one_of(st.none(), st.integers(0, 1_000))


@settings(deadline=None)
@given(default_toml=maybe_int, section=maybe_int, env=maybe_int, flag=maybe_int)
def test_precedence_is_toml_then_section_then_env_then_flags(tmp_path_factory, default_toml, section, env, flag):
    path = tmp_path_factory.mktemp("cfg") / "w.toml"
    lines = [] if default_toml is None else [f"confirmations = {default_toml}"]
    if section is not None:
        lines += ["[worker]", f"confirmations = {section}"]
    path.write_text("\n".join(lines) + "\n")
    environ = {} if env is None else {"TESSERA_CONFIRMATIONS": str(env)}
    flags = {"confirmations": flag}
    config = load_config(WorkerConfig, path, environ=environ, flags=flags)
    expected = next((v for v in (flag, env, section, default_toml) if v is not None), 2)
    assert config.confirmations == expected


kinds = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), max_size=5)


@settings(deadline=None)
@given(values=kinds, as_json=st.booleans())
def test_env_lists_parse_as_json_or_commas(values, as_json):
    raw = json.dumps(values) if as_json else ",".join(values)
    config = load_config(WorkerConfig, None, environ={"TESSERA_ALLOWED_KINDS": raw})
    assert config.allowed_kinds == values


@settings(deadline=None)
@given(text=st.text(max_size=40))
def test_env_parser_never_crashes_untyped(text):
    """Any string either validates or raises ConfigError: never another exception."""
    for key in ("TESSERA_CONFIRMATIONS", "TESSERA_ALLOWED_KINDS", "TESSERA_MAX_COLLATERAL", "TESSERA_NETWORK",
                "TESSERA_PASSPHRASE_SOURCE", "TESSERA_FEE_CAP_GWEI"):
        try:
            load_config(WorkerConfig, None, environ={key: text})
        except ConfigError:
            pass


def test_optional_env_value_can_be_unset():
    assert parse_env_value("", int | None) is None
    assert load_config(WorkerConfig, None, environ={"TESSERA_MAX_COLLATERAL": "none"}).max_collateral is None
    assert load_config(WorkerConfig, None, environ={"TESSERA_MAX_COLLATERAL": "7"}).max_collateral == 7


@pytest.mark.parametrize("key", ["private_key", "mnemonic", "secret"])
def test_secret_material_is_refused(tmp_path, key):
    path = tmp_path / "w.toml"
    path.write_text(f'{key} = "0xabc"\n')
    with pytest.raises(ConfigError, match="encrypted ape keystore"):
        load_config(WorkerConfig, path, environ={})


def test_passphrase_must_be_a_source_not_a_secret():
    with pytest.raises(ConfigError, match="passphrase"):
        load_config(DaemonConfig, None, environ={"TESSERA_PASSPHRASE_SOURCE": "hunter2"})
    with pytest.raises(ConfigError, match="passphrase"):
        load_config(DaemonConfig, None, environ={}, flags={"passphrase": "hunter2"})
    for source in ("prompt", "env:WORKER_PASS", "file:/run/secrets/pass"):
        assert load_config(DaemonConfig, None, environ={"TESSERA_PASSPHRASE_SOURCE": source}).passphrase == source
    # TESSERA_PASSPHRASE is protocol.accounts' passphrase itself, not a config override.
    assert load_config(DaemonConfig, None, environ={"TESSERA_PASSPHRASE": "hunter2"}).passphrase == "prompt"


def test_unknown_keys_and_bad_toml_are_clear_errors(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text("confirmatons = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(WorkerConfig, path, environ={})
    path.write_text("confirmations = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(WorkerConfig, path, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(WorkerConfig, tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="confirmations"):
        load_config(WorkerConfig, None, environ={"TESSERA_CONFIRMATIONS": "-1"})


def test_example_config_loads():
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "worker.toml"
    config = load_config(WorkerConfig, example, environ={})
    assert config.account and config.passphrase.startswith(("env:", "file:", "prompt"))
