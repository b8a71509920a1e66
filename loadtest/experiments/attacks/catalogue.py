"""The attacks, each one client at the rate it can, until told to stop. Each returns what it sent and what nginx
or the server answered it, as counts."""

from __future__ import annotations

import contextlib
import resource
import secrets
import select
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient, stream_events
from loadtest.client.modern import ModernClient
from loadtest.experiments.attacks.clients import Client, session_of

THREADS = 8
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    # The most a session keeps of its initialize (16 KiB): the largest session one request can make.
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "x" * 15_000, "version": "1"},
    },
}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass(frozen=True)
class Attack:
    name: str
    what: str  # the attacker's traffic, in words
    run: Callable[[str, Client, threading.Event], Counter[str]]


def _in_threads(count: int, work: Callable[[Counter[str]], None]) -> Counter[str]:
    """`work` in `count` threads, each counting into its own Counter; the sum."""
    counts = [Counter() for _ in range(count)]
    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts, Counter())


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def slow_uploads(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """40 uploads of 4.1 MB, each then holding back its last bytes, sending one every 2 s."""
    declared, sent = 4_150_000, 4_100_000
    head = (
        (
            f"POST /mcp HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {declared}\r\n"
        ).encode()
        + attacker.header_lines()
        + b"\r\n"
    )

    def upload(counts: Counter[str]) -> None:
        with socket.create_connection(_address(url), timeout=30, source_address=(attacker.source, 0)) as sock:
            counts["uploads"] += 1
            try:
                sock.sendall(head)
                if (status := _answer(sock, 0.5)) is None:  # or refused as its headers arrive
                    sock.sendall(b" " * sent)
                    while not stop.wait(2.0) and (status := _answer(sock, 0)) is None:
                        sock.sendall(b" ")
                counts[f"answered {status}" if status else "held to the end"] += 1
            except OSError:
                counts["cut off"] += 1

    return _in_threads(40, upload)


def _refused(why: str) -> str:
    """A refusal, by the bound that refused it."""
    if "the most one client may" in why:
        return "refused: the client's bound"
    if "the most it may" in why:
        return "refused: the server's bound"
    return f"failed: {why[:60]}"


def _answer(sock: socket.socket, wait: float) -> str | None:
    """The status of an answer that has begun to arrive within `wait` seconds, else None."""
    if not select.select([sock], [], [], wait)[0]:
        return None
    status = sock.recv(64).split(b" ")[1:2]
    return status[0].decode() if status else "nothing (closed)"


def _flood(url: str, attacker: Client, stop: threading.Event, send: Callable[[McpClient], int | str]) -> Counter[str]:
    def loop(counts: Counter[str]) -> None:
        client = McpClient(session_of(attacker), url, timeout=(5.0, 30.0))
        while not stop.is_set():
            with contextlib.suppress(Exception):
                counts[str(send(client))] += 1
                continue
            counts["error"] += 1

    return _in_threads(THREADS, loop)


def sessions(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """Opens sessions as fast as it can and never ends them, each keeping 15 KB of clientInfo."""

    def open_one(client: McpClient) -> int:
        return client.http.post(url, json=INITIALIZE, headers=HEADERS, timeout=30).status_code

    return _flood(url, attacker, stop, open_one)


def requests_per_second(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """Calls a tool in one session as fast as eight connections go."""

    def call(client: McpClient) -> int | str:
        if client.session_id is None:
            client.initialize()
        return client.call_tool("whoami").status

    return _flood(url, attacker, stop, call)


def counter_handles(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """Opens counter handles (2026-07-28) as fast as it can, and keeps them."""

    def open_one(client: McpClient) -> str:
        modern = ModernClient(client.http, url)
        outcome = cap.open_counter(modern)
        return "opened" if outcome.failure is None else _refused(outcome.failure)

    return _flood(url, attacker, stop, open_one)


def topics(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """Publishes on new topics as fast as it can."""

    def publish(client: McpClient) -> str:
        modern = ModernClient(client.http, url)
        outcome = cap.publish(modern, f"t{secrets.token_hex(6)}", "flood")
        return "published" if outcome.failure is None else _refused(outcome.failure)

    return _flood(url, attacker, stop, publish)


def big_answers(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """Sessions whose calls each get an answer of 60 KB: the model's completion, which the attacker writes, comes
    back in the tool's result (a session keeps the answers of its writes, at most 1 MiB; this read-only tool's
    are not kept)."""
    completion = {"role": "assistant", "content": {"type": "text", "text": "y" * 60_000}, "model": "attacker"}

    def call(client: McpClient) -> str:
        if client.session_id is None or client.next_id() % 16 == 0:  # a new session every 16 calls (1 MiB kept)
            client.session_id = None
            client.initialize()
        exchange = client.call_tool("analyze_with_ai", {"text": "fill"}, answer=lambda request: completion)
        return "answered" if exchange.status == 200 and cap.judge(exchange) is None else f"failed: {exchange.status}"

    return _flood(url, attacker, stop, call)


def listen_streams(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """Opens 2026-07-28 listen streams and holds them: 400, over nginx's round-robin of three instances."""
    held, counts = [], Counter()
    for _ in range(400):
        if stop.is_set():
            break
        client = ModernClient(session_of(attacker), url, timeout=(5.0, 30.0))
        try:
            response = client.listen([cap.updates_uri("attack")], read_timeout=60)
            events = stream_events(response)  # held with the response: the stream lives while both do
            message = next(events)[1]
            counts["held" if "error" not in message else _refused(message["error"]["message"])] += 1
            held.append((response, events))
        except Exception as exc:
            counts[f"error {exc.__class__.__name__}"] += 1
    stop.wait()
    for response, _ in held:
        response.close()
    return counts


def slow_headers(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    """3,000 connections, each sending its request line and then a header byte every 5 s (slowloris)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    socks, counts = [], Counter()
    for _ in range(3000):
        try:
            sock = socket.create_connection(_address(url), timeout=5, source_address=(attacker.source, 0))
            sock.sendall(b"POST /mcp HTTP/1.1\r\n" + attacker.header_lines() + b"X-a: ")
            socks.append(sock)
            counts["connections"] += 1
        except OSError as exc:
            counts[f"refused {exc.__class__.__name__}"] += 1
    while not stop.wait(5.0):
        for sock in list(socks):
            try:
                sock.sendall(b"a")
            except OSError:
                counts["cut off by nginx"] += 1
                socks.remove(sock)
    for sock in socks:
        sock.close()
    return counts


ATTACKS = (
    Attack("slow uploads", "40 uploads of 4.1 MB, each then sending a byte every 2 s", slow_uploads),
    Attack("session flood", "8 connections opening sessions of 15 KB of clientInfo, never ended", sessions),
    Attack("request flood", "8 connections calling a tool in one session", requests_per_second),
    Attack("counter handles", "8 connections opening 2026-07-28 counter handles", counter_handles),
    Attack("topics", "8 connections publishing on new topics", topics),
    Attack(
        "big answers", "8 connections, each call answered with 60 KB it wrote (a new session every 16)", big_answers
    ),
    Attack("listen streams", "400 2026-07-28 listen streams held", listen_streams),
    Attack("slow headers", "3,000 connections sending a header byte every 5 s", slow_headers),
)
