"""The Redis connection every instance opens when `MCP_REDIS_URL` is set, and the one error it raises."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from app.shared.keys import CALL

# One retry: the first command after a Redis restart meets a dead pooled connection. A retry after a timeout
# re-sends a command Redis may still run: every write it would repeat is `applied_once` or idempotent.
_RETRY = Retry(NoBackoff(), 1)
CALL_KEPT_MS = 30_000  # far longer than a call's retries take (two socket timeouts)


class RedisUnavailable(RuntimeError):
    """Redis did not answer in time; the message says so in words a client can act on."""

    def __init__(self, cause: BaseException | None = None) -> None:
        detail = f" ({cause.__class__.__name__})" if cause is not None else ""
        super().__init__(f"the shared store (Redis) is unavailable{detail}; retry in a few seconds")


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn any Redis error inside the block into RedisUnavailable."""
    try:
        yield
    except RedisError as exc:
        raise RedisUnavailable(exc) from exc


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


def dedicated_client(redis: Redis) -> Redis:
    """A client of the same server on one connection of its own, for what must never wait behind requests."""
    pool = redis.connection_pool
    own = ConnectionPool(connection_class=pool.connection_class, max_connections=1, **pool.connection_kwargs)
    return Redis(connection_pool=own)


def applied_once(body: str) -> str:
    """A write script that a re-send (same call id: its last key) runs as a no-op returning the first answer.

    `body` reads KEYS and ARGV as usual (the wrapper's own are the last of each) and returns its answer.
    """
    return f"""
local call_key, kept_ms = KEYS[#KEYS], ARGV[#ARGV]
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local answer = (function() {body} end)()
if answer == nil then answer = false end
redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
return answer
"""


async def run_once(script: AsyncScript, keys: Sequence[str], args: Sequence[object]):
    """Run an `applied_once` script with a fresh call id; Redis errors become RedisUnavailable."""
    with unavailable_on_error():
        return await script(keys=[*keys, CALL.format(secrets.token_hex(12))], args=[*args, CALL_KEPT_MS])
