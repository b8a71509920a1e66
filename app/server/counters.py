"""Counters named by a handle the server issues: state without a session, for 2026-07-28 clients.

In memory (this process only: exactly what a request loses when the balancer sends it elsewhere) and in
Redis (every instance counts alike).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Protocol

from redis.asyncio import Redis

from app.shared.redis import applied_once, durable, run_once

HANDLE_PREFIX = "ctr_"
HANDLE_PATTERN = r"^ctr_[A-Za-z0-9_-]{22}$"
UNKNOWN_HANDLE = "unknown or expired counter handle; call open_counter for a new one"
HANDLE_KEY = "mcp:counter:{}"


def new_handle() -> str:
    """An opaque, unguessable counter handle: holding it is what lets a client use the counter."""
    return HANDLE_PREFIX + secrets.token_urlsafe(16)


class HandleCounters(Protocol):
    """Counters named by a handle the server issues (2026-07-28 state without sessions, SEP-2567).

    `increment` raises LookupError for a handle never issued or forgotten."""

    async def open(self) -> str: ...

    async def increment(self, handle: str) -> int: ...


class MemoryHandleCounters:
    """Handle counters in this process, at most `limit` (the least recently used go first)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: OrderedDict[str, int] = OrderedDict()

    async def open(self) -> str:
        handle = new_handle()
        self._counts[handle] = 0
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return handle

    async def increment(self, handle: str) -> int:
        if handle not in self._counts:
            raise LookupError(UNKNOWN_HANDLE)
        self._counts[handle] += 1
        self._counts.move_to_end(handle)
        return self._counts[handle]


# Increments a handle's counter and pushes its expiry back; an unknown or expired handle creates nothing.
_INCREMENT_HANDLE = applied_once("""
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local value = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return value
""")


class RedisHandleCounters:
    """Handle counters every instance shares; one left unused for `ttl_seconds` is forgotten."""

    def __init__(self, redis: Redis, ttl_seconds: float) -> None:
        self._redis = redis
        self._ttl = max(1, int(ttl_seconds))
        self._increment = redis.register_script(_INCREMENT_HANDLE)

    async def open(self) -> str:
        handle = new_handle()
        await durable(self._redis, "SET", HANDLE_KEY.format(handle), 0, "EX", self._ttl, "NX")
        return handle

    async def increment(self, handle: str) -> int:
        value = await run_once(self._increment, [HANDLE_KEY.format(handle)], [self._ttl])
        if value is None:
            raise LookupError(UNKNOWN_HANDLE)
        return int(value)
