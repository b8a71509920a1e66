"""A session's GET-stream events in a real redis-server: what an instance taking the session over stores of the
events its former owner did not tell it (from its subscriptions' and the lists' logs, since it began hearing each,
none twice, at most the stream's cap), and an event stored while a stream resumes, which reaches the client
live, never neither way."""

from __future__ import annotations

import secrets

import anyio
import pytest
from mcp.server.streamable_http import GET_STREAM_KEY
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp.types import JSONRPCNotification

from mcp_cluster.cluster.event_store import MAX_EVENTS, RedisEventStore
from mcp_cluster.cluster.registry import SessionRegistry
from mcp_cluster.sessions.records import Opening
from mcp_cluster.sessions.subscriptions import UPDATE_META
from mcp_cluster.shared.bus import RedisSubscriptionBus
from mcp_cluster.shared.keys import EVENTS, UPDATES
from mcp_cluster.shared.redis import connect
from tests.utils.registry import registry_on

pytestmark = pytest.mark.anyio


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose(close_connection_pool=True)


async def opened(redis) -> tuple[str, SessionRegistry]:
    session_id = secrets.token_hex(8)
    registry = registry_on(redis, "app1", "http://127.0.0.1:1", ttl_seconds=60)
    await registry.register(session_id, Opening({}, "2025-11-25"))
    return session_id, registry


async def taken_over(redis, session_id: str, owner: SessionRegistry) -> dict[str, str]:
    """What the session hears, as the instance that claims it from its dead owner reads it."""
    opening = await registry_on(redis, "app2", "http://127.0.0.1:2", ttl_seconds=60).claim(session_id, owner.owner_id)
    return opening.heard


async def stream_of(redis, session_id: str) -> list[tuple[str, str | None]]:
    """(method, URI) of every event the session's stream holds, in order."""
    entries = await redis.xrange(EVENTS.format(session_id))
    told = [JSONRPCNotification.model_validate_json(fields[b"m"]) for _, fields in entries if fields.get(b"m")]
    return [(event.method, (event.params or {}).get("uri")) for event in told]


async def test_a_session_taken_over_hears_what_it_missed_since_it_began_hearing_each_and_nothing_twice(redis):
    session_id, registry = await opened(redis)
    bus = RedisSubscriptionBus(redis, "publisher")
    topic = f"updates://{secrets.token_hex(4)}"
    await bus.publish(ResourceUpdated(uri=topic))  # before the subscription: never the session's to hear
    await registry.save_subscriptions(session_id, [topic])
    for _ in range(2):
        await bus.publish(ResourceUpdated(uri=topic))
    await bus.publish(ToolsListChanged())
    store = RedisEventStore(redis, session_id, ttl_seconds=60, live=lambda: True)
    logs = await redis.xrange(UPDATES.format(topic))
    told_by_owner = logs[1][0].decode()  # the owner told the first one after the subscription, then died
    told = {"uri": topic, "_meta": {UPDATE_META: told_by_owner}}
    message = JSONRPCNotification(jsonrpc="2.0", method="notifications/resources/updated", params=told)
    await store.store_event(GET_STREAM_KEY, message)
    heard = await taken_over(redis, session_id, registry)
    assert set(heard) == {"#tools", "#prompts", "#resources", topic}
    assert await store.catch_up(heard) == 2  # the second update, and the list change
    assert await store.catch_up(heard) == 0  # told now: not again
    told_first, *caught_up = await stream_of(redis, session_id)
    assert told_first == ("notifications/resources/updated", topic)
    # In log-id order: two logs' events published within one millisecond have no order between them.
    assert sorted(caught_up, key=str) == [
        ("notifications/resources/updated", topic),
        ("notifications/tools/list_changed", None),
    ]


async def test_a_session_that_missed_more_than_its_stream_holds_hears_the_latest(redis):
    session_id, registry = await opened(redis)
    topic = f"updates://{secrets.token_hex(4)}"
    await registry.save_subscriptions(session_id, [topic])
    bus = RedisSubscriptionBus(redis, "publisher")
    for _ in range(MAX_EVENTS + 10):
        await bus.publish(ResourceUpdated(uri=topic))
    store = RedisEventStore(redis, session_id, ttl_seconds=60, live=lambda: True)
    await store.catch_up(await taken_over(redis, session_id, registry))
    entries = await redis.xrange(EVENTS.format(session_id))
    logged = [entry_id.decode() for entry_id, _ in await redis.xrange(UPDATES.format(topic))]
    assert len(entries) == MAX_EVENTS  # the bound: the stream's cap (the log keeps as many: the latest)
    assert [fields[b"u"].decode() for _, fields in entries] == logged[-MAX_EVENTS:]


async def test_an_event_stored_while_a_stream_resumes_waits_for_it_to_go_live(redis):
    """The SDK replays, then opens the live stream: an event stored in between would reach the client neither
    way. It is stored (and sent live) once the stream is open, after the replay's last event."""
    session_id, _ = await opened(redis)
    live = anyio.Event()
    store = RedisEventStore(redis, session_id, ttl_seconds=60, live=live.is_set)
    first = await store.store_event(GET_STREAM_KEY, _note("before"))
    replayed, stored = [], []

    async def replay(event) -> None:
        replayed.append(event.message.params["n"])
        if not stored:  # mid-replay, the session sends another event
            group.start_soon(lambda: _store(store, stored))
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as group:
        assert await store.replay_events_after("0-0", replay) == GET_STREAM_KEY
        assert stored == []  # it waits for the live stream, not stored yet
        assert await store.store_event(GET_STREAM_KEY, None) == first  # the priming event: where the replay ended
        live.set()  # the SDK opens the live stream
    assert replayed == ["before"]
    assert len(stored) == 1 and stored[0] > first


def _note(n: str) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"n": n})


async def _store(store: RedisEventStore, stored: list[str]) -> None:
    stored.append(await store.store_event(GET_STREAM_KEY, _note("during")))
