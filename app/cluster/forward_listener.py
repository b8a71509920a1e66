"""The forwarding port: where the other processes send the requests of the sessions this one owns.

With `MCP_FORWARD_PORT` it is a port of its own, bound to `MCP_FORWARD_HOST` (an address only the instances
reach), and the public port refuses forwarded requests. With `MCP_WORKERS` > 1 every worker accepts on the
shared public port and the kernel picks which one gets a connection, so a session's owner cannot be reached
there: each worker takes the first free port of MCP_FORWARD_PORT's range (or one the kernel picks) and
advertises that one as its URL.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from app.cluster.forwarding import FORWARD_HEADER
from app.http.messages import header, send_error

ARRIVED_FORWARDED = "mcp.forwarding_port"  # the scope key that marks a request served on the forwarding port
CLIENTS_ELSEWHERE = (
    f"this port takes only requests the other instances forward ({FORWARD_HEADER}); clients use the public port"
)


class ForwardedOnly:
    """What the forwarding port serves: forwarded /mcp requests, marked as arrived here; nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan and no websockets here: the public port's server runs the app's lifespan
        if scope["path"] != "/mcp" or header(scope["headers"], FORWARD_HEADER.encode()) is None:
            await send_error(send, 403, -32600, CLIENTS_ELSEWHERE)
            return
        await self.app({**scope, ARRIVED_FORWARDED: True}, receive, send)


def arrived_forwarded(scope: Scope) -> bool:
    return scope.get(ARRIVED_FORWARDED, False)


@contextlib.asynccontextmanager
async def forwarding_port(app: ASGIApp, host: str, ports: Sequence[int], advertised: str) -> AsyncIterator[str]:
    """Serve `app` (forwarded requests only) on the first free port of `ports` on `host` (0: one the kernel
    picks), and yield `advertised` with that port."""
    sock = _bind_first_free(host, ports)
    # No lifespan: the worker's main server already runs the app's; no signal handlers either (serve() would
    # take SIGTERM from the main server), so the documented startup/shutdown steps are driven here.
    config = uvicorn.Config(
        ForwardedOnly(app), lifespan="off", log_config=None, access_log=False, timeout_keep_alive=75
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        parts = urlsplit(advertised)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        yield urlunsplit(parts._replace(netloc=f"{name}:{sock.getsockname()[1]}"))
    finally:
        await server.shutdown(sockets=[sock])


def _bind_first_free(host: str, ports: Sequence[int]) -> socket.socket:
    """A listening socket on `host` (an address or a name, resolved now) and the first port of `ports` free."""
    family, _, _, _, address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
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
    raise OSError(errno.EADDRINUSE, f"address already in use: no forwarding port free on {host} in {taken}")
