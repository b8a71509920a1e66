"""Sessions counting without pause while the test restarts instances, judged per call: every answer must
continue its session's count exactly (nothing acknowledged lost or applied twice)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient

# nginx's answer when an instance reset a connection nginx had just sent a request on: a stopping instance's
# kernel resets the connections still queued on its listening socket as it closes (docs/configuration.md).
RESET = "HTTP 502: No MCP instance answered"


@dataclass
class CountingLoad:
    clients: list[McpClient]
    sample_every: int = 0  # also a sampling call every this many increments (0: none)
    counted: list[int] = field(init=False)
    resets: list[str] = field(default_factory=list)  # calls nginx answered with RESET: never answered, retried
    wrong: list[str] = field(default_factory=list)  # anything else: a failed call, a count lost or doubled

    def __post_init__(self) -> None:
        self.counted = [0] * len(self.clients)
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._count, args=(n,)) for n in range(len(self.clients))]

    def __enter__(self) -> CountingLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _count(self, n: int) -> None:
        client, unanswered = self.clients[n], 0
        while not self._done.is_set() and not self.wrong:
            outcome = cap.counter(client, expected=self.counted[n] + 1, unanswered=unanswered)
            if outcome.failure is not None and outcome.failure.startswith(RESET):
                self.resets.append(outcome.failure)
                unanswered += 1  # it may not have run; the next answer says (at most this many more)
                continue
            if outcome.failure is not None:
                self.wrong.append(f"increment: {outcome.failure}")
                return
            self.counted[n], unanswered = outcome.value, 0
            sampling = self.sample_every and self.counted[n] % self.sample_every == 0
            if sampling and (failure := cap.sampling(client).failure) is not None:
                self.wrong.append(f"sampling: {failure}")
