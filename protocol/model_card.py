"""Model cards: the JSON document a registry record's `metadata_uri` points at.

Its top-level keys follow the Hugging Face model-card metadata names (`base_model`, `base_model_relation`,
`license`, `datasets`, `tags`) so that tools reading those read ours; what they have no name for (our
relation name, the parents' hashes, the job, the spec) is under `tessera`. Hashes stand where Hugging Face
puts repository ids.

A card written by `write_model_card` lives in an artifact store under its own hash, and the URI recorded
on chain is `<store URI>/<64 hex>` (where both store kinds keep it): such a URI **pins** the card, and a
reader checks the bytes against it. Any other URI is read unpinned. Either way a read is limited in size
and time and the document is validated; extra keys (other tools' metadata) are kept, not interpreted.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import ArtifactError

MAX_CARD_BYTES = 64 * 1024  # a card is a few hundred bytes; anything near this is not one
CARD_TIMEOUT_S = 10.0
HASH_PATTERN = r"^0x[0-9a-f]{64}$"
# Hugging Face's `base_model_relation` values, by our relation names (distill and other have none)
HF_RELATIONS = {"adapter": "adapter", "finetune": "finetune", "merge": "merge", "quantize": "quantized"}
_PINNED = re.compile(r"^(?P<base>.+)/(?P<digest>[0-9a-fA-F]{64})$")

Hash = Annotated[str, Field(pattern=HASH_PATTERN)]


class CardParent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_hash: Hash
    relation: Literal["finetune", "adapter", "merge", "quantize", "distill", "other"]


class TesseraSection(BaseModel):
    """What the card says about the model in Tessera's own terms (the record on chain is the authority)."""

    model_config = ConfigDict(extra="forbid")

    model_hash: Hash
    relation: Literal["finetune", "adapter", "merge", "quantize", "distill", "other"] | None = None
    parents: Annotated[list[CardParent], Field(max_length=8)] = []
    job_id: Annotated[int, Field(ge=0)] = 0
    spec_hash: Hash | None = None


class ModelCard(BaseModel):
    """The card document; `extra="allow"` so other tools' metadata survives a read."""

    model_config = ConfigDict(extra="allow")

    base_model: Hash | Annotated[list[Hash], Field(max_length=8)] | None = None
    base_model_relation: Literal["adapter", "finetune", "merge", "quantized"] | None = None
    license: Annotated[str, Field(max_length=64)] | None = None
    datasets: Annotated[list[Hash], Field(max_length=8)] = []
    tags: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)] = []
    tessera: TesseraSection

    @property
    def base_models(self) -> list[str]:
        if self.base_model is None:
            return []
        return [self.base_model] if isinstance(self.base_model, str) else list(self.base_model)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, null fields left out): one card, one hash."""
        from protocol.spec import canonical_json

        return canonical_json(self.model_dump(mode="json", exclude_none=True))


def build_model_card(model_hash: str, parents: list[tuple[str, str]], datasets: list[str], *, license: str = "",
                     job_id: int = 0, spec_hash: str | None = None) -> ModelCard:
    """The card for a model with `parents` ((hash, relation name), the base first) and `datasets`.

    `base_model` names the parents; `base_model_relation` is the first parent's relation in Hugging Face's
    words where it has one (a card has one relation for all its base models)."""
    relation = parents[0][1] if parents else None
    bases = [h.lower() for h, _ in parents]
    zero = "0x" + "00" * 32
    return ModelCard(
        base_model=(bases[0] if len(bases) == 1 else bases) or None,
        base_model_relation=HF_RELATIONS.get(relation) if relation else None,
        license=license or None,
        datasets=[d.lower() for d in datasets],
        tags=["tessera"] + ([relation] if relation else []),
        tessera=TesseraSection(model_hash=model_hash.lower(), relation=relation,
                               parents=[CardParent(model_hash=h.lower(), relation=r) for h, r in parents],
                               job_id=job_id, spec_hash=spec_hash.lower() if spec_hash and spec_hash != zero else None),
    )


def write_model_card(store: Any, card: ModelCard) -> str:
    """Put `card` into `store` (an artifact store or its URI); return the pinned URI `<store URI>/<64 hex>`."""
    from protocol.artifacts import open_store

    target = open_store(store) if isinstance(store, (str, Path)) else store
    digest = target.put(card.to_bytes())
    return f"{target.uri.rstrip('/')}/{digest[2:]}"


def pinned_hash(uri: str) -> str | None:
    """The card hash a URI pins (its last path segment is 64 hex digits), or None."""
    match = _PINNED.match(uri.split("#", 1)[0].split("?", 1)[0])
    return "0x" + match["digest"].lower() if match else None


def _read_unpinned(uri: str, max_bytes: int, timeout: float) -> bytes:
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        deadline = time.monotonic() + timeout
        try:
            with urllib.request.urlopen(uri, timeout=timeout) as response:  # noqa: S310 - scheme checked above
                data = b""
                while len(data) <= max_bytes:  # a slow drip is cut at the deadline, not per read
                    if time.monotonic() > deadline:
                        raise ArtifactError(f"model card {uri} took longer than {timeout:g} s to fetch")
                    chunk = response.read(min(8192, max_bytes + 1 - len(data)))
                    if not chunk:
                        break
                    data += chunk
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot fetch model card {uri}: {getattr(exc, 'reason', None) or exc}") from None
    elif scheme in ("file", ""):
        if scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ArtifactError(f"file URI with a remote host is not supported: {uri!r}")
        path = Path(urllib.parse.unquote(parsed.path) if scheme else uri)
        if not path.is_file():  # a FIFO or device named by a stranger's record would block or never end
            raise ArtifactError(f"model card {uri} is not a regular file")
        try:
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ArtifactError(f"cannot read model card {uri}: {exc.strerror or exc}") from None
    else:
        raise ArtifactError(f"unsupported model card URI scheme {scheme!r} in {uri!r}")
    if len(data) > max_bytes:
        raise ArtifactError(f"model card {uri} is over the limit of {max_bytes} bytes")
    return data


def read_model_card(uri: str, *, model_hash: str | None = None, max_bytes: int = MAX_CARD_BYTES,
                    timeout: float = CARD_TIMEOUT_S) -> tuple[ModelCard, bool]:
    """Fetch and validate the card at `uri`; returns (card, pinned).

    A pinned URI's bytes must hash to the pinned hash (HashMismatchError otherwise). With `model_hash`, the
    card must describe that model. Oversized, unreachable, non-JSON or invalid cards raise ArtifactError."""
    from protocol.artifacts import check_uri_text, open_store

    check_uri_text(uri, "model card URI")
    digest = pinned_hash(uri)
    if digest is not None:
        base = _PINNED.match(uri.split("#", 1)[0].split("?", 1)[0])["base"]  # type: ignore[index]
        data = open_store(base, timeout=timeout, max_bytes=max_bytes, create=False).get(digest, max_bytes=max_bytes)
    else:
        data = _read_unpinned(uri, max_bytes, timeout)
    return parse_model_card(bytes(data), uri, model_hash=model_hash), digest is not None


def parse_model_card(data: bytes, uri: str = "", *, model_hash: str | None = None) -> ModelCard:
    """Validate card bytes (from `uri`, for messages): one ArtifactError for anything that is not a card (of
    `model_hash`, when given)."""
    from protocol.spec import first_error, load_untrusted_json

    what = f"model card {uri}".rstrip()
    if len(data) > MAX_CARD_BYTES:
        raise ArtifactError(f"{what} is over the limit of {MAX_CARD_BYTES} bytes")
    document = load_untrusted_json(data, what, ArtifactError)
    try:
        card = ModelCard.model_validate(document)
    except ValidationError as exc:
        raise ArtifactError(f"{what} is not valid: {first_error(exc)}") from None
    if model_hash is not None and card.tessera.model_hash != model_hash.lower():
        raise ArtifactError(f"{what} describes model {card.tessera.model_hash}, not {model_hash.lower()}")
    return card
