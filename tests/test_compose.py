"""The real docker-compose.yml, each profile: health, MCP through nginx, a container killed, nothing left after.

Skipped with one line when no Docker Engine is reachable; with MCP_REQUIRE_DOCKER=1 (CI) that is a failure.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import requests
from mcp.shared.exceptions import MCPError

from loadtest.compose import PROJECT, PROJECT_ROOT, ComposeStack, compose_command, docker_unavailable, image_env
from loadtest.mcp_client import McpClient
from loadtest.stack import PRESETS, free_port
from tests.conftest import STATEFUL
from tests.helpers import Recorder, text_of

pytestmark = pytest.mark.anyio
INSTANCES = {"app1", "app2", "app3"}


@pytest.fixture(scope="session")
def compose_env() -> dict[str, str]:
    """Image variables for compose, with the app image built once for the whole run."""
    reason = docker_unavailable()
    if reason is not None:
        if os.environ.get("MCP_REQUIRE_DOCKER") == "1":
            pytest.fail(f"compose tests cannot run: {reason} (MCP_REQUIRE_DOCKER=1)")
        pytest.skip(f"compose tests skipped: {reason}")
    env = image_env()
    build = [*compose_command(), "-p", PROJECT, "--profile", "stateful-sse", "build", "app1-stateful-sse"]
    subprocess.run(build, cwd=PROJECT_ROOT, env={**os.environ, **env}, check=True, capture_output=True, timeout=900)
    return env


@pytest.fixture(scope="module", params=PRESETS)
def stack(request, compose_env):
    stack = ComposeStack(profile=request.param, port=free_port(), env=compose_env)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
    assert ComposeStack.leftovers() == {"containers": [], "networks": [], "volumes": []}


def initialize_many(stack: ComposeStack, count: int = 6) -> list[str]:
    """Open `count` sessions (or stateless exchanges) and return the instance that answered each."""
    return [McpClient(requests.Session(), stack.url).initialize().instance for _ in range(count)]


def test_every_container_is_healthy_and_only_nginx_is_published(stack):
    containers = stack.containers()
    nginx = f"nginx-{stack.profile}"
    assert set(containers) == {"redis", nginx, *(f"{name}-{stack.profile}" for name in INSTANCES)}
    assert all(c["health"] == "healthy" for c in containers.values()), containers
    assert containers[nginx]["published"] == [f"127.0.0.1:{stack.port}"]
    assert all(c["published"] == [] for service, c in containers.items() if service != nginx)


def test_round_robin_spreads_over_the_three_containers(stack):
    answered_by = initialize_many(stack)
    assert set(answered_by) == INSTANCES, answered_by


async def test_the_sdk_client_through_nginx(stack):
    async with Recorder().client(stack.url) as client:
        if stack.profile in STATEFUL:
            with pytest.raises(MCPError) as failure:
                await client.call_tool("whoami")
            assert failure.value.error.message == "Session not found"
        else:
            result = await client.call_tool("process_file", {"path": "users.csv", "operation": "count-lines"})
            assert text_of(result) == "4 lines"


async def test_ip_hash_sticks_and_keeps_sessions(stack):
    stack.up(policy="ip-hash")
    answered_by = initialize_many(stack)
    assert len(set(answered_by)) == 1, answered_by
    if stack.profile in STATEFUL:
        async with Recorder().client(stack.url) as client:
            counts = [(await client.call_tool("increment")).structured_content["result"] for _ in range(3)]
        assert counts == [1, 2, 3]


def test_killing_an_app_container(stack):
    """Stateful: the sessions on the dead container are gone. Stateless: the others carry on."""
    stack.up(policy="ip-hash" if stack.profile in STATEFUL else "round-robin")
    client = McpClient(requests.Session(), stack.url)
    victim = client.initialize().instance
    stack.kill(f"{victim}-{stack.profile}")
    after = [client.call_tool("whoami") for _ in range(6)]
    answered_by = [exchange.instance for exchange in after]
    assert victim not in answered_by, answered_by
    if stack.profile in STATEFUL:
        assert all((e.status, e.error["message"]) == (404, "Session not found") for e in after)
    else:
        assert all(e.status == 200 and e.error is None for e in after)
        assert set(answered_by) == INSTANCES - {victim}
