"""A rolling restart under load, with real processes (redis-server, uvicorn, nginx): each instance in turn
gets SIGTERM, drains (hands its sessions over once their calls end, relays what it will not start) and
comes back, while sessions keep counting and sampling through nginx. No session may be lost and every
count must be exact: no acknowledged increment lost or applied twice."""

from __future__ import annotations

import threading

import pytest
import requests

from loadtest.client import capabilities as cap
from loadtest.topology import INSTANCES
from tests.utils.clients import session, wait_for
from tests.utils.load import CountingLoad

SESSIONS = 6


@pytest.mark.parametrize("policy", ["session", "round-robin"])
def test_a_rolling_restart_loses_no_session_and_no_count(tmp_path, policy):
    from loadtest.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", policy=policy, store="redis", port=free_port()) as stack:
        clients = [session(stack.url) for _ in range(SESSIONS)]
        for client in clients:
            client.timeout = (5, 30)  # a call waits at most as long as a drain takes
        with CountingLoad(clients, sample_every=5) as load:
            for name in INSTANCES:
                stack.restart(name)
        assert load.wrong == [], load.wrong
        # The goal is none; what is left is the listen-queue race (docs/configuration.md), seen about once in
        # 50 restarts: at most one call per restart, never answered, never counted twice.
        assert len(load.resets) <= len(INSTANCES), load.resets
        assert min(load.counted) > 0, load.counted
        for n, client in enumerate(clients):  # and the count goes on from exactly what was acknowledged
            assert cap.counter(client, expected=load.counted[n] + 1, unanswered=len(load.resets)).failure is None
        ready = {
            requests.get(stack.instance_url(name).replace("/mcp", "/readyz"), timeout=5).status_code
            for name in INSTANCES
        }
        assert ready == {200}


def test_a_call_in_flight_finishes_where_it_started_and_the_session_moves_after(tmp_path):
    """SIGTERM reaches the instance while one of its sessions is in the middle of a 2 s call: the call ends
    normally (progress and all), the instance exits only then, and the session goes on elsewhere."""
    from loadtest.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        client = session(stack.instance_url("app1"))
        client.timeout = (5, 30)
        assert cap.counter(client, expected=1).failure is None
        answers = []
        call = threading.Thread(
            target=lambda: answers.append(
                client.call_tool("slow_task", {"steps": 8, "step_seconds": 0.25}, progress=True)
            )
        )
        call.start()
        ready = stack.instance_url("app1").replace("/mcp", "/readyz")
        wait_for(lambda: requests.get(ready, timeout=5).json()["calls"] == 1)  # running on app1
        stack.restart("app1")
        call.join(timeout=30)
        assert '"msg": "draining", "sessions": 1, "calls": 1' in stack.log_tail("app1", lines=200)
        (answer,) = answers
        assert answer.status == 200 and answer.result["content"][0]["text"] == "done: 8 steps", answer
        assert len(answer.notifications("notifications/progress")) == 8
        assert cap.counter(client, expected=2).failure is None  # through the new app1, from where the session went
