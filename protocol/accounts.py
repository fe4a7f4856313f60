"""Signing accounts from the encrypted ape keystore, never from plain-text keys.

An account is named by an ape alias: the file `<ape data folder>/accounts/<alias>.json` holds a
standard web3 (v3) encrypted keyfile, exactly what `ape accounts generate/import` writes, so operators
can manage keys with ape and use them here without importing ape. The passphrase comes from the
argument, `TESSERA_PASSPHRASE`, a file named by `TESSERA_PASSPHRASE_FILE`, or an interactive prompt, in
that order. `TEST::<n>` names account n of the well-known local test mnemonic, allowed only on the local
chain id 31337 because those keys are public.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Callable

from eth_account import Account
from eth_account.signers.local import LocalAccount

from protocol.errors import AccountError

ENV_PASSPHRASE = "TESSERA_PASSPHRASE"
ENV_PASSPHRASE_FILE = "TESSERA_PASSPHRASE_FILE"
TEST_PREFIX = "TEST::"
LOCAL_CHAIN_ID = 31337
MAX_KEYFILE_BYTES = 64 * 1024
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def ape_data_folder() -> Path:
    """`$APE_DATA_FOLDER`, else `~/.ape` (ape's own rule)."""
    env = os.environ.get("APE_DATA_FOLDER")
    return Path(env).expanduser() if env else Path.home() / ".ape"


def keystore_path(alias: str, data_folder: Path | None = None) -> Path:
    """Where the keyfile of `alias` lives; rejects aliases that could escape the accounts folder."""
    if not _ALIAS_RE.match(alias) or alias in {".", ".."}:
        raise AccountError(f"invalid account alias {alias!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return (data_folder or ape_data_folder()) / "accounts" / f"{alias}.json"


def list_aliases(data_folder: Path | None = None) -> list[str]:
    """Aliases that have a keyfile in the ape accounts folder, sorted."""
    folder = (data_folder or ape_data_folder()) / "accounts"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def create_keystore(
    alias: str,
    private_key: str | bytes,
    passphrase: str,
    *,
    data_folder: Path | None = None,
    overwrite: bool = False,
    iterations: int | None = None,
) -> Path:
    """Encrypt `private_key` with `passphrase` into the ape keystore as `alias`; return the file path.

    The file is written with mode 0600 via a temporary file and an atomic rename, so a crash never
    leaves a half-written keyfile and the plain key never touches the disk. `iterations` is the scrypt
    work factor n (default: eth-account's, 2**18, as ape uses); tests lower it to stay fast.
    """
    if not passphrase:
        raise AccountError("refusing to create a keystore with an empty passphrase")
    path = keystore_path(alias, data_folder)
    if path.exists() and not overwrite:
        raise AccountError(f"account {alias!r} already exists at {path}")
    try:
        keyfile = Account.encrypt(private_key, passphrase, kdf="scrypt", iterations=iterations)
    except (ValueError, TypeError) as exc:
        raise AccountError(f"not a valid private key for account {alias!r}: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    try:
        with os.fdopen(fd, "w", encoding="utf8") as handle:
            json.dump(keyfile, handle)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def resolve_passphrase(
    passphrase: str | None = None,
    *,
    alias: str = "",
    prompt: Callable[[str], str] | None = None,
) -> str:
    """Passphrase from the argument, `TESSERA_PASSPHRASE`, `TESSERA_PASSPHRASE_FILE` or `prompt`."""
    if passphrase is not None:
        return passphrase
    env = os.environ.get(ENV_PASSPHRASE)
    if env is not None:
        return env
    file_name = os.environ.get(ENV_PASSPHRASE_FILE)
    if file_name:
        try:
            with open(file_name, encoding="utf8") as handle:
                return handle.read(4096).rstrip("\r\n")
        except OSError as exc:
            raise AccountError(f"cannot read passphrase file {file_name} ({ENV_PASSPHRASE_FILE}): {exc}") from exc
    if prompt is None:
        import getpass
        import sys

        if not sys.stdin or not sys.stdin.isatty():
            raise AccountError(
                f"no passphrase for account {alias!r}: set {ENV_PASSPHRASE} or {ENV_PASSPHRASE_FILE} "
                "(no terminal to prompt on)"
            )
        prompt = getpass.getpass
    return prompt(f"Passphrase for account {alias!r}: ")


class ReadOnlyAccount:
    """An account known by its address only, for commands that read: it has no key and never signs.

    Why: a read such as `stake show --account deployer` needs the address, and asking for the
    passphrase there teaches people to type it where nothing is at stake.
    """

    def __init__(self, address: str, alias: str) -> None:
        self.address = address
        self.alias = alias

    def sign_transaction(self, tx: object) -> object:
        raise AccountError(f"account {self.alias!r} was opened read-only (address only); this command cannot sign")

    def __repr__(self) -> str:
        return f"ReadOnlyAccount({self.alias!r}, {self.address})"


def _read_keyfile(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_KEYFILE_BYTES:
            raise AccountError(f"keyfile {path} is too large to be a keystore")
        keyfile = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as exc:
        raise AccountError(f"cannot read keyfile {path}: {exc}") from exc
    if not isinstance(keyfile, dict) or "crypto" not in keyfile and "Crypto" not in keyfile:
        raise AccountError(f"{path} is not an encrypted web3 keyfile")
    return keyfile


def _existing_keyfile(name: str, data_folder: Path | None) -> Path:
    path = keystore_path(name, data_folder)
    if not path.is_file():
        known = ", ".join(list_aliases(data_folder)) or "none"
        raise AccountError(f"no account {name!r} in the ape keystore ({path}); known aliases: {known}")
    return path


def read_only_account(
    name: str, *, chain_id: int | None = None, data_folder: Path | None = None
) -> "ReadOnlyAccount | LocalAccount":
    """The address of `name` without decrypting anything: the keyfile's `address` field.

    `TEST::<n>` keys are public, so those come back as the (signing) test account, as in `load_account`.
    """
    if name.startswith(TEST_PREFIX):
        return load_account(name, chain_id=chain_id, data_folder=data_folder)
    path = _existing_keyfile(name, data_folder)
    raw = _read_keyfile(path).get("address")
    text = raw if isinstance(raw, str) else ""
    text = text if text.startswith(("0x", "0X")) else "0x" + text
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", text):
        raise AccountError(f"keyfile {path} records no address; pass the address to read, not --account {name}")
    from eth_utils import to_checksum_address

    return ReadOnlyAccount(to_checksum_address(text), name)


def keyfile_mode_warning(name: str, data_folder: Path | None = None) -> str | None:
    """A warning when the keyfile of `name` can be read by its group or by others (None when private).

    `ape accounts import` writes 0644 keyfiles; the key is encrypted, but a readable file invites an
    offline passphrase attack, so daemons say so at start (tessera's own `create_keystore` writes 0600).
    """
    if name.startswith(TEST_PREFIX):
        return None
    path = keystore_path(name, data_folder)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return (f"keyfile {path} has mode {mode:04o}: other users can read the encrypted key; "
                f"run `chmod 600 {path}`")
    return None


def test_account(index: int, chain_id: int | None = None) -> LocalAccount:
    """Account `index` of the local test mnemonic; refused on any chain but the local one (31337)."""
    from protocol.devnet import test_account_keys

    if chain_id is not None and chain_id != LOCAL_CHAIN_ID:
        raise AccountError(
            f"TEST::{index} is a public test key; refusing to use it on chain id {chain_id} "
            f"(only on the local chain {LOCAL_CHAIN_ID})"
        )
    if not 0 <= index < 100:
        raise AccountError(f"TEST::<n> needs 0 <= n < 100, got {index}")
    return Account.from_key(test_account_keys(index + 1)[index])


test_account.__test__ = False  # a helper, not a pytest test, even when imported into a test module


def load_account(
    name: str,
    *,
    passphrase: str | None = None,
    chain_id: int | None = None,
    data_folder: Path | None = None,
    prompt: Callable[[str], str] | None = None,
) -> LocalAccount:
    """Load `name` (an ape alias or `TEST::<n>`) as an eth-account `LocalAccount`.

    Wrong passphrase, unknown alias or an unreadable keyfile raise `AccountError` with the reason.
    """
    if name.startswith(TEST_PREFIX):
        raw = name[len(TEST_PREFIX):]
        if not raw.isdigit():
            raise AccountError(f"bad test account {name!r}: expected TEST::<n> with n a number")
        return test_account(int(raw), chain_id)
    path = _existing_keyfile(name, data_folder)
    keyfile = _read_keyfile(path)
    secret = resolve_passphrase(passphrase, alias=name, prompt=prompt)
    try:
        key = Account.decrypt(keyfile, secret)
    except ValueError as exc:
        raise AccountError(f"wrong passphrase for account {name!r} ({path})") from exc
    except Exception as exc:  # malformed crypto params
        raise AccountError(f"cannot decrypt keyfile {path}: {exc}") from exc
    return Account.from_key(key)
