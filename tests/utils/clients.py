"""Clients for the tests: the SDK client pinned to an era with callbacks that record what the server sent,
our own wire client with a session open, raw 2026-07-28 calls, and polling with a deadline."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mcp import Client
from mcp.types import CreateMessageResult, ElicitResult, TextContent

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.client.modern import MODERN_VERSION
from loadtest.experiments.hostile import wire
from loadtest.harness.compose import docker_unavailable

SAMPLED_TEXT = "a short analysis"
NO_BACK_CHANNEL = "this transport context has no back-channel for server-initiated requests."


class Recorder:
    """Callbacks for the SDK client; every list shows what reached the client."""

    def __init__(self, elicited: dict | None = None) -> None:
        self.elicited = {"confirm": True} if elicited is None else elicited  # what the user "answers"
        self.logs: list[str] = []
        self.progress: list[float] = []
        self.sampling_requests: list[object] = []
        self.elicitation_requests: list[object] = []

    async def sampling(self, ctx, params) -> CreateMessageResult:
        self.sampling_requests.append(params)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text=SAMPLED_TEXT), model="fake")

    async def elicitation(self, ctx, params) -> ElicitResult:
        self.elicitation_requests.append(params)
        return ElicitResult(action="accept", content=self.elicited)

    async def logging(self, params) -> None:
        self.logs.append(params.data)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append(progress)

    def client(self, url: str, mode: str = "legacy", **kwargs) -> Client:
        """`mode="legacy"` speaks 2025-11-25 (initialize + sessions); "auto" lands on 2026-07-28."""
        return Client(
            url,
            mode=mode,
            sampling_callback=self.sampling,
            elicitation_callback=self.elicitation,
            logging_callback=self.logging,
            read_timeout_seconds=10,
            **kwargs,
        )


def text_of(result) -> str:
    return result.content[0].text


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


DOCKER_REQUIRED = os.environ.get("MCP_REQUIRE_DOCKER") == "1"  # CI: a skipped compose test is a failure


def require_docker(what: str, command: tuple[str, ...] | None = None) -> None:
    """Skip `what` with the reason where no Docker Engine (or not compose `command`) answers; fail in CI."""
    reason = docker_unavailable(command)
    if reason is None:
        return
    if DOCKER_REQUIRED:
        pytest.fail(f"{what} cannot run: {reason} (MCP_REQUIRE_DOCKER=1)")
    pytest.skip(f"{what} skipped: {reason}")


def port_free(port: int) -> None:
    """Fail early, with the reason, when a fixed port the docs' commands use is taken."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is in use: the docs' commands need it (a stack or Locust still up?)")


DOCS_PORTS = (8080, 8089)  # nginx and Locust's web UI, as the docs' commands publish them
DOCS_PORTS_LOCK = Path(tempfile.gettempdir()) / "mcp-scale-lab-docs-ports.lock"


@contextlib.contextmanager
def docs_ports(timeout: float = 900.0) -> Iterator[None]:
    """Hold the ports the docs' commands use for the block: the compose tests run beside the others, in a process
    of their own (scripts/test), and a test of either takes its turn on them. Fails when something else holds one."""
    with DOCS_PORTS_LOCK.open("w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the docs' ports stayed taken by another test for {timeout:.0f} s")
                time.sleep(0.2)  # the other test's turn: polled, the lock has no waiting with a deadline
        try:
            for port in DOCS_PORTS:
                port_free(port)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


MODERN = MODERN_VERSION


def modern_call(url: str, tool: str, arguments: dict, *, token: str | None = None, **params) -> requests.Response:
    """One 2026-07-28 tools/call as raw HTTP (with `token` as its bearer token)."""
    names = {"Mcp-Method": "tools/call", "Mcp-Name": tool}
    body, sent = wire.call_body(tool, arguments, MODERN, **params), wire.headers(token, None, MODERN, **names)
    return requests.post(url, json=body, headers=sent, timeout=10)


def ask(url: str, tool: str, arguments: dict, token: str | None = None) -> tuple[requests.Response, dict, str]:
    """The first round of an input-required call: the response, the answers to give, the sealed state."""
    asked = modern_call(url, tool, arguments, token=token)
    result = asked.json()["result"]
    assert result["resultType"] == "input_required", result
    answers = {key: cap.answer(request) for key, request in result["inputRequests"].items()}
    return asked, answers, result["requestState"]


def instance(response: requests.Response) -> str:
    return response.headers["X-Mcp-Instance"]


def session(url: str) -> McpClient:
    client = McpClient(requests.Session(), url)
    assert cap.open_session(client).failure is None
    return client


def operations(client: McpClient) -> dict[str, cap.Outcome]:
    return {
        "basic": cap.basic_tool(client),
        "counter": cap.counter(client, expected=1),
        "logs": cap.logs(client),
        "progress": cap.progress(client),
        "sampling": cap.sampling(client),
        "elicitation": cap.elicitation(client),
        "subscribe": cap.subscribe(client, "capabilities"),
        "publish": cap.publish(client, "capabilities", "hello"),
        "churn": cap.session_churn(McpClient(requests.Session(), client.url)),
    }


def every_operation(url: str) -> dict[str, cap.Outcome]:
    """`operations` in a session of its own, closed afterwards (its subscription reaches no other test)."""
    client = session(url)
    try:
        return operations(client)
    finally:
        client.close()
