"""Serve an app factory with uvicorn, as every instance should be served behind nginx, and the ports an
instance opens beside its public one (forwarding, metrics)."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from mcp_cluster.settings import InstanceSettings, SettingsError, is_network


def serve(factory: str, settings: InstanceSettings) -> None:
    """Run `factory` ("module:function", returning the ASGI app) on the settings' address and workers."""
    uvicorn.run(
        factory,
        factory=True,
        host=settings.listen_host,
        port=settings.listen_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Above nginx's upstream keepalive_timeout (2 s): an idle connection is always closed by nginx
        # first, never by uvicorn while nginx reuses it (that race answers a POST with 502).
        timeout_keep_alive=75,
    )


def run_from_env(factory: str, name: str, *checks: Callable[[], object]) -> int:
    """A `python -m` entry point: check the settings (and `checks`, more `from_env` readers), then serve.
    A bad setting stops the process with one line naming it and the valid values."""
    try:
        settings = InstanceSettings.from_env()
        for check in checks:
            check()
    except SettingsError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    serve(factory, settings)
    return 0


@contextlib.asynccontextmanager
async def side_port(app: ASGIApp, host: str, ports: Sequence[int], purpose: str) -> AsyncIterator[int]:
    """Serve `app` on the first free port of `ports` on `host` (0: one the kernel picks) while the block runs,
    and yield that port. With MCP_WORKERS > 1 each worker takes the next free one."""
    sock = _bind_first_free(host, ports, purpose)
    # No lifespan: the worker's main server already runs the app's; no signal handlers either (serve() would
    # take SIGTERM from the main server), so the documented startup/shutdown steps are driven here.
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, timeout_keep_alive=75)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        yield sock.getsockname()[1]
    finally:
        await server.shutdown(sockets=[sock])


def own_address(network: str) -> tuple[Any, ...]:
    """This process's address in `network` (CIDR), among those its host name has (a container's /etc/hosts names
    it at its address on each of its networks), as `getaddrinfo` gives it."""
    within = ipaddress.ip_network(network)
    found = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    for entry in found:
        if ipaddress.ip_address(entry[4][0]) in within:
            return entry
    addresses = ", ".join(sorted({str(entry[4][0]) for entry in found})) or "none"
    raise OSError(errno.EADDRNOTAVAIL, f"this process has no address in {network} (its host name's: {addresses})")


def _bind_first_free(host: str, ports: Sequence[int], purpose: str) -> socket.socket:
    """A listening socket on `host` (an address, a name resolved now, or a network: this process's address in it)
    and the first port of `ports` free."""
    family, _, _, _, address = (
        own_address(host) if is_network(host) else socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    )
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address[0], port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue  # another worker of this instance took it
            raise
        sock.listen(128)
        return sock
    taken = f"{ports[0]}..{ports[-1]}"
    raise OSError(errno.EADDRINUSE, f"address already in use: no {purpose} port free on {host} in {taken}")
