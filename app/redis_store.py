"""The Redis connection and the state kept in it: the cluster secret, the counters, the bulletins.

Every key this project writes starts with `mcp:`; `app/session_registry.py` owns the session keys.
"""

from __future__ import annotations

import secrets

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.state import NO_UPDATES, UNKNOWN_HANDLE, Bulletin, new_handle

CLUSTER_SECRET_KEY = "mcp:cluster-secret"
SESSION_KEY = "mcp:session:{}"
# One retry: the first command after a Redis restart meets a dead pooled connection.
_RETRY = Retry(NoBackoff(), 1)


class StoreUnavailable(RuntimeError):
    """Redis did not answer in time; the message says so in words a client can act on."""

    def __init__(self, cause: BaseException | None = None) -> None:
        detail = f" ({cause.__class__.__name__})" if cause is not None else ""
        super().__init__(f"the shared store (Redis) is unavailable{detail}; retry in a few seconds")


def connect(url: str) -> Redis:
    """A client that fails within about a second when Redis is down, instead of hanging."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=1024,
        timeout=1.0,  # wait this long for a free connection when all are busy, then fail
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        retry=_RETRY,
        health_check_interval=10,
    )
    return Redis(connection_pool=pool)


async def cluster_secret(redis: Redis) -> bytes:
    """The secret all instances share to sign forwarded requests: made once, by whichever instance comes first
    (and again after Redis lost its data; the instances re-read it every few seconds, so they converge).

    Whoever can read Redis can already read every session, so keeping the secret there adds no exposure,
    and nothing secret is committed or differs between processes.
    """
    try:
        await redis.set(CLUSTER_SECRET_KEY, secrets.token_hex(32), nx=True)
        value = await redis.get(CLUSTER_SECRET_KEY)
    except RedisError as exc:
        raise StoreUnavailable(exc) from exc
    return bytes.fromhex(value.decode())


# Increments the counter field of a live session record; a missing record (ended or expired) creates nothing.
_INCREMENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
return redis.call('HINCRBY', KEYS[1], 'counter', 1)
"""


class RedisCounterStore:
    """Session counters as a field of the session's record, so they expire and end with the session."""

    def __init__(self, redis: Redis) -> None:
        self._increment = redis.register_script(_INCREMENT)

    async def increment(self, session_id: str) -> int:
        try:
            value = await self._increment(keys=[SESSION_KEY.format(session_id)])
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        if value is None:
            raise LookupError("this session has ended or expired; initialize a new one")
        return int(value)


HANDLE_KEY = "mcp:counter:{}"
# Increments a handle's counter and pushes its expiry back; an unknown or expired handle creates nothing.
_INCREMENT_HANDLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local value = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return value
"""


class RedisHandleCounters:
    """Handle counters every instance shares; one left unused for `ttl_seconds` is forgotten."""

    def __init__(self, redis: Redis, ttl_seconds: float) -> None:
        self._redis = redis
        self._ttl = max(1, int(ttl_seconds))
        self._increment = redis.register_script(_INCREMENT_HANDLE)

    async def open(self) -> str:
        handle = new_handle()
        try:
            await self._redis.set(HANDLE_KEY.format(handle), 0, ex=self._ttl, nx=True)
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        return handle

    async def increment(self, handle: str) -> int:
        try:
            value = await self._increment(keys=[HANDLE_KEY.format(handle)], args=[self._ttl])
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        if value is None:
            raise LookupError(UNKNOWN_HANDLE)
        return int(value)


BULLETIN_KEY = "mcp:bulletin:{}"
BULLETIN_TTL_SECONDS = 24 * 3600  # a topic nobody published on for a day is forgotten: topics cannot pile up
_PUBLISH = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return version
"""


class RedisBulletinStore:
    """Bulletins every instance reads alike: the resource an update notification points to."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._publish = redis.register_script(_PUBLISH)

    async def publish(self, topic: str, text: str) -> Bulletin:
        try:
            version = await self._publish(keys=[BULLETIN_KEY.format(topic)], args=[text, BULLETIN_TTL_SECONDS])
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        return Bulletin(version=int(version), text=text)

    async def read(self, topic: str) -> Bulletin:
        try:
            version, text = await self._redis.hmget(BULLETIN_KEY.format(topic), ["version", "text"])
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        return NO_UPDATES if version is None else Bulletin(version=int(version), text=text.decode())
