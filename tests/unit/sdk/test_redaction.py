"""RPC URLs are shown without the parts that hold API keys (path, query, userinfo), in any text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.redaction import redact, redact_url

KEYS = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789-_", min_size=8, max_size=40)
HOSTS = st.sampled_from(["eth-sepolia.g.alchemy.com", "127.0.0.1", "rpc.example.org", "[::1]"])


def test_shapes() -> None:
    assert redact_url("https://eth-sepolia.g.alchemy.com/v2/MY-ALCHEMY-KEY-123") == "https://eth-sepolia.g.alchemy.com/***"
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert redact_url("http://127.0.0.1:8545/") == "http://127.0.0.1:8545"
    assert redact_url("https://user:pw@node.example:8443") == "https://node.example:8443/***"
    assert redact_url("not a url") == "***"


@given(host=HOSTS, key=KEYS, where=st.sampled_from(["path", "query", "userinfo"]), port=st.integers(1, 65535))
def test_a_key_never_survives(host: str, key: str, where: str, port: int) -> None:
    url = {
        "path": f"https://{host}:{port}/v2/{key}",
        "query": f"https://{host}:{port}/?apikey={key}",
        "userinfo": f"https://me:{key}@{host}:{port}",
    }[where]
    shown = redact_url(url)
    assert key not in shown and shown.startswith(f"https://{host}:{port}")
    # Transport libraries echo the path and query on their own ("Max retries exceeded with url: /v2/KEY").
    message = f"HTTPSConnectionPool(host='{host}', port={port}): Max retries exceeded with url: /v2/{key} ({url})"
    assert key not in redact(message, url)
