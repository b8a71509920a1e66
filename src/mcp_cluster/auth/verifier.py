"""Verifying a bearer JWT (RFC 9068): signature from the JWKS, issuer, audience (the RFC 8707 resource
this server is), expiry; the SDK's `TokenVerifier`, so its auth middleware and requestState binding use it."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

from mcp_cluster.auth.keys import KeySet

# Asymmetric only: a shared-secret (HS*) or unsigned (`none`) token is refused whatever the JWKS holds.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30  # clock skew allowed between the issuer and this instance
CACHED_TOKENS = 10_000  # verified tokens remembered until they expire: a token is checked twice per request
# RFC 9068's access-token type, and the generic one of issuers that predate it; any other (an ID token, a DPoP
# proof, a logout token) is not a bearer token for this server.
TOKEN_TYPES = ("at+jwt", "application/at+jwt", "jwt")
log = logging.getLogger(__name__)


class TokenRefused(Exception):
    """A bearer token this server does not accept; the message says why, for the 401's description."""


class JWTVerifier:
    def __init__(self, keys: KeySet, issuer: str, resource: str) -> None:
        self.keys, self.issuer, self.resource = keys, issuer, resource
        self._verified: OrderedDict[str, tuple[AccessToken, str | None]] = OrderedDict()  # with its key's id

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's TokenVerifier: the token's AccessToken, or None when it is refused."""
        try:
            return await self.check(token)
        except TokenRefused:
            return None

    async def check(self, token: str) -> AccessToken:
        """The AccessToken of a token this server accepts; TokenRefused (saying why) otherwise."""
        if (known := self._verified.get(token)) is not None:
            access, key_id = known
            unexpired = access.expires_at is not None and access.expires_at >= time.time()
            if unexpired and await self.keys.key(key_id) is not None:  # its key still in the JWKS
                return access
            del self._verified[token]
        access, key_id = await self._verify(token)
        self._verified[token] = access, key_id
        if len(self._verified) > CACHED_TOKENS:
            self._verified.popitem(last=False)
        return access

    async def _verify(self, token: str) -> tuple[AccessToken, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRefused("the bearer token is not a JWT") from None
        kind = header.get("typ")
        if kind is not None and str(kind).lower() not in TOKEN_TYPES:
            raise TokenRefused(f"the token is of type {kind!r}, not an access token (at+jwt, RFC 9068)")
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRefused(f"the token is signed with {algorithm!r}; accepted: {', '.join(ALGORITHMS)}")
        signing = await self.keys.key(header.get("kid"))
        if signing is None:
            raise TokenRefused(f"the token's signing key (kid {header.get('kid')!r}) is not in the issuer's JWKS")
        if signing.algorithm is not None and signing.algorithm != algorithm:
            raise TokenRefused(f"the token is signed with {algorithm}, and its key is for {signing.algorithm}")
        try:
            claims = jwt.decode(
                token,
                signing.key.key,
                algorithms=[algorithm],
                audience=self.resource,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidAudienceError:
            message = f"the token is not for this server: ask the issuer for audience {self.resource}"
            raise TokenRefused(message) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"the token was not issued by {self.issuer}") from None
        except jwt.ExpiredSignatureError:
            raise TokenRefused("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"the token is not valid: {exc}") from None
        return _access_token(token, claims, self.resource), header.get("kid")


def _access_token(token: str, claims: dict[str, Any], resource: str) -> AccessToken:
    scopes = claims.get("scope", "")
    return AccessToken(
        token=token,
        client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
        scopes=scopes.split() if isinstance(scopes, str) else [],
        expires_at=int(claims["exp"]),
        resource=resource,  # the audience decode checked
        subject=str(claims["sub"]),
        claims={"iss": claims["iss"]},
    )
