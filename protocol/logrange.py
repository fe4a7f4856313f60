"""How many blocks one eth_getLogs call may span, and how to tell a provider's "range too large" refusal.

Public providers cap eth_getLogs by block range or result size and say so in their own words; the
readers (`TesseraClient.get_logs`, the daemons' `EventCursor`) halve their range on such a refusal
and keep the smaller one. Any other error is not a range problem and is raised as it is.
"""

from __future__ import annotations

import os
import re

from protocol.errors import ConfigError, RpcUnreachableError

LOG_RANGE = 5_000  # blocks per eth_getLogs call for SDK/CLI reads
ENV_LOG_RANGE = "TESSERA_LOG_RANGE"

# Alchemy, Infura, QuickNode, geth/Erigon, anvil's own cap, and protocol.chain's response-size cap.
_RANGE_REFUSAL = re.compile(
    r"range|limit exceeded|exceeds? (the )?(max|limit)|too (many|large|big)|more than \d+ (results|logs|blocks)"
    r"|response size|response exceeds|-32005",
    re.IGNORECASE,
)


def is_range_refusal(exc: BaseException) -> bool:
    """True when `exc` is a provider refusing an eth_getLogs range or result size (retry a smaller range)."""
    return not isinstance(exc, RpcUnreachableError) and bool(_RANGE_REFUSAL.search(str(exc)))


def log_range_setting(value: int | str | None = None) -> int:
    """Blocks per eth_getLogs call: `value`, else `TESSERA_LOG_RANGE`, else `LOG_RANGE`; `ConfigError` unless >= 1."""
    source = "log range"
    if value is None:
        value = os.environ.get(ENV_LOG_RANGE) or LOG_RANGE
        source = ENV_LOG_RANGE
    try:
        blocks = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{source} must be a whole number of blocks, got {value!r}") from None
    if blocks < 1:
        raise ConfigError(f"{source} must be at least 1 block, got {blocks}")
    return blocks
