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
one is recorded as run, without its answer) and `MAX_KEPT_BYTES` in all; past a bound the oldest go first. And
per client (who sent the request: its principal, else its address), over all its sessions, so that one client
calling at its full rate cannot fill Redis or an instance: `MAX_KEPT_REQUESTS_PER_CLIENT` records (past it, the
client's own oldest goes) and `MAX_KEPT_BYTES_PER_CLIENT` of answers (past it, an answer is recorded as run,
without it). A request whose record went runs again if it is sent again.
"""

from __future__ import annotations

import enum
import json
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from mcp_cluster.shared import keys
from mcp_cluster.shared.functions import RedisFunction
from mcp_cluster.shared.redis import run_function

MAX_KEPT_REQUESTS = 1000
MAX_KEPT_ANSWER_BYTES = 64 * 1024
MAX_KEPT_BYTES = 1024 * 1024
# A record takes about 810 bytes in Redis and 850 in an instance (a short answer included; measured 2026-12-07).
MAX_KEPT_REQUESTS_PER_CLIENT = 20_000  # over its sessions: about 16 MB
MAX_KEPT_BYTES_PER_CLIENT = 16 * 1024 * 1024
MAX_KEPT_REQUESTS_PER_INSTANCE = 200_000  # the memory store's, of every client: about 170 MB of its 512 MiB
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
    async def begin(self, session_id: str, key: str, digest: str, tenure: Tenure, client: str) -> Begun: ...

    async def finish(self, session_id: str, key: str, tenure: Tenure, answer: bytes | None, client: str) -> None:
        """Record `answer` (JSON) as the request's outcome, unless another run of it recorded one first;
        None: this run ended without one, and a retry runs the request again."""


@dataclass
class _Record:
    digest: str
    began: float  # time.monotonic()
    client: str  # the key of the client whose request it is (mcp_cluster/http/clients.py)
    done: bool = False
    answer: bytes | None = None
    log: dict[int, Any] = field(default_factory=dict)


class MemoryLedger:
    """Records in this process, for the sessions it holds (`live_sessions`; the records of ended sessions go
    when more than `limit` sessions have records). A client keeps `per_client` records over its sessions, past
    which its own oldest goes, and `per_client_bytes` of answers, past which a new one is recorded as run without
    it; the process keeps `max_records` of every client's, past which the oldest of all goes."""

    def __init__(
        self,
        horizon_seconds: float,
        limit: int,
        live_sessions: Callable[[], Collection[str]] = tuple,
        max_requests: int = MAX_KEPT_REQUESTS,
        max_bytes: int = MAX_KEPT_BYTES,
        per_client: int = MAX_KEPT_REQUESTS_PER_CLIENT,
        per_client_bytes: int = MAX_KEPT_BYTES_PER_CLIENT,
        max_records: int = MAX_KEPT_REQUESTS_PER_INSTANCE,
    ) -> None:
        self._horizon = horizon_seconds
        self._limit = limit
        self._live_sessions = live_sessions
        self._max_requests, self._max_bytes = max_requests, max_bytes
        self._per_client, self._per_client_bytes, self._max_records = per_client, per_client_bytes, max_records
        self._sessions: dict[str, OrderedDict[str, _Record]] = {}
        self._oldest_first: OrderedDict[tuple[str, str], None] = OrderedDict()  # (session, key) of every record
        self._of_client: defaultdict[str, OrderedDict[tuple[str, str], None]] = defaultdict(OrderedDict)
        self._answer_bytes: Counter[str] = Counter()  # of each client's kept answers

    async def begin(self, session_id: str, key: str, digest: str, tenure: Tenure, client: str) -> Begun:
        records = self._records(session_id)
        now = time.monotonic()
        while self._oldest_first:  # past the horizon, of every session: none counts against its client any more
            oldest = next(iter(self._oldest_first))
            if self._sessions[oldest[0]][oldest[1]].began >= now - self._horizon:
                break
            self._drop(*oldest)
        record = records.get(key)
        if record is None:
            while len(records) >= self._max_requests:
                self._drop(session_id, next(iter(records)))
            while len(self._of_client[client]) >= self._per_client:
                self._drop(*next(iter(self._of_client[client])))
            while len(self._oldest_first) >= self._max_records:
                self._drop(*next(iter(self._oldest_first)))
            record = records[key] = _Record(digest, now, client)
            self._oldest_first[session_id, key] = self._of_client[client][session_id, key] = None
            return Begun(Verdict.RUN, log=record.log)
        if record.digest != digest:
            return Begun(Verdict.CONFLICT)
        if record.done:
            return Begun(Verdict.DONE, record.answer)
        return Begun(Verdict.RUN, log=record.log)  # one process holds the session: never another's run

    async def finish(self, session_id: str, key: str, tenure: Tenure, answer: bytes | None, client: str) -> None:
        records = self._sessions.get(session_id, OrderedDict())
        record = records.get(key)
        if record is None or record.done or answer is None:
            return
        record.done, record.log = True, {}
        if (
            len(answer) > MAX_KEPT_ANSWER_BYTES
            or self._answer_bytes[record.client] + len(answer) > self._per_client_bytes
        ):
            return
        kept = sum(len(other.answer or b"") for other in records.values())
        for older in [name for name in records if name != key]:
            if kept + len(answer) <= self._max_bytes:
                break
            kept -= len(records[older].answer or b"")
            self._drop(session_id, older)
        record.answer = answer
        self._answer_bytes[record.client] += len(answer)

    def _records(self, session_id: str) -> OrderedDict[str, _Record]:
        if session_id not in self._sessions and len(self._sessions) >= self._limit:
            live = set(self._live_sessions())
            for ended in [sid for sid in self._sessions if sid not in live]:
                for key in list(self._sessions[ended]):
                    self._drop(ended, key)
                del self._sessions[ended]
        return self._sessions.setdefault(session_id, OrderedDict())

    def _drop(self, session_id: str, key: str) -> None:
        """Forget a record, wherever it is counted."""
        record = self._sessions[session_id].pop(key)
        del self._oldest_first[session_id, key]
        owned = self._of_client[record.client]
        del owned[session_id, key]
        if not owned:
            del self._of_client[record.client]
        self._answer_bytes[record.client] -= len(record.answer or b"")
        if self._answer_bytes[record.client] <= 0:
            del self._answer_bytes[record.client]


# KEYS[1] the session's records, KEYS[2] when each began; KEYS[3] when each record of the client began, whichever
# its session (members '<its answer's bytes> <session> <key>'), KEYS[4] the bytes of the client's kept answers.
# `drop` forgets one of the session's records, `drop_clients` one of the client's; each, the bytes its answer took.
_DROP = f"""
local function forget(records, ages, name)
  local raw = redis.call('HGET', records, name)
  local size = 0
  if raw then
    size = cjson.decode(raw).b or 0
    if size > 0 then redis.call('HINCRBY', records, '#bytes', -size) end
    redis.call('HDEL', records, name)
  end
  redis.call('ZREM', ages, name)
  return size
end
local function uncount(member, size)
  if redis.call('ZREM', KEYS[3], member) == 1 and size > 0 then redis.call('DECRBY', KEYS[4], size) end
end
local function drop(name)
  local size = forget(KEYS[1], KEYS[2], name)
  uncount(size .. ' ' .. ARGV[#ARGV] .. ' ' .. name, size)
end
local function drop_clients(member)
  local size, session, name = string.match(member, '^(%d+) (%S+) (.+)$')
  forget('{keys.REQUESTS.format("")}' .. session, '{keys.REQUESTS_AGE.format("")}' .. session, name)
  uncount(member, tonumber(size))
end
local function keep_for(horizon)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], horizon) end
end
"""
# ARGV: the key, the digest, the owner, the generation, the horizon (ms), the most records a session keeps and a
# client keeps, the session.
_BEGIN = RedisFunction(
    _DROP
    + """
local clock = redis.call('TIME')
local now, horizon = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000), tonumber(ARGV[5])
-- the client's records by the microsecond: of several begun in one millisecond, the oldest goes first
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - horizon, 'LIMIT', 0, 16)) do drop(old) end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_us - horizon * 1000, 'LIMIT', 0, 16)) do
  drop_clients(old)
end
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
while redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) do drop_clients(redis.call('ZRANGE', KEYS[3], 0, 0)[1]) end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({d = ARGV[2], s = 'running', o = ARGV[3], g = tonumber(ARGV[4])}))
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now_us, '0 ' .. ARGV[8] .. ' ' .. ARGV[1])
keep_for(horizon)
return {'run'}
"""
)
# ARGV: the key, the owner, the generation, the answer ('': none, a retry runs it again), the most bytes one
# answer, all of a session's and all of the client's may take, the horizon (ms), the session. The first answer
# recorded stays; one past the client's bytes is recorded as run, without it.
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
  local member = '0 ' .. ARGV[9] .. ' ' .. ARGV[1]
  local began = redis.call('ZSCORE', KEYS[3], member)
  local client_bytes = tonumber(redis.call('GET', KEYS[4]) or '0')
  if size <= tonumber(ARGV[5]) and began and client_bytes + size <= tonumber(ARGV[7]) then
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
    redis.call('ZREM', KEYS[3], member)
    redis.call('ZADD', KEYS[3], began, size .. ' ' .. ARGV[9] .. ' ' .. ARGV[1])
    redis.call('INCRBY', KEYS[4], size)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
keep_for(tonumber(ARGV[8]))
return 1
"""
)


class RedisLedger:
    """Records in Redis, read by every instance that may serve the session; written with WAIT like every write
    (`run_function`), so a recorded answer outlives a Redis failover too. A client's share is counted in Redis,
    over every session and instance."""

    def __init__(
        self,
        redis: Redis,
        horizon_seconds: float,
        max_requests: int = MAX_KEPT_REQUESTS,
        per_client: int = MAX_KEPT_REQUESTS_PER_CLIENT,
        per_client_bytes: int = MAX_KEPT_BYTES_PER_CLIENT,
    ) -> None:
        self._horizon_ms = int(horizon_seconds * 1000)
        self._max_requests, self._per_client, self._per_client_bytes = max_requests, per_client, per_client_bytes
        self._begin = _BEGIN.bound_to(redis)
        self._finish = _FINISH.bound_to(redis)

    async def begin(self, session_id: str, key: str, digest: str, tenure: Tenure, client: str) -> Begun:
        owner, generation = tenure
        args = [key, digest, owner, generation, self._horizon_ms, self._max_requests, self._per_client, session_id]
        answer = await run_function(self._begin, _keys(session_id, client), args)
        verdict = Verdict(answer[0].decode())
        return Begun(verdict, answer[1] if len(answer) > 1 else None)

    async def finish(self, session_id: str, key: str, tenure: Tenure, answer: bytes | None, client: str) -> None:
        owner, generation = tenure
        bounds = [MAX_KEPT_ANSWER_BYTES, MAX_KEPT_BYTES, self._per_client_bytes]
        args = [key, owner, generation, answer or b"", *bounds, self._horizon_ms, session_id]
        await run_function(self._finish, _keys(session_id, client), args)


def _keys(session_id: str, client: str) -> list[str]:
    return [
        keys.REQUESTS.format(session_id),
        keys.REQUESTS_AGE.format(session_id),
        keys.CLIENT_REQUESTS.format(client),
        keys.CLIENT_ANSWER_BYTES.format(client),
    ]


def encoded(answer: dict[str, Any]) -> bytes:
    """An answer as the ledger keeps it: compact JSON."""
    return json.dumps(answer, separators=(",", ":")).encode()
