"""Keep RPC secrets out of everything Tessera prints.

Providers put API keys in the RPC URL: in the path (`https://eth-sepolia.g.alchemy.com/v2/KEY`), the
query (`?apikey=KEY`) or the userinfo (`https://user:KEY@host`). `redact_url` shows only the scheme,
host and port of a URL; `redact` removes the secret parts of every URL that `connect` registered from
any text (exception messages, log lines, `/healthz` reasons), because transport libraries echo the
path in their own messages ("Max retries exceeded with url: /v2/KEY").
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

MASK = "***"

_lock = threading.Lock()
_secrets: dict[str, str] = {}


def redact_url(url: str) -> str:
    """`scheme://host:port` plus `/***` when the URL had a path, query, fragment or userinfo to hide."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    hidden = bool(parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"))
    return f"{parts.scheme}://{netloc}" + (f"/{MASK}" if hidden else "")


def secret_parts(url: str) -> dict[str, str]:
    """The substrings of `url` that may hold a credential, each mapped to what replaces it."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url: MASK} if len(url) >= 4 else {}
    found: dict[str, str] = {}
    path = parts.path if parts.path.strip("/") else ""
    if path or parts.query or parts.fragment or parts.username or parts.password:
        found[url] = redact_url(url)
    if path:
        found[path + (f"?{parts.query}" if parts.query else "")] = f"/{MASK}"
        found[path] = f"/{MASK}"
    pieces = [parts.query, parts.fragment, parts.username or "", parts.password or ""]
    pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    # A key alone in a message is masked too; short segments (`v2`, `rpc`) are not keys.
    pieces += [segment for segment in path.split("/") if len(segment) >= 8]
    for piece in pieces:
        if piece:
            found.setdefault(piece, MASK)
    # Anything shorter than 4 characters is no key, and masking it would garble unrelated text.
    return {secret: shown for secret, shown in found.items() if len(secret) >= 4}


def register_url(url: str) -> None:
    """Remember `url`'s secret parts so that `redact` removes them from any text from now on."""
    parts = secret_parts(url)
    if parts:
        with _lock:
            _secrets.update(parts)


def redact(text: str, *urls: str) -> str:
    """`text` with the secret parts of `urls` and of every registered URL masked (longest first)."""
    with _lock:
        secrets = dict(_secrets)
    for url in urls:
        secrets.update(secret_parts(url))
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, secrets[secret])
    return text
