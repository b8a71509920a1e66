"""What an idle 2025-11-25 session costs in memory: one instance, sessions opened (initialize, then
notifications/initialized) and left idle, the server's resident memory measured as their number grows; with
the Redis store, Redis's own memory too (its growth, and the size of a session's record as Redis counts it).
The bare SDK serves as the reference.

Resident memory is the operator's figure (what the kernel charges the container); Python keeps what it
frees, so each figure is the growth from before the first session, divided by the sessions open.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import psutil
import redis

from app.shared import keys
from loadtest.bench.instances import OUR_APP, SDK_APP
from loadtest.bench.servers import Served, StackInstance, Subject, open_session, serve

OPENERS = 8  # threads opening sessions at once
WARM_UP = 20  # sessions opened before measuring: the first requests' allocations are not a session's
PRESET = "stateful-json"


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


def _record_bytes(store: redis.Redis) -> float:
    """The mean MEMORY USAGE of the session records (mcp:session:*), each one as Redis accounts it."""
    sizes = [store.memory_usage(key) for key in store.scan_iter(match=keys.SESSION.format("*"), count=1000)]
    return sum(sizes) / len(sizes)


def _redis_used(store: redis.Redis | None) -> int:
    return int(store.info("memory")["used_memory"]) if store is not None else 0


def markdown(rows: list[dict]) -> str:
    lines = [
        f"Idle 2025-11-25 sessions on one instance (`{PRESET}`), memory per session (growth of resident memory"
        " since before the first session, divided by the sessions open):",
        "",
        "| Server | Sessions | Server memory per session | Redis memory per session | Session record in Redis |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        in_redis, record = row.get("redis_bytes_per_session"), row.get("redis_record_bytes")
        redis_cells = f"{in_redis / 1024:.2f} KiB | {record:.0f} bytes" if in_redis is not None else " |"
        server_cell = f"{row['server_bytes_per_session'] / 1024:.1f} KiB"
        lines.append(f"| {row['subject']} | {row['sessions']:,} | {server_cell} | {redis_cells} |")
    return "\n".join(lines) + "\n"
