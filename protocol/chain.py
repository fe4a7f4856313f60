"""A web3 connection that cannot hang: every request has a timeout, a response-size cap and bounded retries.

`connect(network)` accepts a plain RPC URL (`http://…`, `https://…`) or an ape network choice such as
`ethereum:local:foundry` or `ethereum:sepolia:node`. Ape itself is never imported (it is slow and
heavy); for non-local choices the URL comes from `TESSERA_RPC_URL` or from the `node:` section of
ape-config.yaml, read as plain YAML. Nodes that hang on one RPC error were a real failure of earlier
systems, so an unreachable endpoint becomes `RpcUnreachableError` with the URL in the message.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests
from web3 import Web3
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from protocol.errors import ChainError, ConfigError, RpcUnreachableError

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # eth_getLogs over a wide range can be large, not unbounded
DEFAULT_RETRIES = 2
LOCAL_FOUNDRY_URL = "http://127.0.0.1:8545"
ENV_RPC_URL = "TESSERA_RPC_URL"

# Methods whose repetition cannot change chain state; only these are retried on transport errors.
# A raw transaction is not retried here: the outbox/client decides, after re-reading chain state.
_NON_RETRYABLE = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})


class BoundedHTTPProvider(JSONBaseProvider):
    """JSON-RPC over HTTP with a per-request timeout, a response-size cap and bounded, backed-off retries."""

    def __init__(
        self,
        endpoint_uri: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.25,
    ) -> None:
        super().__init__()
        if timeout <= 0:
            raise ConfigError(f"RPC timeout must be positive, got {timeout}")
        self.endpoint_uri = endpoint_uri
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session = requests.Session()

    def __str__(self) -> str:
        return f"RPC connection {self.endpoint_uri}"

    def _post_once(self, request_data: bytes) -> bytes:
        with self._session.post(
            self.endpoint_uri,
            data=request_data,
            headers={"Content-Type": "application/json"},
            timeout=(self.timeout, self.timeout),
            stream=True,
        ) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise requests.ConnectionError(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise ChainError(f"RPC {self.endpoint_uri} answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            deadline = time.monotonic() + self.timeout
            for chunk in response.iter_content(chunk_size=65_536):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ChainError(
                        f"RPC {self.endpoint_uri} response exceeds {self.max_response_bytes} bytes; "
                        "narrow the query (e.g. a smaller log block range)"
                    )
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"response body not complete within {self.timeout}s")
                chunks.append(chunk)
            return b"".join(chunks)

    def _post(self, method: str, request_data: bytes) -> bytes:
        attempts = 1 if method in _NON_RETRYABLE else self.retries + 1
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                return self._post_once(request_data)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = exc
                if attempt + 1 < attempts:
                    time.sleep(self.backoff * 2**attempt)
        raise RpcUnreachableError(
            f"RPC {self.endpoint_uri} unreachable ({method}, {attempts} attempt(s), "
            f"timeout {self.timeout:g}s): {type(last).__name__}: {_short(last)}"
        )

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request_data = self.encode_rpc_request(method, params)
        raw = self._post(str(method), request_data)
        try:
            return self.decode_rpc_response(raw)
        except ValueError as exc:
            raise ChainError(f"RPC {self.endpoint_uri} answered something that is not JSON-RPC: {exc}") from exc

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            response = self.make_request(RPCEndpoint("eth_chainId"), [])
        except ChainError:
            if show_traceback:
                raise
            return False
        return "result" in response


def _short(exc: Exception | None, limit: int = 200) -> str:
    text = str(exc) if exc is not None else "no answer"
    return text if len(text) <= limit else text[:limit] + "…"


def resolve_rpc_url(network: str, config_path: Path | None = None) -> str:
    """Turn a network argument into an RPC URL (see module docstring for the rules)."""
    network = network.strip()
    if not network:
        raise ConfigError("network is empty: pass an RPC URL or an ape network choice like ethereum:local:foundry")
    if network.startswith(("http://", "https://")):
        return network
    if "://" in network:
        raise ConfigError(f"unsupported RPC scheme in {network!r}: only http:// and https:// are supported")
    parts = network.split(":")
    if len(parts) > 3 or not all(parts):
        raise ConfigError(f"not an RPC URL or an ape network choice (ecosystem:network:provider): {network!r}")
    env_url = os.environ.get(ENV_RPC_URL)
    if env_url:
        return env_url
    ecosystem = parts[0]
    net = parts[1] if len(parts) > 1 else "local"
    provider = parts[2] if len(parts) > 2 else None
    if net == "local" and provider in (None, "foundry"):
        return LOCAL_FOUNDRY_URL
    if net == "local" and provider == "test":
        raise ConfigError("ape's in-process test chain has no RPC; use ethereum:local:foundry or an RPC URL")
    url = _url_from_ape_config(ecosystem, net, config_path or Path("ape-config.yaml"))
    if url:
        return url
    raise ConfigError(
        f"no RPC URL for network {network!r}: set {ENV_RPC_URL}, pass a plain URL, or add "
        f"node: {{{ecosystem}: {{{net}: {{uri: …}}}}}} to ape-config.yaml"
    )


def _url_from_ape_config(ecosystem: str, network: str, path: Path) -> str | None:
    """Read `node: <ecosystem>: <network>: uri` from ape-config.yaml without importing ape."""
    if not path.is_file():
        return None
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with ape and web3's tooling
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    node = data.get("node") if isinstance(data, dict) else None
    section = node.get(ecosystem) if isinstance(node, dict) else None
    entry = section.get(network) if isinstance(section, dict) else None
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        for key in ("uri", "http_uri"):
            if isinstance(entry.get(key), str):
                return entry[key]
    return None


def connect(
    network: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    retries: int = DEFAULT_RETRIES,
    check: bool = True,
) -> Web3:
    """Return a `Web3` on `network`; with `check`, fail now with `RpcUnreachableError` when nobody answers."""
    url = resolve_rpc_url(network)
    provider = BoundedHTTPProvider(url, timeout=timeout, max_response_bytes=max_response_bytes, retries=retries)
    w3 = Web3(provider)
    if check:
        try:
            w3.eth.chain_id
        except RpcUnreachableError:
            raise
        except ChainError:
            raise
        except Exception as exc:  # a non-JSON-RPC server, a proxy error page, …
            raise RpcUnreachableError(f"RPC {url} did not answer eth_chainId: {_short(exc)}") from exc
    return w3


# --------------------------------------------------------------------------------------------------
# Sending transactions: EIP-1559 fees, estimated gas with a margin, a bounded receipt wait, and
# revert reasons decoded into words.
# --------------------------------------------------------------------------------------------------

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
GAS_MARGIN_PCT = 20
DEFAULT_RECEIPT_TIMEOUT = 120.0
DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei when the node cannot suggest one


def decode_revert_data(data: bytes | str | None) -> str | None:
    """Decode revert return data: `Error(string)` → the string, `Panic(uint256)` → `panic 0x..`, else None."""
    if data is None:
        return None
    if isinstance(data, str):
        text = data[2:] if data.startswith("0x") else data
        try:
            data = bytes.fromhex(text)
        except ValueError:
            return None
    if data[:4] == ERROR_STRING_SELECTOR and len(data) >= 68:
        from eth_abi import decode

        try:
            (reason,) = decode(["string"], data[4:])
            return reason
        except Exception:
            return None
    if data[:4] == PANIC_SELECTOR and len(data) >= 36:
        return f"panic 0x{int.from_bytes(data[4:36], 'big'):02x}"
    return None


def revert_reason_of(exc: BaseException) -> str | None:
    """The revert reason carried by a web3 exception (ContractLogicError, ValueError from RPC, …)."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    reason = decode_revert_data(data) if isinstance(data, (str, bytes)) else None
    if reason:
        return reason
    message = getattr(exc, "message", None) or (exc.args[0] if exc.args else "")
    if isinstance(message, dict):
        inner = message.get("data")
        reason = decode_revert_data(inner) if isinstance(inner, str) else None
        if reason:
            return reason
        message = message.get("message", "")
    message = str(message)
    marker = "execution reverted"
    if marker in message:
        rest = message.split(marker, 1)[1].lstrip(": ").strip()
        return rest or "execution reverted (no reason)"
    return None


def suggest_fees(w3: Web3, max_fee_cap: int | None = None) -> dict[str, int]:
    """EIP-1559 fees: priority from the node (1 gwei fallback), max fee = 2 × base fee + priority, capped."""
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    try:
        priority = int(w3.eth.max_priority_fee)
    except Exception:
        priority = DEFAULT_PRIORITY_FEE
    max_fee = 2 * base_fee + priority
    if max_fee_cap is not None and max_fee > max_fee_cap:
        max_fee = max_fee_cap
        priority = min(priority, max_fee)
    return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority}


def send_transaction(
    w3: Web3,
    account: Any,
    *,
    to: str | None,
    data: bytes | str = b"",
    value: int = 0,
    description: str = "transaction",
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT,
    gas: int | None = None,
    max_fee_cap: int | None = None,
) -> Any:
    """Sign with `account` (an eth-account LocalAccount), send, wait for the receipt and return it.

    Gas is estimated (which simulates the call, so most reverts surface here with their reason) plus a
    20% margin. A revert, at estimation or in the mined transaction, raises `TransactionRevertedError`
    with the decoded reason. A receipt that does not come within `receipt_timeout` raises `ChainError`
    naming the hash, so the caller can look it up rather than resend blindly.
    """
    from hexbytes import HexBytes
    from web3.exceptions import TimeExhausted

    from protocol.errors import TransactionRevertedError

    sender = account.address
    tx: dict[str, Any] = {
        "from": sender,
        "value": int(value),
        "data": HexBytes(data),
        "chainId": w3.eth.chain_id,
    }
    if to is not None:
        tx["to"] = Web3.to_checksum_address(to)
    if gas is None:
        try:
            # simulated in the pending block: the block the transaction can land in at the earliest
            estimate = w3.eth.estimate_gas(tx, "pending")
        except ChainError:
            raise
        except Exception as exc:
            reason = revert_reason_of(exc)
            if reason is None:
                raise ChainError(f"{description}: gas estimation failed: {_short(exc)}") from exc
            raise TransactionRevertedError(f"{description} would revert: {reason}", reason=reason) from exc
        gas = estimate * (100 + GAS_MARGIN_PCT) // 100
    tx["gas"] = int(gas)
    tx["nonce"] = w3.eth.get_transaction_count(sender, "pending")
    tx.update(suggest_fees(w3, max_fee_cap))
    tx["type"] = 2
    signed = account.sign_transaction(tx)
    try:
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    except ChainError:
        raise
    except Exception as exc:
        reason = revert_reason_of(exc)
        if reason is not None:
            raise TransactionRevertedError(f"{description} reverted: {reason}", reason=reason) from exc
        raise ChainError(f"{description}: node refused the transaction: {_short(exc)}") from exc
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=receipt_timeout, poll_latency=0.1)
    except TimeExhausted as exc:
        raise ChainError(
            f"{description}: no receipt for {tx_hash.to_0x_hex()} within {receipt_timeout:g}s; "
            "it may still be mined — check before resending"
        ) from exc
    if receipt["status"] != 1:
        reason = replay_reason(w3, tx, receipt["blockNumber"])
        raise TransactionRevertedError(
            f"{description} reverted in tx {tx_hash.to_0x_hex()}: {reason or 'no reason given'}",
            reason=reason,
            tx_hash=tx_hash.to_0x_hex(),
        )
    return receipt


def replay_reason(w3: Web3, tx: dict[str, Any], block_number: int) -> str | None:
    """Re-run a mined, failed transaction as `eth_call` on the state before its block to read the reason."""
    call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
    try:
        w3.eth.call(call, block_identifier=max(0, block_number - 1))
    except ChainError:
        return None
    except Exception as exc:
        return revert_reason_of(exc)
    return None
