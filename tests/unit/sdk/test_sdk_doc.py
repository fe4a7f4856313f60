"""docs/sdk.md's first example runs as written and posts a job a worker with the shipped configuration
would take (rehearsal finding #11: the old example used a spec file that does not exist and a
`file://…#fragment` spec URI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from protocol.artifacts import LocalStore, serve_store
from protocol.screening import SHIPPED_POLICY, explain_open_job, fetch_spec

ROOT = Path(__file__).resolve().parents[3]
DOC_URL = "http://127.0.0.1:8080"  # the example's `tessera store serve` default
DOC_NETWORK = "ethereum:local:foundry"


def _first_python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), flags=re.S)
    assert blocks, "docs/sdk.md has no python example"
    return blocks[0]


def test_the_sdk_doc_example_posts_a_job_shipped_workers_take(anvil, deployment, deployments_dir, tmp_path,
                                                                 fresh_chain, client_of) -> None:
    code = _first_python_block()
    assert DOC_URL in code and DOC_NETWORK in code
    with serve_store(LocalStore(tmp_path / "store").root) as server:
        # the two places a reader's machine differs from this test's: the store's port and the RPC
        runnable = code.replace(DOC_URL, server.url).replace(DOC_NETWORK, anvil.rpc_url)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TESSERA_DEPLOYMENTS_DIR": str(deployments_dir)}
        done = subprocess.run([sys.executable, "-c", runnable], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        match = re.fullmatch(r"job (\d+) spec at (\S+)\n", done.stdout)
        assert match and match[2] == server.url, done.stdout
        client = client_of()
        view = client.job(int(match[1]))
        spec = fetch_spec(view.spec_uri, view.job.spec_hash, schemes=SHIPPED_POLICY.spec_uri_schemes, timeout=5)
        assert spec.name == "digits-mlp"
        assert explain_open_job(client, view.job_id, view).skip_reasons == []
