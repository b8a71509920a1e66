"""The demo's counter handles in Redis (a real redis-server): a stalled Redis neither loses nor doubles an
acknowledged increment."""

from __future__ import annotations

import pytest

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
