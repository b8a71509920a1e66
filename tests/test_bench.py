"""The benchmark and soak commands, run small: they finish, measure what they say, and the soak
finds nothing left behind (the full runs' numbers are in docs/results.md, never asserted as timings)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from loadtest import bench, durability
from loadtest.stack import Stack, free_port
from loadtest.topology import PROJECT_ROOT


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_benchmark_measures_forwarding_and_every_policy(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    done = run("loadtest.bench", "--calls", "60", "--clients", "2", "--out", str(tmp_path), "--page", str(results_page))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bench.md").read_text() in results_page.read_text(), "--page should copy the table in"
    result = json.loads((tmp_path / "bench.json").read_text())
    local, forwarded, memory = result["forwarding"]
    assert memory["events_kept"] == 64 and memory["record_bytes"] < 1024 and memory["events_bytes"] < 32 * 1024
    assert local["relay_cpu_ms_per_call"] < forwarded["relay_cpu_ms_per_call"], "only the forwarded path uses app2"
    assert [(r["policy"], r["store"]) for r in result["policies"]] == [
        ("session", "memory"),
        ("session", "redis"),
        ("ip-hash", "redis"),
        ("round-robin", "redis"),
    ]
    assert all(r["calls"] == 60 for r in result["policies"])
    assert "| forwarded (to another instance) |" in (tmp_path / "bench.md").read_text()


def test_the_soak_leaves_no_session_behind(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    done = run(
        "loadtest.soak", "--minutes", "0.25", "--users", "4", "--out", str(tmp_path), "--page", str(results_page)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "soak.md").read_text() in results_page.read_text(), "--page should copy the summary in"
    result = json.loads((tmp_path / "soak.json").read_text())
    churned, failed = result["operations"]["session lifecycle"]
    assert churned > 20 and failed == 0
    assert max(s["redis_session_keys"] for s in result["samples"]) > 0, "sessions were open during the load"
    last = result["samples"][-1]
    assert last["redis_session_keys"] == 0 and sum(last["held_sessions"].values()) == 0


def test_calls_that_fail_fail_the_measurement_with_their_reason(tmp_path):
    """Not a ZeroDivisionError: every call here is refused (the instances allow another Host)."""
    refusing = {"MCP_ALLOWED_HOSTS": "elsewhere.example"}
    stack = Stack(run_dir=tmp_path, preset="stateful-json", port=free_port(), app_env=refusing)
    with stack, pytest.raises(RuntimeError, match="whoami failed: HTTP 421"):
        bench.concurrent_calls(stack, calls=20, clients=2)


def test_the_durability_benchmark_measures_every_way_of_keeping_writes(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    args = ("--calls", "10", "--clients", "2", "--rounds", "1", "--out", str(tmp_path), "--page", str(results_page))
    done = run("loadtest.durability", *args)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "durability.md").read_text() in results_page.read_text(), "--page should copy the table in"
    rows = json.loads((tmp_path / "durability.json").read_text())["rows"]
    assert [row["variant"] for row in rows] == [label for label, _ in durability.VARIANTS]
    assert all(row["calls"] == 10 and row["server_cpu_ms_per_call"] > 0 for row in rows)
    assert rows[0]["p50_ms_ratio"] == 1.0
