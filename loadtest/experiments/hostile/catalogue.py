"""Run every case against each configuration of the local stack (real redis-server, uvicorn instances and
nginx, authentication on), and after each one check that the instances still serve another client and that
no process died."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from issuer.signing import SigningKey
from loadtest.experiments.hostile.cases import CASES, Case, Target
from loadtest.experiments.hostile.wire import Answer, Wire
from loadtest.harness.stack import Stack, free_port

ISSUER, RESOURCE = "https://issuer.hostile.test", "http://mcp.hostile.test/mcp"
CASE_FAILED = "the case failed"
OTHER_CLIENT = "127.0.0.2"  # the client checked after each case, on an address of its own
# (preset, store, policy): the memory store behind session routing, the Redis store behind round-robin.
CONFIGURATIONS = (
    ("stateful-sse", "memory", "session"),
    ("stateful-sse", "redis", "round-robin"),
    ("stateful-json", "memory", "session"),
    ("stateful-json", "redis", "round-robin"),
    ("stateless-sse", "memory", "round-robin"),
    ("stateless-json", "memory", "round-robin"),
)
QUICK_CONFIGURATIONS = (CONFIGURATIONS[1], CONFIGURATIONS[5])
# Bounds low enough for a case to reach in a second; the defaults are stated beside them in the report.
BOUNDS = {"sessions_per_principal": 20, "requests_per_second": 200, "state_ttl": 2.0}


@dataclass(frozen=True)
class Row:
    configuration: str
    case: str
    status: int | None
    error: str
    seconds: float
    others_served: bool
    processes_alive: bool

    @property
    def misses(self) -> list[str]:
        found = []
        if self.status is not None and self.status >= 500:
            found.append(f"answered {self.status}")
        if self.status is None and self.error.startswith("no answer"):
            found.append("hung")
        if self.error.startswith(CASE_FAILED):
            found.append("the case could not run")
        if not self.others_served:
            found.append("another client was not served")
        if not self.processes_alive:
            found.append("a process died")
        return found


def run(configurations, work: Path, cases: tuple[Case, ...] = CASES) -> list[Row]:
    key = SigningKey.generate()
    jwks = work / "jwks.json"
    jwks.write_text(json.dumps(key.jwks()))
    tokens = {name: key.mint(ISSUER, name, RESOURCE, client_id=name) for name in ("alice", "bob", "carol")}
    tokens["elsewhere"] = key.mint(ISSUER, "alice", "http://elsewhere.test/mcp", client_id="alice")
    rows = []
    for preset, store, policy in configurations:
        app_env = {
            "MCP_AUTH_JWKS": str(jwks),
            "MCP_AUTH_ISSUER": ISSUER,
            "MCP_AUTH_RESOURCE": RESOURCE,
            "MCP_MAX_SESSIONS_PER_PRINCIPAL": str(BOUNDS["sessions_per_principal"]),
            "MCP_REQUEST_STATE_TTL": str(BOUNDS["state_ttl"]),
        }
        nginx_env = {"NGINX_REQUESTS_PER_CLIENT": str(BOUNDS["requests_per_second"])}
        run_dir = work / f"{preset}-{store}"
        options = {"app_env": app_env, "nginx_env": nginx_env}
        with Stack(run_dir=run_dir, preset=preset, store=store, policy=policy, port=free_port(), **options) as stack:
            target = Target(Wire(stack.url), preset, tokens, **BOUNDS)
            for case in cases:
                rows.append(_row(f"{preset}, {store}", case, target, stack))
    return rows


def _row(configuration: str, case: Case, target: Target, stack: Stack) -> Row:
    try:
        answer = case.run(target)
    except Exception as exc:  # a case that could not even be sent is a finding too
        answer = Answer(None, f"{CASE_FAILED}: {exc.__class__.__name__}: {exc}", 0.0)
    served = _serves_another_client(target)
    alive = all(proc.alive for proc in stack.procs)
    return Row(configuration, case.name, answer.status, answer.error, round(answer.seconds, 2), served, alive)


def _serves_another_client(target: Target) -> bool:
    """carol, from an address of her own, calls a tool (and, stateful, opens a session) within the bounds."""
    deadline = time.monotonic() + 5  # a per-client bound a case reached is carol's to stay clear of
    while True:
        called = target.modern("whoami", {}, "carol", source=OTHER_CLIENT)
        opened = target.open("carol", source=OTHER_CLIENT) if target.stateful else called
        if opened.session_id:  # ended again: carol holds none of her share of sessions from one check to the next
            target.close(opened.session_id, "carol", source=OTHER_CLIENT)
        if called.error == "ok" and opened.status == 200:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def as_json(rows: list[Row]) -> list[dict]:
    return [{**asdict(row), "misses": row.misses} for row in rows]
