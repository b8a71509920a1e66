"""The run of a request that must take effect once, and what an error tells a client about retrying.

A 2025-11-25 `tools/call` is keyed by its session and JSON-RPC id (`mcp_cluster/sessions/once.py`). While it runs, the
`Run` is the current run of the task serving it: every write the call makes is numbered, and the n-th write
of a key applies once however often the call runs (`mcp_cluster/shared/redis.py` `run_once` in Redis, `Run.once` in
memory). A tool reaches the key with `request_key(ctx)`, for effects of its own.

Every error the layer answers says one of two things about the request it ends: it did not run (retry), or it
may have run. Which retry is then safe depends on whether the request was keyed: a keyed request retried with
the same id is answered once, any other may run again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

NOT_RUN = "did not run"  # then what to change before sending it again, where a retry as it is would fail alike
DID_NOT_RUN = f"{NOT_RUN}: retry"
MAY_HAVE_RUN = "may have run: retry with the same request id, which is safe"
# A request with no session (2026-07-28, a stateless transport) has no key: nothing recognises its retry.
MAY_HAVE_RUN_UNKEYED = "may have run: a retry may run it again (a request without a session is not recognised)"
T = TypeVar("T")


@dataclass(eq=False)
class Run:
    """One run of a tool call: keyed (`key` names its session and request id) or not (`key` None)."""

    key: str | None
    kept_seconds: float = 0.0  # the retry horizon: how long a keyed write's first answer is kept
    client: str = ""  # whose call it is (mcp_cluster/http/clients.py): what it keeps counts against that client's share
    log: dict[int, Any] = field(default_factory=dict)  # the answers of its writes in memory, by number
    writes: int = 0  # the writes it has made so far
    transient: str | None = None  # why its outcome is not final (Redis away, the session moved): kept for no retry

    def next_write(self) -> int:
        self.writes += 1
        return self.writes

    async def once(self, apply: Callable[[], Awaitable[T]]) -> T:
        """Apply an in-memory write as this run's next one, unless an earlier run of the same request already
        did: then its first answer (`log` is the request's, shared by its runs)."""
        number = self.next_write()
        if number in self.log:
            first: T = self.log[number]  # the answer `apply` gave an earlier run
            return first
        answer = await apply()
        self.log[number] = answer
        return answer


current_run: ContextVar[Run | None] = ContextVar("mcp_current_run", default=None)


async def written_once(apply: Callable[[], Awaitable[T]]) -> T:
    """An in-memory write, applied once per keyed request (see `Run.once`); outside a keyed run, just applied."""
    run = current_run.get()
    return await apply() if run is None or run.key is None else await run.once(apply)


def mark_transient(reason: str) -> None:
    """The current run failed for a reason a retry may not meet (its outcome is then not kept for retries)."""
    run = current_run.get()
    if run is not None and run.transient is None:
        run.transient = reason


def retry_advice(may_have_run: bool) -> str:
    """What an error ending the current request says about retrying it. Inside a tool call the call may have
    acted before the error, whatever failed: only a keyed call is then safe to retry."""
    run = current_run.get()
    if run is not None:
        return MAY_HAVE_RUN if run.key is not None else MAY_HAVE_RUN_UNKEYED
    return MAY_HAVE_RUN_UNKEYED if may_have_run else DID_NOT_RUN
