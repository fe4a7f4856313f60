"""`tessera stake deposit|request-unstake|withdraw|show`.

Stake is `available + locked + unbonding`; locked stake backs claimed jobs and unbonding stake stays
slashable until its release time, so a worker cannot run from a job it is about to lose.
"""

from __future__ import annotations

from typing import Any

import click

from protocol.cli.common import (
    ADDRESS,
    AMOUNT,
    CliSettings,
    format_amount,
    json_option,
    make_client,
    pass_settings,
    print_fields,
    print_json,
    print_receipt,
)


def stake_json(info: Any, chain_time: int) -> dict[str, Any]:
    """The stable `--json` shape of `stake show` (docs/cli.md); amounts are base-unit strings."""
    return {
        "address": info.address,
        "staked": str(info.staked),
        "available": str(info.available),
        "locked": str(info.locked),
        "unbonding": str(info.unbonding),
        "unbonding_release_at": info.unbonding_release_at,
        "withdrawable": info.unbonding > 0 and chain_time >= info.unbonding_release_at,
    }


@click.group()
def stake() -> None:
    """Stake tokens to claim jobs and challenge; unstake with a delay."""


@stake.command()
@click.argument("amount", type=AMOUNT)
@click.option("--no-approve", is_flag=True, help="Fail instead of approving the staking contract when the allowance is short.")
@json_option
@pass_settings
def deposit(settings: CliSettings, amount: int, no_approve: bool, as_json: bool) -> None:
    """Stake AMOUNT tokens (approves the staking contract first when needed)."""
    client = make_client(settings, need_account=True)
    receipt = client.stake(amount, approve=not no_approve)
    info = client.stake_info(client.address)
    print_receipt(receipt, as_json, staked=str(info.staked) if as_json else format_amount(info.staked))


@stake.command("request-unstake")
@click.argument("amount", type=AMOUNT)
@json_option
@pass_settings
def request_unstake(settings: CliSettings, amount: int, as_json: bool) -> None:
    """Start unbonding AMOUNT of available stake; withdraw after the unbonding delay."""
    client = make_client(settings, need_account=True)
    receipt = client.request_unstake(amount)
    info = client.stake_info(client.address)
    if as_json:
        print_receipt(receipt, True, unbonding=str(info.unbonding), unbonding_release_at=info.unbonding_release_at)
        return
    from protocol.timefmt import format_chain_time

    print_receipt(receipt, False, unbonding=format_amount(info.unbonding),
                  withdrawable_from=format_chain_time(info.unbonding_release_at, client.block_time()))


@stake.command()
@json_option
@pass_settings
def withdraw(settings: CliSettings, as_json: bool) -> None:
    """Withdraw stake whose unbonding delay has passed."""
    client = make_client(settings, need_account=True)
    receipt = client.withdraw()
    print_receipt(receipt, as_json)


@stake.command()
@click.argument("address", type=ADDRESS, required=False)
@json_option
@pass_settings
def show(settings: CliSettings, address: str | None, as_json: bool) -> None:
    """Show the stake of ADDRESS (default: --account)."""
    client = make_client(settings)
    if address is None:
        if client.account is None:
            raise click.UsageError("pass an ADDRESS or --account")
        address = client.address
    info = client.stake_info(address)
    data = stake_json(info, client.chain_time())
    if as_json:
        print_json(data)
        return
    from protocol.timefmt import format_chain_time

    print_fields(
        f"stake of {info.address}",
        {
            "staked": format_amount(info.staked),
            "available": format_amount(info.available),
            "locked (backing jobs)": format_amount(info.locked),
            "unbonding": format_amount(info.unbonding),
            "withdrawable from": format_chain_time(info.unbonding_release_at, client.block_time()),
            "withdrawable now": "yes" if data["withdrawable"] else "no",
            "token balance": format_amount(client.token_balance(info.address)),
        },
    )
