"""A call in flight when its instance gets SIGTERM, with real processes (redis-server, uvicorn, nginx): it
finishes where it started, or, past MCP_DRAIN_SECONDS, ends unanswered. A rolling restart under Locust's every
scenario fails no operation of any capability. A rolling restart under the counting load is a row of the fault
scorecard (tests/stack/test_faults.py)."""

from __future__ import annotations

import threading

import requests

from loadtest.client import capabilities as cap
from loadtest.harness.topology import INSTANCES
from tests.utils.clients import session, wait_for
from tests.utils.locust import run_headless

SLOW = {"steps": 40, "step_seconds": 0.5}  # a 20 s call
LOCUST_SECONDS = 28  # the load's length: past the three restarts (about 4 s each here)


def test_a_call_in_flight_finishes_where_it_started_and_the_session_moves_after(tmp_path):
    """SIGTERM reaches the instance while one of its sessions is in the middle of a 2 s call: the call ends
    normally (progress and all), the instance exits only then, and the session goes on elsewhere."""
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        client = session(stack.instance_url("app1"))
        client.timeout = (5, 30)
        assert cap.counter(client, expected=1).failure is None
        answer = _restart_app1_during(
            stack, lambda: client.call_tool("slow_task", {"steps": 8, "step_seconds": 0.25}, progress=True)
        )
        assert '"msg": "draining", "sessions": 1, "calls": 1' in stack.log_tail("app1", lines=200)
        assert answer.status == 200 and answer.result["content"][0]["text"] == "done: 8 steps", answer
        assert len(answer.notifications("notifications/progress")) == 8
        assert cap.counter(client, expected=2).failure is None  # through the new app1, from where the session went


def test_a_call_longer_than_the_drain_ends_unanswered_and_its_session_moves_on(tmp_path):
    """With MCP_DRAIN_SECONDS=1, SIGTERM reaches the instance while a 20 s call runs: the drain waits 1 s, hands
    the session over anyway and the instance exits; the caller gets no answer (never a result), and the session
    counts on elsewhere from exactly what was acknowledged."""
    from loadtest.harness.stack import Stack, free_port

    drain = {"MCP_DRAIN_SECONDS": "1"}
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port(), app_env=drain) as stack:
        client = session(stack.instance_url("app1"))
        client.timeout = (5, 30)
        assert cap.counter(client, expected=1).failure is None
        outcome = _restart_app1_during(
            stack, lambda: cap.attempt(lambda: cap.Outcome(None, cap.judge(client.call_tool("slow_task", SLOW))), 30)
        )
        assert '"msg": "calls still running at the end of the drain", "sessions": 1' in stack.log_tail("app1", 200)
        assert outcome.failure is not None, "the call was answered, though its instance stopped before it ended"
        assert cap.counter(client, expected=2).failure is None  # through the new app1


def _restart_app1_during(stack, call):
    """Run `call` (a call on a session app1 holds) in a thread; once app1 runs it, restart app1 as a deploy does;
    return what `call` returned."""
    results = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    ready = stack.instance_url("app1").replace("/mcp", "/readyz")
    wait_for(lambda: requests.get(ready, timeout=5).json()["calls"] == 1)  # running on app1
    stack.restart("app1")
    thread.join(timeout=30)
    (result,) = results
    return result


def test_a_rolling_restart_fails_no_operation_of_the_full_locust_mix(tmp_path):
    """Locust's every scenario (24 users, three of each) through nginx round-robin with the Redis store, while the
    three instances restart in turn (SIGTERM: drained): not one operation of any capability fails, the updates
    of the GET streams included."""
    from loadtest.harness.stack import Stack, free_port

    options = {"preset": "stateful-sse", "policy": "round-robin", "store": "redis", "port": free_port()}
    with Stack(run_dir=tmp_path / "stack", **options) as stack:
        out = tmp_path / "locust"
        out.mkdir()
        host, ran = stack.url.removesuffix("/mcp"), {}
        load = threading.Thread(
            target=lambda: ran.update(run=run_headless(host, out, "-u", "24", "-r", "24", seconds=LOCUST_SECONDS))
        )
        load.start()
        wait_for(lambda: sum(stack.held_sessions().values()) >= 16, timeout=20)
        for name in INSTANCES:
            stack.restart(name)
        load.join(timeout=LOCUST_SECONDS + 30)
    stats, report = ran["run"]
    for name in (*cap.CAPABILITIES, cap.OPEN_SESSION):
        assert stats[name]["num_requests"] > 0, name
        assert stats[name]["num_failures"] == 0, (name, report[name]["failures"])
