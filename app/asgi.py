"""The ASGI app each instance serves: /mcp, /healthz, /readyz, and the instance header and access log.

Run it with `python -m app` (which checks the settings first) or
`uvicorn --factory app.asgi:create_app`.
"""

from __future__ import annotations

import logging
import secrets

from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from app import request_state_keys, sdk_internals
from app.cluster import Cluster
from app.legacy_subscriptions import LegacySubscriptions
from app.logs import configure_logging
from app.middleware import InstanceMiddleware, RejectionMessages, SessionIdPrefix
from app.redis_bus import RedisSubscriptionBus
from app.redis_events import RedisEventStore
from app.redis_store import RedisBulletinStore, RedisCounterStore, RedisHandleCounters, connect
from app.server import UPDATES_URI_PATTERN, ServerState, build_server
from app.session_registry import SessionRegistry
from app.settings import SessionStore, Settings
from app.shared_sessions import SharedSessions
from app.shared_state import SharedState
from app.state import MemoryBulletinStore, MemoryCounterStore, MemoryHandleCounters

log = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or Settings.from_env()
    configure_logging(settings.instance_id, settings.log_level)
    keys = settings.request_state_keys
    key_source = "configured" if keys else "redis" if settings.redis_url else "this process only"
    state_security, codec = request_state_keys.ring_security(keys) if keys or settings.redis_url else (None, None)
    redis = connect(settings.redis_url) if settings.redis_url is not None else None
    registry = None
    if settings.session_store is SessionStore.REDIS:  # settings guarantee a Redis URL
        registry = SessionRegistry(redis, settings.instance_id, settings.internal_url, settings.session_idle_timeout)
    save_subscriptions = registry.save_subscriptions if registry is not None else None
    subscriptions = LegacySubscriptions(UPDATES_URI_PATTERN, on_change=save_subscriptions)
    shared, cluster, bus = None, None, None
    if redis is not None:
        bus = RedisSubscriptionBus(redis, f"{settings.instance_id}:{secrets.token_hex(4)}")
        bus.on_remote(subscriptions.announce_event)
        shared = SharedState(redis, bus, None if keys else codec)
        handles, bulletins = RedisHandleCounters(redis, settings.session_idle_timeout), RedisBulletinStore(redis)
    else:
        handles, bulletins = MemoryHandleCounters(settings.max_sessions), MemoryBulletinStore()
    if registry is not None:
        worker_host = settings.listen_host if settings.workers > 1 else None
        cluster = Cluster(redis, registry, subscriptions, worker_host)
        counters = RedisCounterStore(redis)
    else:
        # `mcp` is bound below; the counters only ask it which sessions are open once they are full.
        counters = MemoryCounterStore(settings.max_sessions, live_sessions=lambda: sdk_internals.live_session_ids(mcp))
    state = ServerState(settings, counters, handles, bulletins, shared, cluster)
    mcp = build_server(state, subscriptions, bus, state_security)

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "instance": settings.instance_id})

    @mcp.custom_route("/readyz", methods=["GET"])
    async def readyz(_: Request) -> JSONResponse:
        status = "ready" if state.ready else "starting"
        if state.ready and shared is not None and not await shared.reachable():
            status = "shared store (Redis) unavailable"
        body = {
            "status": status,
            "instance": settings.instance_id,
            "preset": settings.preset.value,
            "store": settings.session_store.value,
            "sessions": len(sdk_internals.live_session_ids(mcp)),  # held by this process
            "request_state_keys": key_source,
            **(request_state_keys.describe(codec) if codec is not None else {}),
        }
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    if codec is None:
        log.warning(
            "NO SHARED REQUEST-STATE KEYS: neither MCP_REQUEST_STATE_KEYS nor MCP_REDIS_URL is set, so this process "
            "seals 2026-07-28 requestState with a random key of its own, and an input-required retry that reaches "
            "another instance fails with -32602 'Invalid or expired requestState'. Fine for one instance; behind a "
            "balancer set MCP_REDIS_URL (a key ring kept in Redis) or give every instance MCP_REQUEST_STATE_KEYS."
        )
    transport_security = TransportSecuritySettings(
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
        transport_security=transport_security,
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
