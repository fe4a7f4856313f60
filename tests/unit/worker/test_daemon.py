"""The base Daemon loop on anvil behind a stoppable proxy: an RPC outage never ends the loop, health
flips to unhealthy and back, steps back off, and a stop request drains."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from web3 import Web3

from protocol.chain import BoundedHTTPProvider
from tests.unit.worker import chainkit
from worker.runtime.config import DaemonConfig
from worker.runtime.daemon import Daemon
from worker.testing import TcpProxy


class CountingDaemon(Daemon):
    name = "test"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ticks = 0
        self.reconciles = 0
        self.drained = False

    def reconcile(self):
        self.w3.eth.block_number  # needs the chain
        self.reconciles += 1

    def tick(self):
        self.w3.eth.block_number
        self.ticks += 1

    def drain(self):
        self.drained = True


def test_loop_survives_rpc_outage_and_drains(anvil_chain, w3, funder, fresh_account, tmp_path):
    emitter = chainkit.deploy(w3, funder, chainkit.EMITTER_RUNTIME)
    proxy = TcpProxy(anvil_chain.port).start()
    proxied = Web3(BoundedHTTPProvider(proxy.url, timeout=1.0, retries=0))
    record = SimpleNamespace(address=emitter, block=w3.eth.block_number)
    deployment = SimpleNamespace(chain_id=w3.eth.chain_id, start_block=record.block, contracts={"Emitter": record})
    config = DaemonConfig(data_dir=tmp_path, poll_interval=0.1, confirmations=0, reconcile_interval=0.5)
    daemon = CountingDaemon(config, w3=proxied, account=fresh_account, deployment=deployment)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "progress": False})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while daemon.ticks < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.health.chain_ok and daemon.ticks >= 3
        proxy.stop()
        time.sleep(2.5)
        assert thread.is_alive(), "an RPC outage ended the loop"
        assert not daemon.health.chain_ok
        assert daemon.health.reasons()
        ticks_during = daemon.ticks
        proxy.start()
        deadline = time.monotonic() + 20
        while not (daemon.health.chain_ok and daemon.ticks > ticks_during) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.health.chain_ok and daemon.ticks > ticks_during
        errors = daemon.metrics.exposition().decode()
        assert 'tessera_rpc_errors_total{daemon="test"}' in errors
        assert 'tessera_rpc_errors_total{daemon="test"} 0.0' not in errors
    finally:
        daemon.request_stop("test over")
        thread.join(timeout=15)
        proxy.stop()
    assert not thread.is_alive() and daemon.drained


class WakingDaemon(CountingDaemon):
    """Records when each tick ran; fails its ticks while `failing` is set."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tick_times: list[float] = []
        self.failing = False

    def tick(self):
        self.tick_times.append(time.monotonic())
        if self.failing:
            raise RuntimeError("a failing step")


def _wait_for(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_wake_starts_the_next_iteration_at_once_but_never_cuts_a_backoff_short(
        anvil_chain, w3, fresh_account, tmp_path):
    """Work finished off the loop (a screening thread) must not wait out the poll interval, and a wake
    from such a thread must not turn the backoff after failures into a busy loop."""
    deployment = SimpleNamespace(chain_id=w3.eth.chain_id, start_block=w3.eth.block_number, contracts={})
    config = DaemonConfig(data_dir=tmp_path, poll_interval=2.0, confirmations=0, reconcile_interval=60)
    daemon = WakingDaemon(config, w3=w3, account=fresh_account, deployment=deployment)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "progress": False})
    thread.start()
    try:
        _wait_for(lambda: len(daemon.tick_times) >= 1, 10)
        assert len(daemon.tick_times) == 1
        woken_at = time.monotonic()
        daemon.wake()
        _wait_for(lambda: len(daemon.tick_times) >= 2, 10)
        assert daemon.tick_times[1] - woken_at < 1.0, "a wake waited for the poll interval"
        # failing ticks back off (2 s, then 4 s); wakes during the backoff do not shorten it
        daemon.failing = True
        daemon.wake()
        _wait_for(lambda: len(daemon.tick_times) >= 3, 10)
        failed_at = daemon.tick_times[2]
        for _ in range(5):
            daemon.wake()
            time.sleep(0.2)
        _wait_for(lambda: len(daemon.tick_times) >= 4, 10)
        assert daemon.tick_times[3] - failed_at >= 3.5, "a wake cut the backoff after a failure short"
    finally:
        daemon.request_stop("test over")
        thread.join(timeout=15)
    assert not thread.is_alive() and daemon.drained
