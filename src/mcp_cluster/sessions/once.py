"""Every 2025-11-25 tool call runs once per request id, however often its client sends it.

A client that lost an answer (a timeout, a 502, an instance that died, "may have run: retry") sends the same
request again, with the same id. `OncePerRequest` sits right in front of the SDK's app, on the process that
holds the session, and keys each `tools/call` by its session and JSON-RPC id:

- the same id while the first run goes on here waits for its answer (at most `IN_PROGRESS_WAIT_SECONDS`, then
  409 "still running"); a first run whose client has left is stopped instead (left to itself, a run that waits
  for its client's answer to a sampling or elicitation request never ends) and the repeat runs the call again;
- the same id after it ran gets the recorded answer (the ledger, `mcp_cluster/sessions/ledger.py`), and nothing runs;
- the same id with another request (method or params) gets 422, and nothing runs;
- the same id after a run that ended without an outcome (its instance died, Redis was away, the session
  moved) runs again, and every write that run made before answers as it did then (`mcp_cluster/shared/runs.py`).

Tools annotated read-only change nothing, so their calls are not recorded: a repeat waits for a running one,
then runs again. The same object is the server middleware (`record`, outermost in the SDK's chain) that
records each run's outcome before its answer is sent, so a repeat that follows an answer finds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.dispatcher import as_request_id, coerce_request_id
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.types import INTERNAL_ERROR, ErrorData, RequestId
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_cluster import sdk_internals
from mcp_cluster.auth.principal import principal_of
from mcp_cluster.http.clients import client_of
from mcp_cluster.http.messages import (
    HANDED_OVER_HEADER,
    MAX_BODY_BYTES,
    MOVED,
    PROTOCOL_VERSION_HEADER,
    SESSION_ID_HEADER,
    Refused,
    header,
    parse_json,
    read_body,
    replay,
    send_error,
    send_response,
    sse_event,
)
from mcp_cluster.servers import tool_call_of
from mcp_cluster.sessions.connections import Connections
from mcp_cluster.sessions.ledger import RequestLedger, Tenure, Verdict, encoded
from mcp_cluster.sessions.server_requests import ServerRequests, is_answer
from mcp_cluster.sessions.state import session_id_of
from mcp_cluster.shared.redis import RedisUnavailable
from mcp_cluster.shared.runs import DID_NOT_RUN, MAY_HAVE_RUN, Run, current_run

KEYED_METHOD = "tools/call"
IN_PROGRESS_WAIT_SECONDS = 30.0  # a repeat waits this long for the first run's answer, then hears "still running"
log = logging.getLogger(__name__)


def request_key(ctx: Context | Any) -> str | None:
    """A key naming this tool call for effects outside the session's state (an idempotency key for an API, a
    unique column in a database): the same for every run of the call, whichever instance runs it, and another
    for every other call. None where the request has no session (it then has no key: 2026-07-28, stateless)."""
    session_id = session_id_of(ctx)
    return key_of(session_id, tool_call_of(ctx).request_id) if session_id is not None else None


class FencingToken(NamedTuple):
    """Who runs a tool call for its session: the owner process and its generation, which grows with every
    takeover. A system of your own that keeps the highest generation it has seen for a session, and refuses
    lower ones, refuses an owner that lost the session (cut off, or paused, while another took it over)."""

    owner: str
    generation: int


def fencing_token(ctx: Context | Any) -> FencingToken | None:
    """The fencing token of this tool call's run; None where the request has no session (2026-07-28, stateless)."""
    run = current_run.get()
    if not isinstance(run, _GatedRun) or run.session_id != session_id_of(ctx):
        return None
    if coerce_request_id(run.request_id) != coerce_request_id(tool_call_of(ctx).request_id):
        return None
    return FencingToken(*run.tenure)


def key_of(session_id: str, request_id: RequestId) -> str:
    """A request's key: its session and its JSON-RPC id (7 and "7" are one id, as the SDK matches them)."""
    named = hashlib.sha256(str(coerce_request_id(request_id)).encode()).hexdigest()[:32]
    return f"{session_id}:{named}"


def request_of(message: dict[str, Any]) -> tuple[Any, Any]:
    """What a repeat must match: the method and the params (their `_meta`, such as a progress token, may differ)."""
    params = message.get("params")
    if isinstance(params, dict) and "_meta" in params:
        params = {name: value for name, value in params.items() if name != "_meta"}
    return message.get("method"), params


def digest_of(request: tuple[Any, Any]) -> str:
    """A request (`request_of`) as the ledger keeps it, to match its repeats on any instance."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(eq=False)
class _GatedRun(Run):
    """A run this process let through to the SDK, with what its repeats here wait on."""

    local_key: tuple[str, RequestId] = ("", 0)  # among the runs in progress here (a read-only call's too)
    request_id: RequestId = 0
    request: tuple[Any, Any] = (None, None)  # what its repeats must match (`request_of`)
    session_id: str = ""
    tenure: Tenure = ("", 0)
    began: float = field(default_factory=time.monotonic)
    handler_running: bool = False  # its handler began (it ran or runs)
    response_ended: bool = False  # its HTTP answer is over: sent, or its client has gone
    ended: bool = False
    answer: bytes | None = None  # set once the run's outcome is recorded
    changed: anyio.Event | None = None  # made only when a repeat waits on the run (most runs have none)

    @property
    def settled(self) -> bool:
        """Ended, or its HTTP answer is over."""
        return self.ended or self.response_ended

    @property
    def orphaned(self) -> bool:
        """Still running with no one to answer: its client left (a POST's stream is not resumed here), and if
        it waits for that client (sampling, elicitation), it waits forever."""
        return self.handler_running and self.response_ended and not self.ended

    async def wait_until(self, done: Callable[[], bool]) -> None:
        while not done():
            if self.changed is None:
                self.changed = anyio.Event()
            await self.changed.wait()

    def end_response(self) -> None:
        self.response_ended = True
        self._tell_waiters()

    def end(self) -> None:
        self.ended = True
        self._tell_waiters()

    def _tell_waiters(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None


class OncePerRequest:
    def __init__(
        self,
        app: ASGIApp,
        mcp: MCPServer,
        ledger: RequestLedger,
        tenure: Callable[[str], Tenure | None],
        *,
        json_response: bool,
        horizon_seconds: float,
        server_requests: ServerRequests,
        connections: Connections,
    ) -> None:
        self.app = app
        self._mcp = mcp
        self._ledger = ledger
        self._tenure = tenure  # None: this process does not hold the session (any more)
        self._json_response = json_response
        self._horizon = horizon_seconds
        self._server_requests = server_requests
        self._connections = connections
        self._running: dict[tuple[str, RequestId], _GatedRun] = {}  # runs in progress here, by session and id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        session_id = header(headers, SESSION_ID_HEADER)
        if (
            session_id is None  # no session: nothing to key a request by
            or header(headers, PROTOCOL_VERSION_HEADER) not in (None, *HANDSHAKE_PROTOCOL_VERSIONS)
            or not sdk_internals.serves(self._mcp, session_id, principal_of(scope))  # the SDK says 404
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
            message = parse_json(body)
            receive = replay(body, receive)
            if is_answer(message):
                self._server_requests.check_answer(session_id, message)
            elif isinstance(message, dict) and message.get("method") == KEYED_METHOD:
                request_id = as_request_id(message.get("id"))
                if request_id is not None:
                    await self._serve_call(session_id, request_id, message, scope, receive, send)
                    return
        except Refused as refused:
            await send_error(send, refused.status, refused.code, str(refused), refused.headers)
            return
        await self.app(scope, receive, send)

    async def _serve_call(
        self,
        session_id: str,
        request_id: RequestId,
        message: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        local_key, request = (session_id, coerce_request_id(request_id)), request_of(message)
        recorded = await self._recorded(message)  # before the check below: nothing awaits between it and the claim
        while (first := self._running.get(local_key)) is not None:  # a repeat of a run in progress here: its answer
            if first.request != request:
                raise _reused(request_id)
            with anyio.move_on_after(IN_PROGRESS_WAIT_SECONDS):
                await first.wait_until(lambda: first.settled)
            if not first.settled:
                running = f"request {json.dumps(request_id)} is still running ({time.monotonic() - first.began:.0f} s)"
                raise Refused(409, -32000, f"{running}; {MAY_HAVE_RUN}")
            if first.orphaned:
                # Its client left (a relay that died, a dropped connection): stopped, it ends unanswered and this
                # repeat runs the call again, its writes answering as they did.
                self._connections.stop_orphaned(session_id, request_id)
            await first.wait_until(lambda: first.ended)  # its answer is out, or it is stopped: the run is ending
            if first.answer is not None:
                await self._answer(send, session_id, request_id, first.answer)
                return
        tenure = self._tenure(session_id)
        if tenure is None:
            raise _moved()
        run = self._running[local_key] = _GatedRun(
            key_of(session_id, request_id) if recorded else None,
            self._horizon,
            local_key=local_key,
            request_id=request_id,
            request=request,
            session_id=session_id,
            tenure=tenure,
            client=client_of(scope).key,
        )
        try:
            if run.key is not None and await self._answered_before(run, send):
                return
            token = current_run.set(run)  # the SDK runs the call in this context: its writes see the run
            try:
                await self.app(scope, receive, send)
            finally:
                current_run.reset(token)
                run.end_response()
        finally:
            if not run.handler_running:  # else `record` ends it, with the call
                self._end(run)

    async def _answered_before(self, run: _GatedRun, send: Send) -> bool:
        """Begin the run in the ledger; answer here what it says when the request must not run (True)."""
        assert run.key is not None  # only a recorded (keyed) run is begun
        try:
            begun = await self._ledger.begin(run.session_id, run.key, digest_of(run.request), run.tenure, run.client)
        except RedisUnavailable as exc:
            raise Refused(503, -32603, f"{exc.what}; {DID_NOT_RUN}") from None  # the call has not begun
        if begun.verdict is Verdict.CONFLICT:
            raise _reused(run.request_id)
        if begun.verdict is Verdict.STALE:
            raise _moved()
        if begun.verdict is Verdict.DONE:
            run.answer = begun.answer or _not_kept(run.request_id)
            await self._answer(send, run.session_id, run.request_id, run.answer)
            return True
        run.log = begun.log
        return False

    async def _recorded(self, message: dict[str, Any]) -> bool:
        """Whether a call's outcome is recorded: any tool not annotated read-only may change something."""
        name = (message.get("params") or {}).get("name") if isinstance(message.get("params"), dict) else None
        annotations = await sdk_internals.tool_annotations(self._mcp, name) if isinstance(name, str) else None
        return not (annotations is not None and annotations.read_only_hint)

    async def record(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """The server middleware: every tool call runs in a run (keyed where the gate keyed it); a keyed run's
        outcome is recorded before its answer goes out, unless it is one a retry may change."""
        if ctx.method != KEYED_METHOD:
            return await call_next(ctx)
        run = current_run.get()
        if not (isinstance(run, _GatedRun) and run.request_id == ctx.request_id and not run.handler_running):
            token = current_run.set(Run(None))  # a call with no key: its errors say a retry may run it again
            try:
                return await call_next(ctx)
            finally:
                current_run.reset(token)
        run.handler_running = True
        try:  # a run the gate cancels (orphaned) ends here unrecorded, unanswered
            try:
                result = await call_next(ctx)
            except Exception as exc:
                error = handler_exception_to_error_data(exc) or ErrorData(code=0, message=str(exc))
                await self._finish(run, {"error": error.model_dump(by_alias=True, mode="json", exclude_none=True)})
                raise
            await self._finish(run, {"result": result})
            return result
        finally:
            self._end(run)

    async def _finish(self, run: _GatedRun, outcome: dict[str, Any]) -> None:
        if run.key is None:  # not recorded: a repeat runs it again
            return
        answer = None if run.transient is not None else encoded(outcome)
        try:
            await self._ledger.finish(run.session_id, run.key, run.tenure, answer, run.client)
        except RedisUnavailable as exc:  # answered all the same: a retry runs it again, its writes answer once
            log.warning("could not record a call's outcome: %s", exc)
        run.answer = answer

    def _end(self, run: _GatedRun) -> None:
        if self._running.get(run.local_key) is run:
            del self._running[run.local_key]
        run.end()

    async def _answer(self, send: Send, session_id: str, request_id: RequestId, answer: bytes) -> None:
        """Send a recorded answer as the SDK would have sent the call's: one JSON body, or one SSE event."""
        message = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b"," + answer[1:]
        headers = [(SESSION_ID_HEADER, session_id.encode())]
        if self._json_response:
            await send_response(send, 200, message, b"application/json", headers)
            return
        await send_response(
            send, 200, sse_event(message), b"text/event-stream", [(b"cache-control", b"no-cache"), *headers]
        )


def _reused(request_id: RequestId) -> Refused:
    return Refused(
        422,
        -32600,
        f"request id {json.dumps(request_id)} was used in this session for another request (its method or params "
        f"differ); {DID_NOT_RUN} with a new id",
    )


def _moved() -> Refused:
    """The session is held elsewhere now: nothing ran here, and the instance that relayed it looks again."""
    message = f"this session moved to another instance; {DID_NOT_RUN}"
    return Refused(503, -32603, message, [(HANDED_OVER_HEADER, MOVED)])


def _not_kept(request_id: RequestId) -> bytes:
    error = {
        "code": INTERNAL_ERROR,
        "message": f"request {json.dumps(request_id)} ran in this session already; its answer was too large to keep "
        "for a repeat, and it does not run again",
    }
    return encoded({"error": error})
