"""A web3 connection that cannot hang: every request has a timeout, a response-size cap and bounded retries.

`connect(network)` accepts a plain RPC URL (`http://…`, `https://…`) or an ape network choice such as
`ethereum:local:foundry` or `ethereum:sepolia:node`. Ape itself is never imported (it is slow and
heavy); the URL comes from `TESSERA_RPC_URL`, else from the `node:` section of the project's
./ape-config.yaml, else of ape's global config ($APE_DATA_FOLDER or ~/.ape)/ape-config.yaml, read as
plain YAML; `ethereum:local:foundry` defaults to http://127.0.0.1:8545. A named network is checked
against the RPC's `eth_chainId` before anything is signed, so a URL exported for one chain cannot
silently sign on another. Every request shares one time budget (`timeout`), so a hanging node is
an error after about that long; URLs are shown redacted (`protocol.redaction`), since providers put
API keys in them.
"""

from __future__ import annotations

import difflib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from web3 import Web3
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from protocol.errors import ChainError, ConfigError, RpcUnreachableError
from protocol.redaction import redact, redact_url, register_url

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # eth_getLogs over a wide range can be large, not unbounded
DEFAULT_RETRIES = 2
LOCAL_FOUNDRY_URL = "http://127.0.0.1:8545"
ENV_RPC_URL = "TESSERA_RPC_URL"
ENV_RPC_TIMEOUT = "TESSERA_RPC_TIMEOUT"
SLOW_NOTICE_SECONDS = 3.0

# Chain ids of the ape network choices people type (ape's own tables; `local` is anvil's default).
KNOWN_CHAIN_IDS: dict[str, dict[str, int]] = {
    "ethereum": {"mainnet": 1, "sepolia": 11155111, "holesky": 17000, "hoodi": 560048, "local": 31337},
    "arbitrum": {"mainnet": 42161, "sepolia": 421614, "local": 31337},
    "base": {"mainnet": 8453, "sepolia": 84532, "local": 31337},
    "optimism": {"mainnet": 10, "sepolia": 11155420, "local": 31337},
    "polygon": {"mainnet": 137, "amoy": 80002, "local": 31337},
}

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
        slow_notice: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if timeout <= 0:
            raise ConfigError(f"RPC timeout must be positive, got {timeout}")
        self.endpoint_uri = endpoint_uri
        self.display_uri = redact_url(endpoint_uri)
        register_url(endpoint_uri)
        self.timeout = timeout
        self.slow_notice = slow_notice
        self.max_response_bytes = max_response_bytes
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session = requests.Session()

    def __str__(self) -> str:
        return f"RPC connection {self.display_uri}"

    def _post_once(self, request_data: bytes, budget: float) -> bytes:
        with self._session.post(
            self.endpoint_uri,
            data=request_data,
            headers={"Content-Type": "application/json"},
            timeout=(budget, budget),
            stream=True,
        ) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise requests.ConnectionError(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise ChainError(f"RPC {self.display_uri} answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            deadline = time.monotonic() + budget
            for chunk in response.iter_content(chunk_size=65_536):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ChainError(
                        f"RPC {self.display_uri} response exceeds {self.max_response_bytes} bytes; "
                        "narrow the query (e.g. a smaller log block range)"
                    )
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"response body not complete within {budget:g}s")
                chunks.append(chunk)
            return b"".join(chunks)

    def _post(self, method: str, request_data: bytes) -> bytes:
        """POST with retries on connection errors, all inside one budget of `timeout` seconds.

        Why one budget: a node that accepts and never answers used to cost attempts x timeout of
        silence; a timed-out attempt is not retried, since the budget it had is spent.
        """
        attempts = 1 if method in _NON_RETRYABLE else self.retries + 1
        started = time.monotonic()
        deadline = started + self.timeout
        notice = self._start_slow_notice(method)
        last: Exception | None = None
        tried = 0
        try:
            for attempt in range(attempts):
                budget = deadline - time.monotonic()
                if budget <= 0:
                    break
                tried += 1
                try:
                    return self._post_once(request_data, budget)
                except requests.Timeout as exc:
                    last = exc
                    break
                except requests.ConnectionError as exc:
                    last = exc
                    if attempt + 1 < attempts:
                        time.sleep(min(self.backoff * 2**attempt, max(0.0, deadline - time.monotonic())))
        finally:
            if notice is not None:
                notice.cancel()
        if isinstance(last, requests.Timeout):
            raise RpcUnreachableError(
                f"RPC {self.display_uri} timed out: no answer to {method} within {self.timeout:g}s "
                f"({tried} attempt(s)); raise --rpc-timeout or {ENV_RPC_TIMEOUT} if the node is just slow"
            )
        raise RpcUnreachableError(
            f"RPC {self.display_uri} unreachable ({method}, {tried} attempt(s) in "
            f"{time.monotonic() - started:.1f}s, timeout {self.timeout:g}s): {transport_reason(last)}"
        )

    def _start_slow_notice(self, method: str) -> threading.Timer | None:
        if self.slow_notice is None or self.timeout <= SLOW_NOTICE_SECONDS:
            return None
        message = f"waiting for RPC {self.display_uri} ({method}, gives up after {self.timeout:g}s)…"
        timer = threading.Timer(SLOW_NOTICE_SECONDS, self.slow_notice, args=(message,))
        timer.daemon = True
        timer.start()
        return timer

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request_data = self.encode_rpc_request(method, params)
        raw = self._post(str(method), request_data)
        try:
            return self.decode_rpc_response(raw)
        except ValueError as exc:
            raise ChainError(
                f"RPC {self.display_uri} answered something that is not JSON-RPC: {redact(str(exc))}"
            ) from exc

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            response = self.make_request(RPCEndpoint("eth_chainId"), [])
        except ChainError:
            if show_traceback:
                raise
            return False
        return "result" in response


_ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def node_message(exc: BaseException | None) -> str:
    """The readable core of a node or transport error: the node's `message` rather than its raw dict."""
    if exc is None:
        return "no answer"
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    first = exc.args[0] if exc.args else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = error["message"]
    elif isinstance(first, dict) and isinstance(first.get("message"), str):
        text = first["message"]
    else:
        text = str(exc)
    if "insufficient funds" in text.lower():
        return f"the sending account has too little ETH to pay gas x fee + value (the node said: {text.strip()})"
    return text


def transport_reason(exc: BaseException | None) -> str:
    """Why a connection failed, with the OS reason ("Connection refused") kept, never cut off."""
    if exc is None:
        return "no answer"
    text = redact(str(exc))
    found = _ERRNO_RE.search(text)
    if found:
        return f"{type(exc).__name__}: {found.group(0).strip()}"
    return f"{type(exc).__name__}: {_short(text)}"


def _short(exc: BaseException | str | None, limit: int = 200) -> str:
    text = exc if isinstance(exc, str) else node_message(exc)
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "…"


def _ape_config_paths(config_path: Path | None) -> list[Path]:
    """Where the `node:` section is looked for: the project's ape-config.yaml, then ape's global one."""
    from protocol.accounts import ape_data_folder

    return [config_path or Path("ape-config.yaml"), ape_data_folder() / "ape-config.yaml"]


def split_network(network: str) -> tuple[str, str, str | None]:
    """`ecosystem[:network[:provider]]` -> its three parts (network defaults to `local`)."""
    parts = network.strip().split(":")
    if len(parts) > 3 or not all(parts):
        raise ConfigError(f"not an RPC URL or an ape network choice (ecosystem:network:provider): {network!r}")
    return parts[0], parts[1] if len(parts) > 1 else "local", parts[2] if len(parts) > 2 else None


def expected_chain_id(network: str, config_path: Path | None = None) -> int | None:
    """The chain id a named network must have (None for a plain URL or a network we know no id of).

    An ape custom network (`networks: custom: [{name, ecosystem, chain_id}]` in ape-config.yaml)
    gives its own id.
    """
    if network.strip().startswith(("http://", "https://")):
        return None
    ecosystem, net, _ = split_network(network)
    for path in _ape_config_paths(config_path):
        for entry in _custom_networks(path):
            if entry.get("name") == net and entry.get("ecosystem", ecosystem) == ecosystem:
                chain_id = entry.get("chain_id")
                return int(chain_id) if isinstance(chain_id, int) else None
    return KNOWN_CHAIN_IDS.get(ecosystem, {}).get(net)


def _check_network_name(network: str, config_path: Path | None) -> None:
    """Refuse a misspelt network (`ethereum:sepoila:node`) with a suggestion, before any RPC."""
    ecosystem, net, _ = split_network(network)
    known = KNOWN_CHAIN_IDS.get(ecosystem)
    if known is None or net in known:
        return
    paths = _ape_config_paths(config_path)
    if any(_node_entry(ecosystem, net, path) for path in paths) or any(
        entry.get("name") == net for path in paths for entry in _custom_networks(path)
    ):
        return
    close = difflib.get_close_matches(net, list(known), n=1)
    rest = network.strip()[len(ecosystem) + 1 + len(net):]
    hint = f" (did you mean {ecosystem}:{close[0]}{rest}?)" if close else ""
    raise ConfigError(
        f"unknown network {net!r} of ecosystem {ecosystem!r} in {network.strip()!r}{hint}; "
        f"known: {', '.join(known)} (or define it in ape-config.yaml)"
    )


def resolve_rpc_url(network: str, config_path: Path | None = None) -> str:
    """Turn a network argument into an RPC URL (see module docstring for the rules)."""
    return resolve_rpc(network, config_path)[0]


def resolve_rpc(network: str, config_path: Path | None = None) -> tuple[str, str]:
    """The RPC URL of `network` and where it came from (`--network`, `TESSERA_RPC_URL`, a config file, default)."""
    network = network.strip()
    if not network:
        raise ConfigError("network is empty: pass an RPC URL or an ape network choice like ethereum:local:foundry")
    if network.startswith(("http://", "https://")):
        return network, "--network"
    if "://" in network:
        raise ConfigError(f"unsupported RPC scheme in {redact(network, network)!r}: only http:// and https:// are supported")
    ecosystem, net, provider = split_network(network)
    _check_network_name(network, config_path)
    env_url = os.environ.get(ENV_RPC_URL)
    if env_url:
        return env_url, ENV_RPC_URL
    if net == "local" and provider == "test":
        raise ConfigError("ape's in-process test chain has no RPC; use ethereum:local:foundry or an RPC URL")
    for path in _ape_config_paths(config_path):
        url = _node_entry(ecosystem, net, path)
        if url:
            return url, str(path)
    if net == "local" and provider in (None, "foundry"):
        return LOCAL_FOUNDRY_URL, "the local default"
    raise ConfigError(
        f"no RPC URL for network {network!r}: set {ENV_RPC_URL}, pass a plain URL, or add "
        f"node: {{{ecosystem}: {{{net}: {{uri: …}}}}}} to ./ape-config.yaml or ape's global ape-config.yaml"
    )


def _read_ape_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with ape and web3's tooling
        return {}
    try:
        # ape expands $VARS in its config files before parsing them; so do we, so both read one file alike
        data = yaml.safe_load(os.path.expandvars(path.read_text(encoding="utf8"))) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _custom_networks(path: Path) -> list[dict[str, Any]]:
    networks = _read_ape_config(path).get("networks")
    custom = networks.get("custom") if isinstance(networks, dict) else None
    return [entry for entry in custom if isinstance(entry, dict)] if isinstance(custom, list) else []


def _node_entry(ecosystem: str, network: str, path: Path) -> str | None:
    """Read `node: <ecosystem>: <network>: uri` from an ape-config.yaml without importing ape."""
    node = _read_ape_config(path).get("node")
    section = node.get(ecosystem) if isinstance(node, dict) else None
    entry = section.get(network) if isinstance(section, dict) else None
    values = [entry] if isinstance(entry, str) else (
        [entry.get(key) for key in ("uri", "http_uri")] if isinstance(entry, dict) else [])
    for value in values:
        # `$NAME` left in place is a variable that is not set: no URL from this entry
        if isinstance(value, str) and value.strip() and "$" not in value:
            return value.strip()
    return None


def rpc_timeout_from_env(default: float = DEFAULT_TIMEOUT) -> float:
    """`TESSERA_RPC_TIMEOUT` in seconds, else `default`; a bad value is a `ConfigError`."""
    raw = os.environ.get(ENV_RPC_TIMEOUT)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_RPC_TIMEOUT}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{ENV_RPC_TIMEOUT} must be positive, got {raw!r}")
    return value


def connect(
    network: str,
    timeout: float | None = None,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    retries: int = DEFAULT_RETRIES,
    check: bool = True,
    slow_notice: Callable[[str], None] | None = None,
) -> Web3:
    """Return a `Web3` on `network`; with `check`, fail now when nobody answers or the chain is not the named one.

    `timeout` (default `TESSERA_RPC_TIMEOUT`, else 15 s) bounds each RPC call, retries included.
    """
    url, source = resolve_rpc(network)
    if timeout is None:
        timeout = rpc_timeout_from_env()
    provider = BoundedHTTPProvider(
        url, timeout=timeout, max_response_bytes=max_response_bytes, retries=retries, slow_notice=slow_notice
    )
    w3 = Web3(provider)
    if check:
        try:
            chain_id = int(w3.eth.chain_id)
        except ChainError:
            raise
        except Exception as exc:  # a non-JSON-RPC server, a proxy error page, …
            raise RpcUnreachableError(f"RPC {redact_url(url)} did not answer eth_chainId: {_short(exc)}") from exc
        check_chain_id(network, chain_id, f"the RPC {redact_url(url)} (from {source})")
    return w3


def check_chain_id(network: str, chain_id: int, where: str) -> None:
    """`ConfigError` when `network` names a chain other than `chain_id` (what `where` serves)."""
    expected = expected_chain_id(network)
    if expected is not None and chain_id != expected:
        raise ConfigError(
            f"network {network.strip()!r} is chain id {expected}, but {where} serves chain id {chain_id}; "
            f"nothing was signed: pass the --network that matches the RPC, or point the RPC "
            f"({ENV_RPC_URL} or ape-config.yaml node:) at a chain {expected} node"
        )


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


JournalChoice = Any  # a `protocol.tx_journal.TxJournal`, True for the default one, or None/False for none

_ALREADY_KNOWN = ("already known", "already imported", "known transaction")
_NONCE_MOVED = ("nonce too low", "replacement transaction underpriced")


def broadcast_refusal(exc: BaseException) -> str | None:
    """Classify a node's answer to `eth_sendRawTransaction` that is an error but not a failure of ours:
    "known" (it has these very bytes already) or "nonce" (the nonce moved on, or a higher-fee sibling is
    pending: receipts decide). None for anything else."""
    text = str(exc).lower()
    if any(marker in text for marker in _ALREADY_KNOWN):
        return "known"
    if any(marker in text for marker in _NONCE_MOVED):
        return "nonce"
    return None


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
    journal: JournalChoice = True,
    allow_duplicate: bool = False,
) -> Any:
    """Sign with `account` (an eth-account LocalAccount), send, wait for the receipt and return it.

    Gas is estimated (which simulates the call, so most reverts surface here with their reason) plus a
    20% margin. A revert, at estimation or in the mined transaction, raises `TransactionRevertedError`
    with the decoded reason. With a `journal` (the default one under `TESSERA_STATE_DIR` unless told
    otherwise) the signed transaction is stored before it is sent, and a call with the same intent
    follows that stored transaction instead of sending a second one (`protocol.tx_journal`;
    `allow_duplicate` sends a new one regardless). When the RPC fails after signing, or no receipt comes
    within `receipt_timeout`, `TransactionUnconfirmedError` names the hash.
    """
    receipt, _resumed = send_transaction_once(
        w3, account, to=to, data=data, value=value, description=description, receipt_timeout=receipt_timeout,
        gas=gas, max_fee_cap=max_fee_cap, journal=journal, allow_duplicate=allow_duplicate,
    )
    return receipt


def _open_journal(journal: JournalChoice) -> Any:
    if journal is True:
        from protocol.tx_journal import TxJournal

        return TxJournal.default()
    return journal or None


def journal_scope(w3: Web3, sender: str, chain_id: int | None = None) -> Any:
    """The journal scope of `sender` on `w3`'s chain (chain id and genesis hash)."""
    from protocol.tx_journal import JournalScope

    genesis = w3.eth.get_block(0)["hash"]
    return JournalScope(chain_id=int(chain_id if chain_id is not None else w3.eth.chain_id),
                        genesis="0x" + bytes(genesis).hex(), sender=Web3.to_checksum_address(sender))


def resume_transaction(
    w3: Web3, account: Any, *, to: str | None, data: bytes | str = b"", value: int = 0,
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT, journal: JournalChoice = True,
) -> Any | None:
    """Follow a journaled transaction with this intent, if there is one: its receipt (after waiting for
    it, or sending its same bytes again when the node forgot it), or None when there is none to follow
    (no entry, or its nonce went to another transaction). Callers use it before their pre-flight checks,
    which a transaction that already landed would fail."""
    store = _open_journal(journal)
    if store is None:
        return None
    from protocol.tx_journal import intent_key

    scope = journal_scope(w3, account.address)
    entry = store.find(scope, intent_key(scope.chain_id, scope.sender, to, _data_hex(data), value))
    if entry is None:
        return None
    return _follow_entry(w3, store, entry, receipt_timeout)


def send_transaction_once(
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
    journal: JournalChoice = True,
    allow_duplicate: bool = False,
) -> tuple[Any, bool]:
    """`send_transaction`, returning `(receipt, resumed)`: `resumed` is True when the receipt is that of a
    journaled transaction from an earlier call rather than of one sent now."""
    from hexbytes import HexBytes

    from protocol.errors import TransactionRevertedError

    store = _open_journal(journal)
    sender = account.address
    chain_id = int(w3.eth.chain_id)
    data_hex = _data_hex(data)
    scope = key = None
    if store is not None:
        from protocol.tx_journal import intent_key

        scope = journal_scope(w3, sender, chain_id)
        key = intent_key(chain_id, scope.sender, to, data_hex, value)
        entry = None if allow_duplicate else store.find(scope, key)
        if entry is not None:
            receipt = _follow_entry(w3, store, entry, receipt_timeout)
            if receipt is not None:
                return checked_receipt(w3, receipt, entry.description, _entry_call(entry)), True
    tx: dict[str, Any] = {
        "from": sender,
        "value": int(value),
        "data": HexBytes(data_hex),
        "chainId": chain_id,
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
    raw = bytes(signed.raw_transaction)
    tx_hash = "0x" + bytes(Web3.keccak(raw)).hex()  # the hash of any signed envelope, whoever signed it
    entry = None
    if store is not None:
        from protocol.tx_journal import JournalEntry

        entry = JournalEntry(
            key=key, description=description, chain_id=chain_id, genesis=scope.genesis, sender=scope.sender,
            to=tx.get("to"), data=data_hex, value=int(value), nonce=int(tx["nonce"]), tx_hash=tx_hash,
            raw="0x" + raw.hex(), created_at=time.time(),
        )
        store.record(entry)
    try:
        w3.eth.send_raw_transaction(raw)
    except Exception as exc:
        if not _node_answered(exc):
            # The request may have reached the node before the connection failed: never assume it did not.
            raise _unconfirmed(description, tx_hash, int(tx["nonce"]), "unknown", store, entry, exc) from exc
        if broadcast_refusal(exc) != "known":
            # The node answered with a refusal: nothing is on the network, so nothing is left to follow.
            if store is not None and entry is not None:
                store.clear(entry)
            reason = revert_reason_of(exc)
            if reason is not None:
                raise TransactionRevertedError(f"{description} reverted: {reason}", reason=reason) from exc
            raise ChainError(f"{description}: node refused the transaction: {_short(exc)}") from exc
    receipt = _wait_receipt(w3, tx_hash, receipt_timeout, description, int(tx["nonce"]), store, entry)
    if store is not None and entry is not None:
        store.clear(entry)
    return checked_receipt(w3, receipt, description, tx), False


def _node_answered(exc: BaseException) -> bool:
    """True when `exc` is the node's JSON-RPC answer (a refusal we can read), not a failed transport: only
    then is it known that the transaction did not go out. Unknown exceptions count as transport failures."""
    from web3.exceptions import ContractLogicError, Web3RPCError

    if isinstance(exc, ChainError):
        return False
    if isinstance(exc, (Web3RPCError, ContractLogicError)):
        return True
    return isinstance(exc, ValueError) and bool(exc.args) and isinstance(exc.args[0], dict)  # older web3


def _data_hex(data: bytes | str) -> str:
    if isinstance(data, (bytes, bytearray)):
        return "0x" + bytes(data).hex()
    text = str(data or "0x")
    return text if text.startswith("0x") else "0x" + text


def _entry_call(entry: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"from": entry.sender, "data": entry.data, "value": entry.value}
    if entry.to:
        call["to"] = entry.to
    return call


def _unconfirmed(description: str, tx_hash: str, nonce: int, state: str, store: Any, entry: Any,
                 cause: BaseException | None) -> Exception:
    from protocol.errors import TransactionUnconfirmedError

    where = str(store.path(entry.scope, entry.key)) if store is not None and entry is not None else None
    what = ("it may have been broadcast" if state == "unknown" else "it is pending")
    again = ("run the same command again to follow it (it will not be sent twice)" if where
             else "look it up before sending again")
    because = f" ({_short(cause)})" if cause is not None else ""
    return TransactionUnconfirmedError(
        f"{description}: tx {tx_hash} (nonce {nonce}) was signed but its outcome is unknown{because}; {what}; "
        f"{again}",
        tx_hash=tx_hash, nonce=nonce, state=state, description=description, journal=where,
    )


def _wait_receipt(w3: Web3, tx_hash: str, timeout: float, description: str, nonce: int, store: Any,
                  entry: Any) -> Any:
    from web3.exceptions import TimeExhausted

    try:
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.1)
    except TimeExhausted as exc:
        error = _unconfirmed(description, tx_hash, nonce, "pending", store, entry, None)
        error.args = (f"{error} (no receipt within {timeout:g}s)",)
        raise error from exc
    except Exception as exc:
        if _node_answered(exc):
            raise
        raise _unconfirmed(description, tx_hash, nonce, "pending", store, entry, exc) from exc


def _follow_entry(w3: Web3, store: Any, entry: Any, receipt_timeout: float) -> Any | None:
    """The receipt of a journaled transaction (sending its same bytes again if the node forgot it), or None
    when its nonce was used by another transaction, so it can never be mined (the entry is cleared)."""
    from web3.exceptions import TransactionNotFound

    receipt = _receipt_or_none(w3, entry.tx_hash)
    if receipt is None:
        try:
            known = w3.eth.get_transaction(entry.tx_hash) is not None
        except TransactionNotFound:
            known = False
        if not known:
            if int(w3.eth.get_transaction_count(entry.sender, "latest")) > entry.nonce:
                receipt = _receipt_or_none(w3, entry.tx_hash)  # mined between the two reads?
                if receipt is None:
                    store.clear(entry)
                    return None
            else:
                try:
                    w3.eth.send_raw_transaction(entry.raw)
                except Exception as exc:
                    if not _node_answered(exc):
                        raise _unconfirmed(entry.description, entry.tx_hash, entry.nonce, "unknown", store, entry,
                                           exc) from exc
                    if broadcast_refusal(exc) is None:
                        raise ChainError(
                            f"{entry.description}: the earlier transaction {entry.tx_hash} (nonce {entry.nonce}) "
                            f"is not on the network and the node refuses it again: {_short(exc)}; to send a fresh "
                            "one instead, ask for a new transaction (CLI `--new`, SDK `allow_duplicate=True`)"
                        ) from exc
        if receipt is None:
            receipt = _wait_receipt(w3, entry.tx_hash, receipt_timeout, entry.description, entry.nonce, store, entry)
    store.clear(entry)
    return receipt


def _receipt_or_none(w3: Web3, tx_hash: str) -> Any | None:
    from web3.exceptions import TransactionNotFound

    try:
        return w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return None


def checked_receipt(w3: Web3, receipt: Any, description: str, call: dict[str, Any]) -> Any:
    """`receipt`, or `TransactionRevertedError` with the replayed reason when it failed."""
    from protocol.errors import TransactionRevertedError

    if receipt["status"] != 1:
        tx_hash = receipt["transactionHash"]
        tx_hash = tx_hash.to_0x_hex() if hasattr(tx_hash, "to_0x_hex") else str(tx_hash)
        reason = replay_reason(w3, call, receipt["blockNumber"])
        raise TransactionRevertedError(
            f"{description} reverted in tx {tx_hash}: {reason or 'no reason given'}",
            reason=reason,
            tx_hash=tx_hash,
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
