"""State a tool keeps per 2025-11-25 session: `await session_state(ctx).increment("calls")`.

With the Redis session store the values are fields of the session's record in Redis, so they survive the
loss of the instance that held the session and end and expire with it; with the memory store they live in
the process that holds the session, which is where the session lives too. Values are JSON. Bounded per
session: `MAX_KEYS` keys and `MAX_STATE_BYTES` of JSON in all.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, TypeVarTuple
from weakref import WeakKeyDictionary

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_cluster.http.messages import SESSION_ID_HEADER
from mcp_cluster.servers import tool_call_of
from mcp_cluster.sessions.records import MAX_KEYS, MAX_STATE_BYTES, SessionRecords
from mcp_cluster.shared.redis import RedisUnavailable, unavailable_on_error
from mcp_cluster.shared.runs import mark_transient, retry_advice, written_once

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class SessionStateError(ToolError):
    """A session-state call the tool cannot complete; the message says why in words a client can act on."""


NO_SESSION = (
    "this request belongs to no MCP session (stateless transports and 2026-07-28 requests carry no "
    "Mcp-Session-Id), so there is no session state to use"
)
ENDED = "this session has ended or expired; initialize a new one"
MOVED = "this session moved to another instance while the call ran, and this write was not made"
FULL = f"this session's state is full ({MAX_KEYS} keys, {MAX_STATE_BYTES} bytes of JSON at most)"
NOT_AN_INTEGER = "session state {!r} holds a value that is not an integer; increment needs one"
T = TypeVar("T")
Args = TypeVarTuple("Args")


class SessionStateBackend(Protocol):
    """Where session state lives. Values arrive as JSON text; a missing session raises ENDED."""

    async def get(self, session_id: str, key: str) -> str | None: ...

    async def set(self, session_id: str, key: str, value: str) -> None: ...

    async def increment(self, session_id: str, key: str, by: int) -> int: ...


class SessionState:
    """One session's state, as a tool sees it."""

    def __init__(self, backend: SessionStateBackend, session_id: str) -> None:
        self._backend = backend
        self.session_id = session_id

    async def get(self, key: str, default: Any = None) -> Any:
        raw = await self._call(self._backend.get, _checked(key))
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        raw = json.dumps(value, separators=(",", ":"))
        if len(raw.encode()) > MAX_STATE_BYTES:
            raise SessionStateError(FULL)
        await self._call(self._backend.set, _checked(key), raw)

    async def increment(self, key: str, by: int = 1) -> int:
        """Add `by` to an integer (0 when unset) and return the new value, in one step on every backend."""
        return await self._call(self._backend.increment, _checked(key), by)

    async def _call(self, operation: Callable[[str, *Args], Awaitable[T]], *args: *Args) -> T:
        try:
            return await operation(self.session_id, *args)
        except RedisUnavailable as exc:
            raise SessionStateError(str(exc)) from None


def _checked(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise SessionStateError(f"session state key {key!r} is not valid; use 1-64 of A-Z a-z 0-9 _ . : -")
    return key


class MemorySessionState:
    """Session state in this process, for at most `limit` sessions.

    Past the limit, the state of sessions that have ended goes first (`live_sessions` says which are open),
    then the least recently used: an open session keeps its state while no more than `limit` sessions are
    open, which the SDK's own session cap guarantees.
    """

    def __init__(self, limit: int, live_sessions: Callable[[], Collection[str]] = tuple) -> None:
        self._limit = limit
        self._live_sessions = live_sessions
        self._sessions: OrderedDict[str, dict[str, str]] = OrderedDict()

    async def get(self, session_id: str, key: str) -> str | None:
        return self._sessions.get(session_id, {}).get(key)

    async def set(self, session_id: str, key: str, value: str) -> None:
        async def put() -> None:
            _put(self._values(session_id), key, value)

        await written_once(put)

    async def increment(self, session_id: str, key: str, by: int) -> int:
        async def add() -> int:
            values = self._values(session_id)
            current = values.get(key, "0")
            if not _INTEGER.match(current):
                raise SessionStateError(NOT_AN_INTEGER.format(key))
            value = int(current) + by
            _put(values, key, str(value))
            return value

        return await written_once(add)

    def _values(self, session_id: str) -> dict[str, str]:
        values = self._sessions.pop(session_id, None) or {}
        self._sessions[session_id] = values
        if len(self._sessions) > self._limit:
            live = set(self._live_sessions())
            for ended in [sid for sid in self._sessions if sid not in live and sid != session_id]:
                del self._sessions[ended]
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)
        return values


def _put(values: dict[str, str], key: str, value: str) -> None:
    """Store `value` under `key` unless the session's state would pass its bounds."""
    others = {k: v for k, v in values.items() if k != key}
    if len(others) >= MAX_KEYS or sum(map(len, others.values())) + len(value) > MAX_STATE_BYTES:
        raise SessionStateError(FULL)
    values[key] = value


_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_FAILURES = {-1: ENDED, -2: FULL, -3: NOT_AN_INTEGER}
Tenure = Callable[[str], tuple[str, int] | None]  # a session's (owner id, generation) as held here, or None


class RedisSessionState:
    """Session state as fields of the session's record (mcp_cluster/sessions/records.py), written only while it
    exists and only by the process that holds it now: `tenure` says which owner and generation that is, and a
    write from a process that lost the session (paused while another took it over) is refused."""

    def __init__(self, records: SessionRecords, tenure: Tenure) -> None:
        self._records = records
        self._tenure = tenure

    async def get(self, session_id: str, key: str) -> str | None:
        with unavailable_on_error():
            answer = await self._records.read_state(session_id, key)
        _raise_for(answer[0], key)
        return answer[1].decode() if len(answer) > 1 and answer[1] is not None else None

    async def set(self, session_id: str, key: str, value: str) -> None:
        _raise_for(await self._records.write_state(session_id, key, value, self._held(session_id)), key)

    async def increment(self, session_id: str, key: str, by: int) -> int:
        answer = await self._records.add_to_state(session_id, key, by, self._held(session_id))
        _raise_for(answer[0], key)
        return int(answer[1])

    def _held(self, session_id: str) -> tuple[str, int]:
        tenure = self._tenure(session_id)
        if tenure is None:
            raise _moved()  # this process let the session go while the call ran
        return tenure


def _raise_for(status: int, key: str) -> None:
    if status == -4:
        raise _moved()
    if status in _FAILURES:
        raise SessionStateError(_FAILURES[status].format(key))


def _moved() -> SessionStateError:
    """The session moved while the call ran: a retry reaches it where it is now."""
    mark_transient("the session moved")
    return SessionStateError(f"{MOVED}; {retry_advice(may_have_run=True)}")


@dataclass(frozen=True)
class _Binding:
    backend: SessionStateBackend
    stateless: bool


_BINDINGS: WeakKeyDictionary[MCPServer, _Binding] = WeakKeyDictionary()


def bound(mcp: MCPServer) -> bool:
    return mcp in _BINDINGS


def bind(mcp: MCPServer, backend: SessionStateBackend, *, stateless: bool) -> None:
    """Give the tools of `mcp` their session state (done by `app.instance_app`, which refuses a second call)."""
    _BINDINGS[mcp] = _Binding(backend, stateless)


def session_id_of(ctx: Context | Any) -> str | None:
    """The request's MCP session, or None on stateless transports and 2026-07-28 requests (which have none).
    `ctx`: a tool's context, the SDK's or FastMCP's."""
    call = tool_call_of(ctx)
    binding = _BINDINGS.get(call.server) if call.server is not None else None
    if (binding is not None and binding.stateless) or call.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    # On a stateful transport the SDK has already matched this header to a live session.
    return call.headers.get(SESSION_ID_HEADER.decode())


def session_state(ctx: Context | Any) -> SessionState:
    """The state of the request's session; raises SessionStateError (a ToolError) when it has none."""
    server = tool_call_of(ctx).server
    binding = _BINDINGS.get(server) if server is not None else None
    if binding is None:
        raise RuntimeError("session_state needs the server served through app.instance_app")
    session_id = session_id_of(ctx)
    if session_id is None:
        raise SessionStateError(NO_SESSION)
    return SessionState(binding.backend, session_id)
