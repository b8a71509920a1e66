"""The demo server served as one instance of several: what `python -m app` runs.

Run it with `python -m app` (which checks the settings first) or `uvicorn --factory app.asgi:create_app`.
It is also the model of how to serve a server of your own: build it, then `instance_app(mcp, settings)`.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from app.bulletins import MemoryBulletins, RedisBulletins
from app.counters import MemoryHandleCounters, RedisHandleCounters
from app.settings import ServerSettings
from app.tools import UPDATES, Demo, build_server
from mcp_cluster.instance import instance_app, shared_redis
from mcp_cluster.logs import configure_logging
from mcp_cluster.settings import InstanceSettings


def create_app(settings: InstanceSettings | None = None, server: ServerSettings | None = None) -> ASGIApp:
    settings = settings or InstanceSettings.from_env()
    server = server or ServerSettings.from_env()
    configure_logging(settings.instance_id, settings.log_level)
    redis = shared_redis(settings)
    if redis is not None:  # the tools' own state, shared by every instance
        handles, bulletins = RedisHandleCounters(redis, settings.session_idle_timeout), RedisBulletins(redis)
    else:
        handles, bulletins = MemoryHandleCounters(settings.max_sessions), MemoryBulletins()

    demo = Demo(server.data_dir, handles, bulletins, settings.instance_id, settings.preset.value)
    mcp = build_server(demo, settings.log_level)
    return instance_app(mcp, settings, subscribable=UPDATES, redis=redis)  # one pool for the tools and the layer
