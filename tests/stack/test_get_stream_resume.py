"""A session's GET stream outlives its instance, with real processes (redis-server, three uvicorn instances, nginx
round-robin, the Redis store): while updates of its subscriptions and changes of the tool list are published
without pause, the instance holding the session is SIGKILLed, or every instance is restarted in turn (SIGTERM,
drained). The client resumes its stream with Last-Event-ID wherever nginx sends it, and hears every update and
every list change exactly once: none lost while no instance held the session, none twice. A stream that breaks
before its first update resumes from the id its first event carries."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter

import pytest
import requests

from loadtest.client import careful
from loadtest.client.legacy import McpClient, stream_events
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES
from tests.utils.clients import session, wait_for

TOPICS = ("topic://a", "topic://b")
TOOLS_CHANGED = "notifications/tools/list_changed"
UPDATED = "notifications/resources/updated"
ROUNDS_AROUND = 10  # publications before the fault, and after it
PACE_SECONDS = 0.2  # between publications during the fault: a session hears the last 64 events of each it missed


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = {"preset": "stateful-sse", "store": "redis", "server": "tests.servers.writer"}
    with Stack(run_dir=tmp_path_factory.mktemp("resume"), port=free_port(), **options) as stack:
        yield stack


class Listener:
    """A client's GET stream, resumed after every break with the last event id it saw, counting what it hears."""

    def __init__(self, client: McpClient) -> None:
        self.client = client
        self.heard: Counter[str] = Counter()  # a resource's URI, or TOOLS_CHANGED
        self.resumed = 0
        self._stop = threading.Event()
        self._last_event_id: str | None = None
        self._thread = threading.Thread(target=self._listen)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(requests.RequestException):
                stream = self.client.open_stream(read_timeout=2, last_event_id=self._last_event_id)
                if stream.status_code == 200:
                    with stream:
                        for event_id, message in stream_events(stream, primes=True):
                            self._last_event_id = event_id or self._last_event_id
                            if message.get("method") == UPDATED:
                                self.heard[message["params"]["uri"]] += 1
                            elif message.get("method") == TOOLS_CHANGED:
                                self.heard[TOOLS_CHANGED] += 1
                            if self._stop.is_set():
                                return
            self.resumed += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Publisher:
    """Publishes without pause through nginx, a careful client (a failed call sent again with its id)."""

    def __init__(self, url: str) -> None:
        self.client = session(url)
        self.published: Counter[str] = Counter()

    def round(self) -> None:
        for topic in TOPICS:
            self._call("announce_update", {"uri": topic}, topic)
        self._call("announce_tools_changed", {}, TOOLS_CHANGED)

    def _call(self, tool: str, arguments: dict, counted: str) -> None:
        call = careful.call_tool(self.client, tool, arguments)
        assert call.failure is None, call
        self.published[counted] += 1


def listening(stack: Stack) -> tuple[Listener, Publisher]:
    """A session subscribed to TOPICS and listening on its GET stream, opened on app1; a publisher."""
    subscriber = session(stack.instance_url("app1"))
    for topic in TOPICS:
        assert subscriber.request("resources/subscribe", {"uri": topic}).result == {}
    subscriber.url = stack.url  # from now on through nginx, wherever it sends each request
    listener, publisher = Listener(subscriber), Publisher(stack.url)
    wait_for(lambda: publisher.round() or listener.heard == publisher.published, timeout=10)  # the stream is live
    return listener, publisher


def heard_all(listener: Listener, publisher: Publisher) -> None:
    """Every publication heard, once: waited for a while, then asserted exactly."""
    with contextlib.suppress(AssertionError):
        wait_for(lambda: listener.heard == publisher.published, timeout=15, interval=0.1)
    listener.stop()
    assert listener.heard == publisher.published, (listener.heard, publisher.published)


def test_a_session_whose_instance_was_killed_hears_every_update_and_list_change_once(stack):
    listener, publisher = listening(stack)
    for _ in range(ROUNDS_AROUND):
        publisher.round()
    killer = threading.Thread(target=stack.restart, args=("app1", signal.SIGKILL))
    killer.start()
    while killer.is_alive():  # publishing on while the session has no live owner, until app1 is back
        publisher.round()
        time.sleep(PACE_SECONDS)  # the load's pace, not a wait for readiness
    for _ in range(ROUNDS_AROUND):
        publisher.round()
    heard_all(listener, publisher)
    assert listener.resumed >= 1  # its stream broke with app1, and was resumed elsewhere


def test_a_rolling_restart_loses_no_update_and_no_list_change(stack):
    listener, publisher = listening(stack)
    for name in INSTANCES:
        restart = threading.Thread(target=stack.restart, args=(name,))
        restart.start()
        while restart.is_alive():
            publisher.round()
            time.sleep(PACE_SECONDS)  # the load's pace, not a wait for readiness
    for _ in range(ROUNDS_AROUND):
        publisher.round()
    heard_all(listener, publisher)
    assert listener.resumed >= 1


def test_a_stream_that_breaks_before_its_first_update_resumes_from_where_it_began(stack):
    """A new GET stream begins with an event that has only an id (the session's latest): a client whose stream
    breaks before any update resumes with that id on another instance and hears what was published meanwhile
    (without it, a new stream would replay nothing)."""
    subscriber = session(stack.instance_url("app1"))
    assert subscriber.request("resources/subscribe", {"uri": TOPICS[0]}).result == {}
    with subscriber.open_stream(read_timeout=5) as stream:
        primed_id, primed = next(stream_events(stream, primes=True))
    assert primed == {} and primed_id is not None
    publisher = session(stack.url)
    for _ in range(3):
        assert careful.call_tool(publisher, "announce_update", {"uri": TOPICS[0]}).failure is None
    subscriber.url = stack.instance_url("app2")  # relays the stream to app1, which holds the session
    heard = 0
    with subscriber.open_stream(read_timeout=5, last_event_id=primed_id) as resumed:
        for _, message in stream_events(resumed):
            heard += message.get("method") == UPDATED
            if heard == 3:
                break
    assert heard == 3
