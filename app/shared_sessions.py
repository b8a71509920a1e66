"""Serving a 2025-11-25 session from any instance: the Redis session store (`MCP_SESSION_STORE=redis`).

For each /mcp request of a session this process does not hold, `SharedSessions` looks up the owner in
Redis and forwards the exchange there; if the owner is dead it takes the session over and rebuilds it
from the stored `initialize` params. docs/design/redis-sessions.md has the whole picture.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlsplit

import anyio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import sdk_internals
from app.forwarding import FORWARD_HEADER, Forwarder, ForwardSigner, OwnerLost, OwnerUnreachable, read_body
from app.legacy_subscriptions import LegacySubscriptions
from app.redis_bus import RedisSubscriptionBus
from app.redis_store import StoreUnavailable, cluster_secret
from app.session_registry import Opening, SessionRegistry
from app.worker_listener import own_listener

MAX_BODY_BYTES = 4 * 1024 * 1024  # the SDK's own limit, applied before the body is buffered for the hop
log = logging.getLogger(__name__)


class Cluster:
    """The pieces every instance shares through Redis, started and stopped with the server."""

    def __init__(
        self,
        redis: Redis,
        registry: SessionRegistry,
        bus: RedisSubscriptionBus,
        subscriptions: LegacySubscriptions,
        worker_host: str | None = None,
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.bus = bus
        self.subscriptions = subscriptions
        self.worker_host = worker_host  # set when this process is one of several workers: it needs its own port
        self.app: ASGIApp | None = None  # the whole app, served on that port
        self.forwarder: Forwarder | None = None
        self.manager: sdk_internals.SharedSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        secret = await cluster_secret(self.redis)
        self.forwarder = Forwarder(ForwardSigner(secret, self.registry.owner_id))
        async with AsyncExitStack() as stack:
            if self.worker_host is not None:
                listener = own_listener(self.app, self.worker_host, self.registry.url)
                self.registry.url = await stack.enter_async_context(listener)
            async with anyio.create_task_group() as group:
                group.start_soon(self.registry.heartbeat)
                group.start_soon(self.bus.run)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await self.registry.stop()
                        await self.forwarder.aclose()
                        await self.redis.aclose()

    async def reachable(self) -> bool:
        try:
            with anyio.fail_after(1.0):
                return bool(await self.redis.ping())
        except (RedisError, TimeoutError):
            return False


class SharedSessions:
    """Routes each request of a session to the process that owns it, taking dead owners' sessions over."""

    def __init__(self, app: ASGIApp, cluster: Cluster) -> None:
        self.app = app
        self.cluster = cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        version = _header(scope, b"mcp-protocol-version")
        # 2026-07-28 requests have no session; the SDK routes on this header before any session lookup.
        if scope["type"] != "http" or scope["path"] != "/mcp" or version not in (None, *HANDSHAKE_PROTOCOL_VERSIONS):
            await self.app(scope, receive, send)
            return
        session_id = _header(scope, b"mcp-session-id")
        started = []

        async def tracked(message: Message) -> None:
            started.append(message["type"])
            await send(message)

        try:
            if _header(scope, FORWARD_HEADER.encode()) is not None:
                await self._serve_forwarded(session_id, scope, receive, tracked)
            elif session_id is None:
                await self._open(scope, receive, tracked)
            else:
                await self._route(session_id, scope, receive, tracked)
        except StoreUnavailable as exc:
            if started:
                raise
            await _error(send, 503, -32603, str(exc))

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request without a session: record the session the SDK opens before the client learns its id."""
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, MAX_BODY_BYTES)
        if body is None:
            await _error(send, 413, -32600, f"request body larger than {MAX_BODY_BYTES} bytes")
            return
        params = _initialize_params(body)
        if params is None:  # not an initialize request: the SDK explains what is wrong
            await self.app(scope, _replay(body, receive), send)
            return
        refused: list[str] = []

        async def register_then_send(message: Message) -> None:
            if refused:
                return  # the client already has the 503; the rest of the SDK's answer is dropped
            if message["type"] == "http.response.start" and message["status"] < 400:
                session_id = _header({"headers": message.get("headers", [])}, b"mcp-session-id")
                if session_id is not None:
                    opening = Opening(params, sdk_internals.negotiated_version(params))
                    try:
                        await self.cluster.registry.register(session_id, opening)
                    except StoreUnavailable as exc:
                        refused.append(session_id)
                        await _error(send, 503, -32603, str(exc))
                        return
            await send(message)

        await self.app(scope, _replay(body, receive), register_then_send)
        if refused:
            await self.cluster.manager.drop(refused[0])

    async def _route(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        manager, registry = self.cluster.manager, self.cluster.registry
        if manager.holds(session_id):
            if await registry.confirm(session_id):
                await self._serve_here(session_id, scope, receive, send)
                return
            log.warning("another instance took over a session held here; handing it on")
            await manager.drop(session_id)
        body: bytes | None = None
        for _ in range(2):  # a second look when another instance claimed the session first
            owner = await registry.lookup(session_id)
            if owner is None:  # ended or expired: the SDK answers 404 Session not found
                await self.app(scope, _replay(body, receive) if body is not None else receive, send)
                return
            if body is None:
                body = await read_body(receive, MAX_BODY_BYTES)
                if body is None:
                    await _error(send, 413, -32600, f"request body larger than {MAX_BODY_BYTES} bytes")
                    return
            if owner.url is not None and owner.owner_id != registry.owner_id:
                try:
                    await self.cluster.forwarder.forward(owner.url, scope, body, receive, send)
                    return
                except OwnerUnreachable:
                    log.warning("a session's owner is unreachable; taking the session over")
                except OwnerLost as exc:
                    # A request may have run before its owner died, so only what is safe to repeat is served again.
                    if not _repeatable(scope["method"], body) or await _accepts_connections(owner.url):
                        registry.forget_lookup(session_id)
                        message = f"the instance serving this session stopped answering ({exc}); retry"
                        await _error(send, 502, -32603, message)
                        return
            if await self._take_over(session_id, owner.owner_id):
                await self._serve_here(session_id, scope, _replay(body, receive), send)
                return
            registry.forget_lookup(session_id)
        await _error(send, 503, -32603, "another instance is taking this session over; retry")

    async def _serve_forwarded(self, session_id: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        """A request another instance sent here because the registry says this process owns the session."""
        signature = _header(scope, FORWARD_HEADER.encode())
        forwarder = self.cluster.forwarder
        if session_id is None or not forwarder.signer.verify(signature, scope["method"], session_id):
            await _error(send, 403, -32600, f"invalid {FORWARD_HEADER} header; only cluster instances may send it")
            return
        manager, registry = self.cluster.manager, self.cluster.registry
        if manager.holds(session_id):
            ours = await registry.confirm(session_id)
        else:
            registry.forget_lookup(session_id)
            owner = await registry.lookup(session_id)
            if owner is None:  # ended meanwhile: the SDK answers 404
                await self.app(scope, receive, send)
                return
            ours = owner.owner_id == registry.owner_id and await self._take_over(session_id, owner.owner_id)
        if ours:
            await self._serve_here(session_id, scope, receive, send)  # never forwarded again: no loops
        else:
            await _error(send, 503, -32603, "this session moved to another instance; retry")

    async def _serve_here(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "DELETE":
            await self.cluster.registry.forget(session_id)  # before the client hears 200, so no instance revives it
        await self.app(scope, receive, send)

    async def _take_over(self, session_id: str, previous_owner: str) -> bool:
        opening = await self.cluster.registry.claim(session_id, previous_owner)
        if opening is None:
            return False
        connection = await self.cluster.manager.rebuild(session_id, opening.params, opening.protocol_version)
        if connection is not None:
            self.cluster.subscriptions.restore(session_id, opening.subscriptions, connection)
        log.info("took a session over", extra={"fields": {"previous_owner": previous_owner}})
        return True


def _initialize_params(body: bytes) -> dict | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("method") == "initialize" and isinstance(message.get("params"), dict):
        return message["params"]
    return None


def _repeatable(method: str, body: bytes) -> bool:
    """GET streams, DELETE, notifications and answers to the server: serving them twice changes nothing."""
    if method in ("GET", "DELETE"):
        return True
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and not ("method" in message and "id" in message)


async def _accepts_connections(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with anyio.fail_after(0.5):
            stream = await anyio.connect_tcp(parts.hostname, parts.port or 80)
    except OSError:
        return False
    except TimeoutError:
        return True  # unknown: assume it lives, so nothing runs twice
    await stream.aclose()
    return True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the already-read body, then whatever the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _error(send: Send, status: int, code: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name), None)
