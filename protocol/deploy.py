"""Deploy the Tessera contracts, wire them, check the code, record `deployments/<chain_id>.json`.

The five core contracts (DevToken, Staking, JobEscrow, Disputes, ModelRegistry) and the level-2/3
referee stack (Bisection, TensorDescent, ClipReferee, ElementReferee, StateLink, HostRules, FoldRules, RowRules, DataRules, ScalarRules, RowPieceRules, RefereeGame): the referee decides SEGMENT
claims of one env class, `refereed_class` (portable/1 in the testnet parameter set, zero in the local one).

Deployment is a one-shot, append-only act: there are no proxies and no upgrades, a new version is a new
deployment, so an existing record for a chain is never overwritten unless the caller says `force`.
While it runs, each contract and wiring transaction is written to `<chain_id>.partial.json` as it
lands; a deployment cut off half-way (a dropped RPC, a crash) is resumed from there by the next run
with the same deployer and parameters, after checking the landed contracts' code, instead of leaving
them orphaned. The transaction that was in flight is followed through the transaction journal
(`protocol.tx_journal`), so it is not sent twice either.
Constructor arguments are matched by name against each contract's ABI, so the parameter file
(`protocol/params/*.json`) stays the single source of the economic and timing parameters.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from web3 import Web3

from protocol.abi import CONTRACT_NAMES, compiler_version, load_abi, load_bytecode, load_runtime_bytecode
from protocol.chain import send_transaction
from protocol.errors import ConfigError, DeploymentError

PARAMS_DIR = Path(__file__).resolve().parent / "params"
DEFAULT_DEPLOYMENTS_DIR = Path("deployments")
ENV_DEPLOYMENTS_DIR = "TESSERA_DEPLOYMENTS_DIR"
# The records committed to this repository (public testnets): found from any working directory.
SHIPPED_DEPLOYMENTS_DIR = Path(__file__).resolve().parents[1] / "deployments"
ZERO_ADDRESS = "0x" + "00" * 20
# RefereeGame's host rules contracts, in the order it asks them (a name not deployed is the zero address)
RULES_CONTRACTS = ("HostRules", "FoldRules", "RowRules", "DataRules", "ScalarRules", "RowPieceRules")
RULE_SETS = len(RULES_CONTRACTS)  # RefereeGame.vy RULE_SETS: the length of its `rules` argument
ZERO_CLASS = "0x" + "00" * 32
REPLAY_FACTOR = 3  # JobEscrow.REPLAY_FACTOR: a job's windows grow by this many declared segment replays


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


class DeployParams(BaseModel):
    """Immutable per-deployment parameters (documented in docs/sdk.md and deployments/README.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    description: str = ""
    fee_bps: int = Field(ge=0, le=1_000)
    execution_timeout: int = Field(gt=0)
    challenge_window: int = Field(gt=0)
    max_segment_seconds: int = Field(gt=0)
    arbiter_window: int = Field(gt=0)
    reveal_window: int = Field(gt=0, le=86_400)
    unbonding_delay: int = Field(gt=0)
    expiry_compensation_bps: int = Field(ge=500, le=10_000)
    challenge_bond: int = Field(gt=0)
    challenger_reward_bps: int = Field(ge=0, le=10_000)
    submitter_compensation_bps: int = Field(ge=0, le=10_000)
    # Addresses, or `TEST::<n>` (a local test account) resolved at deploy time on chain 31337 only.
    arbiter: str | None = None
    treasury: str | None = None
    # An existing ERC20 to use instead of deploying DevToken (testnets with a real token).
    token: str | None = None
    # Extra constructor arguments by name, for DevToken (e.g. its faucet cap) or any contract.
    token_args: dict[str, Any] = Field(default_factory=dict)
    extra_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The referee stack (RefereeGame's constructor): bisection arity, tree levels per descent move, and
    # every move's window. Deployed always; it decides SEGMENT claims of `refereed_class` only. Zero (the
    # shipped sets) refers nothing: the worker does not commit portable state roots as h_i yet.
    referee_arity: int = Field(default=4, ge=2, le=32)
    referee_levels: int = Field(default=2, ge=1, le=5)
    referee_move_seconds: int = Field(default=3_600, gt=0, le=30 * 86_400)
    refereed_class: str = Field(default=ZERO_CLASS, pattern=r"^0x[0-9a-fA-F]{64}$")

    @field_validator("challenge_bond", mode="before")
    @classmethod
    def _int_from_text(cls, value: Any) -> Any:
        # Wei amounts exceed JSON's safe integers in some tools, so the files write them as strings.
        return int(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _windows_consistent(self) -> "DeployParams":
        if self.challenger_reward_bps + self.submitter_compensation_bps > 10_000:
            raise ValueError("challenger_reward_bps + submitter_compensation_bps must be <= 10000")
        bound = self.max_settle_seconds
        if self.unbonding_delay <= bound:
            raise ValueError(
                f"unbonding_delay ({self.unbonding_delay}s) must exceed execution_timeout + the longest challenge"
                f" window + reveal_window + the longest arbiter window ({bound}s), or stake backing a job or a"
                " dispute could leave before it settles"
            )
        return self

    @property
    def max_settle_seconds(self) -> int:
        """The longest a claimed job can take to settle (what Staking.wire checks the unbonding delay against)."""
        replays = REPLAY_FACTOR * self.max_segment_seconds
        return (self.execution_timeout + self.challenge_window + replays + self.reveal_window
                + self.arbiter_window + replays)

    @classmethod
    def load(cls, source: str | Path | dict[str, Any]) -> "DeployParams":
        """Parameters from a dict, a file path, or a shipped set name (`local`, `testnet`)."""
        if isinstance(source, dict):
            data = source
        else:
            path = Path(source)
            if not path.suffix and not path.exists():
                path = PARAMS_DIR / f"{source}.json"
            if not path.is_file():
                shipped = ", ".join(sorted(p.stem for p in PARAMS_DIR.glob("*.json")))
                raise ConfigError(f"no parameter file {source!r} (shipped sets: {shipped})")
            try:
                data = json.loads(path.read_text(encoding="utf8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read parameter file {path}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ConfigError(f"invalid deploy parameters: {exc}") from exc


def _resolve_address(value: str | None, what: str, chain_id: int) -> str:
    if value is None:
        raise ConfigError(f"deploy parameters must name the {what} address")
    if value.startswith("TEST::"):
        from protocol.accounts import test_account

        return test_account(int(value.split("::", 1)[1]), chain_id).address
    if not Web3.is_address(value):
        raise ConfigError(f"{what} is not an address: {value!r}")
    address = Web3.to_checksum_address(value)
    if address == ZERO_ADDRESS:
        raise ConfigError(f"{what} must not be the zero address")
    return address


# --------------------------------------------------------------------------------------------------
# The deployment record
# --------------------------------------------------------------------------------------------------


class ContractRecord(BaseModel):
    """One deployed contract: where, when, how, and with which constructor arguments."""

    address: str
    block: int
    tx_hash: str
    args: dict[str, Any] = Field(default_factory=dict)


class Deployment(BaseModel):
    """The content of `deployments/<chain_id>.json`."""

    chain_id: int
    deployer: str
    compiler: str
    created_at: int
    params: dict[str, Any]
    contracts: dict[str, ContractRecord]
    wiring: dict[str, str] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    @property
    def start_block(self) -> int:
        """The first block with any Tessera contract (where event readers start)."""
        return min(record.block for record in self.contracts.values())

    def address(self, name: str) -> str:
        """Address of contract `name`; `DeploymentError` if this deployment lacks it."""
        try:
            return self.contracts[name].address
        except KeyError:
            raise DeploymentError(f"deployment for chain {self.chain_id} has no {name}") from None

    token = property(lambda self: self.address("DevToken"))
    staking = property(lambda self: self.address("Staking"))
    escrow = property(lambda self: self.address("JobEscrow"))
    disputes = property(lambda self: self.address("Disputes"))
    registry = property(lambda self: self.address("ModelRegistry"))
    referee_game = property(lambda self: self.address("RefereeGame"))

    @classmethod
    def load(cls, path: str | Path) -> "Deployment":
        """Read a deployment file; `DeploymentError` names the path when it is missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise DeploymentError(f"no deployment file at {path}")
        try:
            deployment = cls.model_validate_json(path.read_bytes())
        except ValueError as exc:
            raise DeploymentError(f"deployment file {path} is malformed: {exc}") from exc
        deployment.path = path
        return deployment

    @classmethod
    def for_chain(cls, chain_id: int, directory: str | Path | None = None) -> "Deployment":
        """The deployment of chain `chain_id` in `directory`; by default the folder named by
        TESSERA_DEPLOYMENTS_DIR, else `deployments/` of the working directory, then the records
        shipped with this installation. (The SDK, the CLI and the daemons all resolve it here.)"""
        if directory is None:
            directory = os.environ.get(ENV_DEPLOYMENTS_DIR) or DEFAULT_DEPLOYMENTS_DIR
        path = Path(directory) / f"{chain_id}.json"
        if not path.is_file() and Path(directory) == DEFAULT_DEPLOYMENTS_DIR:
            shipped = SHIPPED_DEPLOYMENTS_DIR / f"{chain_id}.json"
            path = shipped if shipped.is_file() else path
        if not path.is_file():
            raise DeploymentError(
                f"no deployment for chain id {chain_id}: expected {path} (pass --deployment FILE or set "
                "TESSERA_DEPLOYMENTS_DIR to the deployer's record; run `tessera deploy` only to deploy "
                "your own contracts)"
            )
        deployment = cls.load(path)
        if deployment.chain_id != chain_id:
            raise DeploymentError(f"{path} records chain id {deployment.chain_id}, not {chain_id}")
        return deployment

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves half a record."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf8")
        os.replace(tmp, path)
        self.path = path
        return path

    def check_code(self, w3: Web3) -> None:
        """Raise `DeploymentError` unless each address holds the shipped runtime code of its contract."""
        for name, record in self.contracts.items():
            verify_code(w3, name, record.address, external_token=(name == "DevToken" and not record.tx_hash))


class PartialDeployment(BaseModel):
    """`<chain_id>.partial.json`: what a deployment in progress has landed so far."""

    model_config = ConfigDict(extra="forbid")

    chain_id: int
    genesis: str
    deployer: str
    params: dict[str, Any]
    started_at: int
    contracts: dict[str, ContractRecord] = Field(default_factory=dict)
    wiring: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "PartialDeployment":
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"half-done deployment record {path} is unreadable ({exc.__class__.__name__}); "
                                  "check its contracts on an explorer, then delete it to start over") from exc

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename), after every transaction that lands."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf8") as handle:
                handle.write(self.model_dump_json(indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            landed = ", ".join(f"{name} {record.address}" for name, record in self.contracts.items())
            raise DeploymentError(f"cannot record the deployment's progress at {path}: {exc}; landed so far: "
                                  f"{landed or 'nothing'}") from exc


def partial_path(out_dir: Path, chain_id: int) -> Path:
    """Where a deployment in progress on `chain_id` keeps its landed contracts."""
    return Path(out_dir) / f"{chain_id}.partial.json"


def _start_or_resume(w3: Web3, path: Path, chain_id: int, deployer: str, params: dict[str, Any]) -> PartialDeployment:
    """The half-done deployment at `path` when it is this one (same chain, deployer and parameters), after
    checking that its contracts hold the shipped code; else a fresh record. A record of another chain
    (a restarted devnet: another genesis) is stale and replaced; one of another deployer or other
    parameters is refused, since replacing it would orphan its contracts."""
    genesis = "0x" + bytes(w3.eth.get_block(0)["hash"]).hex()
    fresh = PartialDeployment(chain_id=chain_id, genesis=genesis, deployer=deployer, params=params,
                              started_at=int(time.time()))
    if not path.is_file():
        return fresh
    partial = PartialDeployment.load(path)
    if partial.chain_id != chain_id or partial.genesis != genesis:
        return fresh
    if partial.deployer != deployer or partial.params != params:
        differs = "another deployer" if partial.deployer != deployer else "other parameters"
        raise DeploymentError(
            f"a half-done deployment on chain {chain_id} with {differs} is recorded at {path} "
            f"({', '.join(sorted(partial.contracts)) or 'no contracts yet'}); finish it with the same deployer "
            "and parameters, or delete that file to start over"
        )
    for name, record in partial.contracts.items():
        verify_code(w3, name, record.address, external_token=(name == "DevToken" and not record.tx_hash))
    return partial


# --------------------------------------------------------------------------------------------------
# Deploying
# --------------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return name.strip("_").lower()


def _constructor_inputs(name: str) -> list[dict[str, Any]]:
    for entry in load_abi(name):
        if entry.get("type") == "constructor":
            return entry.get("inputs", [])
    return []


def constructor_args(name: str, values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Constructor arguments of `name` in ABI order, looked up by (normalised) input name in `values`."""
    normalised = {_norm(k): v for k, v in values.items()}
    ordered, named = [], {}
    for item in _constructor_inputs(name):
        key = _norm(item["name"])
        if key not in normalised:
            raise ConfigError(
                f"constructor of {name} needs {item['name']!r} ({item['type']}); add it to the deploy "
                f"parameters (extra_args.{name}{' or token_args' if name == 'DevToken' else ''})"
            )
        value = normalised[key]
        ordered.append(value)
        named[item["name"]] = value
    return ordered, named


def verify_code(w3: Web3, name: str, address: str, *, external_token: bool = False) -> None:
    """Check that `address` holds contract `name`'s runtime code (immutables may follow it)."""
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
    if not code:
        raise DeploymentError(f"{name} at {address} has no code")
    if external_token:
        return
    runtime = load_runtime_bytecode(name)
    expected = bytes.fromhex(runtime[2:]) if runtime and runtime != "0x" else b""
    if expected and not code.startswith(expected):
        raise DeploymentError(f"{name} at {address} does not hold the shipped {name} runtime code")
    if not expected and not _installed_by(code, bytes.fromhex(load_bytecode(name)[2:])):
        raise DeploymentError(f"{name} at {address} does not hold the code the shipped {name} bytecode installs")


MAX_IMMUTABLE_WORDS = 64


def _installed_by(code: bytes, deployment_bytecode: bytes) -> bool:
    """Whether `code` is runtime code embedded in `deployment_bytecode` followed by at most
    MAX_IMMUTABLE_WORDS 32-byte immutables (for contracts shipped without a runtime: protocol.abi.export)."""
    return any(0 < len(code) - 32 * words and code[: len(code) - 32 * words] in deployment_bytecode
               for words in range(MAX_IMMUTABLE_WORDS + 1))


def _deploy_one(w3: Web3, deployer: Any, name: str, args: list[Any], timeout: float) -> tuple[str, int, str]:
    factory = w3.eth.contract(abi=load_abi(name), bytecode=load_bytecode(name))
    data = factory.constructor(*args).data_in_transaction
    receipt = send_transaction(
        w3, deployer, to=None, data=data, description=f"deploy {name}", receipt_timeout=timeout
    )
    address = receipt.get("contractAddress")
    if not address:
        raise DeploymentError(f"deploy {name}: receipt has no contract address")
    return Web3.to_checksum_address(address), int(receipt["blockNumber"]), receipt["transactionHash"].to_0x_hex()


def _call_wire(w3: Web3, deployer: Any, name: str, address: str, args: list[Any], timeout: float) -> str:
    contract = w3.eth.contract(address=address, abi=load_abi(name))
    data = contract.encode_abi("wire", args=args)
    receipt = send_transaction(w3, deployer, to=address, data=data, description=f"{name}.wire", receipt_timeout=timeout)
    return receipt["transactionHash"].to_0x_hex()


# DeployParams fields that are no constructor argument of their own (the referee's go in by name below).
NOT_CONSTRUCTOR_ARGS = {"name", "description", "token", "token_args", "extra_args", "referee_arity", "referee_levels",
                        "referee_move_seconds", "refereed_class"}


# The referee stack below RefereeGame, in deployment order (ElementReferee takes ClipReferee's address).
REFEREE_STACK = ("Bisection", "TensorDescent", "ClipReferee", "ElementReferee", "StateLink", "HostRules", "FoldRules",
                 "RowRules", "DataRules", "ScalarRules", "RowPieceRules")


def referee_args(params: DeployParams, addresses: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Constructor arguments by contract that the parameter names do not give: ElementReferee's clipping rules,
    RefereeGame's games, element referee, link checks, host rules and clocks, and the Disputes contract's referee
    (the RefereeGame) and refereed class. (`referee` means the ElementReferee to RefereeGame and the RefereeGame to
    Disputes.)"""
    return {
        "ElementReferee": {"clip": addresses.get("ClipReferee")},
        "RefereeGame": {"bisection": addresses.get("Bisection"), "descent": addresses.get("TensorDescent"),
                        "referee": addresses.get("ElementReferee"), "link": addresses.get("StateLink"),
                        "rules": [addresses.get(name) or ZERO_ADDRESS for name in RULES_CONTRACTS],
                        "arity": params.referee_arity,
                        "levels": params.referee_levels, "move_seconds": params.referee_move_seconds},
        "Disputes": {"referee": addresses.get("RefereeGame"), "refereed_class": params.refereed_class},
    }


def check_referee_bound(w3: Web3, params: DeployParams, referee_game: str) -> None:
    """With a refereed class, a dispute can also last the referee's longest game (RefereeGame.max_game_seconds):
    refuse, before Disputes is deployed, an unbonding delay that does not outlast that too (Staking.wire would)."""
    if int(params.refereed_class, 16) == 0:
        return
    game = int(w3.eth.contract(address=referee_game, abi=load_abi("RefereeGame")).functions.max_game_seconds().call())
    bound = params.max_settle_seconds + game
    if params.unbonding_delay <= bound:
        raise ConfigError(
            f"unbonding_delay ({params.unbonding_delay}s) must exceed {bound}s with a refereed class (the settle bound"
            f" plus the referee's longest game, {game}s): raise it or shorten referee_move_seconds"
        )


ESCROW_SEED = 1  # token base units the escrow keeps for ever (see _seed_escrow)


def _seed_escrow(w3: Web3, deployer: Any, token: str, escrow: str, *, minted: bool, timeout: float) -> str:
    """Give the escrow a permanent dust balance of `ESCROW_SEED` base units of the payment token.

    Why: the first `post` on a fresh deployment would otherwise turn the escrow's token balance from
    zero to non-zero, a 20,000-gas SSTORE in the token that pushes the first job's lifecycle over the
    250,000 gas target (docs/gas.md). The escrow never counts or pays out its own balance (it only
    checks balance deltas), so the dust is inert. With our DevToken the deployer mints it from the
    faucet; with an external token it sends it when it holds any, else skips (returns "").
    """
    erc20 = w3.eth.contract(address=token, abi=load_abi("DevToken"))
    if int(erc20.functions.balanceOf(escrow).call()) >= ESCROW_SEED:
        return ""
    # (a resumed deployment may hold the minted seed already: mint only what is missing)
    if minted and int(erc20.functions.balanceOf(deployer.address).call()) < ESCROW_SEED:
        data = erc20.encode_abi("faucet", args=[ESCROW_SEED])
        send_transaction(w3, deployer, to=token, data=data, description="faucet escrow seed", receipt_timeout=timeout)
    elif int(erc20.functions.balanceOf(deployer.address).call()) < ESCROW_SEED:
        return ""
    data = erc20.encode_abi("transfer", args=[escrow, ESCROW_SEED])
    receipt = send_transaction(w3, deployer, to=token, data=data, description="seed the escrow's token balance",
                               receipt_timeout=timeout)
    return receipt["transactionHash"].to_0x_hex()


def deploy_all(
    w3: Web3,
    deployer: Any,
    params: DeployParams | str | Path | dict[str, Any],
    *,
    out_dir: Path = DEFAULT_DEPLOYMENTS_DIR,
    force: bool = False,
    receipt_timeout: float = 120.0,
) -> Deployment:
    """Deploy DevToken (unless `params.token`), Staking, JobEscrow, the referee stack (Bisection, TensorDescent,
    ClipReferee, ElementReferee, StateLink, HostRules, FoldRules, RowRules, DataRules, ScalarRules, RowPieceRules,
    RefereeGame), Disputes, ModelRegistry; wire the games to RefereeGame, RefereeGame to Disputes,
    then Staking and JobEscrow; record.

    Refuses, before sending anything, when `out_dir/<chain_id>.json` exists and `force` is False.
    Resumes a half-done deployment recorded in `out_dir/<chain_id>.partial.json` (module docstring).
    """
    if not isinstance(params, DeployParams):
        params = DeployParams.load(params)
    chain_id = int(w3.eth.chain_id)
    target = Path(out_dir) / f"{chain_id}.json"
    if target.exists() and not force:
        raise DeploymentError(
            f"a deployment for chain id {chain_id} already exists at {target}; pass --force to replace it"
        )
    arbiter = _resolve_address(params.arbiter, "arbiter", chain_id)
    treasury = _resolve_address(params.treasury, "treasury", chain_id)
    values: dict[str, Any] = params.model_dump(exclude=NOT_CONSTRUCTOR_ARGS)
    values.update(arbiter=arbiter, treasury=treasury)
    recorded_params = params.model_dump(mode="json")
    recorded_params.update(arbiter=arbiter, treasury=treasury, challenge_bond=str(params.challenge_bond))
    progress_path = partial_path(out_dir, chain_id)
    progress = _start_or_resume(w3, progress_path, chain_id, deployer.address, recorded_params)
    contracts = progress.contracts

    def deploy(name: str, extra: dict[str, Any] | None = None) -> str:
        if name in contracts:  # landed in an earlier, interrupted run (its code was checked)
            return contracts[name].address
        merged = {**values, **(extra or {}), **params.extra_args.get(name, {})}
        ordered, named = constructor_args(name, merged)
        address, block, tx_hash = _deploy_one(w3, deployer, name, ordered, receipt_timeout)
        contracts[name] = ContractRecord(address=address, block=block, tx_hash=tx_hash, args=named)
        progress.save(progress_path)
        return address

    def wire(step: str, send: Any) -> None:
        if step not in progress.wiring:
            progress.wiring[step] = send()
            progress.save(progress_path)

    if params.token:
        token = _resolve_address(params.token, "token", chain_id)
        contracts.setdefault("DevToken", ContractRecord(
            address=token, block=int(w3.eth.block_number), tx_hash="", args={"external": True}
        ))
    else:
        token = deploy("DevToken", params.token_args)
    values["token"] = token
    values["staking"] = deploy("Staking")
    values["escrow"] = deploy("JobEscrow")
    addresses: dict[str, str] = {}
    for name in REFEREE_STACK:
        addresses[name] = deploy(name, referee_args(params, addresses).get(name))
    addresses["RefereeGame"] = deploy("RefereeGame", referee_args(params, addresses)["RefereeGame"])
    if "Disputes" not in contracts:
        check_referee_bound(w3, params, addresses["RefereeGame"])
    values["disputes"] = deploy("Disputes", referee_args(params, addresses)["Disputes"])
    deploy("ModelRegistry")
    for game in ("Bisection", "TensorDescent"):
        wire(f"{game}.wire", lambda game=game: _call_wire(
            w3, deployer, game, addresses[game], [[addresses["RefereeGame"]]], receipt_timeout))
    wire("RefereeGame.wire", lambda: _call_wire(
        w3, deployer, "RefereeGame", addresses["RefereeGame"], [values["disputes"]], receipt_timeout))
    wire("Staking.wire", lambda: _call_wire(
        w3, deployer, "Staking", values["staking"], [values["escrow"], values["disputes"]], receipt_timeout))
    wire("JobEscrow.wire", lambda: _call_wire(
        w3, deployer, "JobEscrow", values["escrow"], [values["disputes"]], receipt_timeout))
    wiring = dict(progress.wiring)
    seed_tx = _seed_escrow(w3, deployer, token, values["escrow"], minted=not params.token, timeout=receipt_timeout)
    if seed_tx:
        wiring["JobEscrow.seed"] = seed_tx
    deployment = Deployment(
        chain_id=chain_id,
        deployer=deployer.address,
        compiler=compiler_version("JobEscrow"),
        created_at=int(time.time()),
        params=recorded_params,
        contracts={name: contracts[name] for name in CONTRACT_NAMES},
        wiring=wiring,
    )
    deployment.check_code(w3)
    deployment.save(target)
    progress_path.unlink(missing_ok=True)  # the final record now says everything
    return deployment
