"""A 2026-07-28 client (the SDK client's default) on one instance of each preset: no sessions, input-required rounds."""

from __future__ import annotations

import anyio
import pytest

from loadtest.harness.topology import SSE
from tests.utils.clients import MODERN, SAMPLED_TEXT, Recorder, modern_call, text_of

pytestmark = pytest.mark.anyio


async def test_client_negotiates_2026_and_has_no_session(url, preset):
    async with Recorder().client(url, mode="auto") as client:
        assert client.protocol_version == MODERN
        identity = (await client.call_tool("whoami")).structured_content
        counter = await client.call_tool("increment")
    assert identity["protocol_version"] == MODERN
    assert identity["preset"] == preset
    assert identity["session_id"] is None
    assert counter.is_error and "this request has none" in text_of(counter)


async def test_sampling_and_elicitation_run_as_input_required_rounds_on_every_preset(url):
    recorder = Recorder()
    async with recorder.client(url, mode="auto") as client:
        analysis = await client.call_tool("analyze_with_ai", {"text": "load balancers"})
        confirmation = await client.call_tool("confirm_action", {"action": "deploy"})
    assert text_of(analysis) == f"analysis: {SAMPLED_TEXT}"
    assert text_of(confirmation) == "confirmed: deploy"
    assert len(recorder.sampling_requests) == len(recorder.elicitation_requests) == 1


def test_first_round_on_the_wire_is_input_required_with_sealed_state(url):
    response = modern_call(url, "confirm_action", {"action": "deploy"})
    result = response.json()["result"]
    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers
    assert result["resultType"] == "input_required"
    (request,) = result["inputRequests"].values()
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "Confirm the action: deploy"
    assert result["requestState"]


def test_a_tampered_request_state_is_refused_and_nothing_runs(url):
    asked = modern_call(url, "confirm_action", {"action": "deploy"}).json()["result"]
    key = next(iter(asked["inputRequests"]))
    state = asked["requestState"]
    tampered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    answers = {key: {"action": "accept", "content": {"confirm": True}}}
    refused = modern_call(url, "confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=tampered)
    accepted = modern_call(url, "confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=state)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == -32602
    assert refused.json()["error"]["message"] == "Invalid or expired requestState"
    assert accepted.json()["result"]["content"][0]["text"] == "confirmed: deploy"


async def test_logs_and_progress_need_an_sse_preset_and_an_opt_in(url, preset):
    opted_in, silent = Recorder(), Recorder()
    async with opted_in.client(url, mode="auto", log_level="info") as client:
        result = await client.call_tool(
            "slow_task", {"steps": 2, "step_seconds": 0.01}, progress_callback=opted_in.on_progress
        )
    async with silent.client(url, mode="auto") as client:
        await client.call_tool("slow_task", {"steps": 2, "step_seconds": 0.01})
    assert text_of(result) == "done: 2 steps"
    expected = (["step 1/2", "step 2/2"], [1, 2]) if preset in SSE else ([], [])
    assert (opted_in.logs, opted_in.progress) == expected
    assert silent.logs == []  # no logLevel in _meta: no log notifications


async def test_resource_update_reaches_a_subscriptions_listen_stream(url):
    async with (
        Recorder().client(url, mode="auto") as listener,
        Recorder().client(url, mode="auto") as publisher,
        listener.listen(resource_subscriptions=["updates://bulletin"]) as subscription,
    ):
        await publisher.call_tool("publish_update", {"message": "for listeners"})
        with anyio.fail_after(5):
            event = await subscription.__anext__()
    assert event.uri == "updates://bulletin"
