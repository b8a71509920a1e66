"""The event bus: every event the SDK publishes survives the trip, anything else on the channel is ignored
instead of ending the relay, and (against a real redis-server) a PUBLISH sent twice is heard once."""

from __future__ import annotations

import anyio
import pytest
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged

from mcp_cluster.shared.bus import RedisSubscriptionBus, decode, encode
from mcp_cluster.shared.keys import BUS_CHANNEL
from mcp_cluster.shared.redis import connect


@pytest.mark.parametrize(
    "event", [ResourceUpdated(uri="updates://news"), ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()]
)
def test_every_event_kind_round_trips_with_its_origin(event):
    assert decode(encode(event, "app1:ab12")) == ("app1:ab12", event, None)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"kind":"updated"}', b'{"origin":"a","kind":"nope"}'])
def test_what_this_version_does_not_know_decodes_to_nothing(raw):
    assert decode(raw) is None


@pytest.mark.anyio
async def test_a_publish_the_redis_client_sends_again_is_heard_once(redis_url):
    heard: list[str] = []

    async def hear(event: ResourceUpdated, logged: str | None) -> None:
        heard.append(event.uri)

    listening, publisher = connect(redis_url), connect(redis_url)
    listener = RedisSubscriptionBus(listening, "listener")
    listener.on_event(hear)
    first, last = (
        encode(ResourceUpdated(uri="updates://a"), "other"),
        encode(ResourceUpdated(uri="updates://b"), "other"),
    )
    async with anyio.create_task_group() as group:
        await group.start(listener.run)
        for message in (first, first, last):  # the second: what a re-send after a timeout puts on the channel
            await publisher.publish(BUS_CHANNEL, message)
        with anyio.fail_after(5):
            while "updates://b" not in heard:  # one channel keeps order: a repeat would have come before
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    for client in (listening, publisher):
        await client.aclose(close_connection_pool=True)
    assert heard == ["updates://a", "updates://b"]
