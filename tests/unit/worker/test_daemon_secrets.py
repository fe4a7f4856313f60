"""A daemon never shows the RPC URL's secrets (in its JSON logs or on /healthz), and warns at start
about a keyfile that other users can read."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

from eth_account import Account

from protocol.accounts import create_keystore
from protocol.devnet import free_port
from tests.unit.worker import chainkit
from worker.runtime.config import DaemonConfig
from worker.runtime.daemon import Daemon
from worker.runtime.logs import setup_logging
from worker.testing import TcpProxy

API_KEY = "SECRETKEY-9f8e7d6c"
PASSWORD = "SECRETPASS-1a2b3c"


class ChainReadingDaemon(Daemon):
    name = "secrets"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ticks = 0

    def tick(self):
        self.w3.eth.block_number
        self.ticks += 1


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_rpc_secrets_stay_out_of_logs_and_healthz(anvil_chain, w3, funder, tmp_path, monkeypatch):
    emitter = chainkit.deploy(w3, funder, chainkit.EMITTER_RUNTIME)
    deployment = SimpleNamespace(chain_id=w3.eth.chain_id, start_block=w3.eth.block_number,
                                 contracts={"Emitter": SimpleNamespace(address=emitter, block=w3.eth.block_number)})
    ape = tmp_path / "ape"
    monkeypatch.setenv("APE_DATA_FOLDER", str(ape))
    monkeypatch.setenv("OPERATOR_PASSPHRASE", "correct horse")
    keyfile = create_keystore("operator", Account.create().key, "correct horse", data_folder=ape, iterations=2**4)
    os.chmod(keyfile, 0o644)  # what `ape accounts import` writes
    proxy = TcpProxy(anvil_chain.port).start()
    metrics_port = free_port()
    config = DaemonConfig(
        network=f"http://operator:{PASSWORD}@127.0.0.1:{proxy.port}/?apikey={API_KEY}",
        account="operator", passphrase="env:OPERATOR_PASSPHRASE", data_dir=tmp_path / "data",
        poll_interval=0.1, confirmations=0, reconcile_interval=0.5, rpc_timeout=1.0, metrics_port=metrics_port,
    )
    logs = io.StringIO()
    setup_logging("secrets", stream=logs)
    daemon = ChainReadingDaemon(config, deployment=deployment)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "progress": False})
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while daemon.ticks < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.ticks >= 2, logs.getvalue()
        proxy.stop()  # the RPC goes away: errors that echo the URL start flowing
        deadline = time.monotonic() + 10
        status, body = healthz(metrics_port)
        while status != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            status, body = healthz(metrics_port)
        assert status == 503 and "chain unreachable" in body and "127.0.0.1" in body
        time.sleep(0.5)
    finally:
        daemon.request_stop("test over")
        thread.join(timeout=15)
        proxy.stop()
    text = logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any("RPC" in line.get("msg", "") for line in lines), text
    for shown in (text, body):
        assert API_KEY not in shown and PASSWORD not in shown
    warning = [line for line in lines if line.get("event") == "keyfile_mode"]
    assert warning and "0644" in warning[0]["msg"] and "chmod 600" in warning[0]["msg"]
