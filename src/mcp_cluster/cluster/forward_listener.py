"""The forwarding port: where the other processes send the requests of the sessions this one owns.

With `MCP_FORWARD_PORT` it is a port of its own, bound to `MCP_FORWARD_HOST` (an address only the instances
reach), and the public port refuses forwarded requests. With `MCP_WORKERS` > 1 every worker accepts on the
shared public port and the kernel picks which one gets a connection, so a session's owner cannot be reached
there: each worker takes the first free port of MCP_FORWARD_PORT's range (or one the kernel picks) and
advertises that one as its URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_cluster.http.messages import FORWARD_HEADER, header, send_error
from mcp_cluster.serving import side_port
from mcp_cluster.shared.runs import NOT_RUN

ARRIVED_FORWARDED = "mcp.forwarding_port"  # the scope key that marks a request served on the forwarding port
CLIENTS_ELSEWHERE = (
    f"this port takes only requests the other instances forward ({FORWARD_HEADER}); {NOT_RUN}: clients use the "
    "public port"
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
    arrived: bool = scope.get(ARRIVED_FORWARDED, False)
    return arrived


@contextlib.asynccontextmanager
async def forwarding_port(app: ASGIApp, host: str, ports: Sequence[int], advertised: str) -> AsyncIterator[str]:
    """Serve `app` (forwarded requests only) on the first free port of `ports` on `host` (0: one the kernel
    picks), and yield `advertised` with that port."""
    async with side_port(ForwardedOnly(app), host, ports, "forwarding") as port:
        parts = urlsplit(advertised)
        assert parts.hostname is not None  # the settings accept no advertised URL without a host
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        yield urlunsplit(parts._replace(netloc=f"{name}:{port}"))
