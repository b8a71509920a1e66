"""A rolling deploy of the compose stack under load, as a team runs one: each app container recreated in
turn (`docker compose up -d --force-recreate --no-deps`), the next only once it is healthy, while sessions
count through nginx (`session` policy, Redis store). No session may be lost and every count must be exact."""

from __future__ import annotations

import pytest
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.compose import ComposeStack
from loadtest.stack import free_port
from loadtest.topology import INSTANCES
from tests.utils.load import CountingLoad

pytestmark = pytest.mark.compose
PROFILE = "stateful-sse"
SESSIONS = 6


def test_a_rolling_deploy_loses_no_session_and_no_count(compose_images):
    stack = ComposeStack(PROFILE, free_port(), {**compose_images, "SESSION_STORE": "redis"})
    try:
        stack.up(policy="session")
        clients = [McpClient(requests.Session(), stack.url, timeout=(5, 40)) for _ in range(SESSIONS)]
        for client in clients:
            assert cap.open_session(client).failure is None
        with CountingLoad(clients) as load:
            for name in INSTANCES:
                stack.compose("up", "-d", "--no-build", "--force-recreate", "--no-deps", f"{name}-{PROFILE}")
                stack.wait_healthy()
        assert load.wrong == [], load.wrong
        assert len(load.resets) <= len(INSTANCES), load.resets  # the listen-queue race: tests/utils/load.py
        assert min(load.counted) > 0, load.counted
        for n, client in enumerate(clients):
            assert cap.counter(client, expected=load.counted[n] + 1, unanswered=len(load.resets)).failure is None
    finally:
        stack.down()
