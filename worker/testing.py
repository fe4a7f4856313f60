"""Test tools for the daemons on a real local chain: a stoppable TCP proxy, daemon processes and a
slow-loris HTTP server.

Used by tests/e2e/test_worker_*.py (and usable by the dispute daemons' tests): `TcpProxy` sits
between a daemon and anvil so a test can make "the RPC endpoint go away" and come back on the same
port; `DaemonProcess` runs `tessera <daemon> run --config FILE` as a real child process that a test
can SIGKILL or SIGTERM; `SlowLoris` is a hostile artifact server that never finishes an answer.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


class TcpProxy:
    """Forward 127.0.0.1:`port` to `target_port`; `stop()` refuses and cuts connections, `start()` resumes."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TcpProxy":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while self._running:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                if not self._running:
                    break
                for sock in readable:
                    data = sock.recv(65_536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass

    def stop(self) -> None:
        """Close the listener and every open connection: the endpoint is gone."""
        self._running = False
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._conns.clear()


class DaemonProcess:
    """`tessera <daemon> run --config <config>` as a child process with its log in a file (`module`
    "personas" runs a dishonest persona's daemon with the same options)."""

    def __init__(self, daemon: str, config_path: Path, log_path: Path, *, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None, module: str = "protocol.cli.main") -> None:
        self.daemon = daemon
        self.module = module
        self.config_path = Path(config_path)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "DaemonProcess":
        cmd = [sys.executable, "-m", self.module, self.daemon, "run", "--config", str(self.config_path),
               *self.extra_args]
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {self.starts} at {time.time():.3f} ===\n".encode())
        log.flush()
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self.env, start_new_session=True)
        log.close()
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the daemon (its training child dies with it through PDEATHSIG)."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the drain; returns the exit code."""
        if not self.alive():
            return self.process.returncode if self.process else 0
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "DaemonProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.alive():
            try:
                self.terminate(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class SlowLoris:
    """Accepts connections and trickles one byte every `interval` seconds, forever."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        payload = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"{" * 100_000
        try:
            for byte in payload:
                if not self.running:
                    break
                conn.sendall(bytes([byte]))
                time.sleep(self.interval)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.running = False
        self.sock.close()
