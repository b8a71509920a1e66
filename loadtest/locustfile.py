"""Locust users, one per MCP capability, all speaking 2025-11-25 through nginx.

    locust -f loadtest/locustfile.py --host http://localhost:8080

Each MCP operation is one Locust request named by capability (`tools/call increment`, ...),
failed with a short reason when a user would call it failed. Pick scenarios in the web UI
(--class-picker) or by tag (-T counter sampling ...). The "MCP instances" tab counts which
instance answered each operation.
"""

from __future__ import annotations

import sys
from pathlib import Path

# locust puts only this file's directory on sys.path; the project root holds the `loadtest` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib
import itertools
import time
from collections.abc import Callable

import gevent
import requests
from gevent.queue import Empty, Queue
from locust import User, between, events, tag, task
from locust.clients import HttpSession
from locust.event import EventHook

from loadtest import capabilities as cap
from loadtest import run_report
from loadtest.mcp_client import McpClient, stream_messages

TIMEOUT = (3.0, 10.0)  # connect, and the longest silence within a response
STREAM_READ_TIMEOUT = 40.0  # the GET stream is silent between updates; the server pings every 15 s
UPDATE_WAIT = 5.0

run_report.install()


@events.test_start.add_listener
def _drop_scenarios_without_tasks(environment, **_: object) -> None:
    """With -T, keep only the classes that still have a task: Locust would spawn the others idle."""
    environment.user_classes[:] = [user for user in environment.user_classes if user.tasks] or environment.user_classes


class McpUser(User):
    """Holds one MCP client and its session; reports every operation as one Locust request."""

    abstract = True
    wait_time = between(0.05, 0.15)

    def __init__(self, environment) -> None:
        super().__init__(environment)
        # Our own session with a silent hook: the HTTP requests inside one operation are not counted.
        self.http = HttpSession(base_url=self.host, request_event=EventHook(), user=self)
        self.client = self.new_client()
        self.session_lost = True

    def new_client(self) -> McpClient:
        return McpClient(self.http, self.host.rstrip("/") + "/mcp", timeout=TIMEOUT)

    def on_start(self) -> None:
        self.ensure_session()

    def on_stop(self) -> None:
        if self.client.session_id is not None:
            with contextlib.suppress(requests.RequestException):  # the run is ending; nobody reads this
                self.client.close()

    def ensure_session(self) -> bool:
        """Open a session when there is none or the last one was lost (the spec: re-initialize on 404)."""
        if self.session_lost:
            self.client = self.new_client()
            self.session_lost = self.measure(cap.OPEN_SESSION, lambda: cap.open_session(self.client)) is None
            self.on_new_session()
        return not self.session_lost

    def on_new_session(self) -> None:
        """Per-scenario state that belongs to a session."""

    def measure(self, name: str, operation: Callable[[], cap.Outcome]) -> cap.Outcome | None:
        """Run one operation and fire its Locust request event; None when it failed."""
        started = time.perf_counter()
        try:
            outcome = operation()
        except requests.Timeout:
            outcome = cap.Outcome(None, "timeout: no answer within 10 s")
        except requests.ConnectionError:
            outcome = cap.Outcome(None, "connection failed")
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="MCP",
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=RuntimeError(outcome.failure) if outcome.failure else None,
            context={"instance": outcome.instance},
        )
        if outcome.session_lost:
            self.session_lost = True
        return None if outcome.failure else outcome

    def call(self, name: str, operation: Callable[[McpClient], cap.Outcome]) -> None:
        if self.ensure_session():
            self.measure(name, lambda: operation(self.client))


class BasicToolUser(McpUser):
    @tag("basic")
    @task
    def process_file(self) -> None:
        self.call(cap.BASIC, cap.basic_tool)


class SessionStateUser(McpUser):
    def on_new_session(self) -> None:
        self.expected = 1

    @tag("counter")
    @task
    def increment(self) -> None:
        if self.ensure_session():
            outcome = self.measure(cap.COUNTER, lambda: cap.counter(self.client, self.expected))
            self.expected += 1 if outcome else 0


class LoggingUser(McpUser):
    @tag("logs")
    @task
    def slow_task_logs(self) -> None:
        self.call(cap.LOGS, cap.logs)


class ProgressUser(McpUser):
    @tag("progress")
    @task
    def slow_task_progress(self) -> None:
        self.call(cap.PROGRESS, cap.progress)


class SamplingUser(McpUser):
    @tag("sampling")
    @task
    def analyze_with_ai(self) -> None:
        self.call(cap.SAMPLING, cap.sampling)


class ElicitationUser(McpUser):
    @tag("elicitation")
    @task
    def confirm_action(self) -> None:
        self.call(cap.ELICITATION, cap.elicitation)


class ResourceUpdatesUser(McpUser):
    """Subscribes, holds the GET stream in a greenlet, publishes, and waits to hear of it there."""

    listener: gevent.Greenlet | None = None
    numbers = itertools.count(1)

    def on_new_session(self) -> None:
        self.stop_listening()
        self.updates: Queue = Queue()

    @tag("resources")
    @task
    def publish_and_hear(self) -> None:
        if self.ensure_session():
            self.measure(cap.RESOURCE_UPDATES, self.publish_and_wait)

    def publish_and_wait(self) -> cap.Outcome:
        if self.listener is None or self.listener.dead:
            subscribed = self.listen()
            if subscribed.failure:
                return subscribed
        while not self.updates.empty():
            self.updates.get_nowait()
        published = cap.publish(self.client, f"update {next(self.numbers)}")
        if published.failure:
            return published
        try:
            self.updates.get(timeout=UPDATE_WAIT)
        except Empty:
            return cap.Outcome(published.instance, "update never arrived on the GET stream")
        return published

    def listen(self) -> cap.Outcome:
        subscribed = cap.subscribe(self.client)
        if subscribed.failure:
            return subscribed
        stream = self.client.open_stream(read_timeout=STREAM_READ_TIMEOUT)
        if stream.status_code != 200:
            stream.close()
            self.session_lost = stream.status_code == 404
            return cap.Outcome(stream.headers.get("X-Mcp-Instance"), f"GET stream: HTTP {stream.status_code}")
        self.listener = gevent.spawn(self.read_updates, stream)
        return subscribed

    def read_updates(self, stream: requests.Response) -> None:
        try:
            for message in stream_messages(stream):
                if message.get("method") == "notifications/resources/updated":
                    self.updates.put(message)
        except requests.RequestException:
            pass  # the stream broke: the next task subscribes again
        finally:
            stream.close()

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.kill(block=False)
            self.listener = None

    def on_stop(self) -> None:
        self.stop_listening()
        super().on_stop()


class SessionChurnUser(McpUser):
    """Opens and ends a whole session per task: the session table must not leak."""

    def on_start(self) -> None:
        pass  # every task brings its own session

    @tag("churn")
    @task
    def session_lifecycle(self) -> None:
        self.measure(cap.SESSION_CHURN, lambda: cap.session_churn(self.new_client()))
