"""Server events (a resource changed, a list changed) carried to every instance over Redis pub/sub.

The SDK's `SubscriptionBus` seam: `ctx.notify_resource_updated` on one instance reaches the
`subscriptions/listen` streams held on all of them, and `on_event` hands the same events to the
2025-11-25 sessions each instance holds (`mcp_cluster/sessions/subscriptions.py`). Each event is also kept for a while
in a log of its resource (or list), `mcp:updates:<name>`, so a session taken over after its owner stopped
hearing hears what it missed (`mcp_cluster/cluster/event_store.py`, `catch_up`). One script keeps and publishes it:
inside a tool call it is one of the call's writes, so a call that runs again publishes nothing twice.
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

from mcp_cluster.shared.keys import BUS_CHANNEL, UPDATES
from mcp_cluster.shared.redis import RedisUnavailable, applied_once, closed_as_redis_error, run_once

_KINDS: dict[str, type[ToolsListChanged | PromptsListChanged | ResourcesListChanged]] = {
    "tools": ToolsListChanged,
    "prompts": PromptsListChanged,
    "resources": ResourcesListChanged,
}
REMEMBERED_EVENTS = 1024  # far more than arrive while the Redis client re-sends one PUBLISH
LOGGED_EVENTS = 64  # per resource or list: a session taken over later than that many updates misses the rest
LOG_KEPT_MS = 300_000  # how long a resource's updates are kept after its last one
LIST_LOGS = tuple(f"#{kind}" for kind in _KINDS)  # the logs of list changes: every session hears them
# KEYS[1] the event's log; ARGV: the event on the wire (with no log id yet), the channel, the cap, the expiry.
_PUBLISH = applied_once("""
local logged = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[2], string.sub(ARGV[1], 1, -2) .. ',"log":"' .. logged .. '"}')
return logged
""")
log = logging.getLogger(__name__)
Handler = Callable[[ServerEvent, str | None], Awaitable[object]]  # (event, its log id: None when not logged)


def log_name(event: ServerEvent) -> str:
    """The log an event is kept in: its resource's URI, or `#tools`, `#prompts`, `#resources` (no URI starts so)."""
    if isinstance(event, ResourceUpdated):
        return event.uri
    return "#" + next(name for name, cls in _KINDS.items() if isinstance(event, cls))


def encode(event: ServerEvent, origin: str) -> str:
    """The event on the wire, with an id of its own: a PUBLISH the Redis client sends again is heard once."""
    message = {"origin": origin, "id": secrets.token_hex(8)}
    if isinstance(event, ResourceUpdated):
        return json.dumps({**message, "kind": "updated", "uri": event.uri})
    kind = next(name for name, cls in _KINDS.items() if isinstance(event, cls))
    return json.dumps({**message, "kind": kind})


def decode(raw: bytes | str) -> tuple[str, ServerEvent, str | None] | None:
    """(origin, event, log id), or None for a message this version does not know."""
    try:
        message = json.loads(raw)
        logged = message.get("log")
        logged = logged if isinstance(logged, str) else None
        if message["kind"] == "updated":
            return message["origin"], ResourceUpdated(uri=str(message["uri"])), logged
        return message["origin"], _KINDS[message["kind"]](), logged
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class LocalSubscriptionBus(InMemorySubscriptionBus):
    """With no Redis: the SDK's in-process bus, that also hands every event to its `on_event` handlers (no log)."""

    def __init__(self) -> None:
        super().__init__()
        self._handlers: list[Handler] = []

    def on_event(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, event: ServerEvent) -> None:
        await super().publish(event)
        for handler in self._handlers:
            await _logged(handler, event, None)


class LeaseLapsed(RuntimeError):
    """This process is cut off from Redis (its lease lapsed): it publishes nothing."""


class RedisSubscriptionBus(InMemorySubscriptionBus):
    """Delivers every event, this instance's own included, from Redis: to this instance's 2026-07-28 listeners
    and its `on_event` handlers, once each, whichever instance published it."""

    def __init__(self, redis: Redis, origin: str, may_publish: Callable[[], Awaitable[bool]] | None = None) -> None:
        super().__init__()
        self._redis = redis
        self._origin = origin
        self._may_publish = (
            may_publish  # False: this process stopped acting for its sessions (mcp_cluster/cluster/lease.py)
        )
        self._publish = _PUBLISH.bound_to(redis)
        self._handlers: list[Handler] = []
        self._heard: OrderedDict[bytes, None] = OrderedDict()  # the last REMEMBERED_EVENTS messages

    def on_event(self, handler: Handler) -> None:
        """Also call `handler` for every event published on any instance, with its log id."""
        self._handlers.append(handler)

    async def publish(self, event: ServerEvent) -> None:
        """Keep the event in its log and publish it; everyone, this instance too, hears it from Redis."""
        if self._may_publish is not None and not await self._may_publish():
            raise RedisUnavailable(LeaseLapsed("no heartbeat answered"))
        keys, args = [UPDATES.format(log_name(event))], [encode(event, self._origin), BUS_CHANNEL]
        await run_once(self._publish, keys, [*args, LOGGED_EVENTS, LOG_KEPT_MS])

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Relay the events until cancelled, reconnecting whenever Redis drops away; started once subscribed.
        Events published while the relay reconnects are not heard here (a session taken over catches up)."""
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
                                if decoded is None:
                                    continue
                                _, event, logged = decoded
                                await InMemorySubscriptionBus.publish(self, event)
                                for handler in self._handlers:
                                    handlers.start_soon(_logged, handler, event, logged)
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


async def _logged(handler: Handler, event: ServerEvent, logged: str | None) -> None:
    try:
        await handler(event, logged)
    except Exception:  # one failing handler must not end the relay
        log.exception("an event handler failed")
