"""What every `tessera` command shares: global settings, the client factory, parsers and output.

Kept free of heavy imports: web3, the SDK client and rich are imported inside the functions that
need them, so loading a command module stays cheap.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, ConfigDict

from protocol.errors import ConfigError, TesseraError

DEFAULT_NETWORK = "ethereum:local:foundry"
TOKEN_DECIMALS = 18
MAX_UINT256 = 2**256 - 1

JOB_STATES = {
    0: "None",
    1: "Open",
    2: "Claimed",
    3: "Committed",
    4: "Challenged",
    5: "Finalized",
    6: "Cancelled",
    7: "Expired",
    8: "Rejected",
    9: "Voided",
}
RELATIONS = {"finetune": 0, "adapter": 1, "merge": 2, "quantize": 3, "distill": 4, "other": 5}
MODEL_STATUSES = {0: "None", 1: "Declared", 2: "JobVerified"}


class CliSettings(BaseModel):
    """The global options of one `tessera` invocation (flags, then env vars, then defaults)."""

    model_config = ConfigDict(frozen=True)

    network: str = DEFAULT_NETWORK
    account: str | None = None
    rpc_timeout: float | None = None  # None: TESSERA_RPC_TIMEOUT, else protocol.chain.DEFAULT_TIMEOUT
    deployment: Path | None = None
    debug: bool = False
    preflight: bool = True


def settings_of(ctx: click.Context) -> CliSettings:
    """The `CliSettings` the root group stored, or defaults when a command runs on its own."""
    found = ctx.find_object(CliSettings)
    return found if found is not None else CliSettings()


pass_settings = click.make_pass_decorator(CliSettings, ensure=True)


def explicit_global_flags(ctx: click.Context) -> dict[str, Any]:
    """`--network/--account/--rpc-timeout/--deployment`, only where set on the command line (before or
    after the subcommand) or in the environment, so that a daemon's config file is not overridden by a
    default value."""
    settings = settings_of(ctx)
    flags: dict[str, Any] = {}
    for name in ("network", "account", "rpc_timeout", "deployment"):
        node: click.Context | None = ctx
        while node is not None:  # given after a subcommand, or on the root
            source = node.get_parameter_source(name)
            if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
                flags[name] = getattr(settings, name)
                break
            node = node.parent
    return flags


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (never empty), as printed after `error: `."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def fail(message: str, exit_code: int = 1) -> TesseraError:
    """A `TesseraError` with a chosen exit code, for CLI-level input problems."""
    error = TesseraError(message)
    error.exit_code = exit_code
    return error


# --------------------------------------------------------------------------------------------------
# Parsers (token amounts, hashes)
# --------------------------------------------------------------------------------------------------

_AMOUNT_RE = re.compile(r"^(?P<int>\d+)(?:\.(?P<frac>\d+))?\s*(?P<unit>wei|tsr|tokens?)?$", re.IGNORECASE)


def parse_amount(text: str) -> int:
    """Parse a token amount into base units (18 decimals).

    `"10"`, `"1.5"`, `"2 tsr"` are whole tokens; `"1000wei"` is base units (integer only). Why both:
    humans think in tokens, scripts and tests in exact base units.
    """
    if not isinstance(text, str):
        raise ConfigError(f"amount must be text, got {type(text).__name__}")
    match = _AMOUNT_RE.match(text.strip().replace("_", ""))
    if not match:
        raise ConfigError(f"invalid amount {text!r}: use e.g. 10, 0.5, 2 tsr or 1000wei")
    whole, frac, unit = match["int"], match["frac"] or "", (match["unit"] or "tsr").lower()
    if unit == "wei":
        if frac:
            raise ConfigError(f"invalid amount {text!r}: wei amounts are whole numbers")
        value = int(whole)
    else:
        if len(frac) > TOKEN_DECIMALS:
            raise ConfigError(f"invalid amount {text!r}: at most {TOKEN_DECIMALS} decimal places")
        value = int(whole) * 10**TOKEN_DECIMALS + int(frac.ljust(TOKEN_DECIMALS, "0") or "0")
    if value > MAX_UINT256:
        raise ConfigError(f"invalid amount {text!r}: larger than uint256")
    return value


def format_amount(base_units: int) -> str:
    """Render base units as whole tokens without losing precision (`1500000000000000000` -> `1.5`)."""
    from protocol.amounts import format_tokens

    return format_tokens(base_units, TOKEN_DECIMALS)


_HASH_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")


def parse_hash(text: str, what: str = "hash") -> str:
    """Normalise a 32-byte hex hash to `0x` + 64 lower-case digits, or raise `ConfigError`."""
    if not isinstance(text, str) or not _HASH_RE.match(text.strip()):
        raise ConfigError(f"invalid {what} {text!r}: expected 0x followed by 64 hex digits")
    return text.strip().lower()


class AmountType(click.ParamType):
    """click parameter for token amounts (see `parse_amount`)."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_amount(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class HashType(click.ParamType):
    """click parameter for a 32-byte hex hash."""

    name = "hash"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_hash(value, what=param.human_readable_name if param else "hash")
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class AddressType(click.ParamType):
    """click parameter for a 20-byte address (checksummed on the way in)."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from eth_utils import is_address, to_checksum_address

        text = value.strip() if isinstance(value, str) else ""
        if not is_address(text):
            self.fail(f"{value!r} is not an address: expected 0x followed by 40 hex digits", param, ctx)
        return to_checksum_address(text)


AMOUNT = AmountType()
HASH = HashType()
ADDRESS = AddressType()


# --------------------------------------------------------------------------------------------------
# Client factory
# --------------------------------------------------------------------------------------------------


def _prompt_passphrase(message: str) -> str:
    return click.prompt(message.rstrip(": "), hide_input=True, err=True)


def unlock_account(alias: str, chain_id: int | None) -> Any:
    """Unlock `alias` (ape keystore alias or `TEST::<n>`) with `protocol.accounts.load_account`.

    The passphrase comes from `TESSERA_PASSPHRASE`, `TESSERA_PASSPHRASE_FILE` or a hidden prompt
    (when stdin is a terminal); `TEST::<n>` is refused off the local chain.
    """
    from protocol import accounts

    warning = accounts.keyfile_mode_warning(alias) if not alias.startswith(accounts.TEST_PREFIX) else None
    if warning:
        say(f"warning: {warning}")
    prompt = _prompt_passphrase if sys.stdin is not None and sys.stdin.isatty() else None
    return accounts.load_account(alias, chain_id=chain_id, prompt=prompt)


def connect_chain(settings: CliSettings) -> Any:
    """A checked `Web3` for `--network` with `--rpc-timeout`, noting on stderr when the RPC is slow."""
    from protocol.chain import connect

    return connect(settings.network, timeout=settings.rpc_timeout, slow_notice=say)


# The SDK's error hints in a CLI user's words (see `protocol.client.SDK_HINTS`).
CLI_HINTS = {
    "approve": "run without --no-approve to approve it first",
    "account": "pass --account ALIAS (or TEST::<n>) or set TESSERA_ACCOUNT",
}


def make_client(settings: CliSettings, *, need_account: bool = False, log_range: int | None = None) -> Any:
    """Connect a `TesseraClient` for these settings.

    A command that signs (`need_account`) unlocks the account; a read-only one only needs its
    address, which comes from the keyfile without the passphrase, so reads never prompt.
    `log_range` (blocks per eth_getLogs call) defaults to `TESSERA_LOG_RANGE`, else 5000.
    """
    from protocol import accounts
    from protocol.client import TesseraClient

    if need_account and not settings.account:
        raise ConfigError("this command sends a transaction: pass --account ALIAS (or TEST::<n>) or set TESSERA_ACCOUNT")
    client = TesseraClient.connect(
        connect_chain(settings), deployment=settings.deployment, preflight=settings.preflight,
        hints=CLI_HINTS, log_range=log_range,
    )
    if settings.account:
        chain_id = int(client.w3.eth.chain_id)
        if need_account:
            client = client.with_account(unlock_account(settings.account, chain_id))
        else:
            client = client.with_account(accounts.read_only_account(settings.account, chain_id=chain_id))
    return client


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Turn SDK values (pydantic models, bytes, enums, paths) into plain JSON types.

    Integers above 2**53 become strings so JavaScript readers keep every digit.
    """
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    if hasattr(value, "name") and hasattr(value, "value"):  # enums
        return value.name
    return str(value)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON to stdout (the `--json` output of every read command)."""
    click.echo(json.dumps(jsonable(data), indent=2))


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A rich table on stdout (human output)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    Console(file=click.get_text_stream("stdout"), soft_wrap=False, width=_width()).print(table)


def print_fields(title: str, fields: Mapping[str, Any]) -> None:
    """A two-column key/value table."""
    print_table(title, ["field", "value"], fields.items())


def _width() -> int | None:
    return None if sys.stdout.isatty() else 200


def json_option(func: Callable) -> Callable:
    """The `--json` flag every command has. With it, an error that carries `json_detail` (a transaction
    signed but not confirmed: its hash and state) also prints that as a JSON object on stdout, so a
    script keeps the hash; the one `error:` line still goes to stderr."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TesseraError as exc:
            detail = getattr(exc, "json_detail", None)
            if kwargs.get("as_json") and isinstance(detail, Mapping):
                print_json({"error": one_line(exc), **detail})
            raise

    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (schema in docs/cli.md).")(run)


def say(message: str) -> None:
    """A human status line on stderr (keeps stdout clean for JSON and tables)."""
    click.echo(message, err=True)


def receipt_json(receipt: Any, **extra: Any) -> dict[str, Any]:
    """The stable `--json` shape of a sent transaction (docs/cli.md, "receipt")."""
    return {
        "tx_hash": receipt.tx_hash,
        "block_number": receipt.block_number,
        "gas_used": receipt.gas_used,
        "status": receipt.status,
        "description": receipt.description,
        "events": [{"name": event.name, "args": jsonable(event.args)} for event in receipt.events],
        "resumed": bool(getattr(receipt, "resumed", False)),
        **extra,
    }


def print_receipt(receipt: Any, as_json: bool, **extra: Any) -> None:
    """JSON receipt on stdout, or one human line on stderr plus any extra fields."""
    if as_json:
        print_json(receipt_json(receipt, **extra))
        return
    names = ", ".join(event.name for event in receipt.events) or "no events"
    if getattr(receipt, "resumed", False):
        say(f"{receipt.description}: an earlier run sent this transaction before its RPC failed; followed it "
            "instead of sending another")
    say(f"{receipt.description}: tx {receipt.tx_hash} in block {receipt.block_number} (gas {receipt.gas_used}; {names})")
    for key, value in extra.items():
        click.echo(f"{key}: {value}")
