"""The Redis connection and the state kept in it: the cluster secret and the session counters.

Every key this project writes starts with `mcp:`; `app/session_registry.py` owns the session keys.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

CLUSTER_SECRET_KEY = "mcp:cluster-secret"
SESSION_KEY = "mcp:session:{}"
# One retry: the first command after a Redis restart meets a dead pooled connection.
_RETRY = Retry(NoBackoff(), 1)


class StoreUnavailable(RuntimeError):
    """Redis did not answer in time; the message says so in words a client can act on."""

    def __init__(self, cause: BaseException | None = None) -> None:
        detail = f" ({cause.__class__.__name__})" if cause is not None else ""
        super().__init__(f"the session store (Redis) is unavailable{detail}; retry in a few seconds")


def connect(url: str) -> Redis:
    """A client that fails within about a second when Redis is down, instead of hanging."""
    return Redis.from_url(
        url,
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        retry=_RETRY,
        health_check_interval=10,
        max_connections=256,
    )


async def cluster_secret(redis: Redis) -> bytes:
    """The secret all instances share to sign forwarded requests: made once, by whichever instance comes first.

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
