"""The Kubernetes nginx config (LB_POLICY=session-dns) for real, with no cluster: pods named like the
StatefulSet's on loopback addresses of their own, dnsmasq answering the headless Services' names, the Redis
store. Sessions route by their prefix; a pod added to DNS takes sessions with nginx untouched; a lost pod's
sessions are taken over; a prefix that names no pod never sends nginx anywhere else."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading

import pytest
import requests

from loadtest.client.legacy import McpClient
from loadtest.harness.pods import PODS_DOMAIN, READY_NAME, Blackhole, PodStack
from loadtest.harness.topology import PROJECT_ROOT
from tests.utils.clients import wait_for

RUN_NGINX = PROJECT_ROOT / "nginx" / "run-nginx.sh"


@pytest.fixture(scope="module")
def pods(redis_url, tmp_path_factory):
    with PodStack(tmp_path_factory.mktemp("pods"), redis_url) as stack:
        yield stack


def open_sessions(url: str, count: int) -> list[McpClient]:
    clients = [McpClient(requests.Session(), url) for _ in range(count)]
    for client in clients:
        assert client.initialize().status == 200
    return clients


def sessions_on(url: str, pods: set[str], each: int = 1) -> dict[str, list[McpClient]]:
    """Open sessions, one per poll, until each of `pods` holds `each` of them (nginx picks one of the ready
    pods' addresses at random, and asks DNS again once its answer is NGINX_DNS_VALID old)."""
    landed: dict[str, list[McpClient]] = {pod: [] for pod in pods}

    def enough() -> bool:
        (client,) = open_sessions(url, 1)
        landed.setdefault(pod_of(client), []).append(client)
        return all(len(landed[pod]) >= each for pod in pods)

    wait_for(enough, timeout=15)
    return landed


def pod_of(client: McpClient) -> str:
    return client.session_id.partition(".")[0]


def served_by(client: McpClient) -> str:
    """The pod that ran a call of the session (whoami names it; a relayed answer would too)."""
    exchange = client.call_tool("whoami")
    assert exchange.status == 200 and exchange.error is None, (exchange.status, exchange.error)
    return exchange.result["structuredContent"]["instance"]


def test_sessions_are_routed_by_their_prefix_to_their_own_pod(pods):
    landed = sessions_on(pods.url, {"mcp-0", "mcp-1", "mcp-2"})
    assert set(landed) == {"mcp-0", "mcp-1", "mcp-2"}  # sessions open on the ready pods only
    for client in (client for clients in landed.values() for client in clients):
        exchange = client.call_tool("whoami")
        assert exchange.instance == pod_of(client)  # answered by the pod itself: nothing was relayed
    assert pods.metric("mcp_forwarded_total") == 0 and pods.metric("mcp_owner_redirects_total") == 0


def test_a_fourth_pod_takes_new_sessions_with_no_nginx_change(pods):
    nginx_config = (pods.run_dir / "nginx" / "policy.conf").read_text()
    pods.add("mcp-3")
    landed = sessions_on(pods.url, {"mcp-3"})  # nginx asks DNS again within NGINX_DNS_VALID
    assert served_by(landed["mcp-3"][0]) == "mcp-3"
    assert pods.nginx.alive() and (pods.run_dir / "nginx" / "policy.conf").read_text() == nginx_config


def test_a_lost_pods_sessions_are_taken_over_from_redis(pods):
    clients = sessions_on(pods.url, {"mcp-1"}, each=2)["mcp-1"]
    pods.kill_only("mcp-1")  # its name still resolves: the connection is refused, nothing was sent
    assert served_by(clients[0]) != "mcp-1"
    pods.remove("mcp-1")  # and now its name is gone from DNS
    survivors = wait_for(lambda: [served_by(client) for client in clients], timeout=15)
    assert "mcp-1" not in survivors
    assert pods.metric("mcp_takeovers_total") == len(clients)  # each taken over once, by the pod it reached


def test_a_pod_back_under_its_name_sends_its_old_sessions_on_to_their_owner(pods):
    (client,) = open_sessions(pods.url, 1)
    owner = pod_of(client)
    pods.add("mcp-1")  # back after the test before: sessions minted under its name are owned elsewhere now
    moved = McpClient(requests.Session(), pods.url)  # the same session, its id naming mcp-1 as if minted there
    moved.session_id, moved.protocol_version = "mcp-1." + client.session_id.partition(".")[2], "2025-11-25"
    # mcp-1 answers 421 naming the owner, and nginx sends the request there (once nginx resolves mcp-1 again).
    wait_for(lambda: served_by(moved) == owner and pods.metric("mcp_owner_redirects_total") > 0, timeout=15)


def test_a_stalled_pods_sessions_are_taken_over_after_the_connect_timeout(pods):
    clients = sessions_on(pods.url, {"mcp-2"}, each=2)["mcp-2"]
    blackhole = Blackhole("127.0.0.98", pods.app_port)
    try:
        pods.stall("mcp-2", blackhole)  # its name resolves; every connection to it times out (504 in nginx)
        taken_over = pods.metric("mcp_takeovers_total")  # of the pods left: mcp-2's own count went with it
        assert all(served_by(client) not in ("mcp-2", None) for client in clients)
    finally:
        blackhole.close()
    assert pods.metric("mcp_takeovers_total") - taken_over == len(clients)


def test_a_prefix_that_names_no_pod_goes_nowhere_else(pods):
    canary = Canary("127.0.0.99", pods.app_port)
    pods.add_name(f"attacker.{PODS_DOMAIN}", canary.address)  # a name under the domain that no pod has
    pods.add_name("attacker.example", canary.address)
    for prefix in ("attacker", f"attacker.{PODS_DOMAIN}:1/x", "attacker.example", "mcp-01", "mcp-0x", "mcp-99999"):
        client = McpClient(requests.Session(), pods.url)
        client.session_id, client.protocol_version = f"{prefix}.0123abcd", "2025-11-25"
        exchange = client.call_tool("whoami")
        assert (exchange.status, exchange.error["message"]) == (404, "Session not found"), prefix
        assert exchange.instance in pods.pods  # one of the pods said so
    assert canary.connections == 0


def test_a_call_whose_pod_died_before_answering_goes_on_to_a_ready_pod(pods):
    """The call reached its session's pod, which died before any byte of its answer (JSON: the answer comes whole,
    at the end): nginx sends it to a ready pod, which takes the session over and runs it."""
    clients = sessions_on(pods.url, {"mcp-0"})["mcp-0"]
    outcome: list = []
    call = threading.Thread(
        target=lambda: outcome.append(clients[0].call_tool("slow_task", {"steps": 10, "step_seconds": 0.3}))
    )
    call.start()
    ready = f"http://{pods.address('mcp-0')}:{pods.app_port}/readyz"
    wait_for(lambda: requests.get(ready, timeout=5).json()["calls"] == 1)
    pods.kill_only("mcp-0")  # its name still resolves: the other pods refuse nothing
    call.join(timeout=30)
    (answered,) = outcome
    assert answered.status == 200 and answered.result["content"][0]["text"] == "done: 10 steps", answered.messages
    assert answered.instance != "mcp-0"


def test_a_sessions_request_goes_past_a_ready_pod_that_took_it_and_failed(pods):
    """A call whose pod is gone goes to a ready pod; one that accepts it and closes the connection (a pod dying as
    it accepts, its name still in DNS) passes it on to the next, so every call is answered."""
    live = next(name for name in pods.pods if name != "mcp-0")  # mcp-0 died in the test before
    (client,) = sessions_on(pods.url, {live})[live]
    dying = Canary("127.0.0.97", pods.app_port)
    pods.add_name(READY_NAME, dying.address)
    pods.remove(live, signal.SIGKILL)
    answered_by: list[str] = []

    def dying_pod_tried() -> bool:
        answered_by.append(served_by(client))  # asserts each call was answered
        return dying.connections > 0

    try:
        wait_for(dying_pod_tried, timeout=30)
    finally:
        pods.remove_name(READY_NAME)
        dying.close()
    assert live not in answered_by


class Canary:
    """A listener on a loopback address no pod has, at the pods' port: counts who connects."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.connections = 0
        self.sock = socket.create_server((address, port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone would not)
        self.sock.close()


def test_with_no_pod_ready_the_answer_is_a_json_rpc_error(pods):
    for name in list(pods.pods):
        pods.remove(name)
    exchange = McpClient(requests.Session(), pods.url).initialize()
    assert exchange.status == 502
    message = exchange.error["message"]
    assert message == "No MCP instance answered, neither the pod of the session nor any other; did not run: retry"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NGINX_DNS_PODS_DOMAIN", "mcp.svc; }"),
        ("NGINX_DNS_STATEFULSET", "MCP"),
        ("NGINX_DNS_APP_PORT", "80a"),
        ("NGINX_DNS_RESOLVER", "10.0.0.10;"),
        ("NGINX_DNS_VALID", "5m"),
        ("NGINX_STATUS_LISTEN", "8081;"),
        ("NGINX_STATUS_LISTEN", "8080"),  # the port MCP is served on (listen.conf)
        ("NGINX_DNS_READY_NAME", "mcp-ready.mcp.svc\nresolver 203.0.113.1"),  # grep reads lines; sed would too
    ],
)
def test_a_value_nginx_would_misread_stops_it_at_start_naming_the_variable(tmp_path, variable, value):
    (tmp_path / "listen.conf").write_text("listen 127.0.0.1:8080;\n")
    env = {
        "PATH": os.environ["PATH"],
        "LB_POLICY": "session-dns",
        "NGINX_SITE_DIR": str(tmp_path),
        "NGINX_RUN_DIR": str(tmp_path / "run"),
        "NGINX_DNS_PODS_DOMAIN": PODS_DOMAIN,
        "NGINX_DNS_READY_NAME": f"mcp-ready.{PODS_DOMAIN}",
        "NGINX_DNS_RESOLVER": "127.0.0.1:53",
        variable: value,
    }
    done = subprocess.run(["sh", str(RUN_NGINX)], env=env, capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert done.stderr.startswith(f"run-nginx: {variable}={value} is not valid; valid values: ")
