"""Writes the Redis client may send twice, against a real redis-server: a script sent again with the same
call id is a no-op returning the first answer, and GET-stream events survive stalls once each. And a
connection that closed under a command (uvloop's RuntimeError) is met as a RedisError is, at every call site."""

from __future__ import annotations

import itertools

import anyio
import pytest
from mcp.server.streamable_http import GET_STREAM_KEY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from mcp_cluster.cluster.event_store import _MESSAGE, RedisEventStore
from mcp_cluster.cluster.liveness import Liveness
from mcp_cluster.shared import redis as shared_redis
from mcp_cluster.shared.bus import RedisSubscriptionBus
from mcp_cluster.shared.functions import every_function
from mcp_cluster.shared.keys import CALL, CLIENT_CALLS, EVENTS, OWNER
from mcp_cluster.shared.redis import (
    CALL_KEPT_MS,
    RedisUnavailable,
    applied_once,
    call_function,
    closed_as_redis_error,
    connect,
    patiently,
    run_once,
    unavailable_on_error,
)
from mcp_cluster.shared.runs import Run, current_run
from mcp_cluster.shared.services import SharedServices
from tests.utils.faults import increments_through_stalls

pytestmark = pytest.mark.anyio
# uvloop's words for a write to a connection a failover closed: a RuntimeError, not a RedisError.
UVLOOP_CLOSED = "unable to perform operation on <TCPTransport closed=True reading=False>; the handler is closed"
# What a Redis call meets when its connection is lost: redis-py's own error, or uvloop's.
FAILURES = {
    "redis-py": lambda: RedisConnectionError("Connection closed by server."),
    "uvloop": lambda: RuntimeError(UVLOOP_CLOSED),
}
each_failure = pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())


def failing(failure):
    """A stand-in for a client method whose connection closed under it."""

    async def fail(*args, **kwargs):
        raise failure()

    return fail


async def test_a_script_sent_again_with_its_call_id_returns_the_first_answer(redis_url):
    redis = Redis.from_url(redis_url)
    script = applied_once("return redis.call('INCRBY', KEYS[1], ARGV[1])").bound_to(redis)
    sent = {"keys": ["resent", CLIENT_CALLS.format(""), CALL.format("call-1")], "args": [5, 0, CALL_KEPT_MS]}
    first, again = await call_function(script, **sent), await call_function(script, **sent)
    resent = ["resent", CLIENT_CALLS.format(""), CALL.format("call-2")]
    another = await call_function(script, keys=resent, args=[5, 0, CALL_KEPT_MS])
    counted = int(await redis.get("resent"))
    await redis.aclose()
    assert (first, again, another, counted) == (5, 5, 10, 10)


async def test_a_client_keeps_the_answers_of_its_newest_writes_and_no_other_clients(redis_url, monkeypatch):
    """Five calls of one client, each writing once, with a share of 3: the two oldest calls' answers go, so a
    retry of the newest applies nothing and one of the oldest applies again; another client's answer stays."""
    monkeypatch.setattr(shared_redis, "MAX_KEPT_CALLS_PER_CLIENT", 3)
    redis = connect(redis_url)
    add = applied_once("return redis.call('INCR', KEYS[1])").bound_to(redis)

    async def call(key: str, client: str) -> int:
        token = current_run.set(Run(key, kept_seconds=600, client=client))
        try:
            return await run_once(add, ["shares:count"], [])
        finally:
            current_run.reset(token)

    assert await call("theirs", "address:other") == 1
    assert [await call(f"call{n}", "address:flooding") for n in range(5)] == [2, 3, 4, 5, 6]
    assert (await call("call4", "address:flooding"), await call("theirs", "address:other")) == (6, 1)
    assert await call("call0", "address:flooding") == 7  # its answer went: the write applies again
    kept = await redis.zrange(CLIENT_CALLS.format("address:flooding"), 0, -1)
    assert (len(kept), await redis.zcard(CLIENT_CALLS.format("address:other"))) == (3, 1)
    assert [await redis.exists(key) for key in kept] == [1, 1, 1]
    await redis.aclose()


async def test_a_write_sent_again_gets_its_first_answer_from_a_full_redis(redis_url):
    """A full Redis refuses a write function before it runs; the re-send of a write it applied (a lost answer)
    still gets that answer, and a new write is refused as full."""
    redis = connect(redis_url)
    add = applied_once("return redis.call('INCR', KEYS[1])").bound_to(redis)

    async def call(key: str) -> int:
        token = current_run.set(Run(key, kept_seconds=600, client="address:full"))
        try:
            return await run_once(add, ["full:count"], [])
        finally:
            current_run.reset(token)

    assert await call("applied") == 1
    for function in every_function("app"):  # as a server's start loads them (redis/run-redis.sh)
        await function.bound_to(redis).load()
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory", used // 2)  # noeviction: full, it refuses every write
    try:
        assert await call("applied") == 1
        with pytest.raises(RedisUnavailable, match="is full and refuses writes"):
            await call("new")
    finally:
        await redis.config_set("maxmemory", 0)
        await redis.aclose()


async def test_a_stalled_redis_keeps_each_get_stream_event_once(redis_server):
    """Events stored without pause while redis-server is SIGSTOPped: the stream holds exactly the events whose
    ids were answered (a blind re-send would add an entry nobody was told about)."""
    url, server = redis_server
    client = connect(url)
    store = RedisEventStore(client, "stalled", ttl_seconds=60, live=lambda: True, max_events=1_000_000)
    numbers = itertools.count()

    async def store_one() -> str:
        message = _MESSAGE.validate_python({"jsonrpc": "2.0", "method": "n", "params": {"n": next(numbers)}})
        event_id = await store.store_event(GET_STREAM_KEY, message)
        if event_id is None:
            raise RedisUnavailable()
        return event_id

    answered, failed = await increments_through_stalls(server.pid, store_one, RedisUnavailable)
    stored = [entry_id.decode() for entry_id, _ in await client.xrange(EVENTS.format("stalled"))]
    await client.aclose(close_connection_pool=True)
    assert failed == [], failed
    assert sorted(stored) == sorted(answered), f"{len(stored)} events stored, {len(answered)} answered"


def test_a_connection_that_closed_under_a_command_is_redis_being_unavailable():
    with pytest.raises(RedisUnavailable, match="unavailable"), unavailable_on_error():
        raise RuntimeError(UVLOOP_CLOSED)
    with pytest.raises(RuntimeError, match="something else"), unavailable_on_error():
        raise RuntimeError("something else")


def test_a_connection_that_closed_under_a_command_is_redis_py_s_connection_error():
    with pytest.raises(RedisConnectionError, match="handler is closed"), closed_as_redis_error():
        raise RuntimeError(UVLOOP_CLOSED)
    with pytest.raises(RuntimeError, match="something else"), closed_as_redis_error():
        raise RuntimeError("something else")


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
async def test_uvloop_says_those_words_for_a_command_on_a_connection_closed_under_it(redis_url):
    client = connect(redis_url)
    connection = await client.connection_pool.get_connection()
    connection._writer.transport.close()  # as a failover does, unseen by redis-py until it writes
    await client.connection_pool.release(connection)
    with pytest.raises(RedisConnectionError, match="handler is closed"), closed_as_redis_error():
        await client.ping()
    await client.aclose(close_connection_pool=True)


@each_failure
async def test_readiness_reports_a_lost_connection_as_redis_away(redis_url, failure):
    client = connect(redis_url)
    services = SharedServices(client, RedisSubscriptionBus(client, "here"), keys=None)
    reachable = await services.reachable()
    client.ping = failing(failure)
    assert (reachable, await services.reachable()) == (True, False)
    await client.aclose(close_connection_pool=True)


@each_failure
async def test_a_resume_over_a_lost_connection_replays_nothing_and_says_so(redis_url, failure, caplog):
    client = connect(redis_url)
    store = RedisEventStore(client, "resumed", ttl_seconds=60, live=lambda: True)
    await store.store_event(GET_STREAM_KEY, _MESSAGE.validate_python({"jsonrpc": "2.0", "method": "n"}))
    replayed = []

    async def replay(event) -> None:
        replayed.append(event)

    client.xrange = failing(failure)
    assert await store.replay_events_after("0-0", replay) is None
    await client.aclose(close_connection_pool=True)
    assert replayed == []
    assert "could not replay GET-stream events (ConnectionError)" in caplog.text


@each_failure
async def test_the_heartbeat_beats_on_after_lost_connections_and_stop_ignores_one(redis_url, failure, caplog):
    client = connect(redis_url)
    liveness = Liveness(client, "app1", "http://127.0.0.1:1")
    liveness._beats.set = failing(failure)
    async with anyio.create_task_group() as group:
        group.start_soon(liveness.heartbeat)
        with anyio.fail_after(5):
            while caplog.text.count("heartbeat failed: ConnectionError") < 2:
                await anyio.sleep(0.05)
            del liveness._beats.set  # Redis answers again: the next beat lands
            while not await client.exists(OWNER.format(liveness.owner_id)):
                await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    liveness._beats.delete = failing(failure)
    await liveness.stop()  # the owner key is left to expire
    assert await client.exists(OWNER.format(liveness.owner_id))
    await client.aclose(close_connection_pool=True)


@each_failure
async def test_the_event_relay_reconnects_after_losing_its_channel(redis_url, failure, caplog):
    client = connect(redis_url)
    bus, pubsub = RedisSubscriptionBus(client, "here"), client.pubsub

    def pubsub_losing_its_first_subscribe(**options):
        client.pubsub = pubsub
        lost = pubsub(**options)
        lost.subscribe = failing(failure)
        return lost

    client.pubsub = pubsub_losing_its_first_subscribe
    async with anyio.create_task_group() as group:
        with anyio.fail_after(5):
            await group.start(bus.run)  # started once subscribed: on the second connection
        group.cancel_scope.cancel()
    await client.aclose(close_connection_pool=True)
    assert "lost the event channel (ConnectionError); reconnecting" in caplog.text


async def test_retries_under_way_stop_once_the_ride_through_is_set_to_0():
    """A draining instance sets its client's ride-through to 0 (mcp_cluster/instance.py): a call already retrying for
    a Redis that is away stops at its next retry, not after the 10 s it began with."""

    class Away:
        ride_through = 10.0

    async def refused() -> None:
        raise RedisConnectionError("Connection refused")

    client = Away()
    started = anyio.current_time()
    async with anyio.create_task_group() as group:

        async def drain_soon() -> None:
            await anyio.sleep(0.3)
            client.ride_through = 0.0

        group.start_soon(drain_soon)
        with pytest.raises(RedisConnectionError):
            await patiently(client, refused)
    assert anyio.current_time() - started < 2.0
