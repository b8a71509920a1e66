"""The victim: clients on their own addresses using every capability in a loop while an attack runs, each
session's counter checked exactly (one lost or doubled increment is a failure)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient, stream_events
from loadtest.client.modern import ModernClient
from loadtest.experiments.attacks.clients import Client, session_of

TIMEOUT = (5.0, 30.0)  # a call slower than 30 s counts as failed
COUNTS = 3  # increments per session
NEW_TOPICS = 20  # topics a victim's client begins (well under its bound of 100), then publishes on again


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
        self._rounds = 0
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
        if self._judge("initialize", lambda: cap.open_session(client)).failure is not None:
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
        opened = self._judge("2026-07-28 open counter", lambda: cap.open_counter(modern))
        if opened.handle:
            self._judge("2026-07-28 counter", lambda: cap.counter(modern, expected=1, handle=opened.handle))
        self._rounds += 1  # a topic of its own for each of its first rounds, then the same again
        topic = f"victim-{who.forwarded_for or who.source}-{self._rounds % NEW_TOPICS}".replace(".", "-")
        self._judge("2026-07-28 new topic", lambda: cap.publish(modern, topic, "mine"))
        self._judge("2026-07-28 listen stream", lambda: _listen(modern))

    def _judge(self, name: str, operation) -> cap.Outcome:
        started = time.monotonic()
        outcome = cap.attempt(operation, TIMEOUT[1])
        with self._lock:
            self.tally.calls += 1
            self.tally.slowest_seconds = max(self.tally.slowest_seconds, time.monotonic() - started)
            if outcome.failure is not None:
                self.tally.failures[f"{name}: {outcome.failure}"] += 1
        return outcome


def _listen(client: ModernClient) -> cap.Outcome:
    """A 2026-07-28 listen stream opened and acknowledged, then closed."""
    response = client.listen([cap.updates_uri("victim")], read_timeout=TIMEOUT[1])
    try:
        message = next(stream_events(response))[1]
    finally:
        response.close()
    acknowledged = message.get("method") == "notifications/subscriptions/acknowledged"
    return cap.Outcome(None, None if acknowledged else f"listen: {str(message.get('error', message))[:80]}")
