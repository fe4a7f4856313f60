"""Publishing a task spec where workers fetch it, before its job is posted.

A job names its spec by hash and says where to fetch it (`spec_uri`, the base URL of a store: a worker
GETs `<spec_uri>/<64 hex>`). Workers with the shipped configuration (examples/worker.toml) fetch only
over http(s), so a spec in a local directory must also be served: `tessera store serve DIR`, or any
static web server over the same flat directory. `publish_spec` uploads the spec (and the local inputs
it names) to the store and, given the store's public URL, checks that a worker can fetch it from there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from protocol.errors import ArtifactError, HashMismatchError, SpecError

LOCAL_CHAIN_ID = 31337


class SpecUriWarning(UserWarning):
    """A job is posted with a spec URI that workers with the shipped configuration refuse."""


class PublishedSpec(BaseModel):
    """Where a spec was stored and the `spec_uri` to post it with."""

    model_config = ConfigDict(frozen=True)

    spec_hash: str
    spec_uri: str
    store_uri: str
    uploaded: list[str]  # hashes written to the store: the spec first, then copied inputs


def _is_local_uri(uri: str) -> bool:
    return uri.startswith("file://") or "://" not in uri


def upload_spec(spec: Any, store: Any) -> list[str]:
    """Put the spec's canonical bytes into `store` and copy in the inputs it references from local stores.

    Returns the hashes copied. A referenced artifact that is neither in `store` nor in any local store
    its hints name is left to its remote hints (http, builtin://); a local hint that is missing the
    artifact is an error, because the submitter clearly meant to provide it.
    """
    from protocol.artifacts import open_store

    stored = store.put(spec.canonical_bytes())
    if stored != spec.spec_hash():
        raise HashMismatchError(f"store returned {stored} for the spec, expected its hash {spec.spec_hash()}")
    copied = [stored]
    for field in ("dataset", "init_weights", "adapter", "inputs"):
        ref = getattr(spec, field, None)
        if ref is None or store.has(ref.hash):
            continue
        local = [uri for uri in ref.uris if _is_local_uri(uri)]
        for uri in local:
            source = open_store(uri)
            if source.has(ref.hash):
                store.put(source.get(ref.hash))  # get() checks the hash
                copied.append(ref.hash)
                break
        else:
            if local and not any(not _is_local_uri(uri) for uri in ref.uris):
                raise ArtifactError(f"spec {field} {ref.hash} is not in {store.uri} nor in its local hints {local}")
    return copied


def spec_uri_warning(spec_uri: str) -> str | None:
    """Why workers with the shipped configuration will not fetch from `spec_uri`, or None."""
    from protocol.screening import SHIPPED_POLICY, scheme_problem, uri_scheme

    if scheme_problem(spec_uri, SHIPPED_POLICY.spec_uri_schemes) is None:
        return None
    try:
        what = f"uses scheme {uri_scheme(spec_uri)!r}"
    except ArtifactError as exc:
        what = f"is unusable ({exc})"
    return (f"spec URI {spec_uri} {what}, which workers with the shipped configuration refuse (examples/"
            f"worker.toml: spec_uri_schemes = {SHIPPED_POLICY.spec_uri_schemes}): serve the store over http(s), "
            "e.g. `tessera store serve DIR`, and post its public URL (`job submit --store-url`, "
            "`publish_spec(public_url=...)`)")


def publish_spec(spec: Any, store: Any = ".tessera/store", public_url: str | None = None, *, check: bool = True,
                 timeout: float = 10.0) -> PublishedSpec:
    """Upload `spec` (a TaskSpec) and its local inputs to `store` (a directory, URI or ArtifactStore);
    return the `spec_uri` to post it with.

    `public_url` is the http(s) base URL that serves `store` (`tessera store serve DIR`, a reverse
    proxy, any static server): it becomes the spec URI. With `check`, the spec is fetched back from it
    the way a worker does (scheme, size limit, hash), so a URL that does not serve the store is an
    ArtifactError now rather than a job left Open. Without `public_url` the spec URI is the store's
    own URI (`file://…` for a directory), which only workers on this host that allow `file` can read.
    """
    from protocol.artifacts import ArtifactStore, open_store
    from protocol.screening import fetch_spec, uri_scheme

    target = store if isinstance(store, ArtifactStore) else open_store(str(store))
    uploaded = upload_spec(spec, target)
    spec_uri = target.uri
    if public_url is not None:
        if uri_scheme(public_url) not in ("http", "https"):
            raise ArtifactError(f"public store URL must be http(s), not {public_url!r}")
        spec_uri = public_url.rstrip("/")
        if check:
            try:
                fetch_spec(spec_uri, spec.spec_hash(), schemes=("https", "http"), timeout=timeout)
            except (ArtifactError, SpecError, HashMismatchError) as exc:
                raise ArtifactError(f"the spec was stored in {target.uri} but cannot be fetched back from "
                                    f"{spec_uri}: {exc} (does that URL serve this store?)") from None
    return PublishedSpec(spec_hash=spec.spec_hash(), spec_uri=spec_uri, store_uri=target.uri, uploaded=uploaded)
