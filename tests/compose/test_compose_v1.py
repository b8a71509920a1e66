"""Debian 12's docker-compose 1.29 still runs the compose file (the other compose tests use `docker compose` v2)."""

from __future__ import annotations

import subprocess

import pytest
import requests

from loadtest.client.legacy import McpClient
from loadtest.harness.compose import V1, ComposeStack
from loadtest.harness.stack import free_port
from tests.utils.clients import require_docker

pytestmark = pytest.mark.compose


def test_debian_docker_compose_1_29_runs_a_preset(compose_images):
    """Debian 12 users have only docker-compose 1.29: it reads the same file, and a session works through nginx."""
    require_docker("Debian's docker-compose 1.29", V1)
    assert subprocess.run([*V1, "version", "--short"], capture_output=True, text=True).stdout.startswith("1.29")
    stack = ComposeStack("stateful-sse", free_port(), compose_images, command=V1)
    try:
        stack.up(policy="session")
        client = McpClient(requests.Session(), stack.url)
        home = client.initialize().instance
        calls = [client.call_tool("increment") for _ in range(2)]
        assert [(c.instance, c.result["structuredContent"]["result"]) for c in calls] == [(home, 1), (home, 2)]
    finally:
        stack.down()
    assert ComposeStack.leftovers() == {"containers": [], "networks": [], "volumes": []}
