"""A long session-churn run against the Redis store, watching for leaks.

    python -m loadtest soak [--minutes 10] [--users 8] [--out results/soak] [--page docs/results.md]

Locust users open, use and DELETE sessions continuously through nginx (round-robin, three
instances, `stateful-sse`, Redis store) while Redis' keys and memory and every instance's resident
memory and held sessions are sampled. After the load stops, everything a session left behind must
be gone: no session held by any instance, no session key in Redis.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import redis

from loadtest.experiments.matrix.run import locust_command
from loadtest.experiments.results import publish, stamp
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES, PROJECT_ROOT
from mcp_cluster.shared import keys

SAMPLE_SECONDS = 10.0
SETTLE_SECONDS = 15.0  # after the load: sessions of users that were stopped mid-task end by DELETE or expire


def sample(stack: Stack, store: redis.Redis, started: float) -> dict:
    return {
        "t_s": round(time.monotonic() - started, 1),
        "redis_session_keys": sum(1 for _ in store.scan_iter(keys.SESSION.format("*"), count=1000)),
        "redis_keys": store.dbsize(),
        "redis_used_memory_bytes": store.info("memory")["used_memory"],
        "instance_rss_bytes": {n: psutil.Process(stack.proc(n).pid).memory_info().rss for n in INSTANCES},
        "held_sessions": stack.held_sessions(),
    }


def soak(minutes: float, users: int, work: Path) -> dict:
    settings = {"MCP_SESSION_IDLE_TIMEOUT": "10"}  # sessions a stopped user never deleted expire quickly
    with Stack(run_dir=work, store="redis", port=free_port(), app_env=settings) as stack:
        store = redis.Redis.from_url(stack.redis_url)
        started = time.monotonic()
        samples = [sample(stack, store, started)]
        locust = subprocess.Popen(
            [
                *locust_command(stack.url.removesuffix("/mcp"), users, int(minutes * 60)),
                "--json",
                "SessionChurnUser",
                "SessionStateUser",
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        while locust.poll() is None:
            time.sleep(SAMPLE_SECONDS)
            samples.append(sample(stack, store, started))
        stats = json.loads(locust.stdout.read() or "[]")
        deadline = time.monotonic() + SETTLE_SECONDS + 10
        while time.monotonic() < deadline:
            last = sample(stack, store, started)
            if last["redis_session_keys"] == 0 and not any(last["held_sessions"].values()):
                break
            time.sleep(1)
        samples.append(last)
    operations = {s["name"]: (s["num_requests"], s["num_failures"]) for s in stats}
    return {"minutes": minutes, "users": users, "operations": operations, "samples": samples}


def summary(result: dict) -> str:
    first, peak_keys, last = (
        result["samples"][0],
        max(s["redis_session_keys"] for s in result["samples"]),
        result["samples"][-1],
    )
    total = sum(n for n, _ in result["operations"].values())
    failed = sum(f for _, f in result["operations"].values())
    rss = {n: (first["instance_rss_bytes"][n], last["instance_rss_bytes"][n]) for n in INSTANCES}
    lines = [
        f"Soak {result['date']} on {result['machine']}: {result['minutes']} min, {result['users']} users "
        f"(session churn and session state), {total} operations, {failed} failed.",
        f"- session keys in Redis: {first['redis_session_keys']} at start, {peak_keys} at most, "
        f"{last['redis_session_keys']} after the load",
        f"- sessions held by the instances after the load: {sum(last['held_sessions'].values())}",
        f"- Redis used memory: {first['redis_used_memory_bytes'] / 1e6:.2f} MB at start, "
        f"{last['redis_used_memory_bytes'] / 1e6:.2f} MB after",
        "- instance resident memory (start → after): "
        + ", ".join(f"{n} {a / 1e6:.0f} → {b / 1e6:.0f} MB" for n, (a, b) in rss.items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "soak")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also copy soak.md into this page")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = soak(args.minutes, args.users, Path(work))
    result["date"] = stamp()
    result["machine"] = f"{psutil.cpu_count()} cores"
    publish(args.out, "soak", result, {"soak.md": summary(result)}, {"soak": "soak.md"}, args.page, end="")
    print(summary(result), end="")
    last = result["samples"][-1]
    return 0 if last["redis_session_keys"] == 0 and not any(last["held_sessions"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
