"""What nginx's `session-dns` policy (deploy/kubernetes/) costs against the `session` policy, on this host.

    python -m loadtest.experiments.bench.pod_routing [--calls 2000] [--seconds 5] [--rounds 5]
                                         [--out results/pod-routing] [--page docs/kubernetes.md]

`session` is the local stack's: its instances are named in `upstream` blocks, and nginx keeps its
connections to them. `session-dns` is the pods' of loadtest/harness/pods.py: nginx resolves a session's pod when the
request comes, and opens a connection to it for each request. Both send every call to its session's owner,
both use the Redis store, on one redis-server, and both run at once so that the rows take turns:

1. One session each, sequential `whoami` calls through nginx: p50/p99, and nginx's and the owner's CPU per call.
2. wrk's 16 connections over 8 sessions of one instance, through nginx: calls/s, and the same CPU per call.

A benchmark, not a test: it asserts nothing about speed; compare rows of one run, on one machine.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import requests

from loadtest.client.legacy import McpClient
from loadtest.experiments.bench import wrk
from loadtest.experiments.bench.redis_store import CallPath, Load, interleaved_calls, wrk_rounds
from loadtest.experiments.results import publish, run_header, table
from loadtest.harness.pods import PodStack
from loadtest.harness.stack import ONE_ADDRESS_APP, ONE_ADDRESS_LOAD, Proc, Stack, free_port
from loadtest.harness.topology import PROJECT_ROOT

PRESET = "stateful-json"
SESSIONS = 8  # of one instance, for wrk
CONNECTIONS = 16
OPEN_ATTEMPTS = 200  # sessions opened through nginx at most to find SESSIONS of the owner


@dataclass
class Route:
    """One nginx in front of three instances, and the instance whose sessions are called."""

    label: str
    url: str
    nginx: Proc
    owner: Proc
    sessions: list[McpClient] = field(default_factory=list)

    @property
    def pids(self) -> dict[str, int]:
        return {"nginx": self.nginx.pid, "owner": self.owner.pid}


def measure(calls: int, seconds: int, rounds: int, work: Path) -> dict:
    stack = Stack(
        work / "stack", PRESET, "session", "redis", free_port(), nginx_env=ONE_ADDRESS_LOAD, app_env=ONE_ADDRESS_APP
    )
    with stack:
        pods = PodStack(
            work / "pods",
            stack.instance_redis_url("app1"),
            preset=PRESET,
            redis_password_file=stack.password_file(),
            metrics=False,  # as the stack's instances: the same work per call
            nginx_env=ONE_ADDRESS_LOAD,
        )
        with pods:
            routes = [
                Route(
                    "session (upstream blocks, connections kept)", stack.url, stack.proc("nginx"), stack.proc("app1")
                ),
                Route(
                    "session-dns (resolved per request, a connection each)", pods.url, pods.nginx, pods.pods["mcp-0"]
                ),
            ]
            for route in routes:
                route.sessions = _sessions_of(route.url, route.owner.name)
            sequential = [CallPath(route.label, route.sessions[0], False, route.pids) for route in routes]
            return {
                "sequential": interleaved_calls(sequential, calls, rounds=rounds),
                "saturating": _saturating(routes, seconds, rounds),
            }


def _sessions_of(url: str, owner: str) -> list[McpClient]:
    """SESSIONS sessions that `owner` minted, opened through nginx (which picks the instance)."""
    kept = []
    for _ in range(OPEN_ATTEMPTS):
        client = McpClient(requests.Session(), url)
        exchange = client.initialize()
        if client.session_id is None:
            raise RuntimeError(f"no session opened at {url}: HTTP {exchange.status} {exchange.error}")
        if client.session_id.partition(".")[0] == owner:
            kept.append(client)
            if len(kept) == SESSIONS:
                return kept
        else:
            client.close()
    raise RuntimeError(f"nginx at {url} sent {OPEN_ATTEMPTS} sessions to {owner} fewer than {SESSIONS} times")


def _saturating(routes: list[Route], seconds: int, rounds: int) -> list[dict]:
    loads = {
        route.label: Load(route.url, wrk.Call(sessions=tuple(c.session_id for c in route.sessions)), route.pids)
        for route in routes
    }
    return wrk_rounds(loads, CONNECTIONS, seconds, rounds)


def markdown(result: dict) -> str:
    run, sequential, saturating = result["run"], result["sequential"], result["saturating"]
    base, base_load = sequential[0], saturating[0]
    timed, loaded = [], []
    for row in sequential:
        p50, p99 = f"{row['p50_ms']:.2f} ms", f"{row['p99_ms']:.2f} ms"
        timed.append([row["path"], p50, p99, _ratio(row, base, "p50_ms"), *_cpu(row, base)])
    for row in saturating:
        calls = f"{row['calls_per_s']:.0f}"
        loaded.append([row["path"], calls, _ratio(row, base_load, "calls_per_s"), *_cpu(row, base_load)])
    lines = [
        f"Measured {run['date']} on {run['machine']}: `{PRESET}`, the Redis store, `whoami` calls through nginx"
        f" to the session's owner; ratios against the first row.",
        "",
        f"One session, {base['calls']} sequential calls:",
        "",
        table(("nginx policy", "p50", "p99", "p50 ratio", "nginx CPU per call", "ratio", "owner CPU per call"), timed),
        "",
        f"wrk's {CONNECTIONS} connections over {SESSIONS} sessions of one instance, {run['rounds']} rounds of"
        f" {run['seconds']} s:",
        "",
        table(("nginx policy", "calls/s", "ratio", "nginx CPU per call", "ratio", "owner CPU per call"), loaded),
    ]
    return "\n".join(lines) + "\n"


def _cpu(row: dict, base: dict) -> list[str]:
    """nginx's CPU per call, its ratio to base's, and the owner's."""
    nginx, owner = row["nginx_cpu_ms_per_call"], row["owner_cpu_ms_per_call"]
    return [f"{nginx:.3f} ms", _ratio(row, base, "nginx_cpu_ms_per_call"), f"{owner:.2f} ms"]


def _ratio(row: dict, base: dict, key: str) -> str:
    """row's `key` over base's; a dash where base's is 0 (CPU below the clock's tick in a short run)."""
    return f"{row[key] / base[key]:.2f}" if base[key] else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.experiments.bench.pod_routing", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per row")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="turns each row takes")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "pod-routing")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also copy the tables into this page")
    args = parser.parse_args(argv)
    run = {**run_header(), "seconds": args.seconds, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="pod-routing-") as work:
        result = {"run": run, **measure(args.calls, args.seconds, args.rounds, Path(work))}
    page = markdown(result)
    publish(args.out, "pod-routing", result, {"pod-routing.md": page}, {"pod-routing": "pod-routing.md"}, args.page)
    print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
