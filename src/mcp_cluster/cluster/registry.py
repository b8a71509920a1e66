"""Who owns each session, kept in Redis: one owner per session, a heartbeat per owner, takeover by compare-and-set.

Keys: `mcp:session:<id>` is a hash (owner, the `initialize` params, protocol version, generation, the
session's state) that expires `ttl` after the owner last refreshed it; `mcp:owner:<owner>` holds the
owner's internal URL and expires three heartbeats after the owner last wrote it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError

from mcp_cluster.auth.principal import ANONYMOUS
from mcp_cluster.cluster.lease import HEARTBEAT_SECONDS, OWNER_TIMEOUT_SECONDS, Lease
from mcp_cluster.shared import keys
from mcp_cluster.shared.bus import LIST_LOGS
from mcp_cluster.shared.functions import ALLOW_OOM, NO_WRITES, BoundFunction, RedisFunction
from mcp_cluster.shared.redis import (
    RedisUnavailable,
    call_function,
    closed_as_redis_error,
    decoded,
    dedicated_client,
    run_function,
    unavailable_on_error,
)

CONFIRM_EVERY_SECONDS = 1.0  # a local session re-checks that it is still ours at most this often
LOOKUP_CACHE_SECONDS = 1.0
PEERS_CACHE_SECONDS = 1.0
ENDED_REMEMBERED = 10_000
SILENCE_POLL_SECONDS = 0.1  # how often `silent` looks: a beat's key lives OWNER_TIMEOUT_SECONDS, never missed
RELEASED_PREFIX = "released:"  # the owner of a session handed over: no process has that name, so none beats
log = logging.getLogger(__name__)

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


@dataclass
class _Hold:
    """This process's hold on a session: the generation it got it at (the fence of its writes), and when
    Redis last confirmed it, in which epoch of the lease."""

    generation: int
    epoch: int
    confirmed: float = field(default_factory=time.monotonic)


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


class SessionRegistry:
    def __init__(self, redis: Redis, instance_id: str, url: str, ttl_seconds: float) -> None:
        self.owner_id = f"{instance_id}:{secrets.token_hex(4)}"  # one per process: a restart is a new owner
        self.url = url
        self.redis = redis  # where the sessions are kept
        self._beats = dedicated_client(redis)  # a heartbeat never waits for a connection behind requests
        self.lease = Lease()
        self._check_all = anyio.Event()  # set when the lease is regained after a lapse, or a session was lost
        self._lost: set[str] = set()  # sessions Redis said are no longer ours, for the sweep to hand on
        self._ttl_ms = int(ttl_seconds * 1000)
        self._register = _REGISTER.bound_to(redis)
        self._confirm = _CONFIRM.bound_to(redis)
        self._lookup = _LOOKUP.bound_to(redis)
        self._claim = _CLAIM.bound_to(redis)
        self._forget = _FORGET.bound_to(redis)
        self._save_subscriptions = _SAVE_SUBSCRIPTIONS.bound_to(redis)
        self._release = _RELEASE.bound_to(redis)
        self._owned: dict[str, _Hold] = {}  # the sessions this process owns
        self._lookups: dict[str, tuple[Owner, float]] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()  # the last ENDED_REMEMBERED sessions ended here
        self._peers: tuple[list[Owner], float] = ([], -PEERS_CACHE_SECONDS)

    async def register(self, session_id: str, opening: Opening) -> None:
        """Record a session this process just opened."""
        params, version, principal = json.dumps(opening.params), opening.protocol_version, opening.principal
        args = (self.owner_id, params, version, self._ttl_ms, principal, *LIST_LOGS)
        epoch = self.lease.epoch  # registered before the lease could lapse: its beats named this owner alive
        await self._call(self._register, session_id, *args, logs=LIST_LOGS)
        self._owned[session_id] = _Hold(generation=1, epoch=epoch)

    async def confirm(self, session_id: str, *, now: bool = False) -> bool:
        """Is a session held here still ours? False when another process took it over or its record is gone
        (ended elsewhere, or lost by Redis): either way this process must stop serving it."""
        hold = self._owned.get(session_id)
        fresh = hold is not None and time.monotonic() - hold.confirmed < CONFIRM_EVERY_SECONDS
        if fresh and not now and self.acting_for(session_id):
            return True
        epoch = self.lease.epoch
        if await self._call(self._confirm, session_id, self.owner_id, self._ttl_ms) != 1:
            self._let_go(session_id)
            self._lost.add(session_id)
            self._check_all.set()
            return False
        if (hold := self._owned.get(session_id)) is not None:  # still ours (it may have been let go meanwhile)
            hold.confirmed = time.monotonic()
            hold.epoch = epoch  # acts once the lease is held in this epoch (not if it lapsed while confirming)
        return True

    def acting_for(self, session_id: str) -> bool:
        """Whether this process may act for a session now: it holds the session and its lease, and Redis has
        confirmed the session ours since the lease was last regained (mcp_cluster/cluster/lease.py)."""
        hold = self._owned.get(session_id)
        return hold is not None and hold.epoch == self.lease.epoch and self.lease.held()

    async def may_act(self, session_id: str, within: float) -> bool:
        """Whether this process may act for a session now, or may again within `within` seconds (`regain`)."""
        if self.acting_for(session_id):
            return True
        with anyio.move_on_after(within):
            return await self.regain(session_id)
        return False

    async def regain(self, session_id: str) -> bool:
        """Wait until this process may act for a session again (its lease held, the session confirmed ours);
        False when it is no longer ours. Redis being away keeps it waiting: bound it with a timeout."""
        while True:
            await self.lease.regained()
            if self.acting_for(session_id):
                return True
            try:
                if not await self.confirm(session_id, now=True):
                    return False
            except RedisUnavailable:
                await anyio.sleep(HEARTBEAT_SECONDS)  # and ask again (the lease may lapse meanwhile)

    async def lookup(self, session_id: str) -> Owner | None:
        """The owner of a session held elsewhere, or None if there is no such session."""
        cached = self._lookups.get(session_id)
        if cached is not None and time.monotonic() - cached[1] < LOOKUP_CACHE_SECONDS:
            return cached[0]
        answer = await self._call(self._lookup, session_id, keys.OWNER.format(""), write=False)
        if answer is None:
            self._lookups.pop(session_id, None)
            return None
        owner = Owner(answer[0].decode(), answer[1].decode() or None, answer[2].decode())
        now = time.monotonic()
        if len(self._lookups) >= 1000:  # keep only what is still fresh: the cache holds the last second's sessions
            self._lookups = {sid: hit for sid, hit in self._lookups.items() if now - hit[1] < LOOKUP_CACHE_SECONDS}
        self._lookups[session_id] = (owner, now)
        return owner

    def owned(self) -> int:
        """How many sessions this process owns."""
        return len(self._owned)

    def owns(self, session_id: str) -> bool:
        """Whether this process registered or claimed the session (and has not let it go)."""
        return session_id in self._owned

    def tenure(self, session_id: str) -> tuple[str, int] | None:
        """(owner id, generation) of this process's hold on a session, the fence its writes carry; None when
        it holds none."""
        hold = self._owned.get(session_id)
        return (self.owner_id, hold.generation) if hold is not None else None

    def _let_go(self, session_id: str) -> None:
        self._owned.pop(session_id, None)

    def forget_lookup(self, session_id: str) -> None:
        self._lookups.pop(session_id, None)

    async def claim(self, session_id: str, dead_owner: str) -> Opening | None:
        """Take over a session whose owner is gone; None if another process claimed it first."""
        self._lookups.pop(session_id, None)
        epoch = self.lease.epoch
        owners = keys.OWNER.format("")
        answer = await self._call(self._claim, session_id, dead_owner, self.owner_id, self._ttl_ms, owners)
        if answer is None:
            return None
        opening = _opening(answer)
        if opening is None:  # a record written by something else: nothing to rebuild from, the session is gone
            log.error("refused a session record that is not one of ours; ending the session")
            await self.forget(session_id)
            return None
        self._owned[session_id] = _Hold(generation=opening.generation, epoch=epoch)
        return opening

    async def release(self, session_id: str) -> None:
        """Hand a session over (this process is shutting down): any instance may claim it from now on."""
        await self._call(self._release, session_id, self.owner_id, RELEASED_PREFIX + self.owner_id)
        self._let_go(session_id)

    async def silent(self, owner_id: str) -> bool:
        """Whether another owner's heartbeat stays missing for OWNER_TIMEOUT_SECONDS, timed by this process's
        clock: its lease has then run out (mcp_cluster/cluster/lease.py) whatever Redis's clock did. False as soon as it
        beats again (its key expired early: Redis's clock jumped ahead)."""
        if owner_id.startswith(RELEASED_PREFIX):
            return True  # handed over: no process beats under that name
        deadline = time.monotonic() + OWNER_TIMEOUT_SECONDS
        while True:
            with unavailable_on_error():
                if await self.redis.exists(keys.OWNER.format(owner_id)):
                    return False
            if time.monotonic() >= deadline:
                return True
            await anyio.sleep(SILENCE_POLL_SECONDS)

    async def peers(self) -> list[Owner]:
        """The other owners whose heartbeat is alive (some may be stopping too), with their internal URLs."""
        owners, when = self._peers
        if time.monotonic() - when < PEERS_CACHE_SECONDS:
            return list(owners)
        with unavailable_on_error():
            names = [name async for name in self.redis.scan_iter(match=keys.OWNER.format("*"), count=1000)]
            values = await self.redis.mget(names) if names else []
        prefix = keys.OWNER.format("")
        owners = [
            Owner(name.decode().removeprefix(prefix), decoded(url))
            for name, url in zip(names, values, strict=True)
            if url is not None and decoded(url) != self.url  # this process, or its predecessor at its address
        ]
        self._peers = (owners, time.monotonic())
        return list(owners)

    async def save_subscriptions(self, session_id: str, uris: list[str]) -> None:
        logs = (*LIST_LOGS, *uris)
        await self._call(self._save_subscriptions, session_id, self.owner_id, json.dumps(uris), *logs, logs=logs)

    def ended_here(self, session_id: str) -> bool:
        """Whether this process ended the session (a record naming it afterwards is a deletion that failed)."""
        return session_id in self._ended

    async def forget(self, session_id: str) -> None:
        """The session has ended (DELETE or idle timeout): delete its record if it is still ours."""
        self._let_go(session_id)
        self._ended[session_id] = None
        if len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        try:
            await self._call(self._forget, session_id, self.owner_id, extra_key=keys.EVENTS.format(session_id))
        except RedisUnavailable:
            log.warning("could not delete an ended session's record; it expires by itself")

    async def heartbeat(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tell the others, every HEARTBEAT_SECONDS, that this owner is alive (nothing else in this loop may
        delay it), renewing the lease from each beat Redis took. Started once the first beat was answered (or
        failed)."""
        started = False
        while True:
            sent = time.monotonic()
            epoch = self.lease.epoch
            try:
                with closed_as_redis_error():
                    await self._beat()
            except RedisError as exc:
                log.warning("heartbeat failed: %s", exc.__class__.__name__)
            else:
                self.lease.renewed(sent)
                if self.lease.epoch != epoch and started:
                    log.warning("this owner's lease is back after a lapse; checking which sessions are still ours")
                    self._check_all.set()
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

    async def sweep(self, on_lost: Callable[[str], Awaitable[None]]) -> None:
        """Keep the records of the sessions held here from expiring, and hand `on_lost` any that are no
        longer ours (taken over while this process was cut off, or ended elsewhere)."""
        every = max(HEARTBEAT_SECONDS, self._ttl_ms / 3000)
        while True:
            with anyio.move_on_after(every):
                await self._check_all.wait()
            self._check_all = anyio.Event()
            for session_id in list(self._owned):
                try:
                    await self.confirm(session_id, now=True)
                except RedisUnavailable:
                    break  # try them all again next time
            while self._lost:
                await on_lost(self._lost.pop())

    async def stop(self) -> None:
        """Say this owner is gone, so the others take its sessions over without waiting for the timeout."""
        with contextlib.suppress(RedisError), closed_as_redis_error():
            await self._beats.delete(keys.OWNER.format(self.owner_id))
        await self._beats.aclose(close_connection_pool=True)

    async def _call(
        self,
        function: BoundFunction,
        session_id: str,
        *args: object,
        extra_key: str | None = None,
        logs: tuple[str, ...] = (),
        write: bool = True,
    ) -> Any:
        names = [keys.SESSION.format(session_id), *([extra_key] if extra_key else [])]
        names += [keys.UPDATES.format(name) for name in logs]
        if write:
            return await run_function(function, names, list(args))
        return await call_function(function, names, list(args))
