"""Regenerate tests/vectors/model_signing.json with the OpenSSF `model_signing` package itself:
`pip install --target /tmp/mslib model-signing==1.1.1 pyopenssl` then
`PYTHONPATH=/tmp/mslib:. python tests/vectors/generate_model_signing.py`.

`model_signing` is not a Tessera dependency (it pulls in Sigstore's client and ~20 packages); these
vectors are what ties `protocol.model_manifest` to it: for a fixed model directory and a fixed one-file
model, the manifest `model_signing` computes (resources in its order and its subject digest), and a
bundle it signed with a throwaway P-256 key, which `model_signing` verified before it was written.
Tessera's tests check that `build_manifest` gives the same statement and that `verify_manifest` accepts
the directory against the bundle (and names a file changed after signing).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

# the model: paths chosen so that path order and string order differ ("a/x" < "a-b/z" as paths only)
FILES = {"model.safetensors": "weights", "config.json": '{"a":1}', "sub/deep.bin": "x", "a-b/z": "y", "a/x": "q",
         "README.md": "readme", ".git/HEAD": "git (ignored)"}


def build() -> dict:
    import model_signing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from google.protobuf import json_format
    from model_signing import hashing
    from model_signing._signing import signing as internal

    def statement(path: Path) -> dict:
        return json.loads(json_format.MessageToJson(internal.Payload(hashing.Config().hash(path)).statement.pb))

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        for name, text in FILES.items():
            (model / name).parent.mkdir(parents=True, exist_ok=True)
            (model / name).write_text(text)
        key = ec.generate_private_key(ec.SECP256R1())
        (Path(tmp) / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        (Path(tmp) / "pub.pem").write_bytes(public)
        signature = Path(tmp) / "model.sig"
        model_signing.signing.Config().use_elliptic_key_signer(private_key=Path(tmp) / "key.pem").sign(model, signature)
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=Path(tmp) / "pub.pem").verify(
            model, signature)
        return {
            "generated_by": f"model_signing {model_signing.__version__}",
            "files": FILES,
            "directory_statement": statement(model),
            "file_statement": statement(model / "model.safetensors"),
            "bundle": json.loads(signature.read_text()),
            "public_key_pem": public.decode(),
        }


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    out = Path(__file__).with_name("model_signing.json")
    out.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
