"""Server events (a resource changed, a list changed) carried to every instance over Redis pub/sub.

The SDK's `SubscriptionBus` seam: `ctx.notify_resource_updated` on one instance reaches the
`subscriptions/listen` streams held on all of them, and `on_remote` hands the same events to the
2025-11-25 subscriptions each instance holds (`app/sessions/subscriptions.py`).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.shared.keys import BUS_CHANNEL
from app.shared.redis import closed_as_redis_error, unavailable_on_error

_KINDS = {
    "tools": ToolsListChanged,
    "prompts": PromptsListChanged,
    "resources": ResourcesListChanged,
}
REMEMBERED_EVENTS = 1024  # far more than arrive while the Redis client re-sends one PUBLISH
log = logging.getLogger(__name__)


def encode(event: ServerEvent, origin: str) -> str:
    """The event on the wire, with an id of its own: a PUBLISH the Redis client sends again is heard once."""
    message = {"origin": origin, "id": secrets.token_hex(8)}
    if isinstance(event, ResourceUpdated):
        return json.dumps({**message, "kind": "updated", "uri": event.uri})
    kind = next(name for name, cls in _KINDS.items() if isinstance(event, cls))
    return json.dumps({**message, "kind": kind})


def decode(raw: bytes | str) -> tuple[str, ServerEvent] | None:
    """(origin, event), or None for a message this version does not know."""
    try:
        message = json.loads(raw)
        if message["kind"] == "updated":
            return message["origin"], ResourceUpdated(uri=str(message["uri"]))
        return message["origin"], _KINDS[message["kind"]]()
    except (ValueError, KeyError, TypeError):
        return None


class RedisSubscriptionBus(InMemorySubscriptionBus):
    """Delivers to this instance's listeners at once, and to the other instances' through Redis."""

    def __init__(self, redis: Redis, origin: str) -> None:
        super().__init__()
        self._redis = redis
        self._origin = origin
        self._remote_handlers: list[Callable[[ServerEvent], Awaitable[object]]] = []
        self._heard: OrderedDict[bytes, None] = OrderedDict()  # the last REMEMBERED_EVENTS messages

    def on_remote(self, handler: Callable[[ServerEvent], Awaitable[object]]) -> None:
        """Also call `handler` for every event another instance publishes."""
        self._remote_handlers.append(handler)

    async def publish(self, event: ServerEvent) -> None:
        await super().publish(event)
        with unavailable_on_error():
            await self._redis.publish(BUS_CHANNEL, encode(event, self._origin))

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Relay the other instances' events until cancelled, reconnecting whenever Redis drops away;
        started once subscribed. Events published while the relay reconnects are not heard here."""
        started = False
        async with anyio.create_task_group() as handlers:
            while True:
                try:
                    with closed_as_redis_error():
                        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                            await pubsub.subscribe(BUS_CHANNEL)
                            if not started:
                                task_status.started()
                                started = True
                            while True:
                                message = await pubsub.get_message(timeout=1.0)  # and a health check now and then
                                if message is None or self._heard_before(message["data"]):
                                    continue
                                decoded = decode(message["data"])
                                if decoded is None or decoded[0] == self._origin:
                                    continue
                                await InMemorySubscriptionBus.publish(self, decoded[1])
                                for handler in self._remote_handlers:
                                    handlers.start_soon(_logged, handler, decoded[1])
                except (RedisError, OSError) as exc:
                    log.warning("lost the event channel (%s); reconnecting", exc.__class__.__name__)
                    await anyio.sleep(1.0)

    def _heard_before(self, raw: bytes) -> bool:
        if raw in self._heard:
            return True
        self._heard[raw] = None
        if len(self._heard) > REMEMBERED_EVENTS:
            self._heard.popitem(last=False)
        return False


async def _logged(handler: Callable[[ServerEvent], Awaitable[object]], event: ServerEvent) -> None:
    try:
        await handler(event)
    except Exception:  # one failing handler must not end the relay
        log.exception("an event handler failed")
