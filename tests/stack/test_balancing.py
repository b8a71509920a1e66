"""Three instances behind nginx: what each preset does under round-robin and ip_hash.

Every call records the instance that answered (the X-Mcp-Instance header or whoami).
"""

from __future__ import annotations

import os
import signal

import pytest
import requests
from mcp.shared.exceptions import MCPError

from loadtest.client.legacy import McpClient
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import POLICIES, PRESETS, STATEFUL, STATELESS
from tests.utils.clients import Recorder, modern_call, text_of, wait_for

pytestmark = pytest.mark.anyio
INSTANCES = {"app1", "app2", "app3"}


@pytest.mark.parametrize("preset", STATEFUL)
def test_stateful_round_robin_loses_the_session_on_the_second_instance(stack_for, preset):
    client = McpClient(requests.Session(), stack_for(preset, "round-robin").url)
    opened = client.initialize(send_initialized=False)
    follow_up = client.notify("notifications/initialized")
    call = client.call_tool("whoami")
    answered_by = [opened.instance, follow_up.instance, call.instance]
    assert opened.status == 200 and client.session_id, answered_by
    assert len(set(answered_by)) == 3, f"round-robin should visit every instance: {answered_by}"
    for exchange in (follow_up, call):
        assert exchange.status == 404, answered_by
        assert exchange.error == {"code": -32600, "message": "Session not found"}


@pytest.mark.parametrize("preset", STATEFUL)
async def test_stateful_round_robin_fails_for_the_sdk_client(stack_for, preset):
    async with Recorder().client(stack_for(preset, "round-robin").url) as client:
        with pytest.raises(MCPError) as failure:
            await client.call_tool("increment")
    assert (failure.value.error.code, failure.value.error.message) == (-32600, "Session not found")


@pytest.mark.parametrize("preset", STATEFUL)
async def test_stateful_ip_hash_keeps_the_client_on_one_instance(stack_for, preset):
    async with Recorder().client(stack_for(preset, "ip-hash").url) as client:
        counts = [(await client.call_tool("increment")).structured_content["result"] for _ in range(6)]
        answered_by = [(await client.call_tool("whoami")).structured_content["instance"] for _ in range(6)]
    assert counts == [1, 2, 3, 4, 5, 6]
    assert len(set(answered_by)) == 1, answered_by


@pytest.mark.parametrize("preset", STATEFUL)
def test_ip_hash_sends_every_local_client_to_the_same_instance(stack_for, preset):
    url = stack_for(preset, "ip-hash").url
    answered_by = {McpClient(requests.Session(), url).initialize().instance for _ in range(6)}
    assert len(answered_by) == 1, "127.0.0.1 is one key for ip_hash: no spreading between local clients"


@pytest.mark.parametrize("preset", STATEFUL)
def test_session_policy_keeps_each_session_on_its_instance_and_spreads_sessions(stack_for, preset):
    url = stack_for(preset, "session").url
    sessions = [McpClient(requests.Session(), url) for _ in range(6)]
    homes = [client.initialize().instance for client in sessions]
    for client, home in zip(sessions, homes, strict=True):
        assert client.session_id.startswith(f"{home}."), "the session id names the instance that holds it"
        calls = [client.call_tool("increment") for _ in range(3)]
        assert [c.result["structuredContent"]["result"] for c in calls] == [1, 2, 3]
        assert {c.instance for c in calls} == {home}
    assert set(homes) == INSTANCES, f"new sessions go round-robin, unlike ip_hash: {homes}"


@pytest.mark.parametrize("preset", STATEFUL)
async def test_session_policy_works_for_the_sdk_client(stack_for, preset):
    async with Recorder().client(stack_for(preset, "session").url) as client:
        counts = [(await client.call_tool("increment")).structured_content["result"] for _ in range(6)]
    assert counts == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("preset", STATELESS)
async def test_stateless_basic_tools_work_for_the_sdk_client_under_round_robin(stack_for, preset):
    async with Recorder().client(stack_for(preset, "round-robin").url) as client:
        results = [await client.call_tool("process_file", {"path": "poem.txt", "operation": "count-words"})]
        results += [await client.call_tool("increment") for _ in range(2)]
    assert text_of(results[0]) == "12 words"
    assert all(r.is_error and "this request has none" in text_of(r) for r in results[1:])


@pytest.mark.parametrize("preset", PRESETS)
async def test_2026_input_required_retries_cross_instances_with_shared_keys(stack_for, preset):
    """The local stack gives its three instances one requestState key, so a retry may land anywhere."""
    url = stack_for(preset, "round-robin").url
    first = modern_call(url, "confirm_action", {"action": "scale"})
    state = first.json()["result"]
    answers = {key: {"action": "accept", "content": {"confirm": True}} for key in state["inputRequests"]}
    retry = modern_call(
        url, "confirm_action", {"action": "scale"}, inputResponses=answers, requestState=state["requestState"]
    )
    answered_by = [first.headers["X-Mcp-Instance"], retry.headers["X-Mcp-Instance"]]
    assert answered_by[0] != answered_by[1], answered_by
    assert retry.json()["result"]["content"][0]["text"] == "confirmed: scale"


@pytest.mark.parametrize("preset", STATELESS)
def test_stateless_round_robin_spreads_raw_requests(stack_for, preset):
    client = McpClient(requests.Session(), stack_for(preset, "round-robin").url)
    client.initialize()
    exchanges = [client.call_tool("whoami") for _ in range(6)]
    assert all(e.status == 200 and e.error is None for e in exchanges)
    answered_by = [e.instance for e in exchanges]
    assert [e.result["structuredContent"]["instance"] for e in exchanges] == answered_by
    assert set(answered_by) == INSTANCES, answered_by


def test_nginx_errors_are_jsonrpc(stack_for):
    url = stack_for("stateless-json", "round-robin").url
    body, json_type = b"x" * (5 * 1024 * 1024), {"Content-Type": "application/json"}
    too_big = requests.post(url, data=body, headers=json_type, timeout=10)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["message"] == "Request body too large: the limit is 4 MiB; did not run"
    elsewhere = requests.get(url.replace("/mcp", "/admin"), timeout=10)
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (404, -32600)


def test_nginx_answers_502_as_jsonrpc_when_no_instance_is_up(tmp_path):
    """Every instance refuses the connection: none got the request, and the answer says it did not run."""
    with Stack(run_dir=tmp_path, preset="stateless-json", port=free_port()) as stack:
        apps = [proc for proc in stack.procs if proc.name.startswith("app")]
        for proc in apps:
            os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: not any(proc.alive() for proc in apps))
        down = McpClient(requests.Session(), stack.url).request("tools/list")
    assert down.status == 502
    assert down.error == {
        "code": -32603,
        "message": "No MCP instance answered: each one tried was down or closed the connection; did not run: retry",
    }


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_policy_serves_mcp_through_nginx(stack_for, preset, policy):
    client = McpClient(requests.Session(), stack_for(preset, policy).url)
    opened = client.initialize(send_initialized=False)
    assert opened.status == 200
    assert opened.result["serverInfo"]["name"] == "mcp-scale-lab"
    assert opened.instance in INSTANCES
