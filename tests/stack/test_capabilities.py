"""The load test's operations and verdicts, against real servers: success where the preset can do it,
and the exact short reason a user would give where it cannot."""

from __future__ import annotations

import pytest
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.harness.topology import STATEFUL
from tests.utils.clients import every_operation, session

NO_BACK_CHANNEL = (
    "JSON-RPC -32600: Cannot send '{}': this transport context has no back-channel for server-initiated requests."
)


def test_every_operation_succeeds_on_stateful_sse(stack_for):
    outcomes = every_operation(stack_for("stateful-sse").instance_url("app1"))
    assert {name: o.failure for name, o in outcomes.items()} == dict.fromkeys(outcomes)
    assert {o.instance for o in outcomes.values()} == {"app1"}


def test_reasons_on_a_json_preset(stack_for):
    client = session(stack_for("stateful-json").instance_url("app1"))
    assert cap.logs(client).failure == "0 of 3 log notifications"
    assert cap.progress(client).failure == "0 of 3 progress notifications"
    assert cap.sampling(client).failure == NO_BACK_CHANNEL.format("sampling/createMessage")
    assert cap.elicitation(client).failure == NO_BACK_CHANNEL.format("elicitation/create")


def test_reasons_on_a_stateless_preset(stack_for):
    client = session(stack_for("stateless-sse").instance_url("app1"))
    assert cap.counter(client, expected=1).failure.startswith("tool error: Error executing tool increment")
    assert cap.subscribe(client, "any").failure == "JSON-RPC -32601: Method not found"
    assert cap.session_churn(McpClient(requests.Session(), client.url)).failure is None  # no DELETE owed


def test_a_counter_that_restarts_or_skips_is_lost_state(stack_for):
    client = session(stack_for("stateful-sse").instance_url("app2"))
    assert cap.counter(client, expected=1).failure is None
    assert cap.counter(client, expected=5).failure == "counter restarted (state lost)"
    assert cap.counter(client, expected=1).failure == "counter skipped (counted elsewhere)"


@pytest.mark.parametrize("preset", STATEFUL)
def test_round_robin_sessions_get_lost(stack_for, preset):
    client = session(stack_for(preset, "round-robin").url)
    outcomes = [cap.basic_tool(client) for _ in range(3)]
    lost = [o for o in outcomes if o.failure]
    assert lost and all(o.failure == "HTTP 404: Session not found" and o.session_lost for o in lost)


def test_a_sampling_answer_that_lands_elsewhere_is_reported(stack_for):
    """The call reaches the owner, the client's answer reaches another instance: never 3 attempts in a row."""
    client = session(stack_for("stateful-sse", "round-robin").url)
    failures = {cap.sampling(client).failure for _ in range(3)}
    assert "answer to sampling/createMessage refused: HTTP 404: Session not found" in failures
