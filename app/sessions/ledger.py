"""The record of each keyed request: a 2025-11-25 tool call's first outcome, kept for the retry horizon.

A request is keyed by its session and JSON-RPC id (MCP forbids reusing an id in a session), and its record
holds a digest of the request, who runs it (the owner and generation that hold the session) and, once it
ends, its answer. `begin` decides what a request that arrives does: run (new, or a run that ended without an
outcome or belonged to an owner that lost the session), answer what is recorded, or refuse an id reused for
another request. `finish` records the answer, or marks the run as one a retry may run again.

In memory for the memory store (this process only, where the session lives), in Redis for the Redis store
(`mcp:requests:<session>`, a hash of records, and `mcp:requests-age:<session>`, when each began): every
instance that may serve the session reads the same records.

Bounded per session: `MAX_KEPT_REQUESTS` records, answers of at most `MAX_KEPT_ANSWER_BYTES` each (a larger
one is recorded as run, without its answer) and `MAX_KEPT_BYTES` in all; past a bound the oldest go first.
"""

from __future__ import annotations

import enum
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from app.shared import keys
from app.shared.functions import RedisFunction
from app.shared.redis import run_function

MAX_KEPT_REQUESTS = 1000
MAX_KEPT_ANSWER_BYTES = 64 * 1024
MAX_KEPT_BYTES = 1024 * 1024
Tenure = tuple[str, int]  # (owner id, generation): who holds the session, and since which takeover


class Verdict(enum.Enum):
    RUN = "run"  # run it: new, or again (its last run ended without an outcome, or its owner lost the session)
    DONE = "done"  # it ran: answer what is recorded
    CONFLICT = "conflict"  # the id was used in this session for another request: nothing runs
    STALE = "stale"  # a later holder of the session has it: this process no longer holds the session


@dataclass(frozen=True)
class Begun:
    verdict: Verdict
    answer: bytes | None = None  # DONE: the JSON-RPC answer ({"result": ...} or {"error": ...}); None: not kept
    log: dict[int, Any] = field(default_factory=dict)  # RUN: the request's in-memory writes (memory store)


class RequestLedger(Protocol):
    async def begin(self, session_id: str, key: str, digest: str, tenure: Tenure) -> Begun: ...

    async def finish(self, session_id: str, key: str, tenure: Tenure, answer: bytes | None) -> None:
        """Record `answer` (JSON) as the request's outcome, unless another run of it recorded one first;
        None: this run ended without one, and a retry runs the request again."""


@dataclass
class _Record:
    digest: str
    began: float  # time.monotonic()
    done: bool = False
    answer: bytes | None = None
    log: dict[int, Any] = field(default_factory=dict)


class MemoryLedger:
    """Records in this process, for the sessions it holds (`live_sessions`; the records of ended sessions go
    when more than `limit` sessions have records)."""

    def __init__(
        self,
        horizon_seconds: float,
        limit: int,
        live_sessions: Callable[[], Collection[str]] = tuple,
        max_requests: int = MAX_KEPT_REQUESTS,
        max_bytes: int = MAX_KEPT_BYTES,
    ) -> None:
        self._horizon = horizon_seconds
        self._limit = limit
        self._live_sessions = live_sessions
        self._max_requests, self._max_bytes = max_requests, max_bytes
        self._sessions: dict[str, OrderedDict[str, _Record]] = {}

    async def begin(self, session_id: str, key: str, digest: str, tenure: Tenure) -> Begun:
        records = self._records(session_id)
        now = time.monotonic()
        while records and next(iter(records.values())).began < now - self._horizon:
            records.popitem(last=False)
        record = records.get(key)
        if record is None:
            while len(records) >= self._max_requests:
                records.popitem(last=False)
            record = records[key] = _Record(digest, now)
            return Begun(Verdict.RUN, log=record.log)
        if record.digest != digest:
            return Begun(Verdict.CONFLICT)
        if record.done:
            return Begun(Verdict.DONE, record.answer)
        return Begun(Verdict.RUN, log=record.log)  # one process holds the session: never another's run

    async def finish(self, session_id: str, key: str, tenure: Tenure, answer: bytes | None) -> None:
        records = self._sessions.get(session_id, OrderedDict())
        record = records.get(key)
        if record is None or record.done or answer is None:
            return
        record.done, record.log = True, {}
        if len(answer) > MAX_KEPT_ANSWER_BYTES:
            return
        kept = sum(len(other.answer or b"") for other in records.values())
        for older in [name for name in records if name != key]:
            if kept + len(answer) <= self._max_bytes:
                break
            kept -= len(records.pop(older).answer or b"")
        record.answer = answer

    def _records(self, session_id: str) -> OrderedDict[str, _Record]:
        if session_id not in self._sessions and len(self._sessions) >= self._limit:
            live = set(self._live_sessions())
            for ended in [sid for sid in self._sessions if sid not in live]:
                del self._sessions[ended]
        return self._sessions.setdefault(session_id, OrderedDict())


# Forgets a record (KEYS[1] the records, KEYS[2] when each began), and the bytes its answer took.
_DROP = """
local function drop(name)
  local raw = redis.call('HGET', KEYS[1], name)
  if raw then
    local size = cjson.decode(raw).b
    if size then redis.call('HINCRBY', KEYS[1], '#bytes', -size) end
    redis.call('HDEL', KEYS[1], name)
  end
  redis.call('ZREM', KEYS[2], name)
end
local function keep_for(horizon)
  redis.call('PEXPIRE', KEYS[1], horizon)
  redis.call('PEXPIRE', KEYS[2], horizon)
end
"""
# ARGV: the key, the digest, the owner, the generation, the horizon (ms), the most records a session keeps.
_BEGIN = RedisFunction(
    _DROP
    + """
local clock = redis.call('TIME')
local now, horizon = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000), tonumber(ARGV[5])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - horizon, 'LIMIT', 0, 16)) do drop(old) end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local record = cjson.decode(raw)
  if record.d ~= ARGV[2] then return {'conflict'} end
  if record.s == 'done' then return {'done', record.a or false} end
  if tonumber(record.g) > tonumber(ARGV[4]) then return {'stale'} end
  record.s, record.o, record.g = 'running', ARGV[3], tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
  return {'run'}
end
while redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) do drop(redis.call('ZRANGE', KEYS[2], 0, 0)[1]) end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({d = ARGV[2], s = 'running', o = ARGV[3], g = tonumber(ARGV[4])}))
redis.call('ZADD', KEYS[2], now, ARGV[1])
keep_for(horizon)
return {'run'}
"""
)
# ARGV: the key, the owner, the generation, the answer ('': none, a retry runs it again), the most bytes one
# answer and all of a session's may take, the horizon (ms). The first answer recorded stays.
_FINISH = RedisFunction(
    _DROP
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record.s == 'done' then return 0 end
if ARGV[4] == '' then
  if record.o ~= ARGV[2] or tonumber(record.g) ~= tonumber(ARGV[3]) then return 0 end
  record.s = 'retry'
else
  record.s = 'done'
  local size = string.len(ARGV[4])
  if size <= tonumber(ARGV[5]) then
    local kept = tonumber(redis.call('HGET', KEYS[1], '#bytes') or '0')
    for _, older in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      if kept + size <= tonumber(ARGV[6]) then break end
      if older ~= ARGV[1] then
        drop(older)
        kept = tonumber(redis.call('HGET', KEYS[1], '#bytes') or '0')
      end
    end
    record.a, record.b = ARGV[4], size
    redis.call('HINCRBY', KEYS[1], '#bytes', size)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
keep_for(tonumber(ARGV[7]))
return 1
"""
)


class RedisLedger:
    """Records in Redis, read by every instance that may serve the session; written with WAIT like every write
    (`run_function`), so a recorded answer outlives a Redis failover too."""

    def __init__(self, redis: Redis, horizon_seconds: float, max_requests: int = MAX_KEPT_REQUESTS) -> None:
        self._horizon_ms = int(horizon_seconds * 1000)
        self._max_requests = max_requests
        self._begin = _BEGIN.bound_to(redis)
        self._finish = _FINISH.bound_to(redis)

    async def begin(self, session_id: str, key: str, digest: str, tenure: Tenure) -> Begun:
        owner, generation = tenure
        args = [key, digest, owner, generation, self._horizon_ms, self._max_requests]
        answer = await run_function(self._begin, _keys(session_id), args)
        verdict = Verdict(answer[0].decode())
        return Begun(verdict, answer[1] if len(answer) > 1 else None)

    async def finish(self, session_id: str, key: str, tenure: Tenure, answer: bytes | None) -> None:
        owner, generation = tenure
        args = [key, owner, generation, answer or b"", MAX_KEPT_ANSWER_BYTES, MAX_KEPT_BYTES, self._horizon_ms]
        await run_function(self._finish, _keys(session_id), args)


def _keys(session_id: str) -> list[str]:
    return [keys.REQUESTS.format(session_id), keys.REQUESTS_AGE.format(session_id)]


def encoded(answer: dict) -> bytes:
    """An answer as the ledger keeps it: compact JSON."""
    return json.dumps(answer, separators=(",", ":")).encode()
