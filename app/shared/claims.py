"""Names claimed once each for a while, by whichever instance comes first: the forwarded hop's nonces and
the side-effecting `requestState`s (app/shared/single_use.py).

In Redis when the instances share one (`SET NX PX`, so a claim on one instance holds on all), else in this
process. A full Redis refuses the write: a name it already holds is still found there (EXISTS is a read),
and a new one is claimed in this process meanwhile, so a full Redis stops no call.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from app.shared.redis import RedisUnavailable, durable, unavailable_on_error
from app.shared.runs import DID_NOT_RUN

MEMORY_CLAIMS = 100_000  # claims a process keeps at most (they expire in the order they were made)
log = logging.getLogger(__name__)


class TooManyClaims(RuntimeError):
    """The process's claims are all still live: forgetting one would let its replay through."""


class Claims:
    def __init__(self, redis: Redis | None, key: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = key  # a format string with one {}: the name
        self.ttl_seconds = ttl_seconds
        self._here: OrderedDict[str, float] = OrderedDict()  # name -> when its claim lapses

    async def first(self, name: str) -> bool:
        """True the first time `name` is claimed while its claim lasts, False after. Redis errors raise
        RedisUnavailable, and a process full of live claims TooManyClaims."""
        if self._redis is not None:
            key = self._key.format(name)
            try:
                return bool(await durable(self._redis, "SET", key, 1, "NX", "PX", int(self.ttl_seconds * 1000)))
            except RedisUnavailable as exc:
                if not isinstance(exc.__cause__, OutOfMemoryError):
                    raise
            with unavailable_on_error():
                if await self._redis.exists(key):
                    return False
            log.warning("Redis is full: claimed in this process only (%s)", self._key.format("..."))
        return self._first_here(name)

    def _first_here(self, name: str) -> bool:
        now = time.monotonic()
        while self._here and next(iter(self._here.values())) < now:
            self._here.popitem(last=False)
        if name in self._here:
            return False
        if len(self._here) >= MEMORY_CLAIMS:
            raise TooManyClaims(
                f"this instance holds {MEMORY_CLAIMS} claims still live; {DID_NOT_RUN} in a few minutes"
            )
        self._here[name] = now + self.ttl_seconds
        return True
