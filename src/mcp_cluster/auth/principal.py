"""The principal a request acts for, as the SDK names it (client, issuer, subject), and the hash of it a
session's record in Redis keeps, so that every instance refuses a session to anyone but its principal."""

from __future__ import annotations

import hashlib
import hmac
import json

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from starlette.types import Scope

__all__ = ["ANONYMOUS", "AuthorizationContext", "is_principal", "principal_hash", "principal_of"]
ANONYMOUS = ""  # the hash of no principal: auth is off
_LABEL = b"mcp-scale-lab/session-principal:"


def principal_of(scope: Scope) -> AuthorizationContext | None:
    """Who the request's bearer token stands for (the SDK's own session-owner value); None without auth."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


def principal_hash(principal: AuthorizationContext | None) -> str:
    if principal is None:
        return ANONYMOUS
    triple = json.dumps([principal["client_id"], principal["issuer"], principal["subject"]], separators=(",", ":"))
    return hashlib.sha256(_LABEL + triple.encode()).hexdigest()


def is_principal(stored: str, principal: AuthorizationContext | None) -> bool:
    """Whether a session whose record holds `stored` belongs to `principal`."""
    return hmac.compare_digest(stored, principal_hash(principal))
