"""`job submit` publishes the spec where shipped workers fetch it; `job show` says why an Open job waits.

Rehearsal findings #2 (file:// default refused by the shipped worker config) and #25 (no signal that
workers skip a job), against anvil: the local session chain, and one whose chain id is Sepolia's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from engine.presets import digits_spec
from protocol.artifacts import LocalStore, open_store, serve_store
from protocol.errors import ArtifactError
from protocol.publishing import SpecUriWarning, publish_spec
from protocol.screening import SHIPPED_POLICY, fetch_spec

SEPOLIA = 11155111


def _spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "digits.json"
    path.write_bytes(digits_spec().canonical_bytes())
    return path


def _job_count(client_of: Any) -> int:
    return int(client_of().escrow.functions.job_count().call())


def test_shipped_policy_is_the_example_worker_config() -> None:
    from worker.runtime.config import WorkerConfig, load_config

    config = load_config(WorkerConfig, Path(__file__).resolve().parents[3] / "examples" / "worker.toml", environ={})
    for field in SHIPPED_POLICY.model_fields:
        assert getattr(config, field) == getattr(SHIPPED_POLICY, field), field


def test_submit_with_store_url_posts_an_http_spec_uri_a_shipped_worker_fetches(
    tessera, fresh_chain, tmp_path, client_of
) -> None:
    store_dir = tmp_path / "store"
    tessera("faucet", "100", account="TEST::1")
    with serve_store(LocalStore(store_dir).root) as server:
        public = server.url + "/"
        posted = tessera("job", "submit", str(_spec_file(tmp_path)), "--payment", "5", "--collateral", "10",
                         "--store", str(store_dir), "--store-url", public, "--json", account="TEST::1", json_out=True)
        assert posted["spec_uri"] == server.url
        view = client_of().job(posted["job_id"])
        assert view.spec_uri == server.url
        # exactly what a worker with examples/worker.toml does with it
        spec = fetch_spec(view.spec_uri, view.job.spec_hash, schemes=SHIPPED_POLICY.spec_uri_schemes, timeout=5)
        assert spec.spec_hash() == posted["spec_hash"]
        shown = tessera("job", "show", str(posted["job_id"]), "--json", json_out=True)
    assert shown["open"]["skip_reasons"] == [] and shown["open"]["open_for_s"] >= 0


def test_a_store_url_that_does_not_serve_the_store_posts_nothing(tessera, fresh_chain, tmp_path, client_of) -> None:
    tessera("faucet", "100", account="TEST::1")
    before = _job_count(client_of)
    with serve_store(LocalStore(tmp_path / "elsewhere").root) as server:
        result = tessera("job", "submit", str(_spec_file(tmp_path)), "--payment", "5", "--collateral", "10",
                         "--store", str(tmp_path / "store"), "--store-url", server.url, account="TEST::1", ok=False)
    assert result.exit_code == 1 and result.stderr.count("error:") == 1
    assert "cannot be fetched back from" in result.stderr and "not found" in result.stderr
    assert _job_count(client_of) == before


def test_file_uri_on_the_local_chain_warns_and_job_show_says_why_workers_skip(
    tessera, fresh_chain, tmp_path
) -> None:
    tessera("faucet", "100", account="TEST::1")
    posted = tessera("job", "submit", str(_spec_file(tmp_path)), "--payment", "0.5", "--collateral", "60",
                     "--store", str(tmp_path / "store"), account="TEST::1")
    assert "warning: spec URI file://" in posted.stderr and "spec_uri_schemes = ['https', 'http']" in posted.stderr
    job_id = int(next(line for line in posted.stdout.splitlines() if line.startswith("job_id:")).split()[1])
    shown = tessera("job", "show", str(job_id), "--json", json_out=True)
    reasons = shown["open"]["skip_reasons"]
    assert any("scheme 'file' not allowed" in r for r in reasons)
    assert "payment 0.5 tokens below min_payment 1 tokens" in reasons
    assert "collateral 60 tokens above max_collateral 50 tokens" in reasons
    human = tessera("job", "show", str(job_id))
    assert "open for " in human.stderr and "examples/worker.toml" in human.stderr
    assert "  - collateral 60 tokens above max_collateral 50 tokens" in human.stderr
    # a job that is no longer Open has no such section
    tessera("job", "cancel", str(job_id), account="TEST::1")
    assert tessera("job", "show", str(job_id), "--json", json_out=True)["open"] is None


@pytest.fixture(scope="module")
def sepolia_like(deployment: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second anvil reporting Sepolia's chain id, and a deployment record for it."""
    from protocol.chain import connect
    from protocol.devnet import start_anvil

    node = start_anvil()
    try:
        w3 = connect(node.rpc_url, timeout=30.0)
        w3.provider.make_request("anvil_setChainId", [SEPOLIA])
        assert w3.eth.chain_id == SEPOLIA
        record = json.loads(Path(deployment.path).read_text())
        record["chain_id"] = SEPOLIA
        path = tmp_path_factory.mktemp("sepolia") / f"{SEPOLIA}.json"
        path.write_text(json.dumps(record))
        yield node, w3, path
    finally:
        node.stop()


def test_off_the_local_chain_a_file_spec_uri_is_refused_before_anything_is_signed(
    tessera, sepolia_like, tmp_path
) -> None:
    node, _, path = sepolia_like
    store_dir = tmp_path / "store"
    # TEST::1 would be refused on this chain id; the URI error comes first, before any key is unlocked
    result = tessera("job", "submit", str(_spec_file(tmp_path)), "--payment", "5", "--collateral", "10",
                     "--store", str(store_dir), account="TEST::1", network=node.rpc_url, deployment_path=path,
                     ok=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: spec URI file://")
    assert "--store-url" in lines[0] and "--allow-file-uri" in lines[0] and f"chain id {SEPOLIA}" in lines[0]
    assert not store_dir.exists()  # nothing uploaded either


def test_sdk_publish_spec_and_post_job_warning(sepolia_like, tmp_path, test_keys) -> None:
    from eth_account import Account

    from protocol.client import TesseraClient
    from protocol.deploy import Deployment

    spec = digits_spec()
    store = LocalStore(tmp_path / "store")
    local = publish_spec(spec, store)
    assert local.spec_uri == store.uri and local.uploaded == [spec.spec_hash()]
    with serve_store(store.root) as server:
        published = publish_spec(spec, store, server.url + "/")
        assert published.spec_uri == server.url
    with serve_store(LocalStore(tmp_path / "other").root) as server:
        with pytest.raises(ArtifactError, match="cannot be fetched back"):
            publish_spec(spec, store, server.url)
    with pytest.raises(ArtifactError, match="must be http"):
        publish_spec(spec, store, "ftp://example.org/x")

    _, w3, path = sepolia_like
    client = TesseraClient(w3, Deployment.load(path), Account.from_key(test_keys[1]))
    with pytest.warns(SpecUriWarning, match="workers with the shipped configuration refuse"):
        with pytest.raises(Exception):  # no contracts on this chain: the warning comes before any send
            client.post_job(spec, 5, 10, local.spec_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecUriWarning)
        with pytest.raises(Exception) as raised:
            client.post_job(spec, 5, 10, "https://artifacts.example.org/tessera")
        assert not isinstance(raised.value, SpecUriWarning)
    assert open_store(str(tmp_path / "store")).has(spec.spec_hash())
