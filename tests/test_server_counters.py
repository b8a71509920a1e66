"""The demo's counter handles and bulletins in Redis (a real redis-server): a stalled Redis neither loses nor
doubles an acknowledged increment, and each store refuses past its bound while what it holds keeps working."""

from __future__ import annotations

import anyio
import pytest

from app.server.bulletins import RedisBulletins
from app.server.capacity import AtCapacity
from app.server.counters import HANDLE_KEY, RedisHandleCounters
from app.shared.redis import RedisUnavailable, connect
from tests.utils.faults import increments_through_stalls

pytestmark = pytest.mark.anyio


async def test_a_stalled_redis_applies_each_acknowledged_increment_exactly_once(redis_server):
    url, server = redis_server
    client = connect(url)
    counters = RedisHandleCounters(client, ttl_seconds=600)
    handle = await counters.open()
    answered, failed = await increments_through_stalls(server.pid, lambda: counters.increment(handle), RedisUnavailable)
    counted = int(await client.get(HANDLE_KEY.format(handle)))
    await client.aclose(close_connection_pool=True)
    assert len(answered) == len(set(answered)), "an answer was given twice"
    assert failed == [], failed
    assert counted == len(answered), f"{counted} increments applied, {len(answered)} acknowledged"


async def test_counters_past_the_bound_are_refused_until_unused_ones_expire(redis_server):
    client = connect(redis_server[0])
    await client.flushdb()
    counters = RedisHandleCounters(client, ttl_seconds=1, limit=3)
    held = [await counters.open() for _ in range(3)]
    with pytest.raises(AtCapacity, match="holds 3 open counters, the most it may; use one you hold"):
        await counters.open()
    assert [await counters.increment(handle) for handle in held] == [1, 1, 1]  # the held ones still count
    reopened = []

    async def opened() -> bool:
        try:
            reopened.append(await counters.open())
        except AtCapacity:
            return False
        return True

    await wait_for_async(opened, timeout=5)  # a second after their last use, the three expire
    assert await counters.increment(reopened[0]) == 1
    await client.aclose(close_connection_pool=True)


async def test_topics_past_the_bound_are_refused_while_existing_ones_take_updates(redis_server):
    client = connect(redis_server[0])
    await client.flushdb()
    bulletins = RedisBulletins(client, limit=2)
    await bulletins.publish("a", "one")
    await bulletins.publish("b", "one")
    with pytest.raises(AtCapacity, match="holds 2 topics, the most it may; publish on an existing one"):
        await bulletins.publish("c", "one")
    assert (await bulletins.publish("a", "two")).version == 2
    assert (await bulletins.read("c")).version == 0  # the refused topic was not made
    await client.aclose(close_connection_pool=True)


async def wait_for_async(predicate, timeout: float) -> None:
    """Poll an async predicate until it holds, failing after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.1)
