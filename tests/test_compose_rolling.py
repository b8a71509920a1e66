"""The compose stack with the Redis store: only the instances reach each other's forwarding ports, and a
rolling deploy under load, as a team runs one: each app container recreated in turn (`docker compose up -d
--force-recreate --no-deps`), the next only once it is healthy, while sessions count through nginx (`session`
policy). No session may be lost and every count must be exact."""

from __future__ import annotations

import pytest

from loadtest.compose import ComposeStack
from loadtest.faults.load import CountingLoad
from loadtest.stack import free_port
from loadtest.topology import INSTANCES

pytestmark = pytest.mark.compose
PROFILE = "stateful-sse"
SESSIONS = 6


@pytest.fixture(scope="module")
def stack(compose_images):
    stack = ComposeStack(
        PROFILE,
        free_port(),
        {**compose_images, "SESSION_STORE": "redis"},
        extra_profiles=("loadtest",),
        locust_port=free_port(),
    )
    try:
        stack.up(policy="session")
        yield stack
    finally:
        stack.down()


def connects(stack: ComposeStack, service: str, host: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=2)"
    return stack.compose("exec", "-T", service, "python3", "-c", probe, check=False).returncode == 0


def test_only_the_instances_reach_the_forwarding_ports(stack):
    nginx, app1, app2 = (f"{name}-{PROFILE}" for name in ("nginx", "app1", "app2"))
    for outsider in (nginx, "locust"):  # the backend names are unknown on the front network
        assert stack.compose("exec", "-T", outsider, "getent", "hosts", "app1-peer", check=False).returncode != 0
    front_address = stack.compose("exec", "-T", "locust", "getent", "hosts", "app1").stdout.split()[0]
    assert connects(stack, "locust", front_address, 8000)  # the address is right: the public port answers there
    assert not connects(stack, "locust", front_address, 8001)  # and the forwarding port is not bound to it
    assert connects(stack, app2, "app1-peer", 8001)
    assert connects(stack, app1, "app2-peer", 8001)


def test_a_rolling_deploy_loses_no_session_and_no_count(stack):
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
