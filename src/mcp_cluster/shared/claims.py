"""Names claimed once each for a while, by whichever instance comes first: the forwarded hop's nonces and
the side-effecting `requestState`s (mcp_cluster/shared/single_use.py).

In Redis when the instances share one (`SET NX PX`, so a claim on one instance holds on all), else in this
process. The claim is a write applied once (`applied_once`): redis-py re-sends a command its 1 s socket timeout
cut off, and a bare `SET NX` re-sent after the first went through would refuse the first use as its own replay.
A full Redis refuses the write: a name it already holds is still found there (EXISTS is a read), and a new one
is refused for now (RedisUnavailable, "full": did not run, retry), never claimed in this process alone, where
its replay through another instance would find nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from mcp_cluster.shared.redis import RedisUnavailable, applied_once, run_once, unavailable_on_error
from mcp_cluster.shared.runs import DID_NOT_RUN

MEMORY_CLAIMS = 100_000  # claims a process keeps at most (they expire in the order they were made)
# KEYS[1] the name's key, ARGV[1] how long the claim lasts (ms): 1 the first time, 0 (nothing written) after.
_CLAIM = applied_once("""
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 1 end
return nothing_written(0)
""")


class TooManyClaims(RuntimeError):
    """The process's claims are all still live: forgetting one would let its replay through."""


class Claims:
    def __init__(self, redis: Redis | None, key: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = key  # a format string with one {}: the name
        self.ttl_seconds = ttl_seconds
        self._here: OrderedDict[str, float] = OrderedDict()  # name -> when its claim lapses
        self._claim = _CLAIM.bound_to(redis) if redis is not None else None

    async def first(self, name: str) -> bool:
        """True the first time `name` is claimed while its claim lasts, False after. Redis errors raise
        RedisUnavailable, and a process full of live claims TooManyClaims."""
        if self._redis is not None and self._claim is not None:
            key = self._key.format(name)
            try:
                return bool(await run_once(self._claim, [key], [int(self.ttl_seconds * 1000)]))
            except RedisUnavailable as exc:
                if not isinstance(exc.__cause__, OutOfMemoryError):
                    raise
                with unavailable_on_error():
                    if await self._redis.exists(key):
                        return False  # a replay: refused, full or not
                raise
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
