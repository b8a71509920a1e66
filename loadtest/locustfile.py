"""Locust users, one per MCP capability, all speaking one MCP protocol through nginx.

    locust -f loadtest/locustfile.py --host http://localhost:8080 [--mcp-protocol 2026-07-28]

--mcp-protocol picks what every user speaks (also a field of the web UI's start form):
2025-11-25 (the default: initialize, one session per user, server requests mid-call, the GET
stream) or 2026-07-28 (no initialize and no sessions: sampling and elicitation as input-required
rounds, a counter handle from open_counter, a subscriptions/listen stream; session churn does
not run, having nothing to measure).

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

import itertools

from locust import events, tag, task

from loadtest.client import capabilities as cap
from loadtest.users import instances
from loadtest.users.base import McpUser, protocol_of
from loadtest.users.streams import GetStream, ListenStream

UPDATE_WAIT = 5.0

instances.install()


@events.test_start.add_listener
def _drop_scenarios_without_tasks(environment, **_: object) -> None:
    """With -T, keep only the classes that still have a task: Locust would spawn the others idle.
    Under 2026-07-28, drop the classes that need sessions too."""
    protocol = protocol_of(environment)
    keep = [user for user in environment.user_classes if user.tasks and user.measures_anything_under(protocol)]
    environment.user_classes[:] = keep or environment.user_classes


class BasicToolUser(McpUser):
    @tag("basic")
    @task
    def process_file(self) -> None:
        self.call(cap.BASIC, cap.basic_tool)


class SessionStateUser(McpUser):
    """Counts with increment: per session under 2025-11-25; under 2026-07-28 per counter handle, from
    open_counter at start and again whenever increment no longer knows the handle."""

    def on_new_session(self) -> None:
        self.handle: str | None = None
        self.restart_count()
        if self.modern:
            self.open_counter()

    def restart_count(self) -> None:
        self.expected = 1
        self.unanswered = 0  # failed increments the server may or may not have applied

    def open_counter(self) -> None:
        self.handle = self.measure(cap.OPEN_COUNTER, lambda: cap.open_counter(self.client)).handle
        self.restart_count()

    @tag("counter")
    @task
    def increment(self) -> None:
        if self.modern and self.handle is None:
            self.open_counter()
            if self.handle is None:
                self.measure(cap.COUNTER, lambda: cap.Outcome(None, "no counter handle: open_counter failed"))
                return
        outcome = self.call(
            cap.COUNTER, lambda client: cap.counter(client, self.expected, self.unanswered, self.handle)
        )
        if outcome.handle_lost:
            self.handle = None  # a lost counter: the next task opens a new one
        elif outcome.value is not None:  # resynchronise, so one lost or doubled increment counts once
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
    """Listens on a topic of its own (the GET stream after resources/subscribe under 2025-11-25, a
    subscriptions/listen stream under 2026-07-28), publishes on it, and waits to hear of it there
    (its own topic: another user's update cannot stand in for it)."""

    topics = itertools.count(1)

    def __init__(self, environment) -> None:
        super().__init__(environment)
        topic = f"user-{next(self.topics)}"
        self.stream = ListenStream(topic) if self.modern else GetStream(topic)
        self.published = itertools.count(1)

    def on_new_session(self) -> None:
        self.stream.stop()

    @tag("resources")
    @task
    def publish_and_hear(self) -> None:
        self.call(cap.RESOURCE_UPDATES, lambda client: self.publish_and_wait())

    def publish_and_wait(self) -> cap.Outcome:
        if not self.stream.alive:
            opened = self.stream.open(self.client)
            if opened.failure:
                self.session_lost = self.session_lost or self.stream.session_lost
                return opened
        self.stream.drain()
        published = cap.publish(self.client, self.stream.topic, f"update {next(self.published)}")
        if published.failure:
            return published
        if not self.stream.wait(UPDATE_WAIT):
            return cap.Outcome(published.instance, f"update never arrived on the {self.stream.name}")
        return published

    def on_stop(self) -> None:
        self.stream.stop()
        super().on_stop()


class SessionChurnUser(McpUser):
    """Opens and ends a whole session per task: the session table must not leak. 2026-07-28 has no
    sessions: that run drops this scenario."""

    capability = cap.SESSION_CHURN

    def on_start(self) -> None:
        pass  # every task brings its own session

    @tag("churn")
    @task
    def session_lifecycle(self) -> None:
        if self.measures_anything_under(self.protocol):  # else the one scenario left (-T churn): idle
            self.measure(self.capability, lambda: cap.session_churn(self.new_client()))
