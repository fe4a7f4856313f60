# pragma version ~=0.4.3
"""
@title Forwarder
@notice Test-only smart-contract wallet: its owner makes it call any contract with any data, as a
        Safe, a multicall or an EIP-7702 account would. Used to show that a worker committing through
        a contract is verified like a direct one (audit F-15).
@dev Never deployed outside tests.
"""

owner: public(immutable(address))


@deploy
def __init__():
    """
    @notice The deployer owns the wallet.
    """
    owner = msg.sender


@external
def forward(target: address, data: Bytes[16_384]) -> Bytes[1_024]:
    """
    @notice Call `target` with `data` from this contract. Owner only.
    @param target The contract to call.
    @param data The calldata.
    @return What the call returned (reverts bubble up).
    """
    assert msg.sender == owner, "forwarder: not owner"
    return raw_call(target, data, max_outsize=1_024)
