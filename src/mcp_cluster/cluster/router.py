"""Serving a 2025-11-25 session from any instance: the Redis session store (`MCP_SESSION_STORE=redis`).

For each /mcp request of a session this process does not hold, `SessionRouter` looks up the owner in
Redis and forwards the exchange there; if the owner is dead it takes the session over and rebuilds it
from the stored `initialize` params. docs/design/redis-sessions.md has the whole picture.
"""

from __future__ import annotations

import functools
import logging
import random

import anyio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_cluster import sdk_internals, telemetry
from mcp_cluster.auth.principal import AuthorizationContext, is_principal, principal_hash, principal_of
from mcp_cluster.cluster import routes
from mcp_cluster.cluster.forward_listener import CLIENTS_ELSEWHERE, arrived_forwarded
from mcp_cluster.cluster.forwarding import (
    BALANCER_REDIRECT,
    OWNER_HEADER,
    OWNER_REDIRECT_HEADER,
    ClocksApart,
    OwnerHandedOver,
)
from mcp_cluster.cluster.handover import HandingOver, Handover
from mcp_cluster.cluster.hop_client import OwnerLost, OwnerUnreachable
from mcp_cluster.cluster.lease import HEARTBEAT_SECONDS, OWNER_TIMEOUT_SECONDS
from mcp_cluster.cluster.member import ClusterMember
from mcp_cluster.cluster.routes import Here, Route
from mcp_cluster.http.messages import (
    DRAINING,
    FORWARD_HEADER,
    HANDED_OVER_HEADER,
    LOST_REDIS,
    MAX_BODY_BYTES,
    MOVED,
    PROTOCOL_VERSION_HEADER,
    REPLACED,
    SESSION_ID_HEADER,
    ClientGone,
    Refused,
    header,
    json_rpc_error,
    parse_json,
    read_body,
    replay,
    request_id_of,
    send_error,
    send_response,
    sse_event,
)
from mcp_cluster.sessions.connections import Connections
from mcp_cluster.sessions.quota import kept_params
from mcp_cluster.sessions.records import Opening, Owner
from mcp_cluster.sessions.server_requests import ServerRequests
from mcp_cluster.shared.redis import RedisUnavailable
from mcp_cluster.shared.runs import DID_NOT_RUN, MAY_HAVE_RUN, NOT_RUN

HANDED_OVER = f"this instance is shutting down and handed the session over; {DID_NOT_RUN}"
FORWARDED_ELSEWHERE = (
    f"{FORWARD_HEADER} is taken only on the forwarding port (MCP_FORWARD_PORT), which only the instances reach; "
    f"{NOT_RUN}"
)
LOOK_AGAIN = f"this session moved to another instance; {DID_NOT_RUN}"
MEANT_FOR_ANOTHER = f"this hop was signed for another process (one this instance replaced); {DID_NOT_RUN}"
CUT_OFF = f"this instance has lost touch with the shared store (Redis) and acts for none of its sessions; {DID_NOT_RUN}"
log = logging.getLogger(__name__)


class SessionRouter:
    """Routes each request of a session to the process that owns it, taking dead owners' sessions over."""

    def __init__(
        self,
        app: ASGIApp,
        member: ClusterMember,
        server_requests: ServerRequests,
        connections: Connections,
        ride_through_seconds: float,
    ) -> None:
        self.app = app
        self.member = member
        self.ride_through_seconds = ride_through_seconds  # how long a held session's messages wait for its lease
        self.server_requests = server_requests  # a session rebuilt here asks its client with ids of its own
        self.connections = connections  # and is told the events it missed once, whether caught up or live
        self.handover = Handover(member)
        self._takeovers: dict[str, anyio.Event] = {}  # sessions a request of this process is claiming or rebuilding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", [])
        version = header(headers, PROTOCOL_VERSION_HEADER)
        # 2026-07-28 requests have no session; the SDK routes on this header before any session lookup.
        if scope["type"] != "http" or scope["path"] != "/mcp" or version not in (None, *HANDSHAKE_PROTOCOL_VERSIONS):
            if arrived_forwarded(scope):  # nothing else is ever forwarded
                await send_error(send, 403, -32600, CLIENTS_ELSEWHERE)
                return
            await self.app(scope, receive, send)
            return
        session_id = header(headers, SESSION_ID_HEADER)
        started = []

        async def tracked(message: Message) -> None:
            started.append(message["type"])
            await send(message)

        try:
            if header(headers, FORWARD_HEADER.encode()) is not None:
                await self._serve_forwarded(session_id, scope, receive, tracked)
            elif session_id is None:
                await self._open(scope, receive, tracked)
            else:
                await self._route(session_id, scope, receive, tracked)
        except ClientGone:
            return  # nobody is left to answer
        except Fenced as exc:
            if started:
                return  # cut short: the client's stream ends without an answer
            await send_error(send, exc.status, exc.code, str(exc))
        except (HandingOver, RedisUnavailable, Refused) as exc:
            if started:
                raise
            refused = _as_refused(exc)
            await send_error(send, refused.status, refused.code, str(refused), refused.headers)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request without a session: record the session the SDK opens before the client learns its id."""
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, MAX_BODY_BYTES)
        if self.handover.draining:  # the session opens where it can live on
            if not await self._hand_to_peer(scope, body, receive, send):
                raise Refused(503, -32603, f"this instance is shutting down; {DID_NOT_RUN}")
            return
        opening = _opening(body, principal_hash(principal_of(scope)))
        if opening is None:  # not a valid initialize request: the SDK explains what is wrong
            await self.app(scope, replay(body, receive), send)
            return
        refused: list[str] = []

        async def register_then_send(message: Message) -> None:
            if refused:
                return  # the client already has the 503; the rest of the SDK's answer is dropped
            if message["type"] == "http.response.start" and message["status"] < 400:
                session_id = header(message.get("headers", []), SESSION_ID_HEADER)
                if session_id is not None:
                    try:
                        await self.member.registry.register(session_id, opening)
                    except RedisUnavailable as exc:
                        refused.append(session_id)  # and the session goes: nothing of it lasts
                        await send_error(send, 503, -32603, f"{exc.what}; {DID_NOT_RUN}")
                        return
            await send(message)

        async with self.handover.opening():
            await self.app(scope, replay(body, receive), register_then_send)
        if refused:
            await self.member.manager.drop(refused[0])

    async def _route(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        manager, registry = self.member.manager, self.member.registry
        body = await read_body(receive, MAX_BODY_BYTES)
        if manager.holds(session_id):
            here = self._here()
            confirmed = not here.draining and await registry.confirm(session_id)
            if routes.held(here, confirmed=confirmed) is Route.SERVE:
                try:
                    await self._serve_held(session_id, scope, body, receive, send)
                    return
                except HandingOver:
                    await self.handover.handed_over(session_id)  # then served where the session goes
            else:
                log.warning("a session held here is no longer ours (taken over, or ended); letting it go")
                await manager.drop(session_id)
        await self._route_elsewhere(session_id, scope, body, receive, send)

    async def _route_elsewhere(self, session_id: str, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """A session this process does not hold: forward to its owner, or take it over if the owner is gone."""
        registry = self.member.registry
        owner_lost = False
        lost_redis_until = anyio.current_time() + self.ride_through_seconds
        redirect_asked = header(scope["headers"], OWNER_REDIRECT_HEADER) == "on"
        lookups = 0
        while lookups < 3:  # looked up again when another instance claimed it first, or its owner handed it over
            lookups += 1
            if self.handover.draining:
                registry.forget_lookup(session_id)  # sessions move fast now: no second-old answers
            owner = await registry.lookup(session_id)
            _check_principal(owner, scope)
            decide = functools.partial(
                routes.by_record, owner, method=scope["method"], redirect_asked=redirect_asked, owner_lost=owner_lost
            )
            decision = decide(self._here(), owner_gone=False)
            if decision.route is Route.FORWARD:
                assert owner is not None  # a record names the owner it forwards to
                try:
                    telemetry.note("mcp_cluster.relayed_to", owner.owner_id)
                    await self.member.forwarder.forward(owner, scope, body, receive, send)
                    return
                except OwnerHandedOver as exc:
                    registry.forget_lookup(session_id)
                    if exc.reason == LOST_REDIS and anyio.current_time() < lost_redis_until:
                        lookups -= 1  # asked again: the owner serves once Redis is back, or its beat expires
                        await anyio.sleep(HEARTBEAT_SECONDS)
                        continue
                    if exc.reason not in (REPLACED, LOST_REDIS):
                        continue
                    await self._refuse_unless_silent(session_id, owner)  # the owner is gone: take over on its lapse
                except OwnerUnreachable:
                    await self._refuse_unless_silent(session_id, owner)
                except OwnerLost as exc:
                    owner_lost = True
                    registry.forget_lookup(session_id)
                    await self._refuse_unless_dead(session_id, owner, exc)
                decision = decide(self._here(), owner_gone=True)
            if decision.route is Route.ENDED:
                await send_response(send, 200)  # the owner ended it before dying: what the client asked for
                return
            if decision.route is Route.SERVE_OR_END:
                await self._serve_here_or_end(session_id, owner, scope, body, receive, send)
                return
            if decision.route is Route.REDIRECT:
                raise self._redirect_to(decision.instance)
            if decision.route is Route.HAND_TO_PEER:
                if await self._hand_to_peer(scope, body, receive, send):
                    return
                continue  # the peer found it owned by another instance meanwhile
            assert owner is not None and decision.route is Route.TAKE_OVER
            if await self._take_over(session_id, owner.owner_id, scope):
                await self._serve_held(session_id, scope, body, receive, send)
                return
            registry.forget_lookup(session_id)
        raise Refused(503, -32603, f"another instance is taking this session over; {DID_NOT_RUN}")

    def _here(self) -> Here:
        return Here(self.member.registry.owner_id, self.handover.draining)

    def _redirect_to(self, instance: str | None) -> Refused:
        """The 421 that has nginx re-send the request to the session's owner's instance (nginx asked for it)."""
        message = f"this session is served by instance {instance}; {NOT_RUN}: the balancer re-sends it there"
        self.member.metrics.owner_redirects.inc()
        return Refused(421, -32600, message, [BALANCER_REDIRECT, (OWNER_HEADER, (instance or "").encode())])

    async def _refuse_unless_silent(self, session_id: str, owner: Owner) -> None:
        # Taken over only once its heartbeat lapses: a live owner may refuse or drop a connection.
        if await self._still_beating(session_id, owner.owner_id):
            raise Refused(503, -32603, f"the instance serving this session is busy; {DID_NOT_RUN}")
        log.warning("a session's owner is unreachable and silent; taking the session over")

    async def _refuse_unless_dead(self, session_id: str, owner: Owner, exc: OwnerLost) -> None:
        # The request may have run before its owner died. Served again after the takeover, it runs once all the
        # same: a tool call keyed by its id answers what it recorded, or runs again writing nothing twice. Its
        # address answering proves nothing: a restarted owner listens there as a new process.
        if await self._still_beating(session_id, owner.owner_id):
            raise Refused(502, -32603, f"the instance serving this session stopped answering ({exc}); {MAY_HAVE_RUN}")

    async def _serve_forwarded(self, session_id: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        """A request another instance sent here: this process owns its session, or the sender handed it here
        (it is shutting down) to open a session or to take one over."""
        if self.member.forward_to is not None and not arrived_forwarded(scope):
            raise Refused(403, -32600, FORWARDED_ELSEWHERE)
        body = await read_body(receive, MAX_BODY_BYTES)
        signed = header(scope["headers"], FORWARD_HEADER.encode())
        assert signed is not None  # `__call__` sends here only requests with the header
        try:
            hop = self.member.forwarder.signer.verify(signed, scope, body)
        except ClocksApart as exc:
            log.error("refused a hop: %s", exc)
            raise Refused(503, -32603, f"{exc}; {DID_NOT_RUN}") from None
        if hop is not None and hop.recipient != self.member.registry.owner_id:
            raise _handed_over(MEANT_FOR_ANOTHER, REPLACED)  # the process it was sent to is gone; this one ran nothing
        if hop is None or not await self.member.first_use(hop.nonce):
            message = f"invalid {FORWARD_HEADER} header; only cluster instances may send it, once; {NOT_RUN}"
            raise Refused(403, -32600, message)
        scope, body = telemetry.carrying(scope, body)  # checked as the relay signed it; carries this span's now
        manager, registry = self.member.manager, self.member.registry
        here, lease_held = self._here(), registry.lease.held()
        held = session_id is not None and manager.holds(session_id)
        confirmed = (
            held and session_id is not None and not here.draining and lease_held and await registry.confirm(session_id)
        )
        route = routes.forwarded(
            here, held=held, lease_held=lease_held, confirmed=confirmed, has_session=session_id is not None
        )
        if route is Route.CUT_OFF:  # the sender asks again until this process is back, or takes over on our lapse
            raise _handed_over(CUT_OFF, LOST_REDIS)
        if route is Route.SERVE:
            assert session_id is not None  # a held session has an id
            try:
                await self._serve_held(session_id, scope, body, receive, send)
                return
            except HandingOver:
                await self.handover.handed_over(session_id)
                raise _handed_over(HANDED_OVER, MOVED) from None
        if route is Route.DRAINING:  # the sender tries another instance
            raise _handed_over(HANDED_OVER, DRAINING)
        if route is Route.OPEN:
            await self._open(scope, replay(body, receive), send)
            return
        assert session_id is not None and route is Route.LOOK_UP
        registry.forget_lookup(session_id)
        owner = await registry.lookup(session_id)
        _check_principal(owner, scope)
        by_record = routes.forwarded_by_record(owner, self._here())
        if by_record is Route.TAKE_OVER:  # its owner died, or handed it over: the sender could not take it over
            assert owner is not None
            if await self._take_over(session_id, owner.owner_id, scope):
                await self._serve_held(session_id, scope, body, receive, send)
                return
        if by_record is not Route.SERVE_OR_END:
            raise _handed_over(LOOK_AGAIN, MOVED)
        await self._serve_here_or_end(session_id, owner, scope, body, receive, send)

    async def _serve_held(self, session_id: str, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        # A session this process holds is fenced; one it serves a 404 for (ended, unknown) is not.
        call = _is_call(scope["method"], body)
        held = self.member.registry.owns(session_id)
        fenced, stopped = self._fenced(session_id, send, body if call else None) if held else (send, [])
        if not call:  # a drain waits for a session's calls, not its streams or answers
            await self.app(scope, replay(body, receive), fenced)
        else:
            async with self.handover.call(session_id):
                await self.app(scope, replay(body, receive), fenced)
        if stopped:
            raise stopped[0]  # the SDK swallowed it (an SSE answer): the router ends the request

    def _fenced(self, session_id: str, send: Send, call: bytes | None) -> tuple[Send, list[Refused | HandingOver]]:
        """`send` for a session held here, sending nothing while this process may not act for it (its lease
        lapsed, mcp_cluster/cluster/lease.py): what the session sends waits until Redis confirms it still ours, at
        most `ride_through_seconds`. A session taken over meanwhile, or Redis away that long, is dropped here
        (its calls stop) and the call is answered Fenced (503, or the last event of its SSE stream when that
        began): a client retries with the same request id. A request that is no call (`call` None: a GET stream,
        a notification, an answer) whose session this process handed over before the answer began is served where
        the session went (HandingOver); `stopped` holds what ended it."""
        registry = self.member.registry
        stopped: list[Refused | HandingOver] = []
        streaming = False  # an SSE stream has begun: it ends as a stream, never cut short

        async def fenced(message: Message) -> None:
            nonlocal streaming
            if not registry.acting_for(session_id) and not registry.ended_here(session_id) and _carries_bytes(message):
                if stopped:
                    raise stopped[0]
                if call is None and message["type"] == "http.response.start" and self.handover.moving(session_id):
                    stopped.append(HandingOver())  # its handover began while the request was on its way
                    raise stopped[0]
                if not await registry.may_act(session_id, self.ride_through_seconds):
                    fence = Fenced()
                    stopped.append(fence)
                    log.warning("stopped acting for a session: its lease could not be regained")
                    await self.member.manager.drop(session_id)  # taken over, or rebuilt here when next asked
                    if streaming:  # it ends as a stream ends: a GET's with nothing more, a call's with an error
                        # that says only "retry", nothing of the session
                        said = (
                            b""
                            if call is None
                            else sse_event(json_rpc_error(fence.code, str(fence), request_id_of(call)))
                        )
                        await send({"type": "http.response.body", "body": said, "more_body": False})
                    raise fence
            if message["type"] == "http.response.start":
                streaming = (header(message.get("headers", []), b"content-type") or "").startswith("text/event-stream")
            await send(message)

        return fenced, stopped

    async def _hand_to_peer(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        """While draining: let a live instance serve what this one will not start. False when the peer found
        the session owned by another instance (nothing ran: look it up again)."""
        peers = await self.member.registry.liveness.peers()
        random.shuffle(peers)
        for peer in peers:
            try:
                await self.member.forwarder.forward(peer, scope, body, receive, send)
                return True
            except OwnerHandedOver as exc:
                if exc.reason == MOVED:
                    return False
            except OwnerUnreachable:
                continue  # nothing ran there: try the next
            except OwnerLost as exc:
                message = f"the instance this request was handed to stopped answering ({exc}); {MAY_HAVE_RUN}"
                raise Refused(502, -32603, message) from None
        raise Refused(503, -32603, f"this instance is shutting down and no other instance answered; {DID_NOT_RUN}")

    async def _serve_here_or_end(
        self, session_id: str, owner: Owner | None, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> None:
        """The registry names no owner, or this process: serve a session this process claimed (once a rebuild
        under way has finished) or whose claim's answer it lost; a session that ended here stays ended (its
        record, left behind by a failed delete, goes) and the SDK answers 404."""
        registry = self.member.registry
        if owner is not None and not await self._rebuilt_here(session_id):
            if registry.ended_here(session_id):
                await registry.forget(session_id)  # an ended session is never rebuilt
            else:  # its claim's answer was lost on the way: claim it again (the claim finds it ours) and rebuild
                await self._take_over(session_id, registry.owner_id, scope)
        await self._serve_held(session_id, scope, body, receive, send)

    async def _still_beating(self, session_id: str, owner_id: str) -> bool:
        """After the owner could not be reached: a dead owner's heartbeat lapses within OWNER_TIMEOUT_SECONDS
        (its record then names no URL), a busy or restarting one's does not."""
        deadline = anyio.current_time() + OWNER_TIMEOUT_SECONDS + 0.5
        while anyio.current_time() < deadline:
            self.member.registry.forget_lookup(session_id)
            fresh = await self.member.registry.lookup(session_id)
            if fresh is None or fresh.owner_id != owner_id or fresh.url is None:
                return False
            await anyio.sleep(0.25)
        return True

    async def _rebuilt_here(self, session_id: str) -> bool:
        """Whether a session this process claimed is served here, once a takeover under way has finished."""
        if (takeover := self._takeovers.get(session_id)) is not None:
            await takeover.wait()  # Redis may already name this process while the claim's answer is on its way
        if not self.member.registry.owns(session_id):
            return False
        await self.member.manager.settled()
        return self.member.manager.holds(session_id)

    async def _take_over(self, session_id: str, previous_owner: str, scope: Scope) -> bool:
        """Claim and rebuild a dead owner's session; False if another process claimed it first."""
        if (takeover := self._takeovers.get(session_id)) is not None:
            await takeover.wait()  # another request of this process is taking it over: one claim, one rebuild
            return self.member.manager.holds(session_id)
        if not self.member.manager.has_room():
            message = f"this instance holds as many sessions as it may (MCP_MAX_SESSIONS); {DID_NOT_RUN}"
            raise Refused(503, -32603, message)
        takeover = self._takeovers[session_id] = anyio.Event()
        try:
            if previous_owner != self.member.registry.owner_id and not await self.member.registry.liveness.silent(
                previous_owner
            ):
                log.warning("a session's owner beats again: not taken over (Redis's clock may have jumped ahead)")
                return False
            return await self._claim_and_rebuild(session_id, previous_owner, principal_of(scope))
        finally:
            del self._takeovers[session_id]
            takeover.set()

    async def _catch_up(self, session_id: str, heard: dict[str, str]) -> None:
        """Store what the session missed while no instance told it (its owner died, or had handed it over), before
        anything of it is served here: a client resuming its GET stream gets it."""
        store = self.member.event_store_of(session_id)
        if store is None:
            return
        try:
            self.connections.catching_up(session_id)
            if missed := await store.catch_up(heard, functools.partial(self.connections.first_telling, session_id)):
                log.info("a session taken over heard what it missed", extra={"fields": {"events": missed}})
        except RedisUnavailable:
            log.warning("could not catch a session taken over up on what it missed")

    async def _claim_and_rebuild(
        self, session_id: str, previous_owner: str, principal: AuthorizationContext | None
    ) -> bool:
        opening = await self.member.registry.claim(session_id, previous_owner)
        if opening is None:
            return False
        if not is_principal(opening.principal, principal):  # claimed, and rebuilt by its own principal's request
            raise _session_not_found()
        manager = self.member.manager
        connection = await manager.rebuild(session_id, opening.params, opening.protocol_version, principal)
        if connection is not None:  # None: the session is already served here
            self.server_requests.adopt(session_id, connection, opening.generation)
            if self.member.subscriptions is not None:
                self.member.subscriptions.restore(session_id, opening.subscriptions)
            await self._catch_up(session_id, opening.heard)
            self.member.metrics.takeovers.inc()
            log.info("took a session over", extra={"fields": {"previous_owner": previous_owner}})
            telemetry.note("mcp_cluster.took_over_from", previous_owner)
        return True


def _check_principal(owner: Owner | None, scope: Scope) -> None:
    """A session is served to its own principal only; anyone else learns no more than for an unknown id."""
    if owner is not None and not is_principal(owner.principal, principal_of(scope)):
        log.warning("refused a session to a principal other than the one that opened it")
        raise _session_not_found()


def _session_not_found() -> Refused:
    return Refused(404, -32600, "Session not found")  # the SDK's own answer for an unknown session


def _opening(body: bytes, principal: str) -> Opening | None:
    """What to store of an initialize request (what a rebuild needs: `kept_params`), or None for anything else
    (or initialize params that are invalid)."""
    message = parse_json(body)
    if not (isinstance(message, dict) and message.get("method") == "initialize"):
        return None
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    kept = kept_params(params)
    try:
        return Opening(kept, sdk_internals.negotiated_version(params), principal=principal)
    except ValidationError:
        return None


def _is_call(method: str, body: bytes) -> bool:
    """Whether a request is a call (a JSON-RPC request), not a GET stream, a DELETE, a notification or an answer."""
    if method in ("GET", "DELETE"):
        return False
    if b'"method"' in body and b'"id"' in body:  # a call, or (rarely) a notification counted as one: no parse
        return True
    message = parse_json(body)
    return not isinstance(message, dict) or ("method" in message and "id" in message)


def _carries_bytes(message: Message) -> bool:
    """Whether an ASGI message sends the client something (an answer's start, or part of its body); the end of
    a body does not, and ends a stream the lease's lapse closed."""
    return message["type"] == "http.response.start" or bool(message.get("body"))


class Fenced(Refused):
    """This process lost its lease on a session (cut off from Redis, or paused) and could not regain it: it
    stopped acting for the session, which may be served elsewhere by now."""

    def __init__(self) -> None:
        message = (
            "this instance lost touch with the shared store (Redis) while serving the request, and stopped acting "
            f"for the session; {MAY_HAVE_RUN}"
        )
        super().__init__(503, -32603, message)


def _handed_over(message: str, reason: bytes) -> Refused:
    """The 503 a peer answers with when nothing ran here: the relaying instance reads the reason in the header."""
    return Refused(503, -32603, message, [(HANDED_OVER_HEADER, reason)])


def _as_refused(exc: HandingOver | RedisUnavailable | Refused) -> Refused:
    if isinstance(exc, HandingOver):  # a session that began moving just as this request reached it
        return _handed_over(HANDED_OVER, MOVED)
    if isinstance(exc, RedisUnavailable):  # routing needed Redis: the request reached no tool
        return Refused(503, -32603, f"{exc.what}; {DID_NOT_RUN}")
    return exc
