"""What opening sessions may cost: the initialize params a session keeps as long as it lives, and how many
sessions one client may hold: a principal (authentication on) or a client address (off).

A slot is reserved before the SDK opens the session and becomes the session once it is answered, so requests
racing to open sessions for one client cannot pass the bound together. With the Redis store the count is the
cluster's (a sorted set per client in Redis, reserved in one script); with the memory store, this instance's.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_cluster.http.clients import client_of
from mcp_cluster.http.messages import (
    FORWARD_HEADER,
    MAX_BODY_BYTES,
    PROTOCOL_VERSION_HEADER,
    SESSION_ID_HEADER,
    ClientGone,
    Refused,
    header,
    parse_json,
    read_body,
    replay,
    send_error,
)
from mcp_cluster.shared import keys
from mcp_cluster.shared.functions import ALLOW_OOM, RedisFunction
from mcp_cluster.shared.redis import RedisUnavailable, applied_once, run_function, run_once
from mcp_cluster.shared.runs import DID_NOT_RUN, NOT_RUN

log = logging.getLogger(__name__)

# What a session keeps of its initialize for its whole life (the SDK, and a takeover's rebuild, need no more).
KEPT_PARAMS = ("protocolVersion", "capabilities", "clientInfo")
MAX_OPENING_BYTES = 16 * 1024  # of them: a few hundred bytes from the SDKs' clients
PENDING_SECONDS = 60.0  # a reservation whose initialize never ended frees its slot after this long
KEPT_SECONDS = 24 * 3600.0  # a client's count in Redis outlives its last open by this long

# KEYS[1]: the client's sorted set (sessions at score 0, reservations at their expiry in ms). ARGV: the limit, the
# reservation, the session records' key prefix, how long a reservation holds (ms), how long the set is kept (ms).
# Ended sessions (their record gone) and expired reservations are dropped first; then a slot is taken, or none.
_RESERVE = applied_once("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], 1, now)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], 0, 0)) do
  if redis.call('EXISTS', ARGV[3] .. id) == 0 then redis.call('ZREM', KEYS[1], id) end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return nothing_written(false) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return true
""")
# The reservation ARGV[1] became the session ARGV[2] (or, without ARGV[2], was let go).
# A full Redis still settles: a member only changes its name (a reservation's becomes its session's).
_SETTLE = RedisFunction(
    """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] then redis.call('ZADD', KEYS[1], 0, ARGV[2]) redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
""",
    flags=(ALLOW_OOM,),
)


@dataclass(frozen=True)
class Client:
    """Who a session is counted against, and how many it may hold."""

    key: str  # "principal:<hash>" or "address:<address>" (an IPv6 address as its /64)
    limit: int
    setting: str  # the setting that sets `limit`
    words: str  # "this principal", "this client address"


class SessionCounts(Protocol):
    def scope(self) -> str: ...  # "on this instance", or "" where the count is the cluster's

    async def reserve(self, client: Client) -> str | None: ...  # a reservation, or None: the client holds `limit`

    async def settle(self, client: Client, reservation: str, session_id: str | None) -> None: ...


class MemorySessionCounts:
    """This instance's count: the sessions it holds (`held`) and the reservations of initializes under way."""

    def __init__(self, held: Callable[[str], bool]) -> None:
        self._held = held
        self._sessions: defaultdict[str, set[str]] = defaultdict(set)
        self._pending: Counter[str] = Counter()

    def scope(self) -> str:
        return " on this instance"

    async def reserve(self, client: Client) -> str | None:
        sessions = self._sessions[client.key]
        sessions.difference_update([session_id for session_id in sessions if not self._held(session_id)])
        if len(sessions) + self._pending[client.key] >= client.limit:
            if not sessions:
                del self._sessions[client.key]
            return None
        self._pending[client.key] += 1  # in the same step as the count: no await between
        return secrets.token_hex(8)

    async def settle(self, client: Client, reservation: str, session_id: str | None) -> None:
        self._pending[client.key] -= 1
        if not self._pending[client.key]:
            del self._pending[client.key]
        if session_id is not None:
            self._sessions[client.key].add(session_id)
        elif not self._sessions[client.key]:
            del self._sessions[client.key]


class RedisSessionCounts:
    """The cluster's count, in Redis: every instance reserves in the same sorted set."""

    def __init__(self, redis: Redis) -> None:
        self._reserve = _RESERVE.bound_to(redis)
        self._settle = _SETTLE.bound_to(redis)

    def scope(self) -> str:
        return ""

    async def reserve(self, client: Client) -> str | None:
        reservation = f"pending:{secrets.token_hex(8)}"
        counts = [keys.CLIENT_SESSIONS.format(client.key)]
        args = [client.limit, reservation, keys.SESSION.format(""), int(PENDING_SECONDS * 1000), _kept_ms()]
        return reservation if await run_once(self._reserve, counts, args, of_the_call=False) else None

    async def settle(self, client: Client, reservation: str, session_id: str | None) -> None:
        counts = [keys.CLIENT_SESSIONS.format(client.key)]
        await run_function(self._settle, counts, [reservation, *([session_id, _kept_ms()] if session_id else [])])


def _kept_ms() -> int:
    return int(KEPT_SECONDS * 1000)


class SessionsPerClient:
    """Answers 400 to an initialize whose kept params pass MAX_OPENING_BYTES, and 429 to one from a client already
    holding its limit of sessions."""

    def __init__(
        self, app: ASGIApp, path: str, counts: SessionCounts, *, per_principal: int, per_address: int, hops: bool
    ) -> None:
        self.app, self.path, self.counts = app, path, counts
        self.per_principal, self.per_address = per_principal, per_address
        self.hops = hops  # hops between instances reach this app (the Redis store), checked inside it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._opens_a_session(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
            message = parse_json(body)
            if isinstance(message, dict) and message.get("method") == "initialize":
                kept_params(message.get("params"))
        except ClientGone:
            return
        except Refused as refused:
            await send_error(send, refused.status, refused.code, str(refused))
            return
        receive = replay(body, receive)
        client = self._client(scope)
        try:
            reservation = await self.counts.reserve(client)
        except RedisUnavailable as exc:
            await send_error(send, 503, -32603, f"{exc.what}; {DID_NOT_RUN}")
            return
        if reservation is None:
            message = (
                f"{client.words} holds {client.limit} sessions{self.counts.scope()}, the most it may "
                f"({client.setting}); {NOT_RUN}: end one (DELETE) or let one idle out, then open another"
            )
            await send_error(send, 429, -32000, message)
            return
        opened: list[str] = []

        async def count_then_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400 and not opened:
                session_id = header(message.get("headers", []), SESSION_ID_HEADER)
                if session_id is not None:  # `<instance>.<id>` (mcp_cluster/http/middleware.py): counted by its id
                    opened.append(session_id.rpartition(".")[2])
                    await self._settle(client, reservation, opened[0])
            await send(message)

        try:
            await self.app(scope, receive, count_then_send)
        finally:
            if not opened:
                with anyio.CancelScope(shield=True):
                    await self._settle(client, reservation, None)

    async def _settle(self, client: Client, reservation: str, session_id: str | None) -> None:
        try:
            await self.counts.settle(client, reservation, session_id)
        except RedisUnavailable:
            log.warning("could not count a session's opening; its reservation lapses by itself")

    def _client(self, scope: Scope) -> Client:
        client = client_of(scope)
        if client.is_principal:
            return Client(client.key, self.per_principal, "MCP_MAX_SESSIONS_PER_PRINCIPAL", client.words)
        return Client(client.key, self.per_address, "MCP_MAX_SESSIONS_PER_ADDRESS", client.words)

    def _opens_a_session(self, scope: Scope) -> bool:
        """A POST with no session id, in a protocol version that has sessions (2026-07-28 has none), from a
        client: a hop from another instance was counted there (and one no instance signed runs nothing)."""
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return False
        headers = scope.get("headers", [])
        if self.hops and header(headers, FORWARD_HEADER.encode()) is not None:
            return False
        version = header(headers, PROTOCOL_VERSION_HEADER)
        return header(headers, SESSION_ID_HEADER) is None and version in (None, *HANDSHAKE_PROTOCOL_VERSIONS)


def kept_params(params: object) -> dict[str, Any]:
    """What a session keeps of initialize `params` ({} when they are no object: the SDK explains); Refused (400)
    above MAX_OPENING_BYTES."""
    if not isinstance(params, dict):
        return {}
    kept = {name: params[name] for name in KEPT_PARAMS if name in params}
    if (size := len(json.dumps(kept))) > MAX_OPENING_BYTES:
        raise Refused(
            400,
            -32602,
            f"initialize params hold {size} bytes of protocolVersion, capabilities and clientInfo; a session "
            f"keeps at most {MAX_OPENING_BYTES} bytes of them; {NOT_RUN}",
        )
    return kept
