"""Encrypted ape keystore accounts: round trip, wrong passphrase, passphrase sources, test keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from protocol import devnet
from protocol.accounts import create_keystore as _create_keystore
from protocol.accounts import keystore_path, list_aliases, load_account, test_account
from protocol.errors import AccountError

KEY = "0x" + "4c" * 32


def create_keystore(alias: str, key: str, passphrase: str) -> Path:
    """Real scrypt keyfiles with a small work factor, so the suite stays fast."""
    return _create_keystore(alias, key, passphrase, iterations=2**12)


@pytest.fixture
def ape_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path))
    monkeypatch.delenv("TESSERA_PASSPHRASE", raising=False)
    monkeypatch.delenv("TESSERA_PASSPHRASE_FILE", raising=False)
    return tmp_path


def test_keystore_round_trip(ape_home: Path) -> None:
    path = create_keystore("alice", KEY, "correct horse")
    assert path == ape_home / "accounts" / "alice.json"
    account = load_account("alice", passphrase="correct horse")
    assert account.address == Account.from_key(KEY).address
    assert list_aliases() == ["alice"]


def test_keyfile_is_ape_format_and_private(ape_home: Path) -> None:
    path = create_keystore("bob", KEY, "pw")
    text = path.read_text()
    data = json.loads(text)
    assert data["version"] == 3 and data["crypto"]["kdf"] == "scrypt"
    assert data["address"].lower() == Account.from_key(KEY).address[2:].lower()
    assert KEY[2:] not in text  # the plain key never reaches the disk
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # ape decrypts the same way: a plain v3 keyfile
    assert Account.decrypt(data, "pw").hex().removeprefix("0x") == KEY[2:]


def test_wrong_passphrase(ape_home: Path) -> None:
    create_keystore("carol", KEY, "right")
    with pytest.raises(AccountError, match="wrong passphrase for account 'carol'"):
        load_account("carol", passphrase="wrong")


def test_passphrase_from_env_and_file(ape_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    create_keystore("dave", KEY, "s3cret")
    monkeypatch.setenv("TESSERA_PASSPHRASE", "s3cret")
    assert load_account("dave").address == Account.from_key(KEY).address
    monkeypatch.delenv("TESSERA_PASSPHRASE")
    secret_file = ape_home / "pass.txt"
    secret_file.write_text("s3cret\n")
    monkeypatch.setenv("TESSERA_PASSPHRASE_FILE", str(secret_file))
    assert load_account("dave").address == Account.from_key(KEY).address
    monkeypatch.setenv("TESSERA_PASSPHRASE_FILE", str(ape_home / "missing.txt"))
    with pytest.raises(AccountError, match="cannot read passphrase file"):
        load_account("dave")


def test_prompt_is_used_last(ape_home: Path) -> None:
    create_keystore("erin", KEY, "typed")
    prompts: list[str] = []
    account = load_account("erin", prompt=lambda msg: prompts.append(msg) or "typed")
    assert account.address == Account.from_key(KEY).address
    assert prompts and "erin" in prompts[0]


def test_unknown_alias_lists_known(ape_home: Path) -> None:
    create_keystore("frank", KEY, "pw")
    with pytest.raises(AccountError, match="no account 'ghost'.*known aliases: frank"):
        load_account("ghost", passphrase="pw")


def test_refuses_overwrite_and_empty_passphrase(ape_home: Path) -> None:
    create_keystore("gina", KEY, "pw")
    with pytest.raises(AccountError, match="already exists"):
        create_keystore("gina", KEY, "pw2")
    with pytest.raises(AccountError, match="empty passphrase"):
        create_keystore("hank", KEY, "")


@pytest.mark.parametrize("alias", ["../evil", "a/b", "", "x" * 65, ".."])
def test_alias_cannot_escape(alias: str, ape_home: Path) -> None:
    with pytest.raises(AccountError, match="invalid account alias"):
        keystore_path(alias)


def test_corrupt_keyfile(ape_home: Path) -> None:
    (ape_home / "accounts").mkdir()
    (ape_home / "accounts" / "junk.json").write_text("{not json")
    with pytest.raises(AccountError, match="cannot read keyfile"):
        load_account("junk", passphrase="x")


def test_test_accounts_only_on_local_chain() -> None:
    assert load_account("TEST::2", chain_id=31337).key.hex().removeprefix("0x") == devnet.test_account_keys(3)[2][2:]
    with pytest.raises(AccountError, match="refusing to use it on chain id 11155111"):
        load_account("TEST::1", chain_id=11155111)
    with pytest.raises(AccountError, match="TEST::<n>"):
        load_account("TEST::x")
    assert test_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
