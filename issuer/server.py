"""The issuer's HTTP side: its metadata (RFC 8414), its JWKS, and a token endpoint for the
client-credentials grant with the RFC 8707 `resource` parameter, which becomes the token's audience."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from issuer.signing import SigningKey, write_whole

TOKEN_SECONDS = 600
MAX_FORM_BYTES = 8 * 1024


@dataclass(frozen=True)
class IssuerSettings:
    url: str  # the tokens' `iss`, where clients reach the issuer
    resources: tuple[str, ...]  # the audiences it issues tokens for
    state_dir: Path  # its key and its clients' secrets, made on the first start
    jwks_file: Path | None = None  # a copy of the JWKS for servers that read it from a file
    clients: tuple[str, ...] = ("alice", "bob")
    scopes: tuple[str, ...] = ("mcp:tools",)  # what a client may ask for; anything else is refused


def issuer_app(settings: IssuerSettings) -> Starlette:
    key = SigningKey.load_or_create(settings.state_dir / "signing-key.json")
    clients = _client_secrets(settings.state_dir / "clients", settings.clients)
    if settings.jwks_file is not None:
        write_whole(settings.jwks_file, json.dumps(key.jwks()), mode=0o644)  # public keys, for the apps

    async def metadata(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": settings.url,
                "token_endpoint": f"{settings.url}/token",
                "jwks_uri": f"{settings.url}/jwks.json",
                "grant_types_supported": ["client_credentials"],
                "scopes_supported": list(settings.scopes),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }
        )

    async def jwks(_: Request) -> JSONResponse:
        return JSONResponse(key.jwks())

    async def token(request: Request) -> JSONResponse:
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return _oauth_error("invalid_request", f"the form is larger than {MAX_FORM_BYTES} bytes")
        form = await request.form()
        client_id, secret = _credentials(request.headers.get("authorization"), form)
        if client_id not in clients or not hmac.compare_digest(clients[client_id], secret or ""):
            return _oauth_error("invalid_client", "unknown client or wrong secret", 401)
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "this issuer grants client_credentials only")
        resource = form.get("resource")
        if resource not in settings.resources:
            return _oauth_error("invalid_target", f"resource must be one of: {', '.join(settings.resources)}")
        scope = str(form.get("scope") or "")
        if unknown := sorted(set(scope.split()) - set(settings.scopes)):
            return _oauth_error(
                "invalid_scope", f"not granted here: {' '.join(unknown)}; granted: {' '.join(settings.scopes)}"
            )
        access = key.mint(settings.url, client_id, resource, TOKEN_SECONDS, client_id=client_id, scope=scope)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_SECONDS})

    async def ready(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ready", "issuer": settings.url})

    routes = [
        Route("/.well-known/oauth-authorization-server", metadata),
        Route("/jwks.json", jwks),
        Route("/token", token, methods=["POST"]),
        Route("/readyz", ready),
    ]
    return Starlette(routes=routes)


def _client_secrets(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Each client's secret, one file per client, made on the first start and kept."""
    folder.mkdir(mode=0o700, exist_ok=True)
    for name in names:
        if not (folder / name).exists():
            write_whole(folder / name, secrets.token_urlsafe(24))
    return {name: (folder / name).read_text().strip() for name in names}


def _credentials(authorization: str | None, form) -> tuple[str | None, str | None]:
    """client_secret_basic (RFC 6749 2.3.1), else client_secret_post."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return None, None
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
