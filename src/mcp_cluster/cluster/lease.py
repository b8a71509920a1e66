"""This process's lease on the sessions it owns: an owner cut off from Redis falls silent before any other
instance may take one of its sessions over.

The arithmetic (docs/design/redis-sessions.md#the-lease):

- Every HEARTBEAT_SECONDS the owner sets `mcp:owner:<owner>` with an expiry of OWNER_TIMEOUT_SECONDS (E).
  Redis applies a beat no earlier than it was sent, so the key lives until at least `sent + E`.
- Another instance claims a session only once it has seen the owner's key missing for E by its own monotonic
  clock (`Liveness.silent`), and while it is missing, checked in the claim's own script
  (`mcp_cluster/sessions/records.py`): no takeover begins before `sent + E` of the owner's last beat Redis took, even
  when Redis's wall clock steps ahead and expires the key early (the owner's next beat brings it back).
- The owner holds its lease until STOP_AFTER_SECONDS (S) after *sending* the last beat Redis answered, timed
  by this process's monotonic clock. Without the lease it sends nothing for its sessions: no result, event or
  publish (`mcp_cluster/cluster/router.py`, `mcp_cluster/shared/bus.py`), and it closes their GET streams.
- S + MARGIN_SECONDS = E. The margin covers what lies between a check of the lease and the bytes leaving
  (one scheduling delay of the event loop) and the drift between this clock and Redis's over E.

A lease regained after a lapse is a new epoch: a session held here acts again only once Redis confirms it
still names this owner (no one claimed it meanwhile), in that epoch.
"""

from __future__ import annotations

import math
import time

import anyio

HEARTBEAT_SECONDS = 0.5
OWNER_TIMEOUT_SECONDS = 2.0  # E: a beat's expiry; an owner silent this long may have its sessions taken over
STOP_AFTER_SECONDS = 1.5  # S: the owner stops acting this long after sending the last beat Redis answered
MARGIN_SECONDS = OWNER_TIMEOUT_SECONDS - STOP_AFTER_SECONDS


class Lease:
    """Held while a beat Redis answered was sent less than STOP_AFTER_SECONDS ago."""

    def __init__(self) -> None:
        self._sent = -math.inf  # when the last beat Redis answered was sent: none yet
        self.epoch = 0  # one more each time the lease is regained after a lapse
        self._renewed = anyio.Event()

    def held(self) -> bool:
        return time.monotonic() - self._sent < STOP_AFTER_SECONDS

    def seconds_left(self) -> float:
        return self._sent + STOP_AFTER_SECONDS - time.monotonic()

    def renewed(self, sent: float) -> None:
        """Redis answered the beat sent at `sent` (monotonic)."""
        if not self.held():  # lapsed, or never held: what was confirmed before may have been taken over since
            self.epoch += 1
        self._sent = max(self._sent, sent)
        self._renewed.set()
        self._renewed = anyio.Event()

    async def regained(self) -> None:
        """Return once the lease is held."""
        while not self.held():
            await self._renewed.wait()

    async def epoch_after(self, epoch: int) -> int:
        """Return the epoch once it is past `epoch`: a beat Redis answered renewed a lease that had lapsed (or was
        never held). Counted at the renewal itself, so no lapse goes unseen however short."""
        while self.epoch == epoch:
            await self._renewed.wait()
        return self.epoch

    async def held_within(self, seconds: float) -> bool:
        """Whether the lease is held, or regained within `seconds`."""
        with anyio.move_on_after(seconds):
            await self.regained()
        return self.held()

    async def lapsed(self) -> None:
        """Return once the lease is not held."""
        while (left := self.seconds_left()) > 0:
            await anyio.sleep(left)
