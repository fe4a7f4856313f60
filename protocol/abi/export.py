"""Regenerate `protocol/abi/<Name>.json` from ape's compile output (`python -m protocol.abi.export`).

Run `ape compile` first (`make abi` does both). Reads `.build/__local__.json` (an ethpm manifest) and
writes one sorted, stable JSON file per contract so the drift test can compare byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from protocol.abi import ABI_DIR, CONTRACT_NAMES
from protocol.errors import DeploymentError

DEFAULT_MANIFEST = Path(".build/__local__.json")


def _hex(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("bytecode", "")
    text = str(value or "")
    return text if text.startswith("0x") else "0x" + text


def _compiler_of(manifest: dict[str, Any], name: str) -> str:
    for compiler in manifest.get("compilers") or []:
        if name in (compiler.get("contractTypes") or []):
            return f"{compiler.get('name', 'vyper')} {compiler.get('version', '?')}".strip()
    return "unknown"


def artifacts_from_manifest(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map contract name -> shipped artifact dict, for every Tessera contract in `manifest`."""
    types = manifest.get("contractTypes") or {}
    missing = [name for name in CONTRACT_NAMES if name not in types]
    if missing:
        raise DeploymentError(f"compile output lacks contracts {', '.join(missing)}; did `ape compile` succeed?")
    result = {}
    for name in CONTRACT_NAMES:
        ctype = types[name]
        bytecode, runtime = _hex(ctype.get("deploymentBytecode")), _hex(ctype.get("runtimeBytecode"))
        if runtime[2:] not in bytecode[2:]:
            # Venom contracts (`experimental-codegen`): vyper 0.4.3 asked for both outputs at once emits a
            # runtime unlike the one its deployment bytecode installs. Ship none rather than a wrong one:
            # `protocol.deploy.verify_code` then checks the code against the deployment bytecode.
            runtime = "0x"
        result[name] = {
            "abi": ctype.get("abi") or [],
            "bytecode": bytecode,
            "runtime_bytecode": runtime,
            "compiler": _compiler_of(manifest, name),
        }
    return result


def render(artifact: dict[str, Any]) -> str:
    """The exact text written to disk (stable key order, trailing newline)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def export(manifest_path: Path = DEFAULT_MANIFEST, out_dir: Path = ABI_DIR) -> list[Path]:
    """Write every artifact from `manifest_path` into `out_dir`; return the written paths."""
    if not manifest_path.is_file():
        raise DeploymentError(f"{manifest_path} not found: run `ape compile` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf8"))
    written = []
    for name, artifact in artifacts_from_manifest(manifest).items():
        path = out_dir / f"{name}.json"
        path.write_text(render(artifact), encoding="utf8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--out", type=Path, default=ABI_DIR)
    args = parser.parse_args(argv)
    try:
        for path in export(args.manifest, args.out):
            print(f"wrote {path}")
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
