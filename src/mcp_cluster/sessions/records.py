"""The session record, `mcp:session:<id>`: one hash per 2025-11-25 session in Redis, and every script that
reads or writes it. One module owns it, so the fields mean one thing everywhere:

- `owner` (the owner id of the process that serves the session), `gen` (one more with every takeover);
- `params`, `pv`, `principal`: what the session was opened with, and by whom, for a rebuild elsewhere;
- `subs`, `heard`: its resource subscriptions, and where each log it hears stood when it began hearing it;
- `s:<key>`: its session state (`session_state(ctx)`), written only by its owner, in its generation.

The record expires `ttl` after its owner last confirmed it; an owner's liveness is kept apart
(`mcp:owner:<owner id>`, mcp_cluster/cluster/liveness.py), and read here only where a script must see it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from mcp_cluster.auth.principal import ANONYMOUS
from mcp_cluster.shared import keys
from mcp_cluster.shared.bus import LIST_LOGS
from mcp_cluster.shared.functions import ALLOW_OOM, NO_WRITES, BoundFunction, RedisFunction
from mcp_cluster.shared.redis import applied_once, call_function, run_function, run_once

MAX_KEYS = 64  # session state: keys per session
MAX_STATE_BYTES = 64 * 1024  # session state: bytes of JSON per session
FIELD_PREFIX = "s:"  # a session-state field of the record; the record's own fields have no colon
RELEASED_PREFIX = "released:"  # the owner of a session handed over: no process has that name, so none beats

# Where each log a session hears stood when it began hearing it (`heard`: {name: the log's last event id}), so
# that an instance taking it over finds what it missed (cluster/event_store.py). KEYS[2..] the logs, ARGV the names
# after the script's own: returns the map of `names`, keeping where those in `old` began.
_HEARD_FROM_NOW = """
local function heard_from_now(old, first_name)
  local heard = {}
  for i = 2, #KEYS do
    local name = ARGV[first_name + i - 2]
    if old[name] then
      heard[name] = old[name]
    else
      local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
      heard[name] = last[1] and last[1][1] or '0-0'
    end
  end
  return heard
end
"""
# ARGV[6..]: the lists' names (KEYS[2..] their logs): a session hears every change of them from its start.
_REGISTER = RedisFunction(
    _HEARD_FROM_NOW
    + """
local heard = cjson.encode(heard_from_now({}, 6))
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'params', ARGV[2], 'pv', ARGV[3], 'gen', 1, 'principal', ARGV[5])
redis.call('HSET', KEYS[1], 'heard', heard)
return redis.call('PEXPIRE', KEYS[1], ARGV[4])
"""
)
# 1: still ours (and its expiry pushed back); 0: another process took it over; -1: no record.
# A full Redis still confirms: only an expiry moves, and an owner that could not confirm would stop serving.
_CONFIRM = RedisFunction(
    """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if owner then return 0 end
return -1
""",
    flags=(ALLOW_OOM,),
)
_LOOKUP = RedisFunction(
    """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return nil end
return {owner, redis.call('GET', ARGV[1] .. owner) or '', redis.call('HGET', KEYS[1], 'principal') or ''}
""",
    flags=(NO_WRITES,),
)
# A claim re-sent after a timeout finds itself the owner: the first copy's answer, not a second generation. An
# owner whose heartbeat key lives holds its lease (mcp_cluster/cluster/lease.py): its sessions are not taken.
_CLAIM = RedisFunction("""
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[2] then return redis.call('HMGET', KEYS[1], 'params', 'pv', 'subs', 'gen', 'principal', 'heard') end
if owner ~= ARGV[1] or redis.call('EXISTS', ARGV[4] .. owner) == 1 then return nil end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'params', 'pv', 'subs', 'gen', 'principal', 'heard')
""")
# Handing a session over on shutdown: the owner becomes a name with no heartbeat, so the next instance that
# gets one of its requests claims it at once.
_RELEASE = RedisFunction("""
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
return 1
""")
# ARGV[3..]: the lists' names and the subscribed URIs (KEYS[2..] their logs): a resource newly subscribed to is
# heard from now on.
_SAVE_SUBSCRIPTIONS = RedisFunction(
    _HEARD_FROM_NOW
    + """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local old = cjson.decode(redis.call('HGET', KEYS[1], 'heard') or '{}')
redis.call('HSET', KEYS[1], 'heard', cjson.encode(heard_from_now(old, 3)))
return redis.call('HSET', KEYS[1], 'subs', ARGV[2])
"""
)
_FORGET = RedisFunction(
    """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
""",
    flags=(ALLOW_OOM,),  # it frees memory
)


# Whether one more value fits in KEYS[1]: ARGV[1] the field, ARGV[2] the new value's size; -2 when full.
_ROOM = f"""
local function full(field, size)
  local count, bytes = 0, size
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(name, 1, 2) == '{FIELD_PREFIX}' and name ~= field then
      count = count + 1
      bytes = bytes + redis.call('HSTRLEN', KEYS[1], name)
    end
  end
  return count >= {MAX_KEYS} or bytes > {MAX_STATE_BYTES}
end
"""
_GET = RedisFunction(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
return {1, redis.call('HGET', KEYS[1], ARGV[1])}
""",
    flags=(NO_WRITES,),
)
# Written only by the owner that holds the session now: ARGV[3] its id, ARGV[4] the generation it got.
_FENCE = """
local function moved()
  return redis.call('HGET', KEYS[1], 'owner') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'gen') ~= ARGV[4]
end
"""
_SET = applied_once(
    _ROOM
    + _FENCE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written(-1) end
if moved() then return nothing_written(-4) end
if full(ARGV[1], string.len(ARGV[2])) then return nothing_written(-2) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)
_INCREMENT = applied_once(
    _ROOM
    + _FENCE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written({-1}) end
if moved() then return nothing_written({-4}) end
local current = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
if not string.match(current, '^-?%d+$') or string.len(current) > 18 then return nothing_written({-3}) end
local value = tostring(tonumber(current) + tonumber(ARGV[2]))
if full(ARGV[1], string.len(value)) then return nothing_written({-2}) end
redis.call('HSET', KEYS[1], ARGV[1], value)
return {1, value}
"""
)


@dataclass(frozen=True)
class Owner:
    owner_id: str
    url: str | None  # None when its heartbeat has stopped
    principal: str = ANONYMOUS  # the hash of who the session belongs to (mcp_cluster/auth/principal.py)


@dataclass(frozen=True)
class Opening:
    """What a session was opened with: enough to serve it from another process."""

    params: dict[str, Any]
    protocol_version: str
    subscriptions: tuple[str, ...] = ()  # resources/subscribe URIs, restored on takeover
    principal: str = ANONYMOUS  # the hash of who opened it: no one else may use it, on any instance
    generation: int = 1  # one more for every takeover
    heard: dict[str, str] = field(default_factory=dict)  # each log it hears: the last event before it began to


class ForeignRecord(Exception):
    """A record that is not one of ours (written by something else): nothing to rebuild a session from."""


class SessionRecords:
    """Every read and write of the session records, each one script run in Redis."""

    def __init__(self, redis: Redis, ttl_seconds: float) -> None:
        self._ttl_ms = int(ttl_seconds * 1000)
        self._register = _REGISTER.bound_to(redis)
        self._confirm = _CONFIRM.bound_to(redis)
        self._lookup = _LOOKUP.bound_to(redis)
        self._claim = _CLAIM.bound_to(redis)
        self._forget = _FORGET.bound_to(redis)
        self._save_subscriptions = _SAVE_SUBSCRIPTIONS.bound_to(redis)
        self._release = _RELEASE.bound_to(redis)
        self._get = _GET.bound_to(redis)
        self._set = _SET.bound_to(redis)
        self._increment = _INCREMENT.bound_to(redis)

    async def register(self, session_id: str, owner_id: str, opening: Opening) -> None:
        """Record a session `owner_id` just opened; it hears every list change from now on."""
        params, version, principal = json.dumps(opening.params), opening.protocol_version, opening.principal
        args = (owner_id, params, version, self._ttl_ms, principal, *LIST_LOGS)
        await self._write(self._register, session_id, *args, logs=LIST_LOGS)

    async def confirm(self, session_id: str, owner_id: str) -> bool:
        """Whether the record still names `owner_id` (then it expires `ttl` from now); False when another
        process took the session over or the record is gone."""
        return bool(await self._write(self._confirm, session_id, owner_id, self._ttl_ms) == 1)

    async def lookup(self, session_id: str) -> Owner | None:
        """The session's owner, with its URL while its heartbeat lives; None when there is no such session."""
        answer = await self._read(self._lookup, session_id, keys.OWNER.format(""))
        if answer is None:
            return None
        return Owner(answer[0].decode(), answer[1].decode() or None, answer[2].decode())

    async def claim(self, session_id: str, dead_owner: str, owner_id: str) -> Opening | None:
        """Name `owner_id` the owner in place of `dead_owner`, whose heartbeat must be gone; None when another
        process claimed it first. A claim sent again after a timeout finds itself the owner: the same answer.
        Raises ForeignRecord for a record that is not one of ours."""
        owners = keys.OWNER.format("")
        answer = await self._write(self._claim, session_id, dead_owner, owner_id, self._ttl_ms, owners)
        if answer is None:
            return None
        opening = _opening(answer)
        if opening is None:
            raise ForeignRecord(session_id)
        return opening

    async def release(self, session_id: str, owner_id: str) -> None:
        """Hand a session over: its owner becomes a name no process beats under, so the next claim wins at once."""
        await self._write(self._release, session_id, owner_id, RELEASED_PREFIX + owner_id)

    async def save_subscriptions(self, session_id: str, owner_id: str, uris: Sequence[str]) -> None:
        logs = (*LIST_LOGS, *uris)
        await self._write(self._save_subscriptions, session_id, owner_id, json.dumps(list(uris)), *logs, logs=logs)

    async def forget(self, session_id: str, owner_id: str) -> None:
        """Delete an ended session's record (and its GET stream's events), if it still names `owner_id`."""
        await self._write(self._forget, session_id, owner_id, extra_key=keys.EVENTS.format(session_id))

    async def read_state(self, session_id: str, key: str) -> list[Any]:
        """[1, value or None], or [-1]: the record is gone."""
        return list(await self._read(self._get, session_id, FIELD_PREFIX + key))

    async def write_state(self, session_id: str, key: str, value: str, tenure: tuple[str, int]) -> int:
        """1, or why nothing was written: -1 the record is gone, -2 the state is full, -4 another owner or
        generation holds the session. Applied once however often the call runs."""
        answer = await run_once(self._set, [keys.SESSION.format(session_id)], [FIELD_PREFIX + key, value, *tenure])
        return int(answer)

    async def add_to_state(self, session_id: str, key: str, by: int, tenure: tuple[str, int]) -> list[Any]:
        """[1, the new value], or [status] as `write_state` says, and -3: the value is not an integer."""
        answer = await run_once(self._increment, [keys.SESSION.format(session_id)], [FIELD_PREFIX + key, by, *tenure])
        return list(answer)

    async def _write(
        self,
        function: BoundFunction,
        session_id: str,
        *args: Any,
        extra_key: str | None = None,
        logs: tuple[str, ...] = (),
    ) -> Any:
        return await run_function(function, _keys(session_id, extra_key, logs), list(args))

    async def _read(self, function: BoundFunction, session_id: str, *args: Any) -> Any:
        return await call_function(function, _keys(session_id, None, ()), list(args))


def _keys(session_id: str, extra_key: str | None, logs: tuple[str, ...]) -> list[str]:
    names = [keys.SESSION.format(session_id), *([extra_key] if extra_key else [])]
    return names + [keys.UPDATES.format(name) for name in logs]


def _opening(answer: list[Any]) -> Opening | None:
    """The Opening a claim read back, or None when the record does not hold one."""
    try:
        params, protocol_version = json.loads(answer[0]), answer[1].decode()
        subscriptions = tuple(json.loads(answer[2] or "[]"))
        generation = int(answer[3])
        principal = (answer[4] or b"").decode()
        heard = json.loads(answer[5] or "{}") if len(answer) > 5 else {}
    except (ValueError, TypeError, AttributeError, IndexError):
        return None
    if not isinstance(params, dict) or not all(isinstance(uri, str) for uri in subscriptions):
        return None
    if not isinstance(heard, dict) or not all(isinstance(since, str) for since in heard.values()):
        heard = {}
    return Opening(params, protocol_version, subscriptions, principal, generation, heard)
