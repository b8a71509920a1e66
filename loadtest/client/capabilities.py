"""The MCP capabilities the load test measures: one operation each, judged the way a user would.

An operation returns an `Outcome`: which instance answered, and the first reason (short and
stable, so Locust groups them) a user would call it a failure. An operation takes a client of
either protocol (`McpClient` for 2025-11-25, `ModernClient` for 2026-07-28): both have the same
`request` and `call_tool`. No Locust imports here: the pytest suite drives the same operations
against real servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests

from loadtest.client.legacy import LEGACY_VERSION, Exchange, McpClient
from loadtest.client.modern import MODERN_VERSION, ModernClient

LEGACY = LEGACY_VERSION  # "2025-11-25": initialize, sessions, server requests mid-call, GET stream
MODERN = MODERN_VERSION  # "2026-07-28": no sessions, input-required rounds, subscriptions/listen
PROTOCOLS = (LEGACY, MODERN)
Client = McpClient | ModernClient

BASIC = "tools/call process_file"
COUNTER = "tools/call increment"
LOGS = "tools/call slow_task (logs)"
PROGRESS = "tools/call slow_task (progress)"
SAMPLING = "tools/call analyze_with_ai"
ELICITATION = "tools/call confirm_action"
RESOURCE_UPDATES = "notifications/resources/updated"
SESSION_CHURN = "session lifecycle"
OPEN_SESSION = "initialize"
OPEN_COUNTER = "tools/call open_counter"  # 2026-07-28: the counter's state lives under a handle

CAPABILITIES = {
    BASIC: "plain tool",
    COUNTER: "session state",
    LOGS: "logs",
    PROGRESS: "progress",
    SAMPLING: "sampling",
    ELICITATION: "elicitation",
    RESOURCE_UPDATES: "resource updates",
    SESSION_CHURN: "session churn",
}
SESSIONS_ONLY = (SESSION_CHURN,)  # nothing to measure without sessions: not run under 2026-07-28
HANDLE_LOST = "unknown or expired counter handle"  # in increment's error for a handle it does not know
STEPS = 3  # slow_task steps: three logs and three progress notifications expected
SAMPLED_TEXT = "looks balanced"


def capabilities_for(protocol: str) -> dict[str, str]:
    """The capabilities a run under `protocol` measures (CAPABILITIES' names and labels)."""
    return {name: label for name, label in CAPABILITIES.items() if protocol == LEGACY or name not in SESSIONS_ONLY}


@dataclass(frozen=True)
class Outcome:
    instance: str | None
    failure: str | None = None
    value: int | None = None  # what the operation returned, where the next one depends on it
    handle: str | None = None  # open_counter's counter handle

    @property
    def session_lost(self) -> bool:
        return self.failure is not None and "Session not found" in self.failure

    @property
    def handle_lost(self) -> bool:
        """increment refused the counter handle: the server never issued it or has forgotten it."""
        return self.failure is not None and HANDLE_LOST in self.failure


def attempt(operation: Callable[[], Outcome], read_timeout: float) -> Outcome:
    """Run an operation; an exception the client raised (a broken stream, a timeout) is its failure."""
    try:
        return operation()
    except Exception as exc:
        return Outcome(None, client_error(exc, read_timeout))


def client_error(exc: Exception, read_timeout: float) -> str:
    """A short, stable reason for an exception the client raised."""
    if isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
        return f"timeout: no answer within {read_timeout:.0f} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "stream broken mid-response"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"client error: {type(exc).__name__}"


def answer(server_request: dict) -> dict:
    """What the simulated user and model answer: a completion for sampling, 'yes' for elicitation."""
    if server_request["method"] == "sampling/createMessage":
        return {"role": "assistant", "content": {"type": "text", "text": SAMPLED_TEXT}, "model": "loadtest"}
    if server_request["method"] == "elicitation/create":
        return {"action": "accept", "content": {"confirm": True}}
    return {}


def judge(exchange: Exchange) -> str | None:
    """The first thing wrong with an exchange, as a short reason, or None."""
    if exchange.incomplete is not None:
        return exchange.incomplete
    if exchange.rejected_answer is not None:
        refused = exchange.rejected_answer
        return f"answer to {exchange.answered[-1]['method']} refused: {_http_reason(refused)}"
    if exchange.status >= 400:
        return _http_reason(exchange)
    if exchange.error is not None:
        return f"JSON-RPC {exchange.error.get('code')}: {_short(exchange.error.get('message', ''))}"
    if exchange.result is None:
        return "stream ended without a response"
    if exchange.result.get("isError"):
        return f"tool error: {_short(_text(exchange))}"
    if exchange.result.get("resultType") == "input_required":
        return "input required, not answered"
    return None


def open_session(client: McpClient) -> Outcome:
    exchange = client.initialize()
    return Outcome(exchange.instance, judge(exchange))


def basic_tool(client: Client) -> Outcome:
    exchange = client.call_tool("process_file", {"path": "poem.txt", "operation": "count-lines"})
    failure = judge(exchange) or _expect(_text(exchange) == "3 lines", f"wrong result {_text(exchange)!r}")
    return Outcome(exchange.instance, failure)


def open_counter(client: Client) -> Outcome:
    """A new counter at 0, named by the handle it returns: state without a session (2026-07-28)."""
    exchange = client.call_tool("open_counter")
    failure, handle = judge(exchange), None
    if failure is None:
        handle = (exchange.result.get("structuredContent") or {}).get("handle")
        failure = _expect(isinstance(handle, str) and bool(handle), "no handle in the result")
    return Outcome(exchange.instance, failure, handle=handle if failure is None else None)


def counter(client: Client, expected: int, unanswered: int = 0, handle: str | None = None) -> Outcome:
    """`expected` is what this session's (or this `handle`'s) next increment must return, give or take
    `unanswered` earlier increments that failed without an answer (the server may have applied them);
    anything else means an acknowledged increment was lost or applied twice."""
    exchange = client.call_tool("increment", {"handle": handle} if handle is not None else None)
    failure, got = judge(exchange), None
    if failure is None:
        got = exchange.result["structuredContent"]["result"]
        if got < expected:
            failure = "counter restarted (state lost)"
        elif got > expected + unanswered:
            failure = "counter skipped (counted elsewhere)"
    return Outcome(exchange.instance, failure, got)


def logs(client: Client) -> Outcome:
    exchange = client.call_tool("slow_task", {"steps": STEPS, "step_seconds": 0.01})
    received = len(exchange.notifications("notifications/message"))
    failure = judge(exchange) or _expect(received == STEPS, f"{received} of {STEPS} log notifications")
    return Outcome(exchange.instance, failure)


def progress(client: Client) -> Outcome:
    exchange = client.call_tool("slow_task", {"steps": STEPS, "step_seconds": 0.01}, progress=True)
    received = len(exchange.notifications("notifications/progress"))
    failure = judge(exchange) or _expect(received == STEPS, f"{received} of {STEPS} progress notifications")
    return Outcome(exchange.instance, failure)


def sampling(client: Client) -> Outcome:
    exchange = client.call_tool("analyze_with_ai", {"text": "three instances"}, answer=answer)
    failure = judge(exchange) or _server_request_arrived(exchange, "sampling/createMessage")
    failure = failure or _expect(_text(exchange) == f"analysis: {SAMPLED_TEXT}", "wrong result")
    return Outcome(exchange.instance, failure)


def elicitation(client: Client) -> Outcome:
    exchange = client.call_tool("confirm_action", {"action": "scale out"}, answer=answer)
    failure = judge(exchange) or _server_request_arrived(exchange, "elicitation/create")
    failure = failure or _expect(_text(exchange) == "confirmed: scale out", "wrong result")
    return Outcome(exchange.instance, failure)


def updates_uri(topic: str) -> str:
    return f"updates://{topic}"


def subscribe(client: McpClient, topic: str) -> Outcome:
    """2025-11-25 only: 2026-07-28 listens with `ModernClient.listen` instead."""
    exchange = client.request("resources/subscribe", {"uri": updates_uri(topic)})
    return Outcome(exchange.instance, judge(exchange))


def publish(client: Client, topic: str, message: str) -> Outcome:
    exchange = client.call_tool("publish_update", {"message": message, "topic": topic})
    return Outcome(exchange.instance, judge(exchange))


def session_churn(client: McpClient) -> Outcome:
    """A whole session: initialize, initialized, one call, DELETE (when the server issued a session)."""
    opened = client.initialize(send_initialized=False)
    steps = [("initialize", opened)]
    if judge(opened) is None:
        steps.append(("initialized", client.notify("notifications/initialized")))
        steps.append(("whoami", client.call_tool("whoami")))
        if client.session_id is not None:
            steps.append(("DELETE", client.close()))
    for name, step in steps:  # a failure names its step
        failure = _http_reason(step) if step.status >= 400 else judge(step) if step.request_id else None
        if failure is not None:
            return Outcome(step.instance, f"{name}: {failure}")
    return Outcome(steps[-1][1].instance)


def _server_request_arrived(exchange: Exchange, method: str) -> str | None:
    return _expect(any(r["method"] == method for r in exchange.answered), f"{method} never arrived")


def _expect(condition: bool, failure: str) -> str | None:
    return None if condition else failure


def _http_reason(exchange: Exchange) -> str:
    error = exchange.error or {}
    message = error.get("message") or (exchange.messages[0].get("unparsed", "") if exchange.messages else "")
    return f"HTTP {exchange.status}: {_short(message)}" if message else f"HTTP {exchange.status}"


def _text(exchange: Exchange) -> str:
    content = (exchange.result or {}).get("content") or [{}]
    return content[0].get("text", "")


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
