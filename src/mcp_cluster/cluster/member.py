"""This process as a member of the cluster, started and stopped with the server: its entry in the session
registry and its heartbeat, the sweep that lets go of sessions taken over, the signing secret of the
forwarded hop, and the port of its own that the other processes forward to (when it has one)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from redis.asyncio import Redis
from starlette.types import ASGIApp

from mcp_cluster import sdk_internals
from mcp_cluster.cluster.event_store import RedisEventStore
from mcp_cluster.cluster.forward_listener import forwarding_port
from mcp_cluster.cluster.forwarding import MAX_SKEW_SECONDS, Forwarder, ForwardSigner, cluster_secret
from mcp_cluster.cluster.lease import STOP_AFTER_SECONDS
from mcp_cluster.cluster.registry import SessionRegistry
from mcp_cluster.metrics import InstanceMetrics
from mcp_cluster.sessions.subscriptions import ResourceSubscriptions
from mcp_cluster.shared.claims import Claims, TooManyClaims
from mcp_cluster.shared.redis import RedisUnavailable

SECRET_CHECK_SECONDS = 5.0
log = logging.getLogger(__name__)


class ClusterMember:
    """This process as one of the cluster's: what it runs for the others, and what routing asks of it."""

    def __init__(
        self,
        redis: Redis,
        registry: SessionRegistry,
        manager: sdk_internals.SharedSessionManager,
        subscriptions: ResourceSubscriptions | None,
        is_peer: Callable[[str], bool],
        forward_to: tuple[str, Sequence[int]] | None = None,
        metrics: InstanceMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.manager = manager  # the server's sessions held here
        self.metrics = metrics or InstanceMetrics()  # what the router, the relay and the handover count
        # In this process's memory: a hop is signed for one process (its owner id), so no other may take it.
        self._nonces = Claims(None, "{}", 2 * MAX_SKEW_SECONDS)
        self.registry = registry
        self.subscriptions = subscriptions  # restored on takeover; None when the server has no subscribable URIs
        self.is_peer = is_peer  # the only URLs requests are forwarded to (MCP_PEER_URLS)
        self.forward_to = forward_to  # (host, ports) of the forwarding port; None: forwarded to the public port
        self._forwarder: Forwarder | None = None

    @property
    def forwarder(self) -> Forwarder:
        """What relays requests to the other instances: made when the member starts running."""
        if self._forwarder is None:
            raise RuntimeError("the cluster member forwards nothing before it runs (ClusterMember.running)")
        return self._forwarder

    def event_store_of(self, session_id: str) -> RedisEventStore | None:
        """The event store of a session held here (None: not held here). Every one is a RedisEventStore: the
        instance has the manager make each one so."""
        store = self.manager.event_store_of(session_id)
        return store if isinstance(store, RedisEventStore) else None

    @asynccontextmanager
    async def running(self, app: ASGIApp) -> AsyncIterator[None]:
        """Run this process's part while the block runs; `app` (the whole instance) serves the forwarding port."""
        liveness = self.registry.liveness
        signer = ForwardSigner(await cluster_secret(self.redis), self.registry.owner_id)
        forwarder = self._forwarder = Forwarder(signer, self.is_peer, self.metrics)
        async with AsyncExitStack() as stack:
            if self.forward_to is not None:
                listener = forwarding_port(app, *self.forward_to, liveness.url)
                liveness.url = await stack.enter_async_context(listener)
            async with anyio.create_task_group() as group:
                await group.start(liveness.heartbeat)
                group.start_soon(self.registry.sweep, self.manager.drop)
                group.start_soon(self._stand_down_on_lapse)
                group.start_soon(self._follow_secret)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await liveness.stop()
                        await forwarder.aclose()

    async def first_use(self, nonce: str) -> bool:
        """Whether a signed hop's nonce is new (then remembered as long as its signature lives): a replay is not."""
        try:
            return await self._nonces.first(nonce)
        except TooManyClaims:
            return False

    async def _stand_down_on_lapse(self) -> None:
        """Whenever the lease lapses (no beat answered for STOP_AFTER_SECONDS: this process is cut off from Redis,
        or was paused), end the GET streams of the sessions held here before another instance may take them over.
        Their clients reconnect with Last-Event-ID; what else the sessions send waits for the lease (the router)."""
        lease = self.registry.lease
        while True:
            await lease.lapsed()
            held = self.manager.end_get_streams()
            self.metrics.lease_lapses.inc()
            log.warning(
                "this owner's lease lapsed: it acts for none of its sessions until Redis confirms them ours",
                extra={"fields": {"sessions": held, "stop_after_seconds": STOP_AFTER_SECONDS}},
            )
            await lease.regained()

    async def _follow_secret(self) -> None:
        """Pick up a new signing secret (Redis lost the old one and an instance made another)."""
        while True:
            await anyio.sleep(SECRET_CHECK_SECONDS)
            with contextlib.suppress(RedisUnavailable):  # the heartbeat logs Redis being away
                self.forwarder.signer.rotate(await cluster_secret(self.redis))
