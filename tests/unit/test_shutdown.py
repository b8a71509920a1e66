"""How a stopping instance stops listening (mcp_cluster/shutdown.py), against a real uvicorn server and the kernel's
own sockets: a connection opened in the last moments is refused before anything is sent on it, never
reset after, and the connections already open go on serving."""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mcp_cluster.shutdown import _ignore_new_handshakes, _stop_listening
from tests.utils.clients import wait_for

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter"),
]


def _hello_app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("hello"))])


@asynccontextmanager
async def _serving() -> AsyncIterator[uvicorn.Server]:
    """A real uvicorn server on a port of its own, started, and stopped after the block."""
    server = uvicorn.Server(uvicorn.Config(_hello_app(), host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    await asyncio.to_thread(wait_for, lambda: server.started)
    try:
        yield server
    finally:
        server.should_exit = True
        await serving


def _get(connection: socket.socket) -> bytes:
    """One GET on an open connection: the response as it arrives, up to its body (the socket's timeout bounds it)."""
    connection.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    response = b""
    while b"hello" not in response and (chunk := connection.recv(4096)):
        response += chunk
    return response


async def test_a_connection_opened_while_stopping_is_refused_and_open_ones_still_serve():
    async with _serving() as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as already_open:
            assert _ignore_new_handshakes(server)
            late = socket.socket()
            late.setblocking(False)
            assert late.connect_ex(("127.0.0.1", port)) == errno.EINPROGRESS
            _, connected, _ = await asyncio.to_thread(select.select, [], [late], [], 0.5)
            assert connected == []  # its handshake is ignored: nothing can be sent on it
            assert b"hello" in await asyncio.to_thread(_get, already_open)

            assert _stop_listening(server) == []
            _, done, _ = await asyncio.to_thread(select.select, [], [late], [], 5)  # the SYN is sent again after 1 s
            assert done == [late]
            assert late.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
            late.close()


async def test_connections_the_kernel_completed_before_the_filter_are_taken_not_reset():
    async with _serving() as server:
        listening = server.servers[0].sockets[0]
        # In the queue: the event loop has not run since.
        with socket.create_connection(listening.getsockname(), timeout=5) as queued:
            taken = _stop_listening(server)
            assert len(taken) == 1
            taken[0].sendall(b"taken")
            assert queued.recv(5) == b"taken"  # the connection lives on, in our hands
            taken[0].close()


async def test_a_socket_another_process_holds_too_gets_no_filter():
    """uvicorn's supervisor, other workers or gunicorn's arbiter may serve from the same socket: leave it be."""
    async with _serving() as server:
        listening = server.servers[0].sockets[0]
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=[listening.fileno()]
        )
        try:
            assert not _ignore_new_handshakes(server)
            late = await asyncio.to_thread(socket.create_connection, listening.getsockname(), 5)
            late.close()  # its handshake completed: no filter
        finally:
            holder.communicate(b"")
