"""Every hostile case: what it sends, through nginx, and the answer it got. A case reads its configuration
(`Target`) and returns one Answer; whether the instances still served others is checked after it."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from loadtest.client.legacy import LEGACY_VERSION
from loadtest.client.modern import MODERN_VERSION
from loadtest.experiments.hostile.wire import Answer, Wire, call_body, headers, initialize_body

NESTING = 100_000
BIG_BODY = 5 * 1024 * 1024  # past nginx's and the SDK's 4 MiB
BIG_HEADER = 16 * 1024  # past nginx's 8 KiB header buffers
SLOW_CLIENT = "127.0.0.9"  # the addresses of the cases that hit a per-client bound, apart from the others'
FLOOD_CLIENT = "127.0.0.10"
INSTANCES = 3


@dataclass
class Target:
    """One configuration behind nginx: who may call it (bearer tokens of the run's key) and its bounds."""

    wire: Wire
    preset: str
    tokens: dict[str, str]  # subject -> token: alice, bob, and one for another audience
    sessions_per_principal: int
    requests_per_second: int
    state_ttl: float
    stateful: bool = field(init=False)

    def __post_init__(self) -> None:
        self.stateful = self.preset.startswith("stateful")

    def open(self, subject: str = "alice", source: str = "127.0.0.1") -> Answer:
        """initialize (and, opened, `notifications/initialized`) as `subject`."""
        opened = self.wire.send(initialize_body(), headers(self.tokens[subject]), source=source)
        if opened.session_id:
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            self.wire.send(initialized, headers(self.tokens[subject], opened.session_id, LEGACY_VERSION), source=source)
        return opened

    def close(self, session_id: str, subject: str = "alice", source: str = "127.0.0.1") -> Answer:
        """DELETE the session, as `subject`."""
        return self.wire.send(
            None, headers(self.tokens[subject], session_id, LEGACY_VERSION), method="DELETE", source=source
        )

    def modern(
        self, tool: str, arguments: dict, subject: str = "alice", *, source: str = "127.0.0.1", **params
    ) -> Answer:
        """A 2026-07-28 tools/call as `subject`, from `source`; `params` go beside the name and arguments."""
        body = call_body(tool, arguments, MODERN_VERSION, **params)
        names = {"Mcp-Method": "tools/call", "Mcp-Name": tool}
        return self.wire.send(body, headers(self.tokens[subject], None, MODERN_VERSION, **names), source=source)

    def in_session(self, body: dict, session_id: str | None, subject: str = "alice", **extra: str) -> Answer:
        return self.wire.send(body, headers(self.tokens[subject], session_id, LEGACY_VERSION, **extra))


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Target], Answer]


def _raw(body: bytes, **extra: str) -> Callable[[Target], Answer]:
    return lambda t: t.wire.send(body, headers(t.tokens["alice"], **extra))


def _batch(t: Target) -> Answer:
    return t.wire.send([initialize_body(0), {"jsonrpc": "2.0", "id": 1, "method": "ping"}], headers(t.tokens["alice"]))


def _session_id(t: Target, session_id: str) -> Answer:
    return t.in_session(call_body("whoami", {}), session_id)


def _other_principals_session(t: Target) -> Answer:
    opened = t.open("alice")
    return t.in_session(call_body("increment", {}), opened.session_id, subject="bob")


def _headers_disagree(header: str, value: str) -> Callable[[Target], Answer]:
    def run(t: Target) -> Answer:
        names = {"Mcp-Method": "tools/call", "Mcp-Name": "whoami", header: value}
        return t.wire.send(
            call_body("whoami", {}, MODERN_VERSION), headers(t.tokens["alice"], None, MODERN_VERSION, **names)
        )

    return run


def _confirmation(t: Target) -> tuple[dict, str]:
    asked = t.modern("confirm_action", {"action": "deploy"}).body["result"]
    answers = {key: {"action": "accept", "content": {"confirm": True}} for key in asked["inputRequests"]}
    return answers, asked["requestState"]


def _tampered_state(t: Target) -> Answer:
    answers, state = _confirmation(t)
    tampered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    return t.modern("confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=tampered)


def _replayed_state(t: Target) -> Answer:
    answers, state = _confirmation(t)
    first = t.modern("confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=state)
    assert first.error == "ok", first
    return t.modern("confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=state)


def _expired_state(t: Target) -> Answer:
    answers, state = _confirmation(t)
    time.sleep(t.state_ttl + 1)  # the state's lifetime is the case itself, not a wait for readiness
    return t.modern("confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=state)


def _other_principals_state(t: Target) -> Answer:
    answers, state = _confirmation(t)
    return t.modern("confirm_action", {"action": "deploy"}, "bob", inputResponses=answers, requestState=state)


def _path(path: str) -> Callable[[Target], Answer]:
    return lambda t: t.modern("process_file", {"path": path, "operation": "count-lines"})


def _slow_client(t: Target) -> Answer:
    """Headers, 10 of the 100 body bytes promised, then nothing: nginx must end it, alone."""
    started = time.monotonic()
    with socket.create_connection((t.wire.host, t.wire.port), timeout=30, source_address=(SLOW_CLIENT, 0)) as sock:
        request = (
            f"POST {t.wire.path} HTTP/1.1\r\nHost: {t.wire.host}:{t.wire.port}\r\n"
            f"Authorization: Bearer {t.tokens['alice']}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n" + '{"jsonrpc"'
        )
        sock.sendall(request.encode())
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            return Answer(None, "no answer within 30 s", time.monotonic() - started)
    seconds = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    if not status_line.startswith("HTTP/"):
        return Answer(None, f"nginx closed the connection after {seconds:.0f} s, answering nothing", seconds)
    return Answer(int(status_line.split()[1]), f"nginx answered after {seconds:.0f} s", seconds)


def _many_sessions(t: Target) -> Answer:
    """The cap is per instance and new sessions go round-robin: past it on all three."""
    answers = [t.open("bob") for _ in range(t.sessions_per_principal * INSTANCES + 1)]
    return next((a for a in answers if a.status == 429), answers[-1])


def _two_get_streams(t: Target) -> Answer:
    opened = t.open("alice")
    first = t.wire.connect()
    try:
        first.request("GET", t.wire.path, headers=headers(t.tokens["alice"], opened.session_id, LEGACY_VERSION))
        first.getresponse()  # the stream's headers: it is open from here on
        return t.wire.send(None, headers(t.tokens["alice"], opened.session_id, LEGACY_VERSION), method="GET")
    finally:
        first.close()


def _flood(t: Target) -> Answer:
    count = t.requests_per_second * 3  # past the rate and its burst, from one address
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: t.wire.send(initialize_body(), headers(), source=FLOOD_CLIENT), range(count)))
    refused = [a for a in answers if a.status == 429]
    return refused[0] if refused else answers[-1]


CASES = (
    Case("malformed JSON", _raw(b'{"jsonrpc": "2.0", "id": 1,')),
    Case(f"body of {BIG_BODY // 1024 // 1024} MiB", _raw(b"[" + b" " * BIG_BODY + b"]")),
    Case(f"JSON nested {NESTING:,} deep", _raw(b"[" * NESTING + b"]" * NESTING)),
    Case("a batch (JSON array)", _batch),
    Case(
        "Content-Type: text/plain",
        lambda t: t.wire.send(initialize_body(), headers(t.tokens["alice"], **{"Content-Type": "text/plain"})),
    ),
    Case("Accept: text/html", lambda t: t.wire.send(initialize_body(), headers(t.tokens["alice"], Accept="text/html"))),
    Case("no bearer token", lambda t: t.wire.send(initialize_body(), headers())),
    Case("a token for another audience", lambda t: t.wire.send(initialize_body(), headers(t.tokens["elsewhere"]))),
    Case("unknown session id", lambda t: _session_id(t, "app1." + secrets.token_hex(16))),
    Case("forged session id (another instance's prefix)", lambda t: _session_id(t, "app2.forged")),
    Case(f"session id of {BIG_HEADER // 1024} KiB", lambda t: _session_id(t, "app1." + "a" * BIG_HEADER)),
    Case("another principal's session id", _other_principals_session),
    Case("Mcp-Method disagrees with the body", _headers_disagree("Mcp-Method", "tools/list")),
    Case("Mcp-Name disagrees with the body", _headers_disagree("Mcp-Name", "increment")),
    Case(
        "unsupported protocol version",
        lambda t: t.wire.send(initialize_body(), headers(t.tokens["alice"], None, "1999-01-01")),
    ),
    Case("tampered requestState", _tampered_state),
    Case("replayed requestState (a side effect)", _replayed_state),
    Case("another principal's requestState", _other_principals_state),
    Case("expired requestState", _expired_state),
    Case("path traversal (../../etc/passwd)", _path("../../etc/passwd")),
    Case("absolute path (/etc/shadow)", _path("/etc/shadow")),
    Case("NUL byte in the path", _path("poem.txt\x00.md")),
    Case("slow client (body never finished)", _slow_client),
    Case("one principal, many sessions", _many_sessions),
    Case("a second GET stream on a session", _two_get_streams),
    Case("one address, a flood of requests", _flood),
)
