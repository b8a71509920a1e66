"""The benchmark and soak commands, run small: they finish, measure what they say, and the soak
finds nothing left behind (the full runs' numbers are in docs/results.md, never asserted as timings)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from loadtest.experiments import durability
from loadtest.experiments.bench import instances, redis_store, wrk
from loadtest.experiments.bench.servers import Subject, serve
from loadtest.experiments.bench.wrk import WrkError
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import PROJECT_ROOT


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.beside  # the two longest: in the pytest beside the stack tier
@pytest.mark.timeout(300)
def test_the_benchmark_measures_every_server_and_the_redis_store(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    quick = ("--presets", "stateful-json", "--seconds", "1", "--rounds", "1", "--calls", "60", "--clients", "2")
    quick += ("--skip-loops", "--profile-seconds", "1", "--idle-sessions", "40,80", "--layer-seconds", "1")
    done = run("loadtest.experiments.bench", *quick, "--out", str(tmp_path), "--page", str(results_page))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bench.md").read_text() in results_page.read_text(), "--page should copy the tables in"
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {(row["group"], row["subject"]): row for row in result["instances"]}
    legacy, modern = "stateful-json, 2025-11-25", "stateful-json, 2026-07-28"
    ours = {"ours", "ours, Redis store", "ours, access log on"}
    assert {subject for group, subject in rows if group == legacy} == {"floor", "bare SDK", *ours}
    assert {subject for group, subject in rows if group == modern} == {"floor", "bare SDK", "ours"}
    assert all(row["calls_per_s"] > 0 and row["cpu_ms_per_call"] > 0 for row in rows.values())
    assert rows[(legacy, "bare SDK")]["cpu_vs_sdk"] == 1.0 and rows[(legacy, "floor")]["cpu_vs_floor"] == 1.0
    assert rows[(legacy, "ours, Redis store")]["redis_cpu_ms_per_call"] is not None
    assert not any(group.startswith("event loop") for group, _ in rows), "--skip-loops"
    peer_group = {subject: row for (group, subject), row in rows.items() if group == instances.PEER_GROUP}
    assert set(peer_group) == {f"{name}, behind nginx" for name in ("floor", "bare SDK", "ours", "FastMCP 4")}
    # each called through nginx; /proc counts CPU in 10 ms ticks, which one loaded second of one subject may not fill
    assert all(row["nginx_cpu_ms_per_call"] is not None for row in peer_group.values())
    assert sum(row["nginx_cpu_ms_per_call"] for row in peer_group.values()) > 0
    local, forwarded, local_busy, forwarded_busy, memory = result["forwarding"]
    assert forwarded_busy["relay_cpu_ms_per_call"] > local_busy["relay_cpu_ms_per_call"], "only wrk's forwarded load"
    assert memory["events_kept"] == 64 and memory["record_bytes"] < 1024 and memory["events_bytes"] < 32 * 1024
    assert local["relay_cpu_ms_per_call"] < forwarded["relay_cpu_ms_per_call"], "only the forwarded path uses app2"
    direct, hopped = result["nginx_hop"]  # the run itself fails if an instance relayed one of these calls
    assert direct["calls"] == hopped["calls"] == 60 and hopped["p50_ratio"] > 0
    assert direct["relay_cpu_ms_per_call"] < hopped["relay_cpu_ms_per_call"], "only the hop reaches the old owner"
    idle = [(row["subject"], row["sessions"]) for row in result["idle_sessions"]]
    assert idle == [(subject, n) for subject in ("bare SDK", "ours", "ours, Redis store") for n in (40, 80)]
    assert 0 < result["idle_sessions"][-1]["redis_record_bytes"] < 1024, "each session has a small record in Redis"
    traced = result["idle_breakdown"]
    assert {row["subject"] for row in traced} == {"bare SDK", "ours"} and {row["sessions"] for row in traced} == {80}
    assert any(row["file"].startswith("mcp/") and row["bytes_per_session"] > 0 for row in traced), "the SDK's own"
    assert [(r["policy"], r["store"]) for r in result["policies"]] == [
        ("session", "memory"),
        ("session", "redis"),
        ("ip-hash", "redis"),
        ("round-robin", "redis"),
    ]
    assert all(r["calls"] == 60 for r in result["policies"])
    assert "| forwarded (to another instance) |" in (tmp_path / "bench.md").read_text()
    layer = {row["subject"]: row for row in result["layer_cost"]["rows"]}
    assert set(layer) == {"bare SDK", "ours", "ours, Redis store", "ours, metrics served"}
    assert layer["bare SDK"]["vs_sdk"] == 1.0
    assert all(row["rounds"] > 1 and row["cpu_ms_per_call"] > 0 for row in layer.values())
    assert "with the Redis store" in (tmp_path / "summary.md").read_text()
    profiled = ("bare-sdk", "ours", "ours-redis-store", "relay", "owner-of-relayed-calls")
    pyinstrument = [f"profiles/{name}{kind}.txt" for name in profiled for kind in ("", "-flat")]
    assert result["profiles"] == [*pyinstrument, "profiles/relay-native.txt"]
    assert all("Samples:" in (tmp_path / path).read_text() for path in pyinstrument)
    native = (tmp_path / "profiles" / "relay-native.txt").read_text()
    assert "writing to sockets" in native and "HopClient.send: the hop" in native, native
    assert "app.asgi:create_app" in (tmp_path / "profiles" / "ours.txt").read_text()
    assert "Forwarder.forward" in (tmp_path / "profiles" / "relay.txt").read_text()
    assert "SessionRouter" in (tmp_path / "profiles" / "ours-redis-store.txt").read_text()


@pytest.mark.timeout(120)
def test_the_layer_is_measured_again_under_the_committed_figures_with_its_own_date(tmp_path):
    committed = json.loads((PROJECT_ROOT / "results" / "bench" / "bench.json").read_text())
    readme = tmp_path / "README.md"
    shutil.copy(PROJECT_ROOT / "README.md", readme)
    args = ("--render", "results/bench/bench.json", "--remeasure-layer", "--layer-seconds", "1")
    done = run("loadtest.experiments.bench", *args, "--out", str(tmp_path), "--page", str(readme))
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["instances"] == committed["instances"] and result["run"] == committed["run"]
    today = result["layer_cost"]["date"][:10]
    summary = (tmp_path / "summary.md").read_text()
    assert summary in readme.read_text()
    assert (f"(measured on {today} in one process" in summary) == (today != committed["run"]["date"][:10])
    assert f"In one process ({result['layer_cost']['date']})" in (tmp_path / "bench.md").read_text()


def test_calls_that_fail_fail_a_wrk_run_with_their_count(tmp_path):
    """On asyncio and h11, as the event-loop comparison runs it (the quick run above skips that)."""
    ours = Subject("ours", "ours", "app.asgi:create_app", {"MCP_PRESET": "stateful-json"}, "asyncio", "h11")
    with serve(ours, tmp_path) as server, pytest.raises(WrkError, match="answered with an error status"):
        wrk.run(server.url, wrk.Call(sessions=("app1.no-such-session",)), connections=2, seconds=1)


def test_the_soak_leaves_no_session_behind(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    done = run(
        "loadtest.experiments.soak",
        "--minutes",
        "0.25",
        "--users",
        "4",
        "--out",
        str(tmp_path),
        "--page",
        str(results_page),
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
    with stack, pytest.raises(RuntimeError, match="initialize failed: HTTP 421"):
        redis_store.concurrent_calls(stack, calls=20, clients=2)


@pytest.mark.beside  # the two longest: in the pytest beside the stack tier
def test_the_durability_benchmark_measures_every_way_of_keeping_writes(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    args = ("--calls", "10", "--clients", "2", "--rounds", "1", "--out", str(tmp_path), "--page", str(results_page))
    done = run("loadtest.experiments.durability", *args)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "durability.md").read_text() in results_page.read_text(), "--page should copy the table in"
    rows = json.loads((tmp_path / "durability.json").read_text())["rows"]
    assert [row["variant"] for row in rows] == [label for label, _ in durability.VARIANTS]
    assert all(row["calls"] == 10 and row["server_cpu_ms_per_call"] > 0 for row in rows)
    assert rows[0]["p50_ms_ratio"] == 1.0


def test_the_pod_routing_benchmark_measures_both_nginx_policies_with_their_cpu(tmp_path):
    page = tmp_path / "kubernetes.md"
    shutil.copy(PROJECT_ROOT / "docs" / "kubernetes.md", page)
    args = ("--calls", "20", "--seconds", "1", "--rounds", "2", "--out", str(tmp_path), "--page", str(page))
    done = run("loadtest.experiments.bench.pod_routing", *args)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pod-routing.md").read_text() in page.read_text(), "--page should copy the tables in"
    result = json.loads((tmp_path / "pod-routing.json").read_text())
    for rows in (result["sequential"], result["saturating"]):
        assert [row["path"].split()[0] for row in rows] == ["session", "session-dns"]
    assert all(row["calls"] == 20 for row in result["sequential"])
    assert all(row["nginx_cpu_ms_per_call"] > 0 and row["owner_cpu_ms_per_call"] > 0 for row in result["saturating"])


def test_the_scale_curve_measures_each_number_of_clients_with_every_process_s_cpu(tmp_path):
    results_page = tmp_path / "results.md"
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", results_page)
    only = ("--only", "stateful-sse/session/memory", "--clients", "3,6", "--seconds", "3")  # the SDK's, then ours
    done = run("loadtest.experiments.scale", *only, "--out", str(tmp_path), "--page", str(results_page))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "scale.md").read_text()
    assert page in results_page.read_text(), "--page should copy the table in"
    assert (tmp_path / "scale.png").read_bytes().startswith(b"\x89PNG")
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    names = ("stateful-sse/session/memory/bare-sdk", "stateful-sse/session/memory")
    assert [(row["config"], row["clients"]) for row in rows] == [(name, n) for name in names for n in (3, 6)]
    assert [row["compared"] for row in rows] == [True] * 4
    lines = [line for line in page.splitlines() if line.startswith("| stateful-sse session memory |")]
    for line, row, reference in zip(lines, rows[2:], rows[:2], strict=True):  # ours held against the SDK's
        sdk_cpu = reference["server_cpu_ms_per_operation"]  # 10 ms ticks: 3 s of 3 clients may fill none
        vs = f"| {row['server_cpu_ms_per_operation'] / sdk_cpu:.2f}x |" if sdk_cpu else "|  |"
        assert vs in line, line
    for row in rows:  # each client opened its session and then called once a second
        assert row["failures"] == 0 and row["operations"] - row["calls"] == row["clients"]
        assert row["clients"] * 2 <= row["calls"] <= row["clients"] * (row["seconds"] + 1)
        # /proc counts CPU in 10 ms ticks: a few seconds of a few calls may not fill one of the server's
        assert row["server_cpu_ms_per_operation"] >= 0 and row["locust_cpu_percent"] > 0 and row["p99_ms"] > 0
