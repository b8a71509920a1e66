"""2026-07-28 clients through nginx round-robin with three instances: no session, and every capability works.

The instances share the request-state keys (a ring in Redis, or the deployment's own), the counters behind
handles and an event bus; the last tests show what breaks when they do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import anyio
import pytest
import redis
import requests

from loadtest.client import capabilities as cap
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import PROJECT_ROOT, SSE
from mcp_cluster.shared.request_state_keys import RING_KEY, KeyRingCodec, RingKey, decode
from tests.utils.clients import Recorder, ask, instance, modern_call, text_of, wait_for

INSTANCES = {"app1", "app2", "app3"}
REFUSED = {"code": -32602, "message": "Invalid or expired requestState", "data": {"reason": "invalid_request_state"}}
ANSWERS = {"analyze_with_ai": f"analysis: {cap.SAMPLED_TEXT}", "confirm_action": "confirmed: {action}"}


def ready(stack: Stack, name: str) -> dict:
    return requests.get(stack.instance_url(name).replace("/mcp", "/readyz"), timeout=5).json()


def app_logs(stack: Stack) -> str:
    return "".join((stack.run_dir / f"{name}.log").read_text(errors="replace") for name in sorted(INSTANCES))


@pytest.mark.parametrize(
    ("tool", "arguments"), [("analyze_with_ai", {"text": "balancers"}), ("confirm_action", {"action": "scale out"})]
)
def test_an_input_required_retry_on_another_instance_finishes_the_call(stack_for, tool, arguments):
    url = stack_for("stateless-json").url
    rounds = []
    for _ in range(3):
        asked, answers, state = ask(url, tool, arguments)
        done = modern_call(url, tool, arguments, inputResponses=answers, requestState=state)
        assert done.json()["result"]["content"][0]["text"] == ANSWERS[tool].format(**arguments)
        rounds.append((instance(asked), instance(done)))
    assert all(first != retry for first, retry in rounds), rounds  # round-robin: never the same instance twice


def test_a_counter_handle_counts_on_every_instance(stack_for):
    url = stack_for("stateless-json").url
    handle = modern_call(url, "open_counter", {}).json()["result"]["structuredContent"]["handle"]
    calls = [modern_call(url, "increment", {"handle": handle}) for _ in range(6)]
    assert [call.json()["result"]["structuredContent"]["result"] for call in calls] == [1, 2, 3, 4, 5, 6]
    assert {instance(call) for call in calls} == INSTANCES
    unknown = modern_call(url, "increment", {"handle": "ctr_" + "A" * 22}).json()["result"]
    assert unknown["isError"]
    assert "unknown or expired counter handle; call open_counter for a new one" in unknown["content"][0]["text"]


@pytest.mark.anyio
@pytest.mark.parametrize("preset", ["stateless-sse", "stateful-sse", "stateless-json"])
async def test_logs_and_progress_arrive_through_round_robin_on_sse_presets(stack_for, preset):
    recorder = Recorder()
    async with recorder.client(stack_for(preset).url, mode="auto", log_level="info") as client:
        for _ in range(3):  # three calls, each answered by the next instance
            result = await client.call_tool(
                "slow_task", {"steps": 2, "step_seconds": 0.01}, progress_callback=recorder.on_progress
            )
            assert text_of(result) == "done: 2 steps"
    expected = (["step 1/2", "step 2/2"] * 3, [1, 2] * 3) if preset in SSE else ([], [])
    assert (recorder.logs, recorder.progress) == expected


@pytest.mark.anyio
async def test_an_update_published_on_one_instance_reaches_listeners_on_every_instance(stack_for):
    stack = stack_for("stateless-sse")
    uri = f"updates://listen-{uuid.uuid4().hex[:8]}"
    async with (
        Recorder().client(stack.instance_url("app1"), mode="auto") as on_app1,
        Recorder().client(stack.instance_url("app2"), mode="auto") as on_app2,
        Recorder().client(stack.instance_url("app3"), mode="auto") as on_app3,
        on_app1.listen(resource_subscriptions=[uri]) as heard_on_app1,
        on_app2.listen(resource_subscriptions=[uri]) as heard_on_app2,
        on_app3.listen(resource_subscriptions=[uri]) as heard_on_app3,
    ):
        published = await on_app2.call_tool("publish_update", {"message": "hello", "topic": uri.split("//")[1]})
        assert published.structured_content["uri"] == uri
        with anyio.fail_after(5):
            events = [await heard.__anext__() for heard in (heard_on_app1, heard_on_app2, heard_on_app3)]
    assert [event.uri for event in events] == [uri] * 3


def test_forged_tampered_expired_and_replayed_states_are_refused_and_nothing_runs(stack_for):
    stack = stack_for("stateless-json")
    action = f"drop the cache {uuid.uuid4().hex[:8]}"
    _, answers, state = ask(stack.url, "confirm_action", {"action": action})
    codec = KeyRingCodec(decode(redis.Redis.from_url(stack.redis_url).get(RING_KEY)))
    claims = json.loads(codec.unseal(state))
    expired = codec.seal(json.dumps({**claims, "iat": claims["iat"] - 3600, "exp": claims["exp"] - 3600}).encode())
    forged = KeyRingCodec([RingKey(os.urandom(32), 0.0)]).seal(codec.unseal(state))  # same claims, unknown key
    tampered = state[:20] + ("A" if state[20] != "A" else "B") + state[21:]
    attempts = [
        ("confirm_action", {"action": action}, forged),
        ("confirm_action", {"action": action}, tampered),
        ("confirm_action", {"action": action}, expired),
        ("analyze_with_ai", {"text": action}, state),  # replayed for another tool
        ("confirm_action", {"action": "something else"}, state),  # replayed with other arguments
    ]
    rejected_before = app_logs(stack).count("requestState rejected")
    for tool, arguments, token in attempts:
        refused = modern_call(stack.url, tool, arguments, inputResponses=answers, requestState=token)
        assert (refused.status_code, refused.json()["error"]) == (400, REFUSED), (tool, arguments)
    logs = app_logs(stack)
    assert logs.count("requestState rejected") - rejected_before == len(attempts)
    for reason in ("unknown key", "seal", "expired", "request binding"):  # the real reasons, in the server log only
        assert f"requestState rejected on tools/call: {reason}" in logs, reason
    assert action not in logs and "something else" not in logs  # no confirmed action's audit line: nothing ran
    done = modern_call(stack.url, "confirm_action", {"action": action}, inputResponses=answers, requestState=state)
    assert done.json()["result"]["content"][0]["text"] == f"confirmed: {action}"
    wait_for(lambda: app_logs(stack).count(action) == 1 or None, timeout=5)


def test_rotating_the_key_ring_in_redis_breaks_no_call(stack_for):
    stack = stack_for("stateless-json")
    _, answers, sealed_before = ask(stack.url, "analyze_with_ai", {"text": "rotate"})  # read-only: retried at will
    rotate = [sys.executable, "-m", "mcp_cluster", "request-state-keys", "rotate", "--activate-in", "10"]
    env = {
        **os.environ,
        "MCP_REDIS_URL": stack.instance_redis_url("app1"),
        "MCP_REDIS_PASSWORD_FILE": str(stack.password_file()),
    }
    printed = subprocess.run(rotate, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True).stdout
    new_key, role = printed.splitlines()[0].split("  ")
    assert role.startswith("seals from ")
    # Every instance learns the new key first, and seals with it only once all of them can open it.
    wait_for(lambda: all(new_key in ready(stack, name)["keys"] for name in INSTANCES), timeout=15, interval=0.5)
    wait_for(lambda: all(ready(stack, name)["sealing_key"] == new_key for name in INSTANCES), timeout=20, interval=0.5)
    _, _, sealed_after = ask(stack.url, "analyze_with_ai", {"text": "rotate"})
    for state in (sealed_before, sealed_after) * 2:  # each retried on two different instances
        done = modern_call(stack.url, "analyze_with_ai", {"text": "rotate"}, inputResponses=answers, requestState=state)
        assert done.json()["result"]["content"][0]["text"].startswith("analysis: ")


def test_a_ring_lost_by_redis_is_written_back_unchanged(stack_for):
    """Redis restarted without persistence: an instance stores the ring it holds, so no state breaks."""
    stack = stack_for("stateless-json")
    store = redis.Redis.from_url(stack.redis_url)
    _, answers, state = ask(stack.url, "analyze_with_ai", {"text": "redis lost"})
    held = {key.secret for key in decode(store.get(RING_KEY))}
    store.delete(RING_KEY)
    assert {key.secret for key in decode(wait_for(lambda: store.get(RING_KEY), timeout=15, interval=0.2))} == held
    for _ in range(2):  # on two different instances
        done = modern_call(
            stack.url, "analyze_with_ai", {"text": "redis lost"}, inputResponses=answers, requestState=state
        )
        assert done.json()["result"]["content"][0]["text"].startswith("analysis: ")


@pytest.mark.parametrize("redis_url", ["shared", ""])
def test_a_state_that_authorises_a_side_effect_is_honoured_once(tmp_path, redis_url):
    """One confirmation, one execution: a replay, on this instance or another, gets the SDK's error."""
    env = {} if redis_url else {"MCP_REDIS_URL": "", "MCP_REQUEST_STATE_KEYS": os.urandom(32).hex()}
    with Stack(run_dir=tmp_path, preset="stateless-json", port=free_port(), app_env=env) as stack:
        action = f"deploy once {redis_url or 'memory'}"
        _, answers, state = ask(stack.instance_url("app1"), "confirm_action", {"action": action})
        retry = {"inputResponses": answers, "requestState": state}
        done = modern_call(stack.instance_url("app1"), "confirm_action", {"action": action}, **retry)
        assert done.json()["result"]["content"][0]["text"] == f"confirmed: {action}"
        replays = ["app1", "app2"] if redis_url else ["app1"]  # without Redis each process keeps its own claims
        for name in replays:
            replayed = modern_call(stack.instance_url(name), "confirm_action", {"action": action}, **retry).json()
            assert replayed["error"] == {
                "code": -32602,
                "message": "Invalid or expired requestState",
                "data": {"reason": "invalid_request_state"},
            }
        assert app_logs(stack).count(action) == 1  # one audit line: the action ran once
        assert "requestState rejected on tools/call: used before" in app_logs(stack)


def test_deployment_keys_are_shared_without_redis(tmp_path):
    keys = f"{os.urandom(32).hex()},{os.urandom(32).hex()}"
    env = {"MCP_REDIS_URL": "", "MCP_REQUEST_STATE_KEYS": keys}
    with Stack(run_dir=tmp_path, preset="stateless-json", port=free_port(), app_env=env) as stack:
        _, answers, state = ask(stack.instance_url("app1"), "confirm_action", {"action": "given keys"})
        done = modern_call(
            stack.instance_url("app2"),
            "confirm_action",
            {"action": "given keys"},
            inputResponses=answers,
            requestState=state,
        )
        assert done.json()["result"]["content"][0]["text"] == "confirmed: given keys"
        assert ready(stack, "app2")["request_state_keys"] == "configured"
        assert "NO SHARED REQUEST-STATE KEYS" not in app_logs(stack)


def test_instances_that_share_nothing_refuse_each_others_state_and_say_so_at_start(tmp_path):
    """No MCP_REDIS_URL and no MCP_REQUEST_STATE_KEYS: each instance seals with a key of its own."""
    with Stack(run_dir=tmp_path, preset="stateless-json", port=free_port(), app_env={"MCP_REDIS_URL": ""}) as stack:
        app1, app2 = stack.instance_url("app1"), stack.instance_url("app2")
        _, answers, state = ask(app1, "confirm_action", {"action": "alone"})
        elsewhere = modern_call(app2, "confirm_action", {"action": "alone"}, inputResponses=answers, requestState=state)
        home = modern_call(app1, "confirm_action", {"action": "alone"}, inputResponses=answers, requestState=state)
        handle = modern_call(app1, "open_counter", {}).json()["result"]["structuredContent"]["handle"]
        counted_elsewhere = modern_call(app2, "increment", {"handle": handle}).json()["result"]
        assert ready(stack, "app2")["request_state_keys"] == "this process only"
        logs = app_logs(stack)
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, REFUSED)
    assert home.json()["result"]["content"][0]["text"] == "confirmed: alone"
    assert (
        counted_elsewhere["isError"] and "unknown or expired counter handle" in counted_elsewhere["content"][0]["text"]
    )
    assert logs.count("NO SHARED REQUEST-STATE KEYS") == 3  # one warning per instance, at start
