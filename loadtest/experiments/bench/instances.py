"""One instance called directly (no nginx): what each layer costs per call, against the references.

For each preset and protocol: the floor, the bare SDK, ours with the memory store and (stateful, 2025-11-25)
ours with the Redis store, each loaded by wrk in turn, round after round, so a slow moment of the machine
falls on all of them alike; each figure is the median of the rounds. Then the same for the event loop and
HTTP parser (asyncio and h11 against uvloop and httptools), and for a peer: FastMCP 4 against the bare SDK and
ours, `stateless-json`, each behind nginx (loadtest/experiments/bench/peer/).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from loadtest.client.modern import MODERN_VERSION
from loadtest.experiments.bench import wrk
from loadtest.experiments.bench.peer import venv as peer
from loadtest.experiments.bench.servers import Served, Subject, serve
from loadtest.harness.topology import STATEFUL

LEGACY = "2025-11-25"
SATURATING = 16  # connections: enough to keep one process busy
PEER_GROUP = "behind nginx: FastMCP 4 (stateless-json, 2025-11-25)"
MODERATE = (4, 20)  # connections, and milliseconds each waits between calls: well below saturation
FLOOR_APP, SDK_APP, OUR_APP = (
    "loadtest.experiments.bench.references:floor",
    "loadtest.experiments.bench.references:bare_sdk",
    "app.asgi:create_app",
)


@dataclass(frozen=True)
class Settings:
    presets: tuple[str, ...]
    seconds: int  # of each wrk run (wrk takes whole seconds)
    rounds: int
    loops: bool = True  # also asyncio+h11 against uvloop+httptools
    peer: bool = True  # also FastMCP 4 against ours, behind nginx


def subjects(preset: str, version: str) -> list[Subject]:
    env = {"MCP_PRESET": preset}
    ours = {**env, "MCP_INSTANCE_ID": "app1"}
    found = [
        Subject("floor", "floor", FLOOR_APP),
        Subject("bare SDK", "sdk", SDK_APP, env),
        Subject("ours", "ours", OUR_APP, ours),
    ]
    if preset in STATEFUL and version == LEGACY:
        found.append(Subject("ours, Redis store", "ours", "stack", env))
    if preset == "stateful-json" and version == LEGACY:  # what MCP_ACCESS_LOG=on costs
        found.append(Subject("ours, access log on", "ours", OUR_APP, {**ours, "MCP_ACCESS_LOG": "on"}))
    return found


def loop_subjects() -> list[Subject]:
    """The floor, the bare SDK and ours on stateful-json under both event loops and HTTP parsers."""
    env = {"MCP_PRESET": "stateful-json"}
    found = []
    for loop, http in (("asyncio", "h11"), ("uvloop", "httptools")):
        found += [
            Subject(f"floor, {loop}+{http}", "floor", FLOOR_APP, {}, loop, http),
            Subject(f"bare SDK, {loop}+{http}", "sdk", SDK_APP, env, loop, http),
            Subject(f"ours, {loop}+{http}", "ours", OUR_APP, {**env, "MCP_INSTANCE_ID": "app1"}, loop, http),
        ]
    return found


def peer_subjects(peer_python: str) -> list[Subject]:
    """`stateless-json` behind nginx: the floor, the bare SDK, ours and FastMCP 4 serving the same `whoami`."""
    env = {"MCP_PRESET": "stateless-json"}
    return [
        Subject("floor, behind nginx", "floor", FLOOR_APP, behind_nginx=True),
        Subject("bare SDK, behind nginx", "sdk", SDK_APP, env, behind_nginx=True),
        Subject("ours, behind nginx", "ours", OUR_APP, {**env, "MCP_INSTANCE_ID": "app1"}, behind_nginx=True),
        Subject(
            "FastMCP 4, behind nginx",
            "peer",
            peer.FACTORY,
            {**env, "FASTMCP_LOG_LEVEL": "WARNING", "FASTMCP_SHOW_SERVER_BANNER": "false"},
            python=peer_python,
            behind_nginx=True,
        ),
    ]


def profiled() -> list[Subject]:
    """What the profiles compare: the bare SDK and ours (memory store) on stateful-json."""
    env = {"MCP_PRESET": "stateful-json"}
    return [
        Subject("bare SDK", "sdk", SDK_APP, env),
        Subject("ours", "ours", OUR_APP, {**env, "MCP_INSTANCE_ID": "app1"}),
    ]


def measure(settings: Settings, work: Path) -> list[dict]:
    """Every row: one preset and protocol per group, then the event-loop group."""
    rows = []
    for preset in settings.presets:
        for version in (LEGACY, MODERN_VERSION):
            rows += _group(subjects(preset, version), version, settings, work, f"{preset}, {version}")
    if settings.loops:
        rows += _group(loop_subjects(), LEGACY, settings, work, "event loop and HTTP parser (stateful-json)")
    if settings.peer:
        rows += _group(peer_subjects(peer.python()), LEGACY, settings, work, PEER_GROUP)
    return rows


def _group(group: list[Subject], version: str, settings: Settings, work: Path, name: str) -> list[dict]:
    with ExitStack() as stack:
        served = [stack.enter_context(serve(subject, work)) for subject in group]
        for server, subject in zip(served, group, strict=True):
            server.open_sessions(subject.kind != "floor" and subject.preset in STATEFUL and version == LEGACY)
        samples: dict[str, list[dict]] = {subject.label: [] for subject in group}
        for _ in range(settings.rounds):
            for server, subject in zip(served, group, strict=True):
                samples[subject.label].append(_sample(server, version, settings.seconds))
    rows = [
        {"group": name, "subject": subject.label, "kind": subject.kind, "loop": f"{subject.loop}+{subject.http}"}
        | _median(samples[subject.label])
        for subject in group
    ]
    return _with_ratios(rows)


def _sample(server: Served, version: str, seconds: int) -> dict:
    call = wrk.Call(sessions=server.sessions, version=version)
    wrk.run(server.url, call, SATURATING, 1)  # warm-up: caches, the first allocations
    before = server.cpu_seconds()
    busy = wrk.run(server.url, call, SATURATING, seconds)
    after = server.cpu_seconds()
    moderate = wrk.run(server.url, call, MODERATE[0], seconds, wait_ms=MODERATE[1])
    per_call = {role: 1000 * (after[role] - before[role]) / busy.calls for role in after}
    return {
        "calls_per_s": busy.calls_per_s,
        "cpu_ms_per_call": per_call["server"],
        "redis_cpu_ms_per_call": per_call.get("redis"),
        "nginx_cpu_ms_per_call": per_call.get("nginx"),
        "wrk_cpu_share": busy.wrk_cpu_seconds / busy.seconds,  # of one core
        "moderate_calls_per_s": moderate.calls_per_s,
        "p50_ms": moderate.p50_ms,
        "p99_ms": moderate.p99_ms,
    }


def _median(runs: list[dict]) -> dict:
    merged = {}
    for key in runs[0]:
        values = [run[key] for run in runs if run[key] is not None]
        merged[key] = statistics.median(values) if values else None
    merged["rounds"] = len(runs)
    merged["cpu_ms_per_call_spread"] = _spread(run["cpu_ms_per_call"] for run in runs)
    return merged


def _spread(values: Iterator[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[0], ordered[-1]


def _with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's CPU per call and calls/s against the floor and the bare SDK of its group and event loop."""
    references = {(row["kind"], row["loop"]): row for row in rows if row["kind"] != "ours"}
    for row in rows:
        for kind in ("floor", "sdk"):
            reference = references[(kind, row["loop"])]
            row[f"cpu_vs_{kind}"] = row["cpu_ms_per_call"] / reference["cpu_ms_per_call"]
            row[f"calls_vs_{kind}"] = row["calls_per_s"] / reference["calls_per_s"]
    return rows
