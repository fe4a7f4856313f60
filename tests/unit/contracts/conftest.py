"""Fixtures for the contract unit tests: ape's in-process chain, the five Tessera contracts
deployed and wired with the local parameter set, and the persona accounts of architecture.md
(0 deployer, 1 submitter, 2 worker, 3 verifier, 4 arbiter, 5 treasury, 6 second worker,
7 second submitter)."""

from __future__ import annotations

import pytest

from tests.unit.contracts.helpers import E18, PARAMS, Deployment, deploy_all


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def submitter(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def worker(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def verifier(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def arbiter(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def worker2(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def submitter2(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def system(project, deployer, arbiter, treasury) -> Deployment:
    """All five contracts, deployed and wired (module scope; ape isolates each test)."""
    return deploy_all(project, deployer, arbiter, treasury)


@pytest.fixture(scope="module")
def token(system):
    return system.token


@pytest.fixture(scope="module")
def staking(system):
    return system.staking


@pytest.fixture(scope="module")
def escrow(system):
    return system.escrow


@pytest.fixture(scope="module")
def disputes(system):
    return system.disputes


@pytest.fixture(scope="module")
def registry(system):
    return system.registry


@pytest.fixture(scope="module")
def funded(system, submitter, worker, verifier, worker2, submitter2):
    """Every persona holds 10_000 tokens, has approved all contracts, and the workers and the
    verifier have 1_000 staked."""
    for who in (submitter, worker, verifier, worker2, submitter2):
        system.token.faucet(10_000 * E18, sender=who)
        for spender in (system.staking, system.escrow, system.disputes):
            system.token.approve(spender, 2**256 - 1, sender=who)
    for who in (worker, verifier, worker2):
        system.staking.stake(1_000 * E18, sender=who)
    return system


__all__ = ["PARAMS"]
