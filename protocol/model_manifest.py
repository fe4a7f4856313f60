"""OpenSSF model-signing manifests: the in-toto statement that `model_signing` (v1.x) signs, for a file or a
directory, so that the model hash Tessera registers is a digest their tools check.

The statement (`_type` `https://in-toto.io/Statement/v1`, `predicateType`
`https://model_signing/signature/v1.0`) lists every file as a resource `{name, algorithm: "sha256",
digest}`: `name` is the path relative to the model directory (`/`-separated; `.` when the model is one
file), `digest` the sha256 of the file's bytes, so a weights file's resource digest *is* its Tessera model
hash. Resources are sorted by path components; the one subject is the model's name (the directory or file
name) with, as its sha256, the hash of all resource digests (raw bytes) concatenated in that order. The
predicate's `serialization` is `{method: "files", hash_type: "sha256", allow_symlinks: false, ignore_paths}`
(git metadata by default, and the manifest itself when written inside the directory). For a one-file model
the subject digest is the sha256 of the file's digest, not the file's digest: the model hash is the
resource's.

What is and is not done here: this module writes and checks the statement, unsigned. Signing it (a DSSE
envelope in a Sigstore bundle, with a key, a certificate or Sigstore's keyless flow) is `model_signing`'s
job; `read_statement` also accepts such a bundle and checks the files against the statement inside it,
but it does **not** check the signature (use `model_signing verify` for that).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import ArtifactError, HashMismatchError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")  # what model_signing ignores by default
MAX_MANIFEST_BYTES = 16 * 1024**2
MAX_FILES = 100_000
_CHUNK = 1 << 20

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=4096)]
    algorithm: Literal["sha256"]
    digest: Hex64


class Serialization(BaseModel):
    model_config = ConfigDict(extra="allow")

    method: Literal["files"]
    hash_type: Literal["sha256"]
    allow_symlinks: bool = False
    ignore_paths: list[str] | None = None


class Predicate(BaseModel):
    model_config = ConfigDict(extra="allow")  # v1.0 verifiers ignore other predicate fields

    serialization: Serialization
    resources: Annotated[list[Resource], Field(max_length=MAX_FILES)]


class Subject(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    digest: dict[str, Hex64]


class Statement(BaseModel):
    """The in-toto statement, validated; `root_digest()` recomputes the subject's sha256."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: Annotated[list[Subject], Field(min_length=1, max_length=1)]
    predicateType: Literal["https://model_signing/signature/v1.0"]  # noqa: N815 - the in-toto name
    predicate: Predicate

    def digests(self) -> dict[str, str]:
        """File path -> sha256 hex, as listed."""
        return {r.name: r.digest for r in self.predicate.resources}

    def root_digest(self) -> str:
        return _root_digest([(r.name, r.digest) for r in self.predicate.resources])

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _order(name: str) -> tuple[str, ...]:
    """model_signing sorts resources as paths (component by component), not as strings."""
    return PurePosixPath(name).parts


def _root_digest(items: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for _, hex_digest in sorted(items, key=lambda item: _order(item[0])):
        digest.update(bytes.fromhex(hex_digest))
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ignored(relative: PurePosixPath, ignore: set[PurePosixPath]) -> bool:
    return any(relative == path or path in relative.parents for path in ignore)


def _ignore_path(text: str) -> PurePosixPath:
    """One ignore path as a relative path inside the model. An empty one, `.` or `/` would cover the whole
    model (a manifest listing nothing would then match any directory), and `..` would point outside it:
    ArtifactError for those (from the command line or from a stranger's manifest alike)."""
    parts = text.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ArtifactError(f"ignore path {text[:100]!r} must name a file or folder inside the model (no empty, "
                            "'.' or '..' parts)")
    return PurePosixPath(*parts)


def hash_files(path: Path, ignore: tuple[str, ...] = ()) -> tuple[dict[str, str], list[str]]:
    """(path relative to the model -> sha256 hex, the ignore list as recorded) for a file or a directory.

    A symbolic link anywhere is refused (model_signing's default, `allow_symlinks: false`)."""
    path = Path(path)
    ignore_set = {_ignore_path(p) for p in (*GIT_PATHS, *ignore)}
    if path.is_symlink():
        raise ArtifactError(f"{path} is a symbolic link; link-free models only (allow_symlinks is false)")
    if path.is_file():  # recorded like model_signing does, though nothing inside a file can be ignored
        return {".": _sha256_file(path)}, sorted(str(p) for p in ignore_set)
    if not path.is_dir():
        raise ArtifactError(f"{path} is neither a file nor a directory")
    files: dict[str, str] = {}
    seen = 0
    folders = [(path, PurePosixPath())]
    while folders:  # one folder at a time, ignored ones never entered: a bound fires before a huge tree is listed
        folder, at = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                relative = at / entry.name
                if _ignored(relative, ignore_set):
                    continue
                seen += 1
                if seen > 2 * MAX_FILES:
                    raise ArtifactError(f"{path} holds more than {MAX_FILES} files and folders")
                if entry.is_symlink():
                    raise ArtifactError(f"{relative} in {path} is a symbolic link; link-free models only")
                if entry.is_dir(follow_symlinks=False):
                    folders.append((Path(entry.path), relative))
                elif entry.is_file(follow_symlinks=False):
                    if len(files) >= MAX_FILES:
                        raise ArtifactError(f"{path} holds more than {MAX_FILES} files")
                    files[str(relative)] = _sha256_file(Path(entry.path))
                else:  # a FIFO, socket or device: not model content
                    raise ArtifactError(f"{relative} in {path} is not a regular file (a FIFO, socket or device)")
    return files, sorted(str(p) for p in ignore_set)


def build_manifest(path: str | Path, *, ignore: tuple[str, ...] = (), name: str | None = None) -> Statement:
    """The model-signing statement for the file or directory `path` (what `model_signing` would sign)."""
    path = Path(path)
    files, ignored = hash_files(path, ignore)
    resources = [Resource(name=n, algorithm="sha256", digest=d) for n, d in sorted(files.items(), key=lambda i: _order(i[0]))]
    serialization = Serialization(method="files", hash_type="sha256", allow_symlinks=False, ignore_paths=ignored or None)
    return Statement(
        _type=STATEMENT_TYPE,
        subject=[Subject(name=name or path.resolve().name, digest={"sha256": _root_digest(list(files.items()))})],
        predicateType=PREDICATE_TYPE,
        predicate=Predicate(serialization=serialization, resources=resources),
    )


def read_statement(data: bytes) -> tuple[Statement, bool]:
    """Parse a manifest: a bare statement, or a Sigstore bundle / DSSE envelope whose in-toto payload is one.
    Returns (statement, from_a_signature). The signature is NOT checked here (see the module docstring)."""
    from protocol.spec import first_error, load_untrusted_json

    if len(data) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"manifest is over the limit of {MAX_MANIFEST_BYTES} bytes")
    document = load_untrusted_json(data, "manifest", ArtifactError)
    signed = False
    if isinstance(document, dict) and ("dsseEnvelope" in document or "payloadType" in document):
        envelope = document.get("dsseEnvelope", document)
        if not isinstance(envelope, dict) or envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
            raise ArtifactError(f"manifest: the envelope's payload is not {IN_TOTO_PAYLOAD_TYPE}")
        try:
            payload = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        except ValueError:
            raise ArtifactError("manifest: the envelope's payload is not base64") from None
        document = load_untrusted_json(payload, "manifest payload", ArtifactError)
        signed = True
    try:
        statement = Statement.model_validate(document)
    except ValidationError as exc:
        raise ArtifactError(f"manifest is not a model-signing v1.0 statement: {first_error(exc)}") from None
    names = [r.name for r in statement.predicate.resources]
    if len(set(names)) != len(names):
        raise ArtifactError("manifest lists a file twice")
    listed = statement.subject[0].digest.get("sha256")
    if listed != statement.root_digest():
        raise ArtifactError(f"manifest is inconsistent: its subject digest is {listed}, its resources hash to "
                            f"{statement.root_digest()}")
    return statement, signed


def verify_manifest(path: str | Path, statement: Statement) -> dict[str, str]:
    """Check the file or directory `path` against `statement`: every listed file present with its digest, and
    no other file (outside the statement's `ignore_paths`). Returns path -> sha256 hex; HashMismatchError
    naming every changed, missing or extra file otherwise."""
    ignore = tuple(statement.predicate.serialization.ignore_paths or ())
    actual, _ = hash_files(Path(path), ignore)
    expected = statement.digests()
    problems = [f"{name} changed (sha256 {actual[name]}, manifest {digest})"
                for name, digest in expected.items() if name in actual and actual[name] != digest]
    problems += [f"{name} is missing" for name in expected if name not in actual]
    problems += [f"{name} is not in the manifest" for name in actual if name not in expected]
    if problems:
        raise HashMismatchError(f"{path} does not match the manifest: {'; '.join(sorted(problems))}")
    return actual


def model_hash_in(statement: Statement, name: str | None = None) -> str | None:
    """The Tessera model hash (0x sha256) of file `name` in the statement; by default the one file of a
    one-file manifest, else `model.safetensors` (a save_pretrained directory). None when not listed."""
    digests = statement.digests()
    if name is None:
        name = next(iter(digests)) if len(digests) == 1 else "model.safetensors"
    return "0x" + digests[name] if name in digests else None


def write_manifest(statement: Statement, out: str | Path) -> None:
    Path(out).write_text(json.dumps(statement.to_json(), indent=2) + "\n")
