"""One instance of N: `instance_app(mcp, settings)` serves any MCPServer behind a load balancer.

    mcp = MCPServer("notes")                      # your tools, as usual
    app = instance_app(mcp, InstanceSettings.from_env())   # ASGI: /mcp, /healthz, /readyz

What it adds, by settings:
- always: the `X-Mcp-Instance` header and a JSON access log, session ids prefixed with the instance id (so a
  balancer can route by session), session-scoped state for the tools (`mcp_cluster.sessions.state`), and 2025-11-25
  `resources/subscribe` for the URIs given as `subscribable`;
- a Redis URL: the 2026-07-28 request-state keys and the server events every instance shares;
- the Redis session store: 2025-11-25 sessions that any instance serves and that outlive their instance;
- a metrics port: what the instance counts (`mcp_cluster.metrics`), for Prometheus.

This module only composes; each concern lives in its own subpackage.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import make_asgi_app
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from mcp_cluster import sdk_internals, telemetry
from mcp_cluster.auth.bearer import RequireBearer
from mcp_cluster.auth.keys import KeySet
from mcp_cluster.auth.verifier import JWTVerifier
from mcp_cluster.cluster.event_store import RedisEventStore
from mcp_cluster.cluster.liveness import Liveness
from mcp_cluster.cluster.member import ClusterMember
from mcp_cluster.cluster.primed_streams import PrimedGetStreams
from mcp_cluster.cluster.registry import SessionRegistry
from mcp_cluster.cluster.router import SessionRouter
from mcp_cluster.http.middleware import InstanceMiddleware, RejectionMessages, SessionIdPrefix, StatelessGetRefused
from mcp_cluster.metrics import InstanceMetrics
from mcp_cluster.metrics.call_timer import CallTimer
from mcp_cluster.servers import serve_http_context, served
from mcp_cluster.serving import side_port
from mcp_cluster.sessions import state
from mcp_cluster.sessions.connections import Connections
from mcp_cluster.sessions.ledger import MemoryLedger, RedisLedger
from mcp_cluster.sessions.once import OncePerRequest
from mcp_cluster.sessions.quota import MemorySessionCounts, RedisSessionCounts, SessionCounts, SessionsPerClient
from mcp_cluster.sessions.records import SessionRecords
from mcp_cluster.sessions.server_requests import ServerRequests
from mcp_cluster.sessions.subscriptions import ListChanges, ResourceSubscriptions, SubscribableURIs
from mcp_cluster.settings import InstanceSettings, SessionStore
from mcp_cluster.shared import request_state_keys
from mcp_cluster.shared.bus import LocalSubscriptionBus, RedisSubscriptionBus
from mcp_cluster.shared.redis import SharedRedis, connect
from mcp_cluster.shared.services import SharedServices
from mcp_cluster.shared.single_use import SingleUseRequestState
from mcp_cluster.shutdown import drain_on_sigterm
from mcp_cluster.telemetry import TracedRequests

log = logging.getLogger("mcp_cluster")
MCP_PATH = "/mcp"
NO_SHARED_KEYS = (
    "NO SHARED REQUEST-STATE KEYS: neither MCP_REQUEST_STATE_KEYS nor MCP_REDIS_URL is set, so this process "
    "seals 2026-07-28 requestState with a random key of its own, and an input-required retry that reaches "
    "another instance fails with -32602 'Invalid or expired requestState'. Fine for one instance; behind a "
    "balancer set MCP_REDIS_URL (a key ring kept in Redis) or give every instance MCP_REQUEST_STATE_KEYS."
)

NO_AUTHENTICATION = (
    "NO AUTHENTICATION: MCP_AUTH_JWKS is not set, so anyone who reaches this server may open sessions and call "
    "every tool, and a session's id is the only credential of its session. Fine on a laptop; in front of users "
    "set MCP_AUTH_JWKS, MCP_AUTH_ISSUER and MCP_AUTH_RESOURCE (docs/configuration.md, Authentication)."
)

FORWARDED_TO_PUBLIC_PORT = (
    "FORWARDING ON THE PUBLIC PORT: MCP_FORWARD_PORT is not set, so the other instances forward sessions' "
    "requests to the port clients use, and whatever reaches it may try signed hops. Set MCP_FORWARD_PORT, and "
    "MCP_FORWARD_HOST to an address only the instances reach (docs/configuration.md, Forwarding)."
)


def shared_redis(settings: InstanceSettings) -> SharedRedis | None:
    """The Redis client of `settings.redis_url` (None without one): pass it to the tools that use Redis and to
    `instance_app(..., redis=...)`, so the process keeps one pool."""
    if settings.redis_url is None:
        return None
    assert settings.redis_wait_replicas is not None  # InstanceSettings settles it (0, or 1 through Sentinels)
    return connect(
        settings.redis_url, settings.redis_wait_replicas, settings.redis_password, settings.redis_ride_through
    )


def instance_app(
    mcp: MCPServer | Any,
    settings: InstanceSettings,
    *,
    subscribable: SubscribableURIs | None = None,
    redis: Redis | None = None,
) -> ASGIApp:
    """The ASGI app serving `mcp` (an MCPServer, or a `fastmcp.FastMCP`) as one instance of several; call it once
    per server and process.

    `redis`: a client of `settings.redis_url` the server's own tools already use, so the process keeps one
    pool (made with `shared_redis(settings)`; the instance closes it at shutdown). Default: one of its own.
    """
    if redis is not None and settings.redis_url is None:
        raise ValueError("a Redis client was given but the settings name no Redis URL (MCP_REDIS_URL)")
    return Instance(served(mcp), settings, subscribable, redis).app


class Instance:
    """The parts one instance runs, built from its settings (each None where the settings leave it out)."""

    def __init__(
        self,
        mcp: MCPServer,
        settings: InstanceSettings,
        subscribable: SubscribableURIs | None,
        redis: Redis | None = None,
    ) -> None:
        if state.bound(mcp):  # before anything is installed on it a second time
            raise RuntimeError(f"{mcp.name!r} is already served by instance_app; build one app per server and process")
        self.mcp, self.settings = mcp, settings
        self.ready = False
        self.draining = False
        self.router: SessionRouter | None = None
        self.metrics = InstanceMetrics()
        self.codec = self._share_request_state_keys()
        self.verifier = self._require_tokens()
        self.redis = redis = redis if redis is not None else shared_redis(settings)
        if isinstance(redis, SharedRedis) and settings.metrics_port is not None:
            redis.metrics = self.metrics  # each command timed, for Prometheus
        SingleUseRequestState(mcp, redis).install()  # around whichever boundary seals this server's state
        registry = records = None
        if settings.session_store is SessionStore.REDIS:  # the settings guarantee a Redis URL
            assert redis is not None  # so there is a client
            records = SessionRecords(redis, settings.session_idle_timeout)
            liveness = Liveness(redis, settings.instance_id, settings.internal_url)
            registry = SessionRegistry(records, liveness, settings.session_idle_timeout)
        self.registry = registry
        self.connections = Connections()  # of the sessions held here: what they are told through
        self.subscriptions = None
        if subscribable is not None and not settings.preset.stateless:
            save = registry.save_subscriptions if registry is not None else None
            self.subscriptions = ResourceSubscriptions(subscribable, self.connections, on_change=save)
            self.subscriptions.install(mcp)
        may_publish = (
            functools.partial(registry.lease.held_within, settings.redis_ride_through) if registry is not None else None
        )
        self.shared = self._share_events(redis, may_publish)
        self.member: ClusterMember | None = None  # made with the app: it serves the SDK's session manager
        live_sessions = functools.partial(sdk_internals.live_session_ids, mcp)
        backend = (
            state.RedisSessionState(records, registry.tenure)
            if registry is not None and records is not None
            else state.MemorySessionState(settings.max_sessions, live_sessions=live_sessions)
        )
        state.bind(mcp, backend, stateless=settings.preset.stateless)
        self.server_requests = ServerRequests(self.connections)
        self.ledger = (
            RedisLedger(redis, settings.retry_horizon)
            if registry is not None and redis is not None
            else MemoryLedger(settings.retry_horizon, settings.max_sessions, live_sessions)
        )
        process = (f"{settings.instance_id}:{secrets.token_hex(4)}", 1)  # the memory store: one holder, ever
        self.tenure = registry.tenure if registry is not None else lambda session_id: process
        self._count_calls(registry)
        self.app = self._asgi_app()

    def _share_request_state_keys(self) -> request_state_keys.KeyRingCodec | None:
        """Seal 2026-07-28 requestState with keys every instance holds; None when there are none to share."""
        keys, redis_url = self.settings.request_state_keys, self.settings.redis_url
        if not keys and redis_url is None:
            log.warning(NO_SHARED_KEYS)
            return None
        security, codec = request_state_keys.ring_security(keys, self.settings.request_state_ttl)
        request_state_keys.seal_with(self.mcp, security)
        return codec

    def _require_tokens(self) -> JWTVerifier | None:
        """With MCP_AUTH_JWKS: the SDK's resource-server auth on this server, with a JWT verifier; else None."""
        settings = self.settings
        if sdk_internals.has_own_auth(self.mcp):
            raise ValueError(
                f"{self.mcp.name!r} was built with auth of its own; give it through the instance settings "
                "(MCP_AUTH_JWKS, MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE), which every instance checks before routing"
            )
        if not settings.auth_enabled:
            log.warning(NO_AUTHENTICATION)
            return None
        # The settings refuse MCP_AUTH_JWKS without MCP_AUTH_ISSUER and MCP_AUTH_RESOURCE.
        assert (
            settings.auth_jwks is not None and settings.auth_issuer is not None and settings.auth_resource is not None
        )
        verifier = JWTVerifier(KeySet(settings.auth_jwks), settings.auth_issuer, settings.auth_resource)
        # From text: AuthSettings validates the URLs by its own rules (which keep an empty path empty).
        auth = AuthSettings.model_validate(
            {
                "issuer_url": settings.auth_issuer,
                "resource_server_url": settings.auth_resource,
                "required_scopes": list(settings.auth_scopes) or None,
                "validate_token_resource": True,
            }
        )
        sdk_internals.require_tokens(self.mcp, auth, verifier)
        return verifier

    def _count_calls(self, registry: SessionRegistry | None) -> None:
        """With a metrics port: time every request the server serves (outermost of its middleware), which costs
        a call 1% more CPU (docs/results.md); and follow its sessions."""
        if self.settings.metrics_port is not None:
            server = sdk_internals.lowlevel_server(self.mcp)
            serves = lambda method: method == "initialize" or server.get_request_handler(method) is not None  # noqa: E731
            server.middleware.insert(0, CallTimer(self.metrics, serves))
        self.metrics.follow_sessions(
            lambda: len(sdk_internals.live_session_ids(self.mcp)),
            registry.owned if registry is not None else None,
            self.settings.max_sessions,
        )

    def _share_events(
        self, redis: Redis | None, may_publish: Callable[[], Awaitable[bool]] | None
    ) -> SharedServices | None:
        """The event bus every server event goes through (over Redis, with a Redis): the 2025-11-25 sessions held
        here hear their subscriptions' updates and every list change from it."""
        bus = (
            RedisSubscriptionBus(redis, f"{self.settings.instance_id}:{secrets.token_hex(4)}", may_publish)
            if redis is not None
            else LocalSubscriptionBus()
        )
        if self.subscriptions is not None:
            bus.on_event(self.subscriptions.announce_event)
        if not self.settings.preset.stateless:
            bus.on_event(ListChanges(self.mcp, self.connections).announce_event)
            sdk_internals.tell_list_changes(self.mcp)
        sdk_internals.use_subscription_bus(self.mcp, bus)
        if redis is None:
            return None
        assert isinstance(bus, RedisSubscriptionBus)  # made over Redis, above
        return SharedServices(redis, bus, None if self.settings.request_state_keys else self.codec)

    def _asgi_app(self) -> ASGIApp:
        settings = self.settings
        self.mcp.custom_route("/healthz", methods=["GET"])(self._healthz)
        self.mcp.custom_route("/readyz", methods=["GET"])(self._readyz)
        sdk_app = self.mcp.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=settings.preset.json_response,
            stateless_http=settings.preset.stateless,
            session_idle_timeout=settings.session_idle_timeout,
            max_sessions=settings.max_sessions,
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=list(settings.allowed_hosts),
                allowed_origins=list(settings.allowed_origins),
            ),
        )
        serve_http_context(self.mcp, sdk_app)
        self._run_with_sdk(sdk_app)
        once = OncePerRequest(
            sdk_app,
            self.mcp,
            self.ledger,
            self.tenure,
            json_response=settings.preset.json_response,
            horizon_seconds=settings.retry_horizon,
            server_requests=self.server_requests,
            connections=self.connections,
        )
        chain = sdk_internals.lowlevel_server(self.mcp).middleware
        chain[0:0] = [self.connections.middleware, once.record]  # outermost: they see every call, initialize too
        chain.append(telemetry.operation_timer)  # innermost: inside the SDK's span
        app: ASGIApp = once
        if (registry := self.registry) is not None and (redis := self.redis) is not None:
            manager = sdk_internals.install_shared_sessions(
                self.mcp,
                registry.forget,
                lambda session_id, live: RedisEventStore(
                    redis,
                    session_id,
                    settings.session_idle_timeout,
                    live,
                    may_store=functools.partial(registry.may_act, session_id, settings.redis_ride_through),
                ),
            )
            ports = settings.forward_ports
            forward_to = (settings.forward_address, ports) if ports is not None else None
            if settings.forwards_to_public_port:
                log.warning(FORWARDED_TO_PUBLIC_PORT)
            member = self.member = ClusterMember(
                redis, registry, manager, self.subscriptions, settings.is_peer, forward_to, self.metrics
            )
            app = PrimedGetStreams(app, MCP_PATH, member.event_store_of)
            app = self.router = SessionRouter(
                app, member, self.server_requests, self.connections, settings.redis_ride_through
            )
        sdk_internals.tell_session_ends(self.mcp, self.connections.ended)
        # Outside the router: a relayed request's span (the relay's), then the owner's, with the SDK's under that.
        app = TracedRequests(app, settings.instance_id, MCP_PATH)
        app = SessionIdPrefix(app, settings.instance_id)
        app = StatelessGetRefused(app, MCP_PATH) if settings.preset.stateless else self._sessions_per_client(app)
        if self.verifier is not None:  # outside the router: it needs the principal to route by
            auth = self.mcp.settings.auth
            assert auth is not None and auth.resource_server_url is not None  # `_require_tokens` set both
            metadata_url = str(build_resource_metadata_url(auth.resource_server_url))
            app = RequireBearer(app, self.verifier, MCP_PATH, metadata_url, settings.auth_scopes)
        app = RejectionMessages(app, self.metrics, settings.max_sessions)
        app = self.front = InstanceMiddleware(app, settings.instance_id, settings.access_log)
        log.info("serving", extra={"fields": {"preset": settings.preset.value, "store": settings.session_store.value}})
        return app

    def _run_with_sdk(self, sdk_app: Starlette) -> None:
        """Start what the instance shares before the SDK's session manager, and stop it after."""
        sdk_lifespan = sdk_app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                if self.shared is not None:
                    await stack.enter_async_context(self.shared.running())
                if self.member is not None:
                    await stack.enter_async_context(self.member.running(self.front))
                if self.verifier is not None:
                    await self.verifier.keys.load()  # now rather than on the first request
                if (ports := self.settings.metrics_ports) is not None:
                    host = self.settings.metrics_host or self.settings.listen_host
                    metrics_app = make_asgi_app(self.metrics.registry)
                    await stack.enter_async_context(side_port(metrics_app, host, ports, "metrics"))
                async with sdk_lifespan(app), drain_on_sigterm(self._drain, self.front):
                    self.ready = True
                    self.metrics.ready.set(1)
                    try:
                        yield
                    finally:
                        self.ready = False
                        self.metrics.ready.set(0)

        sdk_app.router.lifespan_context = lifespan

    def _sessions_per_client(self, app: ASGIApp) -> SessionsPerClient:
        """Inside RequireBearer, which names the principal it counts by (without auth: the client's address)."""
        settings = self.settings
        counts: SessionCounts
        if self.member is not None:  # the cluster's count; a hop between instances was counted where it began
            counts, hops = RedisSessionCounts(self.member.redis), True
        else:
            counts, hops = MemorySessionCounts(functools.partial(sdk_internals.holds, self.mcp)), False
        per_principal, per_address = settings.max_sessions_per_principal, settings.max_sessions_per_address
        return SessionsPerClient(app, MCP_PATH, counts, per_principal=per_principal, per_address=per_address, hops=hops)

    async def _drain(self) -> None:
        """SIGTERM: stop being ready, and with the Redis store hand every session over (memory sessions end)."""
        self.draining = True
        self.metrics.draining.set(1)
        self.metrics.ready.set(0)
        log.info("SIGTERM: draining", extra={"fields": {"within_seconds": self.settings.drain_seconds}})
        if isinstance(self.redis, SharedRedis):  # a stopping instance waits for no Redis: what it cannot hand over
            self.redis.ride_through = 0.0  # moves once it has stopped
        if self.router is not None:
            await self.router.handover.drain(self.settings.drain_seconds)

    async def _healthz(self, _: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "instance": self.settings.instance_id})

    async def _readyz(self, _: Request) -> JSONResponse:
        status = "draining" if self.draining else "ready" if self.ready else "starting"
        if self.ready and self.shared is not None and not await self.shared.reachable():
            status = "shared store (Redis) unavailable"
        settings, codec = self.settings, self.codec
        keys = "configured" if settings.request_state_keys else "redis" if codec is not None else "this process only"
        body = {
            "status": status,
            "instance": settings.instance_id,
            "preset": settings.preset.value,
            "store": settings.session_store.value,
            "sessions": len(sdk_internals.live_session_ids(self.mcp)),  # held by this process
            **({"calls": self.router.handover.calls_running()} if self.router is not None else {}),
            "request_state_keys": keys,
            **(request_state_keys.describe(codec) if codec is not None else {}),
        }
        return JSONResponse(body, status_code=200 if status == "ready" else 503)
