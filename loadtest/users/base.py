"""The abstract Locust user the scenarios in locustfile.py share: the `--mcp-protocol` option, the
client of that protocol, and one Locust request per MCP operation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import requests
from locust import User, between, events
from locust.clients import HttpSession
from locust.event import EventHook

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.client.modern import ModernClient

TIMEOUT = (3.0, 10.0)  # connect, and the longest silence within a response


@events.init_command_line_parser.add_listener
def _add_protocol_argument(parser) -> None:
    parser.add_argument(
        "--mcp-protocol",
        choices=cap.PROTOCOLS,
        default=cap.LEGACY,
        help="MCP protocol every user speaks: 2025-11-25 (initialize, sessions) or 2026-07-28 (no sessions)",
    )


def protocol_of(environment) -> str:
    """The run's --mcp-protocol (2025-11-25 where Locust runs without parsed options)."""
    return getattr(environment.parsed_options, "mcp_protocol", None) or cap.LEGACY


class McpUser(User):
    """Holds one MCP client (and, under 2025-11-25, its session); reports every operation as one
    Locust request."""

    abstract = True
    wait_time = between(0.05, 0.15)
    capability: str | None = None  # the one capability a scenario measures, where it measures one only

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.protocol = protocol_of(environment)
        # Our own session with a silent hook: the HTTP requests inside one operation are not counted.
        self.http = HttpSession(base_url=self.host, request_event=EventHook(), user=self)
        self.client = self.new_client()
        self.session_lost = True

    @property
    def modern(self) -> bool:
        return self.protocol == cap.MODERN

    @classmethod
    def measures_anything_under(cls, protocol: str) -> bool:
        """False for a scenario whose capability needs sessions, under 2026-07-28 (which has none)."""
        return protocol == cap.LEGACY or cls.capability not in cap.SESSIONS_ONLY

    def new_client(self) -> McpClient | ModernClient:
        url = self.host.rstrip("/") + "/mcp"
        if self.modern:
            return ModernClient(self.http, url, timeout=TIMEOUT)
        return McpClient(self.http, url, timeout=TIMEOUT)

    def on_start(self) -> None:
        self.ensure_session()

    def on_stop(self) -> None:
        if self.client.session_id is not None:
            with contextlib.suppress(requests.RequestException):  # the run is ending; nobody reads this
                self.client.close()

    def ensure_session(self) -> bool:
        """Open a session when there is none or the last one was lost (the spec: re-initialize on 404).
        Under 2026-07-28 there is nothing to open and nothing to lose: every request stands alone."""
        if self.session_lost:
            if self.modern:
                self.session_lost = False
            else:
                self.client = self.new_client()
                self.session_lost = (
                    self.measure(cap.OPEN_SESSION, lambda: cap.open_session(self.client)).failure is not None
                )
            self.on_new_session()
        return not self.session_lost

    def on_new_session(self) -> None:
        """Per-scenario state that belongs to a session (under 2026-07-28: set up once, at start)."""

    def measure(self, name: str, operation: Callable[[], cap.Outcome]) -> cap.Outcome:
        """Run one operation and fire its Locust request event."""
        started = time.perf_counter()
        outcome = cap.attempt(operation, TIMEOUT[1])  # every operation is counted: a client error is a failure too
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="MCP",
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=RuntimeError(outcome.failure) if outcome.failure else None,
            context={"instance": outcome.instance},
        )
        if outcome.session_lost and not self.modern:
            self.session_lost = True
        return outcome

    def call(self, name: str, operation: Callable[[cap.Client], cap.Outcome]) -> cap.Outcome:
        """One capability on this user's session; without a session, the capability fails too."""
        if self.ensure_session():
            return self.measure(name, lambda: operation(self.client))
        return self.measure(name, lambda: cap.Outcome(None, "no session: initialize failed"))
