"""State the tools keep between calls, behind small interfaces.

The memory implementations live in one process: that is exactly the state a
request loses when the balancer sends it to another instance.
"""

from __future__ import annotations

import secrets
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


HANDLE_PREFIX = "ctr_"
HANDLE_PATTERN = r"^ctr_[A-Za-z0-9_-]{22}$"


def new_handle() -> str:
    """An opaque, unguessable counter handle: holding it is what lets a client use the counter."""
    return HANDLE_PREFIX + secrets.token_urlsafe(16)


class HandleCounterStore(Protocol):
    """Counters named by a handle the server issues (2026-07-28 state without sessions, SEP-2567).

    `increment` raises LookupError for a handle this store never issued or has forgotten."""

    async def open(self) -> str: ...

    async def increment(self, handle: str) -> int: ...


class MemoryHandleCounters:
    """Handle counters in this process, at most `limit` (the least recently used go first)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: OrderedDict[str, int] = OrderedDict()

    async def open(self) -> str:
        handle = new_handle()
        self._counts[handle] = 0
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return handle

    async def increment(self, handle: str) -> int:
        if handle not in self._counts:
            raise LookupError(UNKNOWN_HANDLE)
        self._counts[handle] += 1
        self._counts.move_to_end(handle)
        return self._counts[handle]


UNKNOWN_HANDLE = "unknown or expired counter handle; call open_counter for a new one"


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
