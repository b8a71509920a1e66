"""What keeping acknowledged writes costs, measured on the local stack (real uvicorn, nginx, redis-server).

    python -m loadtest durability [--calls 2000] [--clients 4] [--rounds 3] [--out results/durability]
                                  [--page docs/results.md]

Concurrent sessions call `increment` (one Redis write each) through nginx, `session` policy, Redis store,
once per way of keeping Redis's writes, each on a stack of its own in the same run: no persistence, an
append-only file synced every second or on every write (the default here), and redis-ha (a replica and
three Sentinels) with and without waiting for the replica (WAIT). Latency p50/p99, calls per second and
the CPU of every server process, with ratios against the first row. The fsync figures depend on the disk
the run directory is on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from loadtest.experiments.bench.redis_store import concurrent_calls
from loadtest.experiments.results import publish, run_header, table
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import PROJECT_ROOT

NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
FSYNC_EVERY_SECOND = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
VARIANTS = (  # label, Stack options
    ("no persistence", {"redis_persistence": NO_PERSISTENCE}),
    ("append-only file, fsync every second", {"redis_persistence": FSYNC_EVERY_SECOND}),
    ("append-only file, fsync on every write (default)", {}),
    ("redis-ha, no WAIT (MCP_REDIS_WAIT_REPLICAS=0)", {"redis": "ha", "app_env": {"MCP_REDIS_WAIT_REPLICAS": "0"}}),
    ("redis-ha, WAIT for the replica (MCP_REDIS_WAIT_REPLICAS=1)", {"redis": "ha"}),
)
COLUMNS: tuple[str, ...] = ("Redis keeps writes by", "p50", "p50 range", "p99", "calls/s", "server CPU per call")
COLUMNS += ("p50 ratio", "calls/s ratio")


def measure(calls: int, clients: int, rounds: int, work: Path) -> list[dict]:
    """Every variant once per round, in the same order each round (so a drift of the machine reaches them
    all); each row holds the median of the rounds, and the p50's range."""
    runs: dict[str, list[dict]] = {label: [] for label, _ in VARIANTS}
    for round_ in range(rounds):
        for n, (label, options) in enumerate(VARIANTS):
            run_dir = work / f"{round_}-{n}"
            with Stack(run_dir=run_dir, policy="session", store="redis", port=free_port(), **options) as stack:
                runs[label].append(concurrent_calls(stack, calls, clients, tool="increment"))
    rows = []
    for label, measured in runs.items():
        row = {"variant": label, "calls": measured[0]["calls"], "rounds": measured}
        for what in ("p50_ms", "p99_ms", "calls_per_s", "server_cpu_ms_per_call"):
            row[what] = statistics.median(m[what] for m in measured)
        row["p50_range"] = (min(m["p50_ms"] for m in measured), max(m["p50_ms"] for m in measured))
        rows.append(row)
    for row in rows:
        for what in ("p50_ms", "p99_ms", "calls_per_s", "server_cpu_ms_per_call"):
            row[f"{what}_ratio"] = row[what] / rows[0][what]
    return rows


def markdown(run: dict, rows: list[dict]) -> str:
    lines = [
        f"Measured {run['date']} on {run['machine']}, the run directory on {run['disk']}: local stack,",
        f"`stateful-sse`, `session` policy, Redis store, {run['clients']} sessions calling `increment` (one",
        f"Redis write each) through nginx, {rows[0]['calls']} calls per row and round, {run['rounds']} rounds (each",
        "variant once per round, a fresh stack each time): the medians, the p50's range over the rounds, and",
        "ratios against the first row.",
        "",
        table(COLUMNS, map(_cells, rows)),
    ]
    return "\n".join(lines) + "\n"


def _cells(row: dict) -> list[str]:
    low, high = row["p50_range"]
    return [
        row["variant"],
        f"{row['p50_ms']:.2f} ms",
        f"{low:.2f}-{high:.2f} ms",
        f"{row['p99_ms']:.2f} ms",
        f"{row['calls_per_s']:.0f}",
        f"{row['server_cpu_ms_per_call']:.2f} ms",
        f"{row['p50_ms_ratio']:.2f}",
        f"{row['calls_per_s_ratio']:.2f}",
    ]


def _disk(path: Path) -> str:
    """The filesystem type `path` is on, from /proc/mounts (the longest mount point that holds it)."""
    path, best = path.resolve(), ("", "an unknown filesystem")
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, kind, *_ = line.split()
        if path.is_relative_to(point) and len(point) > len(best[0]):
            best = (point, kind)
    return best[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest durability", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per row")
    parser.add_argument("--clients", type=int, default=4, help="concurrent sessions")
    parser.add_argument("--rounds", type=int, default=3, help="times each variant is measured")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "durability")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also copy durability.md into this page")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="durability-") as work:
        run = {**run_header(), "disk": _disk(Path(work)), "clients": args.clients, "rounds": args.rounds}
        rows = measure(args.calls, args.clients, args.rounds, Path(work))
    record, page = {"run": run, "rows": rows}, markdown(run, rows)
    publish(args.out, "durability", record, {"durability.md": page}, {"durability": "durability.md"}, args.page)
    print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
