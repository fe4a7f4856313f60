"""`tessera store …`: publish a flat artifact store directory over HTTP (read-only).

Workers fetch specs and inputs, verifiers fetch checkpoints, by `GET <base URL>/<64 hex>`; this serves
exactly that from a directory (`protocol.store_server`). Put it behind a TLS reverse proxy, or run a
static web server over the same directory instead (docs/operator-guide.md, "Artifact store").
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click

from protocol.artifacts import DEFAULT_MAX_BYTES
from protocol.cli.common import say
from protocol.store_server import DEFAULT_CONNECTION_TIMEOUT_S, DEFAULT_MAX_THREADS, DEFAULT_PORT


@click.group()
def store() -> None:
    """Artifact stores: serve a store directory read-only over HTTP."""


@store.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; prefer a TLS reverse proxy in front).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port; the startup line names it).")
@click.option("--max-size", type=click.IntRange(min=0), default=DEFAULT_MAX_BYTES, show_default=True,
              help="Largest artifact served, in bytes (bigger ones get a 403).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_CONNECTION_TIMEOUT_S, show_default=True,
              help="Seconds a connection may stay silent before it is closed.")
@click.option("--max-connections", type=click.IntRange(min=1), default=DEFAULT_MAX_THREADS, show_default=True,
              help="Requests served at once; more get a 503.")
@click.option("--quiet", is_flag=True, help="Do not log each request on stderr.")
def serve(directory: Path, host: str, port: int, max_size: int, timeout: float, max_connections: int,
          quiet: bool) -> None:
    """Serve the artifacts in DIRECTORY (GET/HEAD /<64 hex>) until Ctrl-C or SIGTERM.

    Read-only: no listing, no uploads, nothing but content-addressed files; clients check every byte
    against its hash."""
    from protocol.store_server import StoreServer

    server = StoreServer(directory, host, port, max_bytes=max_size, timeout=timeout, max_threads=max_connections,
                         quiet=quiet, create=False)

    def stop(signum: int, frame: Any) -> None:
        server.stop()

    previous = signal.signal(signal.SIGTERM, stop)
    # stdout, flushed: a script or a test reads the URL from the first line
    click.echo(f"serving {server.root} read-only at {server.url}/<64-hex hash> (Ctrl-C or SIGTERM stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("store server stopped")
