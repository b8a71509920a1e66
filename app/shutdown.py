"""What an instance does on SIGTERM (`docker stop`, a Kubernetes rollout): drain, then stop serving."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
import uvicorn

# Longer than nginx keeps an idle connection to an instance (nginx/keepalive.conf): after a quiet this long,
# what connections are left, nobody will send on.
QUIET_SECONDS = 3.0
CLOSING_AT_MOST_SECONDS = 5.0  # with MCP_DRAIN_SECONDS and uvicorn's 5 s, within compose's 30 s to stop


class Front(Protocol):
    """Where the instance meets its clients (app.http.middleware.InstanceMiddleware)."""

    closing: bool  # set: every response asks the client to close its connection

    def quiet_seconds(self) -> float: ...  # how long no request has been in flight


@asynccontextmanager
async def drain_on_sigterm(drain: Callable[[], Awaitable[None]], front: Front) -> AsyncIterator[None]:
    """While the block runs, SIGTERM runs `drain` and then hands the signal to the handler it replaced
    (uvicorn's, which stops serving once the requests in flight end); in between, new connections are
    refused and the clients get to close theirs.
    SIGTERMs that follow are ignored (a
    process manager may signal both uvicorn's supervisor and its workers); SIGINT still stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread: nothing to hook (e.g. an in-process test)
        return
    previous = signal.getsignal(signal.SIGTERM)
    requested = anyio.Event()
    loop = asyncio.get_running_loop()  # the handler may interrupt any code of this thread: it only schedules

    def on_sigterm(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(requested.set)

    async def drain_then_stop() -> None:
        await requested.wait()
        try:
            await drain()
            server = getattr(previous, "__self__", None)
            if isinstance(server, uvicorn.Server):
                await _let_clients_close(server, front)
        finally:
            _pass_on(previous, signal.SIGTERM, None)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(drain_then_stop)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
    finally:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)


async def _let_clients_close(server: uvicorn.Server, front: Front) -> None:
    """Refuse new connections (nginx then tries another instance, nothing sent), then let the clients close
    theirs: each after its next response, an idle one after nginx's idle timeout. Closing one ourselves could
    cross a request nginx is sending on it, which fails as a 502. Connections stay reusable until now, so
    few new ones wait in the listen queue when it closes (the kernel resets those: a 502 each)."""
    loop = asyncio.get_running_loop()
    for connection in _stop_listening(server):
        await loop.connect_accepted_socket(lambda: _protocol(server), connection)
    front.closing = True
    with anyio.move_on_after(CLOSING_AT_MOST_SECONDS):
        while server.server_state.connections and front.quiet_seconds() < QUIET_SECONDS:
            await anyio.sleep(0.05)


def _stop_listening(server: uvicorn.Server) -> list[socket.socket]:
    """Close the listening sockets, taking first the connections already in their queues (the kernel would
    reset those, and nginx, having sent its request, would answer 502). Nothing awaits in between."""
    queued = []
    for listener in server.servers:
        for listening in listener.sockets:
            taking = socket.socket(fileno=os.dup(listening.fileno()))  # the same socket, to accept from here
            taking.setblocking(False)
            try:
                while True:
                    queued.append(taking.accept()[0])
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                taking.close()
        listener.close()
    return queued


def _protocol(server: uvicorn.Server) -> asyncio.Protocol:
    """What uvicorn serves each connection with (as `Server.startup` makes it)."""
    config = server.config
    return config.http_protocol_class(config=config, server_state=server.server_state, app_state=server.lifespan.state)


def _pass_on(handler, signum: int, frame: object) -> None:
    if callable(handler):
        handler(signum, frame)
    else:  # no server handler (SIG_DFL): stop the way SIGTERM would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
