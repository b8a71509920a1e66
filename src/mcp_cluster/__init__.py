"""MCP servers as several instances behind a load balancer: the layer, and a demo server that uses it.

The public API, for a server of your own:

    from mcp_cluster import InstanceSettings, instance_app, session_state

    asgi_app = instance_app(mcp, InstanceSettings.from_env())  # any MCPServer, as an ASGI app

and, inside a tool, `await session_state(ctx).increment("calls")` (state kept with the session, each write
applied once per call however often it is retried), `request_key(ctx)` (the call's key, for effects of your
own), `fencing_token(ctx)` (who runs it, in which generation of the session) and
`await notify_resource_updated(ctx, uri)` (every subscriber, on every instance). docs/layer.md has more.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker reads; at run time each name is imported when first used (below)
    from mcp_cluster.instance import instance_app, shared_redis
    from mcp_cluster.logs import configure_logging
    from mcp_cluster.sessions.once import FencingToken, fencing_token, request_key
    from mcp_cluster.sessions.state import SessionState, SessionStateError, session_state
    from mcp_cluster.sessions.subscriptions import SubscribableURIs, notify_resource_updated
    from mcp_cluster.settings import InstanceSettings, Preset, SessionStore, SettingsError

# Loaded on first use, so `import mcp_cluster.settings` (the load tests, the CLIs) does not pay for the SDK's import.
_PUBLIC = {
    "InstanceSettings": "mcp_cluster.settings",
    "Preset": "mcp_cluster.settings",
    "SessionStore": "mcp_cluster.settings",
    "SettingsError": "mcp_cluster.settings",
    "SessionState": "mcp_cluster.sessions.state",
    "SessionStateError": "mcp_cluster.sessions.state",
    "session_state": "mcp_cluster.sessions.state",
    "request_key": "mcp_cluster.sessions.once",
    "fencing_token": "mcp_cluster.sessions.once",
    "FencingToken": "mcp_cluster.sessions.once",
    "SubscribableURIs": "mcp_cluster.sessions.subscriptions",
    "notify_resource_updated": "mcp_cluster.sessions.subscriptions",
    "configure_logging": "mcp_cluster.logs",
    "instance_app": "mcp_cluster.instance",
    "shared_redis": "mcp_cluster.instance",
}
__all__ = [
    "FencingToken",
    "InstanceSettings",
    "Preset",
    "SessionState",
    "SessionStateError",
    "SessionStore",
    "SettingsError",
    "SubscribableURIs",
    "configure_logging",
    "fencing_token",
    "instance_app",
    "notify_resource_updated",
    "request_key",
    "session_state",
    "shared_redis",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
