"""MCP servers as several instances behind a load balancer: the layer, and a demo server that uses it.

The public API, for a server of your own:

    from app import InstanceSettings, instance_app, session_state

    asgi_app = instance_app(mcp, InstanceSettings.from_env())  # any MCPServer, as an ASGI app

and, inside a tool, `await session_state(ctx).increment("calls")` (state kept with the session, each write
applied once per call however often it is retried), `request_key(ctx)` (the call's key, for effects of your
own), `fencing_token(ctx)` (who runs it, in which generation of the session) and
`await notify_resource_updated(ctx, uri)` (every subscriber, on every instance). docs/layer.md has more.
"""

import importlib

# Loaded on first use, so `import app.settings` (the load tests, the CLIs) does not pay for the SDK's import.
_PUBLIC = {
    "InstanceSettings": "app.settings",
    "Preset": "app.settings",
    "SessionStore": "app.settings",
    "SettingsError": "app.settings",
    "SessionState": "app.sessions.state",
    "SessionStateError": "app.sessions.state",
    "session_state": "app.sessions.state",
    "request_key": "app.sessions.once",
    "fencing_token": "app.sessions.once",
    "FencingToken": "app.sessions.once",
    "SubscribableURIs": "app.sessions.subscriptions",
    "notify_resource_updated": "app.sessions.subscriptions",
    "configure_logging": "app.logs",
    "instance_app": "app.instance",
    "shared_redis": "app.instance",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
