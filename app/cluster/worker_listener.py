"""A private address for one uvicorn worker, so the other processes can forward a session to it.

With `MCP_WORKERS` > 1 every worker accepts on the shared port, and the kernel picks which one gets
a connection: a session's owner cannot be reached there. Each worker therefore also listens on a
port of its own (chosen by the kernel) and advertises that one as its URL.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def own_listener(app: ASGIApp, listen_host: str, advertised: str) -> AsyncIterator[str]:
    """Serve `app` on a free port of `listen_host` and yield `advertised` with that port."""
    family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listen_host, 0))
    sock.listen(128)
    # No lifespan: the worker's main server already runs the app's; no signal handlers either (serve() would
    # take SIGTERM from the main server), so the documented startup/shutdown steps are driven here.
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, timeout_keep_alive=75)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        parts = urlsplit(advertised)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        yield urlunsplit(parts._replace(netloc=f"{host}:{sock.getsockname()[1]}"))
    finally:
        await server.shutdown(sockets=[sock])
