"""A session's GET-stream events kept in Redis, so a client that reconnects with `Last-Event-ID` gets what it
missed, from whichever instance serves the session by then.

One Redis stream per session (`mcp:events:<id>`), capped at `MAX_EVENTS`, expiring with the session. Only the GET
stream is kept: a POST's stream ends with its response, and after a takeover nothing could finish the request
it belonged to. Beside the events, the stream holds marks (no message): when the session opened, when its
subscriptions changed.

A notification of a server event (a resource updated, a list changed) is stored with the event's id in the
resource's log (`mcp_cluster/shared/bus.py`). An instance that takes a session over first stores every event of the
session's resources and lists that the log holds and the stream lacks, since the session began hearing it
(`catch_up`): what was published while no instance held the session (its owner died, or had handed it over)
reaches its client on resuming.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import anyio
from mcp.server.streamable_http import GET_STREAM_KEY, EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage, JSONRPCNotification, JSONRPCRequest
from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mcp_cluster.sessions.subscriptions import UPDATE_META
from mcp_cluster.shared.keys import EVENTS, UPDATES
from mcp_cluster.shared.redis import (
    RedisUnavailable,
    applied_once,
    closed_as_redis_error,
    run_once,
    unavailable_on_error,
)

if TYPE_CHECKING:  # redis-py's types: the module is newer than the oldest redis-py the library supports
    from redis.typing import StreamRangeResponse

MAX_EVENTS = 64
RESUME_WAIT_SECONDS = 2.0  # the longest a resuming stream's replay holds back the events stored meanwhile
# One event, however often the Redis client re-sends the script: ARGV[1] the message, [2] the log id of the event
# it tells of ('' for none), then the cap and the expiry.
_STORE = applied_once("""
local event_id
if ARGV[2] == '' then
  event_id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'm', ARGV[1])
else
  event_id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'm', ARGV[1], 'u', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return event_id
""")
# KEYS[1] the session's stream; ARGV: the cap, the expiry, then (message, log id) pairs, in order.
_CATCH_UP = applied_once("""
for i = 3, #ARGV - 2, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'm', ARGV[i], 'u', ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return (#ARGV - 4) / 2
""")
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_MESSAGE = TypeAdapter(JSONRPCMessage)
_NOTIFICATION = {  # the notification of each list's change
    "#tools": "notifications/tools/list_changed",
    "#prompts": "notifications/prompts/list_changed",
    "#resources": "notifications/resources/list_changed",
}
_LOG_OF = {method: name for name, method in _NOTIFICATION.items()}
_Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry's id and fields
log = logging.getLogger(__name__)


class RedisEventStore(EventStore):
    """`live` says whether the session's GET stream is open here (the SDK's transport knows)."""

    def __init__(
        self,
        redis: Redis,
        session_id: str,
        ttl_seconds: float,
        live: Callable[[], bool],
        max_events: int = MAX_EVENTS,
        may_store: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._redis = redis
        self._may_store = may_store  # False: this process may not act for the session (mcp_cluster/cluster/lease.py)
        self._max_events = max_events
        self._store = _STORE.bound_to(redis)
        self._catch_up = _CATCH_UP.bound_to(redis)
        self._key = EVENTS.format(session_id)
        self._ttl_ms = int(ttl_seconds * 1000)
        self._live = live
        # A GET stream resuming: the SDK replays, then opens the live stream; an event stored in between would
        # reach the client neither way. So while a stream resumes, an event waits for it to open before being
        # stored (and sent live), and the replay begins once the events being stored are in.
        self._resuming = False
        self._storing = 0
        self._replayed_up_to: str | None = None

    # None: no event id, which the SDK sends as such (it types the answer EventId alone).
    async def store_event(  # type: ignore[override]
        self, stream_id: StreamId, message: JSONRPCMessage | None
    ) -> EventId | None:
        if stream_id != GET_STREAM_KEY:
            return None  # no event id: the client does not try to resume a POST's stream
        if message is None:  # the priming event of a resumed stream: where the replay ended, stored already
            return self._replayed_up_to
        if self._resuming:
            await self._until(self._live)
            self._resuming = False
        if self._may_store is not None and not await self._may_store():
            log.warning("kept no GET-stream event: this instance may not act for the session (its lease lapsed)")
            return None
        data = _MESSAGE.dump_json(message, by_alias=True, exclude_unset=True)
        self._storing += 1
        try:
            event_id: bytes = await run_once(
                self._store, [self._key], [data, _logged(message), self._max_events, self._ttl_ms]
            )
        except RedisUnavailable as exc:
            # Delivered live all the same; only a later resume would miss it.
            log.warning("could not keep a GET-stream event for resuming (%s)", exc)
            return None
        finally:
            self._storing -= 1
        return event_id.decode()

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if not _EVENT_ID.match(last_event_id):
            return None
        self._resuming = True
        await self._until(lambda: not self._storing)
        try:
            with closed_as_redis_error():
                entries = _entries(await self._redis.xrange(self._key, min=f"({last_event_id}", max="+"))
        except RedisError as exc:
            log.warning("could not replay GET-stream events (%s)", exc.__class__.__name__)
            self._resuming = False
            return None
        for entry_id, fields in entries:
            if (message := _message(fields)) is not None:
                await send_callback(EventMessage(message, entry_id.decode()))
        self._replayed_up_to = entries[-1][0].decode() if entries else last_event_id
        return GET_STREAM_KEY

    async def latest_event_id(self) -> EventId:
        """The id of the session's latest stored entry ("0-0" before the first): a stream resumed after it replays
        every event stored since."""
        with unavailable_on_error():
            entries = _entries(await self._redis.xrevrange(self._key, max="+", min="-", count=1))
        return entries[0][0].decode() if entries else "0-0"

    @staticmethod
    async def _until(condition: Callable[[], bool]) -> None:
        """Wait until `condition` holds (polled: it is the SDK's state), at most RESUME_WAIT_SECONDS."""
        deadline = anyio.current_time() + RESUME_WAIT_SECONDS
        while not condition() and anyio.current_time() < deadline:
            await anyio.sleep(0.005)

    async def catch_up(self, heard: dict[str, str], first_telling: Callable[[str], bool] = lambda _: True) -> int:
        """Store every event of the logs the session hears (`heard`: each one's last event before the session began
        to hear it) that came after and that this stream has not told; return how many. Run by an instance that
        took the session over, before it serves the session. What the stream told before its oldest entry (it
        is capped) counts as told; `first_telling(log id)` says whether the session was not told it live meanwhile
        (the bus goes on telling it while this runs)."""
        with unavailable_on_error():
            entries = _entries(await self._redis.xrange(self._key, min="-", max="+"))
        told = _told(entries)
        missed: list[tuple[str, str]] = []  # (log id, name)
        for name, since in heard.items():
            with unavailable_on_error():
                logged = _entries(await self._redis.xrange(UPDATES.format(name), min=f"({since}", max="+"))
            known = [_order(log_id) for logged_name, log_id in told if logged_name == name]
            for entry_id, _ in logged:
                log_id = entry_id.decode()
                if (name, log_id) not in told and not (known and _order(log_id) < min(known)):
                    missed.append((log_id, name))
        missed = [(log_id, name) for log_id, name in missed if first_telling(log_id)]  # not told live meanwhile
        if not missed:
            return 0
        missed.sort(key=lambda entry: _order(entry[0]))
        pairs = [part for log_id, name in missed for part in (_notification(name, log_id), log_id)]
        stored: int = await run_once(
            self._catch_up, [self._key], [self._max_events, self._ttl_ms, *pairs], of_the_call=False
        )
        return stored


def _entries(reply: StreamRangeResponse | None) -> list[_Entry]:
    """XRANGE's (or XREVRANGE's) entries as our clients read them: a list, of bytes (they leave `decode_responses`
    off). redis-py types the reply for every client and protocol: `bytes | str | None` throughout, or None."""
    return cast(list[_Entry], reply)


def _told(entries: list[_Entry]) -> set[tuple[str, str]]:
    """(log name, log id) of every event the stream's entries told."""
    told = set()
    for _, fields in entries:
        message = _message(fields)
        # Only a request's or a notification's params name a log (`_logged`): no other entry has one (`u`).
        if isinstance(message, JSONRPCRequest | JSONRPCNotification) and b"u" in fields:
            name = _LOG_OF.get(message.method) or (message.params or {}).get("uri")
            if isinstance(name, str):
                told.add((name, fields[b"u"].decode()))
    return told


def _notification(name: str, log_id: str) -> bytes:
    method = _NOTIFICATION.get(name, "notifications/resources/updated")
    params = {"_meta": {UPDATE_META: log_id}} | ({"uri": name} if name not in _NOTIFICATION else {})
    return JSONRPCNotification(jsonrpc="2.0", method=method, params=params).model_dump_json(exclude_unset=True).encode()


def _logged(message: JSONRPCMessage) -> str:
    """The log id of the server event a notification tells of, or ''."""
    params = getattr(message, "params", None) or {}
    value = (params.get("_meta") or {}).get(UPDATE_META) if isinstance(params, dict) else None
    return value if isinstance(value, str) and _EVENT_ID.match(value) else ""


def _message(fields: dict[bytes, bytes]) -> JSONRPCMessage | None:
    if not fields.get(b"m"):
        return None  # a mark, or a priming event: nothing to send
    try:
        return _MESSAGE.validate_json(fields[b"m"])
    except ValidationError:
        return None


def _order(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition("-")
    return int(milliseconds), int(sequence)
