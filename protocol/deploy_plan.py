"""What `tessera deploy` will send, and what it may cost, worked out before anything is signed.

`plan_deployment` lists the transactions of `protocol.deploy.deploy_all` in order, with the exact
creation data (the addresses the constructors receive are predicted from the deployer's nonce, as
CREATE assigns them), a gas estimate for each, and the most the whole deployment can cost at the
current fees. The CLI shows it, checks the balance against it and asks before sending (or prints it
and stops, with `--dry-run`). It reads the chain only; it never signs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from web3 import Web3

from protocol.abi import load_abi, load_bytecode
from protocol.chain import GAS_MARGIN_PCT, suggest_fees
from protocol.deploy import NOT_CONSTRUCTOR_ARGS, REFEREE_STACK, DeployParams, constructor_args, referee_args
from protocol.errors import ConfigError

# Gas where the node cannot estimate: constructors that read contracts deployed just before them, and
# calls to contracts that have no code yet. Measured on anvil (gas used: Staking 1.50M, JobEscrow 3.02M,
# Disputes 3.87M, ModelRegistry 1.09M, Bisection 1.66M, TensorDescent 2.33M, ClipReferee 0.89M, ElementReferee 4.80M,
# StateLink 0.80M, HostRules 5.15M, FoldRules 2.87M, RowRules 3.05M, RefereeGame 5.26M (it reads ElementReferee's CLIP), the wires 69k
# (each game), 44k (RefereeGame), 76k and 79k, faucet 68k, transfer 46k)
# plus about 7%; tests/unit/cli/test_deploy_safety.py checks every figure against a real deployment's receipts.
FIXED_GAS = {
    "deploy DevToken": 600_000,
    "deploy Staking": 1_600_000,
    "deploy JobEscrow": 3_250_000,
    "deploy Disputes": 4_150_000,
    "deploy ModelRegistry": 1_170_000,
    "deploy Bisection": 1_790_000,
    "deploy TensorDescent": 2_500_000,
    "deploy ClipReferee": 960_000,
    "deploy ElementReferee": 5_010_000,
    "deploy StateLink": 860_000,
    "deploy HostRules": 5_520_000,
    "deploy FoldRules": 3_070_000,
    "deploy RowRules": 3_270_000,
    "deploy DataRules": 3_270_000,
    "deploy ScalarRules": 3_270_000,
    "deploy RowPieceRules": 3_270_000,
    "deploy RefereeGame": 5_630_000,
    "Bisection.wire": 75_000,
    "TensorDescent.wire": 75_000,
    "RefereeGame.wire": 50_000,
    "Staking.wire": 85_000,
    "JobEscrow.wire": 85_000,
    "faucet escrow seed": 75_000,
    "seed the escrow's token balance": 52_000,
}


class PlannedTx(BaseModel):
    """One transaction of the deployment."""

    description: str
    to: str | None = Field(description="target address; None creates a contract (at `creates`)")
    creates: str | None = None
    data_bytes: int
    gas: int = Field(description="estimated gas used (or the fixed figure when `estimated` is false)")
    estimated: bool


class DeploymentPlan(BaseModel):
    """Everything `tessera deploy` shows before it asks."""

    chain_id: int
    deployer: str
    balance_wei: int
    params: dict[str, Any]
    transactions: list[PlannedTx]
    max_fee_per_gas: int

    @property
    def gas(self) -> int:
        return sum(tx.gas for tx in self.transactions)

    @property
    def gas_limit(self) -> int:
        """What the transactions reserve: each estimate plus the 20% margin `send_transaction` adds."""
        return sum(tx.gas * (100 + GAS_MARGIN_PCT) // 100 for tx in self.transactions)

    @property
    def max_cost_wei(self) -> int:
        """The most the deployment can cost: every gas limit at the current max fee per gas."""
        return self.gas_limit * self.max_fee_per_gas

    @property
    def affordable(self) -> bool:
        return self.balance_wei >= self.max_cost_wei

    def summary(self) -> dict[str, Any]:
        """JSON shape (`tessera deploy --dry-run --json`); wei amounts as strings."""
        return {
            "chain_id": self.chain_id,
            "deployer": self.deployer,
            "balance_wei": str(self.balance_wei),
            "max_fee_per_gas": str(self.max_fee_per_gas),
            "gas": self.gas,
            "gas_limit": self.gas_limit,
            "max_cost_wei": str(self.max_cost_wei),
            "affordable": self.affordable,
            "params": self.params,
            "transactions": [tx.model_dump() for tx in self.transactions],
        }


def format_eth(wei: int) -> str:
    """Wei as ETH without float rounding (`1500000000000000000` -> `1.5`)."""
    text = format(Decimal(int(wei)) / Decimal(10**18), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def check_role_addresses(params: DeployParams) -> None:
    """Name every missing role address at once (the shipped testnet set leaves both to the deployer)."""
    missing = [role for role in ("arbiter", "treasury") if getattr(params, role) is None]
    if missing:
        raise ConfigError(
            f"deploy parameters must name the {' and '.join(missing)} address{'es' if len(missing) > 1 else ''}: "
            "copy the parameter file (e.g. protocol/params/testnet.json), fill in "
            f"{' and '.join(repr(m) for m in missing)}, and pass --params YOUR-FILE.json"
        )


def create_address(sender: str, nonce: int) -> str:
    """The address CREATE gives the contract that `sender` deploys with `nonce`."""
    import rlp
    from eth_utils import keccak, to_checksum_address

    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def plan_deployment(w3: Web3, deployer: str, params: DeployParams) -> DeploymentPlan:
    """The transactions `deploy_all(w3, <deployer>, params)` sends, with gas estimates and the cost bound."""
    from protocol.deploy import _resolve_address

    check_role_addresses(params)
    chain_id = int(w3.eth.chain_id)
    deployer = Web3.to_checksum_address(deployer)
    values: dict[str, Any] = params.model_dump(exclude=NOT_CONSTRUCTOR_ARGS)
    values.update(arbiter=_resolve_address(params.arbiter, "arbiter", chain_id),
                  treasury=_resolve_address(params.treasury, "treasury", chain_id))
    nonce = int(w3.eth.get_transaction_count(deployer, "pending"))
    transactions: list[PlannedTx] = []

    def create(name: str, extra: dict[str, Any] | None = None) -> str:
        nonlocal nonce
        merged = {**values, **(extra or {}), **params.extra_args.get(name, {})}
        ordered, _ = constructor_args(name, merged)
        factory = w3.eth.contract(abi=load_abi(name), bytecode=load_bytecode(name))
        data = factory.constructor(*ordered).data_in_transaction
        address = create_address(deployer, nonce)
        try:
            gas, estimated = int(w3.eth.estimate_gas({"from": deployer, "data": data}, "pending")), True
        except Exception:  # noqa: BLE001 - a constructor that reads a not-yet-deployed contract
            gas, estimated = FIXED_GAS[f"deploy {name}"], False
        size = (len(data) - 2) // 2 if isinstance(data, str) else len(data)
        transactions.append(PlannedTx(description=f"deploy {name}", to=None, creates=address, data_bytes=size,
                                      gas=gas, estimated=estimated))
        nonce += 1
        return address

    def call(description: str, to: str, data_bytes: int) -> None:
        nonlocal nonce
        transactions.append(PlannedTx(description=description, to=to, data_bytes=data_bytes,
                                      gas=FIXED_GAS[description], estimated=False))
        nonce += 1

    token = _resolve_address(params.token, "token", chain_id) if params.token else create("DevToken", params.token_args)
    values["token"] = token
    values["staking"] = create("Staking")
    values["escrow"] = create("JobEscrow")
    addresses: dict[str, str] = {}
    for name in REFEREE_STACK:
        addresses[name] = create(name, referee_args(params, addresses).get(name))
    addresses["RefereeGame"] = create("RefereeGame", referee_args(params, addresses)["RefereeGame"])
    values["disputes"] = create("Disputes", referee_args(params, addresses)["Disputes"])
    create("ModelRegistry")
    call("Bisection.wire", addresses["Bisection"], 4 + 3 * 32)  # one host in a dynamic array
    call("TensorDescent.wire", addresses["TensorDescent"], 4 + 3 * 32)
    call("RefereeGame.wire", addresses["RefereeGame"], 4 + 32)
    call("Staking.wire", values["staking"], 4 + 2 * 32)
    call("JobEscrow.wire", values["escrow"], 4 + 32)
    if not params.token:  # with an external token the seed is sent only when the deployer holds some
        call("faucet escrow seed", token, 4 + 32)
        call("seed the escrow's token balance", token, 4 + 2 * 32)
    recorded = params.model_dump(mode="json", exclude={"description"})
    recorded.update(arbiter=values["arbiter"], treasury=values["treasury"], challenge_bond=str(params.challenge_bond))
    return DeploymentPlan(
        chain_id=chain_id,
        deployer=deployer,
        balance_wei=int(w3.eth.get_balance(deployer)),
        params=recorded,
        transactions=transactions,
        max_fee_per_gas=int(suggest_fees(w3)["maxFeePerGas"]),
    )
