"""`resources/subscribe` for 2025-11-25 sessions, which MCPServer does not serve by itself.

A subscriber is told of an update on its session's GET stream, which lives in the
process that holds the session: this is the seed's "subscription streams" row.
"""

from __future__ import annotations

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from app import sdk_internals


class LegacySubscriptions:
    def __init__(self) -> None:
        self._mcp: MCPServer | None = None
        self._by_uri: dict[str, dict[str, ServerSession]] = {}

    def install(self, mcp: MCPServer) -> None:
        """Serve resources/subscribe and resources/unsubscribe on `mcp` (stateful presets)."""
        self._mcp = mcp
        server = sdk_internals.lowlevel_server(mcp)
        server.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    async def _subscribe(self, ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        self._by_uri.setdefault(str(params.uri), {})[_session_id(ctx)] = ctx.session
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        self._by_uri.get(str(params.uri), {}).pop(_session_id(ctx), None)
        return EmptyResult()

    async def announce(self, uri: str) -> int:
        """Send notifications/resources/updated to every live subscriber of `uri`; return how many."""
        subscribers = self._by_uri.get(uri)
        if not subscribers or self._mcp is None:
            return 0
        live = sdk_internals.live_session_ids(self._mcp)
        for gone in subscribers.keys() - live:
            del subscribers[gone]
        for session in list(subscribers.values()):
            await session.send_resource_updated(uri)
        return len(subscribers)


def _session_id(ctx: ServerRequestContext) -> str:
    session_id = ctx.request.headers.get("mcp-session-id") if ctx.request is not None else None
    if session_id is None:
        raise MCPError(code=INVALID_REQUEST, message="resources/subscribe needs an MCP session (Mcp-Session-Id)")
    return session_id
