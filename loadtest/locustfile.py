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
from loadtest.mcp_client import McpClient, stream_events

TIMEOUT = (3.0, 10.0)  # connect, and the longest silence within a response
STREAM_READ_TIMEOUT = 40.0  # the GET stream is silent between updates; the server pings every 15 s
UPDATE_WAIT = 5.0
RESUME_ATTEMPTS = 3  # reconnections of a GET stream before the next task subscribes afresh

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
            self.session_lost = (
                self.measure(cap.OPEN_SESSION, lambda: cap.open_session(self.client)).failure is not None
            )
            self.on_new_session()
        return not self.session_lost

    def on_new_session(self) -> None:
        """Per-scenario state that belongs to a session."""

    def measure(self, name: str, operation: Callable[[], cap.Outcome]) -> cap.Outcome:
        """Run one operation and fire its Locust request event."""
        started = time.perf_counter()
        try:
            outcome = operation()
        except Exception as exc:  # every operation is counted: a client-side error is a failure too
            outcome = cap.Outcome(None, _client_error(exc))
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
        return outcome

    def call(self, name: str, operation: Callable[[McpClient], cap.Outcome]) -> cap.Outcome:
        """One capability on this user's session; without a session, the capability fails too."""
        if self.ensure_session():
            return self.measure(name, lambda: operation(self.client))
        return self.measure(name, lambda: cap.Outcome(None, "no session: initialize failed"))


def _client_error(exc: Exception) -> str:
    """A short, stable reason for an exception the client raised."""
    if isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
        return f"timeout: no answer within {TIMEOUT[1]:.0f} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "stream broken mid-response"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"client error: {type(exc).__name__}"


class BasicToolUser(McpUser):
    @tag("basic")
    @task
    def process_file(self) -> None:
        self.call(cap.BASIC, cap.basic_tool)


class SessionStateUser(McpUser):
    def on_new_session(self) -> None:
        self.expected = 1
        self.unanswered = 0  # failed increments the server may or may not have applied

    @tag("counter")
    @task
    def increment(self) -> None:
        outcome = self.call(cap.COUNTER, lambda client: cap.counter(client, self.expected, self.unanswered))
        if outcome.value is not None:  # resynchronise, so one lost or doubled increment counts once
            self.expected, self.unanswered = outcome.value + 1, 0
        else:
            self.unanswered += 1


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
    """Subscribes to a topic of its own, holds the GET stream in a greenlet, publishes on the topic,
    and waits to hear of it there (its own topic: another user's update cannot stand in for it)."""

    listener: gevent.Greenlet | None = None
    stream: requests.Response | None = None
    topics = itertools.count(1)

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.topic = f"user-{next(self.topics)}"
        self.published = itertools.count(1)

    def on_new_session(self) -> None:
        self.stop_listening()
        self.updates: Queue = Queue()

    @tag("resources")
    @task
    def publish_and_hear(self) -> None:
        self.call(cap.RESOURCE_UPDATES, lambda client: self.publish_and_wait())

    def publish_and_wait(self) -> cap.Outcome:
        if self.listener is None or self.listener.dead:
            subscribed = self.listen()
            if subscribed.failure:
                return subscribed
        while not self.updates.empty():
            self.updates.get_nowait()
        published = cap.publish(self.client, self.topic, f"update {next(self.published)}")
        if published.failure:
            return published
        try:
            self.updates.get(timeout=UPDATE_WAIT)
        except Empty:
            return cap.Outcome(published.instance, "update never arrived on the GET stream")
        return published

    def listen(self) -> cap.Outcome:
        subscribed = cap.subscribe(self.client, self.topic)
        if subscribed.failure:
            return subscribed
        self.stream = self.client.open_stream(read_timeout=STREAM_READ_TIMEOUT)
        if self.stream.status_code != 200:
            status, instance = self.stream.status_code, self.stream.headers.get("X-Mcp-Instance")
            self.stop_listening()
            self.session_lost = status == 404
            return cap.Outcome(instance, f"GET stream: HTTP {status}")
        self.listener = gevent.spawn(self.read_updates, self.stream)
        return subscribed

    def read_updates(self, stream: requests.Response) -> None:
        """Read updates; when the stream ends or breaks, resume it after the last event seen (the Redis
        store replays what was missed, from whichever instance serves the session by then)."""
        last_event_id = None
        for _ in range(RESUME_ATTEMPTS):
            with contextlib.suppress(requests.RequestException):
                for event_id, message in stream_events(stream):
                    last_event_id = event_id or last_event_id
                    if message.get("method") == "notifications/resources/updated":
                        self.updates.put(message)
            stream.close()
            with contextlib.suppress(requests.RequestException):
                stream = self.stream = self.client.open_stream(STREAM_READ_TIMEOUT, last_event_id)
                if stream.status_code == 200:
                    continue
            return  # the next task subscribes again

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.kill(block=True, timeout=5)  # it must stop reading before the stream is closed
            self.listener = None
        if self.stream is not None:  # closed here, not in the greenlet: it may never have started
            self.stream.close()
            self.stream = None

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
