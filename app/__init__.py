"""MCP servers as several instances behind a load balancer: the layer, and a demo server that uses it.

The public API, for a server of your own:

    from app import InstanceSettings, instance_app, session_state

    app = instance_app(mcp, InstanceSettings.from_env())  # any MCPServer, as an ASGI app

and, inside a tool, `await session_state(ctx).increment("calls")` (state kept with the session) and
`await notify_resource_updated(ctx, uri)` (every subscriber, on every instance). docs/layer.md has more.
"""

from app.instance import instance_app
from app.logs import configure_logging
from app.sessions.state import SessionState, SessionStateError, session_state
from app.sessions.subscriptions import SubscribableURIs, notify_resource_updated
from app.settings import InstanceSettings, Preset, SessionStore, SettingsError

__all__ = [
    "InstanceSettings",
    "Preset",
    "SessionState",
    "SessionStateError",
    "SessionStore",
    "SettingsError",
    "SubscribableURIs",
    "configure_logging",
    "instance_app",
    "notify_resource_updated",
    "session_state",
]
