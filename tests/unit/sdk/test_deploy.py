"""Deploying on anvil: the record file, refusing overwrite, code checks, parameter validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.abi import load_abi
from protocol.deploy import Deployment, DeployParams, deploy_all, verify_code
from protocol.errors import ConfigError, DeploymentError


def test_session_deployment_is_wired_and_recorded(w3, deployment, arbiter, treasury) -> None:
    data = json.loads(Path(deployment.path).read_text())
    assert data["chain_id"] == 31337
    assert set(data["contracts"]) == {"DevToken", "Staking", "JobEscrow", "Disputes", "ModelRegistry", "Bisection",
                                      "TensorDescent", "ClipReferee", "ElementReferee", "StateLink", "HostRules", "FoldRules", "RowRules",
                                      "DataRules", "ScalarRules", "RowPieceRules", "RefereeGame"}
    for record in data["contracts"].values():
        assert record["tx_hash"].startswith("0x") and record["block"] > 0
    assert data["compiler"].startswith("vyper 0.4")
    assert data["params"]["arbiter"] == arbiter.address and data["params"]["treasury"] == treasury.address
    assert data["contracts"]["JobEscrow"]["args"]["challenge_window_"] == 20
    # JobEscrow.seed: the escrow's permanent 1-unit token balance (first job's gas, docs/gas.md)
    assert set(data["wiring"]) == {"Staking.wire", "JobEscrow.wire", "JobEscrow.seed", "Bisection.wire",
                                   "TensorDescent.wire", "RefereeGame.wire"}
    from protocol.client import TesseraClient

    client = TesseraClient(w3, deployment)
    assert client.staking.functions.escrow().call() == deployment.escrow
    assert client.escrow.functions.disputes().call() == deployment.disputes
    assert client.disputes.functions.arbiter().call() == arbiter.address
    # the referee stack: the games host RefereeGame, whose host is Disputes; no class refereed by default
    from protocol.abi import load_abi

    game = w3.eth.contract(address=deployment.referee_game, abi=load_abi("RefereeGame"))
    assert game.functions.host().call() == deployment.disputes
    for name in ("Bisection", "TensorDescent"):
        sub = w3.eth.contract(address=deployment.address(name), abi=load_abi(name))
        assert sub.functions.is_host(deployment.referee_game).call()
    assert client.disputes.functions.referee().call() == deployment.referee_game
    assert client.disputes.functions.refereed_class().call() == b"\x00" * 32
    assert data["contracts"]["Disputes"]["args"]["refereed_class_"] == "0x" + "00" * 32


def test_refuses_overwrite_unless_forced(w3, deployer, tmp_path: Path) -> None:
    first = deploy_all(w3, deployer, "local", out_dir=tmp_path)
    before = (tmp_path / "31337.json").read_text()
    block = w3.eth.block_number
    with pytest.raises(DeploymentError, match="already exists at .*31337.json"):
        deploy_all(w3, deployer, "local", out_dir=tmp_path)
    assert w3.eth.block_number == block  # refused before sending anything
    assert (tmp_path / "31337.json").read_text() == before
    from protocol.abi import load_abi
    from protocol.deploy import ESCROW_SEED

    token = w3.eth.contract(address=first.token, abi=load_abi("DevToken"))
    escrow = w3.eth.contract(address=first.escrow, abi=load_abi("JobEscrow"))
    assert token.functions.balanceOf(first.escrow).call() == ESCROW_SEED  # seeded, and nothing else
    # The counters' sentinels never show: a fresh escrow has no jobs and owes no fees.
    assert (escrow.functions.job_count().call(), escrow.functions.fees_accrued().call()) == (0, 0)
    second = deploy_all(w3, deployer, "local", out_dir=tmp_path, force=True)
    assert second.escrow != first.escrow
    assert Deployment.for_chain(31337, tmp_path).escrow == second.escrow


def test_missing_deployment_names_chain_and_path(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match=r"chain id 5\b.*5\.json"):
        Deployment.for_chain(5, tmp_path)


def test_malformed_deployment_file(tmp_path: Path) -> None:
    (tmp_path / "7.json").write_text("{}")
    with pytest.raises(DeploymentError, match="malformed"):
        Deployment.for_chain(7, tmp_path)


def test_code_check_detects_wrong_contract(w3, deployment) -> None:
    verify_code(w3, "JobEscrow", deployment.escrow)
    with pytest.raises(DeploymentError, match="does not hold the shipped JobEscrow runtime"):
        verify_code(w3, "JobEscrow", deployment.staking)
    with pytest.raises(DeploymentError, match="has no code"):
        verify_code(w3, "JobEscrow", "0x" + "12" * 20)
    # Venom contracts ship no runtime: their code is checked against what the deployment bytecode installs
    verify_code(w3, "RefereeGame", deployment.referee_game)
    verify_code(w3, "ElementReferee", deployment.address("ElementReferee"))
    verify_code(w3, "ClipReferee", deployment.address("ClipReferee"))
    element_referee = w3.eth.contract(address=deployment.address("ElementReferee"), abi=load_abi("ElementReferee"))
    assert element_referee.functions.CLIP().call() == deployment.address("ClipReferee")
    # RefereeGame asks ClipReferee for clipping elements itself, at the address ElementReferee names
    referee_game = w3.eth.contract(address=deployment.referee_game, abi=load_abi("RefereeGame"))
    assert referee_game.functions.CLIP().call() == deployment.address("ClipReferee")
    verify_code(w3, "HostRules", deployment.address("HostRules"))
    verify_code(w3, "RowRules", deployment.address("RowRules"))
    verify_code(w3, "FoldRules", deployment.address("FoldRules"))
    verify_code(w3, "DataRules", deployment.address("DataRules"))
    verify_code(w3, "ScalarRules", deployment.address("ScalarRules"))
    verify_code(w3, "RowPieceRules", deployment.address("RowPieceRules"))
    with pytest.raises(DeploymentError, match="the shipped RefereeGame bytecode installs"):
        verify_code(w3, "RefereeGame", deployment.address("ElementReferee"))


def test_shipped_parameter_sets_are_valid() -> None:
    local = DeployParams.load("local")
    testnet = DeployParams.load("testnet")
    assert local.challenge_window < testnet.challenge_window
    assert local.arbiter == "TEST::4" and local.treasury == "TEST::5"
    assert testnet.arbiter is None  # operators must name their own arbiter


def test_parameter_validation() -> None:
    data = json.loads((Path(__file__).resolve().parents[3] / "protocol/params/local.json").read_text())
    with pytest.raises(ConfigError, match="unbonding_delay"):
        DeployParams.load({**data, "unbonding_delay": 10})
    with pytest.raises(ConfigError, match="challenger_reward_bps"):
        DeployParams.load({**data, "challenger_reward_bps": 8_000, "submitter_compensation_bps": 3_000})
    with pytest.raises(ConfigError, match="fee_bps"):
        DeployParams.load({**data, "fee_bps": 5_000})
    with pytest.raises(ConfigError, match="no parameter file 'mainnet'"):
        DeployParams.load("mainnet")


def test_a_refereed_class_needs_an_unbonding_delay_past_the_longest_game(w3, deployer, tmp_path: Path) -> None:
    """With a refereed class a dispute can last the referee's longest game too: refused before Disputes."""
    data = json.loads((Path(__file__).resolve().parents[3] / "protocol/params/local.json").read_text())
    refereed = {**data, "refereed_class": "0x" + "ab" * 32}
    with pytest.raises(ConfigError, match="the referee's longest game"):
        deploy_all(w3, deployer, refereed, out_dir=tmp_path)
    landed = json.loads((tmp_path / "31337.partial.json").read_text())["contracts"]
    assert "RefereeGame" in landed and "Disputes" not in landed


def test_the_testnet_set_referees_the_portable_class_and_outlasts_its_longest_game(w3, deployer, tmp_path: Path) -> None:
    """testnet.json hands the SEGMENT claims of this engine's portable/1 class to the referee (an engine
    version bump changes the class hash: this fails until the file names the new one), and its unbonding
    delay passes the deploy-time bound against the deployed RefereeGame's longest game."""
    from engine.determinism import portable_env_class
    from protocol.accounts import test_account

    testnet = DeployParams.load("testnet")
    assert testnet.refereed_class == portable_env_class("portable/1")[1]
    # a first move replays a whole declared segment (about 2.7 x its compute: bench.dispute_compute)
    assert testnet.referee_move_seconds >= 3 * testnet.max_segment_seconds
    addresses = {"arbiter": test_account(4, 31337).address, "treasury": test_account(5, 31337).address}
    deployment = deploy_all(w3, deployer, {**testnet.model_dump(), **addresses}, out_dir=tmp_path)
    from protocol.abi import load_abi

    def contract(name: str):
        return w3.eth.contract(address=deployment.address(name), abi=load_abi(name))

    game = contract("RefereeGame").functions.max_game_seconds().call()
    assert game == 52 * (testnet.referee_move_seconds + 1)  # docs/disputes.md: at most 52 moves at arity 16, 5 levels
    assert testnet.unbonding_delay > testnet.max_settle_seconds + game
    assert "0x" + contract("Disputes").functions.refereed_class().call().hex() == testnet.refereed_class


def test_testnet_params_need_addresses(w3, deployer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="arbiter"):
        deploy_all(w3, deployer, "testnet", out_dir=tmp_path)
