"""What the instances share through Redis whenever `MCP_REDIS_URL` is set, whichever the session store:
the request-state key ring and the event bus, started and stopped with the server, on one connection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mcp_cluster.shared import request_state_keys
from mcp_cluster.shared.bus import RedisSubscriptionBus
from mcp_cluster.shared.redis import closed_as_redis_error
from mcp_cluster.shared.redis_config import check_redis

STARTUP_TIMEOUT_SECONDS = 5.0
log = logging.getLogger(__name__)


class SharedServices:
    def __init__(self, redis: Redis, bus: RedisSubscriptionBus, keys: request_state_keys.KeyRingCodec | None) -> None:
        self.redis = redis
        self.bus = bus
        self.keys = keys  # None: the deployment gave its own keys (MCP_REQUEST_STATE_KEYS)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            await check_redis(self.redis)  # before anything is kept in it
            if self.keys is not None:  # loaded before the first request: nothing is ever sealed with another key
                await request_state_keys.refresh(self.redis, self.keys)
                log.info("request-state keys from Redis", extra={"fields": request_state_keys.describe(self.keys)})
            async with anyio.create_task_group() as group:
                with anyio.fail_after(STARTUP_TIMEOUT_SECONDS):
                    await group.start(self.bus.run)  # ready only once other instances' events reach us
                if self.keys is not None:
                    group.start_soon(request_state_keys.follow, self.redis, self.keys)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.redis.aclose(close_connection_pool=True)  # the pool is ours: connect() made it

    async def reachable(self) -> bool:
        try:
            with anyio.fail_after(1.0), closed_as_redis_error():
                return bool(await self.redis.ping())
        except (RedisError, TimeoutError):
            return False
