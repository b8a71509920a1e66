"""Handing this process's sessions to the others when it shuts down (SIGTERM: `docker stop`, a rollout).

While draining, the process starts no new call: it relays each to the instance that owns the session, or to
a live peer that takes the session over. It hands a session over (its record names no live owner from then
on) as soon as none of the session's calls runs here, so a call in flight finishes where it started, with
the answers it waits for (sampling, elicitation), if it ends within the drain's time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from mcp_cluster.cluster.member import ClusterMember
from mcp_cluster.shared.redis import RedisUnavailable

HANDOVERS_AT_ONCE = 32  # Redis calls a drain makes at a time, far below the pool's size
log = logging.getLogger(__name__)


class HandingOver(Exception):
    """The session is on its way to another instance: nothing ran here, serve the request where it goes."""


class RunningCall:
    """One call counted among its session's while it runs (a class: every call of a held session enters it)."""

    __slots__ = ("_handover", "_session_id")

    def __init__(self, handover: Handover, session_id: str) -> None:
        self._handover, self._session_id = handover, session_id

    async def __aenter__(self) -> None:
        self._handover.call_started(self._session_id)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._handover.call_ended(self._session_id)


class Handover:
    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        self.draining = False
        self._openings = 0  # initialize requests being served here (`opening`)
        self._opening_ended = anyio.Event()  # set whenever one of them ends
        self._calls: Counter[str] = Counter()  # calls (JSON-RPC requests) of each session running here
        self._closed: set[str] = set()  # sessions that start no new call here: their handover is due
        self._started: set[str] = set()  # sessions whose handover has begun (it is done once)
        self._handed: dict[str, anyio.Event] = {}  # set once the session is handed over

    def calls_running(self) -> int:
        return sum(self._calls.values())

    def moving(self, session_id: str) -> bool:
        """Whether this process began handing a session over (it may be another instance's by now)."""
        return session_id in self._started

    def call(self, session_id: str) -> RunningCall:
        """`async with` it to serve one call of a session held here; raises HandingOver (before anything runs)
        once the session's handover has begun. While draining, the session moves when its last call here ends."""
        if session_id in self._closed:
            raise HandingOver()
        return RunningCall(self, session_id)

    @asynccontextmanager
    async def opening(self) -> AsyncIterator[None]:
        """`async with` it to serve an initialize (never while draining: it opens on an instance that stays). Its
        session, held here before it is answered, is handed over only after: dropped meanwhile, it would end the
        initialize's stream without its answer."""
        self._openings += 1
        try:
            yield
        finally:
            self._openings -= 1
            self._opening_ended.set()

    def call_started(self, session_id: str) -> None:
        self._calls[session_id] += 1

    async def call_ended(self, session_id: str) -> None:
        self._calls[session_id] -= 1
        if not self._calls[session_id]:
            del self._calls[session_id]
            if self.draining:
                with anyio.CancelScope(shield=True):
                    await self._hand_over(session_id)

    async def handed_over(self, session_id: str) -> None:
        """Wait until a session held here has been handed over: at once when none of its calls runs here."""
        self._closed.add(session_id)
        if not self._calls.get(session_id):
            await self._hand_over(session_id)
        await self._event(session_id).wait()

    async def drain(self, seconds: float) -> None:
        """Stop owning: hand every session over once its calls end (at most `seconds`), then end relayed streams."""
        self.draining = True
        log.info("draining", extra={"fields": {"sessions": len(self._pending()), "calls": self.calls_running()}})
        limiter = anyio.CapacityLimiter(HANDOVERS_AT_ONCE)

        async def hand_over(session_id: str) -> None:
            async with limiter:
                await self.handed_over(session_id)

        with anyio.move_on_after(seconds):
            while self._openings:  # the sessions they open are held here already: answered first, then handed over
                self._opening_ended = anyio.Event()
                await self._opening_ended.wait()
            while pending := self._pending():  # again: a session opened or taken over meanwhile is pending too
                self._closed.update(pending)  # no new call starts on any of them while they wait their turn
                async with anyio.create_task_group() as group:
                    for session_id in pending:
                        group.start_soon(hand_over, session_id)
            await self.member.forwarder.relays_done()  # the calls this instance relays to others end too
        late = self._pending()
        if late:  # their calls outlived the drain: stopping ends them, and the client gets no answer
            log.warning("calls still running at the end of the drain", extra={"fields": {"sessions": len(late)}})
        for session_id in late:
            await self._hand_over(session_id)
        self.member.forwarder.close_streams()  # their clients reconnect, through an instance that stays

    def _pending(self) -> list[str]:
        return [sid for sid in self.member.manager.held() if not (sid in self._handed and self._handed[sid].is_set())]

    def _event(self, session_id: str) -> anyio.Event:
        return self._handed.setdefault(session_id, anyio.Event())

    async def _hand_over(self, session_id: str) -> None:
        handed = self._event(session_id)
        if session_id in self._started:  # once: a second caller waits for the first
            await handed.wait()
            return
        self._started.add(session_id)
        self._closed.add(session_id)
        try:
            await self.member.registry.release(session_id)
        except RedisUnavailable:
            # The record still names this process, which keeps serving the session until it stops; another
            # instance takes it over once this one's heartbeat has lapsed.
            log.warning("could not hand a session over; it moves once this process has stopped")
        else:
            self.member.metrics.handovers.inc()
            await self.member.manager.drop(session_id)  # and its GET stream ends: the client reconnects elsewhere
        finally:
            handed.set()
