"""The victim: clients on their own addresses using every capability in a loop while an attack runs, each
session's counter checked exactly (one lost or doubled increment is a failure)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from loadtest.attacks.clients import Client, session_of
from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.client.modern import ModernClient

TIMEOUT = (5.0, 30.0)  # a call slower than 30 s counts as failed
COUNTS = 3  # increments per session


@dataclass
class VictimTally:
    calls: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # "capability: reason" -> calls
    slowest_seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


class Victim:
    """One thread per client in `clients`, each running `round` until stopped."""

    def __init__(self, url: str, clients: tuple[Client, ...]) -> None:
        self.url = url
        self.tally = VictimTally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(client,), daemon=True) for client in clients]

    def __enter__(self) -> Victim:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _loop(self, who: Client) -> None:
        while not self._stop.is_set():
            self._round(who)

    def _round(self, who: Client) -> None:
        """A 2025-11-25 session using each capability, then a 2026-07-28 client's calls."""
        client = McpClient(session_of(who), self.url, timeout=TIMEOUT)
        if not self._judge("initialize", lambda: cap.open_session(client)):
            return
        operations = [("plain tool", lambda: cap.basic_tool(client))]
        operations += [(f"counter {n}", lambda n=n: cap.counter(client, expected=n)) for n in range(1, COUNTS + 1)]
        operations += [
            ("logs", lambda: cap.logs(client)),
            ("progress", lambda: cap.progress(client)),
            ("sampling", lambda: cap.sampling(client)),
            ("elicitation", lambda: cap.elicitation(client)),
            ("subscribe", lambda: cap.subscribe(client, "victim")),
            ("publish", lambda: cap.publish(client, "victim", "still here")),
        ]
        for name, operation in operations:
            self._judge(name, operation)
        client.close()
        modern = ModernClient(session_of(who), self.url, timeout=TIMEOUT)
        self._judge("2026-07-28 plain tool", lambda: cap.basic_tool(modern))
        self._judge("2026-07-28 sampling", lambda: cap.sampling(modern))

    def _judge(self, name: str, operation) -> bool:
        started = time.monotonic()
        outcome = cap.attempt(operation, TIMEOUT[1])
        with self._lock:
            self.tally.calls += 1
            self.tally.slowest_seconds = max(self.tally.slowest_seconds, time.monotonic() - started)
            if outcome.failure is not None:
                self.tally.failures[f"{name}: {outcome.failure}"] += 1
        return outcome.failure is None
