"""What an idle 2025-11-25 session costs in memory: one instance, sessions opened (initialize, then
notifications/initialized) and left idle, the server's resident memory measured as their number grows; with
the Redis store, Redis's own memory too (its growth, and the size of a session's record as Redis counts it).
The bare SDK serves as the reference.

Resident memory is the operator's figure (what the kernel charges the container); Python keeps what it
frees, so each figure is the growth from before the first session, divided by the sessions open.
"""

from __future__ import annotations

import concurrent.futures
import tracemalloc
from pathlib import Path

import psutil
import redis
import requests

from loadtest.experiments.bench.instances import OUR_APP, SDK_APP
from loadtest.experiments.bench.servers import Served, StackInstance, Subject, open_session, serve
from loadtest.experiments.bench.traced import SNAPSHOT_PATH
from loadtest.experiments.results import table
from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.shared import keys

OPENERS = 8  # threads opening sessions at once
WARM_UP = 20  # sessions opened before measuring: the first requests' allocations are not a session's
PRESET = "stateful-json"
BREAKDOWN_FILES = 8  # the source files the breakdown names, those that took the most
BREAKDOWN_SESSIONS = 1000  # at most: tracemalloc slows every allocation, and a thousand show where they go


def subjects(most: int) -> list[Subject]:
    room = {"MCP_PRESET": PRESET, "MCP_MAX_SESSIONS": str(most + WARM_UP)}
    return [
        Subject("bare SDK", "sdk", SDK_APP, room),
        Subject("ours", "ours", OUR_APP, {**room, "MCP_INSTANCE_ID": "app1"}),
        Subject("ours, Redis store", "ours", "stack", room),
    ]


def measure(counts: tuple[int, ...], work: Path) -> list[dict]:
    """One row per subject and count: bytes per idle session, in the server and (Redis store) in Redis."""
    rows = []
    for subject in subjects(max(counts)):
        with serve(subject, work) as server:
            rows += _grow(subject, server, counts)
    return rows


def _grow(subject: Subject, server: Served, counts: tuple[int, ...]) -> list[dict]:
    process = psutil.Process(server.pids()["server"])
    store = redis.Redis.from_url(server.stack.redis_url) if isinstance(server, StackInstance) else None
    _open(server.url, WARM_UP)
    rss, redis_bytes, opened, rows = process.memory_info().rss, _redis_used(store), 0, []
    for count in counts:
        _open(server.url, count - opened)
        opened = count
        row = {"subject": subject.label, "sessions": count}
        row["server_bytes_per_session"] = (process.memory_info().rss - rss) / count
        if store is not None:
            row["redis_bytes_per_session"] = (_redis_used(store) - redis_bytes) / count
            row["redis_record_bytes"] = _record_bytes(store)
        rows.append(row)
    return rows


def _open(url: str, sessions: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(OPENERS) as pool:
        list(pool.map(lambda _: open_session(url), range(sessions)))  # then left idle


def breakdown(sessions: int, work: Path) -> list[dict]:
    """Where an idle session's memory goes, by source file (tracemalloc): the bare SDK and ours, each traced
    from before its first session to `sessions` open; the files that took the most per session, then the rest."""
    traced = work / "traced"
    traced.mkdir(exist_ok=True)
    room = {"MCP_PRESET": PRESET, "MCP_MAX_SESSIONS": str(sessions + WARM_UP), "BENCH_TRACE_DIR": str(traced)}
    rows = []
    for label, factory in (
        ("bare SDK", "loadtest.experiments.bench.traced:bare_sdk"),
        ("ours", "loadtest.experiments.bench.traced:ours"),
    ):
        with serve(Subject(label, "traced", factory, {**room, "MCP_INSTANCE_ID": "app1"}), work) as server:
            _open(server.url, WARM_UP)
            before = _snapshot(server.url)
            _open(server.url, sessions)
            after = _snapshot(server.url)
        growth = [stat for stat in after.compare_to(before, "filename") if stat.size_diff > 0]
        for stat in growth[:BREAKDOWN_FILES]:
            rows.append({"subject": label, "file": _short(stat.traceback[0].filename), "bytes": stat.size_diff})
        rest = sum(stat.size_diff for stat in growth[BREAKDOWN_FILES:])
        rows.append({"subject": label, "file": "everything else", "bytes": rest})
    return [row | {"sessions": sessions, "bytes_per_session": row["bytes"] / sessions} for row in rows]


def _snapshot(url: str) -> tracemalloc.Snapshot:
    answer = requests.get(url.removesuffix("/mcp") + SNAPSHOT_PATH, timeout=60)
    answer.raise_for_status()
    return tracemalloc.Snapshot.load(answer.text)


def _short(filename: str) -> str:
    """A source file as a reader finds it: from its package on (site-packages/...), or from the project root."""
    for marker in ("site-packages/", f"{PROJECT_ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.rsplit("/lib/", 1)[-1]  # the standard library: python3.11/asyncio/...


def _record_bytes(store: redis.Redis) -> float:
    """The mean MEMORY USAGE of the session records (mcp:session:*), each one as Redis accounts it."""
    sizes = [store.memory_usage(key) for key in store.scan_iter(match=keys.SESSION.format("*"), count=1000)]
    return sum(sizes) / len(sizes)


def _redis_used(store: redis.Redis | None) -> int:
    return int(store.info("memory")["used_memory"]) if store is not None else 0


def breakdown_markdown(rows: list[dict]) -> str:
    sessions = rows[0]["sessions"]
    files = [[row["subject"], f"`{row['file']}`", f"{row['bytes_per_session'] / 1024:.2f} KiB"] for row in rows]
    for subject in dict.fromkeys(row["subject"] for row in rows):
        total = sum(row["bytes_per_session"] for row in rows if row["subject"] == subject)
        files.append([subject, "all", f"{total / 1024:.2f} KiB"])
    lines = [
        f"Where that memory goes: Python's allocations (tracemalloc) that {sessions:,} idle sessions added, by the "
        "source file that made them, per session; the bare SDK and ours each traced in a run of its own:",
        "",
        table(("Server", "Source file", "Per session"), files),
    ]
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict]) -> str:
    lines = [
        f"Idle 2025-11-25 sessions on one instance (`{PRESET}`), memory per session (growth of resident memory"
        " since before the first session, divided by the sessions open):",
        "",
        table(
            ("Server", "Sessions", "Server memory per session", "Redis memory per session", "Session record in Redis"),
            map(_memory, rows),
        ),
    ]
    return "\n".join(lines) + "\n"


def _memory(row: dict) -> list[str]:
    in_redis, record = row.get("redis_bytes_per_session"), row.get("redis_record_bytes")
    # Redis's two cells, or (no Redis) the two empty cells the committed tables show as "|  | |"
    redis_cells = f"{in_redis / 1024:.2f} KiB | {record:.0f} bytes" if in_redis is not None else " |"
    return [row["subject"], f"{row['sessions']:,}", f"{row['server_bytes_per_session'] / 1024:.1f} KiB", redis_cells]
