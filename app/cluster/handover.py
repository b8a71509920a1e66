"""Handing this process's sessions to the others when it shuts down (SIGTERM: `docker stop`, a rollout).

While draining, the process runs no new call: it relays each to the instance that owns the session, or to a
live peer that takes the session over. It hands a session over (its record names no live owner from then on)
as soon as none of the session's calls runs here, so every call in flight finishes where it started, and
the answers those calls wait for (sampling, elicitation) still reach them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from app.cluster.member import ClusterMember
from app.shared.redis import RedisUnavailable

log = logging.getLogger(__name__)


class Handover:
    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        self.draining = False
        self._calls: Counter[str] = Counter()  # calls (JSON-RPC requests) of each session running here
        self._handed: dict[str, anyio.Event] = {}  # set once the session is handed over

    def calls_running(self) -> int:
        return sum(self._calls.values())

    @asynccontextmanager
    async def call(self, session_id: str) -> AsyncIterator[None]:
        """Serve one call of a session held here; while draining, its session moves once its last call ends."""
        self._calls[session_id] += 1
        try:
            yield
        finally:
            self._calls[session_id] -= 1
            if not self._calls[session_id]:
                del self._calls[session_id]
                if self.draining:
                    with anyio.CancelScope(shield=True):
                        await self._hand_over(session_id)

    async def handed_over(self, session_id: str) -> None:
        """Wait until a session held here has been handed over: at once when none of its calls runs here."""
        if not self._calls.get(session_id):
            await self._hand_over(session_id)
        await self._handed.setdefault(session_id, anyio.Event()).wait()

    async def drain(self, seconds: float) -> None:
        """Stop owning: hand every session over once its calls end (at most `seconds`), close relayed streams."""
        self.draining = True
        self.member.forwarder.close_streams()  # their clients reconnect, through another instance
        held = self.member.manager.held()
        log.info("draining", extra={"fields": {"sessions": len(held), "calls": self.calls_running()}})
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as group:
                for session_id in held:
                    group.start_soon(self.handed_over, session_id)
        late = self.member.manager.held()
        if late:  # their calls outlived the drain: what they write now is refused (fenced), not lost in silence
            log.warning("calls still running at the end of the drain", extra={"fields": {"sessions": len(late)}})
        for session_id in late:
            await self._hand_over(session_id)

    async def _hand_over(self, session_id: str) -> None:
        handed = self._handed.setdefault(session_id, anyio.Event())
        if handed.is_set():
            return
        try:
            await self.member.registry.release(session_id)
        except RedisUnavailable:
            log.warning("could not hand a session over; it is taken over once this process has stopped")
        await self.member.manager.drop(session_id)  # and its GET stream ends: the client reconnects elsewhere
        handed.set()
