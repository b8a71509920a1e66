"""The Redis connection every instance opens when `MCP_REDIS_URL` is set, and the one error it raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# One retry: the first command after a Redis restart meets a dead pooled connection.
_RETRY = Retry(NoBackoff(), 1)


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
