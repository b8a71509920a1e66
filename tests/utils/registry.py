"""A process's registry of sessions on a real Redis, as an instance composes it (records, liveness, holds)."""

from __future__ import annotations

from redis.asyncio import Redis

from mcp_cluster.cluster.liveness import Liveness
from mcp_cluster.cluster.registry import SessionRegistry
from mcp_cluster.sessions.records import SessionRecords


def registry_on(redis: Redis, instance_id: str, url: str, ttl_seconds: float = 60) -> SessionRegistry:
    return SessionRegistry(SessionRecords(redis, ttl_seconds), Liveness(redis, instance_id, url), ttl_seconds)
