"""The quick matrix of docs/load-tests.md, run as written (into the test's own TMPDIR), and the pattern it
must show.

It runs on the local stack (real nginx, uvicorn and redis-server): the full run's compose stack would add
a stack's start to each of its fifteen configurations, and compose is tested on its own.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from loadtest.client import capabilities as cap
from loadtest.client.capabilities import LEGACY, MODERN
from loadtest.experiments.matrix.run import configurations as quick_configurations
from loadtest.harness.topology import PROJECT_ROOT
from tests.utils.docs import blocks, shell_env

pytestmark = [pytest.mark.timeout(900), pytest.mark.matrix]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("matrix")
    env = {**shell_env(tmp), "TMPDIR": str(tmp)}
    out = tmp / "matrix-quick"  # where the documented command writes, with this TMPDIR
    run = subprocess.Popen(
        ["bash", "-c", f"exec {blocks()['matrix-quick'][0]}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stdout, _ = run.communicate(timeout=840)
    finally:
        if run.poll() is None:  # SIGTERM first: the matrix then takes its stacks down itself
            run.terminate()
            run.wait(timeout=60)
    assert run.returncode == 0, stdout
    saved = json.loads((out / "rows.json").read_text())
    rows = {(r["preset"], r["policy"], r["store"], r["loss"], r["protocol"], r["capability"]): r for r in saved["rows"]}
    return {"stdout": stdout, "rows": rows, "run": saved["run"], "out": out}


def configurations() -> list[str]:
    """Every configuration the quick matrix runs, by name, in order."""
    return [config.name for config in quick_configurations(quick=True)]


def test_it_shows_progress_and_writes_every_file(matrix):
    names = configurations()
    assert f"[{len(names)}/{len(names)}] {names[-1]}" in matrix["stdout"]
    assert "failures so far:" in matrix["stdout"]
    assert (matrix["out"] / "heatmap.png").read_bytes().startswith(b"\x89PNG")
    assert (matrix["out"] / "results.csv").read_text().count("\n") == 1 + len(names) * len(cap.CAPABILITIES)
    for name in names:
        run = matrix["out"] / "runs" / name.replace("/", "_")
        assert {"locust.html", "locust_stats.csv", "locust.json", "cpu.json"} <= {p.name for p in run.iterdir()}


def test_every_cell_does_what_the_design_says(matrix):
    unexpected = [key for key, row in matrix["rows"].items() if row["verdict"] != "ok"]
    assert unexpected == []
    assert all(row["saturated"] == "" for row in matrix["rows"].values()), "a run saturated the machine"


def test_stateful_round_robin_loses_sessions(matrix):
    counter = matrix["rows"]["stateful-sse", "round-robin", "memory", False, LEGACY, cap.COUNTER]
    assert counter["failures"] > 0
    assert counter["top_failure"] == "HTTP 404: Session not found"
    assert set(counter["instances"]) == {"app1", "app2", "app3"}


def test_stateless_json_basic_tools_never_fail_and_spread(matrix):
    basic = matrix["rows"]["stateless-json", "round-robin", "memory", False, LEGACY, cap.BASIC]
    assert basic["requests"] > 0 and basic["failures"] == 0
    assert set(basic["instances"]) == {"app1", "app2", "app3"}


def test_sticky_stateful_sse_supports_every_capability(matrix):
    for capability in cap.CAPABILITIES:
        row = matrix["rows"]["stateful-sse", "ip-hash", "memory", False, LEGACY, capability]
        assert row["requests"] > 0 and row["failures"] == 0, capability
        assert len(row["instances"]) == 1


def test_the_seed_disagreements_are_listed(matrix):
    text = (matrix["out"] / "matrix.md").read_text()
    assert "- progress on `stateless-sse`: the seed says it does not work; measured 0% failures" in text
    assert "- sampling on `stateful-json`: the seed says it works; measured 100% failures" in text


def test_the_session_policy_keeps_stateful_sse_whole_and_spreads_sessions(matrix):
    instances: set[str] = set()
    for capability in cap.CAPABILITIES:
        row = matrix["rows"]["stateful-sse", "session", "memory", False, LEGACY, capability]
        assert row["requests"] > 0 and row["failures"] == 0, capability
        instances |= set(row["instances"])
    assert len(instances) > 1, "sessions should spread over instances, unlike ip_hash"


def test_redis_keeps_every_stateful_capability_under_round_robin(matrix):
    for capability in cap.CAPABILITIES:
        row = matrix["rows"]["stateful-sse", "round-robin", "redis", False, LEGACY, capability]
        assert row["requests"] > 0 and row["failures"] == 0, capability
        assert set(row["instances"]) == {"app1", "app2", "app3"}, capability


def test_with_redis_an_instance_loss_fails_only_requests_in_flight(matrix):
    for policy in ("round-robin", "session"):
        rows = [matrix["rows"]["stateful-sse", policy, "redis", True, LEGACY, c] for c in cap.CAPABILITIES]
        assert all(row["verdict"] == "ok" for row in rows), [row["reasons"] for row in rows]
        assert not any("Session not found" in reason for row in rows for reason in row["reasons"])


def test_2026_clients_need_no_affinity_on_any_preset(matrix):
    """Under round-robin every capability works with no session, but logs and progress, which need SSE."""
    for preset in ("stateful-sse", "stateless-json"):
        for capability in cap.CAPABILITIES:
            row = matrix["rows"][preset, "round-robin", "memory", False, MODERN, capability]
            if capability in cap.SESSIONS_ONLY:
                assert row["requests"] == 0 and row["verdict"] == "ok"
            elif capability in (cap.LOGS, cap.PROGRESS) and preset.endswith("-json"):
                assert row["requests"] > 0 and row["failures"] == row["requests"], (preset, capability)
            else:
                assert row["requests"] > 0 and row["failures"] == 0, (preset, capability, row["reasons"])
                assert set(row["instances"]) == {"app1", "app2", "app3"}, (preset, capability)
