"""Sessions counting without pause through nginx while a fault strikes, judged per call.

Each session calls `increment` in a loop (and `analyze_with_ai`, which samples, every few increments).
The server's answer is checked against what it acknowledged before: an answer below it means
acknowledged increments were lost, an answer above it by more than the calls that failed without an
answer (which may have run) means an increment was applied twice. A session the server no longer knows
is lost, with everything it had acknowledged, and a new one takes its place.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient

BACKOFF_SECONDS = 0.1  # after a failed call, as a client would, instead of a tight loop of failures
SETTLE_ATTEMPTS = 10  # at the end, calls per session to learn where its count stands (with BACKOFF_SECONDS)


@dataclass
class Tally:
    """What the load saw, over all its sessions."""

    calls: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # reason -> calls
    sessions_lost: int = 0
    acknowledged_lost: int = 0  # increments answered, then gone
    doubled: int = 0  # increments applied twice
    longest_seconds: float = 0.0  # the slowest call, answered or not
    first_failure: float | None = None  # time.monotonic()
    recovered: float | None = None  # the first success after the last failure

    def failure(self, reason: str) -> None:
        now = time.monotonic()
        self.failed[reason] += 1
        self.first_failure = now if self.first_failure is None else self.first_failure
        self.recovered = None

    def success(self) -> None:
        if self.first_failure is not None and self.recovered is None:
            self.recovered = time.monotonic()


@dataclass
class _Session:
    """One counting session: where its count stands."""

    client: McpClient | None = None
    acknowledged: int = 0  # the count the server last answered
    unanswered: int = 0  # increments since, that failed without an answer (they may have run)
    answered: int = 0  # increments answered so far


@dataclass
class CountingLoad:
    """`sessions` clients counting through `url` while the block runs (a context manager)."""

    url: str
    sessions: int = 6
    sample_every: int = 5  # a sampling call every this many increments (0: none)
    timeout: tuple[float, float] = (5, 30)  # connect, read: a call may wait out an instance's drain
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
            thread.join()  # each ends within SETTLE_ATTEMPTS calls

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
            self._increment(session)
            if self.sample_every and session.answered != answered and session.acknowledged % self.sample_every == 0:
                started = time.monotonic()
                self._record(self._attempt(cap.sampling, session.client).failure, started)
        for _ in range(SETTLE_ATTEMPTS):  # the calls that failed without an answer: did they run?
            if not session.unanswered:
                break
            self._increment(session)

    def _increment(self, session: _Session) -> None:
        """One increment, judged against what the session had acknowledged."""
        started = time.monotonic()
        outcome = self._attempt(cap.counter, session.client, session.acknowledged + 1, session.unanswered)
        if outcome.session_lost:
            with self._lock:
                self.tally.sessions_lost += 1
                self.tally.acknowledged_lost += session.acknowledged
            self._record(outcome.failure, started)
            session.acknowledged, session.unanswered, session.client = 0, 0, self._open()
            return
        if outcome.value is None:  # no answer: it may have run
            self._record(outcome.failure, started)
            session.unanswered += 1
            return
        with self._lock:
            self.tally.acknowledged_lost += max(0, session.acknowledged + 1 - outcome.value)
            self.tally.doubled += max(0, outcome.value - (session.acknowledged + 1 + session.unanswered))
        self._record(None, started)
        session.acknowledged, session.unanswered = outcome.value, 0
        session.answered += 1

    def _open(self) -> McpClient:
        """A new session, trying until one opens or the load ends."""
        while True:
            client, started = McpClient(requests.Session(), self.url, timeout=self.timeout), time.monotonic()
            failure = self._attempt(cap.open_session, client).failure
            self._record(failure, started)
            if failure is None or self._done.is_set():
                return client

    def _attempt(self, operation: Callable[..., cap.Outcome], *args: object) -> cap.Outcome:
        return cap.attempt(lambda: operation(*args), self.timeout[1])

    def _record(self, failure: str | None, started: float) -> None:
        with self._lock:
            self.tally.calls += 1
            self.tally.longest_seconds = max(self.tally.longest_seconds, time.monotonic() - started)
            if failure is None:
                self.tally.success()
            else:
                self.tally.failure(failure)
        if failure is not None:
            time.sleep(BACKOFF_SECONDS)
