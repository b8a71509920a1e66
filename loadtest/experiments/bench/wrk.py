"""wrk (Debian's `wrk`) as the load generator: C, one thread, many connections, so the servers saturate
long before it does; its own CPU is measured and reported with every run.

Each request is a `tools/call` with an id of its own (JSON-RPC ids must not repeat among a session's
requests in flight: the SDK answers the second with 500), spread over the sessions given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadtest.client.modern import MODERN_VERSION
from loadtest.experiments.hostile.wire import call_body, headers

SUMMARY_MARK = "WRK_SUMMARY "
_ID_MARK = '"__id__"'
_SCRIPT = """
local sessions = {%(sessions)s}
local headers = %(headers)s
local body = %(body)s
local n = 0
local wait_ms = %(wait_ms)s

request = function()
  n = n + 1
  if #sessions > 0 then headers["Mcp-Session-Id"] = sessions[(n %% #sessions) + 1] end
  return wrk.format("POST", nil, headers, string.format(body, n))
end

if wait_ms > 0 then delay = function() return wait_ms end end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%(mark)s{"requests": %%d, "microseconds": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"failed_status": %%d, "failed_socket": %%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


class WrkError(RuntimeError):
    """wrk could not run, or calls failed: the message says which."""


@dataclass(frozen=True)
class Call:
    """What each request is: a tool called in one of `sessions` (none: 2026-07-28, or stateless)."""

    tool: str = "whoami"
    sessions: tuple[str, ...] = ()
    version: str = "2025-11-25"

    def script(self, wait_ms: int = 0) -> str:
        sent = headers(None, None, self.version)
        if self.version == MODERN_VERSION:
            sent |= {"Mcp-Method": "tools/call", "Mcp-Name": self.tool}
        body = json.dumps(call_body(self.tool, {}, self.version, request_id="__id__"))
        return _SCRIPT % {
            "sessions": ", ".join(_lua_string(s) for s in self.sessions),
            "headers": "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in sent.items()) + "}",
            "body": _lua_string(body.replace("%", "%%").replace(_ID_MARK, "%d")),
            "wait_ms": wait_ms,
            "mark": SUMMARY_MARK,
        }


@dataclass(frozen=True)
class WrkRun:
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    wrk_cpu_seconds: float  # the load generator's own CPU over the run

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds


def run(url: str, call: Call, connections: int, seconds: int, wait_ms: int = 0) -> WrkRun:
    """Load `url` with `connections` for `seconds` (each waiting `wait_ms` between its calls); WrkError if
    any call failed (a status other than 2xx, or a socket error)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk not found; install it with: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(call.script(wait_ms))
    try:
        args = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script.name, url]
        with tempfile.TemporaryFile("w+") as errors:
            child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True)
            out = child.stdout.read()
            _, status, usage = os.wait4(child.pid, 0)  # not communicate(): wait4 also tells wrk's own CPU
            child.returncode = os.waitstatus_to_exitcode(status)
            errors.seek(0)
            err = errors.read()
    finally:
        Path(script.name).unlink()
    summary = next((line[len(SUMMARY_MARK) :] for line in out.splitlines() if line.startswith(SUMMARY_MARK)), None)
    if child.returncode != 0 or summary is None:
        raise WrkError(f"wrk failed ({child.returncode}): {err.strip() or out.strip()}")
    result = json.loads(summary)
    if result["failed_status"] or result["failed_socket"]:
        raise WrkError(
            f"{result['failed_status']} calls answered with an error status and {result['failed_socket']} lost to "
            f"socket errors, of {result['requests']} to {url}"
        )
    return WrkRun(
        calls=result["requests"],
        seconds=result["microseconds"] / 1e6,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        wrk_cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua one for these ASCII values
