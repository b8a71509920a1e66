"""Where a resource-updates user hears of its topic's updates, read in a greenlet of its own:
the 2025-11-25 GET stream after resources/subscribe, or a 2026-07-28 subscriptions/listen stream.

`open` (again whenever `alive` is False), `drain` before publishing, `wait` for the update, `stop`.
"""

from __future__ import annotations

import contextlib

import gevent
import requests
from gevent.event import Event
from gevent.queue import Empty, Queue

from loadtest.client import capabilities as cap
from loadtest.client.legacy import INSTANCE_HEADER, McpClient, stream_events, stream_messages
from loadtest.client.modern import ModernClient

STREAM_READ_TIMEOUT = 40.0  # the streams are silent between updates; the server pings every 15 s
RESUME_ATTEMPTS = 3  # failed resumes of a GET stream in a row before the next task subscribes afresh
RESUME_BACKOFF = 0.2  # seconds between them
ACKNOWLEDGE_WAIT = 5.0  # for a listen stream's notifications/subscriptions/acknowledged
UPDATED = "notifications/resources/updated"


class UpdateStream:
    """One topic's `notifications/resources/updated`, put on a queue by the reading greenlet."""

    name = "stream"
    session_lost = False  # GetStream: the GET stream's 404 says the session is gone

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.uri = cap.updates_uri(topic)
        self.updates: Queue = Queue()
        self.reader: gevent.Greenlet | None = None
        self.response: requests.Response | None = None

    @property
    def alive(self) -> bool:
        return self.reader is not None and not self.reader.dead

    def drain(self) -> None:
        while not self.updates.empty():
            self.updates.get_nowait()

    def wait(self, timeout: float) -> bool:
        """Whether an update arrived within `timeout` seconds."""
        try:
            self.updates.get(timeout=timeout)
        except Empty:
            return False
        return True

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.kill(block=True, timeout=5)  # it must stop reading before the stream is closed
            self.reader = None
        if self.response is not None:  # closed here, not in the greenlet: it may never have started
            self.response.close()
            self.response = None
        self.drain()


class GetStream(UpdateStream):
    """2025-11-25: resources/subscribe, then the session's GET stream, resumed after a break."""

    name = "GET stream"

    def open(self, client: McpClient) -> cap.Outcome:
        self.stop()
        self.session_lost = False
        subscribed = cap.subscribe(client, self.topic)
        if subscribed.failure:
            return subscribed
        self.response = client.open_stream(read_timeout=STREAM_READ_TIMEOUT)
        if self.response.status_code != 200:
            status, instance = self.response.status_code, self.response.headers.get(INSTANCE_HEADER)
            failure = f"GET stream: HTTP {status}{_error_message(stream_messages(self.response))}"
            self.stop()
            self.session_lost = status == 404
            return cap.Outcome(instance, failure)
        self.reader = gevent.spawn(self._read, client, self.response)
        return subscribed

    def _read(self, client: McpClient, stream: requests.Response) -> None:
        """Read updates; when the stream ends or breaks, resume it after the last event seen (the Redis
        store replays what was missed, from whichever instance serves the session by then), as often as it
        breaks; after RESUME_ATTEMPTS resumes in a row that fail, or a 404 (the session is gone), stop."""
        last_event_id, failed = None, 0
        while failed < RESUME_ATTEMPTS:
            with contextlib.suppress(requests.RequestException):
                for event_id, message in stream_events(stream, primes=True):
                    last_event_id = event_id or last_event_id
                    if message.get("method") == UPDATED:
                        self.updates.put(message)
            stream.close()
            try:
                stream = self.response = client.open_stream(STREAM_READ_TIMEOUT, last_event_id)
            except requests.RequestException:
                failed += 1
                gevent.sleep(RESUME_BACKOFF)
                continue
            if stream.status_code == 404:
                return  # the session is gone: the next task opens another
            failed = 0 if stream.status_code == 200 else failed + 1
            if stream.status_code != 200:
                stream.close()
                gevent.sleep(RESUME_BACKOFF)
        # the next task subscribes again


class ListenStream(UpdateStream):
    """2026-07-28: one subscriptions/listen stream for the topic's uri, acknowledged before use. There is
    no replay: when it ends or breaks, the next task listens afresh."""

    name = "listen stream"

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.acknowledged = Event()
        self.refusal: str | None = None  # why the server ended the stream before acknowledging it

    def open(self, client: ModernClient) -> cap.Outcome:
        self.stop()
        self.acknowledged, self.refusal = Event(), None
        self.response = client.listen([self.uri], STREAM_READ_TIMEOUT)
        status, instance = self.response.status_code, self.response.headers.get(INSTANCE_HEADER)
        if status != 200:
            failure = f"subscriptions/listen: HTTP {status}{_error_message(stream_messages(self.response))}"
            self.stop()
            return cap.Outcome(instance, failure)
        self.reader = gevent.spawn(self._read, self.response)
        gevent.wait([self.acknowledged, self.reader], count=1, timeout=ACKNOWLEDGE_WAIT)
        if not self.acknowledged.is_set():
            failure = self.refusal or (
                "subscriptions/listen: ended before its acknowledgment"
                if self.reader.dead
                else f"subscriptions/listen: no acknowledgment within {ACKNOWLEDGE_WAIT:.0f} s"
            )
            self.stop()
            return cap.Outcome(instance, failure)
        return cap.Outcome(instance)

    def _read(self, stream: requests.Response) -> None:
        with contextlib.suppress(requests.RequestException):
            for _, message in stream_events(stream):
                method = message.get("method")
                if method == "notifications/subscriptions/acknowledged":
                    self.acknowledged.set()
                elif method == UPDATED and message.get("params", {}).get("uri") == self.uri:
                    self.updates.put(message)
                elif method is None:  # the listen request's response: the server ended the subscription
                    if not self.acknowledged.is_set():
                        self.refusal = f"subscriptions/listen: refused{_error_message([message])}"
                    return


def _error_message(messages) -> str:
    """': <JSON-RPC error message>' from the first error among `messages`, or ''."""
    for message in messages:
        error = message.get("error") if isinstance(message.get("error"), dict) else None
        if error is not None:
            return f": JSON-RPC {error.get('code')}: {' '.join(str(error.get('message', '')).split())[:100]}"
    return ""
