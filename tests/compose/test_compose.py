"""The real docker-compose.yml, each profile: health, MCP through nginx, a container killed, nothing left after.

Skipped with one line when no Docker Engine is reachable; with MCP_REQUIRE_DOCKER=1 (CI) that is a failure.
"""

from __future__ import annotations

import json

import anyio
import pytest
import requests
from mcp.shared.exceptions import MCPError

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.harness.compose import PROJECT, ComposeStack, docker_cli
from loadtest.harness.stack import free_port
from loadtest.harness.topology import PRESETS, STATEFUL
from tests.utils.clients import Recorder, ask, instance, modern_call, text_of, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.compose]
INSTANCES = {"app1", "app2", "app3"}


@pytest.fixture(scope="module", params=PRESETS)
def stack(request, compose_images):
    stack = ComposeStack(
        request.param, free_port(), compose_images, extra_profiles=("loadtest",), locust_port=free_port()
    )
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
    assert ComposeStack.leftovers() == {"containers": [], "networks": [], "volumes": []}


def initialize_many(stack: ComposeStack, count: int = 6) -> list[str]:
    """Open `count` sessions (or stateless exchanges) and return the instance that answered each."""
    return [McpClient(requests.Session(), stack.url).initialize().instance for _ in range(count)]


def test_every_container_is_healthy_and_only_nginx_and_locust_are_published(stack):
    containers = stack.containers()
    nginx = f"nginx-{stack.profile}"
    assert set(containers) == {"redis", "locust", nginx, *(f"{name}-{stack.profile}" for name in INSTANCES)}
    assert all(c["health"] == "healthy" for c in containers.values()), containers
    assert containers[nginx]["published"] == [f"127.0.0.1:{stack.port}"]
    assert containers["locust"]["published"] == [f"127.0.0.1:{stack.locust_port}"]
    assert all(c["published"] == [] for service, c in containers.items() if service not in (nginx, "locust"))


def test_every_container_is_hardened(stack):
    """Read-only root, no capabilities, no privilege gained through exec, memory and pids bounded, not root."""
    ids = [c["id"] for c in stack.containers().values()]
    for info in json.loads(docker_cli("inspect", *ids)):
        name, host = info["Name"], info["HostConfig"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and not host["CapAdd"], name
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, name
        assert info["Config"]["User"] not in ("", "0", "root", "0:0"), name


def test_redis_is_reached_only_by_the_apps_and_only_as_its_users(stack):
    nginx, app1 = f"nginx-{stack.profile}", f"app1-{stack.profile}"
    assert stack.compose("exec", "-T", nginx, "getent", "hosts", "redis", check=False).returncode != 0
    assert stack.compose("exec", "-T", "locust", "getent", "hosts", "redis", check=False).returncode != 0
    address = stack.compose("exec", "-T", app1, "getent", "hosts", "redis").stdout.split()[0]
    probe = f"import socket; socket.create_connection(({address!r}, 6379), timeout=2)"
    unreachable = stack.compose("exec", "-T", "locust", "python3", "-c", probe, check=False)
    assert unreachable.returncode != 0 and "Error" in unreachable.stderr  # no route from the front network
    anonymous = stack.compose("exec", "-T", "redis", "redis-cli", "get", "mcp:cluster-secret").stdout
    assert "NOAUTH" in anonymous


def test_nginx_follows_an_app_that_comes_back_at_another_address(stack):
    """Compose v2 recreates an app (a rebuild, a changed setting) without nginx, which resolved the names at its
    start: with app1's old address taken by another container, nginx must still reach app1 by its name."""
    stack.up(policy="round-robin")
    app1 = f"app1-{stack.profile}"
    stack.compose("stop", "-t", "3", app1)
    squatter = docker_cli(  # the image's compose labels would make it one of the stack's containers
        *("run", "-d", "--rm", "--no-healthcheck", "--label", "com.docker.compose.project=squatter"),
        *("--network", f"{PROJECT}_frontend", "mcp-scale-lab-app", "sleep", "120"),
    )
    try:
        stack.compose("up", "-d", "--no-build", app1)
        stack.wait_healthy()
        wait_for(lambda: set(initialize_many(stack, count=3)) == INSTANCES, timeout=15, interval=0.5)
    finally:
        docker_cli("rm", "-f", squatter.strip())


def test_round_robin_spreads_over_the_three_containers(stack):
    stack.up(policy="round-robin")
    answered_by = initialize_many(stack)
    assert set(answered_by) == INSTANCES, answered_by


async def test_the_sdk_client_through_nginx(stack):
    stack.up(policy="round-robin")
    async with Recorder().client(stack.url) as client:
        if stack.profile in STATEFUL:
            with pytest.raises(MCPError) as failure:
                await client.call_tool("whoami")
            assert failure.value.error.message == "Session not found"
        else:
            result = await client.call_tool("process_file", {"path": "users.csv", "operation": "count-lines"})
            assert text_of(result) == "4 lines"


async def test_2026_clients_share_keys_counters_and_updates_through_round_robin(stack):
    """No session on any preset: a retry, a counter and an update each cross the three containers."""
    stack.up(policy="round-robin")
    asked, answers, state = ask(stack.url, "confirm_action", {"action": "compose"})
    done = modern_call(stack.url, "confirm_action", {"action": "compose"}, inputResponses=answers, requestState=state)
    assert done.json()["result"]["content"][0]["text"] == "confirmed: compose"
    assert instance(asked) != instance(done)
    replays = [
        modern_call(stack.url, "confirm_action", {"action": "compose"}, inputResponses=answers, requestState=state)
        for _ in range(2)  # on the two other containers: the state was used once, cluster-wide
    ]
    assert {instance(replay) for replay in replays} | {instance(done)} == INSTANCES
    for replay in replays:
        error = replay.json()["error"]
        assert (error["code"], error["message"]) == (-32602, "Invalid or expired requestState")
    handle = modern_call(stack.url, "open_counter", {}).json()["result"]["structuredContent"]["handle"]
    calls = [modern_call(stack.url, "increment", {"handle": handle}) for _ in range(3)]
    assert [(c.json()["result"]["structuredContent"]["result"]) for c in calls] == [1, 2, 3]
    assert {instance(call) for call in calls} == INSTANCES
    async with (
        Recorder().client(stack.url, mode="auto") as listener,
        Recorder().client(stack.url, mode="auto") as publisher,
        listener.listen(resource_subscriptions=["updates://compose"]) as heard,
    ):
        await publisher.call_tool("publish_update", {"message": "to every container", "topic": "compose"})
        with anyio.fail_after(5):
            assert (await heard.__anext__()).uri == "updates://compose"


def test_the_locust_web_ui_in_compose(stack):
    """The `loadtest` profile's web UI drives load through nginx and shows where it went."""
    stack.up(policy="round-robin")
    ui = f"http://127.0.0.1:{stack.locust_port}"
    started = requests.post(
        f"{ui}/swarm", data={"user_count": 2, "spawn_rate": 2, "user_classes": "BasicToolUser"}, timeout=10
    ).json()
    assert started["success"] and started["host"] == "http://nginx:8080"
    stats = wait_for(lambda: _stats_once(ui, minimum=9), timeout=30)
    requests.post(f"{ui}/stop", timeout=10)
    requests.get(f"{ui}/stats/reset", timeout=10)
    basic = next(s for s in stats["stats"] if s["name"] == cap.BASIC)
    (tab,) = stats["extended_stats"]
    spread = next(row for row in tab["data"] if row["name"] == cap.BASIC)
    answered = {share.split()[0] for row in tab["data"] for share in row["shares"].split(", ") if share}
    assert answered == INSTANCES, tab["data"]
    if stack.profile in STATEFUL:
        # Round-robin: the session is on one instance only. Each task re-opens it (initialize, initialized,
        # process_file): three requests, so round-robin may put every process_file on the same instance.
        assert basic["num_failures"] > 0
    else:
        assert basic["num_failures"] == 0
        assert spread["instances"] == 3, spread


def _stats_once(ui: str, minimum: int) -> dict | None:
    stats = requests.get(f"{ui}/stats/requests", timeout=10).json()
    basic = [s for s in stats["stats"] if s["name"] == cap.BASIC]
    return stats if basic and basic[0]["num_requests"] >= minimum else None


async def test_ip_hash_sticks_and_keeps_sessions(stack):
    stack.up(policy="ip-hash")
    answered_by = initialize_many(stack)
    assert len(set(answered_by)) == 1, answered_by
    if stack.profile in STATEFUL:
        async with Recorder().client(stack.url) as client:
            counts = [(await client.call_tool("increment")).structured_content["result"] for _ in range(3)]
        assert counts == [1, 2, 3]


def test_session_policy_spreads_sessions_and_keeps_them(stack):
    stack.up(policy="session")
    clients = [McpClient(requests.Session(), stack.url) for _ in range(6)]
    homes = [client.initialize().instance for client in clients]
    assert set(homes) == INSTANCES, homes
    if stack.profile in STATEFUL:
        for client, home in zip(clients, homes, strict=True):
            calls = [client.call_tool("increment") for _ in range(2)]
            assert [(c.instance, c.result["structuredContent"]["result"]) for c in calls] == [(home, 1), (home, 2)]


def test_killing_an_app_container(stack):
    """Stateful (ip_hash and session policies; stateful-json only under session, where it behaves as
    stateful-sse): the sessions on the dead container are gone. Stateless: the other two carry on."""
    killed_under = {"stateful-sse": ("ip-hash", "session"), "stateful-json": ("session",)}
    policies = killed_under.get(stack.profile, ("round-robin",))
    for policy in policies:
        stack.up(policy=policy)  # also starts a container the last policy's run killed
        client = McpClient(requests.Session(), stack.url)
        victim = client.initialize().instance
        stack.kill(f"{victim}-{stack.profile}")
        after = [client.call_tool("whoami") for _ in range(6)]
        answered_by = [exchange.instance for exchange in after]
        assert victim not in answered_by, (policy, answered_by)
        if stack.profile in STATEFUL:
            assert all((e.status, e.error["message"]) == (404, "Session not found") for e in after), policy
        else:
            assert all(e.status == 200 and e.error is None for e in after)
            assert set(answered_by) == INSTANCES - {victim}
