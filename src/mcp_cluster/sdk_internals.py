"""Every private name of the MCP SDK this project touches, in one place.

`tests/unit/test_sdk_internals.py` fails loudly when an SDK upgrade moves one of them;
the SDK version is pinned in requirements.txt for the same reason.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from weakref import WeakKeyDictionary

import anyio
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateBoundary
from mcp.server.runner import ServerRunner, serve_connection
from mcp.server.streamable_http import GET_STREAM_KEY, EventStore, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import ListenHandler, SubscriptionBus
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import ServerMessageMetadata
from mcp.types import InitializeRequestParams, RequestId, SubscriptionsListenRequestParams, ToolAnnotations

from mcp_cluster.shared.listen_streams import ListenStreamsPerClient

log = logging.getLogger(__name__)


def lowlevel_server(mcp: MCPServer) -> Server:
    """The low-level server, whose public `add_request_handler` serves methods MCPServer leaves out.

    The SDK's migration guide names this attribute as the way until a public one exists.
    """
    return mcp._lowlevel_server


def use_subscription_bus(mcp: MCPServer, bus: SubscriptionBus) -> None:
    """What `MCPServer(subscriptions=bus)` does, for a server already built: `ctx.notify_*` publishes on `bus`
    and `subscriptions/listen` streams listen to it (unless the server was built without that method), at most
    MAX_LISTEN_STREAMS_PER_CLIENT of one client's on this instance."""
    mcp._subscriptions = bus
    server = lowlevel_server(mcp)
    if server.get_request_handler("subscriptions/listen") is not None:
        streams = ListenStreamsPerClient(ListenHandler(bus))
        server.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, streams)


def subscription_bus(mcp: MCPServer) -> SubscriptionBus:
    """The bus `ctx.notify_*` publishes on (the instance's, once `use_subscription_bus` ran)."""
    return mcp._subscriptions


def tell_list_changes(mcp: MCPServer) -> None:
    """Have `mcp` declare to 2025-11-25 clients that it tells them when its lists of tools, prompts and
    resources change (`listChanged`): the layer sends those notifications on the sessions' GET streams."""
    server = lowlevel_server(mcp)
    declared = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
    server.create_initialization_options = functools.partial(  # type: ignore[method-assign]
        server.create_initialization_options, declared
    )


def require_tokens(mcp: MCPServer, auth: AuthSettings, verifier: TokenVerifier) -> None:
    """What `MCPServer(auth=auth, token_verifier=verifier)` does, for a server already built: its app then
    checks tokens, serves the protected-resource metadata, and binds sessions and requestState to them."""
    mcp.settings.auth = auth
    mcp._token_verifier = verifier


def has_own_auth(mcp: MCPServer) -> bool:
    return mcp.settings.auth is not None


async def tool_annotations(mcp: MCPServer, name: str) -> ToolAnnotations | None:
    """The annotations of a tool of `mcp` (None for a tool it does not have, or one without)."""
    fastmcp = _FASTMCP_UNDER.get(mcp)
    if fastmcp is not None:  # its tools may come from providers, looked up asynchronously
        found = await fastmcp.get_tool(name)
        return found.annotations if found is not None else None
    tool = mcp._tool_manager.get_tool(name)
    return tool.annotations if tool is not None else None


_FASTMCP_UNDER: WeakKeyDictionary[MCPServer, Any] = WeakKeyDictionary()


def over_fastmcp(server: Any) -> MCPServer:
    """An MCPServer serving a FastMCP 4 server's low-level server, so the layer serves it as it serves its own:
    the same session manager, middleware chain, request-state boundary and lifespan (FastMCP's, entered by the
    session manager). FastMCP's HTTP app, its host/origin guard and its auth are not used: the instance's are."""
    facade = MCPServer(server.name)
    facade._lowlevel_server = server._mcp_server
    facade._custom_starlette_routes.extend(server._get_additional_http_routes())  # its @custom_route ones
    _FASTMCP_UNDER[facade] = server
    return facade


def fastmcp_under(mcp: MCPServer) -> Any:
    """The FastMCP server `mcp` stands for (`over_fastmcp`), or None."""
    return _FASTMCP_UNDER.get(mcp)


def request_state_ttl(boundary: RequestStateBoundary) -> float:
    """How long a requestState the boundary seals stays valid, in seconds."""
    return boundary._security.ttl


def live_session_ids(mcp: MCPServer) -> set[str]:
    """Ids of the sessions this process holds now (stateful presets only)."""
    return set(mcp.session_manager._server_instances)


def serves(mcp: MCPServer, session_id: str, requestor: AuthorizationContext | None) -> bool:
    """Whether this process holds the session and the SDK would serve it to `requestor` (the principal that
    opened it, or None without auth): otherwise the SDK answers 404 "Session not found"."""
    return holds(mcp, session_id) and mcp.session_manager._session_owners.get(session_id) == requestor


def holds(mcp: MCPServer, session_id: str) -> bool:
    """Whether this process holds the session now (stateful presets only)."""
    return session_id in mcp.session_manager._server_instances


def connection_of(ctx: ServerRequestContext) -> Connection:
    """The connection (one per 2025-11-25 session) a request arrived on."""
    return ctx.session._connection


def dispatcher_of(connection: Connection) -> JSONRPCDispatcher:
    """The dispatcher a session's requests to the client go out through (its connection's outbound channel)."""
    outbound = connection.outbound
    # The SDK types the channel as any Outbound; a streamable HTTP session's, the only kind served here, is this.
    assert isinstance(outbound, JSONRPCDispatcher)
    return outbound


def issue_request_ids_after(dispatcher: JSONRPCDispatcher, last_id: int) -> None:
    """Have the dispatcher number its next request to the client `last_id + 1` (it counts up from there)."""
    dispatcher._next_id = last_id


def awaits_answer(dispatcher: JSONRPCDispatcher, request_id: RequestId) -> bool:
    """Whether the dispatcher waits for the client's answer to its request `request_id` (the SDK's own matching)."""
    return coerce_request_id(request_id) in dispatcher._pending


def stop_orphaned(connection: Connection, request_id: RequestId) -> bool:
    """Stop the handler of the client's request `request_id`, whose POST stream has closed, as the client's
    `notifications/cancelled` would; False when no such request is running.

    Unlike a cancel, the request's stream is not ended with a "cancelled" error: written after the handler stops,
    that error would end the stream of the same request sent again (the SDK routes it by id).
    """
    in_flight = dispatcher_of(connection)._in_flight.get(coerce_request_id(request_id))
    if in_flight is None:
        return False
    if isinstance(in_flight.dctx.message_metadata, ServerMessageMetadata):
        in_flight.dctx.message_metadata.on_request_unanswered = None
    in_flight.dctx.cancel_requested.set()
    in_flight.scope.cancel()
    return True


def negotiated_version(params: dict[str, Any]) -> str:
    """The protocol version the SDK picks for these `initialize` params (the SDK's own rule, reused)."""
    return ServerRunner._negotiate_initialize(params)[1]


class SharedSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, able to serve a session another process opened, and to say when one ends.

    Installed by swapping the class of the manager MCPServer built, so the SDK's own routing stays in place.
    """

    on_session_end: Callable[[str], Awaitable[None]]
    # One store per session (the SDK's has no session), told whether the session's GET stream is open here.
    event_store_for: Callable[[str, Callable[[], bool]], EventStore] | None = None

    def holds(self, session_id: str) -> bool:
        return session_id in self._server_instances

    def held(self) -> list[str]:
        return list(self._server_instances)

    async def settled(self) -> None:
        """Wait until no session is being opened or rebuilt (both hold the creation lock)."""
        async with self._session_creation_lock:
            pass

    def event_store_of(self, session_id: str) -> EventStore | None:
        """The event store of a session held here (None: not held, or no store of ours)."""
        transport = self._server_instances.get(session_id)
        return transport._event_store if transport is not None and self.event_store_for is not None else None

    def has_room(self) -> bool:
        return self.max_sessions is None or len(self._server_instances) < self.max_sessions

    async def rebuild(
        self,
        session_id: str,
        params: dict[str, Any],
        protocol_version: str,
        principal: AuthorizationContext | None = None,
    ) -> Connection | None:
        """Serve `session_id` here from its stored `initialize` params, as if this process had opened it for
        `principal` (the SDK then refuses the session to anyone else, as for a session opened here).

        Returns the session's connection (its standalone channel reaches the client's GET stream), or None
        when the session is already served here.
        """
        client_params = InitializeRequestParams.model_validate(params, by_name=False)
        transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=self.json_response,
            event_store=self.event_store,
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )

        self._own_event_store(transport)

        async def run_server(*, task_status: TaskStatus[Connection] = anyio.TASK_STATUS_IGNORED) -> None:
            async with transport.connect() as (read_stream, write_stream):
                dispatcher = JSONRPCDispatcher(read_stream, write_stream, inline_methods=frozenset({"initialize"}))
                connection = Connection.for_loop(dispatcher, session_id=session_id)
                connection.client_params = client_params
                connection.protocol_version = protocol_version
                connection.initialized.set()
                task_status.started(connection)
                try:
                    with transport.idle_scope or anyio.CancelScope():
                        await serve_connection(
                            self.app, dispatcher, connection=connection, lifespan_state=self._lifespan_state
                        )
                except Exception:
                    log.exception("a rebuilt session crashed")
                finally:
                    await self._discard_session(session_id, transport)

        # Under the lock until the transport is connected: no request may reach it half-built.
        async with self._session_creation_lock:
            if session_id in self._server_instances:
                return None
            assert self._task_group is not None
            connection = await self._task_group.start(run_server)
            if transport.idle_scope is not None and self.session_idle_timeout is not None:
                # The SDK starts the idle countdown when a request ends; a rebuilt session has had none yet.
                transport.idle_scope.deadline = anyio.current_time() + self.session_idle_timeout
            self._server_instances[session_id] = transport
            if principal is not None:
                self._session_owners[session_id] = principal
        return connection

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None:
            self._own_event_store(transport)
        return transport

    def _own_event_store(self, transport: StreamableHTTPServerTransport) -> None:
        if self.event_store_for is not None:
            live = functools.partial(_get_stream_open, transport)
            assert transport.mcp_session_id is not None  # a stateful manager's transports all have one
            transport._event_store = self.event_store_for(transport.mcp_session_id, live)

    def end_get_streams(self) -> int:
        """End the GET stream of every session held here (their clients reconnect with Last-Event-ID); returns
        how many sessions are held."""
        for transport in self._server_instances.values():
            transport.close_standalone_sse_stream()
        return len(self._server_instances)

    async def drop(self, session_id: str) -> None:
        """Stop serving `session_id` here (another process owns it now); its stored state stays."""
        transport = self._server_instances.get(session_id)
        if transport is not None:
            await StreamableHTTPSessionManager._discard_session(self, session_id, transport)

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        ended = _ended(transport)
        was_here = self._server_instances.get(session_id) is transport
        await super()._discard_session(session_id, transport)
        if ended and was_here:
            with anyio.CancelScope(shield=True):
                await self.on_session_end(session_id)


def _ended(transport: StreamableHTTPServerTransport) -> bool:
    """Whether a session's transport was ended by its client (DELETE) or its idle timeout, not by this process
    shutting down or letting it go."""
    return transport.is_terminated or (transport.idle_scope is not None and transport.idle_scope.cancel_called)


def tell_session_ends(mcp: MCPServer, on_end: Callable[[str], None]) -> None:
    """Call `on_end(session_id)` when a session served here ends (DELETE, idle timeout): after the manager's class
    is final (`install_shared_sessions`), since this wraps the instance's own method."""
    manager = mcp.session_manager
    discard = manager._discard_session

    async def discarded(session_id: str, transport: StreamableHTTPServerTransport) -> None:
        if _ended(transport) and manager._server_instances.get(session_id) is transport:
            on_end(session_id)
        await discard(session_id, transport)

    manager._discard_session = discarded  # type: ignore[method-assign]


def _get_stream_open(transport: StreamableHTTPServerTransport) -> bool:
    """Whether the session's GET stream is open (live) on this transport."""
    return GET_STREAM_KEY in transport._request_streams


def install_shared_sessions(
    mcp: MCPServer,
    on_session_end: Callable[[str], Awaitable[None]],
    event_store_for: Callable[[str, Callable[[], bool]], EventStore] | None = None,
) -> SharedSessionManager:
    """Make the manager `mcp.streamable_http_app()` built a SharedSessionManager (call after building the app)."""
    manager = mcp.session_manager
    manager.__class__ = SharedSessionManager
    assert isinstance(manager, SharedSessionManager)  # for the type checker: it is one from the line above
    manager.on_session_end = on_session_end
    manager.event_store_for = event_store_for
    return manager
