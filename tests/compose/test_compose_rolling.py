"""The compose stack with the Redis store: only the instances reach each other's forwarding ports, Prometheus
(the `monitoring` profile) counts what a load did and the takeovers a SIGKILL caused, and a rolling deploy
under load, as a team runs one: each app container recreated in turn (`docker compose up -d
--force-recreate --no-deps`), the next only once it is healthy, while the Locust web UI runs every scenario
through nginx round-robin: no operation of any capability may fail (a count lost or doubled fails the counting
scenario's operation). The counting load's rolling restart is the fault scorecard's row (local stack)."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time

import pytest
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient, stream_messages
from loadtest.harness.compose import PROJECT, ComposeStack, docker_cli
from loadtest.harness.stack import free_port
from loadtest.harness.topology import INSTANCES, PROJECT_ROOT
from tests.utils.clients import wait_for
from tests.utils.docs import blocks

pytestmark = pytest.mark.compose
PROFILE = "stateful-sse"
SESSIONS = 6
CALLS_EACH = 5


@pytest.fixture(scope="module")
def stack(compose_images):
    stack = ComposeStack(
        PROFILE,
        free_port(),
        {**compose_images, "SESSION_STORE": "redis", "PROMETHEUS_PORT": str(free_port())},
        extra_profiles=("loadtest", "monitoring"),
        locust_port=free_port(),
    )
    env = {**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": PROJECT, "NGINX_PORT": str(stack.port)}
    try:
        command = blocks()["monitoring-compose"][0]  # docs/metrics.md, as written
        done = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        stack.up(policy="session")  # and the Locust container the next test looks from
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


def prometheus(stack: ComposeStack, query: str) -> float | None:
    """The one value of an instant PromQL query (None while it has none), through Prometheus' HTTP API."""
    answer = requests.get(f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}/api/v1/query", params={"query": query})
    result = answer.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def settles_at(stack: ComposeStack, query: str, expected: float) -> None:
    """Wait (a few scrapes) until the query answers `expected`; a count above it fails at once."""

    def reached() -> bool:
        value = prometheus(stack, query)
        assert value is None or value <= expected, (query, value)
        return value == expected

    wait_for(reached, timeout=30, interval=0.5)


def test_prometheus_counts_the_calls_and_the_takeovers_of_a_sigkill(stack):
    settles_at(stack, 'count(up{job="mcp"} == 1)', 3)
    clients = [McpClient(requests.Session(), stack.url) for _ in range(SESSIONS)]
    for client in clients:
        assert client.initialize().status == 200
        assert all(client.call_tool("whoami").status == 200 for _ in range(CALLS_EACH))
    settles_at(stack, 'sum(mcp_calls_total{method="tools/call",outcome="ok"})', SESSIONS * CALLS_EACH)
    settles_at(stack, 'sum(mcp_calls_total{method="initialize"})', SESSIONS)
    settles_at(stack, "sum(mcp_sessions_owned)", SESSIONS)
    victim = clients[0].session_id.partition(".")[0]
    orphans = [client for client in clients if client.session_id.startswith(f"{victim}.")]
    stack.kill(f"{victim}-{PROFILE}")
    try:
        for client in orphans:  # each is taken over by the instance its next request reaches
            assert client.call_tool("whoami").status == 200
        settles_at(stack, "sum(mcp_takeovers_total)", len(orphans))
    finally:
        stack.up(policy="session")  # the killed app back, for what follows
    status = stack.compose(
        "exec", "-T", f"nginx-{PROFILE}", "wget", "-q", "-O", "-", "http://127.0.0.1:8081/stub_status"
    )
    assert status.stdout.startswith("Active connections:")


SCENARIOS = (
    "BasicToolUser",
    "SessionStateUser",
    "LoggingUser",
    "ProgressUser",
    "SamplingUser",
    "ElicitationUser",
    "ResourceUpdatesUser",
    "SessionChurnUser",
)


def test_a_rolling_deploy_fails_no_operation_of_the_full_locust_mix(stack):
    """The issue's run: the web UI with every scenario (24 users) through nginx round-robin, each app recreated in
    turn, the next once it is healthy."""
    stack.up(policy="round-robin")
    ui = f"http://127.0.0.1:{stack.locust_port}"
    requests.get(f"{ui}/stats/reset", timeout=10)
    swarm = {"user_count": 24, "spawn_rate": 24, "user_classes": list(SCENARIOS)}
    assert requests.post(f"{ui}/swarm", data=swarm, timeout=10).json()["success"]
    try:
        wait_for(lambda: all(count >= 3 for count in ran(ui)), timeout=60, interval=1)
        for name in INSTANCES:
            stack.compose("up", "-d", "--no-build", "--force-recreate", "--no-deps", f"{name}-{PROFILE}")
            stack.wait_healthy()
        after = ran(ui)  # and every capability runs on, three times more
        wait_for(lambda: all(now >= then + 3 for now, then in zip(ran(ui), after, strict=True)), timeout=60)
    finally:
        stats = requests.get(f"{ui}/stats/requests", timeout=10).json()
        requests.post(f"{ui}/stop", timeout=10)
    failed = {entry["name"]: entry["num_failures"] for entry in stats["stats"] if entry["num_failures"]}
    errors = [(error["name"], error["error"], error["occurrences"]) for error in stats["errors"]]
    assert failed == {}, errors


def ran(ui: str) -> list[int]:
    """How many operations of each capability Locust has run (since the stats were reset)."""
    stats = requests.get(f"{ui}/stats/requests", timeout=10).json()["stats"]
    counts = {entry["name"]: entry["num_requests"] for entry in stats}
    return [counts.get(name, 0) for name in cap.CAPABILITIES]


def test_an_app_cut_off_from_redis_falls_silent_then_carries_on_when_the_network_is_back(stack):
    """`docker network disconnect` takes an app off the network it reaches Redis on, mid-call: within its lease
    (1.5 s from the last heartbeat Redis answered) it ends its GET stream and sends no more progress; the cut
    outlasts the heartbeat's expiry; once connected again, Redis confirms the session still its own (no request
    reached another instance to take it over) and the call finishes: every step reported, once."""
    stack.up(policy="session")  # requests go straight to the session's owner
    client = McpClient(requests.Session(), stack.url, timeout=(5, 60))
    owner = client.initialize().instance
    container = stack.containers()[f"{owner}-{PROFILE}"]["id"]
    steps, request_id = 40, client.next_id()
    call = {"name": "slow_task", "arguments": {"steps": steps, "step_seconds": 0.2}, "_meta": {"progressToken": 1}}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": call}
    arrived: list[tuple[float, dict]] = []
    ends: dict[str, float] = {}

    def read_call() -> None:
        with client.http.post(client.url, json=body, headers=client.headers(), stream=True, timeout=60) as resp:
            for message in stream_messages(resp):
                arrived.append((time.monotonic(), message))

    def read_get_stream() -> None:
        with client.open_stream(read_timeout=60) as stream:
            for _ in stream.iter_lines():
                pass
        ends["get"] = time.monotonic()

    network = f"{PROJECT}_backend"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        get_stream, answered = pool.submit(read_get_stream), pool.submit(read_call)
        wait_for(lambda: len(arrived) >= 6, timeout=10)  # progress and logs flow
        docker_cli("network", "disconnect", network, container)
        cut = time.monotonic()
        try:
            get_stream.result(timeout=10)
            wait_for(lambda: time.monotonic() > cut + 3.5, timeout=5)  # the cut outlasts the heartbeat's expiry
        finally:
            healed = time.monotonic()  # before the connect, which under load may return a while after it took effect
            docker_cli("network", "connect", "--alias", f"{owner}-peer", network, container)
        answered.result(timeout=60)
    assert ends["get"] < cut + 2.0, f"the GET stream ended {ends['get'] - cut:.2f} s after the cut"
    silent = [message for when, message in arrived if cut + 2.0 < when < healed]
    assert silent == [], f"{len(silent)} messages sent while cut off"
    answer = arrived[-1][1]
    assert answer.get("id") == request_id and answer["result"]["content"][0]["text"] == f"done: {steps} steps"
    progress = [
        message["params"]["progress"] for _, message in arrived if message.get("method") == "notifications/progress"
    ]
    assert progress == list(range(1, steps + 1))
    assert "this owner's lease lapsed" in stack.compose("logs", f"{owner}-{PROFILE}").stdout
