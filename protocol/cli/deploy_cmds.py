"""`tessera deploy`: deploy every contract, wire the roles, record deployments/<chain_id>.json.

A thin shell over `protocol.deploy.deploy_all`: parameters come from a shipped set (`local`,
`testnet`) or a JSON file; an existing record for the chain is never replaced unless `--force`.
Before signing it shows the parameters, the chain, the deployer's balance and the most the
transactions can cost (`protocol.deploy_plan`), refuses when the balance is short, and asks; `--yes`
answers for scripts, `--dry-run` prints the transactions and stops. On the local chain (31337),
where keys and ETH are test ones, it shows the summary without asking.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from protocol.cli.common import (
    CliSettings,
    connect_chain,
    json_option,
    pass_settings,
    print_fields,
    print_json,
    print_table,
    say,
    unlock_account,
)
from protocol.errors import ConfigError, PreflightError, TesseraError

LOCAL_CHAIN_ID = 31337


def deployment_summary(deployment: Any) -> dict[str, Any]:
    """The stable `--json` shape of a deployment (documented in docs/cli.md)."""
    return {
        "chain_id": deployment.chain_id,
        "path": str(deployment.path) if deployment.path else None,
        "deployer": deployment.deployer,
        "compiler": deployment.compiler,
        "contracts": {
            name: {"address": record.address, "block": record.block, "tx_hash": record.tx_hash}
            for name, record in deployment.contracts.items()
        },
        "params": deployment.params,
    }


def params_label(source: str, name: str) -> str:
    """How the chosen parameters are named to the user: the file given, or the shipped set."""
    path = Path(source)
    if path.is_file():
        return f"{path} (name {name!r})" if name not in (path.stem, "custom") else str(path)
    return f"{source} (shipped set)"


def show_plan(plan: Any, label: str, network: str) -> None:
    """The pre-flight summary on stderr: chain, deployer, balance, parameters, cost bound."""
    from protocol.deploy_plan import format_eth
    from protocol.redaction import redact_url

    shown = redact_url(network) if network.startswith(("http://", "https://")) else network
    say(f"deploy to chain {plan.chain_id} ({shown}) from {plan.deployer}")
    say(f"parameters {label}: " + ", ".join(f"{k}={v}" for k, v in plan.params.items() if k != "name"))
    say(
        f"{len(plan.transactions)} transactions, about {plan.gas:,} gas (limit {plan.gas_limit:,} with margin) "
        f"at up to {plan.max_fee_per_gas / 1e9:.3g} gwei: at most {format_eth(plan.max_cost_wei)} ETH; "
        f"deployer balance {format_eth(plan.balance_wei)} ETH"
    )


@click.command()
@click.option(
    "--params",
    "params_source",
    default=None,
    help="Parameter set: a shipped name (local, testnet) or a JSON file. Default: local on chain 31337, else required.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write <chain_id>.json. Default: deployments/ (or the folder of --deployment).",
)
@click.option("--force", is_flag=True, help="Replace an existing deployment record for this chain.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds to wait for each receipt.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--dry-run", is_flag=True, help="Print the transactions, gas and cost, send nothing (no passphrase needed).")
@json_option
@pass_settings
def deploy(
    settings: CliSettings,
    params_source: str | None,
    out_dir: Path | None,
    force: bool,
    timeout: float,
    assume_yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Deploy DevToken, Staking, JobEscrow, Disputes and ModelRegistry; wire them; check the code."""
    from protocol.accounts import read_only_account
    from protocol.deploy import DEFAULT_DEPLOYMENTS_DIR, DeployParams, deploy_all, partial_path
    from protocol.deploy_plan import format_eth, plan_deployment

    if not settings.account:
        raise ConfigError("deploy sends transactions: pass --account ALIAS (or TEST::0 on the local chain)")
    w3 = connect_chain(settings)
    chain_id = int(w3.eth.chain_id)
    if params_source is None:
        if chain_id != LOCAL_CHAIN_ID:
            raise ConfigError(
                f"chain id {chain_id} is not the local chain: pass --params FILE (copy protocol/params/testnet.json "
                "and fill in its arbiter and treasury addresses)"
            )
        params_source = "local"
    params = DeployParams.load(params_source)
    if out_dir is None:
        out_dir = settings.deployment.parent if settings.deployment else DEFAULT_DEPLOYMENTS_DIR
    target = Path(out_dir) / f"{chain_id}.json"
    if target.exists() and not force:
        raise TesseraError(f"a deployment for chain id {chain_id} already exists at {target}; pass --force to replace it")
    address = read_only_account(settings.account, chain_id=chain_id).address
    plan = plan_deployment(w3, address, params)
    label = params_label(params_source, params.name)
    if dry_run:
        if as_json:
            print_json(plan.summary())
        else:
            show_plan(plan, label, settings.network)
            print_table(
                f"transactions (dry run: nothing sent) on chain {chain_id}",
                ["#", "transaction", "to", "data bytes", "gas"],
                [(i + 1, tx.description, tx.to or f"(new) {tx.creates}", tx.data_bytes,
                  f"{tx.gas:,}" if tx.estimated else f"~{tx.gas:,}") for i, tx in enumerate(plan.transactions)],
            )
        return
    show_plan(plan, label, settings.network)
    if not plan.affordable:
        raise PreflightError(
            f"deployer {plan.deployer} has {format_eth(plan.balance_wei)} ETH but the deployment may cost up to "
            f"{format_eth(plan.max_cost_wei)} ETH at current fees; fund it first (nothing was sent)"
        )
    if not assume_yes and chain_id != LOCAL_CHAIN_ID:
        if sys.stdin is None or not sys.stdin.isatty():
            raise ConfigError("deploy needs a confirmation and stdin is not a terminal: pass --yes (nothing was sent)")
        if not click.confirm(f"send these {len(plan.transactions)} transactions?", default=False, err=True):
            raise TesseraError("deploy cancelled: nothing was sent")
    deployer = unlock_account(settings.account, chain_id)
    if not as_json:
        say(f"deploying to chain {chain_id} from {deployer.address} with parameters {label} ...")
        if partial_path(out_dir, chain_id).is_file():
            say(f"found a half-done deployment at {partial_path(out_dir, chain_id)}: resuming it")
    deployment = deploy_all(w3, deployer, params, out_dir=out_dir, force=force, receipt_timeout=timeout)
    if as_json:
        print_json(deployment_summary(deployment))
        return
    print_fields(
        f"deployment on chain {chain_id} ({deployment.path})",
        {name: f"{record.address} (block {record.block})" for name, record in deployment.contracts.items()},
    )
