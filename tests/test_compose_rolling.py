"""A rolling deploy of the compose stack under load, as a team runs one: each app container recreated in
turn (`docker compose up -d --force-recreate --no-deps`), the next only once it is healthy, while sessions
count through nginx (`session` policy, Redis store). No call may fail and every count must be exact."""

from __future__ import annotations

import threading

import pytest
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.compose import ComposeStack
from loadtest.stack import free_port
from loadtest.topology import INSTANCES

pytestmark = pytest.mark.compose
PROFILE = "stateful-sse"
SESSIONS = 6


def test_a_rolling_deploy_fails_no_call_and_loses_no_count(compose_images):
    stack = ComposeStack(PROFILE, free_port(), {**compose_images, "SESSION_STORE": "redis"})
    try:
        stack.up(policy="session")
        clients = [McpClient(requests.Session(), stack.url, timeout=(5, 40)) for _ in range(SESSIONS)]
        for client in clients:
            assert cap.open_session(client).failure is None
        done, failures, counted = threading.Event(), [], [0] * SESSIONS

        def work(n: int) -> None:
            while not done.is_set():
                outcome = cap.counter(clients[n], expected=counted[n] + 1)
                if outcome.failure is not None:
                    failures.append(outcome.failure)
                    return
                counted[n] += 1

        workers = [threading.Thread(target=work, args=(n,)) for n in range(SESSIONS)]
        for worker in workers:
            worker.start()
        try:
            for name in INSTANCES:
                stack.compose("up", "-d", "--no-build", "--force-recreate", "--no-deps", f"{name}-{PROFILE}")
                stack.wait_healthy()
        finally:
            done.set()
            for worker in workers:
                worker.join(timeout=60)
        assert failures == [], failures
        assert min(counted) > 0, counted
        for n, client in enumerate(clients):
            assert cap.counter(client, expected=counted[n] + 1).failure is None
    finally:
        stack.down()
