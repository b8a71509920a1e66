"""`python -m loadtest scale`: the seed's thresholds (under 100, 100 to 1,000, over 1,000 concurrent
clients), measured on the local stack for each configuration.

    python -m loadtest scale [--clients 10,100,1000] [--seconds 30] [--only TEXT]
                             [--out results/scale] [--page docs/results.md] [--marker scale]

Each configuration runs on the local stack (three instances, nginx and redis-server on this machine).
For each number of clients, one Locust process runs that many users of loadtest/users/connected.py:
each opens its session (2025-11-25) and calls the plain tool once a second, the load of clients that are
connected and working. Every process's CPU is sampled, Locust's own included, so a run whose load
generator or machine ran out of CPU says so. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from loadtest.client import capabilities as cap
from loadtest.experiments.matrix.configs import Config
from loadtest.experiments.matrix.run import locust_command, locust_percentile
from loadtest.experiments.results import png_chart, publish, run_header, table
from loadtest.harness.arguments import increasing_counts
from loadtest.harness.cpu import CpuSampler, saturation
from loadtest.harness.stack import ONE_ADDRESS_APP, ONE_ADDRESS_LOAD, Stack, free_port
from loadtest.harness.topology import INSTANCES, PROJECT_ROOT

USERS_FILE = PROJECT_ROOT / "loadtest" / "users" / "connected.py"
IDLE_SECONDS = 3.0
SPAWN_PER_SECOND = 100  # clients connecting per second: 1,000 of them take 10 s to arrive
SERVERS = (*INSTANCES, "nginx", "redis")  # the processes whose CPU is the stack's
COLUMNS: tuple[str, ...] = ("Configuration", "Clients", "calls/s", "failed", "p50", "p99", "server CPU per op")
COLUMNS += ("vs bare SDK", "cores busy", "per core", "Locust", "saturated")
BARE_SDK = "loadtest.experiments.bench.bare_instance"  # the reference: the SDK alone behind the same nginx
REFERENCE = Config("stateful-sse", "session", "memory")  # the configuration the reference runs, and ours beside it


class Subject(NamedTuple):
    """A configuration and the server its instances run: ours (the demo, `app`) or the bare SDK."""

    config: Config
    server: str = "app"

    @property
    def name(self) -> str:
        return self.config.name + ("/bare-sdk" if self.server == BARE_SDK else "")

    @property
    def title(self) -> str:
        return f"{self.config.title}, bare SDK" if self.server == BARE_SDK else self.config.title


CONFIGS = (
    Config("stateful-sse", "session", "memory"),
    Config("stateful-sse", "session", "redis"),
    Config("stateful-sse", "round-robin", "redis"),
    Config("stateful-json", "session", "memory"),
    Config("stateful-json", "round-robin", "redis"),
    Config("stateless-sse", "round-robin", "memory"),
    Config("stateless-json", "round-robin", "memory"),
    Config("stateful-sse", "round-robin", "memory", protocol=cap.MODERN),
)
SUBJECTS = (Subject(REFERENCE, BARE_SDK), *map(Subject, CONFIGS))


def measure(subject: Subject, counts: tuple[int, ...], seconds: int, work: Path) -> list[dict]:
    """One row per number of clients, all on one stack of the configuration."""
    config = subject.config
    run_dir = work / subject.name.replace("/", "_")
    with Stack(
        run_dir=run_dir,
        server=subject.server,
        preset=config.preset,
        policy=config.policy,
        store=config.store,
        port=free_port(),
        nginx_env=ONE_ADDRESS_LOAD,  # every client comes from 127.0.0.1
        app_env=ONE_ADDRESS_APP,
    ) as stack:
        processes = {name: stack.proc(name).pid for name in SERVERS}
        return [
            _load(subject, stack.url.removesuffix("/mcp"), processes, clients, seconds, run_dir) for clients in counts
        ]


def _load(subject: Subject, host: str, processes: dict[str, int], clients: int, seconds: int, run_dir: Path) -> dict:
    """`clients` Locust users for the time they take to connect plus `seconds`, and what it cost."""
    arriving = -(-clients // SPAWN_PER_SECOND)
    out = run_dir / f"{clients}-clients"
    command = locust_command(host, clients, arriving + seconds, USERS_FILE, min(clients, SPAWN_PER_SECOND))
    command += ["--json-file", str(out), "--mcp-protocol", subject.config.protocol, "ConnectedClientUser"]
    with CpuSampler(processes) as idle:  # what the stack spends with no load: its timers, heartbeats, Redis
        time.sleep(IDLE_SECONDS)  # a measurement window, not a wait for readiness
    with open(f"{out}.log", "wb") as log:
        locust = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        with CpuSampler({**processes, "locust": locust.pid}) as sampler:
            locust.wait()
    if locust.returncode not in (0, 1):  # 1 only says some requests failed
        raise RuntimeError(f"locust exited with {locust.returncode}:\n{Path(f'{out}.log').read_text()[-2000:]}")
    stats = {entry["name"]: entry for entry in json.loads(Path(f"{out}.json").read_text())}
    idle_cores = sum(use.average for use in idle.result().values()) / 100
    return _row(subject, clients, arriving + seconds, stats, sampler, idle_cores)


def _row(
    subject: Subject, clients: int, seconds: int, stats: dict[str, dict], sampler: CpuSampler, idle_cores: float
) -> dict:
    cpu = sampler.result()
    sampled_seconds = len(sampler.samples["locust"]) * sampler.interval
    calls = stats.get(cap.BASIC, {})
    operations = sum(entry["num_requests"] for entry in stats.values())
    server_seconds = sum(cpu[name].average for name in SERVERS) / 100 * sampled_seconds
    load_seconds = max(0.0, server_seconds - idle_cores * sampled_seconds)
    return {
        "config": subject.name,
        "title": subject.title,
        "server": subject.server,
        # held against the bare SDK's row of as many clients: the same preset, policy and protocol, either store
        "compared": subject.config._replace(store=REFERENCE.store) == REFERENCE,
        "clients": clients,
        "seconds": seconds,
        "calls": calls.get("num_requests", 0),
        "calls_per_s": calls.get("num_requests", 0) / seconds,
        "operations": operations,
        "failures": sum(entry["num_failures"] for entry in stats.values()),
        "p50_ms": locust_percentile(calls),
        "p99_ms": locust_percentile(calls, 0.99),
        "server_cpu_ms_per_operation": 1000 * load_seconds / operations if operations else None,
        "server_cores": server_seconds / sampled_seconds if sampled_seconds else 0.0,
        "idle_cores": idle_cores,
        "locust_cpu_percent": cpu["locust"].average,
        "saturated": saturation(cpu) or "",
        "cpu": {name: round(use.average, 1) for name, use in cpu.items()},
    }


def markdown(rows: list[dict], run: dict) -> str:
    references = {row["clients"]: row for row in rows if row["server"] == BARE_SDK}
    lines = [
        f"Measured {run['date']} on {run['machine']}: the local stack (three instances, nginx, redis-server on "
        f"these cores), one Locust process, each client calling the plain tool once a second after opening its "
        f"session; {run['seconds']} s once every client has connected ({SPAWN_PER_SECOND} connect per second).",
        "Server CPU is the instances', nginx's and Redis's: per operation (sessions opened included), beyond what",
        f"the stack spends idle (measured for {IDLE_SECONDS:g} s before each load), and in cores busy (idle included);",
        "per core is operations per second for each core the load kept busy. Locust's CPU is in % of one core.",
        "The bare SDK runs the demo's tools on the SDK's app alone behind the same nginx (session ids prefixed with",
        "the instance, for the session policy, and nothing more): its CPU per operation is the reference each",
        "stateful-sse configuration with the session policy is held against, at the same number of clients.",
        "",
        table(COLUMNS, (_cells(row, references.get(row["clients"])) for row in rows)),
    ]
    return "\n".join(lines) + "\n"


def _vs(row: dict, reference: dict | None) -> str:
    """Server CPU per operation against the bare SDK's, for the configurations it is the reference of."""
    if not row["compared"] or reference is None or not reference["server_cpu_ms_per_operation"]:
        return ""
    return f"{row['server_cpu_ms_per_operation'] / reference['server_cpu_ms_per_operation']:.2f}x"


def _cells(row: dict, reference: dict | None) -> list[str]:
    load_cores = row["server_cores"] - row["idle_cores"]
    per_core = row["operations"] / row["seconds"] / load_cores if load_cores > 0 else 0.0
    return [
        row["title"],
        f"{row['clients']:,}",
        f"{row['calls_per_s']:.0f}",
        f"{row['failures']} of {row['operations']:,}",
        _ms(row["p50_ms"]),
        _ms(row["p99_ms"]),
        f"{row['server_cpu_ms_per_operation']:.2f} ms",
        _vs(row, reference),
        f"{row['server_cores']:.2f}",
        f"{per_core:.0f}/s",
        f"{row['locust_cpu_percent']:.0f}%",
        row["saturated"] or "no",
    ]


def chart(rows: list[dict], path: Path) -> None:
    """p99 of a call against the number of clients, one line per configuration (both axes logarithmic)."""
    with png_chart(path, (8, 4.5)) as (_, axes):
        for title in dict.fromkeys(row["title"] for row in rows):
            line = [row for row in rows if row["title"] == title and row["p99_ms"] is not None]
            axes.plot([row["clients"] for row in line], [row["p99_ms"] for row in line], marker="o", label=title)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("connected clients, each calling once a second")
        axes.set_ylabel("p99 of a call (ms)")
        axes.set_title("Three instances, nginx and Redis on two cores")
        axes.legend(fontsize=7)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    subjects = [subject for subject in SUBJECTS if args.only is None or args.only in subject.name]
    run = {**run_header(), "seconds": args.seconds}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as work:
        for subject in subjects:
            print(f"scale: {subject.name}, {', '.join(map(str, args.clients))} clients", file=sys.stderr, flush=True)
            rows += measure(subject, args.clients, args.seconds, Path(work))
    page = markdown(rows, run)
    publish(
        args.out, "scale", {"run": run, "rows": rows}, {"scale.md": page}, {args.marker: "scale.md"}, args.page, end=""
    )
    chart(rows, args.out / "scale.png")
    print(page, end="")
    print(f"scale: wrote {args.out}/scale.md, scale.json and scale.png")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest scale", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clients", type=increasing_counts, default=(10, 100, 1000), help="comma-separated client counts"
    )
    parser.add_argument("--seconds", type=int, default=30, help="load after every client has connected")
    parser.add_argument("--only", metavar="TEXT", help="only the configurations whose name contains TEXT")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "scale")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also copy scale.md into this page")
    parser.add_argument(
        "--marker", default="scale", help="the page's marker to copy it at (`<!-- MARKER: ... -->`): one per table"
    )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
