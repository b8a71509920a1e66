"""Sessions counting without pause through nginx while a fault strikes, each call judged exactly.

Each session calls `increment` in a loop (and `analyze_with_ai`, which samples, every few increments), as a
careful client (loadtest/client/careful.py): a call that failed in a way a retry may mend is sent again with
the same request id, until it is answered. Every answer is then held against what the session had
acknowledged before, with no allowance: one above it by more than one means an increment was applied twice
for one request, one below it that acknowledged increments were lost. A call the client gave up on stays the
session's next call, sent again with its id until answered. A session the server no longer knows is lost,
with everything it had acknowledged, and a new one takes its place.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from loadtest.client import capabilities as cap
from loadtest.client import careful
from loadtest.client.legacy import McpClient

SETTLE_SECONDS = 30.0  # at the end, how long a call not yet answered is tried again


@dataclass
class Tally:
    """What the load saw, over all its sessions."""

    calls: int = 0  # each call once, however often it was sent
    calls_retried: int = 0  # calls sent more than once
    retried: Counter[str] = field(default_factory=Counter)  # why each try was sent again
    failed: Counter[str] = field(default_factory=Counter)  # calls that failed for good: reason -> calls
    first_failed_unstarted: int = 0  # calls whose first try failed before its answer began (nginx may re-send)
    first_failed_started: int = 0  # ... after it began streaming (only the client can send it again)
    sessions_lost: int = 0
    acknowledged_lost: int = 0  # increments answered, then gone
    doubled: int = 0  # increments applied more than once for one request id
    crossed: int = 0  # answers that resolved another request than theirs, or results of another request
    longest_seconds: float = 0.0  # the slowest call, retries included
    first_failure: float | None = None  # time.monotonic() of the first try that failed
    recovered: float | None = None  # the first try answered after the last one that failed

    def count(self, call: careful.CarefulCall, started: float) -> None:
        self.calls += 1
        self.longest_seconds = max(self.longest_seconds, time.monotonic() - started)
        self.retried.update(call.retries)
        self.calls_retried += bool(call.retries)
        if call.given_up:
            self.failed[f"not answered in time: {call.failure}"] += 1
        elif call.failure is not None:
            self.failed[call.failure] += 1
        if call.first_started is not None:
            if call.first_started:
                self.first_failed_started += 1
            else:
                self.first_failed_unstarted += 1
        for when, answered in call.tries:
            if not answered:
                self.first_failure = when if self.first_failure is None else self.first_failure
                self.recovered = None
            elif self.first_failure is not None and self.recovered is None:
                self.recovered = when


@dataclass
class _Session:
    """One counting session: where its count stands."""

    client: McpClient | None = None
    acknowledged: int = 0  # the count the server last answered
    pending: int | None = None  # the request id of an increment not answered yet: the next one sent
    answered: int = 0  # increments answered so far


@dataclass
class CountingLoad:
    """`sessions` clients counting through `url` while the block runs (a context manager)."""

    url: str
    sessions: int = 6
    sample_every: int = 5  # a sampling call every this many increments (0: none)
    timeout: tuple[float, float] = (5, 30)  # connect, read: a call may wait out an instance's drain
    pause: float = 0.0  # seconds each session waits after an answered increment (0: it counts flat out)
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._sessions = [_Session() for _ in range(self.sessions)]
        self._threads = [threading.Thread(target=self._count, args=(session,)) for session in self._sessions]

    def __enter__(self) -> CountingLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join()  # each ends once its pending call is answered, or after SETTLE_SECONDS

    @property
    def counted(self) -> list[int]:
        """Every session's acknowledged count (at the end: where each stands)."""
        return [session.acknowledged for session in self._sessions]

    @property
    def failed_calls(self) -> int:
        return sum(self.tally.failed.values())

    def go_on(self, increments: int, timeout: float = 30.0) -> None:
        """Return once every session has had `increments` more increments answered (after a fault: they all
        count again); TimeoutError if one has not within `timeout`."""
        targets, deadline = [session.answered + increments for session in self._sessions], time.monotonic() + timeout
        while any(session.answered < target for session, target in zip(self._sessions, targets, strict=True)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"a session did not count {increments} more times within {timeout:.0f} s")
            time.sleep(0.05)

    def _count(self, session: _Session) -> None:
        session.client = self._open()
        while not self._done.is_set():
            answered = session.answered
            self._increment(session, careful.RETRY_SECONDS)
            if self.sample_every and session.answered != answered and session.acknowledged % self.sample_every == 0:
                self._sample(session.client)
            if self.pause and session.answered != answered:
                self._done.wait(self.pause)
        if session.pending is not None:  # the call the client gave up on: did it run?
            self._increment(session, SETTLE_SECONDS)

    def _increment(self, session: _Session, give_up_after: float) -> None:
        """One increment (or the pending one, sent again), its answer held against what was acknowledged."""
        call = self._call(
            lambda: careful.call_tool(
                session.client, "increment", request_id=session.pending, give_up_after=give_up_after
            )
        )
        if call.session_lost:
            with self._lock:
                self.tally.sessions_lost += 1
                self.tally.acknowledged_lost += session.acknowledged
            session.acknowledged, session.pending, session.client = 0, None, self._open()
            return
        if call.failure is not None:
            session.pending = call.request_id if call.given_up else None  # it may have run: sent again next
            return
        session.pending = None
        value = call.exchange.result["structuredContent"]["result"]
        with self._lock:
            self.tally.acknowledged_lost += max(0, session.acknowledged + 1 - value)
            self.tally.doubled += max(0, value - (session.acknowledged + 1))
        session.acknowledged = value
        session.answered += 1

    def _open(self) -> McpClient:
        """A new session, tried again until one opens (a careful client's initialize) or the load ends."""
        call, started = careful.CarefulCall(0), time.monotonic()
        while True:
            client = McpClient(requests.Session(), self.url, timeout=self.timeout)
            failure = cap.attempt(functools.partial(cap.open_session, client), self.timeout[1]).failure
            call.tries.append((time.monotonic(), failure is None))
            if failure is not None and call.first_started is None:
                call.first_started = False
            if failure is None or self._done.is_set():
                call.failure = failure
                break
            call.retries.append(failure)
            time.sleep(careful.BACKOFF_SECONDS[0])
        with self._lock:
            self.tally.count(call, started)
        return client

    def _sample(self, client: McpClient) -> None:
        call = self._call(lambda: careful.call_tool(client, *SAMPLING, answer=cap.answer))
        text = ((call.exchange.result or {}).get("content") or [{}])[0].get("text") if call.exchange else None
        if call.failure is None and text != f"analysis: {cap.SAMPLED_TEXT}":
            with self._lock:
                self.tally.failed[f"wrong answer: {text!r}"] += 1

    def _call(self, send: Callable[[], careful.CarefulCall]) -> careful.CarefulCall:
        started = time.monotonic()
        call = send()
        with self._lock:
            self.tally.count(call, started)
        return call


SAMPLING = ("analyze_with_ai", {"text": "three instances"})
