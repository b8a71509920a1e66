"""What an instance checks of the Redis it is given, at start: what Redis's INFO shows the instances' user.

A Redis that may evict keys (any `maxmemory-policy` but `noeviction`) would drop sessions, recorded answers
and claims when full, so it is refused, in one line. No append-only file, or fewer replicas than
`MCP_REDIS_WAIT_REPLICAS` waits for, is said in a warning: a deployment may mean it. A Redis whose INFO the
user may not run (an ACL without `+info`) is used unchecked, with a warning.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, RedisError

from mcp_cluster.shared.redis import closed_as_redis_error

SAFE_POLICY = "noeviction"
log = logging.getLogger(__name__)


class UnsafeRedis(RuntimeError):
    """The Redis given would lose what the layer keeps; the message is one line."""


async def check_redis(redis: Redis) -> None:
    """Raise UnsafeRedis for a Redis that may evict keys; log what else INFO shows amiss."""
    try:
        with closed_as_redis_error():
            info = await redis.info("default")
    except NoPermissionError:
        log.warning("could not check the Redis given (its user may not run INFO): add +info to check it")
        return
    except RedisError as exc:
        log.warning("could not check the Redis given (%s)", exc.__class__.__name__)
        return
    policy = info.get("maxmemory_policy")
    if policy is not None and policy != SAFE_POLICY:
        refused = UnsafeRedis(
            f"Redis's maxmemory-policy is {policy}: a full Redis would evict sessions and recorded answers; "
            f"set it to {SAFE_POLICY} (a full Redis then refuses writes, and the layer answers 503)"
        )
        log.error("refused the Redis given: %s", refused)
        raise refused
    if info.get("aof_enabled") == 0:
        log.warning("Redis keeps no append-only file: a restart of Redis loses every session and write")
    replicas, replicas_to_wait = info.get("connected_slaves", 0), getattr(redis, "replicas_to_wait", 0)
    if replicas < replicas_to_wait:
        log.warning(
            "Redis has %d replicas connected; MCP_REDIS_WAIT_REPLICAS waits for %d: writes fail until they connect",
            replicas,
            replicas_to_wait,
        )
