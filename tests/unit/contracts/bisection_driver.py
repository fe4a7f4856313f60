"""A thin web3 driver for Bisection.vy on ape's in-process chain.

Bisection games take many small moves; sending them through web3 on ape's own provider (fixed gas,
no estimation, no trace lookups) costs about half of ape's contract calls, and a refused move is
checked with an eth_call on the pending block (the next block's timestamp, no block mined), so the
test budget holds. The contract under test is the one ape compiled and deployed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_tester.exceptions import TransactionFailed
from hexbytes import HexBytes
from web3.logs import DISCARD

GAS = 1_000_000
STATUS = {"none": 0, "defender": 1, "challenger": 2, "pinned": 3, "defender_timed_out": 4,
          "challenger_timed_out": 5}  # fmt: skip


@dataclass(frozen=True)
class GameView:
    """`Bisection.games(id)`, decoded."""

    host: str
    defender: str
    challenger: str
    arity: int
    move_seconds: int
    lo: int
    hi: int
    c_lo: bytes
    c_hi: bytes
    status: int
    round: int
    deadline: int
    values_hash: bytes


class BisectionDriver:
    """Send moves, check refusals and decode events of one deployed Bisection contract."""

    def __init__(self, chain: Any, contract: Any):
        self.chain = chain
        self.w3 = chain.provider.web3
        abi = [entry.model_dump(mode="json", by_alias=True) for entry in contract.contract_type.abi]
        self.c = self.w3.eth.contract(address=contract.address, abi=abi)

    def send(self, sender: Any, name: str, *args: Any) -> Any:
        """Send `name(*args)` from `sender` and return the receipt; a revert fails the test."""
        tx_hash = getattr(self.c.functions, name)(*args).transact({"from": _address(sender), "gas": GAS})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt.status == 1, f"{name}{args!r} reverted"
        return receipt

    def refusal(self, sender: Any, name: str, *args: Any) -> str | None:
        """The revert reason of `name(*args)` from `sender` in the next block (None when it would pass)."""
        try:
            getattr(self.c.functions, name)(*args).call({"from": _address(sender), "gas": GAS},
                                                         block_identifier="pending")
        except TransactionFailed as exc:
            return str(exc.args[0]).removeprefix("execution reverted: ")
        return None

    def assert_refused(self, reason: str, sender: Any, name: str, *args: Any) -> None:
        assert self.refusal(sender, name, *args) == reason

    def events(self, receipt: Any, event: str) -> list[Any]:
        return [log["args"] for log in getattr(self.c.events, event)().process_receipt(receipt, errors=DISCARD)]

    def event(self, receipt: Any, event: str) -> Any:
        (args,) = self.events(receipt, event)
        return args

    def open(self, host: Any, defender: Any, challenger: Any, c_0: bytes, c_n: bytes, n: int, arity: int,
             move_seconds: int) -> tuple[int, Any]:
        receipt = self.send(host, "open_game", _address(defender), _address(challenger), c_0, c_n, n, arity,
                            move_seconds)
        return self.event(receipt, "GameOpened")["game_id"], receipt

    def game(self, game_id: int) -> GameView:
        values = self.c.functions.games(game_id).call()
        return GameView(*[bytes(v) if isinstance(v, (bytes, HexBytes)) else v for v in values])

    def outcome(self, game_id: int) -> tuple[int, int, bytes, bytes]:
        status, index, c_lo, c_hi = self.c.functions.outcome_of(game_id).call()
        return status, index, bytes(c_lo), bytes(c_hi)

    def split_points(self, game_id: int) -> list[int]:
        return list(self.c.functions.split_points(game_id).call())

    def timestamp_of(self, receipt: Any) -> int:
        return self.w3.eth.get_block(receipt.blockNumber).timestamp

    def set_time(self, timestamp: int) -> int:
        """Make the next block's timestamp `timestamp` (or the earliest allowed after it); returns it."""
        if timestamp > self.chain.pending_timestamp:
            self.chain.pending_timestamp = timestamp
        return self.chain.pending_timestamp


def _address(who: Any) -> str:
    return who if isinstance(who, str) else who.address
