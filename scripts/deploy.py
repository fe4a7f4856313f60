"""`ape run deploy --network ethereum:local:foundry --account <alias>`: deploy Tessera with ape's tooling.

Operators who live in ape keep their keys in ape's keystore and pick networks the ape way; this script
lets them deploy with exactly that, and writes the same `deployments/<chain_id>.json` as
`tessera deploy` because both call `protocol.deploy.deploy_all`. The ape account signs (any ape
`AccountAPI`: a keyfile alias, or an account plugin such as a hardware wallet where one is installed);
everything else (parameters, constructor order, wiring, code checks, the record) is the SDK's.

ape connects the way ape does: the RPC comes from ape's `node:` configuration (./ape-config.yaml or
ape's global ape-config.yaml). This project's ape-config.yaml maps `ethereum:sepolia:node` to
`$TESSERA_RPC_URL`, so for the testnet both tools reach the same RPC; when ape's URL is another one
than `TESSERA_RPC_URL`, the script says so, so the two cannot silently point at different chains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ape.cli import ConnectedProviderCommand, account_option


class ApeSigner:
    """Adapts an ape account to the `address` + `sign_transaction(dict)` shape the SDK signs with.

    ape accounts sign ape transaction objects, not web3 dicts; the SDK builds a web3 dict, so we turn
    it into the ecosystem's transaction type, let ape sign (prompting for the passphrase if needed),
    and hand back the serialized bytes.
    """

    def __init__(self, account: Any, ecosystem: Any):
        self.account = account
        self.ecosystem = ecosystem
        self.address = account.address

    def sign_transaction(self, tx: dict[str, Any]) -> Any:
        fields = dict(tx)
        fields["sender"] = fields.pop("from", self.address)
        fields["chain_id"] = fields.pop("chainId")
        if "to" in fields:
            fields["receiver"] = fields.pop("to")
        fields["data"] = bytes(fields.get("data") or b"")
        transaction = self.ecosystem.create_transaction(**fields)
        signed = self.account.sign_transaction(transaction)
        if signed is None:
            raise click.ClickException(f"account {self.account.alias or self.address} declined to sign")
        return _Signed(bytes(signed.serialize_transaction()))


class _Signed:
    """The one attribute of eth-account's SignedTransaction that the SDK reads."""

    def __init__(self, raw: bytes):
        self.raw_transaction = raw


@click.command(cls=ConnectedProviderCommand)
@account_option()
@click.option("--params", "params_source", default=None, help="Shipped set (local, testnet) or a JSON file; default local on 31337.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("deployments"), show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing deployment record for this chain.")
def cli(ecosystem: Any, provider: Any, account: Any, params_source: str | None, out_dir: Path, force: bool) -> None:
    """Deploy every Tessera contract with an ape account and write deployments/<chain_id>.json."""
    import os

    from protocol.chain import ENV_RPC_URL, check_chain_id
    from protocol.deploy import DeployParams, deploy_all
    from protocol.deploy_plan import check_role_addresses
    from protocol.errors import TesseraError
    from protocol.redaction import redact_url

    w3 = provider.web3
    chain_id = int(w3.eth.chain_id)
    ape_uri = str(getattr(provider, "uri", "") or "")
    if os.environ.get(ENV_RPC_URL) and ape_uri.rstrip("/") != os.environ[ENV_RPC_URL].strip().rstrip("/"):
        click.echo(
            f"note: ape run deploy ignores {ENV_RPC_URL} ({redact_url(os.environ[ENV_RPC_URL])}) for this network; "
            f"it uses ape's network config: {redact_url(ape_uri or provider.name)} (chain {chain_id})",
            err=True,
        )
    if params_source is None:
        if chain_id != 31337:
            raise click.UsageError(
                f"chain id {chain_id} is not the local chain: pass --params FILE (copy protocol/params/testnet.json "
                "and fill in its arbiter and treasury addresses)"
            )
        params_source = "local"
    try:
        check_chain_id(f"{ecosystem.name}:{provider.network.name}", chain_id, f"ape's provider {provider.name}")
        params = DeployParams.load(params_source)
        check_role_addresses(params)
        deployment = deploy_all(w3, ApeSigner(account, ecosystem), params, out_dir=out_dir, force=force)
    except TesseraError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from exc
    click.echo(f"deployed on chain {chain_id}, recorded in {deployment.path}")
    for name, record in deployment.contracts.items():
        click.echo(f"  {name:<14} {record.address}  (block {record.block})")
