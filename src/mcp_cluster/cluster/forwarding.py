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
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from mcp_cluster.cluster.hop_client import HopClient, HopResponse, OwnerLost, OwnerUnreachable
from mcp_cluster.http.messages import (
    FORWARD_HEADER,
    HANDED_OVER_HEADER,
    LAST_EVENT_ID_HEADER,
    PROTOCOL_VERSION_HEADER,
    SERVED_BY_HEADER,
    SESSION_ID_HEADER,
)
from mcp_cluster.metrics import InstanceMetrics
from mcp_cluster.sessions.records import Owner
from mcp_cluster.shared.keys import CLUSTER_SECRET
from mcp_cluster.shared.redis import REPLACE_IF_SAME, RedisUnavailable, call_function, decoded, unavailable_on_error

# When the balancer is our nginx (the session policy): it asks, per request, to be told the owner of a session
# held elsewhere instead of the request being relayed, and re-sends the request there itself (nginx.conf).
OWNER_REDIRECT_HEADER = b"x-mcp-owner-redirect"  # "on" from nginx; anything else: relay as usual
OWNER_HEADER = b"x-mcp-owner"  # on that 421: the owner's instance name, which nginx maps to its upstream
BALANCER_REDIRECT = (b"x-accel-redirect", b"@session_owner")  # nginx's internal redirect, method and body kept
MAX_SKEW_SECONDS = 10  # a hop older (or newer) than this is refused; its nonce is remembered twice as long
# Every request header the owner acts on: a hop cannot be replayed with another of them.
_SIGNED_HEADERS = (
    SESSION_ID_HEADER,
    PROTOCOL_VERSION_HEADER,
    b"mcp-method",
    b"mcp-name",
    LAST_EVENT_ID_HEADER,
    b"content-type",
    b"accept",
    b"authorization",
    b"host",
    b"origin",
)
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


class OwnerHandedOver(ConnectionError):
    """The instance ran nothing: the session moved (look its owner up again), or it is stopping (try another)."""

    def __init__(self, reason: bytes) -> None:
        super().__init__(reason.decode("latin-1"))
        self.reason = reason


class ClocksApart(ValueError):
    """A hop an instance signed, at a time further from this process's clock than MAX_SKEW_SECONDS."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"this hop was signed {abs(seconds):.0f} s {'before' if seconds > 0 else 'after'} this instance's clock "
            f"says (at most {MAX_SKEW_SECONDS} s apart): the instances' clocks disagree; keep them in sync (NTP)"
        )


@dataclass(frozen=True)
class SignedHop:
    nonce: str
    recipient: str  # the owner id of the process the sender meant the hop for


class ForwardSigner:
    """Signs the forwarded hop with the cluster secret, binding it to the time, the sender, the process it is
    sent to, a nonce and the request (method, target, a hash of the body and every header the owner acts on),
    so a captured header can carry no other request and be used at no other process; that process lets each
    nonce through once (`ClusterMember.first_use`, in its own memory)."""

    def __init__(self, secret: bytes, sender: str) -> None:
        self._secrets = [secret]
        self.sender = sender

    def rotate(self, secret: bytes) -> None:
        """Sign with `secret` from now on; still accept the previous one, for requests already on their way."""
        if secret != self._secrets[0]:
            self._secrets = [secret, self._secrets[0]]

    def sign(self, scope: Scope, body: bytes, recipient: str) -> str:
        stamp, nonce = str(int(time.time())), secrets.token_hex(16)
        mac = self._mac(self._secrets[0], (stamp, self.sender, recipient, nonce), scope, body)
        return f"{stamp};{self.sender};{recipient};{nonce};{mac}"

    def verify(self, header: str, scope: Scope, body: bytes) -> SignedHop | None:
        """The hop's nonce and recipient if `header` signs exactly this request within the window, else None;
        ClocksApart if it does, signed further from this process's clock than the window allows."""
        stamp, sender, recipient, nonce, mac = [*header.split(";"), "", "", "", ""][:5]
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            return None
        if not _hex_digits(nonce, 32) or not mac.isascii():
            return None
        fields = (stamp, sender, recipient, nonce)
        expected = [self._mac(secret, fields, scope, body) for secret in self._secrets]
        if not any(hmac.compare_digest(mac, e) for e in expected):
            return None
        if abs(apart := time.time() - int(stamp)) > MAX_SKEW_SECONDS:
            raise ClocksApart(apart)  # a cluster instance signed it: the instances' clocks disagree
        return SignedHop(nonce, recipient)

    @staticmethod
    def _mac(secret: bytes, fields: tuple[str, ...], scope: Scope, body: bytes) -> str:
        target = (scope.get("raw_path") or scope["path"].encode()) + b"?" + scope.get("query_string", b"")
        present: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:  # one pass; the first value of a repeated header, as `header` reads
            present.setdefault(key.lower(), value)
        headers = [present.get(name, b"") for name in _SIGNED_HEADERS]
        parts = [*(field.encode() for field in fields), scope["method"].encode(), target, *headers]
        message = b"|".join([*parts, hashlib.sha256(body).hexdigest().encode()])
        return hmac.new(secret, message, hashlib.sha256).hexdigest()


class Forwarder:
    """Replays one HTTP exchange against the owner's URL over pooled keep-alive connections."""

    def __init__(self, signer: ForwardSigner, is_peer: Callable[[str], bool], metrics: InstanceMetrics) -> None:
        self.signer = signer
        self.forwarded = metrics.forwarded  # by outcome: relayed, or why not
        self._is_peer = is_peer  # what MCP_PEER_URLS allows: an owner URL read from Redis may be anything
        self._client = HopClient(read_timeout=_READ_TIMEOUT_SECONDS)
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

    async def forward(self, owner: Owner, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Send the request to the owner and stream its answer back; raises before sending anything to the client."""
        counted = scope["method"] != "GET"
        self._relaying += counted
        outcome = "failed"  # the owner stopped answering after the request went (OwnerLost), or the client left
        try:
            await self._forward(owner, scope, body, receive, send)
            outcome = "relayed"
        except OwnerHandedOver:
            outcome = "handed_over"
            raise
        except OwnerUnreachable:
            outcome = "unreachable"
            raise
        finally:
            self._relaying -= counted
            self.forwarded.labels(outcome).inc()

    async def _forward(self, owner: Owner, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        if owner.url is None:
            log.error("cannot forward to %s: its record in Redis names no URL", owner.owner_id)
            raise OwnerUnreachable("no URL in its record")
        if not self._is_peer(owner.url):
            log.error("refused to forward to %r, which Redis names but MCP_PEER_URLS does not allow", owner.url)
            raise OwnerUnreachable("not an instance's address")
        headers = _forwarded(scope["headers"])
        path = scope.get("raw_path") or scope["path"].encode()
        target = path + b"?" + scope["query_string"] if scope.get("query_string") else path
        signature = self.signer.sign({**scope, "headers": headers}, body, owner.owner_id)  # signed as sent
        headers.append((FORWARD_HEADER.encode(), signature.encode()))
        response = await self._client.send(owner.url, scope["method"], target, headers, body)
        handed_over = response.header(HANDED_OVER_HEADER) if response.status == 503 else None
        if handed_over is not None:
            await _drain(response)
            raise OwnerHandedOver(handed_over)
        try:
            answered = [(SERVED_BY_HEADER if k == b"x-mcp-instance" else k, v) for k, v in response.headers]
            await send({"type": "http.response.start", "status": response.status, "headers": _forwarded(answered)})
            ended = False
            if scope["method"] == "GET":
                await self._relay_stream(response, receive, send)
            else:  # a call's answer (JSON, or its SSE events): it ends when the call does
                try:
                    ended = await self._relay_answer(response, receive, send)
                except OwnerLost as exc:
                    # Its answer has begun: nothing can be sent in its place. Ended short, the client sends the
                    # request again with its id, which the instance that serves the session next answers once.
                    log.warning("the owner broke off an answer it had begun: %s", exc)
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def _relay_answer(self, response: HopResponse, receive: Receive, send: Send) -> bool:
        """Pass a call's answer on; whether it ended. Most are read whole, at once; one that goes on (SSE events,
        waiting for the client's answer to a sampling or elicitation request) ends when its client leaves, so the
        owner sees the client gone too (and a retry of the call is not held behind a run no one waits for)."""
        chunks = response.chunks()
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": not response.ended})
            if response.ended:
                return True
            break
        else:
            return False
        async with anyio.create_task_group() as group:

            async def stop_when_client_leaves() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stop_when_client_leaves)
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": not response.ended})
                if response.ended:
                    group.cancel_scope.cancel()
                    return True
            group.cancel_scope.cancel()
        return False

    async def _relay_stream(self, response: HopResponse, receive: Receive, send: Send) -> None:
        """Pass a GET stream on as the owner writes it, until it ends, the client leaves or this instance stops."""
        async with anyio.create_task_group() as group:

            async def stop_when_client_leaves() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()  # and close the owner's stream, or it stays open there

            group.start_soon(stop_when_client_leaves)
            with anyio.CancelScope() as relaying:
                self._streams.add(relaying)
                if self._closing:
                    relaying.cancel()
                try:
                    async for chunk in response.chunks():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except OwnerLost as exc:
                    # End cleanly: the SDK client reconnects a GET stream that ended, but gives up after errors.
                    log.warning("the owner's stream broke off: %s", exc)
                finally:
                    self._streams.discard(relaying)
            group.cancel_scope.cancel()


def _forwarded(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(key, value) for key, value in headers if key not in _NOT_FORWARDED]


async def _drain(response: HopResponse) -> None:
    """Read a short answer to its end, so its connection serves the next hop."""
    async for _ in response.chunks():
        pass
    await response.aclose()


async def cluster_secret(redis: Redis) -> bytes:
    """The secret all instances share to sign forwarded requests: made once, by whichever instance comes first
    (and again after Redis lost its data, or when what Redis holds is not a secret of ours; the instances
    re-read it every few seconds, so they converge).

    Whoever can read Redis can already read every session, so keeping the secret there adds no exposure,
    and nothing secret is committed or differs between processes.
    """
    ours = secrets.token_hex(32)
    with unavailable_on_error():
        await redis.set(CLUSTER_SECRET, ours, nx=True)
        value = await redis.get(CLUSTER_SECRET)
        if not _hex_digits(value, 64):
            log.error("refused the forwarding secret in Redis (%s), and replaced it", _describe(value))
            value = await call_function(REPLACE_IF_SAME.bound_to(redis), [CLUSTER_SECRET], [value or b"", ours])
    if not _hex_digits(value, 64):
        raise RedisUnavailable(ValueError(f"{CLUSTER_SECRET} holds no secret"))
    return bytes.fromhex(decoded(value))


def _hex_digits(value: str | bytes | None, digits: int) -> bool:
    """Whether `value` is exactly `digits` lower-case hex digits (a secret or a nonce of ours)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text is not None and len(text) == digits and all(c in "0123456789abcdef" for c in text)


def _describe(value: bytes | str | None) -> str:
    return "none" if value is None else f"{len(value)} bytes, not 64 hex digits"
