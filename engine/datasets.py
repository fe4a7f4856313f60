"""Datasets shipped inside the package, and fetching any dataset by content hash.

Built-in datasets are plain package files (no torch needed to read their bytes or hash them), so
a submitter can reference them by hash and a worker anywhere can fetch them offline through the
URI hint `builtin://<name>`. Every fetch is checked against the hash, whatever the source.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from protocol.artifacts import DEFAULT_MAX_BYTES, ArtifactStore, normalize_hash, open_store
from protocol.errors import ArtifactError, HashMismatchError
from protocol.hashing import sha256_hex
from protocol.spec import ArtifactRef

BUILTIN_SCHEME = "builtin://"
BUILTIN_DATASETS = ("digits", "tinytext")


@lru_cache(maxsize=None)
def builtin_dataset_bytes(name: str) -> bytes:
    """The exact bytes of built-in dataset `name` (digits, tinytext)."""
    if name not in BUILTIN_DATASETS:
        raise ArtifactError(f"unknown built-in dataset {name!r} (known: {', '.join(BUILTIN_DATASETS)})")
    try:
        return resources.files("engine.data").joinpath(f"{name}.safetensors").read_bytes()
    except OSError as exc:
        raise ArtifactError(f"built-in dataset {name} is missing from the package: {exc}") from None


def builtin_dataset_hash(name: str) -> str:
    """0x sha256 of built-in dataset `name`."""
    return sha256_hex(builtin_dataset_bytes(name))


def builtin_dataset_ref(name: str) -> ArtifactRef:
    """A spec reference to built-in dataset `name`, with its `builtin://` hint."""
    return ArtifactRef(hash=builtin_dataset_hash(name), uris=[BUILTIN_SCHEME + name])


def put_builtin_datasets(store: ArtifactStore) -> dict[str, str]:
    """Copy every built-in dataset into `store`; return name → hash."""
    return {name: store.put(builtin_dataset_bytes(name)) for name in BUILTIN_DATASETS}


def fetch_artifact(ref: ArtifactRef, store: ArtifactStore | None, max_bytes: int = DEFAULT_MAX_BYTES,
                   what: str = "artifact") -> bytes:  # fmt: skip
    """Bytes of `ref`: from `store` when it has them, else from the ref's hints, always verified.

    Bytes found through a hint are also put into a writable `store`, so the store a worker commits
    as `artifact_uri` holds everything a verifier needs to replay.
    """
    digest = normalize_hash(ref.hash)
    problems: list[str] = []
    if store is not None:
        try:
            if store.has(digest):
                return store.get(digest, max_bytes=max_bytes)
        except HashMismatchError:
            raise
        except ArtifactError as exc:
            problems.append(f"{store.uri}: {exc}")
    for hint in ref.uris:
        try:
            if hint.startswith(BUILTIN_SCHEME):
                data = builtin_dataset_bytes(hint[len(BUILTIN_SCHEME):])
                if len(data) > max_bytes:
                    raise ArtifactError(f"{len(data)} bytes, over the limit of {max_bytes}")
                if sha256_hex(data) != digest:
                    raise HashMismatchError(f"{what} {hint} does not hash to {digest}")
            else:
                data = open_store(hint, max_bytes=max_bytes, create=False).get(digest, max_bytes=max_bytes)
        except HashMismatchError:
            raise
        except ArtifactError as exc:
            problems.append(f"{hint}: {exc}")
            continue
        if store is not None and getattr(store, "writable", False):
            store.put(data)
        return data
    where = "; ".join(problems) or "no store and no URI hints"
    raise ArtifactError(f"{what} {digest} could not be fetched ({where})")
