"""Every failure a user can meet prints one `error: …` line (no traceback) and a non-zero exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.devnet import free_port
from tests.unit.cli.conftest import tiny_spec


def assert_one_line(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    # Progress lines may come first; the error is one line, the last one.
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def _spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec("0x" + "ab" * 32)))
    return path


def test_no_deployment(tessera, tmp_path) -> None:
    result = tessera("job", "show", "1", deployment_path=tmp_path / "missing.json", ok=False)
    assert_one_line(result, 1, "no deployment file at", "missing.json")


def test_no_deployment_for_chain(tessera, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from protocol.cli.main import cli

    from protocol.devnet import start_anvil

    monkeypatch.setenv("TESSERA_DEPLOYMENTS_DIR", str(tmp_path))

    with start_anvil() as node:
        result = CliRunner(mix_stderr=False).invoke(cli, ["--network", node.rpc_url, "job", "list"])
    assert_one_line(result, 1, "no deployment for chain id 31337", "tessera deploy")


def test_rpc_unreachable(tessera) -> None:
    result = tessera("job", "show", "1", network=f"http://127.0.0.1:{free_port()}", ok=False)
    assert_one_line(result, 1, "unreachable")


def test_wrong_passphrase(tessera, tmp_path, monkeypatch, test_keys) -> None:
    from protocol.accounts import create_keystore

    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    create_keystore("alice", test_keys[7], "right horse battery", data_folder=tmp_path / "ape")
    monkeypatch.setenv("TESSERA_PASSPHRASE", "wrong")
    result = tessera("faucet", "1", account="alice", ok=False)
    assert_one_line(result, 1, "wrong passphrase for account 'alice'")
    monkeypatch.setenv("TESSERA_PASSPHRASE", "right horse battery")
    out = tessera("faucet", "1", "--json", account="alice", json_out=True)
    assert out["minted"] == str(10**18)
    unknown = tessera("faucet", "1", account="bob", ok=False)
    assert_one_line(unknown, 1, "no account 'bob'", "alice")


def test_test_account_refused_without_account(tessera) -> None:
    assert_one_line(tessera("faucet", "1", ok=False), 2, "pass --account")


def test_insufficient_balance_stake_allowance(tessera, fresh_chain, tmp_path) -> None:
    broke = tessera("stake", "deposit", "10", account="TEST::8", ok=False)
    assert_one_line(broke, 1, "token balance 0", "below")

    spec = _spec_file(tmp_path)
    tessera("faucet", "100", account="TEST::1")
    no_allowance = tessera("job", "submit", str(spec), "--payment", "5", "--collateral", "10", "--store",
                           str(tmp_path / "s"), "--no-approve", account="TEST::1", ok=False)
    assert_one_line(no_allowance, 1, "allowance", "approve")
    job_id = tessera("job", "submit", str(spec), "--payment", "5", "--collateral", "10", "--store",
                     str(tmp_path / "s"), "--json", account="TEST::1", json_out=True)["job_id"]
    unstaked = tessera("job", "claim", str(job_id), account="TEST::9", ok=False)
    assert_one_line(unstaked, 1, f"cannot claim job {job_id}: available stake 0", "stake more first")


def test_invalid_spec(tessera, tmp_path) -> None:
    bad = tiny_spec("0x" + "ab" * 32)
    bad["steps"] = -1
    bad["model"]["layers"][0]["type"] = "rnn"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = tessera("job", "submit", str(path), "--payment", "1", "--collateral", "1", account="TEST::1", ok=False)
    assert_one_line(result, 2, "steps")
    missing = tessera("job", "submit", str(tmp_path / "nope.json"), "--payment", "1", "--collateral", "1",
                      account="TEST::1", ok=False)
    assert_one_line(missing, 2, "cannot read spec file")


def test_revert_reason_is_decoded(tessera, fresh_chain, tmp_path) -> None:
    spec = _spec_file(tmp_path)
    tessera("faucet", "100", account="TEST::1")
    job_id = tessera("job", "submit", str(spec), "--payment", "5", "--collateral", "10", "--store",
                     str(tmp_path / "s"), "--json", account="TEST::1", json_out=True)["job_id"]
    checked = tessera("job", "cancel", str(job_id), account="TEST::7", ok=False)
    assert_one_line(checked, 1, "only its submitter")
    raw = tessera("--no-preflight", "job", "cancel", str(job_id), account="TEST::7", ok=False)
    assert_one_line(raw, 1, "escrow:")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["job", "show", "0"], "0 is not in the range x>=1"),
        (["faucet", "1.5wei"], "wei amounts are whole numbers"),
        (["job", "commit", "1", "--trace", "t.json", "--output-hash", "0x12", "--artifact-uri", "x"],
         "expected 0x followed by 64 hex digits"),
        (["job", "challenge", "1", "--claim", "lazy"], "Invalid value for '--claim'"),
        (["model", "register", "0x" + "1" * 64, "--parent", "0x" + "2" * 64 + ":cousin"], "unknown relation 'cousin'"),
        # click's own usage errors (the rehearsal's #15): one line, not click's usage block
        (["stake", "200"], ("No such command '200'. (see `", " stake --help`)")),
        (["job", "show", "abc"], "'abc' is not a valid integer"),
        (["job", "submit", "s.json", "--payment", "2.5.1", "--collateral", "1"], "invalid amount '2.5.1'"),
        (["job", "list", "--bogus"], ("No such option: --bogus (see `", " job list --help`)")),
        (["job", "list", "--submitter", "0x1234"], "invalid --submitter '0x1234'"),
    ],
)
def test_bad_arguments(tessera, args, fragment) -> None:
    result = tessera(*args, account="TEST::1", ok=False)
    assert_one_line(result, 2, *(fragment if isinstance(fragment, tuple) else (fragment,)))
    assert not result.stdout


def test_unknown_model_exits_1_with_or_without_json(tessera) -> None:
    unknown = "0x" + "ab" * 32
    human = tessera("model", "show", unknown, ok=False)
    assert_one_line(human, 1, f"model {unknown} is not registered")
    assert not human.stdout
    as_json = tessera("model", "show", unknown, "--json", ok=False)
    assert_one_line(as_json, 1, f"model {unknown} is not registered")
    document = json.loads(as_json.stdout)  # scripts still get the document, with exists: false
    assert document["model"]["exists"] is False and document["lineage"] is None
