"""Whether each process is alive, kept in Redis apart from the session records: `mcp:owner:<owner id>` holds the
process's URL and expires OWNER_TIMEOUT_SECONDS after its last heartbeat. This process's own heartbeat renews
its lease (mcp_cluster/cluster/lease.py); the others' tell who may be forwarded to, and who fell silent."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time

import anyio
from anyio.abc import TaskStatus
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError

from mcp_cluster.cluster.lease import HEARTBEAT_SECONDS, OWNER_TIMEOUT_SECONDS, Lease
from mcp_cluster.sessions.records import RELEASED_PREFIX, Owner
from mcp_cluster.shared import keys
from mcp_cluster.shared.redis import closed_as_redis_error, decoded, dedicated_client, unavailable_on_error

PEERS_CACHE_SECONDS = 1.0
SILENCE_POLL_SECONDS = 0.1  # how often `silent` looks: a beat's key lives OWNER_TIMEOUT_SECONDS, never missed
log = logging.getLogger(__name__)


class Liveness:
    """This process's heartbeat and lease, and what it reads of the others'."""

    def __init__(self, redis: Redis, instance_id: str, url: str) -> None:
        self.owner_id = f"{instance_id}:{secrets.token_hex(4)}"  # one per process: a restart is a new owner
        self.url = url  # where the others forward to it (its forwarding port, once that is bound)
        self.lease = Lease()
        self._redis = redis
        self._beats = dedicated_client(redis)  # a heartbeat never waits for a connection behind requests
        self._peers: tuple[list[Owner], float] = ([], -PEERS_CACHE_SECONDS)

    async def heartbeat(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tell the others, every HEARTBEAT_SECONDS, that this process is alive (nothing else in this loop may
        delay it), renewing the lease from each beat Redis took. Started once the first beat was answered (or
        failed)."""
        started = False
        while True:
            sent = time.monotonic()
            try:
                with closed_as_redis_error():
                    await self._beat()
            except RedisError as exc:
                log.warning("heartbeat failed: %s", exc.__class__.__name__)
            else:
                self.lease.renewed(sent)
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(HEARTBEAT_SECONDS)

    async def _beat(self) -> None:
        key, ttl_ms = keys.OWNER.format(self.owner_id), int(OWNER_TIMEOUT_SECONDS * 1000)
        try:
            await self._beats.set(key, self.url, px=ttl_ms)
        except OutOfMemoryError:  # a full Redis refuses SET, not PEXPIRE: this owner stays alive all the same
            if not await self._beats.pexpire(key, ttl_ms):
                raise

    async def silent(self, owner_id: str) -> bool:
        """Whether another owner's heartbeat stays missing for OWNER_TIMEOUT_SECONDS, timed by this process's
        clock: its lease has then run out (lease.py) whatever Redis's clock did. False as soon as it beats again
        (its key expired early: Redis's clock jumped ahead)."""
        if owner_id.startswith(RELEASED_PREFIX):
            return True  # handed over: no process beats under that name
        deadline = time.monotonic() + OWNER_TIMEOUT_SECONDS
        while True:
            with unavailable_on_error():
                if await self._redis.exists(keys.OWNER.format(owner_id)):
                    return False
            if time.monotonic() >= deadline:
                return True
            await anyio.sleep(SILENCE_POLL_SECONDS)

    async def peers(self) -> list[Owner]:
        """The other owners whose heartbeat is alive (some may be stopping too), with their URLs."""
        owners, when = self._peers
        if time.monotonic() - when < PEERS_CACHE_SECONDS:
            return list(owners)
        with unavailable_on_error():
            names = [name async for name in self._redis.scan_iter(match=keys.OWNER.format("*"), count=1000)]
            values = await self._redis.mget(names) if names else []
        prefix = keys.OWNER.format("")
        owners = [
            Owner(name.decode().removeprefix(prefix), decoded(url))
            for name, url in zip(names, values, strict=True)
            if url is not None and decoded(url) != self.url  # this process, or its predecessor at its address
        ]
        self._peers = (owners, time.monotonic())
        return list(owners)

    async def stop(self) -> None:
        """Say this process is gone, so the others take its sessions over without waiting for the timeout."""
        with contextlib.suppress(RedisError), closed_as_redis_error():
            await self._beats.delete(keys.OWNER.format(self.owner_id))
        await self._beats.aclose(close_connection_pool=True)
