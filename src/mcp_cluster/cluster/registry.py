"""Which sessions this process holds, and since when Redis confirmed each one its own: the holds that fence what
it sends and writes for them. The records are read and written through `SessionRecords` (the one module that
owns them), the process's liveness through `Liveness`; this keeps the view between them."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from mcp_cluster.cluster.lease import HEARTBEAT_SECONDS, Lease
from mcp_cluster.cluster.liveness import Liveness
from mcp_cluster.sessions.records import ForeignRecord, Opening, Owner, SessionRecords
from mcp_cluster.shared.redis import RedisUnavailable

CONFIRM_EVERY_SECONDS = 1.0  # a local session re-checks that it is still ours at most this often
LOOKUP_CACHE_SECONDS = 1.0
ENDED_REMEMBERED = 10_000
log = logging.getLogger(__name__)


@dataclass
class _Hold:
    """This process's hold on a session: the generation it got it at (the fence of its writes), and when
    Redis last confirmed it, in which epoch of the lease."""

    generation: int
    epoch: int
    confirmed: float = field(default_factory=time.monotonic)


class SessionRegistry:
    def __init__(self, records: SessionRecords, liveness: Liveness, ttl_seconds: float) -> None:
        self.records = records
        self.liveness = liveness
        self._ttl_seconds = ttl_seconds
        self._check_all = anyio.Event()  # set when the lease is regained after a lapse, or a session was lost
        self._lost: set[str] = set()  # sessions Redis said are no longer ours, for the sweep to hand on
        self._owned: dict[str, _Hold] = {}  # the sessions this process owns
        self._lookups: dict[str, tuple[Owner, float]] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()  # the last ENDED_REMEMBERED sessions ended here

    @property
    def owner_id(self) -> str:
        return self.liveness.owner_id

    @property
    def lease(self) -> Lease:
        return self.liveness.lease

    async def register(self, session_id: str, opening: Opening) -> None:
        """Record a session this process just opened."""
        epoch = self.lease.epoch  # registered before the lease could lapse: its beats named this owner alive
        await self.records.register(session_id, self.owner_id, opening)
        self._owned[session_id] = _Hold(generation=1, epoch=epoch)

    async def confirm(self, session_id: str, *, now: bool = False) -> bool:
        """Is a session held here still ours? False when another process took it over or its record is gone
        (ended elsewhere, or lost by Redis): either way this process must stop serving it."""
        hold = self._owned.get(session_id)
        fresh = hold is not None and time.monotonic() - hold.confirmed < CONFIRM_EVERY_SECONDS
        if fresh and not now and self.acting_for(session_id):
            return True
        epoch = self.lease.epoch
        if not await self.records.confirm(session_id, self.owner_id):
            self._let_go(session_id)
            self._lost.add(session_id)
            self._check_all.set()
            return False
        if (hold := self._owned.get(session_id)) is not None:  # still ours (it may have been let go meanwhile)
            hold.confirmed = time.monotonic()
            hold.epoch = epoch  # acts once the lease is held in this epoch (not if it lapsed while confirming)
        return True

    def acting_for(self, session_id: str) -> bool:
        """Whether this process may act for a session now: it holds the session and its lease, and Redis has
        confirmed the session ours since the lease was last regained (mcp_cluster/cluster/lease.py)."""
        hold = self._owned.get(session_id)
        return hold is not None and hold.epoch == self.lease.epoch and self.lease.held()

    async def may_act(self, session_id: str, within: float) -> bool:
        """Whether this process may act for a session now, or may again within `within` seconds (`regain`)."""
        if self.acting_for(session_id):
            return True
        with anyio.move_on_after(within):
            return await self.regain(session_id)
        return False

    async def regain(self, session_id: str) -> bool:
        """Wait until this process may act for a session again (its lease held, the session confirmed ours);
        False when it is no longer ours. Redis being away keeps it waiting: bound it with a timeout."""
        while True:
            await self.lease.regained()
            if self.acting_for(session_id):
                return True
            try:
                if not await self.confirm(session_id, now=True):
                    return False
            except RedisUnavailable:
                await anyio.sleep(HEARTBEAT_SECONDS)  # and ask again (the lease may lapse meanwhile)

    async def lookup(self, session_id: str) -> Owner | None:
        """The owner of a session held elsewhere, or None if there is no such session."""
        cached = self._lookups.get(session_id)
        if cached is not None and time.monotonic() - cached[1] < LOOKUP_CACHE_SECONDS:
            return cached[0]
        owner = await self.records.lookup(session_id)
        if owner is None:
            self._lookups.pop(session_id, None)
            return None
        now = time.monotonic()
        if len(self._lookups) >= 1000:  # keep only what is still fresh: the cache holds the last second's sessions
            self._lookups = {sid: hit for sid, hit in self._lookups.items() if now - hit[1] < LOOKUP_CACHE_SECONDS}
        self._lookups[session_id] = (owner, now)
        return owner

    def owned(self) -> int:
        """How many sessions this process owns."""
        return len(self._owned)

    def owns(self, session_id: str) -> bool:
        """Whether this process registered or claimed the session (and has not let it go)."""
        return session_id in self._owned

    def tenure(self, session_id: str) -> tuple[str, int] | None:
        """(owner id, generation) of this process's hold on a session, the fence its writes carry; None when
        it holds none."""
        hold = self._owned.get(session_id)
        return (self.owner_id, hold.generation) if hold is not None else None

    def _let_go(self, session_id: str) -> None:
        self._owned.pop(session_id, None)

    def forget_lookup(self, session_id: str) -> None:
        self._lookups.pop(session_id, None)

    async def claim(self, session_id: str, dead_owner: str) -> Opening | None:
        """Take over a session whose owner is gone; None if another process claimed it first."""
        self._lookups.pop(session_id, None)
        epoch = self.lease.epoch
        try:
            opening = await self.records.claim(session_id, dead_owner, self.owner_id)
        except ForeignRecord:  # nothing to rebuild from: the session is gone
            log.error("refused a session record that is not one of ours; ending the session")
            await self.forget(session_id)
            return None
        if opening is not None:
            self._owned[session_id] = _Hold(generation=opening.generation, epoch=epoch)
        return opening

    async def release(self, session_id: str) -> None:
        """Hand a session over (this process is shutting down): any instance may claim it from now on."""
        await self.records.release(session_id, self.owner_id)
        self._let_go(session_id)

    async def save_subscriptions(self, session_id: str, uris: list[str]) -> None:
        await self.records.save_subscriptions(session_id, self.owner_id, uris)

    def ended_here(self, session_id: str) -> bool:
        """Whether this process ended the session (a record naming it afterwards is a deletion that failed)."""
        return session_id in self._ended

    async def forget(self, session_id: str) -> None:
        """The session has ended (DELETE or idle timeout): delete its record if it is still ours."""
        self._let_go(session_id)
        self._ended[session_id] = None
        if len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        try:
            await self.records.forget(session_id, self.owner_id)
        except RedisUnavailable:
            log.warning("could not delete an ended session's record; it expires by itself")

    async def sweep(self, on_lost: Callable[[str], Awaitable[None]]) -> None:
        """Keep the records of the sessions held here from expiring, and hand `on_lost` any that are no
        longer ours (taken over while this process was cut off, or ended elsewhere); all of them at once
        when the lease is back after a lapse."""
        every = max(HEARTBEAT_SECONDS, self._ttl_seconds / 3)
        async with anyio.create_task_group() as group:
            group.start_soon(self._check_all_on_regain)
            while True:
                with anyio.move_on_after(every):
                    await self._check_all.wait()
                self._check_all = anyio.Event()
                for session_id in list(self._owned):
                    try:
                        await self.confirm(session_id, now=True)
                    except RedisUnavailable:
                        break  # try them all again next time
                while self._lost:
                    await on_lost(self._lost.pop())

    async def _check_all_on_regain(self) -> None:
        epoch = await self.lease.epoch_after(0)  # the first beat: nothing was held before it
        while True:
            epoch = await self.lease.epoch_after(epoch)
            log.warning("this owner's lease is back after a lapse; checking which sessions are still ours")
            self._check_all.set()
