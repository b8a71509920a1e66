"""What our layer adds to a call, measured in one process: the bare SDK's app, ours with the memory store,
ours with the Redis store (against a redis-server of its own) and ours serving metrics, each serving
`whoami` on stateful-json over 8 sessions, driven straight through ASGI (no HTTP server, no socket) in short
alternating blocks of calls.

Whole-process figures on a shared machine swing by a quarter between rounds of a few seconds (the neighbours'
load, not ours), more than the 5% this has to resolve. Blocks of a few milliseconds taken in turn, hundreds of
times, put them all under the same conditions; the ratio is the median of each round's ratio.

A group of `python -m loadtest bench` (`--layer-seconds`), or alone:
`python -m loadtest.experiments.bench.layer_cost 20`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from starlette.types import ASGIApp

from app.asgi import create_app
from app.settings import ServerSettings
from loadtest.client.legacy import LEGACY_VERSION
from loadtest.experiments.bench import references
from loadtest.experiments.bench.in_process import InProcessClient, lifespan
from loadtest.experiments.bench.servers import wait_listening
from loadtest.experiments.hostile.wire import call_body, headers, initialize_body
from loadtest.experiments.results import stamp, table
from loadtest.harness.stack import free_port, redis_server_binary
from mcp_cluster.sessions.ledger import RedisLedger
from mcp_cluster.settings import InstanceSettings, Preset, SessionStore
from mcp_cluster.shared.redis import connect

PRESET = Preset.STATEFUL_JSON
SESSIONS = 8
CALLS_PER_BLOCK = 40
SUBJECTS = ("bare SDK", "ours", "ours, Redis store", "ours, metrics served")


@dataclass
class Served:
    """One subject: its client and the sessions its calls go to, round robin."""

    name: str
    client: InProcessClient
    sessions: list[str]
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(2))

    async def open_sessions(self) -> None:
        for _ in range(SESSIONS):
            status, answer_headers, body = await self.client.post(initialize_body(), headers())
            session_id = answer_headers.get(b"mcp-session-id")
            if status != 200 or session_id is None:
                raise RuntimeError(f"{self.name} opened no session: HTTP {status} {body[:200]!r}")
            self.sessions.append(session_id.decode())
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            await self.client.post(initialized, headers(None, self.sessions[-1], _version(body)))

    async def calls(self, count: int) -> None:
        for n in range(count):
            session_id = self.sessions[n % SESSIONS]
            body = call_body("whoami", {}, request_id=next(self.ids))  # a request id is used once in a session
            status, _, body = await self.client.post(body, headers(None, session_id, LEGACY_VERSION))
            if status != 200 or b'"isError":false' not in body:
                raise RuntimeError(f"{self.name}: whoami failed: HTTP {status} {body[:200]!r}")


def _version(initialize_answer: bytes) -> str:
    return json.loads(initialize_answer)["result"]["protocolVersion"]


@contextmanager
def redis_server() -> Iterator[tuple[str, str]]:
    """A redis-server of this run's own on 127.0.0.1, with a password, nothing kept on disk: (URL, password)."""
    port, password = free_port(), secrets.token_hex(16)
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "redis.log"
        with open(log, "wb") as output:
            command = [redis_server_binary(), *options, "--dir", folder, "--requirepass", password]
            server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, server, log, "redis-server")
            yield f"redis://127.0.0.1:{port}/0", password
        finally:
            server.terminate()
            server.wait(10)


async def measure(seconds: float, redis_url: str, redis_password: str) -> dict:
    """Rounds of one block per subject, in a rotating order, until `seconds` have passed."""
    apps = _apps(redis_url, redis_password)
    async with AsyncExitStack() as stack:
        served = []
        for name, app in apps.items():
            await stack.enter_async_context(lifespan(app))
            served.append(Served(name, InProcessClient(app), []))
        for subject in served:
            await subject.open_sessions()
            await subject.calls(200)  # warm: caches, first allocations, the first confirm with Redis
        cpu: dict[str, list[float]] = {subject.name: [] for subject in served}
        deadline = time.monotonic() + seconds
        rounds = 0
        while time.monotonic() < deadline:
            turn = rounds % len(served)  # each subject first in its turn
            for subject in served[turn:] + served[:turn]:
                started = time.process_time()
                await subject.calls(CALLS_PER_BLOCK)
                cpu[subject.name].append((time.process_time() - started) * 1000 / CALLS_PER_BLOCK)
            rounds += 1
    return _summary(cpu)


def _apps(redis_url: str, redis_password: str) -> dict[str, ASGIApp]:
    server = ServerSettings.from_env()
    memory = InstanceSettings("app1", preset=PRESET)
    shared = InstanceSettings(
        "app1", preset=PRESET, session_store=SessionStore.REDIS, redis_url=redis_url, redis_password=redis_password
    )
    metered = InstanceSettings("app1", preset=PRESET, metrics_port=free_port())  # each call timed (mcp_cluster/metrics)
    apps = (
        references.bare_sdk(PRESET),
        create_app(memory, server),
        create_app(shared, server),
        create_app(metered, server),
    )
    return dict(zip(SUBJECTS, apps, strict=True))


def _summary(cpu: dict[str, list[float]]) -> dict:
    sdk = cpu["bare SDK"]
    rows = []
    for name, values in cpu.items():
        ratios = sorted(value / reference for value, reference in zip(values, sdk, strict=True))
        rows.append(
            {
                "subject": name,
                "cpu_ms_per_call": statistics.median(values),
                "vs_sdk": statistics.median(ratios),
                "vs_sdk_iqr": (ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]),
                "rounds": len(values),
            }
        )
    return {"calls_per_block": CALLS_PER_BLOCK, "rows": rows}


def markdown(result: dict) -> str:
    measured = f" ({result['date']})" if "date" in result else ""  # runs before 2026-12-07 have no date of their own
    lines = [
        f"In one process{measured}, through ASGI (no HTTP server): `whoami` on {PRESET.value}, {LEGACY_VERSION}, "
        f"over {SESSIONS} sessions; {result['rows'][0]['rounds']} rounds of {result['calls_per_block']} calls per "
        "subject, taken in turn. CPU per call is the process's over each block; the ratio is the median of the "
        "rounds' ratios to the bare SDK, with the middle half of them.",
        "",
        table(("Server", "CPU per call", "vs bare SDK", "middle half"), map(_cells, result["rows"])),
    ]
    if (record := result.get("record")) is not None:
        lines += [
            "",
            f"`whoami` is annotated read-only, so its calls are not recorded. Recording a call (every call of a tool "
            f"that may change something, with the Redis store: its record begun and finished, two scripts) took "
            f"{record['cpu_ms_per_call']:.3f} ms of CPU and {record['p50_ms']:.3f} ms (p50) here, over "
            f"{record['calls']} calls, one at a time.",
        ]
    return "\n".join(lines)


def _cells(row: dict) -> list[str]:
    low, high = row["vs_sdk_iqr"]
    return [row["subject"], f"{row['cpu_ms_per_call']:.3f} ms", f"{row['vs_sdk']:.3f}x", f"{low:.3f}-{high:.3f}"]


async def record_cost(seconds: float, redis_url: str, redis_password: str) -> dict:
    """What recording a tool call costs with the Redis store (mcp_cluster/sessions/ledger.py, for every call of a tool
    not annotated read-only): its two scripts, begun and finished, one pair at a time, for `seconds`."""
    redis = connect(redis_url, password=redis_password)
    ledger, tenure, answer = RedisLedger(redis, 600), ("app1:bench", 1), b'{"result":{"content":[]}}' + b" " * 200
    cpu, wall = [], []
    try:
        deadline = time.monotonic() + seconds
        for number in itertools.count():
            if time.monotonic() > deadline and number >= CALLS_PER_BLOCK:
                break
            started, started_cpu = time.perf_counter(), time.process_time()
            await ledger.begin(f"bench{number % SESSIONS}", f"call{number}", "digest", tenure, "address:127.0.0.1")
            await ledger.finish(f"bench{number % SESSIONS}", f"call{number}", tenure, answer, "address:127.0.0.1")
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
    finally:
        await redis.aclose(close_connection_pool=True)
    return {"calls": len(wall), "cpu_ms_per_call": statistics.median(cpu), "p50_ms": statistics.median(wall)}


def run(seconds: float) -> dict:
    """Every subject measured for `seconds`, and a call's record, with a redis-server of this run's own."""
    date = stamp()
    with redis_server() as (redis_url, password):
        result = {"date": date} | anyio.run(measure, seconds, redis_url, password)
        result["record"] = anyio.run(record_cost, max(1.0, seconds / 4), redis_url, password)
        return result


if __name__ == "__main__":  # this group alone: python -m loadtest.experiments.bench.layer_cost [seconds]
    print(markdown(run(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)))
