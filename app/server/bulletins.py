"""The resources `publish_update` changes, one per topic: in memory (this process only) and in Redis
(every instance reads the same)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from app.server.capacity import AtCapacity
from app.shared.redis import applied_once, run_once, unavailable_on_error
from app.shared.runs import written_once

BULLETIN_KEY = "mcp:bulletin:{}"
BULLETIN_TTL_SECONDS = 24 * 3600  # a topic nobody published on for a day is forgotten
BULLETIN_INDEX_KEY = "mcp:bulletins"  # every live topic's key, by when it expires: what the cap counts
MAX_TOPICS = 10_000  # in Redis, for every instance together


@dataclass(frozen=True)
class Bulletin:
    version: int
    text: str


NO_UPDATES = Bulletin(version=0, text="no updates yet")


class Bulletins(Protocol):
    """The resources `publish_update` changes, one per topic."""

    async def publish(self, topic: str, text: str) -> Bulletin: ...

    async def read(self, topic: str) -> Bulletin: ...


class MemoryBulletins:
    """Bulletins in this process; past `limit` topics the least recently published goes."""

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._topics: OrderedDict[str, Bulletin] = OrderedDict()

    async def publish(self, topic: str, text: str) -> Bulletin:
        async def put() -> Bulletin:
            current = Bulletin(version=self._topics.pop(topic, NO_UPDATES).version + 1, text=text)
            self._topics[topic] = current
            while len(self._topics) > self._limit:
                self._topics.popitem(last=False)
            return current

        return await written_once(put)

    async def read(self, topic: str) -> Bulletin:
        return self._topics.get(topic, NO_UPDATES)


# The new version of a topic's bulletin; 0 for a new topic when `limit` live ones exist.
_PUBLISH = applied_once("""
local now = tonumber(redis.call('TIME')[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return nothing_written(0) end
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
return version
""")


class RedisBulletins:
    """Bulletins every instance reads alike (the resource an update notification points to), on at most
    `limit` topics (AtCapacity past it)."""

    def __init__(self, redis: Redis, limit: int = MAX_TOPICS) -> None:
        self._redis = redis
        self._limit = limit
        self._publish = redis.register_script(_PUBLISH)

    async def publish(self, topic: str, text: str) -> Bulletin:
        keys, args = [BULLETIN_KEY.format(topic), BULLETIN_INDEX_KEY], [text, BULLETIN_TTL_SECONDS, self._limit]
        version = await run_once(self._publish, keys, args)
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
