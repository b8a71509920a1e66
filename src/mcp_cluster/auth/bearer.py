"""Every request to the MCP endpoint carries a bearer token this server accepts, before any routing."""

from __future__ import annotations

import logging

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_cluster.auth.verifier import JWTVerifier, TokenRefused
from mcp_cluster.http.messages import header, send_error
from mcp_cluster.shared.runs import NOT_RUN

log = logging.getLogger(__name__)


class RequireBearer:
    """Answers 401 (with the `WWW-Authenticate` challenge naming the protected-resource metadata) to a
    request to `path` without an accepted token, 403 to one missing a required scope; otherwise sets
    the request's user, which the session layer and the SDK read."""

    def __init__(
        self, app: ASGIApp, verifier: JWTVerifier, path: str, metadata_url: str, scopes: tuple[str, ...] = ()
    ) -> None:
        self.app, self.verifier, self.path = app, verifier, path
        self.metadata_url, self.scopes = metadata_url, scopes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        authorization = header(scope.get("headers", []), b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await self._challenge(send, 401, None, "this server needs a bearer token (Authorization: Bearer ...)")
            return
        try:
            access = await self.verifier.check(token.strip())
        except TokenRefused as exc:
            log.info("refused a bearer token: %s", exc)
            await self._challenge(send, 401, "invalid_token", str(exc))
            return
        if missing := [name for name in self.scopes if name not in access.scopes]:
            await self._challenge(send, 403, "insufficient_scope", f"the token lacks the scope {' '.join(missing)}")
            return
        scope["user"], scope["auth"] = AuthenticatedUser(access), AuthCredentials(access.scopes)
        await self.app(scope, receive, send)

    async def _challenge(self, send: Send, status: int, error: str | None, description: str) -> None:
        # RFC 6750 section 3; MCP clients find the authorization server through resource_metadata.
        quoted = description.replace('"', "'")
        params = [f'error="{error}"', f'error_description="{quoted}"'] if error else []
        params.append(f'resource_metadata="{self.metadata_url}"')
        if self.scopes:
            params.append(f'scope="{" ".join(self.scopes)}"')
        challenge = (b"www-authenticate", f"Bearer {', '.join(params)}".encode("ascii", "replace"))
        await send_error(send, status, -32600, f"Unauthorized: {description}; {NOT_RUN}", [challenge])
