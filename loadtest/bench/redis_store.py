"""What the Redis session store costs, measured on the local stack (real uvicorn, nginx, redis-server):

1. One session, sequential `whoami` calls sent straight to its owner (local) and to another
   instance (forwarded): latency, and the CPU each process spent per call.
2. Concurrent sessions through nginx with the Redis store under each balancing policy, against the
   memory store with the `session` policy (sticky, no Redis): latency p50/p99 and their ratios, and
   the CPU of all servers per call.

Results depend on the machine: compare rows of one run, not runs of different machines.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import redis
import requests

from app.cluster.event_store import MAX_EVENTS
from app.shared import keys
from loadtest.client.legacy import McpClient
from loadtest.cpu import tree_times
from loadtest.stack import REDIS_SERVERS, SENTINELS, Stack, free_port

WARMUP = 50
REDIS_PROCESSES = (*REDIS_SERVERS, *SENTINELS)
POLICY_RUNS = (("session", "memory"), ("session", "redis"), ("ip-hash", "redis"), ("round-robin", "redis"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    return {name: sum(tree_times(pid).values()) for name, pid in pids.items()}


def timed_calls(client: McpClient, calls: int, tool: str = "whoami") -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        answer = client.call_tool(tool)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.result is None or answer.result.get("isError"):
            raise RuntimeError(f"{tool} failed: HTTP {answer.status} {answer.error}")
    return latencies


def forwarding(calls: int, work: Path) -> list[dict]:
    """Rows for the same session's calls sent to its owner and to another instance."""
    with Stack(run_dir=work / "forwarding", store="redis", port=free_port()) as stack:
        apps = {name: stack.proc(name).pid for name in ("app1", "app2")}
        owner = McpClient(requests.Session(), stack.instance_url("app1"))
        owner.initialize()
        relay = McpClient(requests.Session(), stack.instance_url("app2"))
        relay.session_id, relay.protocol_version = owner.session_id, owner.protocol_version
        rows = []
        for path, client in (("local (to the owner)", owner), ("forwarded (to another instance)", relay)):
            timed_calls(client, WARMUP)
            before = cpu_seconds(apps)
            latencies = timed_calls(client, calls)
            after = cpu_seconds(apps)
            rows.append(
                {
                    "path": path,
                    "calls": calls,
                    "p50_ms": percentile(latencies, 0.5),
                    "p99_ms": percentile(latencies, 0.99),
                    "owner_cpu_ms_per_call": 1000 * (after["app1"] - before["app1"]) / calls,
                    "relay_cpu_ms_per_call": 1000 * (after["app2"] - before["app2"]) / calls,
                }
            )
        rows.append(session_memory(stack, owner))
        owner.close()
    return rows


def session_memory(stack: Stack, client: McpClient) -> dict:
    """Redis bytes one session costs: its record, and its GET-stream events once the cap is reached."""
    store = redis.Redis.from_url(stack.redis_url)
    session_id = client.session_id.partition(".")[2]
    for _ in range(100):
        client.call_tool("increment")
    client.request("resources/subscribe", {"uri": "updates://bench"})
    for n in range(MAX_EVENTS + 36):  # more updates than the stream keeps
        client.call_tool("publish_update", {"message": f"update {n}", "topic": "bench"})
    events_key = keys.EVENTS.format(session_id)
    return {
        "record_bytes": store.memory_usage(keys.SESSION.format(session_id)),
        "events_kept": store.xlen(events_key),
        "events_bytes": store.memory_usage(events_key),
    }


class BenchError(RuntimeError):
    """A measurement that could not be taken; the message says which and why."""


def policies(calls: int, clients: int, work: Path) -> list[dict]:
    """Rows for `clients` concurrent sessions through nginx, per policy and store."""
    rows = []
    for policy, store in POLICY_RUNS:
        with Stack(run_dir=work / f"{policy}-{store}", policy=policy, store=store, port=free_port()) as stack:
            try:
                rows.append({"policy": policy, "store": store, **concurrent_calls(stack, calls, clients)})
            except RuntimeError as exc:
                raise BenchError(f"{policy} with the {store} store: {exc}") from exc
    base = rows[0]
    for row in rows:
        row["p50_ratio"] = row["p50_ms"] / base["p50_ms"]
        row["p99_ratio"] = row["p99_ms"] / base["p99_ms"]
    return rows


def concurrent_calls(stack: Stack, calls: int, clients: int, tool: str = "whoami") -> dict:
    """`clients` sessions calling `tool` at once; a session whose call fails fails the measurement."""
    servers = {p.name: p.pid for p in stack.procs if p.name not in REDIS_PROCESSES or stack.store == "redis"}
    sessions = [McpClient(requests.Session(), stack.url) for _ in range(clients)]
    for session in sessions:
        session.initialize()
        timed_calls(session, WARMUP // clients + 1, tool)
    before = cpu_seconds(servers)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = [f.result() for f in [pool.submit(timed_calls, s, calls // clients, tool) for s in sessions]]
    elapsed = time.perf_counter() - started
    after = cpu_seconds(servers)
    for session in sessions:
        session.close()
    merged = [value for each in latencies for value in each]
    return {
        "calls": len(merged),
        "calls_per_s": len(merged) / elapsed,
        "p50_ms": percentile(merged, 0.5),
        "p99_ms": percentile(merged, 0.99),
        "server_cpu_ms_per_call": 1000 * sum(after[n] - before[n] for n in servers) / len(merged),
    }


def markdown(forwarded: list[dict], by_policy: list[dict], clients: int) -> str:
    lines = [
        "The Redis store on the local stack, `stateful-sse`, `whoami` calls.",
        "",
        f"One session, {forwarded[0]['calls']} sequential calls straight to an instance:",
        "",
        "| Path | p50 | p99 | owner CPU per call | relay CPU per call |",
        "|---|---|---|---|---|",
    ]
    memory = forwarded[-1]
    for row in forwarded[:-1]:
        lines.append(
            f"| {row['path']} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms | "
            f"{row['owner_cpu_ms_per_call']:.2f} ms | {row['relay_cpu_ms_per_call']:.2f} ms |"
        )
    lines += [
        "",
        f"Redis memory per session: {memory['record_bytes']} bytes for its record (owner, `initialize` params,"
        f" session state, subscriptions), and {memory['events_bytes']} bytes for its GET-stream events at the cap"
        f" of {memory['events_kept']} events: at most {(memory['record_bytes'] + memory['events_bytes']) / 1024:.1f}"
        " KiB per session with these tools.",
    ]
    lines += [
        "",
        f"{clients} concurrent sessions through nginx, {by_policy[0]['calls']} calls per row; ratios"
        " against the first row (sticky, no Redis):",
        "",
        "| Policy | Store | p50 | p99 | p50 ratio | p99 ratio | calls/s | server CPU per call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in by_policy:
        lines.append(
            f"| {row['policy']} | {row['store']} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms | "
            f"{row['p50_ratio']:.2f} | {row['p99_ratio']:.2f} | {row['calls_per_s']:.0f} | "
            f"{row['server_cpu_ms_per_call']:.2f} ms |"
        )
    return "\n".join(lines) + "\n"
