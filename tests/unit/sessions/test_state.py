"""Session-scoped state, in memory (in-process) and in Redis (a real redis-server): the same answers, every
bound reached, and nothing written for a session that has ended."""

from __future__ import annotations

import pytest
import redis.asyncio

from loadtest.harness.stack import free_port
from mcp_cluster.sessions.records import Opening, SessionRecords
from mcp_cluster.sessions.state import (
    MAX_KEYS,
    MAX_STATE_BYTES,
    MemorySessionState,
    RedisSessionState,
    SessionState,
    SessionStateError,
)
from mcp_cluster.shared import keys
from mcp_cluster.shared.redis import connect
from tests.utils.faults import increments_through_stalls
from tests.utils.registry import registry_on

pytestmark = pytest.mark.anyio
OPENING = Opening({}, "2025-11-25")


def HELD(session_id: str) -> tuple[str, int]:
    return ("app1:x", 1)  # the owner and generation of the records these tests write by hand


@pytest.fixture(params=["memory", "redis"])
async def state(request):
    """A session's state on either backend; with Redis, the session's record exists as the registry makes it."""
    if request.param == "memory":
        yield SessionState(MemorySessionState(limit=10), "s1")
        return
    client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
    await client.delete(keys.SESSION.format("s1"))
    registry = registry_on(client, "app1", "http://127.0.0.1:1", ttl_seconds=60)
    await registry.register("s1", OPENING)
    yield SessionState(RedisSessionState(SessionRecords(client, 60), registry.tenure), "s1")
    await client.aclose(close_connection_pool=True)


async def test_values_round_trip_as_json_and_counters_count(state):
    assert await state.get("missing", "default") == "default"
    await state.set("notes", ["a", {"b": 2}])
    assert await state.get("notes") == ["a", {"b": 2}]
    assert [await state.increment("n") for _ in range(3)] == [1, 2, 3]
    assert await state.increment("n", by=-3) == 0


async def test_increment_refuses_a_value_that_is_not_an_integer(state):
    await state.set("text", "hello")
    with pytest.raises(SessionStateError, match="not an integer"):
        await state.increment("text")


@pytest.mark.parametrize("key", ["", "a b", "é", "x" * 65, "s/1"])
async def test_keys_are_checked(state, key):
    with pytest.raises(SessionStateError, match="is not valid"):
        await state.set(key, 1)


async def test_a_session_holds_at_most_max_keys(state):
    for n in range(MAX_KEYS):
        await state.set(f"k{n}", n)
    with pytest.raises(SessionStateError, match="full"):
        await state.set("one-more", 1)
    with pytest.raises(SessionStateError, match="full"):
        await state.increment("one-more")
    await state.set("k0", "replaced")  # an existing key can always be rewritten
    assert await state.get("k0") == "replaced"


async def test_a_session_holds_at_most_max_state_bytes(state):
    await state.set("big", "x" * (MAX_STATE_BYTES // 2))
    with pytest.raises(SessionStateError, match="full"):
        await state.set("bigger", "y" * (MAX_STATE_BYTES // 2))
    with pytest.raises(SessionStateError, match="full"):
        await state.set("alone", "z" * MAX_STATE_BYTES)
    assert await state.get("bigger") is None


async def test_an_ended_session_gets_an_error_and_nothing_is_written(redis_url):
    client = redis.asyncio.Redis.from_url(redis_url)
    ended = SessionState(RedisSessionState(SessionRecords(client, 60), HELD), "gone")
    for operation in (ended.get("k"), ended.set("k", 1), ended.increment("k")):
        with pytest.raises(SessionStateError, match="ended or expired"):
            await operation
    assert await client.exists(keys.SESSION.format("gone")) == 0
    await client.aclose(close_connection_pool=True)


async def test_a_process_that_lost_the_session_writes_nothing(redis_url):
    """Paused while another instance took the session over, a resumed owner's writes are refused (fenced by
    owner and generation), and reads still answer."""
    client = redis.asyncio.Redis.from_url(redis_url)
    first = registry_on(client, "app1", "http://127.0.0.1:1", ttl_seconds=60)
    await first.register("fenced", OPENING)
    stale = SessionState(RedisSessionState(SessionRecords(client, 60), first.tenure), "fenced")
    assert await stale.increment("n") == 1
    taker = registry_on(client, "app2", "http://127.0.0.1:2", ttl_seconds=60)
    await taker.claim("fenced", first.owner_id)
    for operation in (stale.set("n", 10), stale.increment("n")):
        with pytest.raises(SessionStateError, match="moved to another instance"):
            await operation
    assert await stale.get("n") == 1
    assert await SessionState(RedisSessionState(SessionRecords(client, 60), taker.tenure), "fenced").increment("n") == 2
    before_the_pause = first.tenure("fenced")
    await first.claim("fenced", taker.owner_id)  # back to the first owner, one generation on
    with pytest.raises(SessionStateError, match="moved to another instance"):
        await SessionState(
            RedisSessionState(SessionRecords(client, 60), lambda _: before_the_pause), "fenced"
        ).increment("n")
    assert await stale.increment("n") == 3
    await client.aclose(close_connection_pool=True)


async def test_without_redis_the_error_says_so():
    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    with pytest.raises(SessionStateError, match=r"Redis\) is unavailable"):
        await SessionState(RedisSessionState(SessionRecords(client, 60), HELD), "s1").increment("n")
    await client.aclose(close_connection_pool=True)


async def test_memory_keeps_the_state_of_open_sessions_over_ended_ones():
    open_sessions = {"old-but-open", "new"}
    backend = MemorySessionState(limit=2, live_sessions=lambda: open_sessions)
    await SessionState(backend, "old-but-open").increment("n")
    await SessionState(backend, "ended").increment("n")
    await SessionState(backend, "new").increment("n")  # over the limit: "ended" goes although older ones stay
    assert await SessionState(backend, "old-but-open").increment("n") == 2
    assert await SessionState(backend, "ended").get("n") is None


async def test_a_stalled_redis_applies_each_acknowledged_write_exactly_once(redis_server):
    """Four writers increment one session's counter without pause while redis-server is SIGSTOPped three
    times: every answer is distinct, and the counter holds exactly as many increments as were answered."""
    url, server = redis_server
    client = connect(url)  # the layer's own client: its timeouts and its retry
    await client.hset(keys.SESSION.format("stalled"), mapping={"owner": "app1:x", "gen": 1})
    counter = SessionState(RedisSessionState(SessionRecords(client, 60), HELD), "stalled")
    answered, failed = await increments_through_stalls(server.pid, lambda: counter.increment("n"), SessionStateError)
    counted = int(await client.hget(keys.SESSION.format("stalled"), "s:n"))
    await client.aclose(close_connection_pool=True)
    assert len(answered) == len(set(answered)), "an answer was given twice"
    assert failed == [], failed  # a stall below two socket timeouts is ridden out by the one retry
    assert counted == len(answered), f"{counted} increments applied, {len(answered)} acknowledged"
