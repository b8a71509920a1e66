"""The compose stack's redis-ha profile, started with the command of docs/configuration.md as written: the
apps follow three Sentinels to the primary and wait for the replica on every write. Redis's primary is
SIGKILLed under load (sessions counting through nginx, Redis store): the Sentinels promote the replica, the
old primary comes back as its replica, and no session and no acknowledged write is lost or doubled."""

from __future__ import annotations

import os
import subprocess

import pytest

from loadtest.experiments.faults.load import CountingLoad
from loadtest.harness.compose import PROJECT, ComposeStack
from loadtest.harness.stack import free_port
from loadtest.harness.topology import PROJECT_ROOT
from tests.utils.clients import wait_for
from tests.utils.docs import blocks

pytestmark = pytest.mark.compose
PROFILE = "stateful-sse"
SESSIONS = 6
SENTINELS = ("sentinel1", "sentinel2", "sentinel3")


def ask_sentinel(stack: ComposeStack, name: str, *question: str) -> str:
    """A Sentinel's answer to `redis-cli`, as the Sentinels' user (only its container may read that secret)."""
    login = 'REDISCLI_AUTH="$(cat /run/secrets/redis-sentinel-password)" exec redis-cli --user sentinel -p 26379 "$@"'
    return stack.compose("exec", "-T", name, "sh", "-c", login, "sh", *question, check=False).stdout


def primary(stack: ComposeStack) -> str | None:
    """The primary's address as the first Sentinel names it (None while it cannot say)."""
    answer = ask_sentinel(stack, "sentinel1", "sentinel", "get-master-addr-by-name", "mcp").split()
    return answer[0] if len(answer) == 2 else None


def replica_known(stack: ComposeStack) -> bool:
    """Whether every Sentinel knows a replica it could promote (it learns of it from the primary's INFO)."""
    answers = [ask_sentinel(stack, name, "sentinel", "replicas", "mcp") for name in SENTINELS]
    return all("flags\nslave\n" in answer for answer in answers)


def test_the_primary_fails_over_and_nothing_acknowledged_is_lost(compose_images):
    port = free_port()
    stack = ComposeStack(PROFILE, port, {**compose_images, "SESSION_STORE": "redis"}, extra_profiles=("redis-ha",))
    env = {**os.environ, **compose_images, "COMPOSE_PROJECT_NAME": PROJECT, "NGINX_PORT": str(port)}
    try:
        command = blocks()["redis-ha-compose"][0]
        done = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        stack.wait_healthy()
        first = wait_for(lambda: primary(stack), timeout=30)
        wait_for(lambda: replica_known(stack), timeout=30, interval=0.5)
        with CountingLoad(stack.url, SESSIONS) as load:
            load.go_on(10)
            stack.kill("redis")
            wait_for(lambda: primary(stack) not in (first, None), timeout=30, interval=0.5)
            stack.compose("start", "redis")
            load.go_on(10, timeout=90)
        tally = load.tally
        assert (tally.sessions_lost, tally.acknowledged_lost, tally.doubled) == (0, 0, 0), tally
        assert min(load.counted) > 0, tally
        assert tally.failed == {}, tally.failed  # every call answered in the end: it waited, or was retried with its id
        expected = ("Redis", "HTTP 5")  # each retry for Redis's fault
        assert [reason for reason in tally.retried if not any(words in reason for words in expected)] == []
    finally:
        stack.down()
