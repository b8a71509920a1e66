"""What a 2025-11-25 session hears on its GET stream: the updates of the resources it subscribed to
(`resources/subscribe`, which MCPServer does not serve by itself), and every change of the server's lists.

A tool announces a change with `await notify_resource_updated(ctx, uri)` (or the SDK's own
`ctx.notify_resource_updated`, `ctx.notify_tools_changed`, ...). The event bus (`mcp_cluster/shared/bus.py`) carries it
to every instance, and each tells the sessions it holds, on their connection; with a Redis it also keeps the
event in its resource's log, and each notification carries the event's log id in its `_meta`
(`UPDATE_META`), which the GET stream's event store keeps beside it: a session taken over later hears what
its former owner did not tell it (`mcp_cluster/cluster/event_store.py`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import anyio
from mcp.server import ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from mcp_cluster import sdk_internals
from mcp_cluster.http.messages import SESSION_ID_HEADER
from mcp_cluster.servers import tool_call_of
from mcp_cluster.sessions.connections import Connections
from mcp_cluster.shared.runs import NOT_RUN

SEND_TIMEOUT = 1.0  # a session whose stream does not take the notification by then is skipped (subscriber: dropped)
PER_SESSION = 8  # subscriptions one session may hold: memory stays bounded by the session cap
UPDATE_META = "mcp-scale-lab/update"  # in a notification's _meta: the log id of the event it tells of
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubscribableURIs:
    pattern: str  # a regular expression every subscribable URI matches
    shown_as: str  # how an error names them, e.g. "updates://<topic>"


class ResourceSubscriptions:
    def __init__(
        self,
        uris: SubscribableURIs,
        connections: Connections,
        on_change: Callable[[str, list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._mcp: MCPServer | None = None
        self._uris = uris
        self._uri_pattern = re.compile(uris.pattern)
        self._connections = connections  # what each session is told through
        self._by_uri: dict[str, set[str]] = {}  # the sessions held here subscribed to each URI
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
        if held >= PER_SESSION and session_id not in self._by_uri.get(uri, set()):
            message = f"a session may hold {PER_SESSION} subscriptions at most; {NOT_RUN}: unsubscribe from one first"
            raise MCPError(code=INVALID_PARAMS, message=message)
        self._by_uri.setdefault(uri, set()).add(session_id)
        await self._changed(session_id)
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        session_id = _session_id(ctx)
        self._by_uri.get(self._checked(str(params.uri)), set()).discard(session_id)
        await self._changed(session_id)
        return EmptyResult()

    def restore(self, session_id: str, uris: Iterable[str]) -> None:
        """Subscribe a session taken over from another instance to what it was subscribed to there."""
        for uri in uris:
            if self._uri_pattern.match(uri):
                self._by_uri.setdefault(uri, set()).add(session_id)

    def subscribed_here(self, uri: str) -> int:
        """How many sessions this process holds are subscribed to `uri`."""
        self._forget_ended()
        return len(self._by_uri.get(uri, ()))

    async def announce_event(self, event: ServerEvent, logged: str | None) -> None:
        """An event on the bus (any instance's, this one's too): tell the subscribers held here."""
        if isinstance(event, ResourceUpdated):
            self._forget_ended()
            sessions = self._by_uri.get(event.uri, set())
            for session_id in list(sessions):
                if not await _tell(self._connections, session_id, event, logged):
                    sessions.discard(session_id)

    async def _changed(self, session_id: str) -> None:
        if self._on_change is not None:
            uris = sorted(uri for uri, subscribers in self._by_uri.items() if session_id in subscribers)
            await self._on_change(session_id, uris)

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
            subscribers &= live
            if not subscribers:
                del self._by_uri[uri]


class ListChanges:
    """Tells every session held here that a list of the server changed (tools, prompts, resources)."""

    def __init__(self, mcp: MCPServer, connections: Connections) -> None:
        self._mcp = mcp
        self._connections = connections

    async def announce_event(self, event: ServerEvent, logged: str | None) -> None:
        if isinstance(event, ToolsListChanged | PromptsListChanged | ResourcesListChanged):
            live = sdk_internals.live_session_ids(self._mcp)
            for session_id, _ in self._connections.held():
                if session_id in live:
                    await _tell(self._connections, session_id, event, logged)


async def _tell(connections: Connections, session_id: str, event: ServerEvent, logged: str | None) -> bool:
    """Send the event's notification on the session's GET stream; False when it could not be sent."""
    connection = connections.get(session_id)
    if connection is None:
        return False
    if logged is not None and not connections.first_telling(session_id, logged):
        return True  # caught up on it already (taken over just now)
    meta = {UPDATE_META: logged} if logged is not None else None
    with anyio.move_on_after(SEND_TIMEOUT) as scope:
        try:
            await _send(connection, event, meta)
            return True
        except Exception:  # one broken stream must not keep the others from hearing
            log.warning("dropping a subscriber whose stream failed", exc_info=True)
            return False
    return not scope.cancelled_caught


async def _send(connection: Connection, event: ServerEvent, meta: dict[str, Any] | None) -> None:
    if isinstance(event, ResourceUpdated):
        await connection.send_resource_updated(event.uri, meta=meta)
    elif isinstance(event, ToolsListChanged):
        await connection.send_tool_list_changed(meta=meta)
    elif isinstance(event, PromptsListChanged):
        await connection.send_prompt_list_changed(meta=meta)
    else:
        await connection.send_resource_list_changed(meta=meta)


_INSTALLED: WeakKeyDictionary[MCPServer, ResourceSubscriptions] = WeakKeyDictionary()


async def notify_resource_updated(ctx: Context | Any, uri: str) -> int:
    """Tell every subscriber of `uri`, on every instance and in both protocols; return how many 2025-11-25
    sessions held here are subscribed to it (each instance tells its own). `ctx`: the SDK's or FastMCP's."""
    server = tool_call_of(ctx).server
    subscriptions = _INSTALLED.get(server) if server is not None else None
    subscribed = subscriptions.subscribed_here(uri) if subscriptions is not None else 0
    if isinstance(ctx, Context):
        await ctx.notify_resource_updated(uri)
    elif server is not None:
        await sdk_internals.subscription_bus(server).publish(ResourceUpdated(uri=uri))
    return subscribed


def _session_id(ctx: ServerRequestContext) -> str:
    request = ctx.request
    session_id: str | None = request.headers.get(SESSION_ID_HEADER.decode()) if request is not None else None
    if session_id is None:
        message = f"resources/subscribe needs an MCP session (Mcp-Session-Id); {NOT_RUN}"
        raise MCPError(code=INVALID_REQUEST, message=message)
    return session_id
