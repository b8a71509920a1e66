"""The connection of each 2025-11-25 session this process holds: what its messages to the client go out
through (the requests it asks, the notifications of its GET stream), and which server events it was told.

Noted when a session opens (`middleware`, outermost in the server's chain, sees its `initialize`) or is rebuilt
here after a takeover (`add`); a session that ends leaves with its connection (weak references).
"""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary, WeakValueDictionary

from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import RequestId

from mcp_cluster import sdk_internals, telemetry

TOLD_KEPT_SECONDS = 10.0  # after a takeover's catch-up: far longer than an event takes to cross the bus


class Connections:
    def __init__(self) -> None:
        self._by_session: WeakValueDictionary[str, Connection] = WeakValueDictionary()
        self._since: WeakKeyDictionary[Connection, float] = WeakKeyDictionary()  # when each began to be served here
        # The events (log ids) told to each session taken over lately, and until when they are kept.
        self._told: dict[str, tuple[float, set[str]]] = {}

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            connection = sdk_internals.connection_of(ctx)
            if connection.session_id is not None:
                self.add(connection.session_id, connection)
        return await call_next(ctx)

    def add(self, session_id: str, connection: Connection) -> None:
        self._by_session[session_id] = connection
        self._since[connection] = time.monotonic()

    def ended(self, session_id: str) -> None:
        """A session held here ended (DELETE, idle timeout): how long it was served here, for the telemetry."""
        connection = self._by_session.get(session_id)
        if connection is not None and (since := self._since.pop(connection, None)) is not None:
            telemetry.session_ended(since)

    def get(self, session_id: str) -> Connection | None:
        return self._by_session.get(session_id)

    def stop_orphaned(self, session_id: str, request_id: RequestId) -> bool:
        """Stop a request of the session's client that is running here and whose client has left, so that the
        same request, sent again, runs again here (`sdk_internals.stop_orphaned`)."""
        connection = self._by_session.get(session_id)
        return connection is not None and sdk_internals.stop_orphaned(connection, request_id)

    def held(self) -> list[tuple[str, Connection]]:
        """Every session held here now, with its connection."""
        return list(self._by_session.items())

    def catching_up(self, session_id: str) -> None:
        """A session taken over is being told what it missed: from now on for a while, each event it is told, by
        the catch-up or live from the bus, is told once (`first_telling`)."""
        now = time.monotonic()
        self._told = {sid: kept for sid, kept in self._told.items() if kept[0] > now}
        self._told[session_id] = (now + TOLD_KEPT_SECONDS, set())

    def first_telling(self, session_id: str, event: str) -> bool:
        """Whether the session is told the server event `event` (its log id) for the first time (remembered then,
        while it is catching up): a session is never told an event twice."""
        kept = self._told.get(session_id)
        if kept is None or kept[0] < time.monotonic():
            return True
        if event in kept[1]:
            return False
        kept[1].add(event)
        return True
