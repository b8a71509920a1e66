"""`resources/subscribe` for 2025-11-25 sessions, which MCPServer does not serve by itself.

A subscriber is told of an update on its session's GET stream, which lives in the process that holds
the session: this is the seed's "subscription streams" row. A tool announces a change with
`await notify_resource_updated(ctx, uri)`: the 2025-11-25 subscribers held here hear it at once, and
`ctx.notify_resource_updated` carries it to 2026-07-28 listeners and, over the event bus, to the
subscribers other instances hold.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from weakref import WeakKeyDictionary

import anyio
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from app import sdk_internals
from app.http.messages import SESSION_ID_HEADER
from app.shared.runs import NOT_RUN

SEND_TIMEOUT = 1.0  # a subscriber whose stream does not take the notification by then is dropped
PER_SESSION = 8  # subscriptions one session may hold: memory stays bounded by the session cap
log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What a notification goes out through: a request's ServerSession, or a rebuilt session's Connection."""

    async def send_resource_updated(self, uri: str) -> None: ...


@dataclass(frozen=True)
class SubscribableURIs:
    pattern: str  # a regular expression every subscribable URI matches
    shown_as: str  # how an error names them, e.g. "updates://<topic>"


class ResourceSubscriptions:
    def __init__(
        self, uris: SubscribableURIs, on_change: Callable[[str, list[str]], Awaitable[None]] | None = None
    ) -> None:
        self._mcp: MCPServer | None = None
        self._uris = uris
        self._uri_pattern = re.compile(uris.pattern)
        self._by_uri: dict[str, dict[str, Subscriber]] = {}
        self._on_change = on_change  # keeps a session's subscriptions where another instance can restore them

    def install(self, mcp: MCPServer) -> None:
        """Serve resources/subscribe and resources/unsubscribe on `mcp` (stateful transports)."""
        self._mcp = mcp
        _INSTALLED[mcp] = self
        server = sdk_internals.lowlevel_server(mcp)
        server.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    async def _subscribe(self, ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        uri, session_id = self._checked(str(params.uri)), _session_id(ctx)
        self._forget_ended()
        held = sum(session_id in subscribers for subscribers in self._by_uri.values())
        if held >= PER_SESSION and session_id not in self._by_uri.get(uri, {}):
            message = f"a session may hold {PER_SESSION} subscriptions at most; {NOT_RUN}: unsubscribe from one first"
            raise MCPError(code=INVALID_PARAMS, message=message)
        self._by_uri.setdefault(uri, {})[session_id] = ctx.session
        await self._changed(session_id)
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        session_id = _session_id(ctx)
        self._by_uri.get(self._checked(str(params.uri)), {}).pop(session_id, None)
        await self._changed(session_id)
        return EmptyResult()

    def restore(self, session_id: str, uris: Iterable[str], subscriber: Subscriber) -> None:
        """Subscribe a session taken over from another instance to what it was subscribed to there."""
        for uri in uris:
            if self._uri_pattern.match(uri):
                self._by_uri.setdefault(uri, {})[session_id] = subscriber

    async def announce_event(self, event: ServerEvent) -> None:
        """An event published on another instance: tell the subscribers held here."""
        if isinstance(event, ResourceUpdated):
            await self.announce(event.uri)

    async def _changed(self, session_id: str) -> None:
        if self._on_change is not None:
            uris = sorted(uri for uri, subscribers in self._by_uri.items() if session_id in subscribers)
            await self._on_change(session_id, uris)

    async def announce(self, uri: str) -> int:
        """Send notifications/resources/updated to every live subscriber of `uri`; return how many got it."""
        self._forget_ended()
        subscribers = self._by_uri.get(uri, {})
        delivered = 0
        for session_id, session in list(subscribers.items()):
            with anyio.move_on_after(SEND_TIMEOUT) as scope:
                try:
                    await session.send_resource_updated(uri)
                    delivered += 1
                except Exception:  # one broken stream must not keep the others from hearing
                    log.warning("dropping a subscriber whose stream failed", exc_info=True)
                    subscribers.pop(session_id, None)
            if scope.cancelled_caught:
                subscribers.pop(session_id, None)
        return delivered

    def _checked(self, uri: str) -> str:
        if not self._uri_pattern.match(uri):
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"cannot subscribe to {uri!r}; {NOT_RUN}: subscribable are {self._uris.shown_as}",
            )
        return uri

    def _forget_ended(self) -> None:
        """Drop sessions that have ended (DELETE or idle timeout), and URIs nobody listens to."""
        live = sdk_internals.live_session_ids(self._mcp) if self._mcp is not None else set()
        for uri, subscribers in list(self._by_uri.items()):
            for ended in subscribers.keys() - live:
                del subscribers[ended]
            if not subscribers:
                del self._by_uri[uri]


_INSTALLED: WeakKeyDictionary[MCPServer, ResourceSubscriptions] = WeakKeyDictionary()


async def notify_resource_updated(ctx: Context, uri: str) -> int:
    """Tell every subscriber of `uri`, on every instance and in both protocols; return how many
    2025-11-25 sessions held here were told."""
    subscriptions = _INSTALLED.get(ctx.mcp_server)
    delivered = await subscriptions.announce(uri) if subscriptions is not None else 0
    await ctx.notify_resource_updated(uri)
    return delivered


def _session_id(ctx: ServerRequestContext) -> str:
    request = ctx.request
    session_id = request.headers.get(SESSION_ID_HEADER.decode()) if request is not None else None
    if session_id is None:
        message = f"resources/subscribe needs an MCP session (Mcp-Session-Id); {NOT_RUN}"
        raise MCPError(code=INVALID_REQUEST, message=message)
    return session_id
