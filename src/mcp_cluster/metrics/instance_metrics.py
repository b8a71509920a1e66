"""Every metric one instance process exports, in a registry of its own (one instance per process; the tests
run several in one)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypedDict

from prometheus_client import CollectorRegistry, Counter, Gauge

from mcp_cluster.metrics.accumulators import Accumulated, LabelledCounter, LabelledHistogram
from mcp_cluster.metrics.call_counts import CallCounts

# From a ping on loopback to a tool call that waits for a person (sampling, elicitation).
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Bound(enum.Enum):
    """The instance's own bounds, as `mcp_refused_total{bound=...}` names them."""

    BODY_SIZE = "body_size"  # a request body above 4 MiB (413)
    MAX_SESSIONS = "max_sessions"  # MCP_MAX_SESSIONS held here (503)
    SESSIONS_PER_CLIENT = "sessions_per_client"  # MCP_MAX_SESSIONS_PER_PRINCIPAL or _PER_ADDRESS (429)


class _Into(TypedDict):
    registry: CollectorRegistry


class InstanceMetrics:
    """The counters, gauges and histograms of one instance; the parts that count get it from the instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        into = _Into(registry=self.registry)
        self.sessions_held = Gauge("mcp_sessions_held", "2025-11-25 sessions this process serves now", **into)
        self.sessions_owned = Gauge(
            "mcp_sessions_owned", "Sessions whose record in Redis names this process (Redis store only)", **into
        )
        self.session_limit = Gauge("mcp_session_limit", "MCP_MAX_SESSIONS: the most this process holds", **into)
        # Counted on every call and Redis command: plain numbers, read when Prometheus scrapes.
        self.call_seconds = LabelledHistogram(
            "mcp_call_duration_seconds", "Time to serve a JSON-RPC request, by method", "method", CALL_BUCKETS
        )
        self.call_failures = LabelledCounter("mcp_call_failures", "(read into mcp_calls_total)", ("method", "outcome"))
        self.redis_seconds = LabelledHistogram(
            "mcp_redis_command_duration_seconds", "Time for a Redis command or pipeline to answer", None, REDIS_BUCKETS
        )
        calls = CallCounts(self.call_seconds, self.call_failures)
        self.registry.register(Accumulated(calls, self.call_seconds, self.redis_seconds))
        self.forwarded = Counter(
            "mcp_forwarded", "Requests relayed to the instance owning their session, by outcome", ["outcome"], **into
        )
        self.owner_redirects = Counter(
            "mcp_owner_redirects", "Requests sent back to nginx with their session's owner named (421)", **into
        )
        self.takeovers = Counter("mcp_takeovers", "Sessions taken over from an owner that died or left", **into)
        self.lease_lapses = Counter(
            "mcp_lease_lapses", "Times this process's lease lapsed, so that it stopped acting for its sessions", **into
        )
        self.handovers = Counter("mcp_handovers", "Sessions handed to the other instances while draining", **into)
        self.draining = Gauge("mcp_draining", "1 from SIGTERM until the process stops", **into)
        self.ready = Gauge("mcp_ready", "1 while /readyz answers ready", **into)
        self.redis_errors = Counter("mcp_redis_errors", "Redis commands that failed or timed out", **into)
        self.refused = Counter("mcp_refused", "Requests refused by one of the instance's bounds", ["bound"], **into)
        for bound in Bound:
            self.refused.labels(bound.value)  # every bound shows, at 0 until it is reached

    def follow_sessions(self, held: Callable[[], int], owned: Callable[[], int] | None, limit: int) -> None:
        """Read the session gauges when Prometheus scrapes, not on every change."""
        self.sessions_held.set_function(held)
        if owned is not None:
            self.sessions_owned.set_function(owned)
        self.session_limit.set(limit)

    def refuse(self, bound: Bound) -> None:
        self.refused.labels(bound.value).inc()
