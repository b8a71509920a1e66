"""Locust runs for the tests: headless with their JSON results, and what a web UI run measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from loadtest.client import capabilities as cap
from loadtest.harness.topology import PROJECT_ROOT

LOCUSTFILE = str(PROJECT_ROOT / "loadtest" / "locustfile.py")


def run_headless(host: str, out: Path, *extra: str, seconds: int = 4) -> tuple[dict, dict]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        LOCUSTFILE,
        "--host",
        host,
        "--headless",
        "--only-summary",
        "--run-time",
        f"{seconds}s",
        "--json-file",
        str(out / "locust"),
        "--mcp-report",
        str(out / "mcp.json"),
        *extra,
    ]
    subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, timeout=60, check=False)
    stats = {entry["name"]: entry for entry in json.loads((out / "locust.json").read_text())}
    return stats, json.loads((out / "mcp.json").read_text())


def web_ui_summary(stats: dict) -> tuple[set[str], dict]:
    """The operations a web UI run measured (none failed) and the instances tab's row for the plain tool."""
    assert all(s["num_failures"] == 0 for s in stats["stats"])
    (tab,) = stats["extended_stats"]
    assert tab["key"] == "mcp-instances"
    return {s["name"] for s in stats["stats"]} - {"Aggregated"}, next(r for r in tab["data"] if r["name"] == cap.BASIC)


def stats_with(ui: str, *names: str) -> dict | None:
    stats = requests.get(f"{ui}/stats/requests", timeout=5).json()
    counts = {s["name"]: s["num_requests"] for s in stats["stats"]}
    return stats if all(counts.get(name, 0) >= 3 for name in names) else None
