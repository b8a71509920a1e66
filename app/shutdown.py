"""What an instance does on SIGTERM (`docker stop`, a Kubernetes rollout): drain, then stop serving."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import uvicorn

# Longer than nginx (nginx/keepalive.conf) and the other instances keep an idle connection to this one.
IDLE_CONNECTIONS_CLOSE_SECONDS = 3.0


@asynccontextmanager
async def drain_on_sigterm(drain: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """While the block runs, SIGTERM runs `drain` and then hands the signal to the handler it replaced
    (uvicorn's, which stops serving once the requests in flight end). SIGTERMs that follow are ignored (a
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
                await _let_clients_close(server)
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


async def _let_clients_close(server: uvicorn.Server) -> None:
    """Refuse new connections (nginx then tries another instance, nothing sent), and let the clients close the
    idle ones: closing one ourselves could cross a request nginx is sending on it, which fails as a 502."""
    for listener in server.servers:
        listener.close()
    with anyio.move_on_after(IDLE_CONNECTIONS_CLOSE_SECONDS):
        while server.server_state.connections:
            await anyio.sleep(0.05)


def _pass_on(handler, signum: int, frame: object) -> None:
    if callable(handler):
        handler(signum, frame)
    else:  # no server handler (SIG_DFL): stop the way SIGTERM would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
