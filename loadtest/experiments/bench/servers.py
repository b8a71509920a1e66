"""The servers a benchmark loads, each a real process on 127.0.0.1: ours, the references, or an instance of
the local stack; each knows its URL, the processes whose CPU counts, and the sessions calls go to."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from loadtest.client.legacy import McpClient
from loadtest.harness.cpu import tree_times
from loadtest.harness.stack import NGINX_COMMAND, ONE_ADDRESS_LOAD, Stack, free_port, nginx_site_env
from loadtest.harness.topology import PROJECT_ROOT

READY_SECONDS = 30.0
SESSIONS = 8  # calls are spread over this many sessions, as from several clients


@dataclass(frozen=True)
class Subject:
    """What is measured: a uvicorn factory (or our app on the local stack) with its settings."""

    label: str
    kind: str  # "floor", "sdk" or "ours": what its figures are compared with
    factory: str  # "module:function", served by `uvicorn --factory`; "stack" for app1 of a local stack
    env: dict[str, str] = field(default_factory=dict)
    loop: str = "auto"  # uvicorn's --loop and --http: auto takes uvloop and httptools when installed
    http: str = "auto"
    python: str = sys.executable  # the interpreter (and so the venv) that serves it
    behind_nginx: bool = False  # called through nginx (our config, round-robin, this one instance)

    @property
    def preset(self) -> str:
        return self.env.get("MCP_PRESET", "stateful-sse")


class Served(AbstractContextManager):
    url: str
    sessions: tuple[str, ...] = ()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each process that serves, by role."""
        return {name: sum(tree_times(pid).values()) for name, pid in self.pids().items()}

    def pids(self) -> dict[str, int]:
        raise NotImplementedError

    def open_sessions(self, stateful: bool) -> None:
        if stateful:
            self.sessions = tuple(open_session(self.url) for _ in range(SESSIONS))


class UvicornServer(Served):
    """`uvicorn --factory` with the flags `mcp_cluster.serving` uses, the app's logs in `log`."""

    def __init__(self, subject: Subject, log: Path) -> None:
        self.subject, self.log = subject, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def command(self) -> list[str]:
        return [self.subject.python, "-m", "uvicorn", *self.uvicorn_args()]

    def uvicorn_args(self) -> list[str]:
        args = ["--factory", self.subject.factory, "--port", str(self.port), "--loop", self.subject.loop]
        args += ["--http", self.subject.http, "--no-access-log", "--no-server-header", "--timeout-keep-alive", "75"]
        return [*args, "--log-level", "warning"]

    def __enter__(self) -> UvicornServer:
        cmd = self.command()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
        env = {**inherited, "MCP_LISTEN_PORT": str(self.port), **self.subject.env}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.process, self.log, self.subject.label)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def pids(self) -> dict[str, int]:
        return {"server": self.process.pid}


class StackInstance(Served):
    """app1 of a local stack with the Redis store (as `python -m loadtest stack` runs it), called directly;
    its CPU and Redis's are counted."""

    def __init__(self, subject: Subject, run_dir: Path) -> None:
        settings = {k: v for k, v in subject.env.items() if k != "MCP_PRESET"}  # the stack sets its preset itself
        self.stack = Stack(run_dir=run_dir, preset=subject.preset, store="redis", port=free_port(), app_env=settings)

    def __enter__(self) -> StackInstance:
        self.stack.start()
        self.url = self.stack.instance_url("app1")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stack.stop()

    def pids(self) -> dict[str, int]:
        return {"server": self.stack.proc("app1").pid, "redis": self.stack.proc("redis").pid}


class BehindNginx(Served):
    """A server with nginx in front (nginx/run-nginx.sh, round-robin, this one instance), called through nginx;
    the server's CPU and nginx's are counted apart."""

    def __init__(self, server: UvicornServer, run_dir: Path) -> None:
        self.server, self.run_dir = server, run_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> BehindNginx:
        self.server.__enter__()
        site = nginx_site_env(self.run_dir, self.port, {"app1": self.server.port}, "round-robin")
        env = {**os.environ, **site, **ONE_ADDRESS_LOAD}
        with open(self.run_dir / "nginx.log", "wb") as log:
            self.nginx = subprocess.Popen(NGINX_COMMAND, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
        wait_listening(self.port, self.nginx, self.run_dir / "nginx.log", "nginx")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.nginx.terminate()
        self.nginx.wait(10)
        self.server.__exit__(*exc_info)

    def pids(self) -> dict[str, int]:
        return {**self.server.pids(), "nginx": self.nginx.pid}


def serve(subject: Subject, work: Path) -> Served:
    name = f"{subject.label.replace(' ', '-').replace(',', '')}-{subject.preset}"
    if subject.factory == "stack":
        return StackInstance(subject, work / f"stack-{subject.preset}")
    server = UvicornServer(subject, work / f"{name}.log")
    if subject.behind_nginx:
        return BehindNginx(server, work / f"{name}-nginx")
    return server


def wait_listening(port: int, process: subprocess.Popen, log: Path, label: str) -> None:
    """Until something accepts connections on `port`; an error if `process` exits first or it takes too long."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{label} exited at start:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{label} did not listen within {READY_SECONDS:.0f} s")


def open_session(url: str) -> str:
    """A new 2025-11-25 session at `url` (initialize, then notifications/initialized): its id."""
    client = McpClient(requests.Session(), url)
    exchange = client.initialize()
    if client.session_id is None:
        raise RuntimeError(f"no session opened at {url}: HTTP {exchange.status} {exchange.error}")
    return client.session_id
