"""The Redis connection every instance opens when `MCP_REDIS_URL` is set, and the one error it raises.

`MCP_REDIS_URL` names one Redis (`redis://host:port/db`) or, through Sentinel, whichever server is the
primary of a service (`redis+sentinel://[user@]host:port,host:port,.../service/db`): the client asks the
Sentinels for the primary and follows a failover."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypedDict, TypeVar

import anyio
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_cluster.metrics import InstanceMetrics
from mcp_cluster.shared.functions import NO_WRITES, BoundFunction, FunctionNotLoaded, RedisFunction, is_missing
from mcp_cluster.shared.keys import CALL, CLIENT_CALLS
from mcp_cluster.shared.runs import current_run, mark_transient, retry_advice

# One retry: the first command after a Redis restart meets a dead pooled connection. A retry after a timeout
# re-sends a command Redis may still run: every write it would repeat is `applied_once` or idempotent.
_RETRY = Retry(NoBackoff(), 1)
CALL_KEPT_MS = 30_000  # far longer than a call's retries take (two socket timeouts)
MAX_KEPT_CALLS_PER_CLIENT = 40_000  # its calls' write answers, kept for the retry horizon: 364 bytes each, 15 MB
SENTINEL_SCHEME = "redis+sentinel://"
NO_REPLICAS = "NOREPLICAS"  # a primary's refusal to write with fewer replicas in sync than min-replicas-to-write
WAIT_MS = 500  # for a write's replicas (WAIT); below the socket timeout, which would cut the wait short
RIDE_THROUGH_FIRST_PAUSE = 0.05  # then twice as long each time Redis is still away, at most:
RIDE_THROUGH_MAX_PAUSE = 0.5
T = TypeVar("T")


# Replace a value refused as poisoned, unless another instance replaced it first: all end up with one value.
REPLACE_IF_SAME = RedisFunction("""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
""")


class RedisUnavailable(RuntimeError):
    """Redis did not answer in time; the message says so in words a client can act on, and whether the request
    may have run. Raised inside a tool call, it makes the call's outcome one a retry may change (not kept)."""

    def __init__(self, cause: BaseException | None = None, *, may_have_run: bool = False) -> None:
        mark_transient("the shared store (Redis) was unavailable")
        if isinstance(cause, OutOfMemoryError):  # maxmemory with noeviction: Redis keeps what it has, takes nothing
            self.what, may_have_run = "the shared store (Redis) is full and refuses writes (maxmemory)", False
        elif isinstance(cause, ResponseError) and NO_REPLICAS in str(cause):  # min-replicas-to-write
            self.what, may_have_run = "the shared store (Redis) has no replica in sync and refuses writes", False
        elif isinstance(cause, FunctionNotLoaded):
            self.what, may_have_run = f"the shared store (Redis) is not set up for this version: {cause}", False
        else:
            self.what = "the shared store (Redis) is unavailable" + (f" ({type(cause).__name__})" if cause else "")
        super().__init__(f"{self.what}; {retry_advice(may_have_run)}")


def _away(exc: BaseException) -> bool:
    """Whether an error says Redis is away for now: refused, timed out, failing over, or without the replicas
    a write needs (our WAIT, or the primary's own min-replicas-to-write)."""
    return (
        isinstance(exc, (RedisConnectionError, RedisTimeoutError, NotReplicated))
        or (isinstance(exc, ResponseError) and NO_REPLICAS in str(exc))
        or _closed_under_command(exc)
    )


def _closed_under_command(exc: BaseException) -> bool:
    """uvloop raises RuntimeError, not the OSError redis-py turns into ConnectionError, when a command is
    written to a connection that closed under it (a Redis failing over)."""
    return isinstance(exc, RuntimeError) and not isinstance(exc, RedisUnavailable) and "handler is closed" in str(exc)


def as_unavailable(exc: Exception) -> RedisUnavailable | None:
    """What a failed Redis call means to a client, or None for an error that is not Redis's."""
    if isinstance(exc, RedisError):
        return RedisUnavailable(exc)
    if _closed_under_command(exc):
        return RedisUnavailable(ConnectionError(str(exc)))
    return None


@contextmanager
def closed_as_redis_error() -> Iterator[None]:
    """Re-raise uvloop's error for a connection closed under a command as redis-py's own for one, so the
    `except RedisError` of a caller that handles Redis errors itself (logs, retries, gives up) meets both."""
    try:
        yield
    except RuntimeError as exc:
        if not _closed_under_command(exc):
            raise
        raise RedisConnectionError(str(exc)) from exc


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn any Redis error inside the block into RedisUnavailable."""
    try:
        yield
    except (RedisError, RuntimeError) as exc:
        if (unavailable := as_unavailable(exc)) is None:
            raise
        raise unavailable from exc


class SharedRedis(Redis):
    """A Redis client that knows how many replicas a write must reach before it is answered (WAIT), rides
    through Redis being away (a stall, a restart, a failover) for up to `ride_through` seconds, and times its
    commands into the instance's metrics once it has them."""

    replicas_to_wait: int = 0
    ride_through: float = 0.0
    metrics: InstanceMetrics | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await patiently(self, functools.partial(self._timed, *args, **options))

    async def _timed(self, *args: Any, **options: Any) -> Any:
        # redis-py leaves execute_command untyped: the ignores below are for that alone.
        if self.metrics is None:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        started = time.perf_counter()  # as `observed`, written out: it runs for every command
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except Exception as exc:
            _count_outage(self.metrics, exc)
            raise
        finally:
            self.metrics.redis_seconds.observe(time.perf_counter() - started)


async def patiently(
    redis: Redis, attempt: Callable[[], Awaitable[T]], away: Callable[[BaseException], bool] | None = None
) -> T:
    """`attempt()`, again while Redis is away (refused, timed out, failing over, not yet replicating a write; or
    what `away` says), for up to the client's `ride_through` seconds from the first try (read at each retry: a
    draining instance sets it to 0, and the retries under way stop too): then the last error. Every write it sends
    again is `applied_once` or idempotent, as for redis-py's own retry."""
    first, pause = time.monotonic(), RIDE_THROUGH_FIRST_PAUSE
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not (away or _away)(exc) or time.monotonic() + pause > first + getattr(redis, "ride_through", 0.0):
                raise
        await anyio.sleep(pause)
        pause = min(pause * 2, RIDE_THROUGH_MAX_PAUSE)


@contextmanager
def observed(redis: Redis) -> Iterator[None]:
    """Time a command (or pipeline) of `redis` into `mcp_redis_command_duration_seconds`, and count it in
    `mcp_redis_errors_total` if Redis was away, timed out or full."""
    metrics = getattr(redis, "metrics", None)
    if metrics is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        _count_outage(metrics, exc)
        raise
    finally:
        metrics.redis_seconds.observe(time.perf_counter() - started)


def _count_outage(metrics: InstanceMetrics, exc: Exception) -> None:
    """Count a Redis that was away, timed out or full (not a function it lacked, which it loads)."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OutOfMemoryError)) or _closed_under_command(exc):
        metrics.redis_errors.inc()


class _Timeouts(TypedDict):
    socket_connect_timeout: float
    socket_timeout: float


def connect(url: str, replicas_to_wait: int = 0, password: str | None = None, ride_through: float = 0.0) -> SharedRedis:
    """A client that waits up to `ride_through` seconds for a Redis that is away (each try failing within
    about a second), instead of hanging. `password`: that of the URL's user (MCP_REDIS_PASSWORD_FILE), who logs
    in to the Sentinels too."""
    timeouts = _Timeouts(socket_connect_timeout=0.5, socket_timeout=1.0)
    redis: SharedRedis
    if url.startswith(SENTINEL_SCHEME):
        sentinels, service, db, username = sentinel_address(url)
        manager = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ untyped
            sentinels, sentinel_kwargs={"username": username, "password": password, **timeouts}, **timeouts
        )
        redis = manager.master_for(  # redis-py has no blocking Sentinel pool: past 1024 connections, it fails at once
            service,
            redis_class=SharedRedis,
            db=db,
            username=username,
            password=password,
            max_connections=1024,
            retry=_RETRY,
            health_check_interval=10,
            **timeouts,
        )
    else:
        pool = BlockingConnectionPool.from_url(
            url,
            password=password,  # one in the URL wins; the settings refuse one in the environment
            max_connections=1024,
            timeout=1.0,  # wait this long for a free connection when all are busy, then fail
            retry=_RETRY,
            health_check_interval=10,
            **timeouts,
        )
        redis = SharedRedis(connection_pool=pool)
    redis.replicas_to_wait = replicas_to_wait
    redis.ride_through = ride_through
    return redis


def sentinel_address(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """(Sentinels' (host, port)s, service, db, user) of a `redis+sentinel://[user@]...` URL; ValueError if it
    is not one. The user logs in to the Sentinels and to the data servers alike."""
    hosts, _, path = url.removeprefix(SENTINEL_SCHEME).partition("/")
    username, _, hosts = hosts.rpartition("@")
    service, _, db = path.partition("/")
    if ":" in username or "[" in hosts:  # neither a password nor IPv6 addresses are read: refuse, never misread
        hosts = ""
    try:
        sentinels = [(host, int(port)) for host, _, port in (address.rpartition(":") for address in hosts.split(","))]
        number = int(db or 0)
    except ValueError:
        sentinels, number = [], -1
    if not sentinels or not all(host for host, _ in sentinels) or not service or number < 0:
        raise ValueError("is not a Sentinel URL; valid: redis+sentinel://[user@]host:port[,host:port...]/service[/db]")
    return sentinels, service, number, username or None


def decoded(reply: bytes | str | None) -> str:
    """A reply that holds a value, as text. Our clients leave `decode_responses` off, so a value comes as bytes
    (redis-py types replies `bytes | str | None`, for every client)."""
    assert isinstance(reply, bytes)
    return reply.decode()


def dedicated_client(redis: Redis) -> Redis:
    """A client of the same server on one connection of its own, for what must never wait behind requests."""
    pool = redis.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    own: ConnectionPool
    if isinstance(pool, SentinelConnectionPool):
        # redis-py leaves SentinelConnectionPool.__init__ untyped
        own = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name, pool.sentinel_manager, max_connections=1, **kwargs
        )
    else:
        own = ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)
    return Redis(connection_pool=own)


async def durable(redis: Redis, *command: object) -> Any:
    """Send one write command and answer once `replicas_to_wait` replicas have it too (WAIT, on the same
    connection, in one round trip); fewer in time raise RedisUnavailable: the write may stay there, as any
    unanswered call's may. Other Redis errors become RedisUnavailable too, except a missing function."""
    wait = getattr(redis, "replicas_to_wait", 0)

    async def replicated() -> Any:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.execute_command(*command)
            pipe.wait(wait, WAIT_MS)
            with observed(redis):
                answer, replicas = await pipe.execute()
        if replicas < wait:  # applied on the primary, which may yet lose it in a failover
            raise NotReplicated(f"{replicas} of {wait} replicas within {WAIT_MS} ms")
        return answer

    try:
        if not wait:
            return await redis.execute_command(*command)  # type: ignore[no-untyped-call]  # untyped in redis-py
        return await patiently(redis, replicated)
    except NotReplicated as exc:
        raise RedisUnavailable(exc, may_have_run=True) from exc
    except (RedisError, RuntimeError) as exc:
        if is_missing(exc) or as_unavailable(exc) is None:
            raise
        raise RedisUnavailable(exc, may_have_run=True) from exc  # sent: Redis may have applied it


async def run_function(function: BoundFunction, keys: Sequence[str], args: Sequence[object]) -> Any:
    """Run a write function `durable`; Redis errors become RedisUnavailable."""
    return await _fcall(function, keys, args, lambda *command: durable(function.redis, *command))


async def call_function(function: BoundFunction, keys: Sequence[str], args: Sequence[object]) -> Any:
    """Call a function that reads, or whose write needs no replica's (not `durable`); Redis errors become
    RedisUnavailable."""
    return await _fcall(function, keys, args, function.redis.execute_command)


async def _fcall(
    function: BoundFunction, keys: Sequence[str], args: Sequence[object], send: Callable[..., Awaitable[T]]
) -> T:
    """FCALL the function with `send`, loading it first where Redis lacks it and this user may load it. Where it
    may not, again for up to the client's ride-through (`send` rides through a Redis that is away itself): a
    server that lacks them loads them itself within seconds (run-redis.sh)."""
    command = ("FCALL", function.name, len(keys), *keys, *args)

    async def attempt() -> T:
        try:
            return await send(*command)
        except ResponseError as exc:
            if not is_missing(exc):
                raise
        await function.load()
        return await send(*command)

    with unavailable_on_error():
        return await patiently(function.redis, attempt, away=lambda exc: isinstance(exc, FunctionNotLoaded))


class NotReplicated(RuntimeError):
    pass


def applied_once(body: str) -> RedisFunction:
    """A write function that a re-send (same call id: its last key) runs as a no-op returning the first answer.

    `body` reads KEYS and ARGV as usual (the wrapper's own are the last two of each) and returns its answer; it
    returns `nothing_written(answer)` where it changed nothing (refused, full, moved), which keeps no answer:
    a later run of the same write decides afresh. The wrapper's own: KEYS the client's kept answers (by when
    each was made) and the call id, ARGV how many the client keeps (0: none counted) and for how long (ms); past
    its share, the client's oldest answer goes.
    """
    return RedisFunction(f"""
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() {body} end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
""")


async def run_once(
    function: BoundFunction, keys: Sequence[str], args: Sequence[object], *, of_the_call: bool = True
) -> Any:
    """Run an `applied_once` function (`run_function`): Redis errors become RedisUnavailable. In a keyed run (a
    2025-11-25 tool call) the call id is the run's key and the write's number, kept for the retry horizon, so a
    retry of the call that runs it again applies none of the writes it made before; else (or for a write that is
    not the call's own: `of_the_call=False`) a fresh one, which covers the client's own re-send. A client keeps
    `MAX_KEPT_CALLS_PER_CLIENT` such answers of its calls' writes, over its sessions: past it, a retry of its
    oldest call that runs it again may apply that call's writes again."""
    run = current_run.get() if of_the_call else None
    if run is None or run.key is None:  # a fresh call id, counted against no client (a share of 0)
        kept, share = [CLIENT_CALLS.format(""), CALL.format(secrets.token_hex(12))], [0, CALL_KEPT_MS]
    else:
        kept = [CLIENT_CALLS.format(run.client), CALL.format(f"{run.key}:{run.next_write()}")]
        share = [MAX_KEPT_CALLS_PER_CLIENT, int(run.kept_seconds * 1000)]
    try:
        return await run_function(function, [*keys, *kept], [*args, *share])
    except RedisUnavailable as exc:
        # Full, Redis refuses a write function before it runs, a re-send's too: one whose first send was applied
        # still gets that answer (not through Sentinels, where that read would prove no replica has the write).
        waits_for_replicas: int = getattr(function.redis, "replicas_to_wait", 0)
        if not isinstance(exc.__cause__, OutOfMemoryError) or waits_for_replicas:
            raise
        try:
            found = await call_function(_FIRST_ANSWER.bound_to(function.redis), kept[1:], [])
        except RedisUnavailable:
            raise exc from exc.__cause__
        if not found[0]:
            raise
        return found[1] if len(found) > 1 else None


# The first answer of a write (KEYS[1] its call id), if it was applied: {1, answer}, else {0}.
_FIRST_ANSWER = RedisFunction(
    """
local first = redis.call('GET', KEYS[1])
if first then return {1, cjson.decode(first)} end
return {0}
""",
    flags=(NO_WRITES,),
)
