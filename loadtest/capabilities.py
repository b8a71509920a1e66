"""The MCP capabilities the load test measures: one operation each, judged the way a user would.

An operation returns an `Outcome`: which instance answered, and the first reason (short and
stable, so Locust groups them) a user would call it a failure. No Locust imports here: the
pytest suite drives the same operations against real servers.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.mcp_client import Exchange, McpClient

BASIC = "tools/call process_file"
COUNTER = "tools/call increment"
LOGS = "tools/call slow_task (logs)"
PROGRESS = "tools/call slow_task (progress)"
SAMPLING = "tools/call analyze_with_ai"
ELICITATION = "tools/call confirm_action"
RESOURCE_UPDATES = "notifications/resources/updated"
SESSION_CHURN = "session lifecycle"
OPEN_SESSION = "initialize"

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
STEPS = 3  # slow_task steps: three logs and three progress notifications expected
SAMPLED_TEXT = "looks balanced"


@dataclass(frozen=True)
class Outcome:
    instance: str | None
    failure: str | None = None
    value: int | None = None  # what the operation returned, where the next one depends on it

    @property
    def session_lost(self) -> bool:
        return self.failure is not None and "Session not found" in self.failure


def answer(server_request: dict) -> dict:
    """What the simulated user and model answer: a completion for sampling, 'yes' for elicitation."""
    if server_request["method"] == "sampling/createMessage":
        return {"role": "assistant", "content": {"type": "text", "text": SAMPLED_TEXT}, "model": "loadtest"}
    if server_request["method"] == "elicitation/create":
        return {"action": "accept", "content": {"confirm": True}}
    return {}


def judge(exchange: Exchange) -> str | None:
    """The first thing wrong with an exchange, as a short reason, or None."""
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
    return None


def open_session(client: McpClient) -> Outcome:
    exchange = client.initialize()
    return Outcome(exchange.instance, judge(exchange))


def basic_tool(client: McpClient) -> Outcome:
    exchange = client.call_tool("process_file", {"path": "poem.txt", "operation": "count-lines"})
    failure = judge(exchange) or _expect(_text(exchange) == "3 lines", f"wrong result {_text(exchange)!r}")
    return Outcome(exchange.instance, failure)


def counter(client: McpClient, expected: int, unanswered: int = 0) -> Outcome:
    """`expected` is what this session's next increment must return, give or take `unanswered` earlier
    increments that failed without an answer (the server may have applied them); anything else means
    an acknowledged increment was lost or applied twice."""
    exchange = client.call_tool("increment")
    failure, got = judge(exchange), None
    if failure is None:
        got = exchange.result["structuredContent"]["result"]
        if got < expected:
            failure = "counter restarted (state lost)"
        elif got > expected + unanswered:
            failure = "counter skipped (counted elsewhere)"
    return Outcome(exchange.instance, failure, got)


def logs(client: McpClient) -> Outcome:
    exchange = client.call_tool("slow_task", {"steps": STEPS, "step_seconds": 0.01})
    received = len(exchange.notifications("notifications/message"))
    failure = judge(exchange) or _expect(received == STEPS, f"{received} of {STEPS} log notifications")
    return Outcome(exchange.instance, failure)


def progress(client: McpClient) -> Outcome:
    exchange = client.call_tool("slow_task", {"steps": STEPS, "step_seconds": 0.01}, progress=True)
    received = len(exchange.notifications("notifications/progress"))
    failure = judge(exchange) or _expect(received == STEPS, f"{received} of {STEPS} progress notifications")
    return Outcome(exchange.instance, failure)


def sampling(client: McpClient) -> Outcome:
    exchange = client.call_tool("analyze_with_ai", {"text": "three instances"}, answer=answer)
    failure = judge(exchange) or _server_request_arrived(exchange, "sampling/createMessage")
    failure = failure or _expect(_text(exchange) == f"analysis: {SAMPLED_TEXT}", "wrong result")
    return Outcome(exchange.instance, failure)


def elicitation(client: McpClient) -> Outcome:
    exchange = client.call_tool("confirm_action", {"action": "scale out"}, answer=answer)
    failure = judge(exchange) or _server_request_arrived(exchange, "elicitation/create")
    failure = failure or _expect(_text(exchange) == "confirmed: scale out", "wrong result")
    return Outcome(exchange.instance, failure)


def subscribe(client: McpClient, topic: str) -> Outcome:
    exchange = client.request("resources/subscribe", {"uri": f"updates://{topic}"})
    return Outcome(exchange.instance, judge(exchange))


def publish(client: McpClient, topic: str, message: str) -> Outcome:
    exchange = client.call_tool("publish_update", {"message": message, "topic": topic})
    return Outcome(exchange.instance, judge(exchange))


def session_churn(client: McpClient) -> Outcome:
    """A whole session: initialize, initialized, one call, DELETE (when the server issued a session)."""
    opened = client.initialize(send_initialized=False)
    steps = [opened]
    if judge(opened) is None:
        steps.append(client.notify("notifications/initialized"))
        steps.append(client.call_tool("whoami"))
        if client.session_id is not None:
            steps.append(client.close())
    for step in steps:
        failure = _http_reason(step) if step.status >= 400 else judge(step) if step.request_id else None
        if failure is not None:
            return Outcome(step.instance, failure)
    return Outcome(steps[-1].instance)


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
