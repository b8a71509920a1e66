"""With authentication on, one principal may hold only so many of an instance's sessions: a client that
opens them without end is refused, and the other principals keep the room the instance has."""

from __future__ import annotations

from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.principal import principal_of
from app.http.messages import PROTOCOL_VERSION_HEADER, SESSION_ID_HEADER, header, send_error
from app.shared.runs import NOT_RUN


class SessionsPerPrincipal:
    """Answers 429 to a request that would open a session for a principal already holding `limit` here."""

    def __init__(self, app: ASGIApp, path: str, limit: int, sessions_of: Callable[[AuthorizationContext], int]) -> None:
        self.app, self.path, self.limit, self.sessions_of = app, path, limit, sessions_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope) if self._opens_a_session(scope) else None
        if principal is not None and self.sessions_of(principal) >= self.limit:
            message = (
                f"this principal holds {self.limit} sessions on this instance, the most it may "
                f"(MCP_MAX_SESSIONS_PER_PRINCIPAL); {NOT_RUN}: end one (DELETE) or let one idle out, then open another"
            )
            await send_error(send, 429, -32000, message)
            return
        await self.app(scope, receive, send)

    def _opens_a_session(self, scope: Scope) -> bool:
        """A POST with no session id, in a protocol version that has sessions (2026-07-28 has none)."""
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return False
        headers = scope.get("headers", [])
        version = header(headers, PROTOCOL_VERSION_HEADER)
        return header(headers, SESSION_ID_HEADER) is None and version in (None, *HANDSHAKE_PROTOCOL_VERSIONS)
