"""Counters named by a handle the server issues: state without a session, for 2026-07-28 clients.

In memory (this process only: exactly what a request loses when the balancer sends it elsewhere) and in
Redis (every instance counts alike).
"""

from __future__ import annotations

import secrets
from typing import Protocol

from redis.asyncio import Redis

from app.capacity import AtCapacity
from app.shares import ClientShares
from mcp_cluster.http.clients import ClientId
from mcp_cluster.shared.redis import applied_once, run_once
from mcp_cluster.shared.runs import written_once

HANDLE_PREFIX = "ctr_"
HANDLE_PATTERN = r"^ctr_[A-Za-z0-9_-]{22}$"
UNKNOWN_HANDLE = "unknown or expired counter handle; call open_counter for a new one"
HANDLE_KEY = "mcp:counter:{}"
HANDLE_INDEX_KEY = "mcp:counters"  # every live handle's key, by when it expires: what the cap counts
CLIENT_HANDLES_KEY = "mcp:counters:{}"  # the same, of the handles one client opened
MAX_HANDLES = 100_000  # in Redis, for every instance together
MAX_HANDLES_PER_CLIENT = 1_000  # so one client cannot take every other client's share


def new_handle() -> str:
    """An opaque, unguessable counter handle: holding it is what lets a client use the counter."""
    return HANDLE_PREFIX + secrets.token_urlsafe(16)


class HandleCounters(Protocol):
    """Counters named by a handle the server issues (2026-07-28 state without sessions, SEP-2567).

    `increment` raises LookupError for a handle never issued or forgotten."""

    async def open(self, client: ClientId) -> str: ...

    async def increment(self, handle: str, client: ClientId) -> int: ...


class MemoryHandleCounters:
    """Handle counters in this process, at most `limit` (the least recently used go first), of which one client
    keeps `per_client`: past it, that client's own least recently used goes, never another client's."""

    def __init__(self, limit: int, per_client: int = MAX_HANDLES_PER_CLIENT) -> None:
        self._counts: ClientShares[int] = ClientShares(limit, per_client)

    async def open(self, client: ClientId) -> str:
        async def add() -> str:
            handle = new_handle()
            self._counts.put(handle, 0, client.key)
            return handle

        return await written_once(add)

    async def increment(self, handle: str, client: ClientId) -> int:
        async def add() -> int:
            if handle not in self._counts:
                raise LookupError(UNKNOWN_HANDLE)
            count = self._counts.get(handle, 0) + 1
            self._counts.put(handle, count, client.key)
            return count

        return await written_once(add)


# A new counter at 0, unless `limit` live ones exist (0 then) or the client's index KEYS[3] holds ARGV[3] (-1);
# expired ones leave the indexes first.
_OPEN_HANDLE = applied_once("""
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return nothing_written(-1) end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return nothing_written(0) end
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), KEYS[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), KEYS[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return 1
""")
# Increments a handle's counter and pushes its expiry back (in the client's index KEYS[3] too, if that client
# opened it); an unknown or expired handle creates nothing.
_INCREMENT_HANDLE = applied_once("""
if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written(nil) end
local value = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
local expiry = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', expiry, KEYS[1])
if redis.call('ZADD', KEYS[3], 'XX', 'CH', expiry, KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
return value
""")


class RedisHandleCounters:
    """Handle counters every instance shares, at most `limit`, and `per_client` opened by one client
    (AtCapacity past either); one left unused for `ttl_seconds` is forgotten. A client's count is of the handles
    it opened and still uses (one only another client uses leaves its count after `ttl_seconds`)."""

    def __init__(
        self, redis: Redis, ttl_seconds: float, limit: int = MAX_HANDLES, per_client: int = MAX_HANDLES_PER_CLIENT
    ) -> None:
        self._ttl = max(1, int(ttl_seconds))
        self._limit = limit
        self._per_client = per_client
        self._open = _OPEN_HANDLE.bound_to(redis)
        self._increment = _INCREMENT_HANDLE.bound_to(redis)

    async def open(self, client: ClientId) -> str:
        handle = new_handle()
        keys = [HANDLE_KEY.format(handle), HANDLE_INDEX_KEY, CLIENT_HANDLES_KEY.format(client.key)]
        opened = int(await run_once(self._open, keys, [self._ttl, self._limit, self._per_client]))
        if opened < 0:
            raise AtCapacity(
                f"{client.words} holds {self._per_client} open counters, the most one client may; use one you hold, "
                f"or retry once unused ones have expired ({self._ttl} s after their last use)"
            )
        if not opened:
            raise AtCapacity(
                f"the server holds {self._limit} open counters, the most it may; use one you hold, or retry "
                f"once unused ones have expired ({self._ttl} s after their last use)"
            )
        return handle

    async def increment(self, handle: str, client: ClientId) -> int:
        keys = [HANDLE_KEY.format(handle), HANDLE_INDEX_KEY, CLIENT_HANDLES_KEY.format(client.key)]
        value = await run_once(self._increment, keys, [self._ttl])
        if value is None:
            raise LookupError(UNKNOWN_HANDLE)
        return int(value)
