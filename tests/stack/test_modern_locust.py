"""The load test speaking 2026-07-28, against real local stacks behind round-robin: the client on its own
(input-required rounds, counter handles, subscriptions/listen), headless Locust runs, and the web UI."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import stream_events
from loadtest.client.modern import ModernClient
from loadtest.harness.stack import answers, free_port
from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.shared.listen_streams import MAX_LISTEN_STREAMS_PER_CLIENT
from tests.utils.clients import wait_for
from tests.utils.locust import LOCUSTFILE, run_headless, stats_with, web_ui_summary

INSTANCES = {"app1", "app2", "app3"}
MODERN_ARGS = ("--mcp-protocol", cap.MODERN)


def modern_client(url: str) -> ModernClient:
    return ModernClient(requests.Session(), url, timeout=(3.0, 10.0))


def test_requests_carry_the_2026_headers_and_meta_and_no_session(stack_for):
    client = modern_client(stack_for("stateless-sse").url)
    exchange = client.call_tool("whoami")
    identity = exchange.result["structuredContent"]
    assert cap.judge(exchange) is None
    assert identity["protocol_version"] == cap.MODERN and identity["session_id"] is None
    assert client.session_id is None and "mcp-session-id" not in exchange.headers
    assert exchange.round_instances == [exchange.instance] and exchange.answered == []
    sent = client.headers("tools/call", {"name": "whoami"})
    assert sent["MCP-Protocol-Version"] == cap.MODERN and sent["Mcp-Method"] == "tools/call"
    assert sent["Mcp-Name"] == "whoami"
    assert client.headers("resources/read", {"uri": "updates://x"})["Mcp-Name"] == "updates://x"


def test_sampling_and_elicitation_rounds_answered_by_different_instances(stack_for):
    """Round-robin sends the retry to another instance than the first round: the request state still opens."""
    client = modern_client(stack_for("stateless-sse").url)
    calls = {
        "sampling/createMessage": ("analyze_with_ai", {"text": "three instances"}, f"analysis: {cap.SAMPLED_TEXT}"),
        "elicitation/create": ("confirm_action", {"action": "scale out"}, "confirmed: scale out"),
    }
    for method, (tool, arguments, expected) in calls.items():
        exchanges = [client.call_tool(tool, arguments, answer=cap.answer) for _ in range(4)]
        for exchange in exchanges:
            assert cap.judge(exchange) is None, cap.judge(exchange)
            assert [r["method"] for r in exchange.answered] == [method]
            assert exchange.result["content"][0]["text"] == expected
            assert len(exchange.round_instances) == 2
        assert all(len(set(e.round_instances)) == 2 for e in exchanges), [e.round_instances for e in exchanges]


def test_without_an_answer_the_input_required_result_is_returned(stack_for):
    exchange = modern_client(stack_for("stateless-sse").url).call_tool("confirm_action", {"action": "wait"})
    assert exchange.result["resultType"] == "input_required" and exchange.result["requestState"]
    assert cap.judge(exchange) == "input required, not answered"


def test_logs_and_progress_arrive_on_an_sse_preset(stack_for):
    client = modern_client(stack_for("stateless-sse").url)
    assert cap.logs(client).failure is None
    assert cap.progress(client).failure is None
    assert cap.logs(ModernClient(requests.Session(), client.url, log_level=None)).failure == "0 of 3 log notifications"


def test_a_counter_handle_counts_on_every_instance(stack_for):
    client = modern_client(stack_for("stateless-sse").url)
    opened = cap.open_counter(client)
    assert opened.failure is None and opened.handle
    outcomes = [cap.counter(client, expected=n, handle=opened.handle) for n in (1, 2, 3, 4)]
    assert [(o.failure, o.value) for o in outcomes] == [(None, 1), (None, 2), (None, 3), (None, 4)]
    assert {o.instance for o in outcomes} == INSTANCES
    unknown = cap.counter(client, expected=1, handle="ctr_" + "x" * 22)
    assert unknown.handle_lost and unknown.value is None
    assert cap.counter(client, expected=1).failure.startswith("tool error: ")  # no handle, no session


def test_an_update_reaches_a_listen_stream_whichever_instance_publishes(stack_for):
    url = stack_for("stateless-sse").url
    listener, publisher = modern_client(url), modern_client(url)
    response = listener.listen([cap.updates_uri("modern-raw")], read_timeout=10)
    try:
        events = (message for _, message in stream_events(response))
        acknowledged = next(events)
        assert acknowledged["method"] == "notifications/subscriptions/acknowledged"
        assert acknowledged["params"]["notifications"]["resourceSubscriptions"] == ["updates://modern-raw"]
        publishers = set()
        for n in range(3):
            published = cap.publish(publisher, "modern-raw", f"update {n}")
            assert published.failure is None
            publishers.add(published.instance)
            update = next(events)
            assert (update["method"], update["params"]["uri"]) == (
                "notifications/resources/updated",
                "updates://modern-raw",
            )
    finally:
        response.close()
    assert publishers == INSTANCES


def test_one_client_holds_its_share_of_an_instances_listen_streams_and_another_is_served(stack_for):
    """MAX_LISTEN_STREAMS_PER_CLIENT streams from one address on an instance: the next is refused, saying why,
    while another address (nginx's X-Forwarded-For entry) opens one; a stream ended frees a place."""
    url = stack_for("stateless-sse").instance_url("app1")

    def listen(address: str) -> tuple[tuple, dict]:
        """A stream (open while what holds it is: the response and its reader) and its first message."""
        client = modern_client(url)
        client.http.headers["X-Forwarded-For"] = address
        response = client.listen([cap.updates_uri("listen-bound")], read_timeout=10)
        events = stream_events(response)
        return (response, events), next(events)[1]

    held = []
    try:
        for _ in range(MAX_LISTEN_STREAMS_PER_CLIENT):
            response, first = listen("192.0.2.30")
            held.append(response)
            assert first["method"] == "notifications/subscriptions/acknowledged"
        refused, error = listen("192.0.2.30")
        refused[0].close()
        assert "error" in error, error
        assert error["error"]["message"].startswith(
            f"this client address holds {MAX_LISTEN_STREAMS_PER_CLIENT} listen streams, the most one client may"
        )
        other, first = listen("192.0.2.31")
        other[0].close()
        assert first["method"] == "notifications/subscriptions/acknowledged"
        held.pop()[0].close()
        wait_for(lambda: "error" not in (opened := listen("192.0.2.30"))[1] and held.append(opened[0]) is None)
    finally:
        for response, _ in held:
            response.close()


def test_every_scenario_but_session_churn_passes_under_2026_behind_round_robin(stack_for, tmp_path):
    stack = stack_for("stateless-sse", "round-robin")
    stats, report = run_headless(stack.url.removesuffix("/mcp"), tmp_path, "-u", "8", "-r", "8", *MODERN_ARGS)
    measured = [*cap.capabilities_for(cap.MODERN), cap.OPEN_COUNTER]
    assert cap.SESSION_CHURN not in measured
    for name in measured:
        assert stats[name]["num_requests"] > 0, name
        assert stats[name]["num_failures"] == 0, (name, report[name]["failures"])
    assert set(stats) - {"Aggregated"} == set(measured), "no initialize, no session churn"
    assert set(report[cap.BASIC]["instances"]) == INSTANCES
    answered = {instance for name in measured for instance in report[name]["instances"]}
    assert answered == INSTANCES


def test_the_reasons_on_a_json_preset_under_2026(stack_for, tmp_path):
    """JSON responses carry no notifications; input-required rounds need none, so sampling works."""
    stack = stack_for("stateless-json", "round-robin")
    tags = ("-T", "logs", "sampling", "basic")
    stats, report = run_headless(stack.url.removesuffix("/mcp"), tmp_path, "-u", "3", "-r", "3", *tags, *MODERN_ARGS)
    assert set(stats) - {"Aggregated"} == {cap.LOGS, cap.SAMPLING, cap.BASIC}
    assert report[cap.LOGS]["failures"] == {"0 of 3 log notifications": stats[cap.LOGS]["num_requests"]}
    assert stats[cap.SAMPLING]["num_failures"] == stats[cap.BASIC]["num_failures"] == 0


def test_session_churn_alone_measures_nothing_under_2026(stack_for, tmp_path):
    stack = stack_for("stateless-sse", "round-robin")
    stats, _ = run_headless(stack.url.removesuffix("/mcp"), tmp_path, "-u", "1", "-r", "1", "-T", "churn", *MODERN_ARGS)
    assert set(stats) - {"Aggregated"} == set()


def test_the_protocol_is_picked_in_the_web_ui(stack_for):
    stack = stack_for("stateless-sse", "round-robin")
    port = free_port()
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--host", stack.url.removesuffix("/mcp")]
    cmd += ["--web-host", "127.0.0.1", "--web-port", str(port)]
    locust = subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        ui = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(ui, timeout=2), timeout=30)
        assert "mcp_protocol" in requests.get(ui, timeout=5).text, "no --mcp-protocol field in the start form"
        picked = ["BasicToolUser", "SessionStateUser", "SessionChurnUser"]
        form = {"user_count": 3, "spawn_rate": 3, "user_classes": picked, "mcp_protocol": cap.MODERN}
        assert requests.post(f"{ui}/swarm", data=form, timeout=5).json()["success"]
        stats = wait_for(lambda: stats_with(ui, cap.BASIC, cap.COUNTER), timeout=20)
        requests.post(f"{ui}/stop", timeout=5)
    finally:
        locust.send_signal(signal.SIGTERM)
        locust.wait(timeout=15)
    names, basic = web_ui_summary(stats)
    assert names == {cap.BASIC, cap.OPEN_COUNTER, cap.COUNTER}, "initialize or session churn ran"
    assert basic["instances"] == 3, basic
