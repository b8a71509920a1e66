"""The demo's counter handles and bulletins in Redis (a real redis-server): a stalled Redis neither loses nor
doubles an acknowledged increment, and each store refuses past its bound while what it holds keeps working."""

from __future__ import annotations

import anyio
import pytest

from app.bulletins import MemoryBulletins, RedisBulletins
from app.capacity import AtCapacity
from app.counters import HANDLE_KEY, MemoryHandleCounters, RedisHandleCounters
from mcp_cluster.http.clients import ClientId
from mcp_cluster.shared.redis import RedisUnavailable, connect
from tests.utils.faults import increments_through_stalls

pytestmark = pytest.mark.anyio
ALICE = ClientId("address:192.0.2.1", "this client address")
MALLORY = ClientId("address:192.0.2.66", "this client address")


async def test_a_stalled_redis_applies_each_acknowledged_increment_exactly_once(redis_server):
    url, server = redis_server
    client = connect(url)
    counters = RedisHandleCounters(client, ttl_seconds=600)
    handle = await counters.open(ALICE)
    answered, failed = await increments_through_stalls(
        server.pid, lambda: counters.increment(handle, ALICE), RedisUnavailable
    )
    counted = int(await client.get(HANDLE_KEY.format(handle)))
    await client.aclose(close_connection_pool=True)
    assert len(answered) == len(set(answered)), "an answer was given twice"
    assert failed == [], failed
    assert counted == len(answered), f"{counted} increments applied, {len(answered)} acknowledged"


async def test_counters_past_the_bound_are_refused_until_unused_ones_expire(redis_server):
    client = connect(redis_server[0])
    await client.flushdb()
    counters = RedisHandleCounters(client, ttl_seconds=1, limit=3)
    held = [await counters.open(ALICE) for _ in range(3)]
    with pytest.raises(AtCapacity, match="holds 3 open counters, the most it may; use one you hold"):
        await counters.open(ALICE)
    assert [await counters.increment(handle, ALICE) for handle in held] == [1, 1, 1]  # the held ones still count
    reopened = []

    async def opened() -> bool:
        try:
            reopened.append(await counters.open(ALICE))
        except AtCapacity:
            return False
        return True

    await wait_for_async(opened, timeout=5)  # a second after their last use, the three expire
    assert await counters.increment(reopened[0], ALICE) == 1
    await client.aclose(close_connection_pool=True)


async def test_topics_past_the_bound_are_refused_while_existing_ones_take_updates(redis_server):
    client = connect(redis_server[0])
    await client.flushdb()
    bulletins = RedisBulletins(client, limit=2)
    await bulletins.publish("a", "one", ALICE)
    await bulletins.publish("b", "one", MALLORY)
    with pytest.raises(AtCapacity, match="holds 2 topics, the most it may; publish on an existing one"):
        await bulletins.publish("c", "one", ALICE)
    assert (await bulletins.publish("a", "two", MALLORY)).version == 2
    assert (await bulletins.read("c")).version == 0  # the refused topic was not made
    await client.aclose(close_connection_pool=True)


async def test_one_client_opens_its_share_of_counters_however_many_it_asks_for_at_once(redis_server):
    """Twenty opens at once from one client, bound 5: exactly 5 handles; then another client still opens one."""
    client = connect(redis_server[0])
    await client.flushdb()
    counters = RedisHandleCounters(client, ttl_seconds=600, limit=10, per_client=5)
    opened, refused = [], []

    async def open_one() -> None:
        try:
            opened.append(await counters.open(MALLORY))
        except AtCapacity as exc:
            refused.append(str(exc))

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(open_one)
    assert len(opened) == 5 and len(refused) == 15
    assert refused[0].startswith("this client address holds 5 open counters, the most one client may")
    assert await counters.increment(opened[0], MALLORY) == 1  # what it holds still counts
    assert await counters.increment(await counters.open(ALICE), ALICE) == 1
    await client.aclose(close_connection_pool=True)


async def test_in_memory_a_client_past_its_share_of_counters_loses_its_own_oldest_never_another_clients():
    counters = MemoryHandleCounters(limit=10, per_client=5)
    alices = [await counters.open(ALICE) for _ in range(3)]
    mallorys = [await counters.open(MALLORY) for _ in range(20)]
    assert [await counters.increment(handle, ALICE) for handle in alices] == [1, 1, 1]
    assert [await counters.increment(handle, MALLORY) for handle in mallorys[-5:]] == [1] * 5
    with pytest.raises(LookupError):
        await counters.increment(mallorys[0], MALLORY)


async def test_one_client_begins_its_share_of_topics_and_others_begin_theirs(redis_server):
    client = connect(redis_server[0])
    await client.flushdb()
    bulletins = RedisBulletins(client, limit=10, per_client=2)
    for topic in ("m1", "m2"):
        await bulletins.publish(topic, "flood", MALLORY)
    with pytest.raises(AtCapacity, match="this client address began 2 topics, the most one client may"):
        await bulletins.publish("m3", "flood", MALLORY)
    assert (await bulletins.publish("m1", "again", MALLORY)).version == 2  # its own topics take updates
    assert (await bulletins.publish("a1", "hello", ALICE)).version == 1
    assert (await bulletins.publish("m2", "reply", ALICE)).version == 2  # anyone publishes on a topic
    await client.aclose(close_connection_pool=True)


async def test_in_memory_a_client_past_its_share_of_topics_loses_its_own_oldest_never_another_clients():
    bulletins = MemoryBulletins(limit=10, per_client=2)
    await bulletins.publish("a1", "hello", ALICE)
    for n in range(20):
        await bulletins.publish(f"m{n}", "flood", MALLORY)
    assert (await bulletins.read("a1")).version == 1
    assert [(await bulletins.read(f"m{n}")).version for n in (0, 17, 18, 19)] == [0, 0, 1, 1]


async def wait_for_async(predicate, timeout: float) -> None:
    """Poll an async predicate until it holds, failing after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.1)
