"""What the Redis session store costs, measured on the local stack (real uvicorn, nginx, redis-server):

1. One session, sequential `whoami` calls sent straight to its owner (local) and to another
   instance (forwarded): latency, and the CPU each process spent per call.
2. After a takeover, with the `session` policy: the taken-over session's calls reach its old owner, which
   names the new one, and nginx re-sends them there (nginx's hop), against a session of the new owner
   that nginx sends there directly.
3. Concurrent sessions through nginx with the Redis store under each balancing policy, against the
   memory store with the `session` policy (sticky, no Redis): latency p50/p99 and their ratios, and
   the CPU of all servers per call.

Results depend on the machine: compare rows of one run, not runs of different machines.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from loadtest.client.legacy import McpClient
from loadtest.experiments.bench import wrk
from loadtest.experiments.bench.servers import open_session
from loadtest.experiments.results import table
from loadtest.harness.cpu import tree_times
from loadtest.harness.stack import REDIS_SERVERS, SENTINELS, Stack, free_port
from mcp_cluster.cluster.event_store import MAX_EVENTS
from mcp_cluster.http.messages import SERVED_BY_HEADER
from mcp_cluster.shared import keys

WARMUP = 50
REDIS_PROCESSES = (*REDIS_SERVERS, *SENTINELS)
POLICY_RUNS = (("session", "memory"), ("session", "redis"), ("ip-hash", "redis"), ("round-robin", "redis"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    return {name: sum(tree_times(pid).values()) for name, pid in pids.items()}


def timed_calls(client: McpClient, calls: int, tool: str = "whoami", relayed: bool | None = None) -> list[float]:
    """Latencies in ms; with `relayed` True or False, a call relayed (or not) by an instance otherwise is an error."""
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        answer = client.call_tool(tool)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.result is None or answer.result.get("isError"):
            raise RuntimeError(f"{tool} failed: HTTP {answer.status} {answer.error}")
        if relayed is not None and (SERVED_BY_HEADER.decode() in answer.headers) != relayed:
            raise RuntimeError(
                f"a call {'not ' if relayed else ''}meant to be relayed was answered by {answer.instance}"
            )
    return latencies


def forwarding(calls: int, seconds: int, work: Path) -> list[dict]:
    """Rows for the same sessions' calls sent to their owner and to another instance: one session's sequential
    calls, then wrk's saturating load; and the memory one session takes in Redis."""
    with Stack(run_dir=work / "forwarding", store="redis", port=free_port()) as stack:
        apps = {"owner": stack.proc("app1").pid, "relay": stack.proc("app2").pid}
        owner = McpClient(requests.Session(), stack.instance_url("app1"))
        owner.initialize()
        relay = McpClient(requests.Session(), stack.instance_url("app2"))
        relay.session_id, relay.protocol_version = owner.session_id, owner.protocol_version
        local, forwarded = (
            CallPath("local (to the owner)", owner, False, apps),
            CallPath("forwarded (to another instance)", relay, True, apps),
        )
        rows = interleaved_calls([local, forwarded], calls)
        rows += saturating_calls(stack, seconds, apps)
        rows.append(session_memory(stack, owner))
        owner.close()
    return rows


def saturating_calls(stack: Stack, seconds: int, pids: dict[str, int], rounds: int = 3) -> list[dict]:
    """wrk's 16 connections over 8 sessions of app1, sent to app1 and to app2 in turn, `rounds` times."""
    call = wrk.Call(sessions=tuple(open_session(stack.instance_url("app1")) for _ in range(8)))
    loads = {
        "local, saturating (wrk)": Load(stack.instance_url("app1"), call, pids),
        "forwarded, saturating (wrk)": Load(stack.instance_url("app2"), call, pids),
    }
    return wrk_rounds(loads, 16, seconds, rounds)


@dataclass(frozen=True)
class Load:
    """What wrk sends where, and the processes whose CPU it is charged."""

    url: str
    call: wrk.Call
    pids: dict[str, int]


def wrk_rounds(loads: dict[str, Load], connections: int, seconds: int, rounds: int) -> list[dict]:
    """Each load (by label) for `seconds` with `connections`, in turn, `rounds` times: a row each, with calls/s
    and the CPU per call of each of its processes."""
    totals = {label: {"calls": 0, "seconds": 0.0} for label in loads}
    cpu: dict[str, dict[str, float]] = {label: {} for label in loads}
    for _ in range(rounds):
        for label, load in loads.items():
            with charged_to(cpu[label], load.pids):
                run = wrk.run(load.url, load.call, connections, seconds)
            totals[label]["calls"] += run.calls
            totals[label]["seconds"] += run.seconds
    return [
        {
            "path": label,
            "calls": total["calls"],
            "calls_per_s": total["calls"] / total["seconds"],
            **{f"{name}_cpu_ms_per_call": 1000 * spent / total["calls"] for name, spent in cpu[label].items()},
        }
        for label, total in totals.items()
    ]


@contextlib.contextmanager
def charged_to(account: dict[str, float], pids: dict[str, int]) -> Iterator[None]:
    """Adds to `account` (by name) the CPU seconds each of `pids` spends while the block runs."""
    before = cpu_seconds(pids)
    yield
    for name, seconds in cpu_seconds(pids).items():
        account[name] = account.get(name, 0.0) + seconds - before[name]


def nginx_hop(calls: int, work: Path) -> list[dict]:
    """Rows for a session nginx sends to its owner, and for one taken over that reaches its old owner first."""
    with Stack(run_dir=work / "nginx-hop", policy="session", store="redis", port=free_port()) as stack:
        moved = McpClient(requests.Session(), stack.instance_url("app1"))
        moved.initialize()  # minted by app1: nginx sends it to app1 by its id
        moved.url = stack.url
        os.kill(stack.proc("app1").pid, signal.SIGKILL)
        if moved.call_tool("whoami").status != 200:  # only nginx's request on a connection to app1 may fail
            timed_calls(moved, 1)  # reaches a backup instance, which takes the session over
        stack.restart("app1")
        owner = moved.call_tool("whoami").result["structuredContent"]["instance"]
        direct = McpClient(requests.Session(), stack.instance_url(owner))
        direct.initialize()  # minted by the owner: nginx sends it straight there
        direct.url = stack.url
        processes = {"owner": stack.proc(owner).pid, "relay": stack.proc("app1").pid}
        processes["nginx"] = stack.proc("nginx").pid
        paths = [
            CallPath("to the owner", direct, False, processes),
            CallPath("after a takeover (nginx's hop)", moved, False, processes),
        ]
        rows = interleaved_calls(paths, calls)
        for client in (direct, moved):
            client.close()
    for row in rows:
        row["p50_ratio"] = row["p50_ms"] / rows[0]["p50_ms"]
    return rows


@dataclass
class CallPath:
    """One way a session's calls go: its client, whether an instance relays them, and what they measured."""

    label: str
    client: McpClient
    relayed: bool
    pids: dict[str, int]  # the processes whose CPU its calls are charged
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)


def interleaved_calls(paths: list[CallPath], calls: int, rounds: int = 5) -> list[dict]:
    """For each path, p50/p99 of `calls` sequential `whoami` calls and the CPU each of its processes spent per call,
    the paths taking turns in `rounds` so that a noisy machine weighs on all of them alike."""
    for path in paths:
        timed_calls(path.client, WARMUP, relayed=path.relayed)
    for _ in range(rounds):
        for path in paths:
            with charged_to(path.cpu, path.pids):
                path.latencies += timed_calls(path.client, calls // rounds, relayed=path.relayed)
    return [
        {
            "path": path.label,
            "calls": len(path.latencies),
            "p50_ms": percentile(path.latencies, 0.5),
            "p99_ms": percentile(path.latencies, 0.99),
            **{f"{name}_cpu_ms_per_call": 1000 * seconds / len(path.latencies) for name, seconds in path.cpu.items()},
        }
        for path in paths
    ]


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
        opened = session.initialize()
        if opened.result is None:
            raise RuntimeError(f"initialize failed: HTTP {opened.status} {opened.error}")
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


# Each table's columns: its heading, and the key of the figure in a row
STRAIGHT = {"Path": "path", "p50": "p50_ms", "p99": "p99_ms"}
STRAIGHT |= {"owner CPU per call": "owner_cpu_ms_per_call", "relay CPU per call": "relay_cpu_ms_per_call"}
SATURATED = {"Path": "path", "calls/s": "calls_per_s"}
SATURATED |= {"owner CPU per call": "owner_cpu_ms_per_call", "relay CPU per call": "relay_cpu_ms_per_call"}
HOP = {"Path": "path", "p50": "p50_ms", "p99": "p99_ms", "p50 ratio": "p50_ratio"}
HOP |= {"owner CPU per call": "owner_cpu_ms_per_call", "old owner CPU per call": "relay_cpu_ms_per_call"}
HOP |= {"nginx CPU per call": "nginx_cpu_ms_per_call"}
POLICIES = {"Policy": "policy", "Store": "store", "p50": "p50_ms", "p99": "p99_ms", "p50 ratio": "p50_ratio"}
POLICIES |= {"p99 ratio": "p99_ratio", "calls/s": "calls_per_s", "server CPU per call": "server_cpu_ms_per_call"}


def markdown(forwarded: list[dict], hop: list[dict], by_policy: list[dict], clients: int) -> str:
    sequential = [row for row in forwarded if "p50_ms" in row]
    saturating = [row for row in forwarded if "calls_per_s" in row]
    memory = forwarded[-1]
    lines = [
        "The Redis store on the local stack, `stateful-sse`, `whoami` calls.",
        "",
        f"One session, {sequential[0]['calls']} sequential calls straight to an instance:",
        "",
        _table(STRAIGHT, sequential),
    ]
    if saturating:  # absent from results measured before the relay was measured under load
        lines += [
            "",
            "wrk's 16 connections over 8 sessions, straight to an instance:",
            "",
            _table(SATURATED, saturating),
        ]
    lines += [
        "",
        f"Redis memory per session: {memory['record_bytes']} bytes for its record (owner, `initialize` params,"
        f" session state, subscriptions), and {memory['events_bytes']} bytes for its GET-stream events at the cap"
        f" of {memory['events_kept']} events: at most {(memory['record_bytes'] + memory['events_bytes']) / 1024:.1f}"
        " KiB per session with these tools.",
    ]
    if hop:  # absent from results measured before nginx did the hop
        lines += [
            "",
            f"After a takeover, with the `session` policy, {hop[0]['calls']} sequential calls through nginx: the old"
            " owner (restarted) gets the session's calls first and names the new owner (421), and nginx re-sends them"
            " there:",
            "",
            _table(HOP, hop),
        ]
    lines += [
        "",
        f"{clients} concurrent sessions through nginx, {by_policy[0]['calls']} calls per row; ratios"
        " against the first row (sticky, no Redis):",
        "",
        _table(POLICIES, by_policy),
    ]
    return "\n".join(lines) + "\n"


def _table(columns: dict[str, str], rows: list[dict]) -> str:
    """A row per measurement: calls/s whole, milliseconds and ratios to two places, names as they are."""
    return table(tuple(columns), ([_shown(row, key) for key in columns.values()] for row in rows))


def _shown(row: dict, key: str) -> str:
    value = row[key]
    if key == "calls_per_s":
        return f"{value:.0f}"
    if "_ms" in key:
        return f"{value:.2f} ms"
    return f"{value:.2f}" if key.endswith("_ratio") else value
