"""Writes the Redis client may send twice, against a real redis-server: a script sent again with the same
call id is a no-op returning the first answer, and GET-stream events survive stalls once each."""

from __future__ import annotations

import itertools

import pytest
from mcp.server.streamable_http import GET_STREAM_KEY
from redis.asyncio import Redis

from app.cluster.event_store import _MESSAGE, RedisEventStore
from app.shared.keys import CALL, EVENTS
from app.shared.redis import CALL_KEPT_MS, RedisUnavailable, applied_once, connect, unavailable_on_error
from tests.utils.faults import increments_through_stalls

pytestmark = pytest.mark.anyio


async def test_a_script_sent_again_with_its_call_id_returns_the_first_answer(redis_url):
    redis = Redis.from_url(redis_url)
    script = redis.register_script(applied_once("return redis.call('INCRBY', KEYS[1], ARGV[1])"))
    sent = {"keys": ["resent", CALL.format("call-1")], "args": [5, CALL_KEPT_MS]}
    first, again = await script(**sent), await script(**sent)
    another = await script(keys=["resent", CALL.format("call-2")], args=[5, CALL_KEPT_MS])
    counted = int(await redis.get("resent"))
    await redis.aclose()
    assert (first, again, another, counted) == (5, 5, 10, 10)


async def test_a_stalled_redis_keeps_each_get_stream_event_once(redis_server):
    """Events stored without pause while redis-server is SIGSTOPped: the stream holds exactly the events whose
    ids were answered (a blind re-send would add an entry nobody was told about)."""
    url, server = redis_server
    client = connect(url)
    store = RedisEventStore(client, "stalled", ttl_seconds=60, max_events=1_000_000)
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
    """uvloop's words for a write to a connection a failover closed: a RuntimeError, not a RedisError."""
    closed = "unable to perform operation on <TCPTransport closed=True reading=False>; the handler is closed"
    with pytest.raises(RedisUnavailable, match="unavailable"), unavailable_on_error():
        raise RuntimeError(closed)
    with pytest.raises(RuntimeError, match="something else"), unavailable_on_error():
        raise RuntimeError("something else")
