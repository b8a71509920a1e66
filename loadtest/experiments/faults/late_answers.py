"""A scorecard row: the instance that owns sessions is SIGKILLed while each waits for a user's answer to an
elicitation, and the answers arrive after another instance took the sessions over.

Each session asks to confirm "delete all files #i" on the owner, and the user takes their time. The owner dies.
The session asks, on the new owner, to confirm "transfer #i", which the user declines, but only after the late
"yes" to the first question has been sent. A late answer must resolve nothing (the question it answers is gone),
the transfer must be declined, and the first call, sent again with its id as a careful client does, asks again
and is confirmed. An answer that resolved another question, or a result for another action, is a crossing.
"""

from __future__ import annotations

import signal
import threading
import time

import requests

from loadtest.client import careful
from loadtest.client.legacy import McpClient
from loadtest.experiments.faults.load import Tally
from loadtest.experiments.matrix.expectations import VICTIM
from loadtest.harness.stack import Stack

YES = {"action": "accept", "content": {"confirm": True}}
QUESTION_TIMEOUT = 30.0
OTHER_IDS = 1_000  # the second client of a session numbers its requests from here (an id is used once)


class _Session:
    """One session, its first question held until the owner has been replaced."""

    def __init__(self, stack: Stack, number: int) -> None:
        self.number = number
        self.client = McpClient(requests.Session(), stack.instance_url(VICTIM))  # the victim owns the session
        self.asked: list[dict] = []
        self.release = threading.Event()
        self.late_status: int | None = None  # how the server took the late answer (202: it resolved a question)
        self.first: careful.CarefulCall | None = None
        self.started = time.monotonic()

    def hold_then_yes(self, question: dict) -> dict:
        self.asked.append(question)
        self.release.wait(timeout=QUESTION_TIMEOUT)
        return YES

    def confirm_delete(self) -> None:
        action = {"action": f"delete all files #{self.number}"}
        self.first = careful.call_tool(self.client, "confirm_action", action, answer=self.hold_then_yes)

    def transfer(self, url: str) -> careful.CarefulCall:
        """The second call, through `url`: before declining, the user's late yes to the first question goes."""
        other = McpClient(requests.Session(), url, first_id=OTHER_IDS)
        other.session_id, other.protocol_version = self.client.session_id, self.client.protocol_version

        def late_yes_then_decline(question: dict) -> dict:
            self.late_status = other.respond(self.asked[0]["id"], YES).status
            return {"action": "decline"}

        action = {"action": f"transfer #{self.number}"}
        return careful.call_tool(other, "confirm_action", action, answer=late_yes_then_decline)


def late_answers_after_takeover(stack: Stack, sessions: int) -> Tally:
    tally = Tally()
    held = [_Session(stack, number) for number in range(sessions)]
    for session in held:
        session.client.initialize()
        session.client.url = stack.url  # on through nginx, as a client goes on
    firsts = [threading.Thread(target=session.confirm_delete) for session in held]
    for thread in firsts:
        thread.start()
    deadline = time.monotonic() + QUESTION_TIMEOUT
    while not all(session.asked for session in held) and time.monotonic() < deadline:
        time.sleep(0.05)
    stack.restart(VICTIM, signal.SIGKILL)
    for session in held:
        started = time.monotonic()
        transfer = session.transfer(stack.url)
        tally.count(transfer, started)
        _judge(tally, transfer, f"declined: transfer #{session.number}")
        if session.late_status == 202:
            tally.crossed += 1  # the late yes was taken: it answered a question the new owner asked
        tally.sessions_lost += transfer.session_lost
        session.release.set()
    for thread in firsts:
        thread.join(timeout=2 * careful.RETRY_SECONDS)
    for session in held:
        if session.first is None:  # still trying: counted as failed
            tally.calls += 1
            tally.failed["not answered in time"] += 1
            continue
        tally.count(session.first, session.started)
        _judge(tally, session.first, f"confirmed: delete all files #{session.number}")
    return tally


def _judge(tally: Tally, call: careful.CarefulCall, expected: str) -> None:
    if call.failure is not None:
        return  # counted as failed already
    content = (call.exchange.result or {}).get("content") or [{}]
    text = content[0].get("text")
    if text != expected:
        tally.crossed += 1
        tally.failed[f"wrong answer: {text!r}"] += 1
