"""State the tools keep between calls, behind small interfaces.

The memory implementations live in one process: that is exactly the state a
request loses when the balancer sends it to another instance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol


class CounterStore(Protocol):
    """Session-scoped counters: `increment` returns 1, 2, 3, ... per session."""

    async def increment(self, session_id: str) -> int: ...


class MemoryCounterStore:
    """Counters in this process, at most `limit` of them.

    Past the limit, counters of sessions that have ended go first (`live_sessions` says which
    are open), then the least recently used: an open session keeps its count while there are
    no more than `limit` open sessions, which the SDK's own session cap guarantees.
    """

    def __init__(self, limit: int, live_sessions: Callable[[], Collection[str]] = tuple) -> None:
        self._limit = limit
        self._live_sessions = live_sessions
        self._counts: OrderedDict[str, int] = OrderedDict()

    async def increment(self, session_id: str) -> int:
        value = self._counts.pop(session_id, 0) + 1
        self._counts[session_id] = value
        if len(self._counts) > self._limit:
            live = set(self._live_sessions())
            for ended in [sid for sid in self._counts if sid not in live and sid != session_id]:
                del self._counts[ended]
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return value


@dataclass(frozen=True)
class Bulletin:
    version: int
    text: str


NO_UPDATES = Bulletin(version=0, text="no updates yet")


class BulletinStore(Protocol):
    """The resources `publish_update` changes, one per topic."""

    async def publish(self, topic: str, text: str) -> Bulletin: ...

    async def read(self, topic: str) -> Bulletin: ...


class MemoryBulletinStore:
    """Bulletins in this process; past `limit` topics the least recently published goes."""

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._topics: OrderedDict[str, Bulletin] = OrderedDict()

    async def publish(self, topic: str, text: str) -> Bulletin:
        current = Bulletin(version=self._topics.pop(topic, NO_UPDATES).version + 1, text=text)
        self._topics[topic] = current
        while len(self._topics) > self._limit:
            self._topics.popitem(last=False)
        return current

    async def read(self, topic: str) -> Bulletin:
        return self._topics.get(topic, NO_UPDATES)
