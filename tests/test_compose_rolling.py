"""A rolling deploy of the compose stack under load, as a team runs one: each app container recreated in
turn (`docker compose up -d --force-recreate --no-deps`), the next only once it is healthy, while sessions
count through nginx (`session` policy, Redis store). No session may be lost and every count must be exact."""

from __future__ import annotations

import pytest

from loadtest.compose import ComposeStack
from loadtest.faults.load import CountingLoad
from loadtest.stack import free_port
from loadtest.topology import INSTANCES

pytestmark = pytest.mark.compose
PROFILE = "stateful-sse"
SESSIONS = 6


def test_a_rolling_deploy_loses_no_session_and_no_count(compose_images):
    stack = ComposeStack(PROFILE, free_port(), {**compose_images, "SESSION_STORE": "redis"})
    try:
        stack.up(policy="session")
        with CountingLoad(stack.url, SESSIONS, sample_every=0, timeout=(5, 40)) as load:
            load.go_on(5)
            for name in INSTANCES:
                stack.compose("up", "-d", "--no-build", "--force-recreate", "--no-deps", f"{name}-{PROFILE}")
                stack.wait_healthy()
            load.go_on(5)  # and every session counts on, from exactly what was acknowledged
        tally = load.tally
        assert tally.failed == {}, tally.failed
        assert (tally.sessions_lost, tally.acknowledged_lost, tally.doubled) == (0, 0, 0), tally
        assert min(load.counted) > 0, load.counted
    finally:
        stack.down()
