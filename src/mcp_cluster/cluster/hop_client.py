"""The HTTP/1.1 client of the hop to a session's owner: persistent connections per owner, the request written
in one piece, the answer parsed by httptools and streamed as it arrives. Nothing else: no redirects, no
cookies, no content decoding, no per-request setup (a general client spent as much CPU on the hop as the
owner spent serving the call).
"""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import anyio
import httptools
from anyio.abc import SocketAttribute, SocketStream

CONNECT_TIMEOUT_SECONDS = 1.0
WRITE_TIMEOUT_SECONDS = 10.0
# Idle connections are not reused after this: an owner that stops waits 3 s without requests before it closes
# its connections itself (mcp_cluster/shutdown.py), so none it is closing is ever written to.
KEEPALIVE_SECONDS = 2.0
MAX_IDLE_PER_OWNER = 128
_READ_BYTES = 65536
_BODYLESS = (204, 304)


class OwnerUnreachable(ConnectionError):
    """No connection to the owner could be made (refused, or timed out): the request never reached it."""


class OwnerLost(ConnectionError):
    """The owner took the request but broke off or timed out before answering: it may or may not have run."""


class _Parsed:
    """httptools' callbacks: the answer's headers, and its body chunks as they are parsed."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = self.complete = self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is complete

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class HopResponse:
    """An owner's answer, its head read and its body still on the connection: read `chunks()`, then `aclose()`."""

    def __init__(self, client: HopClient, owner: tuple[str, int], stream: SocketStream, read_timeout: float) -> None:
        self._client, self._owner, self._stream, self._read_timeout = client, owner, stream, read_timeout
        self._parsed = _Parsed()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    async def read_head(self, method: str) -> None:
        while not self._parsed.headers_done:
            await self._feed()
        self.status, self.headers = self._parsed.parser.get_status_code(), self._parsed.headers
        if method == "HEAD" or self.status in _BODYLESS:
            self._parsed.complete = True

    @property
    def ended(self) -> bool:
        """Whether the whole body has been read and handed out: the last of `chunks()` was the end."""
        return self._parsed.complete and not self._parsed.chunks

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, what each read brought in one piece (chunked transfer coding removed);
        OwnerLost if the owner breaks off."""
        while True:
            if self._parsed.chunks:
                pending, self._parsed.chunks = self._parsed.chunks, []
                yield pending[0] if len(pending) == 1 else b"".join(pending)
            if self._parsed.complete:
                return
            await self._feed()

    async def aclose(self) -> None:
        """Give the connection back for the next hop when the answer was read whole, else close it."""
        if self._parsed.complete and self._parsed.keep_alive:
            await self._client.give_back(self._owner, self._stream)
        else:
            await self._stream.aclose()

    async def _feed(self) -> None:
        try:
            with anyio.fail_after(self._read_timeout):
                data = await self._stream.receive(_READ_BYTES)
            self._parsed.parser.feed_data(data)
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, TimeoutError) as exc:
            raise OwnerLost(exc.__class__.__name__) from exc
        except httptools.HttpParserError as exc:
            raise OwnerLost(f"unreadable answer ({exc})") from exc


class HopClient:
    """Connections to the other instances, kept open between hops (at most MAX_IDLE_PER_OWNER idle per owner)."""

    def __init__(self, read_timeout: float) -> None:
        self._read_timeout = read_timeout
        self._idle: dict[tuple[str, int], deque[tuple[float, SocketStream]]] = {}  # by when each fell idle

    async def send(
        self, url: str, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> HopResponse:
        """Write the request to the owner at `url` and read the head of its answer."""
        parts = urlsplit(url)
        owner = (parts.hostname or "", parts.port or 80)
        stream = await self._idle_connection(owner) or await self._connect(owner)
        lines = [b"%s %s HTTP/1.1" % (method.encode(), target), *(b"%s: %s" % pair for pair in headers)]
        if body or method not in ("GET", "DELETE"):
            lines.append(b"content-length: %d" % len(body))
        response = HopResponse(self, owner, stream, self._read_timeout)
        try:
            try:
                with anyio.fail_after(WRITE_TIMEOUT_SECONDS):
                    await stream.send(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError) as exc:
                raise OwnerLost(exc.__class__.__name__) from exc  # some of it may have reached the owner
            await response.read_head(method)
        except BaseException:  # a failure, or the relay cancelled: the connection is in no state to reuse
            await stream.aclose()
            raise
        return response

    async def give_back(self, owner: tuple[str, int], stream: SocketStream) -> None:
        idle = self._idle.setdefault(owner, deque())
        if len(idle) < MAX_IDLE_PER_OWNER:
            idle.append((time.monotonic(), stream))
        else:
            await stream.aclose()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, stream in idle:
                await stream.aclose()
        self._idle.clear()

    async def _idle_connection(self, owner: tuple[str, int]) -> SocketStream | None:
        """The connection used last, if it has been idle less than KEEPALIVE_SECONDS; older ones are closed."""
        idle = self._idle.get(owner) or deque()
        fresh_since = time.monotonic() - KEEPALIVE_SECONDS
        while idle and idle[0][0] <= fresh_since:  # oldest first
            await idle.popleft()[1].aclose()
        while idle:
            stream = idle.pop()[1]
            if not _readable(stream):
                return stream
            await stream.aclose()  # the owner closed it (it stopped, or was killed): a request would be lost
        return None

    @staticmethod
    async def _connect(owner: tuple[str, int]) -> SocketStream:
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_SECONDS):
                return await anyio.connect_tcp(*owner)
        except (OSError, TimeoutError) as exc:
            raise OwnerUnreachable(f"{exc.__class__.__name__}: {exc}") from exc


def _readable(stream: SocketStream) -> bool:
    """Whether an idle connection has something to read, which on a keep-alive connection means the owner
    closed it (or broke the protocol): checked before each reuse, as urllib3 and httpcore do."""
    poller = select.poll()
    poller.register(stream.extra(SocketAttribute.raw_socket).fileno(), select.POLLIN)
    return bool(poller.poll(0))
