"""The ASGI app each instance serves: /mcp, /healthz, /readyz, and the instance header and access log.

Run it with `python -m app` (which checks the settings first) or
`uvicorn --factory app.asgi:create_app`.
"""

from __future__ import annotations

import logging

from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from app import sdk_internals
from app.cluster import Cluster
from app.legacy_subscriptions import LegacySubscriptions
from app.logs import configure_logging
from app.middleware import InstanceMiddleware, RejectionMessages, SessionIdPrefix
from app.redis_bus import RedisSubscriptionBus
from app.redis_events import RedisEventStore
from app.redis_store import RedisBulletinStore, RedisCounterStore, connect
from app.server import UPDATES_URI_PATTERN, ServerState, build_server
from app.session_registry import SessionRegistry
from app.settings import SessionStore, Settings
from app.shared_sessions import SharedSessions
from app.state import MemoryBulletinStore, MemoryCounterStore

log = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or Settings.from_env()
    configure_logging(settings.instance_id, settings.log_level)
    cluster, bus = None, None
    if settings.session_store is SessionStore.REDIS:
        redis = connect(settings.redis_url)
        registry = SessionRegistry(redis, settings.instance_id, settings.internal_url, settings.session_idle_timeout)
        subscriptions = LegacySubscriptions(UPDATES_URI_PATTERN, on_change=registry.save_subscriptions)
        bus = RedisSubscriptionBus(redis, registry.owner_id)
        bus.on_remote(subscriptions.announce_event)
        worker_host = settings.listen_host if settings.workers > 1 else None
        cluster = Cluster(redis, registry, bus, subscriptions, worker_host)
        counters, bulletins = RedisCounterStore(redis), RedisBulletinStore(redis)
    else:
        subscriptions = LegacySubscriptions(UPDATES_URI_PATTERN)
        # `mcp` is bound below; the counters only ask it which sessions are open once they are full.
        counters = MemoryCounterStore(settings.max_sessions, live_sessions=lambda: sdk_internals.live_session_ids(mcp))
        bulletins = MemoryBulletinStore()
    state = ServerState(settings, counters, bulletins, cluster)
    mcp = build_server(state, subscriptions, bus)

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "instance": settings.instance_id})

    @mcp.custom_route("/readyz", methods=["GET"])
    async def readyz(_: Request) -> JSONResponse:
        status = "ready" if state.ready else "starting"
        if state.ready and cluster is not None and not await cluster.reachable():
            status = "session store (Redis) unavailable"
        body = {
            "status": status,
            "instance": settings.instance_id,
            "preset": settings.preset.value,
            "store": settings.session_store.value,
            "sessions": len(sdk_internals.live_session_ids(mcp)),  # held by this process
        }
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    if not settings.request_state_keys:
        log.warning(
            "MCP_REQUEST_STATE_KEYS is not set: this process seals 2026-07-28 requestState with its own random key, "
            "so an input-required retry that reaches another instance fails with -32602 'Invalid or expired "
            "requestState'. Give every instance the same keys."
        )
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(settings.allowed_hosts),
        allowed_origins=list(settings.allowed_origins),
    )
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=settings.preset.json_response,
        stateless_http=settings.preset.stateless,
        session_idle_timeout=settings.session_idle_timeout,
        max_sessions=settings.max_sessions,
        transport_security=security,
    )
    if cluster is not None:
        cluster.manager = sdk_internals.install_shared_sessions(
            mcp,
            cluster.registry.forget,
            lambda session_id: RedisEventStore(cluster.redis, session_id, settings.session_idle_timeout),
        )
        app = SharedSessions(app, cluster)
    app = InstanceMiddleware(RejectionMessages(SessionIdPrefix(app, settings.instance_id)), settings.instance_id)
    if cluster is not None:
        cluster.app = app
    log.info("serving", extra={"fields": {"preset": settings.preset.value, "store": settings.session_store.value}})
    return app
