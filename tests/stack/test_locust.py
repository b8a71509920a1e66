"""The Locust users against a real local stack: headless runs, tag selection, and the web UI."""

from __future__ import annotations

import os
import signal
import subprocess

import requests

from loadtest.client import capabilities as cap
from loadtest.harness.stack import Stack, answers, free_port
from loadtest.harness.topology import PROJECT_ROOT
from tests.utils.clients import docs_ports, wait_for
from tests.utils.docs import blocks, shell_env
from tests.utils.locust import run_headless, stats_with, web_ui_summary


def test_every_scenario_passes_where_everything_is_supported(stack_for, tmp_path):
    stack = stack_for("stateful-sse", "ip-hash")
    stats, report = run_headless(stack.url.removesuffix("/mcp"), tmp_path, "-u", "8", "-r", "8")
    for name in (*cap.CAPABILITIES, cap.OPEN_SESSION):
        assert stats[name]["num_requests"] > 0, name
        assert stats[name]["num_failures"] == 0, (name, report[name]["failures"])
    answered = {instance for entry in report.values() for instance in entry["instances"]}
    assert len(answered) == 1, f"ip_hash sends one client address to one instance: {answered}"


def test_failures_carry_the_reason_and_round_robin_spreads(stack_for, tmp_path):
    stack = stack_for("stateless-json", "round-robin")
    stats, report = run_headless(stack.url.removesuffix("/mcp"), tmp_path, "-u", "8", "-r", "8")
    assert stats[cap.BASIC]["num_failures"] == 0
    assert set(report[cap.BASIC]["instances"]) == {"app1", "app2", "app3"}
    assert report[cap.LOGS]["failures"] == {"0 of 3 log notifications": stats[cap.LOGS]["num_failures"]}
    assert stats[cap.LOGS]["num_failures"] == stats[cap.LOGS]["num_requests"]


def test_scenarios_are_selected_by_tag(stack_for, tmp_path):
    stack = stack_for("stateful-sse", "ip-hash")
    stats, _ = run_headless(stack.url.removesuffix("/mcp"), tmp_path, "-u", "2", "-r", "2", "-T", "counter")
    assert set(stats) - {"Aggregated"} == {cap.OPEN_SESSION, cap.COUNTER}


def test_operations_that_cannot_connect_are_counted_as_failures(tmp_path):
    """Locust's HttpSession returns connection errors as responses; they must still count."""
    stats, report = run_headless(f"http://127.0.0.1:{free_port()}", tmp_path, "-u", "2", "-r", "2", seconds=2)
    assert stats[cap.OPEN_SESSION]["num_requests"] > 0
    assert stats[cap.OPEN_SESSION]["num_failures"] == stats[cap.OPEN_SESSION]["num_requests"]
    assert set(report[cap.OPEN_SESSION]["failures"]) == {"connection failed"}
    scenario = [name for name in cap.CAPABILITIES if name in stats]
    assert scenario and all(stats[name]["num_failures"] == stats[name]["num_requests"] for name in scenario)


def test_the_readme_web_ui_command(tmp_path):
    """`locust -f loadtest/locustfile.py --host http://localhost:8080`, driven through its HTTP API."""
    with docs_ports(), Stack(run_dir=tmp_path / "stack", preset="stateless-sse", port=8080):
        locust = subprocess.Popen(
            ["bash", "-c", blocks()["locust-web-ui"][0]],
            cwd=PROJECT_ROOT,
            env=shell_env(tmp_path),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ui = "http://127.0.0.1:8089"
            wait_for(lambda: answers(ui, timeout=2), timeout=30)
            picked = ["BasicToolUser", "LoggingUser"]
            started = requests.post(
                f"{ui}/swarm", data={"user_count": 2, "spawn_rate": 2, "user_classes": picked}, timeout=5
            ).json()
            assert started["success"] and started["user_classes"] == picked
            stats = wait_for(lambda: stats_with(ui, cap.BASIC, cap.LOGS), timeout=20)
            requests.post(f"{ui}/stop", timeout=5)
        finally:
            os.killpg(locust.pid, signal.SIGTERM)
            locust.wait(timeout=15)
    names, basic = web_ui_summary(stats)
    assert names == {cap.OPEN_SESSION, cap.BASIC, cap.LOGS}, "the class picker ran other scenarios too"
    assert basic["instances"] == 3, basic
