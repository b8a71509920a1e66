"""Redis trouble costs latency, not calls (MCP_REDIS_RIDE_THROUGH): real redis-server, uvicorn and nginx. Calls
sent while Redis is stopped (SIGSTOP) or restarting wait and complete, each write applied once and no call
retried; past the bound they get 503 and service comes back by itself. Under the counting load of every fault,
with the primary failed over too: tests/stack/test_faults.py, tests/stack/test_redis_ha.py and the scorecard."""

from __future__ import annotations

import concurrent.futures
import signal
import time

import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.experiments.faults.load import CountingLoad
from loadtest.harness.stack import Stack, free_port
from tests.utils.clients import session, wait_for

SESSIONS = 6
STALL_SECONDS = 5.0  # past every owner's lease and heartbeat: each session is confirmed again before it acts


def test_calls_sent_while_redis_is_stopped_wait_and_complete_once(tmp_path):
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        clients = [session(stack.url) for _ in range(SESSIONS)]
        for client in clients:
            client.timeout = (5, 30)
            assert cap.counter(client, expected=1).failure is None
        with concurrent.futures.ThreadPoolExecutor(SESSIONS + 1) as pool:
            with stack.paused("redis"):
                stopped = time.monotonic()
                counted = [pool.submit(cap.counter, client, 2) for client in clients]  # one each, in the stall
                opened = pool.submit(McpClient(requests.Session(), stack.url, timeout=(5, 30)).initialize)
                wait_for(lambda: time.monotonic() > stopped + STALL_SECONDS, timeout=STALL_SECONDS + 1)  # the fault
                assert not any(future.done() for future in counted)  # they wait for Redis
            outcomes = [future.result(timeout=30) for future in counted]
            assert opened.result(timeout=30).status == 200
        assert [outcome.failure for outcome in outcomes] == [None] * SESSIONS
        assert [outcome.value for outcome in outcomes] == [2] * SESSIONS  # each applied once
        assert all(cap.counter(client, expected=3).failure is None for client in clients)


def test_a_redis_restart_costs_no_call(tmp_path):
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        with CountingLoad(stack.url, SESSIONS) as load:
            load.go_on(5)
            stack.restart("redis", signal.SIGKILL)
            load.go_on(5)
        tally = load.tally
        assert (tally.failed, tally.retried) == ({}, {}), tally
        assert (tally.sessions_lost, tally.acknowledged_lost, tally.doubled) == (0, 0, 0), tally


def test_past_the_bound_a_call_gets_503_and_service_comes_back_by_itself(tmp_path):
    settings = {"MCP_REDIS_RIDE_THROUGH": "2"}
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port(), app_env=settings) as stack:
        client = session(stack.url)
        client.timeout = (5, 15)  # a hang fails the test with a read timeout
        with stack.paused("redis"):
            sent = time.monotonic()
            refused = client.call_tool("increment")
            waited = time.monotonic() - sent
            assert refused.status == 503, refused
            assert refused.error["message"].startswith("the shared store (Redis) is unavailable")
            assert 2.0 <= waited < 2.0 + 3.0, f"answered after {waited:.1f} s"  # the bound, and one try's timeout
            ready = requests.get(stack.instance_url("app1").replace("/mcp", "/readyz"), timeout=10)
            assert (ready.status_code, ready.json()["status"]) == (503, "shared store (Redis) unavailable")
            alive = requests.get(stack.instance_url("app1").replace("/mcp", "/healthz"), timeout=2)
            assert alive.status_code == 200, "liveness must not follow Redis (or every instance is restarted)"
        recovered = wait_for(lambda: cap.counter(client, expected=1, unanswered=1).failure is None, timeout=15)
        assert recovered
