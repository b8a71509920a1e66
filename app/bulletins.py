"""The resources `publish_update` changes, one per topic: in memory (this process only) and in Redis
(every instance reads the same)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from app.capacity import AtCapacity
from app.shares import ClientShares
from mcp_cluster.http.clients import ClientId
from mcp_cluster.shared.redis import applied_once, run_once, unavailable_on_error
from mcp_cluster.shared.runs import written_once

BULLETIN_KEY = "mcp:bulletin:{}"
BULLETIN_TTL_SECONDS = 24 * 3600  # a topic nobody published on for a day is forgotten
BULLETIN_INDEX_KEY = "mcp:bulletins"  # every live topic's key, by when it expires: what the cap counts
CLIENT_BULLETINS_KEY = "mcp:bulletins:{}"  # the same, of the topics one client began
MAX_TOPICS = 10_000  # in Redis, for every instance together
MAX_TOPICS_PER_CLIENT = 100  # so one client cannot take every other client's share


@dataclass(frozen=True)
class Bulletin:
    version: int
    text: str


NO_UPDATES = Bulletin(version=0, text="no updates yet")


class Bulletins(Protocol):
    """The resources `publish_update` changes, one per topic."""

    async def publish(self, topic: str, text: str, client: ClientId) -> Bulletin: ...

    async def read(self, topic: str) -> Bulletin: ...


class MemoryBulletins:
    """Bulletins in this process; past `limit` topics the least recently published goes. One client keeps
    `per_client` of the topics it began: past it, its own least recently published goes, never another's."""

    def __init__(self, limit: int = 1000, per_client: int = MAX_TOPICS_PER_CLIENT) -> None:
        self._topics: ClientShares[Bulletin] = ClientShares(limit, per_client)

    async def publish(self, topic: str, text: str, client: ClientId) -> Bulletin:
        async def put() -> Bulletin:
            current = Bulletin(version=self._topics.get(topic, NO_UPDATES).version + 1, text=text)
            self._topics.put(topic, current, client.key)
            return current

        return await written_once(put)

    async def read(self, topic: str) -> Bulletin:
        return self._topics.get(topic, NO_UPDATES)


# The new version of a topic's bulletin; for a new topic, 0 when `limit` live ones exist and -1 when the client's
# index KEYS[3] holds ARGV[4] (the topics it began and still publishes on).
_PUBLISH = applied_once("""
local now = tonumber(redis.call('TIME')[1])
local expiry = now + tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return nothing_written(-1) end
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return nothing_written(0) end
  redis.call('ZADD', KEYS[3], expiry, KEYS[1])
else
  redis.call('ZADD', KEYS[3], 'XX', expiry, KEYS[1])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], expiry, KEYS[1])
return version
""")


class RedisBulletins:
    """Bulletins every instance reads alike (the resource an update notification points to), on at most
    `limit` topics, of which one client may begin `per_client` (AtCapacity past either)."""

    def __init__(self, redis: Redis, limit: int = MAX_TOPICS, per_client: int = MAX_TOPICS_PER_CLIENT) -> None:
        self._redis = redis
        self._limit = limit
        self._per_client = per_client
        self._publish = _PUBLISH.bound_to(redis)

    async def publish(self, topic: str, text: str, client: ClientId) -> Bulletin:
        keys = [BULLETIN_KEY.format(topic), BULLETIN_INDEX_KEY, CLIENT_BULLETINS_KEY.format(client.key)]
        version = int(await run_once(self._publish, keys, [text, BULLETIN_TTL_SECONDS, self._limit, self._per_client]))
        if version < 0:
            raise AtCapacity(
                f"{client.words} began {self._per_client} topics, the most one client may; publish on one of them, "
                "or retry once unused ones have expired (a day after their last update)"
            )
        if not version:
            raise AtCapacity(
                f"the server holds {self._limit} topics, the most it may; publish on an existing one, or retry "
                f"once unused ones have expired (a day after their last update)"
            )
        return Bulletin(version=int(version), text=text)

    async def read(self, topic: str) -> Bulletin:
        with unavailable_on_error():
            version, text = await self._redis.hmget(BULLETIN_KEY.format(topic), ["version", "text"])
        return NO_UPDATES if version is None else Bulletin(version=int(version), text=text.decode())
