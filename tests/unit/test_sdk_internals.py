"""Fails loudly when an SDK upgrade moves a private name that mcp_cluster/sdk_internals.py relies on."""

from __future__ import annotations

import functools
from importlib.metadata import version

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler

from app.bulletins import MemoryBulletins
from app.counters import MemoryHandleCounters
from app.tools import UPDATES, Demo, build_server
from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster import sdk_internals
from mcp_cluster.auth.keys import KeySet
from mcp_cluster.auth.verifier import JWTVerifier
from mcp_cluster.sessions.connections import Connections
from mcp_cluster.sessions.subscriptions import ResourceSubscriptions
from mcp_cluster.shared.listen_streams import ListenStreamsPerClient


def test_sdk_version_is_the_pinned_one():
    assert version("mcp") == "2.3.0", "mcp_cluster/sdk_internals.py was checked against mcp 2.3.0; re-check it"


def test_private_names_still_exist():
    demo = Demo(PROJECT_ROOT / "data", MemoryHandleCounters(10), MemoryBulletins(), "app1", "stateful-sse")
    mcp = build_server(demo)
    ResourceSubscriptions(UPDATES, Connections()).install(mcp)
    assert isinstance(sdk_internals.lowlevel_server(mcp), Server)
    assert hasattr(Server, "add_request_handler")
    mcp.streamable_http_app()  # creates the session manager
    assert sdk_internals.live_session_ids(mcp) == set()
    assert sdk_internals.lowlevel_server(mcp).get_request_handler("resources/subscribe") is not None


def test_a_bus_given_after_the_server_is_built_serves_notify_and_listen():
    mcp, bus = MCPServer("t"), InMemorySubscriptionBus()
    sdk_internals.use_subscription_bus(mcp, bus)
    assert mcp._subscriptions is bus
    listen = sdk_internals.lowlevel_server(mcp).get_request_handler("subscriptions/listen")
    assert isinstance(listen.handler, ListenStreamsPerClient)
    assert isinstance(listen.handler._handler, ListenHandler) and listen.handler._handler._bus is bus


def test_the_names_the_redis_store_relies_on_still_exist():
    """mcp_cluster/sdk_internals.py: SharedSessionManager and its rebuild (end to end in test_redis_sessions)."""
    import inspect

    from mcp.server.connection import Connection
    from mcp.server.runner import ServerRunner, serve_connection
    from mcp.server.streamable_http import StreamableHTTPServerTransport
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

    manager = StreamableHTTPSessionManager(app=None)
    for name in ("_server_instances", "_session_owners", "_session_creation_lock", "_task_group", "_lifespan_state"):
        assert hasattr(manager, name), name
    for name in ("_discard_session", "_admit_session"):
        assert callable(getattr(StreamableHTTPSessionManager, name)), name
    transport = StreamableHTTPServerTransport(mcp_session_id="abc", idle_timeout=1)
    assert hasattr(transport, "_event_store") and hasattr(transport, "idle_scope")
    assert "inline_methods" in inspect.signature(JSONRPCDispatcher).parameters
    assert {"session_id", "protocol_version_hint"} <= set(inspect.signature(Connection.for_loop).parameters)
    assert {"connection", "lifespan_state"} <= set(inspect.signature(serve_connection).parameters)
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    assert ServerRunner._negotiate_initialize(params)[1] == "2025-11-25"
    assert sdk_internals.negotiated_version({**params, "protocolVersion": "1999-01-01"}) == "2025-11-25"


def test_the_names_the_single_use_guard_relies_on_still_exist():
    from mcp.server.request_state import RequestStateBoundary

    demo = Demo(PROJECT_ROOT / "data", MemoryHandleCounters(10), MemoryBulletins(), "app1", "stateless-json")
    mcp = build_server(demo)
    annotations = functools.partial(anyio.run, sdk_internals.tool_annotations, mcp)
    assert annotations("analyze_with_ai").read_only_hint is True
    assert annotations("confirm_action") is None
    assert annotations("no-such-tool") is None
    boundary = next(m for m in mcp.middleware if isinstance(m, RequestStateBoundary))
    assert sdk_internals.request_state_ttl(boundary) == 600.0  # the SDK's default, until the instance seals its own


def test_the_names_authentication_relies_on_still_exist():
    """Auth given after the server is built: the SDK's app then checks tokens and records session owners."""
    mcp = MCPServer("t")
    verifier = JWTVerifier(KeySet("/nonexistent"), "https://issuer.test", "http://mcp.test/mcp")
    auth = AuthSettings(
        issuer_url="https://issuer.test", resource_server_url="http://mcp.test/mcp", validate_token_resource=True
    )
    assert not sdk_internals.has_own_auth(mcp)
    sdk_internals.require_tokens(mcp, auth, verifier)
    app = mcp.streamable_http_app()
    assert mcp._token_verifier is verifier and sdk_internals.has_own_auth(mcp)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert "/.well-known/oauth-protected-resource/mcp" in paths
    assert mcp.session_manager._session_owners == {}
    assert not sdk_internals.holds(mcp, "a session id")


def test_the_names_exactly_once_relies_on_still_exist():
    """A request's connection and dispatcher (its requests to the client: their ids, and which it waits for), a
    transport's open streams, and what a server says of its lists (mcp_cluster/sessions/,
    mcp_cluster/cluster/event_store.py)."""
    from mcp.server.connection import Connection
    from mcp.server.session import ServerSession
    from mcp.server.streamable_http import GET_STREAM_KEY, StreamableHTTPServerTransport
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

    dispatcher = JSONRPCDispatcher(None, None)
    connection = Connection.for_loop(dispatcher, session_id="s")
    assert sdk_internals.dispatcher_of(connection) is dispatcher
    sdk_internals.issue_request_ids_after(dispatcher, 2**32)
    assert dispatcher._allocate_id() == 2**32 + 1
    dispatcher._pending[7] = object()
    assert sdk_internals.awaits_answer(dispatcher, "7") and not sdk_internals.awaits_answer(dispatcher, 8)
    assert ServerSession(None, connection)._connection is connection
    transport = StreamableHTTPServerTransport(mcp_session_id="abc")
    assert GET_STREAM_KEY not in transport._request_streams
    mcp = MCPServer("lists")
    sdk_internals.tell_list_changes(mcp)
    capabilities = sdk_internals.lowlevel_server(mcp).create_initialization_options().capabilities
    assert capabilities.tools.list_changed and capabilities.resources.list_changed and capabilities.prompts.list_changed


def test_the_fastmcp_names_a_fastmcp_server_is_served_through_still_exist():
    """mcp_cluster/sdk_internals.py `over_fastmcp`: the low-level server FastMCP 4 builds, and its custom routes."""
    from fastmcp import FastMCP

    server = FastMCP("probe")
    assert isinstance(server._mcp_server, Server) and server._get_additional_http_routes() == []
    mcp = sdk_internals.over_fastmcp(server)
    assert sdk_internals.lowlevel_server(mcp) is server._mcp_server and sdk_internals.fastmcp_under(mcp) is server
