"""What an instance does on SIGTERM (`docker stop`, a Kubernetes rollout): drain, then stop serving."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any, Protocol

import anyio
import uvicorn

# Longer than nginx keeps an idle connection to an instance (nginx/keepalive.conf): after a quiet this long,
# what connections are left, nobody will send on.
QUIET_SECONDS = 3.0
CLOSING_AT_MOST_SECONDS = 5.0  # with MCP_DRAIN_SECONDS and uvicorn's 5 s, within compose's 30 s to stop
# Far above a handshake's round trip on one host or network: handshakes begun before the filter end by then.
HANDSHAKES_SETTLE_SECONDS = 0.2

# A classic BPF socket filter that drops a TCP segment with SYN set and ACK clear (a new handshake) and
# passes the rest: (code, jt, jf, k) of `ldb [13]; and #0x12; jeq #0x02, drop, pass; drop: ret #0; pass: ret #-1`.
_DROP_SYN = ((0x30, 0, 0, 13), (0x54, 0, 0, 0x12), (0x15, 0, 1, 0x02), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))
_SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h


class Front(Protocol):
    """Where the instance meets its clients (mcp_cluster.http.middleware.InstanceMiddleware)."""

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
    cross a request nginx is sending on it, which fails as a 502. Before the listening socket closes, it
    ignores new handshakes: a connection the kernel completed and then reset at close would have carried a
    request (a 502), where an ignored SYN is sent again after 1 s, refused, and nginx tries the next
    instance."""
    loop = asyncio.get_running_loop()
    if _ignore_new_handshakes(server):
        await anyio.sleep(HANDSHAKES_SETTLE_SECONDS)  # meanwhile uvicorn accepts as usual
    for connection in _stop_listening(server):
        await loop.connect_accepted_socket(lambda: _protocol(server), connection)
    front.closing = True
    with anyio.move_on_after(CLOSING_AT_MOST_SECONDS):
        while server.server_state.connections and front.quiet_seconds() < QUIET_SECONDS:
            await anyio.sleep(0.05)


def _ignore_new_handshakes(server: uvicorn.Server) -> bool:
    """Attach _DROP_SYN to every listening socket, where they are this process's alone (on Linux; a socket that
    another process holds too, such as uvicorn's supervisor or other workers, goes on serving there); else
    return False."""
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in _DROP_SYN)
    program = ctypes.create_string_buffer(code, len(code))  # the kernel copies it: it need outlive the call only
    fprog = struct.pack("HP", len(_DROP_SYN), ctypes.addressof(program))
    with _listening_sockets(server) as listening:
        if not sys.platform.startswith("linux") or any(_held_elsewhere(sock) for sock in listening):
            return False
        try:
            for sock in listening:
                sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        except OSError:  # a kernel or sandbox without classic socket filters: stop listening without one
            return False
    return True


def _held_elsewhere(sock: socket.socket) -> bool:
    """Whether another process has this socket open too (its descriptors in /proc name the same inode)."""
    target, own = f"socket:[{os.fstat(sock.fileno()).st_ino}]", str(os.getpid())
    for process in os.scandir("/proc"):
        if not process.name.isdigit() or process.name == own:
            continue
        try:
            descriptors = os.scandir(f"/proc/{process.name}/fd")
        except OSError:  # gone, or not ours to read (a process of another user cannot hold our socket)
            continue
        with descriptors:
            for descriptor in descriptors:
                with contextlib.suppress(OSError):
                    if os.readlink(descriptor.path) == target:
                        return True
    return False


def _stop_listening(server: uvicorn.Server) -> list[socket.socket]:
    """Close the listening sockets, taking first the connections already in their queues (the kernel would
    reset those, and nginx, having sent its request, would answer 502). Nothing awaits in between."""
    queued = []
    with _listening_sockets(server) as listening:
        for sock in listening:
            sock.setblocking(False)
            try:
                while True:
                    queued.append(sock.accept()[0])
            except (BlockingIOError, InterruptedError):
                pass
    for listener in server.servers:
        listener.close()
    return queued


@contextmanager
def _listening_sockets(server: uvicorn.Server) -> Iterator[list[socket.socket]]:
    """uvicorn's listening sockets, each as a socket of our own (a duplicate descriptor) to act on."""
    own = [socket.socket(fileno=os.dup(sock.fileno())) for listener in server.servers for sock in listener.sockets]
    try:
        yield own
    finally:
        for sock in own:
            sock.close()


def _protocol(server: uvicorn.Server) -> asyncio.Protocol:
    """What uvicorn serves each connection with (as `Server.startup` makes it)."""
    config = server.config
    # uvicorn types the class as a bare asyncio.Protocol and ignores the same call-arg in its own startup.
    return config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=server.server_state, app_state=server.lifespan.state
    )


def _pass_on(
    handler: Callable[[int, FrameType | None], Any] | int | None, signum: int, frame: FrameType | None
) -> None:
    if callable(handler):
        handler(signum, frame)
    else:  # no server handler (SIG_DFL): stop the way SIGTERM would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
