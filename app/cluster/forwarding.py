"""The hop from the instance a request reached to the instance that owns its session.

The exchange is streamed both ways (an SSE response flows to the client as the owner writes it), the
hop carries a signature only cluster members can make, and a forwarded request is never forwarded again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

import anyio
import httpx2
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from app.http.messages import SESSION_ID_HEADER, header
from app.shared.keys import CLUSTER_SECRET
from app.shared.redis import unavailable_on_error

FORWARD_HEADER = "x-mcp-forwarded"
HANDED_OVER_HEADER = b"x-mcp-handed-over"  # on a 503 from an instance: it ran nothing, and says why
MOVED, DRAINING = b"moved", b"draining"  # the session is elsewhere now: look again; or it is stopping: try another
SERVED_BY_HEADER = b"x-mcp-served-by"  # the owner's X-Mcp-Instance; X-Mcp-Instance stays the instance nginx picked
_MAX_SKEW_SECONDS = 30
# The longest silence on the hop: above the longest tool call (50 s, answered at its end on JSON presets)
# and the SSE keepalive ping (15 s); an owner silent longer than that is hung or gone.
_READ_TIMEOUT_SECONDS = 60.0
# Hop-by-hop headers (RFC 9110 7.6.1), and the ones the client library sets itself.
_NOT_FORWARDED = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"content-length",
    FORWARD_HEADER.encode(),
}
log = logging.getLogger(__name__)


class OwnerUnreachable(ConnectionError):
    """No connection to the owner could be made (refused, or timed out): the request never reached it."""


class OwnerLost(ConnectionError):
    """The owner took the request but broke off or timed out before answering: it may or may not have run."""


class OwnerHandedOver(ConnectionError):
    """The instance ran nothing: the session moved (look its owner up again), or it is stopping (try another)."""

    def __init__(self, reason: bytes) -> None:
        super().__init__(reason.decode("latin-1"))
        self.reason = reason


class ForwardSigner:
    """Signs the forwarded hop with the cluster secret, binding it to the time, the sender and the request
    (method, path, session and a hash of the body), so a captured header cannot carry another request."""

    def __init__(self, secret: bytes, sender: str) -> None:
        self._secrets = [secret]
        self.sender = sender

    def rotate(self, secret: bytes) -> None:
        """Sign with `secret` from now on; still accept the previous one, for requests already on their way."""
        if secret != self._secrets[0]:
            self._secrets = [secret, self._secrets[0]]

    def sign(self, scope: Scope, body: bytes) -> str:
        stamp = str(int(time.time()))
        return f"{stamp};{self.sender};{self._mac(self._secrets[0], stamp, self.sender, scope, body)}"

    def verify(self, header: str, scope: Scope, body: bytes) -> bool:
        stamp, _, rest = header.partition(";")
        sender, _, mac = rest.partition(";")
        if not (stamp.isascii() and stamp.isdigit()) or abs(time.time() - int(stamp)) > _MAX_SKEW_SECONDS:
            return False
        expected = [self._mac(secret, stamp, sender, scope, body) for secret in self._secrets]
        return mac.isascii() and any(hmac.compare_digest(mac, candidate) for candidate in expected)

    @staticmethod
    def _mac(secret: bytes, stamp: str, sender: str, scope: Scope, body: bytes) -> str:
        target = (scope.get("raw_path") or scope["path"].encode()) + b"?" + scope.get("query_string", b"")
        session_id = header(scope["headers"], SESSION_ID_HEADER) or ""
        parts = [stamp.encode(), sender.encode(), scope["method"].encode(), target, session_id.encode()]
        message = b"|".join([*parts, hashlib.sha256(body).hexdigest().encode()])
        return hmac.new(secret, message, hashlib.sha256).hexdigest()


class Forwarder:
    """Replays one HTTP exchange against the owner's URL over pooled keep-alive connections."""

    def __init__(self, signer: ForwardSigner) -> None:
        self.signer = signer
        self._client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(connect=1.0, read=_READ_TIMEOUT_SECONDS, write=10.0, pool=5.0),
            # No cap on connections: each relayed GET stream holds one for as long as the client listens.
            # Idle connections are closed after 2 s, before a stopping instance gives up waiting for them.
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=128, keepalive_expiry=2.0),
        )
        self._streams: set[anyio.CancelScope] = set()  # the GET streams relayed now
        self._closing = False
        self._relaying = 0  # other requests relayed now

    def close_streams(self) -> None:
        """End every relayed GET stream cleanly, now and from now on (this instance is shutting down): each
        client reconnects with Last-Event-ID, through an instance that stays."""
        self._closing = True
        for stream in self._streams:
            stream.cancel()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def relays_done(self) -> None:
        """Return once no request but GET streams is being relayed (polled: this runs once, at shutdown)."""
        while self._relaying:
            await anyio.sleep(0.05)

    async def forward(self, owner_url: str, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Send the request to the owner and stream its answer back; raises before sending anything to the client."""
        counted = scope["method"] != "GET"
        self._relaying += counted
        try:
            await self._forward(owner_url, scope, body, receive, send)
        finally:
            self._relaying -= counted

    async def _forward(self, owner_url: str, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        headers = [(key, value) for key, value in scope["headers"] if key.lower() not in _NOT_FORWARDED]
        headers.append((FORWARD_HEADER.encode(), self.signer.sign(scope, body).encode()))
        path = scope.get("raw_path") or scope["path"].encode()
        query = b"?" + scope["query_string"] if scope.get("query_string") else b""
        request = self._client.build_request(
            scope["method"], owner_url + (path + query).decode("latin-1"), headers=headers, content=body
        )
        try:
            response = await self._client.send(request, stream=True)
        except (httpx2.ConnectTimeout, httpx2.ConnectError) as exc:
            raise OwnerUnreachable(str(exc)) from exc
        except httpx2.TransportError as exc:
            raise OwnerLost(exc.__class__.__name__) from exc
        handed_over = response.headers.get(HANDED_OVER_HEADER.decode()) if response.status_code == 503 else None
        if handed_over is not None:
            await response.aclose()
            raise OwnerHandedOver(handed_over.encode("latin-1"))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (SERVED_BY_HEADER if k.lower() == b"x-mcp-instance" else k, v)
                        for k, v in response.headers.raw
                        if k.lower() not in _NOT_FORWARDED
                    ],
                }
            )
            async with anyio.create_task_group() as group:

                async def stop_when_client_leaves() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()  # and close the owner's stream, or a GET stays open there

                group.start_soon(stop_when_client_leaves)
                with anyio.CancelScope() as relaying:
                    if scope["method"] == "GET":
                        self._streams.add(relaying)
                        if self._closing:
                            relaying.cancel()
                    try:
                        async for chunk in response.aiter_raw():
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    except httpx2.HTTPError as exc:
                        # End cleanly: the SDK client reconnects a GET stream that ended, but gives up after errors.
                        log.warning("the owner's stream broke off: %s", exc.__class__.__name__)
                    finally:
                        self._streams.discard(relaying)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


async def cluster_secret(redis: Redis) -> bytes:
    """The secret all instances share to sign forwarded requests: made once, by whichever instance comes first
    (and again after Redis lost its data; the instances re-read it every few seconds, so they converge).

    Whoever can read Redis can already read every session, so keeping the secret there adds no exposure,
    and nothing secret is committed or differs between processes.
    """
    with unavailable_on_error():
        await redis.set(CLUSTER_SECRET, secrets.token_hex(32), nx=True)
        value = await redis.get(CLUSTER_SECRET)
    return bytes.fromhex(value.decode())
