"""`tessera deploy`: deploy every contract, wire the roles, record deployments/<chain_id>.json.

A thin shell over `protocol.deploy.deploy_all`: parameters come from a shipped set (`local`,
`testnet`) or a JSON file; an existing record for the chain is never replaced unless `--force`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protocol.cli.common import CliSettings, json_option, pass_settings, print_fields, print_json, say, unlock_account
from protocol.errors import ConfigError


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
@json_option
@pass_settings
def deploy(
    settings: CliSettings, params_source: str | None, out_dir: Path | None, force: bool, timeout: float, as_json: bool
) -> None:
    """Deploy DevToken, Staking, JobEscrow, Disputes and ModelRegistry; wire them; check the code."""
    from protocol.chain import connect
    from protocol.deploy import DEFAULT_DEPLOYMENTS_DIR, DeployParams, deploy_all, partial_path

    if not settings.account:
        raise ConfigError("deploy sends transactions: pass --account ALIAS (or TEST::0 on the local chain)")
    w3 = connect(settings.network)
    chain_id = int(w3.eth.chain_id)
    if params_source is None:
        if chain_id != 31337:
            raise ConfigError(f"chain id {chain_id} is not the local chain: pass --params testnet or --params FILE")
        params_source = "local"
    params = DeployParams.load(params_source)
    if out_dir is None:
        out_dir = settings.deployment.parent if settings.deployment else DEFAULT_DEPLOYMENTS_DIR
    deployer = unlock_account(settings.account, chain_id)
    if not as_json:
        say(f"deploying to chain {chain_id} from {deployer.address} with parameters {params.name!r} ...")
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
