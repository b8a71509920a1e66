"""A careful client: a tool call that failed in a way a retry may mend is sent again, with the same request id.

What the server's answer says decides: no answer (a broken stream, a connection cut, a timeout), a 5xx, a 409
("still running"), or an error that says "did not run: retry" or "retry with the same request id" is sent
again after a short pause; an answer (a result, or an error no retry mends) ends the call. A session the
server no longer knows (404) ends it too: the session is lost.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import requests

from loadtest.client.capabilities import client_error, judge
from loadtest.client.legacy import Answer, Exchange, McpClient

# The server's words for an error a retry may mend (mcp_cluster/shared/runs.py says them; a test holds them equal).
RETRY_ADVICE = ("did not run: retry", "retry with the same request id")
BACKOFF_SECONDS = (0.1, 0.2, 0.4, 0.8, 1.0)  # then 1 s between tries
RETRY_SECONDS = 60.0  # how long a call is tried before the client gives up (for now: it may try again later)


@dataclass
class CarefulCall:
    """What became of one call: its answer, or why it failed for good, and every try before."""

    request_id: int
    exchange: Exchange | None = None  # the last answer (None: no answer came)
    failure: str | None = None  # why the call failed for good; None when answered with a result
    retries: list[str] = field(default_factory=list)  # why each try but the last was sent again
    first_started: bool | None = None  # when the first try failed: whether its answer had begun (HTTP 200)
    given_up: bool = False  # not answered in the time given (`failure` is the last try's): it may have run
    tries: list[tuple[float, bool]] = field(default_factory=list)  # (time.monotonic(), answered) of each

    @property
    def session_lost(self) -> bool:
        return self.failure is not None and "Session not found" in self.failure


def call_tool(
    client: McpClient,
    name: str,
    arguments: dict | None = None,
    *,
    answer: Answer | None = None,
    request_id: int | None = None,
    give_up_after: float = RETRY_SECONDS,
) -> CarefulCall:
    """Call a tool until it is answered, or `give_up_after` seconds have passed (its `failure` is then the last
    try's, and it may have run); `request_id` sends a call of this session the client gave up on again."""
    call = CarefulCall(client.next_id() if request_id is None else request_id)
    deadline = time.monotonic() + give_up_after
    for attempt in itertools.count():
        again, started = _try(client, name, arguments, answer, call)
        call.tries.append((time.monotonic(), call.failure is None and again is None))
        if attempt == 0 and (again is not None or call.failure is not None):
            call.first_started = started
        if again is None:
            return call
        call.retries.append(again)
        if time.monotonic() > deadline:
            call.failure, call.given_up = again, True
            return call
        time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
    raise AssertionError("unreachable")


def _try(
    client: McpClient, name: str, arguments: dict | None, answer: Answer | None, call: CarefulCall
) -> tuple[str | None, bool]:
    """One try: (why to send it again, or None when the call is over; whether its answer had begun)."""
    try:
        exchange = client.call_tool(name, arguments, answer=answer, request_id=call.request_id)
    except requests.RequestException as exc:
        return client_error(exc, client.timeout[1]), isinstance(exc, requests.exceptions.ChunkedEncodingError)
    call.exchange = exchange
    failure, started = judge(exchange), exchange.status == 200
    if failure is not None and _mended_by_retry(exchange):
        return failure, started
    call.failure = failure
    return None, started


def _mended_by_retry(exchange: Exchange) -> bool:
    if exchange.status == 404:
        return False  # the session is gone: a retry meets the same
    if exchange.status >= 500 or exchange.status == 409 or exchange.rejected_answer is not None:
        return True
    if exchange.status == 200 and exchange.result is None and exchange.error is None:
        return True  # the stream ended before the answer
    said = (exchange.error or {}).get("message", "") + " ".join(
        str(part.get("text", "")) for part in (exchange.result or {}).get("content") or [] if isinstance(part, dict)
    )
    return any(advice in said for advice in RETRY_ADVICE)
