"""Fixtures for the worker runtime unit tests: one anvil per module, fresh funded accounts per test."""

from __future__ import annotations

import itertools

import pytest
from eth_account import Account
from web3 import Web3

from protocol.devnet import start_anvil, test_account_keys

_counter = itertools.count(1)


@pytest.fixture(scope="module")
def anvil_chain():
    """A private anvil (automine) for one test module."""
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def w3(anvil_chain):
    """web3 on the module's anvil, with a request timeout."""
    web3 = Web3(Web3.HTTPProvider(anvil_chain.rpc_url, request_kwargs={"timeout": 10}))
    yield web3
    web3.provider.make_request("evm_setAutomine", [True])


@pytest.fixture
def funder(w3):
    """An unlocked anvil account that pays for deployments and funds test keys."""
    return w3.to_checksum_address(Account.from_key(test_account_keys(1)[0]).address)


@pytest.fixture
def fresh_account(w3, funder):
    """A new random key funded with 10 ETH, so nonces start at 0 in every test."""
    account = Account.create(f"tessera-test-{next(_counter)}")
    tx = w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10 * 10**18})
    w3.eth.wait_for_transaction_receipt(tx, timeout=10)
    return account
