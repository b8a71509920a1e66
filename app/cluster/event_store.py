"""A session's GET-stream events kept in Redis, so a client that reconnects with `Last-Event-ID`
gets what it missed, from whichever instance serves the session by then.

One Redis stream per session (`mcp:events:<id>`), capped at `MAX_EVENTS`, expiring with the session.
Only the GET stream is kept: a POST's stream ends with its response, and after a takeover nothing
could finish the request it belonged to.
"""

from __future__ import annotations

import logging
import re

from mcp.server.streamable_http import GET_STREAM_KEY, EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage
from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.shared.keys import EVENTS
from app.shared.redis import RedisUnavailable, applied_once, closed_as_redis_error, run_once

MAX_EVENTS = 64
# One event, however often the Redis client re-sends the script: ARGV[1] the message, then the cap and the expiry.
_STORE = applied_once("""
local event_id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return event_id
""")
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_MESSAGE = TypeAdapter(JSONRPCMessage)
log = logging.getLogger(__name__)


class RedisEventStore(EventStore):
    def __init__(self, redis: Redis, session_id: str, ttl_seconds: float, max_events: int = MAX_EVENTS) -> None:
        self._redis = redis
        self._max_events = max_events
        self._store = redis.register_script(_STORE)
        self._key = EVENTS.format(session_id)
        self._ttl_ms = int(ttl_seconds * 1000)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId | None:
        if stream_id != GET_STREAM_KEY:
            return None  # no event id: the client does not try to resume a POST's stream
        data = _MESSAGE.dump_json(message, by_alias=True, exclude_unset=True) if message is not None else b""
        try:
            event_id = await run_once(self._store, [self._key], [data, self._max_events, self._ttl_ms])
        except RedisUnavailable as exc:
            # Delivered live all the same; only a later resume would miss it.
            log.warning("could not keep a GET-stream event for resuming (%s)", exc)
            return None
        return event_id.decode()

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if not _EVENT_ID.match(last_event_id):
            return None
        try:
            with closed_as_redis_error():
                entries = await self._redis.xrange(self._key, min=f"({last_event_id}", max="+")
        except RedisError as exc:
            log.warning("could not replay GET-stream events (%s)", exc.__class__.__name__)
            return None
        for entry_id, fields in entries:
            if not fields.get(b"m"):
                continue  # a priming event: nothing to resend
            try:
                message = _MESSAGE.validate_json(fields[b"m"])
            except ValidationError:
                continue
            await send_callback(EventMessage(message, entry_id.decode()))
        return GET_STREAM_KEY
