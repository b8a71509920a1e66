"""A session's GET stream, opened afresh, begins with an event that carries only an id.

The SDK primes a POST's stream and a resumed GET stream, not a new GET stream: a client whose new stream
breaks before its first event (its instance drains, the relay dies) has no `Last-Event-ID` to resume with,
opens another stream, and never hears what was published in between. Primed with the id of the session's
latest stored event (`RedisEventStore.latest_event_id`), it resumes from there and hears it all, from any
instance. Clients skip an event with no data (the 2025-11-25 priming event).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_cluster.cluster.event_store import RedisEventStore
from mcp_cluster.http.messages import LAST_EVENT_ID_HEADER, SESSION_ID_HEADER, header
from mcp_cluster.shared.redis import RedisUnavailable

log = logging.getLogger(__name__)


class PrimedGetStreams:
    """`event_store_of(session id)`: the event store of a session held here, None for any other."""

    def __init__(self, app: ASGIApp, path: str, event_store_of: Callable[[str], RedisEventStore | None]) -> None:
        self.app = app
        self._path = path
        self._event_store_of = event_store_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        store = self._store_to_prime(scope)
        if store is None:
            await self.app(scope, receive, send)
            return
        try:
            latest = await store.latest_event_id()  # before the SDK opens the stream: later events come after it
        except RedisUnavailable as exc:
            log.warning("a new GET stream is not primed: %s", exc)  # it opens all the same, as the SDK's
            await self.app(scope, receive, send)
            return
        priming = f"id: {latest}\r\ndata: \r\n\r\n".encode()

        async def send_primed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start" and message["status"] == 200:
                content_type = header(message.get("headers", []), b"content-type") or ""
                if content_type.startswith("text/event-stream"):
                    await send({"type": "http.response.body", "body": priming, "more_body": True})

        await self.app(scope, receive, send_primed)

    def _store_to_prime(self, scope: Scope) -> RedisEventStore | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != self._path:
            return None
        headers = scope["headers"]
        session_id = header(headers, SESSION_ID_HEADER)
        if session_id is None or header(headers, LAST_EVENT_ID_HEADER) is not None:
            return None  # no session (the SDK refuses it), or resumed (the SDK primes it)
        return self._event_store_of(session_id)
