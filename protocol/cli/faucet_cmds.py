"""`tessera faucet`: mint dev tokens (DevToken deployments only; the amount per call is capped)."""

from __future__ import annotations

import click

from protocol.cli.common import AMOUNT, CliSettings, format_amount, json_option, make_client, pass_settings, print_receipt


@click.command()
@click.argument("amount", type=AMOUNT, default="100")
@json_option
@pass_settings
def faucet(settings: CliSettings, amount: int, as_json: bool) -> None:
    """Mint AMOUNT dev tokens (default 100) to --account."""
    client = make_client(settings, need_account=True)
    receipt = client.faucet(amount)
    balance = client.token_balance(client.address)
    if as_json:
        print_receipt(receipt, True, address=client.address, minted=str(amount), balance=str(balance))
    else:
        print_receipt(receipt, False, address=client.address, balance=format_amount(balance))
