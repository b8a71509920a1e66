"""Counters named by a handle the server issues: state without a session, for 2026-07-28 clients.

In memory (this process only: exactly what a request loses when the balancer sends it elsewhere) and in
Redis (every instance counts alike).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Protocol

from redis.asyncio import Redis

from app.server.capacity import AtCapacity
from app.shared.redis import applied_once, run_once
from app.shared.runs import written_once

HANDLE_PREFIX = "ctr_"
HANDLE_PATTERN = r"^ctr_[A-Za-z0-9_-]{22}$"
UNKNOWN_HANDLE = "unknown or expired counter handle; call open_counter for a new one"
HANDLE_KEY = "mcp:counter:{}"
HANDLE_INDEX_KEY = "mcp:counters"  # every live handle's key, by when it expires: what the cap counts
MAX_HANDLES = 100_000  # in Redis, for every instance together


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
        async def add() -> str:
            handle = new_handle()
            self._counts[handle] = 0
            while len(self._counts) > self._limit:
                self._counts.popitem(last=False)
            return handle

        return await written_once(add)

    async def increment(self, handle: str) -> int:
        async def add() -> int:
            if handle not in self._counts:
                raise LookupError(UNKNOWN_HANDLE)
            self._counts[handle] += 1
            self._counts.move_to_end(handle)
            return self._counts[handle]

        return await written_once(add)


# A new counter at 0, unless `limit` live ones exist (0 then); expired ones leave the index first.
_OPEN_HANDLE = applied_once("""
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return nothing_written(0) end
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), KEYS[1])
return 1
""")
# Increments a handle's counter and pushes its expiry back; an unknown or expired handle creates nothing.
_INCREMENT_HANDLE = applied_once("""
if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written(nil) end
local value = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1]), KEYS[1])
return value
""")


class RedisHandleCounters:
    """Handle counters every instance shares, at most `limit` (AtCapacity past it); one left unused for
    `ttl_seconds` is forgotten."""

    def __init__(self, redis: Redis, ttl_seconds: float, limit: int = MAX_HANDLES) -> None:
        self._ttl = max(1, int(ttl_seconds))
        self._limit = limit
        self._open = redis.register_script(_OPEN_HANDLE)
        self._increment = redis.register_script(_INCREMENT_HANDLE)

    async def open(self) -> str:
        handle = new_handle()
        if not await run_once(self._open, [HANDLE_KEY.format(handle), HANDLE_INDEX_KEY], [self._ttl, self._limit]):
            raise AtCapacity(
                f"the server holds {self._limit} open counters, the most it may; use one you hold, or retry "
                f"once unused ones have expired ({self._ttl} s after their last use)"
            )
        return handle

    async def increment(self, handle: str) -> int:
        value = await run_once(self._increment, [HANDLE_KEY.format(handle), HANDLE_INDEX_KEY], [self._ttl])
        if value is None:
            raise LookupError(UNKNOWN_HANDLE)
        return int(value)
